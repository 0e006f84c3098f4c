//! The permission table: every route (method and path pattern, as the router matches them) and
//! the least role that may call it. A route without a row is refused to everyone, and tests
//! list the router's routes ([`served_routes`]) to fail when one lacks a row.
//!
//! Viewers read; technicians act on single devices (cancel or retry one execution, create a
//! job from a published template on one device, checked by the handler); operators create and
//! control jobs, rollouts, templates and artifacts; admins manage everyone's tokens (the
//! token handlers check ownership).

use std::collections::BTreeSet;

use axum::http::Method;
use flotilla_api::Role;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not: health, readiness, metrics, the API's description and
    /// sign-in itself.
    Public,
    /// Signed-in users with at least this role.
    Role(Role),
}

use Access::{Public, Role as At};
use Role::{Admin, Operator, Technician, Viewer};

/// `(method, route, access)` for every route.
pub const RULES: &[(&str, &str, Access)] = &[
    ("GET", "/healthz", Public),
    ("GET", "/readyz", Public),
    ("GET", "/metrics", Public),
    ("GET", "/api/v1/openapi.json", Public),
    ("GET", "/api/v1/me", At(Viewer)),
    // OpenID Connect sign-in: before there is anyone to authorize. Logout checks the
    // session's CSRF token itself.
    ("GET", "/api/v1/auth/login", Public),
    ("GET", "/api/v1/auth/callback", Public),
    ("POST", "/api/v1/auth/logout", Public),
    ("GET", "/api/v1/tokens", At(Viewer)),
    ("POST", "/api/v1/tokens", At(Viewer)),
    ("DELETE", "/api/v1/tokens/{token_id}", At(Viewer)),
    ("GET", "/api/v1/audit", At(Viewer)),
    // It reads the whole log.
    ("GET", "/api/v1/audit/verify", At(Admin)),
    ("GET", "/api/v1/stream", At(Viewer)),
    // Jobs.
    ("GET", "/api/v1/jobs", At(Viewer)),
    ("POST", "/api/v1/jobs", At(Technician)),
    ("GET", "/api/v1/jobs/{job_id}", At(Viewer)),
    ("DELETE", "/api/v1/jobs/{job_id}", At(Operator)),
    ("POST", "/api/v1/jobs/{job_id}/cancel", At(Operator)),
    ("GET", "/api/v1/jobs/{job_id}/executions", At(Viewer)),
    ("GET", "/api/v1/jobs/{job_id}/failure-reasons", At(Viewer)),
    (
        "POST",
        "/api/v1/jobs/{job_id}/executions/{thing_name}/cancel",
        At(Technician),
    ),
    (
        "POST",
        "/api/v1/jobs/{job_id}/executions/{thing_name}/retry",
        At(Technician),
    ),
    // The fleet.
    ("GET", "/api/v1/things", At(Viewer)),
    ("GET", "/api/v1/things/{thing_name}", At(Viewer)),
    ("GET", "/api/v1/thing-groups", At(Viewer)),
    ("GET", "/api/v1/thing-groups/{group_name}", At(Viewer)),
    // The inventory.
    ("GET", "/api/v1/devices", At(Viewer)),
    ("GET", "/api/v1/devices/{thing_name}", At(Viewer)),
    ("GET", "/api/v1/software-versions", At(Viewer)),
    ("POST", "/api/v1/devices", At(Operator)),
    ("POST", "/api/v1/devices/import", At(Operator)),
    (
        "GET",
        "/api/v1/devices/{thing_name}/certificates",
        At(Viewer),
    ),
    ("POST", "/api/v1/devices/{thing_name}/revoke", At(Operator)),
    // A bundle holds a device's private key: whoever registered devices fetches it.
    ("GET", "/api/v1/device-bundles/{token}", At(Operator)),
    ("POST", "/api/v1/thing-groups", At(Operator)),
    ("DELETE", "/api/v1/thing-groups/{group_name}", At(Operator)),
    (
        "POST",
        "/api/v1/thing-groups/{group_name}/members",
        At(Operator),
    ),
    (
        "DELETE",
        "/api/v1/thing-groups/{group_name}/members/{thing_name}",
        At(Operator),
    ),
    // Templates.
    ("GET", "/api/v1/templates", At(Viewer)),
    ("POST", "/api/v1/templates", At(Operator)),
    ("POST", "/api/v1/templates/import-managed", At(Operator)),
    ("GET", "/api/v1/templates/{template_id}", At(Viewer)),
    ("PUT", "/api/v1/templates/{template_id}", At(Operator)),
    ("DELETE", "/api/v1/templates/{template_id}", At(Operator)),
    (
        "GET",
        "/api/v1/templates/{template_id}/versions",
        At(Viewer),
    ),
    // A preview renders a document and changes nothing.
    (
        "POST",
        "/api/v1/templates/{template_id}/preview",
        At(Viewer),
    ),
    ("POST", "/api/v1/templates/{template_id}/sync", At(Operator)),
    // Artifacts.
    ("GET", "/api/v1/artifacts", At(Viewer)),
    ("POST", "/api/v1/artifacts/uploads", At(Operator)),
    // An upload in progress answers with presigned URLs that write to the store.
    ("GET", "/api/v1/artifacts/uploads/{upload_id}", At(Operator)),
    (
        "DELETE",
        "/api/v1/artifacts/uploads/{upload_id}",
        At(Operator),
    ),
    (
        "POST",
        "/api/v1/artifacts/uploads/{upload_id}/complete",
        At(Operator),
    ),
    ("GET", "/api/v1/artifacts/{id}", At(Viewer)),
    ("DELETE", "/api/v1/artifacts/{id}", At(Operator)),
    ("GET", "/api/v1/artifacts/{id}/download", At(Viewer)),
    ("POST", "/api/v1/artifacts/{id}/deploy", At(Operator)),
    ("GET", "/api/v1/signing/public-key", At(Viewer)),
    // Rollouts.
    ("GET", "/api/v1/rollouts", At(Viewer)),
    ("POST", "/api/v1/rollouts", At(Operator)),
    ("POST", "/api/v1/rollouts/preview", At(Viewer)),
    ("GET", "/api/v1/rollouts/{rollout_id}", At(Viewer)),
    ("GET", "/api/v1/rollouts/{rollout_id}/preview", At(Viewer)),
    ("POST", "/api/v1/rollouts/{rollout_id}/pause", At(Operator)),
    ("POST", "/api/v1/rollouts/{rollout_id}/resume", At(Operator)),
    ("POST", "/api/v1/rollouts/{rollout_id}/cancel", At(Operator)),
    (
        "POST",
        "/api/v1/rollouts/{rollout_id}/rollback",
        At(Operator),
    ),
    (
        "POST",
        "/api/v1/rollouts/{rollout_id}/promote",
        At(Operator),
    ),
    (
        "POST",
        "/api/v1/rollouts/{rollout_id}/approve",
        At(Operator),
    ),
    (
        "POST",
        "/api/v1/rollouts/{rollout_id}/retry-failed",
        At(Operator),
    ),
];

/// The rule of `method` on `route` (the matched path pattern); HEAD is GET's.
pub fn required(method: &Method, route: &str) -> Option<Access> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    RULES
        .iter()
        .find(|(m, r, _)| *m == method && *r == route)
        .map(|(_, _, access)| *access)
}

/// The methods axum's `MethodRouter` keeps a field for, in the order its `Debug` prints them.
const METHODS: [&str; 9] = [
    "get", "head", "delete", "options", "patch", "post", "put", "trace", "connect",
];

/// Every (method, path) `router` serves, the method in lowercase, read from its `Debug`
/// output: axum offers no other way to list routes. The output names each route's id with its
/// path, and each method router's endpoints by method (`None` where a method is not routed).
/// Should an axum upgrade change that format, this finds nothing, and the tests built on it
/// fail because every documented operation and every rule must be found too.
pub fn served_routes(router: &axum::Router) -> BTreeSet<(String, String)> {
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
    let method_re = regex::Regex::new(r"RouteId\((\d+)\): MethodRouter\(MethodRouter \{ ([^}]*)")
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
                // axum answers HEAD with the GET handler.
                && method != "head"
            {
                served.insert((method.to_owned(), path.to_owned()));
            }
        }
    }
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_route_has_a_rule_and_every_rule_a_route() {
        let served = served_routes(&crate::app::router_for_inspection().await);
        assert!(served.len() >= 50, "too few routes found: {served:?}");
        let mut missing = Vec::new();
        for (method, path) in &served {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
            if required(&method, path).is_none() {
                missing.push(format!("{method} {path}"));
            }
        }
        assert!(
            missing.is_empty(),
            "routes without a permission rule (add them to RULES): {missing:?}"
        );
        let stale: Vec<_> = RULES
            .iter()
            .filter(|(m, r, _)| !served.contains(&(m.to_lowercase(), (*r).to_owned())))
            .collect();
        assert!(
            stale.is_empty(),
            "rules for routes that do not exist: {stale:?}"
        );
    }

    #[test]
    fn head_is_get_and_unknown_routes_have_no_rule() {
        assert_eq!(required(&Method::HEAD, "/healthz"), Some(Public));
        assert_eq!(required(&Method::POST, "/healthz"), None);
        assert_eq!(
            required(&Method::POST, "/api/v1/jobs/{job_id}/cancel"),
            Some(At(Operator))
        );
    }
}
