//! Single sign-on through an OpenID Connect provider (see [`crate::oidc`]):
//! `GET /api/v1/auth/oidc/login`, `GET /api/v1/auth/oidc/callback`,
//! `POST /api/v1/auth/oidc/exchange`.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::auth::LoginResponse;
use super::extract::{ApiJson, ClientAddr};
use crate::accounts::Email;
use crate::accounts::identities::{IdentityMatch, VerifiedIdentity};
use crate::error::ApiError;
use crate::oidc::{FLOW_TTL, Oidc, OidcError, STATE_COOKIE};

const COOKIE_PATH: &str = "/api/v1/auth/oidc";

impl From<OidcError> for ApiError {
    fn from(err: OidcError) -> Self {
        let detail = err.to_string();
        match err {
            OidcError::Unavailable(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "oidc_provider_unavailable", detail)
            }
            OidcError::StateMismatch => ApiError::bad_request("oidc_state_mismatch", detail),
            OidcError::FlowExpired => ApiError::bad_request("oidc_flow_expired", detail),
            OidcError::InvalidNext => ApiError::bad_request("invalid_next", detail),
            OidcError::Denied(_) => ApiError::new(StatusCode::UNAUTHORIZED, "oidc_denied", detail),
            OidcError::CodeRejected(_) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "oidc_code_rejected", detail)
            }
            OidcError::InvalidToken(_) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "oidc_invalid_token", detail)
            }
            OidcError::UnknownCode => {
                ApiError::new(StatusCode::UNAUTHORIZED, "oidc_unknown_code", detail)
            }
            OidcError::NoEmail => ApiError::new(StatusCode::FORBIDDEN, "oidc_no_email", detail),
            OidcError::EmailUnverified => {
                ApiError::new(StatusCode::FORBIDDEN, "oidc_email_unverified", detail)
            }
            OidcError::Redis(e) => ApiError::internal(e),
        }
    }
}

fn configured(state: &AppState) -> Result<&Oidc, ApiError> {
    state.oidc.as_ref().ok_or_else(|| {
        ApiError::not_found(
            "oidc_not_configured",
            "Single sign-on is not configured on this server (OIDC_ISSUER).",
        )
    })
}

/// The state cookie: `value` for `max_age` seconds (0 clears it). Secure
/// whenever our callback is served over https.
fn state_cookie(state: &AppState, value: &str, max_age: u64) -> Result<HeaderValue, ApiError> {
    let secure = state.config.oidc.as_ref().is_some_and(|o| o.redirect_url.starts_with("https://"));
    let cookie = format!(
        "{STATE_COOKIE}={value}; Path={COOKIE_PATH}; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&cookie).map_err(ApiError::internal)
}

fn see_other(location: &str) -> Result<Response, ApiError> {
    let location = HeaderValue::from_str(location)
        .map_err(|_| ApiError::bad_request("invalid_next", "`next` is not a valid path."))?;
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct LoginQuery {
    /// Where to return after signing in: a path on this site (default `/`).
    pub next: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/auth/oidc/login", tag = "auth", params(LoginQuery), responses((status = 303, description = "To the identity provider; sets the sign-in's state cookie"), (status = 400, description = "`next` is not a path on this site", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Single sign-on is not configured", body = crate::error::Problem, content_type = "application/problem+json"), (status = 502, description = "The provider's discovery document could not be read", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn login(
    State(state): State<AppState>,
    Query(query): Query<LoginQuery>,
) -> Result<Response, ApiError> {
    let oidc = configured(&state)?;
    let started = oidc.start(query.next.as_deref()).await?;
    let mut response = see_other(started.authorize_url.as_str())?;
    response
        .headers_mut()
        .insert(header::SET_COOKIE, state_cookie(&state, &started.state, FLOW_TTL.as_secs())?);
    Ok(response)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    /// Set by the provider when it refused (e.g. `access_denied`).
    pub error: Option<String>,
    pub error_description: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/auth/oidc/callback", tag = "auth", params(CallbackQuery), responses((status = 303, description = "Signed in: to `next` with `#oidc_code=...`, a single-use code for POST /api/v1/auth/oidc/exchange (two minutes)"), (status = 400, description = "The state does not match this browser's, or the sign-in expired or was used", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "The provider refused, or its code or ID token failed a check (signature, issuer, audience, expiry, nonce)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "No verified email, or the account is deactivated", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn callback(
    State(state): State<AppState>,
    Query(query): Query<CallbackQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let oidc = configured(&state)?;
    let clear = state_cookie(&state, "", 0)?;
    let (mut response, outcome) = match finish(&state, oidc, query, &headers).await {
        Ok((location, how)) => (see_other(&location)?, how),
        Err(err) => (err.into_response(), "refused"),
    };
    metrics::counter!("orgstack_oidc_sign_ins_total", "outcome" => outcome).increment(1);
    // The state was for this one sign-in: the cookie goes whatever happened.
    response.headers_mut().insert(header::SET_COOKIE, clear);
    Ok(response)
}

/// Checks the provider's answer and finds the user; the redirect to `next`
/// carrying a sign-in code, and how the user was matched (for the metric).
async fn finish(
    state: &AppState,
    oidc: &Oidc,
    query: CallbackQuery,
    headers: &HeaderMap,
) -> Result<(String, &'static str), ApiError> {
    if let Some(error) = query.error {
        let description = query.error_description.unwrap_or_default();
        return Err(OidcError::Denied(format!("{error} {description}").trim().to_owned()).into());
    }
    let (Some(code), Some(flow_state)) = (query.code, query.state) else {
        return Err(ApiError::bad_request(
            "oidc_missing_code",
            "The provider's answer has no `code` and `state`.",
        ));
    };
    let cookie = cookie_value(headers, STATE_COOKIE);
    let signed_in = oidc.finish(&flow_state, cookie.as_deref(), &code).await?;
    let email = Email::parse(&signed_in.email)?;
    let identity = VerifiedIdentity {
        issuer: &signed_in.issuer,
        subject: &signed_in.subject,
        email: &email,
        name: &signed_in.name,
    };
    let (user, how) = state.accounts.user_for_identity(&identity).await?;
    let code = oidc.issue_login_code(user.id).await?;
    let how = match how {
        IdentityMatch::Linked => "linked",
        IdentityMatch::ByEmail => "by_email",
        IdentityMatch::Created => "created",
    };
    Ok((format!("{}#oidc_code={code}", signed_in.next), how))
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ExchangeRequest {
    /// The `oidc_code` from the callback's redirect.
    pub code: String,
}

#[utoipa::path(post, path = "/api/v1/auth/oidc/exchange", tag = "auth", request_body = ExchangeRequest, responses((status = 200, body = LoginResponse), (status = 401, description = "Unknown, expired or already used code", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Single sign-on is not configured", body = crate::error::Problem, content_type = "application/problem+json")))]
pub async fn exchange(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<ExchangeRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let oidc = configured(&state)?;
    let user_id = oidc.redeem_login_code(&body.code).await?;
    let session = state.accounts.create_session(user_id, "auth.oidc_login", client).await?;
    Ok(Json(LoginResponse {
        token: session.token,
        token_type: "Bearer",
        expires_at: session.expires_at,
        user: session.user,
    }))
}
