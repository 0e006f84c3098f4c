//! The PostgreSQL server that `cargo xtask demo` and `cargo xtask ci` use.
//!
//! If `DATABASE_URL` is set, that server is used as is and nothing is started. Otherwise we run
//! a private cluster under the target folder, because a fresh machine has no PostgreSQL running
//! (or has one on 5432 that belongs to someone else and must not be touched). The cluster is
//! made once with `initdb`, started on a free port, reused by later runs while it is still up,
//! and stopped again by whoever started it.
//!
//! Two things make this harder than it sounds:
//! - The server binaries are often missing. As root we install them with apt; otherwise we say
//!   exactly what to install.
//! - `initdb` and `pg_ctl` refuse to run as root, which is how CI containers run. There we run
//!   them as the `postgres` system user that the Debian package creates, which means the data
//!   folder must be owned by that user and reachable by it. CI keeps the target folder under
//!   `/root/.cache` (mode 0700), so in that case the cluster lives under `/var/tmp` instead.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The binaries we need from the server's bin folder.
const TOOLS: [&str; 4] = ["initdb", "pg_ctl", "postgres", "psql"];

/// Unix socket paths are limited to 107 bytes; stay well below.
const MAX_SOCKET_PATH: usize = 100;

/// A PostgreSQL server to use: either the user's (`DATABASE_URL`) or a private cluster we run.
#[derive(Debug)]
pub struct Postgres {
    admin_url: String,
    /// `None` when the server comes from `DATABASE_URL`.
    cluster: Option<Cluster>,
}

/// A private cluster under the target folder (or its `/var/tmp` stand-in).
#[derive(Debug)]
struct Cluster {
    /// The server's bin folder (`initdb`, `pg_ctl`, `postgres`, `psql`).
    bin: PathBuf,
    /// Holds `data/`, `server.log` and the unix socket.
    base: PathBuf,
    port: u16,
    /// We are root, so the server tools run as the `postgres` user.
    as_postgres: bool,
    /// This process started the server, so it stops it again.
    started: bool,
}

impl Postgres {
    /// `DATABASE_URL` if set (nothing started); otherwise the private cluster under
    /// `target_dir` (relative paths are taken from `root`), started if needed.
    pub fn ensure(root: &Path, target_dir: &Path) -> Result<Postgres> {
        if let Some(url) = std::env::var("DATABASE_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
        {
            eprintln!("postgres: using the server in DATABASE_URL");
            return Ok(Postgres {
                admin_url: url,
                cluster: None,
            });
        }
        let root_user = is_root();
        let bin = server_bindir(root_user)?;
        if root_user && quiet(Command::new("id").arg("postgres")).is_err() {
            bail!(
                "running as root needs the `postgres` system user to run the server (the Debian \
                 postgresql package creates it): create it, or set DATABASE_URL"
            );
        }

        let target_dir = root.join(target_dir);
        fs::create_dir_all(&target_dir)
            .with_context(|| format!("creating {}", target_dir.display()))?;
        // A canonical path keeps the /var/tmp fallback's name stable however the caller spells it.
        let target_dir = target_dir.canonicalize()?;
        let base = cluster_base(&target_dir, root_user);
        fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
        if root_user {
            quiet(Command::new("chown").arg("postgres:postgres").arg(&base))?;
        }

        let mut cluster = Cluster {
            bin,
            base,
            port: 0,
            as_postgres: root_user,
            started: false,
        };
        if cluster.is_running() {
            cluster.reuse()?;
        } else {
            cluster.init_if_needed()?;
            cluster.start()?;
        }
        Ok(Postgres {
            admin_url: cluster.url("postgres"),
            cluster: Some(cluster),
        })
    }

    /// A URL with superuser rights, e.g. `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// Creates database `name` if it does not exist; returns its URL.
    ///
    /// With `DATABASE_URL` set this creates nothing and returns `DATABASE_URL` itself: the user
    /// chose the database, and may not have the rights to create others.
    pub fn ensure_database(&self, name: &str) -> Result<String> {
        let Some(cluster) = &self.cluster else {
            return Ok(self.admin_url.clone());
        };
        // Plain lowercase names need no quoting in SQL and keep their spelling in the URL.
        if !is_plain_identifier(name) {
            bail!("database name {name:?} must be lowercase letters, digits and underscores");
        }
        if !cluster.database_exists(name)? {
            let created = cluster.psql(&format!("CREATE DATABASE {name}"));
            // Another process may have created it in the meantime; that is just as good.
            if let Err(e) = created
                && !cluster.database_exists(name)?
            {
                return Err(e);
            }
            eprintln!("postgres: created database {name}");
        }
        Ok(cluster.url(name))
    }

    /// A PostgreSQL client program (`psql`, `pgbench`) matching the server when we run it, else
    /// the newest installed one.
    pub fn client_tool(&self, name: &str) -> Result<PathBuf> {
        let bin = match &self.cluster {
            Some(cluster) => Some(cluster.bin.clone()),
            None => find_bindir(),
        };
        bin.map(|dir| dir.join(name))
            .filter(|path| path.is_file())
            .with_context(|| format!("no PostgreSQL client program {name} found"))
    }

    /// Stops the private cluster if this process started it. Safe to call more than once; errors
    /// are printed, not returned, because this also runs from `Drop`.
    pub fn stop(&mut self) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        if !cluster.started {
            return;
        }
        cluster.started = false;
        let data = cluster.data();
        let stopped = quiet(
            cluster
                .tool("pg_ctl")
                .arg("-D")
                .arg(&data)
                .args(["-m", "fast", "-w", "-t", "60", "stop"]),
        );
        match stopped {
            Ok(_) => eprintln!(
                "postgres: stopped private cluster (data in {})",
                data.display()
            ),
            Err(e) => eprintln!("postgres: stopping private cluster failed: {e:#}"),
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Cluster {
    fn data(&self) -> PathBuf {
        self.base.join("data")
    }

    fn log(&self) -> PathBuf {
        self.base.join("server.log")
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A server tool, run as the `postgres` user when we are root (they refuse to run as root).
    fn tool(&self, name: &str) -> Command {
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(self.bin.join(name));
            cmd
        } else {
            Command::new(self.bin.join(name))
        };
        // The tools look up their working directory, which root's may hide from `postgres`.
        cmd.current_dir(&self.base);
        without_pg_env(&mut cmd);
        cmd
    }

    /// Whether a server is up on this data folder (ours from an earlier run, or another xtask's).
    fn is_running(&self) -> bool {
        self.data().join("postmaster.pid").exists()
            && self
                .tool("pg_ctl")
                .arg("status")
                .arg("-D")
                .arg(self.data())
                .output()
                .is_ok_and(
                    // `pg_ctl status` exits 0 when running, 3 when not (a stale postmaster.pid).
                    |out| out.status.success(),
                )
    }

    /// Adopts the running server: its port comes from postmaster.pid, and we leave it running.
    fn reuse(&mut self) -> Result<()> {
        let pid_file = self.data().join("postmaster.pid");
        // Whoever started it may still be waiting for it to accept connections.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = fs::read_to_string(&pid_file)
                .with_context(|| format!("reading {}", pid_file.display()))?;
            let info = parse_pid_file(&text);
            if let Some(PidFile { port, status }) = info
                && status.is_none_or(|s| s == "ready")
            {
                self.port = port;
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "the cluster in {} is running but not ready",
                    self.data().display()
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
        eprintln!(
            "postgres: reusing private cluster on port {} (data in {})",
            self.port,
            self.data().display()
        );
        Ok(())
    }

    /// Runs initdb unless an earlier run already made a cluster these binaries can serve.
    fn init_if_needed(&self) -> Result<()> {
        let data = self.data();
        if let Ok(made_by) = fs::read_to_string(data.join("PG_VERSION")) {
            let made_by = made_by.trim();
            let ours = self.server_major()?;
            if made_by == ours {
                return Ok(());
            }
            // A newer PostgreSQL was installed since; the cluster only holds scratch data.
            eprintln!(
                "postgres: the private cluster was made by PostgreSQL {made_by}, \
                 the binaries are {ours}: recreating it"
            );
        }
        if data.exists() {
            // Left by an older version or an interrupted initdb; initdb needs an empty folder.
            fs::remove_dir_all(&data).with_context(|| format!("removing {}", data.display()))?;
        }
        eprintln!("postgres: creating private cluster in {}", data.display());
        quiet(self.tool("initdb").arg("-D").arg(&data).args([
            "--auth=trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            // The C locale exists everywhere (initdb fails on a LANG that is not installed) and
            // sorts the same on every machine.
            "--locale=C",
            "--no-instructions",
        ]))?;
        Ok(())
    }

    /// The major version of the binaries, as initdb writes it to `PG_VERSION`.
    fn server_major(&self) -> Result<String> {
        // `--version` is answered before the root check, so no runuser needed.
        let out = quiet(Command::new(self.bin.join("pg_ctl")).arg("--version"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        major_version(&text).with_context(|| format!("no version in pg_ctl output {text:?}"))
    }

    /// Starts the server on a free port. Retried on a new port because another program may
    /// take the port between our probe and the server's bind.
    fn start(&mut self) -> Result<()> {
        let data = self.data();
        let mut last_error = None;
        for _ in 0..3 {
            let port = free_port()?;
            eprintln!(
                "postgres: starting private cluster on port {port} (data in {})",
                data.display()
            );
            // pg_ctl hands `-o` to a shell, hence the quoting.
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
                shell_quote(&self.base.to_string_lossy())
            );
            let started = quiet(
                self.tool("pg_ctl")
                    .arg("-D")
                    .arg(&data)
                    .arg("-l")
                    .arg(self.log())
                    .args(["-w", "-t", "60", "-o", &options, "start"]),
            );
            match started {
                Ok(_) => {
                    self.port = port;
                    self.started = true;
                    return Ok(());
                }
                // Another xtask started it at the same moment: use theirs.
                Err(_) if self.is_running() => return self.reuse(),
                Err(e) => last_error = Some(e),
            }
        }
        let error = last_error.expect("at least one attempt");
        Err(error.context(format!(
            "starting PostgreSQL; the end of {}:\n{}",
            self.log().display(),
            log_tail(&self.log(), 20)
        )))
    }

    fn database_exists(&self, name: &str) -> Result<bool> {
        let out = self.psql(&format!(
            "SELECT 1 FROM pg_database WHERE datname = '{name}'"
        ))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim() == "1")
    }

    /// Runs one SQL command as the superuser over TCP (trust auth, so no runuser needed).
    fn psql(&self, sql: &str) -> Result<Output> {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args(["-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", "postgres", "-tAc", sql]);
        without_pg_env(&mut cmd);
        quiet(&mut cmd)
    }
}

/// Where the cluster lives: `<target_dir>/postgres`, unless the `postgres` user cannot reach it
/// or the socket path would be too long; then a folder under `/var/tmp` named after the target
/// folder, so each checkout keeps its own cluster.
fn cluster_base(target_dir: &Path, root_user: bool) -> PathBuf {
    let preferred = target_dir.join("postgres");
    let fallback = PathBuf::from(format!(
        "/var/tmp/flotilla-postgres-{:012x}",
        fnv1a(target_dir.to_string_lossy().as_bytes()) & 0xffff_ffff_ffff
    ));
    let reason = if socket_path_len(&preferred) >= MAX_SOCKET_PATH {
        "its unix socket path would be too long"
    } else if root_user && !postgres_can_enter(target_dir) {
        "the postgres user cannot reach it"
    } else {
        return preferred;
    };
    eprintln!(
        "postgres: not using {} ({reason}); the cluster lives in {}",
        preferred.display(),
        fallback.display()
    );
    fallback
}

/// The length of the server's socket path in `base` (`.s.PGSQL.<port>`, at most 5 digits).
fn socket_path_len(base: &Path) -> usize {
    base.as_os_str().len() + "/.s.PGSQL.65535".len()
}

/// Asks the system rather than reading mode bits, so groups and ACLs count too.
fn postgres_can_enter(dir: &Path) -> bool {
    Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}

/// The folder with the server binaries, installing PostgreSQL first if we may.
fn server_bindir(root_user: bool) -> Result<PathBuf> {
    if let Some(dir) = find_bindir() {
        return Ok(dir);
    }
    let apt = Path::new("/usr/bin/apt-get").exists();
    if !root_user || !apt {
        bail!(
            "the PostgreSQL server is not installed (looked at `pg_config --bindir` and \
             /usr/lib/postgresql/*/bin). Install it with `sudo apt-get install postgresql` \
             (or your system's package manager), or set DATABASE_URL to a server you run."
        );
    }
    eprintln!("postgres: the PostgreSQL server is not installed; installing it with apt-get");
    crate::run(Command::new("apt-get").arg("update"))?;
    crate::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "postgresql"]),
    )?;
    find_bindir().context("installed the postgresql package but found no initdb, pg_ctl, postgres")
}

fn find_bindir() -> Option<PathBuf> {
    let has_tools = |dir: &Path| TOOLS.iter().all(|t| dir.join(t).is_file());
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_tools(&dir) {
            return Some(dir);
        }
    }
    // Debian keeps the server out of PATH, one folder per major version.
    let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = parse_version(&entry.file_name().to_string_lossy())?;
            let bin = entry.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// "15" → [15], "9.6" → [9, 6]; `None` for anything else.
fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// The major version in `pg_ctl --version` output ("pg_ctl (PostgreSQL) 15.6 (Debian …)"),
/// spelt as in `PG_VERSION`: "15", or "9.6" before version 10.
fn major_version(text: &str) -> Option<String> {
    let mut words = text.split_whitespace();
    words.find(|w| *w == "(PostgreSQL)")?;
    let version = words.next()?;
    let parts: Vec<&str> = version
        .split(|c: char| !c.is_ascii_digit())
        .take_while(|p| !p.is_empty())
        .collect();
    let first: u32 = parts.first()?.parse().ok()?;
    Some(if first >= 10 {
        parts[0].to_string()
    } else {
        parts.get(..2)?.join(".")
    })
}

/// What we need from `postmaster.pid`: line 4 is the port, line 8 (since PostgreSQL 10) the
/// status ("starting", "ready", "stopping", …).
#[derive(Debug, PartialEq)]
struct PidFile<'a> {
    port: u16,
    status: Option<&'a str>,
}

fn parse_pid_file(text: &str) -> Option<PidFile<'_>> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let port = lines.get(3)?.parse().ok().filter(|p| *p != 0)?;
    let status = lines.get(7).copied().filter(|s| !s.is_empty());
    Some(PidFile { port, status })
}

/// A port nobody listens on right now (never 5432, which belongs to the system's server).
fn free_port() -> Result<u16> {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if port != 5432 {
            return Ok(port);
        }
    }
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn is_plain_identifier(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Single-quotes `s` for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// FNV-1a: tiny, and unlike std's hasher guaranteed to give the same value in every release.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The user's PG* variables (PGSSLMODE, PGSERVICE, PGOPTIONS, …) are meant for their own server
/// and could break connections to ours.
fn without_pg_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
}

/// Runs a command with its output captured, failing with its command line and stderr.
fn quiet(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said: Vec<&str> = [stdout.trim(), stderr.trim()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        bail!("{cmd:?} failed with {}: {}", out.status, said.join("\n"));
    }
    Ok(out)
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_port_and_status_from_postmaster_pid() {
        let text = "4242\n/x/data\n1700000000\n54321\n/x\n127.0.0.1\n  1234   5678\nready   \n";
        assert_eq!(
            parse_pid_file(text),
            Some(PidFile {
                port: 54321,
                status: Some("ready")
            })
        );
        assert_eq!(
            parse_pid_file("4242\n/x/data\n1700000000\n54321\n"),
            Some(PidFile {
                port: 54321,
                status: None
            })
        );
        assert_eq!(parse_pid_file("4242\n/x/data\n"), None);
    }

    #[test]
    fn reads_major_versions() {
        let v = major_version("pg_ctl (PostgreSQL) 15.6 (Debian 15.6-0+deb12u1)\n");
        assert_eq!(v.as_deref(), Some("15"));
        assert_eq!(
            major_version("pg_ctl (PostgreSQL) 17beta1").as_deref(),
            Some("17")
        );
        assert_eq!(
            major_version("pg_ctl (PostgreSQL) 9.6.24").as_deref(),
            Some("9.6")
        );
        assert_eq!(parse_version("9.6"), Some(vec![9, 6]));
        assert_eq!(parse_version("common"), None);
    }

    #[test]
    fn quotes_and_names() {
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
        assert!(is_plain_identifier("flotilla_test_1"));
        assert!(!is_plain_identifier("x'; drop"));
        assert!(!is_plain_identifier("Upper"));
        // The fallback folder's name must not change between Rust releases.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
