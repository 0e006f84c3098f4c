//! `cargo xtask bench fleet`: device search in the inventory projection at 100,000 devices,
//! on a fresh database of the PostgreSQL named by `DATABASE_URL`.
//!
//! The fleet: 100,000 devices, each with a `site` attribute (one of 200) and a `hw` attribute
//! (one of 4), in one site group below a country group below a region group (so each device
//! row holds three groups), 60 % online (of every site), five installed versions, a last job
//! outcome for most; the columns vary independently of each other. Searches go through the server's own search ([`flotilla_server::api::devices`]), the
//! statement the API runs, with a first page of 50; p50/p99 over 300 searches with random
//! values each:
//!
//! 1. attribute + group + connectivity (`attr.site=…&group={country}&connectivity=online`);
//! 2. version + last job outcome + group;
//! 3. name prefix + connectivity + attribute;
//! 4. the same three filters as 1, paging to the fifth page by `after`.
//!
//! Prints a Markdown report; with `FLOTILLA_BENCH_OUT` set, also writes it there.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use flotilla_server::api::devices::{DeviceSearch, search};
use sqlx::Connection;

const DEVICES: i64 = 100_000;
const SAMPLES: usize = 300;

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: i64) -> i64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as i64
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Site `n`'s country and region: 200 sites in 20 countries in 4 regions.
fn site(n: i64) -> (String, String, String) {
    (
        format!("site-{n:03}"),
        format!("country-{:02}", n % 20),
        format!("region-{}", n % 4),
    )
}

async fn seed(pool: &sqlx::PgPool) -> Result<()> {
    sqlx::query(
        "insert into server.devices (thing_name, thing_type_name, attributes, groups, connected,
             last_seen_at, installed_version, agent_version, version_reported_at,
             last_job_id, last_job_status, last_job_at)
         select 'dev-' || lpad(n::text, 6, '0'), 'gateway',
                jsonb_build_object('site', 'site-' || lpad((n % 200)::text, 3, '0'),
                                   'hw', 'rev-' || (n % 4)),
                array['country-' || lpad((n % 200 % 20)::text, 2, '0'),
                      'region-' || (n % 200 % 4),
                      'site-' || lpad((n % 200)::text, 3, '0')],
                (n / 200) % 10 < 6, now() - (n % 1000) * interval '1 minute',
                (array['1.0.0','1.1.0','2.0.0','2.0.1','2.1.0'])[1 + (n * 31) % 5], '0.1.0', now(),
                case when n % 10 = 0 then null else 'job-' || (n % 17) end,
                case when n % 10 = 0 then null
                     else (array['SUCCEEDED','SUCCEEDED','SUCCEEDED','FAILED','TIMED_OUT'])[1 + (n / 7) % 5] end,
                case when n % 10 = 0 then null else now() end
         from generate_series(1, $1) as n",
    )
    .bind(DEVICES)
    .execute(pool)
    .await
    .context("seeding the devices")?;
    sqlx::query("analyze server.devices").execute(pool).await?;
    Ok(())
}

/// p50/p99 of `SAMPLES` searches made by `make`, and the average page size.
async fn measure(
    pool: &sqlx::PgPool,
    mut make: impl FnMut(&mut Rng) -> (DeviceSearch, usize),
) -> Result<(Duration, Duration, f64)> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut samples = Vec::with_capacity(SAMPLES);
    let mut found = 0usize;
    for _ in 0..SAMPLES {
        let (mut query, pages) = make(&mut rng);
        let started = Instant::now();
        for _ in 0..pages {
            let (devices, next) = search(pool, &query).await?;
            found += devices.len();
            match next {
                Some(after) => query.after = Some(after),
                None => break,
            }
        }
        samples.push(started.elapsed());
    }
    Ok((
        percentile(&mut samples, 0.5),
        percentile(&mut samples, 0.99),
        found as f64 / SAMPLES as f64,
    ))
}

fn base() -> DeviceSearch {
    DeviceSearch {
        limit: 50,
        ..DeviceSearch::default()
    }
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
    let pool = flotilla_server::db::connect_and_migrate(&url, 4).await?;
    eprintln!("bench: seeding {DEVICES} devices…");
    seed(&pool).await?;

    let mut rows = Vec::new();
    eprintln!("bench: searches…");
    let three = |rng: &mut Rng| {
        let (site, country, _) = site(rng.below(200));
        let mut query = base();
        query.attributes.insert("site".into(), site);
        query.group = Some(country);
        query.connected = Some(true);
        query
    };
    rows.push((
        "attribute + group + online (`attr.site`, `group` = its country, `connectivity=online`)",
        measure(&pool, |rng| (three(rng), 1)).await?,
    ));
    rows.push((
        "version + last job outcome + group (a region)",
        measure(&pool, |rng| {
            let (_, _, region) = site(rng.below(200));
            let mut query = base();
            query.version = Some(["1.0.0", "2.0.0", "2.1.0"][rng.below(3) as usize].into());
            query.last_job = Some("FAILED".into());
            query.group = Some(region);
            (query, 1)
        })
        .await?,
    ));
    rows.push((
        "name prefix + online + attribute (`hw`)",
        measure(&pool, |rng| {
            let mut query = base();
            query.name = Some(format!("dev-0{}", rng.below(10)));
            query.connected = Some(true);
            query
                .attributes
                .insert("hw".into(), format!("rev-{}", rng.below(4)));
            (query, 1)
        })
        .await?,
    ));
    rows.push((
        "attribute + group + online, pages 1-5 by `after` (total)",
        measure(&pool, |rng| (three(rng), 5)).await?,
    ));

    let mut report = String::new();
    report.push_str(&format!(
        "{DEVICES} devices; {SAMPLES} searches per row with random values, pages of 50.\n\n"
    ));
    report.push_str(
        "| search (three filters) | p50 | p99 | devices returned (mean) | target |\n|---|---|---|---|---|\n",
    );
    for (name, (p50, p99, found)) in &rows {
        report.push_str(&format!(
            "| {name} | {} | {} | {found:.1} | p99 < 50 ms |\n",
            ms(*p50),
            ms(*p99)
        ));
    }
    println!("{report}");
    if let Some(out) = std::env::var_os("FLOTILLA_BENCH_OUT") {
        std::fs::write(&out, &report).with_context(|| format!("writing {out:?}"))?;
    }
    pool.close().await;
    let _ = sqlx::query(&format!("drop database if exists {name} with (force)"))
        .execute(&mut admin)
        .await;
    Ok(())
}
