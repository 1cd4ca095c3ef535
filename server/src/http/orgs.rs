//! Orgs, members, API keys and the org audit log:
//! `/api/v1/orgs`, `/api/v1/orgs/{org}`, `.../members`, `.../api_keys`,
//! `.../audit`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tenancy::{OrgId, Slug};
use uuid::Uuid;

use super::AppState;
use super::extract::{ApiJson, Caller, OrgAccess, Page, encode_cursor};
use crate::accounts::auth::{Accounts, Principal};
use crate::accounts::members::{ApiKey, Member, NewApiKey};
use crate::accounts::{Email, Role, audit};
use crate::error::ApiError;

/// A list page: `items` and the cursor of the next page (`null` at the end).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListResponse<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> ListResponse<T> {
    /// The first `limit` of `items` (already sorted and past the cursor;
    /// one more than `limit` means there is a next page), with the cursor
    /// made from the last item's sort key.
    pub(super) fn page(
        mut items: Vec<T>,
        limit: u32,
        key: impl Fn(&T) -> serde_json::Value,
    ) -> Self {
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor =
            more.then(|| items.last().map(|item| encode_cursor(&key(item)))).flatten();
        ListResponse { items, next_cursor }
    }
}

impl<T: Serialize> ListResponse<T> {
    /// The JSON body, serialized into a buffer sized for the page at once
    /// (lists are the largest responses; growing the buffer step by step
    /// copies them again and again).
    pub(super) fn to_body(&self) -> Result<bytes::Bytes, ApiError> {
        let mut body = Vec::with_capacity(64 + self.items.len() * 384);
        serde_json::to_writer(&mut body, self).map_err(ApiError::internal)?;
        Ok(body.into())
    }
}

/// A JSON body as a response.
pub(super) fn json_body(body: bytes::Bytes) -> axum::response::Response {
    use axum::response::IntoResponse;
    ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

impl<T: Serialize> axum::response::IntoResponse for ListResponse<T> {
    fn into_response(self) -> axum::response::Response {
        match self.to_body() {
            Ok(body) => json_body(body),
            Err(err) => err.into_response(),
        }
    }
}

/// An org as its members see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrgView {
    #[schema(value_type = uuid::Uuid)]
    pub id: OrgId,
    pub slug: String,
    pub name: String,
    /// active, suspended or deleted
    #[schema(value_type = String, example = "active")]
    pub status: tenancy::OrgStatus,
    pub created_at: DateTime<Utc>,
    /// The caller's role in this org.
    pub role: Role,
}

impl OrgView {
    fn new(org: &tenancy::Org, role: Role) -> Self {
        OrgView {
            id: org.id,
            slug: org.slug.to_string(),
            name: org.name.clone(),
            status: org.status,
            created_at: org.created_at,
            role,
        }
    }
}

fn bad_cursor() -> ApiError {
    ApiError::bad_request("invalid_cursor", "cursor is not one this API issued")
}

/// A cursor that holds the last item's sort key as a string ("" for the first page).
fn text_cursor(page: &Page) -> Result<String, ApiError> {
    match &page.cursor {
        None => Ok(String::new()),
        Some(c) => c.as_str().map(str::to_owned).ok_or_else(bad_cursor),
    }
}

fn slug_param(raw: Option<&str>) -> Result<Option<Slug>, ApiError> {
    raw.map(|s| {
        Slug::parse(s).map_err(|e| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_slug", format!("slug {e}"))
        })
    })
    .transpose()
}

/// `GET /api/v1/orgs`: the orgs the caller belongs to, by slug.
#[utoipa::path(get, path = "/api/v1/orgs", tag = "orgs", params(("limit" = Option<u32>, Query, description = "Page size, 1 to 200 (default 50)"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")), security(("bearer" = [])), responses((status = 200, body = ListResponse<OrgView>), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    page: Page,
) -> Result<ListResponse<OrgView>, ApiError> {
    let after = text_cursor(&page)?;
    let mut items: Vec<OrgView> = match &caller {
        Principal::User { user_id, .. } => {
            let mut views = Vec::new();
            for m in state.accounts.memberships_of(*user_id).await? {
                if let Some(org) = state.orgs.by_id(m.org_id).await? {
                    views.push(OrgView::new(&org, m.role));
                }
            }
            views
        }
        Principal::ApiKey { org_id, role, .. } => match state.orgs.by_id(*org_id).await? {
            Some(org) if org.status == tenancy::OrgStatus::Active => {
                vec![OrgView::new(&org, *role)]
            }
            _ => Vec::new(),
        },
    };
    items.retain(|o| o.slug.as_str() > after.as_str());
    items.sort_by(|a, b| a.slug.cmp(&b.slug));
    Ok(ListResponse::page(items, page.limit, |o| json!(o.slug)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateOrg {
    pub name: String,
    pub slug: Option<String>,
}

/// `POST /api/v1/orgs`: platform admins create an org and become its owner.
#[utoipa::path(post, path = "/api/v1/orgs", tag = "orgs", request_body = CreateOrg, security(("bearer" = [])), responses((status = 201, body = OrgView), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Only platform admins (or anyone when sign-up is open)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Slug taken", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Invalid name or slug", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateOrg>,
) -> Result<(StatusCode, Json<OrgView>), ApiError> {
    // Platform admins, or any signed-in user when self-service sign-up is on.
    if !(caller.0.is_platform_admin()
        || (state.config.signup_code.is_some() && caller.0.user_id().is_some()))
    {
        caller.require_platform_admin()?;
    }
    let slug = match slug_param(body.slug.as_deref())? {
        Some(slug) => slug,
        None => Slug::suggest(&body.name).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_slug",
                "cannot derive a slug from the name; send one",
            )
        })?,
    };
    let org = state.orgs.create(&body.name, &slug).await?;
    state.accounts.record_org_created(&caller.actor(), &org).await?;
    if let Some(user_id) = caller.0.user_id() {
        state.accounts.add_owner(&caller.actor(), &org, user_id).await?;
    }
    Ok((StatusCode::CREATED, Json(OrgView::new(&org, Role::Owner))))
}

/// `GET /api/v1/orgs/{org}` (viewers and up).
#[utoipa::path(get, path = "/api/v1/orgs/{org}", tag = "orgs", params(("org" = String, Path, description = "Org slug")), security(("bearer" = [])), responses((status = 200, body = OrgView), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org, or the caller is not a member (the same answer)", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn get(access: OrgAccess) -> Json<OrgView> {
    Json(OrgView::new(access.org(), access.role))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct UpdateOrg {
    pub name: Option<String>,
    pub slug: Option<String>,
}

/// `PATCH /api/v1/orgs/{org}`: rename or change the slug (admins).
#[utoipa::path(patch, path = "/api/v1/orgs/{org}", tag = "orgs", params(("org" = String, Path, description = "Org slug")), request_body = UpdateOrg, security(("bearer" = [])), responses((status = 200, body = OrgView), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "The caller's role is too low", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org, or the caller is not a member (the same answer)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Slug taken", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn update(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiJson(body): ApiJson<UpdateOrg>,
) -> Result<Json<OrgView>, ApiError> {
    access.require(Role::Admin)?;
    let new_slug = slug_param(body.slug.as_deref())?;
    let mut org = access.org().clone();
    let name = body.name.as_deref().filter(|n| *n != org.name);
    if name.is_some_and(|n| n.trim().is_empty() || n.chars().count() > 200) {
        return Err(tenancy::TenancyError::InvalidName.into());
    }
    // The slug first: it is the change that can be refused (taken), and a
    // refusal then leaves the org exactly as it was.
    if let Some(new_slug) = new_slug.filter(|s| *s != org.slug) {
        let before = org.slug.to_string();
        org = state.orgs.change_slug(&org.slug, &new_slug).await?;
        record(&state, &access, "org.slug_changed", json!({ "from": before, "to": org.slug }))
            .await?;
    }
    if let Some(name) = name {
        let before = org.name.clone();
        org = state.orgs.rename(&org.slug, name).await?;
        record(&state, &access, "org.renamed", json!({ "from": before, "to": org.name })).await?;
    }
    Ok(Json(OrgView::new(&org, access.role)))
}

/// `DELETE /api/v1/orgs/{org}`: soft delete (owners).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}", tag = "orgs", params(("org" = String, Path, description = "Org slug")), security(("bearer" = [])), responses((status = 204, description = "Soft-deleted"), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "The caller's role is too low", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org, or the caller is not a member (the same answer)", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn delete(
    State(state): State<AppState>,
    access: OrgAccess,
) -> Result<StatusCode, ApiError> {
    access.require(Role::Owner)?;
    state.orgs.soft_delete(&access.org().slug).await?;
    // The schema stays until purge, so the event lands in the org's log.
    record(&state, &access, "org.deleted", json!({})).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn record(
    state: &AppState,
    access: &OrgAccess,
    action: &str,
    details: serde_json::Value,
) -> Result<(), ApiError> {
    let mut conn = state.db.acquire().await?;
    let target = access.org().id.to_string();
    audit::record_org(
        &mut conn,
        access.scope.schema(),
        &access.caller.actor(),
        action,
        Some(&target),
        details,
    )
    .await?;
    Ok(())
}

/// `GET .../members` (viewers and up), by email.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/members", tag = "members", params(("org" = String, Path, description = "Org slug"), ("limit" = Option<u32>, Query, description = "Page size, 1 to 200 (default 50)"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")), security(("bearer" = [])), responses((status = 200, body = ListResponse<Member>), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org, or the caller is not a member (the same answer)", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn list_members(
    State(accounts): State<Accounts>,
    access: OrgAccess,
    page: Page,
) -> Result<ListResponse<Member>, ApiError> {
    let after = text_cursor(&page)?;
    let items: Vec<Member> = accounts
        .list_members(access.org())
        .await?
        .into_iter()
        .filter(|m| m.email.as_str() > after.as_str())
        .collect();
    Ok(ListResponse::page(items, page.limit, |m| json!(m.email)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AddMember {
    pub email: String,
    pub role: Role,
}

/// `POST .../members` (admins; owners to add owners).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/members", tag = "members", params(("org" = String, Path, description = "Org slug")), request_body = AddMember, security(("bearer" = [])), responses((status = 201, body = Member), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "The caller's role is too low", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org or user", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Already a member", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn add_member(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiJson(body): ApiJson<AddMember>,
) -> Result<(StatusCode, Json<Member>), ApiError> {
    let email = Email::parse(&body.email)?;
    let member =
        state.accounts.add_member(&access.acting(), access.org(), &email, body.role).await?;
    let event = json!({ "user_id": member.user_id, "email": member.email, "role": member.role });
    crate::webhooks::emit(&state.jobs, access.org().id, vec![("member.added", event)]).await;
    Ok((StatusCode::CREATED, Json(member)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SetRole {
    pub role: Role,
}

/// `PATCH .../members/{user_id}`.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/members/{user_id}", tag = "members", params(("org" = String, Path, description = "Org slug"), ("user_id" = uuid::Uuid, Path, description = "The member's user id")), request_body = SetRole, security(("bearer" = [])), responses((status = 200, body = Member), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "The caller's role is too low", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org or member", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "It would leave the org without an owner", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn set_role(
    State(accounts): State<Accounts>,
    access: OrgAccess,
    Path(ids): Path<(String, Uuid)>,
    ApiJson(body): ApiJson<SetRole>,
) -> Result<Json<Member>, ApiError> {
    Ok(Json(accounts.set_role(&access.acting(), access.org(), ids.1, body.role).await?))
}

/// `DELETE .../members/{user_id}` (admins; anyone for themselves).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/members/{user_id}", tag = "members", params(("org" = String, Path, description = "Org slug"), ("user_id" = uuid::Uuid, Path, description = "The member's user id")), security(("bearer" = [])), responses((status = 204, description = "Removed"), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "The caller's role is too low", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org or member", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "It would leave the org without an owner", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn remove_member(
    State(accounts): State<Accounts>,
    access: OrgAccess,
    Path(ids): Path<(String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    accounts.remove_member(&access.acting(), access.org(), ids.1).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET .../api_keys` (admins), newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/api_keys", tag = "api_keys", params(("org" = String, Path, description = "Org slug"), ("limit" = Option<u32>, Query, description = "Page size, 1 to 200 (default 50)"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")), security(("bearer" = [])), responses((status = 200, body = ListResponse<ApiKey>), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "The caller's role is too low", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org, or the caller is not a member (the same answer)", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn list_api_keys(
    State(accounts): State<Accounts>,
    access: OrgAccess,
    page: Page,
) -> Result<ListResponse<ApiKey>, ApiError> {
    access.require(Role::Admin)?;
    let after: Option<Uuid> = match &page.cursor {
        None => None,
        Some(c) => Some(c.as_str().and_then(|s| s.parse().ok()).ok_or_else(bad_cursor)?),
    };
    let items: Vec<ApiKey> = accounts
        .list_api_keys(access.org())
        .await?
        .into_iter()
        .filter(|k| after.is_none_or(|after| k.id < after))
        .collect();
    Ok(ListResponse::page(items, page.limit, |k| json!(k.id)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateApiKey {
    pub name: String,
    pub role: Role,
    pub expires_at: Option<DateTime<Utc>>,
}

/// `POST .../api_keys` (admins): the secret is in this response only.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/api_keys", tag = "api_keys", params(("org" = String, Path, description = "Org slug")), request_body = CreateApiKey, security(("bearer" = [])), responses((status = 201, description = "The key, with its secret shown once", body = NewApiKey), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "The caller's role is too low", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org, or the caller is not a member (the same answer)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Invalid name or expiry", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn create_api_key(
    State(accounts): State<Accounts>,
    access: OrgAccess,
    ApiJson(body): ApiJson<CreateApiKey>,
) -> Result<(StatusCode, Json<NewApiKey>), ApiError> {
    if body.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_expiry",
            "expires_at must be in the future",
        ));
    }
    let key = accounts
        .create_api_key(&access.acting(), access.org(), &body.name, body.role, body.expires_at)
        .await?;
    Ok((StatusCode::CREATED, Json(key)))
}

/// `DELETE .../api_keys/{id}` (admins).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/api_keys/{key_id}", tag = "api_keys", params(("org" = String, Path, description = "Org slug"), ("key_id" = uuid::Uuid, Path, description = "The key id")), security(("bearer" = [])), responses((status = 204, description = "Revoked everywhere at once"), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "The caller's role is too low", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org or key", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn revoke_api_key(
    State(accounts): State<Accounts>,
    access: OrgAccess,
    Path(ids): Path<(String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    accounts.revoke_api_key(&access.acting(), access.org(), ids.1).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET .../audit` (admins): newest first, cursor-paginated.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/audit", tag = "audit", params(("org" = String, Path, description = "Org slug"), ("limit" = Option<u32>, Query, description = "Page size, 1 to 200 (default 50)"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")), security(("bearer" = [])), responses((status = 200, body = ListResponse<crate::accounts::audit::AuditEvent>), (status = 400, description = "Invalid limit or cursor", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "The caller's role is too low", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org, or the caller is not a member (the same answer)", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn list_audit(
    State(state): State<AppState>,
    access: OrgAccess,
    page: Page,
) -> Result<ListResponse<audit::AuditEvent>, ApiError> {
    access.require(Role::Admin)?;
    let cursor = page
        .cursor
        .as_ref()
        .map(|c| serde_json::from_value::<(DateTime<Utc>, Uuid)>(c.clone()))
        .transpose()
        .map_err(|_| {
            ApiError::bad_request("invalid_cursor", "cursor is not one this API issued")
        })?;
    let items =
        audit::list_org(&state.db, access.scope.schema(), cursor, u64::from(page.limit) + 1)
            .await?;
    Ok(ListResponse::page(items, page.limit, |e| json!([e.occurred_at, e.id])))
}

impl axum::extract::FromRef<AppState> for Accounts {
    fn from_ref(state: &AppState) -> Self {
        state.accounts.clone()
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Invite {
    pub email: String,
    pub role: Role,
}

/// `POST .../invitations` (admins): the accept token is in this response
/// only.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/invitations", tag = "orgs", params(("org" = String, Path, description = "Org slug")), request_body = Invite, security(("bearer" = [])), responses((status = 201, description = "The invitation, with its token shown once", body = crate::accounts::invitations::NewInvitation), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "The caller's role is too low", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org, or the caller is not a member (the same answer)", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn invite(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiJson(body): ApiJson<Invite>,
) -> Result<(StatusCode, Json<crate::accounts::invitations::NewInvitation>), ApiError> {
    let email = Email::parse(&body.email)?;
    let invitation =
        state.accounts.invite(&access.acting(), access.org(), &email, body.role).await?;
    // Mailed by a job (a platform one: its payload holds the token, which
    // the org's job lists must not show).
    let context = serde_json::json!({
        "invited_by": match access.caller.actor() {
            crate::accounts::Actor::User { email, .. } => email,
            crate::accounts::Actor::ApiKey { name, .. } => format!("API key {name}"),
            _ => "An administrator".to_owned(),
        },
        "org_name": access.org().name,
        "role": invitation.invitation.role.as_str(),
        "accept_url": format!("{}/invitations/{}", state.mailer.public_url(), invitation.token),
        "expires_at": invitation.invitation.expires_at.format("%Y-%m-%d %H:%M UTC").to_string(),
    });
    if let Err(err) = state
        .mailer
        .enqueue(
            &state.jobs,
            "invitation",
            std::slice::from_ref(&invitation.invitation.email),
            &context,
        )
        .await
    {
        // The invitation stands (its token is in this answer); say so.
        tracing::warn!(error = %err, "invitation created but its email could not be queued");
    }
    Ok((StatusCode::CREATED, Json(invitation)))
}

/// `GET .../invitations` (admins), newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/invitations", tag = "orgs", params(("org" = String, Path, description = "Org slug")), security(("bearer" = [])), responses((status = 200, body = ListResponse<crate::accounts::invitations::Invitation>), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "The caller's role is too low", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such org, or the caller is not a member (the same answer)", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn list_invitations(
    State(accounts): State<Accounts>,
    access: OrgAccess,
) -> Result<ListResponse<crate::accounts::invitations::Invitation>, ApiError> {
    access.require(Role::Admin)?;
    Ok(ListResponse { items: accounts.list_invitations(access.org()).await?, next_cursor: None })
}
