//! The server's projection and its live stream: events applied idempotently (duplicates and
//! reordering never move a state backwards), lost events healed by reconciliation, the SSE
//! stream live and resumable with Last-Event-ID, fan-out between two servers on one database,
//! and the operations endpoints.
//!
//! Devices are real MQTT clients talking the Jobs device API to the engine; the stale and
//! duplicate events are real event payloads read by the server's own parser and applied by a
//! second `Projection` on the test's database, as a second replica would.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use flotilla_api::stream::ExecutionChange;
use flotilla_api::{JobDetail, JobStatus};
use flotilla_server::app::{self, IotMode, ServeConfig};
use flotilla_server::projection::events::parse_event;
use flotilla_server::projection::{JobObservation, Observation, Projection};
use reqwest::StatusCode;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, local_config};

/// A device: a real MQTT client connected as its thing.
struct Device {
    thing: String,
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl Device {
    async fn connect(addr: SocketAddr, thing: &str) -> Self {
        let mut options = MqttOptions::new(thing, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(10));
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        wait_connack(&mut eventloop).await;
        client
            .subscribe(format!("$aws/things/{thing}/jobs/#"), QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        // Keep the connection serviced; replies are not needed, the projection is observed.
        let task = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
        Self {
            thing: thing.to_owned(),
            client,
            task,
        }
    }

    /// UpdateJobExecution to `status` with `details`.
    async fn update(&self, job_id: &str, status: &str, details: Value) {
        self.client
            .publish(
                format!("$aws/things/{}/jobs/{job_id}/update", self.thing),
                QoS::AtLeastOnce,
                false,
                json!({ "status": status, "statusDetails": details }).to_string(),
            )
            .await
            .expect("publish update");
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn wait_connack(eventloop: &mut EventLoop) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), eventloop.poll())
            .await
            .expect("the broker answers")
        {
            Ok(Event::Incoming(Packet::ConnAck(_))) => return,
            Ok(_) => {}
            Err(error) => panic!("connecting the device failed: {error}"),
        }
    }
}

async fn create_job(app: &TestApp, job_id: &str, things: &[&str]) -> JobDetail {
    let response = app
        .http
        .post(app.url("/api/v1/jobs"))
        .json(&json!({ "job_id": job_id, "things": things, "document": { "operation": "noop" } }))
        .send()
        .await
        .expect("POST /api/v1/jobs");
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.expect("job detail")
}

/// The status of `thing`'s execution of `job_id` once it is `status`.
async fn wait_for_status(app: &TestApp, job_id: &str, thing: &str, status: &str) {
    eventually(
        &format!("{thing}'s execution of {job_id} to be {status}"),
        Duration::from_secs(20),
        || async {
            let detail = app.job(job_id).await?;
            detail
                .executions
                .iter()
                .any(|e| e.thing_name == thing && e.status == status)
                .then_some(())
        },
    )
    .await;
}

/// A second writer of the projection on the test's database, as another replica is. Its IoT
/// client is never called: `apply` only writes PostgreSQL.
async fn second_replica(app: &TestApp) -> Projection {
    let pool = sqlx::PgPool::connect(&app.db.url)
        .await
        .expect("connecting");
    let config = aws_sdk_iot::Config::builder()
        .behavior_version(aws_sdk_iot::config::BehaviorVersion::latest())
        .region(aws_sdk_iot::config::Region::new("us-east-1"))
        .build();
    Projection::new(
        pool,
        flotilla_server::iot::Iot::new(aws_sdk_iot::Client::from_conf(config)),
    )
}

fn thing_arn(thing: &str) -> String {
    format!("arn:aws:iot:us-east-1:000000000000:thing/{thing}")
}

/// An `$aws/events/jobExecution` event as AWS publishes it (no execution or version number).
fn aws_event(job_id: &str, thing: &str, status: &str, timestamp: i64) -> Observation {
    let payload = json!({
        "eventType": "JOB_EXECUTION", "eventId": uuid::Uuid::new_v4().to_string(),
        "timestamp": timestamp, "operation": status.to_lowercase(), "jobId": job_id,
        "thingArn": thing_arn(thing), "status": status, "statusDetails": {},
    });
    parse_event(
        &format!(
            "$aws/events/jobExecution/{job_id}/{}",
            status.to_lowercase()
        ),
        payload.to_string().as_bytes(),
    )
    .expect("a valid event")
}

/// The engine's extension event for a QUEUED or IN_PROGRESS execution.
fn extension_event(job_id: &str, thing: &str, status: &str, version: i64) -> Observation {
    let payload = json!({
        "eventType": "JOB_EXECUTION", "timestamp": 0, "jobId": job_id,
        "thingArn": thing_arn(thing), "status": status, "statusDetails": {"stale": "yes"},
        "executionNumber": 1, "versionNumber": version,
    });
    parse_event(
        &format!(
            "flotilla/events/jobExecution/{job_id}/{}",
            status.to_lowercase()
        ),
        payload.to_string().as_bytes(),
    )
    .expect("a valid event")
}

async fn transitions(pool: &sqlx::PgPool, job_id: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "select to_status, source from server.execution_transitions where job_id = $1 order by id",
    )
    .bind(job_id)
    .fetch_all(pool)
    .await
    .expect("reading transitions")
}

fn rank(status: &str) -> u8 {
    match status {
        "QUEUED" => 0,
        "IN_PROGRESS" => 1,
        _ => 2,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_and_reordered_events_never_move_an_execution_backwards() {
    let app = TestApp::start_with(0, &["proj-dup-1", "proj-dup-2"]).await;
    let mqtt = app.server.mqtt_addr.expect("local mode has a broker");
    let replica = second_replica(&app).await;

    // A device runs its execution to the end through the real device API.
    let device = Device::connect(mqtt, "proj-dup-1").await;
    create_job(&app, "dup-job", &["proj-dup-1"]).await;
    device
        .update("dup-job", "IN_PROGRESS", json!({"step": "download"}))
        .await;
    wait_for_status(&app, "dup-job", "proj-dup-1", "IN_PROGRESS").await;
    device
        .update("dup-job", "SUCCEEDED", json!({"step": "done"}))
        .await;
    wait_for_status(&app, "dup-job", "proj-dup-1", "SUCCEEDED").await;
    let before = transitions(replica.pool(), "dup-job").await;
    let statuses: Vec<&str> = before.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(statuses.last(), Some(&"SUCCEEDED"), "{before:?}");
    assert!(
        statuses.windows(2).all(|w| rank(w[0]) < rank(w[1])),
        "one transition per change, forwards only: {before:?}"
    );
    let feed_before: i64 = sqlx::query_scalar("select count(*) from server.changes")
        .fetch_one(replica.pool())
        .await
        .expect("counting changes");

    // Every earlier event again, twice, newest first, plus a second final status.
    let now = chrono::Utc::now().timestamp();
    let stale = vec![
        aws_event("dup-job", "proj-dup-1", "SUCCEEDED", now),
        extension_event("dup-job", "proj-dup-1", "IN_PROGRESS", 2),
        extension_event("dup-job", "proj-dup-1", "QUEUED", 1),
        aws_event("dup-job", "proj-dup-1", "FAILED", now),
        aws_event("dup-job", "proj-dup-1", "SUCCEEDED", now),
        extension_event("dup-job", "proj-dup-1", "IN_PROGRESS", 2),
    ];
    let applied = replica
        .apply(stale.clone())
        .await
        .expect("applying stale events");
    assert_eq!(applied.changes, 0, "stale events change nothing");
    replica.apply(stale).await.expect("applying them once more");
    assert_eq!(transitions(replica.pool(), "dup-job").await, before);
    let feed_after: i64 = sqlx::query_scalar("select count(*) from server.changes")
        .fetch_one(replica.pool())
        .await
        .expect("counting changes");
    assert_eq!(feed_after, feed_before, "no change was announced");
    let detail = app.job("dup-job").await.expect("the job");
    assert_eq!(detail.executions[0].status, "SUCCEEDED");
    assert_eq!(detail.job.counts.succeeded, 1);
    assert_eq!(detail.job.counts.total(), 1);

    // Reordered from the start: the final event first, then the ones before it.
    create_job(&app, "reorder-job", &["proj-dup-2"]).await;
    let now = chrono::Utc::now().timestamp();
    replica
        .apply(vec![
            aws_event("reorder-job", "proj-dup-2", "REJECTED", now),
            extension_event("reorder-job", "proj-dup-2", "IN_PROGRESS", 2),
            extension_event("reorder-job", "proj-dup-2", "QUEUED", 1),
        ])
        .await
        .expect("applying reordered events");
    let statuses: Vec<String> = transitions(replica.pool(), "reorder-job")
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(statuses, ["QUEUED", "REJECTED"]);
    // Reconciliation keeps running (the engine still says QUEUED) and must not undo it:
    // wait for a full pass (DescribeJob and a page of executions) after the events.
    let before = reconcile_requests(&app).await;
    eventually("a reconciliation pass", Duration::from_secs(10), || async {
        (reconcile_requests(&app).await >= before + 2).then_some(())
    })
    .await;
    let detail = app.job("reorder-job").await.expect("the job");
    assert_eq!(detail.executions[0].status, "REJECTED");
    assert_eq!(detail.job.counts.rejected, 1);
    assert_eq!(detail.job.counts.queued, 0);

    drop(device);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_heals_an_event_that_never_arrived() {
    let app = TestApp::start_with(0, &["proj-lost-1"]).await;
    let mqtt = app.server.mqtt_addr.expect("local mode has a broker");
    let device = Device::connect(mqtt, "proj-lost-1").await;
    create_job(&app, "lost-job", &["proj-lost-1"]).await;
    device
        .update("lost-job", "IN_PROGRESS", json!({"step": "install"}))
        .await;
    wait_for_status(&app, "lost-job", "proj-lost-1", "IN_PROGRESS").await;

    // The execution finishes in IoT without any event reaching the server, as when the
    // subscriber is disconnected: only reconciliation can learn of it.
    let pool = sqlx::PgPool::connect(&app.db.url)
        .await
        .expect("connecting");
    sqlx::query(
        "update engine.job_executions set status = 'SUCCEEDED', version_number = version_number + 1,
             last_updated_at = now() where job_id = 'lost-job'",
    )
    .execute(&pool)
    .await
    .expect("finishing the execution behind the server's back");

    wait_for_status(&app, "lost-job", "proj-lost-1", "SUCCEEDED").await;
    let history = transitions(&pool, "lost-job").await;
    assert_eq!(
        history.last(),
        Some(&("SUCCEEDED".to_owned(), "reconcile".to_owned())),
        "{history:?}"
    );
    let requests = reconcile_requests(&app).await;
    assert!(requests >= 2, "{requests} reconcile requests");
    drop(device);
    app.stop().await;
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub(crate) struct SseEvent {
    pub(crate) id: i64,
    pub(crate) event: String,
    pub(crate) data: Value,
}

/// A connected `/api/v1/stream` client.
pub(crate) struct SseClient {
    response: reqwest::Response,
    buffer: String,
}

impl SseClient {
    pub(crate) async fn connect(base: &str, query: &str, last_event_id: Option<i64>) -> Self {
        let mut request =
            crate::helpers::admin_client().get(format!("{base}/api/v1/stream{query}"));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.expect("GET /api/v1/stream");
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .is_ok_and(|t| t.starts_with("text/event-stream")),
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event, within `timeout`.
    async fn next(&mut self, timeout: Duration) -> SseEvent {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                // Comments (keep-alives) carry no id.
                if let Some(id) = id {
                    return SseEvent {
                        id,
                        event,
                        data: serde_json::from_str(&data).expect("JSON data"),
                    };
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("an event in time")
                .expect("the stream stays up")
                .expect("the stream does not end");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Events until one satisfies `until` (included).
    pub(crate) async fn until(&mut self, until: impl Fn(&SseEvent) -> bool) -> Vec<SseEvent> {
        let mut seen = Vec::new();
        loop {
            let event = self.next(Duration::from_secs(20)).await;
            let done = until(&event);
            seen.push(event);
            if done {
                return seen;
            }
        }
    }
}

fn execution_is(event: &SseEvent, status: &str) -> bool {
    event.event == "execution"
        && serde_json::from_value::<ExecutionChange>(event.data.clone())
            .is_ok_and(|change| change.status == status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_is_live_and_resumes_from_last_event_id_without_a_gap() {
    let app = TestApp::start_with(0, &["proj-sse-1", "proj-sse-2"]).await;
    let mqtt = app.server.mqtt_addr.expect("local mode has a broker");
    let device = Device::connect(mqtt, "proj-sse-1").await;
    let mut stream = SseClient::connect(&app.base, "?job_id=sse-job", None).await;

    // Another job's changes are filtered out.
    create_job(&app, "other-job", &["proj-sse-2"]).await;
    create_job(&app, "sse-job", &["proj-sse-1"]).await;
    let first = stream.until(|e| e.event == "job").await;
    assert!(
        first.iter().all(|e| e.data["job_id"] == "sse-job"),
        "{first:?}"
    );
    assert!(first.iter().any(|e| execution_is(e, "QUEUED")), "{first:?}");

    device
        .update("sse-job", "IN_PROGRESS", json!({"step": "download"}))
        .await;
    let live = stream.until(|e| execution_is(e, "IN_PROGRESS")).await;
    let in_progress = live.last().expect("an event");
    assert_eq!(in_progress.data["status_details"]["step"], "download");
    assert_eq!(in_progress.data["previous_status"], "QUEUED");
    let last_seen = in_progress.id;
    drop(stream);

    // While disconnected the job moves on; the client resumes where it stopped.
    device
        .update("sse-job", "SUCCEEDED", json!({"step": "done"}))
        .await;
    wait_for_status(&app, "sse-job", "proj-sse-1", "SUCCEEDED").await;
    let mut resumed = SseClient::connect(&app.base, "?job_id=sse-job", Some(last_seen)).await;
    let caught_up = resumed.until(|e| execution_is(e, "SUCCEEDED")).await;
    let pool = sqlx::PgPool::connect(&app.db.url)
        .await
        .expect("connecting");
    let expected: Vec<i64> = sqlx::query_scalar(
        "select id from server.changes where job_id = 'sse-job' and id > $1 order by id",
    )
    .bind(last_seen)
    .fetch_all(&pool)
    .await
    .expect("reading the feed");
    let got: Vec<i64> = caught_up.iter().map(|e| e.id).collect();
    assert_eq!(
        got,
        expected[..got.len()],
        "every change after Last-Event-ID, in order, none twice"
    );
    assert!(got.iter().all(|id| *id > last_seen));

    // A malformed Last-Event-ID is a clear error.
    let bad = app
        .http
        .get(app.url("/api/v1/stream"))
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .expect("GET /api/v1/stream");
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = bad.json().await.expect("error body");
    assert_eq!(body["code"], "invalid_request");

    drop(resumed);
    drop(device);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_one_server_sees_a_job_created_on_another() {
    let a = TestApp::start_with(0, &["proj-two-1"]).await;
    let b = app::start(local_config(&a.db, "-b", 0, &[], Default::default()))
        .await
        .expect("starting the second server");
    let mut on_b = SseClient::connect(&format!("http://{}", b.addr), "", None).await;

    create_job(&a, "two-servers", &["proj-two-1"]).await;
    let seen = on_b
        .until(|e| e.event == "job" && e.data["job_id"] == "two-servers")
        .await;
    let job = &seen.last().expect("an event").data;
    assert_eq!(job["status"], "IN_PROGRESS");
    assert_eq!(job["counts"]["queued"], 1);
    let via_b: JobDetail = reqwest::get(format!("http://{}/api/v1/jobs/two-servers", b.addr))
        .await
        .expect("GET on B")
        .json()
        .await
        .expect("job detail");
    assert_eq!(via_b.job.status, JobStatus::InProgress);

    drop(on_b);
    b.shutdown().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_metrics_report_the_server() {
    let app = TestApp::start_with(0, &[]).await;
    let ready = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("GET /readyz");
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(
        ready.json::<Value>().await.expect("JSON")["status"],
        "ready"
    );
    let _ = app.http.get(app.url("/api/v1/jobs")).send().await;
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.expect("text");
    for name in [
        "flotilla_events_ingested_total{source=\"aws\"}",
        "flotilla_reconcile_requests_total",
        "flotilla_sse_clients 0",
        "flotilla_http_requests_total{method=\"GET\",route=\"/api/v1/jobs\",status=\"200\"} 1",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    app.stop().await;

    // A server whose IoT cannot be reached is alive but not ready, and says why.
    let db = crate::helpers::TestDb::create().await;
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let closed = std::net::TcpListener::bind(loopback).expect("a port");
    let dead_endpoint = format!("http://{}", closed.local_addr().expect("address"));
    drop(closed);
    let server = app::start(ServeConfig {
        database_url: db.url.clone(),
        listen: loopback,
        iot: IotMode::Aws {
            iot_endpoint: Some(dead_endpoint),
            s3_endpoint: None,
            events: None,
            credentials: None,
        },
        region: "us-east-1".into(),
        static_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../static"),
        reconcile_every: Duration::from_secs(60),
        reconcile_budget: 1.0,
        artifacts: Default::default(),
        rollouts: Default::default(),
        auth: crate::helpers::proxy_auth(),
    })
    .await
    .expect("starting a server with an unreachable IoT");
    let response = reqwest::get(format!("http://{}/readyz", server.addr))
        .await
        .expect("GET /readyz");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["status"], "unavailable");
    let reasons = body["reasons"].as_array().expect("reasons");
    assert_eq!(reasons.len(), 1, "{body}");
    assert_eq!(reasons[0]["component"], "iot");
    server.shutdown().await;
    db.drop_database().await;
}

/// The server's `flotilla_reconcile_requests_total` counter, from `/metrics`.
async fn reconcile_requests(app: &TestApp) -> u64 {
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("flotilla_reconcile_requests_total "))
        .and_then(|v| v.parse().ok())
        .expect("the reconcile request counter")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_job_is_not_brought_back_by_late_news() {
    let app = TestApp::start_with(0, &["proj-del-1"]).await;
    let replica = second_replica(&app).await;
    let created = create_job(&app, "del-job", &["proj-del-1"]).await;
    // A reconciliation read taken just before the delete, applied after it.
    let stale_read = JobObservation {
        job_id: "del-job".into(),
        job_arn: Some(created.job.job_arn.clone()),
        status: "IN_PROGRESS".into(),
        description: None,
        targets: None,
        created_at: Some(
            chrono::DateTime::parse_from_rfc3339(&created.job.created_at)
                .expect("an RFC 3339 time")
                .to_utc(),
        ),
        updated_at: Some(chrono::Utc::now()),
        completed_at: None,
    };
    let deleted = app
        .http
        .delete(app.url("/api/v1/jobs/del-job?force=true"))
        .send()
        .await
        .expect("DELETE the job");
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let applied = replica
        .apply(vec![
            Observation::Job(stale_read.clone()),
            aws_event(
                "del-job",
                "proj-del-1",
                "CANCELED",
                chrono::Utc::now().timestamp(),
            ),
        ])
        .await
        .expect("applying late news");
    assert_eq!(applied.changes, 0, "late news changes nothing");
    assert!(
        app.job("del-job").await.is_none(),
        "the deleted job stays deleted"
    );

    // A new job under the same id, created after the delete, is a job again.
    let recreated = create_job(&app, "del-job", &["proj-del-1"]).await;
    assert_eq!(recreated.job.job_id, "del-job");
    assert!(app.job("del-job").await.is_some());
    let tombstones: i64 =
        sqlx::query_scalar("select count(*) from server.deleted_jobs where job_id = 'del-job'")
            .fetch_one(replica.pool())
            .await
            .expect("counting tombstones");
    assert_eq!(tombstones, 0, "the new job cleared the tombstone");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_reasons_come_from_the_projection() {
    let things = ["proj-hist-1", "proj-hist-2", "proj-hist-3"];
    let app = TestApp::start_with(0, &things).await;
    let mqtt = app.server.mqtt_addr.expect("local mode has a broker");
    let mut devices = Vec::new();
    for thing in things {
        devices.push(Device::connect(mqtt, thing).await);
    }
    create_job(&app, "hist-job", &things).await;
    devices[0].update("hist-job", "SUCCEEDED", json!({})).await;
    for device in &devices[1..] {
        device
            .update("hist-job", "FAILED", json!({"reason": "disk full"}))
            .await;
    }
    for (thing, status) in things.iter().zip(["SUCCEEDED", "FAILED", "FAILED"]) {
        wait_for_status(&app, "hist-job", thing, status).await;
    }

    let get = |path: &str| {
        let request = app.http.get(app.url(path));
        async move {
            let response = request.send().await.expect("GET");
            let status = response.status();
            (status, response.json::<Value>().await.expect("a JSON body"))
        }
    };
    let (status, reasons) = get("/api/v1/jobs/hist-job/failure-reasons").await;
    assert_eq!(status, StatusCode::OK, "{reasons}");
    assert_eq!(
        reasons,
        json!({"reasons": [{"status": "FAILED", "reason": "disk full", "count": 2}]})
    );

    // An unknown job is not found.
    let (status, _) = get("/api/v1/jobs/no-such-job/failure-reasons").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    drop(devices);
    app.stop().await;
}
