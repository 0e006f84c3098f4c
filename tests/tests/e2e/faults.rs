//! Faults under a running job: PostgreSQL stopped for 5 s mid-job (a private cluster this test
//! starts, so stopping it disturbs no other test). Afterwards every execution ends in the
//! state its device reported, none exists twice, and no audit entry is lost. And the broker
//! (with the engine around it) restarted on its ports mid-job: the devices reconnect and
//! every execution succeeds once. The engine as a process of its own SIGKILLed mid-rollout
//! and restarted: the rollout resumes by itself, nothing lost or made twice. And 30% of the
//! devices cut off for a while (a TCP proxy between them and the broker that drops their
//! connections and refuses new ones): they report what they did once they are back.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use flotilla_server::app;
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

/// The access key of the standalone engines these tests start.
const ENGINE_KEY: (&str, &str) = ("FLOTILLAFAULTS", "faults-test-secret-access-key");

/// The ports of a standalone engine: fixed for a test, so a restarted engine is where devices
/// and servers knew it.
struct EnginePorts {
    control: std::net::SocketAddr,
    mqtt: std::net::SocketAddr,
    mqtts: std::net::SocketAddr,
    s3: std::net::SocketAddr,
}

impl EnginePorts {
    fn free() -> Self {
        let free = crate::helpers::free_loopback_addr;
        Self {
            control: free(),
            mqtt: free(),
            mqtts: free(),
            s3: free(),
        }
    }
}

/// `flotilla engine` as a child process on `database_url` and `ports`, once it runs. A port
/// its killed predecessor held may take a moment to be free again, so a start that fails is
/// tried again for up to 20 s. The child dies with its handle.
async fn engine_process(
    database_url: &str,
    ports: &EnginePorts,
    artifacts: &std::path::Path,
) -> tokio::process::Child {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla-test-server"))
            .arg("engine")
            .args(["--engine-listen", &ports.control.to_string()])
            .args(["--mqtt-listen", &ports.mqtt.to_string()])
            .args(["--mqtts-listen", &ports.mqtts.to_string()])
            .args(["--s3-listen", &ports.s3.to_string()])
            .arg("--artifact-dir")
            .arg(artifacts)
            .env("DATABASE_URL", database_url)
            .env("FLOTILLA_ENGINE_ACCESS_KEY_ID", ENGINE_KEY.0)
            .env("FLOTILLA_ENGINE_SECRET_ACCESS_KEY", ENGINE_KEY.1)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting flotilla engine");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let running = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("Flotilla engine is running") {
                    return true;
                }
            }
            false
        })
        .await
        .expect("flotilla engine started or exited in time");
        if running {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return child;
        }
        let status = child.wait().await.expect("reaping flotilla engine");
        assert!(
            std::time::Instant::now() < deadline,
            "flotilla engine did not start on its ports ({status})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A server in AWS mode whose IoT and S3 endpoints are the standalone engine at `ports`. It
/// has no event subscriber, so it follows the jobs by reconciliation (every 500 ms here).
async fn server_on_engine(database_url: &str, ports: &EnginePorts) -> app::RunningServer {
    let loopback = "127.0.0.1:0".parse().expect("an address");
    app::start(app::ServeConfig {
        database_url: database_url.to_owned(),
        listen: loopback,
        iot: app::IotMode::Aws {
            iot_endpoint: Some(format!("http://{}", ports.control)),
            s3_endpoint: Some(format!("http://{}", ports.s3)),
            events: None,
            credentials: Some(aws_credential_types::Credentials::new(
                ENGINE_KEY.0,
                ENGINE_KEY.1,
                None,
                None,
                "faults-test",
            )),
        },
        region: "us-east-1".into(),
        static_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../static"),
        reconcile_every: Duration::from_millis(500),
        reconcile_budget: 50.0,
        artifacts: Default::default(),
        rollouts: flotilla_server::rollouts::RolloutSettings {
            tick: Duration::from_millis(200),
            ..Default::default()
        },
        auth: crate::helpers::proxy_auth(),
    })
    .await
    .expect("starting a server against the standalone engine")
}

/// Every execution of the jobs whose id starts with `prefix`, from the engine's table, as
/// `(job, thing, status, rows, highest execution number)`.
async fn executions_of(
    pool: &sqlx::PgPool,
    prefix: &str,
) -> Vec<(String, String, String, i64, i64)> {
    sqlx::query_as(
        "select job_id, thing_name, min(status), count(*), max(execution_number)
           from engine.job_executions where starts_with(job_id, $1)
          group by job_id, thing_name order by job_id, thing_name",
    )
    .bind(prefix)
    .fetch_all(pool)
    .await
    .expect("reading the executions")
}

/// The audit log, newest first (every entry of a test fits one page).
async fn audit_entries(http: &reqwest::Client, base: &str) -> Vec<flotilla_api::AuditEntry> {
    let page: flotilla_api::AuditPage = http
        .get(format!("{base}/api/v1/audit?limit=500"))
        .send()
        .await
        .expect("GET audit")
        .json()
        .await
        .expect("an audit page");
    assert!(page.next_before.is_none(), "more than one page");
    page.entries
}

async fn audit_intact(http: &reqwest::Client, base: &str) -> flotilla_api::AuditVerification {
    http.get(format!("{base}/api/v1/audit/verify"))
        .send()
        .await
        .expect("GET audit/verify")
        .json()
        .await
        .expect("a verification")
}

/// The engine as a process of its own (`flotilla engine`), a server in AWS mode against it,
/// and twelve devices: SIGKILLed while wave 1 of a rollout runs and restarted on its ports
/// and database. The devices reconnect and finish, the orchestrator carries on by itself, and
/// nothing is lost or made twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_engine_killed_mid_rollout_loses_and_duplicates_nothing() {
    let db = TestDb::create().await;
    let pool = sqlx::PgPool::connect(&db.url).await.expect("connecting");
    let artifacts = std::env::temp_dir().join(format!("flotilla-test-artifacts-{}", db.name));
    let ports = EnginePorts::free();
    let mut engine = engine_process(&db.url, &ports, &artifacts).await;
    let server = server_on_engine(&db.url, &ports).await;
    let base = format!("http://{}", server.addr);
    let http = crate::helpers::admin_client();
    let things: Vec<String> = (1..=12)
        .map(flotilla_agent::simulator::thing_name)
        .collect();
    for thing in &things {
        server
            .iot_client
            .create_thing()
            .thing_name(thing)
            .send()
            .await
            .expect("CreateThing");
    }
    let mut fleet = flotilla_agent::simulator::start_fleet(
        &ports.mqtt.ip().to_string(),
        ports.mqtt.port(),
        things.clone(),
        flotilla_agent::simulator::Profile {
            min_work: Duration::from_millis(2000),
            max_work: Duration::from_millis(4000),
            ..Default::default()
        },
        None,
    );
    crate::rollouts::create_over_http(
        &http,
        &base,
        json!({
            "rollout_id": "fw-engine-kill",
            "release": crate::rollouts::release("2.0.0"),
            "targets": {"things": things},
            "waves": [{"count": 4}, {"percent": 100}],
        }),
    )
    .await;
    eventually(
        "wave 1's devices at work",
        Duration::from_secs(60),
        || async {
            let now = executions_of(&pool, "fw-engine-kill-").await;
            now.iter()
                .any(|(_, _, status, _, _)| status == "IN_PROGRESS")
                .then_some(())
        },
    )
    .await;
    let before = executions_of(&pool, "fw-engine-kill-").await;
    assert!(
        before
            .iter()
            .all(|(job, _, status, _, _)| job == "fw-engine-kill-w1" && status != "SUCCEEDED"),
        "the kill must come while wave 1 runs: {before:?}"
    );
    let audited_before = audit_entries(&http, &base).await;

    // The engine dies at once: no shutdown, sockets reset under the devices and the server.
    engine.start_kill().expect("SIGKILL");
    let killed = engine.wait().await.expect("reaping the engine");
    assert!(!killed.success(), "{killed}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut engine = engine_process(&db.url, &ports, &artifacts).await;

    let done = crate::rollouts::rollout_over_http(
        &http,
        &base,
        "fw-engine-kill",
        "the rollout to complete after the engine's restart",
        |d| d.rollout.state == "completed",
    )
    .await;
    crate::rollouts::assert_wave(&done.waves[0], 4, 4);
    crate::rollouts::assert_wave(&done.waves[1], 8, 8);
    let running: Vec<_> = done
        .events
        .iter()
        .filter(|e| e.to_state == "running" && e.wave.is_some())
        .map(|e| e.wave)
        .collect();
    assert_eq!(running, [Some(1), Some(2)], "each wave started once");

    // One job per wave, one execution per device, each the first and each as its device
    // reported it, in the engine and in the server's projection alike.
    assert_eq!(
        crate::rollouts::job_ids_over_http(&http, &base).await,
        ["fw-engine-kill-w1", "fw-engine-kill-w2"]
    );
    let executions = executions_of(&pool, "fw-engine-kill-").await;
    assert_eq!(executions.len(), 12, "{executions:?}");
    for (job, thing, status, rows, number) in &executions {
        assert_eq!(
            (status.as_str(), *rows, *number),
            ("SUCCEEDED", 1, 1),
            "{job} on {thing}"
        );
    }
    for job in ["fw-engine-kill-w1", "fw-engine-kill-w2"] {
        let detail: flotilla_api::JobDetail = http
            .get(format!("{base}/api/v1/jobs/{job}"))
            .send()
            .await
            .expect("GET job")
            .json()
            .await
            .expect("a job");
        assert_eq!(detail.job.status.as_str(), "COMPLETED", "{detail:?}");
        for execution in &detail.executions {
            assert_eq!(
                (execution.status.as_str(), execution.execution_number),
                ("SUCCEEDED", Some(1)),
                "{job}: {execution:?}"
            );
        }
    }

    // No audit entry lost: everything on record before the kill still is, every rollout
    // transition has its one entry, and the chain is intact.
    let audited = audit_entries(&http, &base).await;
    for entry in &audited_before {
        assert!(audited.contains(entry), "lost: {entry:?}");
    }
    let mut transitions: Vec<i64> = audited
        .iter()
        .filter(|e| e.action.ends_with(" transition"))
        .filter_map(|e| e.request.as_ref()?["event_id"].as_i64())
        .collect();
    transitions.sort_unstable();
    let events: Vec<i64> = done.events.iter().map(|e| e.id).collect();
    assert_eq!(
        transitions, events,
        "one audit entry per rollout transition"
    );
    let verified = audit_intact(&http, &base).await;
    assert!(verified.intact, "{verified:?}");

    fleet.shutdown().await;
    server.shutdown().await;
    engine.start_kill().expect("stopping the engine");
    let _ = engine.wait().await;
    pool.close().await;
    let _ = std::fs::remove_dir_all(&artifacts);
    db.drop_database().await;
}

/// A TCP proxy on loopback in front of `upstream`: the network between some devices and the
/// broker. [`Partition::cut`] resets every connection through it (both sides, as a failed
/// link or a rebooted middlebox does) and resets each new one until [`Partition::heal`].
struct Partition {
    addr: std::net::SocketAddr,
    state: std::sync::Arc<PartitionState>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct PartitionState {
    /// Cancelled on a cut; replaced by a fresh token on healing.
    links: std::sync::Mutex<tokio_util::sync::CancellationToken>,
    down: std::sync::atomic::AtomicBool,
    /// Connections reset by a cut, and connection attempts refused while down.
    cut: std::sync::atomic::AtomicUsize,
    refused: std::sync::atomic::AtomicUsize,
}

impl Partition {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let state = std::sync::Arc::new(PartitionState::default());
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((device, _)) = listener.accept().await {
                if shared.down.load(Ordering::SeqCst) {
                    shared.refused.fetch_add(1, Ordering::SeqCst);
                    reset(device);
                    continue;
                }
                let link = shared.links.lock().expect("the links").clone();
                let counts = shared.clone();
                tokio::spawn(async move {
                    let Ok(broker) = tokio::net::TcpStream::connect(upstream).await else {
                        reset(device);
                        return;
                    };
                    let (mut device, mut broker) = (device, broker);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut device, &mut broker) => {}
                        () = link.cancelled() => {
                            counts.cut.fetch_add(1, Ordering::SeqCst);
                            reset(device);
                            reset(broker);
                        }
                    }
                });
            }
        });
        Self { addr, state, task }
    }

    fn cut(&self) {
        use std::sync::atomic::Ordering;
        self.state.down.store(true, Ordering::SeqCst);
        self.state.links.lock().expect("the links").cancel();
    }

    fn heal(&self) {
        use std::sync::atomic::Ordering;
        *self.state.links.lock().expect("the links") = tokio_util::sync::CancellationToken::new();
        self.state.down.store(false, Ordering::SeqCst);
    }

    /// Connections reset by cuts, and attempts refused while down.
    fn counts(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering;
        (
            self.state.cut.load(Ordering::SeqCst),
            self.state.refused.load(Ordering::SeqCst),
        )
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Closes `stream` with a reset (linger 0) rather than an orderly FIN.
fn reset(stream: tokio::net::TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// How long 30% of the devices stay cut off: `FLOTILLA_PARTITION_SECONDS`, 10 s in CI;
/// `cargo xtask soak` sets a minute.
fn partition_time() -> Duration {
    let seconds = std::env::var("FLOTILLA_PARTITION_SECONDS")
        .ok()
        .map(|s| {
            s.parse::<u64>()
                .expect("FLOTILLA_PARTITION_SECONDS is a number of seconds")
        })
        .unwrap_or(10);
    Duration::from_secs(seconds)
}

/// Twenty devices run a job; six of them (30%) reach the broker through a proxy that cuts
/// their connections while they work and refuses them for a while. The fourteen others
/// finish meanwhile; the six cannot report until they are back, then every execution ends
/// SUCCEEDED, as its device reported, once (execution number 1), and the job completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_cut_off_mid_job_report_once_they_are_back() {
    let outage = partition_time();
    let things: Vec<String> = (1..=20)
        .map(flotilla_agent::simulator::thing_name)
        .collect();
    let names: Vec<&str> = things.iter().map(String::as_str).collect();
    let app = crate::helpers::TestApp::start_with(0, &names).await;
    let mqtt = app.server.mqtt_addr.expect("local mode has a broker");
    let partition = Partition::start(mqtt).await;
    let (cut_off, direct) = things.split_at(6);
    let mut fleets = vec![
        flotilla_agent::simulator::start_fleet(
            &mqtt.ip().to_string(),
            mqtt.port(),
            direct.to_vec(),
            Default::default(),
            None,
        ),
        flotilla_agent::simulator::start_fleet(
            &partition.addr.ip().to_string(),
            partition.addr.port(),
            cut_off.to_vec(),
            Default::default(),
            None,
        ),
    ];
    let created = post(
        &app,
        "/api/v1/jobs",
        json!({ "job_id": "through-partition", "things": things,
                "document": { "simulate": { "outcome": "SUCCEEDED", "duration_ms": 3000 } } }),
    )
    .await;
    assert_eq!(
        created.status,
        reqwest::StatusCode::CREATED,
        "{}",
        created.body
    );
    let pool = sqlx::PgPool::connect(&app.db.url)
        .await
        .expect("connecting");
    let status_of = |rows: &[(String, String, String, i64, i64)], thing: &str| {
        rows.iter()
            .find(|(_, t, ..)| t == thing)
            .map(|(_, _, status, ..)| status.clone())
    };
    eventually(
        "the cut-off devices at work",
        Duration::from_secs(30),
        || async {
            let rows = executions_of(&pool, "through-partition").await;
            cut_off
                .iter()
                .all(|t| status_of(&rows, t).as_deref() == Some("IN_PROGRESS"))
                .then_some(())
        },
    )
    .await;

    partition.cut();
    let cut_at = std::time::Instant::now();
    eventually(
        "the connected devices to finish during the outage",
        outage,
        || async {
            let rows = executions_of(&pool, "through-partition").await;
            direct
                .iter()
                .all(|t| status_of(&rows, t).as_deref() == Some("SUCCEEDED"))
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(outage.saturating_sub(cut_at.elapsed())).await;
    // Their work is long done, but nothing of it can have reached the service.
    let rows = executions_of(&pool, "through-partition").await;
    for thing in cut_off {
        assert_eq!(
            status_of(&rows, thing).as_deref(),
            Some("IN_PROGRESS"),
            "{thing} reported through the partition: {rows:?}"
        );
    }
    let during = app.job("through-partition").await.expect("the job");
    assert_eq!(during.job.status.as_str(), "IN_PROGRESS", "{during:?}");
    let (cut, refused) = partition.counts();
    assert_eq!(cut, 6, "every cut-off device's connection was reset");
    assert!(refused > 0, "the devices tried to reconnect meanwhile");
    partition.heal();
    eprintln!("6 of 20 devices were cut off for {:.1?}", cut_at.elapsed());

    let job = eventually(
        "the job to complete once they are back",
        Duration::from_secs(120),
        || async {
            let job = app.job("through-partition").await?;
            (job.job.status.as_str() == "COMPLETED").then_some(job)
        },
    )
    .await;
    eprintln!("the job completed {:.1?} after the cut", cut_at.elapsed());
    assert_eq!(job.job.counts.succeeded, 20, "{job:?}");
    for execution in &job.executions {
        assert_eq!(
            (execution.status.as_str(), execution.execution_number),
            ("SUCCEEDED", Some(1)),
            "{execution:?}"
        );
    }
    let rows = executions_of(&pool, "through-partition").await;
    assert_eq!(rows.len(), 20, "{rows:?}");
    for (_, thing, status, count, number) in &rows {
        assert_eq!(
            (status.as_str(), *count, *number),
            ("SUCCEEDED", 1, 1),
            "{thing}"
        );
    }
    let verified: flotilla_api::AuditVerification = get(&app, "/api/v1/audit/verify").await.json();
    assert!(verified.intact, "{verified:?}");
    let page: flotilla_api::AuditPage = get(&app, "/api/v1/audit").await.json();
    let actions: Vec<&str> = page.entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["POST /api/v1/jobs"], "{page:?}");

    for fleet in &mut fleets {
        fleet.shutdown().await;
    }
    drop(partition);
    pool.close().await;
    app.stop().await;
}
