//! The JSON API under `/api/v1`: one router per resource, one error type for all, and one
//! audit hook ([`crate::audit`]) around every mutation.
//!
//! - [`jobs`]: create (from a document or a template, with every AWS option), list, read,
//!   cancel and delete jobs; page, cancel and retry their executions.
//! - [`job_history`]: a job's failure reasons and its executions per state over time.
//! - [`fleet`]: things and thing groups.
//! - [`devices`]: the fleet inventory: device search, device pages, software distribution.
//! - [`registry`]: registering devices (one, or a CSV file), bundles, revocation, groups.
//! - [`templates`]: versioned job templates with typed parameters.
//! - [`artifacts`]: uploads, verified and signed artifacts, deployments; the signing key.
//! - [`crate::rollouts::routes`]: staged rollouts (`/rollouts`).
//! - `GET /audit`: the audit log; `GET /audit/verify`: whether its hash chain is intact.
//! - [`crate::auth`]: `GET /me` and personal API tokens (`/tokens`); every route's permission.
//! - [`openapi`]: `GET /openapi.json`, the OpenAPI document generated from these handlers.

pub(crate) mod artifacts;
pub mod devices;
mod error;
mod fleet;
mod job_history;
pub(crate) mod job_options;
pub(crate) mod jobs;
pub mod openapi;
mod projection_reads;
mod registry;
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
        .merge(devices::router())
        .merge(registry::router())
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
        .layer(axum::middleware::from_fn(refuse_nul_in_uri))
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
        let (parts, body) = req.into_parts();
        // The audit hook has read (and bounded) the body of every mutation already.
        let bytes = axum::body::to_bytes(body, crate::audit::MAX_BODY)
            .await
            .map_err(|_| ApiError::TooLarge(crate::audit::MAX_BODY))?;
        // PostgreSQL text cannot hold NUL, and the only way JSON carries one is this escape;
        // the body is searched for it first so ordinary requests are parsed once.
        if memchr_escape(&bytes)
            && let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes)
            && let Some(field) = nul_field(&value, "")
        {
            return Err(ApiError::field(
                &field,
                "must not contain NUL characters (\\u0000)",
            ));
        }
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Self(value))
    }
}

/// Whether `bytes` contain the JSON escape of NUL, `\u0000`.
fn memchr_escape(bytes: &[u8]) -> bool {
    bytes
        .windows(6)
        .any(|w| w[0] == b'\\' && w[1] == b'u' && w[2..].iter().all(|b| *b == b'0'))
}

/// The path (`document.steps[0].name`) of the first string or key in `value` holding a NUL.
fn nul_field(value: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    let name = |path: &str| {
        if path.is_empty() {
            "body".to_owned()
        } else {
            path.to_owned()
        }
    };
    match value {
        Value::String(s) if s.contains('\0') => Some(name(path)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_field(item, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            let inner = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            if key.contains('\0') {
                Some(name(path))
            } else {
                nul_field(item, &inner)
            }
        }),
        _ => None,
    }
}

/// Refuses a path or query string that carries a NUL (`%00`) with a 422 naming the query
/// parameter (or `path`), before any handler hands it to PostgreSQL, which cannot store it.
async fn refuse_nul_in_uri(
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let has_nul = |text: &str| text.to_ascii_lowercase().contains("%00");
    let uri = request.uri();
    let field = if has_nul(uri.path()) {
        Some("path".to_owned())
    } else {
        uri.query().and_then(|query| {
            query
                .split('&')
                .find(|pair| has_nul(pair))
                .map(|pair| pair.split('=').next().unwrap_or_default().to_owned())
        })
    };
    match field {
        Some(field) => {
            ApiError::field(&field, "must not contain NUL characters (%00)").into_response()
        }
        None => next.run(request).await,
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

/// Refuses (under `field`) a document whose `${aws:iot:s3-presigned-url:…}` placeholder names
/// an object by a path that leaves its folder (`../`): the store would resolve it elsewhere.
pub(crate) fn check_object_keys(document: &str, field: &str, problems: &mut job_options::Problems) {
    if let Some(url) = flotilla_engine::artifacts::traversing_placeholder(document) {
        problems.add(
            field,
            format!(
                "the presigned-URL placeholder {url} names an object through . or .. \
                 segments or a backslash; name it by its plain key"
            ),
        );
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
    // chrono reads years PostgreSQL cannot store (it stops at 4713 BC and 294276 AD).
    if let Some(since) = query.since
        && !(1..=9999).contains(&chrono::Datelike::year(&since))
    {
        return Err(ApiError::field(
            "since",
            "must be an RFC 3339 time from year 1 to 9999",
        ));
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
