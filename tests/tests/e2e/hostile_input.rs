//! Hostile input through `/api/v1`: filters match SQL wildcards and metacharacters literally;
//! NUL characters, oversized bodies, object keys with `../`, oversized template documents, bad
//! attribute filters and out-of-range times get a clear 4xx (never a 500), and every refused
//! mutation stays on record in the audit log.

use flotilla_api::{AuditPage, JobList, ThingList};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::api_support::{Answer, create_group, get, post};
use crate::helpers::TestApp;

/// Strings that change a query's meaning when pasted into SQL, LIKE patterns or JSON paths.
pub const SQL_METACHARACTERS: [&str; 9] = [
    "'",
    "''",
    "%",
    "_",
    "\\",
    "a_b",
    "' or '1'='1",
    "x'; drop table server.audit_log; --",
    "$1",
];

/// `value` percent-encoded for a query string.
fn encoded(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The job ids of `GET /api/v1/jobs?{query}`.
async fn listed_jobs(app: &TestApp, query: &str) -> Vec<String> {
    let answer = get(app, &format!("/api/v1/jobs?{query}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{query}: {}", answer.body);
    let list: JobList = answer.json();
    let mut ids: Vec<String> = list.jobs.into_iter().map(|j| j.job_id).collect();
    ids.sort();
    ids
}

/// The audit entries of `GET /api/v1/audit?{query}`.
async fn audit(app: &TestApp, query: &str) -> AuditPage {
    let answer = get(app, &format!("/api/v1/audit?{query}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{query}: {}", answer.body);
    answer.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_filters_match_names_literally() {
    let app = TestApp::start_with(0, &["d-1"]).await;
    create_group(&app, "a_b", &["d-1"]).await;
    create_group(&app, "axb", &["d-1"]).await;
    for (job, group) in [("job-underscore", "a_b"), ("job-x", "axb")] {
        let created = post(
            &app,
            "/api/v1/jobs",
            json!({ "job_id": job, "thing_groups": [group], "document": { "op": "noop" } }),
        )
        .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    }
    crate::helpers::eventually(
        "both jobs listed",
        std::time::Duration::from_secs(10),
        || {
            let app = &app;
            async move { (listed_jobs(app, "").await.len() == 2).then_some(()) }
        },
    )
    .await;

    assert_eq!(
        listed_jobs(&app, "thing_group=a_b").await,
        ["job-underscore"]
    );
    assert_eq!(listed_jobs(&app, "thing_group=axb").await, ["job-x"]);
    assert!(listed_jobs(&app, "thing_group=%25").await.is_empty());
    assert!(listed_jobs(&app, "thing_group=a%25").await.is_empty());
    assert!(listed_jobs(&app, "thing_group=___").await.is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_metacharacters_in_every_text_filter_match_nothing_and_break_nothing() {
    let app = TestApp::start_with(0, &["d-1"]).await;
    let created = post(
        &app,
        "/api/v1/jobs",
        json!({ "job_id": "j1", "things": ["d-1"], "document": { "op": "noop" } }),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let entries_before = audit(&app, "limit=500").await.entries.len();

    for value in SQL_METACHARACTERS {
        let v = encoded(value);
        assert!(
            listed_jobs(&app, &format!("thing_group={v}"))
                .await
                .is_empty()
        );
        for query in [
            format!("action={v}"),
            format!("target={v}"),
            format!("outcome={v}"),
            format!("actor={v}"),
        ] {
            assert!(audit(&app, &query).await.entries.is_empty(), "{query}");
        }
        let things: ThingList = get(&app, &format!("/api/v1/things?name_prefix={v}"))
            .await
            .json();
        assert!(things.things.is_empty(), "{value}");
        let executions = get(&app, &format!("/api/v1/jobs/j1/executions?after={v}")).await;
        assert_eq!(executions.status, StatusCode::OK, "{}", executions.body);
        let rollouts = get(&app, &format!("/api/v1/rollouts?state={v}")).await;
        assert_eq!(rollouts.status, StatusCode::OK, "{}", rollouts.body);
        assert_eq!(rollouts.body["rollouts"], json!([]));
        // Filters with a fixed vocabulary or pattern refuse what is outside it, naming the
        // filter.
        get(&app, &format!("/api/v1/jobs?status={v}"))
            .await
            .assert_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                Some("status"),
            );
        let groups = get(&app, &format!("/api/v1/thing-groups?name_prefix={v}")).await;
        if groups.status == StatusCode::OK {
            assert_eq!(groups.body["groups"], json!([]), "{value}");
        } else {
            groups.assert_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                Some("name_prefix"),
            );
        }
        for path in [
            format!("/api/v1/jobs/{v}"),
            format!("/api/v1/things/{v}"),
            format!("/api/v1/rollouts/{v}"),
            format!("/api/v1/templates/{v}"),
        ] {
            let answer = get(&app, &path).await;
            assert!(answer.status.is_client_error(), "{path}: {}", answer.body);
        }
    }
    // Nothing was dropped or written by any of them.
    assert_eq!(audit(&app, "limit=500").await.entries.len(), entries_before);
    assert_eq!(listed_jobs(&app, "").await, ["j1"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_characters_are_refused_with_the_field_and_audited() {
    let app = TestApp::start_with(0, &["d-1"]).await;

    post(
        &app,
        "/api/v1/jobs",
        json!({ "job_id": "nul", "things": ["d-1"], "description": "a\u{0}b",
                "document": { "op": "noop" } }),
    )
    .await
    .assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("description"),
    );
    post(
        &app,
        "/api/v1/templates",
        json!({ "template_id": "nul", "document": { "steps": [{ "name": "x\u{0}" }] } }),
    )
    .await
    .assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("document.steps[0].name"),
    );
    get(&app, "/api/v1/jobs/a%00b").await.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("path"),
    );
    get(&app, "/api/v1/audit?actor=%00").await.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("actor"),
    );
    get(&app, "/api/v1/jobs/x/executions?after=a%00")
        .await
        .assert_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("after"),
        );

    // Both refused mutations are on record, the NUL shown as U+2400.
    let page = audit(&app, "outcome=invalid_request").await;
    let targets: Vec<&str> = page.entries.iter().map(|e| e.target.as_str()).collect();
    assert_eq!(targets, ["/api/v1/templates", "/api/v1/jobs"], "{page:?}");
    assert!(page.entries.iter().all(|e| e.status == 422));
    assert_eq!(
        page.entries[1].request.as_ref().expect("a summary")["description"],
        "a\u{2400}b"
    );
    assert!(iso_jobs_empty(&app).await);
    app.stop().await;
}

/// Whether IoT has no job at all (a refused request created none).
async fn iso_jobs_empty(app: &TestApp) -> bool {
    crate::api_support::iot_job_ids(app).await.is_empty()
}

/// Sends `POST {path}` with `body` in chunks (`Transfer-Encoding: chunked`, no
/// Content-Length) over a raw connection and returns the status code.
async fn post_chunked(app: &TestApp, path: &str, body: &[u8]) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(app.server.addr)
        .await
        .expect("connecting to the server");
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        app.server.addr
    );
    stream.write_all(head.as_bytes()).await.expect("writing");
    for chunk in body.chunks(64 * 1024) {
        let framed = [
            format!("{:x}\r\n", chunk.len()).as_bytes(),
            chunk,
            b"\r\n".as_slice(),
        ]
        .concat();
        // The server may answer and close before the whole body is sent.
        if stream.write_all(&framed).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {answer:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_with_or_without_content_length() {
    let app = TestApp::start_with(0, &["d-1"]).await;
    let big = json!({ "job_id": "big", "things": ["d-1"],
                      "document": { "blob": "x".repeat(1536 * 1024) } })
    .to_string();

    let response = app
        .http
        .post(app.url("/api/v1/jobs"))
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.expect("a JSON error");
    assert_eq!(body["code"], "payload_too_large", "{body}");

    assert_eq!(
        post_chunked(&app, "/api/v1/jobs", big.as_bytes()).await,
        413
    );
    // A chunked body under the limit still works.
    let small = json!({ "job_id": "small", "things": ["d-1"], "document": { "op": "noop" } });
    assert_eq!(
        post_chunked(&app, "/api/v1/jobs", small.to_string().as_bytes()).await,
        201
    );

    let page = audit(&app, "outcome=payload_too_large").await;
    assert_eq!(page.entries.len(), 2, "{page:?}");
    assert!(page.entries.iter().all(|e| e.status == 413));
    app.stop().await;
}

/// A document downloading `url` through a presigned-URL placeholder.
fn download_document(url: &str) -> Value {
    json!({ "operation": "download", "directory": "/tmp/x",
            "files": { "url": format!("${{aws:iot:s3-presigned-url:{url}}}") } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_keys_that_leave_their_folder_are_refused() {
    let app = TestApp::start_with(0, &["d-1"]).await;
    for url in [
        "https://s3.amazonaws.com/bucket/../../etc/passwd",
        "https://s3.amazonaws.com/bucket/fw/%2E%2E/%2e%2e/secret",
        "https://bucket.s3.amazonaws.com/./x",
        "https://s3.amazonaws.com/bucket/a\\..\\b",
    ] {
        post(
            &app,
            "/api/v1/jobs",
            json!({ "job_id": "traversal", "things": ["d-1"], "document": download_document(url) }),
        )
        .await
        .assert_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("document"),
        );
        post(
            &app,
            "/api/v1/templates",
            json!({ "template_id": "traversal", "document": download_document(url) }),
        )
        .await
        .assert_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("document"),
        );
    }
    // A plain key is fine.
    let fine = post(
        &app,
        "/api/v1/jobs",
        json!({ "job_id": "plain", "things": ["d-1"],
                "document": download_document("https://s3.amazonaws.com/bucket/fw/app.bin") }),
    )
    .await;
    assert_eq!(fine.status, StatusCode::CREATED, "{}", fine.body);
    assert_eq!(crate::api_support::iot_job_ids(&app).await, ["plain"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_over_32_kib_are_refused() {
    let app = TestApp::start_with(0, &["d-1"]).await;
    let blob = "x".repeat(33 * 1024);
    post(
        &app,
        "/api/v1/templates",
        json!({ "template_id": "huge", "document": { "blob": blob } }),
    )
    .await
    .assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("document"),
    );
    post(
        &app,
        "/api/v1/jobs",
        json!({ "job_id": "huge", "things": ["d-1"], "document": { "blob": blob } }),
    )
    .await
    .assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("document"),
    );
    // A template under the limit whose rendered document is over it.
    let created = post(
        &app,
        "/api/v1/templates",
        json!({ "template_id": "grows", "document": { "blob": "${aws:iot:parameter:text}" },
                "parameters": [{ "name": "text", "type": "string" }] }),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    post(
        &app,
        "/api/v1/templates/grows/preview",
        json!({ "parameters": { "text": blob } }),
    )
    .await
    .assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("parameters"),
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_filters_name_their_own_field() {
    let app = TestApp::start_with(0, &["d-1"]).await;
    for (query, field) in [
        ("attr.colour=red%21", "attr.colour"),
        ("attr.b%24d=x", "attr.b$d"),
        ("attr.=x", "attr."),
    ] {
        get(&app, &format!("/api/v1/things?{query}"))
            .await
            .assert_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                Some(field),
            );
    }
    get(&app, "/api/v1/thing-groups?name_prefix=a%20b")
        .await
        .assert_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("name_prefix"),
        );
    for since in [
        "99999-01-01T00:00:00Z",
        "%2B99999-01-01T00:00:00Z",
        "-10000-01-01T00:00:00Z",
        "0000-01-01T00:00:00Z",
    ] {
        let answer: Answer = get(&app, &format!("/api/v1/audit?since={since}")).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{since}: {}",
            answer.body
        );
    }
    app.stop().await;
}
