//! The ordering rules of the projection: whether an observation of an execution or a job is
//! newer than what the projection holds. Pure functions, so every rule is unit-tested.
//!
//! Observations come from three feeds that may duplicate, reorder or drop messages: AWS's
//! `$aws/events` (which carry neither executionNumber nor versionNumber), the engine's
//! extension events (which carry both), and reconciliation (ListJobExecutionsForJob, which
//! carries executionNumber only). A newer attempt (executionNumber) always wins; within one
//! attempt, a higher versionNumber wins when both sides know it, else the status's rank
//! (QUEUED < IN_PROGRESS < final) — so nothing ever moves a state backwards.

use chrono::{DateTime, Utc};

/// How far along the lifecycle of one attempt an execution status is.
pub fn execution_rank(status: &str) -> u8 {
    match status {
        "QUEUED" => 0,
        "IN_PROGRESS" => 1,
        _ => 2,
    }
}

/// How far along its lifecycle a job status is. Jobs never go back (a continuous job stays
/// IN_PROGRESS until canceled). A status this version does not know ranks lowest: ranked
/// highest, one odd answer (moto reports a new job as `QUEUED`) would freeze the job for good.
pub fn job_rank(status: &str) -> u8 {
    match status {
        "SCHEDULED" => 1,
        "IN_PROGRESS" => 2,
        "CANCELLATION_IN_PROGRESS" => 3,
        "DELETION_IN_PROGRESS" => 4,
        "COMPLETED" | "CANCELED" => 5,
        _ => 0,
    }
}

/// What the projection holds for an execution.
#[derive(Debug, Clone)]
pub struct StoredExecution {
    pub status: String,
    pub execution_number: Option<i64>,
    pub version_number: Option<i64>,
    pub queued_at: Option<DateTime<Utc>>,
}

/// The facts of an observation the rules look at.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub status: &'a str,
    pub execution_number: Option<i64>,
    pub version_number: Option<i64>,
    /// When the source says the observation was made (AWS events: whole seconds).
    pub event_time: Option<DateTime<Utc>>,
}

/// What to do with an observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Store it; `transition` when the status (or the attempt) changes.
    Apply { transition: bool },
    /// Stale or a duplicate: change nothing.
    Ignore,
    /// Cannot tell which attempt it belongs to: change nothing and reconcile the job.
    Ambiguous,
}

/// Whether `incoming` is newer than `stored`.
pub fn decide(stored: Option<&StoredExecution>, incoming: Incoming<'_>) -> Decision {
    let Some(stored) = stored else {
        return Decision::Apply { transition: true };
    };
    match (stored.execution_number, incoming.execution_number) {
        (Some(s), Some(i)) if i > s => return Decision::Apply { transition: true },
        (Some(s), Some(i)) if i < s => return Decision::Ignore,
        // AWS's events name no attempt. After a retry (attempt > 1) the event may belong to
        // the previous attempt: it does if it happened before the current one was queued,
        // and it does not if after. Event times are whole seconds, so within the second of
        // the retry nobody can tell; reconciliation asks IoT instead of guessing.
        (Some(s), None) if s > 1 => match (incoming.event_time, stored.queued_at) {
            (Some(at), Some(queued)) if at + chrono::Duration::seconds(1) <= queued => {
                return Decision::Ignore;
            }
            (Some(at), Some(queued)) if at > queued => {}
            _ => return Decision::Ambiguous,
        },
        _ => {}
    }
    same_attempt(stored, incoming)
}

fn same_attempt(stored: &StoredExecution, incoming: Incoming<'_>) -> Decision {
    let (from, to) = (
        execution_rank(&stored.status),
        execution_rank(incoming.status),
    );
    let status_changes = stored.status != incoming.status;
    if let (Some(s), Some(i)) = (stored.version_number, incoming.version_number) {
        return if i > s && to >= from && !(from == 2 && status_changes) {
            Decision::Apply {
                transition: status_changes,
            }
        } else {
            Decision::Ignore
        };
    }
    if to > from {
        return Decision::Apply { transition: true };
    }
    if to < from || status_changes {
        // Backwards, or a second final status for a finished attempt: the first one stands.
        return Decision::Ignore;
    }
    // The same status: worth storing only for what it adds (the version, the attempt).
    let adds_version = incoming.version_number.is_some() && stored.version_number.is_none();
    let adds_attempt = incoming.execution_number.is_some() && stored.execution_number.is_none();
    if adds_version || adds_attempt {
        Decision::Apply { transition: false }
    } else {
        Decision::Ignore
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(status: &str, number: Option<i64>, version: Option<i64>) -> StoredExecution {
        StoredExecution {
            status: status.into(),
            execution_number: number,
            version_number: version,
            queued_at: Some(DateTime::from_timestamp(1_000, 500_000_000).expect("time")),
        }
    }

    fn incoming(status: &str, number: Option<i64>, version: Option<i64>) -> Incoming<'_> {
        Incoming {
            status,
            execution_number: number,
            version_number: version,
            event_time: None,
        }
    }

    const APPLY: Decision = Decision::Apply { transition: true };

    #[test]
    fn forward_moves_apply_and_backward_moves_do_not() {
        let queued = stored("QUEUED", Some(1), Some(1));
        assert_eq!(decide(None, incoming("QUEUED", None, None)), APPLY);
        assert_eq!(
            decide(Some(&queued), incoming("IN_PROGRESS", Some(1), Some(2))),
            APPLY
        );
        assert_eq!(
            decide(Some(&queued), incoming("SUCCEEDED", None, None)),
            APPLY
        );
        let done = stored("SUCCEEDED", Some(1), Some(3));
        assert_eq!(
            decide(Some(&done), incoming("IN_PROGRESS", Some(1), Some(2))),
            Decision::Ignore
        );
        assert_eq!(
            decide(Some(&done), incoming("QUEUED", Some(1), None)),
            Decision::Ignore
        );
        assert_eq!(
            decide(Some(&done), incoming("FAILED", None, None)),
            Decision::Ignore
        );
    }

    #[test]
    fn duplicates_are_ignored() {
        let running = stored("IN_PROGRESS", Some(1), Some(2));
        assert_eq!(
            decide(Some(&running), incoming("IN_PROGRESS", Some(1), Some(2))),
            Decision::Ignore
        );
        assert_eq!(
            decide(Some(&running), incoming("IN_PROGRESS", Some(1), None)),
            Decision::Ignore
        );
    }

    #[test]
    fn a_newer_version_of_the_same_status_updates_without_a_transition() {
        let running = stored("IN_PROGRESS", Some(1), Some(2));
        assert_eq!(
            decide(Some(&running), incoming("IN_PROGRESS", Some(1), Some(3))),
            Decision::Apply { transition: false }
        );
        let unversioned = stored("IN_PROGRESS", Some(1), None);
        assert_eq!(
            decide(
                Some(&unversioned),
                incoming("IN_PROGRESS", Some(1), Some(3))
            ),
            Decision::Apply { transition: false }
        );
    }

    #[test]
    fn a_newer_attempt_wins_and_an_older_one_loses() {
        let failed = stored("FAILED", Some(1), Some(3));
        assert_eq!(
            decide(Some(&failed), incoming("QUEUED", Some(2), Some(1))),
            APPLY
        );
        let retried = stored("QUEUED", Some(2), Some(1));
        assert_eq!(
            decide(Some(&retried), incoming("FAILED", Some(1), Some(3))),
            Decision::Ignore
        );
    }

    #[test]
    fn events_without_an_attempt_after_a_retry_go_by_time() {
        let retried = stored("QUEUED", Some(2), Some(1));
        let at = |secs| DateTime::from_timestamp(secs, 0);
        let event = |secs| Incoming {
            event_time: at(secs),
            ..incoming("FAILED", None, None)
        };
        // Before the retry was queued (at 1000.5 s): the previous attempt's news.
        assert_eq!(decide(Some(&retried), event(999)), Decision::Ignore);
        // In the same second: cannot tell.
        assert_eq!(decide(Some(&retried), event(1_000)), Decision::Ambiguous);
        // After: about the current attempt.
        assert_eq!(decide(Some(&retried), event(1_001)), APPLY);
    }

    #[test]
    fn an_unknown_job_status_never_blocks_a_known_one() {
        assert!(job_rank("QUEUED") < job_rank("SCHEDULED"));
        assert!(job_rank("QUEUED") < job_rank("CANCELED"));
        assert!(job_rank("IN_PROGRESS") < job_rank("COMPLETED"));
    }
}
