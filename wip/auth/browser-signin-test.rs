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

async fn sqlx_connect(app: &TestApp) -> sqlx::PgConnection {
    use sqlx::Connection as _;
    sqlx::PgConnection::connect(&app.db.url)
        .await
        .expect("connecting to the test database")
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

/// Signing in through a real OpenID provider (oidc-provider-mock) in Chromium: the page offers
/// only a sign-in, the provider's code flow brings the browser back with a session, the
/// session cancels a job (with the CSRF token the page got from `/api/v1/me`) and signs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_through_the_provider_in_chromium() {
    use flotilla_server::auth::{AuthConfig, AuthMode, oidc::OidcConfig, oidc::SecretString};

    let root = root();
    assert_browser_tools_present(&root);
    let provider = crate::helpers::OpenIdProvider::start(&[
        json!({"sub": "olga", "email": "olga@example.com", "groups": ["flotilla-operators"]}),
    ])
    .await;
    let listen = crate::helpers::free_loopback_addr();
    let oidc = OidcConfig {
        issuer: provider.issuer.clone(),
        client_id: "flotilla".into(),
        client_secret: Some(SecretString("s3cret".into())),
        redirect_url: format!("http://{listen}/api/v1/auth/callback"),
        scopes: vec!["email".into()],
        groups_claim: "groups".into(),
        post_logout_url: None,
    };
    let app = TestApp::start_configured(&["sso-1", "sso-2"], |config| {
        config.listen = listen;
        config.auth = AuthConfig {
            mode: AuthMode::Oidc(oidc),
            ..crate::helpers::proxy_auth()
        };
    })
    .await;
    // In OIDC mode only a browser session acts, so the job is made in IoT directly; the
    // projection picks it up. Its executions stay queued (no devices run).
    let iot = &app.server.iot_client;
    let mut create = iot
        .create_job()
        .job_id("sso-hang")
        .document(json!({"simulate": {"outcome": "HANG"}}).to_string());
    for thing in ["sso-1", "sso-2"] {
        let described = iot.describe_thing().thing_name(thing).send().await;
        let arn = described
            .expect("DescribeThing")
            .thing_arn
            .expect("a thing ARN");
        create = create.targets(arn);
    }
    create.send().await.expect("CreateJob");
    let mut db = sqlx_connect(&app).await;
    eventually(
        "the projection to hold sso-hang",
        Duration::from_secs(30),
        || async {
            let found: Option<(String,)> =
                sqlx::query_as("select job_id from server.jobs where job_id = 'sso-hang'")
                    .fetch_optional(&mut sqlx_connect(&app).await)
                    .await
                    .ok()?;
            found.map(|_| ())
        },
    )
    .await;

    let status = tokio::process::Command::new("node")
        .arg(root.join("tests/browser/sign_in.mjs"))
        .current_dir(root.join("tests/browser"))
        .env("FLOTILLA_URL", &app.base)
        .env("FLOTILLA_SUB", "olga")
        .status()
        .await
        .expect("starting node");
    assert!(status.success(), "the sign-in suite failed: {status}");

    let job = iot.describe_job().job_id("sso-hang").send().await;
    let status = job.expect("DescribeJob").job.and_then(|j| j.status);
    assert_eq!(status, Some(aws_sdk_iot::types::JobStatus::Canceled));
    let (actor, outcome, request): (String, String, Value) = sqlx::query_as(
        "select actor, outcome, request from server.audit_log
          where target = '/api/v1/jobs/sso-hang/cancel' order by id desc limit 1",
    )
    .fetch_one(&mut db)
    .await
    .expect("the cancel's audit entry");
    assert_eq!(
        (actor.as_str(), outcome.as_str()),
        ("olga@example.com", "ok")
    );
    assert!(
        request.to_string().contains("signed in through SSO"),
        "{request}"
    );
    app.stop().await;
}
