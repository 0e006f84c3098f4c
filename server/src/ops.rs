//! Operations endpoints: `/readyz` (PostgreSQL and IoT reachable), `/metrics` (Prometheus
//! text format), and the middleware that counts HTTP requests.
//!
//! The metrics are a handful of counters kept in atomics and rendered by hand: the format is
//! a few lines of text, not worth a metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::app::AppState;
use crate::projection::Source;

/// How long `/readyz` waits for each dependency.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The server's counters. One per process, shared behind an `Arc`.
#[derive(Debug, Default)]
pub struct Metrics {
    events_from_aws: AtomicU64,
    events_from_extension: AtomicU64,
    events_invalid: AtomicU64,
    reconcile_requests: AtomicU64,
    reconcile_throttled: AtomicU64,
    reconciled_observations: AtomicU64,
    sse_clients: AtomicI64,
    sse_events: AtomicU64,
    /// 1 while the event subscriber is connected with every subscription granted.
    event_subscriber_up: AtomicI64,
    /// 1 while this replica holds the rollout orchestrator's leadership lock.
    rollout_leader: AtomicI64,
    rollout_ticks: AtomicU64,
    /// (method, route, status) → count. Routes, not paths, so ids do not explode the labels.
    http_requests: Mutex<BTreeMap<(String, String, u16), u64>>,
}

impl Metrics {
    pub fn count_ingested(&self, source: Source) {
        match source {
            Source::Extension => &self.events_from_extension,
            Source::Event | Source::Reconcile => &self.events_from_aws,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_invalid_event(&self) {
        self.events_invalid.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_reconcile_request(&self) {
        self.reconcile_requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_reconcile_throttled(&self) {
        self.reconcile_throttled.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_reconciled(&self, observations: u64) {
        self.reconciled_observations
            .fetch_add(observations, Ordering::Relaxed);
    }

    /// Whether the event subscriber is connected and subscribed.
    pub fn set_event_subscriber_up(&self, up: bool) {
        self.event_subscriber_up
            .store(i64::from(up), Ordering::Relaxed);
    }

    /// Whether this replica orchestrates rollouts.
    pub fn set_rollout_leader(&self, leader: bool) {
        self.rollout_leader
            .store(i64::from(leader), Ordering::Relaxed);
    }

    pub fn count_rollout_tick(&self) {
        self.rollout_ticks.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_sse_event(&self) {
        self.sse_events.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an SSE client until the returned guard is dropped.
    pub fn sse_client(self: &std::sync::Arc<Self>) -> SseClientGuard {
        self.sse_clients.fetch_add(1, Ordering::Relaxed);
        SseClientGuard(self.clone())
    }

    fn count_http(&self, method: &str, route: &str, status: u16) {
        let mut requests = self.http_requests.lock().expect("metrics lock");
        *requests
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP flotilla_events_ingested_total Job and job-execution events applied to the projection.\n\
             # TYPE flotilla_events_ingested_total counter\n\
             flotilla_events_ingested_total{{source=\"aws\"}} {}\n\
             flotilla_events_ingested_total{{source=\"extension\"}} {}",
            load(&self.events_from_aws),
            load(&self.events_from_extension)
        );
        let _ = writeln!(
            out,
            "# HELP flotilla_events_invalid_total Events that could not be read.\n\
             # TYPE flotilla_events_invalid_total counter\n\
             flotilla_events_invalid_total {}",
            load(&self.events_invalid)
        );
        let _ = writeln!(
            out,
            "# HELP flotilla_reconcile_requests_total IoT requests made by reconciliation.\n\
             # TYPE flotilla_reconcile_requests_total counter\n\
             flotilla_reconcile_requests_total {}",
            load(&self.reconcile_requests)
        );
        let _ = writeln!(
            out,
            "# HELP flotilla_reconcile_throttled_total Reconciliation requests IoT throttled.\n\
             # TYPE flotilla_reconcile_throttled_total counter\n\
             flotilla_reconcile_throttled_total {}",
            load(&self.reconcile_throttled)
        );
        let _ = writeln!(
            out,
            "# HELP flotilla_reconciled_observations_total Jobs and executions read by reconciliation.\n\
             # TYPE flotilla_reconciled_observations_total counter\n\
             flotilla_reconciled_observations_total {}",
            load(&self.reconciled_observations)
        );
        let _ = writeln!(
            out,
            "# HELP flotilla_sse_clients Clients connected to /api/v1/stream.\n\
             # TYPE flotilla_sse_clients gauge\n\
             flotilla_sse_clients {}",
            self.sse_clients.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP flotilla_sse_events_total Changes sent to stream clients.\n\
             # TYPE flotilla_sse_events_total counter\n\
             flotilla_sse_events_total {}",
            load(&self.sse_events)
        );
        let _ = writeln!(
            out,
            "# HELP flotilla_event_subscriber_up 1 while the job-event subscriber is connected with its subscriptions granted.\n\
             # TYPE flotilla_event_subscriber_up gauge\n\
             flotilla_event_subscriber_up {}",
            self.event_subscriber_up.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP flotilla_rollout_leader 1 while this replica orchestrates rollouts (holds the leadership lock).\n\
             # TYPE flotilla_rollout_leader gauge\n\
             flotilla_rollout_leader {}",
            self.rollout_leader.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP flotilla_rollout_ticks_total Passes the rollout orchestrator made over the active rollouts on this replica.\n\
             # TYPE flotilla_rollout_ticks_total counter\n\
             flotilla_rollout_ticks_total {}",
            load(&self.rollout_ticks)
        );
        let _ = writeln!(
            out,
            "# HELP flotilla_http_requests_total HTTP requests served, by method, route and status.\n\
             # TYPE flotilla_http_requests_total counter"
        );
        for ((method, route, status), count) in
            self.http_requests.lock().expect("metrics lock").iter()
        {
            let route = route.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(
                out,
                "flotilla_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        out
    }
}

/// Keeps `flotilla_sse_clients` counting one client while alive.
#[derive(Debug)]
pub struct SseClientGuard(std::sync::Arc<Metrics>);

impl Drop for SseClientGuard {
    fn drop(&mut self) {
        self.0.sse_clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `/healthz`, `/readyz` and `/metrics`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// Counts every request by method, matched route and status.
pub async fn count_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    state
        .metrics
        .count_http(&method, &route, response.status().as_u16());
    response
}

/// 200 while the process serves requests, whatever its dependencies do.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is alive", content_type = "text/plain", body = String)))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// 200 when PostgreSQL and IoT answer, else 503 with the reasons.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "`{\"status\":\"ready\"}`", body = Object),
        (status = 503, description = "`{\"status\":\"unavailable\",\"reasons\":[{\"component\":…,\"message\":…}]}`", body = Object)))]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let pool = state.projection.pool().clone();
    let iot = state.projection.iot().clone();
    let database = async move {
        match tokio::time::timeout(
            PROBE_TIMEOUT,
            sqlx::query_scalar::<_, i32>("select 1").fetch_one(&pool),
        )
        .await
        {
            Ok(Ok(_)) => None,
            Ok(Err(error)) => {
                tracing::warn!(%error, "readiness: PostgreSQL failed: {error}");
                Some("PostgreSQL refused or failed the probe query".to_owned())
            }
            Err(_) => Some(format!(
                "PostgreSQL did not answer within {PROBE_TIMEOUT:?}"
            )),
        }
    };
    let iot = async move {
        match tokio::time::timeout(PROBE_TIMEOUT, iot.ping()).await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => {
                tracing::warn!(%error, "readiness: AWS IoT failed: {error}");
                Some("AWS IoT refused or failed DescribeEventConfigurations".to_owned())
            }
            Err(_) => Some(format!("AWS IoT did not answer within {PROBE_TIMEOUT:?}")),
        }
    };
    let (database, iot) = tokio::join!(database, iot);
    let reasons: Vec<serde_json::Value> = [("postgres", database), ("iot", iot)]
        .into_iter()
        .filter_map(|(component, reason)| {
            reason.map(|message| json!({"component": component, "message": message}))
        })
        .collect();
    if reasons.is_empty() {
        (StatusCode::OK, Json(json!({"status": "ready"}))).into_response()
    } else {
        tracing::warn!(?reasons, "not ready: {reasons:?}");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reasons": reasons})),
        )
            .into_response()
    }
}

/// This process's counters in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text", content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
