//! SSH public keys of platform admins, for `admin-tui ssh-serve`: a key is
//! registered for one user (`orgstack admin-keys add`), and the SSH server
//! lets a client in only when its key is registered and that user is an
//! active platform admin at that moment. Adding and removing a key are
//! platform audit events.
//!
//! Keys are found by their SHA-256 fingerprint (`SHA256:...`, as
//! `ssh-keygen -l` prints it); the key text is kept without its comment.

use chrono::{DateTime, Utc};
use ssh_key::{HashAlg, PublicKey};
use uuid::Uuid;

use super::auth::Accounts;
use super::users::User;
use super::{Actor, Email, audit};

/// A registered key, with the email of its user.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct AdminKey {
    pub id: Uuid,
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub algorithm: String,
    pub fingerprint: String,
    /// `ALGORITHM BASE64`, without a comment.
    pub public_key: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// What the key operations refuse, and why.
#[derive(Debug, thiserror::Error)]
pub enum AdminKeyError {
    #[error(
        "not an OpenSSH public key ({0}); expected one line such as 'ssh-ed25519 AAAA... comment'"
    )]
    InvalidKey(String),
    #[error("no user {0}")]
    UserNotFound(String),
    #[error("{0} is not an active platform admin (`orgstack user promote` makes one)")]
    NotPlatformAdmin(String),
    #[error("the key {fingerprint} is already registered for {email}")]
    AlreadyRegistered { fingerprint: String, email: String },
    #[error("no registered key {0}")]
    NotFound(String),
    #[error("key name must be at most 200 characters, without control characters")]
    InvalidName,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// A public key read from its OpenSSH text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey {
    pub algorithm: String,
    /// `SHA256:...`.
    pub fingerprint: String,
    /// `ALGORITHM BASE64`, without the comment.
    pub public_key: String,
    pub comment: String,
}

/// Reads one OpenSSH public key line (`ALGORITHM BASE64 [COMMENT]`, as in
/// `id_ed25519.pub` or `authorized_keys` without options). Blank lines and
/// `#` comments around it are ignored; more than one key is refused.
pub fn parse_public_key(text: &str) -> Result<ParsedKey, AdminKeyError> {
    if text.contains("PRIVATE KEY") {
        return Err(AdminKeyError::InvalidKey(
            "that is a private key; give the public one (the .pub file)".into(),
        ));
    }
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
    let line = lines.next().ok_or_else(|| AdminKeyError::InvalidKey("no key given".into()))?;
    if lines.next().is_some() {
        return Err(AdminKeyError::InvalidKey("more than one key; give one at a time".into()));
    }
    let key = PublicKey::from_openssh(line).map_err(|err| {
        AdminKeyError::InvalidKey(match err {
            ssh_key::Error::AlgorithmUnknown => "unknown key type".to_owned(),
            other => other.to_string(),
        })
    })?;
    fingerprint_of(&key)
}

/// The fingerprint and the comment-less text of `key` (as the SSH server
/// sees a client's key).
pub fn fingerprint_of(key: &PublicKey) -> Result<ParsedKey, AdminKeyError> {
    let mut bare = key.clone();
    bare.set_comment("");
    let public_key = bare
        .to_openssh()
        .map_err(|err| AdminKeyError::InvalidKey(err.to_string()))?
        .trim()
        .to_owned();
    Ok(ParsedKey {
        algorithm: key.algorithm().as_str().to_owned(),
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        public_key,
        comment: key.comment().as_str_lossy().to_owned(),
    })
}

const KEY_COLUMNS: &str = "k.id, k.user_id, u.email, k.name, k.algorithm, k.fingerprint, \
                           k.public_key, k.created_at, k.last_used_at";

impl Accounts {
    /// Registers `key` for the platform admin `email`, named `name` (the
    /// key's comment when `None`). Registering the same key for the same
    /// user again changes nothing and answers `(key, false)`.
    pub async fn add_admin_key(
        &self,
        actor: &Actor,
        email: &Email,
        key: &ParsedKey,
        name: Option<&str>,
    ) -> Result<(AdminKey, bool), AdminKeyError> {
        let name = name.unwrap_or(&key.comment).trim();
        if name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(AdminKeyError::InvalidName);
        }
        let mut tx = self.inner.pool.begin().await?;
        let user: Option<(Uuid, bool, bool)> = sqlx::query_as(
            "SELECT id, is_active, is_platform_admin FROM public.users WHERE email = $1",
        )
        .bind(email.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let user_id = match user {
            None => return Err(AdminKeyError::UserNotFound(email.to_string())),
            Some((id, true, true)) => id,
            Some(_) => return Err(AdminKeyError::NotPlatformAdmin(email.to_string())),
        };
        if let Some(existing) = self.admin_key_in(&mut tx, &key.fingerprint).await? {
            if existing.user_id == user_id {
                return Ok((existing, false));
            }
            return Err(AdminKeyError::AlreadyRegistered {
                fingerprint: existing.fingerprint,
                email: existing.email,
            });
        }
        let id = Uuid::now_v7();
        let inserted = sqlx::query(
            "INSERT INTO public.admin_keys (id, user_id, name, algorithm, public_key, fingerprint) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (fingerprint) DO NOTHING",
        )
        .bind(id)
        .bind(user_id)
        .bind(name)
        .bind(&key.algorithm)
        .bind(&key.public_key)
        .bind(&key.fingerprint)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            // Registered by someone else in the meantime.
            let email = match self.admin_key_in(&mut tx, &key.fingerprint).await? {
                Some(other) => other.email,
                None => String::from("another user"),
            };
            return Err(AdminKeyError::AlreadyRegistered {
                fingerprint: key.fingerprint.clone(),
                email,
            });
        }
        let details = serde_json::json!({
            "user": email.as_str(),
            "fingerprint": key.fingerprint,
            "algorithm": key.algorithm,
            "name": name,
        });
        audit::record_platform(
            &mut tx,
            actor,
            "admin_key.added",
            Some(&id.to_string()),
            None,
            details,
        )
        .await?;
        let added = self
            .admin_key_in(&mut tx, &key.fingerprint)
            .await?
            .ok_or_else(|| AdminKeyError::NotFound(key.fingerprint.clone()))?;
        tx.commit().await?;
        Ok((added, true))
    }

    /// Every registered key, by user and then age.
    pub async fn list_admin_keys(&self) -> Result<Vec<AdminKey>, AdminKeyError> {
        Ok(sqlx::query_as::<_, AdminKey>(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM public.admin_keys k JOIN public.users u ON u.id = k.user_id \
             ORDER BY u.email, k.created_at, k.id"
        )))
        .fetch_all(&self.inner.pool)
        .await?)
    }

    /// Removes the key with this fingerprint (`SHA256:...`) or id.
    pub async fn remove_admin_key(
        &self,
        actor: &Actor,
        fingerprint_or_id: &str,
    ) -> Result<AdminKey, AdminKeyError> {
        let wanted = fingerprint_or_id.trim();
        let id = Uuid::parse_str(wanted).ok();
        let mut tx = self.inner.pool.begin().await?;
        let key = sqlx::query_as::<_, AdminKey>(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM public.admin_keys k JOIN public.users u ON u.id = k.user_id \
             WHERE k.fingerprint = $1 OR k.id = $2 FOR UPDATE OF k"
        )))
        .bind(wanted)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| AdminKeyError::NotFound(wanted.to_owned()))?;
        sqlx::query("DELETE FROM public.admin_keys WHERE id = $1")
            .bind(key.id)
            .execute(&mut *tx)
            .await?;
        let details = serde_json::json!({
            "user": key.email,
            "fingerprint": key.fingerprint,
            "name": key.name,
        });
        let target = key.id.to_string();
        audit::record_platform(&mut tx, actor, "admin_key.removed", Some(&target), None, details)
            .await?;
        tx.commit().await?;
        Ok(key)
    }

    /// Whether a key with this fingerprint is registered (for an SSH
    /// client's first offer, before it proves it holds the key).
    pub async fn admin_key_exists(&self, fingerprint: &str) -> Result<bool, AdminKeyError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM public.admin_keys WHERE fingerprint = $1)",
        )
        .bind(fingerprint)
        .fetch_one(&self.inner.pool)
        .await?)
    }

    /// The user a proven key signs in as: only when the key is registered
    /// and its user is an active platform admin now. Records the key's use.
    pub async fn admin_for_key(
        &self,
        fingerprint: &str,
    ) -> Result<Option<(AdminKey, User)>, AdminKeyError> {
        let mut tx = self.inner.pool.begin().await?;
        let Some(key) = self.admin_key_in(&mut tx, fingerprint).await? else {
            return Ok(None);
        };
        let user = sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM public.users WHERE id = $1 AND is_active AND is_platform_admin",
            super::users::USER_COLUMNS
        )))
        .bind(key.user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(user) = user else {
            return Ok(None);
        };
        sqlx::query("UPDATE public.admin_keys SET last_used_at = now() WHERE id = $1")
            .bind(key.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some((key, user)))
    }

    async fn admin_key_in(
        &self,
        conn: &mut sqlx::PgConnection,
        fingerprint: &str,
    ) -> Result<Option<AdminKey>, AdminKeyError> {
        Ok(sqlx::query_as::<_, AdminKey>(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM public.admin_keys k JOIN public.users u ON u.id = k.user_id \
             WHERE k.fingerprint = $1"
        )))
        .bind(fingerprint)
        .fetch_optional(conn)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // From `ssh-keygen -t ed25519 -C ada@laptop`, with the fingerprints
    // `ssh-keygen -l` prints.
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHvYrr7B8TyQADYXrlWCdTnCEzLK/2z24SvCrEdRjrk6 ada@laptop";
    const ED25519_FP: &str = "SHA256:KthrI/JNode9IjB8CjKvXqMDjTpoBfz/dfaeerXzSZk";
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBPRd5XFMj5CaKiCJqWkaUxXCXW4JzOXPAbTtl6g5duTHUXYhp44GKa8G4MjbDiKBiqJNL7wlm0tAIVm++AaTBEc= e";
    const ECDSA_FP: &str = "SHA256:8N52EBA5f2wehPuOZG/73+91L7JsP2lA8QELS1Tq3Vk";

    #[test]
    fn a_key_line_gives_its_algorithm_fingerprint_and_comment() {
        let key = parse_public_key(&format!("# mine\n\n  {ED25519}  \n")).expect("valid key");
        assert_eq!(key.algorithm, "ssh-ed25519");
        assert_eq!(key.comment, "ada@laptop");
        assert_eq!(key.fingerprint, ED25519_FP);
        assert_eq!(
            key.public_key,
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHvYrr7B8TyQADYXrlWCdTnCEzLK/2z24SvCrEdRjrk6"
        );
        // The comment is not part of the fingerprint.
        let bare = parse_public_key(&key.public_key).expect("valid key");
        assert_eq!(bare.fingerprint, key.fingerprint);
        assert_eq!(bare.comment, "");
        let ecdsa = parse_public_key(ECDSA).expect("valid key");
        assert_eq!(
            (ecdsa.algorithm.as_str(), ecdsa.fingerprint.as_str()),
            ("ecdsa-sha2-nistp256", ECDSA_FP)
        );
    }

    #[test]
    fn anything_else_is_refused_with_the_reason() {
        for (text, why) in [
            ("", "no key given"),
            ("ssh-ed25519", "not an OpenSSH public key"),
            ("ssh-ed25519 not-base64!", "not an OpenSSH public key"),
            ("ssh-foo AAAAB3NzaC1yc2E=", "not an OpenSSH public key"),
            (&format!("{ED25519}\n{ED25519}"), "more than one key"),
            (
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
                "a private key",
            ),
        ] {
            let err = parse_public_key(text).expect_err(text);
            assert!(err.to_string().contains(why), "{text:?}: {err}");
        }
    }
}
