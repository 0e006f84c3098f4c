//! Test fixtures: a fresh database per test and a running server.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use flotilla_server::app::{self, IotMode, RunningServer, ServeConfig};
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

/// A running server in local mode with a simulated fleet, and an HTTP client for it.
pub struct TestApp {
    pub server: RunningServer,
    pub db: TestDb,
    pub http: reqwest::Client,
    pub base: String,
}

impl TestApp {
    pub async fn start(devices: usize) -> Self {
        let db = TestDb::create().await;
        let loopback = "127.0.0.1:0".parse().expect("address");
        let server = app::start(ServeConfig {
            database_url: db.url.clone(),
            listen: loopback,
            iot: IotMode::Local {
                mqtt_listen: loopback,
                engine_listen: loopback,
                simulate: devices,
            },
            region: "us-east-1".into(),
            static_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../static"),
            reconcile_every: Duration::from_millis(500),
        })
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

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn stop(self) {
        self.server.shutdown().await;
        self.db.drop_database().await;
    }
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
