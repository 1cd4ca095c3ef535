//! Logging and metrics setup.
//!
//! Logs go to stderr as text or JSON (`LOG_FORMAT`), filtered by `RUST_LOG`
//! (default `info,refinery_core=warn,sqlx::postgres::notice=warn`); `DEBUG_SQL` turns on `sqlx::query=info`. Metrics use the
//! `metrics` facade with a Prometheus recorder installed once per process.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{Config, LogFormat};

/// Installs the global tracing subscriber. Call once, from `main`.
pub fn init_tracing(config: &Config) {
    let mut filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,refinery_core=warn,sqlx::postgres::notice=warn"));
    if config.debug_sql
        && let Ok(directive) = "sqlx::query=info".parse()
    {
        filter = filter.add_directive(directive);
    }
    let registry = tracing_subscriber::registry().with(filter);
    let result = match config.log_format {
        LogFormat::Text => {
            registry.with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)).try_init()
        }
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    if let Err(err) = result {
        eprintln!("warning: logging was already set up: {err}");
    }
}

/// Latency buckets (seconds) for every `_seconds` histogram.
const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
        }
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            })
            .ok();
        describe();
        handle
    })
}

fn describe() {
    metrics::describe_counter!(
        "orgstack_http_requests_total",
        "HTTP requests by method, matched route and status"
    );
    metrics::describe_histogram!(
        "orgstack_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency by method, matched route and status"
    );
    metrics::describe_gauge!(
        "orgstack_db_pool_connections",
        "PostgreSQL pool connections by state (idle, in_use)"
    );
    metrics::describe_gauge!(
        "orgstack_db_pool_max_connections",
        "PostgreSQL pool size limit (DB_POOL_SIZE)"
    );
    metrics::describe_gauge!("orgstack_orgs", "Orgs by status");
    metrics::describe_counter!("orgstack_jobs_enqueued_total", "Jobs enqueued, by queue and kind");
    metrics::describe_counter!(
        "orgstack_jobs_started_total",
        "Job runs started, by queue and kind"
    );
    metrics::describe_counter!(
        "orgstack_jobs_finished_total",
        "Job runs ended, by queue, kind and outcome (succeeded, retried, dead, cancelled, interrupted)"
    );
    metrics::describe_counter!("orgstack_jobs_retried_total", "Failed runs that will be retried");
    metrics::describe_counter!("orgstack_jobs_dead_total", "Jobs that ran out of attempts");
    metrics::describe_counter!(
        "orgstack_jobs_reclaimed_total",
        "Queue entries taken over from a lost worker after the visibility timeout"
    );
    metrics::describe_histogram!(
        "orgstack_job_duration_seconds",
        metrics::Unit::Seconds,
        "Job run time by queue and kind"
    );
    metrics::describe_counter!("orgstack_schedules_fired_total", "Org schedule ticks fired");
    metrics::describe_gauge!("orgstack_queue_depth", "Entries waiting in a queue");
    metrics::describe_gauge!(
        "orgstack_queue_in_flight",
        "Entries fetched and not yet acknowledged"
    );
    metrics::describe_gauge!(
        "orgstack_queue_scheduled",
        "Delayed entries and retries waiting for their time"
    );
    metrics::describe_gauge!("orgstack_queue_dead", "Dead jobs of a queue");
    metrics::describe_gauge!(
        "orgstack_queue_oldest_age_seconds",
        "Age of the oldest entry waiting in a queue"
    );
    metrics::describe_gauge!("orgstack_queue_paused", "1 while a queue is paused");
    metrics::describe_gauge!("orgstack_workers", "Workers by state (live, stale) from heartbeats");
    metrics::describe_gauge!("orgstack_workers_in_flight", "Jobs running on live workers");
    metrics::describe_gauge!("orgstack_worker_concurrency", "Slots of this worker process");
    metrics::describe_gauge!("orgstack_worker_in_flight", "Jobs running in this worker process");
}
