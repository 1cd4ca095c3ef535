//! `orgstack worker`, `scheduler`, `jobs`, `queues` and `workers`.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::Value;
use tenancy::{Org, OrgStatus, Slug};
use uuid::Uuid;

use crate::accounts::Actor;
use crate::app;
use crate::config::Config;
use crate::jobs::worker::{Worker, WorkerOptions};
use crate::jobs::{JobFilter, JobStatus, Jobs, NewJob};
use crate::queue::QueueName;

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Queues to fetch from, `name[:weight]` comma-separated (default:
    /// WORKER_QUEUES, else every registered kind's queue).
    #[arg(long, short = 'Q')]
    pub queues: Option<String>,
    /// Jobs run at once (default: WORKER_CONCURRENCY, 10).
    #[arg(long, short = 'c', value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: Option<u32>,
    /// Grow to MAX slots while jobs wait, shrink to MIN when idle.
    #[arg(long, value_name = "MAX,MIN", value_parser = parse_autoscale)]
    pub autoscale: Option<(usize, usize)>,
    /// Seconds running jobs may take to finish after SIGTERM; the rest are
    /// stopped and handed back.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub shutdown_timeout: u64,
    /// Serve this worker's Prometheus metrics here (e.g. 127.0.0.1:9465).
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

fn parse_autoscale(raw: &str) -> Result<(usize, usize), String> {
    let (max, min) = raw.split_once(',').ok_or("expected MAX,MIN such as 10,2")?;
    let max: usize = max.trim().parse().map_err(|_| "MAX must be a whole number")?;
    let min: usize = min.trim().parse().map_err(|_| "MIN must be a whole number")?;
    if min == 0 || max < min || max > 10_000 {
        return Err("expected 1 <= MIN <= MAX <= 10000".into());
    }
    Ok((max, min))
}

impl WorkerArgs {
    /// The worker options these arguments and `config` give.
    pub fn options(&self, config: &Config, jobs: &Jobs) -> anyhow::Result<WorkerOptions> {
        let queues = match self.queues.as_deref().or(config.worker_queues.as_deref()) {
            Some(spec) => WorkerOptions::parse_queues(spec).map_err(anyhow::Error::msg)?,
            None => jobs.registry().queues().into_iter().map(|q| (q, 1)).collect(),
        };
        let concurrency = match (self.autoscale, self.concurrency) {
            (_, Some(n)) => n as usize,
            (Some((_, min)), None) => min,
            (None, None) => config.worker_concurrency,
        };
        Ok(WorkerOptions {
            queues,
            concurrency,
            autoscale: self.autoscale,
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout),
        })
    }
}

/// Resolves on the first SIGINT/SIGTERM; a second one exits at once.
fn graceful_then_hard() -> impl std::future::Future<Output = ()> + Send + 'static {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        crate::http::shutdown_signal().await;
        let _ = tx.send(());
        crate::http::shutdown_signal().await;
        eprintln!(
            "second signal: exiting now; unfinished jobs are delivered again after the visibility timeout"
        );
        std::process::exit(130);
    });
    async move {
        let _ = rx.await;
    }
}

pub async fn worker(config: Config, args: WorkerArgs) -> anyhow::Result<()> {
    let state = app::connect_now(config).await?;
    let options = args.options(&state.config, &state.jobs)?;
    let _listeners = app::listen(&state).await?;
    if let Some(addr) = args.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on --metrics-addr {addr}"))?;
        crate::telemetry::metrics_handle();
        let router = crate::http::metrics_router(state.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
    } else {
        crate::telemetry::metrics_handle();
    }
    let worker = Worker::new(state.jobs.clone(), options);
    let report = worker.run(graceful_then_hard()).await?;
    tracing::info!(
        processed = report.processed,
        failed = report.failed,
        handed_back = report.handed_back,
        "worker exited"
    );
    Ok(())
}

pub async fn scheduler(config: Config) -> anyhow::Result<()> {
    let state = app::connect_now(config).await?;
    let _listeners = app::listen(&state).await?;
    crate::telemetry::metrics_handle();
    let scheduler = crate::jobs::scheduler::Scheduler::new(state.jobs.clone(), Default::default());
    let report = scheduler.run(graceful_then_hard()).await?;
    tracing::info!(fired = report.fired, skipped = report.skipped, "scheduler exited");
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first (one org, or every active org).
    List {
        #[arg(long)]
        org: Option<Slug>,
        #[arg(long)]
        status: Option<JobStatus>,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Show one job (and its log with --logs).
    Show {
        org: Slug,
        id: Uuid,
        #[arg(long)]
        logs: bool,
        #[arg(long)]
        json: bool,
    },
    /// Enqueue a job of KIND in ORG.
    Enqueue {
        org: Slug,
        kind: String,
        /// The payload, as JSON.
        #[arg(long, default_value = "null")]
        payload: String,
        #[arg(long)]
        queue: Option<QueueName>,
        /// Run no sooner than this many seconds from now.
        #[arg(long)]
        delay: Option<u64>,
        #[arg(long)]
        unique_key: Option<String>,
        #[arg(long)]
        max_attempts: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    /// Run a dead, cancelled or retry-waiting job again now.
    Retry { org: Slug, id: Uuid },
    /// Cancel a queued or running job.
    Cancel { org: Slug, id: Uuid },
    /// Delete dead jobs (one org or every org; dry run unless --yes).
    PurgeDead {
        #[arg(long)]
        org: Option<Slug>,
        /// Only those dead for more than this many days.
        #[arg(long)]
        older_than_days: Option<u32>,
        #[arg(long)]
        yes: bool,
    },
    /// Run the recovery sweep now: dispatch again the accepted jobs Redis
    /// does not hold (after Redis lost data).
    Recover {
        /// Skip jobs changed in the last SECS seconds (being dispatched).
        #[arg(long, default_value_t = 10)]
        grace: u64,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct QueuesArgs {
    #[command(subcommand)]
    pub command: Option<QueuesCommand>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum QueuesCommand {
    /// Workers stop fetching from the queue.
    Pause { name: QueueName },
    /// Workers fetch from the queue again.
    Resume { name: QueueName },
}

async fn active_org(
    state: &crate::http::AppState,
    slug: &Slug,
) -> anyhow::Result<std::sync::Arc<Org>> {
    let org = state.orgs.get(slug).await?;
    anyhow::ensure!(org.status == OrgStatus::Active, "org '{slug}' is {}", org.status);
    Ok(org)
}

fn short(text: Option<&str>, max: usize) -> String {
    let text = text.unwrap_or("").lines().next().unwrap_or("");
    if text.chars().count() > max {
        format!("{}…", text.chars().take(max - 1).collect::<String>())
    } else {
        text.to_owned()
    }
}

pub async fn jobs(out: &mut impl Write, config: Config, cmd: JobsCommand) -> anyhow::Result<()> {
    let state = app::connect_now(config).await?;
    let jobs = &state.jobs;
    match cmd {
        JobsCommand::List { org, status, kind, limit, json } => {
            let orgs: Vec<Org> = match &org {
                Some(slug) => vec![(*active_org(&state, slug).await?).clone()],
                None => state
                    .orgs
                    .list()
                    .await?
                    .into_iter()
                    .filter(|o| o.status == OrgStatus::Active)
                    .collect(),
            };
            let filter = JobFilter { status, kind };
            let mut rows = Vec::new();
            for org in &orgs {
                for job in jobs.list(org, &filter, None, limit).await? {
                    rows.push((org.slug.to_string(), job));
                }
            }
            rows.sort_by_key(|row| std::cmp::Reverse(row.1.id));
            rows.truncate(limit as usize);
            if json {
                let items: Vec<Value> = rows
                    .iter()
                    .map(|(org, job)| {
                        let mut v = serde_json::to_value(job).unwrap_or(Value::Null);
                        v["org"] = Value::String(org.clone());
                        v
                    })
                    .collect();
                serde_json::to_writer_pretty(&mut *out, &items)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "{:<36}  {:<20} {:<24} {:<10} {:<9} {:>8}  {:<20}  ERROR",
                    "ID", "ORG", "KIND", "QUEUE", "STATUS", "ATTEMPTS", "CREATED"
                )?;
                for (org, job) in &rows {
                    writeln!(
                        out,
                        "{:<36}  {:<20} {:<24} {:<10} {:<9} {:>8}  {:<20}  {}",
                        job.id,
                        org,
                        job.kind,
                        job.queue,
                        job.status,
                        format!("{}/{}", job.attempts, job.max_attempts),
                        job.created_at.format("%Y-%m-%d %H:%M:%S"),
                        short(job.error.as_deref(), 60)
                    )?;
                }
            }
        }
        JobsCommand::Show { org, id, logs, json } => {
            let org = active_org(&state, &org).await?;
            let job = jobs.get(&org, id).await?;
            let lines = if logs { jobs.logs(&org, id, None, 10_000).await? } else { Vec::new() };
            if json {
                let mut v = serde_json::to_value(&job)?;
                if logs {
                    v["logs"] = serde_json::to_value(&lines)?;
                }
                serde_json::to_writer_pretty(&mut *out, &v)?;
                writeln!(out)?;
            } else {
                writeln!(out, "id:           {}", job.id)?;
                writeln!(out, "org:          {}", org.slug)?;
                writeln!(out, "kind:         {}", job.kind)?;
                writeln!(out, "queue:        {}", job.queue)?;
                writeln!(out, "status:       {}", job.status)?;
                writeln!(out, "attempts:     {} of {}", job.attempts, job.max_attempts)?;
                writeln!(out, "run at:       {}", job.run_at.to_rfc3339())?;
                writeln!(
                    out,
                    "created:      {} by {}",
                    job.created_at.to_rfc3339(),
                    job.created_by
                )?;
                if let Some(at) = job.started_at {
                    writeln!(out, "started:      {}", at.to_rfc3339())?;
                }
                if let Some(at) = job.finished_at {
                    writeln!(out, "finished:     {}", at.to_rfc3339())?;
                }
                if let Some(worker) = &job.worker_id {
                    writeln!(out, "worker:       {worker}")?;
                }
                if let Some(key) = &job.unique_key {
                    writeln!(out, "unique key:   {key}")?;
                }
                writeln!(out, "payload:      {}", job.payload)?;
                if let Some(result) = &job.result {
                    writeln!(out, "result:       {result}")?;
                }
                if let Some(error) = &job.error {
                    writeln!(out, "error:        {error}")?;
                }
                for line in &lines {
                    writeln!(
                        out,
                        "[{} #{} {}] {:<5} {}",
                        line.at.format("%H:%M:%S%.3f"),
                        line.attempt,
                        line.line_no,
                        line.level,
                        line.line
                    )?;
                }
            }
        }
        JobsCommand::Enqueue {
            org,
            kind,
            payload,
            queue,
            delay,
            unique_key,
            max_attempts,
            json,
        } => {
            let org = active_org(&state, &org).await?;
            let payload: Value =
                serde_json::from_str(&payload).context("--payload is not valid JSON")?;
            let run_at = delay.map(|s| {
                chrono::Utc::now() + chrono::Duration::seconds(s.min(10 * 365 * 86_400) as i64)
            });
            let done = jobs
                .enqueue(
                    &org,
                    &Actor::Cli,
                    NewJob { kind, payload, queue, run_at, unique_key, max_attempts },
                )
                .await?;
            if json {
                serde_json::to_writer_pretty(&mut *out, &done.job)?;
                writeln!(out)?;
            } else if done.created {
                writeln!(
                    out,
                    "enqueued {} ({}) on queue {}",
                    done.job.id, done.job.kind, done.job.queue
                )?;
            } else {
                writeln!(
                    out,
                    "an unfinished job holds that unique key: {} ({})",
                    done.job.id, done.job.status
                )?;
            }
        }
        JobsCommand::Retry { org, id } => {
            let org = active_org(&state, &org).await?;
            let job = jobs.retry(&org, &Actor::Cli, id).await?;
            writeln!(
                out,
                "job {} queued again ({} of {} attempts used)",
                job.id, job.attempts, job.max_attempts
            )?;
        }
        JobsCommand::Cancel { org, id } => {
            let org = active_org(&state, &org).await?;
            let job = jobs.cancel(&org, &Actor::Cli, id).await?;
            if job.status == JobStatus::Cancelled {
                writeln!(out, "job {} cancelled", job.id)?;
            } else {
                writeln!(out, "job {} is running: its worker was told to stop it", job.id)?;
            }
        }
        JobsCommand::PurgeDead { org, older_than_days, yes } => {
            let orgs: Vec<Org> = match &org {
                Some(slug) => vec![(*active_org(&state, slug).await?).clone()],
                None => state
                    .orgs
                    .list()
                    .await?
                    .into_iter()
                    .filter(|o| o.status != OrgStatus::Deleted)
                    .collect(),
            };
            let older = older_than_days.map(|d| Duration::from_secs(u64::from(d) * 86_400));
            let mut total = 0;
            for org in &orgs {
                let n = jobs.purge_dead(org, &Actor::Cli, older, !yes).await?;
                if n > 0 {
                    writeln!(
                        out,
                        "{}: {} dead job(s){}",
                        org.slug,
                        n,
                        if yes { " deleted" } else { "" }
                    )?;
                }
                total += n;
            }
            if yes {
                writeln!(out, "deleted {total} dead job(s)")?;
            } else {
                writeln!(
                    out,
                    "dry run: would delete {total} dead job(s); rerun with --yes to do it"
                )?;
            }
        }
        JobsCommand::Recover { grace } => {
            let report =
                crate::jobs::sweep::recover(jobs, Duration::from_secs(grace), true).await?;
            writeln!(
                out,
                "swept {} orgs, {} unfinished jobs: {} dispatched again, {} orphans of lost workers requeued, {} dead jobs re-indexed",
                report.orgs,
                report.checked,
                report.redispatched,
                report.orphans,
                report.dead_indexed
            )?;
            anyhow::ensure!(
                report.failed_orgs == 0,
                "{} org(s) could not be swept",
                report.failed_orgs
            );
        }
    }
    Ok(())
}

pub async fn queues(out: &mut impl Write, config: Config, args: QueuesArgs) -> anyhow::Result<()> {
    let state = app::connect_now(config).await?;
    if let Some(command) = args.command {
        let (name, pause) = match command {
            QueuesCommand::Pause { name } => (name, true),
            QueuesCommand::Resume { name } => (name, false),
        };
        let queue = state.jobs.queue(&name).await?;
        if pause {
            queue.pause().await?;
            writeln!(out, "queue {name} paused: workers stop fetching from it")?;
        } else {
            queue.resume().await?;
            writeln!(out, "queue {name} resumed")?;
        }
        return Ok(());
    }
    let stats = state.jobs.queue_stats().await?;
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &stats)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<24} {:>10} {:>10} {:>10} {:>8} {:>12}  STATE",
        "QUEUE", "DEPTH", "IN FLIGHT", "SCHEDULED", "DEAD", "OLDEST (s)"
    )?;
    for q in &stats {
        writeln!(
            out,
            "{:<24} {:>10} {:>10} {:>10} {:>8} {:>12.1}  {}",
            q.name,
            q.depth,
            q.in_flight,
            q.scheduled,
            q.dead,
            q.oldest_age_secs,
            if q.paused { "paused" } else { "active" }
        )?;
    }
    Ok(())
}

pub async fn workers(out: &mut impl Write, config: Config, json: bool) -> anyhow::Result<()> {
    let state = app::connect_now(config).await?;
    let workers = crate::jobs::worker::list_workers(&state.jobs).await?;
    if json {
        serde_json::to_writer_pretty(&mut *out, &workers)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<40} {:>8} {:<24} {:>6} {:>9} {:>10} {:>8}  {:<20}  STATE",
        "WORKER", "PID", "QUEUES", "SLOTS", "IN FLIGHT", "PROCESSED", "FAILED", "LAST BEAT"
    )?;
    for w in &workers {
        writeln!(
            out,
            "{:<40} {:>8} {:<24} {:>6} {:>9} {:>10} {:>8}  {:<20}  {}{}",
            w.id,
            w.pid,
            w.queues.join(","),
            w.concurrency,
            w.in_flight,
            w.processed,
            w.failed,
            w.last_beat.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default(),
            w.state,
            if w.stale { " (stale)" } else { "" }
        )?;
    }
    writeln!(
        out,
        "{} worker(s), {} live",
        workers.len(),
        workers.iter().filter(|w| !w.stale).count()
    )?;
    Ok(())
}
