//! `orgstack webhooks list|replay`.

use std::io::Write;

use clap::Subcommand;
use tenancy::Slug;
use uuid::Uuid;

use crate::accounts::Actor;
use crate::app;
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// An org's webhook endpoints, with their latest deliveries.
    List {
        org: Slug,
        /// Deliveries shown per endpoint.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=200))]
        deliveries: u32,
        #[arg(long)]
        json: bool,
    },
    /// Send a delivery's event again (a new delivery, the same webhook-id).
    Replay { org: Slug, delivery: Uuid },
}

pub async fn webhooks(
    out: &mut impl Write,
    config: Config,
    cmd: WebhooksCommand,
) -> anyhow::Result<()> {
    let state = app::connect_now(config).await?;
    match cmd {
        WebhooksCommand::List { org, deliveries, json } => {
            let org = state.orgs.get(&org).await?;
            let endpoints = state.webhooks.list(&org).await?;
            let mut shown = Vec::new();
            for endpoint in endpoints {
                let recent = if deliveries == 0 {
                    Vec::new()
                } else {
                    state.webhooks.deliveries(&org, endpoint.id, None, deliveries).await?
                };
                shown.push((endpoint, recent));
            }
            if json {
                let items: Vec<serde_json::Value> = shown
                    .iter()
                    .map(|(e, d)| {
                        let mut v = serde_json::to_value(e).unwrap_or_default();
                        v["deliveries"] = serde_json::to_value(d).unwrap_or_default();
                        v
                    })
                    .collect();
                serde_json::to_writer_pretty(&mut *out, &items)?;
                writeln!(out)?;
                return Ok(());
            }
            if shown.is_empty() {
                writeln!(out, "org '{}' has no webhooks", org.slug)?;
            }
            for (e, recent) in &shown {
                writeln!(
                    out,
                    "{}  {:<8} {:<8} {}  [{}]",
                    e.id,
                    e.kind,
                    if e.enabled { "enabled" } else { "disabled" },
                    e.url,
                    e.event_types.join(", ")
                )?;
                for d in recent {
                    writeln!(
                        out,
                        "    {}  {:<14} {:<9} attempts {}  {}{}",
                        d.id,
                        d.event_type,
                        d.status,
                        d.attempts,
                        d.response_status.map(|s| format!("HTTP {s}")).unwrap_or_default(),
                        d.error.as_deref().map(|e| format!(" {e}")).unwrap_or_default()
                    )?;
                }
            }
        }
        WebhooksCommand::Replay { org, delivery } => {
            let org = state.orgs.get(&org).await?;
            let replayed = state.webhooks.replay(&org, &Actor::Cli, None, delivery).await?;
            writeln!(
                out,
                "replayed delivery {delivery} as {} ({} of event {}), queued",
                replayed.id, replayed.event_type, replayed.event_id
            )?;
        }
    }
    Ok(())
}
