//! The gates between waves, as pure decisions over a wave's tally and the clock: the
//! orchestrator gathers the facts, these functions say what they mean.

use chrono::{DateTime, Duration, Utc};
use flotilla_api::Gates;

use crate::api::job_options::Problems;

/// How a wave's things stand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub size: i64,
    pub queued: i64,
    pub in_progress: i64,
    pub succeeded: i64,
    /// FAILED, REJECTED, TIMED_OUT, CANCELED or REMOVED.
    pub failed: i64,
    /// Succeeded things whose health check saw the new version.
    pub healthy: i64,
}

impl Tally {
    fn percent(&self, n: i64) -> f64 {
        if self.size == 0 {
            return 0.0;
        }
        n as f64 * 100.0 / self.size as f64
    }

    pub fn success_percent(&self) -> f64 {
        if self.size == 0 {
            100.0
        } else {
            self.percent(self.succeeded)
        }
    }

    pub fn failure_percent(&self) -> f64 {
        self.percent(self.failed)
    }

    /// Every thing of the wave reached a terminal state.
    pub fn finished(&self) -> bool {
        self.queued == 0 && self.in_progress == 0
    }

    /// Adds one thing's execution status (`None`: no execution seen yet).
    pub fn add(&mut self, status: Option<&str>) {
        self.size += 1;
        match status {
            None | Some("QUEUED") => self.queued += 1,
            Some("IN_PROGRESS") => self.in_progress += 1,
            Some("SUCCEEDED") => self.succeeded += 1,
            Some(_) => self.failed += 1,
        }
    }
}

/// Checks `gates` (messages under `field`).
pub(crate) fn validate(gates: &Gates, field: &str, problems: &mut Problems) {
    for (name, value) in [
        ("success_threshold_percent", gates.success_threshold_percent),
        ("max_failure_percent", gates.max_failure_percent),
    ] {
        problems.check(
            (0.0..=100.0).contains(&value),
            &format!("{field}.{name}"),
            || format!("must be from 0 to 100, got {value}"),
        );
    }
    problems.check(
        (0..=10080).contains(&gates.soak_minutes),
        &format!("{field}.soak_minutes"),
        || format!("must be from 0 to 10080, got {}", gates.soak_minutes),
    );
    if let Some(check) = &gates.health_check {
        problems.check(
            check.source == flotilla_api::HealthSource::Shadow
                || (1..=128).contains(&check.attribute.len())
                    && check
                        .attribute
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.,@/:#-".contains(&b)),
            &format!("{field}.health_check.attribute"),
            || "must be a thing attribute name (1-128 of letters, digits and _.,@/:#-)".into(),
        );
        problems.check(
            (1..=10080).contains(&check.within_minutes),
            &format!("{field}.health_check.within_minutes"),
            || format!("must be from 1 to 10080, got {}", check.within_minutes),
        );
    }
}

/// Why a running wave must stop before its end: too many failures already.
pub fn failing_early(gates: &Gates, tally: &Tally) -> Option<String> {
    (tally.failure_percent() > gates.max_failure_percent).then(|| {
        format!(
            "{} of {} things failed ({:.1}%), more than the {}% allowed",
            tally.failed,
            tally.size,
            tally.failure_percent(),
            gates.max_failure_percent
        )
    })
}

/// Why a finished wave failed its success threshold, if it did.
pub fn failed_at_end(gates: &Gates, tally: &Tally) -> Option<String> {
    failing_early(gates, tally).or_else(|| {
        (tally.success_percent() < gates.success_threshold_percent).then(|| {
            format!(
                "{} of {} things succeeded ({:.1}%), below the {}% required",
                tally.succeeded,
                tally.size,
                tally.success_percent(),
                gates.success_threshold_percent
            )
        })
    })
}

/// Where a finished wave stands on its soak and health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Still waiting, for this.
    Wait(String),
    Passed,
    Failed(String),
}

/// When the soak of a wave that finished at `finished_at` ends.
pub fn soak_until(gates: &Gates, finished_at: DateTime<Utc>) -> DateTime<Utc> {
    finished_at + Duration::minutes(gates.soak_minutes)
}

/// By when a wave that finished at `finished_at` must be healthy.
pub fn health_deadline(gates: &Gates, finished_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    gates
        .health_check
        .as_ref()
        .map(|check| finished_at + Duration::minutes(check.within_minutes))
}

/// Soak and health check of a finished wave at `now`.
pub fn verify(
    gates: &Gates,
    tally: &Tally,
    finished_at: DateTime<Utc>,
    now: DateTime<Utc>,
    version: &str,
) -> Verification {
    if let (Some(check), Some(deadline)) =
        (&gates.health_check, health_deadline(gates, finished_at))
        && tally.healthy < tally.succeeded
    {
        let missing = tally.succeeded - tally.healthy;
        return if now >= deadline {
            Verification::Failed(format!(
                "health check: {missing} of {} succeeded things did not report {}={version} within {} minutes",
                tally.succeeded, check.attribute, check.within_minutes
            ))
        } else {
            Verification::Wait(format!(
                "health check: {missing} things have yet to report {}={version}",
                check.attribute
            ))
        };
    }
    let soak = soak_until(gates, finished_at);
    if now < soak {
        return Verification::Wait(format!("soaking until {}", soak.to_rfc3339()));
    }
    Verification::Passed
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_api::HealthCheck;

    fn tally(size: i64, succeeded: i64, failed: i64, healthy: i64) -> Tally {
        Tally {
            size,
            queued: size - succeeded - failed,
            in_progress: 0,
            succeeded,
            failed,
            healthy,
        }
    }

    #[test]
    fn thresholds() {
        let gates = Gates {
            success_threshold_percent: 90.0,
            max_failure_percent: 20.0,
            ..Gates::default()
        };
        assert!(failing_early(&gates, &tally(10, 0, 2, 0)).is_none());
        assert!(failing_early(&gates, &tally(10, 0, 3, 0)).is_some());
        assert!(failed_at_end(&gates, &tally(10, 9, 1, 0)).is_none());
        assert!(failed_at_end(&gates, &tally(10, 8, 2, 0)).is_some());
        assert!(failed_at_end(&gates, &tally(0, 0, 0, 0)).is_none());
    }

    #[test]
    fn soak_and_health() {
        let gates = Gates {
            soak_minutes: 30,
            health_check: Some(HealthCheck {
                attribute: "firmwareVersion".into(),
                within_minutes: 10,
                source: Default::default(),
            }),
            ..Gates::default()
        };
        let end = DateTime::parse_from_rfc3339("2026-12-04T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let at = |m| end + Duration::minutes(m);
        assert!(matches!(
            verify(&gates, &tally(4, 4, 0, 3), end, at(5), "2"),
            Verification::Wait(_)
        ));
        assert!(matches!(
            verify(&gates, &tally(4, 4, 0, 3), end, at(10), "2"),
            Verification::Failed(_)
        ));
        assert!(matches!(
            verify(&gates, &tally(4, 4, 0, 4), end, at(10), "2"),
            Verification::Wait(_)
        ));
        assert_eq!(
            verify(&gates, &tally(4, 4, 0, 4), end, at(30), "2"),
            Verification::Passed
        );
    }
}
