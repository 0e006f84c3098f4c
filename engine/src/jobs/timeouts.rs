//! Timeouts: an IN_PROGRESS execution becomes TIMED_OUT, as on AWS IoT, when the step timer
//! its device asked for (`stepTimeoutInMinutes`) runs out, or the job's in-progress timer
//! (`timeoutConfig.inProgressTimeoutInMinutes`, counted from the execution's start) does;
//! the step timer cannot outlast the in-progress one. A sweeper runs for the life of the
//! engine; the deadlines live in PostgreSQL and are compared with the engine's clock, so a
//! restarted engine keeps enforcing them and tests can move time instead of waiting.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{ExecutionRow, Jobs, Result, complete_if_done, events};

/// How often expired executions are looked for and rollouts advanced. A timeout is at least
/// a minute and rates are per minute, so a few seconds of lateness is within what AWS
/// promises.
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// The SQL condition of an execution that has run out of time at `now` (a bind parameter).
fn expired(now: &str) -> String {
    format!(
        "status = 'IN_PROGRESS' and (step_timeout_at < {now} or in_progress_timeout_at < {now})"
    )
}

impl Jobs {
    /// Times out every execution past a deadline, retrying those the job's retry
    /// configuration allows; returns how many timed out.
    pub async fn time_out_expired(&self) -> Result<usize> {
        let now = self.now();
        let job_ids: Vec<String> = sqlx::query_scalar(&format!(
            "select distinct job_id from engine.job_executions where {}",
            expired("$1")
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut timed_out = 0;
        for job_id in job_ids {
            // Per job, job row first, like every other path that finishes executions.
            let mut tx = self.pool.begin().await?;
            sqlx::query("select 1 from engine.jobs where job_id = $1 for update")
                .bind(&job_id)
                .execute(&mut *tx)
                .await?;
            let expired: Vec<ExecutionRow> = sqlx::query_as(&format!(
                "update engine.job_executions set status = 'TIMED_OUT',
                     version_number = version_number + 1, last_updated_at = now()
                 where job_id = $1 and {}
                 returning {}",
                expired("$2"),
                super::EXECUTION_COLUMNS
            ))
            .bind(&job_id)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            let mut retried = Vec::new();
            let mut retries = Vec::new();
            for execution in &expired {
                if let Some(retry) = self.retry_if_configured(&mut tx, execution).await? {
                    retried.push(execution.thing_name.clone());
                    retries.push(retry);
                }
            }
            let completed = complete_if_done(&mut *tx, &job_id).await?;
            tx.commit().await?;

            timed_out += expired.len();
            let things: Vec<String> = expired.iter().map(|e| e.thing_name.clone()).collect();
            for execution in &expired {
                tracing::info!(job.id = %job_id, thing = %execution.thing_name, "execution of {job_id} on {} timed out", execution.thing_name);
                events::execution(self, execution);
            }
            for retry in &retries {
                events::execution_progress(self, retry);
            }
            // Each of these was its thing's next execution (IN_PROGRESS comes first), so the
            // next one changed for all of them; a retry is a new execution of the same job.
            let finished = job_id.clone();
            self.announce_pending(&things, &|thing, next| {
                next != Some(finished.as_str()) || retried.iter().any(|t| t == thing)
            })
            .await;
            if let Some(job) = completed {
                self.announce_completed(&job).await;
            }
            self.abort_if_criteria_met(&job_id).await;
        }
        Ok(timed_out)
    }

    /// Runs [`Jobs::tick`] every [`SWEEP_EVERY`] until `shutdown`.
    pub async fn run_periodic(&self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(error) = self.tick().await {
                tracing::warn!(%error, "timeouts and rollouts failed: {error}");
            }
        }
    }
}
