//! `cargo xtask bench artifacts`: a 1 GiB artifact through the artifact store, against a
//! plain file copy on the same disk in the same run.
//!
//! 1. Plain copy: `std::fs::copy` of the 1 GiB file to another file in the same folder.
//! 2. Upload: the server's presigned part URLs, each part `PUT` by an HTTP client as a browser
//!    would (two parts at a time), then `complete`, in which the server reads the object back
//!    through SHA-256 and signs it; both timed, separately and together.
//! 3. Download: `GET /api/v1/artifacts/{id}/download`, following the redirect to the presigned
//!    URL, streamed to a file.
//!
//! The store's folder, the source file and the copies are in one folder (`FLOTILLA_BENCH_DIR`,
//! else the temporary directory), so all of them use the same disk. Prints a Markdown report;
//! with `FLOTILLA_BENCH_OUT` set, also writes it there.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use flotilla_api::artifacts::{Artifact, Upload};
use flotilla_server::app::{self, ServeConfig};
use futures::StreamExt as _;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::Connection;
use tokio::io::AsyncWriteExt;

const SIZE: u64 = 1024 * 1024 * 1024;

fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64()
}

/// Writes `SIZE` bytes of varied content and returns their SHA-256.
fn write_source(path: &Path) -> Result<String> {
    use std::io::Write as _;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1024 * 1024];
    for i in 0..SIZE / block.len() as u64 {
        for (j, byte) in block.iter_mut().enumerate() {
            *byte = (j as u64 ^ i.wrapping_mul(2654435761)) as u8;
        }
        hasher.update(&block);
        file.write_all(&block)?;
    }
    file.into_inner()?.sync_all()?;
    Ok(hex::encode(hasher.finalize()))
}

/// Flushes dirty pages, so that one phase's writes are not charged to the next.
fn settle() {
    let _ = std::process::Command::new("sync").status();
}

async fn upload(
    http: &reqwest::Client,
    base: &str,
    source: &Path,
    sha256: &str,
) -> Result<(Artifact, Duration, Duration)> {
    let created = http
        .post(format!("{base}/api/v1/artifacts/uploads"))
        .json(&json!({ "name": "bench.img", "version": "1.0", "size": SIZE }))
        .send()
        .await?
        .error_for_status()?
        .json::<Upload>()
        .await?;
    let started = Instant::now();
    let puts = futures::stream::iter(created.parts.iter().map(|part| {
        let http = http.clone();
        let source = source.to_owned();
        let part = part.clone();
        async move {
            let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
                use std::io::{Read as _, Seek as _};
                let mut file = std::fs::File::open(source)?;
                file.seek(std::io::SeekFrom::Start(part.offset))?;
                let mut bytes = vec![0u8; part.size as usize];
                file.read_exact(&mut bytes)?;
                Ok(bytes)
            })
            .await??;
            http.put(&part.url)
                .body(bytes)
                .send()
                .await?
                .error_for_status()?;
            anyhow::Ok(())
        }
    }))
    .buffer_unordered(2)
    .collect::<Vec<_>>()
    .await;
    for put in puts {
        put.context("uploading a part")?;
    }
    let parts_done = started.elapsed();
    let completing = Instant::now();
    let artifact = http
        .post(format!(
            "{base}/api/v1/artifacts/uploads/{}/complete",
            created.id
        ))
        .json(&json!({ "sha256": sha256 }))
        .send()
        .await?
        .error_for_status()?
        .json::<Artifact>()
        .await?;
    Ok((artifact, parts_done, completing.elapsed()))
}

async fn download(http: &reqwest::Client, base: &str, id: &str, target: &Path) -> Result<u64> {
    let mut response = http
        .get(format!("{base}/api/v1/artifacts/{id}/download"))
        .send()
        .await?
        .error_for_status()?;
    let mut file = tokio::fs::File::create(target).await?;
    let mut written = 0u64;
    while let Some(chunk) = response.chunk().await? {
        written += chunk.len() as u64;
        file.write_all(&chunk).await?;
    }
    file.sync_all().await?;
    Ok(written)
}

#[tokio::main]
async fn main() -> Result<()> {
    let admin_url = std::env::var("DATABASE_URL").context("DATABASE_URL must name PostgreSQL")?;
    let name = format!("flotilla_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
    sqlx::query(&format!("create database {name}"))
        .execute(&mut admin)
        .await?;
    let url = match admin_url.rsplit_once('/') {
        Some((base, _)) if !base.ends_with('/') => format!("{base}/{name}"),
        _ => bail!("DATABASE_URL must end with a database name"),
    };
    let dir = std::env::var_os("FLOTILLA_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("flotilla-bench-artifacts-{name}"));
    std::fs::create_dir_all(&dir)?;
    let key = dir.join("signing.pem");
    flotilla_server::signing::generate_key_file(&key)?;

    eprintln!("bench: writing a 1 GiB file…");
    let source = dir.join("source.img");
    let sha256 = write_source(&source)?;

    settle();
    let started = Instant::now();
    std::fs::copy(&source, dir.join("copy.img"))?;
    std::fs::File::open(dir.join("copy.img"))?.sync_all()?;
    let copy = started.elapsed();
    std::fs::remove_file(dir.join("copy.img"))?;

    let server = app::start(ServeConfig {
        artifacts: flotilla_server::artifacts::ArtifactConfig {
            signing_key: Some(key),
            ..Default::default()
        },
        ..flotilla_tests::bench_local_config(&url, dir.join("store"), 0)
    })
    .await?;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();

    eprintln!("bench: uploading through presigned parts…");
    settle();
    let (artifact, parts, complete) = upload(&http, &base, &source, &sha256).await?;
    eprintln!("bench: downloading through the presigned URL…");
    settle();
    let started = Instant::now();
    let downloaded = download(&http, &base, &artifact.id, &dir.join("download.img")).await?;
    let download_time = started.elapsed();
    if downloaded != SIZE {
        bail!("downloaded {downloaded} bytes of {SIZE}");
    }
    server.shutdown().await;

    let copy_rate = mib_per_s(SIZE, copy);
    let parts_rate = mib_per_s(SIZE, parts);
    let upload_rate = mib_per_s(SIZE, parts + complete);
    let download_rate = mib_per_s(SIZE, download_time);
    let mut report = String::new();
    report.push_str(
        "| 1 GiB artifact | time | throughput | ratio to the plain copy |\n|---|---|---|---|\n",
    );
    for (what, time, rate) in [
        ("plain file copy (`std::fs::copy` + fsync)", copy, copy_rate),
        (
            "upload: parts PUT to presigned URLs (2 at a time)",
            parts,
            parts_rate,
        ),
        (
            "upload: complete (SHA-256 read-back, signing)",
            complete,
            mib_per_s(SIZE, complete),
        ),
        ("upload, parts and complete", parts + complete, upload_rate),
        (
            "download through the presigned URL (+ fsync)",
            download_time,
            download_rate,
        ),
    ] {
        report.push_str(&format!(
            "| {what} | {:.2} s | {rate:.0} MiB/s | {:.2} |\n",
            time.as_secs_f64(),
            rate / copy_rate
        ));
    }
    println!("{report}");
    if let Some(out) = std::env::var_os("FLOTILLA_BENCH_OUT") {
        std::fs::write(&out, &report).with_context(|| format!("writing {out:?}"))?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = sqlx::query(&format!("drop database if exists {name} with (force)"))
        .execute(&mut admin)
        .await;
    Ok(())
}
