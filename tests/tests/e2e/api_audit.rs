//! The audit hook: every mutation through `/api/v1`, accepted or refused, is recorded with
//! actor, action, target, a request summary, the outcome and the source address; reads are
//! not; `GET /api/v1/audit` filters and pages the log.

use flotilla_api::AuditPage;
use reqwest::StatusCode;
use serde_json::json;

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
