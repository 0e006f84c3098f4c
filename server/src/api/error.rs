//! The API's one error type. Every error becomes a JSON [`ErrorBody`] with a stable code;
//! internal causes are logged here, once, and never shown to clients.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flotilla_api::{ErrorBody, FieldError};

use crate::iot::IotError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or invalid; field messages say what to fix.
    #[error("{message}")]
    Invalid {
        message: String,
        fields: Vec<FieldError>,
    },
    /// The request carries no identity, or one that is forged, expired or from an untrusted
    /// address.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller's role does not allow the request.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// AWS IoT (or the engine) failed or throttled us.
    #[error(transparent)]
    Upstream(IotError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The artifact store (S3) failed.
    #[error(transparent)]
    Store(#[from] crate::artifacts::StoreError),
    /// The signing key (a file or KMS) failed.
    #[error(transparent)]
    Signing(#[from] crate::signing::SignError),
    /// This server is not set up for the request (e.g. no signing key).
    #[error("{0}")]
    Unavailable(String),
    /// The request body is larger than the limit (in bytes).
    #[error("the request body must be at most {0} bytes")]
    TooLarge(usize),
}

impl ApiError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::Invalid {
            message: format!("{field}: {message}"),
            fields: vec![FieldError {
                field: field.to_owned(),
                message,
            }],
        }
    }
}

impl ApiError {
    /// Several field messages at once (validation reports every problem it finds).
    pub fn fields(fields: Vec<FieldError>) -> Self {
        let message = fields
            .iter()
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect::<Vec<_>>()
            .join("; ");
        Self::Invalid { message, fields }
    }
}

impl From<IotError> for ApiError {
    fn from(error: IotError) -> Self {
        match error {
            IotError::NotFound(message) => Self::NotFound(message),
            IotError::AlreadyExists(message) | IotError::Conflict(message) => {
                Self::Conflict(message)
            }
            IotError::Invalid(message) => Self::Invalid {
                message,
                fields: Vec::new(),
            },
            other => Self::Upstream(other),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::Invalid {
            message: rejection.body_text(),
            fields: Vec::new(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, fields) = match self {
            Self::Invalid { message, fields } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                message,
                fields,
            ),
            Self::Unauthenticated(message) => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                message,
                Vec::new(),
            ),
            Self::Forbidden(message) => (StatusCode::FORBIDDEN, "forbidden", message, Vec::new()),
            Self::NotFound(message) => (StatusCode::NOT_FOUND, "not_found", message, Vec::new()),
            Self::Conflict(message) => (StatusCode::CONFLICT, "conflict", message, Vec::new()),
            Self::Upstream(error) => {
                tracing::error!(%error, "IoT call failed: {error}");
                (
                    StatusCode::BAD_GATEWAY,
                    "upstream",
                    "AWS IoT did not answer as expected; try again".to_owned(),
                    Vec::new(),
                )
            }
            Self::Store(error) => {
                tracing::error!(%error, "artifact store call failed: {error}");
                (
                    StatusCode::BAD_GATEWAY,
                    "upstream",
                    "the artifact store did not answer as expected; try again".to_owned(),
                    Vec::new(),
                )
            }
            Self::Signing(error) => {
                tracing::error!(%error, "signing failed: {error}");
                (
                    StatusCode::BAD_GATEWAY,
                    "signing_failed",
                    "the artifact could not be signed; try again".to_owned(),
                    Vec::new(),
                )
            }
            Self::TooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body must be at most {limit} bytes"),
                Vec::new(),
            ),
            Self::Unavailable(message) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                message,
                Vec::new(),
            ),
            Self::Database(error) => {
                tracing::error!(%error, "database error: {error}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error".to_owned(),
                    Vec::new(),
                )
            }
        };
        let mut response = (
            status,
            Json(ErrorBody {
                code: code.to_owned(),
                message,
                fields,
            }),
        )
            .into_response();
        // For the audit hook, which records the outcome of every mutation.
        response
            .extensions_mut()
            .insert(crate::audit::ErrorCode(code));
        response
    }
}

/// The error answers every API operation may give, for the OpenAPI document: each is an
/// [`ErrorBody`] whose `code` goes with the status.
impl utoipa::IntoResponses for ApiError {
    fn responses() -> std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    > {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        [
            (
                "401",
                "`unauthenticated`: no identity, or a forged, expired or untrusted one",
            ),
            ("403", "`forbidden`: the caller's role does not allow this"),
            ("413", "`payload_too_large`: the request body is over 1 MiB"),
            ("404", "`not_found`: no such job, template, thing or group"),
            (
                "409",
                "`conflict`: the resource exists already or its state forbids the change",
            ),
            (
                "422",
                "`invalid_request`: malformed or invalid input; `fields` says what to fix",
            ),
            (
                "500",
                "`internal`: the server failed (the cause is in its log)",
            ),
            (
                "502",
                "`upstream`: AWS IoT failed or throttled the call; try again",
            ),
        ]
        .into_iter()
        .map(|(status, description)| {
            let response = ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build();
            (status.to_owned(), response.into())
        })
        .collect()
    }
}
