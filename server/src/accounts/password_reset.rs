//! Password reset: a single-use token, valid one hour, for a known active
//! user (only its hash is stored); using it sets the new password and ends
//! every session of the user.

use chrono::{Duration, Utc};
use uuid::Uuid;

use super::auth::Accounts;
use super::users::User;
use super::{AccountsError, Actor, Email, audit, password, tokens};

/// How long a reset link works.
pub const RESET_TTL_MINUTES: i64 = 60;
/// At most this many reset emails per user per hour (no mail bombing).
const MAX_PER_HOUR: i64 = 3;

/// A reset to send: the user and the token for the link.
#[derive(Debug)]
pub struct NewReset {
    pub user: User,
    pub token: String,
}

impl Accounts {
    /// Starts a reset for `email` when it names an active user who has not
    /// asked too often; `None` otherwise (the caller answers the same).
    pub async fn start_password_reset(
        &self,
        email: &str,
    ) -> Result<Option<NewReset>, AccountsError> {
        let Ok(email) = Email::parse(email) else {
            return Ok(None);
        };
        let mut tx = self.inner.pool.begin().await?;
        let user = sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM public.users WHERE email = $1 AND is_active FOR UPDATE",
            super::users::USER_COLUMNS
        )))
        .bind(email.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(user) = user else {
            return Ok(None);
        };
        let recent: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM public.password_resets \
             WHERE user_id = $1 AND created_at > now() - interval '1 hour'",
        )
        .bind(user.id)
        .fetch_one(&mut *tx)
        .await?;
        if recent >= MAX_PER_HOUR {
            tracing::info!(user_id = %user.id, "password reset asked too often; not sent");
            return Ok(None);
        }
        let token = tokens::new_session_token();
        sqlx::query(
            "INSERT INTO public.password_resets (id, user_id, token_hash, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(Uuid::now_v7())
        .bind(user.id)
        .bind(tokens::hash(&token).as_slice())
        .bind(Utc::now() + Duration::minutes(RESET_TTL_MINUTES))
        .execute(&mut *tx)
        .await?;
        audit::record_platform(
            &mut tx,
            &Actor::System,
            "user.password_reset_requested",
            Some(&user.id.to_string()),
            None,
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(NewReset { user, token }))
    }

    /// Uses reset `token`: sets `new_password` (which must pass the
    /// policy), ends every session of the user, and spends the token.
    pub async fn finish_password_reset(
        &self,
        token: &str,
        new_password: String,
    ) -> Result<User, AccountsError> {
        let hash = tokens::hash(token);
        let found: Option<(Uuid, Uuid, String)> = sqlx::query_as(
            "SELECT r.id, u.id, u.email FROM public.password_resets r \
             JOIN public.users u ON u.id = r.user_id \
             WHERE r.token_hash = $1 AND r.used_at IS NULL AND r.expires_at > now() AND u.is_active",
        )
        .bind(hash.as_slice())
        .fetch_optional(&self.inner.pool)
        .await?;
        let (reset_id, user_id, email) = found.ok_or(AccountsError::InvalidResetToken)?;
        let email = Email::parse(&email)?;
        password::check(&new_password, &email)?;
        let password_hash = password::hash(new_password).await?;
        let mut tx = self.inner.pool.begin().await?;
        // Spent here, once: a second use finds it used.
        let spent = sqlx::query(
            "UPDATE public.password_resets SET used_at = now() WHERE id = $1 AND used_at IS NULL",
        )
        .bind(reset_id)
        .execute(&mut *tx)
        .await?;
        if spent.rows_affected() == 0 {
            return Err(AccountsError::InvalidResetToken);
        }
        // Any other link for this user is void too.
        sqlx::query(
            "UPDATE public.password_resets SET used_at = now() WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        let user = sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(format!(
            "UPDATE public.users SET password_hash = $2, updated_at = now() WHERE id = $1 RETURNING {}",
            super::users::USER_COLUMNS
        )))
        .bind(user_id)
        .bind(&password_hash)
        .fetch_one(&mut *tx)
        .await?;
        let ended = self.revoke_sessions_of(&mut tx, user_id).await?;
        audit::record_platform(
            &mut tx,
            &Actor::User { id: user.id, email: user.email.clone() },
            "user.password_reset",
            Some(&user.id.to_string()),
            None,
            serde_json::json!({ "sessions_ended": ended }),
        )
        .await?;
        tx.commit().await?;
        self.announce("user").await;
        Ok(user)
    }
}
