//! `cargo xtask bench server`, `bench artifacts` and `bench fleet`: run the server's benchmarks
//! (`tests/examples/bench_server.rs`, `bench_artifacts.rs`, `bench_fleet.rs`) against `DATABASE_URL` or the
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

/// Runs a benchmark example of the tests crate with PostgreSQL, and writes its figures
/// under `intro` to the section `heading` of `docs/benchmarks.md`.
pub(crate) fn run_example_bench(
    root: &Path,
    target: &Path,
    example: &str,
    heading: &str,
    intro: &str,
) -> Result<()> {
    let postgres = postgres::Postgres::ensure(root, target)?;
    let figures = target.join(format!("{example}.md"));
    run(cargo(root)
        .args(["run", "--package", "flotilla-tests", "--example", example])
        .env("DATABASE_URL", postgres.admin_url())
        .env("FLOTILLA_BENCH_DIR", target)
        .env("FLOTILLA_BENCH_OUT", &figures))?;
    let figures = std::fs::read_to_string(&figures)
        .with_context(|| format!("reading {}", figures.display()))?;
    let report = format!("{intro}\n\n{figures}");
    crate::bench::write_section(root, heading, &report)?;
    println!("{report}");
    drop(postgres);
    Ok(())
}
