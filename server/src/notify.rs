//! Telling the platform admins about failures: an unhandled server error
//! (a 500) or a job that went dead sends one email to `ADMIN_EMAILS` (and a
//! message to `DISCORD_WEBHOOK_URL` when set), at most one per fingerprint
//! per hour. A report carries ids, the route or job kind and the error's
//! first line: never request bodies, headers or secrets.
//!
//! The hour is kept in Redis (`SET NX EX`), so every process shares it and
//! an incident enqueues one `notify.error` job per fingerprint, not one
//! per failure.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fred::prelude::KeysInterface;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::jobs::handler::{Handler, JobContext, JobError, JobResult};
use crate::jobs::{Jobs, NewJob};

/// The job kind that sends one report.
pub const KIND: &str = "notify.error";
/// At most one report per fingerprint in this long.
pub const RATE_LIMIT: Duration = Duration::from_secs(3600);
/// Error text is cut to this many characters.
const MAX_ERROR_CHARS: usize = 300;

/// One failure worth telling the admins about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReport {
    /// `server_error` or `job_dead`.
    pub source: String,
    /// One line: what failed.
    pub title: String,
    /// What makes two failures "the same" (route and error kind, or job kind).
    pub fingerprint: String,
    pub request_id: Option<String>,
    pub job_id: Option<Uuid>,
    pub org_id: Option<Uuid>,
    pub error: String,
    pub at: DateTime<Utc>,
}

/// The first line of `error`, cut short.
pub fn first_line(error: &str) -> String {
    let line = error.lines().next().unwrap_or("").trim();
    if line.chars().count() > MAX_ERROR_CHARS {
        format!("{}…", line.chars().take(MAX_ERROR_CHARS - 1).collect::<String>())
    } else {
        line.to_owned()
    }
}

/// A server error on `method route` (request `request_id`).
pub fn server_error(method: &str, route: &str, request_id: &str, error: &str) -> ErrorReport {
    let error = first_line(error);
    // The error's text without digits and quoted values: the same fault on
    // another row or id is the same fingerprint.
    let shape: String = error
        .split(['\'', '"'])
        .step_by(2)
        .collect::<Vec<_>>()
        .join("…")
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .take(120)
        .collect();
    ErrorReport {
        source: "server_error".to_owned(),
        title: format!("500 on {method} {route}"),
        fingerprint: format!("http:{method}:{route}:{shape}"),
        request_id: Some(request_id.to_owned()),
        job_id: None,
        org_id: None,
        error,
        at: Utc::now(),
    }
}

/// A job of `kind` that went dead.
pub fn job_dead(kind: &str, job: Uuid, org: Option<Uuid>, error: &str) -> ErrorReport {
    ErrorReport {
        source: "job_dead".to_owned(),
        title: format!("a {kind} job is dead"),
        fingerprint: format!("job:{kind}"),
        request_id: None,
        job_id: Some(job),
        org_id: org,
        error: first_line(error),
        at: Utc::now(),
    }
}

/// Reports `report` unless its fingerprint was reported within the hour.
/// Returns whether a report was enqueued. Never fails the caller.
pub async fn report(jobs: &Jobs, report: ErrorReport) -> bool {
    if !jobs.config().report_failures {
        return false;
    }
    // A dead notification or email job is logged only (no loop).
    if report.fingerprint.starts_with("job:notify.") || report.fingerprint.starts_with("job:email.")
    {
        tracing::error!(title = %report.title, error = %report.error, "not notifying about a failed notification");
        return false;
    }
    let digest = Sha256::digest(report.fingerprint.as_bytes());
    let key = format!(
        "{}:notify:{}",
        jobs.keys().prefix(),
        digest.iter().take(16).map(|b| format!("{b:02x}")).collect::<String>()
    );
    let first: Result<Option<String>, _> = jobs
        .redis()
        .set(
            &key,
            report.at.to_rfc3339(),
            Some(fred::types::Expiration::EX(RATE_LIMIT.as_secs() as i64)),
            Some(fred::types::SetOptions::NX),
            false,
        )
        .await;
    match first {
        Ok(Some(_)) => {}
        Ok(None) => return false,
        Err(err) => {
            tracing::warn!(error = %err, "cannot check the notification rate limit; not notifying");
            return false;
        }
    }
    let payload = serde_json::to_value(&report).unwrap_or(Value::Null);
    match jobs.enqueue_platform(NewJob::new(KIND, payload)).await {
        Ok(_) => true,
        Err(err) => {
            tracing::warn!(error = %err, "cannot enqueue an error notification");
            false
        }
    }
}

/// Where reports go.
#[derive(Debug, Clone, Default)]
pub struct Recipients {
    /// `ADMIN_EMAILS`.
    pub admin_emails: Vec<String>,
    /// `DISCORD_WEBHOOK_URL`.
    pub discord_webhook_url: Option<String>,
}

/// The `notify.error` handler.
#[derive(Debug)]
pub struct NotifyError {
    mailer: crate::email::Mailer,
    recipients: Recipients,
    http: reqwest::Client,
}

impl NotifyError {
    pub fn new(mailer: crate::email::Mailer, recipients: Recipients) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        NotifyError { mailer, recipients, http }
    }
}

impl Handler for NotifyError {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn queue(&self) -> &'static str {
        "emails"
    }

    fn max_attempts(&self) -> u32 {
        5
    }

    fn timeout(&self, _payload: &Value) -> Duration {
        Duration::from_secs(60)
    }

    fn validate(&self, payload: &Value) -> Result<(), String> {
        serde_json::from_value::<ErrorReport>(payload.clone())
            .map(|_| ())
            .map_err(|e| format!("expected an error report: {e}"))
    }

    fn run<'a>(&'a self, ctx: &'a JobContext) -> futures::future::BoxFuture<'a, JobResult> {
        use futures::FutureExt;
        async move {
            let report: ErrorReport = serde_json::from_value(ctx.payload.clone())
                .map_err(|e| JobError::permanent(format!("bad payload: {e}")))?;
            let mut sent = json!({});
            if !self.recipients.admin_emails.is_empty() {
                let context = json!({
                    "title": report.title,
                    "source": report.source,
                    "request_id": report.request_id,
                    "job_id": report.job_id.map(|id| id.to_string()),
                    "org_id": report.org_id.map(|id| id.to_string()),
                    "error": report.error,
                    "at": report.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                    "limit_minutes": RATE_LIMIT.as_secs() / 60,
                });
                let email = crate::email::render(
                    "error",
                    &self.recipients.admin_emails,
                    &context,
                    self.mailer.public_url(),
                )
                .map_err(|e| JobError::permanent(e.to_string()))?;
                self.mailer.send_now(&email).await.map_err(|e| JobError::retry(e.to_string()))?;
                sent["email"] = json!(self.recipients.admin_emails.len());
            }
            if let Some(url) = &self.recipients.discord_webhook_url {
                let content = format!(
                    "**{}**\n{}\n{}",
                    report.title,
                    report.error,
                    match (&report.request_id, report.job_id) {
                        (Some(id), _) => format!("request id `{id}`"),
                        (None, Some(id)) => format!("job id `{id}`"),
                        _ => String::new(),
                    }
                );
                let response = self
                    .http
                    .post(url)
                    .json(&json!({ "content": content, "allowed_mentions": { "parse": [] } }))
                    .send()
                    .await
                    .map_err(|e| JobError::retry(format!("Discord: {e}")))?;
                if !response.status().is_success() {
                    return Err(JobError::retry(format!("Discord answered {}", response.status())));
                }
                sent["discord"] = json!(true);
            }
            ctx.log.info(format!("reported {}: {}", report.source, report.title));
            Ok(sent)
        }
        .boxed()
    }
}
