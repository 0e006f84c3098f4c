//! `cargo xtask bench ui`: the overview's first render in headless Chromium on loopback.
//!
//! Starts the server in local mode with 100 simulated devices and 20 jobs on them, then runs
//! `tests/browser/bench.mjs`, which loads the overview ten times in a fresh browser context
//! (empty cache: the bundle is downloaded, compiled and run) and once more in the same context
//! (cached bundle), timing from navigation start until the overview shows its data. Prints a
//! Markdown report; with `FLOTILLA_BENCH_OUT` set, also writes it there. Needs `DATABASE_URL`
//! and the bundle (`cargo xtask frontend`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use flotilla_server::app::{self, ServeConfig};
use serde_json::json;
use sqlx::Connection;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() -> Result<()> {
    let admin =
        std::env::var("DATABASE_URL").context("DATABASE_URL must name a PostgreSQL server")?;
    let name = format!("flotilla_bench_ui_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(&admin).await?;
    sqlx::query(&format!("drop database if exists {name} with (force)"))
        .execute(&mut conn)
        .await?;
    sqlx::query(&format!("create database {name}"))
        .execute(&mut conn)
        .await?;
    let url = match admin.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => bail!("DATABASE_URL has no database name"),
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::temp_dir().join(&name);
    let key = dir.join("signing.pem");
    std::fs::create_dir_all(&dir)?;
    flotilla_server::signing::generate_key_file(&key)?;
    let server = app::start(ServeConfig {
        reconcile_every: Duration::from_secs(5),
        reconcile_budget: 50.0,
        artifacts: flotilla_server::artifacts::ArtifactConfig {
            signing_key: Some(key),
            ..Default::default()
        },
        ..flotilla_tests::bench_local_config(&url, dir.join("artifacts"), 100)
    })
    .await?;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    for i in 0..20 {
        let things: Vec<String> = (1..=5).map(|d| format!("sim-{:04}", i * 5 + d)).collect();
        http.post(format!("{base}/api/v1/jobs"))
            .json(&json!({"job_id": format!("bench-{i}"), "things": things, "document": {"operation": "simulate"}}))
            .send()
            .await?
            .error_for_status()?;
    }
    let out = tokio::process::Command::new("node")
        .arg(root.join("tests/browser/bench.mjs"))
        .current_dir(root.join("tests/browser"))
        .env("FLOTILLA_URL", &base)
        .output()
        .await
        .context("running node tests/browser/bench.mjs")?;
    server.shutdown().await;
    sqlx::query(&format!("drop database if exists {name} with (force)"))
        .execute(&mut conn)
        .await?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        bail!("bench.mjs failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let times: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("reading bench.mjs's output")?;
    let series = |key: &str| -> Vec<f64> {
        times[key]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
            .unwrap_or_default()
    };
    let (cold, warm) = (series("cold"), series("warm"));
    if cold.is_empty() || warm.is_empty() {
        bail!("bench.mjs measured nothing");
    }
    let worst = cold.iter().copied().fold(0.0, f64::max);
    let verdict = if median(cold.clone()) < 1000.0 {
        "meets"
    } else {
        "misses"
    };
    let report = format!(
        "| First render of the overview (navigation start → data on screen) | Median | Slowest |\n\
         |---|---|---|\n\
         | Empty cache ({} runs) | **{:.0} ms** ({verdict} the target of 1 s) | {:.0} ms |\n\
         | Cached bundle ({} runs) | {:.0} ms | {:.0} ms |\n",
        cold.len(),
        median(cold.clone()),
        worst,
        warm.len(),
        median(warm.clone()),
        warm.iter().copied().fold(0.0, f64::max),
    );
    println!("{report}");
    if let Some(path) = std::env::var_os("FLOTILLA_BENCH_OUT") {
        std::fs::write(path, &report)?;
    }
    Ok(())
}
