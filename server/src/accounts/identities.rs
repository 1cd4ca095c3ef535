//! Users known through an identity provider (OpenID Connect): the provider's
//! `(issuer, subject)` is linked to one user, found by that link, else by
//! the verified email, else created.

use uuid::Uuid;

use super::auth::Accounts;
use super::users::{NewUser, USER_COLUMNS, User, insert_user, prepare_user};
use super::{AccountsError, Actor, Email, audit};

/// What the provider vouched for (after every check of its ID token).
#[derive(Debug)]
pub struct VerifiedIdentity<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    /// Only an email the provider says it verified gets here.
    pub email: &'a Email,
    pub name: &'a str,
}

/// How [`Accounts::user_for_identity`] found the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityMatch {
    /// By the provider's subject, linked at an earlier sign-in.
    Linked,
    /// An existing user with that email, now linked.
    ByEmail,
    /// A new user.
    Created,
}

impl Accounts {
    /// The active user for `identity`; refuses a deactivated user.
    pub async fn user_for_identity(
        &self,
        identity: &VerifiedIdentity<'_>,
    ) -> Result<(User, IdentityMatch), AccountsError> {
        let mut tx = self.inner.pool.begin().await?;
        let linked: Option<Uuid> = sqlx::query_scalar(
            "UPDATE public.user_identities SET last_login_at = now(), email = $3 \
             WHERE issuer = $1 AND subject = $2 RETURNING user_id",
        )
        .bind(identity.issuer)
        .bind(identity.subject)
        .bind(identity.email.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let (user, how) = match linked {
            Some(user_id) => (user_by_id(&mut tx, user_id).await?, IdentityMatch::Linked),
            None => {
                let existing = sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(format!(
                    "SELECT {USER_COLUMNS} FROM public.users WHERE email = $1 FOR UPDATE"
                )))
                .bind(identity.email.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let (user, how) = match existing {
                    Some(user) => (user, IdentityMatch::ByEmail),
                    None => {
                        let name: String = identity.name.trim().chars().take(200).collect();
                        let new = NewUser {
                            email: identity.email,
                            name: &name,
                            password: None,
                            platform_admin: false,
                        };
                        let prepared = prepare_user(new).await?;
                        match insert_user(&mut tx, &Actor::System, &prepared).await {
                            Ok(user) => (user, IdentityMatch::Created),
                            // A first sign-in with this email at the same
                            // moment made the user: start again and find it.
                            Err(AccountsError::EmailTaken) => {
                                drop(tx);
                                return Box::pin(self.user_for_identity(identity)).await;
                            }
                            Err(err) => return Err(err),
                        }
                    }
                };
                let inserted = sqlx::query(
                    "INSERT INTO public.user_identities (issuer, subject, user_id, email) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (issuer, subject) DO NOTHING",
                )
                .bind(identity.issuer)
                .bind(identity.subject)
                .bind(user.id)
                .bind(identity.email.as_str())
                .execute(&mut *tx)
                .await?;
                if inserted.rows_affected() == 0 {
                    // Another sign-in of this subject linked it first: retry
                    // from the top, where the link is now found.
                    drop(tx);
                    return Box::pin(self.user_for_identity(identity)).await;
                }
                audit::record_platform(
                    &mut tx,
                    &Actor::System,
                    "user.identity_linked",
                    Some(&user.id.to_string()),
                    None,
                    serde_json::json!({ "issuer": identity.issuer, "email": user.email }),
                )
                .await?;
                (user, how)
            }
        };
        if !user.is_active {
            return Err(AccountsError::Forbidden("this account is deactivated"));
        }
        tx.commit().await?;
        Ok((user, how))
    }
}

async fn user_by_id(tx: &mut sqlx::PgConnection, id: Uuid) -> Result<User, AccountsError> {
    sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM public.users WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(AccountsError::UserNotFound)
}
