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
