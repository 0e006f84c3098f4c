//! The event feeds of the projection: an MQTT subscriber on AWS's `$aws/events/job/#` and
//! `$aws/events/jobExecution/#` and, in local mode, on the engine's extension topic
//! `flotilla/events/jobExecution/#` (QUEUED and IN_PROGRESS changes with executionNumber,
//! versionNumber and statusDetails, which AWS does not publish), and the ingestor that applies
//! what it hears in batches.
//!
//! In local mode the subscriber logs in to the engine's broker as its service identity; in AWS
//! mode it connects to the account's IoT data endpoint with a client certificate (mutual TLS)
//! whose IoT policy lets it connect and read the event topics (`docs/aws-mode.md`).
//!
//! Events may be duplicated, reordered or lost: the [`super::rules`] absorb the first two,
//! reconciliation heals the third, and whatever the rules cannot place is sent to
//! reconciliation too.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{ExecutionObservation, JobObservation, Observation, Projection, Source};
use crate::ops::Metrics;

/// AWS IoT's job and job-execution event topics.
pub const AWS_TOPIC_FILTERS: [&str; 2] = ["$aws/events/job/#", "$aws/events/jobExecution/#"];

/// The engine's extension topic (QUEUED and IN_PROGRESS changes), which only local mode reads.
pub const EXTENSION_TOPIC_FILTER: &str = "flotilla/events/jobExecution/#";

/// The first wait before reconnecting, and the longest.
const RECONNECT_MIN: Duration = Duration::from_secs(1);
const RECONNECT_MAX: Duration = Duration::from_secs(60);

/// The most observations one transaction applies.
const MAX_BATCH: usize = 1000;

/// Where the job-event subscriber connects, as whom, and what it subscribes to.
#[derive(Debug, Clone)]
pub struct EventSource {
    pub host: String,
    pub port: u16,
    /// The client id is this and a random suffix, so replicas never take each other's session.
    pub client_id_prefix: String,
    pub login: Login,
    pub filters: Vec<String>,
}

/// How the subscriber proves who it is.
#[derive(Clone)]
pub enum Login {
    /// A username and password: the embedded engine's service identity.
    Password { username: String, password: String },
    /// Mutual TLS with a client certificate, as AWS IoT Core requires: the configuration holds
    /// the CA to trust and the certificate and key to present.
    Certificate(Arc<rustls::ClientConfig>),
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Password { username, .. } => f
                .debug_struct("Password")
                .field("username", username)
                .finish_non_exhaustive(),
            Self::Certificate(_) => f.write_str("Certificate"),
        }
    }
}

impl EventSource {
    pub(crate) fn options(&self) -> MqttOptions {
        let client_id = format!(
            "{}{}",
            self.client_id_prefix,
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        let mut options = MqttOptions::new(client_id, self.host.clone(), self.port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(256 * 1024, 256 * 1024);
        match &self.login {
            Login::Password { username, password } => {
                options.set_credentials(username.clone(), password.clone());
            }
            Login::Certificate(tls) => {
                let mut tls = tls.as_ref().clone();
                // AWS IoT serves MQTT over TLS on 443 only to clients that ask for it by ALPN.
                if self.port == 443 {
                    tls.alpn_protocols = vec![b"x-amzn-mqtt-ca".to_vec()];
                }
                options.set_transport(rumqttc::Transport::tls_with_config(
                    rumqttc::TlsConfiguration::Rustls(Arc::new(tls)),
                ));
            }
        }
        options
    }
}

/// Why an event could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("topic {0:?} is not a job or job-execution event topic")]
    Topic(String),
    #[error("payload is not a JSON object: {0}")]
    Json(#[from] serde_json::Error),
    #[error("payload lacks {0}")]
    Missing(&'static str),
}

fn millis(value: &Value) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(value.as_i64()?)
}

fn seconds(value: &Value) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(value.as_i64()?, 0)
}

/// Reads one event into an observation. `$aws/events/job/{jobId}/{operation}`,
/// `$aws/events/jobExecution/{jobId}/{operation}` (payloads of the AWS developer guide) and
/// `flotilla/events/jobExecution/{jobId}/{status}` (the same payload plus `executionNumber`,
/// `versionNumber`, `queuedAt`, `startedAt` and `lastUpdatedAt`, in milliseconds).
pub fn parse_event(topic: &str, payload: &[u8]) -> Result<Observation, EventError> {
    let parts: Vec<&str> = topic.split('/').collect();
    let (feed, job_id, operation) = match parts.as_slice() {
        ["$aws", "events", "job", job_id, operation] => ("job", *job_id, *operation),
        ["$aws", "events", "jobExecution", job_id, operation] => ("execution", *job_id, *operation),
        ["flotilla", "events", "jobExecution", job_id, operation] => {
            ("extension", *job_id, *operation)
        }
        _ => return Err(EventError::Topic(topic.to_owned())),
    };
    let body: Value = serde_json::from_slice(payload)?;
    let text = |name: &'static str| body.get(name).and_then(Value::as_str);
    let job_id = text("jobId").unwrap_or(job_id).to_owned();
    if feed == "job" {
        if operation == "deleted" {
            return Ok(Observation::JobDeleted { job_id });
        }
        let status = text("status").ok_or(EventError::Missing("status"))?;
        return Ok(Observation::Job(JobObservation {
            job_id,
            job_arn: None,
            status: status.to_owned(),
            description: text("description").map(str::to_owned),
            targets: body.get("targets").and_then(|t| {
                t.as_array().map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
            }),
            created_at: body.get("createdAt").and_then(millis),
            updated_at: body.get("lastUpdatedAt").and_then(millis),
            completed_at: body.get("completedAt").and_then(millis),
        }));
    }
    let thing_name = text("thingArn")
        .and_then(|arn| arn.rsplit('/').next())
        .filter(|name| !name.is_empty())
        .ok_or(EventError::Missing("thingArn"))?
        .to_owned();
    if feed == "execution" && operation == "deleted" {
        return Ok(Observation::ExecutionDeleted { job_id, thing_name });
    }
    let status = text("status").ok_or(EventError::Missing("status"))?;
    let extension = feed == "extension";
    Ok(Observation::Execution(ExecutionObservation {
        job_id,
        thing_name,
        status: status.to_owned(),
        execution_number: body.get("executionNumber").and_then(Value::as_i64),
        version_number: body.get("versionNumber").and_then(Value::as_i64),
        status_details: body
            .get("statusDetails")
            .and_then(Value::as_object)
            .cloned(),
        queued_at: body.get("queuedAt").and_then(millis),
        started_at: body.get("startedAt").and_then(millis),
        updated_at: body.get("lastUpdatedAt").and_then(millis),
        event_time: body.get("timestamp").and_then(seconds),
        source: if extension {
            Source::Extension
        } else {
            Source::Event
        },
    }))
}

/// Subscribes to the source's filters and sends every event read to `ingest`. Reconnects
/// forever, waiting longer after each failed attempt (1 s doubling to 60 s, with jitter);
/// reconciliation covers whatever is missed meanwhile.
pub async fn run_event_subscriber(
    source: EventSource,
    ingest: mpsc::Sender<Observation>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let (client, mut eventloop) = AsyncClient::new(source.options(), 64);
    let mut backoff = RECONNECT_MIN;
    // Filters acknowledged since the last CONNACK, and whether any was refused.
    let (mut granted, mut refused) = (0, false);
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!(host = %source.host, port = source.port, "event subscriber connected to {}:{}", source.host, source.port);
                backoff = RECONNECT_MIN;
                (granted, refused) = (0, false);
                for filter in &source.filters {
                    if let Err(error) = client.subscribe(filter, QoS::AtLeastOnce).await {
                        tracing::warn!(%error, "subscribing to {filter} failed: {error}");
                    }
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                granted += ack.return_codes.len();
                if ack
                    .return_codes
                    .iter()
                    .any(|code| matches!(code, rumqttc::SubscribeReasonCode::Failure))
                {
                    refused = true;
                    tracing::warn!(
                        "the broker refused an event subscription; check that the IoT policy allows iot:Subscribe and iot:Receive on {:?}",
                        source.filters
                    );
                }
                metrics.set_event_subscriber_up(!refused && granted == source.filters.len());
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                match parse_event(&publish.topic, &publish.payload) {
                    Ok(observation) => {
                        if ingest.send(observation).await.is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        metrics.count_invalid_event();
                        tracing::warn!(topic = %publish.topic, %error, "ignoring event on {}: {error}", publish.topic);
                    }
                }
            }
            Ok(_) => {}
            Err(error) => {
                metrics.set_event_subscriber_up(false);
                let wait = backoff.mul_f64(rand::random_range(0.5..1.0));
                tracing::warn!(%error, host = %source.host, port = source.port, "event subscriber disconnected from {}:{}: {error}; reconnecting in {wait:?}", source.host, source.port);
                backoff = (backoff * 2).min(RECONNECT_MAX);
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Applies observations from `ingest` in batches (whatever has arrived, up to [`MAX_BATCH`],
/// in one transaction), and asks reconciliation (`reconcile`) about jobs the projection does
/// not know yet, observations the rules could not place, and batches that failed.
pub async fn run_ingestor(
    projection: Projection,
    mut ingest: mpsc::Receiver<Observation>,
    reconcile: mpsc::UnboundedSender<String>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            () = shutdown.cancelled() => return,
            next = ingest.recv() => match next {
                Some(observation) => observation,
                None => return,
            },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match ingest.try_recv() {
                Ok(observation) => batch.push(observation),
                Err(_) => break,
            }
        }
        let sources: Vec<Source> = batch
            .iter()
            .map(|o| match o {
                Observation::Execution(e) => e.source,
                _ => Source::Event,
            })
            .collect();
        let job_ids: Vec<String> = batch.iter().map(|o| o.job_id().to_owned()).collect();
        match projection.apply(batch).await {
            Ok(applied) => {
                for source in sources {
                    metrics.count_ingested(source);
                }
                for job_id in applied.reconcile {
                    let _ = reconcile.send(job_id);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "applying {} events failed; reconciling their jobs: {error}", job_ids.len());
                let mut job_ids = job_ids;
                job_ids.sort();
                job_ids.dedup();
                for job_id in job_ids {
                    let _ = reconcile.send(job_id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_aws_execution_event() {
        let payload = br#"{"eventType":"JOB_EXECUTION","eventId":"x","timestamp":1700000000,
            "operation":"succeeded","jobId":"j1","thingArn":"arn:aws:iot:us-east-1:1:thing/t1",
            "status":"SUCCEEDED","statusDetails":{"step":"done"}}"#;
        let Observation::Execution(e) =
            parse_event("$aws/events/jobExecution/j1/succeeded", payload).expect("parses")
        else {
            panic!("not an execution");
        };
        assert_eq!((e.job_id.as_str(), e.thing_name.as_str()), ("j1", "t1"));
        assert_eq!(e.status, "SUCCEEDED");
        assert_eq!(e.execution_number, None);
        assert_eq!(e.source, Source::Event);
        assert_eq!(e.event_time.map(|t| t.timestamp()), Some(1_700_000_000));
    }

    #[test]
    fn reads_an_extension_event_and_job_events() {
        let payload = br#"{"jobId":"j1","thingArn":"arn:aws:iot:us-east-1:1:thing/t1",
            "status":"IN_PROGRESS","executionNumber":2,"versionNumber":3,"lastUpdatedAt":1700000000123}"#;
        let Observation::Execution(e) =
            parse_event("flotilla/events/jobExecution/j1/in_progress", payload).expect("parses")
        else {
            panic!("not an execution");
        };
        assert_eq!((e.execution_number, e.version_number), (Some(2), Some(3)));
        assert_eq!(e.source, Source::Extension);
        assert!(matches!(
            parse_event(
                "$aws/events/job/j1/deleted",
                br#"{"jobId":"j1","status":"DELETED"}"#
            ),
            Ok(Observation::JobDeleted { .. })
        ));
        assert!(matches!(
            parse_event(
                "$aws/events/job/j1/completed",
                br#"{"jobId":"j1","status":"COMPLETED"}"#
            ),
            Ok(Observation::Job(_))
        ));
    }

    #[test]
    fn rejects_other_topics_and_bad_payloads() {
        assert!(matches!(
            parse_event("$aws/things/t1/jobs/notify", b"{}"),
            Err(EventError::Topic(_))
        ));
        assert!(matches!(
            parse_event("$aws/events/jobExecution/j1/failed", b"not json"),
            Err(EventError::Json(_))
        ));
        assert!(matches!(
            parse_event(
                "$aws/events/jobExecution/j1/failed",
                br#"{"status":"FAILED"}"#
            ),
            Err(EventError::Missing("thingArn"))
        ));
    }
}
