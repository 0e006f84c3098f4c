//! `/api/v1/jobs` with every AWS job option, server-side validation with field messages,
//! filtered lists, keyset pages of executions, and cancelling or retrying one device's
//! execution — against the engine through `aws-sdk-iot`.

use std::time::Duration;

use aws_sdk_iot::types::{JobEndBehavior, TargetSelection};
use chrono::Utc;
use flotilla_api::{ExecutionPage, JobDetail, JobList, JobStatus, RetriedExecution};
use reqwest::StatusCode;
use serde_json::json;

use crate::api_support::{create_group, create_thing, delete, get, iot_job_ids, post};
use crate::helpers::{TestApp, eventually};

/// The options of a job that exercises every configuration.
fn every_option() -> serde_json::Value {
    let start = (Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let end = (Utc::now() + chrono::Duration::hours(30)).to_rfc3339();
    json!({
        "target_selection": "CONTINUOUS",
        "rollout": { "maximum_per_minute": 50, "exponential_rate": {
            "base_rate_per_minute": 5, "increment_factor": 1.5,
            "rate_increase_criteria": { "number_of_succeeded_things": 10 } } },
        "abort": { "criteria": [{ "failure_type": "FAILED", "threshold_percentage": 12.5,
            "min_number_of_executed_things": 20 }] },
        "timeout": { "in_progress_timeout_in_minutes": 90 },
        "retry": { "criteria": [{ "failure_type": "FAILED", "number_of_retries": 2 },
            { "failure_type": "TIMED_OUT", "number_of_retries": 1 }] },
        "scheduling": { "start_time": start, "end_time": end, "end_behavior": "CANCEL",
            "maintenance_windows": [{ "start_time": "cron(0 22 ? * SUN *)", "duration_in_minutes": 120 }] },
        "presigned_url": { "role_arn": "arn:aws:iam::000000000000:role/flotilla-presign", "expires_in_sec": 900 },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_every_option_reaches_iot_and_lists_by_filter() {
    let app = TestApp::start_with(0, &["d-1", "d-2", "d-3"]).await;
    create_group(&app, "lyon", &["d-1", "d-2"]).await;

    let mut request = every_option();
    request["job_id"] = json!("everything");
    request["description"] = json!("all the options");
    request["thing_groups"] = json!(["lyon"]);
    request["things"] = json!(["d-3"]);
    request["document"] = json!({ "operation": "install", "version": "2.0" });
    let created = post(&app, "/api/v1/jobs", request).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let detail: JobDetail = created.json();
    assert_eq!(detail.job.status, JobStatus::Scheduled);
    assert_eq!(detail.job.targets.len(), 2);

    let job = app
        .server
        .iot_client
        .describe_job()
        .job_id("everything")
        .send()
        .await
        .expect("DescribeJob")
        .job
        .expect("a job");
    assert_eq!(job.target_selection, Some(TargetSelection::Continuous));
    let rollout = job.job_executions_rollout_config.expect("rollout");
    assert_eq!(rollout.maximum_per_minute, Some(50));
    let rate = rollout.exponential_rate.expect("exponential rate");
    assert_eq!((rate.base_rate_per_minute, rate.increment_factor), (5, 1.5));
    let abort = job.abort_config.expect("abort");
    assert_eq!(abort.criteria_list[0].threshold_percentage, 12.5);
    assert_eq!(
        job.timeout_config
            .and_then(|t| t.in_progress_timeout_in_minutes),
        Some(90)
    );
    assert_eq!(
        job.job_executions_retry_config
            .expect("retry")
            .criteria_list
            .len(),
        2
    );
    let scheduling = job.scheduling_config.expect("scheduling");
    assert_eq!(scheduling.end_behavior, Some(JobEndBehavior::Cancel));
    assert_eq!(
        scheduling.maintenance_windows.expect("windows")[0].start_time,
        "cron(0 22 ? * SUN *)"
    );
    assert_eq!(
        job.presigned_url_config.and_then(|p| p.expires_in_sec),
        Some(900)
    );

    let plain = post(
        &app,
        "/api/v1/jobs",
        json!({ "job_id": "plain", "things": ["d-3"], "document": { "op": "reboot" } }),
    )
    .await;
    assert_eq!(plain.status, StatusCode::CREATED, "{}", plain.body);

    let ids = |list: JobList| -> Vec<String> { list.jobs.into_iter().map(|j| j.job_id).collect() };
    let all: JobList = get(&app, "/api/v1/jobs").await.json();
    assert_eq!(ids(all).len(), 2);
    let scheduled: JobList = get(&app, "/api/v1/jobs?status=SCHEDULED").await.json();
    assert_eq!(ids(scheduled), ["everything"]);
    let running: JobList = get(&app, "/api/v1/jobs?status=IN_PROGRESS").await.json();
    assert_eq!(ids(running), ["plain"]);
    let for_lyon: JobList = get(&app, "/api/v1/jobs?thing_group=lyon").await.json();
    assert_eq!(ids(for_lyon), ["everything"]);
    let limited: JobList = get(&app, "/api/v1/jobs?limit=1").await.json();
    assert_eq!(limited.jobs.len(), 1);
    get(&app, "/api/v1/jobs?status=SLEEPING")
        .await
        .assert_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("status"),
        );
    get(&app, "/api/v1/jobs?limit=0").await.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("limit"),
    );

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_jobs_get_field_messages_and_nothing_reaches_iot() {
    let app = TestApp::start_with(0, &["d-1"]).await;
    let base = || json!({ "things": ["d-1"], "document": { "op": "x" } });
    let with = |extra: serde_json::Value| {
        let mut body = base();
        body.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        body
    };
    let cases = [
        (
            with(json!({ "document": { "blob": "x".repeat(33 * 1024) } })),
            "document",
        ),
        (with(json!({ "document": [1, 2] })), "document"),
        (json!({ "things": ["d-1"] }), "document"),
        (with(json!({ "template_id": "t" })), "template_id"),
        (with(json!({ "parameters": { "a": 1 } })), "parameters"),
        (with(json!({ "things": ["ghost"] })), "things"),
        (
            with(json!({ "thing_groups": ["no-group"] })),
            "thing_groups",
        ),
        (with(json!({ "things": [] })), "things"),
        (with(json!({ "job_id": "bad id" })), "job_id"),
        (
            with(json!({ "target_selection": "SOMETIMES" })),
            "target_selection",
        ),
        (
            with(json!({ "rollout": { "maximum_per_minute": 5000 } })),
            "rollout.maximum_per_minute",
        ),
        (
            with(
                json!({ "rollout": { "exponential_rate": { "base_rate_per_minute": 5,
                "increment_factor": 9.0, "rate_increase_criteria": { "number_of_notified_things": 1 } } } }),
            ),
            "rollout.exponential_rate.increment_factor",
        ),
        (
            with(json!({ "abort": { "criteria": [{ "failure_type": "FAILED",
                "threshold_percentage": 0, "min_number_of_executed_things": 1 }] } })),
            "abort.criteria[0].threshold_percentage",
        ),
        (
            with(json!({ "timeout": { "in_progress_timeout_in_minutes": 0 } })),
            "timeout.in_progress_timeout_in_minutes",
        ),
        (
            with(
                json!({ "retry": { "criteria": [{ "failure_type": "FAILED", "number_of_retries": 20 }] } }),
            ),
            "retry.criteria[0].number_of_retries",
        ),
        (
            with(
                json!({ "scheduling": { "maintenance_windows": [{ "start_time": "cron(every day)",
                "duration_in_minutes": 60 }] } }),
            ),
            "scheduling.maintenance_windows[0].start_time",
        ),
        (
            with(json!({ "scheduling": { "start_time": "2001-01-01T00:00:00Z" } })),
            "scheduling.start_time",
        ),
        (
            with(json!({ "presigned_url": { "expires_in_sec": 7200 } })),
            "presigned_url.expires_in_sec",
        ),
    ];
    for (body, field) in cases {
        post(&app, "/api/v1/jobs", body.clone()).await.assert_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some(field),
        );
    }

    // Every problem of one request is reported at once.
    let many = post(
        &app,
        "/api/v1/jobs",
        with(json!({ "timeout": { "in_progress_timeout_in_minutes": 0 },
            "presigned_url": { "expires_in_sec": 1 } })),
    )
    .await;
    assert_eq!(
        many.body["fields"].as_array().map(Vec::len),
        Some(2),
        "{}",
        many.body
    );

    // A wrongly typed member is refused with the same error shape.
    post(
        &app,
        "/api/v1/jobs",
        with(json!({ "timeout": { "in_progress_timeout_in_minutes": "soon" } })),
    )
    .await
    .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", None);

    assert!(iot_job_ids(&app).await.is_empty());
    let list: JobList = get(&app, "/api/v1/jobs").await.json();
    assert!(list.jobs.is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_page_by_keyset_and_one_device_is_canceled_and_retried() {
    let things = ["d-1", "d-2", "d-3", "d-4", "d-5"];
    let app = TestApp::start_with(0, &things).await;
    create_thing(&app, "d-6", &[]).await;
    let created = post(
        &app,
        "/api/v1/jobs",
        json!({ "job_id": "fw-7", "things": things, "document": { "firmware": "7.0" } }),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);

    // Pages of two, in thing order, until the last one.
    let mut seen = Vec::new();
    let mut path = "/api/v1/jobs/fw-7/executions?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page: ExecutionPage = get(&app, &path).await.json();
        pages += 1;
        seen.extend(page.executions.iter().map(|e| e.thing_name.clone()));
        match page.next_after {
            Some(after) => path = format!("/api/v1/jobs/fw-7/executions?limit=2&after={after}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, things);

    // Cancel one device's execution, with a reason.
    let canceled = post(
        &app,
        "/api/v1/jobs/fw-7/executions/d-2/cancel",
        json!({ "reason": "device sent back for repair" }),
    )
    .await;
    assert_eq!(canceled.status, StatusCode::OK, "{}", canceled.body);
    let detail: JobDetail = canceled.json();
    let d2 = detail
        .executions
        .iter()
        .find(|e| e.thing_name == "d-2")
        .expect("d-2's execution");
    assert_eq!(d2.status, "CANCELED");
    let queued: ExecutionPage = get(&app, "/api/v1/jobs/fw-7/executions?status=QUEUED")
        .await
        .json();
    assert_eq!(queued.executions.len(), 4);
    let canceled: ExecutionPage = get(&app, "/api/v1/jobs/fw-7/executions?status=CANCELED")
        .await
        .json();
    assert_eq!(canceled.executions.len(), 1);
    assert_eq!(canceled.executions[0].thing_name, "d-2");

    // Retry it: a follow-up job for d-2 alone with the same document; asking again gives the
    // same job and creates nothing.
    let retried = post(&app, "/api/v1/jobs/fw-7/executions/d-2/retry", json!({})).await;
    assert_eq!(retried.status, StatusCode::CREATED, "{}", retried.body);
    let retry: RetriedExecution = retried.json();
    assert!(retry.created);
    let again = post(&app, "/api/v1/jobs/fw-7/executions/d-2/retry", json!({})).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.json::<RetriedExecution>().job_id, retry.job_id);
    assert_eq!(iot_job_ids(&app).await.len(), 2);
    let follow_up = eventually(
        "the retry job in the projection",
        Duration::from_secs(10),
        || app.job(&retry.job_id),
    )
    .await;
    assert_eq!(follow_up.executions.len(), 1);
    assert_eq!(follow_up.executions[0].thing_name, "d-2");
    let document = app
        .server
        .iot_client
        .get_job_document()
        .job_id(&retry.job_id)
        .send()
        .await
        .expect("GetJobDocument")
        .document
        .expect("a document");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&document).expect("JSON"),
        json!({ "firmware": "7.0" })
    );

    // Errors: a QUEUED execution cannot be retried; unknown jobs and things are 404; bad
    // filters are 422; cancelling a finished execution is a conflict.
    post(&app, "/api/v1/jobs/fw-7/executions/d-1/retry", json!({}))
        .await
        .assert_error(StatusCode::CONFLICT, "conflict", None);
    post(&app, "/api/v1/jobs/fw-7/executions/d-6/retry", json!({}))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found", None);
    post(&app, "/api/v1/jobs/nope/executions/d-1/cancel", json!({}))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found", None);
    post(&app, "/api/v1/jobs/fw-7/executions/d-2/cancel", json!({}))
        .await
        .assert_error(StatusCode::CONFLICT, "conflict", None);
    post(
        &app,
        "/api/v1/jobs/fw-7/executions/d-1/cancel",
        json!({ "reason": "" }),
    )
    .await
    .assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("reason"),
    );
    get(&app, "/api/v1/jobs/nope/executions")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found", None);
    get(&app, "/api/v1/jobs/fw-7/executions?status=DONE")
        .await
        .assert_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("status"),
        );
    get(&app, "/api/v1/jobs/fw-7/executions?limit=5000")
        .await
        .assert_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("limit"),
        );
    get(&app, "/api/v1/jobs/fw-7/executions?limit=x")
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", None);

    // Cancel the whole job with a reason, then delete it.
    let canceled = post(
        &app,
        "/api/v1/jobs/fw-7/cancel",
        json!({ "comment": "superseded", "reason_code": "SUPERSEDED" }),
    )
    .await;
    assert_eq!(canceled.status, StatusCode::OK, "{}", canceled.body);
    assert_eq!(canceled.json::<JobDetail>().job.status, JobStatus::Canceled);
    post(
        &app,
        "/api/v1/jobs/fw-7/cancel",
        json!({ "comment": "x".repeat(3000) }),
    )
    .await
    .assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("comment"),
    );
    let deleted = delete(&app, "/api/v1/jobs/fw-7").await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    get(&app, "/api/v1/jobs/fw-7")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found", None);
    delete(&app, "/api/v1/jobs/fw-7")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found", None);

    app.stop().await;
}
