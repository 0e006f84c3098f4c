//! `/api/v1/audit`: the record of every mutation attempted through the API, refused ones too.

use serde::{Deserialize, Serialize};

/// One attempted mutation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: i64,
    /// RFC 3339.
    pub at: String,
    /// Who: the user, or `anonymous` when the request carried no valid identity.
    pub actor: String,
    /// The actor's role when it acted; absent for anonymous requests and the server's own
    /// changes.
    #[serde(default)]
    pub role: Option<String>,
    /// The method and route, `POST /api/v1/jobs/{job_id}/cancel`.
    pub action: String,
    /// The path acted on, `/api/v1/jobs/fw-42/cancel`.
    pub target: String,
    /// The request body with large values (documents) reduced to their size.
    pub request: Option<serde_json::Value>,
    /// The HTTP status of the answer.
    pub status: i32,
    /// `ok`, or the error's code (`invalid_request`, `conflict` …).
    pub outcome: String,
    /// The client's address, when known.
    pub source: Option<String>,
}

/// `GET /api/v1/audit?action=&target=&outcome=&before=&limit=`: newest first; `before` is the
/// `next_before` of the previous page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_before: Option<i64>,
}

/// `GET /api/v1/audit/verify`: whether the log's hash chain is intact. Each entry's hash covers
/// its fields and the previous entry's hash, so an entry changed or deleted in the database
/// breaks the chain there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditVerification {
    /// True when every entry follows from the one before it.
    pub intact: bool,
    /// How many entries were verified (up to the first broken one).
    pub entries: i64,
    /// The last verified entry's id and hash (hex): kept somewhere else, they also reveal
    /// entries deleted from the end of the log, which no later entry points back to.
    pub head_id: Option<i64>,
    pub head_hash: Option<String>,
    /// The first entry where the chain breaks.
    pub broken: Option<AuditBreak>,
}

/// Where and why the audit log's chain breaks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditBreak {
    /// The entry's id, as `GET /api/v1/audit` shows it.
    pub id: i64,
    /// Its place in the chain (1, 2, 3 …).
    pub seq: i64,
    /// What is wrong, in words.
    pub problem: String,
}
