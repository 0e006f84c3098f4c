//! Horizontal scale: two `flotilla serve` processes on one database behave as one. Both run
//! in AWS mode against one engine that stands in for the AWS account (SigV4 control plane,
//! job events over mutual TLS), so killing a server kills nothing the devices need — as on
//! AWS, where the devices talk to IoT Core, not to the dashboard.
//!
//! Live changes reach every replica's stream clients through PostgreSQL `LISTEN/NOTIFY`;
//! exactly one replica orchestrates rollouts (an advisory lock on a session of its own), and a
//! SIGKILLed leader's lock dies with its connection, so the other takes over.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::time::{Duration, Instant};

use flotilla_agent::simulator::{self, Profile};
use reqwest::StatusCode;
use serde_json::json;

use crate::broker_tls::event_reader;
use crate::helpers::{TestDb, eventually, metric, serve_process};
use crate::projection::SseClient;
use crate::rollouts::{assert_wave, create_over_http, release, rollout_over_http};
use crate::test_engine::TestEngine;

const WAIT: Duration = Duration::from_secs(60);

/// How long the other replica may take to orchestrate after the leader dies.
const TAKEOVER: Duration = Duration::from_secs(10);

/// `flotilla serve --iot aws` as a child process on `database_url`, its IoT endpoint the
/// engine's control plane and its event subscriber on the engine's TLS listener.
async fn aws_replica(database_url: &str, engine: &TestEngine) -> (tokio::process::Child, String) {
    let (ca, certificate, key) = event_reader(engine).await;
    let endpoint = format!("http://{}", engine.engine.http_addr);
    let flags: [&OsStr; 20] = [
        "--iot".as_ref(),
        "aws".as_ref(),
        "--iot-endpoint".as_ref(),
        endpoint.as_ref(),
        "--iot-client-cert".as_ref(),
        certificate.as_os_str(),
        "--iot-client-key".as_ref(),
        key.as_os_str(),
        "--iot-ca".as_ref(),
        ca.as_os_str(),
        "--rollout-tick-ms".as_ref(),
        "200".as_ref(),
        "--reconcile-seconds".as_ref(),
        "1".as_ref(),
        // AWS mode refuses development sign-in: the tests act as an admin behind a proxy.
        "--auth".as_ref(),
        "proxy".as_ref(),
        "--trusted-proxy".as_ref(),
        "127.0.0.1".as_ref(),
        "--group-role".as_ref(),
        "flotilla-admins=admin".as_ref(),
    ];
    serve_process(
        database_url,
        &flags,
        &[
            // The engine's credentials, through the default chain as on AWS.
            ("AWS_ACCESS_KEY_ID", "FLOTILLATEST"),
            ("AWS_SECRET_ACCESS_KEY", "engine-api-test-secret"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    )
    .await
}

/// Whether the replica at `base` says it orchestrates (`None` while it does not answer).
async fn leads(base: &str) -> Option<bool> {
    metric(base, "flotilla_rollout_leader")
        .await
        .map(|v| v == 1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_server_processes_act_as_one() {
    let engine = TestEngine::start().await;
    let things: Vec<String> = (1..=6).map(simulator::thing_name).collect();
    for thing in things
        .iter()
        .map(String::as_str)
        .chain(["replica-job-thing"])
    {
        engine.create_thing(thing).await;
    }
    let mqtt = engine.engine.mqtt_addr;
    let mut fleet = simulator::start_fleet(
        &mqtt.ip().to_string(),
        mqtt.port(),
        things.clone(),
        Profile {
            min_work: Duration::from_millis(1500),
            max_work: Duration::from_millis(2500),
            ..Profile::default()
        },
        None,
    );
    let db = TestDb::create().await;
    let http = crate::helpers::admin_client();

    // A starts first and leads; B campaigns and loses while A lives.
    let (mut a, a_base) = aws_replica(&db.url, &engine).await;
    eventually("replica A to lead", WAIT, || async {
        leads(&a_base).await.filter(|l| *l)
    })
    .await;
    let (mut b, b_base) = aws_replica(&db.url, &engine).await;
    eventually("replica B to answer", WAIT, || leads(&b_base)).await;
    // B campaigns on every tick of its own; while A ticks five more times (a second at
    // 200 ms), B has had as many chances to take over.
    let ticks = || metric(&a_base, "flotilla_rollout_ticks_total");
    let a_ticks = ticks().await.expect("A's tick count");
    eventually("replica A to tick five more times", WAIT, || async {
        ticks().await.filter(|t| *t >= a_ticks + 5.0)
    })
    .await;
    assert_eq!(
        leads(&b_base).await,
        Some(false),
        "B must not lead beside A"
    );
    assert_eq!(
        metric(&b_base, "flotilla_rollout_ticks_total").await,
        Some(0.0),
        "only the leader ticks"
    );

    // A job created through A reaches a stream client of B.
    let mut on_b = SseClient::connect(&b_base, "", None).await;
    let created = http
        .post(format!("{a_base}/api/v1/jobs"))
        .json(&json!({"job_id": "made-on-a", "things": ["replica-job-thing"], "document": {"op": "x"}}))
        .send()
        .await
        .expect("POST /api/v1/jobs on A");
    assert_eq!(created.status(), StatusCode::CREATED);
    let seen = on_b
        .until(|e| e.event == "job" && e.data["job_id"] == "made-on-a")
        .await;
    assert_eq!(seen.last().expect("an event").data["counts"]["queued"], 1);
    drop(on_b);

    // A rollout created through B is orchestrated by A.
    create_over_http(
        &http,
        &b_base,
        json!({
            "rollout_id": "fw-ha",
            "release": release("2.0.0"),
            "targets": {"things": things},
            "waves": [{"count": 2}, {"count": 2}, {"percent": 100}],
        }),
    )
    .await;
    rollout_over_http(&http, &b_base, "fw-ha", "wave 1 to run", |d| {
        d.waves[0].state == "running"
    })
    .await;

    // The leader dies mid-wave without a chance to let go of anything.
    a.start_kill().expect("SIGKILL A");
    a.wait().await.expect("reaping A");
    let killed = Instant::now();
    eventually("B to take over", TAKEOVER, || async {
        leads(&b_base).await.filter(|l| *l)
    })
    .await;
    eprintln!("B took over {:?} after A died", killed.elapsed());
    let done = rollout_over_http(
        &http,
        &b_base,
        "fw-ha",
        "the rollout to complete on B",
        |d| d.rollout.state == "completed",
    )
    .await;
    assert!(metric(&b_base, "flotilla_rollout_ticks_total").await > Some(0.0));

    // Every wave ran once: one job each, every thing in exactly one of them, and no state of
    // a wave or of the rollout entered twice.
    for wave in &done.waves {
        assert_wave(wave, 2, 2);
    }
    let mut jobs: Vec<String> = engine
        .iot
        .list_jobs()
        .send()
        .await
        .expect("ListJobs")
        .jobs()
        .iter()
        .filter_map(|j| j.job_id().map(str::to_owned))
        .filter(|id| id.starts_with("fw-ha"))
        .collect();
    jobs.sort();
    assert_eq!(jobs, ["fw-ha-w1", "fw-ha-w2", "fw-ha-w3"]);
    let mut targeted = Vec::new();
    for job in &jobs {
        let executions = engine
            .iot
            .list_job_executions_for_job()
            .job_id(job)
            .send()
            .await
            .expect("ListJobExecutionsForJob");
        for summary in executions.execution_summaries() {
            let arn = summary.thing_arn().unwrap_or_default();
            targeted.push(arn.rsplit('/').next().unwrap_or_default().to_owned());
        }
    }
    targeted.sort();
    assert_eq!(targeted, things, "each thing in exactly one wave's job");
    let mut entered = BTreeSet::new();
    for event in &done.events {
        let key = (event.subject.clone(), event.wave, event.to_state.clone());
        assert!(
            entered.insert(key),
            "entered twice: {event:?}\n{:?}",
            done.events
        );
    }

    b.start_kill().expect("SIGKILL B");
    let _ = b.wait().await;
    fleet.shutdown().await;
    db.drop_database().await;
    engine.stop().await;
}
