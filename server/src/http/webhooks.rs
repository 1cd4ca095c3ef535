//! Org webhooks over HTTP: `/api/v1/orgs/{org}/webhooks[...]` (admins).

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
use crate::webhooks::{Delivery, Endpoint, EndpointChange, NewEndpoint, WebhookError};

impl From<WebhookError> for ApiError {
    fn from(err: WebhookError) -> Self {
        let detail = err.to_string();
        match err {
            WebhookError::Invalid(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_webhook", detail)
            }
            WebhookError::Refused(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "webhook_url_refused", detail)
            }
            WebhookError::NotFound => ApiError::not_found("webhook_not_found", detail),
            WebhookError::DeliveryNotFound => ApiError::not_found("delivery_not_found", detail),
            WebhookError::Jobs(e) => ApiError::from(e),
            WebhookError::Database(e) => ApiError::from(e),
        }
    }
}

fn id(raw: &str, code: &'static str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found(code, "no such resource"))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where deliveries are POSTed (http or https; public addresses only
    /// unless WEBHOOK_ALLOW_PRIVATE is set).
    pub url: String,
    /// `standard` (Standard Webhooks, signed JSON; the default) or `discord`.
    #[serde(default = "standard")]
    pub kind: String,
    /// Any of job.succeeded, job.dead, file.ready, member.added.
    pub event_types: Vec<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub description: String,
}

fn standard() -> String {
    "standard".to_owned()
}

fn yes() -> bool {
    true
}

/// A new endpoint with its signing secret, shown this once.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: Endpoint,
    /// `whsec_...`: verify deliveries with it (shown once).
    pub secret: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub description: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/orgs/{org}/webhooks", tag = "webhooks", params(("org" = String, Path, description = "Org slug")), request_body = CreateWebhook, security(("bearer" = [])), responses((status = 201, body = CreatedWebhook), (status = 403, description = "Admins only", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org, or the caller is not a member", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Invalid URL, kind or events (`invalid_webhook`), or a private address (`webhook_url_refused`)", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiJson(body): ApiJson<CreateWebhook>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    access.require(Role::Admin)?;
    if !state.flags.enabled("webhooks", access.org().id).await? {
        return Err(ApiError::forbidden(
            "Webhooks are off for this org (flag webhooks; a platform admin turns it on).",
        ));
    }
    let new = NewEndpoint {
        url: body.url,
        kind: body.kind,
        event_types: body.event_types,
        enabled: body.enabled,
        description: body.description,
    };
    let (webhook, secret) =
        state.webhooks.create(access.org(), &access.caller.actor(), new).await?;
    Ok((StatusCode::CREATED, Json(CreatedWebhook { webhook, secret })))
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/webhooks", tag = "webhooks", params(("org" = String, Path, description = "Org slug")), security(("bearer" = [])), responses((status = 200, body = ListResponse<Endpoint>), (status = 403, description = "Admins only", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    access: OrgAccess,
) -> Result<ListResponse<Endpoint>, ApiError> {
    access.require(Role::Admin)?;
    Ok(ListResponse { items: state.webhooks.list(access.org()).await?, next_cursor: None })
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/webhooks/{webhook_id}", tag = "webhooks", params(("org" = String, Path, description = "Org slug"), ("webhook_id" = Uuid, Path, description = "Webhook id")), security(("bearer" = [])), responses((status = 200, body = Endpoint), (status = 404, description = "No such org or webhook", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    access: OrgAccess,
    Path(ids): Path<(String, String)>,
) -> Result<Json<Endpoint>, ApiError> {
    access.require(Role::Admin)?;
    Ok(Json(state.webhooks.get(access.org(), id(&ids.1, "webhook_not_found")?).await?))
}

#[utoipa::path(patch, path = "/api/v1/orgs/{org}/webhooks/{webhook_id}", tag = "webhooks", params(("org" = String, Path, description = "Org slug"), ("webhook_id" = Uuid, Path, description = "Webhook id")), request_body = UpdateWebhook, security(("bearer" = [])), responses((status = 200, body = Endpoint), (status = 404, description = "No such org or webhook", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Invalid URL or events", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn update(
    State(state): State<AppState>,
    access: OrgAccess,
    Path(ids): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateWebhook>,
) -> Result<Json<Endpoint>, ApiError> {
    access.require(Role::Admin)?;
    let change = EndpointChange {
        url: body.url,
        event_types: body.event_types,
        enabled: body.enabled,
        description: body.description,
    };
    let endpoint = state
        .webhooks
        .update(access.org(), &access.caller.actor(), id(&ids.1, "webhook_not_found")?, change)
        .await?;
    Ok(Json(endpoint))
}

#[utoipa::path(delete, path = "/api/v1/orgs/{org}/webhooks/{webhook_id}", tag = "webhooks", params(("org" = String, Path, description = "Org slug"), ("webhook_id" = Uuid, Path, description = "Webhook id")), security(("bearer" = [])), responses((status = 204, description = "Deleted with its deliveries"), (status = 404, description = "No such org or webhook", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn delete(
    State(state): State<AppState>,
    access: OrgAccess,
    Path(ids): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    access.require(Role::Admin)?;
    state
        .webhooks
        .delete(access.org(), &access.caller.actor(), id(&ids.1, "webhook_not_found")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/webhooks/{webhook_id}/deliveries", tag = "webhooks", params(("org" = String, Path, description = "Org slug"), ("webhook_id" = Uuid, Path, description = "Webhook id"), ("limit" = Option<u32>, Query, description = "Page size, 1 to 200 (default 50)"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")), security(("bearer" = [])), responses((status = 200, body = ListResponse<Delivery>), (status = 404, description = "No such org or webhook", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn deliveries(
    State(state): State<AppState>,
    access: OrgAccess,
    page: Page,
    Path(ids): Path<(String, String)>,
) -> Result<ListResponse<Delivery>, ApiError> {
    access.require(Role::Admin)?;
    let after = page.after_id()?;
    let items = state
        .webhooks
        .deliveries(access.org(), id(&ids.1, "webhook_not_found")?, after, page.limit + 1)
        .await?;
    Ok(ListResponse::page(items, page.limit, |d| json!(d.id)))
}

#[utoipa::path(post, path = "/api/v1/orgs/{org}/webhooks/{webhook_id}/deliveries/{delivery_id}/replay", tag = "webhooks", params(("org" = String, Path, description = "Org slug"), ("webhook_id" = Uuid, Path, description = "Webhook id"), ("delivery_id" = Uuid, Path, description = "Delivery id")), security(("bearer" = [])), responses((status = 202, description = "A new delivery of the same event (same webhook-id), queued", body = Delivery), (status = 404, description = "No such org, webhook or delivery", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn replay(
    State(state): State<AppState>,
    access: OrgAccess,
    Path(ids): Path<(String, String, String)>,
) -> Result<(StatusCode, Json<Delivery>), ApiError> {
    access.require(Role::Admin)?;
    let webhook = id(&ids.1, "webhook_not_found")?;
    let delivery = id(&ids.2, "delivery_not_found")?;
    let replayed = state
        .webhooks
        .replay(access.org(), &access.caller.actor(), Some(webhook), delivery)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(replayed)))
}
