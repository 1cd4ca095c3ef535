//! Looking inside a queue across orgs (what Flower shows): the entries
//! waiting, running, scheduled and dead, each joined with its job record;
//! and the operators' queue actions (pause, resume, purge), audited.

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use futures::{StreamExt, TryStreamExt};
use tenancy::{OrgId, SchemaName};
use uuid::Uuid;

use super::{Entry, JobStatus, Jobs, JobsError, store};
use crate::accounts::Actor;
use crate::queue::QueueName;

/// Orgs whose job records [`Jobs::browse_queue`] reads at once.
const PARALLEL_ORGS: usize = 8;

/// Which part of a queue to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Section {
    /// In the stream, not yet fetched.
    Waiting,
    /// Fetched by a worker, not acknowledged.
    Running,
    /// Waiting for a time (delayed jobs, retries after backoff).
    Scheduled,
    /// Out of attempts.
    Dead,
}

impl Section {
    pub const ALL: [Section; 4] =
        [Section::Waiting, Section::Running, Section::Scheduled, Section::Dead];

    pub fn as_str(self) -> &'static str {
        match self {
            Section::Waiting => "waiting",
            Section::Running => "running",
            Section::Scheduled => "scheduled",
            Section::Dead => "dead",
        }
    }
}

impl std::fmt::Display for Section {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Narrows a queue listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueFilter {
    /// Only this org's jobs (`None`: every org and platform jobs).
    pub org: Option<OrgId>,
    /// Only jobs of this kind.
    pub kind: Option<String>,
}

/// One entry of a queue with what its record says.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedJob {
    pub id: Uuid,
    /// `None` for a platform job.
    pub org: Option<OrgId>,
    pub kind: String,
    /// The record's status (org jobs; a platform job's follows the section).
    pub status: Option<JobStatus>,
    pub attempts: i32,
    pub max_attempts: i32,
    pub error: Option<String>,
    /// Entered the section: enqueued, fetched, due or died.
    pub since: Option<DateTime<Utc>>,
    /// The worker holding it (running entries).
    pub worker: Option<String>,
}

/// How many entries are looked at to find `limit` matching a filter.
const SCAN: u64 = 5_000;

fn millis(ms: f64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms as i64).single()
}

/// The time part of a stream entry id (`ms-seq`).
fn id_time(id: &str) -> Option<DateTime<Utc>> {
    id.split('-').next()?.parse::<f64>().ok().and_then(millis)
}

/// A raw entry of a section: the encoded [`Entry`] or dead-set member,
/// when it entered the section, and the worker holding it.
type Raw = (String, Option<DateTime<Utc>>, Option<String>);

impl Jobs {
    /// Up to `limit` jobs of `section` of `queue` that match `filter`,
    /// joined with their records (read from each org's schema in one query
    /// per org).
    pub async fn browse_queue(
        &self,
        queue: &QueueName,
        section: Section,
        filter: &QueueFilter,
        limit: usize,
    ) -> Result<Vec<QueuedJob>, JobsError> {
        let queue = self.queue(queue).await?;
        let scan = if filter == &QueueFilter::default() { limit as u64 } else { SCAN };
        let raw: Vec<Raw> = match section {
            Section::Waiting => queue
                .waiting(scan)
                .await?
                .into_iter()
                .map(|d| {
                    let at = id_time(&d.id);
                    (d.payload, at, None)
                })
                .collect(),
            Section::Running => queue
                .pending_entries(scan)
                .await?
                .into_iter()
                .map(|(d, worker, idle)| {
                    let at = Utc::now() - chrono::Duration::milliseconds(idle as i64);
                    (d.payload, Some(at), Some(worker))
                })
                .collect(),
            Section::Scheduled => queue
                .scheduled_entries(scan as i64)
                .await?
                .into_iter()
                .map(|(member, due)| (member, millis(due), None))
                .collect(),
            Section::Dead => queue
                .dead_entries(scan as i64)
                .await?
                .into_iter()
                .map(|(member, at)| (member, millis(at), None))
                .collect(),
        };
        let mut found: Vec<QueuedJob> = Vec::new();
        for (member, since, worker) in raw {
            let Some((org, id, platform)) = decode(&member) else { continue };
            if filter.org.is_some() && filter.org != org {
                continue;
            }
            let (kind, attempts, max_attempts, error) = match platform {
                Some(p) => (p.kind, p.attempts as i32, p.max_attempts as i32, p.error),
                None => (String::new(), 0, 0, None),
            };
            found.push(QueuedJob {
                id,
                org,
                kind,
                status: None,
                attempts,
                max_attempts,
                error,
                since,
                worker,
            });
        }
        self.join_records(&mut found).await?;
        found.retain(|job| filter.kind.as_ref().is_none_or(|k| &job.kind == k));
        found.truncate(limit);
        Ok(found)
    }

    /// Fills in kind, status, attempts and error of org jobs from their
    /// records; entries whose record is gone are dropped.
    async fn join_records(&self, found: &mut Vec<QueuedJob>) -> Result<(), JobsError> {
        let mut by_org: HashMap<OrgId, Vec<Uuid>> = HashMap::new();
        for job in found.iter() {
            if let Some(org) = job.org {
                by_org.entry(org).or_default().push(job.id);
            }
        }
        // One statement per org (none spans two org schemas), several orgs
        // at once: a page of dead jobs can name 200 orgs.
        let pool = self.pool();
        let pages: Vec<Vec<super::Job>> =
            futures::stream::iter(by_org)
                .map(|(org, ids)| async move {
                    store::by_ids(pool, &SchemaName::for_org(org), &ids).await
                })
                .buffer_unordered(PARALLEL_ORGS)
                .try_collect()
                .await?;
        let records: HashMap<Uuid, super::Job> =
            pages.into_iter().flatten().map(|record| (record.id, record)).collect();
        found.retain_mut(|job| {
            if job.org.is_none() {
                return true;
            }
            let Some(record) = records.get(&job.id) else { return false };
            job.kind.clone_from(&record.kind);
            job.status = Some(record.status);
            job.attempts = record.attempts;
            job.max_attempts = record.max_attempts;
            job.error = record.error.as_ref().map(|e| e.lines().next().unwrap_or("").to_owned());
            true
        });
        Ok(())
    }

    /// Stops workers fetching from `queue` (`paused`) or lets them again;
    /// recorded in the platform audit log.
    pub async fn set_paused(
        &self,
        actor: &Actor,
        queue: &QueueName,
        paused: bool,
    ) -> Result<(), JobsError> {
        let handle = self.queue(queue).await?;
        let action = if paused { "queue.paused" } else { "queue.resumed" };
        let mut conn = self.pool().acquire().await?;
        crate::accounts::audit::record_platform(
            &mut conn,
            actor,
            action,
            Some(queue.as_str()),
            None,
            serde_json::json!({}),
        )
        .await?;
        if paused {
            handle.pause().await?
        } else {
            handle.resume().await?
        }
        Ok(())
    }

    /// Drops every waiting entry of `queue` (as Celery's purge does): org
    /// jobs among them are cancelled in their records first, so neither a
    /// worker nor the recovery sweep runs them; running, scheduled and dead
    /// jobs are left alone. Returns how many entries went. Audited in the
    /// platform log, and in each org's log with its count.
    pub async fn purge_queue(&self, actor: &Actor, queue: &QueueName) -> Result<u64, JobsError> {
        let handle = self.queue(queue).await?;
        let reason = format!("purged from queue {queue} by {actor}");
        let mut purged = 0;
        loop {
            let batch = handle.waiting(1_000).await?;
            if batch.is_empty() {
                break;
            }
            let mut by_org: HashMap<OrgId, Vec<Uuid>> = HashMap::new();
            for entry in &batch {
                if let Some((Some(org), id, _)) = decode(&entry.payload) {
                    by_org.entry(org).or_default().push(id);
                }
            }
            for (org, ids) in &by_org {
                let schema = SchemaName::for_org(*org);
                let mut tx = self.pool().begin().await?;
                let sql = format!(
                    "UPDATE {} SET status = 'cancelled', error = $2, finished_at = now(), updated_at = now() \
                     WHERE id = ANY($1) AND status = 'queued'",
                    schema.qualify("jobs")
                );
                let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .persistent(false)
                    .bind(ids)
                    .bind(&reason)
                    .execute(&mut *tx)
                    .await?;
                crate::accounts::audit::record_org(
                    &mut tx,
                    &schema,
                    actor,
                    "queue.purged",
                    Some(queue.as_str()),
                    serde_json::json!({ "cancelled": done.rows_affected() }),
                )
                .await?;
                tx.commit().await?;
            }
            let ids: Vec<String> = batch.iter().map(|d| d.id.clone()).collect();
            purged += handle.remove(&ids).await?;
            let forget: Vec<String> = by_org.values().flatten().map(Uuid::to_string).collect();
            if !forget.is_empty() {
                use fred::interfaces::SetsInterface;
                let _: i64 = self.redis().srem(&handle.keys().index, forget).await?;
            }
        }
        let mut conn = self.pool().acquire().await?;
        crate::accounts::audit::record_platform(
            &mut conn,
            actor,
            "queue.purged",
            Some(queue.as_str()),
            None,
            serde_json::json!({ "entries": purged }),
        )
        .await?;
        Ok(purged)
    }
}

/// An entry or a dead-set member: `(org, job, platform record)`.
fn decode(member: &str) -> Option<(Option<OrgId>, Uuid, Option<super::PlatformJob>)> {
    if let Some(entry) = Entry::decode(member) {
        return Some((entry.org.map(OrgId::from_uuid), entry.job, entry.platform));
    }
    // A dead org job: `org:job`.
    let (org, job) = member.split_once(':')?;
    Some((Some(OrgId::from_uuid(org.parse().ok()?)), job.parse().ok()?, None))
}
