//! Flotilla's install job document: what the dashboard puts in a job to make the agent download
//! a signed artifact, check it and hand it to an install handler.
//!
//! ```json
//! {
//!   "operation": "flotilla.install",
//!   "version": "1.0",
//!   "artifact": {
//!     "url": "https://…/app-2.1.0.tar.gz?X-Amz-…",
//!     "size": 1048576,
//!     "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
//!     "signature": "MEUCIQ…",
//!     "signatureAlgorithm": "ECDSA_P256_SHA256"
//!   },
//!   "install": { "handler": "install-app.sh", "args": ["--restart"] },
//!   "reboot": false,
//!   "softwareVersion": "2.1.0"
//! }
//! ```
//!
//! `signature` is the base64 of an ECDSA P-256 signature over the SHA-256 of the artifact (DER,
//! as `openssl dgst -sha256 -sign` writes it, or the 64-byte r‖s form); the agent checks it with
//! the public key it trusts before anything is installed. Field names are camelCase like the
//! other job documents (AWS's and the AWS IoT Device Client's).

use serde::{Deserialize, Serialize};

/// The `operation` value that marks a Flotilla install document.
pub const INSTALL_OPERATION: &str = "flotilla.install";

/// The signature algorithm of install documents: ECDSA P-256 over the SHA-256 of the file.
pub const SIGNATURE_ALGORITHM: &str = "ECDSA_P256_SHA256";

/// The only document version this crate knows.
pub const INSTALL_DOCUMENT_VERSION: &str = "1.0";

/// The named device shadow in which the agent reports what it runs, at start-up and after
/// every job: `{"state": {"reported": {"software": {"version": "2.1.0"}, "agent": {"version":
/// "0.1.0"}}}}`. The dashboard's inventory and the rollout health gate read it.
pub const INVENTORY_SHADOW: &str = "flotilla";

/// A job document that installs one signed artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstallDocument {
    /// Always [`INSTALL_OPERATION`].
    pub operation: String,
    /// Always [`INSTALL_DOCUMENT_VERSION`].
    pub version: String,
    pub artifact: Artifact,
    pub install: InstallStep,
    /// Reboot the device after a successful install; the job succeeds once it is back.
    #[serde(default)]
    pub reboot: bool,
    /// The software version the device runs after this job, reported back in statusDetails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
}

/// The file to download and how to tell it is the right one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Artifact {
    /// An http(s) URL, usually presigned; the agent resumes with `Range` requests.
    pub url: String,
    /// The exact size in bytes.
    pub size: u64,
    /// Lowercase or uppercase hex SHA-256 of the whole file.
    pub sha256: String,
    /// Base64 ECDSA P-256 signature over the file's SHA-256.
    pub signature: String,
    /// [`SIGNATURE_ALGORITHM`], the only one there is; absent means the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_algorithm: Option<String>,
}

/// The handler that installs the verified file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstallStep {
    /// A file name in the agent's handler directory (no path separators); it is run with the
    /// downloaded file's path as its first argument, then `args`.
    pub handler: String,
    #[serde(default)]
    pub args: Vec<String>,
}

impl InstallDocument {
    /// Checks what serde cannot: the constants, the URL scheme, the digest and signature
    /// encodings and the handler name. The error says which field is wrong and why.
    pub fn validate(&self) -> Result<(), String> {
        if self.operation != INSTALL_OPERATION {
            return Err(format!(
                "operation must be {INSTALL_OPERATION:?}, got {:?}",
                self.operation
            ));
        }
        if self.version != INSTALL_DOCUMENT_VERSION {
            return Err(format!(
                "version {:?} is not supported (only {INSTALL_DOCUMENT_VERSION:?})",
                self.version
            ));
        }
        let url = &self.artifact.url;
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err("artifact.url must be an http or https URL".into());
        }
        if self.artifact.size == 0 {
            return Err("artifact.size must be at least 1".into());
        }
        let digest = &self.artifact.sha256;
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("artifact.sha256 must be 64 hexadecimal characters".into());
        }
        let signature = &self.artifact.signature;
        if signature.is_empty()
            || !signature
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        {
            return Err("artifact.signature must be base64".into());
        }
        if let Some(algorithm) = &self.artifact.signature_algorithm
            && algorithm != SIGNATURE_ALGORITHM
        {
            return Err(format!(
                "artifact.signatureAlgorithm {algorithm:?} is not supported (only {SIGNATURE_ALGORITHM:?})"
            ));
        }
        let handler = &self.install.handler;
        if handler.is_empty()
            || handler.contains('/')
            || handler.contains('\\')
            || handler.starts_with('.')
        {
            return Err(
                "install.handler must be a file name in the handler directory (no path, not hidden)"
                    .into(),
            );
        }
        if self.software_version.as_deref().is_some_and(|v| {
            v.is_empty() || v.chars().count() > 128 || v.chars().any(char::is_control)
        }) {
            return Err("softwareVersion must be 1-128 printable characters".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> InstallDocument {
        InstallDocument {
            operation: INSTALL_OPERATION.into(),
            version: INSTALL_DOCUMENT_VERSION.into(),
            artifact: Artifact {
                url: "https://example.com/app.bin".into(),
                size: 10,
                sha256: "a".repeat(64),
                signature: "MEUCIQ==".into(),
                signature_algorithm: Some(SIGNATURE_ALGORITHM.into()),
            },
            install: InstallStep {
                handler: "install.sh".into(),
                args: vec![],
            },
            reboot: false,
            software_version: Some("2.0".into()),
        }
    }

    #[test]
    fn a_complete_document_is_valid_and_round_trips() {
        let doc = document();
        assert_eq!(doc.validate(), Ok(()));
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["softwareVersion"], "2.0");
        assert_eq!(
            serde_json::from_value::<InstallDocument>(json).unwrap(),
            doc
        );
    }

    #[test]
    fn each_bad_field_is_named() {
        let mut doc = document();
        doc.artifact.sha256 = "xyz".into();
        assert!(doc.validate().unwrap_err().contains("artifact.sha256"));
        let mut doc = document();
        doc.install.handler = "../../bin/sh".into();
        assert!(doc.validate().unwrap_err().contains("install.handler"));
        let mut doc = document();
        doc.artifact.url = "file:///etc/passwd".into();
        assert!(doc.validate().unwrap_err().contains("artifact.url"));
        let mut doc = document();
        doc.artifact.signature_algorithm = Some("RSA".into());
        assert!(doc.validate().unwrap_err().contains("signatureAlgorithm"));
        let mut doc = document();
        doc.version = "2.0".into();
        assert!(doc.validate().unwrap_err().contains("version"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut json = serde_json::to_value(document()).unwrap();
        json["surprise"] = true.into();
        assert!(serde_json::from_value::<InstallDocument>(json).is_err());
    }
}
