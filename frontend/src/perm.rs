//! What each role may do, so pages can hide the actions a person may not take.
//!
//! The server is the authority (it refuses what a role may not do); this only keeps buttons
//! that would be refused off the screen. The role is the one `GET /api/v1/me` answers; until
//! it has answered, the page is a viewer's.

/// Who uses the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads everything, changes nothing.
    Viewer,
    /// Acts on single devices.
    Technician,
    /// Runs rollouts and jobs.
    Operator,
    /// Everything an operator does, and everyone's tokens.
    Admin,
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
    /// Register devices (one or from a CSV file), revoke their certificates, create thing
    /// groups: the server's operator routes of the inventory.
    ManageFleet,
}

impl Role {
    /// The role the API names.
    pub fn from_api(role: flotilla_api::Role) -> Self {
        match role {
            flotilla_api::Role::Viewer => Self::Viewer,
            flotilla_api::Role::Technician => Self::Technician,
            flotilla_api::Role::Operator => Self::Operator,
            flotilla_api::Role::Admin => Self::Admin,
        }
    }

    pub fn allows(self, act: Act) -> bool {
        match self {
            Self::Viewer => false,
            Self::Technician => act == Act::DeviceAction,
            Self::Operator | Self::Admin => true,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Technician => "technician",
            Self::Operator => "operator",
            Self::Admin => "admin",
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
        assert!(!Role::Technician.allows(Act::ManageFleet));
        assert!(Role::Operator.allows(Act::ManageFleet));
        assert!(Role::Admin.allows(Act::ManageFleet));
        assert!(!Role::Viewer.allows(Act::DeviceAction));
        assert!(!Role::Viewer.allows(Act::Deploy));
        assert!(Role::Admin.allows(Act::Deploy));
    }

    #[test]
    fn the_apis_roles_map_one_to_one() {
        for (api, role) in [
            (flotilla_api::Role::Viewer, Role::Viewer),
            (flotilla_api::Role::Technician, Role::Technician),
            (flotilla_api::Role::Operator, Role::Operator),
            (flotilla_api::Role::Admin, Role::Admin),
        ] {
            assert_eq!(Role::from_api(api), role);
            assert_eq!(role.as_str(), api.as_str());
        }
    }
}
