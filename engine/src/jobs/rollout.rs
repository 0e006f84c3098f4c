//! Rollouts: which of a job's QUEUED executions are released (notified) to their devices,
//! and what happens as executions end. As on AWS IoT, every target gets its execution when
//! the job is created, but a device hears of it (notify/notify-next, and sees it through the
//! device API) only when the rollout releases it:
//!
//! - at most `maximumPerMinute` per rollout minute, or an exponential rate that grows by
//!   `incrementFactor` each time the notified or succeeded things reach the next multiple of
//!   `rateIncreaseCriteria` (the developer guide's table: 1000, 2000, 3000 …);
//! - a scheduled job stays SCHEDULED until its `startTime`; at `endTime` its `endBehavior`
//!   applies; maintenance windows pause releasing outside the windows;
//! - an ended execution is retried per `jobExecutionsRetryConfig`, and `abortConfig` is
//!   evaluated, canceling the job (its QUEUED executions only) when a criterion is met;
//! - `inProgressTimeoutInMinutes` bounds an execution from when it starts.
//!
//! Rollout minutes count from the rollout's start, and what was released in a minute is
//! counted from the executions' `notified_at`, both in PostgreSQL and both on the engine's
//! [`crate::clock::Clock`]. Each step runs under the job's row lock, so however often and
//! wherever the engine ticks, and across restarts, no execution is released twice and no
//! minute exceeds its rate.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::job_config::{EndBehavior, FailureType, JobConfig, string_date_time};
use super::{EXECUTION_COLUMNS, ExecutionRow, Jobs, Result, complete_if_done, events};
use crate::model::ExecutionStatus;

/// How many maintenance-window starts DescribeJob lists in `scheduledJobRollouts`.
const SCHEDULED_ROLLOUTS_SHOWN: usize = 7;

/// The SQL for an execution's in-progress deadline when it starts at `now` (a bind
/// parameter such as `$6`): kept once set, else now plus the job's
/// `inProgressTimeoutInMinutes`, or null when the job has none.
pub(super) fn in_progress_deadline(now: &str) -> String {
    format!(
        "coalesce(in_progress_timeout_at, {now} + make_interval(mins => (
             select (j.config -> 'timeoutConfig' ->> 'inProgressTimeoutInMinutes')::int
             from engine.jobs j where j.job_id = job_executions.job_id)))"
    )
}

/// A job's rollout progress, as stored.
#[derive(Debug, sqlx::FromRow)]
struct RolloutRow {
    started_at: Option<DateTime<Utc>>,
    rate_increases: i32,
    evaluated_minute: i64,
    ended: bool,
}

/// What one step of a job's rollout did, for the messages sent after its commit.
#[derive(Debug, Default)]
struct Step {
    released: Vec<String>,
    canceled: Vec<ExecutionRow>,
    completed: Option<super::JobRow>,
    end_cancel: Option<EndBehavior>,
}

impl Jobs {
    /// The engine's current time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// One round of the engine's periodic work: time out expired executions, complete
    /// finished jobs, and advance every active rollout. The engine runs it every few seconds; tests call it after
    /// moving their clock.
    pub async fn tick(&self) -> Result<()> {
        self.time_out_expired().await?;
        self.complete_finished_jobs().await?;
        let active: Vec<String> = sqlx::query_scalar(
            "select j.job_id from engine.jobs j join engine.job_rollouts r using (job_id)
             where j.status in ('SCHEDULED', 'IN_PROGRESS') and not r.ended
             order by j.created_at, j.job_id",
        )
        .fetch_all(&self.pool)
        .await?;
        // One job's trouble must not hold up the others' rollouts.
        for job_id in active {
            if let Err(error) = self.advance_rollout(&job_id).await {
                tracing::warn!(job.id = %job_id, %error, "advancing the rollout of {job_id} failed: {error}");
            }
        }
        Ok(())
    }

    /// Starts a new job's rollout inside CreateJob's transaction: now, or at its scheduled
    /// start.
    pub(super) async fn begin_rollout(
        &self,
        tx: &mut sqlx::PgConnection,
        job_id: &str,
        scheduled: bool,
    ) -> Result<()> {
        sqlx::query("insert into engine.job_rollouts (job_id, started_at) values ($1, $2)")
            .bind(job_id)
            .bind((!scheduled).then(|| self.now()))
            .execute(tx)
            .await?;
        Ok(())
    }

    /// Advances one job's rollout to the clock's time: scheduled start and end, then the
    /// executions this minute's rate still allows, then the messages.
    pub(super) async fn advance_rollout(&self, job_id: &str) -> Result<()> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let job = super::admin::lock_job(&mut tx, job_id).await?;
        let Ok(config) = JobConfig::stored(&job.config) else {
            tracing::warn!(job.id = %job_id, "job {job_id} has an unreadable configuration; its rollout stays where it is");
            return Ok(());
        };
        let Some(mut rollout): Option<RolloutRow> = sqlx::query_as(
            "select started_at, rate_increases, evaluated_minute, ended
             from engine.job_rollouts where job_id = $1 for update",
        )
        .bind(job_id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(());
        };
        let mut step = Step::default();
        let scheduling = config.scheduling.as_ref();
        let mut status = job.status.clone();

        if let Some(end) = scheduling.and_then(|s| s.end_time)
            && now >= end
            && !rollout.ended
            && matches!(status.as_str(), "SCHEDULED" | "IN_PROGRESS")
        {
            match scheduling.and_then(|s| s.end_behavior) {
                Some(behavior @ (EndBehavior::Cancel | EndBehavior::ForceCancel)) => {
                    // CancelJob does the rest in its own transaction; it makes the job
                    // CANCELED, so a crash before it just means the next tick does it.
                    step.end_cancel = Some(behavior);
                }
                Some(EndBehavior::StopRollout) | None => {
                    step.canceled = self.stop_rollout(&mut tx, job_id).await?;
                    step.completed = complete_if_done(&mut *tx, job_id).await?;
                    rollout.ended = true;
                }
            }
        } else if status == "SCHEDULED"
            && scheduling
                .and_then(|s| s.start_time)
                .is_some_and(|start| now >= start)
        {
            sqlx::query(
                "update engine.jobs set status = 'IN_PROGRESS', last_updated_at = now()
                 where job_id = $1",
            )
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
            rollout.started_at = Some(now);
            status = "IN_PROGRESS".to_owned();
            tracing::info!(job.id = %job_id, "scheduled job {job_id} started its rollout");
        }

        if status == "IN_PROGRESS"
            && !rollout.ended
            && step.end_cancel.is_none()
            && scheduling.is_none_or(|s| s.releases_at(now))
            && let Some(started_at) = rollout.started_at
        {
            step.released = self
                .release_due(&mut tx, job_id, &config, &mut rollout, started_at, now)
                .await?;
        }
        sqlx::query(
            "update engine.job_rollouts set started_at = $2, rate_increases = $3,
                 evaluated_minute = $4, ended = $5
             where job_id = $1",
        )
        .bind(job_id)
        .bind(rollout.started_at)
        .bind(rollout.rate_increases)
        .bind(rollout.evaluated_minute)
        .bind(rollout.ended)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.announce_step(job_id, step).await
    }

    /// Releases what the current rollout minute still allows; returns the things released.
    async fn release_due(
        &self,
        tx: &mut sqlx::PgConnection,
        job_id: &str,
        config: &JobConfig,
        rollout: &mut RolloutRow,
        started_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        let minute = (now - started_at).num_seconds().max(0) / 60;
        if minute > rollout.evaluated_minute {
            rollout.evaluated_minute = minute;
            if self
                .rate_increase_due(tx, job_id, config, rollout.rate_increases)
                .await?
            {
                rollout.rate_increases += 1;
            }
        }
        let minute_start = started_at + Duration::minutes(minute);
        let released_this_minute: i64 = sqlx::query_scalar(
            "select count(*) from engine.job_executions where job_id = $1 and notified_at >= $2",
        )
        .bind(job_id)
        .bind(minute_start)
        .fetch_one(&mut *tx)
        .await?;
        let quota = config.rate_per_minute(rollout.rate_increases) - released_this_minute;
        if quota <= 0 {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_scalar(
            "with chosen as (
                 select thing_name from engine.job_executions
                 where job_id = $1 and status = 'QUEUED' and notified_at is null
                 order by queued_at, thing_name limit $2 for update)
             update engine.job_executions e set notified_at = $3
             from chosen where e.job_id = $1 and e.thing_name = chosen.thing_name
             returning e.thing_name",
        )
        .bind(job_id)
        .bind(quota)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?)
    }

    /// Whether the exponential rate's next increase is due: the notified or the succeeded
    /// things reached `(increases + 1)` times their criterion.
    async fn rate_increase_due(
        &self,
        tx: &mut sqlx::PgConnection,
        job_id: &str,
        config: &JobConfig,
        increases: i32,
    ) -> Result<bool> {
        let Some(rate) = config
            .rollout
            .as_ref()
            .and_then(|r| r.exponential_rate.as_ref())
        else {
            return Ok(false);
        };
        let (notified, succeeded): (i64, i64) = sqlx::query_as(
            "select count(*) filter (where notified_at is not null),
                    count(*) filter (where status = 'SUCCEEDED')
             from engine.job_executions where job_id = $1",
        )
        .bind(job_id)
        .fetch_one(tx)
        .await?;
        let next = i64::from(increases) + 1;
        let criteria = &rate.rate_increase_criteria;
        Ok(criteria
            .number_of_notified_things
            .is_some_and(|n| notified >= n * next)
            || criteria
                .number_of_succeeded_things
                .is_some_and(|n| succeeded >= n * next))
    }

    /// STOP_ROLLOUT at the scheduled end: the executions never released are canceled, so the
    /// job completes once the released ones end.
    async fn stop_rollout(
        &self,
        tx: &mut sqlx::PgConnection,
        job_id: &str,
    ) -> Result<Vec<ExecutionRow>> {
        sqlx::query(
            "update engine.jobs set status = 'IN_PROGRESS', last_updated_at = now()
             where job_id = $1 and status = 'SCHEDULED'",
        )
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        Ok(sqlx::query_as(&format!(
            "update engine.job_executions set status = 'CANCELED',
                 version_number = version_number + 1, last_updated_at = now()
             where job_id = $1 and status = 'QUEUED' and notified_at is null
             returning {EXECUTION_COLUMNS}"
        ))
        .bind(job_id)
        .fetch_all(tx)
        .await?)
    }

    /// The messages of a committed rollout step.
    async fn announce_step(&self, job_id: &str, step: Step) -> Result<()> {
        if !step.released.is_empty() {
            tracing::info!(job.id = %job_id, released = step.released.len(), "rollout of {job_id} released {} executions", step.released.len());
            // A released execution is news to its device; it is the device's next job where
            // it now heads the device's queue.
            self.announce_pending(&step.released, &|_, next| next == Some(job_id))
                .await;
        }
        for execution in &step.canceled {
            events::execution(self, execution);
        }
        if !step.canceled.is_empty() {
            tracing::info!(job.id = %job_id, canceled = step.canceled.len(), "job {job_id} reached its end time; {} executions never released were canceled", step.canceled.len());
        }
        if let Some(job) = &step.completed {
            self.announce_completed(job).await;
        }
        if let Some(behavior) = step.end_cancel {
            tracing::info!(job.id = %job_id, "job {job_id} reached its end time; canceling it");
            self.cancel_job(job_id, behavior == EndBehavior::ForceCancel, None, None)
                .await?;
        }
        Ok(())
    }

    /// Inside the transaction that ended `ended` (FAILED or TIMED_OUT), queues a new attempt
    /// if the job's retry configuration allows one: a new execution number, one more retry
    /// attempt, released at once (its device was notified of the job already).
    pub(super) async fn retry_if_configured(
        &self,
        tx: &mut sqlx::PgConnection,
        ended: &ExecutionRow,
    ) -> Result<Option<ExecutionRow>> {
        let timed_out = match ended.status() {
            ExecutionStatus::Failed => false,
            ExecutionStatus::TimedOut => true,
            _ => return Ok(None),
        };
        let (status, config): (String, Value) =
            sqlx::query_as("select status, config from engine.jobs where job_id = $1")
                .bind(&ended.job_id)
                .fetch_one(&mut *tx)
                .await?;
        if status != "IN_PROGRESS" {
            return Ok(None);
        }
        let Ok(config) = JobConfig::stored(&config) else {
            return Ok(None);
        };
        let (failed_retries, timed_out_retries): (i32, i32) = sqlx::query_as(
            "select failed_retries, timed_out_retries from engine.job_executions
             where job_id = $1 and thing_name = $2",
        )
        .bind(&ended.job_id)
        .bind(&ended.thing_name)
        .fetch_one(&mut *tx)
        .await?;
        if config.retries_left(timed_out, failed_retries, timed_out_retries) <= 0 {
            return Ok(None);
        }
        let retried: ExecutionRow = sqlx::query_as(&format!(
            "update engine.job_executions set
                 status = 'QUEUED', execution_number = execution_number + 1,
                 failed_retries = failed_retries + $3, timed_out_retries = timed_out_retries + $4,
                 status_details = '{{}}', version_number = 1, queued_at = $5,
                 started_at = null, step_timeout_at = null, in_progress_timeout_at = null,
                 notified_at = coalesce(notified_at, $5), last_updated_at = now()
             where job_id = $1 and thing_name = $2
             returning {EXECUTION_COLUMNS}"
        ))
        .bind(&ended.job_id)
        .bind(&ended.thing_name)
        .bind(i32::from(!timed_out))
        .bind(i32::from(timed_out))
        .bind(self.now())
        .fetch_one(&mut *tx)
        .await?;
        tracing::info!(job.id = %ended.job_id, thing = %ended.thing_name, attempt = retried.retry_attempt, "retrying {} on {} (attempt {})", ended.job_id, ended.thing_name, retried.retry_attempt);
        Ok(Some(retried))
    }

    /// Advances a job's rollout right after a change to it (creation, UpdateJob, new
    /// targets). The change has committed already, so a failure here is logged and left to
    /// the next periodic tick rather than reported as the change's failure.
    pub(super) async fn advance_rollout_after_change(&self, job_id: &str) {
        if let Err(error) = self.advance_rollout(job_id).await {
            tracing::warn!(job.id = %job_id, %error, "advancing the rollout of {job_id} failed; the next tick retries: {error}");
        }
    }

    /// Evaluates the job's abort criteria after executions ended. The executions' end has
    /// committed already, so a failure is logged; the next ended execution evaluates again.
    pub(super) async fn abort_if_criteria_met(&self, job_id: &str) {
        if let Err(error) = self.try_abort(job_id).await {
            tracing::warn!(job.id = %job_id, %error, "evaluating the abort criteria of {job_id} failed: {error}");
        }
    }

    /// The abort criteria in order; the first one met cancels the job (its QUEUED executions
    /// only), with the reason and comment AWS gives an abort.
    async fn try_abort(&self, job_id: &str) -> Result<()> {
        let job = self.job(job_id).await?;
        if job.status != "IN_PROGRESS" {
            return Ok(());
        }
        let Some(abort) = JobConfig::stored(&job.config).ok().and_then(|c| c.abort) else {
            return Ok(());
        };
        let counts = self.counts(job_id).await?;
        let count = |status| counts.get(&status).copied().unwrap_or(0);
        let failed = count(ExecutionStatus::Failed);
        let rejected = count(ExecutionStatus::Rejected);
        let timed_out = count(ExecutionStatus::TimedOut);
        let executed = count(ExecutionStatus::Succeeded) + failed + rejected + timed_out;
        for criteria in &abort.criteria_list {
            if executed < criteria.min_number_of_executed_things {
                continue;
            }
            let failures = match criteria.failure_type {
                FailureType::Failed => failed,
                FailureType::Rejected => rejected,
                FailureType::TimedOut => timed_out,
                FailureType::All => failed + rejected + timed_out,
            };
            let percentage = failures as f64 * 100.0 / executed as f64;
            if percentage < criteria.threshold_percentage {
                continue;
            }
            let failure_type = criteria.failure_type.as_str();
            let reason = format!("FAILURE_TYPE_{failure_type}");
            let comment = format!(
                "Job canceled by its abort configuration: {failures} of {executed} executed things ended {failure_type} ({percentage:.2}%, threshold {}%)",
                criteria.threshold_percentage
            );
            tracing::info!(job.id = %job_id, "aborting job {job_id}: {comment}");
            return match self
                .cancel_job(job_id, false, Some(reason), Some(comment))
                .await
            {
                // Another path canceled it first: the job is canceled either way.
                Err(error) if error.kind == super::ErrorKind::InvalidRequest => Ok(()),
                other => other.map(|_| ()),
            };
        }
        Ok(())
    }

    /// The next maintenance-window starts DescribeJob shows as `scheduledJobRollouts`.
    pub fn scheduled_rollouts(&self, config: &Value) -> Vec<String> {
        JobConfig::stored(config)
            .ok()
            .and_then(|c| c.scheduling)
            .map(|s| {
                s.next_windows(self.now(), SCHEDULED_ROLLOUTS_SHOWN)
                    .into_iter()
                    .map(string_date_time)
                    .collect()
            })
            .unwrap_or_default()
    }
}
