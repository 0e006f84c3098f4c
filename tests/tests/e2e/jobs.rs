//! A job pushed through every part: HTTP API → aws-sdk-iot → engine → MQTT → simulated devices
//! → engine → `$aws/events` → projection → HTTP API.

use std::time::Duration;

use flotilla_api::{ErrorBody, JobDetail, JobList, JobStatus};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_devices_finish_a_job_created_through_the_api() {
    let app = TestApp::start(5).await;
    let things: Vec<String> = (1..=5).map(|i| format!("sim-{i:04}")).collect();

    let response = app
        .http
        .post(app.url("/api/v1/jobs"))
        .json(&json!({
            "job_id": "e2e-first-job",
            "description": "walking skeleton",
            "things": things,
            "document": { "operation": "simulate", "simulate": { "duration_ms": 200 } },
        }))
        .send()
        .await
        .expect("POST /api/v1/jobs");
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: JobDetail = response.json().await.expect("job detail");
    assert_eq!(created.job.job_id, "e2e-first-job");
    assert_eq!(created.job.counts.total(), 5);

    let done: JobDetail = eventually(
        "all 5 executions SUCCEEDED and the job COMPLETED",
        Duration::from_secs(60),
        || async {
            let detail = app.job("e2e-first-job").await?;
            (detail.job.status == JobStatus::Completed && detail.job.counts.succeeded == 5)
                .then_some(detail)
        },
    )
    .await;
    assert_eq!(done.executions.len(), 5);
    assert!(
        done.executions.iter().all(|e| e.status == "SUCCEEDED"),
        "{:?}",
        done.executions
    );
    assert!(done.executions.iter().all(|e| e.started_at.is_some()));
    assert!(done.job.completed_at.is_some());
    assert_eq!(
        done.job.counts.failed + done.job.counts.queued + done.job.counts.in_progress,
        0
    );

    let list: JobList = app
        .http
        .get(app.url("/api/v1/jobs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.jobs.len(), 1);
    assert_eq!(list.jobs[0].status, JobStatus::Completed);

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_job_requests_get_clear_errors_and_change_nothing() {
    let app = TestApp::start(1).await;
    let post = |body: serde_json::Value| {
        let request = app.http.post(app.url("/api/v1/jobs")).json(&body);
        async move { request.send().await.expect("POST /api/v1/jobs") }
    };

    let cases = [
        (
            json!({ "job_id": "bad id!", "things": ["sim-0001"], "document": {} }),
            "job_id",
        ),
        (
            json!({ "things": ["sim-0001"], "document": "not an object" }),
            "document",
        ),
        (json!({ "things": [], "document": {} }), "things"),
        (
            json!({ "things": ["no-such-device"], "document": {} }),
            "things",
        ),
        (
            json!({ "things": ["sim-0001", "ghost"], "document": {} }),
            "things",
        ),
    ];
    for (body, field) in cases {
        let response = post(body.clone()).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        let error: ErrorBody = response.json().await.expect("error body");
        assert_eq!(error.code, "invalid_request");
        assert_eq!(error.fields[0].field, field, "{body}");
    }

    // Malformed JSON gets the same error shape.
    let response = app
        .http
        .post(app.url("/api/v1/jobs"))
        .header("content-type", "application/json")
        .body("{ not json")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error());
    let error: ErrorBody = response.json().await.expect("error body");
    assert_eq!(error.code, "invalid_request");

    // Nothing was created by the bad requests.
    let list: JobList = app
        .http
        .get(app.url("/api/v1/jobs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list.jobs.is_empty(), "{:?}", list.jobs);

    // A duplicate job id is a conflict, and the first job is untouched.
    let ok = json!({ "job_id": "dup", "things": ["sim-0001"], "document": { "simulate": { "duration_ms": 1 } } });
    assert_eq!(post(ok.clone()).await.status(), StatusCode::CREATED);
    let again = post(ok).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert_eq!(again.json::<ErrorBody>().await.unwrap().code, "conflict");

    let missing = app
        .http
        .get(app.url("/api/v1/jobs/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.json::<ErrorBody>().await.unwrap().code, "not_found");

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_can_be_force_canceled_and_deleted() {
    let app = TestApp::start(2).await;
    let post = |path: &str, body: serde_json::Value| {
        let request = app.http.post(app.url(path)).json(&body);
        async move { request.send().await.expect("POST") }
    };
    let created = post(
        "/api/v1/jobs",
        json!({
            "job_id": "long-install",
            "things": ["sim-0001", "sim-0002"],
            "document": { "simulate": { "duration_ms": 600_000 } },
        }),
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    eventually(
        "both devices working on the job",
        Duration::from_secs(30),
        || async {
            let detail = app.job("long-install").await?;
            (detail.job.counts.in_progress == 2).then_some(())
        },
    )
    .await;

    // An invalid reason code changes nothing.
    let bad = post(
        "/api/v1/jobs/long-install/cancel",
        json!({ "reason_code": "not valid" }),
    )
    .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.job("long-install").await.unwrap().job.status,
        JobStatus::InProgress
    );

    // A running job cannot be deleted without force.
    let refused = app
        .http
        .delete(app.url("/api/v1/jobs/long-install"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::CONFLICT);

    let canceled = post(
        "/api/v1/jobs/long-install/cancel",
        json!({ "force": true, "comment": "wrong build", "reason_code": "BAD_BUILD" }),
    )
    .await;
    assert_eq!(canceled.status(), StatusCode::OK);
    let detail: JobDetail = canceled.json().await.unwrap();
    assert_eq!(detail.job.status, JobStatus::Canceled);
    assert_eq!(detail.job.counts.canceled, 2, "{:?}", detail.job.counts);
    assert!(detail.executions.iter().all(|e| e.status == "CANCELED"));

    let deleted = app
        .http
        .delete(app.url("/api/v1/jobs/long-install"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = app
        .http
        .get(app.url("/api/v1/jobs/long-install"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);

    app.stop().await;
}
