//! The AWS-mode code path against a wire-level AWS peer that is not our engine: `moto_server`
//! (PyPI `moto[server]`, from the tests' Python virtualenv), started on an ephemeral port. The
//! server in `--iot aws` mode with an endpoint override registers nothing engine-specific: it
//! creates, lists, describes and cancels a job through its own API, and reads the fleet; and
//! it starts an artifact upload on moto's S3 (CreateMultipartUpload, a presigned part the
//! client PUTs, AbortMultipartUpload).
//!
//! moto has no event configurations (UpdateEventConfigurations fails: the server only warns)
//! and no device side, so executions stay QUEUED; it is used here for request and response
//! shapes, not for semantics (see the project's tooling notes).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use flotilla_api::artifacts::Upload;
use flotilla_api::{JobDetail, JobList, JobStatus, ThingDetail, ThingList};
use flotilla_server::app::{self, IotMode, ServeConfig};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestDb, device_python, eventually};

/// `moto_server` on a free loopback port, killed when dropped.
struct Moto {
    child: tokio::process::Child,
    endpoint: String,
}

impl Moto {
    async fn start() -> Self {
        // moto cannot report a port it picked, so one is picked here and handed over.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = tokio::process::Command::new(device_python())
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        eventually("moto_server answering", Duration::from_secs(30), || async {
            reqwest::get(format!("{endpoint}/moto-api/"))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        Self { child, endpoint }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_mode_creates_lists_describes_and_cancels_a_job_on_moto() {
    let mut moto = Moto::start().await;
    let db = TestDb::create().await;
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("address");
    // In AWS mode the artifact bucket must exist; moto takes an unsigned CreateBucket.
    let bucket = reqwest::Client::new()
        .put(format!("{}/flotilla-artifacts", moto.endpoint))
        .send()
        .await
        .expect("CreateBucket on moto");
    assert!(bucket.status().is_success(), "{}", bucket.status());
    let signing_key = std::env::temp_dir().join(format!("flotilla-test-signing-{}.pem", db.name));
    flotilla_server::signing::generate_key_file(&signing_key).expect("a signing key");
    let server = app::start(ServeConfig {
        database_url: db.url.clone(),
        listen: loopback,
        iot: IotMode::Aws {
            iot_endpoint: Some(moto.endpoint.clone()),
            s3_endpoint: Some(moto.endpoint.clone()),
            events: None,
            credentials: Some(aws_credential_types::Credentials::new(
                "testing", "testing", None, None, "moto",
            )),
        },
        region: "us-east-1".into(),
        static_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../static"),
        reconcile_every: Duration::from_secs(300),
        reconcile_budget: 50.0,
        artifacts: flotilla_server::artifacts::ArtifactConfig {
            signing_key: Some(signing_key.clone()),
            ..Default::default()
        },
        rollouts: Default::default(),
        auth: crate::helpers::proxy_auth(),
    })
    .await
    .expect("starting the server against moto");
    let base = format!("http://{}", server.addr);
    let http = crate::helpers::admin_client();
    server
        .iot_client
        .create_thing()
        .thing_name("moto-1")
        .send()
        .await
        .expect("CreateThing on moto");

    // The fleet, through the server.
    let things: ThingList = http
        .get(format!("{base}/api/v1/things"))
        .send()
        .await
        .expect("GET /things")
        .json()
        .await
        .expect("a thing list");
    assert!(
        things.things.iter().any(|t| t.name == "moto-1"),
        "{things:?}"
    );
    let thing = http
        .get(format!("{base}/api/v1/things/moto-1"))
        .send()
        .await
        .expect("GET /things/moto-1");
    assert_eq!(thing.status(), StatusCode::OK);
    let thing: ThingDetail = thing.json().await.expect("a thing");
    assert!(thing.thing.arn.ends_with(":thing/moto-1"), "{thing:?}");

    // A job: created, listed, described and canceled through the API.
    let created = http
        .post(format!("{base}/api/v1/jobs"))
        .json(
            &json!({"job_id": "moto-job", "things": ["moto-1"], "document": {"op": "x"},
                      "description": "on moto"}),
        )
        .send()
        .await
        .expect("POST /jobs");
    let status = created.status();
    let body = created.text().await.expect("a body");
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let job: JobDetail = serde_json::from_str(&body).expect("a job");
    assert_eq!(job.job.status, JobStatus::InProgress);
    assert_eq!(job.job.description.as_deref(), Some("on moto"));

    let list: JobList = http
        .get(format!("{base}/api/v1/jobs"))
        .send()
        .await
        .expect("GET /jobs")
        .json()
        .await
        .expect("a job list");
    assert_eq!(list.jobs.len(), 1);
    assert_eq!(list.jobs[0].job_id, "moto-job");

    let canceled = http
        .post(format!("{base}/api/v1/jobs/moto-job/cancel"))
        .json(&json!({"comment": "not today", "reason_code": "TEST"}))
        .send()
        .await
        .expect("POST /jobs/moto-job/cancel");
    let status = canceled.status();
    let body = canceled.text().await.expect("a body");
    assert_eq!(status, StatusCode::OK, "{body}");
    let job: JobDetail = serde_json::from_str(&body).expect("a job");
    assert_eq!(job.job.status, JobStatus::Canceled);

    // Bad input is refused before moto hears of it.
    let refused = http
        .post(format!("{base}/api/v1/jobs"))
        .json(&json!({"job_id": "bad id!", "things": ["moto-1"], "document": {}}))
        .send()
        .await
        .expect("POST /jobs");
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // An artifact through moto's S3: one presigned part, completion, a presigned download.
    let bytes: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let created = http
        .post(format!("{base}/api/v1/artifacts/uploads"))
        .json(
            &json!({"name": "moto-app", "version": "1.0.0", "size": bytes.len(),
                      "content_type": "application/octet-stream", "hardware_types": []}),
        )
        .send()
        .await
        .expect("POST /artifacts/uploads");
    let status = created.status();
    let body = created.text().await.expect("a body");
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let upload: Upload = serde_json::from_str(&body).expect("an upload");
    assert_eq!(upload.parts.len(), 1);
    let put = http
        .put(&upload.parts[0].url)
        .body(bytes.clone())
        .send()
        .await
        .expect("PUT of the part to moto");
    assert!(put.status().is_success(), "{}", put.status());
    // moto 5.2.5 answers ListParts with a `ListPartsResponse` root where S3 (and the SDK)
    // use `ListPartsResult`, so completion is proven against the engine's store only
    // (tests/tests/e2e/artifacts.rs); here the abandoned upload is aborted on moto.
    let aborted = http
        .delete(format!("{base}/api/v1/artifacts/uploads/{}", upload.id))
        .send()
        .await
        .expect("DELETE of the upload");
    assert_eq!(aborted.status(), StatusCode::NO_CONTENT);
    let gone = http
        .get(format!("{base}/api/v1/artifacts/uploads/{}", upload.id))
        .send()
        .await
        .expect("GET of the aborted upload");
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);

    server.shutdown().await;
    let _ = std::fs::remove_file(&signing_key);
    db.drop_database().await;
    let _ = moto.child.kill().await;
}
