//! HTTP API fuzzing from the server's own OpenAPI document with Schemathesis (from the tests'
//! Python virtualenv), as an admin with an API token: no request it makes may get a 5xx, and
//! afterwards the audit log still reads and its hash chain is intact.

use std::time::Duration;

use flotilla_api::{AuditPage, AuditVerification, CreatedToken};
use serde_json::json;

use crate::api_support::{create_group, get, post};
use crate::helpers::{TestApp, device_python, proxy_auth};

/// Examples per operation, and the run's time budget.
const MAX_EXAMPLES: &str = "8";
const MAX_SECONDS: &str = "30";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_generated_request_gets_a_server_error() {
    let app = TestApp::start_with_auth(&["d-1", "d-2"], proxy_auth()).await;
    create_group(&app, "fleet", &["d-1", "d-2"]).await;
    let created = post(
        &app,
        "/api/v1/jobs",
        json!({ "job_id": "seeded", "things": ["d-1"], "document": { "op": "noop" } }),
    )
    .await;
    assert_eq!(
        created.status,
        reqwest::StatusCode::CREATED,
        "{}",
        created.body
    );
    let token: CreatedToken = post(
        &app,
        "/api/v1/tokens",
        json!({ "name": "schemathesis", "role": "admin", "expires_in_days": 1 }),
    )
    .await
    .json();

    let document = get(&app, "/api/v1/openapi.json").await.body;
    let file = std::env::temp_dir().join(format!("flotilla-schemathesis-{}.json", app.db.name));
    std::fs::write(&file, document.to_string()).expect("writing the OpenAPI document");
    let schemathesis = device_python().with_file_name("schemathesis");
    let started = std::time::Instant::now();
    let run = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new(&schemathesis)
            .arg("run")
            .arg(&file)
            .args(["--url", &app.base])
            .args([
                "--header",
                &format!("Authorization: Bearer {}", token.secret),
            ])
            .args(["--checks", "not_a_server_error"])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["--max-examples", MAX_EXAMPLES])
            .args(["--max-time", MAX_SECONDS])
            .args(["--workers", "2"])
            .args(["--request-timeout", "20"])
            .args(["--generation-database", "none"])
            .arg("--no-color")
            // The live stream never ends; the token routes would revoke the run's own token;
            // sign-in redirects to a provider this server does not have.
            .args(["--exclude-path", "/api/v1/stream"])
            .args(["--exclude-path-regex", "^/api/v1/(tokens|auth/)"])
            .current_dir(std::env::temp_dir())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("schemathesis finishes within 5 minutes")
    .unwrap_or_else(|e| panic!("running {}: {e}", schemathesis.display()));
    let _ = std::fs::remove_file(&file);
    let stdout = String::from_utf8_lossy(&run.stdout);
    eprintln!(
        "schemathesis ran for {:.1?}:\n{stdout}\n{}",
        started.elapsed(),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "schemathesis found server errors");

    // Everything it wrote, refused or not, left the audit log readable and intact.
    let page = get(&app, "/api/v1/audit?limit=500").await;
    assert_eq!(page.status, reqwest::StatusCode::OK, "{}", page.body);
    let page: AuditPage = page.json();
    assert!(!page.entries.is_empty());
    let verified: AuditVerification = get(&app, "/api/v1/audit/verify").await.json();
    assert!(verified.intact, "{verified:?}");
    app.stop().await;
}
