//! Background jobs: org jobs recorded in the org schema (`jobs`,
//! `job_logs`) and dispatched through Redis queues, platform jobs that live
//! in Redis only, workers, the scheduler, and the recovery sweep.
//!
//! PostgreSQL is the record of truth for org jobs: a job exists once its row
//! is committed, and Redis only says which worker should run it when. Every
//! org job Redis holds is also in its queue's index set, so the recovery
//! sweep ([`sweep::recover`]) can re-dispatch accepted jobs that Redis lost,
//! and a worker runs a job only after claiming its row (`queued` →
//! `running`), so a job that already finished is never run again.
//!
//! Platform jobs (not tied to an org, such as maintenance) live in Redis
//! only: their whole record travels in the queue entry, and they are lost
//! if Redis loses its data.
//!
//! Job states: `queued` → `running` → `succeeded`; a failed attempt goes to
//! `failed` with the next attempt due at `run_at` (exponential backoff with
//! jitter), and the last failed attempt to `dead`. `cancelled` is final;
//! `dead` and `cancelled` jobs can be retried.

pub mod browse;
pub mod builtin;
mod combine;
pub mod events;
pub mod handler;
pub mod scheduler;
pub mod schedules;
mod store;
pub mod sweep;
pub mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use fred::interfaces::{SetsInterface, SortedSetsInterface, StreamsInterface};
use serde_json::Value;
use sqlx::PgPool;
use tenancy::{Org, OrgId, RedisKeys};
use uuid::Uuid;

pub use handler::{Handler, JobContext, JobError, JobLogger, JobResult, Registry};
pub use store::{JobFilter, StoredLine};

use crate::accounts::Actor;
use crate::queue::{Queue, QueueKeys, QueueName, QueueStats};

/// Where a job is in its life.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    /// An attempt failed; the next is due at `run_at`.
    Failed,
    Cancelled,
    /// No attempts left (or a permanent error).
    Dead,
}

impl JobStatus {
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
        JobStatus::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Dead => "dead",
        }
    }

    /// Succeeded, cancelled and dead jobs do not run again by themselves.
    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Cancelled | JobStatus::Dead)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for JobStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| {
            format!(
                "unknown job status '{s}'; expected queued, running, succeeded, failed, cancelled or dead"
            )
        })
    }
}

impl TryFrom<String> for JobStatus {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// An org job as recorded in its org's `jobs` table.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Job {
    pub id: Uuid,
    pub kind: String,
    pub queue: String,
    #[sqlx(try_from = "String")]
    pub status: JobStatus,
    #[schema(value_type = Object)]
    pub payload: Value,
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub error: Option<String>,
    pub attempts: i32,
    pub max_attempts: i32,
    /// When the job (or its next attempt) may run.
    pub run_at: DateTime<Utc>,
    pub unique_key: Option<String>,
    pub created_by: String,
    /// The worker running it now.
    pub worker_id: Option<String>,
    pub cancel_requested_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A job as lists show it: no payload or result (they may be large; read
/// one job for them), and the first line of its error, cut to 200
/// characters.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct JobSummary {
    pub id: Uuid,
    pub kind: String,
    pub queue: String,
    pub status: JobStatus,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
    pub error: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// By position (the columns of `store::SUMMARY_COLUMNS`, in order): lists
/// decode many rows, and looking columns up by name costs.
impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for JobSummary {
    fn from_row(row: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        let status: &str = row.try_get(3)?;
        Ok(JobSummary {
            id: row.try_get(0)?,
            kind: row.try_get(1)?,
            queue: row.try_get(2)?,
            status: status.parse().map_err(|e: String| sqlx::Error::Decode(e.into()))?,
            attempts: row.try_get(4)?,
            max_attempts: row.try_get(5)?,
            run_at: row.try_get(6)?,
            error: row.try_get(7)?,
            created_by: row.try_get(8)?,
            created_at: row.try_get(9)?,
            started_at: row.try_get(10)?,
            finished_at: row.try_get(11)?,
        })
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub payload: Value,
    /// Defaults to the kind's queue.
    pub queue: Option<QueueName>,
    /// Not before this time (a delayed job).
    pub run_at: Option<DateTime<Utc>>,
    /// While a job with this key is unfinished, enqueueing another returns it.
    pub unique_key: Option<String>,
    /// Defaults to the kind's.
    pub max_attempts: Option<u32>,
}

impl NewJob {
    pub fn new(kind: impl Into<String>, payload: Value) -> Self {
        NewJob {
            kind: kind.into(),
            payload,
            queue: None,
            run_at: None,
            unique_key: None,
            max_attempts: None,
        }
    }
}

/// The result of an enqueue: the job, and whether it was created (false:
/// an unfinished job with the same unique key was returned).
#[derive(Debug, Clone)]
pub struct Enqueued {
    pub job: Job,
    pub created: bool,
}

/// Job settings from the configuration.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// A job fetched by a worker that neither finishes nor renews its lease
    /// within this is delivered again (`JOB_VISIBILITY_TIMEOUT_SECS`).
    pub visibility_timeout: Duration,
    /// First retry delay; doubles with each attempt (`JOB_RETRY_BACKOFF_MS`).
    pub retry_backoff: Duration,
    /// Longest retry delay (`JOB_RETRY_MAX_SECS`).
    pub retry_max: Duration,
    /// How often the scheduler runs the recovery sweep (`JOB_SWEEP_INTERVAL_SECS`).
    pub sweep_interval: Duration,
    /// Finished jobs older than this are pruned (`JOB_RETENTION_DAYS`).
    pub retention_days: u32,
    /// Soft-deleted orgs are purged this long after their deletion
    /// (`ORG_RETENTION_DAYS`).
    pub org_retention_days: u32,
    /// Whether failures (dead jobs, server errors) are reported: someone
    /// is set to hear of them (`ADMIN_EMAILS`, `DISCORD_WEBHOOK_URL`).
    pub report_failures: bool,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            visibility_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_secs(1),
            retry_max: Duration::from_secs(3600),
            sweep_interval: Duration::from_secs(300),
            retention_days: 14,
            org_retention_days: 30,
            report_failures: false,
        }
    }
}

impl JobsConfig {
    /// The delay before attempt `attempt + 1`, after attempt `attempt`
    /// (1-based) failed: exponential (`backoff × 2^(attempt-1)`) with "equal
    /// jitter", a random point in the upper half, so retries of many jobs
    /// spread out and a delay is never shorter than the one before. Near
    /// `retry_max` the range narrows; at it, there is no jitter.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(40);
        let full = self.retry_backoff.saturating_mul(1u32 << exp.min(31));
        let full = if exp > 31 { Duration::MAX } else { full };
        let upper = full.min(self.retry_max);
        let lower = (full / 2).min(self.retry_max);
        lower + (upper - lower).mul_f64(rand::random_range(0.0..=1.0))
    }
}

/// Why a job operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error("unknown job kind '{0}'")]
    UnknownKind(String),
    #[error("invalid payload: {0}")]
    InvalidPayload(String),
    #[error("{0}")]
    Invalid(String),
    #[error("no such job")]
    NotFound,
    #[error("the job is {status}; {action} needs it to be {required}")]
    WrongStatus { status: JobStatus, action: &'static str, required: &'static str },
    #[error("another unfinished job holds the unique key '{0}'")]
    UniqueKeyTaken(String),
    #[error("no such schedule")]
    ScheduleNotFound,
    #[error("a schedule named '{0}' already exists")]
    ScheduleNameTaken(String),
    #[error(transparent)]
    Tenancy(#[from] tenancy::TenancyError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("redis error: {0}")]
    Redis(#[from] fred::error::Error),
    /// The process stopped writing before the job's record was confirmed.
    #[error("the enqueue was interrupted; the job may not be recorded")]
    Interrupted,
}

/// Whether a string in `value` (a key or a value) holds U+0000, which a
/// PostgreSQL `jsonb` cannot store.
fn has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(has_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// The size of `value` as JSON, counted without writing it out (every
/// enqueue checks it; a copy of the payload would be thrown away).
fn json_size(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).map_or(usize::MAX, |()| count.0)
}

/// Payloads larger than this (as JSON) are refused.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// A queue entry: an org job points at its row; a platform job carries its
/// whole record.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Entry {
    pub job: Uuid,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub org: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub platform: Option<PlatformJob>,
}

/// The record of a platform job, carried in its queue entry.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct PlatformJob {
    pub kind: String,
    #[serde(default)]
    pub payload: Value,
    /// Attempts made before this delivery.
    pub attempts: u32,
    pub max_attempts: u32,
    pub enqueued_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

impl Entry {
    pub fn org(org: OrgId, job: Uuid) -> Self {
        Entry { job, org: Some(org.as_uuid()), platform: None }
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn decode(raw: &str) -> Option<Self> {
        serde_json::from_str(raw).ok()
    }
}

/// Counts enqueued jobs by queue and kind.
fn count_enqueued(jobs: &[Job]) {
    let mut counts: HashMap<(&str, &str), u64> = HashMap::new();
    for job in jobs {
        *counts.entry((job.queue.as_str(), job.kind.as_str())).or_default() += 1;
    }
    for ((queue, kind), n) in counts {
        metrics::counter!("orgstack_jobs_enqueued_total", "queue" => queue.to_owned(), "kind" => kind.to_owned()).increment(n);
    }
}

/// The member of a queue's dead set for an org job.
pub(crate) fn dead_member(org: OrgId, job: Uuid) -> String {
    format!("{org}:{job}")
}

/// The job services: enqueue, read, cancel, retry and discard org jobs,
/// enqueue platform jobs, and the figures of queues. Cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").field("registry", &self.inner.registry).finish_non_exhaustive()
    }
}

struct Inner {
    pool: PgPool,
    redis: fred::clients::Client,
    keys: RedisKeys,
    orgs: tenancy::OrgRegistry,
    registry: Registry,
    config: JobsConfig,
    queues: Mutex<HashMap<QueueName, Queue>>,
    combiner: std::sync::OnceLock<combine::Combiner>,
}

impl Jobs {
    pub fn new(
        pool: PgPool,
        redis: fred::clients::Client,
        keys: RedisKeys,
        orgs: tenancy::OrgRegistry,
        registry: Registry,
        config: JobsConfig,
    ) -> Self {
        Jobs {
            inner: Arc::new(Inner {
                pool,
                redis,
                keys,
                orgs,
                registry,
                config,
                queues: Mutex::new(HashMap::new()),
                combiner: std::sync::OnceLock::new(),
            }),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    pub fn redis(&self) -> &fred::clients::Client {
        &self.inner.redis
    }

    pub fn keys(&self) -> &RedisKeys {
        &self.inner.keys
    }

    pub fn orgs(&self) -> &tenancy::OrgRegistry {
        &self.inner.orgs
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn config(&self) -> &JobsConfig {
        &self.inner.config
    }

    /// Distributed locks under this prefix (for handlers).
    pub fn locks(&self) -> crate::locks::Locks {
        crate::locks::Locks::new(self.inner.redis.clone(), self.inner.keys.clone())
    }

    /// The queue `name`, opened once per process.
    pub async fn queue(&self, name: &QueueName) -> Result<Queue, fred::error::Error> {
        if let Some(queue) = self.lock_queues().get(name) {
            return Ok(queue.clone());
        }
        let queue = Queue::open(&self.inner.redis, &self.inner.keys, name).await?;
        self.lock_queues().insert(name.clone(), queue.clone());
        Ok(queue)
    }

    fn lock_queues(&self) -> std::sync::MutexGuard<'_, HashMap<QueueName, Queue>> {
        self.inner.queues.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn queue_keys(&self, name: &str) -> Option<QueueKeys> {
        QueueName::parse(name).ok().map(|q| QueueKeys::new(&self.inner.keys, &q))
    }

    /// Checks a new job against its kind; returns its handler's queue and
    /// attempts where the job does not set them.
    fn check(&self, job: &NewJob) -> Result<(QueueName, u32), JobsError> {
        let handler = self
            .inner
            .registry
            .get(&job.kind)
            .ok_or_else(|| JobsError::UnknownKind(job.kind.chars().take(100).collect()))?;
        if has_nul(&job.payload) {
            return Err(JobsError::InvalidPayload(
                "strings may not contain \\u0000 (PostgreSQL cannot store it)".into(),
            ));
        }
        let size = json_size(&job.payload);
        if size > MAX_PAYLOAD_BYTES {
            return Err(JobsError::InvalidPayload(format!(
                "{size} bytes; at most {MAX_PAYLOAD_BYTES}"
            )));
        }
        handler.validate(&job.payload).map_err(JobsError::InvalidPayload)?;
        let queue = match &job.queue {
            Some(q) => q.clone(),
            None => QueueName::parse(handler.queue()).map_err(JobsError::Invalid)?,
        };
        let max_attempts = job.max_attempts.unwrap_or_else(|| handler.max_attempts());
        if !(1..=100).contains(&max_attempts) {
            return Err(JobsError::Invalid("max_attempts must be 1 to 100".into()));
        }
        if let Some(key) = &job.unique_key
            && (key.is_empty() || key.chars().count() > 200 || key.chars().any(char::is_control))
        {
            return Err(JobsError::Invalid("unique_key must be 1 to 200 characters".into()));
        }
        Ok((queue, max_attempts))
    }

    /// Records one job in `org`'s schema and dispatches it. With a unique
    /// key held by an unfinished job, returns that job instead.
    ///
    /// Jobs without a unique key (the API's common case) are combined with
    /// other callers' into one multi-row insert and one Redis pipeline
    /// (`jobs::combine`): under load, one commit records many jobs, and a lone
    /// call is written at once. The call returns once its row is
    /// committed, as before.
    pub async fn enqueue(
        &self,
        org: &Org,
        actor: &Actor,
        job: NewJob,
    ) -> Result<Enqueued, JobsError> {
        if job.unique_key.is_none() {
            let row = self.new_row(job, &actor.to_string(), Utc::now())?;
            return combine::enqueue(self, org, row).await;
        }
        let mut done = self.enqueue_batch(org, actor, vec![job]).await?;
        done.pop().ok_or_else(|| JobsError::Invalid("nothing enqueued".into()))
    }

    /// The row of a checked new job.
    fn new_row(
        &self,
        job: NewJob,
        created_by: &str,
        now: DateTime<Utc>,
    ) -> Result<store::NewRow, JobsError> {
        let (queue, max_attempts) = self.check(&job)?;
        Ok(store::NewRow {
            id: Uuid::now_v7(),
            kind: job.kind,
            queue: queue.as_str().to_owned(),
            payload: job.payload,
            max_attempts: i32::try_from(max_attempts).unwrap_or(1),
            run_at: job.run_at.filter(|at| *at > now).unwrap_or(now),
            unique_key: job.unique_key,
            created_by: created_by.to_owned(),
        })
    }

    /// Records many jobs of `org` in one statement and dispatches them in
    /// one Redis pipeline. Results are in the order given.
    pub async fn enqueue_batch(
        &self,
        org: &Org,
        actor: &Actor,
        jobs: Vec<NewJob>,
    ) -> Result<Vec<Enqueued>, JobsError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        let created_by = actor.to_string();
        let rows = jobs
            .into_iter()
            .map(|job| self.new_row(job, &created_by, now))
            .collect::<Result<Vec<_>, _>>()?;
        let schema = org.schema();
        let mut created: std::collections::HashMap<Uuid, Job> =
            self.record(org, &rows).await?.into_iter().map(|job| (job.id, job)).collect();
        let mut results = Vec::with_capacity(rows.len());
        let mut fresh = Vec::new();
        for row in &rows {
            if let Some(job) = created.remove(&row.id) {
                results.push(Enqueued { job, created: true });
            } else {
                // Its unique key is held by an unfinished job: return that one.
                let key = row.unique_key.as_deref().unwrap_or_default();
                let existing = match store::by_unique_key(&self.inner.pool, &schema, key).await? {
                    Some(job) => job,
                    // That job finished in the meantime: try once more.
                    None => store::insert(
                        &self.inner.pool,
                        org.id,
                        std::slice::from_ref(row),
                        store::Commit::Session,
                    )
                    .await?
                    .pop()
                    .ok_or_else(|| JobsError::UniqueKeyTaken(key.to_owned()))?,
                };
                let created = existing.id == row.id;
                if created {
                    fresh.push(existing.clone());
                }
                results.push(Enqueued { job: existing, created });
            }
        }
        self.dispatch_recorded(org.id, &fresh).await;
        Ok(results)
    }

    /// Records `rows` in `org`'s schema and dispatches the jobs inserted
    /// (rows whose unique key is taken are not). The jobs go to Redis as
    /// soon as their rows are committed, while the commit is being made
    /// durable, so a worker may start one before this returns; it returns
    /// once the rows are on disk, as a commit that waits would. (Should
    /// PostgreSQL crash in between, the call fails; the job may have
    /// started, and its row is gone with the crash.)
    pub(super) async fn record(
        &self,
        org: &Org,
        rows: &[store::NewRow],
    ) -> Result<Vec<Job>, JobsError> {
        let pool = &self.inner.pool;
        let jobs = store::insert(pool, org.id, rows, store::Commit::Unflushed).await?;
        let (flushed, ()) =
            tokio::join!(store::flush_wal(pool), self.dispatch_recorded(org.id, &jobs));
        flushed?;
        Ok(jobs)
    }

    /// Dispatches jobs just recorded and counts them. A failure to reach
    /// Redis is only logged: the jobs are recorded, and the recovery sweep
    /// dispatches them.
    async fn dispatch_recorded(&self, org: OrgId, fresh: &[Job]) {
        if let Err(err) = self.dispatch(org, fresh, true).await {
            tracing::warn!(org_id = %org, jobs = fresh.len(), error = %err, "recorded jobs but could not dispatch them; the recovery sweep will");
        }
        count_enqueued(fresh);
    }

    /// Hands recorded org jobs to Redis: the due ones to their queue's
    /// stream, the others to its scheduled set, all to its index; with
    /// `announce`, their status goes to the org's events channel in the
    /// same pipeline (one round trip).
    pub(crate) async fn dispatch(
        &self,
        org: OrgId,
        jobs: &[Job],
        announce: bool,
    ) -> Result<(), JobsError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        let mut opened: Vec<&str> = Vec::new();
        for job in jobs {
            if !opened.contains(&job.queue.as_str()) {
                let name = QueueName::parse(&job.queue).map_err(JobsError::Invalid)?;
                self.queue(&name).await?;
                opened.push(&job.queue);
            }
        }
        let pipeline = self.inner.redis.pipeline();
        for job in jobs {
            let Some(keys) = self.queue_keys(&job.queue) else { continue };
            let entry = Entry::org(org, job.id).encode();
            let _: () = pipeline.sadd(&keys.index, job.id.to_string()).await?;
            if job.run_at > now {
                let due = job.run_at.timestamp_millis() as f64;
                let _: () =
                    pipeline.zadd(&keys.scheduled, None, None, false, false, (due, entry)).await?;
            } else {
                let _: () =
                    pipeline.xadd(&keys.stream, false, None::<()>, "*", vec![("p", entry)]).await?;
            }
        }
        if announce {
            let events: Vec<events::JobEvent> = jobs.iter().map(events::JobEvent::of).collect();
            events::publish_in(&pipeline, &self.inner.keys, org, &events).await;
        }
        let _: Vec<fred::types::Value> = pipeline.all().await?;
        Ok(())
    }

    /// Enqueues a platform job (Redis only; no org, no row).
    pub async fn enqueue_platform(&self, job: NewJob) -> Result<Uuid, JobsError> {
        let (queue, max_attempts) = self.check(&job)?;
        let id = Uuid::now_v7();
        let entry = Entry {
            job: id,
            org: None,
            platform: Some(PlatformJob {
                kind: job.kind.clone(),
                payload: job.payload,
                attempts: 0,
                max_attempts,
                enqueued_at: Utc::now(),
                error: None,
            }),
        }
        .encode();
        let queue = self.queue(&queue).await?;
        match job.run_at.filter(|at| *at > Utc::now()) {
            Some(at) => queue.schedule(&[(entry, at.timestamp_millis())]).await?,
            None => {
                queue.enqueue(&entry).await?;
            }
        }
        metrics::counter!("orgstack_jobs_enqueued_total", "queue" => queue.name().to_string(), "kind" => job.kind).increment(1);
        Ok(id)
    }

    /// Enqueues many platform jobs of one kind in one pipeline (benchmarks).
    pub async fn enqueue_platform_batch(
        &self,
        kind: &str,
        payloads: Vec<Value>,
    ) -> Result<usize, JobsError> {
        let probe = NewJob::new(kind, Value::Null);
        let (queue, max_attempts) = self.check(&probe)?;
        let now = Utc::now();
        let entries: Vec<String> = payloads
            .into_iter()
            .map(|payload| {
                Entry {
                    job: Uuid::now_v7(),
                    org: None,
                    platform: Some(PlatformJob {
                        kind: kind.to_owned(),
                        payload,
                        attempts: 0,
                        max_attempts,
                        enqueued_at: now,
                        error: None,
                    }),
                }
                .encode()
            })
            .collect();
        let queue = self.queue(&queue).await?;
        queue.enqueue_batch(&entries).await?;
        metrics::counter!("orgstack_jobs_enqueued_total", "queue" => queue.name().to_string(), "kind" => kind.to_owned()).increment(entries.len() as u64);
        Ok(entries.len())
    }

    /// One job of `org`.
    pub async fn get(&self, org: &Org, id: Uuid) -> Result<Job, JobsError> {
        store::get(&self.inner.pool, &org.schema(), id).await?.ok_or(JobsError::NotFound)
    }

    /// A page of `org`'s jobs, newest first.
    pub async fn list(
        &self,
        org: &Org,
        filter: &JobFilter,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<JobSummary>, JobsError> {
        Ok(store::list(&self.inner.pool, &org.schema(), filter, after, limit).await?)
    }

    /// The current version of `org`'s job lists (see
    /// `events::list_version`); `None` when Redis cannot say.
    pub async fn list_version(&self, org: OrgId) -> Option<String> {
        events::list_version(&self.inner.redis, &self.inner.keys, org).await
    }

    /// Cancels a job: a queued (or retry-waiting) one never starts; a
    /// running one is told to stop and ends as cancelled.
    pub async fn cancel(&self, org: &Org, actor: &Actor, id: Uuid) -> Result<Job, JobsError> {
        let schema = org.schema();
        let reason = format!("cancelled by {actor}");
        let mut tx = self.inner.pool.begin().await?;
        let job = store::cancel(&mut tx, &schema, id, &reason).await?;
        let job = match job {
            Some(job) => job,
            None => {
                let current =
                    store::get(&mut *tx, &schema, id).await?.ok_or(JobsError::NotFound)?;
                return Err(JobsError::WrongStatus {
                    status: current.status,
                    action: "cancel",
                    required: "queued, failed or running",
                });
            }
        };
        crate::accounts::audit::record_org(
            &mut tx,
            &schema,
            actor,
            "job.cancelled",
            Some(&id.to_string()),
            serde_json::json!({ "kind": job.kind, "status": job.status }),
        )
        .await?;
        tx.commit().await?;
        if job.status == JobStatus::Running {
            worker::send_control(
                &self.inner.redis,
                &self.inner.keys,
                &worker::Control::Cancel { job: id },
            )
            .await;
        } else if let Some(keys) = self.queue_keys(&job.queue) {
            // It never starts: forget it in Redis too (a stream entry still
            // there is dropped by the worker that fetches it).
            let pipeline = self.inner.redis.pipeline();
            let _: () = pipeline.zrem(&keys.scheduled, Entry::org(org.id, id).encode()).await?;
            let _: () = pipeline.srem(&keys.index, id.to_string()).await?;
            let _: Result<Vec<fred::types::Value>, _> = pipeline.all().await;
        }
        events::publish_jobs(
            &self.inner.redis,
            &self.inner.keys,
            org.id,
            std::slice::from_ref(&job),
        )
        .await;
        Ok(job)
    }

    /// Runs a dead, cancelled or retry-waiting job again now (a dead or
    /// cancelled one with a fresh set of attempts).
    pub async fn retry(&self, org: &Org, actor: &Actor, id: Uuid) -> Result<Job, JobsError> {
        let schema = org.schema();
        let mut tx = self.inner.pool.begin().await?;
        let job = match store::requeue(&mut tx, &schema, id).await {
            Ok(job) => job,
            Err(err) if store::is_unique_violation(&err, "jobs_unique_key") => {
                let current = store::get(&self.inner.pool, &schema, id).await?;
                return Err(JobsError::UniqueKeyTaken(
                    current.and_then(|j| j.unique_key).unwrap_or_default(),
                ));
            }
            Err(err) => return Err(err.into()),
        };
        let Some(job) = job else {
            let current = store::get(&mut *tx, &schema, id).await?.ok_or(JobsError::NotFound)?;
            return Err(JobsError::WrongStatus {
                status: current.status,
                action: "retry",
                required: "dead, cancelled or failed",
            });
        };
        crate::accounts::audit::record_org(
            &mut tx,
            &schema,
            actor,
            "job.retried",
            Some(&id.to_string()),
            serde_json::json!({ "kind": job.kind }),
        )
        .await?;
        tx.commit().await?;
        if let Some(keys) = self.queue_keys(&job.queue) {
            let _: Result<i64, _> =
                self.inner.redis.zrem(&keys.dead, dead_member(org.id, id)).await;
        }
        if let Err(err) = self.dispatch(org.id, std::slice::from_ref(&job), true).await {
            tracing::warn!(job_id = %id, error = %err, "could not dispatch a retried job; the recovery sweep will");
        }
        Ok(job)
    }

    /// Deletes a dead job and its logs.
    pub async fn discard(&self, org: &Org, actor: &Actor, id: Uuid) -> Result<(), JobsError> {
        let schema = org.schema();
        let mut tx = self.inner.pool.begin().await?;
        let deleted = store::delete_dead(&mut tx, &schema, &[id], None).await?;
        let Some(job) = deleted.into_iter().next() else {
            let current = store::get(&mut *tx, &schema, id).await?.ok_or(JobsError::NotFound)?;
            return Err(JobsError::WrongStatus {
                status: current.status,
                action: "discard",
                required: "dead",
            });
        };
        crate::accounts::audit::record_org(
            &mut tx,
            &schema,
            actor,
            "job.discarded",
            Some(&id.to_string()),
            serde_json::json!({ "kind": job.1 }),
        )
        .await?;
        tx.commit().await?;
        let pipeline = self.inner.redis.pipeline();
        if let Some(keys) = self.queue_keys(&job.2) {
            let _: () = pipeline.zrem(&keys.dead, dead_member(org.id, id)).await?;
        }
        events::touch_in(&pipeline, &self.inner.keys, org.id).await;
        let _: Result<Vec<fred::types::Value>, _> = pipeline.all().await;
        Ok(())
    }

    /// Deletes every dead job of `org` (older than `older_than`, when set);
    /// returns how many. With `dry_run`, only counts them.
    pub async fn purge_dead(
        &self,
        org: &Org,
        actor: &Actor,
        older_than: Option<Duration>,
        dry_run: bool,
    ) -> Result<u64, JobsError> {
        let schema = org.schema();
        let before = older_than
            .map(|d| Utc::now() - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX));
        if dry_run {
            return Ok(store::count_dead(&self.inner.pool, &schema, before).await?);
        }
        let mut tx = self.inner.pool.begin().await?;
        let deleted = store::delete_dead(&mut tx, &schema, &[], before).await?;
        if !deleted.is_empty() {
            crate::accounts::audit::record_org(
                &mut tx,
                &schema,
                actor,
                "jobs.dead_purged",
                None,
                serde_json::json!({ "count": deleted.len() }),
            )
            .await?;
        }
        tx.commit().await?;
        let pipeline = self.inner.redis.pipeline();
        for (id, _, queue) in &deleted {
            if let Some(keys) = self.queue_keys(queue) {
                let _: () = pipeline.zrem(&keys.dead, dead_member(org.id, *id)).await?;
            }
        }
        if !deleted.is_empty() {
            events::touch_in(&pipeline, &self.inner.keys, org.id).await;
        }
        let _: Result<Vec<fred::types::Value>, _> = pipeline.all().await;
        Ok(deleted.len() as u64)
    }

    /// A page of one job's log lines, in order, after `(attempt, line_no)`.
    pub async fn logs(
        &self,
        org: &Org,
        id: Uuid,
        after: Option<(i32, i32)>,
        limit: u32,
    ) -> Result<Vec<store::StoredLine>, JobsError> {
        let schema = org.schema();
        if !store::exists(&self.inner.pool, &schema, id).await? {
            return Err(JobsError::NotFound);
        }
        Ok(store::logs(&self.inner.pool, &schema, id, after, limit).await?)
    }

    /// The figures of every known queue (and of the registered kinds'
    /// queues, even before first use).
    pub async fn queue_stats(&self) -> Result<Vec<QueueStats>, JobsError> {
        let mut names = Queue::known(&self.inner.redis, &self.inner.keys).await?;
        for name in self.inner.registry.queues() {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names.sort();
        let mut stats = Vec::with_capacity(names.len());
        for name in names {
            stats.push(self.queue(&name).await?.stats().await?);
        }
        Ok(stats)
    }
}
