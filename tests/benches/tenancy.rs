//! Tenancy benchmark: provisioning 1,000 orgs one after another, a no-op
//! `migrate` over them, and `migrate --jobs 4` when each is one migration
//! behind.
//!
//! Run: `cargo bench -p orgstack-tests --bench tenancy` (add `-- --orgs N`
//! for another count). Uses `DATABASE_URL`/`REDIS_URL` when set (a fresh
//! database is created and dropped), otherwise starts a private, durable
//! (fsync on) PostgreSQL and a Redis in a temporary folder.

use std::time::{Duration, Instant};

use anyhow::Context;
use orgstack::local::{LocalPostgres, LocalRedis, PostgresOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tenancy::migrator::{self, MigrateOptions};
use tenancy::{Lineage, OrgRegistry, RedisKeys, Slug};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let orgs: usize = args
        .iter()
        .position(|a| a == "--orgs")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);

    let scratch = tempfile::tempdir()?;
    std::fs::set_permissions(scratch.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let (_pg, admin_url) = match std::env::var("DATABASE_URL").ok().filter(|s| !s.is_empty()) {
        Some(url) => (None, url),
        None => {
            let pg =
                LocalPostgres::start(&scratch.path().join("pg"), PostgresOptions { durable: true })
                    .await?;
            let url = pg.url("postgres");
            (Some(pg), url)
        }
    };
    let (_redis, redis_url) = match std::env::var("REDIS_URL").ok().filter(|s| !s.is_empty()) {
        Some(url) => (None, url),
        None => {
            let redis = LocalRedis::start(&scratch.path().join("redis"), false).await?;
            let url = redis.url();
            (Some(redis), url)
        }
    };
    let db = format!("orgstack_bench_{}", std::process::id());
    let mut admin = PgConnection::connect(&admin_url).await.context("admin connection")?;
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{db}\""))).execute(&mut admin).await?;
    let mut url = url::Url::parse(&admin_url)?;
    url.set_path(&format!("/{db}"));

    let result = run(url.as_str(), &redis_url, orgs).await;

    sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE \"{db}\" WITH (FORCE)")))
        .execute(&mut admin)
        .await?;
    result
}

async fn run(database_url: &str, redis_url: &str, orgs: usize) -> anyhow::Result<()> {
    let settings = tenancy::db::PoolSettings { max_connections: 8, ..Default::default() };
    let pool = tenancy::db::connect(database_url, &settings).await?;
    let redis = orgstack::redis::connect(redis_url, Duration::from_secs(5)).await?;
    migrator::migrate_public(&pool, &Lineage::public(), Duration::from_secs(10)).await?;
    let registry = OrgRegistry::new(pool.clone(), redis, RedisKeys::new("bench"), Lineage::org());
    let pg_version: String = sqlx::query_scalar("SHOW server_version").fetch_one(&pool).await?;
    let fsync: String = sqlx::query_scalar("SHOW fsync").fetch_one(&pool).await?;
    println!("PostgreSQL {pg_version} (fsync={fsync}), {orgs} orgs");

    // 1. Provisioning, one org after another.
    let mut ms = Vec::with_capacity(orgs);
    for i in 0..orgs {
        let slug = Slug::parse(&format!("bench-{i:05}"))?;
        let started = Instant::now();
        registry.create(&format!("Bench {i}"), &slug).await?;
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let window = (orgs / 10).max(1);
    let first = median(&ms[..window]);
    let last = median(&ms[orgs - window..]);
    println!(
        "provision: median {:.2} ms, p99 {:.2} ms, first {window} median {first:.2} ms, last {window} median {last:.2} ms (last/first {:.2}x)",
        median(&ms),
        percentile(&ms, 0.99),
        last / first
    );

    // 2. migrate with nothing to do.
    let options = MigrateOptions { jobs: 4, lock_timeout: Duration::from_secs(10) };
    let mut noop = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let report =
            migrator::migrate_all(&pool, &Lineage::public(), &Lineage::org(), &options).await?;
        noop.push(started.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(
            report.migrated.is_empty() && report.orgs_current == orgs as i64,
            "expected a no-op"
        );
    }
    println!("migrate (all {orgs} current): median of 5 runs {:.1} ms", median(&noop));

    // 3. every org one migration behind, --jobs 4.
    let behind = Lineage::org().extended(&[(
        "V900__bench_notes.sql",
        "CREATE TABLE bench_notes (id uuid PRIMARY KEY, body text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());\n\
         CREATE INDEX bench_notes_created_at_idx ON bench_notes (created_at);",
    )])?;
    let started = Instant::now();
    let report = migrator::migrate_all(&pool, &Lineage::public(), &behind, &options).await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        report.migrated.len() == orgs && report.failed.is_empty(),
        "expected every org migrated"
    );
    println!(
        "migrate --jobs 4 ({orgs} orgs one migration behind): {:.2} s ({:.2} ms per org)",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / orgs as f64
    );
    Ok(())
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

fn median(values: &[f64]) -> f64 {
    percentile(values, 0.5)
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let v = sorted(values);
    let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[idx.min(v.len() - 1)]
}
