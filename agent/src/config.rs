//! The agent's configuration: a TOML file, each setting overridable by a flag (see
//! `flotilla-agent --help`), turned into the MQTT connection settings and the device settings.
//!
//! ```toml
//! thing_name = "pump-0042"
//! endpoint = "a1b2c3-ats.iot.eu-west-1.amazonaws.com"
//! port = 8883
//! certificate = "/etc/flotilla/device.pem.crt"
//! private_key = "/etc/flotilla/private.pem.key"
//! ca = "/etc/flotilla/AmazonRootCA1.pem"
//! handler_dir = "/opt/flotilla/handlers"
//! state_dir = "/var/lib/flotilla-agent"
//! trusted_key = "/etc/flotilla/signing-key.pub.pem"
//! software_version = "1.0.0"
//! ```
//!
//! Against the embedded engine's development listener, leave out the TLS files and give
//! `token` (sent as the MQTT password, with the thing name as user name) or nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use crate::client::AgentConfig;
use crate::device::DeviceSettings;

/// Every setting; `None` means "not given here".
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub thing_name: Option<String>,
    pub endpoint: Option<String>,
    pub port: Option<u16>,
    pub certificate: Option<PathBuf>,
    pub private_key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub token: Option<String>,
    pub handler_dir: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub trusted_key: Option<PathBuf>,
    pub boot_id_file: Option<PathBuf>,
    pub step_timeout_minutes: Option<i64>,
    pub keep_alive_seconds: Option<u64>,
    pub reboot_wait_seconds: Option<u64>,
    /// The software version the device runs before any install (the registration bundle
    /// writes it); reported in the inventory shadow until an install replaces it.
    pub software_version: Option<String>,
}

impl Settings {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the configuration {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("parsing the configuration {}", path.display()))
    }

    /// `self`, with each setting `overrides` gives replacing this one.
    pub fn overridden_by(self, overrides: Settings) -> Self {
        Self {
            thing_name: overrides.thing_name.or(self.thing_name),
            endpoint: overrides.endpoint.or(self.endpoint),
            port: overrides.port.or(self.port),
            certificate: overrides.certificate.or(self.certificate),
            private_key: overrides.private_key.or(self.private_key),
            ca: overrides.ca.or(self.ca),
            token: overrides.token.or(self.token),
            handler_dir: overrides.handler_dir.or(self.handler_dir),
            state_dir: overrides.state_dir.or(self.state_dir),
            trusted_key: overrides.trusted_key.or(self.trusted_key),
            boot_id_file: overrides.boot_id_file.or(self.boot_id_file),
            step_timeout_minutes: overrides.step_timeout_minutes.or(self.step_timeout_minutes),
            keep_alive_seconds: overrides.keep_alive_seconds.or(self.keep_alive_seconds),
            reboot_wait_seconds: overrides.reboot_wait_seconds.or(self.reboot_wait_seconds),
            software_version: overrides.software_version.or(self.software_version),
        }
    }

    /// The connection and device settings, with every file read and checked.
    pub fn resolve(self) -> Result<(AgentConfig, DeviceSettings)> {
        let thing = self
            .thing_name
            .filter(|t| !t.is_empty())
            .context("the thing name is required (thing_name or --thing-name)")?;
        let endpoint = self.endpoint.unwrap_or_else(|| "127.0.0.1".into());
        let tls_wanted = self.ca.is_some() || self.certificate.is_some();
        let mut agent = AgentConfig::new(
            thing.clone(),
            endpoint,
            self.port.unwrap_or(if tls_wanted { 8883 } else { 18830 }),
        );
        if let Some(token) = self.token {
            agent.credentials = Some((thing, token));
        }
        if tls_wanted {
            agent.tls = Some(tls_config(
                self.ca.as_deref(),
                self.certificate.as_deref(),
                self.private_key.as_deref(),
            )?);
        }
        if let Some(minutes) = self.step_timeout_minutes {
            if !(1..=10080).contains(&minutes) {
                bail!("step_timeout_minutes must be 1-10080, got {minutes}");
            }
            agent.step_timeout_minutes = minutes;
        }
        if let Some(seconds) = self.keep_alive_seconds {
            agent.keep_alive = Duration::from_secs(seconds.max(5));
        }
        let mut device = DeviceSettings::new(
            self.handler_dir
                .unwrap_or_else(|| PathBuf::from("/opt/flotilla/handlers")),
            self.state_dir
                .unwrap_or_else(|| PathBuf::from("/var/lib/flotilla-agent")),
        );
        if let Some(path) = self.trusted_key {
            let pem = std::fs::read_to_string(&path)
                .with_context(|| format!("reading the trusted key {}", path.display()))?;
            device.trusted_key = Some(
                crate::download::load_trusted_key(&pem)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("the trusted key {}", path.display()))?,
            );
        }
        if let Some(path) = self.boot_id_file {
            device.boot_id_file = path;
        }
        if let Some(seconds) = self.reboot_wait_seconds {
            device.reboot_wait = Duration::from_secs(seconds);
        }
        device.software_version = self.software_version.filter(|v| !v.is_empty());
        Ok((agent, device))
    }
}

/// A TLS client configuration on the ring provider: the CA to trust, and the device
/// certificate and key when both are given (mutual TLS, as AWS IoT Core requires).
pub fn tls_config(
    ca: Option<&Path>,
    certificate: Option<&Path>,
    private_key: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>> {
    let ca = ca.context("TLS needs the CA certificate (ca or --ca)")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("reading the CA certificate {}", ca.display()))?
    {
        roots
            .add(cert.with_context(|| format!("parsing {}", ca.display()))?)
            .with_context(|| format!("adding the CA certificate {}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    let config = match (certificate, private_key) {
        (Some(certificate), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(certificate)
                .with_context(|| format!("reading the certificate {}", certificate.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("parsing {}", certificate.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("reading the private key {}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .context("the device certificate and key do not form a client identity")?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => bail!("give both the certificate and the private key, or neither"),
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_defaults_fill_the_rest() {
        let file: Settings = toml::from_str(
            "thing_name = \"pump-1\"\nport = 1884\nstate_dir = \"/tmp/s\"\ntoken = \"t\"\n",
        )
        .unwrap();
        let flags = Settings {
            port: Some(1999),
            ..Settings::default()
        };
        let (agent, device) = file.overridden_by(flags).resolve().unwrap();
        assert_eq!(agent.thing_name, "pump-1");
        assert_eq!(agent.port, 1999);
        assert_eq!(agent.host, "127.0.0.1");
        assert_eq!(agent.credentials, Some(("pump-1".into(), "t".into())));
        assert!(agent.tls.is_none());
        assert_eq!(device.state_dir, PathBuf::from("/tmp/s"));
    }

    #[test]
    fn unknown_settings_and_missing_files_are_errors() {
        assert!(toml::from_str::<Settings>("colour = \"blue\"").is_err());
        let settings = Settings {
            thing_name: Some("x".into()),
            ca: Some("/nonexistent/ca.pem".into()),
            ..Settings::default()
        };
        let error = settings.resolve().unwrap_err();
        assert!(
            format!("{error:#}").contains("/nonexistent/ca.pem"),
            "{error:#}"
        );
        assert!(Settings::default().resolve().is_err());
    }
}
