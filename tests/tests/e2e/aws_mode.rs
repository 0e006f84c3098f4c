//! The server in AWS mode (`--iot aws`) against an AWS-compatible peer: the embedded engine
//! standing in for an account, reached only as AWS is reached — the control plane with
//! SigV4 through `aws-sdk-iot`, job events over MQTT with mutual TLS and a certificate whose
//! IoT policy allows reading `$aws/events/…` — and two such replicas on one database.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use flotilla_server::app::{self, AwsEvents, IotMode, RunningServer, ServeConfig};
use serde_json::json;

use crate::broker_tls::event_reader;
use crate::helpers::{TestDb, eventually};
use crate::projection::SseClient;
use crate::test_engine::TestEngine;

/// A server in AWS mode on `database_url`, its IoT endpoint the engine's control plane with
/// the engine's credentials, and, when given, its event subscriber on the engine's TLS
/// listener (found with DescribeEndpoint, as on AWS).
async fn start_aws(
    database_url: &str,
    engine: &TestEngine,
    events: Option<(PathBuf, PathBuf, PathBuf)>,
) -> RunningServer {
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("address");
    app::start(ServeConfig {
        database_url: database_url.to_owned(),
        listen: loopback,
        iot: IotMode::Aws {
            iot_endpoint: Some(format!("http://{}", engine.engine.http_addr)),
            s3_endpoint: None,
            events: events.map(|(ca, client_certificate, client_key)| AwsEvents {
                endpoint: None,
                port: 8883,
                client_certificate,
                client_key,
                ca,
                client_id_prefix: "flotilla-server-".into(),
            }),
            credentials: Some(aws_credential_types::Credentials::new(
                "FLOTILLATEST",
                "engine-api-test-secret",
                None,
                None,
                "test",
            )),
        },
        region: "us-east-1".into(),
        static_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../static"),
        // Long, so that what the test sees arrived by events and API calls, not by polling.
        reconcile_every: Duration::from_secs(300),
        reconcile_budget: 50.0,
        artifacts: Default::default(),
        rollouts: Default::default(),
        auth: crate::helpers::proxy_auth(),
    })
    .await
    .expect("starting a server in AWS mode")
}

/// A line of the server's `/metrics`, by its name and labels.
async fn metric(server: &RunningServer, name: &str) -> Option<f64> {
    crate::helpers::metric(&format!("http://{}", server.addr), name).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_mode_follows_job_events_over_mutual_tls() {
    let engine = TestEngine::start().await;
    let files = event_reader(&engine).await;
    let db = TestDb::create().await;
    let server = start_aws(&db.url, &engine, Some(files)).await;
    eventually(
        "the event subscriber connected and subscribed",
        Duration::from_secs(20),
        || async {
            (metric(&server, "flotilla_event_subscriber_up").await == Some(1.0)).then_some(())
        },
    )
    .await;

    // A job made and finished behind the server's back, by another client and a device.
    engine
        .iot
        .create_thing()
        .thing_name("aws-mode-1")
        .send()
        .await
        .expect("CreateThing");
    let (device, _replies) = engine
        .device(
            "aws-mode-1",
            &["$aws/things/aws-mode-1/jobs/aws-mode-job/update/accepted"],
        )
        .await;
    engine
        .create_job("aws-mode-job", r#"{"op":"update"}"#, &["aws-mode-1"])
        .await;
    device
        .publish(
            "$aws/things/aws-mode-1/jobs/aws-mode-job/update",
            rumqttc::QoS::AtLeastOnce,
            false,
            json!({"status": "SUCCEEDED"}).to_string(),
        )
        .await
        .expect("publishing the update");

    let base = format!("http://{}", server.addr);
    let job: flotilla_api::JobDetail = eventually(
        "the job's success in the projection",
        Duration::from_secs(30),
        || async {
            let job: flotilla_api::JobDetail = crate::helpers::admin_client()
                .get(format!("{base}/api/v1/jobs/aws-mode-job"))
                .send()
                .await
                .ok()?
                .error_for_status()
                .ok()?
                .json()
                .await
                .ok()?;
            (job.job.counts.succeeded == 1).then_some(job)
        },
    )
    .await;
    assert_eq!(job.executions[0].status, "SUCCEEDED");
    let ingested = metric(&server, "flotilla_events_ingested_total{source=\"aws\"}")
        .await
        .expect("the ingestion counter");
    assert!(ingested >= 1.0, "no event came over MQTT");

    drop(device);
    server.shutdown().await;
    db.drop_database().await;
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_aws_mode_replicas_on_one_database_share_live_changes() {
    let engine = TestEngine::start().await;
    let db = TestDb::create().await;
    let a = start_aws(&db.url, &engine, Some(event_reader(&engine).await)).await;
    let b = start_aws(&db.url, &engine, Some(event_reader(&engine).await)).await;
    engine
        .iot
        .create_thing()
        .thing_name("replica-1")
        .send()
        .await
        .expect("CreateThing");
    let mut on_b = SseClient::connect(&format!("http://{}", b.addr), "", None).await;

    let created = crate::helpers::admin_client()
        .post(format!("http://{}/api/v1/jobs", a.addr))
        .json(&json!({"job_id": "replicas", "things": ["replica-1"], "document": {"op": "x"}}))
        .send()
        .await
        .expect("POST /api/v1/jobs on A");
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);

    let seen = on_b
        .until(|e| e.event == "job" && e.data["job_id"] == "replicas")
        .await;
    let job = &seen.last().expect("an event").data;
    assert_eq!(job["status"], "IN_PROGRESS");
    assert_eq!(job["counts"]["queued"], 1);

    drop(on_b);
    a.shutdown().await;
    b.shutdown().await;
    db.drop_database().await;
    engine.stop().await;
}
