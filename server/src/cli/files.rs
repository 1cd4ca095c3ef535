//! `orgstack files list|purge`.

use std::io::Write;

use clap::Subcommand;
use tenancy::Slug;

use crate::accounts::Actor;
use crate::app;
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum FilesCommand {
    /// List an org's files, newest first.
    List {
        org: Slug,
        /// uploaded, processing, ready or failed.
        #[arg(long, value_parser = ["uploaded", "processing", "ready", "failed"])]
        status: Option<String>,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Delete every file of an org (records and stored bytes, including
    /// bytes no record points at). A dry run unless --yes.
    Purge {
        org: Slug,
        #[arg(long)]
        yes: bool,
    },
}

pub async fn files(out: &mut impl Write, config: Config, cmd: FilesCommand) -> anyhow::Result<()> {
    let state = app::connect_now(config).await?;
    match cmd {
        FilesCommand::List { org, status, limit, json } => {
            let org = state.orgs.get(&org).await?;
            let files = state.files.list(&org, status.as_deref(), None, limit).await?;
            if json {
                serde_json::to_writer_pretty(&mut *out, &files)?;
                writeln!(out)?;
                return Ok(());
            }
            writeln!(
                out,
                "{:<36}  {:<10}  {:>12}  {:<22}  {:<20}  NAME",
                "ID", "STATUS", "BYTES", "TYPE", "CREATED"
            )?;
            for f in &files {
                writeln!(
                    out,
                    "{:<36}  {:<10}  {:>12}  {:<22}  {:<20}  {}",
                    f.id,
                    f.status,
                    f.size_bytes,
                    f.content_type,
                    f.created_at.format("%Y-%m-%d %H:%M:%S"),
                    f.name
                )?;
            }
        }
        FilesCommand::Purge { org, yes } => {
            let org = state.orgs.get(&org).await?;
            let records = state.files.count(&org).await?;
            let stored = state.files.storage().list_org(org.id).await?;
            let bytes: u64 = stored.iter().map(|(_, size)| size).sum();
            if !yes {
                writeln!(
                    out,
                    "dry run: would delete {records} file records and {} stored objects ({bytes} bytes) of org '{}'; rerun with --yes to do it",
                    stored.len(),
                    org.slug
                )?;
                return Ok(());
            }
            let (records, objects) = state.files.purge_all(&org, &Actor::Cli).await?;
            writeln!(
                out,
                "deleted {records} file records and {objects} stored objects ({bytes} bytes) of org '{}'",
                org.slug
            )?;
        }
    }
    Ok(())
}
