//! The job agent: one MQTT connection per device, the Jobs API request/response pattern, and
//! the loop that runs jobs one after another.
//!
//! Flow (AWS developer guide, "Devices and jobs"): on connect and on every `notify-next` that
//! carries an execution, call `start-next`; run the job, reporting IN_PROGRESS with progress in
//! `statusDetails`; report SUCCEEDED, FAILED or REJECTED with a reason; call `start-next` again
//! until no execution is returned. Every update carries `expectedVersion`, so a stale agent
//! cannot overwrite newer state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures::future::BoxFuture;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};

/// How long to wait for the reply to a request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where and as whom a device connects.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The thing name, also used as the MQTT client id (AWS IoT's usual policy).
    pub thing_name: String,
    pub host: String,
    pub port: u16,
    /// Optional MQTT username and password (the development listener's token).
    pub credentials: Option<(String, String)>,
    pub keep_alive: Duration,
}

impl AgentConfig {
    pub fn new(thing_name: impl Into<String>, host: impl Into<String>, port: u16) -> Self {
        Self {
            thing_name: thing_name.into(),
            host: host.into(),
            port,
            credentials: None,
            keep_alive: Duration::from_secs(30),
        }
    }
}

/// How a job ended on the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// The job was attempted and failed; the string says why.
    Failed(String),
    /// The device will not run this job (unknown or invalid document); the string says why.
    Rejected(String),
}

/// Lets a handler report progress while it works.
pub struct Progress<'a> {
    session: &'a Session,
    job_id: &'a str,
    version: &'a Mutex<i64>,
}

impl Progress<'_> {
    /// Reports IN_PROGRESS with `step` and `percent` in statusDetails.
    pub async fn report(&self, step: &str, percent: u8) -> Result<()> {
        let details = json!({ "step": step, "percent": percent.min(100).to_string() });
        let version = *self.version.lock().expect("version lock");
        let new_version = self
            .session
            .update(self.job_id, "IN_PROGRESS", details, version)
            .await?;
        *self.version.lock().expect("version lock") = new_version;
        Ok(())
    }
}

/// What a device does with a job document.
pub trait JobHandler: Send + Sync + 'static {
    fn run<'a>(
        &'a self,
        job_id: &'a str,
        document: &'a Value,
        progress: Progress<'a>,
    ) -> BoxFuture<'a, Outcome>;
}

/// A reply to a Jobs API request.
#[derive(Debug)]
enum Reply {
    Accepted(Value),
    Rejected(Value),
}

/// The MQTT side of one device: a client, and the requests waiting for replies.
struct Session {
    client: AsyncClient,
    topic_prefix: String,
    waiting: Mutex<HashMap<String, oneshot::Sender<Reply>>>,
}

impl Session {
    /// Publishes a request to `$aws/things/{thing}/jobs/{operation}` and waits for its reply.
    async fn request(&self, operation: &str, mut body: Value) -> Result<Reply> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        body["clientToken"] = json!(token);
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .expect("waiting lock")
            .insert(token.clone(), tx);
        let topic = format!("{}/{operation}", self.topic_prefix);
        let sent = self
            .client
            .publish(topic, QoS::AtLeastOnce, false, body.to_string())
            .await;
        let result = match sent {
            Ok(()) => tokio::time::timeout(REQUEST_TIMEOUT, rx)
                .await
                .map_err(|_| anyhow!("no reply to {operation} within {REQUEST_TIMEOUT:?}"))
                .and_then(|r| r.map_err(|_| anyhow!("the connection closed"))),
            Err(error) => Err(anyhow!("publishing {operation}: {error}")),
        };
        self.waiting.lock().expect("waiting lock").remove(&token);
        result
    }

    /// UpdateJobExecution with `expectedVersion`; returns the new version. Retries with
    /// backoff while the service answers RequestThrottled or InternalError.
    async fn update(
        &self,
        job_id: &str,
        status: &str,
        details: Value,
        version: i64,
    ) -> Result<i64> {
        let mut delay = Duration::from_millis(200);
        for _attempt in 0..6 {
            let body = json!({
                "status": status,
                "statusDetails": details,
                "expectedVersion": version,
                "includeJobExecutionState": true,
            });
            match self.request(&format!("{job_id}/update"), body).await? {
                Reply::Accepted(reply) => {
                    return reply["executionState"]["versionNumber"]
                        .as_i64()
                        .context("update accepted without executionState.versionNumber");
                }
                Reply::Rejected(reply) => {
                    let code = reply["code"].as_str().unwrap_or_default();
                    if !matches!(code, "RequestThrottled" | "InternalError") {
                        bail!("update of {job_id} to {status} rejected: {reply}");
                    }
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        bail!("update of {job_id} to {status} kept failing")
    }

    /// Routes an incoming publish: a reply goes to its waiting request; `notify-next` with an
    /// execution wakes the job loop.
    fn dispatch(&self, topic: &str, payload: &[u8], wake: &Notify) {
        let Ok(body) = serde_json::from_slice::<Value>(payload) else {
            return;
        };
        if topic.ends_with("/notify-next") {
            if body.get("execution").is_some() {
                wake.notify_one();
            }
            return;
        }
        let reply = if topic.ends_with("/accepted") {
            Reply::Accepted(body)
        } else if topic.ends_with("/rejected") {
            Reply::Rejected(body)
        } else {
            return;
        };
        let token = match &reply {
            Reply::Accepted(b) | Reply::Rejected(b) => b["clientToken"].as_str().map(str::to_owned),
        };
        if let Some(tx) = token.and_then(|t| self.waiting.lock().expect("waiting lock").remove(&t))
        {
            let _ = tx.send(reply);
        }
    }
}

/// One device's agent.
pub struct Agent {
    config: AgentConfig,
    handler: Arc<dyn JobHandler>,
}

impl Agent {
    pub fn new(config: AgentConfig, handler: Arc<dyn JobHandler>) -> Self {
        Self { config, handler }
    }

    /// Runs until the task is dropped: keeps the connection up (reconnecting with backoff) and
    /// runs jobs as they come.
    pub async fn run(self) -> Result<()> {
        let thing = &self.config.thing_name;
        let mut options =
            MqttOptions::new(thing.clone(), self.config.host.clone(), self.config.port);
        options.set_keep_alive(self.config.keep_alive);
        options.set_clean_session(true);
        options.set_max_packet_size(256 * 1024, 256 * 1024);
        if let Some((user, password)) = &self.config.credentials {
            options.set_credentials(user.clone(), password.clone());
        }
        let (client, eventloop) = AsyncClient::new(options, 64);
        let session = Arc::new(Session {
            client,
            topic_prefix: format!("$aws/things/{thing}/jobs"),
            waiting: Mutex::new(HashMap::new()),
        });
        let wake = Arc::new(Notify::new());
        let jobs = tokio::spawn(job_loop(
            session.clone(),
            self.handler.clone(),
            wake.clone(),
        ));
        let result = connection_loop(session, eventloop, wake).await;
        jobs.abort();
        result
    }
}

/// Drives the MQTT connection: (re)subscribes after every CONNACK and wakes the job loop, since
/// jobs may have been queued while the device was away.
async fn connection_loop(
    session: Arc<Session>,
    mut eventloop: EventLoop,
    wake: Arc<Notify>,
) -> Result<()> {
    let prefix = session.topic_prefix.clone();
    let mut backoff = Duration::from_millis(250);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(250);
                for topic in [
                    format!("{prefix}/notify-next"),
                    format!("{prefix}/start-next/accepted"),
                    format!("{prefix}/start-next/rejected"),
                    format!("{prefix}/+/update/accepted"),
                    format!("{prefix}/+/update/rejected"),
                ] {
                    session.client.subscribe(topic, QoS::AtLeastOnce).await?;
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => wake.notify_one(),
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                session.dispatch(&publish.topic, &publish.payload, &wake);
            }
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, "mqtt connection error, reconnecting in {backoff:?}: {error}");
                // Requests in flight will not be answered on this connection.
                session.waiting.lock().expect("waiting lock").clear();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Takes the next job and runs it, until there is none; then waits to be woken.
async fn job_loop(session: Arc<Session>, handler: Arc<dyn JobHandler>, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        loop {
            match take_next(&session, &handler).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) => {
                    tracing::warn!(%error, "job loop: {error:#}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

/// Runs the next pending job, if any; returns whether there was one.
async fn take_next(session: &Session, handler: &Arc<dyn JobHandler>) -> Result<bool> {
    let reply = session
        .request("start-next", json!({ "stepTimeoutInMinutes": 60 }))
        .await?;
    let execution = match reply {
        Reply::Accepted(body) => match body.get("execution") {
            Some(execution) => execution.clone(),
            None => return Ok(false),
        },
        Reply::Rejected(body) => bail!("start-next rejected: {body}"),
    };
    let job_id = execution["jobId"]
        .as_str()
        .context("execution without jobId")?
        .to_owned();
    let version = Mutex::new(
        execution["versionNumber"]
            .as_i64()
            .context("execution without versionNumber")?,
    );
    let document = execution.get("jobDocument").cloned().unwrap_or(Value::Null);
    tracing::info!(job.id = %job_id, "running job {job_id}");

    let progress = Progress {
        session,
        job_id: &job_id,
        version: &version,
    };
    let outcome = handler.run(&job_id, &document, progress).await;
    let (status, details) = match &outcome {
        Outcome::Succeeded => ("SUCCEEDED", json!({ "step": "done" })),
        Outcome::Failed(reason) => ("FAILED", json!({ "reason": truncate(reason) })),
        Outcome::Rejected(reason) => ("REJECTED", json!({ "reason": truncate(reason) })),
    };
    let current = *version.lock().expect("version lock");
    session.update(&job_id, status, details, current).await?;
    tracing::info!(job.id = %job_id, "job {job_id} ended {status}");
    Ok(true)
}

/// statusDetails values are limited to 1024 characters.
fn truncate(reason: &str) -> String {
    let reason = if reason.is_empty() { "unknown" } else { reason };
    reason
        .chars()
        .filter(|c| !c.is_control())
        .take(1024)
        .collect()
}
