//! The JSON API under `/api/v1`: one router per resource, one error type for all.

mod error;
mod jobs;

use axum::Router;

use crate::app::AppState;
pub use error::ApiError;

/// Every API route; unknown paths under `/api/v1` get a JSON 404.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(jobs::router())
        .fallback(|| async { ApiError::NotFound("no such API endpoint".into()) })
}
