//! `orgstack dev`: a complete local system in one command.
//!
//! When `DATABASE_URL` / `REDIS_URL` are unset it starts a private
//! PostgreSQL and Redis from the installed binaries, with their data under
//! `.orgstack/dev/` (kept between runs; `--reset` wipes it), migrates,
//! creates a demo org, serves the API and metrics, prints where everything
//! is, and stops every child process on Ctrl-C.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use fred::prelude::ClientLike;
use secrecy::SecretString;
use tenancy::migrator::{self, MigrateOptions};
use tenancy::{Lineage, Slug};

use crate::config::Config;
use crate::local::{LocalPostgres, LocalRedis, PostgresOptions};

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Wipe the private servers' data before starting.
    #[arg(long)]
    pub reset: bool,
    /// Where the private servers keep their data.
    #[arg(long, default_value = ".orgstack/dev")]
    pub data_dir: PathBuf,
    /// Run no worker in this process (run `orgstack worker` beside it).
    #[arg(long)]
    pub no_worker: bool,
}

/// The servers `dev` uses: private ones it started, or the configured ones.
#[derive(Debug)]
pub struct DevServices {
    pub postgres: Option<LocalPostgres>,
    pub redis: Option<LocalRedis>,
    pub database_url: String,
    pub redis_url: String,
}

impl DevServices {
    /// Stops the private servers (also done on drop).
    pub fn stop(&mut self) {
        if let Some(pg) = self.postgres.as_mut() {
            pg.stop();
        }
        if let Some(redis) = self.redis.as_mut() {
            redis.stop();
        }
    }
}

const DEV_DATABASE: &str = "orgstack";

/// Uses the configured servers, or starts private ones under `dir` and
/// creates the `orgstack` database in the private PostgreSQL.
pub async fn start_services(config: &Config, dir: &Path) -> anyhow::Result<DevServices> {
    use secrecy::ExposeSecret;
    let (postgres, database_url) = match &config.database_url {
        Some(url) => (None, url.expose_secret().to_owned()),
        None => {
            let pg = LocalPostgres::start(&dir.join("postgres"), PostgresOptions { durable: true })
                .await
                .context("starting a private PostgreSQL (or set DATABASE_URL)")?;
            create_database_if_missing(&pg.url("postgres"), DEV_DATABASE).await?;
            let url = pg.url(DEV_DATABASE);
            (Some(pg), url)
        }
    };
    let (redis, redis_url) = match &config.redis_url {
        Some(url) => (None, url.expose_secret().to_owned()),
        None => {
            let redis = LocalRedis::start(&dir.join("redis"), true)
                .await
                .context("starting a private Redis (or set REDIS_URL)")?;
            let url = redis.url();
            (Some(redis), url)
        }
    };
    Ok(DevServices { postgres, redis, database_url, redis_url })
}

/// Creates database `name` through the admin URL unless it exists.
pub async fn create_database_if_missing(admin_url: &str, name: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn =
        sqlx::PgConnection::connect(admin_url).await.context("connecting to PostgreSQL")?;
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1)",
    )
    .bind(name)
    .fetch_one(&mut conn)
    .await?;
    if !exists {
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', ""));
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await?;
    }
    conn.close().await?;
    Ok(())
}

pub async fn run(mut config: Config, args: DevArgs) -> anyhow::Result<()> {
    if args.reset && args.data_dir.exists() {
        std::fs::remove_dir_all(&args.data_dir).with_context(|| {
            format!("removing {} (is another `orgstack dev` running?)", args.data_dir.display())
        })?;
        println!("wiped {}", args.data_dir.display());
    }
    let mut services = start_services(&config, &args.data_dir).await?;
    config.database_url = Some(SecretString::from(services.database_url.clone()));
    config.redis_url = Some(SecretString::from(services.redis_url.clone()));
    if config.storage.is_none() {
        config.storage =
            Some(crate::config::StorageConfig::Filesystem { dir: args.data_dir.join("files") });
    }
    let bind = config.bind_addr;
    let metrics = config.metrics_addr;
    let state_admin_email = config.default_admin_email.clone();
    let using_dev_password = {
        use secrecy::ExposeSecret;
        config
            .default_admin_password
            .as_ref()
            .is_some_and(|p| p.expose_secret() == crate::config::DEV_ADMIN_PASSWORD)
    };

    let state = crate::app::connect_now(config).await?;
    let report = migrator::migrate_all(
        &state.db,
        &Lineage::public(),
        &Lineage::org(),
        &MigrateOptions::default(),
    )
    .await
    .context("migrating")?;
    let demo = Slug::parse("demo").context("demo slug")?;
    let demo = match state.orgs.by_slug(&demo).await? {
        Some(org) => (*org).clone(),
        None => state.orgs.create("Demo", &demo).await?,
    };
    let admin = crate::app::ensure_default_admin(&state).await?;
    let worker_options = crate::jobs::worker::WorkerOptions {
        queues: match &state.config.worker_queues {
            Some(spec) => crate::jobs::worker::WorkerOptions::parse_queues(spec)
                .map_err(anyhow::Error::msg)?,
            None => state.jobs.registry().queues().into_iter().map(|q| (q, 1)).collect(),
        },
        concurrency: state.config.worker_concurrency,
        autoscale: None,
        shutdown_timeout: state.config.shutdown_timeout,
    };
    let worker_queues =
        worker_options.queues.iter().map(|(q, _)| q.to_string()).collect::<Vec<_>>().join(",");
    let listeners = crate::app::listen(&state).await?;
    let redis = state.redis.clone();
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on BIND_ADDR {bind} (in use? set BIND_ADDR)"))?;
    let metrics_listener = tokio::net::TcpListener::bind(metrics).await.with_context(|| {
        format!("cannot listen on METRICS_ADDR {metrics} (in use? set METRICS_ADDR)")
    })?;
    crate::telemetry::metrics_handle();

    let private = |yes: bool| {
        if yes { format!(" (private, data in {})", args.data_dir.display()) } else { String::new() }
    };
    println!();
    println!("Orgstack is running (development)");
    println!("  API         http://{bind}/api/v1");
    println!("  Health      http://{bind}/healthz   http://{bind}/readyz");
    println!("  Metrics     http://{metrics}/metrics");
    println!(
        "  PostgreSQL  {}{}",
        crate::app::redact_url(&services.database_url),
        private(services.postgres.is_some())
    );
    println!(
        "  Redis       {}{}",
        crate::app::redact_url(&services.redis_url),
        private(services.redis.is_some())
    );
    println!(
        "  Demo org    {} (schema {}, org lineage version {})",
        demo.slug,
        demo.schema(),
        demo.org_version
    );
    println!("  Migrations  {} orgs, {} migrated now", report.orgs_total, report.migrated.len());
    match (&admin, &state_admin_email) {
        (Some(email), _) if using_dev_password => {
            println!(
                "  Admin       {email} / {} (the development default)",
                crate::config::DEV_ADMIN_PASSWORD
            )
        }
        (Some(email), _) => {
            println!("  Admin       {email} (password from DEFAULT_ADMIN_PASSWORD)")
        }
        (None, Some(email)) => println!("  Admin       {email} (sign in: POST /api/v1/auth/login)"),
        (None, None) => {}
    }
    if args.no_worker {
        println!(
            "  Worker      none here (--no-worker: run `orgstack worker`); the scheduler runs here"
        );
    } else {
        println!(
            "  Worker      queues {} ({} at once), and the scheduler, in this process",
            worker_queues, worker_options.concurrency
        );
    }
    println!("Press Ctrl-C to stop.");
    println!();

    // A worker and the scheduler run beside the API until it stops.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let worker = (!args.no_worker).then(|| {
        tokio::spawn(
            crate::jobs::worker::Worker::new(state.jobs.clone(), worker_options)
                .run(stopped(stop_rx.clone())),
        )
    });
    let scheduler = tokio::spawn(
        crate::jobs::scheduler::Scheduler::new(state.jobs.clone(), Default::default())
            .run(stopped(stop_rx)),
    );
    let result =
        crate::http::serve(state, listener, Some(metrics_listener), crate::http::shutdown_signal())
            .await;
    let _ = stop_tx.send(true);
    if let Some(worker) = worker {
        match worker.await {
            Ok(Err(err)) => {
                tracing::warn!(error = format!("{err:#}"), "the worker stopped with an error")
            }
            Err(err) => tracing::warn!(error = %err, "the worker task failed"),
            Ok(Ok(_)) => {}
        }
    }
    if let Ok(Err(err)) = scheduler.await {
        tracing::warn!(error = format!("{err:#}"), "the scheduler stopped with an error");
    }
    listeners.stop().await;
    let _ = redis.quit().await;
    tokio::task::block_in_place(|| services.stop());
    println!("stopped");
    result
}
