//! Extractors of our own: a JSON body whose rejections are problem+json,
//! the bearer-token caller, an org the caller may act in, and pagination.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use tenancy::{Org, OrgRegistry};

use super::OrgScope;
use crate::accounts::auth::{Accounts, Principal};
use crate::accounts::members::Acting;
use crate::accounts::{Actor, Role};
use crate::config::Config;
use crate::error::ApiError;

/// `Json<T>` with problem+json rejections.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => {
                let status = rejection.status();
                let code = match status {
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                    StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
                    StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
                    _ => "malformed_json",
                };
                Err(ApiError::new(status, code, rejection.body_text()))
            }
        }
    }
}

/// The caller, from `Authorization: Bearer <session token or API key>`.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<S> FromRequestParts<S> for Caller
where
    Accounts: FromRef<S>,
    Arc<Config>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Some(header) = parts.headers.get(header::AUTHORIZATION) else {
            if let Some(principal) = trusted_header_user(parts, state).await? {
                return Ok(Caller(principal));
            }
            return Err(ApiError::unauthorized("Send Authorization: Bearer <token>."));
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .ok_or_else(|| ApiError::unauthorized("Send Authorization: Bearer <token>."))?;
        let accounts = Accounts::from_ref(state);
        let principal = accounts
            .authenticate(token)
            .await?
            .ok_or_else(|| ApiError::unauthorized("The token is unknown, expired or revoked."))?;
        if let Principal::User { user_id, .. } = &principal {
            tracing::Span::current().record("user_id", tracing::field::display(user_id));
        }
        Ok(Caller(principal))
    }
}

/// Trusted-header sign-in: the user named by `AUTH_TRUSTED_HEADER`, when
/// the request comes from one of `TRUSTED_PROXIES`. The header is ignored,
/// and logged as suspicious, from any other address.
async fn trusted_header_user<S>(parts: &mut Parts, state: &S) -> Result<Option<Principal>, ApiError>
where
    Accounts: FromRef<S>,
    Arc<Config>: FromRef<S>,
    S: Send + Sync,
{
    let config = Arc::<Config>::from_ref(state);
    let (Some(trusted), Some(secret)) = (&config.trusted_header, &config.secret_key) else {
        return Ok(None);
    };
    let Some(value) = parts.headers.get(&trusted.header).cloned() else {
        return Ok(None);
    };
    let Ok(ClientAddr(peer)) = ClientAddr::from_request_parts(parts, state).await;
    if !trusted.proxies.iter().any(|net| net.contains(&peer)) {
        tracing::warn!(client = %peer, header = %trusted.header, "ignored a trusted sign-in header from an untrusted address");
        return Ok(None);
    }
    let id = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.len() <= 256)
        .ok_or_else(|| ApiError::unauthorized("The trusted sign-in header is empty or invalid."))?;
    let accounts = Accounts::from_ref(state);
    let principal =
        accounts.trusted_user(id, secrecy::ExposeSecret::expose_secret(secret).as_bytes()).await?;
    principal.map(Some).ok_or_else(|| ApiError::unauthorized("That user is deactivated."))
}

impl Caller {
    /// 403 unless the caller is a platform admin (signed in as a user).
    pub fn require_platform_admin(&self) -> Result<(), ApiError> {
        if self.0.is_platform_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden("Only platform admins may do this."))
        }
    }

    pub fn actor(&self) -> Actor {
        self.0.actor()
    }
}

/// An active org from `{org}` that the caller belongs to, with the caller's
/// role there. A caller who is not a member gets the same 404 as for an org
/// that does not exist.
#[derive(Debug, Clone)]
pub struct OrgAccess {
    pub scope: OrgScope,
    pub caller: Principal,
    pub role: Role,
}

impl<S> FromRequestParts<S> for OrgAccess
where
    Accounts: FromRef<S>,
    Arc<Config>: FromRef<S>,
    OrgRegistry: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Caller(caller) = Caller::from_request_parts(parts, state).await?;
        let scope = OrgScope::from_request_parts(parts, state).await?;
        let accounts = Accounts::from_ref(state);
        let role = accounts
            .role_in(&caller, scope.org())
            .await?
            .ok_or_else(|| super::org::not_found(scope.org().slug.as_str()))?;
        Ok(OrgAccess { scope, caller, role })
    }
}

impl OrgAccess {
    pub fn org(&self) -> &Org {
        self.scope.org()
    }

    pub fn org_arc(&self) -> Arc<Org> {
        Arc::new(self.scope.org().clone())
    }

    /// 403 unless the caller's role is at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role.at_least(role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("This needs the {role} role in this org.")))
        }
    }

    /// The caller as the accounts services want it.
    pub fn acting(&self) -> Acting {
        Acting { actor: self.caller.actor(), role: self.role, user_id: self.caller.user_id() }
    }
}

/// `?limit=&cursor=` for cursor-paginated lists.
#[derive(Debug, Clone, serde::Deserialize, Default)]
pub struct PageParams {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Default and largest page sizes.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

/// Validated pagination.
#[derive(Debug, Clone)]
pub struct Page {
    pub limit: u32,
    pub cursor: Option<serde_json::Value>,
}

impl<S: Send + Sync> FromRequestParts<S> for Page {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(params) = Query::<PageParams>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
        let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(
                "invalid_limit",
                format!("limit must be 1 to {MAX_LIMIT}"),
            ));
        }
        let cursor = params
            .cursor
            .map(|c| {
                URL_SAFE_NO_PAD
                    .decode(c.as_bytes())
                    .ok()
                    .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                    .ok_or_else(|| {
                        ApiError::bad_request("invalid_cursor", "cursor is not one this API issued")
                    })
            })
            .transpose()?;
        Ok(Page { limit, cursor })
    }
}

impl Page {
    /// The cursor as the id a newest-first list continues after (the
    /// lists that page by uuid v7 ids: jobs, files, deliveries).
    pub fn after_id(&self) -> Result<Option<uuid::Uuid>, ApiError> {
        self.cursor
            .as_ref()
            .map(|c| {
                c.as_str().and_then(|s| s.parse::<uuid::Uuid>().ok()).ok_or_else(|| {
                    ApiError::bad_request("invalid_cursor", "cursor is not one this API issued")
                })
            })
            .transpose()
    }
}

/// Encodes a cursor for `next_cursor`.
pub fn encode_cursor(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// The client's address: the TCP peer, or, when the peer is one of
/// `TRUSTED_PROXIES`, the rightmost `X-Forwarded-For` entry that is not a
/// trusted proxy. `0.0.0.0` when the server was started without connect info.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::IpAddr);

impl<S> FromRequestParts<S> for ClientAddr
where
    Arc<Config>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |info| info.0.ip());
        let config = Arc::<Config>::from_ref(state);
        let Some(trusted) = &config.trusted_header else { return Ok(ClientAddr(peer)) };
        let is_proxy = |ip: &std::net::IpAddr| trusted.proxies.iter().any(|net| net.contains(ip));
        if !is_proxy(&peer) {
            return Ok(ClientAddr(peer));
        }
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
            .collect::<Vec<_>>();
        let client = forwarded.into_iter().rev().find(|ip| !is_proxy(ip)).unwrap_or(peer);
        Ok(ClientAddr(client))
    }
}
