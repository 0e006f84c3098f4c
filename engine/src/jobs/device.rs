//! The device side of AWS IoT Jobs over MQTT: `$aws/things/{thing}/jobs/…` requests, their
//! `/accepted` and `/rejected` replies, and the `notify`/`notify-next` messages, with the
//! payloads and error codes of the AWS developer guide ("Jobs device MQTT API").

use std::collections::HashMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::job_config::JobConfig;
use super::{ErrorKind, ExecutionRow, Jobs, ServiceError, events};
use crate::broker::{Broker, Identity};
use crate::model::ExecutionStatus;

/// The error codes of a `/rejected` reply.
#[derive(Debug, Clone, Copy)]
enum Code {
    InvalidTopic,
    InvalidJson,
    InvalidRequest,
    InvalidStateTransition,
    ResourceNotFound,
    VersionMismatch,
    InternalError,
    RequestThrottled,
    TerminalStateReached,
}

impl From<ErrorKind> for Code {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::InvalidRequest
            | ErrorKind::ResourceAlreadyExists
            | ErrorKind::Conflict
            | ErrorKind::LimitExceeded
            | ErrorKind::InvalidQuery => Code::InvalidRequest,
            ErrorKind::ResourceNotFound => Code::ResourceNotFound,
            ErrorKind::VersionMismatch => Code::VersionMismatch,
            ErrorKind::InvalidStateTransition => Code::InvalidStateTransition,
            ErrorKind::Internal => Code::InternalError,
        }
    }
}

/// A failed request: the code, a message, and for some codes the execution's current state.
struct Rejection {
    code: Code,
    message: String,
    execution_state: Option<Value>,
}

impl From<ServiceError> for Rejection {
    fn from(error: ServiceError) -> Self {
        Self {
            code: error.kind.into(),
            message: error.message,
            execution_state: None,
        }
    }
}

impl Rejection {
    fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            execution_state: None,
        }
    }
}

/// Splits `$aws/things/{thing}/jobs/{operation}` into the thing and the operation.
fn split_topic(topic: &str) -> Option<(&str, &str)> {
    let rest = topic.strip_prefix("$aws/things/")?;
    let (thing, operation) = rest.split_once("/jobs/")?;
    Some((thing, operation))
}

/// Whether a publish is a request to the Jobs service (which the broker must not route).
pub(super) fn is_jobs_request(topic: &str) -> bool {
    split_topic(topic).is_some()
}

/// Handles one request and publishes its reply.
pub(super) async fn handle(jobs: &Jobs, identity: &Identity, topic: &str, payload: Bytes) {
    let Some((thing, operation)) = split_topic(topic) else {
        return;
    };
    // A device may only act for itself; the broker's ACL already ensures it, this keeps the
    // guarantee local to the code that relies on it.
    if let Identity::Thing(own) = identity
        && own != thing
    {
        return;
    }

    let request: Value = if payload.is_empty() {
        Value::Object(Map::new())
    } else {
        match serde_json::from_slice(&payload) {
            Ok(Value::Object(map)) => Value::Object(map),
            _ => {
                let rejection = Rejection::new(Code::InvalidJson, "payload is not a JSON object");
                return reply(&jobs.broker, topic, None, Err(rejection));
            }
        }
    };
    let client_token = request
        .get("clientToken")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if client_token.as_ref().is_some_and(|t| t.len() > 64) {
        let rejection = Rejection::new(
            Code::InvalidRequest,
            "clientToken is longer than 64 characters",
        );
        return reply(&jobs.broker, topic, None, Err(rejection));
    }

    if !jobs.throttle.admit(thing) {
        let rejection = Rejection::new(
            Code::RequestThrottled,
            format!(
                "{thing} is over {} requests per second",
                super::throttle::REQUESTS_PER_SECOND
            ),
        );
        return reply(&jobs.broker, topic, client_token, Err(rejection));
    }

    let result = match operation.split('/').collect::<Vec<_>>().as_slice() {
        ["get"] => get_pending(jobs, thing).await,
        ["start-next"] => match parse(request) {
            Ok(request) => start_next(jobs, thing, request).await,
            Err(rejection) => Err(rejection),
        },
        [job_id, "get"] => match parse(request) {
            Ok(request) => describe(jobs, thing, job_id, request).await,
            Err(rejection) => Err(rejection),
        },
        [job_id, "update"] => match parse(request) {
            Ok(request) => update(jobs, thing, job_id, request).await,
            Err(rejection) => Err(rejection),
        },
        _ => Err(Rejection::new(
            Code::InvalidTopic,
            format!("{topic} is not a Jobs API topic"),
        )),
    };
    reply(&jobs.broker, topic, client_token, result);
}

fn parse<T: serde::de::DeserializeOwned>(request: Value) -> Result<T, Rejection> {
    serde_json::from_value(request)
        .map_err(|error| Rejection::new(Code::InvalidRequest, format!("invalid request: {error}")))
}

fn reply(
    broker: &Broker,
    topic: &str,
    client_token: Option<String>,
    result: Result<Map<String, Value>, Rejection>,
) {
    let timestamp = json!(chrono::Utc::now().timestamp());
    let (suffix, mut body) = match result {
        Ok(body) => ("accepted", body),
        Err(rejection) => {
            let mut body = Map::new();
            body.insert("code".into(), json!(format!("{:?}", rejection.code)));
            body.insert("message".into(), json!(rejection.message));
            if let Some(state) = rejection.execution_state {
                body.insert("executionState".into(), state);
            }
            ("rejected", body)
        }
    };
    body.insert("timestamp".into(), timestamp);
    if let Some(token) = client_token {
        body.insert("clientToken".into(), json!(token));
    }
    broker.publish(
        &format!("{topic}/{suffix}"),
        Value::Object(body).to_string(),
    );
}

/// Checks statusDetails against AWS's limits: at most 10 entries (the guide's documented
/// quota), keys `[a-zA-Z0-9:_-]{1,128}`, values 1–1024 printable characters.
pub(super) fn check_status_details(
    details: &Option<HashMap<String, String>>,
) -> Result<(), ServiceError> {
    let Some(details) = details else {
        return Ok(());
    };
    if details.len() > 10 {
        return Err(ServiceError::invalid(
            "statusDetails has more than 10 entries",
        ));
    }
    for (key, value) in details {
        let key_ok = (1..=128).contains(&key.len())
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'));
        let value_ok =
            (1..=1024).contains(&value.chars().count()) && !value.chars().any(char::is_control);
        if !key_ok || !value_ok {
            return Err(ServiceError::invalid(format!(
                "statusDetails entry {key:?} is invalid: keys are 1-128 of [a-zA-Z0-9:_-], values 1-1024 printable characters"
            )));
        }
    }
    Ok(())
}

fn check_step_timeout(minutes: Option<i64>) -> Result<(), Rejection> {
    match minutes {
        Some(m) if !(1..=10080).contains(&m) => Err(Rejection::new(
            Code::InvalidRequest,
            "stepTimeoutInMinutes must be between 1 and 10080",
        )),
        _ => Ok(()),
    }
}

fn seconds(t: chrono::DateTime<chrono::Utc>) -> Value {
    json!(t.timestamp())
}

/// The `JobExecutionSummary` of the device API.
fn summary(execution: &ExecutionRow) -> Value {
    let mut summary = json!({
        "jobId": execution.job_id,
        "queuedAt": seconds(execution.queued_at),
        "lastUpdatedAt": seconds(execution.last_updated_at),
        "versionNumber": execution.version_number,
        "executionNumber": execution.execution_number,
    });
    if let Some(started) = execution.started_at {
        summary["startedAt"] = seconds(started);
    }
    summary
}

/// The `JobExecution` of the device API.
fn execution_json(execution: &ExecutionRow, document: Option<&Value>) -> Value {
    let mut value = summary(execution);
    value["thingName"] = json!(execution.thing_name);
    value["status"] = json!(execution.status);
    value["statusDetails"] = execution.status_details.clone();
    if let Some(document) = document {
        value["jobDocument"] = document.clone();
    }
    value
}

fn execution_state(execution: &ExecutionRow) -> Value {
    json!({
        "status": execution.status,
        "statusDetails": execution.status_details,
        "versionNumber": execution.version_number,
    })
}

/// How many pending executions a `notify` message lists at most (the developer guide's
/// `ListNotification`: "no more than 10").
const NOTIFY_LIMIT: usize = 10;

/// `$aws/things/{thing}/jobs/notify`: the pending list changed. `pending` is ordered
/// IN_PROGRESS first, then by queue time, so the first ten are the ones AWS would list.
pub(super) fn publish_notify(broker: &Broker, thing: &str, pending: &[ExecutionRow]) {
    let pending = &pending[..pending.len().min(NOTIFY_LIMIT)];
    let mut jobs = Map::new();
    for status in [ExecutionStatus::InProgress, ExecutionStatus::Queued] {
        let list: Vec<Value> = pending
            .iter()
            .filter(|e| e.status == status.as_str())
            .map(summary)
            .collect();
        if !list.is_empty() {
            jobs.insert(status.as_str().to_owned(), Value::Array(list));
        }
    }
    let body = json!({ "timestamp": chrono::Utc::now().timestamp(), "jobs": jobs });
    broker.publish(
        &format!("$aws/things/{thing}/jobs/notify"),
        body.to_string(),
    );
}

/// `$aws/things/{thing}/jobs/notify-next`: the next pending execution changed (or there is
/// none left, in which case the message has no `execution`).
pub(super) fn publish_notify_next(
    broker: &Broker,
    thing: &str,
    next: Option<&ExecutionRow>,
    document: Option<&Value>,
) {
    let mut body = json!({ "timestamp": chrono::Utc::now().timestamp() });
    if let Some(next) = next {
        body["execution"] = execution_json(next, document);
    }
    broker.publish(
        &format!("$aws/things/{thing}/jobs/notify-next"),
        body.to_string(),
    );
}

// ----- requests -----

type Reply = Result<Map<String, Value>, Rejection>;

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// GetPendingJobExecutions.
async fn get_pending(jobs: &Jobs, thing: &str) -> Reply {
    let things = [thing.to_owned()];
    let pending = jobs.pending(&jobs.pool, &things).await?;
    let list = pending.get(thing).map(Vec::as_slice).unwrap_or_default();
    let of = |status: ExecutionStatus| -> Vec<Value> {
        list.iter()
            .filter(|e| e.status == status.as_str())
            .map(summary)
            .collect()
    };
    Ok(object(json!({
        "inProgressJobs": of(ExecutionStatus::InProgress),
        "queuedJobs": of(ExecutionStatus::Queued),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartNextRequest {
    status_details: Option<HashMap<String, String>>,
    step_timeout_in_minutes: Option<i64>,
}

/// A row of the device statements below: one of the thing's executions as it was when the
/// statement locked it (`changed` false), or the execution the statement changed, as it is
/// now, with its job's document and configuration (`changed` true).
#[derive(Debug, sqlx::FromRow)]
struct DeviceRow {
    #[sqlx(flatten)]
    execution: ExecutionRow,
    changed: bool,
    document: Option<String>,
    config: Option<Value>,
}

/// The execution a device statement changed, with what the reply and the messages need.
struct Changed {
    execution: ExecutionRow,
    document: String,
    config: Value,
}

/// Splits a device statement's rows into the executions as they were (the thing's pending
/// ones, and for an update the one it names) and the changed execution, if any.
fn split(rows: Vec<DeviceRow>) -> (Vec<ExecutionRow>, Option<Changed>) {
    let mut before = Vec::with_capacity(rows.len());
    let mut changed = None;
    for row in rows {
        if row.changed {
            changed = Some(Changed {
                execution: row.execution,
                document: row.document.unwrap_or_default(),
                config: row.config.unwrap_or(Value::Null),
            });
        } else {
            before.push(row.execution);
        }
    }
    (before, changed)
}

/// The thing's pending executions in [`super::PENDING_ORDER`], from those of `before` and
/// `changed`, the execution that replaced its row of `before`: what reading them again after
/// the change would return, without the read.
fn pending_after(before: &[ExecutionRow], changed: &ExecutionRow) -> Vec<ExecutionRow> {
    let mut list: Vec<ExecutionRow> = before
        .iter()
        .filter(|e| e.job_id != changed.job_id && !e.status().is_terminal())
        .cloned()
        .collect();
    if !changed.status().is_terminal() {
        list.push(changed.clone());
    }
    super::sort_pending(&mut list);
    list
}

/// The thing's pending executions of `before`, in [`super::PENDING_ORDER`].
fn pending_before(before: &[ExecutionRow]) -> Vec<ExecutionRow> {
    let mut list: Vec<ExecutionRow> = before
        .iter()
        .filter(|e| !e.status().is_terminal())
        .cloned()
        .collect();
    super::sort_pending(&mut list);
    list
}

/// `notify` (and `notify-next` where `next_changed` says so) to `thing`, whose pending list
/// is now `pending`; `known` is a job id and its device document, already in hand.
async fn announce(
    jobs: &Jobs,
    thing: &str,
    pending: Vec<ExecutionRow>,
    next_changed: &(dyn Fn(&str, Option<&str>) -> bool + Sync),
    known: Option<(&str, Value)>,
) {
    let things = [thing.to_owned()];
    let lists = HashMap::from([(thing.to_owned(), pending)]);
    let documents = known
        .map(|(job_id, document)| (job_id.to_owned(), document))
        .into_iter()
        .collect();
    jobs.announce_pending_lists(&things, &lists, next_changed, documents)
        .await;
}

/// The end of the device statements: the thing's pending rows as they were (`mine`), then
/// the row the statement changed (`updated`) with its job's document and configuration.
const MINE_THEN_UPDATED: &str = "select mine.*, false as changed, null::text as document, null::jsonb as config from mine
         union all
         select updated.*, true, j.document, j.config from updated join engine.jobs j using (job_id)";

/// StartNextPendingJobExecution, in one statement: lock the thing's pending executions, start
/// the first (an IN_PROGRESS one stays IN_PROGRESS, taking the new statusDetails and step
/// timeout), and return them as they were, the started one as it is now, and its job.
fn start_next_sql() -> String {
    format!(
        "with mine as (
             select {columns} from engine.job_executions
             where thing_name = $1 and status in ('QUEUED', 'IN_PROGRESS') and notified_at is not null
             for update),
         updated as (
             update engine.job_executions set
                 status = 'IN_PROGRESS',
                 started_at = coalesce(started_at, now()),
                 status_details = coalesce($2, status_details),
                 step_timeout_at = case when $3::bigint is null then step_timeout_at
                                        else $4 + make_interval(mins => $3::int) end,
                 in_progress_timeout_at = {deadline},
                 version_number = version_number + case when status = 'QUEUED' or $2 is not null then 1 else 0 end,
                 last_updated_at = case when status = 'QUEUED' or $2 is not null then now() else last_updated_at end
             where thing_name = $1
               and job_id = (select job_id from mine order by {order} limit 1)
             returning {columns})
         {MINE_THEN_UPDATED}",
        columns = super::EXECUTION_COLUMNS,
        deadline = super::rollout::in_progress_deadline("$4"),
        order = super::PENDING_ORDER,
    )
}

/// StartNextPendingJobExecution.
async fn start_next(jobs: &Jobs, thing: &str, request: StartNextRequest) -> Reply {
    check_status_details(&request.status_details)?;
    check_step_timeout(request.step_timeout_in_minutes)?;
    let details = request.status_details.map(|d| json!(d));
    let rows: Vec<DeviceRow> = sqlx::query_as(&start_next_sql())
        .bind(thing)
        .bind(&details)
        .bind(request.step_timeout_in_minutes)
        .bind(jobs.now())
        .fetch_all(&jobs.pool)
        .await
        .map_err(ServiceError::from)?;
    let (before, started) = split(rows);
    let Some(started) = started else {
        return Ok(Map::new());
    };
    let execution = &started.execution;
    let previous = before.iter().find(|e| e.job_id == execution.job_id);
    if previous.is_none_or(|p| p.version_number != execution.version_number) {
        events::execution_progress(jobs, execution);
    }
    let document = jobs.device_document(&started.document, &started.config);
    if previous.is_some_and(|p| p.status() == ExecutionStatus::Queued) {
        // The pending list changed; the head did not (start-next takes the head).
        let pending = pending_after(&before, execution);
        // No `notify-next` goes out, so no document is needed.
        announce(jobs, thing, pending, &|_, _| false, None).await;
    }
    Ok(object(
        json!({ "execution": execution_json(execution, Some(&document)) }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeRequest {
    execution_number: Option<i64>,
    include_job_document: Option<bool>,
}

/// DescribeJobExecution; `$next` names the next pending execution.
async fn describe(jobs: &Jobs, thing: &str, job_id: &str, request: DescribeRequest) -> Reply {
    let things = [thing.to_owned()];
    let execution = if job_id == "$next" {
        jobs.pending(&jobs.pool, &things)
            .await?
            .remove(thing)
            .and_then(|list| list.into_iter().next())
    } else {
        sqlx::query_as(&format!(
            "select {} from engine.job_executions
             where job_id = $1 and thing_name = $2 and notified_at is not null",
            super::EXECUTION_COLUMNS
        ))
        .bind(job_id)
        .bind(thing)
        .fetch_optional(&jobs.pool)
        .await
        .map_err(ServiceError::from)?
    };
    let Some(execution) = execution else {
        if job_id == "$next" {
            return Ok(Map::new());
        }
        return Err(Rejection::new(
            Code::ResourceNotFound,
            format!("No job execution of {job_id} for {thing}"),
        ));
    };
    // The data-plane model lists TerminalStateException for DescribeJobExecution, and the
    // MQTT guide: "a command to describe a job is performed on a job that is in a terminal
    // state". The device has nothing left to do for it.
    if execution.status().is_terminal() {
        return Err(Rejection {
            code: Code::TerminalStateReached,
            message: format!("the job execution is already {}", execution.status),
            execution_state: Some(execution_state(&execution)),
        });
    }
    if request
        .execution_number
        .is_some_and(|n| n != execution.execution_number)
    {
        return Err(Rejection::new(
            Code::ResourceNotFound,
            "no job execution with that executionNumber",
        ));
    }
    let document = if request.include_job_document.unwrap_or(true) {
        let job = jobs.job(&execution.job_id).await?;
        Some(jobs.device_document(&job.document, &job.config))
    } else {
        None
    };
    Ok(object(
        json!({ "execution": execution_json(&execution, document.as_ref()) }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateRequest {
    status: String,
    status_details: Option<HashMap<String, String>>,
    expected_version: Option<i64>,
    execution_number: Option<i64>,
    include_job_execution_state: Option<bool>,
    include_job_document: Option<bool>,
    step_timeout_in_minutes: Option<i64>,
}

/// UpdateJobExecution, in one statement: lock the thing's pending executions and the one
/// named, change the named one if it is pending and matches `expectedVersion` and
/// `executionNumber`, and return them as they were, the changed one as it is now, and its job.
fn update_sql() -> String {
    format!(
        "with mine as (
             select {columns} from engine.job_executions
             where thing_name = $2 and notified_at is not null
               and (status in ('QUEUED', 'IN_PROGRESS') or job_id = $1)
             for update),
         updated as (
             update engine.job_executions set
                 status = $3,
                 status_details = coalesce($4, status_details),
                 started_at = case when $3 = 'IN_PROGRESS' then coalesce(started_at, now()) else started_at end,
                 step_timeout_at = case when $5::bigint is null then step_timeout_at
                                        else $6 + make_interval(mins => $5::int) end,
                 in_progress_timeout_at = case when $3 = 'IN_PROGRESS' then {deadline} else in_progress_timeout_at end,
                 version_number = version_number + 1,
                 last_updated_at = now()
             where job_id = $1 and thing_name = $2
               and exists (select 1 from mine m
                           where m.job_id = $1 and m.status in ('QUEUED', 'IN_PROGRESS')
                             and ($7::bigint is null or m.version_number = $7)
                             and ($8::bigint is null or m.execution_number = $8))
             returning {columns})
         {MINE_THEN_UPDATED}",
        columns = super::EXECUTION_COLUMNS,
        deadline = super::rollout::in_progress_deadline("$6"),
    )
}

/// Why the update statement changed nothing, given the named execution as it was: the
/// rejections in the order the checks are made (found, not final, version, number).
fn refusal(
    current: Option<&ExecutionRow>,
    thing: &str,
    job_id: &str,
    request: &UpdateRequest,
) -> Rejection {
    let Some(current) = current else {
        return Rejection::new(
            Code::ResourceNotFound,
            format!("No job execution of {job_id} for {thing}"),
        );
    };
    if current.status().is_terminal() {
        return Rejection {
            code: Code::InvalidStateTransition,
            message: format!("the job execution is already {}", current.status),
            execution_state: Some(execution_state(current)),
        };
    }
    if request
        .expected_version
        .is_some_and(|v| v != current.version_number)
    {
        return Rejection {
            code: Code::VersionMismatch,
            message: format!(
                "expectedVersion does not match the current version {}",
                current.version_number
            ),
            execution_state: Some(execution_state(current)),
        };
    }
    if request
        .execution_number
        .is_some_and(|n| n != current.execution_number)
    {
        return Rejection::new(
            Code::ResourceNotFound,
            "no job execution with that executionNumber",
        );
    }
    // The statement changes a pending execution whose version and number match; it found
    // one and changed nothing, which only a broken invariant explains.
    tracing::error!(job.id = %job_id, thing, "the update of {job_id} on {thing} changed nothing without a reason");
    Rejection::new(Code::InternalError, "internal error")
}

/// UpdateJobExecution.
async fn update(jobs: &Jobs, thing: &str, job_id: &str, request: UpdateRequest) -> Reply {
    let status = ExecutionStatus::parse(&request.status)
        .filter(|s| s.settable_by_device())
        .ok_or_else(|| {
            Rejection::new(
                Code::InvalidRequest,
                format!(
                    "status must be IN_PROGRESS, SUCCEEDED, FAILED or REJECTED, got {:?}",
                    request.status
                ),
            )
        })?;
    check_status_details(&request.status_details)?;
    check_step_timeout(request.step_timeout_in_minutes)?;
    let details = request.status_details.as_ref().map(|d| json!(d));
    let db = |e: sqlx::Error| Rejection::from(ServiceError::from(e));

    let sql = update_sql();
    let query = sqlx::query_as::<_, DeviceRow>(&sql)
        .bind(job_id)
        .bind(thing)
        .bind(status.as_str())
        .bind(&details)
        .bind(request.step_timeout_in_minutes)
        .bind(jobs.now())
        .bind(request.expected_version)
        .bind(request.execution_number);
    // Only a failure can be retried, and the retry must commit with the failure; every other
    // update is the one statement.
    let (before, changed, retried) = if status == ExecutionStatus::Failed {
        let mut tx = jobs.pool.begin().await.map_err(db)?;
        let (before, changed) = split(query.fetch_all(&mut *tx).await.map_err(db)?);
        let retried = match &changed {
            Some(changed) => {
                jobs.retry_if_configured(&mut tx, &changed.execution)
                    .await?
            }
            None => None,
        };
        tx.commit().await.map_err(db)?;
        (before, changed, retried)
    } else {
        let (before, changed) = split(query.fetch_all(&jobs.pool).await.map_err(db)?);
        (before, changed, None)
    };
    let current = before.iter().find(|e| e.job_id == job_id);
    let Some(changed) = changed else {
        return Err(refusal(current, thing, job_id, &request));
    };
    let updated = &changed.execution;
    let was_queued = current.is_some_and(|c| c.status() == ExecutionStatus::Queued);
    let pending = pending_before(&before);
    let next_before = pending.first().map(|e| e.job_id.clone());

    // Checked after the commit, without holding the job's row: of two devices finishing the
    // last two executions at once, the one that checks last sees both finished. (Locking the
    // job instead serialized every device of a job, which capped a rollout's throughput.) A
    // retry is pending, so the job cannot be done.
    let completed = if status.is_terminal() && retried.is_none() {
        super::complete_if_done(&jobs.pool, job_id).await?
    } else {
        None
    };

    // The old attempt's end goes out before the retry's start, in the order they happened.
    if status.is_terminal() {
        events::execution(jobs, updated);
    }
    events::execution_progress(jobs, retried.as_ref().unwrap_or(updated));
    // The device document (with fresh presigned URLs) is made only for a message that
    // carries it: the reply, or a `notify-next` whose head this execution may now be.
    let document = || jobs.device_document(&changed.document, &changed.config);
    let after = pending_after(&pending, retried.as_ref().unwrap_or(updated));
    if status.is_terminal() {
        // A retry is a new execution of the same job: the device's next execution changed.
        let retry = retried.is_some();
        let next_changed = |_: &str, next: Option<&str>| next != next_before.as_deref() || retry;
        let known = retry.then(|| (job_id, document()));
        announce(jobs, thing, after, &next_changed, known).await;
    } else if was_queued {
        // QUEUED → IN_PROGRESS changes the pending list ("changes to a non-terminal status"),
        // and moves this execution ahead of the QUEUED ones: the head may have changed.
        let next_changed = |_: &str, next: Option<&str>| next != next_before.as_deref();
        announce(
            jobs,
            thing,
            after,
            &next_changed,
            Some((job_id, document())),
        )
        .await;
    }
    if let Some(job) = completed {
        jobs.announce_completed(&job).await;
    }
    // Only a job with abort criteria can be aborted; the others skip reading its counts.
    let abortable = JobConfig::stored(&changed.config).is_ok_and(|c| c.abort.is_some());
    if status.is_terminal() && abortable {
        jobs.abort_if_criteria_met(job_id).await;
    }

    let mut body = Map::new();
    if request.include_job_execution_state.unwrap_or(false) {
        body.insert("executionState".into(), execution_state(updated));
    }
    if request.include_job_document.unwrap_or(false) {
        body.insert("jobDocument".into(), document());
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_split_into_thing_and_operation() {
        assert_eq!(
            split_topic("$aws/things/t1/jobs/start-next"),
            Some(("t1", "start-next"))
        );
        assert_eq!(
            split_topic("$aws/things/t1/jobs/j1/update"),
            Some(("t1", "j1/update"))
        );
        assert_eq!(split_topic("$aws/things/t1/shadow/update"), None);
        assert_eq!(split_topic("other/t1/jobs/get"), None);
    }

    fn execution(job_id: &str, status: &str, queued_second: i64) -> ExecutionRow {
        let at = chrono::DateTime::from_timestamp(1_700_000_000 + queued_second, 0)
            .expect("a valid time");
        ExecutionRow {
            job_id: job_id.into(),
            thing_name: "t1".into(),
            execution_number: 1,
            status: status.into(),
            status_details: json!({}),
            version_number: 1,
            queued_at: at,
            started_at: None,
            last_updated_at: at,
            force_canceled: false,
            retry_attempt: 0,
        }
    }

    fn ids(list: &[ExecutionRow]) -> Vec<&str> {
        list.iter().map(|e| e.job_id.as_str()).collect()
    }

    #[test]
    fn pending_lists_order_in_progress_first_then_by_time_then_bytes() {
        let before = [
            execution("b", "QUEUED", 0),
            execution("late", "QUEUED", 5),
            execution("B", "QUEUED", 0),
            execution("done", "SUCCEEDED", 0),
            execution("a", "QUEUED", 0),
        ];
        assert_eq!(ids(&pending_before(&before)), ["B", "a", "b", "late"]);

        // "late" starts: it goes first; "a" ends: it leaves the list.
        let started = execution("late", "IN_PROGRESS", 5);
        assert_eq!(
            ids(&pending_after(&before, &started)),
            ["late", "B", "a", "b"]
        );
        let ended = execution("a", "SUCCEEDED", 0);
        assert_eq!(ids(&pending_after(&before, &ended)), ["B", "b", "late"]);
        // A retry comes back QUEUED with a new queue time.
        let retried = execution("B", "QUEUED", 9);
        assert_eq!(
            ids(&pending_after(&before, &retried)),
            ["a", "b", "late", "B"]
        );
    }

    fn update_request(
        expected_version: Option<i64>,
        execution_number: Option<i64>,
    ) -> UpdateRequest {
        UpdateRequest {
            status: "SUCCEEDED".into(),
            status_details: None,
            expected_version,
            execution_number,
            include_job_execution_state: None,
            include_job_document: None,
            step_timeout_in_minutes: None,
        }
    }

    #[test]
    fn refusals_come_in_the_order_of_the_checks() {
        let code = |current: Option<&ExecutionRow>, request: &UpdateRequest| {
            let rejection = refusal(current, "t1", "j1", request);
            (
                format!("{:?}", rejection.code),
                rejection.execution_state.is_some(),
            )
        };
        let stale = update_request(Some(7), Some(9));
        assert_eq!(code(None, &stale), ("ResourceNotFound".into(), false));
        let ended = execution("j1", "SUCCEEDED", 0);
        assert_eq!(
            code(Some(&ended), &stale),
            ("InvalidStateTransition".into(), true)
        );
        let queued = execution("j1", "QUEUED", 0);
        assert_eq!(
            code(Some(&queued), &stale),
            ("VersionMismatch".into(), true)
        );
        assert_eq!(
            code(Some(&queued), &update_request(Some(1), Some(9))),
            ("ResourceNotFound".into(), false)
        );
        assert_eq!(
            code(Some(&queued), &update_request(Some(1), Some(1))),
            ("InternalError".into(), false)
        );
    }

    #[test]
    fn status_details_limits() {
        let ok = Some(HashMap::from([("step".to_owned(), "download".to_owned())]));
        assert!(check_status_details(&ok).is_ok());
        let bad_key = Some(HashMap::from([("a b".to_owned(), "x".to_owned())]));
        assert!(check_status_details(&bad_key).is_err());
        let empty_value = Some(HashMap::from([("a".to_owned(), String::new())]));
        assert!(check_status_details(&empty_value).is_err());
        let many = Some((0..11).map(|i| (format!("k{i}"), "v".to_owned())).collect());
        assert!(check_status_details(&many).is_err());
    }
}
