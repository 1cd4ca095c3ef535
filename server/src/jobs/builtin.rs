//! Built-in job kinds: `noop` (benchmarks, health checks), `sleep` (tests
//! and demos: waits, logs, and fails on request) and the platform
//! maintenance kind `maintenance.prune_jobs`.

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::handler::{Handler, JobContext, JobError, JobResult};

/// Does nothing and succeeds.
#[derive(Debug)]
pub struct Noop;

impl Handler for Noop {
    fn kind(&self) -> &'static str {
        "noop"
    }

    fn run<'a>(&'a self, _ctx: &'a JobContext) -> BoxFuture<'a, JobResult> {
        futures::future::ready(Ok(Value::Null)).boxed()
    }
}

/// Payload of `sleep`; every field is optional.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SleepPayload {
    /// How long to wait, in milliseconds (at most an hour).
    #[serde(default)]
    ms: u64,
    /// Log this many lines, spread over the wait.
    #[serde(default)]
    lines: u32,
    /// Fail every attempt up to and including this one.
    #[serde(default)]
    fail_attempts: u32,
    /// Fail permanently (no retry) instead.
    #[serde(default)]
    permanent: bool,
    /// Fail every attempt that starts before this time.
    #[serde(default)]
    fail_until: Option<chrono::DateTime<chrono::Utc>>,
    /// Time out after this many milliseconds (default: the wait plus a minute).
    #[serde(default)]
    timeout_ms: Option<u64>,
    /// Returned as the job's result.
    #[serde(default)]
    result: Option<Value>,
}

const MAX_SLEEP_MS: u64 = 3_600_000;

fn sleep_payload(payload: &Value) -> Result<SleepPayload, String> {
    let parsed: SleepPayload = if payload.is_null() {
        SleepPayload::default()
    } else {
        serde_json::from_value(payload.clone()).map_err(|e| format!("sleep payload: {e}"))?
    };
    if parsed.ms > MAX_SLEEP_MS {
        return Err(format!("sleep payload: ms must be at most {MAX_SLEEP_MS}"));
    }
    if parsed.lines > 10_000 {
        return Err("sleep payload: lines must be at most 10000".into());
    }
    Ok(parsed)
}

/// Waits `ms`, logging `lines` lines; fails while `attempt <= fail_attempts`.
#[derive(Debug)]
pub struct Sleep;

impl Handler for Sleep {
    fn kind(&self) -> &'static str {
        "sleep"
    }

    fn timeout(&self, payload: &Value) -> Duration {
        let p = sleep_payload(payload).unwrap_or_default();
        Duration::from_millis(p.timeout_ms.unwrap_or(p.ms + 60_000))
    }

    fn validate(&self, payload: &Value) -> Result<(), String> {
        sleep_payload(payload).map(|_| ())
    }

    fn run<'a>(&'a self, ctx: &'a JobContext) -> BoxFuture<'a, JobResult> {
        async move {
            let p = sleep_payload(&ctx.payload).map_err(JobError::permanent)?;
            ctx.log.info(format!(
                "attempt {} of {}: sleeping {} ms",
                ctx.attempt, ctx.max_attempts, p.ms
            ));
            let steps = p.lines.max(1);
            let step = Duration::from_millis(p.ms / u64::from(steps));
            for i in 1..=steps {
                tokio::select! {
                    () = ctx.cancel.cancelled() => return Err(JobError::retry("cancelled")),
                    () = tokio::time::sleep(step) => {}
                }
                if i <= p.lines {
                    ctx.log.info(format!("line {i} of {}", p.lines));
                }
            }
            let too_early = p.fail_until.is_some_and(|until| chrono::Utc::now() < until);
            if ctx.attempt <= p.fail_attempts || too_early {
                let message = format!("failing attempt {} as asked", ctx.attempt);
                ctx.log.warn(message.clone());
                return Err(if p.permanent {
                    JobError::permanent(message)
                } else {
                    JobError::retry(message)
                });
            }
            Ok(p.result.unwrap_or_else(|| json!({ "slept_ms": p.ms })))
        }
        .boxed()
    }
}

/// Deletes finished jobs (succeeded or cancelled) older than
/// `JOB_RETENTION_DAYS`, with their logs, in every org. Dead jobs stay
/// until retried or discarded. Fired daily by the scheduler.
#[derive(Debug)]
pub struct PruneJobs;

impl Handler for PruneJobs {
    fn kind(&self) -> &'static str {
        "maintenance.prune_jobs"
    }

    fn max_attempts(&self) -> u32 {
        3
    }

    fn timeout(&self, _payload: &Value) -> Duration {
        Duration::from_secs(3600)
    }

    fn run<'a>(&'a self, ctx: &'a JobContext) -> BoxFuture<'a, JobResult> {
        async move {
            let report = super::sweep::prune(&ctx.jobs).await.map_err(anyhow::Error::from)?;
            ctx.log.info(format!(
                "pruned {} jobs in {} orgs (older than {} days)",
                report.jobs, report.orgs, report.retention_days
            ));
            Ok(serde_json::to_value(&report).unwrap_or(Value::Null))
        }
        .boxed()
    }
}

/// Purges soft-deleted orgs once `ORG_RETENTION_DAYS` have passed since
/// their deletion: schema, row and Redis keys, each recorded in the
/// platform audit log (actor `system`). Fired daily by the scheduler.
#[derive(Debug)]
pub struct PurgeDeletedOrgs {
    /// Where the orgs' files are (purged with them).
    pub storage: crate::storage::Storage,
}

impl Handler for PurgeDeletedOrgs {
    fn kind(&self) -> &'static str {
        "maintenance.purge_deleted_orgs"
    }

    fn max_attempts(&self) -> u32 {
        3
    }

    fn timeout(&self, _payload: &Value) -> Duration {
        Duration::from_secs(3600)
    }

    fn run<'a>(&'a self, ctx: &'a JobContext) -> BoxFuture<'a, JobResult> {
        async move {
            let days = ctx.jobs.config().org_retention_days;
            let cutoff = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
            let due = ctx.jobs.orgs().deleted_before(cutoff).await.map_err(anyhow::Error::from)?;
            let mut purged = Vec::new();
            for org in due {
                if ctx.is_cancelled() {
                    break;
                }
                let report =
                    ctx.jobs.orgs().purge(&org.slug, false).await.map_err(anyhow::Error::from)?;
                let files = self.storage.purge_org(org.id).await.map_err(anyhow::Error::from)?;
                let mut conn = ctx.jobs.pool().acquire().await.map_err(anyhow::Error::from)?;
                let details = serde_json::json!({
                    "slug": org.slug,
                    "reason": "retention",
                    "deleted_at": org.deleted_at,
                    "retention_days": days,
                    "tables": report.tables,
                    "files": files,
                });
                crate::accounts::audit::record_platform(
                    &mut conn,
                    &crate::accounts::Actor::System,
                    "org.purged",
                    Some(&org.id.to_string()),
                    None,
                    details,
                )
                .await
                .map_err(anyhow::Error::from)?;
                ctx.log.info(format!("purged org {} (deleted {:?})", org.slug, org.deleted_at));
                purged.push(org.slug.to_string());
            }
            Ok(json!({ "purged": purged, "retention_days": days }))
        }
        .boxed()
    }
}
