//! Background jobs benchmark: enqueue and drain rates of platform (Redis
//! only) and org (recorded in PostgreSQL) no-op jobs through one worker,
//! the drain rate from a small and a large backlog, and enqueue-to-start
//! latency at a steady 1,000 jobs/s.
//!
//! Run: `cargo bench -p orgstack-tests --bench jobs [-- --jobs N --big N
//! --concurrency C --skip-big | --only-platform | --only-org-drain |
//! --only-org-single |
//! --only-latency]`. Uses `DATABASE_URL`/`REDIS_URL` when set
//! (a fresh database and key prefix), otherwise starts a private, durable
//! (fsync on) PostgreSQL and a Redis in a temporary folder.
//!
//! The worker runs in this process (one worker process), with PostgreSQL
//! and Redis on the same machine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::FutureExt;
use futures::future::BoxFuture;
use orgstack::accounts::Actor;
use orgstack::jobs::handler::{Handler, JobContext, JobResult};
use orgstack::jobs::worker::{Worker, WorkerOptions};
use orgstack::jobs::{Jobs, JobsConfig, NewJob, Registry};
use orgstack::local::{LocalPostgres, LocalRedis, PostgresOptions};
use orgstack::queue::QueueName;
use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tenancy::{Lineage, Org, OrgRegistry, RedisKeys, Slug};
use uuid::Uuid;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Records when each job's handler started (for latency).
#[derive(Debug, Default, Clone)]
struct Stamp(Arc<Mutex<HashMap<Uuid, Instant>>>);

/// A no-op that notes when the first run of a drain started.
#[derive(Debug, Default, Clone)]
struct First(Arc<Mutex<Option<Instant>>>);

impl Handler for First {
    fn kind(&self) -> &'static str {
        "bench.noop"
    }

    fn run<'a>(&'a self, _ctx: &'a JobContext) -> BoxFuture<'a, JobResult> {
        let mut first = self.0.lock().expect("first");
        if first.is_none() {
            *first = Some(Instant::now());
        }
        futures::future::ready(Ok(Value::Null)).boxed()
    }
}

impl Handler for Stamp {
    fn kind(&self) -> &'static str {
        "bench.stamp"
    }

    fn run<'a>(&'a self, ctx: &'a JobContext) -> BoxFuture<'a, JobResult> {
        let now = Instant::now();
        self.0.lock().expect("stamps").insert(ctx.id, now);
        futures::future::ready(Ok(Value::Null)).boxed()
    }
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
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

    let result = run(url.as_str(), &redis_url, &args).await;

    sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE \"{db}\" WITH (FORCE)")))
        .execute(&mut admin)
        .await?;
    result
}

struct Bench {
    jobs: Jobs,
    /// The org org jobs go to (each phase takes a fresh one, so no phase
    /// inherits another's dead rows and vacuum debt).
    org: Mutex<Org>,
    stamps: Stamp,
    first: First,
    concurrency: usize,
    redis: fred::clients::Client,
    keys: RedisKeys,
}

async fn run(database_url: &str, redis_url: &str, args: &[String]) -> anyhow::Result<()> {
    let n = arg(args, "--jobs", 200_000);
    let big = arg(args, "--big", 1_000_000);
    let concurrency = arg(args, "--concurrency", 256);
    let settings = tenancy::db::PoolSettings { max_connections: 10, ..Default::default() };
    let pool = tenancy::db::connect(database_url, &settings).await?;
    let redis = orgstack::redis::connect(redis_url, Duration::from_secs(5)).await?;
    tenancy::migrator::migrate_public(&pool, &Lineage::public(), Duration::from_secs(10)).await?;
    let keys = RedisKeys::new(format!("bench-{}", std::process::id()));
    let orgs = OrgRegistry::new(pool.clone(), redis.clone(), keys.clone(), Lineage::org());
    let org = orgs.create("Bench", &Slug::parse("bench")?).await?;
    let stamps = Stamp::default();
    let files = tempfile::tempdir()?;
    let storage =
        orgstack::storage::Storage::from_config(&orgstack::config::StorageConfig::Filesystem {
            dir: files.path().to_owned(),
        })?;
    let mailer = orgstack::email::Mailer::from_config(
        &orgstack::config::Config::from_lookup(|_| None)?,
        redis.clone(),
        keys.clone(),
    )?;
    let mut registry = Registry::standard(&orgstack::jobs::handler::HandlerDeps {
        storage,
        mailer,
        recipients: Default::default(),
        webhook_allow_private: false,
    });
    registry.register(stamps.clone());
    let first = First::default();
    registry.register(first.clone());
    let jobs =
        Jobs::new(pool.clone(), redis.clone(), keys.clone(), orgs, registry, JobsConfig::default());
    let pg_version: String = sqlx::query_scalar("SHOW server_version").fetch_one(&pool).await?;
    let fsync: String = sqlx::query_scalar("SHOW fsync").fetch_one(&pool).await?;
    let sync: String = sqlx::query_scalar("SHOW synchronous_commit").fetch_one(&pool).await?;
    println!(
        "PostgreSQL {pg_version} (fsync={fsync}, synchronous_commit={sync}); one worker, concurrency {concurrency}; {n} jobs per run"
    );
    let bench = Bench { jobs, org: Mutex::new(org), stamps, first, concurrency, redis, keys };
    if args.iter().any(|a| a == "--only-latency") {
        for kind in ["org", "platform"] {
            let (p50, p99, max) = latency(&bench, kind, 1000, Duration::from_secs(10)).await?;
            println!(
                "{kind} enqueue-to-start at 1,000 jobs/s: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms"
            );
        }
        return Ok(());
    }
    if args.iter().any(|a| a == "--only-org-single") {
        let mut rates = Vec::new();
        for _ in 0..3 {
            rates.push(org_enqueue_single(&bench, 64, Duration::from_secs(5)).await?);
            drain(&bench, 0).await?;
        }
        println!(
            "org enqueue, one job per call, 64 callers, median of 3 runs of 5 s: {:.0} jobs/s",
            median(&mut rates)
        );
        return Ok(());
    }
    if args.iter().any(|a| a == "--only-org-drain") {
        fill(&bench, "org", n).await?;
        println!("filled; draining");
        let rate = drain(&bench, n).await?;
        println!("org drain of {n}: {rate:.0} jobs/s");
        return Ok(());
    }

    if args.iter().any(|a| a == "--only-platform") {
        let (mut enq, mut dr) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            enq.push(platform_enqueue(&bench, n).await?);
            dr.push(drain(&bench, n).await?);
        }
        println!(
            "platform, median of 3 runs of {n}: enqueue (batches of 1,000) {:.0} jobs/s, drain {:.0} jobs/s",
            median(&mut enq),
            median(&mut dr)
        );
        return Ok(());
    }

    // Platform no-op jobs (Redis only).
    let rate = platform_enqueue(&bench, n).await?;
    println!("platform enqueue, batches of 1,000: {rate:.0} jobs/s");
    let rate = drain(&bench, n).await?;
    println!("platform drain of {n}: {rate:.0} jobs/s");

    // Org no-op jobs, recorded in the org schema.
    let rate = org_enqueue_batches(&bench, n).await?;
    println!("org enqueue, batches of 1,000: {rate:.0} jobs/s");
    let rate = drain(&bench, n).await?;
    println!("org drain of {n}: {rate:.0} jobs/s");
    let rate = org_enqueue_single(&bench, 64, Duration::from_secs(5)).await?;
    println!("org enqueue, one job per call, 64 callers: {rate:.0} jobs/s");
    drain(&bench, 0).await?;

    // Drain rate against the size of the backlog.
    for kind in ["platform", "org"] {
        bench.fresh_org("backlog-small").await.ok();
        let mut small = Vec::new();
        for _ in 0..15 {
            fill(&bench, kind, 1000).await?;
            small.push(drain(&bench, 1000).await?);
        }
        println!(
            "{kind} drain from a backlog of 1,000: median {:.0} jobs/s over 15 runs",
            median(&mut small)
        );
        if !args.iter().any(|a| a == "--skip-big") {
            bench.fresh_org(&format!("backlog-large-{kind}")).await?;
            let started = Instant::now();
            fill(&bench, kind, big).await?;
            let filled = started.elapsed();
            let rate = drain(&bench, big).await?;
            println!(
                "{kind} drain from a backlog of {big}: {rate:.0} jobs/s ({:.0}% of the 1,000 figure; filled in {:.1} s)",
                100.0 * rate / median(&mut small),
                filled.as_secs_f64()
            );
        }
    }

    // Enqueue-to-start latency at a steady 1,000 jobs/s.
    bench.fresh_org("latency").await?;
    for kind in ["org", "platform"] {
        let (p50, p99, max) = latency(&bench, kind, 1000, Duration::from_secs(10)).await?;
        println!(
            "{kind} enqueue-to-start at 1,000 jobs/s for 10 s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            p50, p99, max
        );
    }
    Ok(())
}

impl Bench {
    fn org(&self) -> Org {
        self.org.lock().expect("org").clone()
    }

    /// Org jobs go to a new org from now on.
    async fn fresh_org(&self, slug: &str) -> anyhow::Result<()> {
        let org = self.jobs.orgs().create(slug, &Slug::parse(slug)?).await?;
        *self.org.lock().expect("org") = org;
        Ok(())
    }
}

async fn platform_enqueue(bench: &Bench, n: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    fill(bench, "platform", n).await?;
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

async fn org_enqueue_batches(bench: &Bench, n: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    fill(bench, "org", n).await?;
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Enqueues `n` no-op jobs of `kind` (platform or org) in batches of 1,000.
async fn fill(bench: &Bench, kind: &str, n: usize) -> anyhow::Result<()> {
    let mut left = n;
    while left > 0 {
        let size = left.min(1000);
        if kind == "platform" {
            bench.jobs.enqueue_platform_batch("bench.noop", vec![Value::Null; size]).await?;
        } else {
            let batch: Vec<NewJob> =
                (0..size).map(|_| NewJob::new("bench.noop", Value::Null)).collect();
            let org = bench.org();
            bench.jobs.enqueue_batch(&org, &Actor::System, batch).await?;
        }
        left -= size;
    }
    Ok(())
}

/// One job per call from `callers` concurrent tasks for `time`.
async fn org_enqueue_single(bench: &Bench, callers: usize, time: Duration) -> anyhow::Result<f64> {
    let deadline = Instant::now() + time;
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let jobs = bench.jobs.clone();
            let org = bench.org();
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    jobs.enqueue(&org, &Actor::System, NewJob::new("noop", Value::Null)).await?;
                    done += 1;
                }
                Ok::<u64, anyhow::Error>(done)
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Starts one worker on a backlog of `n` and measures from the first run
/// to the moment the stream is empty (every entry acknowledged, which for
/// org jobs comes after their records are written); the worker's start-up
/// is not counted. Polls only `XLEN`, which costs Redis next to nothing.
async fn drain(bench: &Bench, n: usize) -> anyhow::Result<f64> {
    use fred::interfaces::StreamsInterface;
    *bench.first.0.lock().expect("first") = None;
    let stream = bench.keys.queue_stream("default");
    let worker = Worker::new(
        bench.jobs.clone(),
        WorkerOptions {
            queues: vec![(QueueName::default_queue(), 1)],
            concurrency: bench.concurrency,
            autoscale: None,
            shutdown_timeout: Duration::from_secs(30),
        },
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    let verbose = std::env::var("BENCH_PROGRESS").is_ok();
    let mut last_report = (Instant::now(), n as u64);
    let end = loop {
        let left: u64 = bench.redis.xlen(&stream).await?;
        if left == 0 {
            break Instant::now();
        }
        if verbose && last_report.0.elapsed() >= Duration::from_secs(5) {
            let rate = (last_report.1 - left) as f64 / last_report.0.elapsed().as_secs_f64();
            println!("  {left} left, {rate:.0} jobs/s over the last 5 s");
            last_report = (Instant::now(), left);
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    };
    let _ = stop.send(());
    task.await??;
    let first = bench.first.0.lock().expect("first").unwrap_or(end);
    Ok(n as f64 / (end - first).as_secs_f64().max(1e-6))
}

/// Enqueues `rate` jobs per second for `time` while a worker runs; returns
/// p50, p99 and max of the time from calling enqueue to the handler's
/// start, in ms.
async fn latency(
    bench: &Bench,
    kind: &str,
    rate: u64,
    time: Duration,
) -> anyhow::Result<(f64, f64, f64)> {
    let worker = Worker::new(
        bench.jobs.clone(),
        WorkerOptions {
            queues: vec![(QueueName::default_queue(), 1)],
            concurrency: 16,
            autoscale: None,
            shutdown_timeout: Duration::from_secs(30),
        },
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent: Arc<Mutex<HashMap<Uuid, (Instant, Instant)>>> = Arc::default();
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = Instant::now() + time;
    let mut producers = Vec::new();
    while Instant::now() < deadline {
        ticker.tick().await;
        let jobs = bench.jobs.clone();
        let org = bench.org();
        let sent = sent.clone();
        let platform = kind == "platform";
        producers.push(tokio::spawn(async move {
            let at = Instant::now();
            let id = if platform {
                jobs.enqueue_platform(NewJob::new("bench.stamp", Value::Null)).await?
            } else {
                jobs.enqueue(&org, &Actor::System, NewJob::new("bench.stamp", Value::Null))
                    .await?
                    .job
                    .id
            };
            sent.lock().expect("sent").insert(id, (at, Instant::now()));
            Ok::<(), anyhow::Error>(())
        }));
    }
    for p in producers {
        p.await??;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop.send(());
    task.await??;
    let sent = sent.lock().expect("sent");
    let stamps = bench.stamps.0.lock().expect("stamps");
    let mut ms: Vec<f64> = sent
        .iter()
        .filter_map(|(id, (at, _))| {
            stamps.get(id).map(|s| s.duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    anyhow::ensure!(ms.len() == sent.len(), "{} of {} jobs started", ms.len(), sent.len());
    ms.sort_by(f64::total_cmp);
    let mut call: Vec<f64> =
        sent.values().map(|(at, back)| back.duration_since(*at).as_secs_f64() * 1000.0).collect();
    call.sort_by(f64::total_cmp);
    println!(
        "  ({kind}: the enqueue call itself: p50 {:.2} ms, p99 {:.2} ms)",
        percentile(&call, 0.5),
        percentile(&call, 0.99)
    );
    Ok((percentile(&ms, 0.5), percentile(&ms, 0.99), ms.last().copied().unwrap_or(0.0)))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    percentile(values, 0.5)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
