//! `POST /api/v1/signup` (only with `SIGNUP_CODE`) and
//! `POST /api/v1/invitations/{token}/accept`.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use tenancy::{OrgId, Slug};

use super::AppState;
use super::extract::{ApiJson, Caller, ClientAddr};
use crate::accounts::invitations::Invitee;
use crate::accounts::users::{NewUser, User};
use crate::accounts::{Actor, Email, Role};
use crate::error::ApiError;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SignupRequest {
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub name: String,
    pub code: String,
    /// Also create an org, owned by the new user.
    pub org: Option<SignupOrg>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SignupOrg {
    pub name: String,
    pub slug: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignupResponse {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user: User,
    pub org: Option<SignedUpOrg>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignedUpOrg {
    #[schema(value_type = uuid::Uuid)]
    pub id: OrgId,
    pub slug: String,
    pub name: String,
    pub role: Role,
}

/// Equal-time comparison, so the code cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[utoipa::path(post, path = "/api/v1/signup", tag = "auth", request_body = SignupRequest, responses((status = 201, body = SignupResponse), (status = 403, description = "Sign-up closed, or wrong code", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Email or slug taken", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Invalid email, password or slug", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn signup(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<SignupRequest>,
) -> Result<(StatusCode, Json<SignupResponse>), ApiError> {
    let Some(code) = &state.config.signup_code else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "signup_disabled",
            "Sign-up is closed on this server.",
        ));
    };
    if !same(code.expose_secret().as_bytes(), body.code.as_bytes()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_signup_code",
            "That sign-up code is not valid.",
        ));
    }
    let email = Email::parse(&body.email)?;
    let org_slug = match &body.org {
        Some(org) => Some(match org.slug.as_deref() {
            Some(slug) => Slug::parse(slug).map_err(|e| {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_slug", format!("slug {e}"))
            })?,
            None => Slug::suggest(&org.name).ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_slug",
                    "cannot derive a slug from the org name; send one",
                )
            })?,
        }),
        None => None,
    };
    if let Some(slug) = &org_slug
        && state.orgs.by_slug(slug).await?.is_some()
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "slug_taken",
            format!("the slug '{slug}' is already taken"),
        ));
    }
    let new = NewUser {
        email: &email,
        name: &body.name,
        password: Some(body.password),
        platform_admin: false,
    };
    let user = state.accounts.create_user(&Actor::System, new).await?;
    let org = match (body.org, org_slug) {
        (Some(org), Some(slug)) => {
            let created = state.orgs.create(&org.name, &slug).await?;
            let actor = Actor::User { id: user.id, email: user.email.clone() };
            state.accounts.record_org_created(&actor, &created).await?;
            state.accounts.add_owner(&actor, &created, user.id).await?;
            Some(SignedUpOrg {
                id: created.id,
                slug: created.slug.to_string(),
                name: created.name,
                role: Role::Owner,
            })
        }
        _ => None,
    };
    let session = state.accounts.create_session(user.id, "auth.signup", client).await?;
    Ok((
        StatusCode::CREATED,
        Json(SignupResponse {
            token: session.token,
            expires_at: session.expires_at,
            user: session.user,
            org,
        }),
    ))
}

#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
pub struct AcceptRequest {
    /// For an invitee without an account: the new account's password.
    pub password: Option<String>,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AcceptResponse {
    #[schema(value_type = uuid::Uuid)]
    pub org_id: OrgId,
    pub role: Role,
    pub user_id: uuid::Uuid,
    /// A session token when accepting created the account.
    pub token: Option<String>,
}

/// A caller who may or may not have signed in.
pub struct MaybeCaller(Option<Caller>);

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if !parts.headers.contains_key(axum::http::header::AUTHORIZATION) {
            return Ok(MaybeCaller(None));
        }
        Ok(MaybeCaller(Some(Caller::from_request_parts(parts, state).await?)))
    }
}

#[utoipa::path(post, path = "/api/v1/invitations/{token}/accept", tag = "orgs", params(("token" = String, Path, description = "The invitation token")), request_body(content = Option<AcceptRequest>, description = "Only to create the invited account"), responses((status = 200, body = AcceptResponse), (status = 401, description = "Neither signed in nor creating the account", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Signed in as another email", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "No such invitation", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "The account exists: sign in first", body = crate::error::Problem, content_type = "application/problem+json"), (status = 410, description = "Already used, or expired", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn accept(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    ClientAddr(client): ClientAddr,
    Path(token): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<AcceptResponse>, ApiError> {
    // The body is optional: a signed-in invitee sends none.
    let body: AcceptRequest = if body.iter().all(u8::is_ascii_whitespace) {
        AcceptRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request("malformed_json", e.to_string()))?
    };
    let invitee = match (caller.and_then(|c| c.0.user_id()), body.password) {
        (Some(user_id), _) => Invitee::SignedIn { user_id },
        (None, Some(password)) => Invitee::NewAccount { password, name: body.name, client },
        (None, None) => {
            return Err(ApiError::unauthorized(
                "Sign in to accept, or send {\"password\": ...} to create the invited account.",
            ));
        }
    };
    let accepted = state.accounts.accept_invitation(&token, invitee).await?;
    let event = serde_json::json!({ "user_id": accepted.user_id, "role": accepted.role, "via": "invitation" });
    crate::webhooks::emit(&state.jobs, accepted.org_id, vec![("member.added", event)]).await;
    Ok(Json(AcceptResponse {
        org_id: accepted.org_id,
        role: accepted.role,
        user_id: accepted.user_id,
        token: accepted.session.map(|s| s.token),
    }))
}
