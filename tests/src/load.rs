//! A rollout under watch: a local-mode server with its embedded engine, a simulated fleet in
//! a process of its own (`flotilla simulate`, each device its own MQTT connection), a staged
//! rollout to every device, SSE clients on `GET /api/v1/stream` and readers of the list and
//! detail pages, all at once.
//!
//! `cargo xtask bench load` runs it at full size (10,000 devices, 50 SSE clients) and writes
//! the figures to `docs/benchmarks.md`; the end-to-end test `load::` runs it small in CI.
//!
//! What counts as an error: a request that fails or answers anything but 2xx, a stream that
//! ends, fails or does not answer 200, and a stream that skips or repeats a change (each
//! client's event ids must be exactly the feed's rows from its first to its last). The SSE lag
//! of an event is from its change's transaction in `server.changes` (`created_at`) to the
//! moment the client has read it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use flotilla_agent::simulator;
use serde_json::{Value, json};
use tokio::sync::watch;

/// The size and shape of one run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// A fresh database of its own.
    pub database_url: String,
    pub artifact_dir: PathBuf,
    pub devices: usize,
    pub sse_clients: usize,
    /// API readers, each making one request every [`LoadSpec::reader_pause`].
    pub readers: usize,
    pub reader_pause: Duration,
    /// The rollout's waves, as `POST /api/v1/rollouts` takes them.
    pub waves: Value,
    /// Each device's work per job is drawn from this range.
    pub work: (Duration, Duration),
    /// The whole run fails after this long.
    pub deadline: Duration,
    /// The `flotilla` binary whose `simulate` runs the fleet, in a process of its own as
    /// devices are not in the server's.
    pub flotilla: PathBuf,
}

/// Latencies of one kind of request or event.
#[derive(Debug, Clone, Default)]
pub struct Latencies(pub Vec<Duration>);

impl Latencies {
    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// The `p` quantile (0.0–1.0), zero without samples.
    pub fn quantile(&self, p: f64) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index]
    }

    pub fn max(&self) -> Duration {
        self.0.iter().copied().max().unwrap_or_default()
    }
}

/// What one run measured.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub devices: usize,
    pub sse_clients: usize,
    pub readers: usize,
    /// From connecting the fleet to every device connected.
    pub connect_time: Duration,
    /// From creating the rollout to its `completed` state.
    pub rollout_time: Duration,
    /// The wave jobs, in order.
    pub jobs: Vec<String>,
    /// Requests made by the readers (and the run's own polling), and those that failed.
    pub requests: usize,
    pub errors: Vec<String>,
    pub job_list: Latencies,
    pub job_detail: Latencies,
    pub executions_page: Latencies,
    pub rollout_detail: Latencies,
    /// Every event every client read.
    pub sse_lag: Latencies,
    /// Clients that saw every wave job's `job` event with status COMPLETED.
    pub clients_saw_completion: usize,
    /// Executions in the engine, those SUCCEEDED, and (job, thing) pairs with more than one
    /// row or an execution number above 1.
    pub executions: i64,
    pub succeeded: i64,
    pub duplicated: i64,
}

impl LoadReport {
    /// The figures as a Markdown table.
    pub fn markdown(&self) -> String {
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        let mut out = format!(
            "{} devices (each its own MQTT connection), {} SSE clients on `/api/v1/stream`, {} \
             API readers; a rollout in {} waves (jobs {}). Every device connected in {:.1} s; \
             the rollout took {:.1} s from creation to `completed`.\n\n\
             | | requests / events | p50 | p95 | p99 | max |\n|---|---|---|---|---|---|\n",
            self.devices,
            self.sse_clients,
            self.readers,
            self.jobs.len(),
            self.jobs.join(", "),
            self.connect_time.as_secs_f64(),
            self.rollout_time.as_secs_f64(),
        );
        for (name, latencies) in [
            ("`GET /api/v1/jobs` (list)", &self.job_list),
            ("`GET /api/v1/jobs/{id}` (detail)", &self.job_detail),
            (
                "`GET /api/v1/jobs/{id}/executions` (first 100)",
                &self.executions_page,
            ),
            ("`GET /api/v1/rollouts/{id}` (detail)", &self.rollout_detail),
            ("SSE event lag (change committed → client)", &self.sse_lag),
        ] {
            out.push_str(&format!(
                "| {name} | {} | {} | {} | {} | {} |\n",
                latencies.count(),
                ms(latencies.quantile(0.5)),
                ms(latencies.quantile(0.95)),
                ms(latencies.quantile(0.99)),
                ms(latencies.max()),
            ));
        }
        out.push_str(&format!(
            "\nErrors: {} of {} requests and {} streams. {} of {} SSE clients saw every wave \
             job complete. Executions: {} SUCCEEDED of {}, {} made twice.\n",
            self.errors.len(),
            self.requests,
            self.sse_clients,
            self.clients_saw_completion,
            self.sse_clients,
            self.succeeded,
            self.executions,
            self.duplicated,
        ));
        out
    }
}

const ROLLOUT: &str = "load";

/// Runs one rollout under watch as `spec` says.
pub async fn run(spec: LoadSpec) -> Result<LoadReport> {
    let started = Instant::now();
    let things: Vec<String> = (1..=spec.devices).map(simulator::thing_name).collect();
    let limit = simulator::raise_open_file_limit(spec.devices as u64 + 2048);
    if limit < spec.devices as u64 + 256 {
        bail!(
            "the broker's {} connections need as many open files; this process may open {limit}",
            spec.devices
        );
    }
    let mut config = crate::bench_local_config(&spec.database_url, spec.artifact_dir.clone(), 0);
    if let flotilla_server::app::IotMode::Local { register, .. } = &mut config.iot {
        register.clone_from(&things);
    }
    // The production defaults: reconciliation every 5 s, the orchestrator every 2 s.
    config.reconcile_every = Duration::from_secs(5);
    let server = flotilla_server::app::start(config)
        .await
        .context("starting the server")?;
    let base = format!("http://{}", server.addr);
    let mqtt = server.mqtt_addr.context("local mode has a broker")?;
    let pool = sqlx::PgPool::connect(&spec.database_url).await?;

    let online = Arc::new(AtomicUsize::new(0));
    let connecting = Instant::now();
    let mut fleet = start_fleet(&spec, mqtt, online.clone())?;
    while online.load(Ordering::Relaxed) < spec.devices {
        if started.elapsed() > spec.deadline {
            bail!(
                "only {} of {} devices connected",
                online.load(Ordering::Relaxed),
                spec.devices
            );
        }
        if let Some(status) = fleet.try_wait()? {
            bail!("the simulated fleet exited with {status}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let connect_time = connecting.elapsed();

    let http = reqwest::Client::new();
    let template = http
        .post(format!("{base}/api/v1/templates"))
        .json(&json!({
            "template_id": "firmware",
            "document": {"operation": "install", "softwareVersion": "${aws:iot:parameter:version}"},
            "parameters": [{"name": "version", "type": "string"}],
        }))
        .send()
        .await?;
    if !template.status().is_success() {
        bail!("creating the template: {}", template.status());
    }
    let waves = spec.waves.as_array().map_or(0, Vec::len);
    let jobs: Vec<String> = (1..=waves).map(|n| format!("{ROLLOUT}-w{n}")).collect();
    let baseline: i64 = sqlx::query_scalar("select coalesce(max(id), 0) from server.changes")
        .fetch_one(&pool)
        .await?;

    // The watchers and readers, until `stop`.
    let (stop_tx, stop) = watch::channel(false);
    let mut clients = Vec::new();
    for _ in 0..spec.sse_clients {
        clients.push(tokio::spawn(watch_stream(
            http.clone(),
            base.clone(),
            jobs.clone(),
            stop.clone(),
        )));
    }
    // Every stream is open before the rollout starts, so each must see all of it.
    for _ in 0..600 {
        if server_sse_clients(&http, &base).await >= spec.sse_clients {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rollout_started = Instant::now();
    let created = http
        .post(format!("{base}/api/v1/rollouts"))
        .json(&json!({
            "rollout_id": ROLLOUT,
            "release": {"kind": "template", "template_id": "firmware",
                        "parameters": {"version": "2.0.0"}, "version": "2.0.0"},
            "targets": {"things": things},
            "waves": spec.waves,
        }))
        .send()
        .await?;
    if !created.status().is_success() {
        let status = created.status();
        bail!("creating the rollout: {status} {}", created.text().await?);
    }
    let mut readers = Vec::new();
    for n in 0..spec.readers {
        readers.push(tokio::spawn(read_pages(
            http.clone(),
            base.clone(),
            n,
            spec.reader_pause,
            stop.clone(),
        )));
    }
    let mut own = Reads::default();
    loop {
        let detail = timed(&http, &format!("{base}/api/v1/rollouts/{ROLLOUT}")).await;
        own.record(Kind::Rollout, &detail);
        if let Ok((_, body)) = &detail {
            match body["state"].as_str() {
                Some("completed") => break,
                Some(state @ ("failed" | "canceled" | "rolled_back")) => {
                    bail!("the rollout ended {state}: {body}")
                }
                _ => {}
            }
        }
        if started.elapsed() > spec.deadline {
            bail!("the rollout did not complete within {:?}", spec.deadline);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let rollout_time = rollout_started.elapsed();

    // The clients get a while to read the last events, then everyone stops.
    let settle = Instant::now();
    while clients.iter().any(|c| !c.is_finished()) && settle.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_tx.send_replace(true);
    let mut report = LoadReport {
        devices: spec.devices,
        sse_clients: spec.sse_clients,
        readers: spec.readers,
        connect_time,
        rollout_time,
        jobs,
        ..Default::default()
    };
    for reader in readers {
        let reads = reader.await.context("a reader panicked")?;
        own.merge(reads);
    }
    report.requests = own.requests;
    report.errors = own.errors;
    report.job_list = own.job_list;
    report.job_detail = own.job_detail;
    report.executions_page = own.executions_page;
    report.rollout_detail = own.rollout_detail;

    let mut seen = Vec::new();
    for client in clients {
        seen.push(client.await.context("an SSE client panicked")?);
    }
    let created_at = feed_times(&pool, baseline).await?;
    for (n, client) in seen.into_iter().enumerate() {
        if let Some(error) = client.error {
            report.errors.push(format!("SSE client {n}: {error}"));
        }
        if client.completed {
            report.clients_saw_completion += 1;
        }
        let expected = created_at
            .iter()
            .take_while(|(id, _)| Some(*id) <= client.events.last().map(|e| e.0))
            .count();
        let ids_match = client.events.len() == expected
            && client
                .events
                .iter()
                .zip(&created_at)
                .all(|((got, _), (want, _))| got == want);
        if !ids_match {
            report.errors.push(format!(
                "SSE client {n} read {} events where the feed has {expected} up to its last",
                client.events.len()
            ));
            continue;
        }
        for ((_, received), (_, committed)) in client.events.iter().zip(&created_at) {
            report
                .sse_lag
                .0
                .push(Duration::from_secs_f64((received - committed).max(0.0)));
        }
    }

    let (executions, succeeded, duplicated): (i64, i64, i64) = sqlx::query_as(
        "select coalesce(sum(rows), 0)::bigint,
                coalesce(sum(rows) filter (where status = 'SUCCEEDED'), 0)::bigint,
                count(*) filter (where rows > 1 or number > 1)
           from (select min(status) as status, count(*) as rows,
                        max(execution_number) as number
                   from engine.job_executions where starts_with(job_id, $1)
                  group by job_id, thing_name) per_thing",
    )
    .bind(format!("{ROLLOUT}-"))
    .fetch_one(&pool)
    .await?;
    report.executions = executions;
    report.succeeded = succeeded;
    report.duplicated = duplicated;

    fleet.start_kill()?;
    fleet.wait().await?;
    pool.close().await;
    server.shutdown().await;
    Ok(report)
}

/// `flotilla simulate` with the spec's devices against `mqtt`; `online` follows the
/// connected count it prints every two seconds. The process dies with its handle.
fn start_fleet(
    spec: &LoadSpec,
    mqtt: std::net::SocketAddr,
    online: Arc<AtomicUsize>,
) -> Result<tokio::process::Child> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(&spec.flotilla)
        .args(["simulate", "--mqtt", &mqtt.to_string()])
        .args(["--devices", &spec.devices.to_string()])
        .args(["--min-work-ms", &spec.work.0.as_millis().to_string()])
        .args(["--max-work-ms", &spec.work.1.as_millis().to_string()])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} simulate", spec.flotilla.display()))?;
    let mut lines = BufReader::new(child.stdout.take().context("the fleet's stdout")?).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(count) = line
                .strip_prefix("connected: ")
                .and_then(|n| n.trim().parse().ok())
            {
                online.store(count, Ordering::Relaxed);
            }
        }
    });
    Ok(child)
}

/// How many SSE clients the server counts on `/metrics`.
async fn server_sse_clients(http: &reqwest::Client, base: &str) -> usize {
    let Ok(response) = http.get(format!("{base}/metrics")).send().await else {
        return 0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix("flotilla_sse_clients "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map_or(0, |value| value as usize)
}

/// The feed's rows after `baseline`: id and `created_at` in seconds since the epoch.
async fn feed_times(pool: &sqlx::PgPool, baseline: i64) -> Result<Vec<(i64, f64)>> {
    Ok(sqlx::query_as(
        "select id, extract(epoch from created_at)::float8 from server.changes
          where id > $1 order by id",
    )
    .bind(baseline)
    .fetch_all(pool)
    .await?)
}

fn epoch_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// What one SSE client read.
#[derive(Debug, Default)]
struct Watched {
    /// Each event's id and when it was read (seconds since the epoch).
    events: Vec<(i64, f64)>,
    completed: bool,
    error: Option<String>,
}

/// Reads `/api/v1/stream` until every one of `jobs` has been seen COMPLETED, or `stop`.
async fn watch_stream(
    http: reqwest::Client,
    base: String,
    jobs: Vec<String>,
    mut stop: watch::Receiver<bool>,
) -> Watched {
    let mut watched = Watched::default();
    let mut response = match http.get(format!("{base}/api/v1/stream")).send().await {
        Ok(response) if response.status().is_success() => response,
        Ok(response) => {
            watched.error = Some(format!("the stream answered {}", response.status()));
            return watched;
        }
        Err(error) => {
            watched.error = Some(format!("connecting: {error}"));
            return watched;
        }
    };
    let mut pending: std::collections::HashSet<String> = jobs.into_iter().collect();
    let mut buffer = String::new();
    loop {
        let chunk = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return watched,
            chunk = response.chunk() => chunk,
        };
        let chunk = match chunk {
            Ok(Some(chunk)) => chunk,
            Ok(None) => {
                watched.error = Some("the stream ended".into());
                return watched;
            }
            Err(error) => {
                watched.error = Some(format!("the stream failed: {error}"));
                return watched;
            }
        };
        let now = epoch_seconds();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut id, mut kind, mut data) = (None, "", String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse::<i64>().ok();
                } else if let Some(v) = line.strip_prefix("event:") {
                    kind = v.trim();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            let Some(id) = id else { continue };
            watched.events.push((id, now));
            if kind == "job"
                && let Ok(job) = serde_json::from_str::<Value>(&data)
                && job["status"] == "COMPLETED"
                && let Some(job_id) = job["job_id"].as_str()
            {
                pending.remove(job_id);
            }
        }
        if pending.is_empty() {
            watched.completed = true;
            return watched;
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    List,
    Detail,
    Executions,
    Rollout,
}

/// One reader's requests.
#[derive(Debug, Default)]
struct Reads {
    requests: usize,
    errors: Vec<String>,
    job_list: Latencies,
    job_detail: Latencies,
    executions_page: Latencies,
    rollout_detail: Latencies,
}

impl Reads {
    fn record(&mut self, kind: Kind, result: &Result<(Duration, Value), String>) {
        self.requests += 1;
        match result {
            Ok((latency, _)) => match kind {
                Kind::List => self.job_list.0.push(*latency),
                Kind::Detail => self.job_detail.0.push(*latency),
                Kind::Executions => self.executions_page.0.push(*latency),
                Kind::Rollout => self.rollout_detail.0.push(*latency),
            },
            Err(error) => self.errors.push(error.clone()),
        }
    }

    fn merge(&mut self, other: Self) {
        self.requests += other.requests;
        self.errors.extend(other.errors);
        self.job_list.0.extend(other.job_list.0);
        self.job_detail.0.extend(other.job_detail.0);
        self.executions_page.0.extend(other.executions_page.0);
        self.rollout_detail.0.extend(other.rollout_detail.0);
    }
}

/// `GET url`: its latency and JSON body, or what went wrong.
async fn timed(http: &reqwest::Client, url: &str) -> Result<(Duration, Value), String> {
    let started = Instant::now();
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("GET {url}: reading the body: {e}"))?;
    let latency = started.elapsed();
    if !status.is_success() {
        return Err(format!(
            "GET {url}: {status} {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let body = serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))?;
    Ok((latency, body))
}

/// Reads the pages an operator watching the rollout reads, one request every `pause`: the
/// job list, then the detail and first executions page of the newest job, then the rollout
/// (which exists: readers start once it is created).
async fn read_pages(
    http: reqwest::Client,
    base: String,
    offset: usize,
    pause: Duration,
    stop: watch::Receiver<bool>,
) -> Reads {
    let mut reads = Reads::default();
    let mut job: Option<String> = None;
    let mut turn = offset;
    while !*stop.borrow() {
        let (kind, url) = match (turn % 4, &job) {
            (1, Some(job)) => (Kind::Detail, format!("{base}/api/v1/jobs/{job}")),
            (2, Some(job)) => (
                Kind::Executions,
                format!("{base}/api/v1/jobs/{job}/executions?limit=100"),
            ),
            (3, _) => (Kind::Rollout, format!("{base}/api/v1/rollouts/{ROLLOUT}")),
            _ => (Kind::List, format!("{base}/api/v1/jobs")),
        };
        turn += 1;
        let result = timed(&http, &url).await;
        reads.record(kind, &result);
        if let (Kind::List, Ok((_, body))) = (kind, &result) {
            job = body["jobs"]
                .as_array()
                .and_then(|jobs| jobs.iter().filter_map(|j| j["job_id"].as_str()).max())
                .map(str::to_owned);
        }
        tokio::time::sleep(pause).await;
    }
    reads
}
