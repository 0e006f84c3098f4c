//! The options of a job beyond its targets and document: every configuration AWS IoT's
//! CreateJob accepts, in the API's snake_case. Enumerations are strings so that a wrong
//! value gets a field message from the server rather than a decoding error.

use serde::{Deserialize, Serialize};

/// How fast executions are released (AWS `jobExecutionsRolloutConfig`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RolloutOptions {
    /// 1–1000 devices notified per minute.
    #[serde(default)]
    pub maximum_per_minute: Option<i32>,
    #[serde(default)]
    pub exponential_rate: Option<ExponentialRate>,
}

/// A rate that starts at `base_rate_per_minute` and is multiplied by `increment_factor`
/// each time the criteria are met.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExponentialRate {
    /// 1–1000.
    pub base_rate_per_minute: i32,
    /// 1.1–5.0, one decimal at most.
    pub increment_factor: f64,
    pub rate_increase_criteria: RateIncreaseCriteria,
}

/// When the rate increases; at least one of the two, each at least 1.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RateIncreaseCriteria {
    #[serde(default)]
    pub number_of_notified_things: Option<i32>,
    #[serde(default)]
    pub number_of_succeeded_things: Option<i32>,
}

/// When to stop the job (AWS `abortConfig`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AbortOptions {
    pub criteria: Vec<AbortCriterion>,
}

/// Cancel the job once `threshold_percentage` of at least `min_number_of_executed_things`
/// executions ended with `failure_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AbortCriterion {
    /// `FAILED`, `REJECTED`, `TIMED_OUT` or `ALL`.
    pub failure_type: String,
    /// `CANCEL`.
    #[serde(default = "cancel")]
    pub action: String,
    /// Above 0, at most 100, two decimals at most.
    pub threshold_percentage: f64,
    /// At least 1.
    pub min_number_of_executed_things: i32,
}

fn cancel() -> String {
    "CANCEL".to_owned()
}

/// AWS `timeoutConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimeoutOptions {
    /// 1–10080 (seven days).
    pub in_progress_timeout_in_minutes: i64,
}

/// Retries of failed executions (AWS `jobExecutionsRetryConfig`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetryOptions {
    /// One or two criteria; at most 10 retries in all.
    pub criteria: Vec<RetryCriterion>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetryCriterion {
    /// `FAILED`, `TIMED_OUT` or `ALL`.
    pub failure_type: String,
    /// 0–10.
    pub number_of_retries: i32,
}

/// When the job runs (AWS `schedulingConfig`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SchedulingOptions {
    /// RFC 3339; between 30 minutes and a year ahead.
    #[serde(default)]
    pub start_time: Option<String>,
    /// RFC 3339; at least 30 minutes after the start and at most two years ahead.
    #[serde(default)]
    pub end_time: Option<String>,
    /// `STOP_ROLLOUT`, `CANCEL` or `FORCE_CANCEL`.
    #[serde(default)]
    pub end_behavior: Option<String>,
    #[serde(default)]
    pub maintenance_windows: Vec<MaintenanceWindow>,
}

/// Executions are released only inside these windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MaintenanceWindow {
    /// An AWS cron expression, `cron(0 22 ? * SUN *)`.
    pub start_time: String,
    /// 1–1430.
    pub duration_in_minutes: i32,
}

/// Presigned URLs in the job document (AWS `presignedUrlConfig`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PresignedUrlOptions {
    /// The IAM role IoT assumes to presign the URLs (20–2048 characters).
    #[serde(default)]
    pub role_arn: Option<String>,
    /// 60–3600.
    #[serde(default)]
    pub expires_in_sec: Option<i64>,
}
