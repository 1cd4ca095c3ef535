//! Users: create, list, change password, deactivate, promote.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::auth::Accounts;
use super::{AccountsError, Actor, Email, audit, password, validate_name};

pub(super) const USER_COLUMNS: &str =
    "id, email, name, is_platform_admin, is_active, last_login_at, created_at";

/// A user as shown to clients (never the password hash).
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub is_platform_admin: bool,
    pub is_active: bool,
    pub last_login_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A session as operators see it (never its token).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SessionInfo {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// `text` for a `LIKE` pattern: its wildcards match themselves.
pub(crate) fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// What a new user is made of. `password: None` makes a user who cannot
/// sign in with a password (yet).
#[derive(Debug)]
pub struct NewUser<'a> {
    pub email: &'a Email,
    pub name: &'a str,
    pub password: Option<String>,
    pub platform_admin: bool,
}

impl Accounts {
    /// Creates a user; the password must pass the policy.
    pub async fn create_user(
        &self,
        actor: &Actor,
        new: NewUser<'_>,
    ) -> Result<User, AccountsError> {
        let prepared = prepare_user(new).await?;
        let mut tx = self.inner.pool.begin().await?;
        let user = insert_user(&mut tx, actor, &prepared).await?;
        tx.commit().await?;
        Ok(user)
    }

    pub async fn user_by_email(&self, email: &Email) -> Result<Option<User>, AccountsError> {
        Ok(sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM public.users WHERE email = $1"
        )))
        .bind(email.as_str())
        .fetch_optional(&self.inner.pool)
        .await?)
    }

    pub async fn user(&self, id: Uuid) -> Result<Option<User>, AccountsError> {
        Ok(sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM public.users WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.inner.pool)
        .await?)
    }

    /// Number of users, and of those active.
    pub async fn count_users(&self) -> Result<(i64, i64), AccountsError> {
        Ok(sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE is_active) FROM public.users")
            .fetch_one(&self.inner.pool)
            .await?)
    }

    /// Every user, by email.
    pub async fn list_users(&self) -> Result<Vec<User>, AccountsError> {
        Ok(sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM public.users ORDER BY email"
        )))
        .fetch_all(&self.inner.pool)
        .await?)
    }

    /// Users whose email or name contains `filter` (any case), by email;
    /// at most `limit`.
    pub async fn search_users(&self, filter: &str, limit: i64) -> Result<Vec<User>, AccountsError> {
        // Without a filter, the first page comes straight from the email
        // index (users_email_c_idx); a filter uses the trigram indexes.
        let filter = filter.trim();
        if filter.is_empty() {
            return Ok(sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(format!(
                "SELECT {USER_COLUMNS} FROM public.users ORDER BY email COLLATE \"C\" LIMIT $1"
            )))
            .bind(limit)
            .fetch_all(&self.inner.pool)
            .await?);
        }
        let pattern = format!("%{}%", like_escape(filter));
        Ok(sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM public.users WHERE email ILIKE $1 OR name ILIKE $1 \
             ORDER BY email COLLATE \"C\" LIMIT $2"
        )))
        .bind(pattern)
        .bind(limit)
        .fetch_all(&self.inner.pool)
        .await?)
    }

    /// A user's sessions, newest first (at most `limit`; ended ones too).
    pub async fn sessions_of(
        &self,
        user_id: Uuid,
        limit: i64,
    ) -> Result<Vec<SessionInfo>, AccountsError> {
        Ok(sqlx::query_as(
            "SELECT id, created_at, expires_at, last_used_at, revoked_at FROM public.sessions \
             WHERE user_id = $1 ORDER BY created_at DESC LIMIT $2",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(&self.inner.pool)
        .await?)
    }

    /// Ends one session of `user_id` (an operator's revoke); false when it
    /// had already ended. Audited as `session.revoked`.
    pub async fn revoke_session(
        &self,
        actor: &Actor,
        user_id: Uuid,
        session_id: Uuid,
    ) -> Result<bool, AccountsError> {
        let mut tx = self.inner.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE public.sessions SET revoked_at = now() \
             WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        )
        .bind(session_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let target = session_id.to_string();
        let details = serde_json::json!({ "user_id": user_id });
        audit::record_platform(&mut tx, actor, "session.revoked", Some(&target), None, details)
            .await?;
        tx.commit().await?;
        self.announce("session").await;
        Ok(true)
    }

    /// Sets a new password and ends the user's sessions.
    pub async fn set_password(
        &self,
        actor: &Actor,
        email: &Email,
        new: String,
    ) -> Result<User, AccountsError> {
        password::check(&new, email)?;
        let hash = password::hash(new).await?;
        let change =
            Change { assignment: "password_hash = $2", value: Some(hash), end_sessions: true };
        self.update_user(actor, email, change, "user.password_changed").await
    }

    /// Deactivates a user: no sign-in, every session ended at once.
    pub async fn deactivate_user(
        &self,
        actor: &Actor,
        email: &Email,
    ) -> Result<User, AccountsError> {
        let change = Change { assignment: "is_active = false", value: None, end_sessions: true };
        self.update_user(actor, email, change, "user.deactivated").await
    }

    /// Makes a user a platform admin.
    pub async fn promote_user(&self, actor: &Actor, email: &Email) -> Result<User, AccountsError> {
        let change =
            Change { assignment: "is_platform_admin = true", value: None, end_sessions: false };
        self.update_user(actor, email, change, "user.promoted").await
    }

    /// Applies `change` to the user with `email`, ends their sessions if
    /// asked, audits it as `action` and tells every process.
    async fn update_user(
        &self,
        actor: &Actor,
        email: &Email,
        change: Change,
        action: &'static str,
    ) -> Result<User, AccountsError> {
        let mut tx = self.inner.pool.begin().await?;
        let sql = format!(
            "UPDATE public.users SET {}, updated_at = now() WHERE email = $1 RETURNING {USER_COLUMNS}",
            change.assignment
        );
        let mut query = sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(sql)).bind(email.as_str());
        if let Some(value) = change.value {
            query = query.bind(value);
        }
        let user = query.fetch_optional(&mut *tx).await?.ok_or(AccountsError::UserNotFound)?;
        if change.end_sessions {
            self.revoke_sessions_of(&mut tx, user.id).await?;
        }
        let target = user.id.to_string();
        audit::record_platform(&mut tx, actor, action, Some(&target), None, serde_json::json!({}))
            .await?;
        tx.commit().await?;
        self.announce("user").await;
        Ok(user)
    }

    /// Creates the platform admin from `DEFAULT_ADMIN_EMAIL` /
    /// `DEFAULT_ADMIN_PASSWORD` when no platform admin exists yet.
    pub async fn ensure_default_admin(
        &self,
        email: &Email,
        password: String,
    ) -> Result<Option<User>, AccountsError> {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM public.users WHERE is_platform_admin)",
        )
        .fetch_one(&self.inner.pool)
        .await?;
        if exists {
            return Ok(None);
        }
        let new = NewUser { email, name: "Admin", password: Some(password), platform_admin: true };
        match self.create_user(&Actor::System, new).await {
            Ok(user) => Ok(Some(user)),
            // Another process created it at the same moment.
            Err(AccountsError::EmailTaken) => {
                self.promote_user(&Actor::System, email).await.map(Some)
            }
            Err(err) => Err(err),
        }
    }
}

/// A user ready to insert: name checked, password checked and hashed (the
/// slow part, done before any transaction is opened).
#[derive(Debug)]
pub(super) struct PreparedUser {
    email: String,
    name: String,
    hash: Option<String>,
    platform_admin: bool,
}

pub(super) async fn prepare_user(new: NewUser<'_>) -> Result<PreparedUser, AccountsError> {
    let name = if new.name.trim().is_empty() { "" } else { validate_name(new.name)? };
    let hash = match new.password {
        Some(pw) => {
            password::check(&pw, new.email)?;
            Some(password::hash(pw).await?)
        }
        None => None,
    };
    Ok(PreparedUser {
        email: new.email.as_str().to_owned(),
        name: name.to_owned(),
        hash,
        platform_admin: new.platform_admin,
    })
}

/// Inserts a prepared user and its audit event in `tx`.
pub(super) async fn insert_user(
    tx: &mut sqlx::PgConnection,
    actor: &Actor,
    user: &PreparedUser,
) -> Result<User, AccountsError> {
    let created = sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO public.users (id, email, name, password_hash, is_platform_admin) \
         VALUES ($1, $2, $3, $4, $5) RETURNING {USER_COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(&user.email)
    .bind(&user.name)
    .bind(&user.hash)
    .bind(user.platform_admin)
    .fetch_one(&mut *tx)
    .await
    .map_err(AccountsError::from_db)?;
    audit::record_platform(
        tx,
        actor,
        "user.created",
        Some(&created.id.to_string()),
        None,
        serde_json::json!({ "email": created.email, "platform_admin": created.is_platform_admin }),
    )
    .await?;
    Ok(created)
}

/// One change to a user row: a fixed SQL assignment (`$2` is `value`).
#[derive(Debug)]
struct Change {
    assignment: &'static str,
    value: Option<String>,
    end_sessions: bool,
}
