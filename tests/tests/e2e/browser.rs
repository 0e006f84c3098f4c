//! The web UI in headless Chromium (`tests/browser/dashboard.mjs`, driven by npm
//! `playwright-core`, checked by `@axe-core/playwright`) against the real server, engine and
//! simulated fleet. `cargo xtask browser` (and `cargo xtask ci`) install Chromium and the npm
//! packages and build the bundle first.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where screenshots go: `<target>/browser-screenshots`.
fn screenshot_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("browser-screenshots")
}

async fn post(app: &TestApp, path: &str, body: Value) -> Value {
    let response = app
        .http
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_success(), "POST {path}: {status} {body}");
    body
}

async fn get(app: &TestApp, path: &str) -> Value {
    app.http
        .get(app.url(path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The bundle, the npm packages and Chromium that `cargo xtask browser` provides.
fn assert_browser_tools_present(root: &std::path::Path) {
    for (needed, how) in [
        (
            root.join("static/pkg/flotilla_frontend_bg.wasm"),
            "cargo xtask frontend",
        ),
        (
            root.join("tests/browser/node_modules/playwright-core"),
            "cargo xtask browser",
        ),
        (PathBuf::from("/usr/bin/chromium"), "cargo xtask browser"),
    ] {
        assert!(
            needed.exists(),
            "{} is missing: run `{how}`",
            needed.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_works_in_chromium() {
    let root = root();
    assert_browser_tools_present(&root);
    let app = TestApp::start(30).await;
    post(
        &app,
        "/api/v1/templates",
        json!({
            "template_id": "ui-fw",
            "description": "Firmware for the browser test",
            "document": {"operation": "simulate", "version": "${aws:iot:parameter:version}"},
            "parameters": [{"name": "version", "type": "string", "default": "2.0.0"}]
        }),
    )
    .await;
    post(
        &app,
        "/api/v1/jobs",
        json!({"job_id": "ui-hang", "things": ["sim-0010", "sim-0011"],
               "document": {"simulate": {"outcome": "HANG"}}}),
    )
    .await;
    post(
        &app,
        "/api/v1/jobs",
        json!({"job_id": "ui-fail", "things": ["sim-0020"],
               "document": {"simulate": {"outcome": "FAILED", "duration_ms": 100}}}),
    )
    .await;
    // sim-0007 installs 2.0.0, so its page has a version history and the distribution two
    // versions.
    post(
        &app,
        "/api/v1/jobs",
        json!({"job_id": "ui-install", "things": ["sim-0007"],
               "document": {"operation": "install", "softwareVersion": "2.0.0"}}),
    )
    .await;
    eventually(
        "ui-fail to fail and ui-hang to start",
        Duration::from_secs(60),
        || async {
            let failed = app.job("ui-fail").await?.job.counts.failed == 1;
            let started = app.job("ui-hang").await?.job.counts.in_progress == 2;
            (failed && started).then_some(())
        },
    )
    .await;
    eventually(
        "every simulated device to be online and sim-0007 to report 2.0.0",
        Duration::from_secs(60),
        || async {
            let online = get(&app, "/api/v1/devices?connectivity=online&limit=100").await;
            let upgraded = get(&app, "/api/v1/devices?version=2.0.0").await;
            (online["devices"].as_array()?.len() == 30
                && upgraded["devices"][0]["name"] == "sim-0007")
                .then_some(())
        },
    )
    .await;

    let shots = screenshot_dir();
    let status = tokio::process::Command::new("node")
        .arg(root.join("tests/browser/dashboard.mjs"))
        .current_dir(root.join("tests/browser"))
        .env("FLOTILLA_URL", &app.base)
        .env("FLOTILLA_SCREENSHOTS", &shots)
        .status()
        .await
        .expect("starting node");
    assert!(status.success(), "the browser suite failed: {status}");

    // What the browser did, as the server sees it.
    assert_eq!(
        get(&app, "/api/v1/rollouts/ui-wave").await["state"],
        "completed"
    );
    assert_eq!(
        app.job("ui-hang").await.unwrap().job.status.as_str(),
        "CANCELED"
    );
    let sim20 = get(&app, "/api/v1/things/sim-0020").await;
    assert!(
        sim20["executions"].as_array().unwrap().len() >= 2,
        "{sim20}"
    );
    // The device registered in the form, its certificate revoked there, and the group.
    let registered = get(&app, "/api/v1/devices/ui-new-1").await;
    assert_eq!(registered["attributes"]["site"], "lab", "{registered}");
    let certificates = get(&app, "/api/v1/devices/ui-new-1/certificates").await;
    let certificates = certificates["certificates"].as_array().unwrap();
    assert!(
        !certificates.is_empty() && certificates.iter().all(|c| c["status"] == "REVOKED"),
        "{certificates:?}"
    );
    let group = get(&app, "/api/v1/thing-groups/ui-lab").await;
    assert_eq!(group["members"], json!(["ui-new-1"]), "{group}");
    for page in [
        "overview",
        "rollout",
        "technician-device",
        "audit",
        "devices",
        "device",
    ] {
        for size in ["desktop", "tablet"] {
            let shot = shots.join(format!("{page}-{size}.png"));
            assert!(shot.is_file(), "{} was not written", shot.display());
        }
    }
    app.stop().await;
}

/// HTML and script payloads wherever the API takes free text or a device reports it.
const IMG: &str = "<img src=x onerror=\"window.__xss.push('img')\">";
const SCRIPT: &str = "<script>window.__xss.push('script')</script>";
const SVG: &str = "\"><svg onload=\"window.__xss.push('svg')\">";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_is_inert_in_chromium() {
    use rumqttc::{AsyncClient, MqttOptions, QoS};

    let root = root();
    assert_browser_tools_present(&root);
    let app = TestApp::start_with(0, &["xss-1"]).await;
    // Thing names are AWS's pattern: markup cannot be one.
    let refused = app
        .server
        .iot_client
        .create_thing()
        .thing_name("<b>x</b>")
        .send()
        .await;
    assert!(refused.is_err(), "a thing named with markup was created");
    // Attribute values allow few punctuation marks; the most hostile of them.
    app.server
        .iot_client
        .update_thing()
        .thing_name("xss-1")
        .attribute_payload(
            aws_sdk_iot::types::AttributePayload::builder()
                .attributes("href", "javascript:window.__xss")
                .attributes("tag", "[x]=#@/")
                .build(),
        )
        .send()
        .await
        .expect("UpdateThing");
    post(
        &app,
        "/api/v1/templates",
        json!({ "template_id": "xss-template", "description": SCRIPT,
                "document": { "note": IMG, SVG: SCRIPT } }),
    )
    .await;
    post(
        &app,
        "/api/v1/jobs",
        json!({ "job_id": "xss-job", "description": IMG, "things": ["xss-1"],
                "document": { "note": SCRIPT, IMG: SVG } }),
    )
    .await;

    // The device fails the job with markup in its statusDetails (keys are AWS's pattern,
    // values any printable text).
    let mqtt = app.server.mqtt_addr.expect("local mode has a broker");
    let (client, mut eventloop) = AsyncClient::new(
        MqttOptions::new("xss-1", mqtt.ip().to_string(), mqtt.port()),
        16,
    );
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let update = json!({ "status": "FAILED",
                         "statusDetails": { "reason": IMG, "detail": format!("{SVG}{SCRIPT}") } });
    client
        .publish(
            "$aws/things/xss-1/jobs/xss-job/update",
            QoS::AtLeastOnce,
            false,
            update.to_string(),
        )
        .await
        .expect("publishing the update");
    eventually("xss-job to fail", Duration::from_secs(30), || async {
        (app.job("xss-job").await?.job.counts.failed == 1).then_some(())
    })
    .await;

    let status = tokio::process::Command::new("node")
        .arg(root.join("tests/browser/hostile.mjs"))
        .current_dir(root.join("tests/browser"))
        .env("FLOTILLA_URL", &app.base)
        .status()
        .await
        .expect("starting node");
    assert!(
        status.success(),
        "hostile text ran or rendered as markup: {status}"
    );
    app.stop().await;
}
