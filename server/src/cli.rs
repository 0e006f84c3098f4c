//! The `flotilla` command line. Every setting is a flag and an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::app::{self, IotMode, ServeConfig};

#[derive(Debug, Parser)]
#[command(
    name = "flotilla",
    version,
    about = "Fleet software updates over AWS IoT Jobs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the dashboard server.
    Serve(Box<ServeArgs>),
    /// Run the embedded engine alone (IoT control plane, MQTT broker, artifact store), for
    /// servers in AWS mode pointed at it with `--iot-endpoint` and `--s3-endpoint`.
    Engine(Box<EngineArgs>),
    /// Run a simulated fleet: devices `sim-0001` … each with its own MQTT connection.
    Simulate(Box<SimulateArgs>),
    /// Print a device's token for the engine's plain MQTT listener (its MQTT password).
    DeviceToken {
        /// The thing the device is.
        thing_name: String,
        /// The engine's device-token secret (as given to `flotilla serve`).
        #[arg(long, env = "FLOTILLA_DEVICE_TOKEN_SECRET", hide_env_values = true)]
        device_token_secret: String,
    },
    /// Code-signing keys.
    #[command(subcommand)]
    Keys(crate::signing::KeysCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Apply database migrations and exit.
    Migrate {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the audit log's hash chain: exits with status 1, naming the first entry that was
    /// changed or follows a deleted one, when it is broken.
    Verify {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Iot {
    /// Start the embedded engine in-process.
    Local,
    /// Use AWS IoT Core with the default credential chain.
    Aws,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Where the dashboard listens.
    #[arg(long, env = "FLOTILLA_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Which IoT service to use.
    #[arg(long, env = "FLOTILLA_IOT", value_enum, default_value = "local")]
    iot: Iot,
    /// Local mode: where the engine's MQTT broker listens for devices. Never 1883/8883 by
    /// default, so it coexists with a system broker.
    #[arg(long, env = "FLOTILLA_MQTT_LISTEN", default_value = "127.0.0.1:18830")]
    mqtt_listen: SocketAddr,
    /// Local mode: where the engine's MQTT broker listens for devices over TLS with client
    /// certificates the engine issued (CreateKeysAndCertificate). Never 8883 by default.
    #[arg(long, env = "FLOTILLA_MQTTS_LISTEN", default_value = "127.0.0.1:18831")]
    mqtts_listen: SocketAddr,
    /// Local mode: where the engine's IoT control-plane API listens.
    #[arg(long, env = "FLOTILLA_ENGINE_LISTEN", default_value = "127.0.0.1:0")]
    engine_listen: SocketAddr,
    /// Local mode: where the engine's artifact store (an S3-compatible API) listens.
    #[arg(long, env = "FLOTILLA_S3_LISTEN", default_value = "127.0.0.1:18832")]
    s3_listen: SocketAddr,
    /// Local mode: where the artifact store keeps its files. Default: `flotilla/artifacts`
    /// under `$XDG_DATA_HOME` (or `~/.local/share`), else under the temporary directory.
    #[arg(long, env = "FLOTILLA_ARTIFACT_DIR")]
    artifact_dir: Option<PathBuf>,
    /// Local mode: simulate this many devices (`sim-0001` …).
    #[arg(long, env = "FLOTILLA_SIMULATE", default_value_t = 0)]
    simulate: usize,
    /// Local mode: register these things at start-up (comma-separated), e.g. `iot-jobs-thing`
    /// for the seed's device.py.
    #[arg(long, env = "FLOTILLA_REGISTER_THINGS", value_delimiter = ',')]
    register_thing: Vec<String>,
    /// Local mode: the secret of device tokens. When set, a device on the plain MQTT listener
    /// must give its thing name as user name and its token (`flotilla device-token`) as
    /// password; unset, the plain listener admits any registered thing (development only).
    #[arg(long, env = "FLOTILLA_DEVICE_TOKEN_SECRET", hide_env_values = true)]
    device_token_secret: Option<String>,
    /// AWS region (local mode uses it in ARNs too).
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
    /// AWS mode: override the IoT control-plane endpoint URL.
    #[arg(long, env = "FLOTILLA_IOT_ENDPOINT")]
    iot_endpoint: Option<String>,
    /// AWS mode: override the S3 endpoint URL (path-style addressing).
    #[arg(long, env = "FLOTILLA_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    #[command(flatten)]
    events: EventArgs,
    /// Folder of the web UI (index.html, style.css, pkg/).
    #[arg(long, env = "FLOTILLA_STATIC_DIR", default_value = "static")]
    static_dir: PathBuf,
    /// How often active jobs are re-read from IoT, in seconds (AWS sends no events for
    /// QUEUED or IN_PROGRESS executions).
    #[arg(long, env = "FLOTILLA_RECONCILE_SECONDS", default_value_t = 5)]
    reconcile_seconds: u64,
    /// IoT requests per second reconciliation may make (DescribeJob and each page of
    /// ListJobExecutionsForJob count one); it backs off further when IoT throttles.
    #[arg(long, env = "FLOTILLA_RECONCILE_BUDGET", default_value_t = 10.0, value_parser = positive_rate)]
    reconcile_budget: f64,
    #[command(flatten)]
    artifacts: crate::artifacts::ArtifactArgs,
    #[command(flatten)]
    auth: crate::auth::AuthArgs,
    /// How often the rollout orchestrator checks its rollouts, in milliseconds, when nothing
    /// else wakes it (execution changes and operators' actions do).
    #[arg(long, env = "FLOTILLA_ROLLOUT_TICK_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(50..=600_000))]
    rollout_tick_ms: u64,
}

/// AWS mode's job-event subscriber (MQTT with mutual TLS to the account's data endpoint). It
/// runs when the client certificate is given.
#[derive(Debug, clap::Args)]
struct EventArgs {
    /// AWS mode: the IoT data endpoint's host (`…-ats.iot.REGION.amazonaws.com`); found with
    /// DescribeEndpoint when absent.
    #[arg(long, env = "FLOTILLA_IOT_DATA_ENDPOINT")]
    iot_data_endpoint: Option<String>,
    /// AWS mode: the data endpoint's MQTT port (8883, or 443 with ALPN).
    #[arg(long, env = "FLOTILLA_IOT_DATA_PORT", default_value_t = 8883)]
    iot_data_port: u16,
    /// AWS mode: the event subscriber's client certificate (PEM); its IoT policy must allow
    /// connecting and reading `$aws/events/job/#` and `$aws/events/jobExecution/#`.
    #[arg(long, env = "FLOTILLA_IOT_CLIENT_CERT", requires_all = ["iot_client_key", "iot_ca"])]
    iot_client_cert: Option<PathBuf>,
    /// AWS mode: the client certificate's private key (PEM).
    #[arg(long, env = "FLOTILLA_IOT_CLIENT_KEY", requires = "iot_client_cert")]
    iot_client_key: Option<PathBuf>,
    /// AWS mode: the CA certificate the data endpoint's chains to (Amazon Root CA 1, PEM).
    #[arg(long, env = "FLOTILLA_IOT_CA", requires = "iot_client_cert")]
    iot_ca: Option<PathBuf>,
    /// AWS mode: the start of the subscriber's MQTT client ids (a random suffix follows, so
    /// replicas never share one); the IoT policy's iot:Connect must allow `PREFIX*`.
    #[arg(long, env = "FLOTILLA_IOT_CLIENT_ID_PREFIX", default_value = "flotilla-server-", value_parser = client_id_prefix)]
    iot_client_id_prefix: String,
}

impl EventArgs {
    fn into_config(self) -> Option<app::AwsEvents> {
        let client_certificate = self.iot_client_cert?;
        Some(app::AwsEvents {
            endpoint: self.iot_data_endpoint,
            port: self.iot_data_port,
            client_certificate,
            client_key: self.iot_client_key?,
            ca: self.iot_ca?,
            client_id_prefix: self.iot_client_id_prefix,
        })
    }
}

/// An MQTT client id prefix: up to 100 of `[A-Za-z0-9:_-]`, leaving room for the suffix
/// within AWS's 128 characters.
fn client_id_prefix(value: &str) -> Result<String, String> {
    if value.len() <= 100
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_:".contains(&b))
    {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "{value:?} is not a client id prefix (at most 100 of letters, digits, '-', '_' and ':')"
        ))
    }
}

/// A request rate: a positive number of requests per second.
fn positive_rate(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "{value:?} is not a positive number of requests per second"
        )),
    }
}

/// `flotilla engine`: the engine in a process of its own, on its own ports, its state in the
/// `engine` schema of its database. Servers reach it as they reach AWS.
#[derive(Debug, clap::Args)]
struct EngineArgs {
    /// PostgreSQL connection URL (migrations run at start-up).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Where the IoT control-plane API listens (servers: `--iot-endpoint http://ADDR`).
    #[arg(
        long,
        env = "FLOTILLA_ENGINE_LISTEN",
        default_value = "127.0.0.1:18833"
    )]
    engine_listen: SocketAddr,
    /// Where the MQTT broker listens for devices.
    #[arg(long, env = "FLOTILLA_MQTT_LISTEN", default_value = "127.0.0.1:18830")]
    mqtt_listen: SocketAddr,
    /// Where the MQTT broker listens for devices over TLS with engine-issued certificates.
    #[arg(long, env = "FLOTILLA_MQTTS_LISTEN", default_value = "127.0.0.1:18831")]
    mqtts_listen: SocketAddr,
    /// Where the artifact store (an S3-compatible API) listens (servers: `--s3-endpoint`).
    #[arg(long, env = "FLOTILLA_S3_LISTEN", default_value = "127.0.0.1:18832")]
    s3_listen: SocketAddr,
    /// Where the artifact store keeps its files (default as for `flotilla serve`).
    #[arg(long, env = "FLOTILLA_ARTIFACT_DIR")]
    artifact_dir: Option<PathBuf>,
    /// The region in ARNs and in the SigV4 credential scope.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
    /// The access key id the control plane and the artifact store accept (servers give it
    /// as `AWS_ACCESS_KEY_ID`).
    #[arg(long, env = "FLOTILLA_ENGINE_ACCESS_KEY_ID")]
    access_key_id: String,
    /// The secret access key that goes with it (`AWS_SECRET_ACCESS_KEY` for servers).
    #[arg(
        long,
        env = "FLOTILLA_ENGINE_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    secret_access_key: String,
    /// The secret of device tokens on the plain MQTT listener, as for `flotilla serve`.
    #[arg(long, env = "FLOTILLA_DEVICE_TOKEN_SECRET", hide_env_values = true)]
    device_token_secret: Option<String>,
}

#[derive(Debug, clap::Args)]
struct SimulateArgs {
    /// The MQTT endpoint (the engine's device listener).
    #[arg(long, env = "FLOTILLA_MQTT", default_value = "127.0.0.1:18830")]
    mqtt: String,
    /// How many devices.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// The number of the first device (`sim-0001` is 1).
    #[arg(long, default_value_t = 1)]
    first: usize,
    /// Shortest simulated work per job, in milliseconds.
    #[arg(long, default_value_t = 500)]
    min_work_ms: u64,
    /// Longest simulated work per job, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    max_work_ms: u64,
    /// Percentage of jobs that fail.
    #[arg(long, default_value_t = 0.0)]
    failure_percent: f64,
    /// Percentage of jobs that are rejected.
    #[arg(long, default_value_t = 0.0)]
    reject_percent: f64,
    /// Percentage of jobs that hang until they time out.
    #[arg(long, default_value_t = 0.0)]
    hang_percent: f64,
    /// Churn: mean seconds a device stays online (0: always online).
    #[arg(long, default_value_t = 0)]
    online_seconds: u64,
    /// Churn: mean seconds a device stays offline.
    #[arg(long, default_value_t = 30)]
    offline_seconds: u64,
    /// Seconds a device is away when a job reboots it.
    #[arg(long, default_value_t = 5)]
    reboot_seconds: u64,
    /// The software version devices report before any install.
    #[arg(long, default_value = "1.0.0")]
    initial_version: String,
    /// The engine's device-token secret, when its plain listener requires device tokens.
    #[arg(long, env = "FLOTILLA_DEVICE_TOKEN_SECRET", hide_env_values = true)]
    device_token_secret: Option<String>,
}

/// The command line's definition, for tests that hold the documentation to it.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// Entry point of the binary.
pub fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,aws=warn,hyper=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Migrate { database_url } => {
                crate::db::connect_and_migrate(&database_url, 2).await?;
                tracing::info!("migrations applied");
                Ok(())
            }
            Command::Audit(AuditCommand::Verify { database_url }) => {
                audit_verify(&database_url).await
            }
            Command::Simulate(args) => simulate(*args).await,
            Command::Engine(args) => engine(*args).await,
            Command::Keys(command) => command.run(),
            Command::DeviceToken {
                thing_name,
                device_token_secret,
            } => {
                println!(
                    "{}",
                    flotilla_engine::broker::device_token(&device_token_secret, &thing_name)
                );
                Ok(())
            }
            Command::Serve(args) => {
                let config = ServeConfig {
                    database_url: args.database_url,
                    listen: args.listen,
                    iot: match args.iot {
                        Iot::Local => IotMode::Local {
                            mqtt_listen: args.mqtt_listen,
                            mqtts_listen: Some(args.mqtts_listen),
                            engine_listen: args.engine_listen,
                            s3_listen: args.s3_listen,
                            artifact_dir: args.artifact_dir.unwrap_or_else(default_artifact_dir),
                            simulate: args.simulate,
                            register: args.register_thing,
                            device_token_secret: args.device_token_secret,
                        },
                        Iot::Aws => IotMode::Aws {
                            iot_endpoint: args.iot_endpoint,
                            s3_endpoint: args.s3_endpoint,
                            events: args.events.into_config(),
                            credentials: None,
                        },
                    },
                    auth: args.auth.into_config(&args.region)?,
                    region: args.region,
                    static_dir: args.static_dir,
                    reconcile_every: Duration::from_secs(args.reconcile_seconds.max(1)),
                    reconcile_budget: args.reconcile_budget,
                    artifacts: args.artifacts.into(),
                    rollouts: crate::rollouts::RolloutSettings {
                        tick: Duration::from_millis(args.rollout_tick_ms),
                        ..Default::default()
                    },
                };
                let server = app::start(config).await?;
                println!("Flotilla is running at http://{}/", server.addr);
                shutdown_signal().await;
                tracing::info!("shutting down");
                server.shutdown().await;
                Ok(())
            }
        }
    })
}

/// `flotilla audit verify`: reads the chain without migrating, so it can check a database
/// it must not change.
async fn audit_verify(database_url: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(database_url)
        .await
        .context("connecting to PostgreSQL (is DATABASE_URL right?)")?;
    let report = crate::audit::chain::verify(&pool)
        .await
        .context("reading the audit log (is the database migrated? `flotilla migrate`)")?;
    let head = match (report.head_id, &report.head_hash) {
        (Some(id), Some(hash)) => format!("; the last good entry is #{id} with hash {hash}"),
        _ => String::new(),
    };
    match report.broken {
        None => {
            println!("the audit log is intact: {} entries{head}", report.entries);
            Ok(())
        }
        Some(broken) => anyhow::bail!(
            "the audit log is broken at entry #{} (number {} in the chain): {}. {} entries \
             before it verified{head}",
            broken.id,
            broken.seq,
            broken.problem,
            report.entries
        ),
    }
}

/// `flotilla engine`: runs the engine until Ctrl-C or SIGTERM. Its state is all in
/// PostgreSQL and the artifact folder, so a killed engine restarted on the same database and
/// ports carries on where it stopped.
async fn engine(args: EngineArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if args.access_key_id.is_empty() || args.secret_access_key.is_empty() {
        anyhow::bail!("--access-key-id and --secret-access-key must not be empty");
    }
    let pool = crate::db::connect_and_migrate(&args.database_url, 20).await?;
    let http = tokio::net::TcpListener::bind(args.engine_listen)
        .await
        .with_context(|| format!("binding the control plane to {}", args.engine_listen))?;
    let s3 = tokio::net::TcpListener::bind(args.s3_listen)
        .await
        .with_context(|| format!("binding the artifact store to {}", args.s3_listen))?;
    let config = flotilla_engine::EngineConfig {
        region: args.region,
        account_id: "000000000000".into(),
        access_key_id: args.access_key_id,
        secret_access_key: args.secret_access_key,
        // No server logs in with a password here: servers in AWS mode follow the engine by
        // reconciliation, or by job events with an engine-issued certificate.
        service_username: "flotilla-server".into(),
        service_password: app::ephemeral_secret(),
        device_token_secret: args.device_token_secret,
        artifact_dir: args.artifact_dir.unwrap_or_else(default_artifact_dir),
    };
    let engine = flotilla_engine::RunningEngine::start(
        pool,
        config,
        flotilla_engine::Listeners {
            http,
            mqtt: args.mqtt_listen,
            mqtts: Some(args.mqtts_listen),
            s3,
        },
    )
    .await?;
    println!(
        "Flotilla engine is running: control plane http://{}, MQTT {}, MQTT over TLS {}, artifact store http://{}",
        engine.http_addr,
        engine.mqtt_addr,
        engine
            .mqtts_addr
            .map_or_else(|| "-".to_owned(), |addr| addr.to_string()),
        engine.s3_addr
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    engine.shutdown().await;
    Ok(())
}

/// `flotilla simulate`: runs the fleet until Ctrl-C or SIGTERM.
async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use flotilla_agent::simulator::{self, Profile};
    let (host, port) = args
        .mqtt
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host.to_owned(), port.parse::<u16>().ok()?)))
        .context("--mqtt must be host:port")?;
    let limit = simulator::raise_open_file_limit(args.devices as u64 + 256);
    if limit < args.devices as u64 + 64 {
        anyhow::bail!(
            "{} devices need as many open files, and this process may only open {limit}",
            args.devices
        );
    }
    let profile = Profile {
        min_work: Duration::from_millis(args.min_work_ms),
        max_work: Duration::from_millis(args.max_work_ms),
        failure_rate: args.failure_percent / 100.0,
        reject_rate: args.reject_percent / 100.0,
        hang_rate: args.hang_percent / 100.0,
        churn: (args.online_seconds > 0).then(|| {
            (
                Duration::from_secs(args.online_seconds),
                Duration::from_secs(args.offline_seconds),
            )
        }),
        reboot_time: Duration::from_secs(args.reboot_seconds),
        initial_version: args.initial_version,
        device_token: args.device_token_secret.map(app::device_tokens),
        ..Profile::default()
    };
    let things: Vec<String> = (args.first..args.first + args.devices)
        .map(simulator::thing_name)
        .collect();
    println!("simulating {} devices against {host}:{port}", things.len());
    let online = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut fleet = simulator::start_fleet(&host, port, things, profile, Some(online.clone()));
    // One line every few seconds, which `cargo xtask bench simulate` reads.
    let report = async {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            println!(
                "connected: {}",
                online.load(std::sync::atomic::Ordering::Relaxed)
            );
        }
    };
    tokio::select! {
        () = shutdown_signal() => {}
        () = report => {}
    }
    fleet.shutdown().await;
    Ok(())
}

/// `flotilla/artifacts` under the user's data directory, or the temporary directory when
/// there is no home (a container without one still gets a working demo).
fn default_artifact_dir() -> PathBuf {
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")));
    data_home
        .unwrap_or_else(std::env::temp_dir)
        .join("flotilla/artifacts")
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn serve(flags: &[&str]) -> Result<Cli, clap::Error> {
        let mut args = vec![
            "flotilla",
            "serve",
            "--database-url",
            "postgres://x/y",
            "--iot",
            "aws",
        ];
        args.extend_from_slice(flags);
        Cli::try_parse_from(args)
    }

    fn events(cli: Cli) -> Option<app::AwsEvents> {
        match cli.command {
            Command::Serve(args) => args.events.into_config(),
            _ => panic!("not serve"),
        }
    }

    #[test]
    fn the_event_subscriber_needs_its_certificate_key_and_ca() {
        assert!(events(serve(&[]).expect("parses")).is_none());
        assert!(serve(&["--iot-client-cert", "c.pem"]).is_err());
        assert!(serve(&["--iot-client-key", "k.pem"]).is_err());
        assert!(serve(&["--iot-client-id-prefix", "bad/prefix"]).is_err());
        let events = events(
            serve(&[
                "--iot-client-cert",
                "c.pem",
                "--iot-client-key",
                "k.pem",
                "--iot-ca",
                "ca.pem",
                "--iot-data-endpoint",
                "abc-ats.iot.eu-west-1.amazonaws.com",
            ])
            .expect("parses"),
        )
        .expect("a subscriber");
        assert_eq!(events.port, 8883);
        assert_eq!(events.client_id_prefix, "flotilla-server-");
        assert_eq!(
            events.endpoint.as_deref(),
            Some("abc-ats.iot.eu-west-1.amazonaws.com")
        );
    }
}
