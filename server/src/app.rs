//! Assembling the server: database, IoT client, the embedded engine in local mode, the event
//! subscriber and ingestor, the reconciler, the change-feed listener, the simulated fleet and
//! the HTTP listener.
//!
//! [`start`] is what `flotilla serve` runs and what the end-to-end tests call, so the tests
//! drive exactly the server users run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use flotilla_engine::{EngineConfig, Listeners, RunningEngine};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tower_http::services::{ServeDir, ServeFile};

use crate::artifacts::{ArtifactConfig, Artifacts};
use crate::iot::Iot;
use crate::ops::Metrics;
use crate::projection::events::{AWS_TOPIC_FILTERS, EXTENSION_TOPIC_FILTER, Login};
use crate::projection::reconcile::ReconcileConfig;
use crate::projection::{self, EventSource, Projection};
use crate::stream::ChangeHub;

/// Which IoT service the server talks to.
#[derive(Debug, Clone)]
pub enum IotMode {
    /// Start the embedded engine in this process and talk to it like to AWS.
    Local {
        mqtt_listen: SocketAddr,
        /// The broker's mutual-TLS listener for devices with engine-issued certificates.
        mqtts_listen: Option<SocketAddr>,
        engine_listen: SocketAddr,
        /// Where the engine's artifact store (S3 API) listens.
        s3_listen: SocketAddr,
        /// Where the artifact store keeps its files.
        artifact_dir: PathBuf,
        simulate: usize,
        /// Things to register at start-up (CreateThing is idempotent).
        register: Vec<String>,
        /// When set, a device on the plain MQTT listener must present its thing's device token
        /// ([`flotilla_engine::broker::device_token`]) as its password.
        device_token_secret: Option<String>,
    },
    /// AWS IoT Core with the default credential chain.
    Aws {
        /// Overrides the IoT control-plane endpoint URL.
        iot_endpoint: Option<String>,
        /// Overrides the S3 endpoint URL (addressed path-style, as S3-compatible stores want).
        s3_endpoint: Option<String>,
        /// The event subscriber; without it only reconciliation follows the jobs.
        events: Option<AwsEvents>,
        /// Fixed credentials instead of the default chain (for an application that embeds
        /// the server, and for tests against a local AWS peer).
        credentials: Option<aws_credential_types::Credentials>,
    },
}

/// AWS mode's event subscriber: MQTT with mutual TLS to the account's IoT data endpoint,
/// reading `$aws/events/job/#` and `$aws/events/jobExecution/#`.
#[derive(Debug, Clone)]
pub struct AwsEvents {
    /// The data endpoint's host (`host:port` sets the port too); when absent, DescribeEndpoint
    /// (`iot:Data-ATS`) names it.
    pub endpoint: Option<String>,
    pub port: u16,
    /// The client certificate (PEM) whose IoT policy allows reading the event topics.
    pub client_certificate: PathBuf,
    pub client_key: PathBuf,
    /// The CA the data endpoint's certificate chains to (Amazon Root CA 1 on AWS).
    pub ca: PathBuf,
    /// Client ids are this and a random suffix; the IoT policy's iot:Connect must allow them.
    pub client_id_prefix: String,
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
    /// IoT requests per second reconciliation may spend.
    pub reconcile_budget: f64,
    /// The artifact bucket, the signing key and the limits of uploads.
    pub artifacts: ArtifactConfig,
    /// The rollout orchestrator's tick and clock.
    pub rollouts: crate::rollouts::RolloutSettings,
    /// Where identities come from (development sign-in by default).
    pub auth: crate::auth::AuthConfig,
}

/// What request handlers share. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The server's database (its own tables: templates, the audit log).
    pub pool: sqlx::PgPool,
    pub iot: Iot,
    pub projection: Projection,
    /// Asks reconciliation to re-read a job soon.
    pub changed: mpsc::UnboundedSender<String>,
    /// This process's counters, served on `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The live change feed behind `/api/v1/stream`.
    pub changes: ChangeHub,
    /// The artifact bucket and the code-signing key.
    pub artifacts: Artifacts,
    /// The rollout orchestrator's context (operators' actions share it).
    pub rollouts: crate::rollouts::Orchestrator,
    /// Who requests come from, and the keys that say so.
    pub auth: Arc<crate::auth::Auth>,
    /// What registering a device hands out besides its certificate.
    pub enrolment: Arc<Enrolment>,
}

/// What device bundles hold besides the certificate: the CA devices trust for the broker.
#[derive(Debug, Default)]
pub struct Enrolment {
    /// The engine's CA in local mode; `None` on AWS (devices use Amazon Root CA 1).
    pub ca_certificate_pem: Option<String>,
}

/// The whole HTTP application: the API under `/api/v1` (with the live stream), `/healthz`,
/// `/readyz`, `/metrics`, and the web UI. The API bounds request bodies itself (the audit hook
/// answers 413 in its error shape and records the attempt); the rest reads no body.
pub fn build_router(state: AppState, static_dir: &std::path::Path) -> Router {
    let ui = static_files(static_dir);
    let sessions = session_layer(&state);
    Router::new()
        .nest("/api/v1", crate::api::router(&state).layer(sessions))
        .merge(
            crate::ops::router().route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                crate::auth::authorize,
            )),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::ops::count_requests,
        ))
        .with_state(state)
        .fallback_service(ui.layer(tower_http::limit::RequestBodyLimitLayer::new(
            crate::audit::MAX_BODY,
        )))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

/// Deletes ended browser sessions now and then (the store refuses them anyway; this keeps
/// the table small). Every replica may run it: the delete is idempotent.
async fn delete_expired_sessions(pool: sqlx::PgPool, shutdown: CancellationToken) {
    loop {
        if let Err(error) = sqlx::query("delete from server.sessions where expiry_date < now()")
            .execute(&pool)
            .await
        {
            tracing::warn!(%error, "deleting ended sessions failed: {error}");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(600)) => {}
        }
    }
}

/// The browser-session layer: the cookie `flotilla_session` (HttpOnly, SameSite=Lax, Secure
/// when browsers reach the server over HTTPS), the sessions in `server.sessions`, and the idle
/// timeout. Only the API has it, and a request without the cookie never reaches the store; a
/// request with it saves the session again, which moves its idle expiry on.
fn session_layer(
    state: &AppState,
) -> tower_sessions::SessionManagerLayer<tower_sessions_sqlx_store::PostgresStore> {
    let store = tower_sessions_sqlx_store::PostgresStore::new(state.pool.clone())
        .with_schema_name("server")
        .and_then(|store| store.with_table_name("sessions"))
        .expect("valid identifiers");
    let idle = state.auth.config.sessions.idle;
    tower_sessions::SessionManagerLayer::new(store)
        .with_name(crate::auth::oidc::COOKIE)
        .with_http_only(true)
        .with_same_site(tower_sessions::cookie::SameSite::Lax)
        .with_secure(state.auth.secure_cookies())
        .with_path("/")
        .with_always_save(true)
        .with_expiry(tower_sessions::Expiry::OnInactivity(
            tower_sessions::cookie::time::Duration::seconds(
                i64::try_from(idle.as_secs()).unwrap_or(i64::MAX),
            ),
        ))
}

/// The web UI's files: `<file>.gz` beside a file (the bundle `cargo xtask frontend` writes) is
/// sent instead to clients that accept gzip, and every response says `Cache-Control: no-cache`,
/// so browsers keep the files but revalidate them (`Last-Modified`, answered 304) and never run
/// a stale bundle after an upgrade. Unknown paths get `index.html`: the UI routes by URL hash.
fn static_files(static_dir: &std::path::Path) -> Router {
    let files = ServeDir::new(static_dir)
        .precompressed_gzip()
        .fallback(ServeFile::new(static_dir.join("index.html")).precompressed_gzip());
    Router::new()
        .fallback_service(files)
        .layer(axum::middleware::map_response(no_cache))
}

async fn no_cache(mut response: axum::response::Response) -> axum::response::Response {
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-cache"),
    );
    response
}

/// The application's router on a database, an IoT client and a store that are never reached,
/// for listing its routes (the OpenAPI and permission tests, the authorization matrix).
pub async fn router_for_inspection() -> Router {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect_lazy("postgres://unused.invalid/unused")
        .expect("a lazy pool");
    let sdk = aws_sdk_iot::Config::builder()
        .behavior_version(aws_sdk_iot::config::BehaviorVersion::latest())
        .region(aws_sdk_iot::config::Region::new("us-east-1"))
        .build();
    let iot = Iot::new(aws_sdk_iot::Client::from_conf(sdk));
    let metrics = Arc::new(Metrics::default());
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .build(),
    );
    let artifacts = Artifacts::start(s3, "us-east-1", &Default::default(), None, false)
        .await
        .expect("artifacts without a store");
    let changed = mpsc::unbounded_channel().0;
    let projection = Projection::new(pool.clone(), iot.clone());
    let rollouts = crate::rollouts::Orchestrator {
        pool: pool.clone(),
        iot: iot.clone(),
        projection: projection.clone(),
        changed: changed.clone(),
        clock: Arc::new(flotilla_engine::clock::SystemClock),
        wake: Arc::new(tokio::sync::Notify::new()),
        webhooks: Arc::new(tokio::sync::Notify::new()),
        presigned_url_role_arn: artifacts.presigned_url_role_arn().map(str::to_owned),
    };
    let state = AppState {
        projection,
        changes: ChangeHub::new(pool.clone(), metrics.clone(), CancellationToken::new()),
        changed,
        artifacts,
        rollouts,
        pool,
        iot,
        metrics,
        auth: crate::auth::Auth::new(Default::default()).expect("development sign-in"),
        enrolment: Default::default(),
    };
    build_router(state, std::path::Path::new("static"))
}

/// A started server.
#[derive(Debug)]
pub struct RunningServer {
    /// Where the dashboard listens.
    pub addr: SocketAddr,
    /// Local mode: where devices connect over MQTT.
    pub mqtt_addr: Option<SocketAddr>,
    /// The IoT client the server uses (tests register their fleet through it).
    pub iot_client: aws_sdk_iot::Client,
    /// Local mode: where devices connect over MQTT with TLS and client certificates.
    pub mqtts_addr: Option<SocketAddr>,
    /// Local mode: the engine's CA certificate (PEM), which devices trust to verify the broker.
    pub ca_certificate_pem: Option<String>,
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
        // Stream clients end on the cancellation; a task that still hangs is not waited for.
        for mut task in self.tasks.drain(..) {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
            {
                tracing::warn!("a server task did not stop within {SHUTDOWN_GRACE:?}; aborting it");
                task.abort();
            }
        }
        if let Some(engine) = self.engine.take() {
            engine.shutdown().await;
        }
    }
}

/// How long shutdown waits for each task (in-flight requests included).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A random secret for credentials that live only as long as this process.
pub(crate) fn ephemeral_secret() -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(40)
        .map(char::from)
        .collect()
}

/// The simulator's passwords: each device's token under `secret`.
pub fn device_tokens(secret: String) -> flotilla_agent::simulator::DeviceToken {
    flotilla_agent::simulator::DeviceToken(Arc::new(move |thing: &str| {
        flotilla_engine::broker::device_token(&secret, thing)
    }))
}

/// The address to connect to for a listener bound to `addr`: a wildcard bind (`0.0.0.0`,
/// `::`) is reached on loopback.
fn reachable(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    addr
}

/// The AWS-mode event source: the data endpoint (from the flags, else DescribeEndpoint) and
/// the client certificate.
async fn aws_event_source(iot: &Iot, events: &AwsEvents) -> anyhow::Result<EventSource> {
    let tls = flotilla_agent::config::tls_config(
        Some(&events.ca),
        Some(&events.client_certificate),
        Some(&events.client_key),
    )
    .context("the event subscriber's TLS (--iot-ca, --iot-client-cert, --iot-client-key)")?;
    let endpoint = match &events.endpoint {
        Some(endpoint) => endpoint.clone(),
        None => iot
            .data_endpoint()
            .await
            .context("finding the IoT data endpoint (DescribeEndpoint iot:Data-ATS); set --iot-data-endpoint")?,
    };
    // AWS names a host; a `host:port` (as the embedded engine answers) sets the port too.
    let (host, port) = match endpoint.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse::<u16>() {
            Ok(port) => (host.to_owned(), port),
            Err(_) => anyhow::bail!("the IoT data endpoint {endpoint:?} has no valid port"),
        },
        _ => (endpoint, events.port),
    };
    tracing::info!("AWS mode: job events from {host}:{port} over mutual TLS");
    Ok(EventSource {
        host,
        port,
        client_id_prefix: events.client_id_prefix.clone(),
        login: Login::Certificate(tls),
        filters: AWS_TOPIC_FILTERS.iter().map(|f| (*f).to_owned()).collect(),
    })
}

/// Starts the server as `config` says.
pub async fn start(config: ServeConfig) -> anyhow::Result<RunningServer> {
    config
        .auth
        .check(config.listen, matches!(config.iot, IotMode::Aws { .. }))?;
    let pool = crate::db::connect_and_migrate(&config.database_url, 20).await?;
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    let (changed_tx, changed_rx) = mpsc::unbounded_channel();

    let (iot, s3, engine, events, simulate, register) = match &config.iot {
        IotMode::Local {
            mqtt_listen,
            mqtts_listen,
            engine_listen,
            s3_listen,
            artifact_dir,
            simulate,
            register,
            device_token_secret,
        } => {
            let engine_config = EngineConfig {
                region: config.region.clone(),
                account_id: "000000000000".into(),
                access_key_id: "FLOTILLALOCAL".into(),
                secret_access_key: ephemeral_secret(),
                service_username: "flotilla-server".into(),
                service_password: ephemeral_secret(),
                device_token_secret: device_token_secret.clone(),
                artifact_dir: artifact_dir.clone(),
            };
            let http = TcpListener::bind(engine_listen).await.with_context(|| {
                format!("binding the engine's control plane to {engine_listen}")
            })?;
            let s3 = TcpListener::bind(s3_listen)
                .await
                .with_context(|| format!("binding the engine's artifact store to {s3_listen}"))?;
            let engine = RunningEngine::start(
                pool.clone(),
                engine_config.clone(),
                Listeners {
                    http,
                    mqtt: *mqtt_listen,
                    mqtts: *mqtts_listen,
                    s3,
                },
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
                .credentials_provider(credentials.clone())
                .endpoint_url(format!("http://{}", engine.http_addr))
                .build();
            let s3 = aws_sdk_s3::Config::builder()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .region(aws_sdk_s3::config::Region::new(config.region.clone()))
                .credentials_provider(credentials)
                .endpoint_url(format!("http://{}", reachable(engine.s3_addr)))
                .force_path_style(true)
                .build();
            let events = EventSource {
                host: reachable(engine.mqtt_addr).ip().to_string(),
                port: engine.mqtt_addr.port(),
                client_id_prefix: "flotilla-server-".into(),
                login: Login::Password {
                    username: engine_config.service_username,
                    password: engine_config.service_password,
                },
                filters: AWS_TOPIC_FILTERS
                    .iter()
                    .chain([&EXTENSION_TOPIC_FILTER])
                    .map(|f| (*f).to_owned())
                    .collect(),
            };
            (
                Iot::new(aws_sdk_iot::Client::from_conf(sdk)),
                aws_sdk_s3::Client::from_conf(s3),
                Some(engine),
                Some(events),
                *simulate,
                register.clone(),
            )
        }
        IotMode::Aws {
            iot_endpoint,
            s3_endpoint,
            events,
            credentials,
        } => {
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(config.region.clone()));
            if let Some(credentials) = credentials {
                loader = loader.credentials_provider(credentials.clone());
            }
            let shared = loader.load().await;
            let mut builder = aws_sdk_iot::config::Builder::from(&shared);
            if let Some(endpoint) = iot_endpoint {
                builder = builder.endpoint_url(endpoint);
            }
            let iot = Iot::new(aws_sdk_iot::Client::from_conf(builder.build()));
            let mut s3 = aws_sdk_s3::config::Builder::from(&shared);
            if let Some(endpoint) = s3_endpoint {
                s3 = s3.endpoint_url(endpoint).force_path_style(true);
            }
            let events = match events {
                Some(events) => Some(aws_event_source(&iot, events).await?),
                None => {
                    tracing::info!(
                        "AWS mode without an event subscriber (no --iot-client-cert): the projection is kept current by reconciliation every {:?}",
                        config.reconcile_every
                    );
                    None
                }
            };
            (
                iot,
                aws_sdk_s3::Client::from_conf(s3.build()),
                None,
                events,
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

    let kms = match &config.artifacts.kms_key_id {
        Some(_) => Some(aws_sdk_kms::Client::new(
            &aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(config.region.clone()))
                .load()
                .await,
        )),
        None => None,
    };
    // The engine's store starts empty; an AWS bucket is the operator's to create.
    let artifacts =
        Artifacts::start(s3, &config.region, &config.artifacts, kms, engine.is_some()).await?;

    let metrics = Arc::new(Metrics::default());
    let projection = Projection::new(pool.clone(), iot.clone());
    tasks.push(tokio::spawn(projection::run_reconciler(
        projection.clone(),
        changed_rx,
        ReconcileConfig {
            every: config.reconcile_every,
            budget: config.reconcile_budget,
        },
        metrics.clone(),
        shutdown.clone(),
    )));
    let (ingest_tx, ingest_rx) = mpsc::channel(10_000);
    tasks.push(tokio::spawn(projection::events::run_ingestor(
        projection.clone(),
        ingest_rx,
        changed_tx.clone(),
        metrics.clone(),
        shutdown.clone(),
    )));
    // The inventory: lifecycle events and shadow reports on its own connection, and the
    // registry's view at start-up and then with every few reconciliations.
    let (inventory_subscribed, inventory_ready) = tokio::sync::oneshot::channel();
    if let Some(events) = &events {
        tasks.push(tokio::spawn(crate::inventory::run_subscriber(
            events.clone(),
            pool.clone(),
            Some(inventory_subscribed),
            shutdown.clone(),
        )));
    }
    tasks.push(tokio::spawn(crate::inventory::run_resync(
        pool.clone(),
        iot.clone(),
        config.reconcile_every * 5,
        shutdown.clone(),
    )));
    if let Some(events) = events {
        tasks.push(tokio::spawn(projection::run_event_subscriber(
            events,
            ingest_tx,
            metrics.clone(),
            shutdown.clone(),
        )));
    }
    let changes = ChangeHub::new(pool.clone(), metrics.clone(), shutdown.clone());
    tasks.push(tokio::spawn(crate::stream::run_listener(changes.clone())));
    tasks.push(tokio::spawn(
        artifacts
            .clone()
            .run_sweeper(pool.clone(), shutdown.clone()),
    ));

    for thing in &register {
        iot.create_thing(thing)
            .await
            .with_context(|| format!("registering thing {thing}"))?;
    }

    let mqtt_addr = engine.as_ref().map(|e| reachable(e.mqtt_addr));
    let mqtts_addr = engine.as_ref().and_then(|e| e.mqtts_addr).map(reachable);
    let ca_certificate_pem = engine.as_ref().map(|e| e.ca_certificate_pem.clone());
    let s3_addr = engine.as_ref().map(|e| reachable(e.s3_addr));
    let device_token_secret = match &config.iot {
        IotMode::Local {
            device_token_secret,
            ..
        } => device_token_secret.clone(),
        IotMode::Aws { .. } => None,
    };
    let simulator = match mqtt_addr {
        Some(mqtt) if simulate > 0 => {
            // The simulated devices' first connections must reach the inventory.
            if tokio::time::timeout(Duration::from_secs(10), inventory_ready)
                .await
                .is_err()
            {
                tracing::warn!("the inventory subscriber did not subscribe within 10 s");
            }
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
            let profile = flotilla_agent::simulator::Profile {
                device_token: device_token_secret.clone().map(device_tokens),
                ..Default::default()
            };
            Some(flotilla_agent::simulator::start_fleet(
                &mqtt.ip().to_string(),
                mqtt.port(),
                things,
                profile,
                None,
            ))
        }
        _ => None,
    };

    let rollouts = crate::rollouts::Orchestrator {
        pool: pool.clone(),
        iot: iot.clone(),
        projection: projection.clone(),
        changed: changed_tx.clone(),
        clock: config.rollouts.clock.clone(),
        wake: Arc::new(tokio::sync::Notify::new()),
        webhooks: Arc::new(tokio::sync::Notify::new()),
        presigned_url_role_arn: artifacts.presigned_url_role_arn().map(str::to_owned),
    };
    tasks.push(tokio::spawn(rollouts.clone().run(
        config.rollouts.tick,
        changes.clone(),
        metrics.clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(crate::rollouts::webhooks::run(
        pool.clone(),
        rollouts.webhooks.clone(),
        config.rollouts.tick,
        shutdown.clone(),
    )));

    if matches!(config.auth.mode, crate::auth::AuthMode::Oidc(_)) {
        tasks.push(tokio::spawn(delete_expired_sessions(
            pool.clone(),
            shutdown.clone(),
        )));
    }

    let iot_client = iot.sdk().clone();
    let state = AppState {
        pool: pool.clone(),
        iot,
        projection,
        changed: changed_tx,
        metrics,
        changes,
        artifacts,
        rollouts,
        auth: crate::auth::Auth::new(config.auth.clone())?,
        enrolment: Arc::new(Enrolment {
            ca_certificate_pem: ca_certificate_pem.clone(),
        }),
    };
    let router = build_router(state, &config.static_dir);
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the dashboard to {}", config.listen))?;
    let addr = listener.local_addr()?;
    let stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        // The peer address is what the audit log records as the source of a request.
        let served = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
        if let Err(error) = served {
            tracing::error!(%error, "dashboard server stopped: {error}");
        }
    }));
    Ok(RunningServer {
        addr,
        mqtt_addr,
        iot_client,
        mqtts_addr,
        ca_certificate_pem,
        s3_addr,
        shutdown,
        tasks,
        engine,
        simulator,
    })
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use tower::ServiceExt as _;

    use super::static_files;

    #[tokio::test]
    async fn static_files_are_sent_gzipped_and_revalidated() {
        let dir = std::env::temp_dir().join(format!("flotilla-static-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("pkg")).unwrap();
        std::fs::write(dir.join("index.html"), "<!doctype html>").unwrap();
        std::fs::write(dir.join("pkg/app.js"), "plain").unwrap();
        std::fs::write(dir.join("pkg/app.js.gz"), "gzipped").unwrap();
        let get = |path: &str, gzip: bool| {
            let mut request = Request::get(path);
            if gzip {
                request = request.header(header::ACCEPT_ENCODING, "gzip");
            }
            static_files(&dir).oneshot(request.body(Body::empty()).unwrap())
        };

        let gzipped = get("/pkg/app.js", true).await.unwrap();
        assert_eq!(gzipped.status(), StatusCode::OK);
        assert_eq!(gzipped.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(gzipped.headers()[header::CACHE_CONTROL], "no-cache");
        let last_modified = gzipped.headers()[header::LAST_MODIFIED].clone();
        let body = axum::body::to_bytes(gzipped.into_body(), 100)
            .await
            .unwrap();
        assert_eq!(&body[..], b"gzipped");

        let plain = get("/pkg/app.js", false).await.unwrap();
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        let body = axum::body::to_bytes(plain.into_body(), 100).await.unwrap();
        assert_eq!(&body[..], b"plain");

        let revalidated = static_files(&dir)
            .oneshot(
                Request::get("/pkg/app.js")
                    .header(header::IF_MODIFIED_SINCE, last_modified)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);

        let page = get("/no/such/file", false).await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()[header::CACHE_CONTROL], "no-cache");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
