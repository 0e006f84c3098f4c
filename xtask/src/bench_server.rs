//! `cargo xtask bench server`, `bench artifacts`, `bench fleet` and `bench load`: run the
//! server's benchmarks (`tests/examples/bench_server.rs`, `bench_artifacts.rs`,
//! `bench_fleet.rs`, `bench_load.rs`) against `DATABASE_URL` or the
//! private PostgreSQL cluster, and write their figures to their sections of
//! `docs/benchmarks.md`.
//!
//! The measuring code lives in the tests crate because it drives the server's library (its
//! projection, ingestor and HTTP server); this task only provides PostgreSQL and the report.

use std::path::Path;

use anyhow::{Context, Result};

use crate::{cargo, postgres, run};

pub fn run_bench(root: &Path, target: &Path) -> Result<()> {
    run_example_bench(
        root,
        target,
        "bench_server",
        "## Dashboard server",
        "## Dashboard server (`cargo xtask bench server`)\n\n\
         `cargo xtask bench server` (the dev profile the tests use, whose dependencies are optimised; PostgreSQL on the same machine). What is \
         measured is described in `tests/examples/bench_server.rs`: reads of a job with \
         100,000 executions in the projection, event ingestion through the server's parser \
         and ingestor, and the latency from an event entering one process's ingestor to an \
         SSE client of another server process receiving it (through LISTEN/NOTIFY).",
    )
}

/// `cargo xtask bench artifacts`: `tests/examples/bench_artifacts.rs`.
pub fn run_artifacts_bench(root: &Path, target: &Path) -> Result<()> {
    run_example_bench(
        root,
        target,
        "bench_artifacts",
        "## Artifact store",
        "## Artifact store (`cargo xtask bench artifacts`)\n\n\
         `cargo xtask bench artifacts` (the dev profile the tests use, whose dependencies are \
         optimised): a 1 GiB artifact uploaded through the server's presigned part URLs into \
         the engine's artifact store and downloaded through a presigned URL, each as a ratio \
         to a plain file copy on the same disk in the same run. What is measured is described \
         in `tests/examples/bench_artifacts.rs`; the store, the file and the copies share one \
         folder under the target directory.",
    )
}

/// `cargo xtask bench fleet`: `tests/examples/bench_fleet.rs`.
pub fn run_fleet_bench(root: &Path, target: &Path) -> Result<()> {
    run_example_bench(
        root,
        target,
        "bench_fleet",
        "## Fleet inventory",
        "## Fleet inventory (`cargo xtask bench fleet`)\n\n\
         `cargo xtask bench fleet` (the dev profile the tests use, whose dependencies are \
         optimised; PostgreSQL on the same machine): device searches with three filters over \
         100,000 devices in the inventory projection, through the statement `GET \
         /api/v1/devices` runs. Each device row holds its groups with their ancestors, so a \
         group filter is an array containment on a GIN index, like the attribute filter \
         (`jsonb_path_ops`); no recursive join. What is measured is described in \
         `tests/examples/bench_fleet.rs`.",
    )
}

/// `cargo xtask bench load [--devices N]`: `tests/examples/bench_load.rs`.
pub fn run_load_bench(root: &Path, target: &Path, devices: usize) -> Result<()> {
    crate::bench::raise_open_file_limit(devices as u64 + 4096)?;
    // The fleet is `flotilla simulate` in a process of its own, as in the engine benchmark.
    run(cargo(root).args(["build", "--package", "flotilla-server", "--bin", "flotilla"]))?;
    let flotilla = target.join("debug/flotilla");
    run_example_bench_with(
        root,
        target,
        "bench_load",
        "## Rollout under watch",
        "## Rollout under watch (`cargo xtask bench load`)\n\n\
         `cargo xtask bench load` (the dev profile the tests use, whose dependencies are \
         optimised; PostgreSQL and everything else on the same machine): a local-mode server \
         with its embedded engine and broker in one process, the simulated fleet in another \
         (`flotilla simulate`, each device its own MQTT connection), and a rollout to every device in three waves (1%, \
         10%, 100%; AWS's default release rate of 1,000 executions per minute per job) while \
         SSE clients read `/api/v1/stream` and readers request the job list, the newest job's \
         detail and first executions page, and the rollout, each reader one request every \
         100 ms. An error is any request or stream that fails or answers other than 2xx, and \
         any stream that skips or repeats a change; the run fails on one. SSE lag is from a \
         change's transaction in the feed table to the client having read it. What is \
         measured is described in `tests/src/load.rs`; the end-to-end test \
         `load::a_rollout_to_300_devices_under_watch_has_no_errors` runs the same with 300 \
         devices and 10 clients in CI.",
        &[
            ("FLOTILLA_BENCH_DEVICES", devices.to_string()),
            ("FLOTILLA_BENCH_FLOTILLA", flotilla.display().to_string()),
        ],
    )
}

/// Runs a benchmark example of the tests crate with PostgreSQL, and writes its figures
/// under `intro` to the section `heading` of `docs/benchmarks.md`.
pub(crate) fn run_example_bench(
    root: &Path,
    target: &Path,
    example: &str,
    heading: &str,
    intro: &str,
) -> Result<()> {
    run_example_bench_with(root, target, example, heading, intro, &[])
}

/// [`run_example_bench`] with `env` set for the example.
fn run_example_bench_with(
    root: &Path,
    target: &Path,
    example: &str,
    heading: &str,
    intro: &str,
    env: &[(&str, String)],
) -> Result<()> {
    let postgres = postgres::Postgres::ensure(root, target)?;
    let figures = target.join(format!("{example}.md"));
    run(cargo(root)
        .args(["run", "--package", "flotilla-tests", "--example", example])
        .env("DATABASE_URL", postgres.admin_url())
        .env("FLOTILLA_BENCH_DIR", target)
        .env("FLOTILLA_BENCH_OUT", &figures)
        .envs(env.iter().map(|(name, value)| (*name, value))))?;
    let figures = std::fs::read_to_string(&figures)
        .with_context(|| format!("reading {}", figures.display()))?;
    let report = format!("{intro}\n\n{figures}");
    crate::bench::write_section(root, heading, &report)?;
    println!("{report}");
    drop(postgres);
    Ok(())
}
