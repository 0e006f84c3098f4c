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
            error is an `ErrorBody` with a stable `code`. Requests are authenticated by the \
            server's sign-in (an identity-aware proxy, an AWS ALB, OpenID Connect with a session \
            cookie whose changes carry `X-CSRF-Token`, or development sign-in) or \
            with a personal API token as `Authorization: Bearer flt_…`; each operation needs a \
            role (viewer, technician, operator, admin), else 401 `unauthenticated` or 403 \
            `forbidden`."
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
        super::job_history::failure_reasons,
        fleet::list_things,
        fleet::thing_detail,
        fleet::list_groups,
        fleet::group_detail,
        super::devices::list,
        super::devices::detail,
        super::devices::software_versions,
        super::registry::register,
        super::registry::import,
        super::registry::bundle,
        super::registry::certificates,
        super::registry::revoke,
        super::registry::create_group,
        super::registry::delete_group,
        super::registry::add_members,
        super::registry::remove_member,
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
        super::audit_verify,
        crate::auth::me,
        crate::auth::oidc::login,
        crate::auth::oidc::callback,
        crate::auth::oidc::logout,
        crate::auth::tokens::list,
        crate::auth::tokens::create,
        crate::auth::tokens::revoke,
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
        crate::rollouts::routes::rollback,
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
        (name = "inventory", description = "The fleet inventory: devices with groups, connectivity, installed software and last job outcome"),
        (name = "templates", description = "Versioned job templates with typed parameters"),
        (name = "artifacts", description = "Uploaded, signed builds and their deployment"),
        (name = "rollouts", description = "Staged rollouts: waves, gates, failure policies"),
        (name = "audit", description = "Every mutation attempted through the API"),
        (name = "auth", description = "Sign-in, the caller's identity and personal API tokens"),
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

    use super::*;
    use crate::auth::permissions::served_routes;

    /// The methods of OpenAPI operations.
    const METHODS: [&str; 8] = [
        "get", "head", "delete", "options", "patch", "post", "put", "trace",
    ];

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
        let served = served_routes(&crate::app::router_for_inspection().await);
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
