//! The fleet simulator: many virtual devices in one process, each a real MQTT client (its own
//! connection and thing) running the real [`Agent`], so a rollout can be tried before it
//! touches hardware.
//!
//! A simulated device "runs" any job document by working for a while and reporting progress.
//! Its [`Profile`] sets how long that takes, how often it fails, rejects or hangs (until the
//! job's timeout ends it), whether it goes offline and comes back (churn), and how long it is
//! away when a job reboots it. It reports the `softwareVersion` of install documents as its
//! new `version`.
//!
//! A document may steer its own simulated outcome with a `simulate` object:
//! `{"simulate": {"outcome": "FAILED" | "REJECTED" | "SUCCEEDED" | "HANG", "duration_ms": 500}}`.

use std::collections::HashSet;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use rand::Rng;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::client::{Agent, AgentConfig, JobHandler, Outcome, Progress};

/// The behaviour of every device of a simulated fleet.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Work per job is drawn uniformly from this range.
    pub min_work: Duration,
    pub max_work: Duration,
    /// Fractions of jobs (0.0–1.0) that fail, that are rejected, and that hang until the
    /// service times them out or cancels them.
    pub failure_rate: f64,
    pub reject_rate: f64,
    pub hang_rate: f64,
    /// Offline/online churn: mean time connected and mean time away (exponential draws).
    pub churn: Option<(Duration, Duration)>,
    /// How long a device is away when a job reboots it.
    pub reboot_time: Duration,
    /// The software version a device reports before any install.
    pub initial_version: String,
    /// MQTT keep-alive of each device.
    pub keep_alive: Duration,
    /// The MQTT password of each device, from its thing name, when the broker wants one (the
    /// engine's device token on its plain listener).
    pub device_token: Option<DeviceToken>,
}

/// Computes a device's MQTT password from its thing name.
#[derive(Clone)]
pub struct DeviceToken(pub Arc<dyn Fn(&str) -> String + Send + Sync>);

impl std::fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceToken(..)")
    }
}

impl Default for Profile {
    fn default() -> Self {
        Self {
            min_work: Duration::from_millis(500),
            max_work: Duration::from_millis(3000),
            failure_rate: 0.0,
            reject_rate: 0.0,
            hang_rate: 0.0,
            churn: None,
            reboot_time: Duration::from_secs(5),
            initial_version: "1.0.0".into(),
            keep_alive: Duration::from_secs(60),
            device_token: None,
        }
    }
}

/// Starts one simulated device per thing, connecting to `host:port`; `online`, if given,
/// counts the devices connected at any moment.
pub fn start_fleet(
    host: &str,
    port: u16,
    things: Vec<String>,
    profile: Profile,
    online: Option<Arc<AtomicUsize>>,
) -> JoinSet<()> {
    let profile = Arc::new(profile.sanitized());
    let mut set = JoinSet::new();
    for thing in things {
        let mut config = AgentConfig::new(thing.clone(), host, port);
        if let Some(DeviceToken(token)) = &profile.device_token {
            config.credentials = Some((thing.clone(), token(&thing)));
        }
        config.keep_alive = profile.keep_alive;
        config.channel_capacity = 8;
        config.online = online.clone();
        set.spawn(run_device(config, profile.clone()));
    }
    set
}

impl Profile {
    fn sanitized(mut self) -> Self {
        self.max_work = self.max_work.max(self.min_work);
        self.failure_rate = self.failure_rate.clamp(0.0, 1.0);
        self.reject_rate = self.reject_rate.clamp(0.0, 1.0);
        self.hang_rate = self.hang_rate.clamp(0.0, 1.0);
        self
    }
}

/// The standard name of simulated device `index` (1-based): `sim-0001` …
pub fn thing_name(index: usize) -> String {
    format!("sim-{index:04}")
}

/// One device: its agent, restarted after a simulated reboot or an offline spell. What the
/// device remembers across them (reboots in progress, its version) lives in its handler, as
/// on a real device it lives on disk.
async fn run_device(config: AgentConfig, profile: Arc<Profile>) {
    let (reboots, mut rebooted) = mpsc::unbounded_channel();
    let handler = Arc::new(SimulatedDevice {
        profile: profile.clone(),
        version: Mutex::new(profile.initial_version.clone()),
        rebooting: Mutex::new(HashSet::new()),
        reboots,
    });
    let thing = config.thing_name.clone();
    loop {
        let online = profile
            .churn
            .map(|(online, _)| exponential(online))
            .unwrap_or(Duration::MAX);
        let agent = Agent::new(config.clone(), handler.clone());
        let away = tokio::select! {
            result = agent.run() => {
                if let Err(error) = result {
                    tracing::warn!(thing, %error, "simulated device {thing} stopped: {error:#}");
                }
                return;
            }
            Some(away) = rebooted.recv() => away,
            () = sleep_long(online) => profile.churn.map(|(_, offline)| exponential(offline)).unwrap_or_default(),
        };
        tokio::time::sleep(away).await;
    }
}

async fn sleep_long(duration: Duration) {
    if duration == Duration::MAX {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(duration).await;
}

/// An exponential draw with the given mean (at least 100 ms).
fn exponential(mean: Duration) -> Duration {
    let uniform: f64 = rand::rng().random_range(f64::EPSILON..1.0);
    Duration::from_secs_f64((-uniform.ln() * mean.as_secs_f64()).clamp(0.1, 86_400.0))
}

struct SimulatedDevice {
    profile: Arc<Profile>,
    version: Mutex<String>,
    /// Jobs whose reboot started; after the device comes back they succeed.
    rebooting: Mutex<HashSet<String>>,
    /// Asks the device's supervisor to go away for a while (the reboot).
    reboots: mpsc::UnboundedSender<Duration>,
}

/// What a simulated job does.
enum Plan {
    Succeed,
    Fail(String),
    Reject(String),
    Hang,
}

/// Whether a document reboots the device: AWS-Reboot's handler, or an install with a reboot.
fn reboots(document: &Value) -> bool {
    document["reboot"] == Value::Bool(true)
        || document["steps"].as_array().is_some_and(|steps| {
            steps
                .iter()
                .any(|s| s["action"]["input"]["handler"] == "reboot.sh")
        })
}

impl JobHandler for SimulatedDevice {
    fn installed(&self) -> Option<String> {
        Some(self.version.lock().expect("version lock").clone())
    }

    fn run<'a>(
        &'a self,
        job_id: &'a str,
        document: &'a Value,
        progress: Progress<'a>,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            if self.rebooting.lock().expect("reboot lock").remove(job_id) {
                // Back from the reboot this job asked for.
                progress.set_detail("version", &self.version.lock().expect("version lock"));
                return Outcome::Succeeded;
            }
            let steer = document.get("simulate");
            let profile = &self.profile;
            let (work, plan) = {
                let mut rng = rand::rng();
                let work = steer
                    .and_then(|s| s.get("duration_ms"))
                    .and_then(Value::as_u64)
                    .map(Duration::from_millis)
                    .unwrap_or_else(|| rng.random_range(profile.min_work..=profile.max_work));
                let plan = match steer.and_then(|s| s.get("outcome")).and_then(Value::as_str) {
                    Some("FAILED") => {
                        Plan::Fail("simulated failure requested by the job document".into())
                    }
                    Some("REJECTED") => {
                        Plan::Reject("simulated rejection requested by the job document".into())
                    }
                    Some("HANG") => Plan::Hang,
                    Some("SUCCEEDED") => Plan::Succeed,
                    _ => {
                        let draw: f64 = rng.random();
                        if draw < profile.reject_rate {
                            Plan::Reject("simulated random rejection".into())
                        } else if draw < profile.reject_rate + profile.hang_rate {
                            Plan::Hang
                        } else if draw
                            < profile.reject_rate + profile.hang_rate + profile.failure_rate
                        {
                            Plan::Fail("simulated random failure".into())
                        } else {
                            Plan::Succeed
                        }
                    }
                };
                (work, plan)
            };
            let cancel = progress.cancelled();
            match &plan {
                Plan::Reject(reason) => return Outcome::Rejected(reason.clone()),
                Plan::Hang => {
                    // Say nothing more until the service ends the job.
                    let _ = progress.report("hanging", 0).await;
                    cancel.cancelled().await;
                    return Outcome::Failed("cancelled".into());
                }
                Plan::Fail(_) | Plan::Succeed => {}
            }
            // Simulated work: half, report progress, the other half.
            tokio::select! {
                () = cancel.cancelled() => return Outcome::Failed("cancelled".into()),
                () = tokio::time::sleep(work / 2) => {}
            }
            if let Err(error) = progress.report("installing", 50).await {
                return Outcome::Failed(format!("could not report progress: {error:#}"));
            }
            tokio::select! {
                () = cancel.cancelled() => return Outcome::Failed("cancelled".into()),
                () = tokio::time::sleep(work / 2) => {}
            }
            if let Plan::Fail(reason) = plan {
                return Outcome::Failed(reason);
            }
            if let Some(version) = document["softwareVersion"].as_str() {
                *self.version.lock().expect("version lock") = version.to_owned();
            }
            if reboots(document) {
                let _ = progress.report("rebooting", 100).await;
                self.rebooting
                    .lock()
                    .expect("reboot lock")
                    .insert(job_id.to_owned());
                let _ = self.reboots.send(profile.reboot_time);
                // The supervisor drops this agent; the job finishes after the device is back.
                std::future::pending::<()>().await;
            }
            progress.set_detail("version", &self.version.lock().expect("version lock"));
            Outcome::Succeeded
        })
    }
}

/// Raises this process's open-file limit towards `wanted` (each device holds a socket), as
/// far as the hard limit allows; returns the limit now in force.
pub fn raise_open_file_limit(wanted: u64) -> u64 {
    match rlimit::Resource::NOFILE.get() {
        Ok((soft, hard)) if soft < wanted => {
            let target = wanted.min(hard);
            match rlimit::Resource::NOFILE.set(target, hard) {
                Ok(()) => target,
                Err(error) => {
                    tracing::warn!(%error, "could not raise the open-file limit: {error}");
                    soft
                }
            }
        }
        Ok((soft, _)) => soft,
        Err(_) => wanted,
    }
}
