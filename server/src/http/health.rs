//! `/healthz` (the process is alive), `/readyz` (PostgreSQL and Redis
//! answer) and the Prometheus `/metrics` page.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use fred::prelude::ClientLike;
use serde_json::json;

use super::AppState;
use crate::error::ApiError;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "The process is alive", body = Object)))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 when both PostgreSQL and Redis answer within two seconds; otherwise
/// 503 problem+json naming the ones that did not.
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, description = "PostgreSQL and Redis answer", body = Object), (status = 503, description = "Names what did not answer", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let (postgres, redis) = tokio::join!(check_postgres(&state), check_redis(&state));
    let mut failed = Vec::new();
    if let Err(why) = &postgres {
        failed.push(format!("postgres: {why}"));
    }
    if let Err(why) = &redis {
        failed.push(format!("redis: {why}"));
    }
    if failed.is_empty() {
        Json(json!({ "status": "ready", "postgres": "ok", "redis": "ok" })).into_response()
    } else {
        ApiError::unavailable("not_ready", format!("not ready: {}", failed.join("; ")))
            .into_response()
    }
}

async fn check_postgres(state: &AppState) -> Result<(), String> {
    let ping = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.db);
    match tokio::time::timeout(CHECK_TIMEOUT, ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(short(&err.to_string())),
        Err(_) => Err("no answer within 2s".into()),
    }
}

async fn check_redis(state: &AppState) -> Result<(), String> {
    if !state.redis.is_connected() {
        return Err("not connected".into());
    }
    match tokio::time::timeout(CHECK_TIMEOUT, state.redis.ping::<String>(None)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(short(&err.to_string())),
        Err(_) => Err("no answer within 2s".into()),
    }
}

/// The first line of an error, without connection details.
fn short(message: &str) -> String {
    message.lines().next().unwrap_or("error").chars().take(200).collect()
}

/// Prometheus text exposition. Gauges that describe state (pool, orgs,
/// queues, workers) are refreshed on each scrape.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let pool = &state.db;
    let idle = pool.num_idle() as f64;
    let size = f64::from(pool.size());
    metrics::gauge!("orgstack_db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("orgstack_db_pool_connections", "state" => "in_use")
        .set((size - idle).max(0.0));
    metrics::gauge!("orgstack_db_pool_max_connections").set(f64::from(state.config.db_pool_size));
    if let Ok(Ok(counts)) = tokio::time::timeout(CHECK_TIMEOUT, state.orgs.count_by_status()).await
    {
        for (status, n) in counts {
            metrics::gauge!("orgstack_orgs", "status" => status.as_str()).set(n as f64);
        }
    }
    if let Ok(Ok(queues)) = tokio::time::timeout(CHECK_TIMEOUT, state.jobs.queue_stats()).await {
        for q in queues {
            let name = q.name.to_string();
            metrics::gauge!("orgstack_queue_depth", "queue" => name.clone()).set(q.depth as f64);
            metrics::gauge!("orgstack_queue_in_flight", "queue" => name.clone())
                .set(q.in_flight as f64);
            metrics::gauge!("orgstack_queue_scheduled", "queue" => name.clone())
                .set(q.scheduled as f64);
            metrics::gauge!("orgstack_queue_dead", "queue" => name.clone()).set(q.dead as f64);
            metrics::gauge!("orgstack_queue_oldest_age_seconds", "queue" => name.clone())
                .set(q.oldest_age_secs);
            metrics::gauge!("orgstack_queue_paused", "queue" => name)
                .set(f64::from(u8::from(q.paused)));
        }
    }
    if let Ok(Ok(workers)) =
        tokio::time::timeout(CHECK_TIMEOUT, crate::jobs::worker::list_workers(&state.jobs)).await
    {
        let live = workers.iter().filter(|w| !w.stale).count();
        metrics::gauge!("orgstack_workers", "state" => "live").set(live as f64);
        metrics::gauge!("orgstack_workers", "state" => "stale").set((workers.len() - live) as f64);
        metrics::gauge!("orgstack_workers_in_flight")
            .set(workers.iter().filter(|w| !w.stale).map(|w| w.in_flight).sum::<u64>() as f64);
    }
    let body = crate::telemetry::metrics_handle().render();
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
        .into_response()
}
