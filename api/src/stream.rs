//! The events of `GET /api/v1/stream` (Server-Sent Events). Each SSE message has the change's
//! feed id as its `id` (send it back as `Last-Event-ID` to resume without a gap), the change's
//! kind as its `event` name (`job`, `job_deleted`, `execution`, `execution_deleted`), and one
//! of these types as JSON `data`.

use serde::{Deserialize, Serialize};

use crate::Job;

/// `event: job` — a job's status or execution counts changed.
pub type JobChange = Job;

/// `event: job_deleted` — the job is gone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobDeleted {
    pub job_id: String,
}

/// `event: execution` — one device's execution changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutionChange {
    pub job_id: String,
    pub thing_name: String,
    pub status: String,
    /// The status before this change; absent the first time the projection sees the execution.
    pub previous_status: Option<String>,
    pub execution_number: Option<i64>,
    pub version_number: Option<i64>,
    /// The device's last `statusDetails`.
    #[serde(default)]
    pub status_details: serde_json::Map<String, serde_json::Value>,
    /// RFC 3339: when the change happened, as its source reported it.
    pub changed_at: String,
}

/// `event: execution_deleted` — DeleteJobExecution removed one device's execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutionDeleted {
    pub job_id: String,
    pub thing_name: String,
}
