//! Artifacts end to end: a client uploads straight to the engine's store through presigned
//! part URLs (reqwest plays the browser), the server verifies and signs, a deployment creates
//! the install job, and the real agent downloads, checks the signature and installs. Also: an
//! object tampered with in the bucket, an expired presigned URL, and every bad upload.

use std::time::Duration;

use aws_sdk_iot::types::JobExecutionStatus;
use flotilla_api::RolloutDetail;
use flotilla_api::artifacts::{Artifact, ArtifactList, Upload};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::agent::{AgentProcess, Scratch, wait_for_execution};
use crate::api_support::{delete, get, post};
use crate::helpers::TestApp;

/// Bytes that differ from part to part.
fn file_of(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 16) as u8)
        .collect()
}

/// `POST /artifacts/uploads` for `bytes`, answered 201.
async fn start_upload(app: &TestApp, name: &str, version: &str, size: usize) -> Upload {
    let created = post(
        app,
        "/api/v1/artifacts/uploads",
        json!({
            "name": name, "version": version, "size": size,
            "content_type": "application/x-tar", "hardware_types": ["rpi4", "imx8:rev-b"],
        }),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    created.json()
}

/// PUTs part `index` of `bytes` to its presigned URL, as a browser does.
async fn put_part(app: &TestApp, upload: &Upload, index: usize, bytes: &[u8]) {
    let part = &upload.parts[index];
    let start = part.offset as usize;
    let body = bytes[start..start + part.size as usize].to_vec();
    let response = app
        .http
        .put(&part.url)
        .body(body)
        .send()
        .await
        .expect("PUT of a part");
    assert!(
        response.status().is_success(),
        "part {}: {}",
        part.part_number,
        response.text().await.unwrap_or_default()
    );
}

async fn complete(app: &TestApp, upload: &Upload, sha256: &str) -> crate::api_support::Answer {
    post(
        app,
        &format!("/api/v1/artifacts/uploads/{}/complete", upload.id),
        json!({ "sha256": sha256 }),
    )
    .await
}

/// Uploads `bytes` completely and returns the registered artifact.
async fn upload_file(app: &TestApp, name: &str, version: &str, bytes: &[u8]) -> Artifact {
    let upload = start_upload(app, name, version, bytes.len()).await;
    for index in 0..upload.parts.len() {
        put_part(app, &upload, index, bytes).await;
    }
    let done = complete(app, &upload, &hex::encode(Sha256::digest(bytes))).await;
    assert_eq!(done.status, StatusCode::CREATED, "{}", done.body);
    done.json()
}

/// A scratch folder for the agent that trusts the server's public key, with an install
/// handler that copies the artifact to `installed.bin`.
async fn device_scratch(app: &TestApp) -> Scratch {
    let scratch = Scratch::new();
    let response = app
        .http
        .get(app.url("/api/v1/signing/public-key"))
        .send()
        .await
        .expect("GET the public key");
    assert_eq!(response.status(), StatusCode::OK);
    let pem = response.text().await.expect("the PEM");
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    std::fs::write(scratch.path("trusted.pem"), pem).expect("writing the trusted key");
    scratch.handler(
        "install-app.sh",
        &format!("cp \"$1\" {}", scratch.path("installed.bin").display()),
    );
    scratch
}

async fn deploy(app: &TestApp, artifact: &Artifact, thing: &str, extra: Value) -> String {
    let mut body = json!({ "things": [thing], "install": { "handler": "install-app.sh" } });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let created = post(
        app,
        &format!("/api/v1/artifacts/{}/deploy", artifact.id),
        body,
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    created.body["job_id"]
        .as_str()
        .expect("a job id")
        .to_owned()
}

/// The execution's statusDetails once it has `status` (two minutes: one test waits for a
/// presigned URL to expire).
async fn execution_details(
    app: &TestApp,
    thing: &str,
    job_id: &str,
    status: JobExecutionStatus,
) -> std::collections::HashMap<String, String> {
    wait_for_execution(
        &app.server.iot_client,
        thing,
        job_id,
        status,
        Duration::from_secs(120),
    )
    .await
}

/// The object's file in the engine's store.
fn stored_object(app: &TestApp, artifact_id: &str) -> std::path::PathBuf {
    app.artifact_dir()
        .join("flotilla-artifacts/artifacts")
        .join(artifact_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_artifact_is_signed_deployed_and_installed() {
    let app = TestApp::start_with(0, &["art-device", "art-idle"]).await;
    let scratch = device_scratch(&app).await;
    let agent = AgentProcess::spawn_at(
        app.server.mqtt_addr.expect("local mode"),
        "art-device",
        &scratch,
        &[],
    );

    // Two parts: 8 MiB and the rest.
    let bytes = file_of(9 * 1024 * 1024 + 123);
    let artifact = upload_file(&app, "app-2.1.0.tar", "2.1.0", &bytes).await;
    assert_eq!(artifact.sha256, hex::encode(Sha256::digest(&bytes)));
    assert_eq!(artifact.size, bytes.len() as u64);
    assert_eq!(artifact.signature_algorithm, "ECDSA_P256_SHA256");
    assert_eq!(artifact.hardware_types, ["rpi4", "imx8:rev-b"]);
    assert_eq!(artifact.content_type, "application/x-tar");
    assert_eq!(artifact.uploader, "dev-admin");
    let listed: ArtifactList = get(&app, "/api/v1/artifacts").await.json();
    assert_eq!(listed.artifacts, vec![artifact.clone()]);
    let detail: Artifact = get(&app, &format!("/api/v1/artifacts/{}", artifact.id))
        .await
        .json();
    assert_eq!(detail, artifact);

    // The download link redirects to the store (reqwest follows it).
    let downloaded = app
        .http
        .get(app.url(&format!("/api/v1/artifacts/{}/download", artifact.id)))
        .send()
        .await
        .expect("download");
    assert_eq!(downloaded.status(), StatusCode::OK);
    assert!(
        downloaded.bytes().await.expect("the body") == bytes,
        "the download differs from the upload"
    );

    // A second upload of the same name and version is refused before any byte is sent.
    post(
        &app,
        "/api/v1/artifacts/uploads",
        json!({ "name": "app-2.1.0.tar", "version": "2.1.0", "size": 10 }),
    )
    .await
    .assert_error(StatusCode::CONFLICT, "conflict", None);

    let job_id = deploy(&app, &artifact, "art-device", json!({})).await;
    let details =
        execution_details(&app, "art-device", &job_id, JobExecutionStatus::Succeeded).await;
    assert_eq!(details.get("version").map(String::as_str), Some("2.1.0"));
    assert!(
        std::fs::read(scratch.path("installed.bin")).expect("installed") == bytes,
        "the installed file differs"
    );
    // The document carries the placeholder, not a URL that would expire in IoT's records.
    let document = app
        .server
        .iot_client
        .get_job_document()
        .job_id(&job_id)
        .send()
        .await
        .expect("GetJobDocument")
        .document
        .expect("a document");
    assert!(
        document.contains("${aws:iot:s3-presigned-url:https://s3.us-east-1.amazonaws.com/flotilla-artifacts/artifacts/"),
        "{document}"
    );

    // A job nobody runs keeps the artifact from being deleted until it is canceled.
    let waiting = deploy(&app, &artifact, "art-idle", json!({})).await;
    let refused = delete(&app, &format!("/api/v1/artifacts/{}", artifact.id)).await;
    refused.assert_error(StatusCode::CONFLICT, "conflict", None);
    assert!(
        refused.body["message"]
            .as_str()
            .is_some_and(|m| m.contains(&waiting)),
        "{}",
        refused.body
    );
    let canceled = post(&app, &format!("/api/v1/jobs/{waiting}/cancel"), json!({})).await;
    assert_eq!(canceled.status, StatusCode::OK, "{}", canceled.body);
    let deleted = delete(&app, &format!("/api/v1/artifacts/{}", artifact.id)).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    assert!(!stored_object(&app, &artifact.id).exists());
    get(&app, &format!("/api/v1/artifacts/{}", artifact.id))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found", None);

    agent.kill().await;
    scratch.remove();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_tampered_with_in_the_bucket_fails_on_the_device() {
    let app = TestApp::start_with(0, &["art-tamper"]).await;
    let scratch = device_scratch(&app).await;
    let agent = AgentProcess::spawn_at(
        app.server.mqtt_addr.expect("local mode"),
        "art-tamper",
        &scratch,
        &[],
    );
    let bytes = file_of(200_000);
    let artifact = upload_file(&app, "firmware.bin", "3.0", &bytes).await;

    // Someone with write access to the bucket swaps bytes; the size stays.
    let path = stored_object(&app, &artifact.id);
    let mut tampered = std::fs::read(&path).expect("the stored object");
    assert!(tampered == bytes);
    tampered[1000] ^= 0xff;
    std::fs::write(&path, &tampered).expect("tampering");

    let job_id = deploy(&app, &artifact, "art-tamper", json!({})).await;
    let details = execution_details(&app, "art-tamper", &job_id, JobExecutionStatus::Failed).await;
    assert!(
        details
            .get("reason")
            .is_some_and(|r| r.starts_with("signature mismatch")),
        "{details:?}"
    );
    assert!(
        !scratch.path("installed.bin").exists(),
        "a tampered file was installed"
    );
    assert!(scratch.downloads().is_empty(), "{:?}", scratch.downloads());

    agent.kill().await;
    scratch.remove();
    app.stop().await;
}

/// How [`flaky_proxy`] mistreats the first request it forwards.
#[derive(Clone, Copy)]
enum FirstRequest {
    /// Held until its presigned URL has expired, then passed on (the store refuses it).
    HeldUntilExpired,
    /// Answered with the store's headers and only this many bytes of the body, then the
    /// connection drops.
    CutAfter(usize),
}

/// One request the proxy forwarded: its URL, its `Range` header, the store's status and how
/// many body bytes reached the agent.
#[derive(Debug, Clone)]
struct Forwarded {
    url: String,
    range: Option<String>,
    status: u16,
    body_bytes: usize,
}

/// An HTTP forward proxy for the agent's downloads that plays a bad network for the first
/// request it sees ([`FirstRequest`]); the others pass untouched. Returns its address and
/// every request it forwarded.
async fn flaky_proxy(
    first: FirstRequest,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<Forwarded>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the proxy");
    let addr = listener.local_addr().expect("proxy address");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let first_url = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (log, first_url) = (log.clone(), first_url.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match client.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let mut lines = text.split("\r\n");
                let request_line = lines.next().unwrap_or_default().to_owned();
                let mut words = request_line.split(' ');
                let (method, url) = (
                    words.next().unwrap_or_default(),
                    words.next().unwrap_or_default(),
                );
                let rest = url.strip_prefix("http://").expect("an absolute http URL");
                let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                let is_first = first_url
                    .lock()
                    .expect("first URL")
                    .get_or_insert_with(|| url.to_owned())
                    == url;
                let (hold, cut) = match (is_first, first) {
                    (true, FirstRequest::HeldUntilExpired) => (true, None),
                    // Only the very first request is cut: the resumed one has the same URL.
                    (true, FirstRequest::CutAfter(n)) if log.lock().expect("log").is_empty() => {
                        (false, Some(n))
                    }
                    _ => (false, None),
                };
                if hold {
                    let expiry = expiry_of(url);
                    let wait = (expiry + chrono::Duration::seconds(1) - chrono::Utc::now())
                        .to_std()
                        .unwrap_or_default();
                    eprintln!("proxy: holding the first request {wait:?}, until its URL expired");
                    tokio::time::sleep(wait).await;
                }
                let mut upstream = tokio::net::TcpStream::connect(host)
                    .await
                    .expect("connecting to the store");
                let mut forwarded = format!("{method} {path} HTTP/1.1\r\n");
                let mut range = None;
                for line in lines.take_while(|l| !l.is_empty()) {
                    let name = line
                        .split(':')
                        .next()
                        .unwrap_or_default()
                        .to_ascii_lowercase();
                    if name == "range" {
                        range = line.split_once(':').map(|(_, v)| v.trim().to_owned());
                    }
                    if !matches!(name.as_str(), "connection" | "proxy-connection") {
                        forwarded.push_str(line);
                        forwarded.push_str("\r\n");
                    }
                }
                forwarded.push_str("connection: close\r\n\r\n");
                upstream
                    .write_all(forwarded.as_bytes())
                    .await
                    .expect("forwarding");
                let mut response = Vec::new();
                let _ = upstream.read_to_end(&mut response).await;
                let status = String::from_utf8_lossy(&response[..response.len().min(12)])
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let body_start = response
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map_or(response.len(), |i| i + 4);
                let sent = match cut {
                    Some(n) => body_start + n.min(response.len() - body_start),
                    None => response.len(),
                };
                log.lock().expect("log").push(Forwarded {
                    url: url.to_owned(),
                    range,
                    status,
                    body_bytes: sent - body_start,
                });
                let _ = client.write_all(&response[..sent]).await;
                let _ = client.shutdown().await;
            });
        }
    });
    (addr, seen)
}

/// The agent's environment for sending its downloads through `proxy`.
fn through_proxy(proxy: std::net::SocketAddr) -> Vec<(&'static str, String)> {
    vec![
        ("HTTP_PROXY", format!("http://{proxy}")),
        ("http_proxy", format!("http://{proxy}")),
        ("NO_PROXY", String::new()),
        ("no_proxy", String::new()),
    ]
}

/// When a presigned URL stops working: `X-Amz-Date` plus `X-Amz-Expires`.
fn expiry_of(url: &str) -> chrono::DateTime<chrono::Utc> {
    let query = url.split_once('?').expect("a presigned URL").1;
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {url}"))
            .to_owned()
    };
    let date = chrono::NaiveDateTime::parse_from_str(&param("X-Amz-Date"), "%Y%m%dT%H%M%SZ")
        .expect("X-Amz-Date")
        .and_utc();
    date + chrono::Duration::seconds(param("X-Amz-Expires").parse().expect("X-Amz-Expires"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_url_is_renewed_by_asking_for_the_document_again() {
    let app = TestApp::start_with(0, &["art-slow"]).await;
    let scratch = device_scratch(&app).await;
    let (proxy, seen) = flaky_proxy(FirstRequest::HeldUntilExpired).await;
    let agent = AgentProcess::spawn_at(
        app.server.mqtt_addr.expect("local mode"),
        "art-slow",
        &scratch,
        &through_proxy(proxy),
    );
    let bytes = file_of(50_000);
    let artifact = upload_file(&app, "slow.bin", "1.0", &bytes).await;
    // The shortest lifetime AWS allows.
    let job_id = deploy(
        &app,
        &artifact,
        "art-slow",
        json!({ "presigned_url": { "expires_in_sec": 60 } }),
    )
    .await;
    execution_details(&app, "art-slow", &job_id, JobExecutionStatus::Succeeded).await;
    assert!(std::fs::read(scratch.path("installed.bin")).expect("installed") == bytes);

    // Every request with the first URL reached the store after it expired and was refused
    // (the agent may have sent it twice: its read timeout fires while the proxy holds it);
    // then a fresh URL worked.
    let seen = seen.lock().expect("log").clone();
    let (last, stale) = seen.split_last().expect("requests through the proxy");
    assert!(!stale.is_empty(), "{seen:?}");
    assert!(
        stale
            .iter()
            .all(|f| f.url == stale[0].url && f.status == 403),
        "{seen:?}"
    );
    assert_eq!(last.status, 200, "{seen:?}");
    assert!(expiry_of(&last.url) > expiry_of(&stale[0].url), "{seen:?}");

    agent.kill().await;
    scratch.remove();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_cut_off_resumes_from_the_store_with_only_the_remainder() {
    let app = TestApp::start_with(0, &["art-cut"]).await;
    let scratch = device_scratch(&app).await;
    const CUT: usize = 1024 * 1024;
    let (proxy, seen) = flaky_proxy(FirstRequest::CutAfter(CUT)).await;
    let agent = AgentProcess::spawn_at(
        app.server.mqtt_addr.expect("local mode"),
        "art-cut",
        &scratch,
        &through_proxy(proxy),
    );
    let bytes = file_of(3 * 1024 * 1024 + 17);
    let artifact = upload_file(&app, "cut.bin", "1.0", &bytes).await;
    let job_id = deploy(&app, &artifact, "art-cut", json!({})).await;
    execution_details(&app, "art-cut", &job_id, JobExecutionStatus::Succeeded).await;
    assert!(std::fs::read(scratch.path("installed.bin")).expect("installed") == bytes);

    // The first request got the first megabyte and lost its connection; the next asked the
    // store for the rest with Range and got exactly that.
    let seen = seen.lock().expect("log").clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        (seen[0].range.as_deref(), seen[0].body_bytes),
        (None, CUT),
        "{seen:?}"
    );
    let resumed_from: usize = seen[1]
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("the second request continues with Range: {seen:?}"));
    assert!(resumed_from > 0 && resumed_from <= CUT, "{seen:?}");
    assert_eq!(seen[1].status, 206, "{seen:?}");
    assert_eq!(seen[1].body_bytes, bytes.len() - resumed_from, "{seen:?}");
    let transferred: usize = seen.iter().map(|f| f.body_bytes).sum();
    assert!(
        transferred <= bytes.len() + CUT - resumed_from,
        "{transferred} bytes for a {}-byte file",
        bytes.len()
    );

    agent.kill().await;
    scratch.remove();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_get_clear_errors_and_leave_no_artifact() {
    let app = TestApp::start(0).await;
    let path = "/api/v1/artifacts/uploads";
    let valid = json!({ "name": "fw.bin", "version": "1.0", "size": 10 });
    for (field, value, code_field) in [
        ("name", json!("../../etc/passwd"), "name"),
        ("name", json!("dir\\file.bin"), "name"),
        ("name", json!("line\nbreak"), "name"),
        ("name", json!(""), "name"),
        ("version", json!("1.0\u{0}"), "version"),
        ("version", json!("1/2"), "version"),
        ("size", json!(0), "size"),
        ("size", json!(6u64 * 1024 * 1024 * 1024), "size"),
        ("content_type", json!("nonsense"), "content_type"),
        ("hardware_types", json!(["has space"]), "hardware_types"),
    ] {
        let mut body = valid.clone();
        body[field] = value;
        post(&app, path, body).await.assert_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some(code_field),
        );
    }
    post(&app, path, json!({ "name": "x" })).await.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        None,
    );

    // Truncated: only the first of two parts arrived. The upload stays, and says what it has.
    let bytes = file_of(8 * 1024 * 1024 + 10);
    let sha = hex::encode(Sha256::digest(&bytes));
    let upload = start_upload(&app, "big.img", "1.0", bytes.len()).await;
    assert_eq!(upload.parts.len(), 2);
    put_part(&app, &upload, 0, &bytes).await;
    let truncated = complete(&app, &upload, &sha).await;
    truncated.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("parts"),
    );
    assert!(
        truncated.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("part 2 is missing")),
        "{}",
        truncated.body
    );
    let resumed: Upload = get(&app, &format!("{path}/{}", upload.id)).await.json();
    assert_eq!(
        resumed.parts.iter().map(|p| p.received).collect::<Vec<_>>(),
        [true, false]
    );
    // A malformed checksum is refused before anything is touched.
    complete(&app, &upload, "abc").await.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("sha256"),
    );
    // The resumed upload sends the rest, but declares the wrong checksum: refused, and the
    // object and the upload are gone.
    put_part(&app, &resumed, 1, &bytes).await;
    let wrong = complete(&app, &upload, &"0".repeat(64)).await;
    wrong.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("sha256"),
    );
    assert!(
        wrong.body["message"]
            .as_str()
            .is_some_and(|m| m.contains(&sha)),
        "{}",
        wrong.body
    );
    assert!(!stored_object(&app, &upload.id).exists());
    get(&app, &format!("{path}/{}", upload.id))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found", None);
    complete(&app, &upload, &sha)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found", None);

    // An abandoned upload is gone.
    let abandoned = start_upload(&app, "tmp.bin", "1.0", 100).await;
    let aborted = delete(&app, &format!("{path}/{}", abandoned.id)).await;
    assert_eq!(aborted.status, StatusCode::NO_CONTENT, "{}", aborted.body);
    get(&app, &format!("{path}/{}", abandoned.id))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found", None);

    let listed: ArtifactList = get(&app, "/api/v1/artifacts").await.json();
    assert!(listed.artifacts.is_empty(), "{listed:?}");
    get(&app, "/api/v1/artifacts/not-a-uuid")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found", None);

    // Deploying: the server writes the document; a bad handler is named.
    let artifact = upload_file(&app, "ok.bin", "1.0", &file_of(1000)).await;
    post(
        &app,
        &format!("/api/v1/artifacts/{}/deploy", artifact.id),
        json!({ "things": ["sim-0001"], "document": {}, "install": { "handler": "../sh" } }),
    )
    .await
    .assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("document"),
    );
    let answer = post(
        &app,
        &format!("/api/v1/artifacts/{}/deploy", artifact.id),
        json!({ "things": ["sim-0001"], "install": { "handler": "../sh" } }),
    )
    .await;
    answer.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("install"),
    );
    app.stop().await;
}

/// The rollout's detail once `check` holds for it.
async fn rollout_until(
    app: &TestApp,
    id: &str,
    what: &str,
    check: impl Fn(&RolloutDetail) -> bool,
) -> RolloutDetail {
    crate::helpers::eventually(what, Duration::from_secs(90), || async {
        let detail: RolloutDetail = get(app, &format!("/api/v1/rollouts/{id}")).await.json();
        check(&detail).then_some(detail)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_of_an_artifact_installs_it_wave_by_wave_on_real_agents() {
    let things = ["art-wave-1", "art-wave-2"];
    let app = TestApp::start_with_rollouts(
        0,
        &things,
        flotilla_server::rollouts::RolloutSettings {
            tick: Duration::from_millis(200),
            ..Default::default()
        },
    )
    .await;
    let old = upload_file(&app, "app.tar", "1.0.0", &file_of(4096)).await;
    let new_bytes = file_of(300 * 1024);
    let new = upload_file(&app, "app.tar", "2.0.0", &new_bytes).await;
    let mut devices = Vec::new();
    for thing in things {
        let scratch = device_scratch(&app).await;
        let agent = AgentProcess::spawn_at(
            app.server.mqtt_addr.expect("local mode"),
            thing,
            &scratch,
            &[],
        );
        devices.push((scratch, agent));
    }

    // Problems with the release are field messages, and nothing is created.
    let release = |artifact: &str, extra: Value| {
        let mut release = json!({"kind": "artifact", "artifact_id": artifact});
        if let (Some(release), Some(extra)) = (release.as_object_mut(), extra.as_object()) {
            release.extend(extra.clone());
        }
        release
    };
    let handler = json!({"install": {"handler": "install-app.sh"}});
    for (bad, field) in [
        (
            release("00000000-0000-0000-0000-000000000000", handler.clone()),
            "release.artifact_id",
        ),
        (release(&new.id, json!({})), "release.install"),
        (
            release(&new.id, json!({"install": {"handler": "../sh"}})),
            "release.install",
        ),
        (
            release(
                &new.id,
                json!({"install": {"handler": "install-app.sh"}, "version": "9.9"}),
            ),
            "release.version",
        ),
    ] {
        post(
            &app,
            "/api/v1/rollouts",
            json!({"rollout_id": "fw-bad", "release": bad, "targets": {"things": things}, "waves": [{"percent": 100}]}),
        )
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", Some(field));
    }
    get(&app, "/api/v1/rollouts/fw-bad").await.assert_error(
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );

    // The release's version is the artifact's; the first wave waits for an approval.
    let created = post(
        &app,
        "/api/v1/rollouts",
        json!({
            "rollout_id": "fw-art",
            "release": release(&new.id, handler.clone()),
            "previous_release": release(&old.id, handler.clone()),
            "failure_policy": "rollback",
            "targets": {"things": things},
            "canary_things": [things[0]],
            "waves": [{"count": 1, "gates": {"approval": true}}, {"percent": 100}],
        }),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let created: RolloutDetail = created.json();
    assert_eq!(created.rollout.release.version, "2.0.0");
    rollout_until(&app, "fw-art", "wave 1 awaiting approval", |d| {
        d.waves[0].state == "awaiting_approval"
    })
    .await;
    let canary = &devices[0].0;
    assert!(
        std::fs::read(canary.path("installed.bin")).expect("installed on the canary") == new_bytes,
        "the canary installed something else"
    );
    assert!(!devices[1].0.path("installed.bin").exists());

    // Both artifacts are in use while the rollout runs: one installs, one is what a rollback
    // would reinstall.
    for artifact in [&new, &old] {
        let refused = delete(&app, &format!("/api/v1/artifacts/{}", artifact.id)).await;
        refused.assert_error(StatusCode::CONFLICT, "conflict", None);
        assert!(
            refused.body["message"]
                .as_str()
                .is_some_and(|m| m.contains("rollout fw-art")),
            "{}",
            refused.body
        );
    }

    let approved = post(&app, "/api/v1/rollouts/fw-art/approve", json!({})).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    let done = rollout_until(&app, "fw-art", "the rollout to complete", |d| {
        d.rollout.state == "completed"
    })
    .await;
    let jobs: Vec<&str> = done.jobs.iter().map(|j| j.job_id.as_str()).collect();
    assert_eq!(jobs, ["fw-art-w1", "fw-art-w2"]);
    assert!(
        std::fs::read(devices[1].0.path("installed.bin")).expect("installed by wave 2")
            == new_bytes,
        "wave 2 installed something else"
    );
    // Each wave sent the signed install document with the placeholder of the new build.
    let document = app
        .server
        .iot_client
        .get_job_document()
        .job_id("fw-art-w2")
        .send()
        .await
        .expect("GetJobDocument")
        .document
        .expect("a document");
    let document: Value = serde_json::from_str(&document).expect("a JSON document");
    assert_eq!(document["artifact"]["sha256"], new.sha256);
    assert_eq!(document["artifact"]["signature"], new.signature);
    assert_eq!(document["softwareVersion"], "2.0.0");

    // Finished, the rollout no longer holds either artifact.
    let deleted = delete(&app, &format!("/api/v1/artifacts/{}", old.id)).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);

    for (scratch, agent) in devices {
        agent.kill().await;
        scratch.remove();
    }
    app.stop().await;
}

/// The multipart parts the engine's store holds (s3s-fs keeps them at the top of its folder).
fn stored_parts(app: &TestApp) -> Vec<String> {
    std::fs::read_dir(app.artifact_dir())
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| name.starts_with(".upload_id-"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_nobody_finishes_is_swept_from_the_store() {
    let app = TestApp::start_configured(&[], |config| {
        config.artifacts.abandoned_after = Duration::from_secs(3);
    })
    .await;
    let bytes = file_of(9 * 1024 * 1024);
    let upload = start_upload(&app, "left.bin", "1.0", bytes.len()).await;
    put_part(&app, &upload, 0, &bytes).await;
    assert_eq!(stored_parts(&app).len(), 1, "the store holds the part");
    let path = format!("/api/v1/artifacts/uploads/{}", upload.id);
    crate::helpers::eventually(
        "the abandoned upload to be swept",
        Duration::from_secs(30),
        || async { (get(&app, &path).await.status == StatusCode::NOT_FOUND).then_some(()) },
    )
    .await;
    assert!(stored_parts(&app).is_empty(), "{:?}", stored_parts(&app));
    // Completing it now is refused: it is gone.
    complete(&app, &upload, &hex::encode(Sha256::digest(&bytes)))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found", None);
    app.stop().await;
}
