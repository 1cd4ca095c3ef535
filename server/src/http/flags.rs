//! Feature flags: `GET /api/v1/orgs/{org}/flags` (members of the org) and
//! `/api/v1/admin/flags[/{name}]` (platform admins).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tenancy::{OrgId, Slug};

use super::AppState;
use super::extract::{ApiJson, Caller, OrgAccess};
use crate::error::ApiError;
use crate::flags::{Effective, FlagState};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FlagList<T> {
    pub items: Vec<T>,
}

/// The effective value of every flag in this org.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/flags", tag = "flags", params(("org" = String, Path, description = "Org slug")), security(("bearer" = [])), responses((status = 200, body = FlagList<Effective>), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org, or the caller is not a member (the same answer)", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn org_flags(
    State(state): State<AppState>,
    access: OrgAccess,
) -> Result<Json<FlagList<Effective>>, ApiError> {
    Ok(Json(FlagList { items: state.flags.for_org(access.org().id).await? }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FlagOverview {
    pub name: &'static str,
    pub description: &'static str,
    pub default: bool,
    pub global: Option<bool>,
    pub overrides: Vec<OrgOverride>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrgOverride {
    #[schema(value_type = uuid::Uuid)]
    pub org_id: OrgId,
    pub slug: Option<String>,
    pub enabled: bool,
}

/// Every flag with its default, global value and per-org overrides.
#[utoipa::path(get, path = "/api/v1/admin/flags", tag = "flags", security(("bearer" = [])), responses((status = 200, body = FlagList<FlagOverview>), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Platform admins only", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn all(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<FlagList<FlagOverview>>, ApiError> {
    caller.require_platform_admin()?;
    let mut items = Vec::new();
    for FlagState { name, description, default, global, overrides } in state.flags.all().await? {
        let mut list = Vec::new();
        for (org_id, enabled) in overrides {
            let slug = state.orgs.by_id(org_id).await?.map(|o| o.slug.to_string());
            list.push(OrgOverride { org_id, slug, enabled });
        }
        items.push(FlagOverview { name, description, default, global, overrides: list });
    }
    Ok(Json(FlagList { items }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SetFlag {
    pub enabled: bool,
    /// Slug of the org to override; the global value when absent.
    pub org: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct OrgParam {
    pub org: Option<String>,
}

async fn org_id(state: &AppState, slug: Option<&str>) -> Result<Option<OrgId>, ApiError> {
    let Some(slug) = slug else { return Ok(None) };
    let not_found = || ApiError::not_found("org_not_found", format!("No org named '{slug}'."));
    let slug = Slug::parse(slug).map_err(|_| not_found())?;
    Ok(Some(state.orgs.by_slug(&slug).await?.ok_or_else(not_found)?.id))
}

/// `PUT /api/v1/admin/flags/{name}` `{enabled, org?}`.
#[utoipa::path(put, path = "/api/v1/admin/flags/{name}", tag = "flags", params(("name" = String, Path, description = "A flag declared in code")), request_body = SetFlag, security(("bearer" = [])), responses((status = 204, description = "Set"), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Platform admins only", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Unknown flag or org", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn set(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<SetFlag>,
) -> Result<StatusCode, ApiError> {
    caller.require_platform_admin()?;
    let org = org_id(&state, body.org.as_deref()).await?;
    state.flags.set(&caller.actor(), &name, org, body.enabled).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/admin/flags/{name}[?org=slug]`: back to the next level.
#[utoipa::path(delete, path = "/api/v1/admin/flags/{name}", tag = "flags", params(("name" = String, Path, description = "A flag declared in code"), ("org" = Option<String>, Query, description = "Org slug; the global value when absent")), security(("bearer" = [])), responses((status = 204, description = "Back to the next level"), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Platform admins only", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Unknown flag or org", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn clear(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(params): Query<OrgParam>,
) -> Result<StatusCode, ApiError> {
    caller.require_platform_admin()?;
    let org = org_id(&state, params.org.as_deref()).await?;
    state.flags.clear(&caller.actor(), &name, org).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SetOrgFlag {
    pub enabled: bool,
}

/// `PUT /api/v1/orgs/{org}/flags/{name}` `{enabled}`: an org admin sets this
/// org's override.
#[utoipa::path(put, path = "/api/v1/orgs/{org}/flags/{name}", tag = "flags", params(("org" = String, Path, description = "Org slug"), ("name" = String, Path, description = "A flag declared in code")), request_body = SetOrgFlag, security(("bearer" = [])), responses((status = 204, description = "Set for this org"), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Admins and owners only", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Unknown flag, or no such org / not a member", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn set_for_org(
    State(state): State<AppState>,
    access: OrgAccess,
    Path(params): Path<(String, String)>,
    ApiJson(body): ApiJson<SetOrgFlag>,
) -> Result<StatusCode, ApiError> {
    access.require(crate::accounts::Role::Admin)?;
    state.flags.set(&access.caller.actor(), &params.1, Some(access.org().id), body.enabled).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/orgs/{org}/flags/{name}`: back to the global value.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/flags/{name}", tag = "flags", params(("org" = String, Path, description = "Org slug"), ("name" = String, Path, description = "A flag declared in code")), security(("bearer" = [])), responses((status = 204, description = "Override removed"), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Admins and owners only", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Unknown flag, or no such org / not a member", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn clear_for_org(
    State(state): State<AppState>,
    access: OrgAccess,
    Path(params): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    access.require(crate::accounts::Role::Admin)?;
    state.flags.clear(&access.caller.actor(), &params.1, Some(access.org().id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
