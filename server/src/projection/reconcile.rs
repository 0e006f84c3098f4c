//! Reconciliation: pages DescribeJob and ListJobExecutionsForJob for the jobs that need it —
//! named on a channel (new to the projection, an ambiguous event, a failed batch, a change
//! made through the API) or, every sweep, every job still active — and applies what IoT says
//! through the same rules as events. This is what heals lost events, and on AWS it is the
//! only way QUEUED → IN_PROGRESS becomes visible.
//!
//! IoT's control plane is rate-limited per account, so every request spends from a token
//! bucket of `budget` requests per second, and a throttling answer backs off exponentially.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Observation, Projection, execution_observation, job_observation};
use crate::iot::IotError;
use crate::ops::Metrics;

/// How reconciliation paces itself.
#[derive(Debug, Clone, Copy)]
pub struct ReconcileConfig {
    /// How often every active job is re-read.
    pub every: Duration,
    /// IoT requests per second reconciliation may make.
    pub budget: f64,
}

/// ListJobExecutionsForJob's largest page.
const PAGE_SIZE: i32 = 250;

/// A token bucket: at most `rate` requests per second, bursts of up to one second's worth.
struct Budget {
    rate: f64,
    tokens: f64,
    refilled: Instant,
}

impl Budget {
    fn new(rate: f64) -> Self {
        let rate = rate.max(0.1);
        Self {
            rate,
            tokens: rate.max(1.0),
            refilled: Instant::now(),
        }
    }

    /// Waits for one request's token; `false` if shut down meanwhile.
    async fn spend(&mut self, shutdown: &CancellationToken) -> bool {
        loop {
            let now = Instant::now();
            let elapsed = now.duration_since(self.refilled).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.rate.max(1.0));
            self.refilled = now;
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
                return true;
            }
            let wait = Duration::from_secs_f64((1.0 - self.tokens) / self.rate);
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Why one job's reconciliation stopped early.
enum Stop {
    Shutdown,
    Throttled,
    Failed(String),
}

/// Runs until `shutdown`: reconciles the jobs named on `due` first, and every
/// `config.every` all active jobs, spending at most `config.budget` requests per second.
pub async fn run_reconciler(
    projection: Projection,
    mut due: mpsc::UnboundedReceiver<String>,
    config: ReconcileConfig,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut budget = Budget::new(config.budget);
    let mut queue: VecDeque<String> = VecDeque::new();
    let mut queued: BTreeSet<String> = BTreeSet::new();
    let mut next_sweep = Instant::now();
    let mut next_prune = Instant::now();
    let mut backoff = Duration::ZERO;
    loop {
        // Named jobs go first: someone is waiting for them.
        while let Ok(job_id) = due.try_recv() {
            if queued.insert(job_id.clone()) {
                queue.push_front(job_id);
            }
        }
        let now = Instant::now();
        if now >= next_sweep {
            next_sweep = now + config.every;
            match projection.active_job_ids().await {
                Ok(ids) => {
                    for job_id in ids {
                        if queued.insert(job_id.clone()) {
                            queue.push_back(job_id);
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "reading active jobs failed: {error}"),
            }
        }
        if now >= next_prune {
            next_prune = now + Duration::from_secs(600);
            if let Err(error) = projection.prune_changes().await {
                tracing::warn!(%error, "pruning the change feed failed: {error}");
            }
        }
        let Some(job_id) = queue.pop_front() else {
            tokio::select! {
                () = shutdown.cancelled() => return,
                Some(job_id) = due.recv() => {
                    if queued.insert(job_id.clone()) {
                        queue.push_back(job_id);
                    }
                }
                () = tokio::time::sleep_until(next_sweep) => {}
            }
            continue;
        };
        queued.remove(&job_id);
        match reconcile_job(&projection, &job_id, &mut budget, &metrics, &shutdown).await {
            Ok(()) => backoff = Duration::ZERO,
            Err(Stop::Shutdown) => return,
            Err(Stop::Throttled) => {
                metrics.count_reconcile_throttled();
                backoff = (backoff * 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
                tracing::warn!(job.id = %job_id, "IoT throttled reconciliation of job {job_id}; waiting {backoff:?}");
                if queued.insert(job_id.clone()) {
                    queue.push_front(job_id);
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
            }
            Err(Stop::Failed(error)) => {
                tracing::warn!(job.id = %job_id, %error, "reconciling job {job_id} failed: {error}");
            }
        }
    }
}

/// Reads one job and all its executions page by page, applying each page as it comes.
async fn reconcile_job(
    projection: &Projection,
    job_id: &str,
    budget: &mut Budget,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<(), Stop> {
    let classify = |error: IotError| {
        if error.is_throttling() {
            Stop::Throttled
        } else {
            Stop::Failed(error.to_string())
        }
    };
    let database = |error: sqlx::Error| Stop::Failed(format!("database: {error}"));
    if !budget.spend(shutdown).await {
        return Err(Stop::Shutdown);
    }
    metrics.count_reconcile_request();
    let job = match projection.iot.describe_job(job_id).await {
        Ok(job) => job,
        Err(IotError::NotFound(_)) => {
            projection
                .apply(vec![Observation::JobDeleted {
                    job_id: job_id.to_owned(),
                }])
                .await
                .map_err(database)?;
            return Ok(());
        }
        Err(error) => return Err(classify(error)),
    };
    let mut batch = vec![Observation::Job(job_observation(job))];
    let mut next_token = None;
    loop {
        if !budget.spend(shutdown).await {
            return Err(Stop::Shutdown);
        }
        metrics.count_reconcile_request();
        let (page, next) = projection
            .iot
            .executions_page(job_id, next_token, PAGE_SIZE)
            .await
            .map_err(classify)?;
        batch.extend(
            page.into_iter()
                .map(|e| Observation::Execution(execution_observation(job_id, e))),
        );
        let count = batch.len();
        projection
            .apply(std::mem::take(&mut batch))
            .await
            .map_err(database)?;
        metrics.count_reconciled(count as u64);
        match next {
            Some(token) => next_token = Some(token),
            None => break,
        }
    }
    projection.mark_synced(job_id).await.map_err(database)?;
    Ok(())
}
