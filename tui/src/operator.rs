//! Who the local console acts as: `--as EMAIL` (or `ADMIN_TUI_AS`), else
//! the platform admin the OS user is mapped to in `ADMIN_TUI_OS_USERS`;
//! without one it does not start. (Over SSH the operator is the admin of the
//! client's key; see [`crate::ssh`].)

use anyhow::Context;
use orgstack::accounts::{Actor, Email};
use orgstack::http::AppState;

/// `ADMIN_TUI_OS_USERS`: which platform admin each OS user acts as.
#[derive(Debug, Clone, PartialEq)]
pub struct OsUsers(Vec<(String, Email)>);

impl OsUsers {
    /// Reads `user=email,user=email`.
    pub fn parse(text: &str) -> Result<OsUsers, String> {
        let mut pairs = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (user, email) = entry
                .split_once('=')
                .map(|(u, e)| (u.trim(), e.trim()))
                .filter(|(u, _)| !u.is_empty())
                .ok_or_else(|| format!("{entry:?}: expected OS_USER=EMAIL"))?;
            let email = Email::parse(email).map_err(|why| format!("{entry:?}: {why}"))?;
            pairs.push((user.to_owned(), email));
        }
        Ok(OsUsers(pairs))
    }

    /// The admin `os_user` is mapped to.
    pub fn admin_of(&self, os_user: &str) -> Option<&Email> {
        self.0.iter().find(|(user, _)| user == os_user).map(|(_, email)| email)
    }
}

/// The operator of the local console: `--as`, else the admin the OS user
/// is mapped to; refused unless an active platform admin.
pub async fn local_operator(
    state: &AppState,
    as_email: Option<&str>,
    os_users: Option<&OsUsers>,
) -> anyhow::Result<Actor> {
    if let Some(email) = as_email {
        return operator(state, email).await;
    }
    let os_user = os_user().context("no operator: pass --as EMAIL (or set ADMIN_TUI_AS)")?;
    match os_users.and_then(|map| map.admin_of(&os_user)) {
        Some(email) => operator(state, email.as_str())
            .await
            .with_context(|| format!("OS user '{os_user}' (ADMIN_TUI_OS_USERS)")),
        None => anyhow::bail!(
            "no operator: pass --as EMAIL (or set ADMIN_TUI_AS) with a platform admin's email, \
             or map OS user '{os_user}' to one in ADMIN_TUI_OS_USERS ({os_user}=EMAIL)"
        ),
    }
}

/// The name of the OS user running this process (from the user database,
/// else `$USER`).
pub fn os_user() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|user| user.name)
        .or_else(|| std::env::var("USER").ok())
        .filter(|name| !name.is_empty())
}

/// The operator, once checked to be an active platform admin.
pub async fn operator(state: &AppState, email: &str) -> anyhow::Result<Actor> {
    let parsed = Email::parse(email).map_err(|why| anyhow::anyhow!("--as {email:?}: {why}"))?;
    match state.accounts.user_by_email(&parsed).await? {
        Some(user) if user.is_active && user.is_platform_admin => {
            Ok(Actor::User { id: user.id, email: user.email })
        }
        Some(_) => anyhow::bail!("{email} is not an active platform admin"),
        None => anyhow::bail!("no user {email}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_users_map_names_to_admins() {
        let map =
            OsUsers::parse(" alice = Alice@Example.com ,root=ops@example.com,").expect("valid");
        assert_eq!(map.admin_of("alice").map(Email::as_str), Some("alice@example.com"));
        assert_eq!(map.admin_of("root").map(Email::as_str), Some("ops@example.com"));
        assert_eq!(map.admin_of("bob"), None);
        assert_eq!(OsUsers::parse("").expect("empty"), OsUsers(vec![]));
        for (bad, why) in [
            ("alice", "expected OS_USER=EMAIL"),
            ("=a@example.com", "expected OS_USER=EMAIL"),
            ("alice=not-an-email", "not a valid email"),
        ] {
            let err = OsUsers::parse(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
