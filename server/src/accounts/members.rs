//! Memberships and org API keys, with the role rules of the design:
//! admins manage members and keys, only owners grant or take away
//! ownership, and an org always keeps at least one owner.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use tenancy::{Org, OrgId};
use uuid::Uuid;

use super::auth::Accounts;
use super::{AccountsError, Actor, Email, Role, audit, tokens, validate_name};

/// A member of an org.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Member {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

/// One of a user's memberships.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Membership {
    #[schema(value_type = uuid::Uuid)]
    pub org_id: OrgId,
    pub slug: String,
    pub name: String,
    pub role: Role,
}

/// An org API key as listed (never the secret).
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A new API key with its secret, shown once.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct NewApiKey {
    #[serde(flatten)]
    pub key: ApiKey,
    pub token: String,
}

/// Who asks for a change, and with what role in the org.
#[derive(Debug, Clone)]
pub struct Acting {
    pub actor: Actor,
    pub role: Role,
    pub user_id: Option<Uuid>,
}

fn member_from_row(row: &sqlx::postgres::PgRow) -> Result<Member, sqlx::Error> {
    let role: String = row.try_get("role")?;
    Ok(Member {
        user_id: row.try_get("user_id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        role: role.parse().map_err(|e: String| sqlx::Error::Decode(e.into()))?,
        joined_at: row.try_get("created_at")?,
    })
}

fn key_from_row(row: &sqlx::postgres::PgRow) -> Result<ApiKey, sqlx::Error> {
    let role: String = row.try_get("role")?;
    Ok(ApiKey {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: role.parse().map_err(|e: String| sqlx::Error::Decode(e.into()))?,
        prefix: row.try_get("prefix")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

const MEMBER_SELECT: &str = "SELECT m.user_id, u.email, u.name, m.role, m.created_at \
     FROM public.memberships m JOIN public.users u ON u.id = m.user_id";
const KEY_COLUMNS: &str =
    "id, name, role, prefix, created_at, expires_at, last_used_at, revoked_at";

impl Accounts {
    /// Members of `org`, by email.
    pub async fn list_members(&self, org: &Org) -> Result<Vec<Member>, AccountsError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{MEMBER_SELECT} WHERE m.org_id = $1 ORDER BY u.email COLLATE \"C\""
        )))
        .bind(org.id.as_uuid())
        .fetch_all(&self.inner.pool)
        .await?;
        Ok(rows.iter().map(member_from_row).collect::<Result<_, _>>()?)
    }

    pub async fn member(&self, org: &Org, user_id: Uuid) -> Result<Option<Member>, AccountsError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{MEMBER_SELECT} WHERE m.org_id = $1 AND m.user_id = $2"
        )))
        .bind(org.id.as_uuid())
        .bind(user_id)
        .fetch_optional(&self.inner.pool)
        .await?;
        Ok(row.as_ref().map(member_from_row).transpose()?)
    }

    /// Active orgs `user_id` belongs to, with the role in each.
    pub async fn memberships_of(&self, user_id: Uuid) -> Result<Vec<Membership>, AccountsError> {
        let rows = sqlx::query(
            "SELECT o.id, o.slug, o.name, m.role FROM public.memberships m \
             JOIN public.orgs o ON o.id = m.org_id \
             WHERE m.user_id = $1 AND o.status = 'active' ORDER BY o.slug",
        )
        .bind(user_id)
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let role: String = row.try_get("role")?;
                Ok(Membership {
                    org_id: OrgId::from_uuid(row.try_get("id")?),
                    slug: row.try_get("slug")?,
                    name: row.try_get("name")?,
                    role: role.parse().map_err(|e: String| sqlx::Error::Decode(e.into()))?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(AccountsError::Database)
    }

    /// Adds an existing user to `org`. Admins add; only owners add owners.
    pub async fn add_member(
        &self,
        by: &Acting,
        org: &Org,
        email: &Email,
        role: Role,
    ) -> Result<Member, AccountsError> {
        require(by.role, Role::Admin, "only admins and owners manage members")?;
        if role == Role::Owner {
            require(by.role, Role::Owner, "only owners can make someone an owner")?;
        }
        let mut tx = self.inner.pool.begin().await?;
        let user_id: Uuid =
            sqlx::query_scalar("SELECT id FROM public.users WHERE email = $1 AND is_active")
                .bind(email.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(AccountsError::UserNotFound)?;
        sqlx::query("INSERT INTO public.memberships (org_id, user_id, role) VALUES ($1, $2, $3)")
            .bind(org.id.as_uuid())
            .bind(user_id)
            .bind(role.as_str())
            .execute(&mut *tx)
            .await
            .map_err(AccountsError::from_db)?;
        let details = serde_json::json!({ "email": email.as_str(), "role": role });
        self.finish_member_change(tx, by, org, user_id, "member.added", details).await
    }

    /// Records a new org in its own audit log and the platform's.
    pub async fn record_org_created(&self, actor: &Actor, org: &Org) -> Result<(), AccountsError> {
        let mut tx = self.inner.pool.begin().await?;
        let details = serde_json::json!({ "slug": org.slug, "name": org.name });
        let target = org.id.to_string();
        audit::record_org(
            &mut tx,
            &org.schema(),
            actor,
            "org.created",
            Some(&target),
            details.clone(),
        )
        .await?;
        audit::record_platform(&mut tx, actor, "org.created", Some(&target), Some(org.id), details)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a change of an org's status (`org.suspended`, `org.resumed`,
    /// `org.deleted`) in its own audit log and the platform's.
    pub async fn record_org_status(
        &self,
        actor: &Actor,
        org: &Org,
        action: &str,
    ) -> Result<(), AccountsError> {
        let details = serde_json::json!({ "slug": org.slug, "status": org.status.as_str() });
        self.record_org_event(actor, org, action, details).await
    }

    /// Records a change of an org (`org.renamed`, a status change) in its
    /// own audit log and the platform's.
    pub async fn record_org_event(
        &self,
        actor: &Actor,
        org: &Org,
        action: &str,
        details: serde_json::Value,
    ) -> Result<(), AccountsError> {
        let mut tx = self.inner.pool.begin().await?;
        let target = org.id.to_string();
        audit::record_org(&mut tx, &org.schema(), actor, action, Some(&target), details.clone())
            .await?;
        audit::record_platform(&mut tx, actor, action, Some(&target), Some(org.id), details)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Makes `user_id` an owner of `org` (a new org's creator; `org create
    /// --owner`). Idempotent.
    pub async fn add_owner(
        &self,
        actor: &Actor,
        org: &Org,
        user_id: Uuid,
    ) -> Result<(), AccountsError> {
        let mut tx = self.inner.pool.begin().await?;
        let changed = sqlx::query(
            "INSERT INTO public.memberships (org_id, user_id, role) VALUES ($1, $2, 'owner') \
             ON CONFLICT (org_id, user_id) DO UPDATE SET role = 'owner', updated_at = now() \
             WHERE memberships.role <> 'owner'",
        )
        .bind(org.id.as_uuid())
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        if changed.rows_affected() > 0 {
            let details = serde_json::json!({ "role": Role::Owner });
            audit::record_org(
                &mut tx,
                &org.schema(),
                actor,
                "member.added",
                Some(&user_id.to_string()),
                details,
            )
            .await?;
        }
        tx.commit().await?;
        if changed.rows_affected() > 0 {
            self.announce("membership").await;
        }
        Ok(())
    }

    /// Changes a member's role, keeping at least one owner.
    pub async fn set_role(
        &self,
        by: &Acting,
        org: &Org,
        user_id: Uuid,
        role: Role,
    ) -> Result<Member, AccountsError> {
        require(by.role, Role::Admin, "only admins and owners manage members")?;
        let mut tx = self.inner.pool.begin().await?;
        let owners = lock_owners(&mut tx, org.id).await?;
        let current = current_role(&mut tx, org.id, user_id).await?;
        if current == Role::Owner || role == Role::Owner {
            require(by.role, Role::Owner, "only owners can grant or take away ownership")?;
        }
        if current == Role::Owner && role != Role::Owner && owners <= 1 {
            return Err(AccountsError::LastOwner);
        }
        sqlx::query("UPDATE public.memberships SET role = $3, updated_at = now() WHERE org_id = $1 AND user_id = $2")
            .bind(org.id.as_uuid())
            .bind(user_id)
            .bind(role.as_str())
            .execute(&mut *tx)
            .await?;
        let details = serde_json::json!({ "from": current, "to": role });
        self.finish_member_change(tx, by, org, user_id, "member.role_changed", details).await
    }

    /// Audits a membership change, commits it, tells every process, and
    /// returns the member as it now is.
    async fn finish_member_change(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        by: &Acting,
        org: &Org,
        user_id: Uuid,
        action: &str,
        details: serde_json::Value,
    ) -> Result<Member, AccountsError> {
        let target = user_id.to_string();
        audit::record_org(&mut tx, &org.schema(), &by.actor, action, Some(&target), details)
            .await?;
        tx.commit().await?;
        self.announce("membership").await;
        self.member(org, user_id).await?.ok_or(AccountsError::NotMember)
    }

    /// Removes a member (admins remove others, anyone may leave), keeping
    /// at least one owner.
    pub async fn remove_member(
        &self,
        by: &Acting,
        org: &Org,
        user_id: Uuid,
    ) -> Result<(), AccountsError> {
        let leaving = by.user_id == Some(user_id);
        if !leaving {
            require(by.role, Role::Admin, "only admins and owners manage members")?;
        }
        let mut tx = self.inner.pool.begin().await?;
        let owners = lock_owners(&mut tx, org.id).await?;
        let current = current_role(&mut tx, org.id, user_id).await?;
        if current == Role::Owner {
            if !leaving {
                require(by.role, Role::Owner, "only owners can remove an owner")?;
            }
            if owners <= 1 {
                return Err(AccountsError::LastOwner);
            }
        }
        sqlx::query("DELETE FROM public.memberships WHERE org_id = $1 AND user_id = $2")
            .bind(org.id.as_uuid())
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let action = if leaving { "member.left" } else { "member.removed" };
        audit::record_org(
            &mut tx,
            &org.schema(),
            &by.actor,
            action,
            Some(&user_id.to_string()),
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        self.announce("membership").await;
        Ok(())
    }

    /// Creates an org API key with a role no higher than the creator's.
    pub async fn create_api_key(
        &self,
        by: &Acting,
        org: &Org,
        name: &str,
        role: Role,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<NewApiKey, AccountsError> {
        require(by.role, Role::Admin, "only admins and owners manage API keys")?;
        require(by.role, role, "an API key cannot have a higher role than its creator")?;
        if matches!(by.actor, Actor::ApiKey { .. }) {
            return Err(AccountsError::Forbidden(
                "API keys cannot create API keys; sign in as a user",
            ));
        }
        let name = validate_name(name)?;
        let (token, prefix) = tokens::new_api_key();
        let mut tx = self.inner.pool.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO public.api_keys (id, org_id, name, role, prefix, token_hash, created_by, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {KEY_COLUMNS}"
        )))
        .bind(Uuid::now_v7())
        .bind(org.id.as_uuid())
        .bind(name)
        .bind(role.as_str())
        .bind(&prefix)
        .bind(tokens::hash(&token).as_slice())
        .bind(by.user_id)
        .bind(expires_at)
        .fetch_one(&mut *tx)
        .await?;
        let key = key_from_row(&row)?;
        let details = serde_json::json!({ "name": name, "role": role, "prefix": prefix });
        audit::record_org(
            &mut tx,
            &org.schema(),
            &by.actor,
            "api_key.created",
            Some(&key.id.to_string()),
            details,
        )
        .await?;
        tx.commit().await?;
        Ok(NewApiKey { key, token })
    }

    /// An org's API keys, newest first (revoked ones included).
    pub async fn list_api_keys(&self, org: &Org) -> Result<Vec<ApiKey>, AccountsError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM public.api_keys WHERE org_id = $1 ORDER BY id DESC"
        )))
        .bind(org.id.as_uuid())
        .fetch_all(&self.inner.pool)
        .await?;
        Ok(rows.iter().map(key_from_row).collect::<Result<_, _>>()?)
    }

    /// API keys `user_id` created, in every org, newest first: `(org slug,
    /// org id, key)`.
    pub async fn api_keys_created_by(
        &self,
        user_id: Uuid,
    ) -> Result<Vec<(String, OrgId, ApiKey)>, AccountsError> {
        let rows = sqlx::query(
            "SELECT k.id, k.name, k.role, k.prefix, k.created_at, k.expires_at, k.last_used_at, \
             k.revoked_at, o.slug, o.id AS org_id FROM public.api_keys k \
             JOIN public.orgs o ON o.id = k.org_id WHERE k.created_by = $1 ORDER BY k.id DESC",
        )
        .bind(user_id)
        .fetch_all(&self.inner.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("slug")?,
                    OrgId::from_uuid(row.try_get("org_id")?),
                    key_from_row(row)?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(AccountsError::Database)
    }

    /// The number of members of each of `orgs`.
    pub async fn member_counts(
        &self,
        orgs: &[OrgId],
    ) -> Result<std::collections::HashMap<OrgId, i64>, AccountsError> {
        let ids: Vec<Uuid> = orgs.iter().map(OrgId::as_uuid).collect();
        let rows: Vec<(Uuid, i64)> = sqlx::query_as(
            "SELECT org_id, count(*) FROM public.memberships WHERE org_id = ANY($1) GROUP BY org_id",
        )
        .bind(ids)
        .fetch_all(&self.inner.pool)
        .await?;
        Ok(rows.into_iter().map(|(id, n)| (OrgId::from_uuid(id), n)).collect())
    }

    /// Revokes a key of `org` (a key of another org is "not found").
    pub async fn revoke_api_key(
        &self,
        by: &Acting,
        org: &Org,
        key_id: Uuid,
    ) -> Result<(), AccountsError> {
        require(by.role, Role::Admin, "only admins and owners manage API keys")?;
        let mut tx = self.inner.pool.begin().await?;
        let role: String = sqlx::query_scalar(
            "SELECT role FROM public.api_keys WHERE id = $1 AND org_id = $2 FOR UPDATE",
        )
        .bind(key_id)
        .bind(org.id.as_uuid())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(AccountsError::KeyNotFound)?;
        let role: Role = role
            .parse()
            .map_err(|e: String| AccountsError::Database(sqlx::Error::Decode(e.into())))?;
        require(by.role, role, "only owners can revoke an owner key")?;
        sqlx::query(
            "UPDATE public.api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1",
        )
        .bind(key_id)
        .execute(&mut *tx)
        .await?;
        audit::record_org(
            &mut tx,
            &org.schema(),
            &by.actor,
            "api_key.revoked",
            Some(&key_id.to_string()),
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        self.announce("api_key").await;
        Ok(())
    }
}

fn require(have: Role, need: Role, why: &'static str) -> Result<(), AccountsError> {
    if have.at_least(need) { Ok(()) } else { Err(AccountsError::Forbidden(why)) }
}

/// Locks the org's owner rows (so two demotions cannot both pass the
/// last-owner check) and counts the owners who can still sign in.
async fn lock_owners(tx: &mut PgConnection, org: OrgId) -> Result<usize, AccountsError> {
    let owners: Vec<Uuid> = sqlx::query_scalar(
        "SELECT m.user_id FROM public.memberships m JOIN public.users u ON u.id = m.user_id \
         WHERE m.org_id = $1 AND m.role = 'owner' AND u.is_active FOR UPDATE OF m",
    )
    .bind(org.as_uuid())
    .fetch_all(tx)
    .await?;
    Ok(owners.len())
}

async fn current_role(
    tx: &mut PgConnection,
    org: OrgId,
    user_id: Uuid,
) -> Result<Role, AccountsError> {
    let role: String = sqlx::query_scalar(
        "SELECT role FROM public.memberships WHERE org_id = $1 AND user_id = $2",
    )
    .bind(org.as_uuid())
    .bind(user_id)
    .fetch_optional(tx)
    .await?
    .ok_or(AccountsError::NotMember)?;
    role.parse().map_err(|e: String| AccountsError::Database(sqlx::Error::Decode(e.into())))
}
