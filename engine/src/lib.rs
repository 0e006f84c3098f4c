//! Flotilla's embedded engine: a one-machine implementation of AWS IoT Jobs.
//!
//! It speaks the same wire protocols as AWS, so the dashboard server and devices cannot tell
//! it from the real service:
//!
//! - [`control`]: the IoT control-plane REST API (restJson1), as `aws-sdk-iot` calls it;
//! - [`broker`]: an MQTT broker (rmqtt, embedded) carrying the Jobs device API
//!   (`$aws/things/{thing}/jobs/…`) and the `$aws/events/…` topics, on a plain listener and a
//!   mutual-TLS one;
//! - [`certificates`]: the engine's certificate authority and the device certificates it issues;
//! - [`policies`]: IoT policies attached to certificates, and what they allow on the broker;
//! - [`artifacts`]: the artifact store, an S3-compatible endpoint for update files, and the
//!   presigned URLs that job documents hand to devices;
//! - [`jobs`]: the jobs logic behind both, with every bit of state in PostgreSQL (schema
//!   `engine`), so the engine can be killed at any moment and restarted without loss.

pub mod artifacts;
pub mod broker;
pub mod certificates;
pub mod clock;
pub mod control;
pub mod jobs;
pub mod model;
pub mod policies;
pub mod query;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::artifacts::{ArtifactStore, Presigner};
use crate::broker::{Broker, BrokerListeners, TlsListener};
use crate::certificates::Certificates;
use crate::clock::{Clock, SystemClock};
use crate::jobs::Jobs;
use crate::model::Arns;

/// How the engine identifies itself and whom it trusts.
#[derive(Clone)]
pub struct EngineConfig {
    /// The region in ARNs and the SigV4 credential scope, e.g. `us-east-1`.
    pub region: String,
    /// The account id in ARNs.
    pub account_id: String,
    /// The access key the control plane accepts.
    pub access_key_id: String,
    pub secret_access_key: String,
    /// MQTT username and password of the trusted service identity (the dashboard's event
    /// subscriber). Devices authenticate by client id (their thing name) on the plain
    /// listener, and by certificate on the TLS listener.
    pub service_username: String,
    pub service_password: String,
    /// When set, a device on the plain listener must also present its token
    /// ([`broker::device_token`] of this secret and its thing name) as its MQTT password.
    pub device_token_secret: Option<String>,
    /// Where the artifact store keeps its buckets and objects (created if missing).
    pub artifact_dir: PathBuf,
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("region", &self.region)
            .field("account_id", &self.account_id)
            .field("access_key_id", &self.access_key_id)
            .field("service_username", &self.service_username)
            .finish_non_exhaustive()
    }
}

/// Where the engine serves. The control plane's socket is bound by the caller (so tests can use
/// ephemeral ports and the server can report a clear error for a port in use). The MQTT
/// listeners are addresses: the broker (rmqtt) binds its own sockets and cannot adopt one
/// bound elsewhere. Port 0 picks a free port; [`RunningEngine`] reports the ports bound.
#[derive(Debug)]
pub struct Listeners {
    /// The control-plane REST API.
    pub http: TcpListener,
    /// The MQTT broker's plain-TCP listener (development: keep it on loopback).
    pub mqtt: SocketAddr,
    /// The MQTT broker's TLS listener, where devices authenticate with client certificates
    /// issued by the engine's CA.
    pub mqtts: Option<SocketAddr>,
    /// The artifact store's S3 API.
    pub s3: TcpListener,
}

/// A running engine. Dropping it does not stop it; call [`RunningEngine::shutdown`].
pub struct RunningEngine {
    /// Where the control-plane REST API listens.
    pub http_addr: SocketAddr,
    /// Where the MQTT broker listens.
    pub mqtt_addr: SocketAddr,
    /// Where the MQTT broker's mutual-TLS listener listens, if it was asked for.
    pub mqtts_addr: Option<SocketAddr>,
    /// The engine's CA certificate (PEM): devices trust it to verify the broker, and the
    /// broker trusts the client certificates it signed.
    pub ca_certificate_pem: String,
    /// Where the artifact store's S3 API listens.
    pub s3_addr: SocketAddr,
    jobs: Arc<Jobs>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningEngine")
            .field("http_addr", &self.http_addr)
            .field("mqtt_addr", &self.mqtt_addr)
            .field("mqtts_addr", &self.mqtts_addr)
            .field("s3_addr", &self.s3_addr)
            .finish_non_exhaustive()
    }
}

impl RunningEngine {
    /// Starts the control plane and the broker on `listeners`. The database must be
    /// migrated already.
    pub async fn start(
        pool: PgPool,
        config: EngineConfig,
        listeners: Listeners,
    ) -> anyhow::Result<Self> {
        Self::start_with_clock(pool, config, listeners, Arc::new(SystemClock)).await
    }

    /// [`RunningEngine::start`] with the time taken from `clock`, e.g. a
    /// [`clock::TestClock`] that a test moves forward.
    pub async fn start_with_clock(
        pool: PgPool,
        config: EngineConfig,
        listeners: Listeners,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let Listeners {
            http,
            mqtt,
            mqtts,
            s3,
        } = listeners;
        let http_addr = http
            .local_addr()
            .context("control-plane listener address")?;
        let s3_addr = s3.local_addr().context("artifact store listener address")?;
        let store = ArtifactStore::new(
            &config.artifact_dir,
            &config.access_key_id,
            &config.secret_access_key,
        )?;
        // Devices reach the store where it listens; a wildcard bind is reached on loopback.
        let presigner = Presigner::new(
            format!("http://{}", reachable(s3_addr)),
            &config.region,
            &config.access_key_id,
            &config.secret_access_key,
        );
        let shutdown = CancellationToken::new();
        let config = Arc::new(config);
        let broker = Broker::new();
        let jobs = Arc::new(
            Jobs::with_clock(pool.clone(), config.clone(), broker.clone(), clock.clone())
                .with_artifact_store(store.clone(), presigner),
        );
        jobs.load_event_configurations()
            .await
            .context("loading the event configuration")?;
        let arns = Arns {
            region: config.region.clone(),
            account_id: config.account_id.clone(),
        };
        let policies = crate::policies::Policies::new(pool.clone(), arns.clone());
        let certificates = Arc::new(
            Certificates::load_or_create(pool, clock, arns, broker.clone())
                .await
                .map_err(|error| anyhow::anyhow!("loading the certificate authority: {error}"))?,
        );

        let tls = match mqtts {
            Some(addr) => {
                let mut hosts = Vec::new();
                if !addr.ip().is_unspecified() {
                    hosts.push(addr.ip().to_string());
                }
                let identity = certificates.server_identity(&hosts).map_err(|error| {
                    anyhow::anyhow!("making the broker's TLS certificate: {error}")
                })?;
                Some(TlsListener {
                    addr,
                    identity,
                    client_ca_pem: certificates.ca_certificate_pem().to_owned(),
                })
            }
            None => None,
        };
        let hooks = Arc::new(broker::auth::EngineHooks {
            config: config.clone(),
            jobs: jobs.clone(),
            certificates: certificates.clone(),
        });
        let started = broker
            .start(
                BrokerListeners { mqtt, mqtts: tls },
                hooks,
                shutdown.clone(),
            )
            .await?;
        let mqtt_addr = started.mqtt_addr;
        let mqtts_addr = started.mqtts_addr;

        let mut tasks = vec![started.task];
        tasks.push(tokio::spawn(store.serve(s3, shutdown.clone())));

        let sweeper = jobs.clone();
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(
            async move { sweeper.run_periodic(stop).await },
        ));

        let router = control::router(control::ControlState {
            jobs: jobs.clone(),
            config,
            certificates: certificates.clone(),
            policies,
            endpoints: control::Endpoints {
                mqtt: Some(mqtt_addr),
                mqtts: mqtts_addr,
            },
        });
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let served = axum::serve(http, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "engine control plane stopped: {error}");
            }
        }));
        let mqtts = mqtts_addr.map_or_else(|| "off".to_owned(), |a| a.to_string());
        tracing::info!(%http_addr, %mqtt_addr, mqtts, %s3_addr, "engine started: control plane on {http_addr}, mqtt on {mqtt_addr}, mqtts on {mqtts}, artifact store on {s3_addr}");
        Ok(Self {
            http_addr,
            mqtt_addr,
            mqtts_addr,
            ca_certificate_pem: certificates.ca_certificate_pem().to_owned(),
            s3_addr,
            jobs,
            shutdown,
            tasks,
        })
    }

    /// Runs the periodic work (timeouts, rollouts) now instead of at the next tick, so a
    /// test that moved its clock sees the effect without waiting.
    pub async fn tick(&self) -> Result<(), jobs::ServiceError> {
        self.jobs.tick().await
    }

    /// Stops accepting work and waits for the listeners to close.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The address to reach a listener at: a wildcard bind is reached on loopback.
fn reachable(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    addr
}
