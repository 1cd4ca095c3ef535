//! `POST /api/v1/auth/login`, `POST /api/v1/auth/logout`, `GET /api/v1/me`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::extract::{ApiJson, Caller, ClientAddr};
use crate::accounts::auth::{Accounts, Principal};
use crate::accounts::members::Membership;
use crate::accounts::users::User;
use crate::error::ApiError;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoginResponse {
    /// The session token, shown once. Send it as `Authorization: Bearer`.
    pub token: String,
    pub token_type: &'static str,
    pub expires_at: DateTime<Utc>,
    pub user: User,
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest, responses((status = 200, body = LoginResponse), (status = 401, description = "Wrong email or password (the same for unknown emails)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 429, description = "Too many failures; see Retry-After", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn login(
    State(accounts): State<Accounts>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let session = accounts.login(&body.email, body.password, client).await?;
    Ok(Json(LoginResponse {
        token: session.token,
        token_type: "Bearer",
        expires_at: session.expires_at,
        user: session.user,
    }))
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])), responses((status = 204, description = "Session ended"), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json"), (status = 400, description = "Not a session (an API key)", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn logout(
    State(accounts): State<Accounts>,
    Caller(caller): Caller,
) -> Result<StatusCode, ApiError> {
    match &caller {
        Principal::User { session_id: Some(session_id), .. } => {
            accounts.logout(&caller.actor(), *session_id).await?;
            Ok(StatusCode::NO_CONTENT)
        }
        Principal::User { session_id: None, .. } => Err(ApiError::bad_request(
            "not_a_session",
            "Signed in by the trusted proxy's header; sign out at the proxy.",
        )),
        Principal::ApiKey { .. } => Err(ApiError::bad_request(
            "not_a_session",
            "API keys are revoked with DELETE /api/v1/orgs/{org}/api_keys/{id}.",
        )),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Me {
    User {
        user: User,
        memberships: Vec<Membership>,
    },
    ApiKey {
        id: uuid::Uuid,
        name: String,
        role: crate::accounts::Role,
        #[schema(value_type = uuid::Uuid)]
        org_id: tenancy::OrgId,
    },
}

#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])), responses((status = 200, body = Me), (status = 401, description = "Missing, unknown, expired or revoked token", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn me(
    State(accounts): State<Accounts>,
    Caller(caller): Caller,
) -> Result<Json<Me>, ApiError> {
    match caller {
        Principal::User { user_id, .. } => {
            let user = accounts
                .user(user_id)
                .await?
                .ok_or_else(|| ApiError::unauthorized("The token's user no longer exists."))?;
            let memberships = accounts.memberships_of(user_id).await?;
            Ok(Json(Me::User { user, memberships }))
        }
        Principal::ApiKey { key_id, name, role, org_id, .. } => {
            Ok(Json(Me::ApiKey { id: key_id, name, role, org_id }))
        }
    }
}
