//! Assembling the server: database, IoT client, the embedded engine in local mode, the event
//! subscriber, the projection refresher, the simulated fleet and the HTTP listener.
//!
//! [`start`] is what `flotilla serve` runs and what the end-to-end tests call, so the tests
//! drive exactly the server users run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use flotilla_engine::{EngineConfig, Listeners, RunningEngine};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tower_http::services::{ServeDir, ServeFile};

use crate::iot::Iot;
use crate::projection::{self, EventSource, Projection};

/// Which IoT service the server talks to.
#[derive(Debug, Clone)]
pub enum IotMode {
    /// Start the embedded engine in this process and talk to it like to AWS.
    Local {
        mqtt_listen: SocketAddr,
        engine_listen: SocketAddr,
        /// Where the engine's artifact store (S3 API) listens.
        s3_listen: SocketAddr,
        /// Where the artifact store keeps its files.
        artifact_dir: PathBuf,
        simulate: usize,
        /// Things to register at start-up (CreateThing is idempotent).
        register: Vec<String>,
    },
    /// AWS IoT Core with the default credential chain.
    Aws { iot_endpoint: Option<String> },
}

/// Everything `flotilla serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub database_url: String,
    pub listen: SocketAddr,
    pub iot: IotMode,
    pub region: String,
    pub static_dir: PathBuf,
    pub reconcile_every: Duration,
}

/// What request handlers share. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    pub iot: Iot,
    pub projection: Projection,
    /// Asks the refresher to re-read a job soon.
    pub changed: mpsc::UnboundedSender<String>,
}

/// The whole HTTP application: the API under `/api/v1`, `/healthz`, and the web UI.
pub fn build_router(state: AppState, static_dir: &std::path::Path) -> Router {
    let ui = ServeDir::new(static_dir).fallback(ServeFile::new(static_dir.join("index.html")));
    Router::new()
        .nest("/api/v1", crate::api::router())
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .with_state(state)
        .fallback_service(ui)
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(tower_http::limit::RequestBodyLimitLayer::new(1024 * 1024))
}

/// A started server.
#[derive(Debug)]
pub struct RunningServer {
    /// Where the dashboard listens.
    pub addr: SocketAddr,
    /// Local mode: where devices connect over MQTT.
    pub mqtt_addr: Option<SocketAddr>,
    /// Local mode: where the artifact store's S3 API listens.
    pub s3_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    engine: Option<RunningEngine>,
    simulator: Option<JoinSet<()>>,
}

impl RunningServer {
    /// Stops everything this server started.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(mut simulator) = self.simulator.take() {
            simulator.shutdown().await;
        }
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        if let Some(engine) = self.engine.take() {
            engine.shutdown().await;
        }
    }
}

/// A random secret for credentials that live only as long as this process.
fn ephemeral_secret() -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(40)
        .map(char::from)
        .collect()
}

/// The address to connect to for a listener bound to `addr`: a wildcard bind (`0.0.0.0`,
/// `::`) is reached on loopback.
fn reachable(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    addr
}

/// Starts the server as `config` says.
pub async fn start(config: ServeConfig) -> anyhow::Result<RunningServer> {
    let pool = crate::db::connect_and_migrate(&config.database_url, 20).await?;
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    let (changed_tx, changed_rx) = mpsc::unbounded_channel();

    let (iot, engine, events, simulate, register) = match &config.iot {
        IotMode::Local {
            mqtt_listen,
            engine_listen,
            s3_listen,
            artifact_dir,
            simulate,
            register,
        } => {
            let engine_config = EngineConfig {
                region: config.region.clone(),
                account_id: "000000000000".into(),
                access_key_id: "FLOTILLALOCAL".into(),
                secret_access_key: ephemeral_secret(),
                service_username: "flotilla-server".into(),
                service_password: ephemeral_secret(),
                artifact_dir: artifact_dir.clone(),
            };
            let http = TcpListener::bind(engine_listen).await.with_context(|| {
                format!("binding the engine's control plane to {engine_listen}")
            })?;
            let mqtt = TcpListener::bind(mqtt_listen)
                .await
                .with_context(|| format!("binding the engine's MQTT listener to {mqtt_listen}"))?;
            let s3 = TcpListener::bind(s3_listen)
                .await
                .with_context(|| format!("binding the engine's artifact store to {s3_listen}"))?;
            let engine = RunningEngine::start(
                pool.clone(),
                engine_config.clone(),
                Listeners { http, mqtt, s3 },
            )
            .await?;
            let credentials = aws_credential_types::Credentials::new(
                engine_config.access_key_id.clone(),
                engine_config.secret_access_key.clone(),
                None,
                None,
                "flotilla-local-engine",
            );
            let sdk = aws_sdk_iot::Config::builder()
                .behavior_version(aws_sdk_iot::config::BehaviorVersion::latest())
                .region(aws_sdk_iot::config::Region::new(config.region.clone()))
                .credentials_provider(credentials)
                .endpoint_url(format!("http://{}", engine.http_addr))
                .build();
            let events = EventSource {
                host: reachable(engine.mqtt_addr).ip().to_string(),
                port: engine.mqtt_addr.port(),
                username: engine_config.service_username,
                password: engine_config.service_password,
            };
            (
                Iot::new(aws_sdk_iot::Client::from_conf(sdk)),
                Some(engine),
                Some(events),
                *simulate,
                register.clone(),
            )
        }
        IotMode::Aws { iot_endpoint } => {
            let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(config.region.clone()))
                .load()
                .await;
            let mut builder = aws_sdk_iot::config::Builder::from(&shared);
            if let Some(endpoint) = iot_endpoint {
                builder = builder.endpoint_url(endpoint);
            }
            tracing::info!(
                "AWS mode: the projection is kept current by reconciliation every {:?}",
                config.reconcile_every
            );
            (
                Iot::new(aws_sdk_iot::Client::from_conf(builder.build())),
                None,
                None,
                0,
                Vec::new(),
            )
        }
    };

    // Without them the projection would only follow by reconciliation. Not fatal: an AWS
    // account may deny the permission and still be served, more slowly.
    if let Err(error) = iot.enable_job_events().await {
        tracing::warn!(%error, "could not enable the job events: {error}");
    }

    let projection = Projection::new(pool.clone(), iot.clone());
    tasks.push(tokio::spawn(projection::run_refresher(
        projection.clone(),
        changed_rx,
        config.reconcile_every,
        shutdown.clone(),
    )));
    if let Some(events) = events {
        tasks.push(tokio::spawn(projection::run_event_subscriber(
            events,
            changed_tx.clone(),
            shutdown.clone(),
        )));
    }

    for thing in &register {
        iot.create_thing(thing)
            .await
            .with_context(|| format!("registering thing {thing}"))?;
    }

    let mqtt_addr = engine.as_ref().map(|e| reachable(e.mqtt_addr));
    let s3_addr = engine.as_ref().map(|e| reachable(e.s3_addr));
    let simulator = match mqtt_addr {
        Some(mqtt) if simulate > 0 => {
            let things: Vec<String> = (1..=simulate)
                .map(flotilla_agent::simulator::thing_name)
                .collect();
            for thing in &things {
                iot.create_thing(thing)
                    .await
                    .with_context(|| format!("registering simulated device {thing}"))?;
            }
            tracing::info!(
                "simulating {simulate} devices ({} … {})",
                things[0],
                things[things.len() - 1]
            );
            Some(flotilla_agent::simulator::start(
                flotilla_agent::simulator::SimulatorConfig {
                    host: mqtt.ip().to_string(),
                    port: mqtt.port(),
                    things,
                    min_work: Duration::from_millis(500),
                    max_work: Duration::from_millis(3000),
                    failure_rate: 0.0,
                },
            ))
        }
        _ => None,
    };

    let state = AppState {
        iot,
        projection,
        changed: changed_tx,
    };
    let router = build_router(state, &config.static_dir);
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the dashboard to {}", config.listen))?;
    let addr = listener.local_addr()?;
    let stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "dashboard server stopped: {error}");
        }
    }));
    Ok(RunningServer {
        addr,
        mqtt_addr,
        s3_addr,
        shutdown,
        tasks,
        engine,
        simulator,
    })
}
