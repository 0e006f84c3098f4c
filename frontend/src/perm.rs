//! What each role may do, so pages can hide the actions a person may not take.
//!
//! The server is the authority (it refuses what a role may not do); this only keeps buttons
//! that would be refused off the screen. Until the server tells the page who is signed in,
//! everyone is an operator.

/// Who uses the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "sign-in will name the role; until then everyone is an operator"
    )
)]
pub enum Role {
    /// Reads everything, changes nothing.
    Viewer,
    /// Acts on single devices.
    Technician,
    /// Runs rollouts and jobs.
    Operator,
}

/// An action a page offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Pause, resume, promote, approve, cancel a rollout; retry its failed devices.
    SteerRollout,
    /// Create rollouts and jobs for many devices; cancel jobs.
    Deploy,
    /// Retry or cancel one device's execution, run a template on it, reboot it.
    DeviceAction,
}

impl Role {
    pub fn allows(self, act: Act) -> bool {
        match self {
            Self::Viewer => false,
            Self::Technician => act == Act::DeviceAction,
            Self::Operator => true,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Technician => "technician",
            Self::Operator => "operator",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_allow_what_their_job_needs() {
        assert!(Role::Operator.allows(Act::SteerRollout));
        assert!(Role::Operator.allows(Act::DeviceAction));
        assert!(Role::Technician.allows(Act::DeviceAction));
        assert!(!Role::Technician.allows(Act::Deploy));
        assert!(!Role::Technician.allows(Act::SteerRollout));
        assert!(!Role::Viewer.allows(Act::DeviceAction));
    }
}
