//! `/api/v1/jobs`: create (from a raw document or a template, with every AWS job option),
//! list, read, cancel and delete jobs; page through a job's executions, cancel or retry one
//! device's execution.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use flotilla_api::{
    CancelExecution, CancelJob, CreateJob, ExecutionPage, JobDetail, JobList, JobStatus,
    RetriedExecution,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::job_options::{self, JobOptions, Problems};
use super::{
    ApiError, ApiJson, ApiQuery, MAX_DOCUMENT_BYTES, projection_reads, templates, valid_id,
};
use crate::app::AppState;
use crate::iot::IotError;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/jobs", get(list).post(create))
        .route("/jobs/{job_id}", get(detail).delete(delete))
        .route("/jobs/{job_id}/cancel", post(cancel))
        .route("/jobs/{job_id}/executions", get(executions))
        .route(
            "/jobs/{job_id}/executions/{thing_name}/cancel",
            post(cancel_execution),
        )
        .route(
            "/jobs/{job_id}/executions/{thing_name}/retry",
            post(retry_execution),
        )
}

/// Everything CreateJob needs, validated.
pub(crate) struct NewJob {
    pub job_id: String,
    pub description: Option<String>,
    /// Thing and thing group ARNs.
    pub targets: Vec<String>,
    pub document: String,
    pub options: JobOptions,
}

/// Resolves thing and thing-group names to ARNs; unknown ones become field messages under
/// `fields` (of things, of groups).
pub(crate) async fn resolve_targets(
    iot: &crate::iot::Iot,
    things: &[String],
    groups: &[String],
    fields: (&str, &str),
    problems: &mut Problems,
) -> Result<Vec<String>, ApiError> {
    let mut targets = Vec::new();
    for thing in things {
        match iot.thing_arn(thing).await {
            Ok(arn) => targets.push(arn),
            Err(IotError::NotFound(_)) => {
                problems.add(fields.0, format!("no thing named {thing:?}"))
            }
            Err(other) => return Err(other.into()),
        }
    }
    for group in groups {
        let described = iot
            .sdk()
            .describe_thing_group()
            .thing_group_name(group)
            .send()
            .await
            .map_err(IotError::from_sdk);
        match described {
            Ok(out) => targets.push(out.thing_group_arn.unwrap_or_default()),
            Err(IotError::NotFound(_)) => {
                problems.add(fields.1, format!("no thing group named {group:?}"));
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok(targets)
}

/// Checks a create request completely (ids, document or template, targets, options) and
/// reports every problem at once; nothing reaches IoT's CreateJob unless all is well.
pub(super) async fn validate(state: &AppState, request: CreateJob) -> Result<NewJob, ApiError> {
    let mut problems = Problems::default();
    let job_id = match &request.job_id {
        Some(id) if !valid_id(id) => {
            problems.add(
                "job_id",
                "must be 1-64 characters of letters, digits, '-' and '_'",
            );
            String::new()
        }
        Some(id) => id.clone(),
        None => format!("job-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
    };
    if request
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 2028)
    {
        problems.add("description", "must be at most 2028 characters");
    }
    let document: Option<Value> = match (&request.document, &request.template_id) {
        (Some(_), Some(_)) => {
            problems.add(
                "template_id",
                "give either a document or a template, not both",
            );
            None
        }
        (None, None) => {
            problems.add("document", "give a document or a template_id");
            None
        }
        (Some(document), None) => {
            if !request.parameters.is_empty() {
                problems.add("parameters", "parameters apply to a template only");
            }
            if document.is_object() {
                Some(document.clone())
            } else {
                problems.add("document", "must be a JSON object");
                None
            }
        }
        (None, Some(template_id)) => {
            match templates::load(&state.pool, template_id, request.template_version).await {
                Ok(template) => templates::render(&template, &request.parameters, &mut problems),
                Err(ApiError::NotFound(message)) => {
                    problems.add("template_id", message);
                    None
                }
                Err(other) => return Err(other),
            }
        }
    };
    let document = document.map(|d| d.to_string());
    if let Some(text) = &document
        && text.len() > MAX_DOCUMENT_BYTES
    {
        problems.add(
            "document",
            format!(
                "is {} bytes; at most {MAX_DOCUMENT_BYTES} are allowed",
                text.len()
            ),
        );
    }
    if let Some(text) = &document {
        super::check_object_keys(text, "document", &mut problems);
    }
    if request.things.is_empty() && request.thing_groups.is_empty() {
        problems.add("things", "name at least one thing or thing group");
    }
    let options = job_options::validate(&request, chrono::Utc::now(), &mut problems);
    // Look the targets up only for an otherwise valid request: it costs IoT calls.
    let targets = if problems.0.is_empty() {
        resolve_targets(
            &state.iot,
            &request.things,
            &request.thing_groups,
            ("things", "thing_groups"),
            &mut problems,
        )
        .await?
    } else {
        Vec::new()
    };
    if !problems.0.is_empty() {
        return Err(ApiError::fields(problems.0));
    }
    Ok(NewJob {
        job_id,
        description: request.description,
        targets,
        document: document.unwrap_or_default(),
        options,
    })
}

/// CreateJob with every option: the one way the API and the rollout orchestrator create jobs.
pub(crate) async fn create_job(iot: &crate::iot::Iot, job: NewJob) -> Result<(), IotError> {
    let options = job.options;
    iot.sdk()
        .create_job()
        .job_id(&job.job_id)
        .set_targets(Some(job.targets))
        .document(job.document)
        .set_description(job.description)
        .set_target_selection(options.target_selection)
        .set_job_executions_rollout_config(options.rollout)
        .set_abort_config(options.abort)
        .set_timeout_config(options.timeout)
        .set_job_executions_retry_config(options.retry)
        .set_scheduling_config(options.scheduling)
        .set_presigned_url_config(options.presigned_url)
        .send()
        .await
        .map_err(IotError::from_sdk)?;
    Ok(())
}

/// Creates a job from a raw document or a template, with every AWS job option; everything is
/// validated (with field messages) before anything reaches AWS IoT.
#[utoipa::path(post, path = "/api/v1/jobs", operation_id = "create_job", tag = "jobs", request_body = CreateJob,
    responses((status = 201, description = "The job as created", body = JobDetail), ApiError))]
pub(super) async fn create(
    State(state): State<AppState>,
    axum::Extension(identity): axum::Extension<crate::auth::Identity>,
    ApiJson(request): ApiJson<CreateJob>,
) -> Result<(StatusCode, Json<JobDetail>), ApiError> {
    // Technicians act on single devices: a published template on one thing, nothing more.
    let single_device_template = request.template_id.is_some()
        && request.things.len() == 1
        && request.thing_groups.is_empty();
    let job = validate(&state, request).await?;
    if identity.role < flotilla_api::Role::Operator && !single_device_template {
        return Err(ApiError::Forbidden(format!(
            "{} is a {}: a technician may only run a template on one thing",
            identity.user, identity.role
        )));
    }
    let job_id = job.job_id.clone();
    create_job(&state.iot, job)
        .await
        .map_err(|error| match error {
            // The only resources CreateJob looks up are its targets.
            IotError::NotFound(message) => ApiError::field("things", message),
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(refreshed(&state, &job_id).await?)))
}

/// Re-reads a job from IoT after changing it, so the answer shows the change.
pub(super) async fn refreshed(state: &AppState, job_id: &str) -> Result<JobDetail, ApiError> {
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

/// Cancels a job (CancelJob); `force` also cancels IN_PROGRESS executions.
#[utoipa::path(post, path = "/api/v1/jobs/{job_id}/cancel", operation_id = "cancel_job", tag = "jobs", params(("job_id" = String, Path, description = "The job id")),
    request_body = CancelJob,
    responses((status = 200, description = "The job after the change", body = JobDetail), ApiError))]
pub(super) async fn cancel(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
    ApiJson(request): ApiJson<CancelJob>,
) -> Result<Json<JobDetail>, ApiError> {
    let mut problems = Problems::default();
    if request
        .comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > 2028)
    {
        problems.add("comment", "must be at most 2028 characters");
    }
    if let Some(code) = &request.reason_code
        && !((1..=128).contains(&code.len())
            && code
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'))
    {
        problems.add("reason_code", "must be 1-128 of A-Z, 0-9 and '_'");
    }
    if !problems.0.is_empty() {
        return Err(ApiError::fields(problems.0));
    }
    state
        .iot
        .cancel_job(&job_id, request.force, request.comment, request.reason_code)
        .await?;
    Ok(Json(refreshed(&state, &job_id).await?))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct DeleteQuery {
    /// Delete even a job whose executions are IN_PROGRESS.
    #[serde(default)]
    force: bool,
}

/// Deletes a job (DeleteJob); `force` also deletes one with IN_PROGRESS executions.
#[utoipa::path(delete, path = "/api/v1/jobs/{job_id}", operation_id = "delete_job", tag = "jobs", params(("job_id" = String, Path, description = "The job id"), DeleteQuery),
    responses((status = 204, description = "Deleted"), ApiError))]
pub(super) async fn delete(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
    ApiQuery(query): ApiQuery<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    state.iot.delete_job(&job_id, query.force).await?;
    state.projection.forget(&job_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// IN_PROGRESS, CANCELED, COMPLETED, DELETION_IN_PROGRESS or SCHEDULED.
    status: Option<String>,
    /// Jobs that target this thing group.
    thing_group: Option<String>,
    /// 1-500; 100 when absent.
    limit: Option<i64>,
}

/// `GET /jobs?status=&thing_group=&limit=`: newest first.
#[utoipa::path(get, path = "/api/v1/jobs", operation_id = "list_jobs", tag = "jobs", params(ListQuery),
    responses((status = 200, description = "Jobs, newest first", body = JobList), ApiError))]
pub(super) async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<JobList>, ApiError> {
    let mut problems = Problems::default();
    if let Some(status) = &query.status
        && JobStatus::parse(status).is_none()
    {
        problems.add(
            "status",
            "must be IN_PROGRESS, CANCELED, COMPLETED, DELETION_IN_PROGRESS or SCHEDULED",
        );
    }
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        problems.add("limit", "must be from 1 to 500");
    }
    if !problems.0.is_empty() {
        return Err(ApiError::fields(problems.0));
    }
    Ok(Json(JobList {
        jobs: projection_reads::jobs(
            &state.pool,
            query.status.as_deref(),
            query.thing_group.as_deref(),
            limit,
        )
        .await?,
    }))
}

/// A job with its counts and the executions of its devices, from the projection.
#[utoipa::path(get, path = "/api/v1/jobs/{job_id}", operation_id = "job_detail", tag = "jobs", params(("job_id" = String, Path, description = "The job id")),
    responses((status = 200, description = "The job", body = JobDetail), ApiError))]
pub(super) async fn detail(
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

/// The execution statuses AWS IoT reports.
const EXECUTION_STATUSES: [&str; 8] = [
    "QUEUED",
    "IN_PROGRESS",
    "SUCCEEDED",
    "FAILED",
    "TIMED_OUT",
    "REJECTED",
    "REMOVED",
    "CANCELED",
];

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ExecutionsQuery {
    /// One execution status: QUEUED, IN_PROGRESS, SUCCEEDED, FAILED, TIMED_OUT, REJECTED,
    /// REMOVED or CANCELED.
    status: Option<String>,
    /// The previous page's `next_after`.
    after: Option<String>,
    /// 1-1000; 100 when absent.
    limit: Option<i64>,
}

/// `GET /jobs/{id}/executions?status=&after=&limit=`: a keyset page of the projection.
#[utoipa::path(get, path = "/api/v1/jobs/{job_id}/executions", operation_id = "job_executions", tag = "jobs",
    params(("job_id" = String, Path, description = "The job id"), ExecutionsQuery),
    responses((status = 200, description = "A page of executions", body = ExecutionPage), ApiError))]
pub(super) async fn executions(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
    ApiQuery(query): ApiQuery<ExecutionsQuery>,
) -> Result<Json<ExecutionPage>, ApiError> {
    let mut problems = Problems::default();
    if let Some(status) = &query.status
        && !EXECUTION_STATUSES.contains(&status.as_str())
    {
        problems.add(
            "status",
            format!("must be one of {}", EXECUTION_STATUSES.join(", ")),
        );
    }
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        problems.add("limit", "must be from 1 to 1000");
    }
    if !problems.0.is_empty() {
        return Err(ApiError::fields(problems.0));
    }
    if !projection_reads::job_exists(&state.pool, &job_id).await? {
        return Err(ApiError::NotFound(format!("no job {job_id:?}")));
    }
    // One more than asked tells whether another page follows.
    let mut executions = projection_reads::executions(
        &state.pool,
        &job_id,
        query.status.as_deref(),
        query.after.as_deref(),
        limit + 1,
    )
    .await?;
    let more = executions.len() as i64 > limit;
    executions.truncate(limit as usize);
    let next_after = if more {
        executions.last().map(|e| e.thing_name.clone())
    } else {
        None
    };
    Ok(Json(ExecutionPage {
        executions,
        next_after,
    }))
}

/// `POST /jobs/{id}/executions/{thing}/cancel`: CancelJobExecution; `force` also stops an
/// IN_PROGRESS one.
#[utoipa::path(post, path = "/api/v1/jobs/{job_id}/executions/{thing_name}/cancel",
    tag = "jobs", params(("job_id" = String, Path, description = "The job id"), ("thing_name" = String, Path, description = "The thing whose execution")), request_body = CancelExecution,
    responses((status = 200, description = "The job after the change", body = JobDetail), ApiError))]
pub(super) async fn cancel_execution(
    State(state): State<AppState>,
    Path((job_id, thing_name)): Path<(String, String)>,
    ApiJson(request): ApiJson<CancelExecution>,
) -> Result<Json<JobDetail>, ApiError> {
    if request
        .reason
        .as_ref()
        .is_some_and(|r| r.is_empty() || r.chars().count() > 1024)
    {
        return Err(ApiError::field("reason", "must be 1-1024 characters"));
    }
    let details = request
        .reason
        .map(|reason| BTreeMap::from([("reason".to_owned(), reason)]));
    state
        .iot
        .sdk()
        .cancel_job_execution()
        .job_id(&job_id)
        .thing_name(&thing_name)
        .force(request.force)
        .set_status_details(details.map(|d| d.into_iter().collect()))
        .send()
        .await
        .map_err(IotError::from_sdk)?;
    Ok(Json(refreshed(&state, &job_id).await?))
}

/// The id of the follow-up job that retries `thing_name`'s execution `execution_number` of
/// `job_id`: the same inputs always give the same id (so a repeated request cannot start the
/// work twice), different ones practically never collide, and it fits AWS's 64 characters.
pub(super) fn retry_job_id(job_id: &str, thing_name: &str, execution_number: i64) -> String {
    let digest = Sha256::digest(format!("{job_id}\n{thing_name}\n{execution_number}"));
    let prefix: String = job_id.chars().take(40).collect();
    format!("{prefix}-retry-{}", &hex::encode(digest)[..16])
}

/// `POST /jobs/{id}/executions/{thing}/retry`: a follow-up job for that one thing with the
/// job's document. Only a finished execution that did not succeed can be retried.
#[utoipa::path(post, path = "/api/v1/jobs/{job_id}/executions/{thing_name}/retry",
    tag = "jobs", params(("job_id" = String, Path, description = "The job id"), ("thing_name" = String, Path, description = "The thing whose execution")),
    responses(
        (status = 201, description = "The follow-up job was created", body = RetriedExecution),
        (status = 200, description = "The follow-up job existed already", body = RetriedExecution),
        ApiError))]
pub(super) async fn retry_execution(
    State(state): State<AppState>,
    Path((job_id, thing_name)): Path<(String, String)>,
) -> Result<(StatusCode, Json<RetriedExecution>), ApiError> {
    let execution = projection_reads::execution(&state.pool, &job_id, &thing_name)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "job {job_id:?} has no execution for {thing_name:?}"
            ))
        })?;
    if !matches!(
        execution.status.as_str(),
        "FAILED" | "TIMED_OUT" | "REJECTED" | "CANCELED" | "REMOVED"
    ) {
        return Err(ApiError::Conflict(format!(
            "the execution is {}; only a FAILED, TIMED_OUT, REJECTED, CANCELED or REMOVED one can be retried",
            execution.status
        )));
    }
    let retry_id = retry_job_id(
        &job_id,
        &thing_name,
        execution.execution_number.unwrap_or(0),
    );
    let document = state
        .iot
        .sdk()
        .get_job_document()
        .job_id(&job_id)
        .send()
        .await
        .map_err(IotError::from_sdk)?
        .document
        .unwrap_or_else(|| "{}".to_owned());
    let target = state.iot.thing_arn(&thing_name).await?;
    let created = state
        .iot
        .sdk()
        .create_job()
        .job_id(&retry_id)
        .targets(target)
        .document(document)
        .description(format!("retry of {job_id} for {thing_name}"))
        .send()
        .await
        .map_err(IotError::from_sdk);
    let created = match created {
        Ok(_) => true,
        Err(IotError::AlreadyExists(_)) => false,
        Err(other) => return Err(other.into()),
    };
    refreshed(&state, &retry_id).await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(RetriedExecution {
            job_id: retry_id,
            created,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_ids_are_deterministic_and_valid() {
        let a = retry_job_id("fw-1", "sim-0001", 1);
        assert_eq!(a, retry_job_id("fw-1", "sim-0001", 1));
        assert_ne!(a, retry_job_id("fw-1", "sim-0001", 2));
        assert_ne!(a, retry_job_id("fw-1", "sim-0002", 1));
        let long = retry_job_id(&"x".repeat(64), "t", 1);
        assert!(valid_id(&a) && valid_id(&long), "{a} {long}");
    }
}
