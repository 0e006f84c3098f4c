//! The audit hook: every mutation attempted through `/api/v1` — accepted or refused — leaves
//! one row in `server.audit_log` with who, what, on which resource, a summary of the request,
//! the outcome, when and from where.
//!
//! It is one middleware around the whole API rather than a call in each handler, so a new
//! endpoint cannot forget it and refused requests (bad JSON, validation errors) are recorded
//! like accepted ones.
//!
//! The log is append-only and hash-chained by the database (migration 0019); [`chain`] checks
//! the chain.

pub mod chain;

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, MatchedPath, OriginalUri, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use flotilla_api::AuditEntry;
use serde_json::Value;
use sqlx::PgPool;

/// Who acted when the request carried no valid identity.
pub const ANONYMOUS: &str = "anonymous";

/// Who is acting: the signed-in user, as [`crate::auth::authorize`] found them. Handlers that
/// record their own audit entries (rollout transitions) take it from the request's extensions.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

/// The error code an [`crate::api::ApiError`] answered with, left on the response for the
/// audit hook.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// The largest request body the hook reads; the server's body limit is the same.
pub const MAX_BODY: usize = 1024 * 1024;

/// Strings longer than this are cut in the stored summary.
const MAX_STRING: usize = 256;

/// The middleware: passes reads through; for anything else, runs the handler and records the
/// attempt and its outcome.
pub async fn record_mutations(
    State(pool): State<PgPool>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let action = format!(
        "{} {}",
        request.method(),
        request
            .extensions()
            .get::<MatchedPath>()
            .map_or("(unknown route)", MatchedPath::as_str)
    );
    // Inside the nested API router the URI has lost its `/api/v1` prefix; the original
    // names the resource as the client did.
    let target = request.extensions().get::<OriginalUri>().map_or_else(
        || request.uri().path().to_owned(),
        |uri| uri.path().to_owned(),
    );
    let source = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string());
    let (parts, body) = request.into_parts();
    // A body announced too large is refused unread; a chunked one (no Content-Length) is
    // refused when it grows past the limit. Both are 413 and on record.
    let announced = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok()?.parse::<u64>().ok());
    let read = match announced {
        Some(length) if length > MAX_BODY as u64 => Err(()),
        _ => axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| ()),
    };
    let (bytes, response) = match read {
        Ok(bytes) => {
            let response = next
                .run(Request::from_parts(parts, Body::from(bytes.clone())))
                .await;
            (bytes, response)
        }
        Err(()) => (
            Bytes::new(),
            crate::api::ApiError::TooLarge(MAX_BODY).into_response(),
        ),
    };
    let status = response.status();
    let outcome = response
        .extensions()
        .get::<ErrorCode>()
        .map_or(if status.is_success() { "ok" } else { "error" }, |code| {
            code.0
        });
    // The permission check inside leaves the identity it found on the response, refused or
    // not.
    let identity = response.extensions().get::<crate::auth::Identity>();
    let entry = NewEntry {
        actor: identity.map_or(ANONYMOUS, |identity| identity.user.as_str()),
        role: identity.map(|identity| identity.role.as_str()),
        action: &action,
        target: &target,
        request: summarize(&bytes),
        status,
        outcome,
        source: source.as_deref(),
    };
    if let Err(error) = entry.insert(&pool).await {
        tracing::error!(%error, action = %action, target = %target, "writing the audit log failed: {error}");
    }
    response
}

/// One attempt to record (the hook's, or a handler's that is no mutation but must be on
/// record, like a sign-in).
pub(crate) struct NewEntry<'a> {
    pub actor: &'a str,
    pub role: Option<&'a str>,
    pub action: &'a str,
    pub target: &'a str,
    pub request: Option<Value>,
    pub status: StatusCode,
    pub outcome: &'a str,
    pub source: Option<&'a str>,
}

/// Records a state change the server made, on its own or for an operator (a rollout's
/// transitions), inside the caller's transaction so the change and its record commit
/// together. `details` says what changed and why; the status is 200 and the source empty,
/// as no request of its own caused it.
pub async fn record_change(
    conn: &mut sqlx::PgConnection,
    actor: &str,
    action: &str,
    target: &str,
    details: Value,
) -> sqlx::Result<()> {
    NewEntry {
        actor,
        role: None,
        action,
        target,
        request: Some(details),
        status: StatusCode::OK,
        outcome: "ok",
        source: None,
    }
    .insert(conn)
    .await
}

impl NewEntry<'_> {
    pub(crate) async fn insert<'e>(&self, executor: impl sqlx::PgExecutor<'e>) -> sqlx::Result<()> {
        sqlx::query(
            "insert into server.audit_log (actor, role, action, target, request, status, outcome, source)
             values ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(self.actor)
        .bind(self.role)
        .bind(self.action)
        .bind(self.target)
        .bind(&self.request)
        .bind(i32::from(self.status.as_u16()))
        .bind(self.outcome)
        .bind(self.source)
        .execute(executor)
        .await?;
        Ok(())
    }
}

/// What of a request body to keep: its JSON with every `document` replaced by its size and
/// long strings and arrays cut, so the log stays small and readable; for a body that is not
/// JSON, only its size.
fn summarize(body: &[u8]) -> Option<Value> {
    if body.is_empty() {
        return None;
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => Some(reduce(value)),
        Err(_) => Some(serde_json::json!({ "unparsed_bytes": body.len() })),
    }
}

fn reduce(value: Value) -> Value {
    match value {
        Value::String(s) if s.chars().count() > MAX_STRING => Value::String(format!(
            "{}…",
            s.chars()
                .take(MAX_STRING)
                .map(visible_nul)
                .collect::<String>()
        )),
        // Stored as text, such floats come back as hundreds of digits (see decode_summary).
        Value::Number(n) if n.as_f64().is_some_and(|f| n.is_f64() && extreme(f)) => {
            Value::String(n.to_string())
        }
        // jsonb cannot hold NUL: the summary of a request refused for one shows it as U+2400.
        Value::String(s) if s.contains('\0') => Value::String(s.chars().map(visible_nul).collect()),
        Value::Array(items) => {
            let total = items.len();
            let mut kept: Vec<Value> = items.into_iter().take(50).map(reduce).collect();
            if total > 50 {
                kept.push(Value::String(format!("… {} more", total - 50)));
            }
            Value::Array(kept)
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    let key: String = key.chars().map(visible_nul).collect();
                    let value = if key == "document" && !value.is_null() {
                        serde_json::json!({ "bytes": value.to_string().len() })
                    } else if key == "secret" {
                        // Webhook secrets sign deliveries; the log must not hand them out.
                        Value::String("(redacted)".into())
                    } else {
                        reduce(value)
                    };
                    (key, value)
                })
                .collect(),
        ),
        other => other,
    }
}

/// A stored summary as JSON. PostgreSQL prints a number like 1.7976931348623157e308 as its
/// 309 digits, which serde_json's float parser rejects as out of range, so one such summary
/// made every page of the log fail; a summary that does not parse is shown as its text.
fn decode_summary(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// Whether a float is so large or so small that PostgreSQL prints it with dozens of digits.
fn extreme(f: f64) -> bool {
    f != 0.0 && !(1e-15..1e15).contains(&f.abs())
}

/// NUL as the symbol that shows it (U+2400), anything else as it is.
fn visible_nul(c: char) -> char {
    if c == '\0' { '\u{2400}' } else { c }
}

/// Filters of `GET /api/v1/audit`.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// The method and route, `POST /api/v1/jobs/{job_id}/cancel`.
    pub action: Option<String>,
    /// Entries whose target starts with this path.
    pub target: Option<String>,
    /// `ok` or an error code.
    pub outcome: Option<String>,
    pub actor: Option<String>,
    /// RFC 3339: entries at or after.
    pub since: Option<DateTime<Utc>>,
    /// Entries with a smaller id (the previous page's `next_before`).
    pub before: Option<i64>,
    /// 1-500; 50 when absent.
    pub limit: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct EntryRow {
    id: i64,
    at: DateTime<Utc>,
    actor: String,
    role: Option<String>,
    action: String,
    target: String,
    /// As text: see [`decode_summary`].
    request: Option<String>,
    status: i32,
    outcome: String,
    source: Option<String>,
}

/// A page of the log, newest first, and the `before` of the next page.
pub async fn page(
    pool: &PgPool,
    query: &AuditQuery,
    limit: i64,
) -> sqlx::Result<(Vec<AuditEntry>, Option<i64>)> {
    let rows: Vec<EntryRow> = sqlx::query_as(
        "select id, at, actor, role, action, target, request::text as request, status, outcome,
                source
             from server.audit_log
             where ($1::text is null or action = $1)
               and ($2::text is null or starts_with(target, $2))
               and ($3::text is null or outcome = $3)
               and ($4::text is null or actor = $4)
               and ($5::timestamptz is null or at >= $5)
               and ($6::bigint is null or id < $6)
             order by id desc
             limit $7",
    )
    .bind(&query.action)
    .bind(&query.target)
    .bind(&query.outcome)
    .bind(&query.actor)
    .bind(query.since)
    .bind(query.before)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    let more = rows.len() as i64 > limit;
    let entries: Vec<AuditEntry> = rows
        .into_iter()
        .take(limit as usize)
        .map(|row| AuditEntry {
            id: row.id,
            at: row.at.to_rfc3339_opts(SecondsFormat::Millis, true),
            actor: row.actor,
            role: row.role,
            action: row.action,
            target: row.target,
            request: row.request.as_deref().map(decode_summary),
            status: row.status,
            outcome: row.outcome,
            source: row.source,
        })
        .collect();
    let next = if more {
        entries.last().map(|e| e.id)
    } else {
        None
    };
    Ok((entries, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_reduced_to_their_size_and_long_strings_cut() {
        let body = serde_json::json!({
            "job_id": "a",
            "document": { "big": "x".repeat(1000) },
            "description": "y".repeat(1000),
        });
        let summary = summarize(body.to_string().as_bytes()).expect("a summary");
        assert_eq!(summary["job_id"], "a");
        assert!(summary["document"]["bytes"].as_u64().expect("a size") > 1000);
        assert!(
            summary["description"]
                .as_str()
                .expect("a string")
                .chars()
                .count()
                <= MAX_STRING + 1
        );
        assert_eq!(
            summarize(b"not json"),
            Some(serde_json::json!({ "unparsed_bytes": 8 }))
        );
        assert_eq!(summarize(b""), None);
    }

    #[test]
    fn extreme_floats_are_kept_as_text_and_unreadable_summaries_shown_as_text() {
        let summary =
            summarize(br#"{"a": -1.7976931348623157e308, "b": 1.5, "c": 7}"#).expect("a summary");
        assert_eq!(summary["a"], "-1.7976931348623157e+308");
        assert_eq!(summary["b"], 1.5);
        assert_eq!(summary["c"], 7);
        let digits = format!("[-17976931348623157{}]", "0".repeat(292));
        assert!(serde_json::from_str::<Value>(&digits).is_err());
        assert_eq!(decode_summary(&digits), Value::String(digits.clone()));
        assert_eq!(decode_summary("[1]"), serde_json::json!([1]));
    }

    #[test]
    fn secrets_are_redacted() {
        let body =
            serde_json::json!({ "webhooks": [{ "url": "https://x", "secret": "s3cr3t-value" }] });
        let summary = summarize(body.to_string().as_bytes()).expect("a summary");
        assert_eq!(summary["webhooks"][0]["secret"], "(redacted)");
        assert_eq!(summary["webhooks"][0]["url"], "https://x");
    }
}
