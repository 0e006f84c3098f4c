//! Jobs: CreateJob, DescribeJob, UpdateJob, AssociateTargetsWithJob, CancelJob, DeleteJob,
//! ListJobs, GetJobDocument, ListJobExecutionsForJob, DescribeJobExecution and
//! ListJobExecutionsForThing.
//!
//! Query members are read from a plain map rather than a typed `Query`, so a malformed value
//! is an `InvalidRequestException` naming the member instead of axum's plain-text rejection.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{AwsError, ControlState, body, epoch};
use crate::jobs::job_config::UPDATABLE_MEMBERS;
use crate::jobs::{ExecutionRow, JobFilter, JobRow, JobUpdate, NewJob, PageToken};
use crate::model::ExecutionStatus;

pub(super) fn router() -> Router<ControlState> {
    Router::new()
        .route("/jobs", get(list_jobs))
        .route(
            "/jobs/{job_id}",
            get(describe_job)
                .put(create_job)
                .patch(update_job)
                .delete(delete_job),
        )
        .route("/jobs/{job_id}/targets", post(associate_targets_with_job))
        .route("/jobs/{job_id}/cancel", put(cancel_job))
        .route("/jobs/{job_id}/job-document", get(get_job_document))
        .route("/jobs/{job_id}/things", get(list_job_executions_for_job))
        .route(
            "/things/{thing_name}/jobs",
            get(list_job_executions_for_thing),
        )
        .route(
            "/things/{thing_name}/jobs/{job_id}",
            get(describe_job_execution),
        )
}

/// The members of a request's query string.
pub(super) type QueryMap = HashMap<String, String>;

pub(super) fn query_bool(query: &QueryMap, name: &str) -> Result<Option<bool>, AwsError> {
    match query.get(name).map(String::as_str) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(AwsError::invalid(format!(
            "{name} must be true or false, got {other:?}"
        ))),
    }
}

pub(super) fn query_long(query: &QueryMap, name: &str) -> Result<Option<i64>, AwsError> {
    query
        .get(name)
        .map(|value| {
            value
                .parse()
                .map_err(|_| AwsError::invalid(format!("{name} must be an integer, got {value:?}")))
        })
        .transpose()
}

/// `maxResults` (AWS's `LaserMaxResults`: 1-250); AWS documents no default, 100 is ours.
pub(super) fn max_results(query: &QueryMap) -> Result<i64, AwsError> {
    let limit = query_long(query, "maxResults")?.unwrap_or(100);
    if (1..=250).contains(&limit) {
        Ok(limit)
    } else {
        Err(AwsError::invalid(format!(
            "maxResults must be between 1 and 250, got {limit}"
        )))
    }
}

pub(super) fn next_token(query: &QueryMap) -> Result<Option<PageToken>, AwsError> {
    Ok(query
        .get("nextToken")
        .map(|token| PageToken::decode(token))
        .transpose()?)
}

fn execution_status(query: &QueryMap) -> Result<Option<ExecutionStatus>, AwsError> {
    query
        .get("status")
        .map(|s| {
            ExecutionStatus::parse(s)
                .ok_or_else(|| AwsError::invalid(format!("unknown job execution status {s:?}")))
        })
        .transpose()
}

/// Namespaces (customer-managed jobs, IoT Greengrass) are not supported: no job can be in
/// one, so a request naming one is refused rather than answered for the wrong jobs.
pub(super) fn refuse_namespace(query: &QueryMap) -> Result<(), AwsError> {
    if query.contains_key("namespaceId") {
        return Err(AwsError::invalid(
            "namespaceId is not supported by the embedded engine yet",
        ));
    }
    Ok(())
}

/// Keeps the first `limit` of `rows` (fetched one more than asked, which tells whether
/// another page follows) and returns the token of the next page.
pub(super) fn page<T>(
    rows: &mut Vec<T>,
    limit: i64,
    token: impl Fn(&T) -> PageToken,
) -> Option<String> {
    if rows.len() as i64 <= limit {
        return None;
    }
    rows.truncate(limit as usize);
    rows.last().map(|row| token(row).encode())
}

/// AWS's `JobExecutionSummary`.
fn execution_summary(row: &ExecutionRow) -> Value {
    let mut summary = json!({
        "status": row.status,
        "queuedAt": epoch(row.queued_at),
        "lastUpdatedAt": epoch(row.last_updated_at),
        "executionNumber": row.execution_number,
        "retryAttempt": row.retry_attempt,
    });
    if let Some(started) = row.started_at {
        summary["startedAt"] = json!(epoch(started));
    }
    summary
}

/// The CreateJob members the engine stores as configuration and returns from DescribeJob.
const CONFIG_MEMBERS: [&str; 8] = [
    "presignedUrlConfig",
    "jobExecutionsRolloutConfig",
    "abortConfig",
    "timeoutConfig",
    "jobExecutionsRetryConfig",
    "schedulingConfig",
    "jobTemplateArn",
    "documentParameters",
];

async fn create_job(
    State(state): State<ControlState>,
    Path(job_id): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, AwsError> {
    let Value::Object(mut request) = body::<Value>(&bytes)? else {
        return Err(AwsError::invalid("the request body must be a JSON object"));
    };
    let string =
        |request: &mut Map<String, Value>, name: &str| -> Result<Option<String>, AwsError> {
            match request.remove(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(AwsError::invalid(format!("{name} must be a string"))),
            }
        };
    let targets: Vec<String> = match request.remove("targets") {
        Some(value) => serde_json::from_value(value)
            .map_err(|_| AwsError::invalid("targets must be a list of ARNs"))?,
        None => return Err(AwsError::invalid("targets is required")),
    };
    let document = string(&mut request, "document")?;
    let description = string(&mut request, "description")?;
    let target_selection = string(&mut request, "targetSelection")?;
    let mut config = Map::new();
    for name in CONFIG_MEMBERS.iter().chain(&["documentSource"]) {
        if let Some(value) = request.remove(*name).filter(|v| !v.is_null()) {
            config.insert((*name).to_owned(), value);
        }
    }
    let mut document = document;
    state
        .jobs
        .apply_template(&mut document, &mut config)
        .await?;
    let job = state
        .jobs
        .create_job(NewJob {
            job_id,
            targets,
            document,
            description,
            target_selection,
            config,
        })
        .await?;
    Ok(Json(job_reference(&state, &job)))
}

/// UpdateJob has no output; an empty 200 is what the SDK expects.
async fn update_job(
    State(state): State<ControlState>,
    Path(job_id): Path<String>,
    Query(query): Query<QueryMap>,
    bytes: Bytes,
) -> Result<(), AwsError> {
    refuse_namespace(&query)?;
    let Value::Object(mut request) = body::<Value>(&bytes)? else {
        return Err(AwsError::invalid("the request body must be a JSON object"));
    };
    let description = match request.remove("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(AwsError::invalid("description must be a string")),
    };
    let mut config = Map::new();
    for name in UPDATABLE_MEMBERS {
        if let Some(value) = request.remove(name).filter(|v| !v.is_null()) {
            config.insert(name.to_owned(), value);
        }
    }
    state
        .jobs
        .update_job(
            &job_id,
            JobUpdate {
                description,
                config,
            },
        )
        .await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssociateTargetsRequest {
    targets: Option<Vec<String>>,
    comment: Option<String>,
}

async fn associate_targets_with_job(
    State(state): State<ControlState>,
    Path(job_id): Path<String>,
    Query(query): Query<QueryMap>,
    bytes: Bytes,
) -> Result<Json<Value>, AwsError> {
    refuse_namespace(&query)?;
    let request: AssociateTargetsRequest = body(&bytes)?;
    let targets = request
        .targets
        .ok_or_else(|| AwsError::invalid("targets is required"))?;
    let job = state
        .jobs
        .associate_targets(&job_id, targets, request.comment)
        .await?;
    Ok(Json(job_reference(&state, &job)))
}

async fn describe_job(
    State(state): State<ControlState>,
    Path(job_id): Path<String>,
) -> Result<Json<Value>, AwsError> {
    let job: JobRow = state.jobs.job(&job_id).await?;
    let counts = state.jobs.counts(&job_id).await?;
    let count = |status| counts.get(&status).copied().unwrap_or(0);
    let mut description = json!({
        "jobArn": state.jobs.arns.job(&job.job_id),
        "jobId": job.job_id,
        "targetSelection": job.target_selection,
        "status": job.status,
        "forceCanceled": job.force_canceled,
        "targets": job.targets,
        "description": job.description,
        "createdAt": epoch(job.created_at),
        "lastUpdatedAt": epoch(job.last_updated_at),
        "isConcurrent": false,
        "jobProcessDetails": {
            "numberOfCanceledThings": count(ExecutionStatus::Canceled),
            "numberOfSucceededThings": count(ExecutionStatus::Succeeded),
            "numberOfFailedThings": count(ExecutionStatus::Failed),
            "numberOfRejectedThings": count(ExecutionStatus::Rejected),
            "numberOfQueuedThings": count(ExecutionStatus::Queued),
            "numberOfInProgressThings": count(ExecutionStatus::InProgress),
            "numberOfRemovedThings": count(ExecutionStatus::Removed),
            "numberOfTimedOutThings": count(ExecutionStatus::TimedOut),
        },
    });
    if let Some(completed) = job.completed_at {
        description["completedAt"] = json!(epoch(completed));
    }
    if let Some(reason_code) = &job.reason_code {
        description["reasonCode"] = json!(reason_code);
    }
    if let Some(comment) = &job.comment {
        description["comment"] = json!(comment);
    }
    if let Value::Object(config) = &job.config {
        for name in CONFIG_MEMBERS {
            if let Some(value) = config.get(name) {
                description[name] = value.clone();
            }
        }
    }
    let rollouts = state.jobs.scheduled_rollouts(&job.config);
    if !rollouts.is_empty() {
        description["scheduledJobRollouts"] = rollouts
            .into_iter()
            .map(|start| json!({ "startTime": start }))
            .collect();
    }
    let mut output = json!({ "job": description });
    if let Some(source) = job.config.get("documentSource") {
        output["documentSource"] = source.clone();
    }
    Ok(Json(output))
}

async fn list_job_executions_for_job(
    State(state): State<ControlState>,
    Path(job_id): Path<String>,
    Query(query): Query<QueryMap>,
) -> Result<Json<Value>, AwsError> {
    let status = execution_status(&query)?;
    let limit = max_results(&query)?;
    let after = query.get("nextToken").map(String::as_str);
    // One more than asked tells whether another page follows.
    let mut rows = state
        .jobs
        .executions_for_job(&job_id, status, limit + 1, after)
        .await?;
    let next_token = (rows.len() as i64 > limit).then(|| {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.thing_name.clone())
    });
    let summaries: Vec<Value> = rows
        .iter()
        .map(|row| {
            json!({ "thingArn": state.jobs.arns.thing(&row.thing_name), "jobExecutionSummary": execution_summary(row) })
        })
        .collect();
    let mut output = json!({ "executionSummaries": summaries });
    if let Some(Some(token)) = next_token {
        output["nextToken"] = json!(token);
    }
    Ok(Json(output))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CancelJobRequest {
    reason_code: Option<String>,
    comment: Option<String>,
}

async fn cancel_job(
    State(state): State<ControlState>,
    Path(job_id): Path<String>,
    Query(query): Query<QueryMap>,
    bytes: Bytes,
) -> Result<Json<Value>, AwsError> {
    let force = query_bool(&query, "force")?.unwrap_or(false);
    let request: CancelJobRequest = body(&bytes)?;
    let job = state
        .jobs
        .cancel_job(&job_id, force, request.reason_code, request.comment)
        .await?;
    Ok(Json(job_reference(&state, &job)))
}

/// DeleteJob has no output; an empty 200 is what the SDK expects.
async fn delete_job(
    State(state): State<ControlState>,
    Path(job_id): Path<String>,
    Query(query): Query<QueryMap>,
) -> Result<(), AwsError> {
    refuse_namespace(&query)?;
    let force = query_bool(&query, "force")?.unwrap_or(false);
    state.jobs.delete_job(&job_id, force).await?;
    Ok(())
}

/// ListJobs, newest first, filtered by status, target selection and targeted thing group.
async fn list_jobs(
    State(state): State<ControlState>,
    Query(query): Query<QueryMap>,
) -> Result<Json<Value>, AwsError> {
    refuse_namespace(&query)?;
    let limit = max_results(&query)?;
    let after = next_token(&query)?;
    let filter = JobFilter {
        status: query.get("status").cloned(),
        target_selection: query.get("targetSelection").cloned(),
        thing_group_name: query.get("thingGroupName").cloned(),
        thing_group_id: query.get("thingGroupId").cloned(),
    };
    let mut rows = state
        .jobs
        .list_jobs(&filter, limit + 1, after.as_ref())
        .await?;
    let next = page(&mut rows, limit, |job: &JobRow| PageToken {
        at: job.created_at,
        id: job.job_id.clone(),
    });
    let jobs: Vec<Value> = rows
        .iter()
        .map(|job| {
            let mut summary = json!({
                "jobArn": state.jobs.arns.job(&job.job_id),
                "jobId": job.job_id,
                "targetSelection": job.target_selection,
                "status": job.status,
                "createdAt": epoch(job.created_at),
                "lastUpdatedAt": epoch(job.last_updated_at),
                "isConcurrent": false,
            });
            if let Some(completed) = job.completed_at {
                summary["completedAt"] = json!(epoch(completed));
            }
            summary
        })
        .collect();
    let mut output = json!({ "jobs": jobs });
    if let Some(token) = next {
        output["nextToken"] = json!(token);
    }
    Ok(Json(output))
}

/// GetJobDocument: with `beforeSubstitution`, a job made from a managed template shows the
/// template's `${aws:iot:parameter:…}` placeholders instead of the values filled in.
async fn get_job_document(
    State(state): State<ControlState>,
    Path(job_id): Path<String>,
    Query(query): Query<QueryMap>,
) -> Result<Json<Value>, AwsError> {
    let before_substitution = query_bool(&query, "beforeSubstitution")?.unwrap_or(false);
    crate::jobs::check_job_id(&job_id)?;
    let job = state.jobs.job(&job_id).await?;
    let document = if before_substitution {
        state
            .jobs
            .document_before_substitution(&job.document, &job.config)
    } else {
        &job.document
    };
    Ok(Json(json!({ "document": document })))
}

async fn describe_job_execution(
    State(state): State<ControlState>,
    Path((thing_name, job_id)): Path<(String, String)>,
    Query(query): Query<QueryMap>,
) -> Result<Json<Value>, AwsError> {
    let execution_number = query_long(&query, "executionNumber")?;
    let detail = state
        .jobs
        .execution(&thing_name, &job_id, execution_number)
        .await?;
    let row = &detail.execution;
    let mut execution = json!({
        "jobId": row.job_id,
        "status": row.status,
        "forceCanceled": row.force_canceled,
        "statusDetails": { "detailsMap": row.status_details },
        "thingArn": state.jobs.arns.thing(&row.thing_name),
        "queuedAt": epoch(row.queued_at),
        "lastUpdatedAt": epoch(row.last_updated_at),
        "executionNumber": row.execution_number,
        "versionNumber": row.version_number,
    });
    if let Some(started) = row.started_at {
        execution["startedAt"] = json!(epoch(started));
    }
    if let Some(seconds) = detail.seconds_before_timed_out {
        execution["approximateSecondsBeforeTimedOut"] = json!(seconds);
    }
    Ok(Json(json!({ "execution": execution })))
}

/// ListJobExecutionsForThing, newest first.
async fn list_job_executions_for_thing(
    State(state): State<ControlState>,
    Path(thing_name): Path<String>,
    Query(query): Query<QueryMap>,
) -> Result<Json<Value>, AwsError> {
    refuse_namespace(&query)?;
    let status = execution_status(&query)?;
    let limit = max_results(&query)?;
    let after = next_token(&query)?;
    let mut rows = state
        .jobs
        .executions_for_thing(
            &thing_name,
            status,
            query.get("jobId").map(String::as_str),
            limit + 1,
            after.as_ref(),
        )
        .await?;
    let next = page(&mut rows, limit, |row: &ExecutionRow| PageToken {
        at: row.queued_at,
        id: row.job_id.clone(),
    });
    let summaries: Vec<Value> = rows
        .iter()
        .map(|row| json!({ "jobId": row.job_id, "jobExecutionSummary": execution_summary(row) }))
        .collect();
    let mut output = json!({ "executionSummaries": summaries });
    if let Some(token) = next {
        output["nextToken"] = json!(token);
    }
    Ok(Json(output))
}

/// The output of CreateJob and CancelJob.
fn job_reference(state: &ControlState, job: &JobRow) -> Value {
    json!({
        "jobArn": state.jobs.arns.job(&job.job_id),
        "jobId": job.job_id,
        "description": job.description,
    })
}
