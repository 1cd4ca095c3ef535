//! OpenID Connect sign-in: the authorization-code flow with PKCE, state and
//! nonce, with the ID token checked against the issuer's keys (signature,
//! issuer, audience, expiry, nonce) by the `openidconnect` crate.
//!
//! The flow, all under `/api/v1/auth/oidc`:
//! 1. `GET /login?next=/path`: a new state, nonce and PKCE verifier are kept
//!    in Redis for ten minutes under the state's hash; the browser gets the
//!    state in an HttpOnly cookie and is sent to the provider.
//! 2. `GET /callback?code&state`: the state must match the cookie and is used
//!    once (`GETDEL`); the code is exchanged with the verifier and the ID
//!    token checked; the user is found or created by
//!    [`crate::accounts::auth::Accounts::user_for_identity`]. The browser is
//!    sent to `next` with a single-use sign-in code in the fragment
//!    (`#oidc_code=...`, two minutes), never the session token itself.
//! 3. `POST /exchange {code}`: the frontend trades the code for a session,
//!    as `POST /api/v1/auth/login` answers.
//!
//! The provider's metadata and keys are fetched on first use and kept for
//! fifteen minutes; an ID token signed by a key we do not know yet fetches
//! them again at once (key rotation).

use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::KeysInterface;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreIdTokenClaims, CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, UserInfoClaims,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use tenancy::RedisKeys;
use uuid::Uuid;

use crate::config::OidcConfig;

/// How long a started sign-in may take at the provider.
pub const FLOW_TTL: Duration = Duration::from_secs(600);
/// How long the sign-in code handed to the frontend is good for.
pub const LOGIN_CODE_TTL: Duration = Duration::from_secs(120);
/// How long discovered metadata and keys are trusted before a refresh.
const METADATA_TTL: Duration = Duration::from_secs(900);
/// A refresh forced by an unknown signing key waits at least this long
/// after the last one (a forged token cannot make us hammer the provider).
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// The cookie binding a started sign-in to the browser that started it.
pub const STATE_COOKIE: &str = "orgstack_oidc_state";

type Provider = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why a sign-in through the provider failed.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider could not be reached or answered wrongly: {0}")]
    Unavailable(String),
    #[error("this sign-in was not started in this browser, or was already used; start again")]
    StateMismatch,
    #[error("this sign-in expired or was already used; start again")]
    FlowExpired,
    #[error("the identity provider refused the sign-in: {0}")]
    Denied(String),
    #[error("the identity provider did not accept the authorization code: {0}")]
    CodeRejected(String),
    #[error("the ID token failed verification: {0}")]
    InvalidToken(String),
    #[error("the identity provider gave no email for this account")]
    NoEmail,
    #[error("the identity provider has not verified this account's email")]
    EmailUnverified,
    #[error("`next` must be a path on this site, such as /orgs")]
    InvalidNext,
    #[error("unknown or expired sign-in code")]
    UnknownCode,
    #[error("redis error: {0}")]
    Redis(#[from] fred::error::Error),
}

/// What the provider vouched for, after every check.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub issuer: String,
    pub subject: String,
    /// Verified by the provider (unverified emails are refused).
    pub email: String,
    pub name: String,
    /// Where the browser goes next (a path on this site).
    pub next: String,
}

/// A started sign-in: send the browser to `authorize_url` with `state` in
/// the [`STATE_COOKIE`].
#[derive(Debug)]
pub struct Started {
    pub authorize_url: url::Url,
    pub state: String,
}

/// What Redis keeps of a started sign-in.
#[derive(Serialize, Deserialize)]
struct Flow {
    verifier: String,
    nonce: String,
    next: String,
}

/// The relying party. Cheap to clone.
#[derive(Clone)]
pub struct Oidc {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc").field("issuer", &self.inner.config.issuer).finish_non_exhaustive()
    }
}

struct Inner {
    config: OidcConfig,
    http: reqwest::Client,
    redis: fred::clients::Client,
    keys: RedisKeys,
    provider: tokio::sync::Mutex<Option<(Instant, Arc<Provider>)>>,
}

impl Oidc {
    pub fn new(
        config: OidcConfig,
        redis: fred::clients::Client,
        keys: RedisKeys,
    ) -> Result<Self, OidcError> {
        let http = reqwest::Client::builder()
            // Following redirects would let a provider's answer send us
            // anywhere (server-side request forgery).
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| OidcError::Unavailable(e.to_string()))?;
        Ok(Oidc {
            inner: Arc::new(Inner {
                config,
                http,
                redis,
                keys,
                provider: tokio::sync::Mutex::new(None),
            }),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.inner.config.issuer
    }

    /// The provider's client, discovered on first use and refreshed after
    /// [`METADATA_TTL`] (or sooner when `stale_before` is later than the
    /// copy we hold).
    async fn provider(&self, stale_before: Option<Instant>) -> Result<Arc<Provider>, OidcError> {
        let mut held = self.inner.provider.lock().await;
        if let Some((fetched, provider)) = held.as_ref() {
            let fresh = fetched.elapsed() < METADATA_TTL;
            let wanted_newer = stale_before.is_some_and(|t| *fetched < t);
            if fresh && !wanted_newer {
                return Ok(provider.clone());
            }
        }
        let config = &self.inner.config;
        let issuer = IssuerUrl::new(config.issuer.clone())
            .map_err(|e| OidcError::Unavailable(format!("OIDC_ISSUER: {e}")))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.inner.http)
            .await
            .map_err(|e| OidcError::Unavailable(format!("discovery: {}", error_chain(&e))))?;
        let redirect = RedirectUrl::new(config.redirect_url.clone())
            .map_err(|e| OidcError::Unavailable(format!("OIDC_REDIRECT_URL: {e}")))?;
        let provider = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(config.client_id.clone()),
            config.client_secret.as_ref().map(|s| ClientSecret::new(s.expose_secret().to_owned())),
        )
        .set_redirect_uri(redirect);
        let provider = Arc::new(provider);
        *held = Some((Instant::now(), provider.clone()));
        Ok(provider)
    }

    /// Starts a sign-in that returns the browser to `next` (a path here).
    pub async fn start(&self, next: Option<&str>) -> Result<Started, OidcError> {
        let next = safe_next(next)?;
        let provider = self.provider(None).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (authorize_url, state, nonce) = provider
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".to_owned()))
            .add_scope(Scope::new("profile".to_owned()))
            .set_pkce_challenge(challenge)
            .url();
        let flow =
            Flow { verifier: verifier.secret().to_owned(), nonce: nonce.secret().to_owned(), next };
        let value =
            serde_json::to_string(&flow).map_err(|e| OidcError::Unavailable(e.to_string()))?;
        let () = self
            .inner
            .redis
            .set(
                self.flow_key(state.secret()),
                value,
                Some(fred::types::Expiration::EX(FLOW_TTL.as_secs() as i64)),
                None,
                false,
            )
            .await?;
        Ok(Started { authorize_url, state: state.secret().to_owned() })
    }

    /// Finishes the sign-in the provider sent back: `state` from the query
    /// must equal `cookie_state`, and is used up whatever happens next.
    pub async fn finish(
        &self,
        state: &str,
        cookie_state: Option<&str>,
        code: &str,
    ) -> Result<SignedIn, OidcError> {
        if cookie_state != Some(state) {
            return Err(OidcError::StateMismatch);
        }
        let stored: Option<String> = self.inner.redis.getdel(self.flow_key(state)).await?;
        let flow: Flow =
            stored.and_then(|s| serde_json::from_str(&s).ok()).ok_or(OidcError::FlowExpired)?;
        let provider = self.provider(None).await?;
        let response = provider
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Unavailable(format!("token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier))
            .request_async(&self.inner.http)
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(r) => {
                    OidcError::CodeRejected(r.to_string())
                }
                other => OidcError::Unavailable(format!("token endpoint: {}", error_chain(&other))),
            })?;
        let id_token = response
            .id_token()
            .ok_or_else(|| OidcError::InvalidToken("the provider sent no ID token".to_owned()))?;
        let nonce = Nonce::new(flow.nonce);
        let claims: CoreIdTokenClaims = match id_token.claims(&provider.id_token_verifier(), &nonce)
        {
            Ok(claims) => claims.clone(),
            // Perhaps signed by a key the provider rotated in since we
            // fetched its keys: fetch them again, once, and check again.
            Err(ClaimsVerificationError::SignatureVerification(_)) => {
                let provider = self.provider(Some(Instant::now() - MIN_REFRESH_INTERVAL)).await?;
                id_token
                    .claims(&provider.id_token_verifier(), &nonce)
                    .map_err(|e| OidcError::InvalidToken(e.to_string()))?
                    .clone()
            }
            Err(err) => return Err(OidcError::InvalidToken(err.to_string())),
        };
        let mut email = claims.email().map(|e| e.as_str().to_owned());
        let mut verified = claims.email_verified();
        let mut name = claims.name().and_then(|n| n.get(None)).map(|n| n.as_str().to_owned());
        if email.is_none() {
            // Some providers put the email only in the userinfo answer.
            let info = self.userinfo(&provider, response.access_token(), claims.subject()).await?;
            email = info.email().map(|e| e.as_str().to_owned());
            verified = info.email_verified();
            name = name.or_else(|| info.name().and_then(|n| n.get(None)).map(|n| n.to_string()));
        }
        let email = email.ok_or(OidcError::NoEmail)?;
        if verified != Some(true) {
            return Err(OidcError::EmailUnverified);
        }
        Ok(SignedIn {
            issuer: claims.issuer().as_str().to_owned(),
            subject: claims.subject().as_str().to_owned(),
            email,
            name: name.unwrap_or_default(),
            next: flow.next,
        })
    }

    async fn userinfo(
        &self,
        provider: &Provider,
        access_token: &openidconnect::AccessToken,
        subject: &openidconnect::SubjectIdentifier,
    ) -> Result<UserInfoClaims<openidconnect::EmptyAdditionalClaims, CoreGenderClaim>, OidcError>
    {
        provider
            .user_info(access_token.clone(), Some(subject.clone()))
            .map_err(|_| OidcError::NoEmail)?
            .request_async(&self.inner.http)
            .await
            .map_err(|e| OidcError::Unavailable(format!("userinfo: {}", error_chain(&e))))
    }

    /// A single-use code the frontend trades for a session of `user_id`.
    pub async fn issue_login_code(&self, user_id: Uuid) -> Result<String, OidcError> {
        let code = crate::accounts::tokens::new_session_token();
        let () = self
            .inner
            .redis
            .set(
                self.code_key(&code),
                user_id.to_string(),
                Some(fred::types::Expiration::EX(LOGIN_CODE_TTL.as_secs() as i64)),
                None,
                false,
            )
            .await?;
        Ok(code)
    }

    /// The user a sign-in code was issued for; the code is used up.
    pub async fn redeem_login_code(&self, code: &str) -> Result<Uuid, OidcError> {
        let user: Option<String> = self.inner.redis.getdel(self.code_key(code)).await?;
        user.and_then(|u| u.parse().ok()).ok_or(OidcError::UnknownCode)
    }

    fn flow_key(&self, state: &str) -> String {
        self.inner.keys.auth_key("oidc-flow", &hex(&crate::accounts::tokens::hash(state)))
    }

    fn code_key(&self, code: &str) -> String {
        self.inner.keys.auth_key("oidc-code", &hex(&crate::accounts::tokens::hash(code)))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `next` as a path on this site: `/` when absent; never another site
/// (`//host`, `https://...`, backslashes) nor a fragment of its own.
fn safe_next(next: Option<&str>) -> Result<String, OidcError> {
    let Some(next) = next.filter(|n| !n.is_empty()) else {
        return Ok("/".to_owned());
    };
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.contains('#')
        && next.len() <= 2000
        && !next.chars().any(char::is_control);
    if ok { Ok(next.to_owned()) } else { Err(OidcError::InvalidNext) }
}

/// An error and its sources on one line (the crate's top-level messages
/// alone say little, e.g. "Request failed").
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(None).ok().as_deref(), Some("/"));
        assert_eq!(
            safe_next(Some("/orgs/acme?tab=jobs")).ok().as_deref(),
            Some("/orgs/acme?tab=jobs")
        );
        for bad in
            ["//evil.example", "https://evil.example/", "/\\evil.example", "orgs", "/a#b", "/a\nb"]
        {
            assert!(matches!(safe_next(Some(bad)), Err(OidcError::InvalidNext)), "{bad}");
        }
    }
}
