//! `cargo xtask bench load`: a full rollout under watch (`flotilla_tests::load`) on a fresh
//! database of the PostgreSQL named by `DATABASE_URL`: `FLOTILLA_BENCH_DEVICES` devices
//! (10,000 by default; `flotilla simulate` of the binary `FLOTILLA_BENCH_FLOTILLA` names) through a three-wave rollout (1%, 10%, 100%) while 50 SSE clients
//! watch `/api/v1/stream` and 4 readers each request a list or detail page every 100 ms.
//! Fails unless the error rate is zero and every client saw every wave's job complete.
//!
//! Prints a Markdown report; with `FLOTILLA_BENCH_OUT` set, also writes it there.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use sqlx::Connection;

#[tokio::main]
async fn main() -> Result<()> {
    let admin_url = std::env::var("DATABASE_URL").context("DATABASE_URL must name PostgreSQL")?;
    let devices: usize = match std::env::var("FLOTILLA_BENCH_DEVICES") {
        Ok(n) => n.parse().context("FLOTILLA_BENCH_DEVICES is a number")?,
        Err(_) => 10_000,
    };
    let name = format!("flotilla_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
    sqlx::query(&format!("create database {name}"))
        .execute(&mut admin)
        .await?;
    let url = match admin_url.rsplit_once('/') {
        Some((base, _)) if !base.ends_with('/') => format!("{base}/{name}"),
        _ => bail!("DATABASE_URL must end with a database name"),
    };
    let flotilla = std::env::var_os("FLOTILLA_BENCH_FLOTILLA").context(
        "FLOTILLA_BENCH_FLOTILLA must name the flotilla binary that simulates the fleet",
    )?;
    let artifact_dir = std::env::temp_dir().join(&name);
    eprintln!("bench: {devices} devices, 50 SSE clients, 4 readers…");
    let report = flotilla_tests::load::run(flotilla_tests::load::LoadSpec {
        database_url: url,
        artifact_dir: artifact_dir.clone(),
        devices,
        sse_clients: 50,
        readers: 4,
        reader_pause: Duration::from_millis(100),
        waves: serde_json::json!([{"percent": 1}, {"percent": 10}, {"percent": 100}]),
        work: (Duration::from_millis(500), Duration::from_millis(3000)),
        deadline: Duration::from_secs(3600),
        flotilla: flotilla.into(),
    })
    .await;
    let _ = std::fs::remove_dir_all(&artifact_dir);
    let _ = sqlx::query(&format!("drop database if exists {name} with (force)"))
        .execute(&mut admin)
        .await;
    let report = report?;
    let text = report.markdown();
    println!("{text}");
    if let Some(out) = std::env::var_os("FLOTILLA_BENCH_OUT") {
        std::fs::write(&out, &text).with_context(|| format!("writing {out:?}"))?;
    }
    if !report.errors.is_empty() {
        bail!(
            "{} errors, the first: {}",
            report.errors.len(),
            report.errors[0]
        );
    }
    if report.clients_saw_completion != report.sse_clients || report.duplicated != 0 {
        bail!("not every client saw the rollout's jobs complete, or an execution ran twice");
    }
    Ok(())
}
