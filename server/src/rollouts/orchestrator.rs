//! The orchestrator: moves every active rollout through its state machine.
//!
//! Exactly one replica orchestrates at a time: the one holding a PostgreSQL advisory lock on a
//! connection of its own (the lock lives as long as that session, so a replica that dies or
//! loses its database connection hands over at once). The leader ticks on an interval, when
//! the projection changes (an execution ended) and when an operator acts.
//!
//! Each step of one rollout runs in a transaction holding the rollout's row lock, so operator
//! actions and the orchestrator never interleave. IoT jobs are created with ids derived from
//! rollout and wave, and a wave's job is looked up (DescribeJob) before it is created: a
//! process killed between "create job" and "record job" finds and adopts its job on restart
//! instead of creating a second one.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::gates::{self, Verification};
use super::model::{self, Change, ORCHESTRATOR, RolloutRow, WaveRow};
use super::{release, schedule, selection};
use crate::iot::{Iot, IotError};
use crate::ops::Metrics;
use crate::projection::Projection;
use crate::stream::ChangeHub;

/// The advisory lock key of orchestrator leadership ("flotroll").
const LEADER_LOCK: i64 = 0x666c_6f74_726f_6c6c;

/// The most things whose health one tick reads (one DescribeThing each), so a large wave is
/// checked over several ticks instead of flooding IoT (in random order, so things that never
/// report do not keep the others from being read).
const HEALTH_CHECKS_PER_TICK: i64 = 200;

/// The most steps one rollout takes in one tick (each step is one transition).
const MAX_STEPS: usize = 32;

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Iot(#[from] IotError),
}

/// What the orchestrator and the operators' actions share. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Orchestrator {
    pub pool: sqlx::PgPool,
    pub iot: Iot,
    pub projection: Projection,
    /// Asks reconciliation to follow a job the orchestrator created.
    pub changed: tokio::sync::mpsc::UnboundedSender<String>,
    /// The time gates are judged by (a test clock in tests).
    pub clock: Arc<dyn flotilla_engine::clock::Clock>,
    /// Wakes this replica's orchestrator (after an operator's action).
    pub wake: Arc<Notify>,
    /// Wakes this replica's webhook sender (after new events).
    pub webhooks: Arc<Notify>,
    /// The IAM role AWS IoT assumes to presign artifact URLs (`--presigned-url-role-arn`).
    pub presigned_url_role_arn: Option<String>,
}

impl Orchestrator {
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Runs until `shutdown`: campaigns for leadership and, while leading, ticks.
    /// `flotilla_rollout_leader` is 1 while this replica leads.
    pub async fn run(
        self,
        every: Duration,
        changes: ChangeHub,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) {
        loop {
            match self.campaign().await {
                Ok(Some(lock)) => {
                    tracing::info!("this replica now orchestrates rollouts");
                    metrics.set_rollout_leader(true);
                    self.lead(lock, every, &changes, &metrics, &shutdown).await;
                    metrics.set_rollout_leader(false);
                    if shutdown.is_cancelled() {
                        return;
                    }
                    tracing::warn!("this replica stopped orchestrating rollouts");
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "campaigning for rollout leadership failed: {error}")
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every.max(Duration::from_secs(1))) => {}
            }
        }
    }

    /// A dedicated connection holding the leadership lock, if this replica got it.
    async fn campaign(&self) -> sqlx::Result<Option<PgConnection>> {
        let options = self.pool.connect_options();
        let mut conn = PgConnection::connect_with(&options).await?;
        let won: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK)
            .fetch_one(&mut conn)
            .await?;
        if won {
            Ok(Some(conn))
        } else {
            // Closing the session leaves nothing behind.
            let _ = conn.close().await;
            Ok(None)
        }
    }

    async fn lead(
        &self,
        mut lock: PgConnection,
        every: Duration,
        changes: &ChangeHub,
        metrics: &Metrics,
        shutdown: &CancellationToken,
    ) {
        let mut feed = changes.subscribe();
        loop {
            metrics.count_rollout_tick();
            if let Err(error) = self.tick().await {
                tracing::warn!(%error, "a rollout tick failed: {error}");
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(every) => {}
                () = self.wake.notified() => {}
                // A lagged receiver just means many changes: tick either way.
                _ = feed.recv() => {
                    // One tick answers every change that arrived meanwhile.
                    while feed.try_recv().is_ok() {}
                }
            }
            // Still the leader only while the locking session lives.
            if let Err(error) = sqlx::query("select 1").execute(&mut lock).await {
                tracing::warn!(%error, "the leadership connection failed: {error}");
                return;
            }
        }
        let _ = sqlx::query("select pg_advisory_unlock($1)")
            .bind(LEADER_LOCK)
            .execute(&mut lock)
            .await;
        let _ = lock.close().await;
    }

    /// One pass over every active rollout.
    pub async fn tick(&self) -> sqlx::Result<()> {
        let active: Vec<String> = sqlx::query_scalar(
            "select rollout_id from server.rollouts where state = any($1) order by created_at",
        )
        .bind(&model::ACTIVE[..])
        .fetch_all(&self.pool)
        .await?;
        for rollout_id in active {
            if let Err(error) = self.advance(&rollout_id).await {
                tracing::warn!(rollout.id = %rollout_id, %error, "rollout {rollout_id}: {error}");
            }
        }
        Ok(())
    }

    /// Moves one rollout as far as it can go now.
    pub async fn advance(&self, rollout_id: &str) -> Result<(), StepError> {
        for _ in 0..MAX_STEPS {
            let mut tx = self.pool.begin().await?;
            let Some(rollout) = model::lock(&mut tx, rollout_id).await? else {
                return Ok(());
            };
            let moved = self.step(&mut tx, &rollout).await?;
            tx.commit().await?;
            if !moved {
                break;
            }
            self.webhooks.notify_one();
        }
        Ok(())
    }

    /// One transition of `rollout`, if one is due; whether it made one.
    async fn step(&self, tx: &mut PgConnection, rollout: &RolloutRow) -> Result<bool, StepError> {
        match rollout.state.as_str() {
            "running" => {}
            "following" => return self.follow(tx, rollout).await,
            "rolling_back" => return self.finish_rollback(tx, rollout).await,
            _ => return Ok(false),
        }
        let waves = model::waves(tx, &rollout.rollout_id).await?;
        let Some(wave) = model::current(&waves) else {
            let (to, reason) = if rollout.continuous {
                (
                    "following",
                    "every wave passed; things joining the target set get the release",
                )
            } else {
                ("completed", "every wave passed")
            };
            self.rollout_to(tx, rollout, ORCHESTRATOR, to, reason.to_owned())
                .await?;
            return Ok(true);
        };
        let gates = wave.gates(rollout);
        let now = self.now();
        match wave.state.as_str() {
            "pending" => self.start_wave(tx, rollout, wave).await,
            "running" => {
                let tally = model::tally(tx, &rollout.rollout_id, wave.number).await?;
                if let Some(reason) = gates::failing_early(gates, &tally) {
                    self.fail_wave(tx, rollout, wave, ORCHESTRATOR, reason)
                        .await?;
                    return Ok(true);
                }
                if !tally.finished() {
                    return Ok(false);
                }
                sqlx::query(
                    "update server.rollout_waves set finished_at = $3
                     where rollout_id = $1 and number = $2",
                )
                .bind(&rollout.rollout_id)
                .bind(wave.number)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                match gates::failed_at_end(gates, &tally) {
                    Some(reason) => {
                        self.fail_wave(tx, rollout, wave, ORCHESTRATOR, reason)
                            .await?
                    }
                    None => {
                        let reason = format!(
                            "{} of {} things succeeded; verifying",
                            tally.succeeded, tally.size
                        );
                        self.wave_to(tx, rollout, wave, ORCHESTRATOR, "verifying", reason)
                            .await?;
                    }
                }
                Ok(true)
            }
            "verifying" => {
                if let Some(check) = &gates.health_check {
                    match check.source {
                        flotilla_api::HealthSource::Attribute => {
                            self.check_health(tx, rollout, wave.number, &check.attribute)
                                .await?;
                        }
                        flotilla_api::HealthSource::Shadow => {
                            check_reported_health(tx, rollout, wave.number, self.now()).await?;
                        }
                    }
                }
                let tally = model::tally(tx, &rollout.rollout_id, wave.number).await?;
                let finished_at = wave.finished_at.unwrap_or(now);
                match gates::verify(gates, &tally, finished_at, now, &rollout.release.version) {
                    Verification::Wait(reason) => {
                        model::set_reason(
                            tx,
                            rollout,
                            Some(format!("wave {}: {reason}", wave.number)),
                        )
                        .await?;
                        Ok(false)
                    }
                    Verification::Failed(reason) => {
                        self.fail_wave(tx, rollout, wave, ORCHESTRATOR, reason)
                            .await?;
                        Ok(true)
                    }
                    Verification::Passed if gates.approval => {
                        self.wave_to(
                            tx,
                            rollout,
                            wave,
                            ORCHESTRATOR,
                            "awaiting_approval",
                            "gates passed; an operator must approve".into(),
                        )
                        .await?;
                        Ok(true)
                    }
                    Verification::Passed => {
                        self.wave_to(
                            tx,
                            rollout,
                            wave,
                            ORCHESTRATOR,
                            "passed",
                            "gates passed".into(),
                        )
                        .await?;
                        Ok(true)
                    }
                }
            }
            // Approval is an operator's action; failed and canceled waves wait for one too.
            _ => Ok(false),
        }
    }

    /// Changes the rollout's state (and records it).
    pub async fn rollout_to(
        &self,
        tx: &mut PgConnection,
        rollout: &RolloutRow,
        actor: &str,
        to: &str,
        reason: String,
    ) -> sqlx::Result<()> {
        model::transition(
            tx,
            &rollout.rollout_id,
            Change {
                actor,
                wave: None,
                from: Some(&rollout.state),
                to,
                reason: Some(reason),
            },
        )
        .await?;
        Ok(())
    }

    /// Changes a wave's state (and records it).
    pub async fn wave_to(
        &self,
        tx: &mut PgConnection,
        rollout: &RolloutRow,
        wave: &WaveRow,
        actor: &str,
        to: &str,
        reason: String,
    ) -> sqlx::Result<()> {
        model::transition(
            tx,
            &rollout.rollout_id,
            Change {
                actor,
                wave: Some(wave.number),
                from: Some(&wave.state),
                to,
                reason: Some(reason),
            },
        )
        .await?;
        Ok(())
    }

    /// Starts `wave` when its schedule allows: selects its things and creates its job.
    async fn start_wave(
        &self,
        tx: &mut PgConnection,
        rollout: &RolloutRow,
        wave: &WaveRow,
    ) -> Result<bool, StepError> {
        if wave.promoted_by.is_none()
            && let Some(plan) = rollout
                .schedule
                .as_ref()
                .and_then(|s| schedule::validate(&s.0, &mut Default::default()))
            && let Some(opening) = plan.next_opening(self.now())
        {
            let times = plan.times(opening);
            model::set_reason(
                tx,
                rollout,
                Some(format!(
                    "wave {} waits for its window at {} ({})",
                    wave.number, times.local, times.time_zone
                )),
            )
            .await?;
            return Ok(false);
        }
        let job_id = wave_job_id(&rollout.rollout_id, wave.number);
        // An earlier attempt may have created the job and died before recording it.
        let things = match self.iot.describe_job(&job_id).await {
            Ok(job) => {
                tracing::info!(job.id = %job_id, "adopting job {job_id}, created by an earlier attempt");
                release::thing_names(&job.targets)
            }
            Err(IotError::NotFound(_)) => {
                let set = selection::target_set(&self.iot, &rollout.targets).await?;
                let reached = model::reached(tx, &rollout.rollout_id).await?;
                let remaining = set.difference(&reached).cloned().collect();
                let things = selection::take(
                    &rollout.rollout_id,
                    wave.number,
                    &wave.spec,
                    &rollout.canary_things,
                    &remaining,
                );
                if !things.is_empty() {
                    let options =
                        release::merged(&rollout.job_options, wave.spec.job_options.as_ref());
                    release::create(
                        &self.iot,
                        &job_id,
                        format!("rollout {} wave {}", rollout.rollout_id, wave.number),
                        &things,
                        &rollout.document,
                        &options,
                        self.presigned_url_role_arn.as_deref(),
                    )
                    .await?;
                }
                things
            }
            Err(other) => return Err(other.into()),
        };
        let now = self.now();
        if things.is_empty() {
            sqlx::query(
                "update server.rollout_waves set started_at = $3, finished_at = $3
                 where rollout_id = $1 and number = $2",
            )
            .bind(&rollout.rollout_id)
            .bind(wave.number)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            self.wave_to(
                tx,
                rollout,
                wave,
                ORCHESTRATOR,
                "passed",
                "no things left for this wave".into(),
            )
            .await?;
            return Ok(true);
        }
        model::record_job(
            tx,
            &rollout.rollout_id,
            &job_id,
            "wave",
            Some(wave.number),
            &things,
        )
        .await?;
        sqlx::query(
            "update server.rollout_waves set job_id = $3, started_at = $4, finished_at = null
             where rollout_id = $1 and number = $2",
        )
        .bind(&rollout.rollout_id)
        .bind(wave.number)
        .bind(&job_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        self.wave_to(
            tx,
            rollout,
            wave,
            ORCHESTRATOR,
            "running",
            format!("job {job_id} sent to {} things", things.len()),
        )
        .await?;
        model::set_reason(tx, rollout, None).await?;
        self.follow_job(&job_id).await;
        Ok(true)
    }

    /// Brings a new job into the projection now and has reconciliation follow it.
    pub async fn follow_job(&self, job_id: &str) {
        if let Err(error) = self.projection.refresh(job_id).await {
            tracing::warn!(job.id = %job_id, %error, "reading new job {job_id} failed: {error}");
        }
        let _ = self.changed.send(job_id.to_owned());
    }

    /// Reads the health attribute of the wave's succeeded things that have not shown the
    /// release's version yet, and records those that now do.
    async fn check_health(
        &self,
        tx: &mut PgConnection,
        rollout: &RolloutRow,
        wave: i32,
        attribute: &str,
    ) -> Result<(), StepError> {
        let pending: Vec<String> = sqlx::query_scalar(
            "select t.thing_name from server.rollout_things t
             join server.job_executions e on e.job_id = t.job_id and e.thing_name = t.thing_name
             where t.rollout_id = $1 and t.wave = $2 and e.status = 'SUCCEEDED'
               and t.healthy_at is null
             order by random() limit $3",
        )
        .bind(&rollout.rollout_id)
        .bind(wave)
        .bind(HEALTH_CHECKS_PER_TICK)
        .fetch_all(&mut *tx)
        .await?;
        let mut healthy = Vec::new();
        for thing in pending {
            let described = self
                .iot
                .sdk()
                .describe_thing()
                .thing_name(&thing)
                .send()
                .await
                .map_err(IotError::from_sdk);
            match described {
                Ok(out) => {
                    let reported = out.attributes.as_ref().and_then(|a| a.get(attribute));
                    if reported.map(String::as_str) == Some(rollout.release.version.as_str()) {
                        healthy.push(thing);
                    }
                }
                // A thing deleted since cannot report; it stays unhealthy.
                Err(IotError::NotFound(_)) => {}
                Err(other) => return Err(other.into()),
            }
        }
        sqlx::query(
            "update server.rollout_things set healthy_at = $3
             where rollout_id = $1 and thing_name = any($2)",
        )
        .bind(&rollout.rollout_id)
        .bind(&healthy)
        .bind(self.now())
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// Marks `wave` failed for `reason` and applies the rollout's failure policy.
    pub async fn fail_wave(
        &self,
        tx: &mut PgConnection,
        rollout: &RolloutRow,
        wave: &WaveRow,
        actor: &str,
        reason: String,
    ) -> Result<(), StepError> {
        let reason = format!("wave {}: {reason}", wave.number);
        self.wave_to(tx, rollout, wave, actor, "failed", reason.clone())
            .await?;
        match rollout.failure_policy.as_str() {
            "cancel" => self.cancel(tx, rollout, actor, reason).await,
            "rollback" => self.roll_back(tx, rollout, actor, reason).await,
            _ => {
                self.rollout_to(tx, rollout, actor, "paused", reason)
                    .await?;
                Ok(())
            }
        }
    }

    /// Stops the rollout's unfinished jobs (a rollback's too) and cancels the waves that have
    /// not passed.
    async fn stop(
        &self,
        tx: &mut PgConnection,
        rollout: &RolloutRow,
        actor: &str,
        reason: &str,
    ) -> Result<(), StepError> {
        let unfinished =
            model::things_with_status(tx, &rollout.rollout_id, None, &["QUEUED", "IN_PROGRESS"])
                .await?;
        let mut jobs: Vec<String> = unfinished.into_iter().map(|(_, job)| job).collect();
        // A job the projection has not seen executions of yet is stopped too.
        let waves = model::waves(tx, &rollout.rollout_id).await?;
        jobs.extend(
            waves
                .iter()
                .filter(|w| w.state == "running")
                .filter_map(|w| w.job_id.clone()),
        );
        if rollout.state == "rolling_back" {
            jobs.push(rollback_job_id(&rollout.rollout_id));
        }
        jobs.sort();
        jobs.dedup();
        for job_id in jobs {
            let comment: String = reason.chars().take(2028).collect();
            match self
                .iot
                .cancel_job(
                    &job_id,
                    false,
                    Some(comment),
                    Some("ROLLOUT_STOPPED".into()),
                )
                .await
            {
                // A job that finished meanwhile cannot be canceled and needs not be.
                Ok(()) | Err(IotError::Conflict(_)) | Err(IotError::NotFound(_)) => {}
                Err(other) => return Err(other.into()),
            }
            self.follow_job(&job_id).await;
        }
        for wave in waves.iter().filter(|w| {
            matches!(
                w.state.as_str(),
                "pending" | "running" | "verifying" | "awaiting_approval"
            )
        }) {
            self.wave_to(tx, rollout, wave, actor, "canceled", reason.to_owned())
                .await?;
        }
        Ok(())
    }

    /// The `cancel` policy and the operator's cancel: stop everything, end the rollout.
    pub async fn cancel(
        &self,
        tx: &mut PgConnection,
        rollout: &RolloutRow,
        actor: &str,
        reason: String,
    ) -> Result<(), StepError> {
        self.stop(tx, rollout, actor, &reason).await?;
        self.rollout_to(tx, rollout, actor, "canceled", reason)
            .await?;
        Ok(())
    }

    /// The `rollback` policy: stop everything and install the previous release on every
    /// thing whose execution succeeded.
    pub async fn roll_back(
        &self,
        tx: &mut PgConnection,
        rollout: &RolloutRow,
        actor: &str,
        reason: String,
    ) -> Result<(), StepError> {
        self.stop(tx, rollout, actor, &reason).await?;
        let updated: Vec<String> =
            model::things_with_status(tx, &rollout.rollout_id, None, &["SUCCEEDED"])
                .await?
                .into_iter()
                .map(|(thing, _)| thing)
                .collect();
        let (Some(document), false) = (&rollout.previous_document, updated.is_empty()) else {
            self.rollout_to(
                tx,
                rollout,
                actor,
                "rolled_back",
                format!("{reason}; no thing had updated, nothing to roll back"),
            )
            .await?;
            return Ok(());
        };
        let job_id = rollback_job_id(&rollout.rollout_id);
        release::create(
            &self.iot,
            &job_id,
            format!("rollback of rollout {}", rollout.rollout_id),
            &updated,
            document,
            &rollout.job_options,
            self.presigned_url_role_arn.as_deref(),
        )
        .await?;
        model::record_job(tx, &rollout.rollout_id, &job_id, "rollback", None, &updated).await?;
        self.follow_job(&job_id).await;
        self.rollout_to(
            tx,
            rollout,
            actor,
            "rolling_back",
            format!(
                "{reason}; job {job_id} reinstalls the previous release on {} things",
                updated.len()
            ),
        )
        .await?;
        Ok(())
    }

    /// Ends a rollback once its job is over.
    async fn finish_rollback(
        &self,
        tx: &mut PgConnection,
        rollout: &RolloutRow,
    ) -> Result<bool, StepError> {
        let job_id = rollback_job_id(&rollout.rollout_id);
        let job = self.projection.job_summary(&job_id).await?;
        let Some(job) = job else {
            self.follow_job(&job_id).await;
            return Ok(false);
        };
        if job.counts.queued + job.counts.in_progress > 0
            || !matches!(
                job.status,
                flotilla_api::JobStatus::Completed | flotilla_api::JobStatus::Canceled
            )
        {
            return Ok(false);
        }
        self.rollout_to(
            tx,
            rollout,
            ORCHESTRATOR,
            "rolled_back",
            format!(
                "rollback job {job_id} ended: {} of {} things back on the previous release",
                job.counts.succeeded,
                job.counts.total()
            ),
        )
        .await?;
        Ok(true)
    }

    /// A continuous rollout after its last wave: things that joined the target set since get
    /// the release in a follow-up job.
    async fn follow(&self, tx: &mut PgConnection, rollout: &RolloutRow) -> Result<bool, StepError> {
        let set = selection::target_set(&self.iot, &rollout.targets).await?;
        let reached = model::reached(tx, &rollout.rollout_id).await?;
        let new: Vec<String> = set.difference(&reached).cloned().collect();
        if new.is_empty() {
            return Ok(false);
        }
        let count: i64 = sqlx::query_scalar(
            "select count(*) from server.rollout_jobs where rollout_id = $1 and kind = 'continuous'",
        )
        .bind(&rollout.rollout_id)
        .fetch_one(&mut *tx)
        .await?;
        let job_id = format!("{}-c{}", rollout.rollout_id, count + 1);
        let things = match self.iot.describe_job(&job_id).await {
            Ok(job) => release::thing_names(&job.targets),
            Err(IotError::NotFound(_)) => {
                release::create(
                    &self.iot,
                    &job_id,
                    format!("rollout {}: things that joined", rollout.rollout_id),
                    &new,
                    &rollout.document,
                    &rollout.job_options,
                    self.presigned_url_role_arn.as_deref(),
                )
                .await?;
                new
            }
            Err(other) => return Err(other.into()),
        };
        model::record_job(
            tx,
            &rollout.rollout_id,
            &job_id,
            "continuous",
            None,
            &things,
        )
        .await?;
        model::set_reason(
            tx,
            rollout,
            Some(format!(
                "job {job_id} sent the release to {} things that joined",
                things.len()
            )),
        )
        .await?;
        self.follow_job(&job_id).await;
        Ok(false)
    }
}

/// The job of wave `number`.
pub fn wave_job_id(rollout_id: &str, number: i32) -> String {
    format!("{rollout_id}-w{number}")
}

/// The rollback job of a rollout.
pub fn rollback_job_id(rollout_id: &str) -> String {
    format!("{rollout_id}-rollback")
}

/// The health check on the `flotilla` shadow: records the wave's succeeded things whose
/// reported software version (in the inventory) is the release's.
async fn check_reported_health(
    tx: &mut PgConnection,
    rollout: &RolloutRow,
    wave: i32,
    now: DateTime<Utc>,
) -> Result<(), StepError> {
    sqlx::query(
        "update server.rollout_things t set healthy_at = $4
         from server.job_executions e, server.devices d
         where t.rollout_id = $1 and t.wave = $2 and t.healthy_at is null
           and e.job_id = t.job_id and e.thing_name = t.thing_name and e.status = 'SUCCEEDED'
           and d.thing_name = t.thing_name and d.installed_version = $3",
    )
    .bind(&rollout.rollout_id)
    .bind(wave)
    .bind(&rollout.release.version)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
