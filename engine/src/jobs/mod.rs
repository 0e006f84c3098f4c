//! The jobs logic: things, jobs and executions in PostgreSQL, and the device-side Jobs API.
//!
//! Control-plane operations ([`Jobs::create_job`] …) are called by [`crate::control`]; device
//! requests arrive from the [`crate::broker`] through [`Jobs::handle_device_request`], which
//! [`device`] implements. Every state change is one transaction; the MQTT messages it causes (replies,
//! `notify`/`notify-next`, `$aws/events/…`) are published after it commits, so a crash can
//! lose a notification (devices recover by asking) but never leave state half-written.

mod admin;
pub mod cron;
mod device;
mod dynamic;
mod event_config;
mod events;
mod executions;
mod groups;
pub mod job_config;
mod rollout;
mod shadows;
mod targets;
pub mod templates;
mod things;
mod throttle;
mod timeouts;
mod update;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;

pub use admin::{ExecutionDetail, JobFilter, PageToken, check_job_id, check_thing_name};
pub use dynamic::{DynamicGroupUpdate, NewDynamicThingGroup};
pub use event_config::{EVENT_TYPES, EventConfigurations};
pub use groups::{GroupScope, GroupUpdate, NewThingGroup, ThingGroupRow};
pub use things::{ThingFilter, ThingUpdate};
pub use update::JobUpdate;

use crate::EngineConfig;
use crate::artifacts::{ArtifactStore, Presigner};
use crate::broker::{self, Broker};
use crate::clock::{Clock, SystemClock};
use crate::model::{Arns, ExecutionStatus, valid_job_id, valid_thing_name};
use job_config::JobConfig;

/// AWS's limit on a job document.
pub const MAX_DOCUMENT_BYTES: usize = 32 * 1024;

/// Why an operation failed, in terms both APIs can express: the control plane maps it to an
/// exception name and HTTP status, the device API to a `/rejected` error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    ResourceNotFound,
    ResourceAlreadyExists,
    /// A resource with that id exists (`ConflictException`, used where the model says so
    /// instead of `ResourceAlreadyExistsException`).
    Conflict,
    VersionMismatch,
    InvalidStateTransition,
    /// A quota, such as the targets of a job, would be exceeded.
    LimitExceeded,
    /// A fleet-indexing query the engine does not accept (`InvalidQueryException`).
    InvalidQuery,
    Internal,
}

/// A failed operation with a message safe to show the caller.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ServiceError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceNotFound, message)
    }
}

impl From<sqlx::Error> for ServiceError {
    fn from(error: sqlx::Error) -> Self {
        // The cause is logged here, once; callers see a generic message.
        tracing::error!(error = %error, "engine database error: {error}");
        Self::new(ErrorKind::Internal, "internal error")
    }
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// A thing as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ThingRow {
    pub thing_name: String,
    pub thing_id: uuid::Uuid,
    pub thing_type_name: Option<String>,
    pub attributes: Value,
    pub version: i64,
}

/// A job as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    pub job_id: String,
    pub description: Option<String>,
    pub document: String,
    pub target_selection: String,
    pub status: String,
    pub targets: Vec<String>,
    pub config: Value,
    pub created_at: DateTime<Utc>,
    pub last_updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Set by CancelJob.
    pub force_canceled: bool,
    pub reason_code: Option<String>,
    pub comment: Option<String>,
}

/// A job execution as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExecutionRow {
    pub job_id: String,
    pub thing_name: String,
    pub execution_number: i64,
    pub status: String,
    pub status_details: Value,
    pub version_number: i64,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub last_updated_at: DateTime<Utc>,
    /// Canceled by a CancelJob with force=true.
    pub force_canceled: bool,
    /// How many times the execution was retried (jobExecutionsRetryConfig).
    pub retry_attempt: i32,
}

impl ExecutionRow {
    fn status(&self) -> ExecutionStatus {
        ExecutionStatus::parse(&self.status).unwrap_or(ExecutionStatus::Queued)
    }

    /// The key that orders a thing's pending executions as [`PENDING_ORDER`] does in SQL:
    /// IN_PROGRESS first, then by queue time, then by job id byte by byte (`collate "C"`).
    fn pending_order(&self) -> (bool, DateTime<Utc>, &[u8]) {
        (
            self.status != ExecutionStatus::InProgress.as_str(),
            self.queued_at,
            self.job_id.as_bytes(),
        )
    }
}

/// The order of a thing's pending executions, the device API's "next" first: IN_PROGRESS
/// before QUEUED, then oldest first. Job ids compare byte by byte whatever the database's
/// collation, so [`ExecutionRow::pending_order`] can sort lists the same way in memory.
const PENDING_ORDER: &str = "status = 'IN_PROGRESS' desc, queued_at, job_id collate \"C\"";

/// Sorts pending executions by [`PENDING_ORDER`].
fn sort_pending(list: &mut [ExecutionRow]) {
    list.sort_by(|a, b| a.pending_order().cmp(&b.pending_order()));
}

/// Counts of a job's executions by status.
pub type StatusCounts = HashMap<ExecutionStatus, i64>;

/// What CreateJob needs, already decoded from the request.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub job_id: String,
    pub targets: Vec<String>,
    pub document: Option<String>,
    pub description: Option<String>,
    pub target_selection: Option<String>,
    /// The optional configurations, as the request spelled them.
    pub config: serde_json::Map<String, Value>,
}

/// The engine's jobs service. One per engine; shared by the control plane and the broker.
pub struct Jobs {
    pool: PgPool,
    config: Arc<EngineConfig>,
    broker: Broker,
    /// Where every deadline and rate decision takes the time from.
    clock: Arc<dyn Clock>,
    pub arns: Arns,
    /// The `$aws/events/…` types to publish (UpdateEventConfigurations).
    enabled_events: event_config::EnabledEvents,
    /// Device requests over the per-thing rate get `RequestThrottled`.
    throttle: throttle::Throttle,
    /// The artifact store, for `documentSource`, and the presigner that replaces
    /// `${aws:iot:s3-presigned-url:…}` placeholders; without them documents go out as stored.
    artifacts: Option<(ArtifactStore, Presigner)>,
}

/// How long a presigned URL in a job document lives when the job does not say (AWS's
/// `presignedUrlConfig.expiresInSec` default).
const DEFAULT_PRESIGNED_URL_SECONDS: u64 = 3600;

const EXECUTION_COLUMNS: &str = "job_id, thing_name, execution_number, status, status_details, \
     version_number, queued_at, started_at, last_updated_at, force_canceled, \
     failed_retries + timed_out_retries as retry_attempt";
const JOB_COLUMNS: &str = "job_id, description, document, target_selection, status, targets, \
     config, created_at, last_updated_at, completed_at, force_canceled, reason_code, comment";

impl Jobs {
    pub fn new(pool: PgPool, config: Arc<EngineConfig>, broker: Broker) -> Self {
        Self::with_clock(pool, config, broker, Arc::new(SystemClock))
    }

    /// A jobs service whose deadlines and rates follow `clock`.
    pub fn with_clock(
        pool: PgPool,
        config: Arc<EngineConfig>,
        broker: Broker,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let arns = Arns {
            region: config.region.clone(),
            account_id: config.account_id.clone(),
        };
        Self {
            pool,
            config,
            broker,
            clock,
            arns,
            enabled_events: Default::default(),
            throttle: Default::default(),
            artifacts: None,
        }
    }

    /// Reads `documentSource` documents from `store` and presigns placeholder URLs with
    /// `presigner`.
    pub fn with_artifact_store(mut self, store: ArtifactStore, presigner: Presigner) -> Self {
        self.artifacts = Some((store, presigner));
        self
    }

    /// A job's document as a device receives it: every `${aws:iot:s3-presigned-url:…}`
    /// replaced by a fresh presigned URL of the artifact store, valid for the job's
    /// `presignedUrlConfig.expiresInSec` (AWS's default: an hour).
    pub fn device_document(&self, document: &str, config: &Value) -> Value {
        let substituted = match &self.artifacts {
            Some((_, presigner)) => {
                let expires_in = config
                    .get("presignedUrlConfig")
                    .and_then(|c| c.get("expiresInSec"))
                    .and_then(Value::as_u64)
                    .unwrap_or(DEFAULT_PRESIGNED_URL_SECONDS);
                crate::artifacts::placeholder::substitute(
                    document,
                    presigner,
                    std::time::Duration::from_secs(expires_in),
                )
            }
            None => document.to_owned(),
        };
        serde_json::from_str(&substituted).unwrap_or(Value::Null)
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    // ----- things -----

    /// CreateThing. Creating a thing that exists with the same type and attributes returns it
    /// (AWS's idempotency); anything else that exists is a conflict.
    pub async fn create_thing(
        &self,
        name: &str,
        thing_type_name: Option<String>,
        attributes: HashMap<String, String>,
    ) -> Result<ThingRow> {
        if !valid_thing_name(name) {
            return Err(ServiceError::invalid(format!(
                "thingName must be 1-128 characters of [a-zA-Z0-9:_-], got {name:?}"
            )));
        }
        things::check_attributes(&attributes)?;
        let attributes = json!(attributes);
        // A new thing may belong to dynamic groups at once: a membership change.
        let mut tx = self.pool.begin().await?;
        targets::lock_membership_shared(&mut tx).await?;
        let inserted: Option<ThingRow> = sqlx::query_as(
            "insert into engine.things (thing_name, thing_id, thing_type_name, attributes)
             values ($1, $2, $3, $4) on conflict (thing_name) do nothing
             returning thing_name, thing_id, thing_type_name, attributes, version",
        )
        .bind(name)
        .bind(uuid::Uuid::new_v4())
        .bind(&thing_type_name)
        .bind(&attributes)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(thing) = inserted {
            let changed =
                dynamic::refresh_things(&mut tx, std::slice::from_ref(&thing.thing_name)).await?;
            self.finish_membership_change(tx, &changed).await?;
            return Ok(thing);
        }
        tx.rollback().await?;
        let existing = self.thing(name).await?.ok_or_else(|| {
            ServiceError::new(ErrorKind::Internal, "thing vanished during creation")
        })?;
        if existing.thing_type_name == thing_type_name && existing.attributes == attributes {
            Ok(existing)
        } else {
            Err(ServiceError::new(
                ErrorKind::ResourceAlreadyExists,
                format!("Thing {name} already exists with different attributes"),
            ))
        }
    }

    pub async fn thing(&self, name: &str) -> Result<Option<ThingRow>> {
        Ok(sqlx::query_as(
            "select thing_name, thing_id, thing_type_name, attributes, version
             from engine.things where thing_name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    // ----- jobs -----

    /// CreateJob: stores the job and queues one execution per target thing.
    pub async fn create_job(&self, new: NewJob) -> Result<JobRow> {
        if !valid_job_id(&new.job_id) {
            return Err(ServiceError::invalid(
                "jobId must be 1-64 characters of [a-zA-Z0-9_-]",
            ));
        }
        let document = match (&new.document, new.config.get("documentSource")) {
            (Some(document), None) => document.clone(),
            (None, Some(source)) => self.source_document(source).await?,
            _ => {
                return Err(ServiceError::invalid(
                    "exactly one of document and documentSource is required",
                ));
            }
        };
        if document.len() > MAX_DOCUMENT_BYTES {
            return Err(ServiceError::invalid(format!(
                "document is {} bytes; the limit is {MAX_DOCUMENT_BYTES}",
                document.len()
            )));
        }
        match serde_json::from_str::<Value>(&document) {
            Ok(Value::Object(_)) => {}
            _ => return Err(ServiceError::invalid("document must be a JSON object")),
        }
        let target_selection = new.target_selection.as_deref().unwrap_or("SNAPSHOT");
        if !matches!(target_selection, "SNAPSHOT" | "CONTINUOUS") {
            return Err(ServiceError::invalid(
                "targetSelection must be SNAPSHOT or CONTINUOUS",
            ));
        }
        let config = JobConfig::validate_new(&new.config, self.now())?;
        // A job with a start time waits for it; the rollout starts it.
        let scheduled = config
            .scheduling
            .as_ref()
            .is_some_and(|s| s.start_time.is_some());

        let mut tx = self.pool.begin().await?;
        let things = self.resolve_targets(&mut tx, &new.targets).await?;
        let job: Option<JobRow> = sqlx::query_as(&format!(
            "insert into engine.jobs (job_id, description, document, target_selection, status, targets, config)
             values ($1, $2, $3, $4, $5, $6, $7)
             on conflict (job_id) do nothing
             returning {JOB_COLUMNS}"
        ))
        .bind(&new.job_id)
        .bind(&new.description)
        .bind(&document)
        .bind(target_selection)
        .bind(if scheduled { "SCHEDULED" } else { "IN_PROGRESS" })
        .bind(&new.targets)
        .bind(Value::Object(new.config.clone()))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(job) = job else {
            return Err(ServiceError::new(
                ErrorKind::ResourceAlreadyExists,
                format!("Job {} already exists", new.job_id),
            ));
        };
        self.queue_executions(&mut tx, &job.job_id, &things).await?;
        self.begin_rollout(&mut tx, &job.job_id, scheduled).await?;
        // A snapshot of empty target groups has nothing to wait for.
        let completed = if things.is_empty() {
            complete_if_done(&mut *tx, &job.job_id).await?
        } else {
            None
        };
        tx.commit().await?;
        if let Some(job) = &completed {
            self.announce_completed(job).await;
        }
        tracing::info!(job.id = %job.job_id, things = things.len(), "created job {} for {} things", job.job_id, things.len());

        // The first minute of the rollout goes out right away.
        self.advance_rollout_after_change(&job.job_id).await;
        Ok(job)
    }

    /// The things a job's target ARNs name (thing groups with their subgroups), sorted and
    /// without duplicates; every thing and group must exist.
    async fn resolve_targets(
        &self,
        tx: &mut sqlx::PgConnection,
        targets: &[String],
    ) -> Result<Vec<String>> {
        if targets.is_empty() {
            return Err(ServiceError::invalid(
                "targets must name at least one thing or thing group",
            ));
        }
        targets::resolve(tx, &self.arns, targets).await
    }

    /// Queues an execution of the job for each of `things` that has none yet; the rollout
    /// releases them to their devices. Returns how many were queued.
    async fn queue_executions(
        &self,
        tx: &mut sqlx::PgConnection,
        job_id: &str,
        things: &[String],
    ) -> Result<u64> {
        Ok(sqlx::query(
            "insert into engine.job_executions (job_id, thing_name, execution_number, status, queued_at)
             select $1, thing, 1, 'QUEUED', $3 from unnest($2::text[]) as thing
             on conflict (job_id, thing_name) do nothing",
        )
        .bind(job_id)
        .bind(things)
        .bind(self.now())
        .execute(tx)
        .await?
        .rows_affected())
    }

    pub async fn job(&self, job_id: &str) -> Result<JobRow> {
        sqlx::query_as(&format!(
            "select {JOB_COLUMNS} from engine.jobs where job_id = $1"
        ))
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("Job {job_id} not found")))
    }

    /// How many of a job's executions are in each status.
    pub async fn counts(&self, job_id: &str) -> Result<StatusCounts> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "select status, count(*) from engine.job_executions where job_id = $1 group by status",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(status, n)| Some((ExecutionStatus::parse(&status)?, n)))
            .collect())
    }

    /// One page of a job's executions in thing-name order, after `after` (the page token).
    pub async fn executions_for_job(
        &self,
        job_id: &str,
        status: Option<ExecutionStatus>,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Vec<ExecutionRow>> {
        self.job(job_id).await?;
        Ok(sqlx::query_as(&format!(
            "select {EXECUTION_COLUMNS} from engine.job_executions
             where job_id = $1 and ($2::text is null or status = $2) and ($3::text is null or thing_name > $3)
             order by thing_name limit $4"
        ))
        .bind(job_id)
        .bind(status.map(ExecutionStatus::as_str))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    // ----- device side -----

    /// The pending (IN_PROGRESS first, then QUEUED, oldest first) executions of each thing.
    async fn pending(
        &self,
        executor: impl sqlx::PgExecutor<'_>,
        things: &[String],
    ) -> Result<HashMap<String, Vec<ExecutionRow>>> {
        let rows: Vec<ExecutionRow> = sqlx::query_as(&format!(
            "select {EXECUTION_COLUMNS} from engine.job_executions
             where thing_name = any($1) and status in ('QUEUED', 'IN_PROGRESS')
               and notified_at is not null
             order by thing_name, {PENDING_ORDER}"
        ))
        .bind(things)
        .fetch_all(executor)
        .await?;
        let mut by_thing: HashMap<String, Vec<ExecutionRow>> = HashMap::new();
        for row in rows {
            by_thing
                .entry(row.thing_name.clone())
                .or_default()
                .push(row);
        }
        Ok(by_thing)
    }

    /// Publishes `notify` to each of `things`, whose pending lists changed, and `notify-next`
    /// where `next_changed(thing, next job id)` says its next execution changed.
    async fn announce_pending(
        &self,
        things: &[String],
        next_changed: &(dyn Fn(&str, Option<&str>) -> bool + Sync),
    ) {
        let pending = match self.pending(&self.pool, things).await {
            Ok(pending) => pending,
            Err(error) => {
                tracing::warn!(%error, "could not read pending executions to notify devices: {error}");
                return;
            }
        };
        self.announce_pending_lists(things, &pending, next_changed, HashMap::new())
            .await;
    }

    /// [`Jobs::announce_pending`] from lists in hand: `pending` holds each thing's pending
    /// executions in [`PENDING_ORDER`] (a thing without an entry has none), and `documents`
    /// the device documents of jobs already read, keyed by job id; only the others are read.
    async fn announce_pending_lists(
        &self,
        things: &[String],
        pending: &HashMap<String, Vec<ExecutionRow>>,
        next_changed: &(dyn Fn(&str, Option<&str>) -> bool + Sync),
        mut documents: HashMap<String, Value>,
    ) {
        let heads = |thing: &String| pending.get(thing).and_then(|list| list.first());
        let changed: Vec<&String> = things
            .iter()
            .filter(|thing| next_changed(thing, heads(thing).map(|e| e.job_id.as_str())))
            .collect();
        // Only a `notify-next` carries a document; most changes (a device finishing its only
        // job) leave no next execution, and then the documents are not read at all.
        let missing = changed
            .iter()
            .filter_map(|thing| heads(thing))
            .filter(|e| !documents.contains_key(&e.job_id));
        let read = self.documents(missing).await;
        documents.extend(read);
        for thing in things {
            let list = pending.get(thing).map(Vec::as_slice).unwrap_or_default();
            device::publish_notify(&self.broker, thing, list);
        }
        for thing in changed {
            let next = heads(thing);
            let document = next.and_then(|e| documents.get(&e.job_id));
            device::publish_notify_next(&self.broker, thing, next, document);
        }
    }

    /// The documents of the jobs of `executions`, parsed.
    async fn documents<'a>(
        &self,
        executions: impl Iterator<Item = &'a ExecutionRow>,
    ) -> HashMap<String, Value> {
        let mut ids: Vec<String> = executions.map(|e| e.job_id.clone()).collect();
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            return HashMap::new();
        }
        let rows: Vec<(String, String, Value)> = match sqlx::query_as(
            "select job_id, document, config from engine.jobs where job_id = any($1)",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await
        {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, "could not read job documents: {error}");
                return HashMap::new();
            }
        };
        rows.into_iter()
            .map(|(id, document, config)| {
                let document = self.device_document(&document, &config);
                (id, document)
            })
            .collect()
    }
}

/// Marks a SNAPSHOT job COMPLETED once none of its executions is QUEUED or IN_PROGRESS, and
/// returns it if this call completed it (the update's `status = 'IN_PROGRESS'` guard lets only
/// one caller do so). Devices call it after their transaction commits; administrative paths
/// call it inside theirs, under the job's row lock. Should those two ever miss each other's
/// uncommitted change, [`Jobs::complete_finished_jobs`] completes the job on the next tick.
async fn complete_if_done(
    executor: impl sqlx::PgExecutor<'_>,
    job_id: &str,
) -> Result<Option<JobRow>> {
    Ok(sqlx::query_as(&format!(
        "update engine.jobs set status = 'COMPLETED', completed_at = now(), last_updated_at = now()
         where job_id = $1 and status = 'IN_PROGRESS' and target_selection = 'SNAPSHOT'
           and not exists (select 1 from engine.job_executions
                           where job_id = $1 and status in ('QUEUED', 'IN_PROGRESS'))
         returning {JOB_COLUMNS}"
    ))
    .bind(job_id)
    .fetch_optional(executor)
    .await?)
}

impl Jobs {
    /// Completes every SNAPSHOT job left IN_PROGRESS with nothing pending (see
    /// [`complete_if_done`]); part of the engine's periodic tick.
    pub(super) async fn complete_finished_jobs(&self) -> Result<()> {
        let completed: Vec<JobRow> = sqlx::query_as(&format!(
            "update engine.jobs j set status = 'COMPLETED', completed_at = now(), last_updated_at = now()
             where status = 'IN_PROGRESS' and target_selection = 'SNAPSHOT'
               and not exists (select 1 from engine.job_executions e
                               where e.job_id = j.job_id and e.status in ('QUEUED', 'IN_PROGRESS'))
             returning {JOB_COLUMNS}"
        ))
        .fetch_all(&self.pool)
        .await?;
        for job in &completed {
            self.announce_completed(job).await;
        }
        Ok(())
    }

    /// Publishes `$aws/events/job/{jobId}/completed` for a job that just completed.
    async fn announce_completed(&self, job: &JobRow) {
        let counts = self.counts(&job.job_id).await.unwrap_or_default();
        events::job(self, job, "completed", &counts);
        tracing::info!(job.id = %job.job_id, "job {} completed", job.job_id);
    }
}

/// AWS's attribute rules: names `[a-zA-Z0-9_.,@/:#-]{1,128}`, values `[a-zA-Z0-9_.,@/:#=\[\]-]*`
/// up to 800 characters.
pub fn valid_attribute(name: &str, value: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.,@/:#-".contains(&b))
        && value.len() <= 800
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.,@/:#=[]- ".contains(&b))
}

impl Jobs {
    /// Whether a publish is a request to the Jobs device API or the Device Shadow service,
    /// which the broker hands to [`Jobs::handle_device_request`].
    pub fn is_device_request(topic: &str) -> bool {
        device::is_jobs_request(topic) || shadows::is_shadow_request(topic)
    }

    /// Handles one device request and publishes its reply. The broker calls it before reading
    /// the device's next packet, so a device's requests are handled in the order it sent them.
    pub async fn handle_device_request(
        &self,
        identity: &broker::Identity,
        topic: &str,
        payload: bytes::Bytes,
    ) {
        if shadows::is_shadow_request(topic) {
            self.handle_shadow_request(identity, topic, payload).await
        } else {
            device::handle(self, identity, topic, payload).await
        }
    }
}

impl Jobs {
    /// The job document at `source` (CreateJob's `documentSource`): an S3 URL of an object in
    /// the artifact store, read once when the job is created, as AWS does.
    async fn source_document(&self, source: &Value) -> Result<String> {
        let source = source
            .as_str()
            .ok_or_else(|| ServiceError::invalid("documentSource must be a string"))?;
        let Some((store, _)) = &self.artifacts else {
            return Err(ServiceError::invalid(
                "documentSource needs the artifact store, which this engine runs without",
            ));
        };
        let bytes = store
            .read_document(source)
            .await
            .map_err(|error| match error {
                crate::artifacts::ReadError::Io { .. } => {
                    tracing::error!(%error, "reading documentSource {source}: {error}");
                    ServiceError::new(ErrorKind::Internal, "could not read documentSource")
                }
                other => ServiceError::invalid(format!("documentSource: {other}")),
            })?;
        String::from_utf8(bytes).map_err(|_| {
            ServiceError::invalid("documentSource must be a UTF-8 encoded JSON document")
        })
    }
}
