//! A rollout under watch, small enough for CI: 300 devices, each its own MQTT connection,
//! through a two-wave rollout while 10 SSE clients watch `/api/v1/stream` and readers page
//! through the job list, job and rollout details. No request or stream may fail, every
//! client must read every change in order and see every wave's job complete, and every
//! execution must succeed once. `cargo xtask bench load` runs the same at full size
//! (`flotilla_tests::load`).

use std::time::Duration;

use flotilla_tests::load::{LoadSpec, run};
use serde_json::json;

use crate::helpers::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_to_300_devices_under_watch_has_no_errors() {
    let db = TestDb::create().await;
    let artifact_dir = crate::helpers::artifact_dir(&db, "-load");
    let report = run(LoadSpec {
        database_url: db.url.clone(),
        artifact_dir: artifact_dir.clone(),
        devices: 300,
        sse_clients: 10,
        readers: 2,
        reader_pause: Duration::from_millis(50),
        waves: json!([{"count": 30}, {"percent": 100}]),
        work: (Duration::from_millis(200), Duration::from_millis(1000)),
        deadline: Duration::from_secs(120),
        flotilla: env!("CARGO_BIN_EXE_flotilla-test-server").into(),
    })
    .await
    .expect("the load run");
    eprintln!("{}", report.markdown());
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    assert_eq!(report.clients_saw_completion, 10, "{}", report.markdown());
    assert_eq!(
        (report.executions, report.succeeded, report.duplicated),
        (300, 300, 0),
        "{}",
        report.markdown()
    );
    assert_eq!(report.jobs, ["load-w1", "load-w2"]);
    // Every client read every change (checked against the feed), at least one per execution.
    assert!(report.sse_lag.count() >= 10 * 300, "{}", report.markdown());
    for latencies in [
        &report.job_list,
        &report.job_detail,
        &report.executions_page,
        &report.rollout_detail,
    ] {
        assert!(latencies.count() > 0, "{}", report.markdown());
    }
    let _ = std::fs::remove_dir_all(&artifact_dir);
    db.drop_database().await;
}
