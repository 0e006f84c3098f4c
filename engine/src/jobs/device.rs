//! The device side of AWS IoT Jobs over MQTT: `$aws/things/{thing}/jobs/…` requests, their
//! `/accepted` and `/rejected` replies, and the `notify`/`notify-next` messages, with the
//! payloads and error codes of the AWS developer guide ("Jobs device MQTT API").

use std::collections::HashMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

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
            | ErrorKind::LimitExceeded => Code::InvalidRequest,
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

/// StartNextPendingJobExecution.
async fn start_next(jobs: &Jobs, thing: &str, request: StartNextRequest) -> Reply {
    check_status_details(&request.status_details)?;
    check_step_timeout(request.step_timeout_in_minutes)?;
    let details = request.status_details.map(|d| json!(d));
    let mut tx = jobs.pool.begin().await.map_err(ServiceError::from)?;
    let next: Option<ExecutionRow> = sqlx::query_as(&format!(
        "select {} from engine.job_executions
         where thing_name = $1 and status in ('QUEUED', 'IN_PROGRESS') and notified_at is not null
         order by status = 'IN_PROGRESS' desc, queued_at, job_id limit 1 for update",
        super::EXECUTION_COLUMNS
    ))
    .bind(thing)
    .fetch_optional(&mut *tx)
    .await
    .map_err(ServiceError::from)?;
    let Some(next) = next else {
        tx.commit().await.map_err(ServiceError::from)?;
        return Ok(Map::new());
    };
    let started: ExecutionRow = sqlx::query_as(&format!(
        "update engine.job_executions set
             status = 'IN_PROGRESS',
             started_at = coalesce(started_at, now()),
             status_details = coalesce($3, status_details),
             step_timeout_at = case when $4::bigint is null then step_timeout_at
                                    else $5 + make_interval(mins => $4::int) end,
             in_progress_timeout_at = {},
             version_number = version_number + case when status = 'QUEUED' or $3 is not null then 1 else 0 end,
             last_updated_at = case when status = 'QUEUED' or $3 is not null then now() else last_updated_at end
         where job_id = $1 and thing_name = $2
         returning {}",
        super::rollout::in_progress_deadline("$5"),
        super::EXECUTION_COLUMNS
    ))
    .bind(&next.job_id)
    .bind(thing)
    .bind(&details)
    .bind(request.step_timeout_in_minutes)
    .bind(jobs.now())
    .fetch_one(&mut *tx)
    .await
    .map_err(ServiceError::from)?;
    tx.commit().await.map_err(ServiceError::from)?;
    if started.version_number != next.version_number {
        events::execution_progress(jobs, &started);
    }
    if next.status() == ExecutionStatus::Queued {
        // The pending list changed; the head did not (start-next takes the head).
        jobs.announce_pending(&[thing.to_owned()], &|_, _| false)
            .await;
    }
    let job = jobs.job(&started.job_id).await?;
    let document = jobs.device_document(&job.document, &job.config);
    Ok(object(
        json!({ "execution": execution_json(&started, Some(&document)) }),
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
    let details = request.status_details.map(|d| json!(d));
    let db = |e: sqlx::Error| Rejection::from(ServiceError::from(e));

    let mut tx = jobs.pool.begin().await.map_err(db)?;
    let things = [thing.to_owned()];
    // One read, locking the device's pending executions and this one: the head of the queue
    // before the change (for `notify-next`) and the execution to change.
    let mine: Vec<ExecutionRow> = sqlx::query_as(&format!(
        "select {} from engine.job_executions
         where thing_name = $2 and notified_at is not null
           and (status in ('QUEUED', 'IN_PROGRESS') or job_id = $1)
         order by status = 'IN_PROGRESS' desc, queued_at, job_id
         for update",
        super::EXECUTION_COLUMNS
    ))
    .bind(job_id)
    .bind(thing)
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    let next_before = mine
        .iter()
        .find(|e| !e.status().is_terminal())
        .map(|e| e.job_id.clone());
    let current = mine.into_iter().find(|e| e.job_id == job_id);
    let Some(current) = current else {
        return Err(Rejection::new(
            Code::ResourceNotFound,
            format!("No job execution of {job_id} for {thing}"),
        ));
    };
    if current.status().is_terminal() {
        return Err(Rejection {
            code: Code::InvalidStateTransition,
            message: format!("the job execution is already {}", current.status),
            execution_state: Some(execution_state(&current)),
        });
    }
    if request
        .expected_version
        .is_some_and(|v| v != current.version_number)
    {
        return Err(Rejection {
            code: Code::VersionMismatch,
            message: format!(
                "expectedVersion does not match the current version {}",
                current.version_number
            ),
            execution_state: Some(execution_state(&current)),
        });
    }
    if request
        .execution_number
        .is_some_and(|n| n != current.execution_number)
    {
        return Err(Rejection::new(
            Code::ResourceNotFound,
            "no job execution with that executionNumber",
        ));
    }
    let updated: ExecutionRow = sqlx::query_as(&format!(
        "update engine.job_executions set
             status = $3,
             status_details = coalesce($4, status_details),
             started_at = case when $3 = 'IN_PROGRESS' then coalesce(started_at, now()) else started_at end,
             step_timeout_at = case when $5::bigint is null then step_timeout_at
                                    else $6 + make_interval(mins => $5::int) end,
             in_progress_timeout_at = case when $3 = 'IN_PROGRESS' then {} else in_progress_timeout_at end,
             version_number = version_number + 1,
             last_updated_at = now()
         where job_id = $1 and thing_name = $2
         returning {}",
        super::rollout::in_progress_deadline("$6"),
        super::EXECUTION_COLUMNS
    ))
    .bind(job_id)
    .bind(thing)
    .bind(status.as_str())
    .bind(&details)
    .bind(request.step_timeout_in_minutes)
    .bind(jobs.now())
    .fetch_one(&mut *tx)
    .await
    .map_err(db)?;
    let retried = if status.is_terminal() {
        jobs.retry_if_configured(&mut tx, &updated).await?
    } else {
        None
    };
    tx.commit().await.map_err(db)?;
    // Checked after the commit, without holding the job's row: of two devices finishing the
    // last two executions at once, the one that checks last sees both finished. (Locking the
    // job instead serialized every device of a job, which capped a rollout's throughput.)
    let completed = if status.is_terminal() {
        super::complete_if_done(&jobs.pool, job_id).await?
    } else {
        None
    };

    // The old attempt's end goes out before the retry's start, in the order they happened.
    if status.is_terminal() {
        events::execution(jobs, &updated);
    }
    events::execution_progress(jobs, retried.as_ref().unwrap_or(&updated));
    if status.is_terminal() {
        // A retry is a new execution of the same job: the device's next execution changed.
        jobs.announce_pending(&things, &|_, next| {
            next != next_before.as_deref() || retried.is_some()
        })
        .await;
    } else if current.status() == ExecutionStatus::Queued {
        // QUEUED → IN_PROGRESS changes the pending list ("changes to a non-terminal status"),
        // and moves this execution ahead of the QUEUED ones: the head may have changed.
        jobs.announce_pending(&things, &|_, next| next != next_before.as_deref())
            .await;
    }
    if let Some(job) = completed {
        jobs.announce_completed(&job).await;
    }
    if status.is_terminal() {
        jobs.abort_if_criteria_met(job_id).await;
    }

    let mut body = Map::new();
    if request.include_job_execution_state.unwrap_or(false) {
        body.insert("executionState".into(), execution_state(&updated));
    }
    if request.include_job_document.unwrap_or(false) {
        let job = jobs.job(job_id).await?;
        body.insert(
            "jobDocument".into(),
            jobs.device_document(&job.document, &job.config),
        );
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
