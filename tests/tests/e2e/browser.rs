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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_works_in_chromium() {
    let root = root();
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
    for page in ["overview", "rollout", "technician-device", "audit"] {
        for size in ["desktop", "tablet"] {
            let shot = shots.join(format!("{page}-{size}.png"));
            assert!(shot.is_file(), "{} was not written", shot.display());
        }
    }
    app.stop().await;
}
