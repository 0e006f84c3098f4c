//! The job agent: one MQTT connection per device, the Jobs API request/response pattern, and
//! the loop that runs jobs one after another.
//!
//! Flow (AWS developer guide, "Devices and jobs"): on connect and on every `notify-next`, call
//! `start-next` (with `stepTimeoutInMinutes`); run the job, reporting IN_PROGRESS with progress
//! in `statusDetails` (`step`, `percent`); report SUCCEEDED, FAILED or REJECTED with a reason;
//! call `start-next` again until no execution is returned. Every update carries
//! `expectedVersion`, so a stale agent cannot overwrite newer state, and every request a
//! `clientToken` that routes its `/accepted` or `/rejected` reply back to it.
//!
//! A running job is watched: when `notify-next` changes or the connection comes back, the agent
//! reads the execution (`…/{jobId}/get`); once the service says it is over (a forced cancel, a
//! timeout, a deletion) the handler's cancellation token fires and no final status is sent.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures::future::BoxFuture;
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// How long to wait for the reply to a request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest statusDetails value AWS accepts, in characters.
pub const MAX_DETAIL_CHARS: usize = 1024;

/// Where and as whom a device connects.
#[derive(Clone)]
pub struct AgentConfig {
    /// The thing name, also used as the MQTT client id (AWS IoT's usual policy).
    pub thing_name: String,
    pub host: String,
    pub port: u16,
    /// Optional MQTT username and password (the development listener's token).
    pub credentials: Option<(String, String)>,
    /// Mutual TLS (AWS IoT Core, or the engine's TLS listener).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub keep_alive: Duration,
    /// `false` (the default) asks the broker to keep the session and its queued messages
    /// while the device is away.
    pub clean_session: bool,
    /// The step timeout asked for with `start-next` (AWS allows 1–10080 minutes).
    pub step_timeout_minutes: i64,
    /// Requests buffered between the agent and its connection.
    pub channel_capacity: usize,
    /// Counts the agents currently connected (the simulator's and the benchmark's gauge).
    pub online: Option<Arc<AtomicUsize>>,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: show only whether there is one.
        f.debug_struct("AgentConfig")
            .field("thing_name", &self.thing_name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("credentials", &self.credentials.as_ref().map(|(u, _)| u))
            .field("tls", &self.tls.is_some())
            .field("clean_session", &self.clean_session)
            .finish_non_exhaustive()
    }
}

impl AgentConfig {
    pub fn new(thing_name: impl Into<String>, host: impl Into<String>, port: u16) -> Self {
        Self {
            thing_name: thing_name.into(),
            host: host.into(),
            port,
            credentials: None,
            tls: None,
            keep_alive: Duration::from_secs(30),
            clean_session: false,
            step_timeout_minutes: 60,
            channel_capacity: 16,
            online: None,
        }
    }
}

/// How a job ended on the device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    Succeeded,
    /// The job was attempted and failed; the string says why.
    Failed(String),
    /// The device will not run this job (unknown or invalid document); the string says why.
    Rejected(String),
}

/// Lets a handler report progress while it works, leave details for the final status, and
/// notice that the job was cancelled.
pub struct Progress<'a> {
    session: &'a Session,
    job_id: &'a str,
    version: &'a Mutex<i64>,
    details: &'a Mutex<BTreeMap<String, String>>,
    cancel: CancellationToken,
}

impl Progress<'_> {
    /// Reports IN_PROGRESS with `step` and `percent` in statusDetails.
    pub async fn report(&self, step: &str, percent: u8) -> Result<()> {
        let details =
            json!({ "step": detail_value(step), "percent": percent.min(100).to_string() });
        let version = *self.version.lock().expect("version lock");
        match self
            .session
            .update(self.job_id, "IN_PROGRESS", details, version)
            .await
        {
            Ok(new_version) => {
                *self.version.lock().expect("version lock") = new_version;
                Ok(())
            }
            Err(UpdateError::Over(status)) => {
                self.cancel.cancel();
                bail!("the job is over on the service side ({status})")
            }
            Err(UpdateError::Other(error)) => Err(error),
        }
    }

    /// Adds `key` to the statusDetails of the final report (the value is made printable and
    /// cut to the 1024-character limit, keeping its end).
    pub fn set_detail(&self, key: &str, value: &str) {
        let value = detail_tail(value);
        if !value.is_empty() {
            self.details
                .lock()
                .expect("details lock")
                .insert(key.to_owned(), value);
        }
    }

    /// Asks the service for the job document again (DescribeJobExecution with the document):
    /// its presigned URLs are fresh, which is how a device whose URL expired continues.
    pub async fn job_document(&self) -> Result<Value> {
        match self
            .session
            .request(
                &format!("{}/get", self.job_id),
                json!({ "includeJobDocument": true }),
            )
            .await?
        {
            Reply::Accepted(body) => body["execution"]
                .get("jobDocument")
                .cloned()
                .context("get accepted without execution.jobDocument"),
            Reply::Rejected(body) => bail!("get of {} rejected: {body}", self.job_id),
        }
    }

    /// Fires when the service ends the job (forced cancel, timeout, deletion): stop and clean up.
    pub fn cancelled(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

/// What a device does with a job document.
pub trait JobHandler: Send + Sync + 'static {
    /// Runs a job; called again with the same job after a restart while it is IN_PROGRESS.
    fn run<'a>(
        &'a self,
        job_id: &'a str,
        document: &'a Value,
        progress: Progress<'a>,
    ) -> BoxFuture<'a, Outcome>;

    /// The final status was accepted, or the service ended the job: forget it.
    fn finished(&self, _job_id: &str) {}

    /// The software version the device runs now, if it knows one. The agent reports it in
    /// the named shadow [`flotilla_api::install::INVENTORY_SHADOW`] at every (re)connection
    /// and after every job.
    fn installed(&self) -> Option<String> {
        None
    }
}

/// The shadow update that reports `version` (and the agent's own version).
pub fn inventory_report(version: &str) -> Value {
    json!({
        "state": {
            "reported": {
                "software": { "version": version },
                "agent": { "version": env!("CARGO_PKG_VERSION") },
            }
        }
    })
}

/// A reply to a Jobs API request.
#[derive(Debug)]
enum Reply {
    Accepted(Value),
    Rejected(Value),
}

/// Why an update did not go through.
#[derive(Debug)]
enum UpdateError {
    /// The execution is in a terminal state (or gone): the job was cancelled, timed out or
    /// deleted.
    Over(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for UpdateError {
    fn from(error: anyhow::Error) -> Self {
        Self::Other(error)
    }
}

/// The MQTT side of one device: a client, and the requests waiting for replies.
struct Session {
    client: AsyncClient,
    topic_prefix: String,
    /// `$aws/things/{thing}/shadow/name/flotilla/update`.
    inventory_topic: String,
    waiting: Mutex<HashMap<String, oneshot::Sender<Reply>>>,
    /// Bumped on every `notify-next` and every (re)subscription: time to look again.
    changed: watch::Sender<u64>,
}

impl Session {
    /// Reports what the device runs in its inventory shadow, without waiting: the report is
    /// repeated at the next connection and after the next job, so a lost one heals itself.
    fn report_installed(&self, handler: &dyn JobHandler) {
        let Some(version) = handler.installed() else {
            return;
        };
        let report = inventory_report(&version).to_string();
        if let Err(error) =
            self.client
                .try_publish(&self.inventory_topic, QoS::AtLeastOnce, false, report)
        {
            tracing::warn!(%error, "could not report the installed version: {error}");
        }
    }

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

    /// DescribeJobExecution: the execution's status and version; `None` if it no longer exists.
    async fn describe(&self, job_id: &str) -> Result<Option<(String, i64)>> {
        match self
            .request(
                &format!("{job_id}/get"),
                json!({ "includeJobDocument": false }),
            )
            .await?
        {
            Reply::Accepted(body) => {
                let execution = &body["execution"];
                let status = execution["status"]
                    .as_str()
                    .context("get accepted without execution.status")?;
                let version = execution["versionNumber"].as_i64().unwrap_or_default();
                Ok(Some((status.to_owned(), version)))
            }
            Reply::Rejected(body) if body["code"] == "ResourceNotFound" => Ok(None),
            // The service answers a describe of a finished execution with TerminalStateReached
            // and the execution's state.
            Reply::Rejected(body) if body["code"] == "TerminalStateReached" => {
                let state = &body["executionState"];
                let status = state["status"].as_str().unwrap_or("TERMINAL").to_owned();
                Ok(Some((
                    status,
                    state["versionNumber"].as_i64().unwrap_or_default(),
                )))
            }
            Reply::Rejected(body) => bail!("get of {job_id} rejected: {body}"),
        }
    }

    /// UpdateJobExecution with `expectedVersion`; returns the new version. Retries with
    /// backoff while the service answers RequestThrottled or InternalError or does not answer;
    /// after a VersionMismatch it reads the execution, because the reply to an earlier attempt
    /// may have been lost with the connection.
    async fn update(
        &self,
        job_id: &str,
        status: &str,
        details: Value,
        mut version: i64,
    ) -> Result<i64, UpdateError> {
        let mut delay = Duration::from_millis(200);
        for _attempt in 0..8 {
            let body = json!({
                "status": status,
                "statusDetails": details,
                "expectedVersion": version,
                "includeJobExecutionState": true,
            });
            let retry = match self.request(&format!("{job_id}/update"), body).await {
                Ok(Reply::Accepted(reply)) => {
                    return reply["executionState"]["versionNumber"]
                        .as_i64()
                        .context("update accepted without executionState.versionNumber")
                        .map_err(UpdateError::Other);
                }
                Ok(Reply::Rejected(reply)) => {
                    let code = reply["code"].as_str().unwrap_or_default();
                    match code {
                        "RequestThrottled" | "InternalError" => true,
                        "VersionMismatch"
                        | "InvalidStateTransition"
                        | "TerminalStateReached"
                        | "ResourceNotFound" => match self.describe(job_id).await? {
                            None => return Err(UpdateError::Over("deleted".into())),
                            Some((current, v)) if current == status && status != "IN_PROGRESS" => {
                                return Ok(v);
                            }
                            Some((current, v))
                                if current == "IN_PROGRESS" || current == "QUEUED" =>
                            {
                                version = v;
                                true
                            }
                            Some((current, _)) => return Err(UpdateError::Over(current)),
                        },
                        _ => {
                            return Err(UpdateError::Other(anyhow!(
                                "update of {job_id} to {status} rejected: {reply}"
                            )));
                        }
                    }
                }
                Err(error) => {
                    tracing::debug!(job.id = %job_id, "update of {job_id} to {status} unanswered: {error:#}");
                    true
                }
            };
            if retry {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
        Err(UpdateError::Other(anyhow!(
            "update of {job_id} to {status} kept failing"
        )))
    }

    /// Routes an incoming publish: a reply goes to its waiting request; `notify-next` wakes
    /// the job loop and the watcher of the running job.
    fn dispatch(&self, topic: &str, payload: &[u8], wake: &Notify) {
        let Ok(body) = serde_json::from_slice::<Value>(payload) else {
            return;
        };
        if topic.ends_with("/notify-next") {
            self.changed.send_modify(|n| *n += 1);
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
        options.set_clean_session(self.config.clean_session);
        options.set_max_packet_size(256 * 1024, 256 * 1024);
        options.set_inflight(16);
        if let Some((user, password)) = &self.config.credentials {
            options.set_credentials(user.clone(), password.clone());
        }
        if let Some(tls) = &self.config.tls {
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                tls.clone(),
            )));
        }
        let (client, eventloop) = AsyncClient::new(options, self.config.channel_capacity.max(4));
        let (changed, _) = watch::channel(0);
        let session = Arc::new(Session {
            client,
            topic_prefix: format!("$aws/things/{thing}/jobs"),
            inventory_topic: format!(
                "$aws/things/{thing}/shadow/name/{}/update",
                flotilla_api::install::INVENTORY_SHADOW
            ),
            waiting: Mutex::new(HashMap::new()),
            changed,
        });
        let wake = Arc::new(Notify::new());
        // Aborted when this future ends or is dropped (a simulated reboot, a shutdown), so no
        // job runs on without its connection.
        let _jobs = AbortOnDrop(tokio::spawn(job_loop(
            session.clone(),
            self.handler.clone(),
            wake.clone(),
            self.config.step_timeout_minutes,
        )));
        let online = OnlineGauge {
            counter: self.config.online.clone(),
            connected: false,
        };
        connection_loop(session, self.handler, eventloop, wake, online).await
    }
}

/// Keeps [`AgentConfig::online`] right, also when the agent is dropped while connected.
struct OnlineGauge {
    counter: Option<Arc<AtomicUsize>>,
    connected: bool,
}

impl OnlineGauge {
    fn set(&mut self, connected: bool) {
        if connected != self.connected {
            if let Some(counter) = &self.counter {
                if connected {
                    counter.fetch_add(1, Ordering::Relaxed);
                } else {
                    counter.fetch_sub(1, Ordering::Relaxed);
                }
            }
            self.connected = connected;
        }
    }
}

impl Drop for OnlineGauge {
    fn drop(&mut self) {
        self.set(false);
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Drives the MQTT connection: (re)subscribes after every CONNACK and wakes the job loop, since
/// jobs may have been queued or cancelled while the device was away. Connection errors are
/// retried with exponential backoff (250 ms doubling to 30 s, with jitter so a fleet that lost
/// its broker does not come back in one wave).
async fn connection_loop(
    session: Arc<Session>,
    handler: Arc<dyn JobHandler>,
    mut eventloop: EventLoop,
    wake: Arc<Notify>,
    mut online: OnlineGauge,
) -> Result<()> {
    let prefix = session.topic_prefix.clone();
    let mut backoff = Duration::from_millis(250);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(250);
                online.set(true);
                let filters = [
                    "notify-next",
                    "start-next/accepted",
                    "start-next/rejected",
                    "+/update/accepted",
                    "+/update/rejected",
                    "+/get/accepted",
                    "+/get/rejected",
                ]
                .map(|suffix| {
                    rumqttc::SubscribeFilter::new(format!("{prefix}/{suffix}"), QoS::AtLeastOnce)
                });
                // try_ so a full request channel never blocks the loop that drains it.
                if let Err(error) = session.client.try_subscribe_many(filters) {
                    tracing::warn!(%error, "could not subscribe: {error}");
                }
                session.report_installed(handler.as_ref());
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                session.changed.send_modify(|n| *n += 1);
                wake.notify_one();
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                session.dispatch(&publish.topic, &publish.payload, &wake);
            }
            Ok(_) => {}
            Err(error) => {
                online.set(false);
                tracing::debug!(%error, "mqtt connection error, reconnecting in {backoff:?}: {error}");
                // Requests in flight will not be answered on this connection.
                session.waiting.lock().expect("waiting lock").clear();
                let jitter = rand::random_range(0..=backoff.as_millis() as u64 / 2);
                tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Takes the next job and runs it, until there is none; then waits to be woken.
async fn job_loop(
    session: Arc<Session>,
    handler: Arc<dyn JobHandler>,
    wake: Arc<Notify>,
    step_timeout_minutes: i64,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        wake.notified().await;
        loop {
            match take_next(&session, &handler, step_timeout_minutes).await {
                Ok(true) => backoff = Duration::from_millis(500),
                Ok(false) => break,
                Err(error) => {
                    tracing::warn!(%error, "job loop: {error:#}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

/// Runs the next pending job, if any; returns whether there was one.
async fn take_next(
    session: &Session,
    handler: &Arc<dyn JobHandler>,
    step_timeout_minutes: i64,
) -> Result<bool> {
    let reply = session
        .request(
            "start-next",
            json!({ "stepTimeoutInMinutes": step_timeout_minutes.clamp(1, 10080) }),
        )
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

    let details = Mutex::new(BTreeMap::new());
    let cancel = CancellationToken::new();
    let progress = Progress {
        session,
        job_id: &job_id,
        version: &version,
        details: &details,
        cancel: cancel.clone(),
    };
    let watcher = watch_execution(session, &job_id, cancel.clone());
    let run = handler.run(&job_id, &document, progress);
    tokio::pin!(run);
    let finished_first = tokio::select! {
        outcome = &mut run => Some(outcome),
        () = watcher => None,
    };
    let outcome = match finished_first {
        Some(outcome) => outcome,
        // The handler sees the token too: let it stop and clean up what it started.
        None => run.await,
    };
    if cancel.is_cancelled() {
        tracing::info!(job.id = %job_id, "job {job_id} was ended by the service; stopped it");
        handler.finished(&job_id);
        return Ok(true);
    }
    let mut final_details = std::mem::take(&mut *details.lock().expect("details lock"));
    let status = match &outcome {
        Outcome::Succeeded => "SUCCEEDED",
        Outcome::Failed(reason) => {
            final_details.insert("reason".into(), detail_value(reason));
            "FAILED"
        }
        Outcome::Rejected(reason) => {
            final_details.insert("reason".into(), detail_value(reason));
            "REJECTED"
        }
    };
    // statusDetails holds at most 10 entries.
    while final_details.len() > 10 {
        let last = final_details.keys().last().cloned().expect("an entry");
        final_details.remove(&last);
    }
    let current = *version.lock().expect("version lock");
    match session
        .update(&job_id, status, json!(final_details), current)
        .await
    {
        Ok(_) => tracing::info!(job.id = %job_id, "job {job_id} ended {status}"),
        Err(UpdateError::Over(state)) => {
            tracing::info!(job.id = %job_id, "job {job_id} ended on the service side ({state}) before its {status} report");
        }
        Err(UpdateError::Other(error)) => return Err(error),
    }
    handler.finished(&job_id);
    session.report_installed(handler.as_ref());
    Ok(true)
}

/// Resolves once the service reports the execution over (not QUEUED or IN_PROGRESS, or
/// deleted), cancelling `cancel`; looks whenever `notify-next` changes or the connection
/// comes back, and every five minutes in case a notification was lost.
async fn watch_execution(session: &Session, job_id: &str, cancel: CancellationToken) {
    let mut changed = session.changed.subscribe();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            result = changed.changed() => {
                if result.is_err() {
                    return std::future::pending().await;
                }
            }
            () = tokio::time::sleep(Duration::from_secs(300)) => {}
        }
        match session.describe(job_id).await {
            Ok(Some((status, _))) if status == "IN_PROGRESS" || status == "QUEUED" => {}
            Ok(state) => {
                let state = state.map_or_else(|| "deleted".to_owned(), |(s, _)| s);
                tracing::info!(job.id = %job_id, "job {job_id} is {state} on the service side");
                cancel.cancel();
                return;
            }
            Err(error) => {
                tracing::debug!(job.id = %job_id, "could not read job {job_id}: {error:#}")
            }
        }
    }
}

/// A statusDetails value: printable (line breaks shown as `␤`), 1–1024 characters, keeping
/// the beginning.
pub fn detail_value(text: &str) -> String {
    let text = if text.is_empty() { "unknown" } else { text };
    printable(text).chars().take(MAX_DETAIL_CHARS).collect()
}

/// A statusDetails value that keeps the end of `text` (the tail of a command's output);
/// empty when there is nothing printable.
pub fn detail_tail(text: &str) -> String {
    let text = printable(text.trim_end());
    let count = text.chars().count();
    if count <= MAX_DETAIL_CHARS {
        return text;
    }
    let tail: String = text.chars().skip(count - (MAX_DETAIL_CHARS - 1)).collect();
    format!("…{tail}")
}

fn printable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' => '␤',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_are_printable_and_within_the_limit() {
        assert_eq!(detail_value("a\nb\tc"), "a␤b c");
        assert_eq!(detail_value(""), "unknown");
        let long = "x".repeat(3000) + "END";
        let tail = detail_tail(&long);
        assert_eq!(tail.chars().count(), MAX_DETAIL_CHARS);
        assert!(tail.ends_with("END") && tail.starts_with('…'));
        assert_eq!(detail_value(&long).chars().count(), MAX_DETAIL_CHARS);
        assert_eq!(detail_tail("\n\n"), "");
    }
}
