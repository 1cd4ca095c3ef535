//! Email: messages rendered from the templates in `server/templates/email`
//! (a text part and an HTML part), sent by the `email.send` job (a platform
//! job on the `emails` queue, so it is retried with backoff and never sent
//! inline in a request), over SMTP with lettre.
//!
//! `SMTP_URL` picks the server and its TLS mode: `smtps://host:465`
//! (implicit TLS), `smtp://host:587?tls=required` (STARTTLS, refused
//! without it), `smtp://host:25?tls=opportunistic`, or plain
//! `smtp://localhost:25`; credentials as `smtp://user:pass@host`. Without
//! it, messages go to the log and to the dev mailbox (the newest 200 in
//! Redis), shown at `/dev/mail` in development: `orgstack dev` needs no
//! SMTP server.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fred::prelude::{KeysInterface, ListInterface};
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tenancy::RedisKeys;

use crate::config::Config;

/// Messages kept in the dev mailbox.
const MAILBOX_SIZE: i64 = 200;
/// The job kind that sends one message.
pub const SEND_KIND: &str = "email.send";

/// Why an email could not be made or sent.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("not an email address: {0}")]
    InvalidAddress(String),
    #[error("email template {0}: {1}")]
    Template(String, String),
    #[error("sending failed: {0}")]
    Send(String),
    #[error("SMTP_URL: {0}")]
    Config(String),
    #[error("redis error: {0}")]
    Redis(#[from] fred::error::Error),
}

/// One rendered message, as the `email.send` job carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutgoingEmail {
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The template it was made from (for logs and the dev mailbox).
    pub template: String,
}

/// A message in the dev mailbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEmail {
    pub at: chrono::DateTime<chrono::Utc>,
    pub from: String,
    #[serde(flatten)]
    pub email: OutgoingEmail,
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// No SMTP server: the log and the dev mailbox.
    Mailbox,
}

/// Renders and sends email. Cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    from: Mailbox,
    public_url: String,
    redis: fred::clients::Client,
    keys: RedisKeys,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let transport = match self.inner.transport {
            Transport::Smtp(_) => "smtp",
            Transport::Mailbox => "mailbox",
        };
        f.debug_struct("Mailer")
            .field("transport", &transport)
            .field("from", &self.inner.from.to_string())
            .finish()
    }
}

fn templates() -> &'static minijinja::Environment<'static> {
    static ENV: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        let sources: [(&str, &str); 11] = [
            ("layout.html", include_str!("../templates/email/layout.html")),
            ("invitation.txt", include_str!("../templates/email/invitation.txt")),
            ("invitation.html", include_str!("../templates/email/invitation.html")),
            ("password_reset.txt", include_str!("../templates/email/password_reset.txt")),
            ("password_reset.html", include_str!("../templates/email/password_reset.html")),
            ("digest.txt", include_str!("../templates/email/digest.txt")),
            ("digest.html", include_str!("../templates/email/digest.html")),
            ("error.txt", include_str!("../templates/email/error.txt")),
            ("error.html", include_str!("../templates/email/error.html")),
            ("test.txt", include_str!("../templates/email/test.txt")),
            ("test.html", include_str!("../templates/email/test.html")),
        ];
        for (name, source) in sources {
            // The templates are part of the build; a broken one fails the
            // unit test that renders every template.
            if let Err(err) = env.add_template(name, source) {
                tracing::error!(template = name, error = %err, "email template does not parse");
            }
        }
        env
    })
}

/// Renders template `name` (`name.txt`: a `Subject:` line, then the text;
/// `name.html`) with `context` for `to`.
pub fn render(
    name: &str,
    to: &[String],
    context: &Value,
    public_url: &str,
) -> Result<OutgoingEmail, EmailError> {
    let mut context = context.clone();
    if let Value::Object(map) = &mut context {
        map.entry("public_url").or_insert_with(|| Value::String(public_url.to_owned()));
    }
    let env = templates();
    let render_one = |file: String| -> Result<String, EmailError> {
        env.get_template(&file)
            .and_then(|t| t.render(&context))
            .map_err(|e| EmailError::Template(file.clone(), e.to_string()))
    };
    let text = render_one(format!("{name}.txt"))?;
    let html = render_one(format!("{name}.html"))?;
    let (first, body) = text.split_once('\n').unwrap_or((&text, ""));
    let subject = first
        .strip_prefix("Subject:")
        .ok_or_else(|| {
            EmailError::Template(format!("{name}.txt"), "must start with a Subject: line".into())
        })?
        .trim()
        .to_owned();
    Ok(OutgoingEmail {
        to: to.to_vec(),
        subject,
        text: body.trim_start_matches('\n').to_owned(),
        html,
        template: name.to_owned(),
    })
}

impl Mailer {
    /// The mailer `config` describes (SMTP, or the mailbox without `SMTP_URL`).
    pub fn from_config(
        config: &Config,
        redis: fred::clients::Client,
        keys: RedisKeys,
    ) -> Result<Self, EmailError> {
        let transport = match &config.smtp_url {
            Some(url) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    .map_err(|e| EmailError::Config(e.to_string()))?
                    .timeout(Some(Duration::from_secs(20)))
                    .build(),
            ),
            None => Transport::Mailbox,
        };
        let from = config
            .email_from
            .parse::<Mailbox>()
            .map_err(|_| EmailError::InvalidAddress(config.email_from.clone()))?;
        Ok(Mailer {
            inner: Arc::new(Inner {
                transport,
                from,
                public_url: config.public_url.clone(),
                redis,
                keys,
            }),
        })
    }

    /// This server's address as users reach it (links in messages).
    pub fn public_url(&self) -> &str {
        &self.inner.public_url
    }

    /// True when messages go to the dev mailbox, not an SMTP server.
    pub fn is_mailbox(&self) -> bool {
        matches!(self.inner.transport, Transport::Mailbox)
    }

    /// Renders template `name` for `to` and enqueues its sending.
    pub async fn enqueue(
        &self,
        jobs: &crate::jobs::Jobs,
        name: &str,
        to: &[String],
        context: &Value,
    ) -> Result<uuid::Uuid, crate::jobs::JobsError> {
        for address in to {
            address.parse::<Mailbox>().map_err(|_| {
                crate::jobs::JobsError::InvalidPayload(format!("not an email address: {address}"))
            })?;
        }
        let email = render(name, to, context, &self.inner.public_url)
            .map_err(|e| crate::jobs::JobsError::InvalidPayload(e.to_string()))?;
        let payload = serde_json::to_value(&email)
            .map_err(|e| crate::jobs::JobsError::InvalidPayload(e.to_string()))?;
        jobs.enqueue_platform(crate::jobs::NewJob::new(SEND_KIND, payload)).await
    }

    /// Sends `email` now (the job's work, and `orgstack email test`).
    pub async fn send_now(&self, email: &OutgoingEmail) -> Result<(), EmailError> {
        match &self.inner.transport {
            Transport::Smtp(smtp) => {
                let mut builder = lettre::Message::builder()
                    .from(self.inner.from.clone())
                    .subject(email.subject.clone());
                for address in &email.to {
                    let mailbox = address
                        .parse::<Mailbox>()
                        .map_err(|_| EmailError::InvalidAddress(address.clone()))?;
                    builder = builder.to(mailbox);
                }
                let message = builder
                    .multipart(MultiPart::alternative_plain_html(
                        email.text.clone(),
                        email.html.clone(),
                    ))
                    .map_err(|e| EmailError::Send(e.to_string()))?;
                smtp.send(message).await.map_err(|e| EmailError::Send(e.to_string()))?;
                tracing::info!(template = %email.template, recipients = email.to.len(), "email sent");
                Ok(())
            }
            Transport::Mailbox => {
                tracing::info!(
                    template = %email.template,
                    to = ?email.to,
                    subject = %email.subject,
                    "email not sent (no SMTP_URL); kept in the dev mailbox:\n{}",
                    email.text
                );
                let stored = StoredEmail {
                    at: chrono::Utc::now(),
                    from: self.inner.from.to_string(),
                    email: email.clone(),
                };
                let key = self.mailbox_key();
                let value = serde_json::to_string(&stored).unwrap_or_default();
                let pipeline = self.inner.redis.pipeline();
                let _: () = pipeline.lpush(&key, value).await?;
                let _: () = pipeline.ltrim(&key, 0, MAILBOX_SIZE - 1).await?;
                let _: () = pipeline.expire(&key, 7 * 86_400, None).await?;
                let _: Vec<fred::types::Value> = pipeline.all().await?;
                Ok(())
            }
        }
    }

    /// The dev mailbox, newest first.
    pub async fn mailbox(&self, limit: i64) -> Result<Vec<StoredEmail>, EmailError> {
        let raw: Vec<String> = self.inner.redis.lrange(self.mailbox_key(), 0, limit - 1).await?;
        Ok(raw.iter().filter_map(|r| serde_json::from_str(r).ok()).collect())
    }

    fn mailbox_key(&self) -> String {
        format!("{}:dev:mailbox", self.inner.keys.prefix())
    }
}

/// The `email.send` handler.
#[derive(Debug)]
pub struct SendEmail {
    mailer: Mailer,
}

impl SendEmail {
    pub fn new(mailer: Mailer) -> Self {
        SendEmail { mailer }
    }
}

impl crate::jobs::handler::Handler for SendEmail {
    fn kind(&self) -> &'static str {
        SEND_KIND
    }

    fn queue(&self) -> &'static str {
        "emails"
    }

    fn max_attempts(&self) -> u32 {
        8
    }

    fn timeout(&self, _payload: &Value) -> Duration {
        Duration::from_secs(60)
    }

    fn validate(&self, payload: &Value) -> Result<(), String> {
        serde_json::from_value::<OutgoingEmail>(payload.clone())
            .map(|_| ())
            .map_err(|e| format!("expected a rendered email: {e}"))
    }

    fn run<'a>(
        &'a self,
        ctx: &'a crate::jobs::handler::JobContext,
    ) -> futures::future::BoxFuture<'a, crate::jobs::handler::JobResult> {
        use futures::FutureExt;
        async move {
            let email: OutgoingEmail =
                serde_json::from_value(ctx.payload.clone()).map_err(|e| {
                    crate::jobs::handler::JobError::permanent(format!("bad payload: {e}"))
                })?;
            match self.mailer.send_now(&email).await {
                Ok(()) => Ok(serde_json::json!({ "sent_to": email.to.len() })),
                Err(err @ EmailError::InvalidAddress(_)) => {
                    Err(crate::jobs::handler::JobError::permanent(err.to_string()))
                }
                Err(err) => Err(crate::jobs::handler::JobError::retry(err.to_string())),
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_renders_a_subject_text_and_escaped_html() {
        let to = vec!["ada@example.com".to_owned()];
        let cases = [
            (
                "invitation",
                serde_json::json!({ "invited_by": "Bob <script>", "org_name": "Acme & Co", "role": "admin", "accept_url": "https://x.example/i/abc", "expires_at": "2026-12-09" }),
            ),
            (
                "password_reset",
                serde_json::json!({ "email": "ada@example.com", "reset_url": "https://x.example/r/abc" }),
            ),
            ("test", serde_json::json!({ "sent_at": "now" })),
            (
                "digest",
                serde_json::json!({ "org_name": "Acme", "since": "a", "until": "b", "jobs_run": 3, "jobs_succeeded": 2, "jobs_failed": 1, "files_ready": 1, "files_failed": 0, "members_added": 2, "jobs_url": "https://x.example/j", "files_url": "https://x.example/f", "members_url": "https://x.example/m" }),
            ),
            (
                "error",
                serde_json::json!({ "title": "500 on GET /x", "source": "server_error", "request_id": "r-1", "job_id": null, "org_id": null, "error": "boom", "at": "now", "limit_minutes": 60 }),
            ),
        ];
        for (name, context) in &cases {
            let email = render(name, &to, context, "https://x.example").expect(name);
            assert!(!email.subject.is_empty() && !email.subject.contains('\n'), "{name}");
            assert!(!email.text.starts_with("Subject"), "{name}");
            assert!(email.html.contains("https://x.example"), "{name}");
        }
        let invite = render("invitation", &to, &cases[0].1, "https://x.example").expect("invite");
        assert_eq!(invite.subject, "Bob <script> invited you to Acme & Co");
        assert!(invite.html.contains("Acme &amp; Co") && !invite.html.contains("<script>"));
        // A missing value is an error, not an empty hole in the message.
        assert!(render("invitation", &to, &serde_json::json!({}), "").is_err());
    }
}
