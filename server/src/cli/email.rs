//! `orgstack email test --to ADDRESS`.

use std::io::Write;

use anyhow::Context;
use clap::Subcommand;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum EmailCommand {
    /// Send a test email now (not through a job), to check SMTP_URL and
    /// EMAIL_FROM.
    Test {
        /// The recipient.
        #[arg(long)]
        to: String,
    },
}

pub async fn email(out: &mut impl Write, config: Config, cmd: EmailCommand) -> anyhow::Result<()> {
    match cmd {
        EmailCommand::Test { to } => {
            to.parse::<lettre::message::Mailbox>()
                .map_err(|_| anyhow::anyhow!("--to {to:?} is not an email address"))?;
            let redis =
                crate::redis::client(config.require_redis_url()?).context("invalid REDIS_URL")?;
            let _connection = fred::prelude::ClientLike::connect(&redis);
            fred::prelude::ClientLike::wait_for_connect(&redis)
                .await
                .context("connecting to Redis")?;
            let keys = tenancy::RedisKeys::new(&config.redis_key_prefix);
            let mailer = crate::email::Mailer::from_config(&config, redis, keys)?;
            let context = serde_json::json!({ "sent_at": chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC").to_string() });
            let message = crate::email::render(
                "test",
                std::slice::from_ref(&to),
                &context,
                mailer.public_url(),
            )?;
            mailer.send_now(&message).await.with_context(|| format!("sending to {to}"))?;
            if mailer.is_mailbox() {
                writeln!(
                    out,
                    "no SMTP_URL: the test email to {to} went to the log and the dev mailbox (/dev/mail)"
                )?;
            } else {
                writeln!(out, "sent a test email to {to}")?;
            }
        }
    }
    Ok(())
}
