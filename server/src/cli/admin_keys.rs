//! `orgstack admin-keys`: the SSH public keys that may open `admin-tui`
//! over SSH (`admin-tui ssh-serve`), each mapped to a platform admin.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use crate::accounts::admin_keys::parse_public_key;
use crate::accounts::{Actor, Email};
use crate::app;
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum AdminKeysCommand {
    /// Register an SSH public key for a platform admin; the console opened
    /// with it acts (and is audited) as that admin. Registering the same key
    /// again changes nothing.
    Add {
        /// The platform admin's email.
        #[arg(long, value_name = "EMAIL")]
        user: String,
        /// The public key: 'ssh-ed25519 AAAA... comment'.
        #[arg(
            long,
            value_name = "KEY",
            required_unless_present = "key_file",
            conflicts_with = "key_file"
        )]
        key: Option<String>,
        /// A file with the public key (such as ~/.ssh/id_ed25519.pub).
        #[arg(long, value_name = "PATH")]
        key_file: Option<PathBuf>,
        /// What to call the key (default: the key's comment).
        #[arg(long)]
        name: Option<String>,
    },
    /// Every registered key: fingerprint, user, name, created, last used.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a key by its fingerprint (SHA256:...) or id.
    Remove {
        #[arg(value_name = "FINGERPRINT_OR_ID")]
        key: String,
    },
}

pub async fn admin_keys(
    out: &mut impl Write,
    config: Config,
    cmd: AdminKeysCommand,
) -> anyhow::Result<()> {
    // Read and check the key before connecting: a typo fails fast.
    let parsed = match &cmd {
        AdminKeysCommand::Add { key, key_file, .. } => {
            let text = match (key, key_file) {
                (Some(text), _) => text.clone(),
                (None, Some(path)) => std::fs::read_to_string(path)
                    .with_context(|| format!("reading the key file {}", path.display()))?,
                (None, None) => anyhow::bail!("give the key with --key or --key-file"),
            };
            Some(parse_public_key(&text)?)
        }
        _ => None,
    };
    let state = app::connect_now(config).await?;
    let accounts = &state.accounts;
    match cmd {
        AdminKeysCommand::Add { user, name, .. } => {
            let email =
                Email::parse(&user).map_err(|why| anyhow::anyhow!("--user {user:?}: {why}"))?;
            let key = parsed.context("no key")?;
            let (added, created) =
                accounts.add_admin_key(&Actor::Cli, &email, &key, name.as_deref()).await?;
            if created {
                writeln!(
                    out,
                    "added {} {} for {}",
                    added.algorithm, added.fingerprint, added.email
                )?;
            } else {
                writeln!(
                    out,
                    "{} is already registered for {}; nothing changed",
                    added.fingerprint, added.email
                )?;
            }
        }
        AdminKeysCommand::List { json } => {
            let keys = accounts.list_admin_keys().await?;
            if json {
                serde_json::to_writer_pretty(&mut *out, &keys)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "{:<51} {:<30} {:<20} {:<16} LAST USED",
                    "FINGERPRINT", "USER", "NAME", "CREATED"
                )?;
                for k in &keys {
                    let when =
                        |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M").to_string();
                    writeln!(
                        out,
                        "{:<51} {:<30} {:<20} {:<16} {}",
                        k.fingerprint,
                        k.email,
                        k.name,
                        when(k.created_at),
                        k.last_used_at.map_or_else(|| "never".to_owned(), when)
                    )?;
                }
            }
        }
        AdminKeysCommand::Remove { key } => {
            let removed = accounts.remove_admin_key(&Actor::Cli, &key).await?;
            writeln!(
                out,
                "removed {} ({}) of {}",
                removed.fingerprint, removed.name, removed.email
            )?;
        }
    }
    Ok(())
}
