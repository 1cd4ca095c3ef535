//! The scheduler (Celery beat, done right): fires cron schedules, global
//! ones declared in code and each org's `schedules`, and runs the recovery
//! sweep.
//!
//! Several schedulers may run; one leads at a time (a Redis lock, renewed
//! while held) and the others wait to take over. Each tick fires exactly
//! once even if two of them act at once:
//! - an org schedule's tick is fired in one transaction that inserts the
//!   job and moves the schedule's `last_fire_at` forward only if it is
//!   behind that tick (the row is locked), so a second scheduler finds it
//!   done;
//! - a global schedule's tick is claimed with a Redis key per tick
//!   (`SET NX`) before its platform job is enqueued.
//!
//! Missed ticks (no scheduler ran when they were due): a schedule runs
//! **once** for everything it missed (at the latest missed tick), not once
//! per missed tick; with `skip_missed` it runs nothing until its next tick.
//! A tick counts as on time when fired within [`ON_TIME`] of it.
//!
//! Due org schedules are found through a Redis sorted set of next ticks
//! (no query across org schemas); it is rebuilt from PostgreSQL when a
//! scheduler starts leading and every ten minutes, so a Redis that lost its
//! data loses no schedule.
//!
//! The leader also runs the recovery sweep ([`super::sweep::recover`])
//! every `JOB_SWEEP_INTERVAL_SECS`, and at once when a sentinel key it keeps
//! in Redis disappears (Redis lost its data): then the due index and the
//! queues' dead sets are rebuilt too.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use fred::interfaces::{KeysInterface, SortedSetsInterface};
use fred::types::{Expiration, SetOptions};
use serde_json::Value;
use tenancy::{OrgId, OrgStatus};
use uuid::Uuid;

use super::schedules::{self, Cron, due_member};
use super::store;
use super::{Jobs, JobsError, NewJob};
use crate::queue::QueueName;

/// How often the leader checks that Redis still has its data.
const SENTINEL_EVERY: Duration = Duration::from_secs(5);

/// Whether Redis lost its data since the last check: the sentinel key the
/// first check set is gone (it is set again). Errors count as no loss.
async fn redis_lost_data(jobs: &Jobs) -> bool {
    let set: Result<Option<String>, _> = jobs
        .redis()
        .set(
            jobs.keys().jobs_sentinel(),
            Utc::now().to_rfc3339(),
            None,
            Some(SetOptions::NX),
            false,
        )
        .await;
    matches!(set, Ok(Some(_)))
}

/// A tick fired this late or less is on time; later, it was missed.
pub const ON_TIME: Duration = Duration::from_secs(30);

/// A schedule declared in code; its jobs are platform jobs.
#[derive(Debug, Clone)]
pub struct GlobalSchedule {
    pub name: &'static str,
    pub cron: &'static str,
    pub kind: &'static str,
    pub payload: Value,
}

/// The global schedules.
pub fn global_schedules() -> Vec<GlobalSchedule> {
    vec![
        GlobalSchedule {
            name: "maintenance.prune_jobs",
            cron: "17 3 * * *",
            kind: "maintenance.prune_jobs",
            payload: Value::Null,
        },
        GlobalSchedule {
            name: "maintenance.purge_deleted_orgs",
            cron: "43 3 * * *",
            kind: "maintenance.purge_deleted_orgs",
            payload: Value::Null,
        },
        GlobalSchedule {
            name: "digest.weekly",
            cron: "0 7 * * 1",
            kind: crate::digest::FAN_OUT_KIND,
            payload: Value::Null,
        },
    ]
}

/// How a scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// How often due schedules are looked for.
    pub tick: Duration,
    /// Lifetime of the leader lock (renewed every third of it).
    pub lock_ttl: Duration,
    /// Take the leader lock (turn off only to test the per-tick dedupe).
    pub use_leader_lock: bool,
    /// The global schedules to fire.
    pub globals: Vec<GlobalSchedule>,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            tick: Duration::from_secs(1),
            lock_ttl: Duration::from_secs(10),
            use_leader_lock: true,
            globals: global_schedules(),
        }
    }
}

/// What a scheduler fired, returned when it stops.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SchedulerReport {
    pub fired: u64,
    pub skipped: u64,
    pub sweeps: u64,
}

/// A scheduler; [`Scheduler::run`] runs it until its shutdown resolves.
#[derive(Debug)]
pub struct Scheduler {
    jobs: Jobs,
    options: SchedulerOptions,
}

impl Scheduler {
    pub fn new(jobs: Jobs, options: SchedulerOptions) -> Self {
        Scheduler { jobs, options }
    }

    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> anyhow::Result<SchedulerReport> {
        tokio::pin!(shutdown);
        let mut report = SchedulerReport::default();
        let locks = self.jobs.locks();
        let mut lock = None;
        let mut last_rebuild: Option<Instant> = None;
        let mut last_sweep: Option<Instant> = None;
        let mut last_check: Option<Instant> = None;
        let mut waiting_said = false;
        loop {
            if self.options.use_leader_lock {
                let leading = lock.as_ref().is_some_and(|l: &crate::locks::Lock| !l.is_lost());
                if !leading {
                    if lock.take().is_some() {
                        tracing::warn!("lost the scheduler lead; waiting to take it again");
                        last_rebuild = None;
                    }
                    match locks.try_acquire("scheduler", self.options.lock_ttl).await {
                        Ok(Some(mut held)) => {
                            held.keep_alive();
                            tracing::info!("leading: firing schedules");
                            lock = Some(held);
                            waiting_said = false;
                        }
                        Ok(None) => {
                            if !waiting_said {
                                tracing::info!("another scheduler leads; standing by");
                                waiting_said = true;
                            }
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "cannot reach Redis for the scheduler lock")
                        }
                    }
                }
            }
            let leading = !self.options.use_leader_lock || lock.is_some();
            if leading {
                let lost = if last_check.is_none_or(|at| at.elapsed() >= SENTINEL_EVERY) {
                    last_check = Some(Instant::now());
                    redis_lost_data(&self.jobs).await
                } else {
                    false
                };
                if lost {
                    // What lived only in Redis is rebuilt at once.
                    tracing::warn!(
                        "Redis has lost its data (or is new): running the recovery sweep now"
                    );
                    last_rebuild = None;
                }
                if last_rebuild.is_none_or(|at| at.elapsed() >= Duration::from_secs(600)) {
                    match rebuild_index(&self.jobs).await {
                        Ok(n) => {
                            tracing::debug!(schedules = n, "rebuilt the due index");
                            last_rebuild = Some(Instant::now());
                        }
                        Err(err) => tracing::warn!(error = %err, "cannot rebuild the due index"),
                    }
                }
                if lost
                    || last_sweep.is_none_or(|at| at.elapsed() >= self.jobs.config().sweep_interval)
                {
                    last_sweep = Some(Instant::now());
                    report.sweeps += 1;
                    let swept =
                        super::sweep::recover(&self.jobs, Duration::from_secs(10), lost).await;
                    if let Err(err) = swept {
                        tracing::warn!(error = %err, "recovery sweep failed");
                    }
                }
                match tick(&self.jobs, &self.options.globals, Utc::now()).await {
                    Ok((fired, skipped)) => {
                        report.fired += fired;
                        report.skipped += skipped;
                    }
                    Err(err) => tracing::warn!(error = %err, "scheduler tick failed"),
                }
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(self.options.tick) => {}
            }
        }
        if let Some(lock) = lock {
            let _ = lock.release().await;
        }
        Ok(report)
    }
}

/// Fires everything due at `now`: returns (fired, skipped).
pub async fn tick(
    jobs: &Jobs,
    globals: &[GlobalSchedule],
    now: DateTime<Utc>,
) -> Result<(u64, u64), JobsError> {
    let mut fired = 0;
    let mut skipped = 0;
    for global in globals {
        if fire_global(jobs, global, now).await? {
            fired += 1;
        }
    }
    loop {
        let due: Vec<String> = jobs
            .redis()
            .zrangebyscore(
                jobs.keys().schedules_due(),
                "-inf",
                now.timestamp_millis() as f64,
                false,
                Some((0, 500)),
            )
            .await?;
        let count = due.len();
        for member in due {
            let Some((org, id)) = member
                .split_once(':')
                .and_then(|(o, s)| Some((o.parse::<Uuid>().ok()?, s.parse::<Uuid>().ok()?)))
            else {
                let _: i64 = jobs.redis().zrem(jobs.keys().schedules_due(), member).await?;
                continue;
            };
            match fire_org(jobs, OrgId::from_uuid(org), id, now).await {
                Ok(Outcome::Fired) => fired += 1,
                Ok(Outcome::Skipped) => skipped += 1,
                Ok(Outcome::Nothing) => {}
                Err(err) => {
                    tracing::warn!(org_id = %org, schedule_id = %id, error = %err, "cannot fire a schedule; retrying at the next tick");
                }
            }
        }
        if count < 500 {
            return Ok((fired, skipped));
        }
    }
}

/// The last tick fired of each global schedule is kept under this field.
fn global_state_key(jobs: &Jobs, name: &str) -> String {
    jobs.keys().schedule_fired(name, 0)
}

async fn fire_global(
    jobs: &Jobs,
    global: &GlobalSchedule,
    now: DateTime<Utc>,
) -> Result<bool, JobsError> {
    let cron = Cron::parse(global.cron)?;
    let Some(latest) = cron.last_at_or_before(now) else { return Ok(false) };
    let state = global_state_key(jobs, global.name);
    let last: Option<i64> = jobs.redis().get(&state).await?;
    let Some(last) = last else {
        // First sight (or Redis lost it): start from now, fire nothing past.
        let _: Option<String> = jobs
            .redis()
            .set(&state, latest.timestamp_millis(), None, Some(SetOptions::NX), false)
            .await?;
        return Ok(false);
    };
    if latest.timestamp_millis() <= last {
        return Ok(false);
    }
    // Claim this tick; another scheduler that got here first wins.
    let claimed: Option<String> = jobs
        .redis()
        .set(
            jobs.keys().schedule_fired(global.name, latest.timestamp_millis()),
            "1",
            Some(Expiration::EX(7 * 86_400)),
            Some(SetOptions::NX),
            false,
        )
        .await?;
    let _: () = jobs.redis().set(&state, latest.timestamp_millis(), None, None, false).await?;
    if claimed.is_none() {
        return Ok(false);
    }
    jobs.enqueue_platform(NewJob::new(global.kind, global.payload.clone())).await?;
    tracing::info!(schedule = global.name, tick = %latest, "fired a global schedule");
    Ok(true)
}

/// What happened to one due schedule.
enum Outcome {
    Fired,
    Skipped,
    Nothing,
}

async fn fire_org(
    jobs: &Jobs,
    org_id: OrgId,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Outcome, JobsError> {
    let redis = jobs.redis();
    let due_key = jobs.keys().schedules_due();
    let org = match jobs.orgs().by_id(org_id).await? {
        Some(org) if org.status == OrgStatus::Active => org,
        Some(org) if org.status == OrgStatus::Suspended => {
            // Look again in a minute.
            let later = (now + chrono::Duration::seconds(60)).timestamp_millis() as f64;
            let _: i64 = redis
                .zadd(&due_key, None, None, false, false, (later, due_member(org_id, id)))
                .await?;
            return Ok(Outcome::Nothing);
        }
        _ => {
            let _: i64 = redis.zrem(&due_key, due_member(org_id, id)).await?;
            return Ok(Outcome::Nothing);
        }
    };
    let schema = org.schema();
    let mut tx = jobs.pool().begin().await?;
    let Some(schedule) = schedules::get_in(&mut *tx, &schema, id, true).await? else {
        let _: i64 = redis.zrem(&due_key, due_member(org_id, id)).await?;
        return Ok(Outcome::Nothing);
    };
    let cron = Cron::parse(&schedule.cron)?;
    let next = cron.next_after(now);
    let (true, Some(due)) = (schedule.enabled, schedule.next_run_at) else {
        drop(tx);
        schedules::index(redis, jobs.keys(), org_id, &schedule).await?;
        return Ok(Outcome::Nothing);
    };
    if due > now {
        // Another scheduler fired it already; the index was behind.
        drop(tx);
        schedules::index(redis, jobs.keys(), org_id, &schedule).await?;
        return Ok(Outcome::Nothing);
    }
    let missed = now - due > chrono::Duration::from_std(ON_TIME).unwrap_or_default();
    if missed && schedule.skip_missed {
        schedules::set_next(&mut *tx, &schema, id, next).await?;
        tx.commit().await?;
        schedules::index(
            redis,
            jobs.keys(),
            org_id,
            &schedules::Schedule { next_run_at: next, ..schedule },
        )
        .await?;
        tracing::info!(org_id = %org_id, schedule = %id, missed_tick = %due, "skipped a missed tick");
        return Ok(Outcome::Skipped);
    }
    // On time: this tick. Missed: once, for the latest missed tick. The
    // job's `run_at` is its tick, and its creator names the schedule.
    let tick = if missed { cron.last_at_or_before(now).unwrap_or(due) } else { due };
    let queue = schedule.queue.as_deref().and_then(|q| QueueName::parse(q).ok());
    let new = NewJob {
        queue,
        run_at: None,
        ..NewJob::new(schedule.kind.clone(), schedule.payload.clone())
    };
    let (queue, max_attempts) = jobs.check(&new)?;
    let row = store::NewRow {
        id: Uuid::now_v7(),
        kind: new.kind,
        queue: queue.as_str().to_owned(),
        payload: new.payload,
        max_attempts: i32::try_from(max_attempts).unwrap_or(1),
        run_at: tick,
        unique_key: None,
        created_by: format!("schedule:{}", schedule.name),
    };
    if !schedules::mark_fired(&mut *tx, &schema, id, tick, Some(row.id), next).await? {
        return Ok(Outcome::Nothing);
    }
    let inserted =
        store::insert(&mut *tx, org_id, std::slice::from_ref(&row), store::Commit::Session).await?;
    tx.commit().await?;
    schedules::index(
        redis,
        jobs.keys(),
        org_id,
        &schedules::Schedule { next_run_at: next, ..schedule },
    )
    .await?;
    if let Err(err) = jobs.dispatch(org_id, &inserted, true).await {
        tracing::warn!(error = %err, "fired a schedule but could not dispatch its job; the recovery sweep will");
    }
    for job in &inserted {
        metrics::counter!("orgstack_jobs_enqueued_total", "queue" => job.queue.clone(), "kind" => job.kind.clone()).increment(1);
    }
    metrics::counter!("orgstack_schedules_fired_total").increment(1);
    Ok(Outcome::Fired)
}

/// Puts every enabled schedule of every active org in the due index;
/// returns how many.
pub async fn rebuild_index(jobs: &Jobs) -> Result<usize, JobsError> {
    let mut n = 0;
    for org in jobs.orgs().list().await? {
        if org.status != OrgStatus::Active {
            continue;
        }
        for schedule in schedules::enabled(jobs.pool(), &org.schema()).await? {
            // A schedule enabled without a next tick (should not happen):
            // give it one.
            let schedule = match schedule.next_run_at {
                Some(_) => schedule,
                None => {
                    let next = Cron::parse(&schedule.cron)?.next_after(Utc::now());
                    schedules::set_next(jobs.pool(), &org.schema(), schedule.id, next).await?;
                    schedules::Schedule { next_run_at: next, ..schedule }
                }
            };
            schedules::index(jobs.redis(), jobs.keys(), org.id, &schedule).await?;
            n += 1;
        }
    }
    Ok(n)
}
