//! Per-request tracing span, metrics and error logging.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::error::InternalError;

/// Wraps each request in a span (method, matched route, request id),
/// records `orgstack_http_requests_total` and
/// `orgstack_http_request_duration_seconds`, and logs internal errors once.
pub async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let span = tracing::info_span!("request", method = %method, route = %route, request_id = %request_id, org_id = tracing::field::Empty, user_id = tracing::field::Empty);
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    let elapsed = started.elapsed();
    let labels = [
        ("method", method.as_str().to_owned()),
        ("route", route),
        ("status", status.as_u16().to_string()),
    ];
    metrics::counter!("orgstack_http_requests_total", &labels).increment(1);
    metrics::histogram!("orgstack_http_request_duration_seconds", &labels)
        .record(elapsed.as_secs_f64());
    if let Some(InternalError(err)) = response.extensions().get::<InternalError>() {
        tracing::error!(parent: &span, status = status.as_u16(), error = format!("{err:#}"), "request failed");
    } else {
        tracing::debug!(parent: &span, status = status.as_u16(), elapsed_ms = elapsed.as_secs_f64() * 1000.0, "request finished");
    }
    response
}
