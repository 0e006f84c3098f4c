//! The seed's reference device program — `tests/devices/device.py`, written for AWS IoT with the
//! AWS IoT Device SDK for Python v1 and changed only in its endpoint and credentials — runs
//! against Flotilla: it connects to the engine's MQTT broker as thing `iot-jobs-thing`, gets a
//! job created through the HTTP API from `notify-next`, downloads the file the job document
//! names and reports the result on `$aws/things/iot-jobs-thing/jobs/{jobId}/update`, which the
//! dashboard then shows.

use std::time::Duration;

use flotilla_api::{JobDetail, JobStatus};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{DeviceProgram, TestApp, device_python, eventually, serve_files};

/// The thing name `device.py` uses as its MQTT client id.
const THING: &str = "iot-jobs-thing";

/// Starts the server with `iot-jobs-thing` registered and `device.py` connected and waiting.
async fn start_with_seed_device() -> (TestApp, DeviceProgram) {
    // Fails at once, before a database is made, when the Python to run it with is missing.
    device_python();
    let app = TestApp::start_with(0, &[THING]).await;
    let mut device = DeviceProgram::spawn(&app, "device.py");
    device
        .wait_for_line("Device waiting for job", Duration::from_secs(30))
        .await;
    (app, device)
}

/// Creates a job for `iot-jobs-thing` with the seed's job document shape.
async fn create_download_job(app: &TestApp, job_id: &str, url: &str, directory: &str) {
    let response = app
        .http
        .post(app.url("/api/v1/jobs"))
        .json(&json!({
            "job_id": job_id,
            "things": [THING],
            "document": {
                "operation": "download",
                "version": "1.0",
                "directory": directory,
                "files": { "fileName": "firmware.bin", "url": url },
            },
        }))
        .send()
        .await
        .expect("POST /api/v1/jobs");
    assert_eq!(response.status(), StatusCode::CREATED);
}

/// Waits until the job is COMPLETED with one execution in `status`.
async fn wait_until_completed(app: &TestApp, job_id: &str, status: &str) -> JobDetail {
    let detail: JobDetail = eventually(
        &format!("job {job_id} COMPLETED with its execution {status}"),
        Duration::from_secs(60),
        || async {
            let detail = app.job(job_id).await?;
            (detail.job.status == JobStatus::Completed
                && detail.executions.iter().any(|e| e.status == status))
            .then_some(detail)
        },
    )
    .await;
    assert_eq!(detail.executions.len(), 1, "{:?}", detail.executions);
    assert_eq!(detail.executions[0].thing_name, THING);
    assert!(detail.job.completed_at.is_some());
    detail
}

/// A path in the temporary folder for the device to write the download to.
fn download_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "flotilla-seed-device-{}.bin",
        uuid::Uuid::new_v4().simple()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_device_program_downloads_the_file_of_a_job() {
    let firmware: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
    let (files, file_server) = serve_files(vec![("firmware.bin", firmware.clone())]).await;
    let (app, mut device) = start_with_seed_device().await;
    let target = download_path();

    create_download_job(
        &app,
        "seed-device",
        &format!("http://{files}/firmware.bin"),
        target.to_str().expect("temporary path is UTF-8"),
    )
    .await;
    device
        .wait_for_line("Job Execution Started", Duration::from_secs(30))
        .await;
    let done = wait_until_completed(&app, "seed-device", "SUCCEEDED").await;
    assert_eq!(done.job.counts.succeeded, 1);
    assert_eq!(
        done.job.counts.failed + done.job.counts.queued + done.job.counts.in_progress,
        0
    );
    assert!(done.executions[0].started_at.is_some());
    let downloaded = std::fs::read(&target).expect("the device wrote the downloaded file");
    assert!(
        downloaded == firmware,
        "the downloaded file differs from the served one"
    );

    // The program's own way out: Enter closes the connection.
    device.type_line("").await;
    device
        .wait_for_line("Client Disconnected", Duration::from_secs(30))
        .await;
    device.kill().await;
    file_server.abort();
    let _ = std::fs::remove_file(&target);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_device_program_reports_failed_when_the_download_fails() {
    // A loopback port that nothing listens on: the download is refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let (app, mut device) = start_with_seed_device().await;
    let target = download_path();

    create_download_job(
        &app,
        "seed-device-unreachable",
        &format!("http://{closed}/firmware.bin"),
        target.to_str().expect("temporary path is UTF-8"),
    )
    .await;
    device
        .wait_for_line("Job Execution Started", Duration::from_secs(30))
        .await;
    let done = wait_until_completed(&app, "seed-device-unreachable", "FAILED").await;
    assert_eq!(done.job.counts.failed, 1);
    assert_eq!(done.job.counts.succeeded, 0);
    assert!(!target.exists());

    device.kill().await;
    app.stop().await;
}
