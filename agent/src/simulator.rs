//! The fleet simulator: many virtual devices in one process, each a real MQTT client running
//! the real [`Agent`], so a rollout can be tried before it touches hardware.
//!
//! A simulated device "installs" any job document by working for a while and reporting
//! progress. A document may steer its simulated outcome with a `simulate` object:
//! `{"simulate": {"outcome": "FAILED" | "REJECTED" | "SUCCEEDED", "duration_ms": 500}}`.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rand::Rng;
use serde_json::Value;
use tokio::task::JoinSet;

use crate::client::{Agent, AgentConfig, JobHandler, Outcome, Progress};

/// How a simulated fleet behaves.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    pub host: String,
    pub port: u16,
    /// Thing names of the devices to simulate.
    pub things: Vec<String>,
    /// Range of simulated work per job.
    pub min_work: Duration,
    pub max_work: Duration,
    /// Fraction of jobs (0.0–1.0) that fail when the document does not say.
    pub failure_rate: f64,
}

/// Starts one agent per thing; they run until the returned set is dropped or aborted.
pub fn start(config: SimulatorConfig) -> JoinSet<()> {
    let handler: Arc<dyn JobHandler> = Arc::new(SimulatedDevice {
        min_work: config.min_work,
        max_work: config.max_work.max(config.min_work),
        failure_rate: config.failure_rate.clamp(0.0, 1.0),
    });
    let mut set = JoinSet::new();
    for thing in config.things {
        let agent = Agent::new(
            AgentConfig::new(thing.clone(), config.host.clone(), config.port),
            handler.clone(),
        );
        set.spawn(async move {
            if let Err(error) = agent.run().await {
                tracing::warn!(thing, %error, "simulated device {thing} stopped: {error:#}");
            }
        });
    }
    set
}

/// The standard name of simulated device `index` (1-based): `sim-0001` …
pub fn thing_name(index: usize) -> String {
    format!("sim-{index:04}")
}

struct SimulatedDevice {
    min_work: Duration,
    max_work: Duration,
    failure_rate: f64,
}

impl JobHandler for SimulatedDevice {
    fn run<'a>(
        &'a self,
        _job_id: &'a str,
        document: &'a Value,
        progress: Progress<'a>,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let steer = document.get("simulate");
            let (work, fails) = {
                let mut rng = rand::rng();
                let work = steer
                    .and_then(|s| s.get("duration_ms"))
                    .and_then(Value::as_u64)
                    .map(Duration::from_millis)
                    .unwrap_or_else(|| rng.random_range(self.min_work..=self.max_work));
                (work, rng.random_bool(self.failure_rate))
            };
            let outcome = match steer.and_then(|s| s.get("outcome")).and_then(Value::as_str) {
                Some("FAILED") => {
                    Outcome::Failed("simulated failure requested by the job document".into())
                }
                Some("REJECTED") => {
                    Outcome::Rejected("simulated rejection requested by the job document".into())
                }
                Some(_) | None if fails => Outcome::Failed("simulated random failure".into()),
                _ => Outcome::Succeeded,
            };
            if matches!(outcome, Outcome::Rejected(_)) {
                return outcome;
            }
            // Simulated work: half, report progress, the other half.
            tokio::time::sleep(work / 2).await;
            if let Err(error) = progress.report("installing", 50).await {
                return Outcome::Failed(format!("could not report progress: {error:#}"));
            }
            tokio::time::sleep(work / 2).await;
            outcome
        })
    }
}
