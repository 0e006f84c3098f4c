//! Calls to the Flotilla HTTP API, turning every failure into a sentence a person can act on
//! and keeping the API's per-field messages for forms.

use std::fmt;

use flotilla_api::{ErrorBody, FieldError};
use gloo_net::http::{Request, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::route::encode;

/// A failed API call, carrying the message to show.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The API's `ErrorBody::message` when it sent one, otherwise a description of the failure.
    pub message: String,
    /// The API's field messages for invalid input.
    pub fields: Vec<FieldError>,
    /// The API's stable error code (`unauthenticated` …), when it sent one.
    pub code: Option<String>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        for field in &self.fields {
            write!(f, "; {}: {}", field.field, field.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            fields: Vec::new(),
            code: None,
        }
    }
}

/// What an API call gives.
pub type ApiResult<T> = Result<T, ApiError>;

/// `GET path` as JSON.
pub async fn get<T: DeserializeOwned>(path: &str) -> ApiResult<T> {
    let response = Request::get(path)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(unreachable)?;
    read(response).await
}

thread_local! {
    /// The session's CSRF token (`GET /api/v1/me` answers it under OpenID Connect sign-in).
    static CSRF_TOKEN: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Remembers the CSRF token every change must carry from now on.
pub fn set_csrf_token(token: Option<String>) {
    CSRF_TOKEN.with(|cell| *cell.borrow_mut() = token);
}

/// `POST path` with a JSON body, answered with JSON. It carries the session's CSRF token,
/// which the server requires of every change a session cookie authenticates.
pub async fn post<B: Serialize, T: DeserializeOwned>(path: &str, body: &B) -> ApiResult<T> {
    let mut request = Request::post(path).header("accept", "application/json");
    if let Some(token) = CSRF_TOKEN.with(|cell| cell.borrow().clone()) {
        request = request.header("x-csrf-token", &token);
    }
    let response = request
        .json(body)
        .map_err(|e| ApiError::new(format!("Could not encode the request: {e}")))?
        .send()
        .await
        .map_err(unreachable)?;
    read(response).await
}

/// `POST path` with a body of `content_type` (a CSV file, say), answered with JSON; with the
/// session's CSRF token like [`post`].
pub async fn post_text<T: DeserializeOwned>(
    path: &str,
    content_type: &str,
    body: String,
) -> ApiResult<T> {
    let mut request = Request::post(path)
        .header("accept", "application/json")
        .header("content-type", content_type);
    if let Some(token) = CSRF_TOKEN.with(|cell| cell.borrow().clone()) {
        request = request.header("x-csrf-token", &token);
    }
    let response = request
        .body(body)
        .map_err(|e| ApiError::new(format!("Could not encode the request: {e}")))?
        .send()
        .await
        .map_err(unreachable)?;
    read(response).await
}

/// `DELETE path`, answered with no content.
pub async fn delete(path: &str) -> ApiResult<()> {
    let response = Request::delete(path)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(unreachable)?;
    if !response.ok() {
        return Err(error_from(response).await);
    }
    Ok(())
}

fn unreachable(e: gloo_net::Error) -> ApiError {
    ApiError::new(format!("Could not reach the Flotilla server: {e}"))
}

async fn read<T: DeserializeOwned>(response: Response) -> ApiResult<T> {
    if !response.ok() {
        return Err(error_from(response).await);
    }
    response.json::<T>().await.map_err(|e| {
        ApiError::new(format!(
            "The server sent an answer this page cannot read: {e}"
        ))
    })
}

/// The error of a non-2xx response: the API's own message when the body is an [`ErrorBody`]
/// (a proxy in front of the server may answer with anything else).
async fn error_from(response: Response) -> ApiError {
    let status = response.status();
    let status_text = response.status_text();
    match response.json::<ErrorBody>().await {
        Ok(body) => ApiError {
            message: body.message,
            fields: body.fields,
            code: Some(body.code),
        },
        // HTTP/2 has no reason phrase, so the text may be empty.
        Err(_) => ApiError::new(
            format!("The server answered HTTP {status} {status_text}")
                .trim_end()
                .to_owned(),
        ),
    }
}
