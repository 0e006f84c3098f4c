//! The `flotilla-agent` command line: reads the configuration (a TOML file and flags),
//! connects to AWS IoT Core or the embedded engine and runs jobs until stopped.

use std::path::PathBuf;
use std::sync::Arc;

use crate::Agent;
use crate::config::Settings;
use crate::device::Device;
use anyhow::Context as _;
use clap::Parser;

/// Runs AWS IoT jobs on this device.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// A TOML configuration file; flags override its settings.
    #[arg(long, env = "FLOTILLA_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// The thing name (also the MQTT client id).
    #[arg(long, env = "FLOTILLA_THING_NAME")]
    thing_name: Option<String>,
    /// The MQTT endpoint host (default 127.0.0.1).
    #[arg(long, env = "FLOTILLA_ENDPOINT")]
    endpoint: Option<String>,
    /// The MQTT endpoint port (default 8883 with TLS, 18830 without).
    #[arg(long, env = "FLOTILLA_PORT")]
    port: Option<u16>,
    /// The device certificate (PEM), for mutual TLS.
    #[arg(long, env = "FLOTILLA_CERTIFICATE")]
    certificate: Option<PathBuf>,
    /// The device private key (PEM).
    #[arg(long, env = "FLOTILLA_PRIVATE_KEY")]
    private_key: Option<PathBuf>,
    /// The CA certificate to trust (PEM); enables TLS.
    #[arg(long, env = "FLOTILLA_CA")]
    ca: Option<PathBuf>,
    /// The development listener's token (sent as the MQTT password).
    #[arg(long, env = "FLOTILLA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The folder of job handlers (default /opt/flotilla/handlers).
    #[arg(long, env = "FLOTILLA_HANDLER_DIR")]
    handler_dir: Option<PathBuf>,
    /// Where in-flight job state and downloads are kept (default /var/lib/flotilla-agent).
    #[arg(long, env = "FLOTILLA_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// The public key (PEM) install documents must be signed with.
    #[arg(long, env = "FLOTILLA_TRUSTED_KEY")]
    trusted_key: Option<PathBuf>,
    /// A file whose content changes at every boot (default the kernel's boot_id).
    #[arg(long, env = "FLOTILLA_BOOT_ID_FILE")]
    boot_id_file: Option<PathBuf>,
    /// The step timeout asked for when a job starts, in minutes (1-10080, default 60).
    #[arg(long, env = "FLOTILLA_STEP_TIMEOUT_MINUTES")]
    step_timeout_minutes: Option<i64>,
}

/// Entry point of the `flotilla-agent` binary.
pub fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let file = match &args.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    let flags = Settings {
        thing_name: args.thing_name,
        endpoint: args.endpoint,
        port: args.port,
        certificate: args.certificate,
        private_key: args.private_key,
        ca: args.ca,
        token: args.token,
        handler_dir: args.handler_dir,
        state_dir: args.state_dir,
        trusted_key: args.trusted_key,
        boot_id_file: args.boot_id_file,
        step_timeout_minutes: args.step_timeout_minutes,
        ..Settings::default()
    };
    let (agent, device) = file.overridden_by(flags).resolve()?;
    tracing::info!(thing = %agent.thing_name, "flotilla-agent {} connecting to {}:{} as {}", env!("CARGO_PKG_VERSION"), agent.host, agent.port, agent.thing_name);
    let device = Device::new(device).context("preparing the device")?;
    tokio::select! {
        result = Agent::new(agent, Arc::new(device)).run() => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
