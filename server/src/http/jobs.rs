//! Org jobs over HTTP: `/api/v1/orgs/{org}/jobs[...]`, their logs (a page
//! or a WebSocket), the org events WebSocket, and the platform admins'
//! `/api/v1/admin/queues` and `/api/v1/admin/workers`.
//!
//! Members run jobs (enqueue, cancel, retry, discard); viewers read.
//! WebSockets take the token from `Authorization` or, for browsers, from
//! the `access_token` query parameter.

use std::time::Duration;

use axum::Json;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::AppState;
use super::extract::{ApiJson, Caller, OrgAccess, Page};
use super::orgs::{ListResponse, json_body};
use crate::accounts::Role;
use crate::error::ApiError;
use crate::jobs::events::{JobEvent, LogMessage, Received};
use crate::jobs::handler::LogLine;
use crate::jobs::worker::WorkerInfo;
use crate::jobs::{Job, JobFilter, JobStatus, JobSummary, NewJob};
use crate::queue::{QueueName, QueueStats};

/// A job id from the path; an invalid one is answered like a missing job.
fn job_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found("job_not_found", "No such job."))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueJob {
    /// A registered job kind, such as `noop` or `sleep`.
    pub kind: String,
    /// Anything the kind accepts (at most 256 KiB as JSON).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Defaults to the kind's queue.
    pub queue: Option<String>,
    /// Not before this time (RFC 3339).
    pub run_at: Option<DateTime<Utc>>,
    /// Not before this many seconds from now (instead of `run_at`).
    pub delay_secs: Option<u64>,
    /// While an unfinished job has this key, enqueueing returns that job (200).
    pub unique_key: Option<String>,
    /// 1 to 100; defaults to the kind's.
    pub max_attempts: Option<u32>,
}

fn unprocessable(code: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
}

/// `POST /api/v1/orgs/{org}/jobs` (members).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/jobs", tag = "jobs", params(("org" = String, Path, description = "Org slug")), request_body = EnqueueJob, security(("bearer" = [])), responses((status = 201, description = "Recorded and queued", body = Job), (status = 200, description = "An unfinished job with the same unique_key, returned instead", body = Job), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Viewers cannot run jobs", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org, or the caller is not a member (the same answer)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Unknown kind (`unknown_kind`), invalid payload, queue or options", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn enqueue(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiJson(body): ApiJson<EnqueueJob>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    access.require(Role::Member)?;
    let queue = body
        .queue
        .as_deref()
        .map(QueueName::parse)
        .transpose()
        .map_err(|why| unprocessable("invalid_queue", why))?;
    let run_at = match (body.run_at, body.delay_secs) {
        (Some(_), Some(_)) => {
            return Err(unprocessable("invalid_job", "send run_at or delay_secs, not both"));
        }
        (Some(at), None) => Some(at),
        (None, Some(secs)) if secs <= 10 * 365 * 86_400 => {
            Some(Utc::now() + chrono::Duration::seconds(secs as i64))
        }
        (None, Some(_)) => return Err(unprocessable("invalid_job", "delay_secs is too large")),
        (None, None) => None,
    };
    let job = NewJob {
        kind: body.kind,
        payload: body.payload,
        queue,
        run_at,
        unique_key: body.unique_key,
        max_attempts: body.max_attempts,
    };
    let done = state.jobs.enqueue(access.org(), &access.caller.actor(), job).await?;
    let status = if done.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(done.job)))
}

#[derive(Debug, Deserialize, Default)]
pub struct JobQuery {
    pub status: Option<String>,
    pub kind: Option<String>,
}

/// `GET /api/v1/orgs/{org}/jobs` (viewers): newest first, as summaries (no
/// payload or result; `GET .../jobs/{job_id}` has them).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/jobs", tag = "jobs", params(("org" = String, Path, description = "Org slug"), ("status" = Option<String>, Query, description = "queued, running, succeeded, failed, cancelled or dead"), ("kind" = Option<String>, Query, description = "Only this kind"), ("limit" = Option<u32>, Query, description = "Page size, 1 to 200 (default 50)"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")), security(("bearer" = [])), responses((status = 200, body = ListResponse<JobSummary>), (status = 400, description = "Invalid status, limit or cursor", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org, or the caller is not a member (the same answer)", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    access: OrgAccess,
    page: Page,
    Query(query): Query<JobQuery>,
) -> Result<Response, ApiError> {
    let status = query
        .status
        .as_deref()
        .map(str::parse::<JobStatus>)
        .transpose()
        .map_err(|why| ApiError::bad_request("invalid_status", why))?;
    let after = page.after_id()?;
    let org = access.org();
    let key = state.jobs.list_version(org.id).await.map(|version| PageKey {
        org: org.id,
        version,
        status,
        kind: query.kind.clone(),
        after,
        limit: page.limit,
    });
    if let Some(body) = key.as_ref().and_then(|key| state.job_pages.0.get(key)) {
        return Ok(json_body(body));
    }
    let filter = JobFilter { status, kind: query.kind };
    let items = state.jobs.list(org, &filter, after, page.limit + 1).await?;
    let body = ListResponse::page(items, page.limit, |j| json!(j.id)).to_body()?;
    if let Some(key) = key {
        state.job_pages.0.insert(key, body.clone());
    }
    Ok(json_body(body))
}

/// Pages of `GET .../jobs` as sent, kept under their org's list version
/// (replaced in Redis whenever one of the org's jobs changes, after the
/// change is committed): a page is served again only while nothing in
/// its org changed. Dashboards that poll an idle org's jobs then cost
/// one Redis round trip instead of a query; a busy org's pages change
/// with every batch of job updates and are read from PostgreSQL.
#[derive(Clone, Debug)]
pub struct JobPages(moka::sync::Cache<PageKey, bytes::Bytes>);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    org: tenancy::OrgId,
    version: String,
    status: Option<JobStatus>,
    kind: Option<String>,
    after: Option<Uuid>,
    limit: u32,
}

impl JobPages {
    /// At most `max_bytes` of pages; none older than a minute (a version
    /// change that did not reach Redis is not served for longer).
    pub fn new(max_bytes: u64) -> Self {
        JobPages(
            moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|key: &PageKey, body: &bytes::Bytes| {
                    let size = body.len()
                        + key.version.len()
                        + key.kind.as_ref().map_or(0, String::len)
                        + 96;
                    u32::try_from(size).unwrap_or(u32::MAX)
                })
                .time_to_live(Duration::from_secs(60))
                .build(),
        )
    }
}

impl Default for JobPages {
    /// 16 MiB: the first page of 1,000 orgs' jobs.
    fn default() -> Self {
        JobPages::new(16 << 20)
    }
}

/// `GET /api/v1/orgs/{org}/jobs/{job_id}` (viewers).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/jobs/{job_id}", tag = "jobs", params(("org" = String, Path, description = "Org slug"), ("job_id" = Uuid, Path, description = "Job id")), security(("bearer" = [])), responses((status = 200, body = Job), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org or job", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    access: OrgAccess,
    Path(ids): Path<(String, String)>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(state.jobs.get(access.org(), job_id(&ids.1)?).await?))
}

/// `POST .../jobs/{job_id}/cancel` (members): a queued job never starts; a
/// running one is stopped and ends as cancelled.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/jobs/{job_id}/cancel", tag = "jobs", params(("org" = String, Path, description = "Org slug"), ("job_id" = Uuid, Path, description = "Job id")), security(("bearer" = [])), responses((status = 200, description = "Cancelled (status cancelled), or asked to stop (status running, cancel_requested_at set)", body = Job), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Viewers cannot cancel jobs", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org or job", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "The job already finished (`wrong_job_status`)", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn cancel(
    State(state): State<AppState>,
    access: OrgAccess,
    Path(ids): Path<(String, String)>,
) -> Result<Json<Job>, ApiError> {
    access.require(Role::Member)?;
    Ok(Json(state.jobs.cancel(access.org(), &access.caller.actor(), job_id(&ids.1)?).await?))
}

/// `POST .../jobs/{job_id}/retry` (members): a dead or cancelled job runs
/// again with a fresh set of attempts; a retry-waiting one runs now.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/jobs/{job_id}/retry", tag = "jobs", params(("org" = String, Path, description = "Org slug"), ("job_id" = Uuid, Path, description = "Job id")), security(("bearer" = [])), responses((status = 200, description = "Queued again", body = Job), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Viewers cannot retry jobs", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org or job", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Not dead, cancelled or failed (`wrong_job_status`), or its unique key is taken", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn retry(
    State(state): State<AppState>,
    access: OrgAccess,
    Path(ids): Path<(String, String)>,
) -> Result<Json<Job>, ApiError> {
    access.require(Role::Member)?;
    Ok(Json(state.jobs.retry(access.org(), &access.caller.actor(), job_id(&ids.1)?).await?))
}

/// `DELETE .../jobs/{job_id}` (members): discards a dead job and its logs.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/jobs/{job_id}", tag = "jobs", params(("org" = String, Path, description = "Org slug"), ("job_id" = Uuid, Path, description = "Job id")), security(("bearer" = [])), responses((status = 204, description = "Discarded"), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Viewers cannot discard jobs", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org or job", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Only dead jobs are discarded (`wrong_job_status`)", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn discard(
    State(state): State<AppState>,
    access: OrgAccess,
    Path(ids): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    access.require(Role::Member)?;
    state.jobs.discard(access.org(), &access.caller.actor(), job_id(&ids.1)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET .../jobs/{job_id}/logs` (viewers): the stored lines in order, every
/// attempt.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/jobs/{job_id}/logs", tag = "jobs", params(("org" = String, Path, description = "Org slug"), ("job_id" = Uuid, Path, description = "Job id"), ("limit" = Option<u32>, Query, description = "Page size, 1 to 200 (default 50)"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")), security(("bearer" = [])), responses((status = 200, body = ListResponse<crate::jobs::StoredLine>), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org or job", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn logs(
    State(state): State<AppState>,
    access: OrgAccess,
    Path(ids): Path<(String, String)>,
    page: Page,
) -> Result<ListResponse<crate::jobs::StoredLine>, ApiError> {
    let after = page
        .cursor
        .as_ref()
        .map(|c| serde_json::from_value::<(i32, i32)>(c.clone()))
        .transpose()
        .map_err(|_| {
            ApiError::bad_request("invalid_cursor", "cursor is not one this API issued")
        })?;
    let items = state.jobs.logs(access.org(), job_id(&ids.1)?, after, page.limit + 1).await?;
    Ok(ListResponse::page(items, page.limit, |l| json!([l.attempt, l.line_no])))
}

/// Lets browsers, which cannot set headers on a WebSocket, send the token
/// as `?access_token=`.
pub async fn token_from_query(mut request: Request, next: Next) -> Response {
    if !request.headers().contains_key(header::AUTHORIZATION)
        && let Some(token) = request.uri().query().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "access_token")
                .map(|(_, v)| v.into_owned())
        })
        && let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}"))
    {
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    next.run(request).await
}

/// How long a log stream waits between checks that its job is still
/// running (in case its end message was missed).
const STATUS_CHECK_EVERY: Duration = Duration::from_secs(5);

/// `GET .../jobs/{job_id}/logs/ws` (viewers): a WebSocket that sends the
/// stored lines, then new lines as they are logged, then an `end` message
/// when the job finishes (succeeded, dead or cancelled), and closes.
/// Messages are JSON: `{"type":"line","attempt":1,"line_no":3,"at":...,
/// "level":"info","line":"..."}` and `{"type":"end","status":"succeeded"}`.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/jobs/{job_id}/logs/ws", tag = "jobs", params(("org" = String, Path, description = "Org slug"), ("job_id" = Uuid, Path, description = "Job id"), ("access_token" = Option<String>, Query, description = "The bearer token, for browsers")), security(("bearer" = [])), responses((status = 101, description = "Switching to the WebSocket protocol"), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org or job", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn logs_ws(
    State(state): State<AppState>,
    access: OrgAccess,
    Path(ids): Path<(String, String)>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let id = job_id(&ids.1)?;
    let org = access.org_arc();
    state.jobs.get(&org, id).await?;
    // Listen before reading what is stored, so no line falls between: to
    // the job's lines, and to the org's events for the job's end.
    let unavailable = |err: fred::error::Error| {
        ApiError::unavailable("redis_unavailable", "Live logs are unavailable; retry shortly.")
            .with_cause(err.into())
    };
    let keys = state.jobs.keys();
    let lines = state
        .hub
        .subscribe(keys.job_log_channel(org.id, &id.to_string()))
        .await
        .map_err(unavailable)?;
    let events = state.hub.subscribe(keys.org_events_channel(org.id)).await.map_err(unavailable)?;
    Ok(ws.on_upgrade(move |socket| async move {
        if let Err(err) = stream_logs(socket, state, org, id, lines, events).await {
            tracing::debug!(error = %err, "log stream ended");
        }
    }))
}

/// The position of a line: `(attempt, line_no)`.
type Position = (i32, i32);

fn position(line: &LogLine) -> Position {
    (
        i32::try_from(line.attempt).unwrap_or(i32::MAX),
        i32::try_from(line.line_no).unwrap_or(i32::MAX),
    )
}

/// Whether `next` directly follows `last` (the next line of an attempt, or
/// the first line of a later attempt).
fn follows(last: Position, next: Position) -> bool {
    (next.0 == last.0 && next.1 == last.1 + 1) || (next.0 > last.0 && next.1 == 1)
}

async fn send_line(
    socket: &mut WebSocket,
    attempt: i32,
    line_no: i32,
    at: DateTime<Utc>,
    level: &str,
    line: &str,
) -> Result<(), axum::Error> {
    let message = json!({ "type": "line", "attempt": attempt, "line_no": line_no, "at": at, "level": level, "line": line });
    socket.send(Message::Text(message.to_string().into())).await
}

/// Sends the stored lines after `last`; returns the new last position.
async fn send_stored(
    socket: &mut WebSocket,
    state: &AppState,
    org: &tenancy::Org,
    id: Uuid,
    mut last: Position,
) -> anyhow::Result<Position> {
    loop {
        let lines = state.jobs.logs(org, id, Some(last), 200).await?;
        for line in &lines {
            send_line(socket, line.attempt, line.line_no, line.at, &line.level, &line.line).await?;
            last = (line.attempt, line.line_no);
        }
        if lines.len() < 200 {
            return Ok(last);
        }
    }
}

/// Sends the rest of the stored lines, the end message, and closes.
async fn finish_stream(
    socket: &mut WebSocket,
    state: &AppState,
    org: &tenancy::Org,
    id: Uuid,
    last: Position,
    status: JobStatus,
) -> anyhow::Result<()> {
    // A job's lines are stored before its final status is announced.
    send_stored(socket, state, org, id, last).await?;
    let end = json!({ "type": "end", "status": status }).to_string();
    socket.send(Message::Text(end.into())).await?;
    let _ = socket.send(Message::Close(None)).await;
    Ok(())
}

async fn stream_logs(
    mut socket: WebSocket,
    state: AppState,
    org: std::sync::Arc<tenancy::Org>,
    id: Uuid,
    mut lines: crate::jobs::events::Subscription,
    mut events: crate::jobs::events::Subscription,
) -> anyhow::Result<()> {
    let mut last = send_stored(&mut socket, &state, &org, id, (0, 0)).await?;
    let job = state.jobs.get(&org, id).await?;
    if job.status.is_final() {
        return finish_stream(&mut socket, &state, &org, id, last, job.status).await;
    }
    let mut check = tokio::time::interval(STATUS_CHECK_EVERY);
    check.tick().await;
    loop {
        tokio::select! {
            received = lines.recv() => match received {
                Some(Received::Message(text)) => {
                    let Ok(LogMessage::Lines(batch)) = serde_json::from_str::<LogMessage>(&text) else { continue };
                    for line in batch {
                        let at = position(&line);
                        if at <= last {
                            continue;
                        }
                        if !follows(last, at) {
                            // Lines logged before this stream began and
                            // not stored yet: wait for them to be stored
                            // (every 500 ms), rather than skip them.
                            for _ in 0..15 {
                                last = send_stored(&mut socket, &state, &org, id, last).await?;
                                if last >= at || follows(last, at) {
                                    break;
                                }
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            if at <= last {
                                continue;
                            }
                        }
                        send_line(&mut socket, at.0, at.1, line.at, line.level.as_str(), &line.line).await?;
                        last = at;
                    }
                }
                Some(Received::Gap) => last = send_stored(&mut socket, &state, &org, id, last).await?,
                None => return Ok(()),
            },
            received = events.recv() => match received {
                Some(Received::Message(text)) => {
                    let Ok(batch) = serde_json::from_str::<Vec<JobEvent>>(&text) else { continue };
                    if let Some(end) = batch.iter().find(|e| e.job_id == id && e.status.is_final()) {
                        return finish_stream(&mut socket, &state, &org, id, last, end.status).await;
                    }
                }
                Some(Received::Gap) => {}
                None => return Ok(()),
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(()),
                Some(Ok(_)) => {}
            },
            _ = check.tick() => {
                // In case the end was missed (Redis reconnected).
                let job = state.jobs.get(&org, id).await?;
                if job.status.is_final() {
                    return finish_stream(&mut socket, &state, &org, id, last, job.status).await;
                }
            }
        }
    }
}

/// `GET /api/v1/orgs/{org}/events/ws` (viewers): a WebSocket of the org's
/// job status changes, one JSON message each (`{"event":"job.status",
/// "job_id":...,"status":"running",...}`); `{"event":"gap"}` when some
/// may have been missed (re-read the jobs).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/events/ws", tag = "jobs", params(("org" = String, Path, description = "Org slug"), ("access_token" = Option<String>, Query, description = "The bearer token, for browsers")), security(("bearer" = [])), responses((status = 101, description = "Switching to the WebSocket protocol"), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org, or the caller is not a member (the same answer)", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn events_ws(
    State(state): State<AppState>,
    access: OrgAccess,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let channel = state.jobs.keys().org_events_channel(access.org().id);
    let mut subscription = state.hub.subscribe(channel).await.map_err(|err| {
        ApiError::unavailable("redis_unavailable", "Live events are unavailable; retry shortly.")
            .with_cause(err.into())
    })?;
    Ok(ws.on_upgrade(move |mut socket| async move {
        loop {
            tokio::select! {
                received = subscription.recv() => {
                    let messages: Vec<String> = match received {
                        Some(Received::Message(text)) => {
                            match serde_json::from_str::<Vec<serde_json::Value>>(&text) {
                                Ok(events) => events.iter().map(ToString::to_string).collect(),
                                Err(_) => continue,
                            }
                        }
                        Some(Received::Gap) => vec![json!({ "event": "gap" }).to_string()],
                        None => return,
                    };
                    for message in messages {
                        if socket.send(Message::Text(message.into())).await.is_err() {
                            return;
                        }
                    }
                }
                incoming = socket.recv() => match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => {}
                },
            }
        }
    }))
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct QueueList {
    pub items: Vec<QueueStats>,
}

/// `GET /api/v1/admin/queues` (platform admins): per queue, the entries
/// waiting, in flight, scheduled and dead, and the oldest waiting age.
#[utoipa::path(get, path = "/api/v1/admin/queues", tag = "jobs", security(("bearer" = [])), responses((status = 200, body = QueueList), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Platform admins only", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn queues(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<QueueList>, ApiError> {
    caller.require_platform_admin()?;
    Ok(Json(QueueList { items: state.jobs.queue_stats().await? }))
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct WorkerList {
    pub items: Vec<WorkerInfo>,
}

/// `GET /api/v1/admin/workers` (platform admins): workers seen in the last
/// five minutes, from their heartbeats (`stale` after ten silent seconds).
#[utoipa::path(get, path = "/api/v1/admin/workers", tag = "jobs", security(("bearer" = [])), responses((status = 200, body = WorkerList), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Platform admins only", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn workers(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<WorkerList>, ApiError> {
    caller.require_platform_admin()?;
    Ok(Json(WorkerList { items: crate::jobs::worker::list_workers(&state.jobs).await? }))
}
