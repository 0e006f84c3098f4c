//! An engine of its own for one test: a fresh database, the control plane and the broker on
//! ephemeral ports, an `aws-sdk-iot` client signed with the engine's key, and a service-identity
//! MQTT watcher for event topics.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_iot::error::ProvideErrorMetadata;
use flotilla_engine::clock::{Clock, SystemClock};
use flotilla_engine::{EngineConfig, Listeners, RunningEngine};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, SubscribeFilter};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::helpers::TestDb;

pub const REGION: &str = "us-east-1";

pub struct TestEngine {
    pub engine: RunningEngine,
    pub iot: aws_sdk_iot::Client,
    pub pool: sqlx::PgPool,
    pub db: TestDb,
    /// The secret of the plain listener's device tokens, when the engine requires them.
    pub device_token_secret: Option<String>,
}

impl TestEngine {
    /// An engine with the job and job-execution events enabled, as the server enables them.
    pub async fn start() -> Self {
        Self::start_with_clock(Arc::new(SystemClock)).await
    }

    /// An engine whose deadlines and rates follow `clock` (a test clock the test moves), with
    /// the job and job-execution events enabled.
    pub async fn start_with_clock(clock: Arc<dyn Clock>) -> Self {
        let engine = Self::start_fresh(clock, None).await;
        let enabled = aws_sdk_iot::types::Configuration::builder()
            .enabled(true)
            .build();
        engine
            .iot
            .update_event_configurations()
            .event_configurations(aws_sdk_iot::types::EventType::Job, enabled.clone())
            .event_configurations(aws_sdk_iot::types::EventType::JobExecution, enabled)
            .send()
            .await
            .expect("UpdateEventConfigurations");
        engine
    }

    /// An engine as a new AWS account starts: every event type disabled.
    pub async fn start_with_aws_defaults() -> Self {
        Self::start_fresh(Arc::new(SystemClock), None).await
    }

    /// An engine whose plain listener admits a device only with its thing's device token.
    pub async fn start_with_device_tokens(secret: &str) -> Self {
        Self::start_fresh(Arc::new(SystemClock), Some(secret.to_owned())).await
    }

    async fn start_fresh(clock: Arc<dyn Clock>, device_token_secret: Option<String>) -> Self {
        let db = TestDb::create().await;
        let pool = sqlx::PgPool::connect(&db.url).await.expect("connecting");
        flotilla_server::db::MIGRATOR
            .run(&pool)
            .await
            .expect("migrating");
        let (engine, iot) = launch(pool.clone(), clock, device_token_secret.clone()).await;
        Self {
            engine,
            iot,
            pool,
            db,
            device_token_secret,
        }
    }

    /// Stops the engine and starts a new one on the same database, as after a crash or a
    /// deployment.
    pub async fn restart(self, clock: Arc<dyn Clock>) -> Self {
        self.engine.shutdown().await;
        let (engine, iot) =
            launch(self.pool.clone(), clock, self.device_token_secret.clone()).await;
        Self {
            engine,
            iot,
            ..self
        }
    }

    /// Stops the engine and starts a new one on the same database and the same ports, as a
    /// broker restart looks to a device that reconnects to the address it knows.
    pub async fn restart_on_same_ports(self) -> Self {
        let engine = &self.engine;
        let (http_addr, mqtt_addr, mqtts_addr, s3_addr) = (
            engine.http_addr,
            engine.mqtt_addr,
            engine.mqtts_addr,
            engine.s3_addr,
        );
        self.engine.shutdown().await;
        let http = TcpListener::bind(http_addr)
            .await
            .expect("the same control-plane port");
        let s3 = TcpListener::bind(s3_addr)
            .await
            .expect("the same artifact store port");
        let (engine, iot) = launch_on(
            self.pool.clone(),
            Arc::new(SystemClock),
            http,
            mqtt_addr,
            mqtts_addr,
            s3,
            self.device_token_secret.clone(),
        )
        .await;
        Self {
            engine,
            iot,
            ..self
        }
    }

    pub async fn stop(self) {
        self.engine.shutdown().await;
        let _ = std::fs::remove_dir_all(artifact_dir(&self.pool));
        self.pool.close().await;
        self.db.drop_database().await;
    }

    /// Subscribes as the service identity to `filters` and forwards each message received.
    pub async fn watch(&self, filters: &[&str]) -> mpsc::UnboundedReceiver<(String, Value)> {
        let addr = self.engine.mqtt_addr;
        let mut options =
            MqttOptions::new("engine-api-watcher", addr.ip().to_string(), addr.port());
        options.set_credentials("service", "service-password");
        subscribe(options, filters).await.1
    }

    /// Connects as the device of `thing` (its client id is the thing name), subscribes to
    /// `filters` and forwards each message received; the client publishes as the device.
    pub async fn device(
        &self,
        thing: &str,
        filters: &[&str],
    ) -> (AsyncClient, mpsc::UnboundedReceiver<(String, Value)>) {
        let addr = self.engine.mqtt_addr;
        let mut options = MqttOptions::new(thing, addr.ip().to_string(), addr.port());
        if let Some(secret) = &self.device_token_secret {
            options.set_credentials(thing, flotilla_engine::broker::device_token(secret, thing));
        }
        subscribe(options, filters).await
    }

    /// CreateThing, with no attributes.
    pub async fn create_thing(&self, thing: &str) {
        self.iot
            .create_thing()
            .thing_name(thing)
            .send()
            .await
            .expect("CreateThing");
    }

    pub fn thing_arn(&self, name: &str) -> String {
        format!("arn:aws:iot:{REGION}:000000000000:thing/{name}")
    }

    pub async fn create_job(&self, job_id: &str, document: &str, things: &[&str]) {
        self.iot
            .create_job()
            .job_id(job_id)
            .document(document)
            .description(format!("{job_id} description"))
            .set_targets(Some(things.iter().map(|t| self.thing_arn(t)).collect()))
            .send()
            .await
            .expect("CreateJob");
    }

    pub async fn describe_job(&self, job_id: &str) -> aws_sdk_iot::types::Job {
        self.iot
            .describe_job()
            .job_id(job_id)
            .send()
            .await
            .expect("DescribeJob")
            .job
            .expect("a job")
    }

    pub async fn execution(&self, thing: &str, job_id: &str) -> aws_sdk_iot::types::JobExecution {
        self.iot
            .describe_job_execution()
            .thing_name(thing)
            .job_id(job_id)
            .send()
            .await
            .expect("DescribeJobExecution")
            .execution
            .expect("an execution")
    }
}

fn config(artifact_dir: std::path::PathBuf, device_token_secret: Option<String>) -> EngineConfig {
    EngineConfig {
        region: REGION.into(),
        account_id: "000000000000".into(),
        access_key_id: "FLOTILLATEST".into(),
        secret_access_key: "engine-api-test-secret".into(),
        service_username: "service".into(),
        service_password: "service-password".into(),
        device_token_secret,
        artifact_dir,
    }
}

/// The artifact directory of the engine on `pool`: one per test database, kept across a
/// restart like the database.
fn artifact_dir(pool: &sqlx::PgPool) -> std::path::PathBuf {
    let database = pool
        .connect_options()
        .get_database()
        .unwrap_or("engine")
        .to_owned();
    std::env::temp_dir().join(format!("flotilla-test-artifacts-{database}"))
}

/// Starts an engine on `pool` with ephemeral ports, and a client for its control plane.
async fn launch(
    pool: sqlx::PgPool,
    clock: Arc<dyn Clock>,
    device_token_secret: Option<String>,
) -> (RunningEngine, aws_sdk_iot::Client) {
    let http = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let s3 = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let loopback = "127.0.0.1:0".parse().expect("an address");
    launch_on(
        pool,
        clock,
        http,
        loopback,
        Some(loopback),
        s3,
        device_token_secret,
    )
    .await
}

/// Starts an engine on `pool` with the given listeners, and a client for its control plane.
/// The broker binds its own sockets (rmqtt takes addresses, not listeners).
async fn launch_on(
    pool: sqlx::PgPool,
    clock: Arc<dyn Clock>,
    http: TcpListener,
    mqtt: std::net::SocketAddr,
    mqtts: Option<std::net::SocketAddr>,
    s3: TcpListener,
    device_token_secret: Option<String>,
) -> (RunningEngine, aws_sdk_iot::Client) {
    let config = config(artifact_dir(&pool), device_token_secret);
    let listeners = Listeners {
        http,
        mqtt,
        mqtts,
        s3,
    };
    let engine = RunningEngine::start_with_clock(pool, config.clone(), listeners, clock)
        .await
        .expect("starting the engine");
    let credentials = aws_credential_types::Credentials::new(
        config.access_key_id,
        config.secret_access_key,
        None,
        None,
        "engine-api-test",
    );
    let sdk = aws_sdk_iot::Config::builder()
        .behavior_version(aws_sdk_iot::config::BehaviorVersion::latest())
        .region(aws_sdk_iot::config::Region::new(REGION))
        .credentials_provider(credentials)
        .endpoint_url(format!("http://{}", engine.http_addr))
        .build();
    (engine, aws_sdk_iot::Client::from_conf(sdk))
}

/// The next `count` messages, or fewer if 10 s pass first.
pub async fn received(
    receiver: &mut mpsc::UnboundedReceiver<(String, Value)>,
    count: usize,
) -> Vec<(String, Value)> {
    let mut messages = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while messages.len() < count {
        match tokio::time::timeout_at(deadline, receiver.recv()).await {
            Ok(Some(message)) => messages.push(message),
            _ => break,
        }
    }
    messages
}

/// The error code of a failed SDK call.
pub fn code<E: ProvideErrorMetadata, R>(
    result: Result<impl std::fmt::Debug, aws_sdk_iot::error::SdkError<E, R>>,
) -> String
where
    aws_sdk_iot::error::SdkError<E, R>: ProvideErrorMetadata,
{
    let error = result.expect_err("the call must fail");
    error.code().unwrap_or("<no code>").to_owned()
}

/// Connects with `options`, subscribes to `filters` and, once subscribed, forwards each
/// message received. Returns the client, to publish with, and the messages.
async fn subscribe(
    options: MqttOptions,
    filters: &[&str],
) -> (AsyncClient, mpsc::UnboundedReceiver<(String, Value)>) {
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    client
        .subscribe_many(
            filters
                .iter()
                .map(|f| SubscribeFilter::new((*f).to_owned(), QoS::AtLeastOnce)),
        )
        .await
        .expect("subscribing");
    // Subscribed once the SubAck arrives; messages only count from then on.
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), eventloop.poll())
            .await
            .expect("the broker answers")
            .expect("the client connects");
        if let Event::Incoming(Packet::SubAck(_)) = event {
            break;
        }
    }
    let (sender, receiver) = mpsc::unbounded_channel();
    let publisher = client.clone();
    tokio::spawn(async move {
        let _client = client;
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Packet::Publish(publish)) = event {
                let payload = serde_json::from_slice(&publish.payload).unwrap_or(Value::Null);
                if sender.send((publish.topic, payload)).is_err() {
                    break;
                }
            }
        }
    });
    (publisher, receiver)
}
