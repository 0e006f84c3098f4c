//! The server's projection of IoT jobs and executions (schema `server`).
//!
//! AWS publishes events only when executions finish and jobs complete, and its list APIs are
//! paginated and throttled, so the UI never reads IoT directly: it reads these tables. Three
//! feeds write them, all through [`Projection::apply`]:
//!
//! - [`events`]: the MQTT subscriber on `$aws/events/job/#`, `$aws/events/jobExecution/#`
//!   and the engine's extension topic `flotilla/events/jobExecution/#` (QUEUED and
//!   IN_PROGRESS changes, which AWS does not announce);
//! - [`reconcile`]: the poller that pages DescribeJob and ListJobExecutionsForJob for active
//!   jobs within a request budget, healing whatever the events missed;
//! - [`Projection::refresh`], which the API calls right after it changes a job.
//!
//! [`rules`] decides whether an observation is newer than what is stored, so duplicates and
//! reordering never move a state backwards. Every applied change is appended, in the same
//! transaction, to `server.changes`, the feed the live stream ([`crate::stream`]) follows.

pub mod events;
pub mod reconcile;
pub mod rules;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use flotilla_api::stream::{ExecutionChange, ExecutionDeleted, JobDeleted};
use flotilla_api::{Execution, ExecutionCounts, Job, JobDetail, JobStatus};
use serde_json::Value;
use sqlx::PgPool;

use crate::iot::{ExecutionSnapshot, Iot, IotError, JobSnapshot};
use rules::{Decision, Incoming, StoredExecution};

pub use events::{EventSource, run_event_subscriber};
pub use reconcile::run_reconciler;

/// The NOTIFY channel of `server.changes`; its payload is the newest change id.
pub const CHANGES_CHANNEL: &str = "server_changes";

/// Reads and writes the projection.
#[derive(Clone, Debug)]
pub struct Projection {
    pool: PgPool,
    iot: Iot,
}

/// Which feed an observation came from (stored with each transition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `$aws/events/…`.
    Event,
    /// The engine's `flotilla/events/…` extension.
    Extension,
    /// DescribeJob / ListJobExecutionsForJob.
    Reconcile,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Self::Event => "event",
            Self::Extension => "extension",
            Self::Reconcile => "reconcile",
        }
    }
}

/// What a feed saw of one execution.
#[derive(Debug, Clone)]
pub struct ExecutionObservation {
    pub job_id: String,
    pub thing_name: String,
    pub status: String,
    pub execution_number: Option<i64>,
    pub version_number: Option<i64>,
    pub status_details: Option<serde_json::Map<String, Value>>,
    pub queued_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    /// When the execution last changed, per the source.
    pub updated_at: Option<DateTime<Utc>>,
    /// When the source made the observation (an event's `timestamp`).
    pub event_time: Option<DateTime<Utc>>,
    pub source: Source,
}

/// What a feed saw of one job. `None` fields are unknown (events carry less than DescribeJob).
#[derive(Debug, Clone)]
pub struct JobObservation {
    pub job_id: String,
    pub job_arn: Option<String>,
    pub status: String,
    pub description: Option<String>,
    pub targets: Option<Vec<String>>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// One observation from any feed.
#[derive(Debug, Clone)]
pub enum Observation {
    Job(JobObservation),
    JobDeleted { job_id: String },
    Execution(ExecutionObservation),
    ExecutionDeleted { job_id: String, thing_name: String },
}

impl Observation {
    pub fn job_id(&self) -> &str {
        match self {
            Self::Job(job) => &job.job_id,
            Self::Execution(execution) => &execution.job_id,
            Self::JobDeleted { job_id } | Self::ExecutionDeleted { job_id, .. } => job_id,
        }
    }
}

/// What [`Projection::apply`] did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Rows appended to `server.changes`.
    pub changes: usize,
    /// Jobs to reconcile: unknown to the projection, or with an observation the rules could
    /// not place.
    pub reconcile: BTreeSet<String>,
}

/// A row of `server.jobs`; the API's own queries read it too.
#[derive(sqlx::FromRow)]
pub(crate) struct JobRow {
    job_id: String,
    job_arn: String,
    status: String,
    description: Option<String>,
    targets: Vec<String>,
    queued: i64,
    in_progress: i64,
    succeeded: i64,
    failed: i64,
    rejected: i64,
    canceled: i64,
    timed_out: i64,
    removed: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
}

pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl From<JobRow> for Job {
    fn from(row: JobRow) -> Self {
        Job {
            job_id: row.job_id,
            job_arn: row.job_arn,
            status: JobStatus::parse(&row.status).unwrap_or(JobStatus::InProgress),
            description: row.description,
            targets: row.targets,
            counts: ExecutionCounts {
                queued: row.queued,
                in_progress: row.in_progress,
                succeeded: row.succeeded,
                failed: row.failed,
                rejected: row.rejected,
                canceled: row.canceled,
                timed_out: row.timed_out,
                removed: row.removed,
            },
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
            completed_at: row.completed_at.map(rfc3339),
        }
    }
}

#[derive(sqlx::FromRow)]
struct ExecutionRow {
    thing_name: String,
    status: String,
    execution_number: Option<i64>,
    queued_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
}

const JOB_COLUMNS: &str = "job_id, job_arn, status, description, targets, queued, in_progress, \
     succeeded, failed, rejected, canceled, timed_out, removed, created_at, updated_at, completed_at";

/// The `server.jobs` count column of an execution status.
fn count_column(status: &str) -> Option<usize> {
    Some(match status {
        "QUEUED" => 0,
        "IN_PROGRESS" => 1,
        "SUCCEEDED" => 2,
        "FAILED" => 3,
        "REJECTED" => 4,
        "CANCELED" => 5,
        "TIMED_OUT" => 6,
        "REMOVED" => 7,
        _ => return None,
    })
}

/// One execution row as the projection will write it.
#[derive(Debug, Clone)]
struct ExecutionState {
    status: String,
    execution_number: Option<i64>,
    version_number: Option<i64>,
    status_details: Value,
    queued_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
}

impl ExecutionState {
    fn stored(&self) -> StoredExecution {
        StoredExecution {
            status: self.status.clone(),
            execution_number: self.execution_number,
            version_number: self.version_number,
            queued_at: self.queued_at,
        }
    }

    /// This state with `observation` applied (the rules said it is newer).
    fn with(&self, observation: &ExecutionObservation, new_attempt: bool) -> Self {
        let keep_old = |new: Option<DateTime<Utc>>, old: Option<DateTime<Utc>>| {
            if new_attempt { new } else { new.or(old) }
        };
        Self {
            status: observation.status.clone(),
            execution_number: observation.execution_number.or(self.execution_number),
            version_number: observation.version_number.or(if new_attempt {
                None
            } else {
                self.version_number
            }),
            status_details: match &observation.status_details {
                Some(details) => Value::Object(details.clone()),
                None if new_attempt => Value::Object(Default::default()),
                None => self.status_details.clone(),
            },
            queued_at: keep_old(observation.queued_at, self.queued_at),
            started_at: keep_old(observation.started_at, self.started_at),
            updated_at: observation
                .updated_at
                .or(observation.event_time)
                .or(self.updated_at),
        }
    }
}

fn fresh_state(observation: &ExecutionObservation) -> ExecutionState {
    ExecutionState {
        status: observation.status.clone(),
        execution_number: observation.execution_number,
        version_number: observation.version_number,
        status_details: Value::Object(observation.status_details.clone().unwrap_or_default()),
        queued_at: observation.queued_at,
        started_at: observation.started_at,
        updated_at: observation.updated_at.or(observation.event_time),
    }
}

/// A change to append to `server.changes`.
struct Change {
    job_id: String,
    kind: &'static str,
    payload: Value,
}

type Key = (String, String);

impl Projection {
    pub fn new(pool: PgPool, iot: Iot) -> Self {
        Self { pool, iot }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn iot(&self) -> &Iot {
        &self.iot
    }

    /// Re-reads one job and all its executions from IoT and applies them. Used by the API
    /// right after it changed the job, so its answer shows the change.
    pub async fn refresh(&self, job_id: &str) -> Result<(), RefreshError> {
        let job = match self.iot.describe_job(job_id).await {
            Ok(job) => job,
            Err(IotError::NotFound(message)) => {
                self.apply(vec![Observation::JobDeleted {
                    job_id: job_id.to_owned(),
                }])
                .await?;
                return Err(IotError::NotFound(message).into());
            }
            Err(other) => return Err(other.into()),
        };
        let executions = self.iot.executions(job_id).await?;
        let mut batch = vec![Observation::Job(job_observation(job))];
        batch.extend(
            executions
                .into_iter()
                .map(|e| Observation::Execution(execution_observation(job_id, e))),
        );
        self.apply(batch).await?;
        Ok(())
    }

    /// Forgets a job that IoT deleted.
    pub async fn forget(&self, job_id: &str) -> sqlx::Result<()> {
        self.apply(vec![Observation::JobDeleted {
            job_id: job_id.to_owned(),
        }])
        .await
        .map(drop)
    }

    /// Applies a batch of observations in one transaction, in order: each one only if the
    /// [`rules`] say it is newer than what is stored. Appends one `server.changes` row per
    /// real change and NOTIFYs the replicas. Safe to run concurrently from several replicas
    /// fed the same events: rows are locked in key order and an insert race retries.
    pub async fn apply(&self, batch: Vec<Observation>) -> sqlx::Result<Applied> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.apply_once(&batch).await {
                Ok(Some(applied)) => return Ok(applied),
                // Another replica inserted one of our new rows first: read it and decide again.
                Ok(None) if attempt < 5 => continue,
                Ok(None) => {
                    return Err(sqlx::Error::Protocol(
                        "projection rows kept changing under a batch".into(),
                    ));
                }
                Err(sqlx::Error::Database(error))
                    if attempt < 5
                        && matches!(error.code().as_deref(), Some("40P01" | "40001")) =>
                {
                    continue;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn apply_once(&self, batch: &[Observation]) -> sqlx::Result<Option<Applied>> {
        let mut applied = Applied::default();
        let mut changes: Vec<Change> = Vec::new();
        let mut tx = self.pool.begin().await?;

        // Jobs first, so executions can refer to them; a deleted job takes its executions.
        let mut deleted_jobs = BTreeSet::new();
        let mut touched_jobs = BTreeSet::new();
        for observation in batch {
            match observation {
                Observation::Job(job) => {
                    deleted_jobs.remove(&job.job_id);
                    if !outlives_tombstone(&mut tx, job).await? {
                        // Late news of a deleted job. Without a creation time it may be a new
                        // job under the same id: reconciliation reads it whole and decides.
                        if job.created_at.is_none() {
                            applied.reconcile.insert(job.job_id.clone());
                        }
                        continue;
                    }
                    match apply_job(&mut tx, job).await? {
                        JobApplied::Unchanged => {}
                        JobApplied::Updated => {
                            touched_jobs.insert(job.job_id.clone());
                        }
                        // An event told us of a job we did not know: DescribeJob fills it in.
                        JobApplied::Inserted => {
                            touched_jobs.insert(job.job_id.clone());
                            if job.job_arn.is_none() {
                                applied.reconcile.insert(job.job_id.clone());
                            }
                        }
                    }
                }
                Observation::JobDeleted { job_id } => {
                    let gone: Option<Option<DateTime<Utc>>> = sqlx::query_scalar(
                        "delete from server.jobs where job_id = $1 returning created_at",
                    )
                    .bind(job_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    sqlx::query(
                        "insert into server.deleted_jobs (job_id, created_at) values ($1, $2)
                         on conflict (job_id) do update set
                             created_at = coalesce(excluded.created_at, deleted_jobs.created_at),
                             deleted_at = now()",
                    )
                    .bind(job_id)
                    .bind(gone.flatten())
                    .execute(&mut *tx)
                    .await?;
                    touched_jobs.remove(job_id);
                    deleted_jobs.insert(job_id.clone());
                    if gone.is_some() {
                        changes.push(Change {
                            job_id: job_id.clone(),
                            kind: "job_deleted",
                            payload: serde_json::to_value(JobDeleted {
                                job_id: job_id.clone(),
                            })
                            .unwrap_or_default(),
                        });
                    }
                }
                _ => {}
            }
        }

        // Executions are kept only for jobs the projection knows (locked, so they cannot be
        // deleted under this batch). Those of unknown jobs — not yet stored, or deleted and
        // hearing late news — are left to reconciliation, which reads the job whole or finds
        // it gone, so no job appears from an execution event alone.
        let mut job_ids: Vec<String> = batch
            .iter()
            .filter_map(|o| match o {
                Observation::Execution(e) => Some(e.job_id.clone()),
                Observation::ExecutionDeleted { job_id, .. } => Some(job_id.clone()),
                _ => None,
            })
            .collect();
        job_ids.sort();
        job_ids.dedup();
        let known: BTreeSet<String> = if job_ids.is_empty() {
            BTreeSet::new()
        } else {
            sqlx::query_scalar(
                "select job_id from server.jobs where job_id = any($1) order by job_id for key share",
            )
            .bind(&job_ids)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect()
        };
        applied.reconcile.extend(
            job_ids
                .into_iter()
                .filter(|j| !known.contains(j) && !deleted_jobs.contains(j)),
        );
        let executions: Vec<&ExecutionObservation> = batch
            .iter()
            .filter_map(|o| match o {
                Observation::Execution(e) if known.contains(&e.job_id) => Some(e),
                _ => None,
            })
            .collect();
        let removals: Vec<Key> = batch
            .iter()
            .filter_map(|o| match o {
                Observation::ExecutionDeleted { job_id, thing_name } if known.contains(job_id) => {
                    Some((job_id.clone(), thing_name.clone()))
                }
                _ => None,
            })
            .collect();
        if !executions.is_empty() || !removals.is_empty() {
            let outcome = apply_executions(&mut tx, &executions, &removals).await?;
            let Some(outcome) = outcome else {
                tx.rollback().await?;
                return Ok(None);
            };
            applied.reconcile.extend(outcome.ambiguous);
            for (job_id, delta) in &outcome.count_deltas {
                if delta.iter().any(|d| *d != 0) {
                    sqlx::query(
                        "update server.jobs set queued = queued + $2, in_progress = in_progress + $3,
                             succeeded = succeeded + $4, failed = failed + $5,
                             rejected = rejected + $6, canceled = canceled + $7,
                             timed_out = timed_out + $8, removed = removed + $9
                         where job_id = $1",
                    )
                    .bind(job_id)
                    .bind(delta[0])
                    .bind(delta[1])
                    .bind(delta[2])
                    .bind(delta[3])
                    .bind(delta[4])
                    .bind(delta[5])
                    .bind(delta[6])
                    .bind(delta[7])
                    .execute(&mut *tx)
                    .await?;
                    touched_jobs.insert(job_id.clone());
                }
            }
            changes.extend(outcome.changes);
        }

        // A job's change carries its current row, counts included.
        if !touched_jobs.is_empty() {
            let ids: Vec<String> = touched_jobs.into_iter().collect();
            let rows: Vec<JobRow> = sqlx::query_as(&format!(
                "select {JOB_COLUMNS} from server.jobs where job_id = any($1) order by job_id"
            ))
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
            for row in rows {
                let job = Job::from(row);
                changes.push(Change {
                    job_id: job.job_id.clone(),
                    kind: "job",
                    payload: serde_json::to_value(&job).unwrap_or_default(),
                });
            }
        }

        applied.changes = changes.len();
        if !changes.is_empty() {
            append_changes(&mut tx, changes).await?;
        }
        tx.commit().await?;
        Ok(Some(applied))
    }

    /// The newest jobs first.
    pub async fn list_jobs(&self, limit: i64) -> sqlx::Result<Vec<Job>> {
        let rows: Vec<JobRow> = sqlx::query_as(&format!(
            "select {JOB_COLUMNS} from server.jobs order by created_at desc, job_id limit $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Job::from).collect())
    }

    /// One job with its counts, without its executions; `None` if the projection lacks it.
    pub async fn job_summary(&self, job_id: &str) -> sqlx::Result<Option<Job>> {
        let row: Option<JobRow> = sqlx::query_as(&format!(
            "select {JOB_COLUMNS} from server.jobs where job_id = $1"
        ))
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Job::from))
    }

    /// One page of a job's executions in thing-name order after `after`, optionally only
    /// those in `status` (keyset pagination on the projection's indexes).
    pub async fn executions_page(
        &self,
        job_id: &str,
        status: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> sqlx::Result<Vec<Execution>> {
        let rows: Vec<ExecutionRow> = sqlx::query_as(
            "select thing_name, status, execution_number, queued_at, started_at, updated_at
                 from server.job_executions
                 where job_id = $1 and ($2::text is null or status = $2)
                   and ($3::text is null or thing_name > $3)
                 order by thing_name limit $4",
        )
        .bind(job_id)
        .bind(status)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(execution_view).collect())
    }

    /// One job with its executions, or `None` if the projection does not have it.
    pub async fn job(&self, job_id: &str) -> sqlx::Result<Option<JobDetail>> {
        let Some(job) = self.job_summary(job_id).await? else {
            return Ok(None);
        };
        let executions: Vec<ExecutionRow> = sqlx::query_as(
            "select thing_name, status, execution_number, queued_at, started_at, updated_at
                 from server.job_executions where job_id = $1 order by thing_name",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(JobDetail {
            job,
            executions: executions.into_iter().map(execution_view).collect(),
        }))
    }

    /// Jobs the projection still considers running, least recently synchronised first.
    async fn active_job_ids(&self) -> sqlx::Result<Vec<String>> {
        sqlx::query_scalar(
            "select job_id from server.jobs
             where status in ('IN_PROGRESS', 'SCHEDULED', 'CANCELLATION_IN_PROGRESS', 'DELETION_IN_PROGRESS')
             order by synced_at, job_id",
        )
        .fetch_all(&self.pool)
        .await
    }

    /// Records that reconciliation read `job_id` completely.
    async fn mark_synced(&self, job_id: &str) -> sqlx::Result<()> {
        sqlx::query("update server.jobs set synced_at = now() where job_id = $1")
            .bind(job_id)
            .execute(&self.pool)
            .await
            .map(drop)
    }

    /// Drops feed entries older than a day: clients away longer reload instead of resuming.
    /// Tombstones of deleted jobs go after a day too: no news is that late.
    async fn prune_changes(&self) -> sqlx::Result<u64> {
        sqlx::query("delete from server.deleted_jobs where deleted_at < now() - interval '1 day'")
            .execute(&self.pool)
            .await?;
        Ok(
            sqlx::query("delete from server.changes where created_at < now() - interval '1 day'")
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}

fn execution_view(e: ExecutionRow) -> Execution {
    Execution {
        thing_name: e.thing_name,
        status: e.status,
        execution_number: e.execution_number,
        queued_at: e.queued_at.map(rfc3339),
        started_at: e.started_at.map(rfc3339),
        updated_at: e.updated_at.map(rfc3339),
    }
}

/// A DescribeJob answer as an observation.
pub(crate) fn job_observation(job: JobSnapshot) -> JobObservation {
    JobObservation {
        job_id: job.job_id,
        job_arn: Some(job.job_arn),
        status: job.status,
        description: job.description,
        targets: Some(job.targets),
        created_at: Some(job.created_at),
        updated_at: Some(job.updated_at),
        completed_at: job.completed_at,
    }
}

/// A ListJobExecutionsForJob summary as an observation.
pub(crate) fn execution_observation(
    job_id: &str,
    execution: ExecutionSnapshot,
) -> ExecutionObservation {
    ExecutionObservation {
        job_id: job_id.to_owned(),
        thing_name: execution.thing_name,
        status: execution.status,
        execution_number: execution.execution_number,
        version_number: None,
        status_details: None,
        queued_at: execution.queued_at,
        started_at: execution.started_at,
        updated_at: execution.updated_at,
        event_time: None,
        source: Source::Reconcile,
    }
}

/// What [`apply_job`] did.
enum JobApplied {
    Unchanged,
    Updated,
    Inserted,
}

/// Upserts one job if the observation is newer.
/// Whether `job` may enter the projection despite a tombstone for its id: only a job created
/// after the deleted one (IoT's clock against IoT's clock). It then clears the tombstone.
async fn outlives_tombstone(
    tx: &mut sqlx::PgConnection,
    job: &JobObservation,
) -> sqlx::Result<bool> {
    let tombstone: Option<(Option<DateTime<Utc>>, DateTime<Utc>)> =
        sqlx::query_as("select created_at, deleted_at from server.deleted_jobs where job_id = $1")
            .bind(&job.job_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((deleted_created_at, deleted_at)) = tombstone else {
        return Ok(true);
    };
    let newer = job
        .created_at
        .is_some_and(|created| created > deleted_created_at.unwrap_or(deleted_at));
    if newer {
        sqlx::query("delete from server.deleted_jobs where job_id = $1")
            .bind(&job.job_id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(newer)
}

async fn apply_job(tx: &mut sqlx::PgConnection, job: &JobObservation) -> sqlx::Result<JobApplied> {
    let current: Option<(String, String, DateTime<Utc>)> = sqlx::query_as(
        "select status, job_arn, updated_at from server.jobs where job_id = $1 for update",
    )
    .bind(&job.job_id)
    .fetch_optional(&mut *tx)
    .await?;
    let now = Utc::now();
    if let Some((status, arn, updated_at)) = &current {
        let (from, to) = (rules::job_rank(status), rules::job_rank(&job.status));
        let newer = to > from
            || (to == from && job.updated_at.is_some_and(|at| at > *updated_at))
            // A placeholder made for an execution event learns its details.
            || (arn.is_empty() && job.job_arn.is_some());
        if !newer {
            return Ok(JobApplied::Unchanged);
        }
        sqlx::query(
            "update server.jobs set
                 status = case when $2::text is null then status else $2 end,
                 job_arn = coalesce(nullif($3, ''), job_arn),
                 description = coalesce($4, description),
                 targets = coalesce($5, targets),
                 created_at = coalesce($6, created_at),
                 updated_at = greatest(updated_at, coalesce($7, updated_at)),
                 completed_at = coalesce($8, completed_at)
             where job_id = $1",
        )
        .bind(&job.job_id)
        .bind((to >= from || arn.is_empty()).then_some(&job.status))
        .bind(&job.job_arn)
        .bind(&job.description)
        .bind(&job.targets)
        .bind(job.created_at)
        .bind(job.updated_at)
        .bind(job.completed_at)
        .execute(&mut *tx)
        .await?;
        Ok(JobApplied::Updated)
    } else {
        let inserted = sqlx::query(
            "insert into server.jobs (job_id, job_arn, status, description, targets, created_at,
                 updated_at, completed_at, synced_at)
             values ($1, coalesce($2, ''), $3, $4, coalesce($5, '{}'), $6, $7, $8, '-infinity')
             on conflict (job_id) do nothing",
        )
        .bind(&job.job_id)
        .bind(&job.job_arn)
        .bind(&job.status)
        .bind(&job.description)
        .bind(&job.targets)
        .bind(job.created_at.unwrap_or(now))
        .bind(job.updated_at.unwrap_or(now))
        .bind(job.completed_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        Ok(if inserted > 0 {
            JobApplied::Inserted
        } else {
            JobApplied::Unchanged
        })
    }
}

struct ExecutionOutcome {
    changes: Vec<Change>,
    count_deltas: BTreeMap<String, [i64; 8]>,
    ambiguous: BTreeSet<String>,
}

struct Transition {
    key: Key,
    execution_number: Option<i64>,
    from: Option<String>,
    to: String,
    at: DateTime<Utc>,
    source: Source,
}

/// Applies execution observations and removals; `None` when another writer inserted one of
/// the rows this batch found missing (the caller retries the batch).
async fn apply_executions(
    tx: &mut sqlx::PgConnection,
    observations: &[&ExecutionObservation],
    removals: &[Key],
) -> sqlx::Result<Option<ExecutionOutcome>> {
    let mut keys: Vec<Key> = observations
        .iter()
        .map(|o| (o.job_id.clone(), o.thing_name.clone()))
        .chain(removals.iter().cloned())
        .collect();
    keys.sort();
    keys.dedup();
    let (job_ids, things): (Vec<String>, Vec<String>) = keys.iter().cloned().unzip();

    // Locked in key order, so concurrent batches cannot deadlock on each other.
    #[derive(sqlx::FromRow)]
    struct Stored {
        job_id: String,
        thing_name: String,
        status: String,
        execution_number: Option<i64>,
        version_number: Option<i64>,
        status_details: Value,
        queued_at: Option<DateTime<Utc>>,
        started_at: Option<DateTime<Utc>>,
        updated_at: Option<DateTime<Utc>>,
    }
    let stored: Vec<Stored> = sqlx::query_as(
        "select e.job_id, e.thing_name, e.status, e.execution_number, e.version_number,
                e.status_details, e.queued_at, e.started_at, e.updated_at
         from server.job_executions e
         join unnest($1::text[], $2::text[]) as k(job_id, thing_name)
           on e.job_id = k.job_id and e.thing_name = k.thing_name
         order by e.job_id, e.thing_name
         for update of e",
    )
    .bind(&job_ids)
    .bind(&things)
    .fetch_all(&mut *tx)
    .await?;
    let original: HashMap<Key, ExecutionState> = stored
        .into_iter()
        .map(|s| {
            (
                (s.job_id, s.thing_name),
                ExecutionState {
                    status: s.status,
                    execution_number: s.execution_number,
                    version_number: s.version_number,
                    status_details: s.status_details,
                    queued_at: s.queued_at,
                    started_at: s.started_at,
                    updated_at: s.updated_at,
                },
            )
        })
        .collect();

    // Decide in memory, in arrival order; only the final state of each row is written.
    let mut current: HashMap<Key, Option<ExecutionState>> = original
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    let mut dirty: BTreeSet<Key> = BTreeSet::new();
    let mut transitions: Vec<Transition> = Vec::new();
    let mut changes: Vec<Change> = Vec::new();
    let mut ambiguous = BTreeSet::new();
    let removal_set: BTreeSet<&Key> = removals.iter().collect();
    for observation in observations {
        let key = (observation.job_id.clone(), observation.thing_name.clone());
        let slot = current.entry(key.clone()).or_insert(None);
        let stored = slot.as_ref().map(ExecutionState::stored);
        let decision = rules::decide(
            stored.as_ref(),
            Incoming {
                status: &observation.status,
                execution_number: observation.execution_number,
                version_number: observation.version_number,
                event_time: observation.event_time,
            },
        );
        let transition = match decision {
            Decision::Apply { transition } => transition,
            Decision::Ignore => continue,
            Decision::Ambiguous => {
                ambiguous.insert(observation.job_id.clone());
                continue;
            }
        };
        let previous = slot.clone();
        let new_attempt = match (&previous, observation.execution_number) {
            (Some(p), Some(n)) => p.execution_number.is_some_and(|s| n > s),
            _ => false,
        };
        let next = match &previous {
            Some(p) => p.with(observation, new_attempt),
            None => fresh_state(observation),
        };
        let at = observation
            .updated_at
            .or(observation.event_time)
            .unwrap_or_else(Utc::now);
        if transition {
            transitions.push(Transition {
                key: key.clone(),
                execution_number: next.execution_number,
                from: previous
                    .as_ref()
                    .filter(|_| !new_attempt)
                    .map(|p| p.status.clone()),
                to: next.status.clone(),
                at,
                source: observation.source,
            });
        }
        changes.push(Change {
            job_id: key.0.clone(),
            kind: "execution",
            payload: serde_json::to_value(ExecutionChange {
                job_id: key.0.clone(),
                thing_name: key.1.clone(),
                status: next.status.clone(),
                previous_status: previous.as_ref().map(|p| p.status.clone()),
                execution_number: next.execution_number,
                version_number: next.version_number,
                status_details: match &next.status_details {
                    Value::Object(map) => map.clone(),
                    _ => Default::default(),
                },
                changed_at: rfc3339(at),
            })
            .unwrap_or_default(),
        });
        *slot = Some(next);
        dirty.insert(key);
    }
    for key in &removal_set {
        if let Some(slot) = current.get_mut(*key)
            && slot.take().is_some()
        {
            dirty.insert((*key).clone());
            changes.push(Change {
                job_id: key.0.clone(),
                kind: "execution_deleted",
                payload: serde_json::to_value(ExecutionDeleted {
                    job_id: key.0.clone(),
                    thing_name: key.1.clone(),
                })
                .unwrap_or_default(),
            });
        }
    }

    // Counts move from each row's original status to its final one.
    let mut count_deltas: BTreeMap<String, [i64; 8]> = BTreeMap::new();
    let (mut inserts, mut updates, mut deletes) = (Vec::new(), Vec::new(), Vec::new());
    for key in &dirty {
        let before = original.get(key);
        let after = current.get(key).and_then(Option::as_ref);
        let delta = count_deltas.entry(key.0.clone()).or_default();
        if let Some(column) = before.and_then(|b| count_column(&b.status)) {
            delta[column] -= 1;
        }
        if let Some(column) = after.and_then(|a| count_column(&a.status)) {
            delta[column] += 1;
        }
        match (before, after) {
            (None, Some(state)) => inserts.push((key, state)),
            (Some(_), Some(state)) => updates.push((key, state)),
            (Some(_), None) => deletes.push(key),
            (None, None) => {}
        }
    }

    if !inserts.is_empty() {
        let expected = inserts.len() as u64;
        let inserted = write_executions(tx, &inserts, true).await?;
        if inserted != expected {
            return Ok(None);
        }
    }
    if !updates.is_empty() {
        write_executions(tx, &updates, false).await?;
    }
    if !deletes.is_empty() {
        let (jobs, things): (Vec<String>, Vec<String>) =
            deletes.iter().map(|k| (*k).clone()).unzip();
        sqlx::query(
            "delete from server.job_executions e using unnest($1::text[], $2::text[]) as k(job_id, thing_name)
             where e.job_id = k.job_id and e.thing_name = k.thing_name",
        )
        .bind(&jobs)
        .bind(&things)
        .execute(&mut *tx)
        .await?;
    }
    if !transitions.is_empty() {
        let mut jobs = Vec::with_capacity(transitions.len());
        let mut things = Vec::with_capacity(transitions.len());
        let mut numbers = Vec::with_capacity(transitions.len());
        let mut froms = Vec::with_capacity(transitions.len());
        let mut tos = Vec::with_capacity(transitions.len());
        let mut ats = Vec::with_capacity(transitions.len());
        let mut sources = Vec::with_capacity(transitions.len());
        for t in transitions {
            jobs.push(t.key.0);
            things.push(t.key.1);
            numbers.push(t.execution_number);
            froms.push(t.from);
            tos.push(t.to);
            ats.push(t.at);
            sources.push(t.source.as_str());
        }
        sqlx::query(
            "insert into server.execution_transitions
                 (job_id, thing_name, execution_number, from_status, to_status, changed_at, source)
             select * from unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                                  $6::timestamptz[], $7::text[])",
        )
        .bind(&jobs)
        .bind(&things)
        .bind(&numbers)
        .bind(&froms)
        .bind(&tos)
        .bind(&ats)
        .bind(&sources)
        .execute(&mut *tx)
        .await?;
    }
    Ok(Some(ExecutionOutcome {
        changes,
        count_deltas,
        ambiguous,
    }))
}

/// Inserts (`insert`, skipping rows that appeared meanwhile) or updates execution rows;
/// returns how many were written.
async fn write_executions(
    tx: &mut sqlx::PgConnection,
    rows: &[(&Key, &ExecutionState)],
    insert: bool,
) -> sqlx::Result<u64> {
    let n = rows.len();
    let (mut jobs, mut things, mut statuses) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut numbers, mut versions, mut details) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut queued, mut started, mut updated) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (key, state) in rows {
        jobs.push(key.0.as_str());
        things.push(key.1.as_str());
        statuses.push(state.status.as_str());
        numbers.push(state.execution_number);
        versions.push(state.version_number);
        details.push(state.status_details.clone());
        queued.push(state.queued_at);
        started.push(state.started_at);
        updated.push(state.updated_at);
    }
    let sql = if insert {
        "insert into server.job_executions (job_id, thing_name, status, execution_number,
             version_number, status_details, queued_at, started_at, updated_at)
         select * from unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[],
                              $6::jsonb[], $7::timestamptz[], $8::timestamptz[], $9::timestamptz[])
         on conflict (job_id, thing_name) do nothing"
    } else {
        "update server.job_executions e set status = k.status,
             execution_number = k.execution_number, version_number = k.version_number,
             status_details = k.status_details, queued_at = k.queued_at,
             started_at = k.started_at, updated_at = k.updated_at, observed_at = now()
         from unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[],
                     $6::jsonb[], $7::timestamptz[], $8::timestamptz[], $9::timestamptz[])
              as k(job_id, thing_name, status, execution_number, version_number, status_details,
                   queued_at, started_at, updated_at)
         where e.job_id = k.job_id and e.thing_name = k.thing_name"
    };
    Ok(sqlx::query(sql)
        .bind(&jobs)
        .bind(&things)
        .bind(&statuses)
        .bind(&numbers)
        .bind(&versions)
        .bind(&details)
        .bind(&queued)
        .bind(&started)
        .bind(&updated)
        .execute(&mut *tx)
        .await?
        .rows_affected())
}

/// Appends `changes` to the feed and NOTIFYs the replicas. Writers take one advisory lock
/// until they commit, so feed ids become visible in increasing order: a client that saw id
/// `n` has seen every id below it, which is what makes resuming from Last-Event-ID gap-free.
async fn append_changes(tx: &mut sqlx::PgConnection, changes: Vec<Change>) -> sqlx::Result<()> {
    let n = changes.len();
    let (mut jobs, mut kinds, mut payloads) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for change in changes {
        jobs.push(change.job_id);
        kinds.push(change.kind);
        payloads.push(change.payload);
    }
    sqlx::query("select pg_advisory_xact_lock(hashtext('server.changes'))")
        .execute(&mut *tx)
        .await?;
    let newest: Option<i64> = sqlx::query_scalar(
        "with appended as (
             insert into server.changes (job_id, kind, payload)
             select * from unnest($1::text[], $2::text[], $3::jsonb[]) returning id)
         select max(id) from appended",
    )
    .bind(&jobs)
    .bind(&kinds)
    .bind(&payloads)
    .fetch_one(&mut *tx)
    .await?;
    if let Some(newest) = newest {
        sqlx::query("select pg_notify($1, $2)")
            .bind(CHANGES_CHANNEL)
            .bind(newest.to_string())
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// A refresh that failed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Iot(#[from] IotError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}
