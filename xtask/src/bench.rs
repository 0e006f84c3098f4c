//! `cargo xtask bench …`: the benchmarks, and the process plumbing they share.
//!
//! `simulate`: how many simulated devices one process holds, and what the device agent costs.
//!
//! Builds the release binaries, starts `flotilla serve` in local mode (the embedded engine and
//! its broker), then `flotilla simulate` with a small fleet and with the full fleet (10,000 by
//! default, each its own MQTT connection), waits until every device is connected and reads the
//! simulator's resident memory. Memory per device is the difference between the two runs
//! divided by the difference in devices. Then it starts one `flotilla-agent` against the same
//! broker and reads its idle RSS, and measures the agent binary's size once stripped. The
//! figures go to `docs/benchmarks.md`.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{cargo, postgres, run, target_dir, workspace_root};

/// Devices in the baseline run; the difference to the full run gives memory per device.
const BASELINE_DEVICES: usize = 100;

/// `cargo xtask bench simulate [--devices N]`.
pub fn run_bench(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("simulate") => simulate(devices_arg(&args[1..])?),
        Some("engine") => crate::bench_engine::engine(devices_arg(&args[1..])?),
        Some("server") => {
            let root = workspace_root();
            crate::bench_server::run_bench(&root, &target_dir(&root))
        }
        Some("ui") => {
            let root = workspace_root();
            crate::browser::bench(&root, &target_dir(&root))
        }
        Some("artifacts") => {
            let root = workspace_root();
            crate::bench_server::run_artifacts_bench(&root, &target_dir(&root))
        }
        Some("fleet") => {
            let root = workspace_root();
            crate::bench_server::run_fleet_bench(&root, &target_dir(&root))
        }
        Some("load") => {
            let root = workspace_root();
            crate::bench_server::run_load_bench(&root, &target_dir(&root), devices_arg(&args[1..])?)
        }
        _ => bail!(
            "usage: cargo xtask bench simulate|engine|load [--devices N] | server | artifacts | fleet | ui"
        ),
    }
}

/// `[--devices N]`, 10,000 by default.
fn devices_arg(args: &[String]) -> Result<usize> {
    match args.first().map(String::as_str) {
        Some("--devices") => args
            .get(1)
            .context("--devices needs a number")?
            .parse()
            .context("--devices needs a number"),
        Some(other) => bail!("unknown argument {other:?}"),
        None => Ok(10_000),
    }
}

/// Raises this process's open-file limit (inherited by the children it starts) to `wanted`,
/// or as far as the hard limit allows.
pub(crate) fn raise_open_file_limit(wanted: u64) -> Result<()> {
    if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get()
        && soft < wanted
    {
        rlimit::Resource::NOFILE
            .set(wanted.min(hard), hard)
            .context("raising the open-file limit")?;
    }
    Ok(())
}

/// Replaces the section of `docs/benchmarks.md` that starts with `heading` (up to the next
/// `## `), or appends it, so each benchmark updates only its own figures.
pub(crate) fn write_section(root: &Path, heading: &str, section: &str) -> Result<()> {
    let section = format!("{}\n\n", section.trim_end());
    let path = root.join("docs/benchmarks.md");
    let current = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".into());
    let updated = match current.find(heading) {
        Some(start) => {
            let rest = &current[start + heading.len()..];
            let end = rest
                .find("\n## ")
                .map_or(current.len(), |i| start + heading.len() + i + 1);
            format!("{}{section}{}", &current[..start], &current[end..])
        }
        None => format!(
            "{}\n{section}",
            current.trim_end_matches('\n').to_owned() + "\n"
        ),
    };
    std::fs::write(&path, updated).with_context(|| format!("writing {}", path.display()))
}

/// Kills the child when dropped, so a failed benchmark leaves nothing running.
pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn simulate(devices: usize) -> Result<()> {
    let root = workspace_root();
    let target = target_dir(&root);
    // Every connection is a file descriptor, in the server (inherited) and the simulator.
    raise_open_file_limit(devices as u64 * 2 + 1024)?;
    run(cargo(&root).args([
        "build",
        "--release",
        "--package",
        "flotilla-server",
        "--bin",
        "flotilla",
        "--package",
        "flotilla-agent",
        "--bin",
        "flotilla-agent",
    ]))?;
    let release = target.join("release");
    let postgres = postgres::Postgres::ensure(&root, &target)?;
    let database_url = postgres.ensure_database("flotilla_bench")?;

    let mqtt_port = free_port()?;
    let mut serve = Command::new(release.join("flotilla"));
    serve
        .current_dir(&root)
        .env("DATABASE_URL", &database_url)
        .env("RUST_LOG", "warn")
        // The simulated devices connect as `sim-0001` …; the engine admits registered things.
        .env("FLOTILLA_REGISTER_THINGS", sim_things(devices).join(","))
        .args(["serve", "--iot", "local", "--listen", "127.0.0.1:0"])
        .args(["--mqtt-listen", &format!("127.0.0.1:{mqtt_port}")])
        .stdout(Stdio::piped());
    let mut server = Running(serve.spawn().context("starting flotilla serve")?);
    let lines = lines_of(server.0.stdout.take().context("server stdout")?);
    wait_for_line(&lines, "Flotilla is running", Duration::from_secs(900))?;
    let server_rss_before = rss_kib(server.0.id())?;

    let (baseline_rss, _) = run_fleet(&release, mqtt_port, BASELINE_DEVICES)?;
    let (full_rss, connect_time) = run_fleet(&release, mqtt_port, devices)?;
    let server_rss_after = rss_kib(server.0.id())?;
    let per_device_kib =
        (full_rss.saturating_sub(baseline_rss)) as f64 / (devices - BASELINE_DEVICES).max(1) as f64;

    let (agent_rss, agent_size) = measure_agent(&release, mqtt_port)?;
    drop(server);
    drop(postgres);

    let report = format!(
        "## Fleet simulator and device agent (`cargo xtask bench simulate`)\n\n\
         Release build on the development machine (2 cores), against `flotilla serve` in local \
         mode on the same machine.\n\n\
         ### Fleet simulator\n\n\
         | Figure | Value |\n|---|---|\n\
         | Simulated devices connected (one MQTT connection each) | {devices} |\n\
         | Time until all were connected | {connect:.1} s |\n\
         | Simulator RSS with {BASELINE_DEVICES} devices | {baseline_mib:.1} MiB |\n\
         | Simulator RSS with {devices} devices | {full_mib:.1} MiB |\n\
         | Memory per simulated device | {per_device_kib:.1} KiB |\n\
         | Server RSS (engine and broker) before / with the fleet connected | {server_before:.1} / {server_after:.1} MiB |\n\n\
         ### Device agent\n\n\
         | Figure | Value | Target |\n|---|---|---|\n\
         | `flotilla-agent` size, stripped | {size_mib:.2} MiB | under 10 MB |\n\
         | `flotilla-agent` RSS, connected and idle | {agent_mib:.1} MiB | under 15 MB |\n",
        connect = connect_time.as_secs_f64(),
        baseline_mib = baseline_rss as f64 / 1024.0,
        full_mib = full_rss as f64 / 1024.0,
        server_before = server_rss_before as f64 / 1024.0,
        server_after = server_rss_after as f64 / 1024.0,
        size_mib = agent_size as f64 / (1024.0 * 1024.0),
        agent_mib = agent_rss as f64 / 1024.0,
    );
    write_section(&root, "## Fleet simulator and device agent", &report)?;
    println!("{report}");
    Ok(())
}

/// The thing names `flotilla simulate --devices N` connects as.
pub(crate) fn sim_things(devices: usize) -> Vec<String> {
    (1..=devices).map(|i| format!("sim-{i:04}")).collect()
}

/// Runs `flotilla simulate` with `devices` devices until all are connected and settled;
/// returns its RSS (KiB) and how long connecting took.
fn run_fleet(release: &Path, mqtt_port: u16, devices: usize) -> Result<(u64, Duration)> {
    let started = Instant::now();
    let mut simulate = Command::new(release.join("flotilla"));
    simulate
        .env("RUST_LOG", "warn")
        .args(["simulate", "--mqtt", &format!("127.0.0.1:{mqtt_port}")])
        .args(["--devices", &devices.to_string()])
        .stdout(Stdio::piped());
    let mut fleet = Running(simulate.spawn().context("starting flotilla simulate")?);
    let lines = lines_of(fleet.0.stdout.take().context("simulator stdout")?);
    let expected = format!("connected: {devices}");
    wait_for_line(&lines, &expected, Duration::from_secs(600))?;
    let connect_time = started.elapsed();
    // Let the subscriptions and start-next round trips settle before reading memory.
    wait_for_line(&lines, &expected, Duration::from_secs(30))?;
    thread::sleep(Duration::from_secs(5));
    let rss = rss_kib(fleet.0.id())?;
    eprintln!(
        "bench: {devices} devices connected in {connect_time:.1?}, simulator RSS {} KiB",
        rss
    );
    Ok((rss, connect_time))
}

/// Starts one agent against the broker, lets it connect and go idle, and reads its RSS;
/// also measures the binary's stripped size.
fn measure_agent(release: &Path, mqtt_port: u16) -> Result<(u64, u64)> {
    let binary = release.join("flotilla-agent");
    let stripped = std::env::temp_dir().join("flotilla-agent.stripped");
    std::fs::copy(&binary, &stripped).context("copying the agent binary")?;
    run(Command::new("strip").arg(&stripped))?;
    let size = std::fs::metadata(&stripped)?.len();
    let _ = std::fs::remove_file(&stripped);

    let state = std::env::temp_dir().join(format!("flotilla-bench-agent-{}", std::process::id()));
    let mut agent = Command::new(&binary);
    agent
        .env("RUST_LOG", "info")
        .args([
            "--thing-name",
            "bench-agent",
            "--port",
            &mqtt_port.to_string(),
        ])
        .arg("--state-dir")
        .arg(&state)
        .arg("--handler-dir")
        .arg(&state)
        .stdout(Stdio::piped());
    let agent = Running(agent.spawn().context("starting flotilla-agent")?);
    // Connected, subscribed and asked for work within a few seconds; then it only idles.
    thread::sleep(Duration::from_secs(10));
    let rss = rss_kib(agent.0.id())?;
    drop(agent);
    let _ = std::fs::remove_dir_all(&state);
    Ok((rss, size))
}

/// A port free right now on loopback.
pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The resident set size of a process, in KiB (`VmRSS` in `/proc/{pid}/status`).
pub(crate) fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading the status of process {pid}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc status")
}

/// The lines a child prints, read on a thread of their own.
pub(crate) fn lines_of(stdout: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line that contains `needle`.
pub(crate) fn wait_for_line(
    lines: &mpsc::Receiver<String>,
    needle: &str,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return Ok(()),
            Ok(line) => eprintln!("  {line}"),
            Err(_) => bail!("no line with {needle:?} within {timeout:?}"),
        }
    }
}
