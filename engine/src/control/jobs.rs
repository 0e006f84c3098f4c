//! Jobs: CreateJob, DescribeJob and ListJobExecutionsForJob.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{AwsError, ControlState, body, epoch};
use crate::jobs::{JobRow, NewJob};
use crate::model::ExecutionStatus;

pub(super) fn router() -> Router<ControlState> {
    Router::new()
        .route("/jobs/{job_id}", get(describe_job).put(create_job))
        .route("/jobs/{job_id}/things", get(list_job_executions_for_job))
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
    Ok(Json(json!({
        "jobArn": state.jobs.arns.job(&job.job_id),
        "jobId": job.job_id,
        "description": job.description,
    })))
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
        "forceCanceled": false,
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
    if let Value::Object(config) = &job.config {
        for name in CONFIG_MEMBERS {
            if let Some(value) = config.get(name) {
                description[name] = value.clone();
            }
        }
    }
    let mut output = json!({ "job": description });
    if let Some(source) = job.config.get("documentSource") {
        output["documentSource"] = source.clone();
    }
    Ok(Json(output))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    status: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

async fn list_job_executions_for_job(
    State(state): State<ControlState>,
    Path(job_id): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, AwsError> {
    let status = match query.status.as_deref() {
        None => None,
        Some(s) => Some(
            ExecutionStatus::parse(s)
                .ok_or_else(|| AwsError::invalid(format!("unknown status {s:?}")))?,
        ),
    };
    let limit = query.max_results.unwrap_or(100);
    if !(1..=250).contains(&limit) {
        return Err(AwsError::invalid("maxResults must be between 1 and 250"));
    }
    // One more than asked tells whether another page follows.
    let mut rows = state
        .jobs
        .executions_for_job(&job_id, status, limit + 1, query.next_token.as_deref())
        .await?;
    let next_token = (rows.len() as i64 > limit).then(|| {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.thing_name.clone())
    });
    let summaries: Vec<Value> = rows
        .iter()
        .map(|row| {
            let mut summary = json!({
                "status": row.status,
                "queuedAt": epoch(row.queued_at),
                "lastUpdatedAt": epoch(row.last_updated_at),
                "executionNumber": row.execution_number,
                "retryAttempt": 0,
            });
            if let Some(started) = row.started_at {
                summary["startedAt"] = json!(epoch(started));
            }
            json!({ "thingArn": state.jobs.arns.thing(&row.thing_name), "jobExecutionSummary": summary })
        })
        .collect();
    let mut output = json!({ "executionSummaries": summaries });
    if let Some(Some(token)) = next_token {
        output["nextToken"] = json!(token);
    }
    Ok(Json(output))
}
