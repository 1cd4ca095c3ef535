//! Signing in and resolving bearer tokens, with caches that every process
//! invalidates over Redis pub/sub.
//!
//! The hot path (a request with a known token, for an org whose membership
//! was seen recently) asks PostgreSQL nothing: principals are cached by token
//! hash and roles by (user, org). Any change to sessions, keys, memberships
//! or users is announced on `{prefix}:auth:changed`, and every listening
//! process drops both caches, so a revocation takes effect everywhere as
//! soon as the message arrives. Entries also expire after a minute, which
//! bounds how stale `last_used_at` is: it is written when an entry is loaded.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use fred::interfaces::LuaInterface;
use fred::prelude::KeysInterface;
use moka::sync::Cache;
use sqlx::{PgPool, Row};
use tenancy::{Listener, Org, OrgId, RedisKeys, invalidation};
use uuid::Uuid;

use super::users::User;
use super::{AccountsError, Actor, Email, Role, password, tokens};

const CACHE_TTL: Duration = Duration::from_secs(60);
/// Failed sign-ins per email before it is throttled.
pub const MAX_FAILURES_PER_EMAIL: i64 = 5;
/// Failed sign-ins per client address before it is throttled.
pub const MAX_FAILURES_PER_ADDRESS: i64 = 50;
/// Why a throttled sign-in is refused.
const TOO_MANY: &str = "too many failed sign-ins";
/// How long failures are counted (and a throttle lasts).
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Who a bearer token stands for.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    /// A user signed in with a session (`session_id`), or by a trusted
    /// proxy's header (no session).
    User {
        user_id: Uuid,
        email: String,
        is_platform_admin: bool,
        session_id: Option<Uuid>,
        expires_at: Option<DateTime<Utc>>,
    },
    /// An org API key, which acts in its one org with its role.
    ApiKey {
        key_id: Uuid,
        org_id: OrgId,
        role: Role,
        name: String,
        expires_at: Option<DateTime<Utc>>,
    },
}

impl Principal {
    pub fn actor(&self) -> Actor {
        match self {
            Principal::User { user_id, email, .. } => {
                Actor::User { id: *user_id, email: email.clone() }
            }
            Principal::ApiKey { key_id, name, .. } => {
                Actor::ApiKey { id: *key_id, name: name.clone() }
            }
        }
    }

    pub fn user_id(&self) -> Option<Uuid> {
        match self {
            Principal::User { user_id, .. } => Some(*user_id),
            Principal::ApiKey { .. } => None,
        }
    }

    pub fn is_platform_admin(&self) -> bool {
        matches!(self, Principal::User { is_platform_admin: true, .. })
    }

    fn expired(&self, now: DateTime<Utc>) -> bool {
        match self {
            Principal::User { expires_at, .. } => expires_at.is_some_and(|at| at <= now),
            Principal::ApiKey { expires_at, .. } => expires_at.is_some_and(|at| at <= now),
        }
    }
}

/// A new session, with the token shown once.
#[derive(Debug)]
pub struct NewSession {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user: User,
}

/// The accounts services: users, sessions, API keys, memberships and the
/// caches in front of them. Cheap to clone.
#[derive(Clone)]
pub struct Accounts {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts").finish_non_exhaustive()
    }
}

pub(super) struct Inner {
    pub(super) pool: PgPool,
    pub(super) redis: fred::clients::Client,
    pub(super) keys: RedisKeys,
    session_ttl: Duration,
    principals: Cache<[u8; 32], Option<Principal>>,
    /// Well-formed tokens that matched nothing (cleared with the rest).
    misses: Cache<[u8; 32], ()>,
    roles: Cache<(Uuid, OrgId), Option<Role>>,
    /// Bumped on every eviction; see `OrgRegistry` for why.
    generation: AtomicU64,
}

impl Accounts {
    pub fn new(
        pool: PgPool,
        redis: fred::clients::Client,
        keys: RedisKeys,
        session_ttl: Duration,
    ) -> Self {
        Accounts {
            inner: Arc::new(Inner {
                pool,
                redis,
                keys,
                session_ttl,
                principals: Cache::builder().max_capacity(200_000).time_to_live(CACHE_TTL).build(),
                roles: Cache::builder().max_capacity(200_000).time_to_live(CACHE_TTL).build(),
                misses: Cache::builder().max_capacity(10_000).time_to_live(CACHE_TTL).build(),
                generation: AtomicU64::new(0),
            }),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Applies other processes' changes to this process's caches until the
    /// listener is dropped.
    pub async fn listen(&self) -> Result<Listener, tenancy::TenancyError> {
        let accounts = self.clone();
        invalidation::listen(
            &self.inner.redis,
            self.inner.keys.auth_invalidation_channel(),
            move |_| accounts.evict_all(),
        )
        .await
    }

    /// Drops every cached principal and role in this process.
    pub fn evict_all(&self) {
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        self.inner.principals.invalidate_all();
        self.inner.roles.invalidate_all();
        self.inner.misses.invalidate_all();
    }

    /// Evicts locally and tells every other process that sessions, keys,
    /// memberships or users changed.
    pub(super) async fn announce(&self, what: &str) {
        self.evict_all();
        invalidation::announce(
            &self.inner.redis,
            self.inner.keys.auth_invalidation_channel(),
            what.to_owned(),
        )
        .await;
    }

    /// Signs in with email and password. Unknown emails, wrong passwords
    /// and inactive users get the same error after the same work.
    pub async fn login(
        &self,
        email: &str,
        password: String,
        client: IpAddr,
    ) -> Result<NewSession, AccountsError> {
        let email = Email::parse(email).ok();
        // The email is hashed: Redis key names are not a place for personal data.
        let email_id = hex(&tokens::hash(email.as_ref().map_or("-", Email::as_str)));
        let email_key = self.inner.keys.throttle_key("login-email", &email_id);
        let address_key = self.inner.keys.throttle_key("login-address", &client.to_string());
        // Attempts on one email run one at a time (a short Redis lock), and
        // each is counted before its password is checked: parallel guesses
        // cannot slip past the limit, and a request dropped mid-check still
        // counts. Per address only failures count (after the check), so
        // many people behind one address signing in at once are not refused.
        self.refuse_if_throttled(&address_key, MAX_FAILURES_PER_ADDRESS).await?;
        let locks = crate::locks::Locks::new(self.inner.redis.clone(), self.inner.keys.clone());
        let Some(turn) = locks
            .acquire(&format!("login:{email_id}"), Duration::from_secs(10), Duration::from_secs(5))
            .await?
        else {
            return Err(AccountsError::Throttled {
                reason: "another sign-in to this account is being checked",
                retry_after_secs: 1,
            });
        };
        let outcome = self.check_password(email.as_ref(), password, &email_key, &address_key).await;
        let _ = turn.release().await;
        let user_id = outcome?;
        let session = self.create_session(user_id, "auth.login", client).await?;
        Ok(session)
    }

    /// The password check of [`Accounts::login`], run while holding the
    /// email's turn.
    async fn check_password(
        &self,
        email: Option<&Email>,
        password: String,
        email_key: &str,
        address_key: &str,
    ) -> Result<Uuid, AccountsError> {
        self.count_attempt(email_key, MAX_FAILURES_PER_EMAIL, TOO_MANY).await?;
        let row = match email {
            Some(email) => {
                sqlx::query(
                    "SELECT id, password_hash, is_active FROM public.users WHERE email = $1",
                )
                .bind(email.as_str())
                .fetch_optional(&self.inner.pool)
                .await?
            }
            None => None,
        };
        let (user_id, stored) = match &row {
            Some(row) if row.try_get::<bool, _>("is_active")? => (
                Some(row.try_get::<Uuid, _>("id")?),
                row.try_get::<Option<String>, _>("password_hash")?,
            ),
            _ => (None, None),
        };
        let matches = password::verify(password, stored).await;
        let Some(user_id) = user_id.filter(|_| matches) else {
            if let Err(err) = self.count_attempt(address_key, i64::MAX, TOO_MANY).await {
                tracing::warn!(error = %err, "could not count a failed sign-in");
            }
            return Err(AccountsError::InvalidCredentials);
        };
        // A success forgives this email's failures (and this attempt).
        let _: Result<i64, _> = self.inner.redis.del(email_key).await;
        Ok(user_id)
    }

    /// Starts a session for `user_id` (after a sign-in, signup or accepted
    /// invitation) and records `action` in the platform audit log.
    pub async fn create_session(
        &self,
        user_id: Uuid,
        action: &str,
        client: IpAddr,
    ) -> Result<NewSession, AccountsError> {
        let token = tokens::new_session_token();
        let expires_at = Utc::now() + self.inner.session_ttl;
        let mut tx = self.inner.pool.begin().await?;
        sqlx::query("INSERT INTO public.sessions (id, user_id, token_hash, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(Uuid::now_v7())
            .bind(user_id)
            .bind(tokens::hash(&token).as_slice())
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        let user = sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(format!(
            "UPDATE public.users SET last_login_at = now() WHERE id = $1 RETURNING {}",
            super::users::USER_COLUMNS
        )))
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
        super::audit::record_platform(
            &mut tx,
            &Actor::User { id: user.id, email: user.email.clone() },
            action,
            Some(&user.id.to_string()),
            None,
            serde_json::json!({ "client": client.to_string() }),
        )
        .await?;
        tx.commit().await?;
        Ok(NewSession { token, expires_at, user })
    }

    /// Counts a sign-up attempt from `client`; refused past 20 in the window.
    pub async fn reserve_signup_attempt(&self, client: IpAddr) -> Result<(), AccountsError> {
        let key = self.inner.keys.throttle_key("signup-address", &client.to_string());
        self.count_attempt(&key, 20, "too many sign-ups from this address").await
    }

    /// Refuses when more than `max` attempts are already counted under `key`.
    async fn refuse_if_throttled(&self, key: &str, max: i64) -> Result<(), AccountsError> {
        let count: Option<i64> = self.inner.redis.get(key).await?;
        if count.unwrap_or(0) < max {
            return Ok(());
        }
        let ttl: i64 = self.inner.redis.ttl(key).await?;
        Err(AccountsError::Throttled { reason: TOO_MANY, retry_after_secs: ttl.max(1) as u64 })
    }

    /// Counts one attempt under `key` (the counter expires with the
    /// throttle window, set atomically with the increment) and refuses when
    /// more than `max` attempts are already counted.
    async fn count_attempt(
        &self,
        key: &str,
        max: i64,
        reason: &'static str,
    ) -> Result<(), AccountsError> {
        // INCR and the expiry in one script: works on Redis 6, and a counter
        // can never be left without a TTL (which would lock an email out).
        const SCRIPT: &str = "local n = redis.call('INCR', KEYS[1]) \
             if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end \
             return {n, redis.call('TTL', KEYS[1])}";
        let (count, ttl): (i64, i64) = self
            .inner
            .redis
            .eval(SCRIPT, vec![key.to_owned()], vec![THROTTLE_WINDOW.as_secs()])
            .await?;
        if count > max {
            return Err(AccountsError::Throttled { reason, retry_after_secs: ttl.max(1) as u64 });
        }
        Ok(())
    }

    /// Ends a session.
    pub async fn logout(&self, actor: &Actor, session_id: Uuid) -> Result<(), AccountsError> {
        let mut tx = self.inner.pool.begin().await?;
        sqlx::query(
            "UPDATE public.sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(session_id)
        .execute(&mut *tx)
        .await?;
        let target = session_id.to_string();
        super::audit::record_platform(
            &mut tx,
            actor,
            "auth.logout",
            Some(&target),
            None,
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        self.announce("session").await;
        Ok(())
    }

    /// Ends every session of a user (after a password change, deactivation).
    pub(super) async fn revoke_sessions_of(
        &self,
        conn: &mut sqlx::PgConnection,
        user_id: Uuid,
    ) -> Result<u64, AccountsError> {
        let done = sqlx::query("UPDATE public.sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL")
            .bind(user_id)
            .execute(conn)
            .await?;
        Ok(done.rows_affected())
    }

    /// The principal behind a bearer token, or `None` for an unknown,
    /// revoked or expired one (cached; no query on a hit).
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, AccountsError> {
        let hash = tokens::hash(token);
        let now = Utc::now();
        if let Some(principal) = self.inner.principals.get(&hash) {
            return Ok(principal.filter(|p| !p.expired(now)));
        }
        if let Some(()) = self.inner.misses.get(&hash) {
            return Ok(None);
        }
        let generation = self.inner.generation.load(Ordering::Acquire);
        let principal = if token.starts_with(tokens::SESSION_PREFIX) {
            self.load_session(&hash).await?
        } else if token.starts_with(tokens::API_KEY_PREFIX) {
            self.load_api_key(&hash).await?
        } else {
            // Not a token we issue: no query, nothing cached.
            return Ok(None);
        };
        match &principal {
            // Unknown tokens go to a small cache of their own, so random
            // tokens cannot push real sessions out of the principal cache.
            None => self.inner.misses.insert(hash, ()),
            Some(p) => self.cache_principal(hash, p.clone(), generation),
        }
        Ok(principal.filter(|p| !p.expired(now)))
    }

    /// Caches unless an eviction happened since `generation` was read; an
    /// eviction that lands between the check and the insert is caught by
    /// checking again afterwards.
    fn cache_principal(&self, key: [u8; 32], principal: Principal, generation: u64) {
        if self.inner.generation.load(Ordering::Acquire) != generation {
            return;
        }
        self.inner.principals.insert(key, Some(principal));
        if self.inner.generation.load(Ordering::Acquire) != generation {
            self.inner.principals.invalidate(&key);
        }
    }

    async fn load_session(&self, hash: &[u8; 32]) -> Result<Option<Principal>, AccountsError> {
        let row = sqlx::query(
            "UPDATE public.sessions s SET last_used_at = now() FROM public.users u \
             WHERE s.token_hash = $1 AND u.id = s.user_id AND s.revoked_at IS NULL \
               AND s.expires_at > now() AND u.is_active \
             RETURNING s.id, s.expires_at, u.id AS user_id, u.email, u.is_platform_admin",
        )
        .bind(hash.as_slice())
        .fetch_optional(&self.inner.pool)
        .await?;
        row.map(|row| {
            Ok(Principal::User {
                user_id: row.try_get("user_id")?,
                email: row.try_get("email")?,
                is_platform_admin: row.try_get("is_platform_admin")?,
                session_id: Some(row.try_get("id")?),
                expires_at: Some(row.try_get("expires_at")?),
            })
        })
        .transpose()
    }

    async fn load_api_key(&self, hash: &[u8; 32]) -> Result<Option<Principal>, AccountsError> {
        let row = sqlx::query(
            "UPDATE public.api_keys k SET last_used_at = now() FROM public.orgs o \
             WHERE k.token_hash = $1 AND o.id = k.org_id AND k.revoked_at IS NULL \
               AND (k.expires_at IS NULL OR k.expires_at > now()) \
             RETURNING k.id, k.org_id, k.role, k.name, k.expires_at",
        )
        .bind(hash.as_slice())
        .fetch_optional(&self.inner.pool)
        .await?;
        row.map(|row| {
            let role: String = row.try_get("role")?;
            Ok(Principal::ApiKey {
                key_id: row.try_get("id")?,
                org_id: OrgId::from_uuid(row.try_get("org_id")?),
                role: role.parse().map_err(|e: String| sqlx::Error::Decode(e.into()))?,
                name: row.try_get("name")?,
                expires_at: row.try_get("expires_at")?,
            })
        })
        .transpose()
        .map_err(AccountsError::Database)
    }

    /// The user a trusted proxy vouches for with `external_id` (created on
    /// first sight). Only an HMAC of the id under `secret` is stored.
    pub async fn trusted_user(
        &self,
        external_id: &str,
        secret: &[u8],
    ) -> Result<Option<Principal>, AccountsError> {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
            .map_err(|e| AccountsError::Hashing(e.to_string()))?;
        mac.update(external_id.as_bytes());
        let digest: [u8; 32] = mac.finalize().into_bytes().into();
        let cache_key = tokens::hash(&format!("trusted:{}", hex(&digest)));
        if let Some(principal) = self.inner.principals.get(&cache_key) {
            return Ok(principal);
        }
        let generation = self.inner.generation.load(Ordering::Acquire);
        let email = format!("ext-{}@trusted.invalid", &hex(&digest)[..16]);
        let mut tx = self.inner.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO public.users (id, email, name, external_id_hmac) VALUES ($1, $2, '', $3) \
             ON CONFLICT (external_id_hmac) WHERE external_id_hmac IS NOT NULL DO NOTHING",
        )
        .bind(Uuid::now_v7())
        .bind(&email)
        .bind(digest.as_slice())
        .execute(&mut *tx)
        .await
        .map_err(AccountsError::from_db)?;
        let row = sqlx::query("SELECT id, email, is_platform_admin, is_active FROM public.users WHERE external_id_hmac = $1")
            .bind(digest.as_slice())
            .fetch_one(&mut *tx)
            .await?;
        let user_id: Uuid = row.try_get("id")?;
        if inserted.rows_affected() > 0 {
            super::audit::record_platform(
                &mut tx,
                &Actor::System,
                "user.created",
                Some(&user_id.to_string()),
                None,
                serde_json::json!({ "via": "trusted_header" }),
            )
            .await?;
        }
        tx.commit().await?;
        let principal = row
            .try_get::<bool, _>("is_active")?
            .then(|| -> Result<Principal, sqlx::Error> {
                Ok(Principal::User {
                    user_id,
                    email: row.try_get("email")?,
                    is_platform_admin: row.try_get("is_platform_admin")?,
                    session_id: None,
                    expires_at: None,
                })
            })
            .transpose()?;
        if let Some(p) = &principal {
            self.cache_principal(cache_key, p.clone(), generation);
        }
        Ok(principal)
    }

    /// The role `principal` has in `org`: its membership (cached), the key's
    /// role for a key of that org, owner for platform admins, else `None`.
    pub async fn role_in(
        &self,
        principal: &Principal,
        org: &Org,
    ) -> Result<Option<Role>, AccountsError> {
        match principal {
            Principal::ApiKey { org_id, role, .. } => Ok((*org_id == org.id).then_some(*role)),
            Principal::User { is_platform_admin: true, .. } => Ok(Some(Role::Owner)),
            Principal::User { user_id, .. } => {
                let key = (*user_id, org.id);
                if let Some(role) = self.inner.roles.get(&key) {
                    return Ok(role);
                }
                let generation = self.inner.generation.load(Ordering::Acquire);
                let role: Option<String> = sqlx::query_scalar(
                    "SELECT role FROM public.memberships WHERE org_id = $1 AND user_id = $2",
                )
                .bind(org.id.as_uuid())
                .bind(user_id)
                .fetch_optional(&self.inner.pool)
                .await?;
                let role = role.and_then(|r| r.parse().ok());
                if self.inner.generation.load(Ordering::Acquire) == generation {
                    self.inner.roles.insert(key, role);
                    if self.inner.generation.load(Ordering::Acquire) != generation {
                        self.inner.roles.invalidate(&key);
                    }
                }
                Ok(role)
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The throttle state to report in `Retry-After`.
pub fn retry_after(err: &AccountsError) -> Option<u64> {
    match err {
        AccountsError::Throttled { retry_after_secs, .. } => Some(*retry_after_secs),
        _ => None,
    }
}
