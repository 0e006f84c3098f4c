//! Conformance of the engine's Jobs device API over MQTT with the AWS developer guide ("Jobs
//! device MQTT API"): every request topic and its `/accepted` reply, every rejection code, the
//! state-transition table, and the `notify`/`notify-next` rules. Devices are real MQTT clients
//! of the embedded broker, each connected as its own thing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use flotilla_engine::clock::TestClock;
use rumqttc::{AsyncClient, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::test_engine::{TestEngine, received};

const DOCUMENT: &str = r#"{"operation":"install","version":"3.1"}"#;

/// One device: its MQTT client and every message on its own `jobs/#` topics.
struct Device {
    thing: String,
    client: AsyncClient,
    messages: mpsc::UnboundedReceiver<(String, Value)>,
    /// Notifications that arrived while waiting for a reply.
    notified: Vec<(String, Value)>,
}

impl Device {
    async fn connect(engine: &TestEngine, thing: &str) -> Self {
        engine.create_thing(thing).await;
        let (client, messages) = engine
            .device(thing, &[&format!("$aws/things/{thing}/jobs/#")])
            .await;
        Self {
            thing: thing.to_owned(),
            client,
            messages,
            notified: Vec::new(),
        }
    }

    /// Publishes `payload` on `$aws/things/{thing}/jobs/{operation}` and returns the reply:
    /// `("accepted" | "rejected", body)`. Notifications received meanwhile are kept.
    async fn raw_request(&mut self, operation: &str, payload: Vec<u8>) -> (String, Value) {
        let topic = format!("$aws/things/{}/jobs/{operation}", self.thing);
        self.client
            .publish(&topic, QoS::AtLeastOnce, false, payload)
            .await
            .expect("publishing");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (reply_topic, body) = tokio::time::timeout_at(deadline, self.messages.recv())
                .await
                .unwrap_or_else(|_| panic!("no reply to {topic}"))
                .expect("the device is connected");
            if let Some(suffix) = reply_topic.strip_prefix(&format!("{topic}/")) {
                return (suffix.to_owned(), body);
            }
            if is_notification(&reply_topic) {
                self.notified.push((reply_topic, body));
            }
        }
    }

    async fn request(&mut self, operation: &str, payload: Value) -> (String, Value) {
        self.raw_request(operation, payload.to_string().into_bytes())
            .await
    }

    async fn accepted(&mut self, operation: &str, payload: Value) -> Value {
        let (suffix, body) = self.request(operation, payload).await;
        assert_eq!(suffix, "accepted", "{operation} was refused: {body}");
        body
    }

    /// The rejection code of a request that must be refused.
    async fn rejected(&mut self, operation: &str, payload: Value) -> (String, Value) {
        let (suffix, body) = self.request(operation, payload).await;
        assert_eq!(suffix, "rejected", "{operation} was accepted: {body}");
        (body["code"].as_str().unwrap_or_default().to_owned(), body)
    }

    /// Notifications received since the last call, after waiting `wait` for stragglers.
    async fn notifications(&mut self, wait: Duration) -> Vec<(String, Value)> {
        tokio::time::sleep(wait).await;
        let mut out = std::mem::take(&mut self.notified);
        while let Ok((topic, body)) = self.messages.try_recv() {
            if is_notification(&topic) {
                out.push((topic, body));
            }
        }
        out
    }
}

fn is_notification(topic: &str) -> bool {
    topic.ends_with("/notify") || topic.ends_with("/notify-next")
}

fn job_ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|l| l.iter().filter_map(|e| e["jobId"].as_str()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_topic_answers_as_the_developer_guide_says() {
    let engine = TestEngine::start().await;
    let mut device = Device::connect(&engine, "conform-1").await;
    engine.create_job("first", DOCUMENT, &["conform-1"]).await;
    engine.create_job("second", DOCUMENT, &["conform-1"]).await;

    // GetPendingJobExecutions, with the clientToken echoed and a timestamp.
    let pending = device
        .accepted("get", json!({"clientToken": "token-1"}))
        .await;
    assert_eq!(pending["clientToken"], "token-1");
    assert!(pending["timestamp"].is_i64());
    assert_eq!(job_ids(&pending["queuedJobs"]), ["first", "second"]);
    assert_eq!(job_ids(&pending["inProgressJobs"]), Vec::<&str>::new());
    let queued = &pending["queuedJobs"][0];
    assert_eq!(queued["versionNumber"], 1);
    assert_eq!(queued["executionNumber"], 1);
    assert!(queued["queuedAt"].is_i64() && queued["lastUpdatedAt"].is_i64());

    // DescribeJobExecution of the next pending execution (`$next` in place of the id: a topic
    // level starting with `$` after the first, which the broker must route like AWS does),
    // then by id, with and without the document.
    let next = device
        .accepted("$next/get", json!({"clientToken": "next"}))
        .await;
    assert_eq!(next["clientToken"], "next");
    assert_eq!(next["execution"]["jobId"], "first");
    let next = device.accepted("first/get", json!({})).await;
    assert_eq!(next["execution"]["jobId"], "first");
    assert_eq!(next["execution"]["status"], "QUEUED");
    assert_eq!(next["execution"]["jobDocument"]["version"], "3.1");
    let bare = device
        .accepted("first/get", json!({"includeJobDocument": false}))
        .await;
    assert!(bare["execution"].get("jobDocument").is_none());

    // StartNextPendingJobExecution: IN_PROGRESS, details stored, version bumped, document sent.
    let started = device
        .accepted(
            "start-next",
            json!({"statusDetails": {"step": "download"}, "stepTimeoutInMinutes": 30, "clientToken": "s"}),
        )
        .await;
    assert_eq!(started["clientToken"], "s");
    let execution = &started["execution"];
    assert_eq!(execution["jobId"], "first");
    assert_eq!(execution["thingName"], "conform-1");
    assert_eq!(execution["status"], "IN_PROGRESS");
    assert_eq!(execution["statusDetails"]["step"], "download");
    assert_eq!(execution["versionNumber"], 2);
    assert!(execution["startedAt"].is_i64());
    assert_eq!(execution["jobDocument"]["operation"], "install");

    // A second start-next returns the same IN_PROGRESS execution: IN_PROGRESS comes first.
    let again = device.accepted("start-next", json!({})).await;
    assert_eq!(again["execution"]["jobId"], "first");

    // DescribeJobExecution by id and executionNumber.
    let described = device
        .accepted("first/get", json!({"executionNumber": 1}))
        .await;
    assert_eq!(described["execution"]["status"], "IN_PROGRESS");

    // UpdateJobExecution with expectedVersion, includeJobExecutionState and includeJobDocument.
    let progress = device
        .accepted(
            "first/update",
            json!({
                "status": "IN_PROGRESS",
                "statusDetails": {"step": "install", "percent": "50"},
                "expectedVersion": 2,
                "includeJobExecutionState": true,
                "includeJobDocument": true,
                "clientToken": "u1",
            }),
        )
        .await;
    assert_eq!(progress["clientToken"], "u1");
    assert_eq!(progress["executionState"]["status"], "IN_PROGRESS");
    assert_eq!(progress["executionState"]["versionNumber"], 3);
    assert_eq!(progress["executionState"]["statusDetails"]["percent"], "50");
    assert_eq!(progress["jobDocument"]["version"], "3.1");
    let plain = device
        .accepted(
            "first/update",
            json!({"status": "SUCCEEDED", "expectedVersion": 3}),
        )
        .await;
    assert!(plain.get("executionState").is_none() && plain.get("jobDocument").is_none());

    // The finished execution left the pending list; the control plane agrees.
    let pending = device.accepted("get", json!({})).await;
    assert_eq!(job_ids(&pending["queuedJobs"]), ["second"]);
    assert_eq!(job_ids(&pending["inProgressJobs"]), Vec::<&str>::new());
    let seen = engine.execution("conform-1", "first").await;
    assert_eq!(seen.status().map(|s| s.as_str()), Some("SUCCEEDED"));
    assert_eq!(seen.version_number(), 4);

    // The next is now `second`; once it is done too, start-next has nothing.
    device
        .accepted("second/update", json!({"status": "REJECTED"}))
        .await;
    let none = device.accepted("start-next", json!({})).await;
    assert!(none.get("execution").is_none(), "{none}");
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejection_code_with_its_payload() {
    let engine = TestEngine::start().await;
    let mut device = Device::connect(&engine, "reject-1").await;
    engine.create_job("job", DOCUMENT, &["reject-1"]).await;

    // InvalidTopic: the Jobs namespace, but no API.
    for operation in ["frobnicate", "job/frobnicate", "job/update/more"] {
        let (code, body) = device
            .rejected(operation, json!({"clientToken": "t"}))
            .await;
        assert_eq!(code, "InvalidTopic", "{operation}");
        assert_eq!(body["clientToken"], "t");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }

    // InvalidJson: not JSON, not UTF-8, not an object.
    for payload in [&b"{not json"[..], &[0xff, 0xfe, 0x00][..], &b"[1, 2]"[..]] {
        let (suffix, body) = device.raw_request("get", payload.to_vec()).await;
        assert_eq!(
            (suffix.as_str(), &body["code"]),
            ("rejected", &json!("InvalidJson"))
        );
    }

    // InvalidRequest: each field outside its limits. Nothing changes.
    let long_value = "x".repeat(1025);
    let eleven: HashMap<String, String> = (0..11).map(|i| (format!("k{i}"), "v".into())).collect();
    let invalid = [
        json!({"status": "QUEUED"}),
        json!({"status": "TIMED_OUT"}),
        json!({"status": "CANCELED"}),
        json!({"status": "DONE"}),
        json!({}),
        json!({"status": "IN_PROGRESS", "statusDetails": {"bad key": "v"}}),
        json!({"status": "IN_PROGRESS", "statusDetails": {"k": ""}}),
        json!({"status": "IN_PROGRESS", "statusDetails": {"k": long_value}}),
        json!({"status": "IN_PROGRESS", "statusDetails": eleven}),
        json!({"status": "IN_PROGRESS", "stepTimeoutInMinutes": 0}),
        json!({"status": "IN_PROGRESS", "stepTimeoutInMinutes": 10081}),
        json!({"status": "IN_PROGRESS", "expectedVersion": "one"}),
        json!({"status": "IN_PROGRESS", "clientToken": "t".repeat(65)}),
    ];
    for request in invalid {
        let (code, _) = device.rejected("job/update", request.clone()).await;
        assert_eq!(code, "InvalidRequest", "{request}");
    }
    let (code, _) = device
        .rejected("start-next", json!({"stepTimeoutInMinutes": -1}))
        .await;
    assert_eq!(code, "InvalidRequest");
    let untouched = engine.execution("reject-1", "job").await;
    assert_eq!(untouched.status().map(|s| s.as_str()), Some("QUEUED"));
    assert_eq!(untouched.version_number(), 1);

    // ResourceNotFound: no such job, or another execution number.
    let (code, _) = device.rejected("missing/get", json!({})).await;
    assert_eq!(code, "ResourceNotFound");
    let (code, _) = device
        .rejected("missing/update", json!({"status": "IN_PROGRESS"}))
        .await;
    assert_eq!(code, "ResourceNotFound");
    let (code, _) = device
        .rejected("job/get", json!({"executionNumber": 7}))
        .await;
    assert_eq!(code, "ResourceNotFound");

    // VersionMismatch carries the current executionState.
    let (code, body) = device
        .rejected(
            "job/update",
            json!({"status": "IN_PROGRESS", "expectedVersion": 9}),
        )
        .await;
    assert_eq!(code, "VersionMismatch");
    assert_eq!(body["executionState"]["versionNumber"], 1);
    assert_eq!(body["executionState"]["status"], "QUEUED");

    // A replayed update (same clientToken and expectedVersion) is refused the second time.
    let update = json!({"status": "SUCCEEDED", "expectedVersion": 1, "clientToken": "once"});
    device.accepted("job/update", update.clone()).await;
    let (code, body) = device.rejected("job/update", update).await;
    assert_eq!(code, "InvalidStateTransition");
    assert_eq!(body["clientToken"], "once");
    assert_eq!(body["executionState"]["status"], "SUCCEEDED");
    assert_eq!(body["executionState"]["versionNumber"], 2);

    // TerminalStateReached: describing a finished execution.
    let (code, body) = device.rejected("job/get", json!({})).await;
    assert_eq!(code, "TerminalStateReached");
    assert_eq!(body["executionState"]["status"], "SUCCEEDED");

    // RequestThrottled: a burst far over the per-thing rate. Others are not slowed down.
    let mut quiet = Device::connect(&engine, "reject-2").await;
    let topic_of_get = "$aws/things/reject-1/jobs/get";
    for _ in 0..400 {
        device
            .client
            .publish(topic_of_get, QoS::AtMostOnce, false, b"{}".to_vec())
            .await
            .expect("publishing");
    }
    // Count the replies (the broker also routes the requests themselves to the device's
    // `jobs/#` subscription).
    let mut replies = Vec::new();
    while replies.len() < 400 {
        let batch = received(&mut device.messages, 1).await;
        let Some((topic, body)) = batch.into_iter().next() else {
            break;
        };
        if topic.starts_with(&format!("{topic_of_get}/")) {
            replies.push(body);
        }
    }
    assert_eq!(replies.len(), 400, "every request of the burst is answered");
    let throttled = replies
        .iter()
        .filter(|body| body["code"] == "RequestThrottled")
        .count();
    assert!(throttled > 0, "no request of the burst was throttled");
    assert!(throttled < 400, "the burst allowance was not honoured");
    quiet.accepted("get", json!({})).await;
    // The allowance refills with time: the device is served again within a second or so.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (suffix, body) = device.request("get", json!({})).await;
        if suffix == "accepted" {
            break;
        }
        assert_eq!(body["code"], "RequestThrottled", "{body}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "still throttled after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // InternalError: the database refuses writes. The device gets an answer, not silence.
    sqlx::query(&format!(
        "alter database {} set default_transaction_read_only = on",
        engine.db.name
    ))
    .execute(&engine.pool)
    .await
    .expect("making the database read-only");
    sqlx::query("select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()")
        .execute(&engine.pool)
        .await
        .ok();
    let (code, _) = quiet.rejected("start-next", json!({})).await;
    assert_eq!(code, "InternalError");
    engine.stop().await;
}

/// Every execution status a device may find, crossed with every status it may ask for.
/// Devices may set IN_PROGRESS, SUCCEEDED, FAILED and REJECTED, from QUEUED or IN_PROGRESS
/// only; the other statuses belong to the service (InvalidRequest), and a terminal execution
/// cannot move again (InvalidStateTransition, with its executionState).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_transition_table() {
    let clock = Arc::new(TestClock::new(Utc::now()));
    let engine = TestEngine::start_with_clock(clock.clone()).await;
    let from_states = [
        "QUEUED",
        "IN_PROGRESS",
        "SUCCEEDED",
        "FAILED",
        "REJECTED",
        "TIMED_OUT",
        "CANCELED",
    ];
    let to_states = [
        "QUEUED",
        "IN_PROGRESS",
        "SUCCEEDED",
        "FAILED",
        "REJECTED",
        "TIMED_OUT",
        "CANCELED",
        "REMOVED",
    ];
    // One device per starting state keeps each under the per-thing request rate.
    let mut devices = Vec::new();
    for from in from_states {
        let thing = format!("table-{}", from.to_lowercase().replace('_', "-"));
        let device = Device::connect(&engine, &thing).await;
        for to in to_states {
            let job = format!("{}-to-{}", from.to_lowercase(), to.to_lowercase());
            engine.create_job(&job, DOCUMENT, &[&thing]).await;
        }
        devices.push((from, device));
    }
    // Bring each job's execution to its starting state.
    for (from, device) in &mut devices {
        for to in to_states {
            let job = format!("{}-to-{}", from.to_lowercase(), to.to_lowercase());
            match *from {
                "QUEUED" => {}
                "TIMED_OUT" => {
                    device
                        .accepted(
                            &format!("{job}/update"),
                            json!({"status": "IN_PROGRESS", "stepTimeoutInMinutes": 1}),
                        )
                        .await;
                }
                "CANCELED" => {
                    engine
                        .iot
                        .cancel_job_execution()
                        .job_id(&job)
                        .thing_name(&device.thing)
                        .send()
                        .await
                        .expect("CancelJobExecution");
                }
                status => {
                    device
                        .accepted(&format!("{job}/update"), json!({"status": status}))
                        .await;
                }
            }
        }
    }
    // Only the TIMED_OUT row's executions have a step timeout; let it pass.
    clock.advance(chrono::Duration::minutes(2));
    engine.engine.tick().await.expect("tick");

    let mut table = Vec::new();
    for (from, device) in &mut devices {
        for to in to_states {
            let job = format!("{}-to-{}", from.to_lowercase(), to.to_lowercase());
            let before = engine.execution(&device.thing, &job).await;
            assert_eq!(before.status().map(|s| s.as_str()), Some(*from), "{job}");
            let (suffix, body) = device
                .request(&format!("{job}/update"), json!({"status": to}))
                .await;
            let outcome = if suffix == "accepted" {
                "accepted".to_owned()
            } else {
                if body["code"] == "InvalidStateTransition" {
                    assert_eq!(body["executionState"]["status"], *from, "{job}");
                }
                body["code"].as_str().unwrap_or_default().to_owned()
            };
            table.push(format!("{from} -> {to}: {outcome}"));
        }
    }
    let mut expected = Vec::new();
    for from in from_states {
        for to in to_states {
            let device_settable = ["IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED"].contains(&to);
            let pending = ["QUEUED", "IN_PROGRESS"].contains(&from);
            let outcome = match (device_settable, pending) {
                (false, _) => "InvalidRequest",
                (true, true) => "accepted",
                (true, false) => "InvalidStateTransition",
            };
            expected.push(format!("{from} -> {to}: {outcome}"));
        }
    }
    assert_eq!(table, expected);
    engine.stop().await;
}

/// `notify` lists at most ten pending executions, IN_PROGRESS first; `notify-next` is sent
/// only when the head of the queue changes, and without an execution once nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_lists_ten_and_notify_next_follows_the_head() {
    let engine = TestEngine::start().await;
    let mut device = Device::connect(&engine, "notified").await;

    engine.create_job("n-01", DOCUMENT, &["notified"]).await;
    let first = device.notifications(Duration::from_millis(500)).await;
    let next: Vec<_> = first
        .iter()
        .filter(|(topic, _)| topic.ends_with("/notify-next"))
        .collect();
    assert_eq!(next.len(), 1, "{first:?}");
    assert_eq!(next[0].1["execution"]["jobId"], "n-01");
    assert_eq!(next[0].1["execution"]["jobDocument"]["version"], "3.1");

    // More jobs: `notify` each time, never `notify-next` (the head is still n-01).
    for i in 2..=12 {
        engine
            .create_job(&format!("n-{i:02}"), DOCUMENT, &["notified"])
            .await;
    }
    let later = device.notifications(Duration::from_millis(500)).await;
    assert!(
        later.iter().all(|(topic, _)| topic.ends_with("/notify")),
        "{later:?}"
    );
    let (_, last_list) = later.last().expect("notify messages");
    assert_eq!(
        job_ids(&last_list["jobs"]["QUEUED"]),
        (1..=10).map(|i| format!("n-{i:02}")).collect::<Vec<_>>()
    );

    // n-05 starts: it is listed first, as IN_PROGRESS, and the ten are still ten.
    device
        .accepted("n-05/update", json!({"status": "IN_PROGRESS"}))
        .await;
    device
        .accepted("n-01/update", json!({"status": "SUCCEEDED"}))
        .await;
    let changed = device.notifications(Duration::from_millis(500)).await;
    let (_, list) = changed
        .iter()
        .rev()
        .find(|(topic, _)| topic.ends_with("/notify"))
        .expect("a notify after the updates");
    assert_eq!(job_ids(&list["jobs"]["IN_PROGRESS"]), ["n-05"]);
    let queued = job_ids(&list["jobs"]["QUEUED"]);
    assert_eq!(queued.len(), 9);
    assert_eq!(queued[0], "n-02");
    // The head moved from n-01 to n-05 (IN_PROGRESS first): one notify-next naming it.
    let heads: Vec<_> = changed
        .iter()
        .filter(|(topic, _)| topic.ends_with("/notify-next"))
        .map(|(_, body)| body["execution"]["jobId"].clone())
        .collect();
    assert_eq!(heads.last(), Some(&json!("n-05")), "{changed:?}");

    // Finish everything: the last notify-next has no execution.
    for i in 2..=12 {
        device
            .accepted(&format!("n-{i:02}/update"), json!({"status": "SUCCEEDED"}))
            .await;
    }
    let end = device.notifications(Duration::from_millis(500)).await;
    let (_, last_next) = end
        .iter()
        .rev()
        .find(|(topic, _)| topic.ends_with("/notify-next"))
        .expect("a final notify-next");
    assert!(last_next.get("execution").is_none(), "{last_next}");
    engine.stop().await;
}

/// The engine orders a device's pending executions in SQL (`get`, `$next`) and, after a
/// device's own change, in memory (`notify`): both must agree, job ids comparing byte by byte
/// where queue times tie, whatever the database's collation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_lists_agree_between_get_and_notify() {
    // A clock that stands still gives the three executions one queue time.
    let clock = Arc::new(TestClock::new(Utc::now()));
    let engine = TestEngine::start_with_clock(clock).await;
    let mut device = Device::connect(&engine, "ordered").await;
    for job_id in ["b-1", "B-2", "a_3"] {
        engine.create_job(job_id, DOCUMENT, &["ordered"]).await;
    }
    let listed = device.accepted("get", json!({})).await;
    assert_eq!(job_ids(&listed["queuedJobs"]), ["B-2", "a_3", "b-1"]);
    device.notifications(Duration::from_millis(200)).await;

    // Each start moves an execution ahead of the QUEUED ones; the notify computed from the
    // change lists what `get` reads back.
    for (job_id, in_progress, queued) in [
        ("b-1", vec!["b-1"], vec!["B-2", "a_3"]),
        ("a_3", vec!["a_3", "b-1"], vec!["B-2"]),
    ] {
        device
            .accepted(
                &format!("{job_id}/update"),
                json!({"status": "IN_PROGRESS"}),
            )
            .await;
        let changed = device.notifications(Duration::from_millis(300)).await;
        let (_, notify) = changed
            .iter()
            .rev()
            .find(|(topic, _)| topic.ends_with("/notify"))
            .expect("a notify after the start");
        assert_eq!(job_ids(&notify["jobs"]["IN_PROGRESS"]), in_progress);
        assert_eq!(job_ids(&notify["jobs"]["QUEUED"]), queued);
        let listed = device.accepted("get", json!({})).await;
        assert_eq!(job_ids(&listed["inProgressJobs"]), in_progress);
        assert_eq!(job_ids(&listed["queuedJobs"]), queued);
    }
    // start-next takes the head of that order, and `$next` names it.
    let started = device.accepted("start-next", json!({})).await;
    assert_eq!(started["execution"]["jobId"], "a_3");
    let next = device.accepted("$next/get", json!({})).await;
    assert_eq!(next["execution"]["jobId"], "a_3");
    engine.stop().await;
}
