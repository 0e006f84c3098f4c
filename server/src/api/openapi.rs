//! The OpenAPI document of the HTTP API, generated from the handlers' `#[utoipa::path]`
//! annotations and the `flotilla-api` types (their `openapi` feature), and served at
//! `GET /api/v1/openapi.json`.
//!
//! A test lists the routes of the real router ([`crate::app::build_router`]) and fails when one
//! is missing from the document, or documented but not served, so an endpoint cannot ship
//! undocumented. Another (`tests/tests/e2e/openapi.rs`) validates the served document with
//! `openapi-spec-validator`.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use flotilla_api::stream::{ExecutionChange, ExecutionDeleted, JobDeleted};
use flotilla_api::{ErrorBody, FieldError};
use utoipa::OpenApi;

use super::{fleet, jobs, templates};

/// Every documented operation. Adding a route means adding its handler here.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Flotilla",
        description = "Fleet software updates over AWS IoT Jobs: jobs, templates, the fleet, \
            the audit log and live changes. JSON with snake_case names and RFC 3339 times; every \
            error is an `ErrorBody` with a stable `code`."
    ),
    paths(
        jobs::list,
        jobs::create,
        jobs::detail,
        jobs::delete,
        jobs::cancel,
        jobs::executions,
        jobs::cancel_execution,
        jobs::retry_execution,
        fleet::list_things,
        fleet::thing_detail,
        fleet::list_groups,
        fleet::group_detail,
        templates::list,
        templates::create,
        templates::read,
        templates::update,
        templates::delete,
        templates::versions,
        templates::preview,
        templates::import_managed,
        templates::sync,
        super::audit,
        super::artifacts::list,
        super::artifacts::create_upload,
        super::artifacts::upload,
        super::artifacts::abort_upload,
        super::artifacts::complete,
        super::artifacts::detail,
        super::artifacts::download,
        super::artifacts::delete,
        super::artifacts::deploy,
        super::artifacts::public_key,
        crate::rollouts::routes::list,
        crate::rollouts::routes::create,
        crate::rollouts::routes::preview_new,
        crate::rollouts::routes::detail,
        crate::rollouts::routes::preview_existing,
        crate::rollouts::routes::pause,
        crate::rollouts::routes::resume,
        crate::rollouts::routes::cancel,
        crate::rollouts::routes::promote,
        crate::rollouts::routes::approve,
        crate::rollouts::routes::retry_failed,
        document,
        crate::stream::stream,
        crate::ops::healthz,
        crate::ops::readyz,
        crate::ops::metrics,
    ),
    components(schemas(ErrorBody, FieldError, JobDeleted, ExecutionChange, ExecutionDeleted)),
    tags(
        (name = "jobs", description = "Jobs and their executions, read from the server's projection"),
        (name = "fleet", description = "Things and thing groups as AWS IoT registers them"),
        (name = "templates", description = "Versioned job templates with typed parameters"),
        (name = "artifacts", description = "Uploaded, signed builds and their deployment"),
        (name = "rollouts", description = "Staged rollouts: waves, gates, failure policies"),
        (name = "audit", description = "Every mutation attempted through the API"),
        (name = "stream", description = "Live changes (Server-Sent Events)"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// The document as JSON, made once.
pub fn json() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .expect("an OpenAPI document serializes")
    })
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)))]
pub(super) async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::app::{AppState, build_router};

    /// The methods axum's `MethodRouter` keeps a field for, in the order its `Debug` prints them.
    const METHODS: [&str; 9] = [
        "get", "head", "delete", "options", "patch", "post", "put", "trace", "connect",
    ];

    /// The application's router, on a database and an IoT client that are never reached.
    async fn router() -> axum::Router {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://unused.invalid/unused")
            .expect("a lazy pool");
        let sdk = aws_sdk_iot::Config::builder()
            .behavior_version(aws_sdk_iot::config::BehaviorVersion::latest())
            .region(aws_sdk_iot::config::Region::new("us-east-1"))
            .build();
        let iot = crate::iot::Iot::new(aws_sdk_iot::Client::from_conf(sdk));
        let metrics = Arc::new(crate::ops::Metrics::default());
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .region(aws_sdk_s3::config::Region::new("us-east-1"))
                .build(),
        );
        let artifacts =
            crate::artifacts::Artifacts::start(s3, "us-east-1", &Default::default(), None, false)
                .await
                .expect("artifacts without a store");
        let changed = tokio::sync::mpsc::unbounded_channel().0;
        let projection = crate::projection::Projection::new(pool.clone(), iot.clone());
        let rollouts = crate::rollouts::Orchestrator {
            pool: pool.clone(),
            iot: iot.clone(),
            projection: projection.clone(),
            changed: changed.clone(),
            clock: Arc::new(flotilla_engine::clock::SystemClock),
            wake: Arc::new(tokio::sync::Notify::new()),
            webhooks: Arc::new(tokio::sync::Notify::new()),
        };
        let state = AppState {
            projection,
            changes: crate::stream::ChangeHub::new(
                pool.clone(),
                metrics.clone(),
                CancellationToken::new(),
            ),
            changed,
            artifacts,
            rollouts,
            pool,
            iot,
            metrics,
        };
        build_router(state, std::path::Path::new("static"))
    }

    /// Every (method, path) the router serves, read from its `Debug` output: axum offers no
    /// other way to list routes. The output names each route's id with its path, and each
    /// method router's endpoints by method (`None` where a method is not routed). Should an
    /// axum upgrade change that format, this finds nothing and the test fails; it cannot pass
    /// by finding too little, since every documented operation must be found too.
    fn served(router: &axum::Router) -> BTreeSet<(String, String)> {
        let text = format!("{router:?}");
        // The routes proper; what follows is the fallback router (the web UI).
        let text = text
            .split_once("fallback_router:")
            .map_or(text.as_str(), |(routes, _)| routes);
        let path_re = regex::Regex::new(r#"RouteId\((\d+)\): "([^"]*)""#).expect("a regex");
        let paths: std::collections::HashMap<&str, &str> = path_re
            .captures_iter(text)
            .map(|c| {
                let (_, [id, path]) = c.extract();
                (id, path)
            })
            .collect();
        let method_re =
            regex::Regex::new(r"RouteId\((\d+)\): MethodRouter\(MethodRouter \{ ([^}]*)")
                .expect("a regex");
        let mut served = BTreeSet::new();
        for captures in method_re.captures_iter(text) {
            let (_, [id, fields]) = captures.extract();
            let path = paths.get(id).copied().unwrap_or_default();
            // The nested API's fallback (a JSON 404 for unknown paths), which axum routes at
            // the nest's own path and below it, is not an endpoint.
            if path.contains("__private__axum") || path == "/api/v1" {
                continue;
            }
            for field in fields.split(", ") {
                if let Some((method, endpoint)) = field.split_once(": ")
                    && METHODS.contains(&method)
                    && endpoint != "None"
                    // axum answers HEAD with the GET handler; the document names GET only.
                    && method != "head"
                {
                    served.insert((method.to_owned(), path.to_owned()));
                }
            }
        }
        served
    }

    fn documented() -> BTreeSet<(String, String)> {
        let document: serde_json::Value = serde_json::from_str(json()).expect("JSON");
        let mut documented = BTreeSet::new();
        for (path, item) in document["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("a path item").keys() {
                if METHODS.contains(&method.as_str()) {
                    documented.insert((method.clone(), path.clone()));
                }
            }
        }
        documented
    }

    #[tokio::test]
    async fn every_route_is_documented_and_every_documented_route_is_served() {
        let served = served(&router().await);
        let documented = documented();
        assert!(
            documented.len() >= 48,
            "the document lost operations: {documented:?}"
        );
        let undocumented: Vec<_> = served.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "routes without an OpenAPI operation (add #[utoipa::path] and list the handler in \
             ApiDoc): {undocumented:?}"
        );
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(
            unserved.is_empty(),
            "documented but not served: {unserved:?}\nrouter: {served:?}"
        );
    }
}
