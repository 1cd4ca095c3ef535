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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PasswordResetRequest {
    pub email: String,
}

/// Always 202, whether or not the email names a user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PasswordResetAccepted {
    pub detail: &'static str,
}

#[utoipa::path(post, path = "/api/v1/auth/password_reset", tag = "auth", request_body = PasswordResetRequest, responses((status = 202, description = "Always: when the email names an active user, a single-use link valid one hour is emailed (at most three an hour)", body = PasswordResetAccepted)))]
pub async fn password_reset(
    State(state): State<super::AppState>,
    ApiJson(body): ApiJson<PasswordResetRequest>,
) -> (StatusCode, Json<PasswordResetAccepted>) {
    // The answer and its timing are the same for every email: the work
    // happens after it.
    tokio::spawn(async move {
        if let Err(err) = send_reset(&state, &body.email).await {
            tracing::error!(error = %err, "password reset: could not start or send");
        }
    });
    (
        StatusCode::ACCEPTED,
        Json(PasswordResetAccepted {
            detail: "If an account uses this email, a link to reset its password is on its way.",
        }),
    )
}

async fn send_reset(state: &super::AppState, email: &str) -> anyhow::Result<()> {
    let Some(reset) = state.accounts.start_password_reset(email).await? else {
        return Ok(());
    };
    let reset_url = format!("{}/reset-password#token={}", state.mailer.public_url(), reset.token);
    let context = serde_json::json!({ "email": reset.user.email, "reset_url": reset_url });
    state
        .mailer
        .enqueue(&state.jobs, "password_reset", std::slice::from_ref(&reset.user.email), &context)
        .await?;
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewPassword {
    pub password: String,
}

#[utoipa::path(post, path = "/api/v1/auth/password_reset/{token}", tag = "auth", params(("token" = String, Path, description = "The token from the emailed link")), request_body = NewPassword, responses((status = 204, description = "Password set; every session of the user ended; the link is spent"), (status = 400, description = "Unknown, used or expired link (`invalid_reset_token`)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "The password fails the policy", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn finish_password_reset(
    State(accounts): State<Accounts>,
    axum::extract::Path(token): axum::extract::Path<String>,
    ApiJson(body): ApiJson<NewPassword>,
) -> Result<StatusCode, ApiError> {
    accounts.finish_password_reset(&token, body.password).await?;
    Ok(StatusCode::NO_CONTENT)
}
