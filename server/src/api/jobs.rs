//! `/api/v1/jobs`: create, list, read, cancel and delete jobs.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use axum_extra_json::ApiJson;
use flotilla_api::{CancelJob, CreateJob, JobDetail, JobList};

use super::ApiError;
use crate::app::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/jobs", get(list).post(create))
        .route("/jobs/{job_id}", get(detail).delete(delete))
        .route("/jobs/{job_id}/cancel", axum::routing::post(cancel))
}

/// The JSON extractor whose rejections use the API's error shape.
mod axum_extra_json {
    use axum::extract::{FromRequest, Request};
    use serde::de::DeserializeOwned;

    use super::ApiError;

    pub struct ApiJson<T>(pub T);

    impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
        type Rejection = ApiError;

        async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
            let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
            Ok(Self(value))
        }
    }
}

/// Job ids: 1–64 of `[a-zA-Z0-9_-]`, as AWS requires.
fn valid_job_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn create(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CreateJob>,
) -> Result<(StatusCode, Json<JobDetail>), ApiError> {
    let job_id = match request.job_id {
        Some(id) if !valid_job_id(&id) => {
            return Err(ApiError::field(
                "job_id",
                "must be 1-64 characters of letters, digits, '-' and '_'",
            ));
        }
        Some(id) => id,
        None => format!("job-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
    };
    if !request.document.is_object() {
        return Err(ApiError::field("document", "must be a JSON object"));
    }
    if request.things.is_empty() && request.thing_groups.is_empty() {
        return Err(ApiError::field(
            "things",
            "name at least one thing or thing group",
        ));
    }
    if !request.thing_groups.is_empty() {
        return Err(ApiError::field(
            "thing_groups",
            "thing group targets are not supported yet",
        ));
    }
    let mut targets = Vec::with_capacity(request.things.len());
    for thing in &request.things {
        targets.push(
            state
                .iot
                .thing_arn(thing)
                .await
                .map_err(|error| match error {
                    crate::iot::IotError::NotFound(_) => {
                        ApiError::field("things", format!("no thing named {thing:?}"))
                    }
                    other => other.into(),
                })?,
        );
    }
    state
        .iot
        .create_job(
            &job_id,
            targets,
            request.document.to_string(),
            request.description,
        )
        .await
        .map_err(|error| match error {
            // The only resources CreateJob looks up are its targets.
            crate::iot::IotError::NotFound(message) => ApiError::field("things", message),
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(refreshed(&state, &job_id).await?)))
}

/// Re-reads a job from IoT after changing it, so the answer shows the change.
async fn refreshed(state: &AppState, job_id: &str) -> Result<JobDetail, ApiError> {
    state
        .projection
        .refresh(job_id)
        .await
        .map_err(|error| match error {
            crate::projection::RefreshError::Iot(e) => ApiError::from(e),
            crate::projection::RefreshError::Database(e) => ApiError::Database(e),
        })?;
    // Devices keep reporting after the change; the refresher follows the job from here.
    let _ = state.changed.send(job_id.to_owned());
    state
        .projection
        .job(job_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no job {job_id:?}")))
}

async fn cancel(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
    ApiJson(request): ApiJson<CancelJob>,
) -> Result<Json<JobDetail>, ApiError> {
    if request
        .comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > 2028)
    {
        return Err(ApiError::field(
            "comment",
            "must be at most 2028 characters",
        ));
    }
    if let Some(code) = &request.reason_code
        && !((1..=128).contains(&code.len())
            && code
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'))
    {
        return Err(ApiError::field(
            "reason_code",
            "must be 1-128 of A-Z, 0-9 and '_'",
        ));
    }
    state
        .iot
        .cancel_job(&job_id, request.force, request.comment, request.reason_code)
        .await?;
    Ok(Json(refreshed(&state, &job_id).await?))
}

#[derive(Debug, serde::Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

async fn delete(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    state.iot.delete_job(&job_id, query.force).await?;
    state.projection.forget(&job_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list(State(state): State<AppState>) -> Result<Json<JobList>, ApiError> {
    Ok(Json(JobList {
        jobs: state.projection.list_jobs(100).await?,
    }))
}

async fn detail(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Json<JobDetail>, ApiError> {
    state
        .projection
        .job(&job_id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no job {job_id:?}")))
}
