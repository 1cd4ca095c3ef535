//! The weekly digest: every Monday at 07:00 UTC the global schedule
//! `digest.weekly` runs `digest.fan_out`, which enqueues one `digest.send`
//! for each active org whose `weekly_digest` flag is on (per org, or
//! globally; off by default). `digest.send` emails the org's admins and
//! owners a summary of the last seven days: jobs run and failed, files
//! processed, members added, with links.

use std::time::Duration;

use chrono::Utc;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use crate::accounts::Actor;
use crate::jobs::NewJob;
use crate::jobs::handler::{Handler, JobContext, JobError, JobResult};

pub const FAN_OUT_KIND: &str = "digest.fan_out";
pub const SEND_KIND: &str = "digest.send";
/// The flag that turns the digest on for an org.
pub const FLAG: &str = "weekly_digest";

/// `digest.fan_out` (a platform job).
#[derive(Debug)]
pub struct FanOut;

impl Handler for FanOut {
    fn kind(&self) -> &'static str {
        FAN_OUT_KIND
    }

    fn queue(&self) -> &'static str {
        "maintenance"
    }

    fn max_attempts(&self) -> u32 {
        3
    }

    fn timeout(&self, _payload: &Value) -> Duration {
        Duration::from_secs(600)
    }

    fn run<'a>(&'a self, ctx: &'a JobContext) -> BoxFuture<'a, JobResult> {
        async move {
            let default = crate::flags::find(FLAG).is_some_and(|f| f.default);
            // The flag's effective value per org: its override, else the
            // global value, else the declared default.
            let orgs: Vec<Uuid> = sqlx::query_scalar(
                "SELECT o.id FROM public.orgs o WHERE o.status = 'active' AND COALESCE( \
                   (SELECT f.enabled FROM public.feature_flags f WHERE f.name = $1 AND f.org_id = o.id), \
                   (SELECT f.enabled FROM public.feature_flags f WHERE f.name = $1 AND f.org_id IS NULL), \
                   $2) ORDER BY o.id",
            )
            .bind(FLAG)
            .bind(default)
            .fetch_all(ctx.jobs.pool())
            .await
            .map_err(anyhow::Error::from)?;
            let week = Utc::now().format("%G-W%V").to_string();
            let mut sent = 0;
            for id in &orgs {
                let Some(org) = ctx
                    .jobs
                    .orgs()
                    .by_id(tenancy::OrgId::from_uuid(*id))
                    .await
                    .map_err(anyhow::Error::from)?
                else {
                    continue;
                };
                let mut job = NewJob::new(SEND_KIND, Value::Null);
                // Not twice at once for an org (the scheduler fires each
                // tick once).
                job.unique_key = Some(format!("{SEND_KIND}:{week}"));
                ctx.jobs.enqueue(&org, &Actor::System, job).await.map_err(anyhow::Error::from)?;
                sent += 1;
            }
            ctx.log.info(format!("digests queued for {sent} orgs ({week})"));
            Ok(json!({ "orgs": sent, "week": week }))
        }
        .boxed()
    }
}

/// `digest.send` (an org job).
#[derive(Debug)]
pub struct Send {
    mailer: crate::email::Mailer,
}

impl Send {
    pub fn new(mailer: crate::email::Mailer) -> Self {
        Send { mailer }
    }
}

#[derive(Debug, sqlx::FromRow)]
struct Week {
    jobs_run: i64,
    jobs_succeeded: i64,
    jobs_failed: i64,
    files_ready: i64,
    files_failed: i64,
    members_added: i64,
}

impl Handler for Send {
    fn kind(&self) -> &'static str {
        SEND_KIND
    }

    fn queue(&self) -> &'static str {
        "emails"
    }

    fn max_attempts(&self) -> u32 {
        5
    }

    fn timeout(&self, _payload: &Value) -> Duration {
        Duration::from_secs(120)
    }

    fn run<'a>(&'a self, ctx: &'a JobContext) -> BoxFuture<'a, JobResult> {
        async move {
            let org = ctx.org.clone().ok_or_else(|| JobError::permanent("a digest is for an org"))?;
            let schema = org.schema();
            let until = Utc::now();
            let since = until - chrono::Duration::days(7);
            let week: Week = sqlx::query_as(AssertSqlSafe(format!(
                "SELECT \
                   (SELECT count(*) FROM {jobs} WHERE finished_at >= $1 AND kind NOT LIKE 'digest.%') AS jobs_run, \
                   (SELECT count(*) FROM {jobs} WHERE finished_at >= $1 AND status = 'succeeded' AND kind NOT LIKE 'digest.%') AS jobs_succeeded, \
                   (SELECT count(*) FROM {jobs} WHERE finished_at >= $1 AND status IN ('failed', 'dead')) AS jobs_failed, \
                   (SELECT count(*) FROM {files} WHERE processed_at >= $1 AND status = 'ready') AS files_ready, \
                   (SELECT count(*) FROM {files} WHERE processed_at >= $1 AND status = 'failed') AS files_failed, \
                   (SELECT count(*) FROM {audit} WHERE occurred_at >= $1 AND action = 'member.added') AS members_added",
                jobs = schema.qualify("jobs"),
                files = schema.qualify("files"),
                audit = schema.qualify("audit_events"),
            )))
            .persistent(false)
            .bind(since)
            .fetch_one(ctx.jobs.pool())
            .await
            .map_err(anyhow::Error::from)?;
            let admins: Vec<String> = sqlx::query_scalar(
                "SELECT u.email FROM public.memberships m JOIN public.users u ON u.id = m.user_id \
                 WHERE m.org_id = $1 AND m.role IN ('owner', 'admin') AND u.is_active ORDER BY u.email",
            )
            .bind(org.id.as_uuid())
            .fetch_all(ctx.jobs.pool())
            .await
            .map_err(anyhow::Error::from)?;
            if admins.is_empty() {
                ctx.log.info("no active admins to tell");
                return Ok(json!({ "sent_to": 0 }));
            }
            let base = format!("{}/orgs/{}", self.mailer.public_url(), org.slug);
            let context = json!({
                "org_name": org.name,
                "since": since.format("%Y-%m-%d").to_string(),
                "until": until.format("%Y-%m-%d").to_string(),
                "jobs_run": week.jobs_run,
                "jobs_succeeded": week.jobs_succeeded,
                "jobs_failed": week.jobs_failed,
                "files_ready": week.files_ready,
                "files_failed": week.files_failed,
                "members_added": week.members_added,
                "jobs_url": format!("{base}/jobs"),
                "files_url": format!("{base}/files"),
                "members_url": format!("{base}/members"),
            });
            let email = crate::email::render("digest", &admins, &context, self.mailer.public_url())
                .map_err(|e| JobError::permanent(e.to_string()))?;
            self.mailer.send_now(&email).await.map_err(|e| JobError::retry(e.to_string()))?;
            ctx.log.info(format!("digest sent to {} admins", admins.len()));
            Ok(json!({ "sent_to": admins.len(), "jobs_run": week.jobs_run }))
        }
        .boxed()
    }
}
