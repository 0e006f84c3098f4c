//! `cargo xtask bench server`: runs the server benchmark (`tests/examples/bench_server.rs`)
//! against `DATABASE_URL` or the private PostgreSQL cluster, and writes its figures to
//! their section of `docs/benchmarks.md`.
//!
//! The measuring code lives in the tests crate because it drives the server's library (its
//! projection, ingestor and HTTP server); this task only provides PostgreSQL and the report.

use std::path::Path;

use anyhow::{Context, Result};

use crate::{cargo, postgres, run};

pub fn run_bench(root: &Path, target: &Path) -> Result<()> {
    let postgres = postgres::Postgres::ensure(root, target)?;
    let figures = target.join("bench-server.md");
    run(cargo(root)
        .args([
            "run",
            "--package",
            "flotilla-tests",
            "--example",
            "bench_server",
        ])
        .env("DATABASE_URL", postgres.admin_url())
        .env("FLOTILLA_BENCH_OUT", &figures))?;
    let figures = std::fs::read_to_string(&figures)
        .with_context(|| format!("reading {}", figures.display()))?;
    let report = format!(
        "## Dashboard server (`cargo xtask bench server`)\n\n\
         `cargo xtask bench server` (the dev profile the tests use, whose dependencies are optimised; PostgreSQL on the same machine). What is \
         measured is described in `tests/examples/bench_server.rs`: reads of a job with \
         100,000 executions in the projection, event ingestion through the server's parser \
         and ingestor, and the latency from an event entering one process's ingestor to an \
         SSE client of another server process receiving it (through LISTEN/NOTIFY).\n\n\
         {figures}"
    );
    crate::bench::write_section(root, "## Dashboard server", &report)?;
    println!("{report}");
    drop(postgres);
    Ok(())
}
