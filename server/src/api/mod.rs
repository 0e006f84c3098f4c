//! The JSON API under `/api/v1`: one router per resource, one error type for all, and one
//! audit hook ([`crate::audit`]) around every mutation.
//!
//! - [`jobs`]: create (from a document or a template, with every AWS option), list, read,
//!   cancel and delete jobs; page, cancel and retry their executions.
//! - [`job_history`]: a job's failure reasons and its executions per state over time.
//! - [`fleet`]: things and thing groups.
//! - [`templates`]: versioned job templates with typed parameters.
//! - [`artifacts`]: uploads, verified and signed artifacts, deployments; the signing key.
//! - [`crate::rollouts::routes`]: staged rollouts (`/rollouts`).
//! - `GET /audit`: the audit log; `GET /audit/verify`: whether its hash chain is intact.
//! - [`crate::auth`]: `GET /me` and personal API tokens (`/tokens`); every route's permission.
//! - [`openapi`]: `GET /openapi.json`, the OpenAPI document generated from these handlers.

pub(crate) mod artifacts;
mod error;
mod fleet;
mod job_history;
pub(crate) mod job_options;
pub(crate) mod jobs;
pub mod openapi;
mod projection_reads;
pub(crate) mod templates;

use axum::extract::{FromRequest, Query, Request, State};
use axum::routing::get;
use axum::{Json, Router};
use flotilla_api::{AuditPage, AuditVerification};
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::audit::AuditQuery;
pub use error::ApiError;

/// The largest job document AWS IoT accepts.
pub const MAX_DOCUMENT_BYTES: usize = 32 * 1024;

/// Every API route (the live stream too), each behind its permission
/// ([`crate::auth::authorize`]), with the audit hook around them all so it records refused
/// attempts too; unknown paths under `/api/v1` get a JSON 404.
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .merge(jobs::router())
        .merge(job_history::router())
        .merge(fleet::router())
        .merge(templates::router())
        .merge(artifacts::router())
        .merge(crate::rollouts::routes::router())
        .merge(crate::auth::router())
        .merge(crate::stream::router())
        .route("/audit", get(audit))
        .route("/audit/verify", get(audit_verify))
        .route("/openapi.json", get(openapi::document))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authorize,
        ))
        .fallback(|| async { ApiError::NotFound("no such API endpoint".into()) })
        .layer(axum::middleware::from_fn_with_state(
            state.pool.clone(),
            crate::audit::record_mutations,
        ))
}

/// The JSON extractor whose rejections use the API's error shape.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Self(value))
    }
}

/// The query-string extractor whose rejections use the API's error shape.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let Query(value) =
            Query::<T>::from_request_parts(parts, state)
                .await
                .map_err(|rejection| ApiError::Invalid {
                    message: rejection.body_text(),
                    fields: Vec::new(),
                })?;
        Ok(Self(value))
    }
}

/// Ids of jobs and templates: 1–64 of `[a-zA-Z0-9_-]`, as AWS requires of job ids.
pub(crate) fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `GET /audit`: the audit log, newest first, filtered by action, target prefix, outcome,
/// actor and time.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, description = "A page of the audit log", body = AuditPage), ApiError))]
async fn audit(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::field("limit", "must be from 1 to 500"));
    }
    let (entries, next_before) = crate::audit::page(&state.pool, &query, limit).await?;
    Ok(Json(AuditPage {
        entries,
        next_before,
    }))
}

/// `GET /audit/verify`: walks the audit log's hash chain and names the first entry that was
/// changed or follows a deleted one. It reads the whole log, so it is for admins.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit",
    responses((status = 200, description = "Whether the chain is intact, and where it breaks", body = AuditVerification), ApiError))]
async fn audit_verify(State(state): State<AppState>) -> Result<Json<AuditVerification>, ApiError> {
    Ok(Json(crate::audit::chain::verify(&state.pool).await?))
}
