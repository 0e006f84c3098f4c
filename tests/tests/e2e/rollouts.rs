//! Staged rollouts end to end: the server with its embedded engine, simulated fleets whose
//! failure rate is set per wave, and a test clock for soak times and health deadlines.
//!
//! Devices report their new version in statusDetails; a "health reporter" here plays the
//! device's post-boot report, copying that version into the thing's `firmwareVersion`
//! attribute for the things it is told are healthy.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use flotilla_agent::simulator::{self, Profile};
use flotilla_api::{RolloutDetail, RolloutEvent, RolloutPreview, WaveStatus};
use flotilla_engine::clock::TestClock;
use flotilla_server::rollouts::RolloutSettings;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::{JoinHandle, JoinSet};

use crate::api_support::{get, post};
use crate::helpers::{TestApp, eventually};

const WAIT: Duration = Duration::from_secs(60);

/// A server with `things` registered (no devices yet), a test clock and the firmware template.
struct Scenario {
    app: TestApp,
    clock: Arc<TestClock>,
    things: Vec<String>,
    fleets: Vec<JoinSet<()>>,
    reporter: Option<JoinHandle<()>>,
}

impl Scenario {
    async fn start(things: usize) -> Self {
        let clock = Arc::new(TestClock::new(Utc::now()));
        let names: Vec<String> = (1..=things).map(simulator::thing_name).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let app = TestApp::start_with_rollouts(
            0,
            &refs,
            RolloutSettings {
                tick: Duration::from_millis(200),
                clock: clock.clone(),
            },
        )
        .await;
        let template = post(
            &app,
            "/api/v1/templates",
            json!({
                "template_id": "firmware",
                "document": {"operation": "install", "softwareVersion": "${aws:iot:parameter:version}"},
                "parameters": [{"name": "version", "type": "string"}],
            }),
        )
        .await;
        assert_eq!(template.status, StatusCode::CREATED, "{}", template.body);
        Self {
            app,
            clock,
            things: names,
            fleets: Vec::new(),
            reporter: None,
        }
    }

    /// Simulated devices for `things`, a `failure_rate` of whose jobs fail.
    fn devices(&mut self, things: &[String], failure_rate: f64) {
        let mqtt = self.app.server.mqtt_addr.expect("local mode");
        self.fleets.push(simulator::start_fleet(
            &mqtt.ip().to_string(),
            mqtt.port(),
            things.to_vec(),
            Profile {
                min_work: Duration::from_millis(50),
                max_work: Duration::from_millis(200),
                failure_rate,
                ..Profile::default()
            },
            None,
        ));
    }

    /// Copies each of `healthy`'s reported version into its `firmwareVersion` attribute once
    /// its execution succeeded.
    async fn report_health(&mut self, healthy: BTreeSet<String>) {
        let pool = sqlx::PgPool::connect(&self.app.db.url)
            .await
            .expect("connecting to the test database");
        let iot = self.app.server.iot_client.clone();
        self.reporter = Some(tokio::spawn(async move {
            let mut reported: BTreeSet<(String, String)> = BTreeSet::new();
            loop {
                let rows: Vec<(String, String)> = sqlx::query_as(
                    "select job_id, thing_name from server.job_executions
                     where status = 'SUCCEEDED' order by observed_at",
                )
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
                for (job, thing) in rows {
                    let key = (job, thing);
                    if !healthy.contains(&key.1) || reported.contains(&key) {
                        continue;
                    }
                    let Some(version) = reported_version(&iot, &key.0, &key.1).await else {
                        continue;
                    };
                    let payload = aws_sdk_iot::types::AttributePayload::builder()
                        .attributes("firmwareVersion", &version)
                        .merge(true)
                        .build();
                    if iot
                        .update_thing()
                        .thing_name(&key.1)
                        .attribute_payload(payload)
                        .send()
                        .await
                        .is_ok()
                    {
                        reported.insert(key);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }

    async fn preview(&self, request: &Value) -> RolloutPreview {
        let answer = post(&self.app, "/api/v1/rollouts/preview", request.clone()).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        answer.json()
    }

    async fn create(&self, request: &Value) -> RolloutDetail {
        let answer = post(&self.app, "/api/v1/rollouts", request.clone()).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        answer.json()
    }

    async fn detail(&self, id: &str) -> RolloutDetail {
        let answer = get(&self.app, &format!("/api/v1/rollouts/{id}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        answer.json()
    }

    /// Waits until `check` holds for the rollout's detail, and returns that detail; on
    /// timeout the failure shows the last detail read.
    async fn until(
        &self,
        id: &str,
        what: &str,
        check: impl Fn(&RolloutDetail) -> bool,
    ) -> RolloutDetail {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let detail = self.detail(id).await;
            if check(&detail) {
                return detail;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; the rollout: {detail:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn rollout_state(&self, id: &str, state: &str) -> RolloutDetail {
        self.until(id, &format!("the rollout to be {state}"), |d| {
            d.rollout.state == state
        })
        .await
    }

    async fn wave_state(&self, id: &str, wave: usize, state: &str) -> RolloutDetail {
        self.until(id, &format!("wave {wave} {state}"), |d| {
            d.waves[wave - 1].state == state
        })
        .await
    }

    async fn stop(mut self) {
        if let Some(reporter) = self.reporter.take() {
            reporter.abort();
        }
        for mut fleet in self.fleets.drain(..) {
            fleet.shutdown().await;
        }
        self.app.stop().await;
    }
}

/// The version `thing` reported in its execution of `job` (statusDetails, DescribeJobExecution).
async fn reported_version(iot: &aws_sdk_iot::Client, job: &str, thing: &str) -> Option<String> {
    let out = iot
        .describe_job_execution()
        .job_id(job)
        .thing_name(thing)
        .send()
        .await
        .ok()?;
    out.execution?
        .status_details?
        .details_map?
        .get("version")
        .cloned()
}

pub(crate) fn release(version: &str) -> Value {
    json!({"kind": "template", "template_id": "firmware", "parameters": {"version": version}, "version": version})
}

/// The rollout's state changes of waves, as (wave, to_state).
fn wave_history(events: &[RolloutEvent]) -> Vec<(i32, String)> {
    events
        .iter()
        .filter_map(|e| Some((e.wave?, e.to_state.clone())))
        .collect()
}

#[track_caller]
pub(crate) fn assert_wave(wave: &WaveStatus, size: i64, succeeded: i64) {
    assert_eq!((wave.size, wave.succeeded), (size, succeeded), "{wave:?}");
}

#[tokio::test]
async fn a_clean_four_wave_rollout_completes_in_order_with_every_gate_observed() {
    let mut s = Scenario::start(20).await;
    let request = json!({
        "rollout_id": "fw-2",
        "release": release("2.0.0"),
        "targets": {"things": s.things},
        "canary_things": ["sim-0007"],
        "waves": [{"count": 2}, {"percent": 25}, {"percent": 50}, {"percent": 100}],
        "gates": {
            "success_threshold_percent": 100,
            "soak_minutes": 30,
            "health_check": {"attribute": "firmwareVersion", "within_minutes": 10},
        },
    });
    let preview = s.preview(&request).await;
    let sizes: Vec<usize> = preview.waves.iter().map(|w| w.things.len()).collect();
    assert_eq!(sizes, [2, 5, 7, 6], "{preview:?}");
    assert!(preview.waves[0].things.contains(&"sim-0007".to_owned()));
    assert!(preview.unassigned.is_empty());
    // The preview is reproducible.
    assert_eq!(s.preview(&request).await, preview);
    let things = s.things.clone();
    s.devices(&things, 0.0);
    s.report_health(things.iter().cloned().collect()).await;
    s.create(&request).await;

    for (i, planned) in preview.waves.iter().enumerate() {
        let number = i + 1;
        let verifying = s
            .until("fw-2", &format!("wave {number} healthy"), |d| {
                d.waves[i].state == "verifying" && d.waves[i].healthy == d.waves[i].size
            })
            .await;
        let wave = &verifying.waves[i];
        assert_wave(
            wave,
            planned.things.len() as i64,
            planned.things.len() as i64,
        );
        assert_eq!(
            wave.job_id.as_deref(),
            Some(format!("fw-2-w{number}").as_str())
        );
        // The soak holds the next wave until the clock passes it.
        assert!(
            wave.gate
                .waiting_for
                .as_deref()
                .is_some_and(|w| w.contains("soaking")),
            "{wave:?}"
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
        let held = s.detail("fw-2").await;
        assert_eq!(held.waves[i].state, "verifying");
        if number < 4 {
            assert_eq!(held.waves[i + 1].state, "pending");
        }
        s.clock.advance(chrono::Duration::minutes(31));
        s.wave_state("fw-2", number, "passed").await;
    }
    let done = s.rollout_state("fw-2", "completed").await;
    // Each wave started only after the previous one passed, and took the previewed things.
    let history = wave_history(&done.events);
    let expected: Vec<(i32, String)> = (1..=4)
        .flat_map(|n| {
            ["running", "verifying", "passed"]
                .into_iter()
                .map(move |state| (n, state.to_owned()))
        })
        .collect();
    assert_eq!(history, expected);
    let jobs: Vec<&str> = done.jobs.iter().map(|j| j.job_id.as_str()).collect();
    assert_eq!(jobs, ["fw-2-w1", "fw-2-w2", "fw-2-w3", "fw-2-w4"]);
    for (i, planned) in preview.waves.iter().enumerate() {
        let job = s
            .app
            .job(&format!("fw-2-w{}", i + 1))
            .await
            .expect("the wave's job");
        let mut targeted: Vec<String> = job
            .executions
            .iter()
            .map(|e| e.thing_name.clone())
            .collect();
        targeted.sort();
        assert_eq!(targeted, planned.things);
    }
    // Every transition is in the audit log with its actor.
    let audit = get(
        &s.app,
        "/api/v1/audit?target=/api/v1/rollouts/fw-2&limit=500",
    )
    .await;
    let entries = audit.body["entries"].as_array().expect("entries").len();
    assert!(
        entries >= done.events.len(),
        "{entries} audit entries for {} events",
        done.events.len()
    );
    s.stop().await;
}

#[tokio::test]
async fn a_canary_with_thirty_percent_failures_pauses_before_wave_two() {
    let mut s = Scenario::start(20).await;
    let request = json!({
        "rollout_id": "fw-canary",
        "release": release("2.0.0"),
        "targets": {"things": s.things},
        "waves": [{"count": 10}, {"percent": 100}],
        "gates": {"max_failure_percent": 20, "success_threshold_percent": 80},
        "failure_policy": "pause",
    });
    let preview = s.preview(&request).await;
    let canary = &preview.waves[0].things;
    // 3 of the canary's 10 devices fail every job; the rest and wave 2 succeed.
    s.devices(&canary[..3], 1.0);
    s.devices(&canary[3..], 0.0);
    s.devices(&preview.waves[1].things, 0.0);
    s.create(&request).await;
    let paused = s.rollout_state("fw-canary", "paused").await;
    assert_eq!(paused.waves[0].state, "failed");
    assert_eq!(paused.waves[1].state, "pending");
    assert!(
        paused
            .rollout
            .state_reason
            .as_deref()
            .is_some_and(|r| r.contains("wave 1")),
        "{:?}",
        paused.rollout.state_reason
    );
    // Wave 2's job was never created.
    let described = s
        .app
        .server
        .iot_client
        .describe_job()
        .job_id("fw-canary-w2")
        .send()
        .await;
    assert!(described.is_err(), "wave 2 has a job: {described:?}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(s.detail("fw-canary").await.waves[1].state, "pending");
    // Retrying the failed devices sends them a job of their own; they fail again.
    let retried = post(&s.app, "/api/v1/rollouts/fw-canary/retry-failed", json!({})).await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.body);
    let retry = eventually("the retry job", WAIT, || s.app.job("fw-canary-w1-r1")).await;
    let mut retried_things: Vec<String> = retry
        .executions
        .iter()
        .map(|e| e.thing_name.clone())
        .collect();
    retried_things.sort();
    assert_eq!(retried_things, canary[..3]);
    s.until("fw-canary", "the retry to fail", |d| {
        d.rollout.state == "paused" && d.waves[0].state == "failed" && d.jobs.len() == 2
    })
    .await;
    // Cancel needs a reason, then ends the rollout.
    post(&s.app, "/api/v1/rollouts/fw-canary/cancel", json!({}))
        .await
        .assert_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("reason"),
        );
    let canceled: RolloutDetail = post(
        &s.app,
        "/api/v1/rollouts/fw-canary/cancel",
        json!({"reason": "canary failed"}),
    )
    .await
    .json();
    assert_eq!(canceled.rollout.state, "canceled");
    assert_eq!(canceled.waves[1].state, "canceled");
    let last = canceled.events.last().expect("events");
    assert_eq!(last.actor, "dev-admin");
    assert!(
        last.reason
            .as_deref()
            .is_some_and(|r| r.contains("canary failed"))
    );
    s.stop().await;
}

#[tokio::test]
async fn the_rollback_policy_returns_updated_devices_to_the_previous_version() {
    let mut s = Scenario::start(10).await;
    let request = json!({
        "rollout_id": "fw-rb",
        "release": release("2.0.0"),
        "previous_release": release("1.0.0"),
        "targets": {"things": s.things},
        "waves": [{"count": 4}, {"percent": 100}],
        "gates": {"success_threshold_percent": 90},
        "failure_policy": "rollback",
    });
    let preview = s.preview(&request).await;
    let (first, second) = (&preview.waves[0].things, &preview.waves[1].things);
    // Wave 2 fails half its devices; they fail the rollback job too, which is fine: they
    // never left the old version. The rollback targets only the 4 + 3 that updated.
    s.devices(first, 0.0);
    s.devices(&second[..3], 0.0);
    s.devices(&second[3..], 1.0);
    s.create(&request).await;
    let done = s.rollout_state("fw-rb", "rolled_back").await;
    assert_eq!(done.waves[1].state, "failed");
    let rollback = s.app.job("fw-rb-rollback").await.expect("the rollback job");
    let mut updated: Vec<String> = first.iter().chain(&second[..3]).cloned().collect();
    updated.sort();
    let mut rolled: Vec<String> = rollback
        .executions
        .iter()
        .map(|e| e.thing_name.clone())
        .collect();
    rolled.sort();
    assert_eq!(rolled, updated);
    assert!(
        rollback.executions.iter().all(|e| e.status == "SUCCEEDED"),
        "{rollback:?}"
    );
    // Each updated device reports the previous version again.
    for thing in &updated {
        let version = reported_version(&s.app.server.iot_client, "fw-rb-rollback", thing).await;
        assert_eq!(version.as_deref(), Some("1.0.0"), "{thing}");
    }
    s.stop().await;
}

#[tokio::test]
async fn an_operator_rolls_back_on_demand_with_a_reason() {
    let mut s = Scenario::start(6).await;
    let targets = s.things.clone();
    let request = move |id: &str, previous: bool| {
        let mut r = json!({
            "rollout_id": id,
            "release": release("2.0.0"),
            "targets": {"things": targets},
            "waves": [{"count": 2, "gates": {"approval": true}}, {"percent": 100}],
        });
        if previous {
            r["previous_release"] = release("1.0.0");
        }
        r
    };
    let things = s.things.clone();
    s.devices(&things, 0.0);
    // Without a previous release there is nothing to roll back to.
    s.create(&request("fw-none", false)).await;
    post(
        &s.app,
        "/api/v1/rollouts/fw-none/rollback",
        json!({"reason": "bad build"}),
    )
    .await
    .assert_error(StatusCode::CONFLICT, "conflict", None);
    post(
        &s.app,
        "/api/v1/rollouts/fw-none/cancel",
        json!({"reason": "next test"}),
    )
    .await;

    let preview = s.preview(&request("fw-manual", true)).await;
    let updated = preview.waves[0].things.clone();
    assert_eq!(updated.len(), 2, "{preview:?}");
    let created = s.create(&request("fw-manual", true)).await;
    s.wave_state("fw-manual", 1, "awaiting_approval").await;
    // A rollback says why.
    post(&s.app, "/api/v1/rollouts/fw-manual/rollback", json!({}))
        .await
        .assert_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("reason"),
        );
    let answer = post(
        &s.app,
        "/api/v1/rollouts/fw-manual/rollback",
        json!({"reason": "field reports of boot loops"}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let done = s.rollout_state("fw-manual", "rolled_back").await;
    assert!(
        done.events
            .iter()
            .any(|e| e.reason.as_deref().is_some_and(
                |r| r.contains("rolled back by dev-admin: field reports of boot loops")
            )),
        "{done:#?}"
    );
    // Wave 2 never started; the canary's two things got the previous release back.
    assert_eq!(done.waves[1].job_id, None, "{done:#?}");
    let rollback = s
        .app
        .job("fw-manual-rollback")
        .await
        .expect("the rollback job");
    let mut rolled: Vec<String> = rollback
        .executions
        .iter()
        .map(|e| e.thing_name.clone())
        .collect();
    rolled.sort();
    let mut expected = updated.clone();
    expected.sort();
    assert_eq!(rolled, expected);
    for thing in &updated {
        let version = reported_version(&s.app.server.iot_client, "fw-manual-rollback", thing).await;
        assert_eq!(version.as_deref(), Some("1.0.0"), "{thing}");
    }
    assert_eq!(
        created
            .rollout
            .previous_release
            .map(|r| r.version)
            .as_deref(),
        Some("1.0.0")
    );
    s.stop().await;
}

#[tokio::test]
async fn the_health_check_holds_a_wave_whose_devices_never_report_the_new_version() {
    let mut s = Scenario::start(6).await;
    let request = json!({
        "rollout_id": "fw-health",
        "release": release("2.0.0"),
        "targets": {"things": s.things},
        "waves": [{"count": 3}, {"percent": 100}],
        "gates": {"health_check": {"attribute": "firmwareVersion", "within_minutes": 10}},
    });
    let preview = s.preview(&request).await;
    let first = &preview.waves[0].things;
    let things = s.things.clone();
    s.devices(&things, 0.0);
    // Two of wave 1's devices come back healthy; the third never reports its version.
    s.report_health(first[..2].iter().cloned().collect()).await;
    s.create(&request).await;
    let held = s
        .until("fw-health", "two healthy devices", |d| {
            d.waves[0].state == "verifying" && d.waves[0].healthy == 2
        })
        .await;
    assert_wave(&held.waves[0], 3, 3);
    assert!(
        held.waves[0]
            .gate
            .waiting_for
            .as_deref()
            .is_some_and(|w| w.contains("health check")),
        "{:?}",
        held.waves[0].gate
    );
    s.clock.advance(chrono::Duration::minutes(9));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let still = s.detail("fw-health").await;
    assert_eq!(
        (still.waves[0].state.as_str(), still.waves[1].state.as_str()),
        ("verifying", "pending")
    );
    // Past the deadline the wave fails and the rollout pauses.
    s.clock.advance(chrono::Duration::minutes(2));
    let paused = s.rollout_state("fw-health", "paused").await;
    assert_eq!(paused.waves[0].state, "failed");
    assert_eq!(paused.waves[1].state, "pending");
    assert!(
        paused
            .rollout
            .state_reason
            .as_deref()
            .is_some_and(|r| r.contains("health check")),
        "{:?}",
        paused.rollout.state_reason
    );
    // The operator accepts the wave; wave 2 goes ahead.
    let resumed = post(
        &s.app,
        "/api/v1/rollouts/fw-health/resume",
        json!({"reason": "known slow reporter"}),
    )
    .await;
    assert_eq!(resumed.status, StatusCode::OK, "{}", resumed.body);
    s.wave_state("fw-health", 2, "running").await;
    s.stop().await;
}

#[tokio::test]
async fn an_approval_gate_waits_for_an_operator() {
    let mut s = Scenario::start(4).await;
    let request = json!({
        "rollout_id": "fw-approve",
        "release": release("2.0.0"),
        "targets": {"things": s.things},
        "waves": [{"count": 1, "gates": {"approval": true}}, {"percent": 100}],
    });
    let things = s.things.clone();
    s.devices(&things, 0.0);
    s.create(&request).await;
    s.wave_state("fw-approve", 1, "awaiting_approval").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let waiting = s.detail("fw-approve").await;
    assert_eq!(waiting.waves[1].state, "pending");
    // A viewer (here through a viewer-scoped API token) may look but not approve.
    let token = post(
        &s.app,
        "/api/v1/tokens",
        json!({"name": "watcher", "role": "viewer", "expires_in_days": 1}),
    )
    .await;
    assert_eq!(token.status, StatusCode::CREATED, "{}", token.body);
    let secret = token.body["secret"].as_str().expect("a secret").to_owned();
    let refused = s
        .app
        .http
        .post(s.app.url("/api/v1/rollouts/fw-approve/approve"))
        .bearer_auth(&secret)
        .json(&json!({"reason": "looks fine to me"}))
        .send()
        .await
        .expect("the approve request");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let still = s.detail("fw-approve").await;
    assert_eq!(still.waves[0].state, "awaiting_approval");
    assert_eq!(still.waves[0].approved_by, None);
    // The approver is the signed-in user (development sign-in: `dev-admin`).
    let approved: RolloutDetail = post(
        &s.app,
        "/api/v1/rollouts/fw-approve/approve",
        json!({"reason": "canary looks fine"}),
    )
    .await
    .json();
    assert_eq!(approved.waves[0].state, "passed");
    assert_eq!(approved.waves[0].approved_by.as_deref(), Some("dev-admin"));
    post(&s.app, "/api/v1/rollouts/fw-approve/approve", json!({}))
        .await
        .assert_error(StatusCode::CONFLICT, "conflict", None);
    s.rollout_state("fw-approve", "completed").await;
    s.stop().await;
}

#[tokio::test]
async fn a_wave_adopts_the_job_an_earlier_attempt_created_instead_of_creating_another() {
    // The state a crash between "create job" and "record job" leaves: the wave's job exists
    // in IoT, the rollout knows nothing of it.
    let mut s = Scenario::start(4).await;
    let things = s.things.clone();
    s.devices(&things, 0.0);
    let made = post(
        &s.app,
        "/api/v1/jobs",
        json!({"job_id": "fw-adopt-w1", "things": ["sim-0001", "sim-0002"],
               "template_id": "firmware", "parameters": {"version": "2.0.0"}}),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    s.create(&json!({
        "rollout_id": "fw-adopt",
        "release": release("2.0.0"),
        "targets": {"things": s.things},
        "waves": [{"count": 2}, {"percent": 100}],
    }))
    .await;
    let done = s.rollout_state("fw-adopt", "completed").await;
    assert_wave(&done.waves[0], 2, 2);
    let ids = crate::api_support::iot_job_ids(&s.app).await;
    assert_eq!(ids, ["fw-adopt-w1", "fw-adopt-w2"]);
    s.stop().await;
}

#[tokio::test]
async fn bad_rollouts_get_field_messages_and_change_nothing() {
    let s = Scenario::start(2).await;
    let answer = post(
        &s.app,
        "/api/v1/rollouts",
        json!({
            "rollout_id": "x".repeat(41),
            "release": {"template_id": "nope", "version": ""},
            "targets": {"things": ["ghost"]},
            "waves": [{"count": 0}, {"count": 1, "percent": 5}],
            "gates": {"success_threshold_percent": 101},
            "failure_policy": "rollback",
            "schedule": {"time_zone": "Mars/Olympus"},
            "webhooks": [{"url": "ftp://x", "secret": "short"}],
        }),
    )
    .await;
    answer.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("rollout_id"),
    );
    let fields: BTreeSet<&str> = answer.body["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    for field in [
        "release.version",
        "release.template_id",
        "previous_release",
        "waves[0].count",
        "waves[1]",
        "gates.success_threshold_percent",
        "schedule.time_zone",
        "webhooks[0].url",
        "webhooks[0].secret",
    ] {
        assert!(
            fields.contains(field),
            "no message on {field}: {}",
            answer.body
        );
    }
    post(&s.app, "/api/v1/rollouts", json!({"rollout_id": "r", "release": release("2"), "targets": {"things": ["ghost"]}, "waves": [{"count": 1}]}))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", Some("targets.things"));
    post(&s.app, "/api/v1/rollouts", json!({"nonsense": true}))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", None);
    let list = get(&s.app, "/api/v1/rollouts").await;
    assert_eq!(list.body["rollouts"], json!([]));
    get(&s.app, "/api/v1/rollouts/none").await.assert_error(
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert!(crate::api_support::iot_job_ids(&s.app).await.is_empty());
    s.stop().await;
}

/// One webhook delivery as the receiver saw it.
#[derive(Debug, Clone)]
struct Delivery {
    event_id: i64,
    signature: String,
    body: Vec<u8>,
}

/// A webhook receiver on loopback: records every request; answers 503 to the first one (so
/// the server must retry it) and 200 to the rest.
async fn webhook_receiver() -> (String, Arc<std::sync::Mutex<Vec<Delivery>>>, JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let task = tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            let (head, body) = loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break (String::new(), Vec::new()),
                    Ok(n) => data.extend_from_slice(&buf[..n]),
                }
                if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&data[..end]).to_string();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    while data.len() < end + 4 + length {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => data.extend_from_slice(&buf[..n]),
                        }
                    }
                    break (head, data[end + 4..].to_vec());
                }
            };
            let header = |name: &str| {
                head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                })
            };
            let status = if first {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            if !first {
                record.lock().expect("lock").push(Delivery {
                    event_id: header("x-flotilla-event-id")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(-1),
                    signature: header("x-flotilla-signature").unwrap_or_default(),
                    body,
                });
            }
            first = false;
            let _ = stream
                .write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await;
            let _ = stream.shutdown().await;
        }
    });
    (url, seen, task)
}

/// Whether `signature` is `t=…,v1=…` with a valid HMAC-SHA256 of `t.body` under `secret`.
fn signed(secret: &str, signature: &str, body: &[u8]) -> bool {
    use hmac::{Hmac, Mac};
    let Some((t, v1)) = signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
    else {
        return false;
    };
    let Ok(expected) = hex::decode(v1) else {
        return false;
    };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

#[tokio::test]
async fn a_webhook_receiver_gets_every_state_change_once_with_a_valid_signature() {
    let mut s = Scenario::start(4).await;
    let (url, seen, receiver) = webhook_receiver().await;
    let secret = "a-webhook-secret-of-some-length";
    let things = s.things.clone();
    s.devices(&things, 0.0);
    s.create(&json!({
        "rollout_id": "fw-hook",
        "release": release("2.0.0"),
        "targets": {"things": s.things},
        "waves": [{"count": 2}, {"percent": 100}],
        "webhooks": [{"url": url, "secret": secret}],
    }))
    .await;
    let done = s.rollout_state("fw-hook", "completed").await;
    let expected: Vec<i64> = done.events.iter().map(|e| e.id).collect();
    let deliveries = eventually("every event delivered", WAIT, || async {
        let seen = seen.lock().expect("lock").clone();
        (seen.len() >= expected.len()).then_some(seen)
    })
    .await;
    // A moment more: a duplicate would arrive now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let deliveries_after = seen.lock().expect("lock").clone();
    assert_eq!(
        deliveries_after.len(),
        deliveries.len(),
        "a duplicate arrived"
    );
    let mut ids: Vec<i64> = deliveries.iter().map(|d| d.event_id).collect();
    ids.sort();
    assert_eq!(ids, expected, "each event exactly once");
    for delivery in &deliveries {
        assert!(
            signed(secret, &delivery.signature, &delivery.body),
            "{delivery:?}"
        );
        assert!(!signed(
            "another-secret-entirely",
            &delivery.signature,
            &delivery.body
        ));
        let event: RolloutEvent = serde_json::from_slice(&delivery.body).expect("an event");
        assert_eq!(event.id, delivery.event_id);
        let stored = done
            .events
            .iter()
            .find(|e| e.id == event.id)
            .expect("a stored event");
        assert_eq!(&event, stored);
    }
    receiver.abort();
    s.stop().await;
}

/// `flotilla serve` in local mode as a child process on `database_url`, with six simulated
/// devices, and the dashboard's address.
async fn serve_child(
    database_url: &str,
    artifacts: &std::path::Path,
) -> (tokio::process::Child, String) {
    let flags = [
        "--mqtt-listen",
        "127.0.0.1:0",
        "--mqtts-listen",
        "127.0.0.1:0",
        "--s3-listen",
        "127.0.0.1:0",
        "--simulate",
        "6",
        "--reconcile-seconds",
        "1",
        "--rollout-tick-ms",
        "200",
        "--artifact-dir",
    ];
    let mut args: Vec<&std::ffi::OsStr> = flags.iter().map(std::ffi::OsStr::new).collect();
    args.push(artifacts.as_os_str());
    crate::helpers::serve_process(database_url, &args, &[]).await
}

/// The firmware template and then the rollout `request`, through the HTTP API at `base`.
pub(crate) async fn create_over_http(http: &reqwest::Client, base: &str, request: Value) {
    let template = http
        .post(format!("{base}/api/v1/templates"))
        .json(&json!({
            "template_id": "firmware",
            "document": {"operation": "install", "softwareVersion": "${aws:iot:parameter:version}"},
            "parameters": [{"name": "version", "type": "string"}],
        }))
        .send()
        .await
        .expect("POST template");
    assert_eq!(template.status(), StatusCode::CREATED);
    let created = http
        .post(format!("{base}/api/v1/rollouts"))
        .json(&request)
        .send()
        .await
        .expect("POST rollout");
    assert_eq!(created.status(), StatusCode::CREATED);
}

/// `GET /api/v1/jobs`: every job id, sorted.
pub(crate) async fn job_ids_over_http(http: &reqwest::Client, base: &str) -> Vec<String> {
    let jobs: Value = http
        .get(format!("{base}/api/v1/jobs"))
        .send()
        .await
        .expect("GET jobs")
        .json()
        .await
        .expect("jobs");
    let mut ids: Vec<String> = jobs["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["job_id"].as_str().map(str::to_owned))
        .collect();
    ids.sort_unstable();
    ids
}

/// Rollout `id` read through the HTTP API at `base` once `until` holds (`what` names it).
pub(crate) async fn rollout_over_http(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    what: &str,
    until: impl Fn(&RolloutDetail) -> bool,
) -> RolloutDetail {
    eventually(what, WAIT, || async {
        let response = http
            .get(format!("{base}/api/v1/rollouts/{id}"))
            .send()
            .await
            .ok()?;
        response
            .json::<RolloutDetail>()
            .await
            .ok()
            .filter(|d| until(d))
    })
    .await
}

#[tokio::test]
async fn a_server_killed_mid_wave_resumes_without_a_duplicate_job() {
    let db = crate::helpers::TestDb::create().await;
    let artifacts = std::env::temp_dir().join(format!("flotilla-test-artifacts-{}", db.name));
    let http = reqwest::Client::new();
    let (mut child, base) = serve_child(&db.url, &artifacts).await;
    let things: Vec<String> = (1..=6).map(simulator::thing_name).collect();
    create_over_http(
        &http,
        &base,
        json!({
            "rollout_id": "fw-kill",
            "release": release("2.0.0"),
            "targets": {"things": things},
            "waves": [{"count": 3}, {"percent": 100}],
        }),
    )
    .await;
    rollout_over_http(&http, &base, "fw-kill", "wave 1 to run", |d| {
        d.waves[0].state == "running"
    })
    .await;
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("reaping the server");

    let (mut child, base) = serve_child(&db.url, &artifacts).await;
    let done = rollout_over_http(
        &http,
        &base,
        "fw-kill",
        "the rollout to complete after the restart",
        |d| d.rollout.state == "completed",
    )
    .await;
    assert_wave(&done.waves[0], 3, 3);
    assert_wave(&done.waves[1], 3, 3);
    assert_eq!(
        job_ids_over_http(&http, &base).await,
        ["fw-kill-w1", "fw-kill-w2"]
    );
    let running = done
        .events
        .iter()
        .filter(|e| e.to_state == "running" && e.wave == Some(1))
        .count();
    assert_eq!(running, 1, "wave 1 started once: {:?}", done.events);
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;
    let _ = std::fs::remove_dir_all(&artifacts);
    db.drop_database().await;
}

#[tokio::test]
async fn a_continuous_rollout_gives_things_joining_its_group_the_release() {
    let mut s = Scenario::start(4).await;
    let things = s.things.clone();
    s.devices(&things, 0.0);
    crate::api_support::create_group(&s.app, "pumps", &["sim-0001", "sim-0002", "sim-0003"]).await;
    s.create(&json!({
        "rollout_id": "fw-cont",
        "release": release("2.0.0"),
        "targets": {"thing_groups": ["pumps"]},
        "waves": [{"percent": 100}],
        "continuous": true,
    }))
    .await;
    let following = s.rollout_state("fw-cont", "following").await;
    assert_wave(&following.waves[0], 3, 3);
    s.app
        .server
        .iot_client
        .add_thing_to_thing_group()
        .thing_group_name("pumps")
        .thing_name("sim-0004")
        .send()
        .await
        .expect("AddThingToThingGroup");
    let job = eventually("the newcomer's job to succeed", WAIT, || async {
        s.app
            .job("fw-cont-c1")
            .await
            .filter(|j| j.executions.iter().any(|e| e.status == "SUCCEEDED"))
    })
    .await;
    let targeted: Vec<&str> = job
        .executions
        .iter()
        .map(|e| e.thing_name.as_str())
        .collect();
    assert_eq!(targeted, ["sim-0004"]);
    s.stop().await;
}

#[tokio::test]
async fn waves_wait_for_their_maintenance_window_in_local_time() {
    let mut s = Scenario::start(4).await;
    // The clock stands at a Monday noon in Madrid; the window opens on Sundays at 22:00.
    s.clock.set(
        chrono::DateTime::parse_from_rfc3339("2026-12-07T11:00:00Z")
            .expect("time")
            .with_timezone(&Utc),
    );
    let things = s.things.clone();
    s.devices(&things, 0.0);
    s.create(&json!({
        "rollout_id": "fw-window",
        "release": release("2.0.0"),
        "targets": {"things": s.things},
        "waves": [{"count": 2}, {"percent": 100}],
        "schedule": {"time_zone": "Europe/Madrid",
                     "windows": [{"days": ["sun"], "start": "22:00", "duration_minutes": 120}]},
    }))
    .await;
    let waiting = s
        .until("fw-window", "the wave to wait for its window", |d| {
            d.rollout
                .state_reason
                .as_deref()
                .is_some_and(|r| r.contains("window"))
        })
        .await;
    assert_eq!(waiting.waves[0].state, "pending");
    let reason = waiting.rollout.state_reason.as_deref().unwrap_or_default();
    assert!(reason.contains("2026-12-13T22:00:00+01:00"), "{reason}");
    let window = waiting.next_window.expect("the next window");
    assert_eq!(window.utc, "2026-12-13T21:00:00Z");
    assert_eq!(window.local, "2026-12-13T22:00:00+01:00");
    // An operator may start the first wave now; the second waits for the window again.
    let promoted = post(
        &s.app,
        "/api/v1/rollouts/fw-window/promote",
        json!({"reason": "hotfix"}),
    )
    .await;
    assert_eq!(promoted.status, StatusCode::OK, "{}", promoted.body);
    s.wave_state("fw-window", 1, "passed").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(s.detail("fw-window").await.waves[1].state, "pending");
    // Inside the window the rollout goes on by itself.
    s.clock.set(
        chrono::DateTime::parse_from_rfc3339("2026-12-13T21:30:00Z")
            .expect("time")
            .with_timezone(&Utc),
    );
    s.rollout_state("fw-window", "completed").await;
    s.stop().await;
}

/// The backend holding the orchestrator's leadership lock, if any.
async fn leader(pool: &sqlx::PgPool) -> Vec<i32> {
    // pg_locks shows a 64-bit advisory key as two 32-bit halves; each test database has
    // its own leader.
    sqlx::query_scalar(
        "select pid from pg_locks where locktype = 'advisory' and granted
           and classid::bigint = $1 and objid::bigint = $2
           and database = (select oid from pg_database where datname = current_database())",
    )
    .bind(0x666c_6f74_i64)
    .bind(0x726f_6c6c_i64)
    .fetch_all(pool)
    .await
    .expect("reading pg_locks")
}

#[tokio::test]
async fn one_replica_orchestrates_and_another_takes_over_when_it_stops() {
    let s = Scenario::start(0).await;
    let pool = sqlx::PgPool::connect(&s.app.db.url)
        .await
        .expect("database");
    let first = eventually("a leader", WAIT, || async {
        let pids = leader(&pool).await;
        (pids.len() == 1).then(|| pids[0])
    })
    .await;
    let replica = s
        .app
        .start_replica(RolloutSettings {
            tick: Duration::from_millis(200),
            clock: s.clock.clone(),
        })
        .await;
    // The replica campaigns (every second at most) and loses while the first one leads.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(leader(&pool).await, [first]);
    let Scenario { app, .. } = s;
    app.server.shutdown().await;
    let second = eventually("the replica to take over", WAIT, || async {
        let pids = leader(&pool).await;
        (pids.len() == 1 && pids[0] != first).then(|| pids[0])
    })
    .await;
    assert_ne!(second, first);
    replica.shutdown().await;
    for suffix in ["", "-replica"] {
        let _ = std::fs::remove_dir_all(
            std::env::temp_dir().join(format!("flotilla-test-artifacts-{}{suffix}", app.db.name)),
        );
    }
    pool.close().await;
    app.db.drop_database().await;
}
