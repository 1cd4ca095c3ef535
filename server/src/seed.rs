//! `orgstack seed FILE`: load orgs, users, memberships and flags from a JSON
//! or YAML fixture, idempotently (a second run changes nothing).
//!
//! ```yaml
//! orgs:
//!   - { name: Acme, slug: acme, flags: { webhooks: true } }
//! users:
//!   - email: ada@example.com
//!     name: Ada
//!     password_env: ADA_PASSWORD    # or `password:` for throwaway dev data
//!     platform_admin: false
//!     memberships: [{ org: acme, role: owner }]
//! flags:
//!   weekly_digest: true             # global values
//! ```
//!
//! Existing orgs and users are kept as they are (a user's password is set
//! only when the user is created); memberships get the role the fixture
//! says; flags are set to the fixture's value.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;
use tenancy::Slug;

use crate::accounts::members::Acting;
use crate::accounts::users::NewUser;
use crate::accounts::{Actor, Email, Role};
use crate::http::AppState;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    #[serde(default)]
    pub orgs: Vec<SeedOrg>,
    #[serde(default)]
    pub users: Vec<SeedUser>,
    /// Global flag values.
    #[serde(default)]
    pub flags: BTreeMap<String, bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedOrg {
    pub name: String,
    pub slug: Option<String>,
    /// Flag overrides for this org.
    #[serde(default)]
    pub flags: BTreeMap<String, bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    pub email: String,
    #[serde(default)]
    pub name: String,
    pub password: Option<String>,
    /// Name of an environment variable holding the password.
    pub password_env: Option<String>,
    #[serde(default)]
    pub platform_admin: bool,
    #[serde(default)]
    pub memberships: Vec<SeedMembership>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedMembership {
    pub org: String,
    pub role: Role,
}

/// What a seed run did.
#[derive(Debug, Default, serde::Serialize)]
pub struct SeedReport {
    pub orgs_created: usize,
    pub users_created: usize,
    pub memberships_changed: usize,
    pub flags_set: usize,
}

/// Reads a fixture: YAML for `.yaml`/`.yml`, JSON otherwise.
pub fn read(path: &Path) -> anyhow::Result<Fixture> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let yaml = matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
    if yaml {
        serde_norway::from_str(&text)
            .with_context(|| format!("{} is not a valid fixture", path.display()))
    } else {
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid fixture", path.display()))
    }
}

/// Applies `fixture`; safe to run again.
pub async fn apply(state: &AppState, fixture: &Fixture) -> anyhow::Result<SeedReport> {
    let mut report = SeedReport::default();
    let acting = Acting { actor: Actor::Cli, role: Role::Owner, user_id: None };
    for org in &fixture.orgs {
        let slug = match &org.slug {
            Some(s) => {
                Slug::parse(s).with_context(|| format!("org {:?}: invalid slug", org.name))?
            }
            None => Slug::suggest(&org.name)
                .with_context(|| format!("org {:?}: give it a slug", org.name))?,
        };
        let existing = state.orgs.by_slug(&slug).await?;
        let record = match existing {
            Some(o) => (*o).clone(),
            None => {
                report.orgs_created += 1;
                state.orgs.create(&org.name, &slug).await?
            }
        };
        for (name, enabled) in &org.flags {
            state.flags.set(&Actor::Cli, name, Some(record.id), *enabled).await?;
            report.flags_set += 1;
        }
    }
    for user in &fixture.users {
        let email = Email::parse(&user.email).with_context(|| format!("user {:?}", user.email))?;
        let record = match state.accounts.user_by_email(&email).await? {
            Some(existing) => existing,
            None => {
                let password = match (&user.password, &user.password_env) {
                    (_, Some(var)) => Some(
                        std::env::var(var)
                            .with_context(|| format!("user {email}: {var} is not set"))?,
                    ),
                    (Some(pw), None) => Some(pw.clone()),
                    (None, None) => None,
                };
                report.users_created += 1;
                let new = NewUser {
                    email: &email,
                    name: &user.name,
                    password,
                    platform_admin: user.platform_admin,
                };
                state
                    .accounts
                    .create_user(&Actor::Cli, new)
                    .await
                    .with_context(|| format!("user {email}"))?
            }
        };
        if user.platform_admin && !record.is_platform_admin {
            state.accounts.promote_user(&Actor::Cli, &email).await?;
        }
        for membership in &user.memberships {
            let slug = Slug::parse(&membership.org)
                .with_context(|| format!("user {email}: invalid org slug"))?;
            let Some(org) = state.orgs.by_slug(&slug).await? else {
                bail!("user {email}: no org '{slug}' (declare it under orgs)");
            };
            match state.accounts.member(&org, record.id).await? {
                Some(m) if m.role == membership.role => {}
                Some(_) => {
                    state.accounts.set_role(&acting, &org, record.id, membership.role).await?;
                    report.memberships_changed += 1;
                }
                None if membership.role == Role::Owner => {
                    state.accounts.add_owner(&Actor::Cli, &org, record.id).await?;
                    report.memberships_changed += 1;
                }
                None => {
                    state.accounts.add_member(&acting, &org, &email, membership.role).await?;
                    report.memberships_changed += 1;
                }
            }
        }
    }
    for (name, enabled) in &fixture.flags {
        state.flags.set(&Actor::Cli, name, None, *enabled).await?;
        report.flags_set += 1;
    }
    Ok(report)
}
