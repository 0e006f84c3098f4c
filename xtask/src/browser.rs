//! The browser tests' tools and the web UI benchmark.
//!
//! - [`ensure`]: Debian's `chromium` (installed with apt-get when missing and we are root) and
//!   the npm packages of `tests/browser` (`playwright-core`, `@axe-core/playwright`, from its
//!   lock file with `npm ci`). `cargo xtask ci` runs it before the tests, so the end-to-end test
//!   `browser::the_dashboard_works_in_chromium` finds them.
//! - `cargo xtask browser`: that, the frontend build, and the browser test alone.
//! - `cargo xtask bench ui`: the bundle's compressed size and the overview's first render in
//!   Chromium (`tests/examples/bench_ui.rs`), written to `docs/benchmarks.md`.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, frontend, postgres, run};

/// Where Debian's package puts the browser; the test scripts launch exactly this one.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The bundle's target: compressed WASM, JS and CSS together.
const SIZE_TARGET_BYTES: u64 = 300_000;

/// Installs what the browser tests need, if it is missing.
pub fn ensure(root: &Path) -> Result<()> {
    if Path::new(CHROMIUM).is_file() {
        eprintln!("browser: using {CHROMIUM}");
    } else if crate::postgres::is_root() && Path::new("/usr/bin/apt-get").is_file() {
        eprintln!("browser: {CHROMIUM} is missing; installing Debian's chromium with apt-get");
        run(Command::new("apt-get").arg("update"))?;
        run(Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends", "chromium"]))?;
    } else {
        bail!(
            "the browser tests need Chromium at {CHROMIUM}: install it with \
             `sudo apt-get install chromium`"
        );
    }
    let dir = root.join("tests").join("browser");
    let installed = dir.join("node_modules").join(".package-lock.json");
    let lock = dir.join("package-lock.json");
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    if modified(&installed).is_some() && modified(&installed) >= modified(&lock) {
        eprintln!("browser: npm packages of {} are installed", dir.display());
        return Ok(());
    }
    run(Command::new("npm")
        .current_dir(&dir)
        .args(["ci", "--no-audit", "--no-fund"]))
    .context("installing the browser tests' npm packages (are Node.js and npm installed?)")
}

/// `cargo xtask browser`: the tools, the bundle, and the browser test against the private
/// PostgreSQL cluster (or `DATABASE_URL`).
pub fn test(root: &Path, target: &Path) -> Result<()> {
    ensure(root)?;
    frontend::build(root)?;
    let postgres = postgres::Postgres::ensure(root, target)?;
    run(cargo(root)
        .args([
            "test",
            "--package",
            "flotilla-tests",
            "--test",
            "e2e",
            "browser::",
        ])
        .env("DATABASE_URL", postgres.admin_url()))?;
    drop(postgres);
    Ok(())
}

/// `cargo xtask bench ui`.
pub fn bench(root: &Path, target: &Path) -> Result<()> {
    ensure(root)?;
    frontend::build(root)?;
    let pkg = root.join("static").join("pkg");
    let files = [
        (
            "WASM module",
            pkg.join(format!("{}_bg.wasm", frontend::OUT_NAME)),
        ),
        ("JS glue", pkg.join(format!("{}.js", frontend::OUT_NAME))),
        ("CSS", root.join("static").join("style.css")),
    ];
    let mut table = String::from("| File | Size | gzip -9 |\n|---|---|---|\n");
    let (mut raw_total, mut gzip_total) = (0, 0);
    for (name, path) in &files {
        let raw = std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        let gzipped = frontend::gzip_size(path).context("gzip is needed to measure the bundle")?;
        raw_total += raw;
        gzip_total += gzipped;
        table.push_str(&format!("| {name} | {} | {} |\n", kb(raw), kb(gzipped)));
    }
    let verdict = if gzip_total <= SIZE_TARGET_BYTES {
        "meets"
    } else {
        "misses"
    };
    table.push_str(&format!(
        "| **Total** | {} | **{}** ({verdict} the target of 300 KB) |\n",
        kb(raw_total),
        kb(gzip_total)
    ));
    let intro = format!(
        "## Web UI (`cargo xtask bench ui`)\n\n\
         The dashboard's bundle as the browser downloads it (the `wasm-release` profile, \
         `wasm-opt -Oz`, and the `.gz` files the server sends), and the overview's first render \
         in headless Chromium on loopback (`tests/examples/bench_ui.rs`, which describes what is \
         timed).\n\n{table}"
    );
    crate::bench_server::run_example_bench(root, target, "bench_ui", "## Web UI", &intro)
}

/// Bytes as kB (1000) and KiB.
fn kb(bytes: u64) -> String {
    format!(
        "{:.1} kB ({:.1} KiB)",
        bytes as f64 / 1000.0,
        bytes as f64 / 1024.0
    )
}
