//! Staged rollouts: a release sent to a target set in ordered waves, each wave one IoT job,
//! with gates between waves and a failure policy. See docs/rollouts.md.
//!
//! - [`model`]: the tables, and the one way states change (event, webhook outbox, audit).
//! - [`selection`]: the target set and the deterministic choice of each wave's things.
//! - [`schedule`]: schedules and maintenance windows in IANA time zones.
//! - [`gates`]: success and failure thresholds, soak, health check, approval.
//! - [`release`]: what a rollout installs, and creating its jobs.
//! - [`orchestrator`]: the state machine, run by one replica at a time.
//! - [`webhooks`]: signed deliveries of state changes from the outbox.
//! - [`routes`]: the HTTP API under `/api/v1/rollouts`.

pub mod gates;
pub mod model;
pub mod orchestrator;
pub mod release;
pub mod routes;
pub mod schedule;
pub mod selection;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

pub use orchestrator::Orchestrator;

/// How the orchestrator runs.
#[derive(Debug, Clone)]
pub struct RolloutSettings {
    /// How often the orchestrator ticks without another reason to (and how often webhook
    /// deliveries are looked for).
    pub tick: Duration,
    /// The clock gates and schedules are judged by; tests move a [`TestClock`] instead of
    /// waiting out soak times and windows.
    ///
    /// [`TestClock`]: flotilla_engine::clock::TestClock
    pub clock: Arc<dyn flotilla_engine::clock::Clock>,
}

impl Default for RolloutSettings {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(2),
            clock: Arc::new(flotilla_engine::clock::SystemClock),
        }
    }
}
