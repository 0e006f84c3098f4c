//! `cargo xtask bench server`: the dashboard server's projection under load, on a fresh
//! database of the PostgreSQL named by `DATABASE_URL`.
//!
//! 1. Reads: a job with 100,000 executions in the projection; p50/p99 of the job's detail
//!    (the job with its counts) and of the first page (100) of its executions, filtered and
//!    not, as the API reads them.
//! 2. Ingestion: 100,000 job-execution events (50,000 IN_PROGRESS extension events and
//!    50,000 AWS SUCCEEDED events) through the server's event parser and ingestor; events/s.
//! 3. Live latency: events at 1,000/s into the ingestor of one process, received by an SSE
//!    client of a running server (so through NOTIFY, as across replicas); p50/p99 from
//!    handing the event to the ingestor to reading it from the stream.
//!
//! Prints a Markdown report; with `FLOTILLA_BENCH_OUT` set, also writes it there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use flotilla_server::app;
use flotilla_server::ops::Metrics;
use flotilla_server::projection::Projection;
use flotilla_server::projection::events::{parse_event, run_ingestor};
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const BIG_JOB_EXECUTIONS: i64 = 100_000;
const READ_SAMPLES: usize = 300;
const INGEST_THINGS: usize = 50_000;
const SSE_RATE: u64 = 1_000;
const SSE_SECONDS: u64 = 10;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn thing_arn(thing: &str) -> String {
    format!("arn:aws:iot:us-east-1:000000000000:thing/{thing}")
}

/// A projection writer on `url` (its IoT client is never called).
async fn projection(url: &str) -> Result<Projection> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect(url)
        .await
        .context("connecting to the bench database")?;
    let config = aws_sdk_iot::Config::builder()
        .behavior_version(aws_sdk_iot::config::BehaviorVersion::latest())
        .region(aws_sdk_iot::config::Region::new("us-east-1"))
        .build();
    Ok(Projection::new(
        pool,
        flotilla_server::iot::Iot::new(aws_sdk_iot::Client::from_conf(config)),
    ))
}

/// A finished job in the projection, so reconciliation leaves it alone.
async fn seed_job(pool: &sqlx::PgPool, job_id: &str, executions: i64) -> Result<()> {
    sqlx::query(
        "insert into server.jobs (job_id, job_arn, status, created_at, updated_at, queued)
         values ($1, 'arn:aws:iot:us-east-1:000000000000:job/' || $1, 'COMPLETED', now(), now(), $2)",
    )
    .bind(job_id)
    .bind(executions)
    .execute(pool)
    .await?;
    sqlx::query(
        "insert into server.job_executions (job_id, thing_name, status, execution_number, queued_at, updated_at)
         select $1, 'bench-' || lpad(n::text, 6, '0'),
                (array['QUEUED','IN_PROGRESS','SUCCEEDED','FAILED'])[1 + n % 4], 1, now(), now()
         from generate_series(1, $2) as n",
    )
    .bind(job_id)
    .bind(executions)
    .execute(pool)
    .await?;
    sqlx::query("analyze server.job_executions")
        .execute(pool)
        .await?;
    Ok(())
}

async fn bench_reads(projection: &Projection) -> Result<Vec<(String, Duration, Duration)>> {
    seed_job(projection.pool(), "bench-big", BIG_JOB_EXECUTIONS).await?;
    let mut rows = Vec::new();
    let mut detail = Vec::with_capacity(READ_SAMPLES);
    let mut page = Vec::with_capacity(READ_SAMPLES);
    let mut filtered = Vec::with_capacity(READ_SAMPLES);
    for i in 0..READ_SAMPLES {
        let started = Instant::now();
        let job = projection.job_summary("bench-big").await?;
        detail.push(started.elapsed());
        if job.map(|j| j.counts.total()) != Some(BIG_JOB_EXECUTIONS) {
            bail!("the seeded job is not complete");
        }
        let after = (i % 2 == 1).then(|| format!("bench-{:06}", i * 100));
        let started = Instant::now();
        let executions = projection
            .executions_page("bench-big", None, after.as_deref(), 100)
            .await?;
        page.push(started.elapsed());
        if executions.len() != 100 {
            bail!("a page of {} executions", executions.len());
        }
        let started = Instant::now();
        projection
            .executions_page("bench-big", Some("FAILED"), after.as_deref(), 100)
            .await?;
        filtered.push(started.elapsed());
    }
    for (name, mut samples) in [
        ("job detail (job and counts)", detail),
        ("first page of 100 executions", page),
        ("page of 100 FAILED executions", filtered),
    ] {
        rows.push((
            name.to_owned(),
            percentile(&mut samples, 0.5),
            percentile(&mut samples, 0.99),
        ));
    }
    Ok(rows)
}

fn extension_event(job_id: &str, thing: &str, version: i64, details: Value) -> Vec<u8> {
    json!({
        "eventType": "JOB_EXECUTION", "timestamp": chrono::Utc::now().timestamp(),
        "jobId": job_id, "thingArn": thing_arn(thing), "status": "IN_PROGRESS",
        "statusDetails": details, "executionNumber": 1, "versionNumber": version,
        "lastUpdatedAt": chrono::Utc::now().timestamp_millis(),
    })
    .to_string()
    .into_bytes()
}

fn aws_event(job_id: &str, thing: &str, status: &str) -> Vec<u8> {
    json!({
        "eventType": "JOB_EXECUTION", "timestamp": chrono::Utc::now().timestamp(),
        "operation": status.to_lowercase(), "jobId": job_id, "thingArn": thing_arn(thing),
        "status": status, "statusDetails": {},
    })
    .to_string()
    .into_bytes()
}

/// Starts an ingestor on `projection`; returns its input.
fn ingestor(
    projection: &Projection,
    shutdown: &CancellationToken,
) -> mpsc::Sender<flotilla_server::projection::Observation> {
    let (tx, rx) = mpsc::channel(10_000);
    let (reconcile_tx, mut reconcile_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move { while reconcile_rx.recv().await.is_some() {} });
    tokio::spawn(run_ingestor(
        projection.clone(),
        rx,
        reconcile_tx,
        Arc::new(Metrics::default()),
        shutdown.clone(),
    ));
    tx
}

async fn bench_ingestion(projection: &Projection) -> Result<(usize, Duration)> {
    seed_job(projection.pool(), "bench-ingest", 0).await?;
    let shutdown = CancellationToken::new();
    let tx = ingestor(projection, &shutdown);
    // Parsed ahead of time: the bench measures applying, not building JSON.
    let mut events = Vec::with_capacity(INGEST_THINGS * 2);
    for i in 0..INGEST_THINGS {
        let thing = format!("ingest-{i:06}");
        events.push((
            "flotilla/events/jobExecution/bench-ingest/in_progress".to_owned(),
            extension_event("bench-ingest", &thing, 2, json!({"step": "download"})),
        ));
    }
    for i in 0..INGEST_THINGS {
        let thing = format!("ingest-{i:06}");
        events.push((
            "$aws/events/jobExecution/bench-ingest/succeeded".to_owned(),
            aws_event("bench-ingest", &thing, "SUCCEEDED"),
        ));
    }
    let total = events.len();
    let started = Instant::now();
    for (topic, payload) in events {
        tx.send(parse_event(&topic, &payload)?).await?;
    }
    loop {
        let done: i64 =
            sqlx::query_scalar("select succeeded from server.jobs where job_id = 'bench-ingest'")
                .fetch_one(projection.pool())
                .await?;
        if done == INGEST_THINGS as i64 {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("ingestion did not finish in 10 minutes ({done} done)");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    Ok((total, elapsed))
}

async fn bench_sse(url: &str, projection: &Projection) -> Result<(usize, Duration, Duration)> {
    seed_job(projection.pool(), "bench-sse", 0).await?;
    let server = app::start(flotilla_tests::bench_local_config(
        url,
        std::env::temp_dir().join("flotilla-bench-artifacts"),
        0,
    ))
    .await?;
    let mut response = reqwest::get(format!(
        "http://{}/api/v1/stream?job_id=bench-sse",
        server.addr
    ))
    .await?
    .error_for_status()?;

    let epoch = Instant::now();
    let total = (SSE_RATE * SSE_SECONDS) as usize;
    let reader = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(total);
        let mut buffer = String::new();
        while latencies.len() < total {
            let Ok(Ok(Some(chunk))) =
                tokio::time::timeout(Duration::from_secs(30), response.chunk()).await
            else {
                break;
            };
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) else {
                    continue;
                };
                let Ok(value) = serde_json::from_str::<Value>(data.trim()) else {
                    continue;
                };
                if let Some(sent) = value["status_details"]["sent_us"]
                    .as_str()
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    let now = epoch.elapsed().as_micros() as u64;
                    latencies.push(Duration::from_micros(now.saturating_sub(sent)));
                }
            }
        }
        latencies
    });

    // Another process's ingestor: the change reaches the server only through NOTIFY.
    let shutdown = CancellationToken::new();
    let tx = ingestor(projection, &shutdown);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / SSE_RATE));
    for i in 0..total {
        tick.tick().await;
        let thing = format!("sse-{:03}", i % 100);
        let sent = epoch.elapsed().as_micros().to_string();
        let payload = extension_event(
            "bench-sse",
            &thing,
            2 + (i / 100) as i64,
            json!({ "sent_us": sent }),
        );
        tx.send(parse_event(
            "flotilla/events/jobExecution/bench-sse/in_progress",
            &payload,
        )?)
        .await?;
    }
    let mut latencies = reader.await?;
    shutdown.cancel();
    server.shutdown().await;
    if latencies.len() < total {
        bail!("the stream delivered {} of {total} events", latencies.len());
    }
    Ok((
        total,
        percentile(&mut latencies, 0.5),
        percentile(&mut latencies, 0.99),
    ))
}

#[tokio::main]
async fn main() -> Result<()> {
    let admin_url = std::env::var("DATABASE_URL").context("DATABASE_URL must name PostgreSQL")?;
    let name = format!("flotilla_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
    sqlx::query(&format!("create database {name}"))
        .execute(&mut admin)
        .await?;
    let url = match admin_url.rsplit_once('/') {
        Some((base, _)) if !base.ends_with('/') => format!("{base}/{name}"),
        _ => bail!("DATABASE_URL must end with a database name"),
    };
    let pool = flotilla_server::db::connect_and_migrate(&url, 8).await?;
    drop(pool);
    let projection = projection(&url).await?;

    eprintln!("bench: reads on a job of {BIG_JOB_EXECUTIONS} executions…");
    let reads = bench_reads(&projection).await?;
    eprintln!("bench: ingesting {} events…", INGEST_THINGS * 2);
    let (events, ingest_time) = bench_ingestion(&projection).await?;
    eprintln!("bench: event → SSE at {SSE_RATE}/s for {SSE_SECONDS} s…");
    let (streamed, sse_p50, sse_p99) = bench_sse(&url, &projection).await?;

    let mut report = String::new();
    report.push_str("| measurement | p50 | p99 | target |\n|---|---|---|---|\n");
    for (name, p50, p99) in &reads {
        report.push_str(&format!(
            "| {name}, job of {BIG_JOB_EXECUTIONS} executions | {} | {} | p99 < 50 ms |\n",
            ms(*p50),
            ms(*p99)
        ));
    }
    report.push_str(&format!(
        "| event → SSE client at {SSE_RATE} events/s ({streamed} events) | {} | {} | p99 < 500 ms |\n",
        ms(sse_p50),
        ms(sse_p99)
    ));
    report.push_str(&format!(
        "\nIngestion: {events} events in {:.2} s = **{:.0} events/s** (target ≥ 10,000).\n",
        ingest_time.as_secs_f64(),
        events as f64 / ingest_time.as_secs_f64()
    ));
    println!("{report}");
    if let Some(out) = std::env::var_os("FLOTILLA_BENCH_OUT") {
        std::fs::write(&out, &report).with_context(|| format!("writing {out:?}"))?;
    }
    drop(projection);
    let _ = sqlx::query(&format!("drop database if exists {name} with (force)"))
        .execute(&mut admin)
        .await;
    Ok(())
}
