//! Org cron schedules: `/api/v1/orgs/{org}/schedules[/{schedule_id}]`.
//! Viewers read; admins create, change, delete and run them now.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::AppState;
use super::extract::{ApiJson, OrgAccess, Page};
use super::orgs::ListResponse;
use crate::accounts::Role;
use crate::error::ApiError;
use crate::jobs::Job;
use crate::jobs::schedules::{NewSchedule, Schedule, ScheduleChange};
use crate::queue::QueueName;

fn schedule_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found("schedule_not_found", "No such schedule."))
}

fn queue(raw: Option<&str>) -> Result<Option<QueueName>, ApiError> {
    raw.map(QueueName::parse)
        .transpose()
        .map_err(|why| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_queue", why))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSchedule {
    pub name: String,
    /// Cron expression in UTC: 5 fields, 6 with seconds first, or `@hourly`,
    /// `@daily`, ...
    pub cron: String,
    pub kind: String,
    pub queue: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Skip a tick missed while no scheduler ran (default: run it once).
    #[serde(default)]
    pub skip_missed: bool,
}

fn yes() -> bool {
    true
}

/// Tells a field sent as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(de).map(Some)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSchedule {
    pub name: Option<String>,
    pub cron: Option<String>,
    pub kind: Option<String>,
    /// A queue name, or `null` for the kind's queue.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub queue: Option<Option<String>>,
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Value>,
    pub enabled: Option<bool>,
    pub skip_missed: Option<bool>,
}

/// `GET /api/v1/orgs/{org}/schedules` (viewers), by name.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/schedules", tag = "schedules", params(("org" = String, Path, description = "Org slug"), ("limit" = Option<u32>, Query, description = "Page size, 1 to 200 (default 50)"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")), security(("bearer" = [])), responses((status = 200, body = ListResponse<Schedule>), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org, or the caller is not a member (the same answer)", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    access: OrgAccess,
    page: Page,
) -> Result<ListResponse<Schedule>, ApiError> {
    let after = match &page.cursor {
        None => None,
        Some(c) => Some(c.as_str().map(str::to_owned).ok_or_else(|| {
            ApiError::bad_request("invalid_cursor", "cursor is not one this API issued")
        })?),
    };
    let items = state.jobs.list_schedules(access.org(), after.as_deref(), page.limit + 1).await?;
    Ok(ListResponse::page(items, page.limit, |s| json!(s.name)))
}

/// `POST /api/v1/orgs/{org}/schedules` (admins).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/schedules", tag = "schedules", params(("org" = String, Path, description = "Org slug")), request_body = CreateSchedule, security(("bearer" = [])), responses((status = 201, body = Schedule), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "The caller's role is too low", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org, or the caller is not a member (the same answer)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "The name is taken", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiJson(body): ApiJson<CreateSchedule>,
) -> Result<(StatusCode, Json<Schedule>), ApiError> {
    access.require(Role::Admin)?;
    let new = NewSchedule {
        name: body.name,
        cron: body.cron,
        kind: body.kind,
        queue: queue(body.queue.as_deref())?,
        payload: body.payload,
        enabled: body.enabled,
        skip_missed: body.skip_missed,
    };
    let schedule = state.jobs.create_schedule(access.org(), &access.caller.actor(), new).await?;
    Ok((StatusCode::CREATED, Json(schedule)))
}

/// `GET .../schedules/{schedule_id}` (viewers).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/schedules/{schedule_id}", tag = "schedules", params(("org" = String, Path, description = "Org slug"), ("schedule_id" = Uuid, Path, description = "Schedule id")), security(("bearer" = [])), responses((status = 200, body = Schedule), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org or schedule", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    access: OrgAccess,
    Path(ids): Path<(String, String)>,
) -> Result<Json<Schedule>, ApiError> {
    Ok(Json(state.jobs.get_schedule(access.org(), schedule_id(&ids.1)?).await?))
}

/// `PATCH .../schedules/{schedule_id}` (admins): change fields, enable or
/// disable.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/schedules/{schedule_id}", tag = "schedules", params(("org" = String, Path, description = "Org slug"), ("schedule_id" = Uuid, Path, description = "Schedule id")), request_body = UpdateSchedule, security(("bearer" = [])), responses((status = 200, body = Schedule), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "The caller's role is too low", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org or schedule", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "The name is taken", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn update(
    State(state): State<AppState>,
    access: OrgAccess,
    Path(ids): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateSchedule>,
) -> Result<Json<Schedule>, ApiError> {
    access.require(Role::Admin)?;
    let id = schedule_id(&ids.1)?;
    let change = ScheduleChange {
        name: body.name,
        cron: body.cron,
        kind: body.kind,
        queue: body.queue.map(|q| queue(q.as_deref())).transpose()?,
        payload: body.payload,
        enabled: body.enabled,
        skip_missed: body.skip_missed,
    };
    Ok(Json(state.jobs.update_schedule(access.org(), &access.caller.actor(), id, change).await?))
}

/// `DELETE .../schedules/{schedule_id}` (admins).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/schedules/{schedule_id}", tag = "schedules", params(("org" = String, Path, description = "Org slug"), ("schedule_id" = Uuid, Path, description = "Schedule id")), security(("bearer" = [])), responses((status = 204, description = "Deleted"), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "The caller's role is too low", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org or schedule", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn delete(
    State(state): State<AppState>,
    access: OrgAccess,
    Path(ids): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    access.require(Role::Admin)?;
    state.jobs.delete_schedule(access.org(), &access.caller.actor(), schedule_id(&ids.1)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST .../schedules/{schedule_id}/run` (admins): enqueue its job now.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/schedules/{schedule_id}/run", tag = "schedules", params(("org" = String, Path, description = "Org slug"), ("schedule_id" = Uuid, Path, description = "Schedule id")), security(("bearer" = [])), responses((status = 201, description = "The job it enqueued", body = Job), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "The caller's role is too low", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org or schedule", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn run_now(
    State(state): State<AppState>,
    access: OrgAccess,
    Path(ids): Path<(String, String)>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    access.require(Role::Admin)?;
    let done = state
        .jobs
        .run_schedule_now(access.org(), &access.caller.actor(), schedule_id(&ids.1)?)
        .await?;
    Ok((StatusCode::CREATED, Json(done.job)))
}
