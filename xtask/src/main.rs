//! `cargo xtask`: the one entry point for developer and CI tasks.
//!
//! - `demo`: build everything and run Flotilla in local mode with a simulated fleet.
//! - `ci`: what CI runs — formatting, lints, the container recipe, the frontend and server
//!   builds and every test.
//! - `dockerfile`: CI's checks of the container recipe alone (hadolint, and its build commands).
//! - `frontend`, `frontend-tools`: the web UI's bundle, or only the tools that make it (the
//!   container image runs both, so it builds the UI exactly as CI does; see [`docker`]).
//! - `browser`: the browser tests' tools (Chromium, the npm packages), the bundle, and the browser
//!   test alone.
//! - `bench simulate | engine | server | artifacts | fleet | load | ui`: the benchmarks;
//!   figures go to `docs/benchmarks.md`.
//! - `soak [--seconds S]`: the fault tests (`faults::`) with devices cut off for a full minute
//!   (or S seconds) instead of CI's ten.
//! - `python`: make the tests' Python virtualenv and print its interpreter (for
//!   `FLOTILLA_TEST_PYTHON` when running `cargo test` by hand).
//! - `fuzz [--cases N] [--seed S]`: the fuzz targets (`fuzz_*` end-to-end tests) for long runs;
//!   `ci` runs them with a few hundred cases each.
//!
//! Everything a fresh machine needs (the wasm target, wasm-bindgen, wasm-opt, PostgreSQL) is
//! installed from here, so the README's two commands work on a machine with only rustup.

mod bench;
mod bench_engine;
mod bench_server;
mod browser;
mod docker;
mod frontend;
mod postgres;
mod python;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => demo(&args[1..]),
        Some("ci") => ci(),
        Some("fuzz") => fuzz(&args[1..]),
        Some("soak") => soak(&args[1..]),
        Some("bench") => bench::run_bench(&args[1..]),
        Some("frontend") => {
            use_ci_target_dir()?;
            frontend::build(&workspace_root())
        }
        Some("browser") => {
            use_ci_target_dir()?;
            let root = workspace_root();
            browser::test(&root, &target_dir(&root))
        }
        Some("python") => {
            use_ci_target_dir()?;
            let root = workspace_root();
            let python = python::ensure_venv(&root.join(target_dir(&root)))?;
            println!("{}", python.display());
            Ok(())
        }
        Some("dockerfile") => {
            use_ci_target_dir()?;
            let root = workspace_root();
            let python = python::ensure_venv(&root.join(target_dir(&root)))?;
            docker::check(&root, &python)
        }
        Some("frontend-tools") => {
            use_ci_target_dir()?;
            frontend::ensure_tools(&workspace_root()).map(drop)
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <demo | ci | fuzz [--cases N] [--seed S] | soak [--seconds S] | dockerfile | frontend | frontend-tools | browser | python | bench simulate|engine|server|artifacts|fleet|load|ui>"
            );
            std::process::exit(2);
        }
    }
}

/// The workspace root (the parent of this crate's folder).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in a workspace")
        .to_path_buf()
}

/// Runs a command to completion, failing with its command line when it fails.
fn run(cmd: &mut Command) -> Result<()> {
    let line = format!("{cmd:?}");
    eprintln!("$ {line}");
    let status = cmd.status().with_context(|| format!("starting {line}"))?;
    if !status.success() {
        bail!("{line} failed with {status}");
    }
    Ok(())
}

/// The cargo target folder: `CARGO_TARGET_DIR`, else `target/` in the workspace.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// In CI (`CI=true`) the cargo target folder lives outside the clone, so the next run on this
/// machine starts warm. Set for this process and every cargo it starts.
fn use_ci_target_dir() -> Result<()> {
    if std::env::var("CI").as_deref() == Ok("true")
        && std::env::var_os("CARGO_TARGET_DIR").is_none()
    {
        let home = std::env::var_os("HOME").context("HOME is not set")?;
        let dir = PathBuf::from(home).join(".cache/flotilla/target");
        eprintln!("CI: cargo target folder is {}", dir.display());
        // SAFETY: single-threaded at this point; set before any thread or child starts.
        #[expect(
            unsafe_code,
            reason = "set_var is unsafe in edition 2024; no threads run yet"
        )]
        unsafe {
            std::env::set_var("CARGO_TARGET_DIR", &dir);
        }
    }
    Ok(())
}

fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root);
    // `cargo xtask` runs us with xtask's own CARGO_MANIFEST_DIR; `ring`'s build script reruns
    // when that variable changes, and everything above ring (rustls, the AWS SDKs) with it, so
    // a build through xtask and a plain `cargo test` would keep invalidating each other.
    cmd.env_remove("CARGO_MANIFEST_DIR");
    cmd
}

/// `cargo xtask demo [serve flags…]`: Flotilla in local mode with 100 simulated devices.
fn demo(args: &[String]) -> Result<()> {
    // Ctrl-C reaches every process of the terminal's group: the build or the server stops, and
    // this process, which only notes it, returns normally so that dropping `postgres` stops
    // the cluster it started.
    ctrlc::set_handler(|| eprintln!("\nstopping…")).context("installing the Ctrl-C handler")?;
    let root = workspace_root();
    let target = target_dir(&root);
    frontend::build(&root)?;
    let postgres = postgres::Postgres::ensure(&root, &target)?;
    let database_url = postgres.ensure_database("flotilla")?;
    run(cargo(&root).args(["build", "--package", "flotilla-server", "--bin", "flotilla"]))?;

    let mut serve = Command::new(target.join("debug/flotilla"));
    serve
        .current_dir(&root)
        .env("DATABASE_URL", &database_url)
        .args([
            "serve",
            "--iot",
            "local",
            "--simulate",
            "100",
            "--register-thing",
            "iot-jobs-thing",
            "--static-dir",
            "static",
        ])
        .args(args);
    eprintln!("$ {serve:?}");
    let status = serve.status().context("starting flotilla serve")?;
    drop(postgres);
    if !status.success() && status.code().is_some() {
        bail!("flotilla serve exited with {status}");
    }
    Ok(())
}

/// `cargo xtask fuzz [--cases N] [--seed S]`: every fuzz target with N cases each (20,000 when
/// absent), against a PostgreSQL of its own; `--seed` replays a run.
fn fuzz(args: &[String]) -> Result<()> {
    use_ci_target_dir()?;
    let mut cases = "20000".to_owned();
    let mut seed = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--cases" => cases = args.next().context("--cases needs a number")?.clone(),
            "--seed" => seed = Some(args.next().context("--seed needs a number")?.clone()),
            other => bail!("unknown argument {other}; use --cases N or --seed S"),
        }
    }
    let root = workspace_root();
    let target = target_dir(&root);
    let postgres = postgres::Postgres::ensure(&root, &target)?;
    let mut test = cargo(&root);
    test.args([
        "test",
        "--package",
        "flotilla-tests",
        "--test",
        "e2e",
        "--locked",
        "--",
    ])
    .args(["fuzz_", "--nocapture"])
    .env("DATABASE_URL", postgres.admin_url())
    .env("FLOTILLA_FUZZ_CASES", &cases);
    if let Some(seed) = seed {
        test.env("FLOTILLA_FUZZ_SEED", seed);
    }
    run(&mut test)?;
    drop(postgres);
    Ok(())
}

/// `cargo xtask soak [--seconds S]`: the fault tests (`faults::`), 30% of the devices cut off
/// for S seconds (60 when absent; CI cuts them off for 10), against a PostgreSQL of its own.
fn soak(args: &[String]) -> Result<()> {
    use_ci_target_dir()?;
    let seconds = match args {
        [] => "60".to_owned(),
        [flag, seconds] if flag == "--seconds" && seconds.parse::<u64>().is_ok() => seconds.clone(),
        _ => bail!("usage: cargo xtask soak [--seconds S]"),
    };
    let root = workspace_root();
    let target = target_dir(&root);
    let postgres = postgres::Postgres::ensure(&root, &target)?;
    run(cargo(&root)
        .args([
            "test",
            "--package",
            "flotilla-tests",
            "--test",
            "e2e",
            "--locked",
            "--",
        ])
        .args(["faults::", "--nocapture"])
        .env("DATABASE_URL", postgres.admin_url())
        .env("FLOTILLA_PARTITION_SECONDS", &seconds))?;
    drop(postgres);
    Ok(())
}

/// `cargo xtask ci`: everything CI checks, in the order that fails fastest.
fn ci() -> Result<()> {
    use_ci_target_dir()?;
    let root = workspace_root();
    let target = target_dir(&root);
    let started = std::time::Instant::now();
    run(cargo(&root).args(["fmt", "--all", "--check"]))?;
    run(cargo(&root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    let python = python::ensure_venv(&root.join(&target))?;
    docker::check(&root, &python)?;
    frontend::build(&root)?;
    // The browser test (`browser::the_dashboard_works_in_chromium`, in the test run below)
    // drives the bundle just built in Chromium.
    browser::ensure(&root)?;
    // The image's server build, in the dev profile: the same command but for `--release`.
    run(cargo(&root).args(docker::SERVER_BUILD))?;
    let postgres = postgres::Postgres::ensure(&root, &target)?;
    run(cargo(&root)
        .args(["test", "--workspace", "--locked"])
        .env("DATABASE_URL", postgres.admin_url())
        .env("FLOTILLA_TEST_PYTHON", &python))?;
    drop(postgres);
    eprintln!("ci: all checks passed in {:.0?}", started.elapsed());
    Ok(())
}
