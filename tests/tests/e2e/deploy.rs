//! Deployment: replicas that start at once on one fresh database, and the configuration
//! reference (`docs/configuration.md`) against the binary's real command line.

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_server::app;
use flotilla_server::db::MIGRATOR;
use sqlx::Connection;

use crate::helpers::{TestDb, artifact_dir, local_config};

/// Each replica migrates at start-up; sqlx holds a PostgreSQL advisory lock while it does, so
/// the second waits for the first and then finds nothing left to apply. Without the lock both
/// would create the same schemas and tables, and one would fail to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_starting_at_once_migrate_a_fresh_database_once() {
    let db = TestDb::create().await;
    let (a, b) = tokio::join!(
        app::start(local_config(&db, "-a", 0, &[], Default::default())),
        app::start(local_config(&db, "-b", 0, &[], Default::default())),
    );
    let a = a.expect("the first replica starts");
    let b = b.expect("the second replica starts");

    for server in [&a, &b] {
        let health = reqwest::Client::new()
            .get(format!("http://{}/healthz", server.addr))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("GET /healthz");
        assert!(health.status().is_success(), "{}", health.status());
    }

    let mut conn = sqlx::PgConnection::connect(&db.url)
        .await
        .expect("connecting to the test database");
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("select version, success from _sqlx_migrations order by version")
            .fetch_all(&mut conn)
            .await
            .expect("reading the applied migrations");
    let expected: Vec<(i64, bool)> = MIGRATOR
        .iter()
        .map(|migration| (migration.version, true))
        .collect();
    assert_eq!(applied, expected);
    conn.close().await.expect("closing the connection");

    b.shutdown().await;
    a.shutdown().await;
    for suffix in ["-a", "-b"] {
        let _ = std::fs::remove_dir_all(artifact_dir(&db, suffix));
    }
    db.drop_database().await;
}

/// One row of a flag table in `docs/configuration.md`: its environment and default cells.
#[derive(Debug, PartialEq)]
struct DocumentedFlag {
    env: Option<String>,
    default: String,
}

/// The flag tables of `docs/configuration.md`, by section: `flotilla serve` → `--listen` → …
/// A section starts at a `## \`flotilla CMD\`` heading; a row's first cell is `` `--flag` ``.
fn documented_flags(doc: &str) -> BTreeMap<String, BTreeMap<String, DocumentedFlag>> {
    let mut sections: BTreeMap<String, BTreeMap<String, DocumentedFlag>> = BTreeMap::new();
    let mut section = None;
    for line in doc.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            section = heading
                .strip_prefix("`flotilla ")
                .and_then(|rest| rest.strip_suffix('`'))
                .map(str::to_owned);
            continue;
        }
        let (Some(section), Some(row)) = (&section, line.strip_prefix('|')) else {
            continue;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let [flag, env, default, ..] = cells.as_slice() else {
            continue;
        };
        let Some(flag) = flag.strip_prefix("`--").and_then(|f| f.strip_suffix('`')) else {
            continue;
        };
        let env = env
            .strip_prefix('`')
            .and_then(|e| e.strip_suffix('`'))
            .map(str::to_owned);
        sections.entry(section.clone()).or_default().insert(
            flag.to_owned(),
            DocumentedFlag {
                env,
                default: (*default).to_owned(),
            },
        );
    }
    sections
}

/// Every flag of every `flotilla` subcommand is in `docs/configuration.md`, in its
/// subcommand's section, with its environment variable and its default; and the document
/// names no flag the binary lacks.
#[test]
fn the_configuration_reference_documents_every_flag() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ))
    .expect("reading docs/configuration.md");
    let mut documented = documented_flags(&doc);
    let mut problems = Vec::new();
    let mut commands = Vec::new();
    leaf_commands(&flotilla_server::cli::command(), "", &mut commands);
    for (name, sub) in &commands {
        let name = name.as_str();
        let mut rows = documented.remove(name).unwrap_or_default();
        for arg in sub.get_arguments() {
            let Some(long) = arg.get_long() else {
                continue;
            };
            if matches!(long, "help" | "version") {
                continue;
            }
            let Some(row) = rows.remove(long) else {
                problems.push(format!("`flotilla {name}`: --{long} is not documented"));
                continue;
            };
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            if row.env != env {
                problems.push(format!(
                    "`flotilla {name}` --{long}: the document says environment {:?}, the binary {env:?}",
                    row.env
                ));
            }
            for default in arg.get_default_values() {
                let default = format!("`{}`", default.to_string_lossy());
                if !row.default.contains(&default) {
                    problems.push(format!(
                        "`flotilla {name}` --{long}: the default is {default}, the document says {:?}",
                        row.default
                    ));
                }
            }
        }
        for stale in rows.keys() {
            problems.push(format!(
                "`flotilla {name}`: --{stale} is documented but does not exist"
            ));
        }
    }
    for stale in documented.keys() {
        problems.push(format!(
            "`flotilla {stale}` is documented but is no subcommand"
        ));
    }
    assert!(
        problems.is_empty(),
        "docs/configuration.md:\n{}",
        problems.join("\n")
    );
}

/// The subcommands that take flags, nested ones by their full name (`keys generate`); a
/// group of subcommands (`keys`) has no flags of its own.
fn leaf_commands(command: &clap::Command, prefix: &str, out: &mut Vec<(String, clap::Command)>) {
    for sub in command.get_subcommands() {
        let name = format!("{prefix}{}", sub.get_name());
        if sub.has_subcommands() {
            leaf_commands(sub, &format!("{name} "), out);
        } else {
            out.push((name, sub.clone()));
        }
    }
}

#[test]
fn flag_rows_are_read_by_section() {
    let doc = "## `flotilla serve`\n\n| flag | environment | default | meaning |\n|---|---|---|---|\n\
               | `--listen` | `FLOTILLA_LISTEN` | `127.0.0.1:8080` | where |\n\
               ## Other\n| `--ignored` | | | |\n## `flotilla simulate`\n| `--devices` | | `100` | how many |\n";
    let flags = documented_flags(doc);
    assert_eq!(
        flags["serve"]["listen"],
        DocumentedFlag {
            env: Some("FLOTILLA_LISTEN".into()),
            default: "`127.0.0.1:8080`".into()
        }
    );
    assert_eq!(flags["simulate"]["devices"].env, None);
    assert_eq!(flags.len(), 2);
}
