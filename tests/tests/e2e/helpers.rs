//! Test fixtures: a fresh database per test and a running server.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use flotilla_api::Role;
use flotilla_server::app::{self, IotMode, RunningServer, ServeConfig};
use flotilla_server::auth::{AuthConfig, AuthMode};
use sqlx::Connection;

/// A database of its own for one test, created on the server named by `DATABASE_URL`.
pub struct TestDb {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> Self {
        let admin_url = std::env::var("DATABASE_URL")
            .expect("DATABASE_URL must name a PostgreSQL server; `cargo xtask ci` provides one");
        Self::create_on(&admin_url).await
    }

    /// A database of its own on the server `admin_url` names (a superuser's URL).
    pub async fn create_on(admin_url: &str) -> Self {
        let admin_url = admin_url.to_owned();
        let name = format!("flotilla_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("connecting to DATABASE_URL");
        sqlx::query(&format!("create database {name}"))
            .execute(&mut conn)
            .await
            .expect("creating the test database");
        let url = with_database(&admin_url, &name);
        Self {
            admin_url,
            name,
            url,
        }
    }

    /// Drops the database (tests call it at the end; a failed test leaves it for inspection).
    pub async fn drop_database(self) {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(&format!(
                "drop database if exists {} with (force)",
                self.name
            ))
            .execute(&mut conn)
            .await;
        }
    }
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// A local-mode server on `db`, every listener on an ephemeral loopback port, its artifacts
/// in a temporary folder named after the database and `suffix`.
pub fn local_config(
    db: &TestDb,
    suffix: &str,
    devices: usize,
    things: &[&str],
    rollouts: flotilla_server::rollouts::RolloutSettings,
) -> ServeConfig {
    let loopback = "127.0.0.1:0".parse().expect("address");
    let signing_key = signing_key_path(db, suffix);
    if !signing_key.exists() {
        flotilla_server::signing::generate_key_file(&signing_key).expect("writing a signing key");
    }
    ServeConfig {
        database_url: db.url.clone(),
        listen: loopback,
        iot: IotMode::Local {
            mqtt_listen: loopback,
            mqtts_listen: Some(loopback),
            engine_listen: loopback,
            s3_listen: loopback,
            artifact_dir: artifact_dir(db, suffix),
            simulate: devices,
            register: things.iter().map(|t| (*t).to_owned()).collect(),
            device_token_secret: None,
        },
        region: "us-east-1".into(),
        static_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../static"),
        reconcile_every: Duration::from_millis(500),
        reconcile_budget: 50.0,
        artifacts: flotilla_server::artifacts::ArtifactConfig {
            signing_key: Some(signing_key),
            ..Default::default()
        },
        rollouts,
        auth: Default::default(),
    }
}

/// The groups of [`proxy_auth`] and the role each gives.
pub const ROLE_GROUPS: [(&str, Role); 4] = [
    ("flotilla-viewers", Role::Viewer),
    ("flotilla-technicians", Role::Technician),
    ("flotilla-operators", Role::Operator),
    ("flotilla-admins", Role::Admin),
];

/// Authentication as behind oauth2-proxy: identity headers are believed from loopback, and
/// each of [`ROLE_GROUPS`] gives its role. AWS mode refuses development sign-in, so its
/// tests use this.
pub fn proxy_auth() -> AuthConfig {
    AuthConfig {
        mode: AuthMode::Proxy,
        trusted_proxies: vec![
            "127.0.0.1".parse().expect("an address"),
            "::1".parse().expect("an address"),
        ],
        group_roles: ROLE_GROUPS
            .iter()
            .map(|(group, role)| ((*group).to_owned(), *role))
            .collect(),
        ..Default::default()
    }
}

/// A client whose every request carries oauth2-proxy's identity headers for `user` in
/// `groups` (comma-separated).
pub fn proxy_client(user: &str, groups: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-forwarded-user", user.parse().expect("a header value"));
    headers.insert(
        "x-forwarded-email",
        format!("{user}@example.com")
            .parse()
            .expect("a header value"),
    );
    headers.insert(
        "x-forwarded-groups",
        groups.parse().expect("a header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("an HTTP client")
}

/// A client that is an admin on a [`proxy_auth`] server; a development server ignores the
/// headers and makes it its admin anyway.
pub fn admin_client() -> reqwest::Client {
    proxy_client("test-admin", "flotilla-admins")
}

/// A running server in local mode with a simulated fleet, and an HTTP client for it.
pub struct TestApp {
    pub server: RunningServer,
    pub db: TestDb,
    pub http: reqwest::Client,
    pub base: String,
}

impl TestApp {
    pub async fn start(devices: usize) -> Self {
        Self::start_with(devices, &[]).await
    }

    /// Starts with `devices` simulated devices and `things` registered (no agent for them).
    pub async fn start_with(devices: usize, things: &[&str]) -> Self {
        Self::start_with_rollouts(devices, things, Default::default()).await
    }

    /// Like [`Self::start_with`], with the rollout orchestrator's tick and clock given.
    pub async fn start_with_rollouts(
        devices: usize,
        things: &[&str],
        rollouts: flotilla_server::rollouts::RolloutSettings,
    ) -> Self {
        let db = TestDb::create().await;
        let server = app::start(local_config(&db, "", devices, things, rollouts))
            .await
            .expect("starting the server");
        let base = format!("http://{}", server.addr);
        Self {
            server,
            db,
            http: reqwest::Client::new(),
            base,
        }
    }

    /// The app of a server started by the test itself on `db`, with a plain HTTP client.
    pub fn from_parts(server: RunningServer, db: TestDb) -> Self {
        let base = format!("http://{}", server.addr);
        Self {
            server,
            db,
            http: reqwest::Client::new(),
            base,
        }
    }

    /// A server with `things` registered, no devices, and `auth` for its authentication; its
    /// [`Self::http`] is an admin's [`admin_client`].
    pub async fn start_with_auth(things: &[&str], auth: AuthConfig) -> Self {
        Self::start_configured(things, |config| config.auth = auth).await
    }

    /// A server with `things` registered and no devices, its configuration changed by
    /// `configure` before it starts; its [`Self::http`] is an [`admin_client`].
    pub async fn start_configured(
        things: &[&str],
        configure: impl FnOnce(&mut ServeConfig),
    ) -> Self {
        let db = TestDb::create().await;
        let mut config = local_config(&db, "", 0, things, Default::default());
        configure(&mut config);
        let server = app::start(config).await.expect("starting the server");
        let base = format!("http://{}", server.addr);
        Self {
            server,
            db,
            http: admin_client(),
            base,
        }
    }

    /// A second server (a replica) on this one's database, with its own engine and no devices.
    pub async fn start_replica(
        &self,
        rollouts: flotilla_server::rollouts::RolloutSettings,
    ) -> RunningServer {
        app::start(local_config(&self.db, "-replica", 0, &[], rollouts))
            .await
            .expect("starting the replica")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET /api/v1/jobs/{job_id}`; `None` until the job exists (for use in [`eventually`]).
    pub async fn job(&self, job_id: &str) -> Option<flotilla_api::JobDetail> {
        let response = self
            .http
            .get(self.url(&format!("/api/v1/jobs/{job_id}")))
            .send()
            .await
            .ok()?;
        response.error_for_status().ok()?.json().await.ok()
    }

    /// Where the test's artifact store keeps its files.
    pub fn artifact_dir(&self) -> PathBuf {
        artifact_dir(&self.db, "")
    }

    pub async fn stop(self) {
        self.server.shutdown().await;
        let _ = std::fs::remove_file(signing_key_path(&self.db, ""));
        let _ = std::fs::remove_dir_all(artifact_dir(&self.db, ""));
        self.db.drop_database().await;
    }
}

/// The artifact folder of a test server on `db` (`suffix` tells replicas apart).
pub fn artifact_dir(db: &TestDb, suffix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("flotilla-test-artifacts-{}{suffix}", db.name))
}

/// The test server's code-signing key file.
fn signing_key_path(db: &TestDb, suffix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("flotilla-test-signing-{}{suffix}.pem", db.name))
}

/// `flotilla serve` as a child process (`CARGO_BIN_EXE_flotilla-test-server`) on
/// `database_url` with `args` and `env` added, and the dashboard's base URL once it runs. The
/// child dies with its handle; its stdout is drained so it never blocks on a full pipe.
pub async fn serve_process(
    database_url: &str,
    args: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
) -> (tokio::process::Child, String) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla-test-server"));
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn");
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting flotilla serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let base = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix("Flotilla is running at ") {
                return rest.trim_end_matches('/').to_owned();
            }
        }
        panic!("flotilla serve exited before it was running");
    })
    .await
    .expect("flotilla serve started in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, base)
}

/// The value of one line of `{base}/metrics`, by its name and labels (`None` while the server
/// does not answer).
pub async fn metric(base: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
}

/// Polls `check` until it returns `Some`, failing the test after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn database_name_is_replaced() {
    assert_eq!(
        with_database("postgres://u@h:1/postgres", "x"),
        "postgres://u@h:1/x"
    );
    assert_eq!(
        with_database("postgres://u@h:1/db?host=/tmp", "x"),
        "postgres://u@h:1/x?host=/tmp"
    );
    assert_eq!(with_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
}

/// A minimal HTTP/1.1 file server on loopback: `GET /{name}` answers the file's bytes, anything
/// else 404. One request per connection. It stops when the returned handle is aborted or the
/// test's runtime ends.
pub async fn serve_files(
    files: Vec<(&'static str, Vec<u8>)>,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the file server");
    let addr = listener.local_addr().expect("file server address");
    let files = std::sync::Arc::new(files);
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let files = files.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let request = String::from_utf8_lossy(&request);
                let mut words = request.split_whitespace();
                let found = match (words.next(), words.next()) {
                    (Some("GET"), Some(path)) => files
                        .iter()
                        .find(|(name, _)| path.strip_prefix('/') == Some(*name))
                        .map(|(_, body)| body.as_slice()),
                    _ => None,
                };
                let (status, body) = match found {
                    Some(body) => ("200 OK", body),
                    None => ("404 Not Found", b"not found".as_slice()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/octet-stream\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, task)
}

/// The Python interpreter with the AWS IoT Device SDKs that runs the programs in
/// `tests/devices/`. Fails the test when it is not set: a device test that skips proves nothing.
pub fn device_python() -> PathBuf {
    match std::env::var_os("FLOTILLA_TEST_PYTHON") {
        Some(python) if !python.is_empty() => PathBuf::from(python),
        _ => panic!(
            "FLOTILLA_TEST_PYTHON is not set. It names the Python with the AWS IoT Device SDKs \
             that runs the device programs in tests/devices/; run the tests via `cargo xtask ci`, \
             which creates that Python and sets it (or set it to that Python yourself)."
        ),
    }
}

/// A device program from `tests/devices/`, running under [`device_python`] against the test
/// server's MQTT broker. Its stdin is a pipe held open (the programs wait on it to quit); every
/// line it prints is echoed to the test's output, which the test harness shows on failure.
pub struct DeviceProgram {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    stdout: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl DeviceProgram {
    /// Starts `tests/devices/{script}` with `FLOTILLA_MQTT_HOST`/`FLOTILLA_MQTT_PORT` naming
    /// the broker (plain TCP, no certificates).
    pub fn spawn(app: &TestApp, script: &str) -> Self {
        let mqtt = app.server.mqtt_addr.expect("local mode has an MQTT broker");
        Self::spawn_at(mqtt, script, &[])
    }

    /// Starts `tests/devices/{script}` against the broker listener at `mqtt`, with `env` added
    /// to its environment (e.g. `FLOTILLA_ROOT_CA`, `FLOTILLA_PRIVATE_KEY` and
    /// `FLOTILLA_CERTIFICATE` for mutual TLS).
    pub fn spawn_at(mqtt: std::net::SocketAddr, script: &str, env: &[(&str, String)]) -> Self {
        use std::process::Stdio;
        use tokio::io::{AsyncBufReadExt, BufReader};

        let devices = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("devices");
        let python = device_python();
        let mut command = tokio::process::Command::new(&python);
        command
            .arg(devices.join(script))
            .current_dir(&devices)
            .env("FLOTILLA_MQTT_HOST", mqtt.ip().to_string())
            .env("FLOTILLA_MQTT_PORT", mqtt.port().to_string())
            .env_remove("FLOTILLA_ROOT_CA")
            .env_remove("FLOTILLA_PRIVATE_KEY")
            .env_remove("FLOTILLA_CERTIFICATE");
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} {script}: {e}", python.display()));
        let stdin = child.stdin.take();
        let (tx, stdout) = tokio::sync::mpsc::unbounded_channel();
        let mut out = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        let name = script.to_owned();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                eprintln!("{name}: {line}");
                let _ = tx.send(line);
            }
        });
        let mut err = BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
        let name = script.to_owned();
        tokio::spawn(async move {
            while let Ok(Some(line)) = err.next_line().await {
                eprintln!("{name} (stderr): {line}");
            }
        });
        Self {
            child,
            stdin,
            stdout,
        }
    }

    /// Waits until the program prints a line containing `line`, failing the test if it exits or
    /// `timeout` passes first. (Containing, because a prompt printed without a newline, like
    /// `input("…")`'s, shares its line with whatever is printed next.)
    pub async fn wait_for_line(&mut self, line: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.stdout.recv()).await {
                Ok(Some(printed)) if printed.contains(line) => return,
                Ok(Some(_)) => {}
                Ok(None) => {
                    let status = self.child.wait().await;
                    panic!("the device program exited ({status:?}) before printing {line:?}");
                }
                Err(_) => panic!("the device program did not print {line:?} within {timeout:?}"),
            }
        }
    }

    /// Writes `input` to the program's stdin.
    pub async fn type_line(&mut self, input: &str) {
        use tokio::io::AsyncWriteExt;
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin
            .write_all(format!("{input}\n").as_bytes())
            .await
            .expect("writing to the device program's stdin");
        stdin.flush().await.expect("flushing stdin");
    }

    /// Kills the program (if it still runs) and reaps it.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
        drop(self.stdin.take());
    }
}

/// A real OpenID provider, `oidc-provider-mock` from the tests' Python virtualenv, on an
/// ephemeral loopback port. It signs users in without a password: a POST of `sub=USER` to its
/// authorization URL. The process dies with this handle.
pub struct OpenIdProvider {
    _child: tokio::process::Child,
    /// Its issuer URL, `http://127.0.0.1:PORT`.
    pub issuer: String,
}

impl OpenIdProvider {
    /// Starts the provider with `users`, each a JSON object of claims with a `sub`.
    pub async fn start(users: &[serde_json::Value]) -> Self {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let mut command = tokio::process::Command::new(device_python());
        command.args([
            "-m",
            "oidc_provider_mock",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ]);
        for user in users {
            command.arg("--user-claims").arg(user.to_string());
        }
        let mut child = command
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting oidc-provider-mock (is it in FLOTILLA_TEST_PYTHON's virtualenv?)");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let issuer = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("Uvicorn running on ").nth(1) {
                    return rest
                        .split_whitespace()
                        .next()
                        .expect("a URL")
                        .trim_end_matches('/')
                        .to_owned();
                }
            }
            panic!("oidc-provider-mock exited before it was listening");
        })
        .await
        .expect("oidc-provider-mock started in time");
        // Its log must keep draining, or it blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            _child: child,
            issuer,
        }
    }
}

/// A loopback address with a port free right now, for a server that must know its own URL
/// before it starts (an OpenID redirect URL).
pub fn free_loopback_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
}
