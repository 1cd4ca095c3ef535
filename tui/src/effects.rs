//! The console's I/O: each [`Command`] runs in a tokio task against the
//! `server` library's services and answers with a [`Message`].

use std::time::{Duration, Instant};

use anyhow::Context;
use fred::interfaces::ClientLike;
use orgstack::http::AppState;
use tokio::sync::mpsc::UnboundedSender;

use orgstack::accounts::Actor;
use tenancy::Slug;

use crate::app::{
    Command, FlagPage, JobAction, JobPage, Message, ORGS_PAGE, OrgPage, Snapshot, short_id,
};

/// Jobs shown per page in the jobs view.
const JOBS_PAGE: u32 = 200;

/// Orgs shown as columns of the flags matrix.
const FLAG_ORGS: i64 = 50;

/// How long one refresh may take before it is reported as failed.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `command` as `operator` and sends its outcome to `tx` (dropped if
/// the console has quit).
pub async fn run(command: Command, state: AppState, operator: Actor, tx: UnboundedSender<Message>) {
    let message = match command {
        Command::Refresh { request } => {
            let result = match tokio::time::timeout(REFRESH_TIMEOUT, snapshot(&state)).await {
                Ok(Ok(snapshot)) => Ok(Box::new(snapshot)),
                Ok(Err(err)) => Err(format!("{err:#}")),
                Err(_) => Err(format!("no answer within {} s", REFRESH_TIMEOUT.as_secs())),
            };
            Message::Loaded { request, result }
        }
        Command::LoadOrgs { filter } => {
            let result = state
                .orgs
                .search(&filter, ORGS_PAGE)
                .await
                .map(|orgs| OrgPage {
                    filter: filter.clone(),
                    orgs,
                    latest_version: tenancy::migrations::Lineage::org().latest_version(),
                })
                .map_err(|err| format!("reading orgs: {err}"));
            Message::OrgsLoaded(result)
        }
        Command::SetOrgStatus { slug, suspend } => Message::Done(
            set_org_status(&state, &operator, &slug, suspend)
                .await
                .map_err(|err| format!("{err:#}")),
        ),
        Command::LoadJobs { org, status } => {
            let result = async {
                let slug = Slug::parse(&org).map_err(|why| anyhow::anyhow!("{org}: {why}"))?;
                let found = state.orgs.get(&slug).await?;
                let filter = orgstack::jobs::JobFilter { status, kind: None };
                let jobs = state.jobs.list(&found, &filter, None, JOBS_PAGE).await?;
                anyhow::Ok(JobPage { org: org.clone(), status, jobs })
            }
            .await
            .map_err(|err| format!("reading jobs of {org}: {err:#}"));
            Message::JobsLoaded(result)
        }
        Command::Job { org, id, action } => {
            let result = async {
                let slug = Slug::parse(&org).map_err(|why| anyhow::anyhow!("{org}: {why}"))?;
                let found = state.orgs.get(&slug).await?;
                match action {
                    JobAction::Retry => drop(state.jobs.retry(&found, &operator, id).await?),
                    JobAction::Cancel => drop(state.jobs.cancel(&found, &operator, id).await?),
                    JobAction::Discard => state.jobs.discard(&found, &operator, id).await?,
                }
                anyhow::Ok(format!("job {} of {org}: {} done", short_id(id), action.verb()))
            }
            .await
            .map_err(|err| format!("{err:#}"));
            Message::Done(result)
        }
        Command::Worker { id, concurrency } => Message::Done(
            control_worker(&state, &operator, &id, concurrency)
                .await
                .map_err(|err| format!("{err:#}")),
        ),
        Command::LoadFlags => {
            let result = async {
                let flags = state.flags.all().await.context("reading flags")?;
                let orgs = state.orgs.search("", FLAG_ORGS).await.context("reading orgs")?;
                anyhow::Ok(FlagPage { flags, orgs })
            }
            .await
            .map_err(|err| format!("{err:#}"));
            Message::FlagsLoaded(result)
        }
        Command::SetFlag { name, org, enabled } => {
            let id = org.as_ref().map(|(id, _)| *id);
            let place = org.map_or("globally".to_owned(), |(_, slug)| format!("for {slug}"));
            let result = match enabled {
                Some(on) => state
                    .flags
                    .set(&operator, &name, id, on)
                    .await
                    .map(|()| format!("{name} {} {place}", if on { "on" } else { "off" })),
                None => state
                    .flags
                    .clear(&operator, &name, id)
                    .await
                    .map(|_| format!("{name} cleared {place}")),
            };
            Message::Done(result.map_err(|err| format!("{name}: {err}")))
        }
    };
    let _ = tx.send(message);
}

/// Suspends or resumes an org and records it in the audit logs, as
/// `orgstack org suspend|resume` does.
async fn set_org_status(
    state: &AppState,
    operator: &Actor,
    slug: &str,
    suspend: bool,
) -> anyhow::Result<String> {
    let slug = Slug::parse(slug).map_err(|why| anyhow::anyhow!("{slug}: {why}"))?;
    let (org, action) = if suspend {
        (state.orgs.suspend(&slug).await?, "org.suspended")
    } else {
        (state.orgs.resume(&slug).await?, "org.resumed")
    };
    state.accounts.record_org_status(operator, &org, action).await?;
    Ok(format!("org '{}' is {}", org.slug, org.status))
}

/// Reads everything the views show.
pub async fn snapshot(state: &AppState) -> anyhow::Result<Snapshot> {
    let postgres = timed(async {
        sqlx::query("SELECT 1").execute(&state.db).await.map(|_| ()).map_err(|e| e.to_string())
    })
    .await;
    let redis =
        timed(async { state.redis.ping::<()>(None).await.map_err(|e| e.to_string()) }).await;
    let orgs = state.orgs.count_by_status().await.context("counting orgs")?;
    let (users, active_users) = state.accounts.count_users().await.context("counting users")?;
    let queues = state.jobs.queue_stats().await.context("reading queues")?;
    let workers =
        orgstack::jobs::worker::list_workers(&state.jobs).await.context("reading workers")?;
    Ok(Snapshot {
        taken_at: chrono::Utc::now(),
        orgs: orgs.into_iter().map(|(status, n)| (status.as_str().to_owned(), n)).collect(),
        users,
        active_users,
        queues,
        workers,
        postgres,
        redis,
    })
}

async fn timed(check: impl Future<Output = Result<(), String>>) -> Result<f64, String> {
    let started = Instant::now();
    check.await.map(|()| started.elapsed().as_secs_f64() * 1000.0)
}

/// Sends a worker a control message (it acts on the next heartbeat round)
/// and records it in the platform audit log.
async fn control_worker(
    state: &AppState,
    operator: &Actor,
    id: &str,
    concurrency: Option<usize>,
) -> anyhow::Result<String> {
    use orgstack::jobs::worker::{Control, send_control};
    let (control, action, done) = match concurrency {
        Some(n) => (
            Control::SetConcurrency { worker: id.to_owned(), concurrency: n },
            "worker.concurrency",
            format!("asked {id} to run {n} at once"),
        ),
        None => (
            Control::Shutdown { worker: id.to_owned() },
            "worker.shutdown",
            format!("asked {id} to shut down"),
        ),
    };
    let mut conn = state.db.acquire().await?;
    let details = serde_json::json!({ "concurrency": concurrency });
    orgstack::accounts::audit::record_platform(
        &mut conn,
        operator,
        action,
        Some(id),
        None,
        details,
    )
    .await?;
    send_control(&state.redis, state.jobs.keys(), &control).await;
    Ok(done)
}
