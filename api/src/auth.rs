//! Who is signed in (`/api/v1/me`), roles, and personal API tokens (`/api/v1/tokens`).

use serde::{Deserialize, Serialize};

/// What a user may do, from least to most: each role may do everything the ones before it
/// may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Acts on single devices and runs published templates on one device.
    Technician,
    /// Creates and controls jobs, rollouts, templates and artifacts.
    Operator,
    /// Manages settings, keys and everyone's tokens.
    Admin,
}

impl Role {
    /// Every role, least first.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Technician, Role::Operator, Role::Admin];

    /// The wire name: `viewer`, `technician`, `operator`, `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Technician => "technician",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    /// The role of a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == name)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `GET /api/v1/me`: the identity a request was made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Me {
    /// The user name (the identity provider's user, or a token's owner).
    pub user: String,
    pub email: Option<String>,
    pub role: Role,
    /// How the request was authenticated: `development`, `proxy`, `alb`, `oidc` or `token`.
    pub via: String,
    /// With OpenID Connect sign-in: the session's CSRF token, which every request that changes
    /// something must send as the `X-CSRF-Token` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

/// `POST /api/v1/auth/logout`: the session has ended; where the browser goes to end the
/// identity provider's session too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoggedOut {
    /// The provider's end-session URL (RP-initiated logout), when it offers one.
    pub end_session_url: Option<String>,
}

/// `POST /api/v1/tokens`: a new personal API token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateToken {
    /// What the token is for (1–100 characters), e.g. `ci-pipeline`.
    pub name: String,
    /// The token's role: at most the creator's own.
    pub role: Role,
    /// Days until the token expires, 1–365; 90 when absent.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// A personal API token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    /// The user the token acts for.
    pub owner: String,
    pub role: Role,
    /// RFC 3339.
    pub created_at: String,
    pub expires_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// The answer to `POST /api/v1/tokens`: the token, and its secret, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedToken {
    pub token: ApiToken,
    /// Send it as `Authorization: Bearer SECRET`. Only its hash is stored: it cannot be shown
    /// again.
    pub secret: String,
}

/// `GET /api/v1/tokens`: the caller's tokens (an admin's: everyone's), newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenList {
    pub tokens: Vec<ApiToken>,
}
