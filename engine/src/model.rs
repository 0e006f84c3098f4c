//! Names, ARNs and states of the things and jobs the engine keeps, with AWS's validation rules.

use serde::{Deserialize, Serialize};

/// A job execution's status, as AWS spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    Queued,
    InProgress,
    Succeeded,
    Failed,
    TimedOut,
    Rejected,
    Removed,
    Canceled,
}

impl ExecutionStatus {
    pub const ALL: [ExecutionStatus; 8] = [
        Self::Queued,
        Self::InProgress,
        Self::Succeeded,
        Self::Failed,
        Self::TimedOut,
        Self::Rejected,
        Self::Removed,
        Self::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::InProgress => "IN_PROGRESS",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::TimedOut => "TIMED_OUT",
            Self::Rejected => "REJECTED",
            Self::Removed => "REMOVED",
            Self::Canceled => "CANCELED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// Whether the execution can change no more.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Queued | Self::InProgress)
    }

    /// The statuses a device may report with UpdateJobExecution.
    pub fn settable_by_device(self) -> bool {
        matches!(
            self,
            Self::InProgress | Self::Succeeded | Self::Failed | Self::Rejected
        )
    }

    /// The `$aws/events/jobExecution/{jobId}/{operation}` operation announcing this status.
    pub fn event_operation(self) -> Option<&'static str> {
        Some(match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
            Self::Canceled => "canceled",
            Self::TimedOut => "timed_out",
            Self::Removed => "removed",
            Self::Queued | Self::InProgress => return None,
        })
    }
}

/// Thing names: 1–128 of `[a-zA-Z0-9:_-]` (AWS's `ThingName` pattern). This also keeps MQTT
/// wildcards and `/` out of the topics built from them.
pub fn valid_thing_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

/// Job ids: 1–64 of `[a-zA-Z0-9_-]` (AWS's `JobId` pattern).
pub fn valid_job_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// Builds and parses ARNs in the engine's region and account.
#[derive(Debug, Clone)]
pub struct Arns {
    pub region: String,
    pub account_id: String,
}

/// What a job target ARN names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Thing(String),
    ThingGroup(String),
}

impl Arns {
    fn prefix(&self) -> String {
        format!("arn:aws:iot:{}:{}:", self.region, self.account_id)
    }

    pub fn thing(&self, name: &str) -> String {
        format!("{}thing/{name}", self.prefix())
    }

    pub fn thing_group(&self, name: &str) -> String {
        format!("{}thinggroup/{name}", self.prefix())
    }

    pub fn job(&self, id: &str) -> String {
        format!("{}job/{id}", self.prefix())
    }

    pub fn job_template(&self, id: &str) -> String {
        format!("{}jobtemplate/{id}", self.prefix())
    }

    /// Parses a job target; `None` for anything that is not a thing or thing group of this
    /// account and region.
    pub fn parse_target(&self, arn: &str) -> Option<Target> {
        let resource = arn.strip_prefix(&self.prefix())?;
        if let Some(name) = resource.strip_prefix("thing/") {
            valid_thing_name(name).then(|| Target::Thing(name.to_owned()))
        } else if let Some(name) = resource.strip_prefix("thinggroup/") {
            valid_thing_name(name).then(|| Target::ThingGroup(name.to_owned()))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_aws_patterns() {
        assert!(valid_thing_name("sim-0001"));
        assert!(valid_thing_name("a:b_c-d"));
        assert!(!valid_thing_name(""));
        assert!(!valid_thing_name("a/b"));
        assert!(!valid_thing_name("+"));
        assert!(!valid_thing_name(&"x".repeat(129)));
        assert!(valid_job_id("rollout-1_wave-2"));
        assert!(!valid_job_id("a:b"));
        assert!(!valid_job_id(&"x".repeat(65)));
    }

    #[test]
    fn target_arns_round_trip() {
        let arns = Arns {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
        };
        assert_eq!(
            arns.parse_target(&arns.thing("dev-1")),
            Some(Target::Thing("dev-1".into()))
        );
        assert_eq!(
            arns.parse_target(&arns.thing_group("line-3")),
            Some(Target::ThingGroup("line-3".into()))
        );
        assert_eq!(
            arns.parse_target("arn:aws:iot:eu-west-1:000000000000:thing/dev-1"),
            None
        );
        assert_eq!(
            arns.parse_target("arn:aws:iot:us-east-1:000000000000:thing/a/b"),
            None
        );
    }

    #[test]
    fn statuses_round_trip() {
        for status in ExecutionStatus::ALL {
            assert_eq!(ExecutionStatus::parse(status.as_str()), Some(status));
        }
        assert!(ExecutionStatus::Succeeded.is_terminal());
        assert!(!ExecutionStatus::Queued.settable_by_device());
    }
}
