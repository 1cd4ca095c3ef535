//! Keeping Redis and PostgreSQL in step: the recovery sweep re-dispatches
//! accepted org jobs that Redis no longer holds (it lost its data, or a
//! dispatch failed), and pruning deletes old finished jobs.

use std::time::Duration;

use chrono::Utc;
use fred::interfaces::{SetsInterface, SortedSetsInterface};
use fred::types::Value;
use futures::StreamExt;
use tenancy::{Org, OrgStatus};
use uuid::Uuid;

use super::store;
use super::{JobStatus, Jobs, JobsError, dead_member};
use crate::queue::{QueueKeys, QueueName};

/// Orgs swept at once.
const PARALLEL_ORGS: usize = 4;
/// Jobs looked at per org and sweep (the next sweep takes the rest).
const PER_ORG: i64 = 10_000;

/// What a recovery sweep did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RecoverReport {
    pub orgs: usize,
    /// Unfinished jobs looked at.
    pub checked: usize,
    /// Queued or retry-waiting jobs Redis did not hold, dispatched again.
    pub redispatched: usize,
    /// Running jobs whose worker is gone and whose entry Redis lost,
    /// queued again (or dead, when that was their last attempt).
    pub orphans: usize,
    /// Dead jobs missing from their queue's dead set, added back.
    pub dead_indexed: usize,
    pub failed_orgs: usize,
}

/// Sweeps every active org: unfinished jobs last changed more than `grace`
/// ago that their queue's index does not hold are dispatched again. Jobs
/// that finished are never touched, so they do not run again. With
/// `lost_data` (Redis lost its data), dead jobs go back into their queues'
/// dead sets too.
pub async fn recover(
    jobs: &Jobs,
    grace: Duration,
    lost_data: bool,
) -> Result<RecoverReport, JobsError> {
    let orgs: Vec<Org> =
        jobs.orgs().list().await?.into_iter().filter(|o| o.status == OrgStatus::Active).collect();
    let live = live_workers(jobs).await?;
    let results: Vec<Result<RecoverReport, JobsError>> = futures::stream::iter(orgs)
        .map(|org| {
            let live = &live;
            async move { recover_org(jobs, &org, grace, live, lost_data).await }
        })
        .buffer_unordered(PARALLEL_ORGS)
        .collect()
        .await;
    let mut total = RecoverReport::default();
    for result in results {
        match result {
            Ok(r) => {
                total.orgs += 1;
                total.checked += r.checked;
                total.redispatched += r.redispatched;
                total.orphans += r.orphans;
                total.dead_indexed += r.dead_indexed;
            }
            Err(err) => {
                total.failed_orgs += 1;
                tracing::warn!(error = %err, "recovery sweep of an org failed");
            }
        }
    }
    if total.redispatched + total.orphans + total.dead_indexed > 0 {
        tracing::info!(?total, "recovery sweep re-dispatched jobs Redis did not hold");
    }
    Ok(total)
}

/// Ids of workers that beat recently.
async fn live_workers(jobs: &Jobs) -> Result<Vec<String>, JobsError> {
    let since = Utc::now().timestamp_millis() - super::worker::STALE_AFTER.as_millis() as i64;
    let ids: Vec<String> = jobs
        .redis()
        .zrangebyscore(jobs.keys().workers(), since as f64, "+inf", false, None)
        .await?;
    Ok(ids)
}

async fn recover_org(
    jobs: &Jobs,
    org: &Org,
    grace: Duration,
    live: &[String],
    lost_data: bool,
) -> Result<RecoverReport, JobsError> {
    let schema = org.schema();
    let pending = store::pending(jobs.pool(), &schema, grace, PER_ORG).await?;
    let mut report = RecoverReport { checked: pending.len(), ..Default::default() };
    let held = held_by_redis(jobs, &pending).await?;
    let mut redispatch = Vec::new();
    let mut orphans = Vec::new();
    for job in pending.iter().filter(|j| !held.contains(&j.id)) {
        match job.status {
            JobStatus::Running => match &job.worker_id {
                Some(worker) if live.contains(worker) => {}
                Some(worker) => orphans.push((job.id, worker.clone())),
                None => orphans.push((job.id, String::new())),
            },
            _ => redispatch.push(job.id),
        }
    }
    if !orphans.is_empty() {
        let requeued = store::requeue_orphans(jobs.pool(), &schema, &orphans).await?;
        report.orphans = requeued.len();
        let (dead, queued): (Vec<_>, Vec<_>) =
            requeued.into_iter().partition(|j| j.status == JobStatus::Dead);
        for job in &dead {
            if let Some(keys) = queue_keys(jobs, &job.queue) {
                let _: i64 = jobs
                    .redis()
                    .zadd(
                        &keys.dead,
                        None,
                        None,
                        false,
                        false,
                        (now_ms(), dead_member(org.id, job.id)),
                    )
                    .await?;
            }
        }
        jobs.dispatch(org.id, &queued, true).await?;
        super::events::publish_jobs(jobs.redis(), jobs.keys(), org.id, &dead).await;
    }
    if !redispatch.is_empty() {
        let rows = store::by_ids(jobs.pool(), &schema, &redispatch).await?;
        let rows: Vec<_> = rows.into_iter().filter(|j| !j.status.is_final()).collect();
        report.redispatched = rows.len();
        jobs.dispatch(org.id, &rows, false).await?;
    }
    if lost_data {
        report.dead_indexed = index_dead(jobs, org).await?;
    }
    Ok(report)
}

fn queue_keys(jobs: &Jobs, queue: &str) -> Option<QueueKeys> {
    QueueName::parse(queue).ok().map(|q| QueueKeys::new(jobs.keys(), &q))
}

fn now_ms() -> f64 {
    Utc::now().timestamp_millis() as f64
}

/// The ids among `pending` that their queue's index holds.
async fn held_by_redis(
    jobs: &Jobs,
    pending: &[store::Pending],
) -> Result<std::collections::HashSet<Uuid>, JobsError> {
    let mut held = std::collections::HashSet::new();
    let mut by_queue: std::collections::HashMap<&str, Vec<Uuid>> = Default::default();
    for job in pending {
        by_queue.entry(job.queue.as_str()).or_default().push(job.id);
    }
    for (queue, ids) in by_queue {
        let Some(keys) = queue_keys(jobs, queue) else { continue };
        for chunk in ids.chunks(1000) {
            let members: Vec<String> = chunk.iter().map(Uuid::to_string).collect();
            let flags: Vec<Value> = jobs.redis().smismember(&keys.index, members).await?;
            for (id, flag) in chunk.iter().zip(flags) {
                if flag.as_i64() == Some(1) || flag.as_bool() == Some(true) {
                    held.insert(*id);
                }
            }
        }
    }
    Ok(held)
}

/// Adds dead jobs missing from their queue's dead set; returns how many.
async fn index_dead(jobs: &Jobs, org: &Org) -> Result<usize, JobsError> {
    let dead = store::dead(jobs.pool(), &org.schema()).await?;
    if dead.is_empty() {
        return Ok(0);
    }
    let mut added = 0;
    for (id, queue, finished_at) in dead {
        let Some(keys) = queue_keys(jobs, &queue) else { continue };
        let score = finished_at.map_or_else(now_ms, |at| at.timestamp_millis() as f64);
        let n: i64 = jobs
            .redis()
            .zadd(
                &keys.dead,
                Some(fred::types::SetOptions::NX),
                None,
                false,
                false,
                (score, dead_member(org.id, id)),
            )
            .await?;
        added += n.max(0) as usize;
    }
    Ok(added)
}

/// What pruning did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PruneReport {
    pub orgs: usize,
    pub jobs: u64,
    pub retention_days: u32,
}

/// Deletes succeeded and cancelled jobs older than the retention period,
/// with their logs, in every org that still has a schema.
pub async fn prune(jobs: &Jobs) -> Result<PruneReport, JobsError> {
    let days = jobs.config().retention_days;
    let before = Utc::now() - chrono::Duration::days(i64::from(days));
    let mut report = PruneReport { retention_days: days, ..Default::default() };
    for org in jobs.orgs().list().await? {
        if org.status == OrgStatus::Deleted {
            continue;
        }
        report.orgs += 1;
        let mut pruned = 0;
        loop {
            let n = store::prune(jobs.pool(), &org.schema(), before, 5_000).await?;
            pruned += n;
            if n < 5_000 {
                break;
            }
        }
        if pruned > 0 {
            super::events::touch(jobs.redis(), jobs.keys(), org.id).await;
        }
        report.jobs += pruned;
    }
    Ok(report)
}
