//! The console's I/O: each [`Command`] runs in a tokio task against the
//! `server` library's services and answers with a [`Message`].

use std::time::{Duration, Instant};

use anyhow::Context;
use fred::interfaces::ClientLike;
use orgstack::http::AppState;
use tokio::sync::mpsc::UnboundedSender;

use std::collections::HashMap;

use orgstack::accounts::members::Acting;
use orgstack::accounts::users::NewUser;
use orgstack::accounts::{Actor, Email, Role, audit};
use orgstack::jobs::browse::{QueueFilter, Section};
use orgstack::jobs::schedules::{Cron, ScheduleChange};
use orgstack::queue::QueueName;
use tenancy::{OrgId, Slug};

use crate::app::{
    AuditPage, Command, FlagPage, GlobalRow, JobAction, JobDetail, JobPage, MembersPage, Message,
    ORGS_PAGE, OrgPage, OrgRef, QueueAction, QueueJobPage, ScheduleAction, SchedulePage, Snapshot,
    USERS_PAGE, UserAction, UserDetail, UserPage, short_id,
};

/// Jobs shown per page in the jobs view.
const JOBS_PAGE: u32 = 200;

/// Log lines read at once for the job detail.
const LOG_LINES: u32 = 500;

/// Sessions shown for one user.
const SESSIONS_SHOWN: i64 = 50;

/// Jobs of a queue shown at once.
const QUEUE_JOBS_SHOWN: usize = 200;

/// Schedules of an org shown.
const SCHEDULES_SHOWN: u32 = 200;

/// Audit events shown.
const AUDIT_SHOWN: u64 = 300;

/// Orgs shown as columns of the flags matrix.
const FLAG_ORGS: i64 = 50;

/// How long one refresh may take before it is reported as failed.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `command` as `operator` and sends its outcome to `tx` (dropped if
/// the console has quit).
pub async fn run(command: Command, state: AppState, operator: Actor, tx: UnboundedSender<Message>) {
    if let Command::Batch(commands) = command {
        let runs = commands.into_iter().map(|c| run_one(c, &state, &operator));
        for message in futures::future::join_all(runs).await {
            let _ = tx.send(message);
        }
        return;
    }
    let _ = tx.send(run_one(command, &state, &operator).await);
}

/// Turns an error chain into the line the status bar shows.
fn shown<T>(result: anyhow::Result<T>) -> Result<T, String> {
    result.map_err(|err| format!("{err:#}"))
}

async fn run_one(command: Command, state: &AppState, operator: &Actor) -> Message {
    match command {
        Command::Batch(_) => Message::Done(Err("nested batches are not run".to_owned())),
        Command::Refresh { request } => {
            let result = match tokio::time::timeout(REFRESH_TIMEOUT, snapshot(state)).await {
                Ok(Ok(snapshot)) => Ok(Box::new(snapshot)),
                Ok(Err(err)) => Err(format!("{err:#}")),
                Err(_) => Err(format!("no answer within {} s", REFRESH_TIMEOUT.as_secs())),
            };
            Message::Loaded { request, result }
        }
        Command::LoadOrgs { filter } => Message::OrgsLoaded(shown(
            async {
                let orgs = state.orgs.search(&filter, ORGS_PAGE).await.context("reading orgs")?;
                let ids: Vec<OrgId> = orgs.iter().map(|o| o.id).collect();
                let members =
                    state.accounts.member_counts(&ids).await.context("counting members")?;
                anyhow::Ok(OrgPage {
                    filter: filter.clone(),
                    orgs,
                    latest_version: tenancy::migrations::Lineage::org().latest_version(),
                    members,
                })
            }
            .await,
        )),
        Command::SetOrgStatus { slug, suspend } => {
            Message::Done(shown(set_org_status(state, operator, &slug, suspend).await))
        }
        Command::CreateOrg { name, slug } => Message::Done(shown(
            async {
                let slug = if slug.is_empty() {
                    Slug::suggest(&name).ok_or_else(|| {
                        anyhow::anyhow!("cannot make a slug of {name:?}; type one")
                    })?
                } else {
                    parse_slug(&slug)?
                };
                let org = state.orgs.create(&name, &slug).await?;
                state.accounts.record_org_created(operator, &org).await?;
                anyhow::Ok(format!("created org '{}' ({})", org.slug, org.name))
            }
            .await,
        )),
        Command::RenameOrg { slug, name } => Message::Done(shown(
            async {
                let slug = parse_slug(&slug)?;
                let before = state.orgs.get(&slug).await?.name.clone();
                let org = state.orgs.rename(&slug, &name).await?;
                let details = serde_json::json!({ "from": before, "to": org.name });
                state.accounts.record_org_event(operator, &org, "org.renamed", details).await?;
                anyhow::Ok(format!("org '{}' is now named {:?}", org.slug, org.name))
            }
            .await,
        )),
        Command::DeleteOrg { slug } => Message::Done(shown(
            async {
                let org = state.orgs.soft_delete(&parse_slug(&slug)?).await?;
                state.accounts.record_org_status(operator, &org, "org.deleted").await?;
                anyhow::Ok(format!("org '{slug}' deleted (soft); P purges its data"))
            }
            .await,
        )),
        Command::PurgeOrg { slug } => Message::Done(shown(
            async {
                let parsed = parse_slug(&slug)?;
                let org = state.orgs.by_slug(&parsed).await?;
                let report = state.orgs.purge(&parsed, false).await?;
                if let Some(org) = &org {
                    state.files.purge_org(org.id).await?;
                }
                let mut conn = state.db.acquire().await?;
                let details = serde_json::json!({
                    "slug": slug, "tables": report.tables, "redis_keys": report.redis_keys,
                });
                let target = org.map(|o| o.id.to_string());
                audit::record_platform(
                    &mut conn,
                    operator,
                    "org.purged",
                    target.as_deref(),
                    None,
                    details,
                )
                .await?;
                anyhow::Ok(format!(
                    "purged org '{slug}': schema {} ({} tables) and {} Redis keys",
                    report.schema, report.tables, report.redis_keys
                ))
            }
            .await,
        )),
        Command::LoadMembers { org } => Message::MembersLoaded(shown(
            async {
                let found = state.orgs.get(&parse_slug(&org)?).await?;
                let members = state.accounts.list_members(&found).await?;
                anyhow::Ok(MembersPage { org: org.clone(), members, row: 0 })
            }
            .await,
        )),
        Command::SetRole { org, user, role } => Message::Done(shown(
            async {
                let found = state.orgs.get(&parse_slug(&org)?).await?;
                let member =
                    state.accounts.set_role(&platform_acting(operator), &found, user, role).await?;
                anyhow::Ok(format!("{} is now {} of {org}", member.email, role.as_str()))
            }
            .await,
        )),
        Command::LoadOrgFlags { org } => Message::OrgFlagsLoaded(shown(
            async {
                let found = state.orgs.get(&parse_slug(&org)?).await?;
                let flags = state.flags.all().await.context("reading flags")?;
                anyhow::Ok(FlagPage { flags, orgs: vec![(*found).clone()] })
            }
            .await,
        )),
        Command::LoadUsers { filter } => Message::UsersLoaded(shown(
            async {
                let users = state.accounts.search_users(&filter, USERS_PAGE).await?;
                anyhow::Ok(UserPage { filter: filter.clone(), users })
            }
            .await,
        )),
        Command::LoadUser { id } => Message::UserLoaded(shown(
            async {
                let user = state.accounts.user(id).await?.context("no such user (deleted?)")?;
                let memberships = state.accounts.memberships_of(id).await?;
                let sessions = state.accounts.sessions_of(id, SESSIONS_SHOWN).await?;
                let keys = state.accounts.api_keys_created_by(id).await?;
                anyhow::Ok(Box::new(UserDetail { user, memberships, sessions, keys, row: 0 }))
            }
            .await,
        )),
        Command::CreateUser { email, name, password } => Message::Done(shown(
            async {
                let email = parse_email(&email)?;
                let new = NewUser {
                    email: &email,
                    name: &name,
                    password: Some(password),
                    platform_admin: false,
                };
                let user = state.accounts.create_user(operator, new).await?;
                anyhow::Ok(format!("created user {}", user.email))
            }
            .await,
        )),
        Command::SetPassword { email, password } => Message::Done(shown(
            async {
                let user =
                    state.accounts.set_password(operator, &parse_email(&email)?, password).await?;
                anyhow::Ok(format!("new password set for {}; their sessions ended", user.email))
            }
            .await,
        )),
        Command::User { email, action } => Message::Done(shown(
            async {
                let email = parse_email(&email)?;
                anyhow::Ok(match action {
                    UserAction::Deactivate => {
                        let user = state.accounts.deactivate_user(operator, &email).await?;
                        format!("{} deactivated and signed out", user.email)
                    }
                    UserAction::Promote => {
                        let user = state.accounts.promote_user(operator, &email).await?;
                        format!("{} is now a platform admin", user.email)
                    }
                })
            }
            .await,
        )),
        Command::RevokeSession { user, session } => Message::Done(shown(
            async {
                let ended = state.accounts.revoke_session(operator, user, session).await?;
                anyhow::Ok(if ended {
                    format!("session {} ended", short_id(session))
                } else {
                    format!("session {} had already ended", short_id(session))
                })
            }
            .await,
        )),
        Command::RevokeApiKey { org, key } => Message::Done(shown(
            async {
                let found = state.orgs.by_id(org).await?.context("the key's org is gone")?;
                state.accounts.revoke_api_key(&platform_acting(operator), &found, key).await?;
                anyhow::Ok(format!("API key revoked in {}", found.slug))
            }
            .await,
        )),
        Command::LoadJobs { org, status } => Message::JobsLoaded(
            async {
                let found = state.orgs.get(&parse_slug(&org)?).await?;
                let filter = orgstack::jobs::JobFilter { status, kind: None };
                let jobs = state.jobs.list(&found, &filter, None, JOBS_PAGE).await?;
                anyhow::Ok(JobPage { org: org.clone(), status, jobs })
            }
            .await
            .map_err(|err| format!("reading jobs of {org}: {err:#}")),
        ),
        Command::LoadJob { org, id } => Message::JobLoaded(shown(
            async {
                let found = match org {
                    OrgRef::Slug(slug) => state.orgs.get(&parse_slug(&slug)?).await?,
                    OrgRef::Id(id) => {
                        state.orgs.by_id(id).await?.context("the job's org is gone")?
                    }
                };
                let job = state.jobs.get(&found, id).await?;
                let logs = state.jobs.logs(&found, id, None, LOG_LINES).await?;
                anyhow::Ok(Box::new(JobDetail {
                    org: found.slug.to_string(),
                    job,
                    logs,
                    scroll: 0,
                }))
            }
            .await,
        )),
        Command::TailJob { org, id, after } => Message::JobTail(shown(
            async {
                let found = state.orgs.get(&parse_slug(&org)?).await?;
                let job = state.jobs.get(&found, id).await?;
                let lines = state.jobs.logs(&found, id, after, LOG_LINES).await?;
                anyhow::Ok((Box::new(job), lines))
            }
            .await,
        )),
        Command::Job { org, id, action } => Message::Done(shown(
            async {
                let found = state.orgs.get(&parse_slug(&org)?).await?;
                match action {
                    JobAction::Retry => drop(state.jobs.retry(&found, operator, id).await?),
                    JobAction::Cancel => drop(state.jobs.cancel(&found, operator, id).await?),
                    JobAction::Discard => state.jobs.discard(&found, operator, id).await?,
                }
                anyhow::Ok(format!("job {} of {org}: {} done", short_id(id), action.verb()))
            }
            .await,
        )),
        Command::LoadQueueJobs { queue, section, org, kind } => {
            Message::QueueJobsLoaded(shown(queue_jobs(state, queue, section, org, kind).await))
        }
        Command::Queue { queue, action } => Message::Done(shown(
            async {
                let name = QueueName::parse(&queue).map_err(anyhow::Error::msg)?;
                anyhow::Ok(match action {
                    QueueAction::Pause => {
                        state.jobs.set_paused(operator, &name, true).await?;
                        format!("queue {queue} paused")
                    }
                    QueueAction::Resume => {
                        state.jobs.set_paused(operator, &name, false).await?;
                        format!("queue {queue} resumed")
                    }
                    QueueAction::Purge => {
                        let n = state.jobs.purge_queue(operator, &name).await?;
                        format!("queue {queue} purged: {n} waiting job(s) cancelled")
                    }
                })
            }
            .await,
        )),
        Command::Worker { id, concurrency } => {
            Message::Done(shown(control_worker(state, operator, &id, concurrency).await))
        }
        Command::LoadFlags => Message::FlagsLoaded(shown(
            async {
                let flags = state.flags.all().await.context("reading flags")?;
                let orgs = state.orgs.search("", FLAG_ORGS).await.context("reading orgs")?;
                anyhow::Ok(FlagPage { flags, orgs })
            }
            .await,
        )),
        Command::SetFlag { name, org, enabled } => {
            let id = org.as_ref().map(|(id, _)| *id);
            let place = org.map_or("globally".to_owned(), |(_, slug)| format!("for {slug}"));
            let result = match enabled {
                Some(on) => state
                    .flags
                    .set(operator, &name, id, on)
                    .await
                    .map(|()| format!("{name} {} {place}", if on { "on" } else { "off" })),
                None => state
                    .flags
                    .clear(operator, &name, id)
                    .await
                    .map(|_| format!("{name} cleared {place}")),
            };
            Message::Done(result.map_err(|err| format!("{name}: {err}")))
        }
        Command::LoadSchedules { org } => {
            Message::SchedulesLoaded(shown(schedules(state, org).await))
        }
        Command::Schedule { org, id, action } => Message::Done(shown(
            async {
                let found = state.orgs.get(&parse_slug(&org)?).await?;
                anyhow::Ok(match action {
                    ScheduleAction::RunNow => {
                        let enqueued = state.jobs.run_schedule_now(&found, operator, id).await?;
                        format!("schedule ran now: job {}", short_id(enqueued.job.id))
                    }
                    ScheduleAction::Enable | ScheduleAction::Disable => {
                        let enabled = action == ScheduleAction::Enable;
                        let change =
                            ScheduleChange { enabled: Some(enabled), ..Default::default() };
                        let schedule =
                            state.jobs.update_schedule(&found, operator, id, change).await?;
                        format!(
                            "schedule {} {}",
                            schedule.name,
                            if enabled { "enabled" } else { "disabled" }
                        )
                    }
                })
            }
            .await,
        )),
        Command::LoadAudit { org, search } => Message::AuditLoaded(shown(
            async {
                let events = match &org {
                    Some(slug) => {
                        let found = state.orgs.get(&parse_slug(slug)?).await?;
                        audit::search(&state.db, Some(&found.schema()), &search, AUDIT_SHOWN)
                            .await?
                    }
                    None => audit::search(&state.db, None, &search, AUDIT_SHOWN).await?,
                };
                anyhow::Ok(AuditPage { org: org.clone(), search: search.clone(), events })
            }
            .await,
        )),
    }
}

fn parse_slug(slug: &str) -> anyhow::Result<Slug> {
    Slug::parse(slug).map_err(|why| anyhow::anyhow!("{slug:?}: {why}"))
}

fn parse_email(email: &str) -> anyhow::Result<Email> {
    Email::parse(email).map_err(|why| anyhow::anyhow!("{email:?}: {why}"))
}

/// A platform admin acts in any org with an owner's rights (as over HTTP).
fn platform_acting(operator: &Actor) -> Acting {
    let user_id = match operator {
        Actor::User { id, .. } => Some(*id),
        _ => None,
    };
    Acting { actor: operator.clone(), role: Role::Owner, user_id }
}

/// Part of a queue, each org job with its org's slug.
async fn queue_jobs(
    state: &AppState,
    queue: String,
    section: Section,
    org: String,
    kind: String,
) -> anyhow::Result<QueueJobPage> {
    let name = QueueName::parse(&queue).map_err(anyhow::Error::msg)?;
    let org_id = match org.as_str() {
        "" => None,
        slug => Some(state.orgs.get(&parse_slug(slug)?).await?.id),
    };
    let filter = QueueFilter { org: org_id, kind: Some(kind.clone()).filter(|k| !k.is_empty()) };
    let found = state.jobs.browse_queue(&name, section, &filter, QUEUE_JOBS_SHOWN).await?;
    // Every org's slug in one read (a page of dead jobs names hundreds).
    let ids: Vec<OrgId> = found.iter().filter_map(|job| job.org).collect();
    let slugs: HashMap<OrgId, String> =
        state.orgs.by_ids(&ids).await?.into_iter().map(|o| (o.id, o.slug.to_string())).collect();
    let jobs = found
        .into_iter()
        .map(|job| (job.org.and_then(|id| slugs.get(&id).cloned()), job))
        .collect();
    Ok(QueueJobPage { queue, section, org, kind, jobs, row: 0 })
}

/// The global schedules, and `org`'s with the outcome of each one's last job.
async fn schedules(state: &AppState, org: Option<String>) -> anyhow::Result<SchedulePage> {
    let now = chrono::Utc::now();
    let global = orgstack::jobs::scheduler::global_schedules()
        .into_iter()
        .map(|g| GlobalRow {
            name: g.name.to_owned(),
            cron: g.cron.to_owned(),
            kind: g.kind.to_owned(),
            next_run_at: Cron::parse(g.cron).ok().and_then(|c| c.next_after(now)),
        })
        .collect();
    let (schedules, outcomes) = match &org {
        None => (Vec::new(), HashMap::new()),
        Some(slug) => {
            let found = state.orgs.get(&parse_slug(slug)?).await?;
            let schedules = state.jobs.list_schedules(&found, None, SCHEDULES_SHOWN).await?;
            let mut outcomes = HashMap::new();
            for schedule in &schedules {
                if let Some(job) = schedule.last_job_id
                    && let Ok(record) = state.jobs.get(&found, job).await
                {
                    outcomes.insert(job, record.status);
                }
            }
            (schedules, outcomes)
        }
    };
    Ok(SchedulePage { org, global, schedules, outcomes })
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
    let mut slugs = HashMap::new();
    let running: Vec<OrgId> =
        workers.iter().flat_map(|w| &w.running_jobs).filter_map(|j| j.org).collect();
    for org in state.orgs.by_ids(&running).await.context("reading orgs")? {
        slugs.insert(org.id, org.slug.to_string());
    }
    Ok(Snapshot {
        taken_at: chrono::Utc::now(),
        slugs,
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
