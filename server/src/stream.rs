//! `GET /api/v1/stream`: Server-Sent Events of job and execution changes, optionally only
//! those of one job (`?job_id=`).
//!
//! Every change of the projection is a row of `server.changes`, written in the transaction
//! that made it, with ids visible in increasing order (see
//! [`crate::projection`]). Each replica runs one [`run_listener`] that LISTENs on
//! [`CHANGES_CHANNEL`], reads the new rows once and broadcasts them to its clients, so a change
//! made on any replica reaches the clients of all. The row id is the SSE event id: a client
//! that reconnects with `Last-Event-ID` first gets every change after it from the table, then
//! the live ones, without a gap or a duplicate.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures::Stream;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::api::ApiError;
use crate::app::AppState;
use crate::ops::Metrics;
use crate::projection::CHANGES_CHANNEL;

/// How many feed rows one query reads.
const PAGE: i64 = 1000;

/// How often the listener reads the feed even without a notification (a lost LISTEN
/// connection loses notifications, not rows).
const POLL_EVERY: Duration = Duration::from_secs(2);

/// One row of the change feed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FeedItem {
    pub id: i64,
    pub job_id: String,
    pub kind: String,
    /// The change as JSON text.
    pub payload: String,
}

/// This replica's fan-out of the change feed to its stream clients. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ChangeHub {
    sender: broadcast::Sender<Arc<FeedItem>>,
    pool: PgPool,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

impl ChangeHub {
    pub fn new(pool: PgPool, metrics: Arc<Metrics>, shutdown: CancellationToken) -> Self {
        let (sender, _) = broadcast::channel(4096);
        Self {
            sender,
            pool,
            metrics,
            shutdown,
        }
    }

    /// Every change of the projection from now on (the rollout orchestrator wakes on them).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FeedItem>> {
        self.sender.subscribe()
    }
}

/// Feed rows after `after`, optionally of one job, oldest first.
async fn read_feed(pool: &PgPool, after: i64, job_id: Option<&str>) -> sqlx::Result<Vec<FeedItem>> {
    sqlx::query_as(
        "select id, job_id, kind, payload::text as payload from server.changes
         where id > $1 and ($2::text is null or job_id = $2) order by id limit $3",
    )
    .bind(after)
    .bind(job_id)
    .bind(PAGE)
    .fetch_all(pool)
    .await
}

async fn newest_id(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("select coalesce(max(id), 0) from server.changes")
        .fetch_one(pool)
        .await
}

/// LISTENs for new changes and broadcasts every feed row, in id order, to this replica's
/// clients. Reconnects on its own; reads the feed every [`POLL_EVERY`] regardless.
pub async fn run_listener(hub: ChangeHub) {
    let mut last = loop {
        match newest_id(&hub.pool).await {
            Ok(id) => break id,
            Err(error) => {
                tracing::warn!(%error, "reading the change feed failed: {error}");
                tokio::select! {
                    () = hub.shutdown.cancelled() => return,
                    () = tokio::time::sleep(POLL_EVERY) => {}
                }
            }
        }
    };
    let mut listener: Option<PgListener> = None;
    loop {
        if listener.is_none() {
            match PgListener::connect_with(&hub.pool).await {
                Ok(mut new) => match new.listen(CHANGES_CHANNEL).await {
                    Ok(()) => listener = Some(new),
                    Err(error) => {
                        tracing::warn!(%error, "LISTEN {CHANGES_CHANNEL} failed: {error}")
                    }
                },
                Err(error) => {
                    tracing::warn!(%error, "connecting the change listener failed: {error}")
                }
            }
        }
        // Read whatever is new, then wait for the next notification (or the poll).
        loop {
            match read_feed(&hub.pool, last, None).await {
                Ok(items) => {
                    let full = items.len() as i64 == PAGE;
                    for item in items {
                        last = item.id;
                        // No receivers is fine: nobody is watching right now.
                        let _ = hub.sender.send(Arc::new(item));
                    }
                    if !full {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "reading the change feed failed: {error}");
                    break;
                }
            }
        }
        let wait = async {
            match listener.as_mut() {
                Some(l) => l.try_recv().await.map(|n| n.is_some()).unwrap_or(false),
                None => {
                    tokio::time::sleep(POLL_EVERY).await;
                    true
                }
            }
        };
        let lost = tokio::select! {
            () = hub.shutdown.cancelled() => return,
            alive = wait => !alive,
            () = tokio::time::sleep(POLL_EVERY) => false,
        };
        if lost {
            // The connection dropped; notifications meanwhile are lost, rows are not.
            listener = None;
        }
    }
}

/// `/api/v1/stream`.
pub fn router() -> Router<AppState> {
    Router::new().route("/stream", get(stream))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamQuery {
    /// Only this job's changes.
    job_id: Option<String>,
}

/// Live changes as Server-Sent Events: each event's `id` is its change id (send it back as
/// `Last-Event-ID` to resume without a gap), its `event` is `job`, `job_deleted`, `execution`
/// or `execution_deleted`, and its `data` the JSON of `Job`, `JobDeleted`, `ExecutionChange` or
/// `ExecutionDeleted`.
#[utoipa::path(get, path = "/api/v1/stream", tag = "stream",
    params(StreamQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event id")),
    responses(
        (status = 200, description = "An endless stream of change events",
            content_type = "text/event-stream", body = String),
        ApiError))]
pub(crate) async fn stream(
    State(state): State<AppState>,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let resume_from = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|id| *id >= 0)
                .ok_or_else(|| {
                    ApiError::field("Last-Event-ID", "must be an event id this stream sent")
                })?,
        ),
    };
    let hub = state.changes.clone();
    // Subscribed before reading the table, so nothing committed meanwhile is missed.
    let mut live = hub.sender.subscribe();
    let mut last = match resume_from {
        Some(id) => id,
        None => newest_id(&hub.pool).await?,
    };
    let (tx, rx) = mpsc::channel::<Event>(256);
    let guard = hub.metrics.sse_client();
    tokio::spawn(async move {
        let _guard = guard;
        let job_id = query.job_id;
        let send = |item: &FeedItem| {
            Event::default()
                .id(item.id.to_string())
                .event(item.kind.clone())
                .data(item.payload.clone())
        };
        // Catch up from the table until the live broadcast has everything after `last`.
        let mut catch_up = true;
        loop {
            if catch_up {
                loop {
                    let items = match read_feed(&hub.pool, last, job_id.as_deref()).await {
                        Ok(items) => items,
                        Err(error) => {
                            tracing::warn!(%error, "reading the change feed for a stream failed: {error}");
                            return;
                        }
                    };
                    let full = items.len() as i64 == PAGE;
                    for item in &items {
                        last = item.id;
                        if tx.send(send(item)).await.is_err() {
                            return;
                        }
                        hub.metrics.count_sse_event();
                    }
                    if !full {
                        break;
                    }
                }
                catch_up = false;
            }
            let item = tokio::select! {
                () = hub.shutdown.cancelled() => return,
                () = tx.closed() => return,
                item = live.recv() => item,
            };
            match item {
                Ok(item) => {
                    if item.id <= last || job_id.as_deref().is_some_and(|job| job != item.job_id) {
                        continue;
                    }
                    last = item.id;
                    if tx.send(send(&item)).await.is_err() {
                        return;
                    }
                    hub.metrics.count_sse_event();
                }
                // This client fell behind the broadcast: read what it missed from the table.
                Err(broadcast::error::RecvError::Lagged(_)) => catch_up = true,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
