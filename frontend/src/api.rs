//! Calls to the Flotilla HTTP API, turning every failure into a sentence a person can act on.

use std::fmt;

use flotilla_api::{ErrorBody, JobList};
use gloo_net::http::{Request, Response};

/// Where the dashboard lists jobs from; relative, so the page works behind any host and port.
pub const JOBS_URL: &str = "/api/v1/jobs";

/// A failed API call, carrying the message to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The API's `ErrorBody::message` when it sent one, otherwise a description of the failure.
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// `GET /api/v1/jobs`.
pub async fn list_jobs() -> Result<JobList, ApiError> {
    let response = Request::get(JOBS_URL)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| ApiError::new(format!("Could not reach the Flotilla server: {e}")))?;
    if !response.ok() {
        return Err(error_from(response).await);
    }
    response.json::<JobList>().await.map_err(|e| {
        ApiError::new(format!(
            "The server sent a job list this page cannot read: {e}"
        ))
    })
}

/// The error of a non-2xx response: the API's own message when the body is an [`ErrorBody`]
/// (a proxy in front of the server may answer with anything else).
async fn error_from(response: Response) -> ApiError {
    let status = response.status();
    let status_text = response.status_text();
    match response.json::<ErrorBody>().await {
        Ok(body) => ApiError::new(body.message),
        // HTTP/2 has no reason phrase, so the text may be empty.
        Err(_) => ApiError::new(
            format!("The server answered HTTP {status} {status_text}")
                .trim_end()
                .to_owned(),
        ),
    }
}
