//! The optional configurations of a job (CreateJob/UpdateJob members): their shapes as the
//! AWS model defines them, and validation against the model's limits and the developer
//! guide's rules. The request's JSON is stored as given (DescribeJob returns it unchanged);
//! these types are how the engine reads it.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::cron::Cron;
use super::{Result, ServiceError};

/// The configuration members of CreateJob that UpdateJob may change too.
pub const UPDATABLE_MEMBERS: [&str; 5] = [
    "presignedUrlConfig",
    "jobExecutionsRolloutConfig",
    "abortConfig",
    "timeoutConfig",
    "jobExecutionsRetryConfig",
];

/// AWS's default and documented ceiling for a rollout rate: 1000 things per minute.
pub const MAX_RATE_PER_MINUTE: i64 = 1000;

/// A job's configurations, as the engine acts on them.
#[derive(Debug, Clone, Default)]
pub struct JobConfig {
    pub presigned_url: Option<PresignedUrlConfig>,
    pub rollout: Option<RolloutConfig>,
    pub abort: Option<AbortConfig>,
    pub timeout: Option<TimeoutConfig>,
    pub retry: Option<RetryConfig>,
    pub scheduling: Option<SchedulingConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresignedUrlConfig {
    pub role_arn: Option<String>,
    pub expires_in_sec: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutConfig {
    pub maximum_per_minute: Option<i64>,
    pub exponential_rate: Option<ExponentialRate>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExponentialRate {
    pub base_rate_per_minute: i64,
    pub increment_factor: f64,
    pub rate_increase_criteria: RateIncreaseCriteria,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateIncreaseCriteria {
    pub number_of_notified_things: Option<i64>,
    pub number_of_succeeded_things: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortConfig {
    pub criteria_list: Vec<AbortCriteria>,
}

/// The execution failures an abort criterion counts (AWS's `JobExecutionFailureType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureType {
    Failed,
    Rejected,
    TimedOut,
    All,
}

impl FailureType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "FAILED",
            Self::Rejected => "REJECTED",
            Self::TimedOut => "TIMED_OUT",
            Self::All => "ALL",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AbortAction {
    Cancel,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortCriteria {
    pub failure_type: FailureType,
    pub action: AbortAction,
    pub threshold_percentage: f64,
    pub min_number_of_executed_things: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeoutConfig {
    pub in_progress_timeout_in_minutes: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryConfig {
    pub criteria_list: Vec<RetryCriteria>,
}

/// The failures a retry criterion retries (AWS's `RetryableFailureType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RetryableFailure {
    Failed,
    TimedOut,
    All,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryCriteria {
    pub failure_type: RetryableFailure,
    pub number_of_retries: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EndBehavior {
    StopRollout,
    Cancel,
    ForceCancel,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchedulingRequest {
    start_time: Option<String>,
    end_time: Option<String>,
    end_behavior: Option<EndBehavior>,
    #[serde(default)]
    maintenance_windows: Vec<MaintenanceWindowRequest>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MaintenanceWindowRequest {
    start_time: String,
    duration_in_minutes: i64,
}

/// `schedulingConfig`, with its times and cron expressions parsed.
#[derive(Debug, Clone)]
pub struct SchedulingConfig {
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    /// What happens at `end_time`; AWS applies none without an end time.
    pub end_behavior: Option<EndBehavior>,
    pub maintenance_windows: Vec<MaintenanceWindow>,
}

#[derive(Debug, Clone)]
pub struct MaintenanceWindow {
    pub start: Cron,
    pub duration_in_minutes: i64,
}

impl SchedulingConfig {
    /// Whether new executions may be released at `t`: always without maintenance windows,
    /// else only inside one.
    pub fn releases_at(&self, t: DateTime<Utc>) -> bool {
        self.maintenance_windows.is_empty()
            || self
                .maintenance_windows
                .iter()
                .any(|w| w.start.window_contains(t, w.duration_in_minutes))
    }

    /// The next `count` maintenance-window starts after `t`, earliest first.
    pub fn next_windows(&self, t: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        let mut starts: Vec<DateTime<Utc>> = Vec::with_capacity(count);
        let mut from: Vec<Option<DateTime<Utc>>> = self
            .maintenance_windows
            .iter()
            .map(|w| w.start.next_at_or_after(t))
            .collect();
        while starts.len() < count {
            let Some((index, next)) = from
                .iter()
                .enumerate()
                .filter_map(|(i, next)| next.map(|n| (i, n)))
                .min_by_key(|(_, next)| *next)
            else {
                break;
            };
            if starts.last() != Some(&next) {
                starts.push(next);
            }
            from[index] = self.maintenance_windows[index]
                .start
                .next_at_or_after(next + Duration::minutes(1));
        }
        starts
    }
}

/// Formats a time as AWS's `StringDateTime` (`YYYY-MM-DDTHH:MM`).
pub fn string_date_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M").to_string()
}

/// Parses AWS's `StringDateTime`: `YYYY-MM-DDTHH:MM` in UTC; seconds and an RFC 3339 offset
/// are accepted too.
fn parse_date_time(member: &str, text: &str) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .map(|naive| naive.and_utc())
        .ok_or_else(|| {
            ServiceError::invalid(format!(
                "schedulingConfig.{member} must be YYYY-MM-DDTHH:MM (UTC), got {text:?}"
            ))
        })
}

/// Decodes one member, naming it in the error.
fn member<T: DeserializeOwned>(config: &Map<String, Value>, name: &str) -> Result<Option<T>> {
    match config.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value.clone())
            .map(Some)
            .map_err(|error| ServiceError::invalid(format!("invalid {name}: {error}"))),
    }
}

fn check(ok: bool, message: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid(message()))
    }
}

/// Whether `x` has at most `digits` digits after the decimal point.
fn has_decimals_at_most(x: f64, digits: i32) -> bool {
    let scaled = x * 10f64.powi(digits);
    (scaled - scaled.round()).abs() < 1e-6
}

impl JobConfig {
    /// Reads the configurations a job was stored with. They were validated when stored; the
    /// scheduling times are not checked against `now` again.
    pub fn stored(config: &Value) -> Result<Self> {
        let empty = Map::new();
        let config = config.as_object().unwrap_or(&empty);
        Self::decode(config)
    }

    /// Decodes and validates the configurations of a CreateJob request received at `now`.
    pub fn validate_new(config: &Map<String, Value>, now: DateTime<Utc>) -> Result<Self> {
        let decoded = Self::decode(config)?;
        decoded.check_limits()?;
        if let Some(scheduling) = &decoded.scheduling {
            scheduling.check_times(now)?;
        }
        Ok(decoded)
    }

    /// Decodes and validates the members of an UpdateJob request.
    pub fn validate_update(config: &Map<String, Value>) -> Result<Self> {
        let decoded = Self::decode(config)?;
        decoded.check_limits()?;
        Ok(decoded)
    }

    fn decode(config: &Map<String, Value>) -> Result<Self> {
        let scheduling = member::<SchedulingRequest>(config, "schedulingConfig")?
            .map(SchedulingConfig::decode)
            .transpose()?;
        Ok(Self {
            presigned_url: member(config, "presignedUrlConfig")?,
            rollout: member(config, "jobExecutionsRolloutConfig")?,
            abort: member(config, "abortConfig")?,
            timeout: member(config, "timeoutConfig")?,
            retry: member(config, "jobExecutionsRetryConfig")?,
            scheduling,
        })
    }

    fn check_limits(&self) -> Result<()> {
        if let Some(presigned) = &self.presigned_url {
            if let Some(role) = &presigned.role_arn {
                check((20..=2048).contains(&role.len()), || {
                    "presignedUrlConfig.roleArn must be 20-2048 characters".into()
                })?;
            }
            if let Some(expires) = presigned.expires_in_sec {
                check((60..=3600).contains(&expires), || {
                    format!(
                        "presignedUrlConfig.expiresInSec must be between 60 and 3600, got {expires}"
                    )
                })?;
            }
        }
        if let Some(rollout) = &self.rollout {
            if let Some(max) = rollout.maximum_per_minute {
                check((1..=MAX_RATE_PER_MINUTE).contains(&max), || {
                    format!(
                        "jobExecutionsRolloutConfig.maximumPerMinute must be between 1 and {MAX_RATE_PER_MINUTE}, got {max}"
                    )
                })?;
            }
            if let Some(rate) = &rollout.exponential_rate {
                let base = rate.base_rate_per_minute;
                check((1..=MAX_RATE_PER_MINUTE).contains(&base), || {
                    format!(
                        "exponentialRate.baseRatePerMinute must be between 1 and {MAX_RATE_PER_MINUTE}, got {base}"
                    )
                })?;
                let factor = rate.increment_factor;
                check(
                    (1.1..=5.0).contains(&factor) && has_decimals_at_most(factor, 1),
                    || {
                        format!(
                            "exponentialRate.incrementFactor must be between 1.1 and 5 with at most one decimal, got {factor}"
                        )
                    },
                )?;
                let criteria = &rate.rate_increase_criteria;
                check(
                    criteria.number_of_notified_things.is_some()
                        || criteria.number_of_succeeded_things.is_some(),
                    || {
                        "rateIncreaseCriteria needs numberOfNotifiedThings or numberOfSucceededThings".into()
                    },
                )?;
                for n in [
                    criteria.number_of_notified_things,
                    criteria.number_of_succeeded_things,
                ]
                .into_iter()
                .flatten()
                {
                    check(n >= 1, || {
                        format!("rateIncreaseCriteria thresholds must be at least 1, got {n}")
                    })?;
                }
            }
        }
        if let Some(abort) = &self.abort {
            check(!abort.criteria_list.is_empty(), || {
                "abortConfig.criteriaList must have at least one criterion".into()
            })?;
            for criteria in &abort.criteria_list {
                let threshold = criteria.threshold_percentage;
                check(
                    threshold > 0.0 && threshold <= 100.0 && has_decimals_at_most(threshold, 2),
                    || {
                        format!(
                            "abortConfig thresholdPercentage must be above 0 and at most 100 with at most two decimals, got {threshold}"
                        )
                    },
                )?;
                let min = criteria.min_number_of_executed_things;
                check(min >= 1, || {
                    format!("abortConfig minNumberOfExecutedThings must be at least 1, got {min}")
                })?;
            }
        }
        if let Some(minutes) = self
            .timeout
            .as_ref()
            .and_then(|t| t.in_progress_timeout_in_minutes)
        {
            check((1..=10080).contains(&minutes), || {
                format!(
                    "timeoutConfig.inProgressTimeoutInMinutes must be between 1 and 10080 (7 days), got {minutes}"
                )
            })?;
        }
        if let Some(retry) = &self.retry {
            let count = retry.criteria_list.len();
            check((1..=2).contains(&count), || {
                format!(
                    "jobExecutionsRetryConfig.criteriaList must have 1 or 2 criteria, got {count}"
                )
            })?;
            let types: Vec<RetryableFailure> =
                retry.criteria_list.iter().map(|c| c.failure_type).collect();
            check(
                !(types.len() == 2
                    && (types[0] == types[1] || types.contains(&RetryableFailure::All))),
                || "jobExecutionsRetryConfig.criteriaList names a failure type twice".into(),
            )?;
            for criteria in &retry.criteria_list {
                let n = criteria.number_of_retries;
                check((0..=10).contains(&n), || {
                    format!(
                        "jobExecutionsRetryConfig numberOfRetries must be between 0 and 10, got {n}"
                    )
                })?;
            }
            let total: i64 = retry
                .criteria_list
                .iter()
                .map(|c| c.number_of_retries)
                .sum();
            check(total <= 10, || {
                format!(
                    "a device can be retried at most 10 times for all failure types combined, got {total}"
                )
            })?;
        }
        Ok(())
    }

    /// The most executions to release in one minute after `increases` exponential steps.
    pub fn rate_per_minute(&self, increases: i32) -> i64 {
        let Some(rollout) = &self.rollout else {
            return MAX_RATE_PER_MINUTE;
        };
        let ceiling = rollout.maximum_per_minute.unwrap_or(MAX_RATE_PER_MINUTE);
        match &rollout.exponential_rate {
            Some(rate) => {
                let grown =
                    rate.base_rate_per_minute as f64 * rate.increment_factor.powi(increases);
                (grown.floor() as i64).clamp(1, ceiling)
            }
            None => ceiling,
        }
    }

    /// How many retries a failure of `status` (FAILED or TIMED_OUT) may still get, given the
    /// retries already made for FAILED and for TIMED_OUT.
    pub fn retries_left(
        &self,
        timed_out: bool,
        failed_retries: i32,
        timed_out_retries: i32,
    ) -> i64 {
        let Some(retry) = &self.retry else {
            return 0;
        };
        let wanted = if timed_out {
            RetryableFailure::TimedOut
        } else {
            RetryableFailure::Failed
        };
        let own = if timed_out {
            timed_out_retries
        } else {
            failed_retries
        };
        retry
            .criteria_list
            .iter()
            .find(|c| c.failure_type == wanted)
            .map(|c| c.number_of_retries - i64::from(own))
            .or_else(|| {
                retry
                    .criteria_list
                    .iter()
                    .find(|c| c.failure_type == RetryableFailure::All)
                    .map(|c| c.number_of_retries - i64::from(failed_retries + timed_out_retries))
            })
            .unwrap_or(0)
    }
}

impl SchedulingConfig {
    fn decode(request: SchedulingRequest) -> Result<Self> {
        let start_time = request
            .start_time
            .as_deref()
            .map(|t| parse_date_time("startTime", t))
            .transpose()?;
        let end_time = request
            .end_time
            .as_deref()
            .map(|t| parse_date_time("endTime", t))
            .transpose()?;
        let mut maintenance_windows = Vec::with_capacity(request.maintenance_windows.len());
        for window in request.maintenance_windows {
            let minutes = window.duration_in_minutes;
            check((1..=1430).contains(&minutes), || {
                format!(
                    "maintenanceWindows durationInMinutes must be between 1 and 1430, got {minutes}"
                )
            })?;
            check((1..=256).contains(&window.start_time.len()), || {
                "maintenanceWindows startTime must be 1-256 characters".into()
            })?;
            let start = Cron::parse(&window.start_time).map_err(|error| {
                ServiceError::invalid(format!("maintenanceWindows startTime: {error}"))
            })?;
            maintenance_windows.push(MaintenanceWindow {
                start,
                duration_in_minutes: minutes,
            });
        }
        Ok(Self {
            start_time,
            end_time,
            end_behavior: request.end_behavior,
            maintenance_windows,
        })
    }

    /// The model's rules for a job created at `now`: the start at least 30 minutes and at
    /// most a year ahead; the end at least 30 minutes ahead, at most two years, and 30
    /// minutes to two years after the start.
    fn check_times(&self, now: DateTime<Utc>) -> Result<()> {
        let half_hour = Duration::minutes(30);
        let year = Duration::days(365);
        if let Some(start) = self.start_time {
            check(start >= now + half_hour && start <= now + year, || {
                "schedulingConfig.startTime must be between 30 minutes and one year from now".into()
            })?;
        }
        if let Some(end) = self.end_time {
            check(end >= now + half_hour && end <= now + year * 2, || {
                "schedulingConfig.endTime must be between 30 minutes and two years from now".into()
            })?;
            if let Some(start) = self.start_time {
                check(end - start >= half_hour && end - start <= year * 2, || {
                    "schedulingConfig.endTime must be 30 minutes to two years after startTime"
                        .into()
                })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config(value: Value) -> Map<String, Value> {
        value.as_object().cloned().expect("an object")
    }

    #[test]
    fn absurd_numbers_are_refused() {
        let now = Utc::now();
        for bad in [
            json!({"jobExecutionsRolloutConfig": {"maximumPerMinute": 0}}),
            json!({"jobExecutionsRolloutConfig": {"maximumPerMinute": 1_000_000}}),
            json!({"jobExecutionsRolloutConfig": {"exponentialRate": {"baseRatePerMinute": 10, "incrementFactor": 9.0, "rateIncreaseCriteria": {"numberOfNotifiedThings": 5}}}}),
            json!({"jobExecutionsRolloutConfig": {"exponentialRate": {"baseRatePerMinute": 10, "incrementFactor": 1.55, "rateIncreaseCriteria": {"numberOfNotifiedThings": 5}}}}),
            json!({"jobExecutionsRolloutConfig": {"exponentialRate": {"baseRatePerMinute": 10, "incrementFactor": 2.0, "rateIncreaseCriteria": {}}}}),
            json!({"abortConfig": {"criteriaList": []}}),
            json!({"abortConfig": {"criteriaList": [{"failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": 101.0, "minNumberOfExecutedThings": 1}]}}),
            json!({"abortConfig": {"criteriaList": [{"failureType": "BROKEN", "action": "CANCEL", "thresholdPercentage": 10.0, "minNumberOfExecutedThings": 1}]}}),
            json!({"timeoutConfig": {"inProgressTimeoutInMinutes": 10081}}),
            json!({"jobExecutionsRetryConfig": {"criteriaList": [{"failureType": "FAILED", "numberOfRetries": 11}]}}),
            json!({"jobExecutionsRetryConfig": {"criteriaList": [{"failureType": "FAILED", "numberOfRetries": 6}, {"failureType": "TIMED_OUT", "numberOfRetries": 6}]}}),
            json!({"schedulingConfig": {"startTime": "2000-01-01T00:00"}}),
            json!({"schedulingConfig": {"maintenanceWindows": [{"startTime": "cron(0 0 ? * SUN *)", "durationInMinutes": 1431}]}}),
            json!({"presignedUrlConfig": {"expiresInSec": 5}}),
        ] {
            assert!(
                JobConfig::validate_new(&config(bad.clone()), now).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn rates_grow_exponentially_up_to_the_ceiling() {
        let stored = json!({"jobExecutionsRolloutConfig": {"maximumPerMinute": 20, "exponentialRate": {"baseRatePerMinute": 2, "incrementFactor": 2.0, "rateIncreaseCriteria": {"numberOfNotifiedThings": 2}}}});
        let config = JobConfig::validate_new(&config(stored), Utc::now()).expect("valid");
        let rates: Vec<i64> = (0..5).map(|k| config.rate_per_minute(k)).collect();
        assert_eq!(rates, [2, 4, 8, 16, 20]);
        assert_eq!(JobConfig::default().rate_per_minute(3), MAX_RATE_PER_MINUTE);
    }

    #[test]
    fn retries_are_counted_per_failure_type() {
        let stored = json!({"jobExecutionsRetryConfig": {"criteriaList": [{"failureType": "FAILED", "numberOfRetries": 2}]}});
        let config = JobConfig::validate_new(&config(stored), Utc::now()).expect("valid");
        assert_eq!(config.retries_left(false, 0, 0), 2);
        assert_eq!(config.retries_left(false, 2, 0), 0);
        assert_eq!(config.retries_left(true, 0, 0), 0);
        let all = json!({"jobExecutionsRetryConfig": {"criteriaList": [{"failureType": "ALL", "numberOfRetries": 3}]}});
        let config =
            JobConfig::validate_new(&super::tests::config(all), Utc::now()).expect("valid");
        assert_eq!(config.retries_left(true, 1, 1), 1);
    }
}
