//! `/api/v1/things` and `/api/v1/thing-groups`: the fleet as AWS IoT registers it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One registered device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Thing {
    pub name: String,
    pub arn: String,
    pub thing_type: Option<String>,
    pub attributes: BTreeMap<String, String>,
    pub version: i64,
}

/// `GET /api/v1/things?name_prefix=&attr.{key}={value}&limit=&next_token=`: a page of things.
/// A page may hold fewer than `limit` things while `next_token` is set (filters are applied
/// page by page); keep following `next_token` until it is absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ThingList {
    pub things: Vec<Thing>,
    pub next_token: Option<String>,
}

/// One job execution of a thing, as the thing's detail lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ThingExecution {
    pub job_id: String,
    pub status: String,
    pub execution_number: Option<i64>,
    /// RFC 3339.
    pub queued_at: Option<String>,
    /// RFC 3339.
    pub started_at: Option<String>,
    /// RFC 3339.
    pub updated_at: Option<String>,
}

/// `GET /api/v1/things/{name}`: a thing with its groups and its job executions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ThingDetail {
    #[serde(flatten)]
    pub thing: Thing,
    /// Names of the thing groups the thing belongs to.
    pub groups: Vec<String>,
    pub executions: Vec<ThingExecution>,
}

/// One thing group with how many things it holds directly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ThingGroup {
    pub name: String,
    pub arn: String,
    pub member_count: i64,
}

/// `GET /api/v1/thing-groups?name_prefix=&limit=&next_token=`: a page of thing groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ThingGroupList {
    pub groups: Vec<ThingGroup>,
    pub next_token: Option<String>,
}

/// `GET /api/v1/thing-groups/{name}?limit=&next_token=`: a group and a page of its members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ThingGroupDetail {
    pub name: String,
    pub arn: String,
    pub description: Option<String>,
    pub parent: Option<String>,
    pub attributes: BTreeMap<String, String>,
    /// Things directly in the group, a page at a time.
    pub members: Vec<String>,
    pub next_token: Option<String>,
}
