//! Why a job's executions ended badly, read from the projection: the failure reasons devices
//! reported (`statusDetails.reason`, else `error` or `message`), grouped and counted.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use flotilla_api::{FailureReason, FailureReasons};

use super::{ApiError, projection_reads};
use crate::app::AppState;

/// The most reason groups one answer lists.
const MAX_REASONS: i64 = 50;
/// A longer reason is cut to this many characters before grouping.
const REASON_CHARS: i32 = 200;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/jobs/{job_id}/failure-reasons", get(failure_reasons))
}

async fn found(state: &AppState, job_id: &str) -> Result<(), ApiError> {
    if projection_reads::job_exists(&state.pool, job_id).await? {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!("no job {job_id:?}")))
    }
}

/// `GET /jobs/{id}/failure-reasons`.
#[utoipa::path(get, path = "/api/v1/jobs/{job_id}/failure-reasons", operation_id = "job_failure_reasons", tag = "jobs",
    params(("job_id" = String, Path, description = "The job id")),
    responses((status = 200, description = "Failure reasons, most frequent first", body = FailureReasons), ApiError))]
pub(super) async fn failure_reasons(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Json<FailureReasons>, ApiError> {
    found(&state, &job_id).await?;
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "select status,
                left(coalesce(status_details ->> 'reason', status_details ->> 'error',
                              status_details ->> 'message', ''), $3) as reason,
                count(*)
           from server.job_executions
          where job_id = $1 and status in ('FAILED', 'REJECTED', 'TIMED_OUT', 'REMOVED')
          group by 1, 2
          order by 3 desc, 1, 2
          limit $2",
    )
    .bind(&job_id)
    .bind(MAX_REASONS)
    .bind(REASON_CHARS)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(FailureReasons {
        reasons: rows
            .into_iter()
            .map(|(status, reason, count)| FailureReason {
                status,
                reason,
                count,
            })
            .collect(),
    }))
}
