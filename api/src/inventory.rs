//! `/api/v1/devices`: the fleet inventory, the server's projection of every device with its
//! groups, connectivity, installed software and last job outcome.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One device as the inventory holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Device {
    pub name: String,
    pub thing_type: Option<String>,
    pub attributes: BTreeMap<String, String>,
    /// The device's groups and all their ancestors, sorted.
    pub groups: Vec<String>,
    pub connected: bool,
    /// RFC 3339: the last connect or disconnect.
    pub last_seen_at: Option<String>,
    /// The software version the device last reported in its `flotilla` shadow.
    pub installed_version: Option<String>,
    pub agent_version: Option<String>,
    pub last_job_id: Option<String>,
    /// The status of the device's last finished job execution (SUCCEEDED, FAILED …).
    pub last_job_status: Option<String>,
    /// RFC 3339.
    pub last_job_at: Option<String>,
}

/// `GET /api/v1/devices?name=&attr.{key}={value}&group=&version=&connectivity=&last_job=&after=&limit=`:
/// a page of devices in name order. Every filter narrows the result (AND). `next` is the
/// `after` of the next page, absent on the last one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceList {
    pub devices: Vec<Device>,
    pub next: Option<String>,
}

/// One connect or disconnect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PresenceChange {
    pub connected: bool,
    /// RFC 3339.
    pub at: String,
    /// AWS IoT's `disconnectReason`, for a disconnect.
    pub reason: Option<String>,
}

/// One version the device reported, from when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionChange {
    pub version: String,
    /// RFC 3339.
    pub reported_at: String,
}

/// One job execution of the device, with its status details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceExecution {
    pub job_id: String,
    pub status: String,
    pub execution_number: Option<i64>,
    pub status_details: BTreeMap<String, String>,
    /// RFC 3339.
    pub updated_at: Option<String>,
}

/// `GET /api/v1/devices/{name}`: a device with its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceDetail {
    #[serde(flatten)]
    pub device: Device,
    /// Newest first, at most 100.
    pub connectivity: Vec<PresenceChange>,
    /// Newest first, at most 100.
    pub versions: Vec<VersionChange>,
    /// Newest first, at most 100.
    pub executions: Vec<DeviceExecution>,
}

/// How many devices run one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionCount {
    /// `None`: devices that never reported.
    pub version: Option<String>,
    pub devices: i64,
    pub connected: i64,
}

/// `GET /api/v1/devices/versions?group=`: the software distribution, most common first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SoftwareDistribution {
    pub group: Option<String>,
    pub versions: Vec<VersionCount>,
}

/// `POST /api/v1/devices`: register a device (the thing, its credentials, a download bundle).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterDevice {
    /// The thing name (1–128 of letters, digits and `:_-`).
    pub name: String,
    #[serde(default)]
    pub thing_type: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Static groups to put the device in.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The software version the device runs before its first install (written into the agent
    /// configuration of the bundle).
    #[serde(default)]
    pub software_version: Option<String>,
}

/// A registered device and where to fetch its credentials, once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisteredDevice {
    pub name: String,
    pub certificate_id: String,
    /// `GET /api/v1/device-bundles/{bundle_token}` answers the bundle once.
    pub bundle_token: String,
    /// RFC 3339: the bundle is gone after this.
    pub bundle_expires_at: String,
}

/// The one-time download bundle: everything the agent needs to connect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceBundle {
    pub thing_name: String,
    pub certificate_id: String,
    pub certificate_pem: String,
    pub private_key_pem: String,
    /// The CA that signed the broker's certificate (the engine's CA in local mode); on AWS,
    /// Amazon Root CA 1 from `ca_url`.
    pub ca_certificate_pem: Option<String>,
    pub ca_url: Option<String>,
    pub endpoint: String,
    pub port: u16,
    /// A ready-to-run `flotilla-agent` configuration (TOML); file paths are relative to the
    /// folder the bundle is unpacked in.
    pub agent_config: String,
}

/// One row of a CSV import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportedRow {
    /// The row's line number in the file (the header is line 1).
    pub line: usize,
    pub name: String,
    /// `created`, `exists` (registered before, with the same properties) or `failed`.
    pub status: String,
    pub message: Option<String>,
    pub certificate_id: Option<String>,
    pub bundle_token: Option<String>,
}

/// `POST /api/v1/devices/import`: the result of every row, in file order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportResult {
    pub created: usize,
    pub failed: usize,
    pub rows: Vec<ImportedRow>,
}

/// A certificate of a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceCertificate {
    pub certificate_id: String,
    /// ACTIVE, INACTIVE, REVOKED …
    pub status: String,
    /// RFC 3339.
    pub created_at: Option<String>,
}

/// `GET /api/v1/devices/{name}/certificates`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceCertificates {
    pub certificates: Vec<DeviceCertificate>,
}

/// `POST /api/v1/thing-groups`: a static group (optionally below `parent`) or, with `query`,
/// a dynamic group whose members are the things the fleet-indexing query matches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateGroup {
    pub name: String,
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// A dynamic group's query, e.g. `attributes.site:berlin AND attributes.hw:rev-2`.
    #[serde(default)]
    pub query: Option<String>,
}

/// `POST /api/v1/thing-groups/{name}/members`: things to add, by name and/or every device a
/// search (the filters of `GET /api/v1/devices`) finds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddMembers {
    #[serde(default)]
    pub things: Vec<String>,
    #[serde(default)]
    pub search: Option<BTreeMap<String, String>>,
}

/// How many things a membership change touched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MembersChanged {
    pub group: String,
    pub things: Vec<String>,
}
