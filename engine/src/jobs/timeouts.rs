//! Step timeouts: an IN_PROGRESS execution whose device asked for `stepTimeoutInMinutes` and
//! did not report again in time becomes TIMED_OUT, as on AWS IoT. A sweeper runs for the life
//! of the engine; the deadline lives in PostgreSQL, so a restarted engine keeps enforcing it.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{ExecutionRow, Jobs, Result, complete_if_done, events};

/// How often expired executions are looked for. A timeout is at least a minute, so a few
/// seconds of lateness is within what AWS promises.
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);

impl Jobs {
    /// Times out every execution past its step deadline; returns how many.
    pub async fn time_out_expired(&self) -> Result<usize> {
        let job_ids: Vec<String> = sqlx::query_scalar(
            "select distinct job_id from engine.job_executions
             where status = 'IN_PROGRESS' and step_timeout_at < now()",
        )
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
                 where job_id = $1 and status = 'IN_PROGRESS' and step_timeout_at < now()
                 returning {}",
                super::EXECUTION_COLUMNS
            ))
            .bind(&job_id)
            .fetch_all(&mut *tx)
            .await?;
            let completed = complete_if_done(&mut tx, &job_id).await?;
            tx.commit().await?;

            timed_out += expired.len();
            let things: Vec<String> = expired.iter().map(|e| e.thing_name.clone()).collect();
            for execution in &expired {
                tracing::info!(job.id = %job_id, thing = %execution.thing_name, "execution of {job_id} on {} timed out", execution.thing_name);
                events::execution(self, execution);
            }
            // Each of these was its thing's next execution (IN_PROGRESS comes first), so the
            // next one changed for all of them.
            let finished = job_id.clone();
            self.announce_pending(&things, &|_, next| next != Some(finished.as_str()))
                .await;
            if let Some(job) = completed {
                self.announce_completed(&job).await;
            }
        }
        Ok(timed_out)
    }

    /// Sweeps for expired executions every [`SWEEP_EVERY`] until `shutdown`.
    pub async fn run_timeouts(&self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(error) = self.time_out_expired().await {
                tracing::warn!(%error, "timing out expired executions failed: {error}");
            }
        }
    }
}
