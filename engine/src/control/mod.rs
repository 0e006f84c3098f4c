//! The IoT control-plane REST API (restJson1) on the paths, methods and member names of the
//! AWS API model (`iot.json`), so `aws-sdk-iot` with an endpoint override talks to the engine
//! as it talks to AWS.
//!
//! Errors follow restJson1: the HTTP status of the error shape, the shape's name in the
//! `x-amzn-ErrorType` header and `{"message": …}` as the body. Timestamps are epoch seconds.

mod jobs;
mod things;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::EngineConfig;
use crate::jobs::{ErrorKind, Jobs, ServiceError};

/// What the control-plane handlers share.
#[derive(Clone)]
pub struct ControlState {
    pub jobs: Arc<Jobs>,
    pub config: Arc<EngineConfig>,
}

/// The control-plane router.
pub fn router(state: ControlState) -> Router {
    Router::new()
        .merge(things::router())
        .merge(jobs::router())
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

/// A restJson1 error response.
#[derive(Debug)]
pub struct AwsError {
    status: StatusCode,
    error_type: &'static str,
    message: String,
}

impl AwsError {
    fn new(status: StatusCode, error_type: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error_type,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequestException", message)
    }
}

impl From<ServiceError> for AwsError {
    fn from(error: ServiceError) -> Self {
        let (status, error_type) = match error.kind {
            ErrorKind::InvalidRequest => (StatusCode::BAD_REQUEST, "InvalidRequestException"),
            ErrorKind::ResourceNotFound => (StatusCode::NOT_FOUND, "ResourceNotFoundException"),
            ErrorKind::ResourceAlreadyExists => {
                (StatusCode::CONFLICT, "ResourceAlreadyExistsException")
            }
            ErrorKind::VersionMismatch => (StatusCode::CONFLICT, "VersionConflictException"),
            ErrorKind::InvalidStateTransition => {
                (StatusCode::CONFLICT, "InvalidStateTransitionException")
            }
            ErrorKind::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailureException",
            ),
        };
        Self::new(status, error_type, error.message)
    }
}

impl IntoResponse for AwsError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(json!({ "message": self.message }))).into_response();
        response.headers_mut().insert(
            "x-amzn-ErrorType",
            HeaderValue::from_static(self.error_type),
        );
        response
    }
}

/// Decodes a JSON request body; an empty body is `{}` as restJson1 allows.
pub(crate) fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, AwsError> {
    let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { bytes };
    serde_json::from_slice(bytes)
        .map_err(|error| AwsError::invalid(format!("invalid request body: {error}")))
}

/// Epoch seconds with milliseconds, as restJson1 encodes timestamps.
pub(crate) fn epoch(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// Accepts only requests signed with the configured access key (SigV4 `Authorization`
/// header). Anything else is refused as AWS refuses it: 403.
async fn authenticate(State(state): State<ControlState>, request: Request, next: Next) -> Response {
    let expected = format!("Credential={}/", state.config.access_key_id);
    let signed = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 ") && v.contains(&expected));
    if !signed {
        return AwsError::new(
            StatusCode::FORBIDDEN,
            "UnauthorizedException",
            "The request is not signed with a known access key",
        )
        .into_response();
    }
    next.run(request).await
}
