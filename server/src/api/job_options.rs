//! Validation of a job's options and their translation to the `aws-sdk-iot` types.
//!
//! The limits are AWS's (the IoT model and the jobs developer guide); every problem found is
//! reported with the snake_case path of its field, all at once, before anything reaches IoT.

use aws_sdk_iot::types::{
    AbortAction, AbortConfig, AbortCriteria, ExponentialRolloutRate, JobEndBehavior,
    JobExecutionFailureType, JobExecutionsRetryConfig, JobExecutionsRolloutConfig,
    MaintenanceWindow, PresignedUrlConfig, RateIncreaseCriteria, RetryCriteria,
    RetryableFailureType, SchedulingConfig, TargetSelection, TimeoutConfig,
};
use chrono::{DateTime, Duration, Utc};
use flotilla_api::{CreateJob, FieldError};
use flotilla_engine::jobs::cron::Cron;

/// The SDK's form of a job's options, ready for CreateJob.
#[derive(Debug, Default)]
pub(crate) struct JobOptions {
    pub target_selection: Option<TargetSelection>,
    pub rollout: Option<JobExecutionsRolloutConfig>,
    pub abort: Option<AbortConfig>,
    pub timeout: Option<TimeoutConfig>,
    pub retry: Option<JobExecutionsRetryConfig>,
    pub scheduling: Option<SchedulingConfig>,
    pub presigned_url: Option<PresignedUrlConfig>,
}

/// Collects field messages.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub Vec<FieldError>);

impl Problems {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    pub(crate) fn check(&mut self, ok: bool, field: &str, message: impl FnOnce() -> String) {
        if !ok {
            self.add(field, message());
        }
    }
}

/// The most devices a rollout may notify in a minute.
const MAX_RATE_PER_MINUTE: i32 = 1000;

/// Whether `x` has at most `digits` digits after the decimal point.
fn has_decimals_at_most(x: f64, digits: i32) -> bool {
    let scaled = x * 10f64.powi(digits);
    (scaled - scaled.round()).abs() < 1e-6
}

/// AWS's `StringDateTime` (`YYYY-MM-DDTHH:MM`, UTC).
fn aws_date_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M").to_string()
}

/// Checks every option of `request` as of `now`; the SDK types when all are valid.
pub(crate) fn validate(
    request: &CreateJob,
    now: DateTime<Utc>,
    problems: &mut Problems,
) -> JobOptions {
    let mut options = JobOptions::default();

    if let Some(selection) = &request.target_selection {
        match selection.as_str() {
            "SNAPSHOT" => options.target_selection = Some(TargetSelection::Snapshot),
            "CONTINUOUS" => options.target_selection = Some(TargetSelection::Continuous),
            _ => problems.add("target_selection", "must be SNAPSHOT or CONTINUOUS"),
        }
    }

    if let Some(rollout) = &request.rollout {
        let mut config = JobExecutionsRolloutConfig::builder();
        if let Some(max) = rollout.maximum_per_minute {
            problems.check(
                (1..=MAX_RATE_PER_MINUTE).contains(&max),
                "rollout.maximum_per_minute",
                || format!("must be from 1 to {MAX_RATE_PER_MINUTE}, got {max}"),
            );
            config = config.maximum_per_minute(max);
        }
        if let Some(rate) = &rollout.exponential_rate {
            let base = rate.base_rate_per_minute;
            problems.check(
                (1..=MAX_RATE_PER_MINUTE).contains(&base),
                "rollout.exponential_rate.base_rate_per_minute",
                || format!("must be from 1 to {MAX_RATE_PER_MINUTE}, got {base}"),
            );
            let factor = rate.increment_factor;
            problems.check(
                (1.1..=5.0).contains(&factor) && has_decimals_at_most(factor, 1),
                "rollout.exponential_rate.increment_factor",
                || format!("must be from 1.1 to 5.0 with at most one decimal, got {factor}"),
            );
            let criteria = &rate.rate_increase_criteria;
            problems.check(
                criteria.number_of_notified_things.is_some()
                    || criteria.number_of_succeeded_things.is_some(),
                "rollout.exponential_rate.rate_increase_criteria",
                || "set number_of_notified_things or number_of_succeeded_things".into(),
            );
            for (name, value) in [
                (
                    "number_of_notified_things",
                    criteria.number_of_notified_things,
                ),
                (
                    "number_of_succeeded_things",
                    criteria.number_of_succeeded_things,
                ),
            ] {
                if let Some(n) = value {
                    problems.check(
                        (1..=1_000_000).contains(&n),
                        &format!("rollout.exponential_rate.rate_increase_criteria.{name}"),
                        || format!("must be from 1 to 1000000, got {n}"),
                    );
                }
            }
            if let Some(max) = rollout.maximum_per_minute {
                problems.check(
                    base <= max,
                    "rollout.exponential_rate.base_rate_per_minute",
                    || format!("must not exceed maximum_per_minute ({max})"),
                );
            }
            let increase = RateIncreaseCriteria::builder()
                .set_number_of_notified_things(criteria.number_of_notified_things)
                .set_number_of_succeeded_things(criteria.number_of_succeeded_things)
                .build();
            if let Ok(rate) = ExponentialRolloutRate::builder()
                .base_rate_per_minute(base)
                .increment_factor(factor)
                .rate_increase_criteria(increase)
                .build()
            {
                config = config.exponential_rate(rate);
            }
        }
        options.rollout = Some(config.build());
    }

    if let Some(abort) = &request.abort {
        problems.check(!abort.criteria.is_empty(), "abort.criteria", || {
            "name at least one criterion".into()
        });
        let mut criteria = Vec::new();
        for (i, criterion) in abort.criteria.iter().enumerate() {
            let field = |name: &str| format!("abort.criteria[{i}].{name}");
            let failure_type = match criterion.failure_type.as_str() {
                "FAILED" => Some(JobExecutionFailureType::Failed),
                "REJECTED" => Some(JobExecutionFailureType::Rejected),
                "TIMED_OUT" => Some(JobExecutionFailureType::TimedOut),
                "ALL" => Some(JobExecutionFailureType::All),
                _ => {
                    problems.add(
                        field("failure_type"),
                        "must be FAILED, REJECTED, TIMED_OUT or ALL",
                    );
                    None
                }
            };
            problems.check(criterion.action == "CANCEL", &field("action"), || {
                "must be CANCEL".into()
            });
            let threshold = criterion.threshold_percentage;
            problems.check(
                threshold > 0.0 && threshold <= 100.0 && has_decimals_at_most(threshold, 2),
                &field("threshold_percentage"),
                || {
                    format!(
                        "must be above 0 and at most 100, two decimals at most, got {threshold}"
                    )
                },
            );
            let min = criterion.min_number_of_executed_things;
            problems.check(min >= 1, &field("min_number_of_executed_things"), || {
                format!("must be at least 1, got {min}")
            });
            if let Ok(built) = AbortCriteria::builder()
                .set_failure_type(failure_type)
                .action(AbortAction::Cancel)
                .threshold_percentage(threshold)
                .min_number_of_executed_things(min)
                .build()
            {
                criteria.push(built);
            }
        }
        options.abort = AbortConfig::builder()
            .set_criteria_list(Some(criteria))
            .build()
            .ok();
    }

    if let Some(timeout) = &request.timeout {
        let minutes = timeout.in_progress_timeout_in_minutes;
        problems.check(
            (1..=10080).contains(&minutes),
            "timeout.in_progress_timeout_in_minutes",
            || format!("must be from 1 to 10080 (seven days), got {minutes}"),
        );
        options.timeout = Some(
            TimeoutConfig::builder()
                .in_progress_timeout_in_minutes(minutes)
                .build(),
        );
    }

    if let Some(retry) = &request.retry {
        let count = retry.criteria.len();
        problems.check((1..=2).contains(&count), "retry.criteria", || {
            format!("name one or two criteria, got {count}")
        });
        let mut criteria = Vec::new();
        let mut seen = Vec::new();
        for (i, criterion) in retry.criteria.iter().enumerate() {
            let field = |name: &str| format!("retry.criteria[{i}].{name}");
            let failure_type = match criterion.failure_type.as_str() {
                "FAILED" => Some(RetryableFailureType::Failed),
                "TIMED_OUT" => Some(RetryableFailureType::TimedOut),
                "ALL" => Some(RetryableFailureType::All),
                _ => {
                    problems.add(field("failure_type"), "must be FAILED, TIMED_OUT or ALL");
                    None
                }
            };
            if let Some(kind) = &failure_type {
                problems.check(
                    !seen.contains(kind)
                        && !(seen.len() == 1
                            && (kind == &RetryableFailureType::All
                                || seen[0] == RetryableFailureType::All)),
                    &field("failure_type"),
                    || "a failure type may be named once, and ALL only alone".into(),
                );
                seen.push(kind.clone());
            }
            let n = criterion.number_of_retries;
            problems.check((0..=10).contains(&n), &field("number_of_retries"), || {
                format!("must be from 0 to 10, got {n}")
            });
            if let Ok(built) = RetryCriteria::builder()
                .set_failure_type(failure_type)
                .number_of_retries(n)
                .build()
            {
                criteria.push(built);
            }
        }
        let total: i64 = retry
            .criteria
            .iter()
            .map(|c| i64::from(c.number_of_retries))
            .sum();
        problems.check(total <= 10, "retry.criteria", || {
            format!("at most 10 retries for all failure types together, got {total}")
        });
        options.retry = JobExecutionsRetryConfig::builder()
            .set_criteria_list(Some(criteria))
            .build()
            .ok();
    }

    if let Some(scheduling) = &request.scheduling {
        let time = |field: &str, text: &Option<String>, problems: &mut Problems| {
            text.as_deref()
                .and_then(|t| match DateTime::parse_from_rfc3339(t) {
                    Ok(t) => Some(t.with_timezone(&Utc)),
                    Err(_) => {
                        problems.add(field, "must be an RFC 3339 time, like 2030-01-31T22:00:00Z");
                        None
                    }
                })
        };
        let start = time("scheduling.start_time", &scheduling.start_time, problems);
        let end = time("scheduling.end_time", &scheduling.end_time, problems);
        let half_hour = Duration::minutes(30);
        let year = Duration::days(365);
        if let Some(start) = start {
            problems.check(
                start >= now + half_hour && start <= now + year,
                "scheduling.start_time",
                || "must be between 30 minutes and one year from now".into(),
            );
        }
        if let Some(end) = end {
            problems.check(
                end >= now + half_hour && end <= now + year * 2,
                "scheduling.end_time",
                || "must be between 30 minutes and two years from now".into(),
            );
            if let Some(start) = start {
                problems.check(
                    end - start >= half_hour && end - start <= year * 2,
                    "scheduling.end_time",
                    || "must be 30 minutes to two years after start_time".into(),
                );
            }
        }
        let end_behavior = scheduling.end_behavior.as_deref().and_then(|b| match b {
            "STOP_ROLLOUT" => Some(JobEndBehavior::StopRollout),
            "CANCEL" => Some(JobEndBehavior::Cancel),
            "FORCE_CANCEL" => Some(JobEndBehavior::ForceCancel),
            _ => {
                problems.add(
                    "scheduling.end_behavior",
                    "must be STOP_ROLLOUT, CANCEL or FORCE_CANCEL",
                );
                None
            }
        });
        if end_behavior.is_some() && scheduling.end_time.is_none() {
            problems.add("scheduling.end_behavior", "needs an end_time");
        }
        let mut windows = Vec::new();
        for (i, window) in scheduling.maintenance_windows.iter().enumerate() {
            let minutes = window.duration_in_minutes;
            problems.check(
                (1..=1430).contains(&minutes),
                &format!("scheduling.maintenance_windows[{i}].duration_in_minutes"),
                || format!("must be from 1 to 1430, got {minutes}"),
            );
            let field = format!("scheduling.maintenance_windows[{i}].start_time");
            if !(1..=256).contains(&window.start_time.len()) {
                problems.add(&field, "must be 1-256 characters");
            } else if let Err(error) = Cron::parse(&window.start_time) {
                problems.add(&field, format!("not a valid cron expression: {error}"));
            }
            if let Ok(built) = MaintenanceWindow::builder()
                .start_time(&window.start_time)
                .duration_in_minutes(minutes)
                .build()
            {
                windows.push(built);
            }
        }
        options.scheduling = Some(
            SchedulingConfig::builder()
                .set_start_time(start.map(aws_date_time))
                .set_end_time(end.map(aws_date_time))
                .set_end_behavior(end_behavior)
                .set_maintenance_windows((!windows.is_empty()).then_some(windows))
                .build(),
        );
    }

    if let Some(presigned) = &request.presigned_url {
        if let Some(role) = &presigned.role_arn {
            problems.check(
                (20..=2048).contains(&role.len()) && role.starts_with("arn:"),
                "presigned_url.role_arn",
                || "must be an IAM role ARN of 20-2048 characters".into(),
            );
        }
        if let Some(expires) = presigned.expires_in_sec {
            problems.check(
                (60..=3600).contains(&expires),
                "presigned_url.expires_in_sec",
                || format!("must be from 60 to 3600, got {expires}"),
            );
        }
        options.presigned_url = Some(
            PresignedUrlConfig::builder()
                .set_role_arn(presigned.role_arn.clone())
                .set_expires_in_sec(presigned.expires_in_sec)
                .build(),
        );
    }

    options
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn problems_of(options: serde_json::Value) -> Vec<String> {
        let mut request = json!({ "things": ["t"], "document": {} });
        request
            .as_object_mut()
            .expect("an object")
            .extend(options.as_object().expect("an object").clone());
        let request: CreateJob = serde_json::from_value(request).expect("a request");
        let mut problems = Problems::default();
        validate(&request, Utc::now(), &mut problems);
        problems.0.into_iter().map(|p| p.field).collect()
    }

    #[test]
    fn valid_options_pass() {
        let start = (Utc::now() + Duration::hours(2)).to_rfc3339();
        let end = (Utc::now() + Duration::hours(30)).to_rfc3339();
        let fields = problems_of(json!({
            "target_selection": "CONTINUOUS",
            "rollout": { "maximum_per_minute": 100, "exponential_rate": {
                "base_rate_per_minute": 5, "increment_factor": 2.0,
                "rate_increase_criteria": { "number_of_succeeded_things": 5 } } },
            "abort": { "criteria": [{ "failure_type": "FAILED", "threshold_percentage": 12.5,
                "min_number_of_executed_things": 10 }] },
            "timeout": { "in_progress_timeout_in_minutes": 60 },
            "retry": { "criteria": [{ "failure_type": "FAILED", "number_of_retries": 3 },
                { "failure_type": "TIMED_OUT", "number_of_retries": 2 }] },
            "scheduling": { "start_time": start, "end_time": end, "end_behavior": "CANCEL",
                "maintenance_windows": [{ "start_time": "cron(0 22 ? * SUN *)", "duration_in_minutes": 120 }] },
            "presigned_url": { "role_arn": "arn:aws:iam::123456789012:role/x", "expires_in_sec": 600 },
        }));
        assert!(fields.is_empty(), "{fields:?}");
    }

    #[test]
    fn each_bad_option_is_named() {
        let cases = [
            (
                json!({ "target_selection": "SOMETIMES" }),
                "target_selection",
            ),
            (
                json!({ "rollout": { "maximum_per_minute": 0 } }),
                "rollout.maximum_per_minute",
            ),
            (
                json!({ "rollout": { "maximum_per_minute": 1001 } }),
                "rollout.maximum_per_minute",
            ),
            (
                json!({ "rollout": { "exponential_rate": { "base_rate_per_minute": 5, "increment_factor": 1.55,
                    "rate_increase_criteria": { "number_of_notified_things": 1 } } } }),
                "rollout.exponential_rate.increment_factor",
            ),
            (
                json!({ "rollout": { "exponential_rate": { "base_rate_per_minute": 5, "increment_factor": 2.0,
                    "rate_increase_criteria": {} } } }),
                "rollout.exponential_rate.rate_increase_criteria",
            ),
            (
                json!({ "abort": { "criteria": [{ "failure_type": "FAILED", "threshold_percentage": 100.5,
                    "min_number_of_executed_things": 1 }] } }),
                "abort.criteria[0].threshold_percentage",
            ),
            (
                json!({ "abort": { "criteria": [{ "failure_type": "BROKEN", "threshold_percentage": 10,
                    "min_number_of_executed_things": 1 }] } }),
                "abort.criteria[0].failure_type",
            ),
            (json!({ "abort": { "criteria": [] } }), "abort.criteria"),
            (
                json!({ "timeout": { "in_progress_timeout_in_minutes": 10081 } }),
                "timeout.in_progress_timeout_in_minutes",
            ),
            (
                json!({ "retry": { "criteria": [{ "failure_type": "FAILED", "number_of_retries": 11 }] } }),
                "retry.criteria[0].number_of_retries",
            ),
            (
                json!({ "retry": { "criteria": [{ "failure_type": "ALL", "number_of_retries": 1 },
                    { "failure_type": "FAILED", "number_of_retries": 1 }] } }),
                "retry.criteria[1].failure_type",
            ),
            (
                json!({ "scheduling": { "start_time": "2000-01-01T00:00:00Z" } }),
                "scheduling.start_time",
            ),
            (
                json!({ "scheduling": { "start_time": "tomorrow" } }),
                "scheduling.start_time",
            ),
            (
                json!({ "scheduling": { "maintenance_windows": [{ "start_time": "cron(61 * * * ? *)", "duration_in_minutes": 30 }] } }),
                "scheduling.maintenance_windows[0].start_time",
            ),
            (
                json!({ "scheduling": { "maintenance_windows": [{ "start_time": "cron(0 0 ? * SUN *)", "duration_in_minutes": 1431 }] } }),
                "scheduling.maintenance_windows[0].duration_in_minutes",
            ),
            (
                json!({ "presigned_url": { "expires_in_sec": 5 } }),
                "presigned_url.expires_in_sec",
            ),
        ];
        for (options, field) in cases {
            let fields = problems_of(options.clone());
            assert_eq!(fields.first().map(String::as_str), Some(field), "{options}");
        }
    }
}
