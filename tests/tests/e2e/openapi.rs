//! The served OpenAPI document is a valid OpenAPI document, by `openapi-spec-validator` (from
//! the tests' Python virtualenv). That every route is in it is a unit test of the server
//! (`server/src/api/openapi.rs`).

use std::time::Duration;

use crate::helpers::{TestApp, device_python};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_openapi_document_validates() {
    let app = TestApp::start(0).await;
    let response = app
        .http
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("GET /api/v1/openapi.json");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let document: serde_json::Value = response.json().await.expect("JSON");
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );
    assert!(document["paths"]["/api/v1/jobs"]["post"].is_object());

    let file = std::env::temp_dir().join(format!("flotilla-openapi-{}.json", app.db.name));
    std::fs::write(&file, document.to_string()).expect("writing the document");
    let validated = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(device_python())
            .args([
                "-c",
                "import json, sys\n\
                 from openapi_spec_validator import validate\n\
                 validate(json.load(open(sys.argv[1])))\n\
                 print('valid')",
            ])
            .arg(&file)
            .output(),
    )
    .await
    .expect("the validator finishes within 60 s")
    .expect("running openapi-spec-validator");
    let _ = std::fs::remove_file(&file);
    assert!(
        validated.status.success(),
        "the OpenAPI document is invalid:\n{}",
        String::from_utf8_lossy(&validated.stderr)
    );
    app.stop().await;
}
