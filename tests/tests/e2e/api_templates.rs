//! `/api/v1/templates`: versioned templates with typed parameters, previews, jobs from
//! templates, importing the AWS managed templates from the engine and syncing to AWS job
//! templates.

use flotilla_api::{ImportedTemplates, JobDetail, RenderedTemplate, Template, TemplateList};
use reqwest::StatusCode;
use serde_json::json;

use crate::api_support::{delete, get, iot_job_ids, post, put};
use crate::helpers::TestApp;

fn firmware_template() -> serde_json::Value {
    json!({
        "template_id": "firmware",
        "description": "install a firmware build",
        "document": {
            "operation": "install",
            "url": "https://builds.example/fw-${aws:iot:parameter:version}.bin",
            "reboot_delay_s": "${aws:iot:parameter:delay}",
            "channel": "${aws:iot:parameter:channel}",
        },
        "parameters": [
            { "name": "version", "type": "string", "pattern": "[0-9]+\\.[0-9]+\\.[0-9]+" },
            { "name": "delay", "type": "int", "min": 0, "max": 600, "default": 30 },
            { "name": "channel", "type": "enum", "values": ["stable", "beta"], "required": false },
        ],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_are_versioned_previewed_and_make_jobs() {
    let app = TestApp::start_with(0, &["d-1"]).await;

    let created = post(&app, "/api/v1/templates", firmware_template()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let v1: Template = created.json();
    assert_eq!((v1.version, v1.latest_version), (1, 1));
    assert_eq!(v1.parameters.len(), 3);
    assert_eq!(v1.source, "custom");
    post(&app, "/api/v1/templates", firmware_template())
        .await
        .assert_error(StatusCode::CONFLICT, "conflict", None);

    // Preview: typed rendering; every bad parameter named.
    let rendered: RenderedTemplate = post(
        &app,
        "/api/v1/templates/firmware/preview",
        json!({ "parameters": { "version": "1.2.3", "channel": "beta" } }),
    )
    .await
    .json();
    assert_eq!(
        rendered.document,
        json!({ "operation": "install", "url": "https://builds.example/fw-1.2.3.bin",
                "reboot_delay_s": 30, "channel": "beta" })
    );
    let bad = post(
        &app,
        "/api/v1/templates/firmware/preview",
        json!({ "parameters": { "version": "latest", "delay": 601, "channel": "nightly", "colour": "red" } }),
    )
    .await;
    bad.assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("parameters.version"),
    );
    for field in [
        "parameters.delay",
        "parameters.channel",
        "parameters.colour",
    ] {
        bad.assert_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some(field),
        );
    }
    post(&app, "/api/v1/templates/firmware/preview", json!({}))
        .await
        .assert_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("parameters.version"),
        );

    // Every update is a new version; old versions stay readable and renderable.
    let mut update = firmware_template();
    update
        .as_object_mut()
        .expect("object")
        .remove("template_id");
    update["document"]["operation"] = json!("install-verified");
    let v2: Template = put(&app, "/api/v1/templates/firmware", update).await.json();
    assert_eq!((v2.version, v2.latest_version), (2, 2));
    let old: Template = get(&app, "/api/v1/templates/firmware?version=1")
        .await
        .json();
    assert_eq!(old.document["operation"], "install");
    assert_eq!(old.latest_version, 2);
    let versions: TemplateList = get(&app, "/api/v1/templates/firmware/versions")
        .await
        .json();
    let numbers: Vec<i32> = versions.templates.iter().map(|t| t.version).collect();
    assert_eq!(numbers, [2, 1]);
    let old_preview: RenderedTemplate = post(
        &app,
        "/api/v1/templates/firmware/preview",
        json!({ "version": 1, "parameters": { "version": "1.0.0" } }),
    )
    .await
    .json();
    assert_eq!(old_preview.document["operation"], "install");
    get(&app, "/api/v1/templates/firmware?version=9")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found", None);

    // A job from the template gets the rendered document.
    let job = post(
        &app,
        "/api/v1/jobs",
        json!({ "job_id": "from-template", "things": ["d-1"], "template_id": "firmware",
                "parameters": { "version": "3.1.4", "delay": 5 } }),
    )
    .await;
    assert_eq!(job.status, StatusCode::CREATED, "{}", job.body);
    let _: JobDetail = job.json();
    let document = app
        .server
        .iot_client
        .get_job_document()
        .job_id("from-template")
        .send()
        .await
        .expect("GetJobDocument")
        .document
        .expect("a document");
    let document: serde_json::Value = serde_json::from_str(&document).expect("JSON");
    assert_eq!(document["operation"], "install-verified");
    assert_eq!(document["reboot_delay_s"], 5);
    assert_eq!(document["channel"], "");
    post(
        &app,
        "/api/v1/jobs",
        json!({ "things": ["d-1"], "template_id": "firmware", "parameters": { "version": "x" } }),
    )
    .await
    .assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("parameters.version"),
    );
    post(
        &app,
        "/api/v1/jobs",
        json!({ "things": ["d-1"], "template_id": "firmware", "template_version": 7,
                "parameters": { "version": "1.0.0" } }),
    )
    .await
    .assert_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        Some("template_id"),
    );
    assert_eq!(iot_job_ids(&app).await, ["from-template"]);

    // Delete.
    let list: TemplateList = get(&app, "/api/v1/templates").await.json();
    assert_eq!(list.templates.len(), 1);
    assert_eq!(
        delete(&app, "/api/v1/templates/firmware").await.status,
        StatusCode::NO_CONTENT
    );
    get(&app, "/api/v1/templates/firmware").await.assert_error(
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    delete(&app, "/api/v1/templates/firmware")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found", None);
    put(
        &app,
        "/api/v1/templates/firmware",
        json!({ "document": {} }),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found", None);

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_templates_are_refused_with_field_messages() {
    let app = TestApp::start_with(0, &[]).await;
    let with = |change: &dyn Fn(&mut serde_json::Value)| {
        let mut body = firmware_template();
        change(&mut body);
        body
    };
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (
            with(&|b| b["template_id"] = json!("has space")),
            "template_id",
        ),
        (
            with(&|b| {
                b.as_object_mut().expect("object").remove("template_id");
            }),
            "template_id",
        ),
        (with(&|b| b["document"] = json!("text")), "document"),
        (
            with(&|b| b["document"]["x"] = json!("${aws:iot:parameter:undeclared}")),
            "document",
        ),
        (
            with(&|b| b["document"]["blob"] = json!("x".repeat(33 * 1024))),
            "document",
        ),
        (
            with(&|b| b["parameters"][0]["type"] = json!("float")),
            "parameters[0].type",
        ),
        (
            with(&|b| b["parameters"][0]["pattern"] = json!("([")),
            "parameters[0].pattern",
        ),
        (
            with(&|b| b["parameters"][1]["default"] = json!(601)),
            "parameters[1].default",
        ),
        (
            with(&|b| b["parameters"][1]["min"] = json!(700)),
            "parameters[1].min",
        ),
        (
            with(&|b| b["parameters"][2]["values"] = json!([])),
            "parameters[2].values",
        ),
        (
            with(&|b| b["parameters"][2]["name"] = json!("version")),
            "parameters[2].name",
        ),
    ];
    for (body, field) in cases {
        post(&app, "/api/v1/templates", body.clone())
            .await
            .assert_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                Some(field),
            );
    }
    let list: TemplateList = get(&app, "/api/v1/templates").await.json();
    assert!(list.templates.is_empty());
    post(&app, "/api/v1/templates/ghost/preview", json!({}))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found", None);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_templates_are_imported_and_templates_sync_to_aws() {
    let app = TestApp::start_with(0, &["d-1"]).await;
    let first: ImportedTemplates = post(&app, "/api/v1/templates/import-managed", json!({}))
        .await
        .json();
    assert!(
        first.imported.contains(&"AWS-Reboot".to_owned()),
        "{first:?}"
    );
    assert!(first.unchanged.is_empty());
    let count = first.imported.len();
    assert!(count >= 8, "{first:?}");
    let again: ImportedTemplates = post(&app, "/api/v1/templates/import-managed", json!({}))
        .await
        .json();
    assert!(again.imported.is_empty(), "{again:?}");
    assert_eq!(again.unchanged.len(), count);

    let download: Template = get(&app, "/api/v1/templates/AWS-Download-File")
        .await
        .json();
    assert_eq!(download.source, "aws_managed");
    assert_eq!(download.version, 1);
    assert!(download.parameters.iter().any(|p| p.required));
    // Its required parameters must be given before it renders.
    post(
        &app,
        "/api/v1/templates/AWS-Download-File/preview",
        json!({}),
    )
    .await
    .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", None);
    let reboot: RenderedTemplate = post(&app, "/api/v1/templates/AWS-Reboot/preview", json!({}))
        .await
        .json();
    assert!(!reboot.document.to_string().contains("${aws:iot:parameter:"));
    post(&app, "/api/v1/templates/AWS-Reboot/sync", json!({}))
        .await
        .assert_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("template_id"),
        );

    // Sync a template whose parameters all have defaults; a second sync is a conflict.
    let saved = post(
        &app,
        "/api/v1/templates",
        json!({ "template_id": "reboot-later", "document": { "op": "reboot", "delay": "${aws:iot:parameter:delay}" },
                "parameters": [{ "name": "delay", "type": "int", "default": 60 }] }),
    )
    .await;
    assert_eq!(saved.status, StatusCode::CREATED, "{}", saved.body);
    let synced = post(&app, "/api/v1/templates/reboot-later/sync", json!({})).await;
    assert_eq!(synced.status, StatusCode::OK, "{}", synced.body);
    let synced: Template = synced.json();
    assert_eq!(
        synced.aws_job_template_id.as_deref(),
        Some("reboot-later-v1")
    );
    let aws = app
        .server
        .iot_client
        .describe_job_template()
        .job_template_id("reboot-later-v1")
        .send()
        .await
        .expect("DescribeJobTemplate");
    let document: serde_json::Value =
        serde_json::from_str(aws.document.as_deref().expect("a document")).expect("JSON");
    assert_eq!(document, json!({ "op": "reboot", "delay": 60 }));
    post(&app, "/api/v1/templates/reboot-later/sync", json!({}))
        .await
        .assert_error(StatusCode::CONFLICT, "conflict", None);
    let needs_input = post(
        &app,
        "/api/v1/templates",
        json!({ "template_id": "needs-input", "document": { "v": "${aws:iot:parameter:v}" },
                "parameters": [{ "name": "v", "type": "string" }] }),
    )
    .await;
    assert_eq!(
        needs_input.status,
        StatusCode::CREATED,
        "{}",
        needs_input.body
    );
    post(&app, "/api/v1/templates/needs-input/sync", json!({}))
        .await
        .assert_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("template_id"),
        );
    app.stop().await;
}
