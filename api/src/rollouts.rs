//! `/api/v1/rollouts`: staged rollouts. A release goes to a target set in ordered waves, each
//! one IoT job, with gates between waves (success and failure percentages, soak time, a
//! health check, manual approval) and a failure policy (pause, cancel or roll back).
//! Enumerations are strings so that a wrong value gets a field message from the server.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{AbortOptions, RetryOptions, RolloutOptions, TimeoutOptions};

/// `POST /api/v1/rollouts` (and `POST /api/v1/rollouts/preview`, which stores nothing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateRollout {
    /// 1–40 letters, digits, `-` and `_` (wave job ids `{rollout_id}-w{n}` must fit AWS's 64).
    pub rollout_id: String,
    #[serde(default)]
    pub description: Option<String>,
    pub release: Release,
    /// What a rollback installs; required with `failure_policy: "rollback"`.
    #[serde(default)]
    pub previous_release: Option<Release>,
    pub targets: RolloutTargets,
    /// Things that go first: they make up (the start of) wave 1, whatever their hash.
    #[serde(default)]
    pub canary_things: Vec<String>,
    /// 1–20 waves, in order.
    pub waves: Vec<WaveSpec>,
    /// Job options every wave inherits unless it sets its own.
    #[serde(default)]
    pub job_options: WaveJobOptions,
    /// The gates after every wave unless the wave sets its own.
    #[serde(default)]
    pub gates: Gates,
    /// `pause` (the default), `cancel` or `rollback`.
    #[serde(default = "pause")]
    pub failure_policy: String,
    #[serde(default)]
    pub schedule: Option<Schedule>,
    /// Things joining the target set after the last wave get the release too.
    #[serde(default)]
    pub continuous: bool,
    #[serde(default)]
    pub webhooks: Vec<WebhookSpec>,
}

fn pause() -> String {
    "pause".to_owned()
}

fn template() -> String {
    "template".to_owned()
}

/// What a rollout installs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// `template`: a job template of the dashboard rendered with `parameters`; `artifact`: an
    /// artifact of the library, sent as Flotilla's signed install document.
    #[serde(default = "template")]
    pub kind: String,
    #[serde(default)]
    pub template_id: Option<String>,
    /// The latest when absent; the rollout pins the version it rendered.
    #[serde(default)]
    pub template_version: Option<i32>,
    #[serde(default)]
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// The artifact an `artifact` release installs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_id: Option<String>,
    /// How the device installs the artifact (an `artifact` release needs it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<crate::install::InstallStep>,
    /// Reboot the device after a successful install (`artifact` releases).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reboot: bool,
    /// The software version the release installs: what the health check waits for. An
    /// `artifact` release takes the artifact's version when this is empty.
    #[serde(default)]
    pub version: String,
}

/// The things a rollout may reach: named things and the members of thing groups, kept only
/// when they carry every attribute in `attributes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RolloutTargets {
    #[serde(default)]
    pub things: Vec<String>,
    #[serde(default)]
    pub thing_groups: Vec<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// One wave: how many of the things not yet reached it takes, by `count` or by `percent`
/// (rounded up), and optionally its own job options and gates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WaveSpec {
    #[serde(default)]
    pub count: Option<i64>,
    /// Above 0, at most 100: of the things not reached by an earlier wave.
    #[serde(default)]
    pub percent: Option<f64>,
    /// Each option set here replaces the rollout's.
    #[serde(default)]
    pub job_options: Option<WaveJobOptions>,
    #[serde(default)]
    pub gates: Option<Gates>,
}

/// The AWS job options of a wave's job (as in `POST /api/v1/jobs`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WaveJobOptions {
    #[serde(default)]
    pub rollout: Option<RolloutOptions>,
    #[serde(default)]
    pub abort: Option<AbortOptions>,
    #[serde(default)]
    pub timeout: Option<TimeoutOptions>,
    #[serde(default)]
    pub retry: Option<RetryOptions>,
}

/// What a wave must show before the next one starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gates {
    /// At least this percentage of the wave's things SUCCEEDED (0–100; default 100).
    #[serde(default = "hundred")]
    pub success_threshold_percent: f64,
    /// The wave fails as soon as more than this percentage of its things failed, were
    /// rejected, timed out or were removed (0–100; default 100: never early).
    #[serde(default = "hundred")]
    pub max_failure_percent: f64,
    /// Minutes to wait after the wave's last execution ended (0–10080).
    #[serde(default)]
    pub soak_minutes: i64,
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    /// An operator must approve (`POST …/approve`) before the next wave.
    #[serde(default)]
    pub approval: bool,
}

fn hundred() -> f64 {
    100.0
}

impl Default for Gates {
    fn default() -> Self {
        Self {
            success_threshold_percent: 100.0,
            max_failure_percent: 100.0,
            soak_minutes: 0,
            health_check: None,
            approval: false,
        }
    }
}

/// "Booted and healthy": every thing that succeeded must report the release's version within
/// `within_minutes` of the wave's end, in a thing attribute or in its `flotilla` shadow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// The thing attribute holding the running version, e.g. `firmwareVersion` (for the
    /// `attribute` source).
    #[serde(default)]
    pub attribute: String,
    /// 1–10080.
    pub within_minutes: i64,
    /// Where the running version is read; `attribute` when absent.
    #[serde(default)]
    pub source: HealthSource,
}

/// Where a health check reads the version a device runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthSource {
    /// The thing attribute named by `attribute` (DescribeThing).
    #[default]
    Attribute,
    /// `state.reported.software.version` of the `flotilla` shadow, which the agent reports at
    /// start-up and after every job, as the inventory holds it.
    Shadow,
}

/// When waves may start: not before `not_before`, and only inside one of `windows` (any time
/// when there are none), in the IANA time zone `time_zone`. A running wave is not stopped
/// when its window closes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// An IANA time zone, `Europe/Madrid`.
    pub time_zone: String,
    /// Local time `2026-12-24T22:00`, or RFC 3339.
    #[serde(default)]
    pub not_before: Option<String>,
    #[serde(default)]
    pub windows: Vec<Window>,
}

/// A recurring maintenance window in the schedule's time zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// `mon` … `sun`; every day when empty.
    #[serde(default)]
    pub days: Vec<String>,
    /// Local `HH:MM`.
    pub start: String,
    /// 1–1440.
    pub duration_minutes: i64,
}

/// A receiver of the rollout's state changes: `POST url` with the event as JSON, signed with
/// `secret` (see docs/rollouts.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookSpec {
    /// `http://` or `https://`.
    pub url: String,
    /// 16–256 characters; never shown again.
    pub secret: String,
}

/// A rollout as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub rollout_id: String,
    pub description: Option<String>,
    /// `running`, `paused`, `following` (continuous, after its last wave), `completed`,
    /// `canceled`, `rolling_back` or `rolled_back`.
    pub state: String,
    pub state_reason: Option<String>,
    pub release: Release,
    pub previous_release: Option<Release>,
    pub targets: RolloutTargets,
    pub canary_things: Vec<String>,
    pub failure_policy: String,
    pub continuous: bool,
    pub gates: Gates,
    pub schedule: Option<Schedule>,
    /// The first wave that has not passed.
    pub current_wave: Option<i32>,
    pub wave_count: i32,
    pub created_by: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// `GET /api/v1/rollouts?state=`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutList {
    pub rollouts: Vec<Rollout>,
}

/// `GET /api/v1/rollouts/{id}`: the rollout with its waves, jobs and history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutDetail {
    #[serde(flatten)]
    pub rollout: Rollout,
    pub waves: Vec<WaveStatus>,
    pub jobs: Vec<RolloutJob>,
    /// Oldest first.
    pub events: Vec<RolloutEvent>,
    /// With a schedule: when waves may next start, in UTC and in the schedule's time zone.
    pub next_window: Option<WindowTimes>,
}

/// A moment shown in UTC and in local time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowTimes {
    /// RFC 3339, UTC.
    pub utc: String,
    /// RFC 3339 with the zone's offset.
    pub local: String,
    pub time_zone: String,
}

/// One wave and its gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaveStatus {
    pub number: i32,
    /// `pending`, `running`, `verifying` (soak and health check), `awaiting_approval`,
    /// `passed`, `failed` or `canceled`.
    pub state: String,
    pub spec: WaveSpec,
    pub job_id: Option<String>,
    /// Things the wave took.
    pub size: i64,
    pub queued: i64,
    pub in_progress: i64,
    pub succeeded: i64,
    /// Failed, rejected, timed out, canceled or removed.
    pub failed: i64,
    /// Succeeded things whose health check saw the new version.
    pub healthy: i64,
    pub gate: GateStatus,
    /// RFC 3339.
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub passed_at: Option<String>,
    pub approved_by: Option<String>,
    pub approved_at: Option<String>,
}

/// How a wave stands against its gates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateStatus {
    pub gates: Gates,
    pub success_percent: f64,
    pub failure_percent: f64,
    /// RFC 3339: when the soak ends.
    pub soak_until: Option<String>,
    /// RFC 3339: by when every succeeded thing must report the version.
    pub health_deadline: Option<String>,
    /// What the wave waits for, or why it failed.
    pub waiting_for: Option<String>,
}

/// An IoT job a rollout created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutJob {
    pub job_id: String,
    /// `wave`, `retry`, `continuous` or `rollback`.
    pub kind: String,
    pub wave: Option<i32>,
    /// RFC 3339.
    pub created_at: String,
}

/// One state change of a rollout or a wave. Webhooks carry this, `event_id` being `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutEvent {
    pub id: i64,
    pub rollout_id: String,
    /// RFC 3339.
    pub at: String,
    /// The operator, or `orchestrator` for automatic changes.
    pub actor: String,
    /// `rollout` or `wave`.
    pub subject: String,
    pub wave: Option<i32>,
    pub from_state: Option<String>,
    pub to_state: String,
    pub reason: Option<String>,
}

/// `POST /api/v1/rollouts/preview` and `GET /api/v1/rollouts/{id}/preview`: which things each
/// wave not yet started would take now, and their executions in jobs already running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutPreview {
    /// Things in the target set now.
    pub total: i64,
    pub waves: Vec<PreviewWave>,
    /// Things no wave takes (the waves' sizes leave them out).
    pub unassigned: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviewWave {
    pub number: i32,
    pub things: Vec<String>,
    pub conflicts: Vec<Conflict>,
}

/// A thing of a wave that already has a QUEUED or IN_PROGRESS execution of another job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    pub thing_name: String,
    pub job_id: String,
    pub status: String,
}

/// The body of pause, resume, cancel, promote, approve and retry-failed: why, for the audit
/// trail (at most 1024 characters; required to cancel).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RolloutAction {
    #[serde(default)]
    pub reason: Option<String>,
}
