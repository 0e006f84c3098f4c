//! The audit hook: every mutation through `/api/v1`, accepted or refused, is recorded with
//! actor, action, target, a request summary, the outcome and the source address; reads are
//! not; `GET /api/v1/audit` filters and pages the log. The log is append-only and
//! hash-chained: `flotilla audit verify` and `GET /api/v1/audit/verify` find an entry changed or
//! deleted behind the server's back.

use std::time::Duration;

use flotilla_api::{AuditPage, AuditVerification};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::Connection as _;

use crate::api_support::{delete, get, post};
use crate::helpers::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutation_is_audited_refused_ones_too() {
    let app = TestApp::start_with(0, &["d-1"]).await;

    let created = post(
        &app,
        "/api/v1/jobs",
        json!({ "job_id": "audited", "things": ["d-1"],
                "document": { "payload": "x".repeat(5000) } }),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    post(
        &app,
        "/api/v1/jobs",
        json!({ "job_id": "bad id", "things": ["d-1"], "document": {} }),
    )
    .await
    .assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("job_id"),
    );
    // Malformed JSON is refused before any handler runs, and still recorded.
    let malformed = app
        .http
        .post(app.url("/api/v1/jobs"))
        .header("content-type", "application/json")
        .body("{ nope")
        .send()
        .await
        .expect("POST");
    assert!(malformed.status().is_client_error());
    delete(&app, "/api/v1/jobs/ghost")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found", None);
    // Reads are not mutations.
    let _ = get(&app, "/api/v1/jobs").await;
    let _ = get(&app, "/api/v1/things").await;

    let page: AuditPage = get(&app, "/api/v1/audit").await.json();
    assert_eq!(page.entries.len(), 4, "{page:?}");
    assert!(page.next_before.is_none());
    let newest_first: Vec<(&str, i32, &str)> = page
        .entries
        .iter()
        .map(|e| (e.action.as_str(), e.status, e.outcome.as_str()))
        .collect();
    assert_eq!(
        newest_first,
        [
            ("DELETE /api/v1/jobs/{job_id}", 404, "not_found"),
            ("POST /api/v1/jobs", 422, "invalid_request"),
            ("POST /api/v1/jobs", 422, "invalid_request"),
            ("POST /api/v1/jobs", 201, "ok"),
        ]
    );
    let first = &page.entries[3];
    assert_eq!(first.actor, "dev-admin");
    assert_eq!(first.role.as_deref(), Some("admin"));
    assert_eq!(first.target, "/api/v1/jobs");
    assert_eq!(first.source.as_deref(), Some("127.0.0.1"));
    let request = first.request.as_ref().expect("a request summary");
    assert_eq!(request["job_id"], "audited");
    // The document is summarized by its size, not stored.
    assert!(
        request["document"]["bytes"].as_u64().expect("a size") > 5000,
        "{request}"
    );
    assert_eq!(page.entries[0].target, "/api/v1/jobs/ghost");
    assert_eq!(
        page.entries[1].request.as_ref().expect("a summary")["unparsed_bytes"],
        6
    );
    assert!(chrono::DateTime::parse_from_rfc3339(&first.at).is_ok());

    // Filters and paging.
    let refused: AuditPage = get(&app, "/api/v1/audit?outcome=invalid_request")
        .await
        .json();
    assert_eq!(refused.entries.len(), 2);
    let deletes: AuditPage = get(
        &app,
        "/api/v1/audit?action=DELETE%20/api/v1/jobs/%7Bjob_id%7D",
    )
    .await
    .json();
    assert_eq!(deletes.entries.len(), 1);
    let on_ghost: AuditPage = get(&app, "/api/v1/audit?target=/api/v1/jobs/gh")
        .await
        .json();
    assert_eq!(on_ghost.entries.len(), 1);
    let since_future: AuditPage = get(&app, "/api/v1/audit?since=2999-01-01T00:00:00Z")
        .await
        .json();
    assert!(since_future.entries.is_empty());
    let mut ids = Vec::new();
    let mut path = "/api/v1/audit?limit=3".to_owned();
    loop {
        let page: AuditPage = get(&app, &path).await.json();
        ids.extend(page.entries.iter().map(|e| e.id));
        match page.next_before {
            Some(before) => path = format!("/api/v1/audit?limit=3&before={before}"),
            None => break,
        }
    }
    let all: Vec<i64> = page.entries.iter().map(|e| e.id).collect();
    assert_eq!(ids, all);
    get(&app, "/api/v1/audit?limit=0").await.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("limit"),
    );
    get(&app, "/api/v1/audit?since=yesterday")
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", None);
    app.stop().await;
}

/// `flotilla audit verify` on `database_url`: whether it succeeded, and what it printed.
async fn audit_verify(database_url: &str) -> (bool, String) {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla-test-server"))
            .args(["audit", "verify", "--database-url", database_url])
            .env("RUST_LOG", "warn")
            .output(),
    )
    .await
    .expect("flotilla audit verify finishes within 60 s")
    .expect("running flotilla audit verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Runs `sql` with triggers off (`session_replication_role = replica`, which takes a
/// superuser, as tampering with the log must), as an attacker with database access would.
async fn tamper(app: &TestApp, sql: &str) {
    let mut conn = sqlx::PgConnection::connect(&app.db.url)
        .await
        .expect("connecting to the test database");
    sqlx::query("set session_replication_role = replica")
        .execute(&mut conn)
        .await
        .expect("disabling triggers (DATABASE_URL must be a superuser)");
    sqlx::query(sql)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Entries made through the API (concurrently too) form an intact chain; the table refuses
/// UPDATE, DELETE and TRUNCATE; an entry changed directly in the database makes
/// `flotilla audit verify` fail naming it, and so does a deleted one (naming its successor).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_is_append_only_and_verify_finds_tampering() {
    let app = TestApp::start_with(0, &["d-1"]).await;
    let created = post(
        &app,
        "/api/v1/jobs",
        json!({ "job_id": "chained", "things": ["d-1"], "document": { "op": "é" } }),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    // Concurrent writers must not fork the chain.
    let paths: Vec<String> = (0..16).map(|i| format!("/api/v1/jobs/ghost-{i}")).collect();
    let attempts = paths.iter().map(|path| delete(&app, path));
    for answer in futures::future::join_all(attempts).await {
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
    }
    let made = post(
        &app,
        "/api/v1/tokens",
        json!({"name": "ci", "role": "viewer"}),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let entries = 18;

    let (ok, text) = audit_verify(&app.db.url).await;
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("intact: {entries} entries")),
        "{text}"
    );
    let verified: AuditVerification = get(&app, "/api/v1/audit/verify").await.json();
    assert!(verified.intact, "{verified:?}");
    assert_eq!(verified.entries, entries);
    let newest: AuditPage = get(&app, "/api/v1/audit?limit=1").await.json();
    assert_eq!(verified.head_id, Some(newest.entries[0].id));
    assert_eq!(verified.head_hash.as_ref().map(String::len), Some(64));

    // Append-only, even for a superuser who leaves the triggers on.
    let mut conn = sqlx::PgConnection::connect(&app.db.url)
        .await
        .expect("connecting to the test database");
    for sql in [
        "update server.audit_log set outcome = 'ok'",
        "delete from server.audit_log",
        "truncate server.audit_log",
    ] {
        let refused = sqlx::query(sql)
            .execute(&mut conn)
            .await
            .expect_err(sql)
            .to_string();
        assert!(refused.contains("append-only"), "{sql}: {refused}");
    }
    let page: AuditPage = get(&app, "/api/v1/audit?limit=500").await.json();
    assert_eq!(page.entries.len() as i64, entries);

    // One entry changed in place: a refused attempt made to look accepted.
    let changed = page
        .entries
        .iter()
        .find(|e| e.target == "/api/v1/jobs/ghost-7")
        .expect("the entry of ghost-7")
        .id;
    tamper(
        &app,
        &format!("update server.audit_log set status = 200, outcome = 'ok' where id = {changed}"),
    )
    .await;
    let (ok, text) = audit_verify(&app.db.url).await;
    assert!(!ok, "a changed entry went unnoticed: {text}");
    assert!(
        text.contains(&format!("broken at entry #{changed} ")),
        "{text}"
    );
    let verified: AuditVerification = get(&app, "/api/v1/audit/verify").await.json();
    assert!(!verified.intact);
    assert_eq!(verified.broken.as_ref().map(|b| b.id), Some(changed));

    // Put back exactly as it was, the chain verifies again: the hash covers what changed and
    // nothing else.
    tamper(
        &app,
        &format!(
            "update server.audit_log set status = 404, outcome = 'not_found' where id = {changed}"
        ),
    )
    .await;
    let (ok, text) = audit_verify(&app.db.url).await;
    assert!(ok, "{text}");

    // One entry deleted: its successor in the chain no longer follows.
    let (deleted, successor): (i64, i64) = sqlx::query_as(
        "select id, lead(id) over (order by seq) from server.audit_log order by seq offset 3 limit 1",
    )
    .fetch_one(&mut conn)
    .await
    .expect("an entry and its successor");
    tamper(
        &app,
        &format!("delete from server.audit_log where id = {deleted}"),
    )
    .await;
    let (ok, text) = audit_verify(&app.db.url).await;
    assert!(!ok, "a deleted entry went unnoticed: {text}");
    assert!(
        text.contains(&format!("broken at entry #{successor} ")),
        "{text}"
    );
    assert!(text.contains("3 entries before it verified"), "{text}");
    app.stop().await;
}
