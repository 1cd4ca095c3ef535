//! Accounts: users, org roles and memberships, sessions, org API keys and
//! audit events. These services hold the rules; HTTP handlers, the CLI and
//! (later) the TUI call them, so each rule exists once.

pub mod admin_keys;
pub mod audit;
pub mod auth;
pub mod identities;
pub mod invitations;
pub mod members;
pub mod password;
pub mod password_reset;
pub mod tokens;
pub mod users;

use std::fmt;

use uuid::Uuid;

/// A role within one org, from most to least powerful.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Member,
    Admin,
    Owner,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Member, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }

    /// True when this role may do what `required` may.
    pub fn at_least(self, required: Role) -> bool {
        self >= required
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role '{s}'; expected owner, admin, member or viewer"))
    }
}

/// A normalized email address (trimmed, lowercased), checked for shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(input: &str) -> Result<Self, AccountsError> {
        let email = input.trim().to_lowercase();
        let valid = email.len() <= 254
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            });
        if valid { Ok(Email(email)) } else { Err(AccountsError::InvalidEmail) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// Who is acting: shown in audit events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User {
        id: Uuid,
        email: String,
    },
    ApiKey {
        id: Uuid,
        name: String,
    },
    /// An operator at the command line.
    Cli,
    System,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::User { email, .. } => write!(f, "user:{email}"),
            Actor::ApiKey { id, name } => write!(f, "api_key:{id}:{name}"),
            Actor::Cli => f.write_str("cli"),
            Actor::System => f.write_str("system"),
        }
    }
}

/// What account operations refuse, and why.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("that is not a valid email address")]
    InvalidEmail,
    #[error("password {0}")]
    WeakPassword(&'static str),
    #[error("a user with that email already exists")]
    EmailTaken,
    #[error("no such user")]
    UserNotFound,
    #[error("invalid email or password")]
    InvalidCredentials,
    /// Refused for now: `reason` says why (too many failures, or another
    /// sign-in to the same account still being checked).
    #[error("{reason}; retry in {retry_after_secs} s")]
    Throttled { reason: &'static str, retry_after_secs: u64 },
    #[error("an org must keep at least one owner")]
    LastOwner,
    #[error("that user is not a member of this org")]
    NotMember,
    #[error("that user is already a member of this org")]
    AlreadyMember,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("no such API key")]
    KeyNotFound,
    #[error("name must be 1 to 200 characters")]
    InvalidName,
    #[error("no such invitation")]
    InvitationNotFound,
    #[error("this invitation was already accepted")]
    InvitationUsed,
    #[error("this invitation has expired; ask for a new one")]
    InvitationExpired,
    #[error("an account with this email exists; sign in, then accept the invitation")]
    SignInToAccept,
    #[error("this reset link is unknown, used or expired; ask for a new one")]
    InvalidResetToken,
    #[error(transparent)]
    Tenancy(#[from] tenancy::TenancyError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("redis error: {0}")]
    Redis(#[from] fred::error::Error),
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

impl AccountsError {
    /// Maps unique violations by constraint name.
    pub(crate) fn from_db(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err {
            match db.constraint() {
                Some("users_email_key") => return AccountsError::EmailTaken,
                Some("memberships_pkey") => return AccountsError::AlreadyMember,
                _ => {}
            }
        }
        AccountsError::Database(err)
    }
}

pub(crate) fn validate_name(name: &str) -> Result<&str, AccountsError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(AccountsError::InvalidName);
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Owner.at_least(Role::Admin));
        assert!(Role::Admin.at_least(Role::Admin));
        assert!(!Role::Member.at_least(Role::Admin));
        assert!(Role::Member.at_least(Role::Viewer));
        assert_eq!("admin".parse::<Role>(), Ok(Role::Admin));
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").map(|e| e.0).ok(),
            Some("ada@example.com".into())
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "a@b@c.com",
            "ada@.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }
}
