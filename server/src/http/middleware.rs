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
    let mut response = next.run(request).instrument(span.clone()).await;
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
        let error = format!("{err:#}");
        tracing::error!(parent: &span, status = status.as_u16(), error = %error, "request failed");
        let report =
            crate::notify::server_error(method.as_str(), &labels[1].1, &request_id, &error);
        response.extensions_mut().insert(FailedRequest(report));
    } else {
        tracing::debug!(parent: &span, status = status.as_u16(), elapsed_ms = elapsed.as_secs_f64() * 1000.0, "request finished");
    }
    response
}

/// A request that failed with a server error, for [`report_failures`].
#[derive(Debug, Clone)]
pub struct FailedRequest(pub crate::notify::ErrorReport);

/// Tells the admins about server errors (see [`crate::notify`]), after the
/// response is on its way.
pub async fn report_failures(
    axum::extract::State(jobs): axum::extract::State<crate::jobs::Jobs>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    if let Some(FailedRequest(report)) = response.extensions().get::<FailedRequest>() {
        let report = report.clone();
        tokio::spawn(async move {
            crate::notify::report(&jobs, report).await;
        });
    }
    response
}
