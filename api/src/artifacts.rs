//! `/api/v1/artifacts`: uploading update files straight to the artifact store in presigned
//! parts, the verified and signed artifacts, and deploying one as an install job.
//!
//! 1. `POST /artifacts/uploads` with a [`CreateUpload`] answers an [`Upload`]: presigned URLs,
//!    one per part; the client `PUT`s each part's bytes to its URL (a 2 GiB image never passes
//!    through the server). `GET /artifacts/uploads/{id}` answers fresh URLs (pause, resume);
//!    `DELETE` abandons the upload.
//! 2. `POST /artifacts/uploads/{id}/complete` with a [`CompleteUpload`]: the server checks the
//!    parts, reads the object back to verify the declared SHA-256, signs it and answers the
//!    [`Artifact`].
//! 3. `POST /artifacts/{id}/deploy` with a [`DeployArtifact`] creates the install job.

use serde::{Deserialize, Serialize};

use crate::CreateJob;
use crate::install::InstallStep;

/// `POST /api/v1/artifacts/uploads`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateUpload {
    /// The file name shown to people: 1-128 characters, no path separators or control
    /// characters.
    pub name: String,
    /// The software version it installs: 1-128 characters, same rules as `name`.
    pub version: String,
    /// The exact size in bytes: at least 1, at most the server's `--artifact-max-bytes`.
    pub size: u64,
    /// A MIME type, `application/octet-stream` when absent.
    #[serde(default)]
    pub content_type: Option<String>,
    /// The hardware types this build runs on (at most 50, each 1-128 of letters, digits and
    /// `.-_:`).
    #[serde(default)]
    pub hardware_types: Vec<String>,
}

/// An upload in progress: where to `PUT` each part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upload {
    /// The upload's id, which is also the id of the artifact it becomes.
    pub id: String,
    pub name: String,
    pub version: String,
    pub size: u64,
    /// Every part but the last is exactly this long; the last holds the rest.
    pub part_size: u64,
    pub parts: Vec<UploadPart>,
    /// RFC 3339: when the part URLs stop working (`GET` the upload for fresh ones).
    pub urls_expire_at: String,
}

/// One part of an upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadPart {
    /// 1 for the first part.
    pub part_number: u32,
    /// Bytes `offset .. offset + size` of the file.
    pub offset: u64,
    pub size: u64,
    /// A presigned URL: `PUT` the part's bytes as the body, no other header needed.
    pub url: String,
    /// Whether the store already holds this part (a resumed upload skips it).
    pub received: bool,
}

/// `POST /api/v1/artifacts/uploads/{id}/complete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompleteUpload {
    /// The SHA-256 of the whole file as the client computed it, 64 hex digits. The server
    /// computes its own from the stored object and refuses the artifact if they differ.
    pub sha256: String,
}

/// A verified, signed artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    pub id: String,
    pub name: String,
    pub version: String,
    pub size: u64,
    pub content_type: String,
    pub hardware_types: Vec<String>,
    /// Lowercase hex SHA-256, computed by the server from the stored object.
    pub sha256: String,
    /// Base64 DER ECDSA P-256 signature over the SHA-256.
    pub signature: String,
    /// `ECDSA_P256_SHA256`.
    pub signature_algorithm: String,
    /// Who uploaded it (the audit log's actor).
    pub uploader: String,
    /// RFC 3339.
    pub created_at: String,
}

/// `GET /api/v1/artifacts`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactList {
    pub artifacts: Vec<Artifact>,
}

/// `POST /api/v1/artifacts/{id}/deploy`: an install job for the artifact. Every field of a
/// job creation applies (targets, rollout, abort, timeout, retry, scheduling, presigned-URL
/// expiry) except `document` and `template_id`: the server writes the install document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployArtifact {
    #[serde(flatten)]
    pub job: CreateJob,
    /// The handler on the device that installs the verified file.
    pub install: InstallStep,
    /// Reboot the device after a successful install.
    #[serde(default)]
    pub reboot: bool,
}
