//! `cargo xtask bench engine`: how fast the embedded engine moves job executions through
//! their states, durably, with a whole fleet connected.
//!
//! Starts `flotilla serve` in local mode with N things registered (10,000 by default) and a
//! separate `flotilla simulate` process whose devices finish any job at once. Then creates
//! jobs through the dashboard API, a thousand targets each (AWS's per-job release rate is at
//! most 1,000 per minute, so a thousand per job means no device waits for the rollout), so
//! that every device runs exactly one job, and waits until every execution has SUCCEEDED.
//!
//! Every execution goes through three durable states (QUEUED at creation, IN_PROGRESS,
//! SUCCEEDED), each a committed PostgreSQL transaction; state changes per second is three
//! times the executions over the time from the first CreateJob to the last SUCCEEDED. The
//! latencies QUEUED→SUCCEEDED come from the engine's own rows. In the same run `pgbench`
//! measures single-row INSERT transactions per second on the same server, so the engine's
//! figure can be read as a ratio to what PostgreSQL itself commits here.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench::{Running, free_port, lines_of, rss_kib, wait_for_line};
use crate::{cargo, postgres, run, target_dir, workspace_root};

/// Targets per job: every one is released in the job's first minute.
const TARGETS_PER_JOB: usize = 1000;

pub fn engine(devices: usize) -> Result<()> {
    let root = workspace_root();
    let target = target_dir(&root);
    crate::bench::raise_open_file_limit(devices as u64 * 2 + 1024)?;
    run(cargo(&root).args([
        "build",
        "--release",
        "--package",
        "flotilla-server",
        "--bin",
        "flotilla",
    ]))?;
    let release = target.join("release");
    let postgres = postgres::Postgres::ensure(&root, &target)?;
    let database_url = postgres.ensure_database("flotilla_bench")?;

    let things = crate::bench::sim_things(devices);
    let mqtt_port = free_port()?;
    let http_port = free_port()?;
    let mut serve = Command::new(release.join("flotilla"));
    serve
        .current_dir(&root)
        .env("DATABASE_URL", &database_url)
        .env("RUST_LOG", "warn")
        .env("FLOTILLA_REGISTER_THINGS", things.join(","))
        .args(["serve", "--iot", "local"])
        .args(["--listen", &format!("127.0.0.1:{http_port}")])
        .args(["--mqtt-listen", &format!("127.0.0.1:{mqtt_port}")])
        .stdout(Stdio::piped());
    let mut server = Running(serve.spawn().context("starting flotilla serve")?);
    let server_lines = lines_of(server.0.stdout.take().context("server stdout")?);
    wait_for_line(
        &server_lines,
        "Flotilla is running",
        Duration::from_secs(900),
    )?;
    let idle_rss = rss_kib(server.0.id())?;

    let mut simulate = Command::new(release.join("flotilla"));
    simulate
        .env("RUST_LOG", "warn")
        .args(["simulate", "--mqtt", &format!("127.0.0.1:{mqtt_port}")])
        .args(["--devices", &devices.to_string()])
        .args(["--min-work-ms", "0", "--max-work-ms", "0"])
        .stdout(Stdio::piped());
    let mut fleet = Running(simulate.spawn().context("starting flotilla simulate")?);
    let fleet_lines = lines_of(fleet.0.stdout.take().context("simulator stdout")?);
    wait_for_line(
        &fleet_lines,
        &format!("connected: {devices}"),
        Duration::from_secs(600),
    )?;
    let connected_rss = rss_kib(server.0.id())?;

    // One run id keeps these jobs apart from any earlier run's in the same database.
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let prefix = format!("bench-{run_id}-");
    let started = Instant::now();
    for (n, chunk) in things.chunks(TARGETS_PER_JOB).enumerate() {
        let body = serde_json::json!({
            "job_id": format!("{prefix}{n:03}"),
            "things": chunk,
            "document": {"operation": "benchmark", "simulate": {"outcome": "SUCCEEDED", "duration_ms": 0}},
        });
        post_json(http_port, "/api/v1/jobs", &body.to_string())
            .with_context(|| format!("creating job {n}"))?;
    }
    let psql = postgres.client_tool("psql")?;
    let query = |sql: &str| -> Result<String> {
        let out = Command::new(&psql)
            .args([
                "-X",
                "-tA",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &database_url,
                "-c",
                sql,
            ])
            .output()
            .context("running psql")?;
        if !out.status.success() {
            bail!("psql: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let mine = format!("job_id like '{prefix}%'");
    let mut peak_rss = connected_rss;
    loop {
        let done: usize = query(&format!(
            "select count(*) from engine.job_executions where {mine} and status = 'SUCCEEDED'"
        ))?
        .parse()?;
        peak_rss = peak_rss.max(rss_kib(server.0.id())?);
        if done == devices {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("only {done} of {devices} executions SUCCEEDED within 30 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // The engine's own timestamps: from the first execution queued to the last finished.
    let figures = query(&format!(
        "select extract(epoch from max(last_updated_at) - min(queued_at)),
                percentile_cont(0.5) within group (order by extract(epoch from last_updated_at - queued_at)),
                percentile_cont(0.99) within group (order by extract(epoch from last_updated_at - queued_at))
         from engine.job_executions where {mine}"
    ))?;
    let [span, p50, p99]: [f64; 3] = figures
        .split('|')
        .map(|v| v.trim().parse::<f64>())
        .collect::<Result<Vec<_>, _>>()?
        .try_into()
        .map_err(|_| anyhow::anyhow!("unexpected figures {figures:?}"))?;
    let changes_per_second = (devices * 3) as f64 / span;
    drop(fleet);
    drop(server);

    let inserts_per_second = pgbench_inserts(&postgres, &database_url)?;
    drop(postgres);

    let section = format!(
        "## Engine (`cargo xtask bench engine`)\n\n\
         {devices} simulated devices, each its own MQTT connection, each running one job (jobs of \
         {TARGETS_PER_JOB} targets, no device waiting for the rollout rate); the devices finish \
         a job as soon as they start it.\n\n\
         | Figure | Value | Target |\n|---|---|---|\n\
         | Connections held | {devices} | |\n\
         | Durable execution state changes per second | {changes_per_second:.0} | ≥ 2,000 |\n\
         | Single-row INSERT transactions per second (`pgbench`, same server, same run) | {inserts_per_second:.0} | |\n\
         | Ratio of the two | {ratio:.2} | |\n\
         | QUEUED→SUCCEEDED p50 / p99 | {p50:.2} s / {p99:.2} s | |\n\
         | First execution queued → last SUCCEEDED | {span:.1} s | |\n\
         | Server process RSS (server, engine, broker): idle / fleet connected / peak | {idle:.0} / {connected:.0} / {peak:.0} MiB | |\n",
        ratio = changes_per_second / inserts_per_second,
        idle = idle_rss as f64 / 1024.0,
        connected = connected_rss as f64 / 1024.0,
        peak = peak_rss as f64 / 1024.0,
    );
    println!("{section}");
    crate::bench::write_section(&root, "## Engine", &section)?;
    Ok(())
}

/// Single-row INSERT transactions per second with as many clients as the engine's pool.
fn pgbench_inserts(postgres: &postgres::Postgres, database_url: &str) -> Result<f64> {
    let pgbench = postgres.client_tool("pgbench")?;
    let psql = postgres.client_tool("psql")?;
    run(Command::new(&psql).args([
        "-X",
        "-q",
        "-d",
        database_url,
        "-c",
        "drop table if exists bench_insert; create table bench_insert (id bigserial primary key, thing text, status text, at timestamptz default now())",
    ]))?;
    let script = std::env::temp_dir().join(format!("flotilla-bench-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        "insert into bench_insert (thing, status) values ('sim-0001', 'SUCCEEDED');\n",
    )?;
    let out = Command::new(&pgbench)
        .args(["-n", "-c", "8", "-j", "2", "-T", "10", "-f"])
        .arg(&script)
        .arg(database_url)
        .output()
        .context("running pgbench")?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("pgbench failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    // "tps = 4321.123456 (without initial connection time)"
    text.lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|tps| tps.parse().ok())
        .with_context(|| format!("no tps in pgbench output {text:?}"))
}

/// POSTs a JSON body to the local server and fails unless it answers 2xx. A plain HTTP/1.1
/// exchange keeps xtask free of an HTTP client dependency.
fn post_json(port: u16, path: &str, body: &str) -> Result<()> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).unwrap_or_default();
    if !status.starts_with('2') {
        bail!(
            "{path} answered {}",
            response.lines().next().unwrap_or_default()
        );
    }
    Ok(())
}
