//! One job execution from the control plane: CancelJobExecution and DeleteJobExecution.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::{delete, put};
use serde::Deserialize;
use serde_json::{Value, json};

use super::jobs::{QueryMap, query_bool, refuse_namespace};
use super::{AwsError, ControlState, body};

pub(super) fn router() -> Router<ControlState> {
    Router::new()
        .route(
            "/things/{thing_name}/jobs/{job_id}/cancel",
            put(cancel_job_execution),
        )
        .route(
            "/things/{thing_name}/jobs/{job_id}/executionNumber/{execution_number}",
            delete(delete_job_execution),
        )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CancelJobExecutionRequest {
    expected_version: Option<i64>,
    status_details: Option<HashMap<String, String>>,
}

/// CancelJobExecution has no output.
async fn cancel_job_execution(
    State(state): State<ControlState>,
    Path((thing_name, job_id)): Path<(String, String)>,
    Query(query): Query<QueryMap>,
    bytes: Bytes,
) -> Result<Json<Value>, AwsError> {
    let force = query_bool(&query, "force")?.unwrap_or(false);
    let request: CancelJobExecutionRequest = body(&bytes)?;
    state
        .jobs
        .cancel_execution(
            &job_id,
            &thing_name,
            force,
            request.expected_version,
            request.status_details,
        )
        .await?;
    Ok(Json(json!({})))
}

/// DeleteJobExecution has no output.
async fn delete_job_execution(
    State(state): State<ControlState>,
    Path((thing_name, job_id, execution_number)): Path<(String, String, String)>,
    Query(query): Query<QueryMap>,
) -> Result<Json<Value>, AwsError> {
    refuse_namespace(&query)?;
    let execution_number: i64 = execution_number.parse().map_err(|_| {
        AwsError::invalid(format!(
            "executionNumber must be an integer, got {execution_number:?}"
        ))
    })?;
    let force = query_bool(&query, "force")?.unwrap_or(false);
    state
        .jobs
        .delete_execution(&job_id, &thing_name, execution_number, force)
        .await?;
    Ok(Json(json!({})))
}
