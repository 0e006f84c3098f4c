//! Faults under a running job: PostgreSQL stopped for 5 s mid-job (a private cluster this test
//! starts, so stopping it disturbs no other test). Afterwards every execution ends in the
//! state its device reported, none exists twice, and no audit entry is lost. And the broker
//! (with the engine around it) restarted on its ports mid-job: the devices reconnect and
//! every execution succeeds once.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::api_support::{get, post};
use crate::helpers::{TestDb, eventually, local_config};

/// A PostgreSQL cluster of one test: initdb'd under `/var/tmp`, on a free loopback port, run
/// as the `postgres` user when the test runs as root (PostgreSQL refuses root).
struct PrivateCluster {
    bin: PathBuf,
    base: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PrivateCluster {
    fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's server binaries under /usr/lib/postgresql")
            .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
            .filter(|bin| bin.join("pg_ctl").exists())
            .max()
            .expect("a PostgreSQL version with pg_ctl");
        let base = PathBuf::from("/var/tmp")
            .join(format!("flotilla-fault-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&base).expect("creating the cluster folder");
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
        if as_postgres {
            run(Command::new("chown").arg("postgres:postgres").arg(&base));
        }
        let port = crate::helpers::free_loopback_addr().port();
        let cluster = Self {
            bin,
            base,
            port,
            as_postgres,
        };
        run(cluster
            .tool("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(cluster.base.join("data")));
        cluster.pg_ctl("start");
        cluster
    }

    fn tool(&self, name: &str) -> Command {
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join(name));
            command
        } else {
            Command::new(self.bin.join(name))
        }
    }

    /// `pg_ctl start | restart | stop`, waiting until it is done. A fast stop ends every
    /// session, as a crash or failover would.
    fn pg_ctl(&self, action: &str) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.base.display()
        );
        run(self
            .tool("pg_ctl")
            .args([action, "-w", "-m", "fast", "-D"])
            .arg(self.base.join("data"))
            .arg("-l")
            .arg(self.base.join("server.log"))
            .args(["-o", &options]));
    }

    fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self
            .tool("pg_ctl")
            .args(["stop", "-w", "-m", "immediate", "-D"])
            .arg(self.base.join("data"))
            .output();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

#[track_caller]
fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The engine's executions of `job_id` as `(thing, status, rows)`: more than one row would be
/// an execution created twice.
async fn engine_executions(database_url: &str, job_id: &str) -> Vec<(String, String, i64)> {
    let pool = sqlx::PgPool::connect(database_url)
        .await
        .expect("connecting");
    let rows = sqlx::query_as(
        "select thing_name, min(status), count(*) from engine.job_executions
          where job_id = $1 group by thing_name order by thing_name",
    )
    .bind(job_id)
    .fetch_all(&pool)
    .await
    .expect("reading the executions");
    pool.close().await;
    rows
}

/// How long the database stays down: longer than the devices take to finish.
const OUTAGE: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_mid_job_loses_and_duplicates_nothing() {
    let cluster = PrivateCluster::start();
    let db = TestDb::create_on(&cluster.admin_url()).await;
    let server = flotilla_server::app::start(local_config(&db, "", 10, &[], Default::default()))
        .await
        .expect("starting the server");
    let app = crate::helpers::TestApp::from_parts(server, db);

    let created = post(
        &app,
        "/api/v1/jobs",
        json!({ "job_id": "through-restart",
                "things": (1..=10).map(flotilla_agent::simulator::thing_name).collect::<Vec<_>>(),
                "document": { "simulate": { "outcome": "SUCCEEDED", "duration_ms": 2000 } } }),
    )
    .await;
    assert_eq!(
        created.status,
        reqwest::StatusCode::CREATED,
        "{}",
        created.body
    );
    let job = eventually("devices to start", Duration::from_secs(30), || async {
        let job = app.job("through-restart").await?;
        (job.job.counts.in_progress > 0).then_some(job)
    })
    .await;
    assert_eq!(job.job.counts.succeeded, 0, "{job:?}");

    // Every session ends, and the devices finish while the database is down.
    let restarted = std::time::Instant::now();
    cluster.pg_ctl("stop");
    tokio::time::sleep(OUTAGE).await;
    cluster.pg_ctl("start");
    eprintln!("PostgreSQL was down for {:.1?}", restarted.elapsed());

    let job = eventually(
        "the job to complete after the restart",
        Duration::from_secs(120),
        || async {
            let job = app.job("through-restart").await?;
            (job.job.status.as_str() == "COMPLETED").then_some(job)
        },
    )
    .await;
    assert_eq!(job.job.counts.succeeded, 10, "{job:?}");
    eprintln!(
        "the job completed {:.1?} after the restart",
        restarted.elapsed()
    );
    let executions = engine_executions(&app.db.url, "through-restart").await;
    assert_eq!(executions.len(), 10, "{executions:?}");
    for (thing, status, rows) in &executions {
        assert_eq!(status, "SUCCEEDED", "{thing}");
        assert_eq!(*rows, 1, "{thing} has {rows} executions");
    }

    // The mutation before the restart and one after it are on record, the chain intact.
    let cancel = post(&app, "/api/v1/jobs/through-restart/cancel", json!({})).await;
    assert!(cancel.status.is_client_error() || cancel.status.is_success());
    let page: flotilla_api::AuditPage = get(&app, "/api/v1/audit").await.json();
    let actions: Vec<&str> = page.entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["POST /api/v1/jobs/{job_id}/cancel", "POST /api/v1/jobs"],
        "{page:?}"
    );
    let verified: flotilla_api::AuditVerification = get(&app, "/api/v1/audit/verify").await.json();
    assert!(verified.intact, "{verified:?}");
    app.stop().await;
    drop(cluster);
}

/// The executions of `job_id` per status, from the engine's table.
async fn statuses(pool: &sqlx::PgPool, job_id: &str) -> Vec<(String, i64)> {
    sqlx::query_as(
        "select status, count(*) from engine.job_executions where job_id = $1
          group by status order by status",
    )
    .bind(job_id)
    .fetch_all(pool)
    .await
    .expect("reading the executions")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_job_loses_and_duplicates_nothing() {
    let engine = crate::test_engine::TestEngine::start().await;
    let things: Vec<String> = (1..=20)
        .map(flotilla_agent::simulator::thing_name)
        .collect();
    for thing in &things {
        engine.create_thing(thing).await;
    }
    let names: Vec<&str> = things.iter().map(String::as_str).collect();
    engine
        .create_job(
            "through-broker-restart",
            r#"{"simulate": {"outcome": "SUCCEEDED", "duration_ms": 3000}}"#,
            &names,
        )
        .await;
    let mqtt = engine.engine.mqtt_addr;
    let mut fleet = flotilla_agent::simulator::start_fleet(
        &mqtt.ip().to_string(),
        mqtt.port(),
        things.clone(),
        flotilla_agent::simulator::Profile::default(),
        None,
    );
    eventually("devices to start", Duration::from_secs(30), || async {
        let now = statuses(&engine.pool, "through-broker-restart").await;
        now.iter()
            .any(|(status, _)| status == "IN_PROGRESS")
            .then_some(())
    })
    .await;
    let before = statuses(&engine.pool, "through-broker-restart").await;
    assert!(
        !before.iter().any(|(status, _)| status == "SUCCEEDED"),
        "{before:?}"
    );

    // The broker (and the engine around it) goes away under every connected device and
    // comes back on the same ports; the devices reconnect and finish.
    let engine = engine.restart_on_same_ports().await;
    eventually(
        "every execution to succeed after the restart",
        Duration::from_secs(120),
        || async {
            let now = statuses(&engine.pool, "through-broker-restart").await;
            (now == [("SUCCEEDED".to_owned(), 20)]).then_some(())
        },
    )
    .await;
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "select thing_name, count(*), max(execution_number) from engine.job_executions
          where job_id = $1 group by thing_name",
    )
    .bind("through-broker-restart")
    .fetch_all(&engine.pool)
    .await
    .expect("reading the executions");
    assert_eq!(rows.len(), 20);
    for (thing, count, number) in rows {
        assert_eq!((count, number), (1, 1), "{thing} ran more than once");
    }
    let job = engine.describe_job("through-broker-restart").await;
    assert_eq!(
        job.status,
        Some(aws_sdk_iot::types::JobStatus::Completed),
        "{job:?}"
    );
    fleet.shutdown().await;
    engine.stop().await;
}
