//! The JSON contract of Flotilla's HTTP API (`/api/v1`), shared by the server that produces it,
//! the Leptos frontend and the agent that consume it.
//!
//! This crate depends on serde only so it builds for `wasm32-unknown-unknown`. Field names are
//! snake_case and times are RFC 3339 strings, so any HTTP client can use the API. The `openapi`
//! feature (the server's) derives `utoipa::ToSchema` for every type, from which the server
//! generates its OpenAPI document.

use serde::{Deserialize, Serialize};

mod audit;
mod auth;
mod fleet;
mod inventory;
mod job_options;
mod rollouts;
mod templates;

pub use audit::{AuditBreak, AuditEntry, AuditPage, AuditVerification};
pub use auth::{ApiToken, CreateToken, CreatedToken, LoggedOut, Me, Role, TokenList};
pub use fleet::{
    Thing, ThingDetail, ThingExecution, ThingGroup, ThingGroupDetail, ThingGroupList, ThingList,
};
pub use inventory::{
    AddMembers, CreateGroup, Device, DeviceBundle, DeviceCertificate, DeviceCertificates,
    DeviceDetail, DeviceExecution, DeviceList, ImportResult, ImportedRow, MembersChanged,
    PresenceChange, RegisterDevice, RegisteredDevice, SoftwareDistribution, VersionChange,
    VersionCount,
};
pub use job_options::{
    AbortCriterion, AbortOptions, ExponentialRate, MaintenanceWindow, PresignedUrlOptions,
    RateIncreaseCriteria, RetryCriterion, RetryOptions, RolloutOptions, SchedulingOptions,
    TimeoutOptions,
};
pub use rollouts::{
    Conflict, CreateRollout, GateStatus, Gates, HealthCheck, HealthSource, PreviewWave, Release,
    Rollout, RolloutAction, RolloutDetail, RolloutEvent, RolloutJob, RolloutList, RolloutPreview,
    RolloutTargets, Schedule, WaveJobOptions, WaveSpec, WaveStatus, WebhookSpec, Window,
    WindowTimes,
};
pub use templates::{
    ImportedTemplates, PreviewTemplate, RenderedTemplate, SaveTemplate, Template, TemplateList,
    TemplateParameter,
};
pub mod artifacts;
pub mod install;
pub mod stream;

pub use install::InstallDocument;

/// The status of a job, as AWS IoT reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    InProgress,
    Canceled,
    Completed,
    DeletionInProgress,
    Scheduled,
}

impl JobStatus {
    /// The wire name, as AWS spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "IN_PROGRESS",
            Self::Canceled => "CANCELED",
            Self::Completed => "COMPLETED",
            Self::DeletionInProgress => "DELETION_IN_PROGRESS",
            Self::Scheduled => "SCHEDULED",
        }
    }

    /// Parses the wire name; `None` for a status this version does not know.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "IN_PROGRESS" => Self::InProgress,
            "CANCELED" => Self::Canceled,
            "COMPLETED" => Self::Completed,
            "DELETION_IN_PROGRESS" => Self::DeletionInProgress,
            "SCHEDULED" => Self::Scheduled,
            _ => return None,
        })
    }
}

/// How many of a job's executions are in each state (AWS's `jobProcessDetails`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutionCounts {
    pub queued: i64,
    pub in_progress: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub rejected: i64,
    pub canceled: i64,
    pub timed_out: i64,
    pub removed: i64,
}

impl ExecutionCounts {
    /// Every execution the job has, whatever its state.
    pub fn total(&self) -> i64 {
        self.queued
            + self.in_progress
            + self.succeeded
            + self.failed
            + self.rejected
            + self.canceled
            + self.timed_out
            + self.removed
    }

    /// Executions that reached a terminal state.
    pub fn finished(&self) -> i64 {
        self.total() - self.queued - self.in_progress
    }
}

/// One job as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Job {
    pub job_id: String,
    pub job_arn: String,
    pub status: JobStatus,
    pub description: Option<String>,
    pub targets: Vec<String>,
    pub counts: ExecutionCounts,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// RFC 3339; set once the job is COMPLETED or CANCELED.
    pub completed_at: Option<String>,
}

/// A page of jobs, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobList {
    pub jobs: Vec<Job>,
}

/// The state of one device's execution of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Execution {
    pub thing_name: String,
    pub status: String,
    pub execution_number: Option<i64>,
    /// RFC 3339.
    pub queued_at: Option<String>,
    /// RFC 3339.
    pub started_at: Option<String>,
    /// RFC 3339.
    pub updated_at: Option<String>,
}

/// A job with the executions of its devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: Job,
    pub executions: Vec<Execution>,
}

/// `POST /api/v1/jobs`: create a job from a raw job document or from a template, with every
/// option AWS IoT offers. The server validates it all, with field messages, before anything
/// reaches AWS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateJob {
    /// Letters, digits, `-` and `_`, at most 64 characters. Generated when absent.
    #[serde(default)]
    pub job_id: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Thing names the job targets.
    #[serde(default)]
    pub things: Vec<String>,
    /// Thing group names the job targets.
    #[serde(default)]
    pub thing_groups: Vec<String>,
    /// The job document devices receive; a JSON object of at most 32 KiB. Exactly one of
    /// `document` and `template_id`.
    #[serde(default)]
    pub document: Option<serde_json::Value>,
    /// A server-side template to render the document from.
    #[serde(default)]
    pub template_id: Option<String>,
    /// The template version; the latest when absent.
    #[serde(default)]
    pub template_version: Option<i32>,
    /// The template's parameter values.
    #[serde(default)]
    pub parameters: std::collections::BTreeMap<String, serde_json::Value>,
    /// `SNAPSHOT` (the default) or `CONTINUOUS` (things added to a target group later get
    /// the job too).
    #[serde(default)]
    pub target_selection: Option<String>,
    #[serde(default)]
    pub rollout: Option<RolloutOptions>,
    #[serde(default)]
    pub abort: Option<AbortOptions>,
    #[serde(default)]
    pub timeout: Option<TimeoutOptions>,
    #[serde(default)]
    pub retry: Option<RetryOptions>,
    #[serde(default)]
    pub scheduling: Option<SchedulingOptions>,
    #[serde(default)]
    pub presigned_url: Option<PresignedUrlOptions>,
}

/// `GET /api/v1/jobs/{job_id}/executions?status=&after=&limit=`: executions in thing-name
/// order; `next_after` is the `after` of the next page, absent on the last one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutionPage {
    pub executions: Vec<Execution>,
    pub next_after: Option<String>,
}

/// `GET /api/v1/jobs/{job_id}/failure-reasons`: why executions ended badly, the reasons the
/// devices gave (`statusDetails.reason`) grouped and counted, most frequent first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FailureReasons {
    pub reasons: Vec<FailureReason>,
}

/// Executions that ended in `status` with the same `reason` (empty: the device gave none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FailureReason {
    pub status: String,
    pub reason: String,
    pub count: i64,
}

/// `POST /api/v1/jobs/{job_id}/executions/{thing_name}/cancel`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CancelExecution {
    /// Also cancel an IN_PROGRESS execution.
    #[serde(default)]
    pub force: bool,
    /// Why, for the audit trail (at most 1024 characters); sent as the execution's
    /// `statusDetails.reason`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /api/v1/jobs/{job_id}/executions/{thing_name}/retry`: the follow-up job that runs
/// the same document on that one thing. Its id is derived from the job, the thing and the
/// execution number, so asking twice gives the same job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetriedExecution {
    pub job_id: String,
    /// False when the follow-up job already existed.
    pub created: bool,
}

/// `POST /api/v1/jobs/{job_id}/cancel`: stop a job. QUEUED executions are canceled; with
/// `force`, IN_PROGRESS ones too (the device is told, but may already be acting on the job).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CancelJob {
    #[serde(default)]
    pub force: bool,
    /// Why, for the audit trail and the job's record (at most 2028 characters).
    #[serde(default)]
    pub comment: Option<String>,
    /// A machine-readable reason, `[\p{Upper}\p{Digit}_]+`, at most 128 characters.
    #[serde(default)]
    pub reason_code: Option<String>,
}

/// Every error the API returns has this body, with an HTTP status that matches `code`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Stable, machine-readable: `invalid_request`, `not_found`, `conflict`, `upstream`, `internal`…
    pub code: String,
    /// A sentence for a person.
    pub message: String,
    /// Per-field messages for invalid input, keyed by field name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
}

/// What is wrong with one field of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    pub field: String,
    pub message: String,
}
