//! Invitations: an admin invites an email with a role; the invitee accepts
//! with a single-use token that expires after [`INVITATION_TTL`]. Until
//! email delivery exists, the token is returned once to the admin who
//! created the invitation.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use tenancy::{Org, OrgId};
use uuid::Uuid;

use super::auth::{Accounts, NewSession};
use super::members::Acting;
use super::users::NewUser;
use super::{AccountsError, Actor, Email, Role, audit, tokens};

/// How long an invitation can be accepted.
pub const INVITATION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// An invitation as listed (never the token).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Invitation {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    pub invited_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
}

/// A new invitation with its token, shown once.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct NewInvitation {
    #[serde(flatten)]
    pub invitation: Invitation,
    pub token: String,
}

/// What accepting did.
#[derive(Debug)]
pub struct Accepted {
    pub org_id: OrgId,
    pub role: Role,
    pub user_id: Uuid,
    /// A session, when accepting created the account.
    pub session: Option<NewSession>,
}

/// How the invitee accepts: already signed in, or creating the account.
#[derive(Debug)]
pub enum Invitee {
    SignedIn { user_id: Uuid },
    NewAccount { password: String, name: String, client: IpAddr },
}

const COLUMNS: &str = "id, email, role, invited_by, created_at, expires_at, accepted_at";

fn from_row(row: &sqlx::postgres::PgRow) -> Result<Invitation, sqlx::Error> {
    let role: String = row.try_get("role")?;
    Ok(Invitation {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        role: role.parse().map_err(|e: String| sqlx::Error::Decode(e.into()))?,
        invited_by: row.try_get("invited_by")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        accepted_at: row.try_get("accepted_at")?,
    })
}

impl Accounts {
    /// Invites `email` to `org` with `role` (admins; owners for owners).
    pub async fn invite(
        &self,
        by: &Acting,
        org: &Org,
        email: &Email,
        role: Role,
    ) -> Result<NewInvitation, AccountsError> {
        if !by.role.at_least(Role::Admin) {
            return Err(AccountsError::Forbidden("only admins and owners invite members"));
        }
        if role == Role::Owner && by.role != Role::Owner {
            return Err(AccountsError::Forbidden("only owners can invite an owner"));
        }
        let token = format!("osi_{}", &tokens::new_session_token()[4..]);
        let mut tx = self.inner.pool.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO public.invitations (id, org_id, email, role, token_hash, invited_by, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
        )))
        .bind(Uuid::now_v7())
        .bind(org.id.as_uuid())
        .bind(email.as_str())
        .bind(role.as_str())
        .bind(tokens::hash(&token).as_slice())
        .bind(by.actor.to_string())
        .bind(Utc::now() + INVITATION_TTL)
        .fetch_one(&mut *tx)
        .await?;
        let invitation = from_row(&row)?;
        let details = serde_json::json!({ "email": email.as_str(), "role": role });
        audit::record_org(
            &mut tx,
            &org.schema(),
            &by.actor,
            "invitation.created",
            Some(&invitation.id.to_string()),
            details,
        )
        .await?;
        tx.commit().await?;
        Ok(NewInvitation { invitation, token })
    }

    /// An org's invitations, newest first.
    pub async fn list_invitations(&self, org: &Org) -> Result<Vec<Invitation>, AccountsError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM public.invitations WHERE org_id = $1 ORDER BY created_at DESC, id DESC"
        )))
        .bind(org.id.as_uuid())
        .fetch_all(&self.inner.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// Accepts an invitation: exactly once, before it expires, by the
    /// invited email (signed in, or creating that account now).
    pub async fn accept_invitation(
        &self,
        token: &str,
        invitee: Invitee,
    ) -> Result<Accepted, AccountsError> {
        let mut tx = self.inner.pool.begin().await?;
        let row = sqlx::query(
            "SELECT i.id, i.org_id, i.email, i.role, i.expires_at, i.accepted_at, o.status \
             FROM public.invitations i JOIN public.orgs o ON o.id = i.org_id \
             WHERE i.token_hash = $1 FOR UPDATE OF i",
        )
        .bind(tokens::hash(token).as_slice())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(AccountsError::InvitationNotFound)?;
        let status: String = row.try_get("status")?;
        if status != "active" {
            return Err(AccountsError::InvitationNotFound);
        }
        if row.try_get::<Option<DateTime<Utc>>, _>("accepted_at")?.is_some() {
            return Err(AccountsError::InvitationUsed);
        }
        if row.try_get::<DateTime<Utc>, _>("expires_at")? <= Utc::now() {
            return Err(AccountsError::InvitationExpired);
        }
        let id: Uuid = row.try_get("id")?;
        let org_id = OrgId::from_uuid(row.try_get("org_id")?);
        let email = Email::parse(&row.try_get::<String, _>("email")?)?;
        let role: Role = row
            .try_get::<String, _>("role")?
            .parse()
            .map_err(|e: String| sqlx::Error::Decode(e.into()))?;

        let (user_id, new_account) = match invitee {
            Invitee::SignedIn { user_id } => {
                let matches: bool =
                    sqlx::query_scalar("SELECT email = $2 FROM public.users WHERE id = $1")
                        .bind(user_id)
                        .bind(email.as_str())
                        .fetch_one(&mut *tx)
                        .await?;
                if !matches {
                    return Err(AccountsError::Forbidden(
                        "this invitation is for another email address",
                    ));
                }
                (user_id, None)
            }
            Invitee::NewAccount { password, name, client } => {
                if self.user_by_email(&email).await?.is_some() {
                    return Err(AccountsError::SignInToAccept);
                }
                // Created outside this transaction (hashing is slow); if the
                // acceptance then fails, the account remains and can sign in.
                let new = NewUser {
                    email: &email,
                    name: &name,
                    password: Some(password),
                    platform_admin: false,
                };
                let user = self.create_user(&Actor::System, new).await?;
                (user.id, Some(client))
            }
        };
        sqlx::query("INSERT INTO public.memberships (org_id, user_id, role) VALUES ($1, $2, $3)")
            .bind(org_id.as_uuid())
            .bind(user_id)
            .bind(role.as_str())
            .execute(&mut *tx)
            .await
            .map_err(AccountsError::from_db)?;
        sqlx::query(
            "UPDATE public.invitations SET accepted_at = now(), accepted_by = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        let actor = Actor::User { id: user_id, email: email.as_str().to_owned() };
        let details = serde_json::json!({ "role": role, "invitation": id });
        audit::record_org(
            &mut tx,
            &org_id.schema(),
            &actor,
            "member.added",
            Some(&user_id.to_string()),
            details,
        )
        .await?;
        tx.commit().await?;
        self.announce("membership").await;
        let session = match new_account {
            Some(client) => Some(self.create_session(user_id, "auth.signup", client).await?),
            None => None,
        };
        Ok(Accepted { org_id, role, user_id, session })
    }
}
