//! The worker: fetches jobs from its queues, runs them with bounded
//! concurrency, and records how they ended.
//!
//! Inside one worker process:
//! - a **fetcher** per queue (a Redis connection of its own, since
//!   `XREADGROUP BLOCK` holds it) keeps a small buffer of fetched entries;
//! - the **dispatcher** takes entries from the buffers by smooth weighted
//!   round robin (queue weights, so a busy queue cannot starve another)
//!   whenever a slot is free, claims the org jobs in PostgreSQL (one
//!   statement per org for the whole batch) and starts them;
//! - each run has a [`JobContext`] with a cancellation token, a timeout and
//!   a logger;
//! - the **recorder** writes what happened in batches: log lines every
//!   500 ms or 100 lines, and finished runs as soon as it can, grouped per
//!   org in one transaction; only then are the entries acknowledged in
//!   Redis, so a job whose outcome was not recorded is delivered again;
//! - background loops renew the lease on held entries, reclaim entries of
//!   dead workers after the visibility timeout, promote due delayed
//!   entries, publish heartbeats, listen for cancellations and commands,
//!   and (with autoscale) grow and shrink the number of slots.
//!
//! Graceful shutdown (SIGTERM, or a `shutdown` command): stop fetching, hand
//! back the entries fetched but not started at once, let running jobs
//! finish within the shutdown timeout, then stop the rest and hand them
//! back too (that attempt does not count), record everything, and leave.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use fred::interfaces::{HashesInterface, KeysInterface, SetsInterface, SortedSetsInterface};
use fred::types::Value;
use tenancy::{Org, OrgId, OrgStatus, RedisKeys};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::events::{self, JobEvent};
use super::handler::{JobContext, JobError, JobLogger, LogLine};
use super::store::{self, Finish};
use super::{Entry, JobStatus, Jobs, PlatformJob, dead_member};
use crate::queue::{Consumer, Delivery, Queue, QueueName};

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Queues to fetch from, with their weights.
    pub queues: Vec<(QueueName, u32)>,
    /// Jobs run at once (the starting number with autoscale).
    pub concurrency: usize,
    /// `(max, min)` slots: grow while work waits, shrink when idle.
    pub autoscale: Option<(usize, usize)>,
    /// How long running jobs may take to finish after a stop is asked.
    pub shutdown_timeout: Duration,
}

impl WorkerOptions {
    /// Parses `name[:weight]` items (`default:3,emails`).
    pub fn parse_queues(spec: &str) -> Result<Vec<(QueueName, u32)>, String> {
        let mut queues: Vec<(QueueName, u32)> = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, weight) = match item.split_once(':') {
                Some((name, weight)) => {
                    let weight = weight
                        .parse::<u32>()
                        .ok()
                        .filter(|w| (1..=100).contains(w))
                        .ok_or_else(|| format!("weight of queue '{name}' must be 1 to 100"))?;
                    (name, weight)
                }
                None => (item, 1),
            };
            let name = QueueName::parse(name)?;
            if queues.iter().any(|(q, _)| *q == name) {
                return Err(format!("queue '{name}' is listed twice"));
            }
            queues.push((name, weight));
        }
        if queues.is_empty() {
            return Err("name at least one queue".into());
        }
        Ok(queues)
    }
}

/// A message on the worker control channel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Control {
    /// Stop this job wherever it runs.
    Cancel { job: Uuid },
    /// Shut this worker down gracefully.
    Shutdown { worker: String },
    /// Run this many jobs at once from now on.
    SetConcurrency { worker: String, concurrency: usize },
}

/// Publishes a control message to every worker (logged, not returned, on
/// failure: a running job that misses its cancel still ends as cancelled
/// when its worker records it or is lost).
pub async fn send_control(redis: &fred::clients::Client, keys: &RedisKeys, control: &Control) {
    tenancy::invalidation::announce(
        redis,
        keys.worker_control_channel(),
        serde_json::to_string(control).unwrap_or_default(),
    )
    .await;
}

/// Seconds between heartbeats.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// A worker whose last heartbeat is older than this is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(10);
/// How long a stopped worker's record stays visible.
const RECORD_TTL_SECS: i64 = 300;
/// How long a fetch waits for entries (a stop waits for it at most this).
const FETCH_BLOCK: Duration = Duration::from_millis(500);
/// Runs whose outcome is not yet written, at most (the worker waits for
/// PostgreSQL beyond this).
const MAX_UNRECORDED: usize = 4_000;
/// Most entries started in one dispatch round.
const DISPATCH_BATCH: usize = 512;
/// Connections of the worker's own for claims, besides its pool: claims
/// of one batch for several orgs run two at a time.
const CLAIM_CONNECTIONS: usize = 2;
/// Orgs whose claim each claim connection keeps prepared (the most recent
/// ones). Beyond them a claim is prepared again, as costly as running it
/// unprepared. With 256 (the pool's default) the worker's peak after jobs
/// of 1,000 orgs was about 1 MB higher, and PostgreSQL keeps about 32 KB
/// per statement.
const CLAIM_STATEMENTS: usize = 64;
/// Connections of the worker's own for recording outcomes: the orgs of one
/// recorder round are written this many at a time (their commits share
/// the disk's flushes). With jobs of many orgs finishing at once, two were
/// too few: outcomes waited, and the worker held more of them in memory.
const OUTCOME_CONNECTIONS: usize = 4;
/// Log lines are stored at least this often...
const LOG_FLUSH_EVERY: Duration = Duration::from_millis(500);
/// ...or once an org has this many waiting.
const LOG_FLUSH_LINES: usize = 100;

/// Why a running job was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    Cancelled,
    Shutdown,
}

/// An entry fetched and not yet started.
#[derive(Debug, Clone)]
struct Fetched {
    queue: usize,
    delivery: Delivery,
    reclaimed: bool,
}

struct QueueState {
    queue: Queue,
    weight: i64,
    buffer: Mutex<VecDeque<Fetched>>,
    /// Entry ids this worker holds (buffered, running, or being recorded).
    held: Mutex<HashSet<String>>,
    /// Smooth weighted round robin state.
    current: AtomicI64,
}

struct Running {
    cancel: CancellationToken,
    reason: Arc<Mutex<Option<StopReason>>>,
    org: Option<OrgId>,
    kind: String,
    started_at: chrono::DateTime<Utc>,
}

/// Counters published with the heartbeat.
#[derive(Debug, Default)]
struct Counters {
    processed: AtomicU64,
    failed: AtomicU64,
}

struct Shared {
    jobs: Jobs,
    id: String,
    host: String,
    started_at: chrono::DateTime<Utc>,
    queues: Vec<QueueState>,
    slots: Arc<Semaphore>,
    /// Runs started and not yet recorded (see [`MAX_UNRECORDED`]).
    recording: Arc<Semaphore>,
    concurrency: AtomicUsize,
    /// Slots to take away (autoscale down, or a lower concurrency).
    to_forget: AtomicUsize,
    autoscale: Option<(usize, usize)>,
    prefetch: usize,
    running: Mutex<HashMap<Uuid, Running>>,
    in_flight: AtomicUsize,
    /// Work waits and every slot is busy.
    pressed: AtomicBool,
    work: Notify,
    room: Notify,
    stopping: CancellationToken,
    counters: Counters,
    /// Entries given back to the queues for another worker.
    handed_back: AtomicU64,
    /// Taken out when the worker stops, so the recorder sees the channel
    /// close once every run has ended.
    records: Mutex<Option<mpsc::UnboundedSender<Record>>>,
    /// The claims' own connections (see [`store::claim`]).
    claims: tenancy::db::Lane,
    /// The outcomes' own connections (see [`store::finish`]).
    outcomes: tenancy::db::Lane,
}

impl Shared {
    fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn buffered(&self) -> usize {
        self.queues.iter().map(|q| Self::lock(&q.buffer).len()).sum()
    }

    fn release(&self, queue: usize, entry: &str) {
        Self::lock(&self.queues[queue].held).remove(entry);
    }
}

/// What runs send to the recorder.
#[derive(Debug)]
pub(crate) enum Record {
    Line(LogLine),
    Done(Box<Done>),
}

/// A finished run.
#[derive(Debug)]
pub(crate) struct Done {
    queue: usize,
    entry: Delivery,
    org: Option<OrgId>,
    job: Uuid,
    kind: String,
    attempt: u32,
    max_attempts: u32,
    platform: Option<PlatformJob>,
    outcome: Outcome,
    elapsed: Duration,
    /// Held until the outcome is written.
    _recording: OwnedSemaphorePermit,
}

#[derive(Debug)]
enum Outcome {
    Succeeded(serde_json::Value),
    Failed(JobError),
    Cancelled,
    /// Stopped by a shutdown: queued again, the attempt not counted.
    Interrupted,
}

/// A worker; [`Worker::run`] runs it until its shutdown future resolves
/// (or it is told to shut down).
#[derive(Debug)]
pub struct Worker {
    jobs: Jobs,
    options: WorkerOptions,
    id: String,
}

/// What a worker did, returned when it stops.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WorkerReport {
    pub processed: u64,
    pub failed: u64,
    /// Entries given back to the queues at shutdown.
    pub handed_back: u64,
}

impl Worker {
    pub fn new(jobs: Jobs, options: WorkerOptions) -> Self {
        let host = hostname();
        let suffix: String = Uuid::new_v4().simple().to_string()[..8].to_owned();
        let id = format!("{host}:{}:{suffix}", std::process::id());
        Worker { jobs, options, id }
    }

    /// The worker's id (`host:pid:random`), also its consumer name.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs until `shutdown` resolves (or a shutdown command arrives), then
    /// stops gracefully.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<WorkerReport> {
        let Worker { jobs, options, id } = self;
        let mut queues = Vec::new();
        for (name, weight) in &options.queues {
            let queue = jobs.queue(name).await.with_context(|| format!("opening queue {name}"))?;
            queues.push(QueueState {
                queue,
                weight: i64::from(*weight),
                buffer: Mutex::new(VecDeque::new()),
                held: Mutex::new(HashSet::new()),
                current: AtomicI64::new(0),
            });
        }
        let concurrency = options.concurrency.max(1);
        let (records_tx, records_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            host: hostname(),
            started_at: Utc::now(),
            prefetch: concurrency.clamp(16, DISPATCH_BATCH),
            slots: Arc::new(Semaphore::new(concurrency)),
            recording: Arc::new(Semaphore::new(MAX_UNRECORDED)),
            concurrency: AtomicUsize::new(concurrency),
            to_forget: AtomicUsize::new(0),
            autoscale: options.autoscale,
            queues,
            running: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            pressed: AtomicBool::new(false),
            work: Notify::new(),
            room: Notify::new(),
            stopping: CancellationToken::new(),
            counters: Counters::default(),
            handed_back: AtomicU64::new(0),
            records: Mutex::new(Some(records_tx)),
            claims: tenancy::db::Lane::new(
                (*jobs.pool().connect_options()).clone().statement_cache_capacity(CLAIM_STATEMENTS),
                store::CLAIM_SETUP,
                CLAIM_CONNECTIONS,
            ),
            outcomes: tenancy::db::Lane::new(
                (*jobs.pool().connect_options()).clone(),
                store::OUTCOME_SETUP,
                OUTCOME_CONNECTIONS,
            ),
            jobs,
            id,
        });
        tracing::info!(worker = %shared.id, queues = ?options.queues.iter().map(|(q, w)| format!("{q}:{w}")).collect::<Vec<_>>(), concurrency, "worker started");
        metrics::gauge!("orgstack_worker_concurrency").set(concurrency as f64);

        // The first jobs do not wait for these connections; if PostgreSQL
        // is not there yet, they are opened when first needed.
        let (claims, outcomes) = tokio::join!(shared.claims.warm(), shared.outcomes.warm());
        if let Err(err) = claims.and(outcomes) {
            tracing::warn!(worker = %shared.id, error = %err, "cannot open the worker's claim and outcome connections yet");
        }
        let listener = control_listener(&shared).await?;
        let mut fetchers = JoinSet::new();
        let mut background = JoinSet::new();
        for index in 0..shared.queues.len() {
            fetchers.spawn(fetch_loop(shared.clone(), index));
            background.spawn(reclaim_loop(shared.clone(), index));
            background.spawn(promote_loop(shared.clone(), index));
        }
        background.spawn(lease_loop(shared.clone()));
        background.spawn(heartbeat_loop(shared.clone()));
        if shared.autoscale.is_some() {
            background.spawn(autoscale_loop(shared.clone()));
        }
        let recorder = tokio::spawn(recorder(shared.clone(), records_rx));
        let stop = shared.stopping.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown => stop.cancel(),
                () = stop.cancelled() => {}
            }
        });
        let mut runs = dispatch_loop(shared.clone(), JoinSet::new()).await;

        // Stopping: fetchers end after their current fetch; hand back what
        // never started.
        tracing::info!(worker = %shared.id, running = shared.in_flight.load(Ordering::Relaxed), "worker stopping: handing back unstarted jobs, waiting for running ones");
        while fetchers.join_next().await.is_some() {}
        hand_back_buffers(&shared).await;
        let deadline = tokio::time::sleep(options.shutdown_timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                next = runs.join_next() => if next.is_none() { break },
                () = &mut deadline => {
                    {
                        let running = Shared::lock(&shared.running);
                        tracing::warn!(worker = %shared.id, jobs = running.len(), "shutdown timeout reached: stopping running jobs and handing them back");
                        for run in running.values() {
                            *Shared::lock(&run.reason) = Some(StopReason::Shutdown);
                            run.cancel.cancel();
                        }
                    }
                    while runs.join_next().await.is_some() {}
                    break;
                }
            }
        }
        background.abort_all();
        while background.join_next().await.is_some() {}
        listener.stop().await;
        // Every run has ended: closing the channel lets the recorder write
        // what is left and finish.
        Shared::lock(&shared.records).take();
        if let Err(err) = recorder.await {
            tracing::warn!(error = %err, "the recorder stopped abnormally");
        }
        hand_back_leftovers(&shared).await;
        for state in &shared.queues {
            let _ = state.queue.remove_consumer(&shared.id).await;
        }
        remove_heartbeat(&shared).await;
        let report = WorkerReport {
            processed: shared.counters.processed.load(Ordering::Relaxed),
            failed: shared.counters.failed.load(Ordering::Relaxed),
            handed_back: shared.handed_back.load(Ordering::Relaxed),
        };
        tracing::info!(worker = %shared.id, ?report, "worker stopped");
        Ok(report)
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

// ---------------------------------------------------------------------------
// Fetching

async fn fetch_loop(shared: Arc<Shared>, index: usize) {
    let state = &shared.queues[index];
    let consumer = loop {
        match Consumer::new(&state.queue, &shared.id).await {
            Ok(consumer) => break consumer,
            Err(err) => {
                tracing::warn!(queue = %state.queue.name(), error = %err, "cannot connect a fetcher; retrying");
                tokio::select! {
                    () = shared.stopping.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let mut paused_checked = Instant::now() - Duration::from_secs(10);
    let mut paused = false;
    let mut failures = 0u32;
    while !shared.stopping.is_cancelled() {
        if paused_checked.elapsed() >= Duration::from_secs(1) {
            paused = state.queue.is_paused().await.unwrap_or(paused);
            paused_checked = Instant::now();
        }
        if paused {
            tokio::select! {
                () = shared.stopping.cancelled() => break,
                () = tokio::time::sleep(Duration::from_secs(1)) => continue,
            }
        }
        let room = shared.prefetch.saturating_sub(Shared::lock(&state.buffer).len());
        if room == 0 {
            let room_made = shared.room.notified();
            tokio::select! {
                () = shared.stopping.cancelled() => break,
                () = room_made => continue,
                () = tokio::time::sleep(Duration::from_millis(100)) => continue,
            }
        }
        // Not abandoned when a stop is asked: entries it brings go to the
        // buffer and are handed back with the rest.
        let got = consumer.fetch(room as u64, FETCH_BLOCK).await;
        match got {
            Ok(deliveries) => {
                failures = 0;
                if deliveries.is_empty() {
                    continue;
                }
                push(&shared, index, deliveries, false);
            }
            Err(err) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(30) {
                    tracing::warn!(queue = %state.queue.name(), error = %err, "fetch failed; retrying");
                }
                tokio::select! {
                    () = shared.stopping.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(200 * u64::from(failures.min(10)))) => {}
                }
            }
        }
    }
    consumer.close().await;
}

fn push(shared: &Shared, index: usize, deliveries: Vec<Delivery>, reclaimed: bool) {
    let state = &shared.queues[index];
    {
        let mut held = Shared::lock(&state.held);
        for d in &deliveries {
            held.insert(d.id.clone());
        }
    }
    Shared::lock(&state.buffer).extend(deliveries.into_iter().map(|delivery| Fetched {
        queue: index,
        delivery,
        reclaimed,
    }));
    shared.work.notify_one();
}

/// Takes over entries of workers that died (or hang) after the visibility
/// timeout.
async fn reclaim_loop(shared: Arc<Shared>, index: usize) {
    let state = &shared.queues[index];
    let visibility = shared.jobs.config().visibility_timeout;
    let every = (visibility / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        tokio::select! {
            () = shared.stopping.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let room = shared.prefetch.saturating_sub(Shared::lock(&state.buffer).len());
        if room == 0 {
            continue;
        }
        match state.queue.reclaim(&shared.id, visibility, room as u64).await {
            Ok(taken) if !taken.is_empty() => {
                tracing::info!(queue = %state.queue.name(), entries = taken.len(), "reclaimed entries whose worker was lost");
                metrics::counter!("orgstack_jobs_reclaimed_total", "queue" => state.queue.name().to_string()).increment(taken.len() as u64);
                push(&shared, index, taken, true);
            }
            Ok(_) => {}
            Err(err) => tracing::debug!(error = %err, "reclaim failed"),
        }
    }
}

/// Moves due delayed entries and retries into the stream.
async fn promote_loop(shared: Arc<Shared>, index: usize) {
    let queue = &shared.queues[index].queue;
    loop {
        let moved = queue.promote_due(Utc::now().timestamp_millis(), 1000).await.unwrap_or(0);
        if moved >= 1000 {
            continue;
        }
        tokio::select! {
            () = shared.stopping.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// Renews the lease on every entry this worker holds (it runs until the
/// worker has stopped every job).
async fn lease_loop(shared: Arc<Shared>) {
    let every = (shared.jobs.config().visibility_timeout / 3).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        for state in &shared.queues {
            let held: Vec<String> = Shared::lock(&state.held).iter().cloned().collect();
            if held.is_empty() {
                continue;
            }
            match state.queue.extend(&shared.id, &held).await {
                Ok(mine) if mine.len() < held.len() => {
                    let mine: HashSet<String> = mine.into_iter().collect();
                    let mut current = Shared::lock(&state.held);
                    // Acknowledged meanwhile, or taken over by another
                    // worker (this one stalled past the visibility timeout;
                    // the attempt check keeps its record from counting).
                    for id in held.iter().filter(|id| !mine.contains(*id)) {
                        current.remove(id);
                    }
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "could not renew leases"),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Dispatching

/// Picks the next queue with buffered work by smooth weighted round robin.
fn pick(shared: &Shared) -> Option<Fetched> {
    let mut total = 0;
    let mut best: Option<(usize, i64)> = None;
    for (i, state) in shared.queues.iter().enumerate() {
        if Shared::lock(&state.buffer).is_empty() {
            continue;
        }
        total += state.weight;
        let current = state.current.fetch_add(state.weight, Ordering::Relaxed) + state.weight;
        if best.is_none_or(|(_, b)| current > b) {
            best = Some((i, current));
        }
    }
    let (i, _) = best?;
    shared.queues[i].current.fetch_sub(total, Ordering::Relaxed);
    Shared::lock(&shared.queues[i].buffer).pop_front()
}

async fn dispatch_loop(shared: Arc<Shared>, mut runs: JoinSet<()>) -> JoinSet<()> {
    loop {
        // Reap finished runs so the set does not grow.
        while runs.try_join_next().is_some() {}
        let first = tokio::select! {
            () = shared.stopping.cancelled() => break,
            permit = shared.slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let mut permits = vec![first];
        while permits.len() < DISPATCH_BATCH {
            match shared.slots.clone().try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        forget_surplus(&shared, &mut permits);
        let mut batch = Vec::new();
        while batch.len() < permits.len() {
            match pick(&shared) {
                Some(fetched) => batch.push(fetched),
                None => break,
            }
        }
        if batch.is_empty() {
            drop(permits);
            shared.pressed.store(false, Ordering::Relaxed);
            let more = shared.work.notified();
            tokio::select! {
                () = shared.stopping.cancelled() => break,
                () = more => continue,
            }
        }
        shared.pressed.store(shared.buffered() > 0, Ordering::Relaxed);
        permits.truncate(batch.len());
        shared.room.notify_waiters();
        // Runs whose outcome is not written yet are bounded too: when the
        // database falls behind, the worker slows down instead of piling
        // them up in memory.
        let wanted = u32::try_from(batch.len()).unwrap_or(u32::MAX);
        let recording = tokio::select! {
            permit = shared.recording.clone().acquire_many_owned(wanted) => permit.ok(),
            () = shared.stopping.cancelled() => None,
        };
        let Some(recording) = recording else {
            // Stopping: put them back, to be handed back with the rest.
            for fetched in batch.into_iter().rev() {
                Shared::lock(&shared.queues[fetched.queue].buffer).push_front(fetched);
            }
            break;
        };
        start(&shared, batch, permits, recording, &mut runs).await;
    }
    runs
}

/// Gives up permits that autoscale or a concurrency change took away.
fn forget_surplus(shared: &Shared, permits: &mut Vec<OwnedSemaphorePermit>) {
    while !permits.is_empty() {
        let owed = shared.to_forget.load(Ordering::Acquire);
        if owed == 0 {
            return;
        }
        if shared
            .to_forget
            .compare_exchange(owed, owed - 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            && let Some(permit) = permits.pop()
        {
            permit.forget();
        }
    }
}

/// A job ready to run.
struct Ready {
    fetched: Fetched,
    org: Option<Arc<Org>>,
    job: Uuid,
    kind: String,
    payload: serde_json::Value,
    attempt: u32,
    max_attempts: u32,
    platform: Option<PlatformJob>,
}

async fn start(
    shared: &Arc<Shared>,
    batch: Vec<Fetched>,
    mut permits: Vec<OwnedSemaphorePermit>,
    mut recording: OwnedSemaphorePermit,
    runs: &mut JoinSet<()>,
) {
    let mut by_org: HashMap<Uuid, Vec<(Fetched, Uuid)>> = HashMap::new();
    let mut ready = Vec::new();
    for fetched in batch {
        match Entry::decode(&fetched.delivery.payload) {
            Some(Entry { job, org: Some(org), .. }) => {
                by_org.entry(org).or_default().push((fetched, job));
            }
            Some(Entry { job, org: None, platform: Some(p) }) => ready.push(Ready {
                org: None,
                job,
                kind: p.kind.clone(),
                payload: p.payload.clone(),
                attempt: p.attempts + 1,
                max_attempts: p.max_attempts,
                platform: Some(p),
                fetched,
            }),
            _ => {
                tracing::warn!(entry = %fetched.delivery.id, "dropping a queue entry that is not a job");
                drop_entries(shared, &[fetched], &[]).await;
            }
        }
    }
    let claims = futures::future::join_all(
        by_org.into_iter().map(|(org, entries)| claim_org(shared, OrgId::from_uuid(org), entries)),
    )
    .await;
    let mut announce = Vec::new();
    for (org, claimed, events) in claims {
        ready.extend(claimed);
        announce.push((org, events));
    }
    for job in ready {
        let (Some(permit), Some(record)) = (permits.pop(), recording.split(1)) else { break };
        spawn_run(shared, job, permit, record, runs);
    }
    // Announced once the runs are started (they need not wait for it); a
    // run's end is announced after its record is written, later still.
    let redis = shared.jobs.redis();
    let keys = shared.jobs.keys();
    futures::future::join_all(
        announce.iter().map(|(org, events)| events::publish_events(redis, keys, *org, events)),
    )
    .await;
}

/// Claims the org jobs of one batch; deals with the entries it could not.
/// Returns the jobs to run and their `running` events.
async fn claim_org(
    shared: &Arc<Shared>,
    org_id: OrgId,
    entries: Vec<(Fetched, Uuid)>,
) -> (OrgId, Vec<Ready>, Vec<JobEvent>) {
    let jobs = &shared.jobs;
    let org = match jobs.orgs().by_id(org_id).await {
        Ok(Some(org)) => org,
        Ok(None) => {
            // The org was purged: its jobs went with it.
            let forget: Vec<Uuid> = entries.iter().map(|(_, j)| *j).collect();
            let fetched: Vec<Fetched> = entries.into_iter().map(|(f, _)| f).collect();
            drop_entries(shared, &fetched, &forget).await;
            return (org_id, Vec::new(), Vec::new());
        }
        Err(err) => {
            tracing::warn!(org_id = %org_id, error = %err, "cannot look up an org; its jobs wait");
            postpone(shared, org_id, entries, Duration::from_secs(5)).await;
            return (org_id, Vec::new(), Vec::new());
        }
    };
    match org.status {
        OrgStatus::Active => {}
        OrgStatus::Suspended => {
            postpone(shared, org_id, entries, Duration::from_secs(60)).await;
            return (org_id, Vec::new(), Vec::new());
        }
        OrgStatus::Deleted => {
            let forget: Vec<Uuid> = entries.iter().map(|(_, j)| *j).collect();
            let fetched: Vec<Fetched> = entries.into_iter().map(|(f, _)| f).collect();
            drop_entries(shared, &fetched, &forget).await;
            return (org_id, Vec::new(), Vec::new());
        }
    }
    let schema = org.schema();
    let ids: Vec<Uuid> = entries.iter().map(|(_, j)| *j).collect();
    let reclaimed: Vec<Uuid> =
        entries.iter().filter(|(f, _)| f.reclaimed).map(|(_, j)| *j).collect();
    let claimed = shared
        .claims
        .run(async |conn| store::claim(conn, &schema, &shared.id, &ids, &reclaimed).await)
        .await;
    let claimed = match claimed {
        Ok(claimed) => claimed,
        Err(err) => {
            tracing::warn!(org_id = %org_id, error = %err, "cannot claim jobs; they wait");
            postpone(shared, org_id, entries, Duration::from_secs(5)).await;
            return (org_id, Vec::new(), Vec::new());
        }
    };
    let mut by_id: HashMap<Uuid, Fetched> = HashMap::new();
    let mut duplicates = Vec::new();
    for (fetched, job) in entries {
        if let Some(previous) = by_id.insert(job, fetched) {
            // The same job twice in one batch (a re-dispatch): one is enough.
            duplicates.push(previous);
        }
    }
    if !duplicates.is_empty() {
        drop_entries(shared, &duplicates, &[]).await;
    }
    let mut ready = Vec::with_capacity(claimed.len());
    let mut events = Vec::with_capacity(claimed.len());
    let now = Utc::now();
    for c in claimed {
        let Some(fetched) = by_id.remove(&c.id) else { continue };
        metrics::counter!("orgstack_jobs_started_total", "queue" => c.queue.clone(), "kind" => c.kind.clone()).increment(1);
        events.push(JobEvent {
            event: "job.status".into(),
            job_id: c.id,
            kind: c.kind.clone(),
            queue: c.queue.clone(),
            status: JobStatus::Running,
            attempts: c.attempts,
            max_attempts: c.max_attempts,
            run_at: now,
            error: None,
            at: now,
        });
        ready.push(Ready {
            fetched,
            org: Some(org.clone()),
            job: c.id,
            kind: c.kind,
            payload: c.payload,
            attempt: u32::try_from(c.attempts).unwrap_or(1),
            max_attempts: u32::try_from(c.max_attempts).unwrap_or(1),
            platform: None,
        });
    }
    if !by_id.is_empty() {
        unclaimed(shared, &org, by_id).await;
    }
    (org_id, ready, events)
}

/// Entries whose job could not be claimed: a finished or missing job is
/// forgotten, one not yet due waits in the scheduled set, a job that is
/// running elsewhere keeps its entry there, and a job whose worker was lost
/// after a cancel or on its last attempt ends.
async fn unclaimed(shared: &Arc<Shared>, org: &Org, mut entries: HashMap<Uuid, Fetched>) {
    let jobs = &shared.jobs;
    let schema = org.schema();
    let ids: Vec<Uuid> = entries.keys().copied().collect();
    let rows = match store::inspect(jobs.pool(), &schema, &ids).await {
        Ok(rows) => rows,
        Err(err) => {
            tracing::warn!(error = %err, "cannot inspect unclaimed jobs; they wait");
            let list: Vec<(Fetched, Uuid)> = entries.into_iter().map(|(id, f)| (f, id)).collect();
            postpone(shared, org.id, list, Duration::from_secs(5)).await;
            return;
        }
    };
    let mut forget = Vec::new();
    let mut drop_only = Vec::new();
    let mut later = Vec::new();
    let mut cancel = Vec::new();
    let mut dead = Vec::new();
    let now = Utc::now();
    for row in rows {
        let Some(fetched) = entries.remove(&row.id) else { continue };
        match row.status {
            s if s.is_final() => forget.push((fetched, row.id)),
            JobStatus::Running if fetched.reclaimed && row.cancel_requested => {
                cancel.push((fetched, row.id))
            }
            JobStatus::Running if fetched.reclaimed && row.attempts >= row.max_attempts => {
                dead.push((fetched, row.id))
            }
            // Running under another delivery: this one is a duplicate.
            JobStatus::Running => drop_only.push(fetched),
            JobStatus::Queued | JobStatus::Failed if row.run_at > now => {
                later.push((fetched, row.run_at))
            }
            // Due but not claimable: a cancel is pending, or no attempts
            // are left; leave it to the sweep.
            _ => drop_only.push(fetched),
        }
    }
    // Rows that do not exist: the job was discarded.
    for (id, fetched) in entries {
        forget.push((fetched, id));
    }
    if !forget.is_empty() {
        let ids: Vec<Uuid> = forget.iter().map(|(_, id)| *id).collect();
        let fetched: Vec<Fetched> = forget.into_iter().map(|(f, _)| f).collect();
        drop_entries(shared, &fetched, &ids).await;
    }
    if !drop_only.is_empty() {
        drop_entries(shared, &drop_only, &[]).await;
    }
    for (fetched, run_at) in later {
        let state = &shared.queues[fetched.queue];
        let scheduled = state
            .queue
            .schedule(&[(fetched.delivery.payload.as_str(), run_at.timestamp_millis())])
            .await;
        if scheduled.is_ok() {
            drop_entries(shared, &[fetched], &[]).await;
        }
    }
    for (list, status, error) in [
        (cancel, JobStatus::Cancelled, "cancelled while its worker was lost"),
        (dead, JobStatus::Dead, "the worker running its last attempt was lost"),
    ] {
        if list.is_empty() {
            continue;
        }
        let ids: Vec<Uuid> = list.iter().map(|(_, id)| *id).collect();
        match store::end_lost(jobs.pool(), &schema, &ids, status, error).await {
            Ok(changed) => {
                let fetched: Vec<Fetched> = list.into_iter().map(|(f, _)| f).collect();
                if status == JobStatus::Dead {
                    mark_dead(shared, org.id, &changed).await;
                }
                drop_entries(shared, &fetched, &ids).await;
                let events: Vec<JobEvent> = changed.iter().map(JobEvent::of_change).collect();
                events::publish_events(jobs.redis(), jobs.keys(), org.id, &events).await;
            }
            Err(err) => tracing::warn!(error = %err, "cannot end jobs whose worker was lost"),
        }
    }
}

async fn mark_dead(shared: &Shared, org: OrgId, changed: &[store::Changed]) {
    let pipeline = shared.jobs.redis().pipeline();
    let now = Utc::now().timestamp_millis() as f64;
    for c in changed {
        if let Some(keys) = shared.jobs.queue_keys(&c.queue) {
            let _: Result<(), _> = pipeline
                .zadd(&keys.dead, None, None, false, false, (now, dead_member(org, c.id)))
                .await;
        }
        metrics::counter!("orgstack_jobs_dead_total", "queue" => c.queue.clone(), "kind" => c.kind.clone()).increment(1);
    }
    let _: Result<Vec<Value>, _> = pipeline.all().await;
    for c in changed {
        let report = crate::notify::job_dead(
            &c.kind,
            c.id,
            Some(org.as_uuid()),
            "the worker running its last attempt was lost",
        );
        crate::notify::report(&shared.jobs, report).await;
    }
}

/// Puts entries back in the scheduled set for `after`, then drops them.
async fn postpone(
    shared: &Arc<Shared>,
    _org: OrgId,
    entries: Vec<(Fetched, Uuid)>,
    after: Duration,
) {
    let due =
        (Utc::now() + chrono::Duration::from_std(after).unwrap_or_default()).timestamp_millis();
    for (fetched, _) in entries {
        let state = &shared.queues[fetched.queue];
        if state.queue.schedule(&[(fetched.delivery.payload.as_str(), due)]).await.is_ok() {
            drop_entries(shared, &[fetched], &[]).await;
        } else {
            // Redis is failing: keep the entry; it is delivered again.
            shared.release(fetched.queue, &fetched.delivery.id);
        }
    }
}

/// Acknowledges and deletes entries; forgets `jobs` from the queue indexes.
async fn drop_entries(shared: &Shared, entries: &[Fetched], jobs: &[Uuid]) {
    let mut by_queue: HashMap<usize, Vec<String>> = HashMap::new();
    for f in entries {
        by_queue.entry(f.queue).or_default().push(f.delivery.id.clone());
    }
    for (queue, ids) in &by_queue {
        let state = &shared.queues[*queue];
        if let Err(err) = state.queue.ack(ids).await {
            tracing::warn!(error = %err, "could not acknowledge entries");
        }
        if !jobs.is_empty() {
            let forget: Vec<String> = jobs.iter().map(Uuid::to_string).collect();
            let _: Result<i64, _> =
                shared.jobs.redis().srem(&state.queue.keys().index, forget).await;
        }
        for id in ids {
            shared.release(*queue, id);
        }
    }
}

fn spawn_run(
    shared: &Arc<Shared>,
    job: Ready,
    permit: OwnedSemaphorePermit,
    recording: OwnedSemaphorePermit,
    runs: &mut JoinSet<()>,
) {
    let Some(records) = Shared::lock(&shared.records).clone() else { return };
    let cancel = CancellationToken::new();
    let reason = Arc::new(Mutex::new(None));
    Shared::lock(&shared.running).insert(
        job.job,
        Running {
            cancel: cancel.clone(),
            reason: reason.clone(),
            org: job.org.as_ref().map(|o| o.id),
            kind: job.kind.clone(),
            started_at: Utc::now(),
        },
    );
    shared.in_flight.fetch_add(1, Ordering::Relaxed);
    let shared = shared.clone();
    runs.spawn(async move {
        let handler = shared.jobs.registry().get(&job.kind).cloned();
        let ctx = JobContext {
            id: job.job,
            kind: job.kind.clone(),
            org: job.org.clone(),
            payload: job.payload,
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            cancel: cancel.clone(),
            log: JobLogger::new(
                job.job,
                job.org.as_ref().map(|o| o.id.as_uuid()),
                job.attempt,
                Some(records.clone()),
            ),
            jobs: shared.jobs.clone(),
        };
        let started = Instant::now();
        let outcome = match handler {
            None => Outcome::Failed(JobError::permanent(format!(
                "no handler for kind '{}' in this worker",
                job.kind
            ))),
            Some(handler) => {
                let limit = handler.timeout(&ctx.payload);
                let run = tokio::time::timeout(limit, handler.run(&ctx));
                let result = tokio::select! {
                    result = run => Some(result),
                    () = cancel.cancelled() => None,
                };
                let stopped = *Shared::lock(&reason);
                match (result, stopped) {
                    (Some(Ok(Ok(value))), _) => Outcome::Succeeded(value),
                    (_, Some(StopReason::Cancelled)) => Outcome::Cancelled,
                    (_, Some(StopReason::Shutdown)) => Outcome::Interrupted,
                    (Some(Ok(Err(err))), None) => Outcome::Failed(err),
                    (Some(Err(_)), None) => {
                        cancel.cancel();
                        Outcome::Failed(JobError::retry(format!(
                            "timed out after {} s",
                            limit.as_secs_f64()
                        )))
                    }
                    (None, None) => Outcome::Cancelled,
                }
            }
        };
        let elapsed = started.elapsed();
        match &outcome {
            Outcome::Failed(err) => {
                ctx.log.error(format!("attempt {} failed: {}", job.attempt, err.message()))
            }
            Outcome::Cancelled => ctx.log.warn("cancelled"),
            Outcome::Interrupted => ctx.log.warn("stopped by a worker shutdown; it will run again"),
            Outcome::Succeeded(_) => {}
        }
        Shared::lock(&shared.running).remove(&job.job);
        drop(ctx);
        let _ = records.send(Record::Done(Box::new(Done {
            queue: job.fetched.queue,
            entry: job.fetched.delivery,
            org: job.org.as_ref().map(|o| o.id),
            job: job.job,
            kind: job.kind,
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            platform: job.platform,
            outcome,
            elapsed,
            _recording: recording,
        })));
        shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        drop(permit);
    });
}

// ---------------------------------------------------------------------------
// Recording

/// Log lines of one org waiting to be stored.
#[derive(Default)]
struct Pending {
    lines: Vec<LogLine>,
    since: Option<Instant>,
    done: Vec<Done>,
}

async fn recorder(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Record>) {
    let mut pending: HashMap<Option<OrgId>, Pending> = HashMap::new();
    let mut closed = false;
    let mut failures = 0u32;
    while !(closed && pending.is_empty()) {
        let next_flush =
            pending.values().filter_map(|p| p.since).min().map(|since| since + LOG_FLUSH_EVERY);
        let mut received = Vec::new();
        if !closed {
            tokio::select! {
                record = rx.recv() => match record {
                    Some(record) => received.push(record),
                    None => closed = true,
                },
                () = async {
                    match next_flush {
                        Some(at) => tokio::time::sleep_until(at.into()).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
        drain_records(&mut rx, &mut received, &mut closed);
        if !closed && !received.is_empty() && received.len() < LINGER_BELOW {
            // Light traffic: wait a moment so finishes share one commit
            // (fewer disk flushes for PostgreSQL, which enqueues share).
            tokio::time::sleep(LINGER).await;
            drain_records(&mut rx, &mut received, &mut closed);
        }
        let mut live: HashMap<Uuid, (Option<Uuid>, Vec<LogLine>)> = HashMap::new();
        for record in received {
            match record {
                Record::Line(line) => {
                    let org = line.org_id.map(OrgId::from_uuid);
                    live.entry(line.job_id)
                        .or_insert_with(|| (line.org_id, Vec::new()))
                        .1
                        .push(line.clone());
                    if org.is_some() {
                        let p = pending.entry(org).or_default();
                        p.since.get_or_insert_with(Instant::now);
                        p.lines.push(line);
                    }
                }
                Record::Done(done) => pending.entry(done.org).or_default().done.push(*done),
            }
        }
        // Lines go out live at once.
        let redis = shared.jobs.redis();
        let keys = shared.jobs.keys();
        futures::future::join_all(
            live.into_iter()
                .map(|(job, (org, lines))| events::publish_lines(redis, keys, org, job, lines)),
        )
        .await;
        let due: Vec<Option<OrgId>> = pending
            .iter()
            .filter(|(_, p)| {
                closed
                    || !p.done.is_empty()
                    || p.lines.len() >= LOG_FLUSH_LINES
                    || p.since.is_some_and(|s| s.elapsed() >= LOG_FLUSH_EVERY)
            })
            .map(|(org, _)| *org)
            .collect();
        let batches: Vec<(Option<OrgId>, Pending)> =
            due.into_iter().filter_map(|org| pending.remove(&org).map(|p| (org, p))).collect();
        let results = futures::future::join_all(
            batches.into_iter().map(|(org, batch)| flush(&shared, org, batch)),
        )
        .await;
        let mut failed = false;
        for (org, retry) in results.into_iter().flatten() {
            // A failed write: keep it and try again shortly.
            failed = true;
            let p = pending.entry(org).or_default();
            p.lines.extend(retry.lines);
            p.done.extend(retry.done);
            p.since = Some(Instant::now());
        }
        if failed {
            failures += 1;
            if closed && failures > 50 {
                tracing::error!(
                    orgs = pending.len(),
                    "giving up recording finished jobs at shutdown; their entries are handed back and they run again"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        } else {
            failures = 0;
        }
    }
}

/// Most records written in one recorder round.
const RECORDS_PER_ROUND: usize = 2_000;
/// A recorder round with fewer records than this waits [`LINGER`] for more.
const LINGER_BELOW: usize = 32;
const LINGER: Duration = Duration::from_millis(1);

/// Takes what is waiting in the channel, up to [`RECORDS_PER_ROUND`] (which
/// bounds the statements and pipelines a round writes, and so the buffers
/// the connections keep).
fn drain_records(
    rx: &mut mpsc::UnboundedReceiver<Record>,
    received: &mut Vec<Record>,
    closed: &mut bool,
) {
    while received.len() < RECORDS_PER_ROUND {
        match rx.try_recv() {
            Ok(record) => received.push(record),
            Err(mpsc::error::TryRecvError::Empty) => break,
            Err(mpsc::error::TryRecvError::Disconnected) => {
                *closed = true;
                break;
            }
        }
    }
}

/// Writes one org's lines and finished runs in one transaction, then
/// acknowledges the entries. Returns the batch when it must be retried.
async fn flush(
    shared: &Arc<Shared>,
    org: Option<OrgId>,
    batch: Pending,
) -> Option<(Option<OrgId>, Pending)> {
    let Some(org_id) = org else {
        finish_platform(shared, batch.done).await;
        return None;
    };
    let jobs = &shared.jobs;
    let schema = org_id.schema();
    let config = jobs.config();
    let now = Utc::now();
    let finishes: Vec<Finish> = batch
        .done
        .iter()
        .map(|d| {
            let attempt = i32::try_from(d.attempt).unwrap_or(i32::MAX);
            let base = Finish {
                id: d.job,
                attempt,
                status: JobStatus::Succeeded,
                result: None,
                error: None,
                run_at: None,
                refund: 0,
            };
            match &d.outcome {
                Outcome::Succeeded(value) => Finish { result: Some(value.clone()), ..base },
                Outcome::Failed(JobError::Retry(message)) if d.attempt < d.max_attempts => Finish {
                    status: JobStatus::Failed,
                    error: Some(message.clone()),
                    run_at: Some(
                        now + chrono::Duration::from_std(config.retry_delay(d.attempt))
                            .unwrap_or_default(),
                    ),
                    ..base
                },
                Outcome::Failed(err) => Finish {
                    status: JobStatus::Dead,
                    error: Some(err.message().to_owned()),
                    ..base
                },
                Outcome::Cancelled => {
                    Finish { status: JobStatus::Cancelled, error: Some("cancelled".into()), ..base }
                }
                Outcome::Interrupted => {
                    Finish { status: JobStatus::Queued, run_at: Some(now), refund: 1, ..base }
                }
            }
        })
        .collect();
    let written = shared
        .outcomes
        .run(async |conn| store::finish(conn, &schema, &batch.lines, &finishes).await)
        .await;
    let changed = match written {
        Ok(changed) => changed,
        Err(err) if is_missing_schema(&err) => {
            // The org was purged while its jobs ran.
            let fetched: Vec<Fetched> = batch
                .done
                .iter()
                .map(|d| Fetched { queue: d.queue, delivery: d.entry.clone(), reclaimed: false })
                .collect();
            let ids: Vec<Uuid> = batch.done.iter().map(|d| d.job).collect();
            drop_entries(shared, &fetched, &ids).await;
            return None;
        }
        Err(err) => {
            tracing::warn!(org_id = %org_id, error = %err, "cannot record finished jobs; retrying");
            return Some((org, batch));
        }
    };
    let accepted: HashMap<Uuid, &store::Changed> = changed.iter().map(|c| (c.id, c)).collect();
    announce_to_webhooks(shared, org_id, &batch.done, &finishes, &accepted);
    let pipeline = jobs.redis().pipeline();
    let mut hand_back: HashMap<usize, Vec<Delivery>> = HashMap::new();
    let mut acks: HashMap<usize, Vec<String>> = HashMap::new();
    let mut forget: HashMap<usize, Vec<String>> = HashMap::new();
    let dead_at = now.timestamp_millis() as f64;
    for (done, finish) in batch.done.iter().zip(&finishes) {
        record_metrics(shared, done);
        let state = &shared.queues[done.queue];
        let keys = state.queue.keys();
        if !accepted.contains_key(&done.job) {
            // The job was taken over or changed meanwhile: its entry (if
            // still ours) is left to be reclaimed and seen for what it is.
            shared.release(done.queue, &done.entry.id);
            continue;
        }
        match finish.status {
            JobStatus::Queued => {
                hand_back.entry(done.queue).or_default().push(done.entry.clone());
                continue;
            }
            JobStatus::Failed => {
                let due = finish.run_at.unwrap_or(now).timestamp_millis() as f64;
                let _: Result<(), _> = pipeline
                    .zadd(
                        &keys.scheduled,
                        None,
                        None,
                        false,
                        false,
                        (due, done.entry.payload.clone()),
                    )
                    .await;
            }
            JobStatus::Dead => {
                forget.entry(done.queue).or_default().push(done.job.to_string());
                let _: Result<(), _> = pipeline
                    .zadd(
                        &keys.dead,
                        None,
                        None,
                        false,
                        false,
                        (dead_at, dead_member(org_id, done.job)),
                    )
                    .await;
            }
            _ => forget.entry(done.queue).or_default().push(done.job.to_string()),
        }
        acks.entry(done.queue).or_default().push(done.entry.id.clone());
    }
    for (queue, ids) in forget {
        let _: Result<(), _> = pipeline.srem(&shared.queues[queue].queue.keys().index, ids).await;
    }
    for (queue, ids) in &acks {
        let _: Result<(), _> = shared.queues[*queue].queue.ack_in(&pipeline, ids).await;
    }
    let events: Vec<JobEvent> = changed.iter().map(JobEvent::of_change).collect();
    events::publish_in(&pipeline, jobs.keys(), org_id, &events).await;
    if let Err(err) = pipeline.all::<Vec<Value>>().await {
        // Recorded in PostgreSQL; the entries are delivered again and the
        // claim sees the jobs finished.
        tracing::warn!(error = %err, "recorded jobs but could not acknowledge their entries");
    }
    for (queue, entries) in hand_back {
        let state = &shared.queues[queue];
        match state.queue.hand_back(&shared.id, &entries).await {
            Ok(n) => {
                shared.handed_back.fetch_add(n, Ordering::Relaxed);
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not hand back interrupted jobs; they are reclaimed after the visibility timeout")
            }
        }
        for e in &entries {
            shared.release(queue, &e.id);
        }
    }
    for (queue, ids) in acks {
        for id in ids {
            shared.release(queue, &id);
        }
    }
    None
}

/// `job.succeeded` and `job.dead` for the org's webhooks (not for
/// deliveries themselves), sent in the background. Skipped at once when the
/// org is known to have no webhooks.
fn announce_to_webhooks(
    shared: &Arc<Shared>,
    org: OrgId,
    done: &[Done],
    finishes: &[Finish],
    accepted: &HashMap<Uuid, &store::Changed>,
) {
    if crate::webhooks::known_quiet(org) {
        return;
    }
    let events: Vec<(&'static str, serde_json::Value)> = done
        .iter()
        .zip(finishes)
        .filter(|(d, _)| accepted.contains_key(&d.job) && !d.kind.starts_with("webhook."))
        .filter_map(|(d, f)| {
            let event = match f.status {
                JobStatus::Succeeded => "job.succeeded",
                JobStatus::Dead => "job.dead",
                _ => return None,
            };
            Some((
                event,
                serde_json::json!({
                    "id": d.job,
                    "kind": d.kind,
                    "queue": shared.queues[d.queue].queue.name().as_str(),
                    "attempts": f.attempt,
                    "result": f.result,
                    "error": f.error,
                }),
            ))
        })
        .collect();
    if events.is_empty() {
        return;
    }
    let jobs = shared.jobs.clone();
    tokio::spawn(async move {
        crate::webhooks::emit(&jobs, org, events).await;
    });
}

fn is_missing_schema(err: &sqlx::Error) -> bool {
    // undefined_table / invalid_schema_name
    matches!(err, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("42P01") | Some("3F000")))
}

fn record_metrics(shared: &Shared, done: &Done) {
    let queue = shared.queues[done.queue].queue.name().to_string();
    let kind = done.kind.clone();
    let outcome = match &done.outcome {
        Outcome::Succeeded(_) => "succeeded",
        Outcome::Failed(JobError::Retry(_)) if done.attempt < done.max_attempts => "retried",
        Outcome::Failed(_) => "dead",
        Outcome::Cancelled => "cancelled",
        Outcome::Interrupted => "interrupted",
    };
    match outcome {
        "succeeded" => {
            shared.counters.processed.fetch_add(1, Ordering::Relaxed);
        }
        "retried" | "dead" => {
            shared.counters.processed.fetch_add(1, Ordering::Relaxed);
            shared.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
    metrics::counter!("orgstack_jobs_finished_total", "queue" => queue.clone(), "kind" => kind.clone(), "outcome" => outcome).increment(1);
    metrics::histogram!("orgstack_job_duration_seconds", "queue" => queue.clone(), "kind" => kind.clone())
        .record(done.elapsed.as_secs_f64());
    match outcome {
        "retried" => {
            metrics::counter!("orgstack_jobs_retried_total", "queue" => queue, "kind" => kind)
                .increment(1)
        }
        "dead" => {
            metrics::counter!("orgstack_jobs_dead_total", "queue" => queue, "kind" => kind.clone())
                .increment(1);
            let error = match &done.outcome {
                Outcome::Failed(err) => err.message().to_owned(),
                _ => String::new(),
            };
            let report =
                crate::notify::job_dead(&kind, done.job, done.org.map(|o| o.as_uuid()), &error);
            let jobs = shared.jobs.clone();
            tokio::spawn(async move {
                crate::notify::report(&jobs, report).await;
            });
        }
        _ => {}
    }
}

/// Platform jobs: retries go back to the scheduled set with their attempt
/// counted, dead ones to the dead set, and every entry is acknowledged.
async fn finish_platform(shared: &Arc<Shared>, done: Vec<Done>) {
    if done.is_empty() {
        return;
    }
    let config = shared.jobs.config();
    let now = Utc::now();
    let pipeline = shared.jobs.redis().pipeline();
    let mut acks: HashMap<usize, Vec<String>> = HashMap::new();
    let mut hand_back: HashMap<usize, Vec<Delivery>> = HashMap::new();
    for d in &done {
        record_metrics(shared, d);
        let keys = shared.queues[d.queue].queue.keys();
        let Some(record) = &d.platform else { continue };
        match &d.outcome {
            Outcome::Succeeded(_) | Outcome::Cancelled => {}
            Outcome::Interrupted => {
                hand_back.entry(d.queue).or_default().push(d.entry.clone());
                continue;
            }
            Outcome::Failed(err) => {
                let retry = matches!(err, JobError::Retry(_)) && d.attempt < d.max_attempts;
                let next = Entry {
                    job: d.job,
                    org: None,
                    platform: Some(PlatformJob {
                        attempts: d.attempt,
                        error: Some(err.message().to_owned()),
                        ..record.clone()
                    }),
                }
                .encode();
                if retry {
                    let due = (now
                        + chrono::Duration::from_std(config.retry_delay(d.attempt))
                            .unwrap_or_default())
                    .timestamp_millis() as f64;
                    let _: Result<(), _> =
                        pipeline.zadd(&keys.scheduled, None, None, false, false, (due, next)).await;
                } else {
                    let _: Result<(), _> = pipeline
                        .zadd(
                            &keys.dead,
                            None,
                            None,
                            false,
                            false,
                            (now.timestamp_millis() as f64, next),
                        )
                        .await;
                }
            }
        }
        acks.entry(d.queue).or_default().push(d.entry.id.clone());
    }
    for (queue, ids) in &acks {
        let _: Result<(), _> = shared.queues[*queue].queue.ack_in(&pipeline, ids).await;
    }
    if let Err(err) = pipeline.all::<Vec<Value>>().await {
        tracing::warn!(error = %err, "could not acknowledge platform jobs; they may run again");
    }
    for (queue, entries) in hand_back {
        if let Ok(n) = shared.queues[queue].queue.hand_back(&shared.id, &entries).await {
            shared.handed_back.fetch_add(n, Ordering::Relaxed);
        }
        for e in &entries {
            shared.release(queue, &e.id);
        }
    }
    for (queue, ids) in acks {
        for id in ids {
            shared.release(queue, &id);
        }
    }
}

// ---------------------------------------------------------------------------
// Stopping

/// Hands back every buffered (never started) entry.
async fn hand_back_buffers(shared: &Shared) {
    for (i, state) in shared.queues.iter().enumerate() {
        let entries: Vec<Delivery> =
            Shared::lock(&state.buffer).drain(..).map(|f| f.delivery).collect();
        if entries.is_empty() {
            continue;
        }
        match state.queue.hand_back(&shared.id, &entries).await {
            Ok(n) => {
                shared.handed_back.fetch_add(n, Ordering::Relaxed);
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not hand back entries; they are reclaimed after the visibility timeout")
            }
        }
        for e in &entries {
            shared.release(i, &e.id);
        }
    }
}

/// Hands back whatever is still pending for this worker once nothing runs
/// (entries whose outcome could not be recorded).
async fn hand_back_leftovers(shared: &Shared) {
    for state in &shared.queues {
        let Ok(left) = state.queue.pending_for(&shared.id, 10_000).await else { continue };
        if left.is_empty() {
            continue;
        }
        let n = state.queue.hand_back(&shared.id, &left).await.unwrap_or(0);
        shared.handed_back.fetch_add(n, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------
// Heartbeats, control and autoscale

/// Beats until the worker has stopped every job (it is aborted then).
async fn heartbeat_loop(shared: Arc<Shared>) {
    loop {
        beat(&shared).await;
        tokio::time::sleep(HEARTBEAT_EVERY).await;
    }
}

async fn beat(shared: &Shared) {
    let keys = shared.jobs.keys();
    let key = keys.worker(&shared.id);
    let now = Utc::now();
    let (running, jobs): (Vec<String>, Vec<String>) = Shared::lock(&shared.running)
        .iter()
        .take(100)
        .map(|(id, run)| {
            let org = run.org.map_or_else(|| "-".to_owned(), |o| o.to_string());
            let started = run.started_at.timestamp_millis();
            (id.to_string(), format!("{org} {id} {started} {}", run.kind))
        })
        .unzip();
    let queues: Vec<String> =
        shared.queues.iter().map(|q| format!("{}:{}", q.queue.name(), q.weight)).collect();
    let fields: Vec<(&str, String)> = vec![
        ("id", shared.id.clone()),
        ("host", shared.host.clone()),
        ("pid", std::process::id().to_string()),
        ("queues", queues.join(",")),
        ("concurrency", shared.concurrency.load(Ordering::Relaxed).to_string()),
        ("in_flight", shared.in_flight.load(Ordering::Relaxed).to_string()),
        ("processed", shared.counters.processed.load(Ordering::Relaxed).to_string()),
        ("failed", shared.counters.failed.load(Ordering::Relaxed).to_string()),
        ("started_at", shared.started_at.to_rfc3339()),
        ("last_beat", now.to_rfc3339()),
        ("state", if shared.stopping.is_cancelled() { "stopping" } else { "running" }.to_owned()),
        ("running", running.join(",")),
        // `org job started_ms kind` per line (org `-` for platform jobs).
        ("jobs", jobs.join("\n")),
    ];
    let pipeline = shared.jobs.redis().pipeline();
    let _: Result<(), _> = pipeline.hset(&key, fields).await;
    let _: Result<(), _> = pipeline.expire(&key, RECORD_TTL_SECS, None).await;
    let _: Result<(), _> = pipeline
        .zadd(
            keys.workers(),
            None,
            None,
            false,
            false,
            (now.timestamp_millis() as f64, shared.id.as_str()),
        )
        .await;
    if let Err(err) = pipeline.all::<Vec<Value>>().await {
        tracing::debug!(error = %err, "heartbeat failed");
    }
    metrics::gauge!("orgstack_worker_in_flight")
        .set(shared.in_flight.load(Ordering::Relaxed) as f64);
}

async fn remove_heartbeat(shared: &Shared) {
    let keys = shared.jobs.keys();
    let _: Result<i64, _> = shared.jobs.redis().del(keys.worker(&shared.id)).await;
    let _: Result<i64, _> = shared.jobs.redis().zrem(keys.workers(), shared.id.as_str()).await;
}

async fn control_listener(shared: &Arc<Shared>) -> anyhow::Result<tenancy::Listener> {
    let handle = shared.clone();
    tenancy::invalidation::listen(
        shared.jobs.redis(),
        shared.jobs.keys().worker_control_channel(),
        move |message| {
            let Some(control) = message.and_then(|m| serde_json::from_str::<Control>(&m).ok())
            else {
                return;
            };
            match control {
                Control::Cancel { job } => {
                    if let Some(run) = Shared::lock(&handle.running).get(&job) {
                        *Shared::lock(&run.reason) = Some(StopReason::Cancelled);
                        run.cancel.cancel();
                        tracing::info!(job_id = %job, "cancelling a running job");
                    }
                }
                Control::Shutdown { worker } if worker == handle.id => {
                    tracing::info!("shutdown asked over the control channel");
                    handle.stopping.cancel();
                }
                Control::SetConcurrency { worker, concurrency } if worker == handle.id => {
                    set_concurrency(&handle, concurrency.clamp(1, 10_000));
                }
                _ => {}
            }
        },
    )
    .await
    .context("subscribing to the worker control channel")
}

/// Changes the number of slots: new ones are added at once; removed ones
/// are taken away as running jobs finish.
fn set_concurrency(shared: &Shared, target: usize) {
    let current = shared.concurrency.swap(target, Ordering::AcqRel);
    if target > current {
        let mut add = target - current;
        // Cancel pending removals first.
        while add > 0 {
            let owed = shared.to_forget.load(Ordering::Acquire);
            if owed == 0 {
                break;
            }
            let take = owed.min(add);
            if shared
                .to_forget
                .compare_exchange(owed, owed - take, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                add -= take;
            }
        }
        shared.slots.add_permits(add);
    } else if target < current {
        let mut remove = current - target;
        while remove > 0 {
            match shared.slots.try_acquire() {
                Ok(permit) => {
                    permit.forget();
                    remove -= 1;
                }
                Err(_) => break,
            }
        }
        shared.to_forget.fetch_add(remove, Ordering::AcqRel);
    }
    metrics::gauge!("orgstack_worker_concurrency").set(target as f64);
    tracing::info!(from = current, to = target, "concurrency changed");
}

/// Grows by one slot per second while work waits and every slot is busy;
/// shrinks by one after ten idle seconds.
async fn autoscale_loop(shared: Arc<Shared>) {
    let Some((max, min)) = shared.autoscale else { return };
    let mut idle_for = 0u32;
    loop {
        tokio::select! {
            () = shared.stopping.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let current = shared.concurrency.load(Ordering::Acquire);
        let busy = shared.in_flight.load(Ordering::Relaxed);
        let waiting = shared.buffered();
        if waiting > 0 && busy >= current && current < max {
            idle_for = 0;
            let grow = waiting.min(max - current).max(1);
            set_concurrency(&shared, current + grow);
        } else if busy < current && waiting == 0 {
            idle_for += 1;
            if idle_for >= 10 && current > min {
                idle_for = 0;
                set_concurrency(&shared, (current - 1).max(busy).max(min));
            }
        } else {
            idle_for = 0;
        }
    }
}

// ---------------------------------------------------------------------------
// Listing workers

/// A worker as its heartbeats describe it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct WorkerInfo {
    pub id: String,
    pub host: String,
    pub pid: u32,
    /// `name:weight` of each queue it fetches from.
    pub queues: Vec<String>,
    pub concurrency: u64,
    pub in_flight: u64,
    pub processed: u64,
    pub failed: u64,
    pub started_at: Option<chrono::DateTime<Utc>>,
    pub last_beat: Option<chrono::DateTime<Utc>>,
    /// `running` or `stopping`.
    pub state: String,
    /// No heartbeat for more than ten seconds: probably dead.
    pub stale: bool,
    /// Jobs it runs now (up to 100).
    pub running: Vec<Uuid>,
    /// The same jobs with their org, kind and start time.
    #[serde(skip)]
    pub running_jobs: Vec<RunningJob>,
}

/// A job a worker runs now.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningJob {
    pub id: Uuid,
    /// `None` for a platform job.
    pub org: Option<OrgId>,
    pub kind: String,
    pub started_at: Option<chrono::DateTime<Utc>>,
}

impl RunningJob {
    /// One line of a heartbeat's `jobs` field.
    fn parse(line: &str) -> Option<RunningJob> {
        let mut parts = line.splitn(4, ' ');
        let org = match parts.next()? {
            "-" => None,
            org => Some(OrgId::from_uuid(org.parse().ok()?)),
        };
        let id = parts.next()?.parse().ok()?;
        let started_at = parts
            .next()?
            .parse::<i64>()
            .ok()
            .and_then(chrono::DateTime::<Utc>::from_timestamp_millis);
        Some(RunningJob { id, org, kind: parts.next()?.to_owned(), started_at })
    }
}

/// Every worker that beat in the last five minutes, newest first; older
/// records are removed.
pub async fn list_workers(jobs: &Jobs) -> Result<Vec<WorkerInfo>, super::JobsError> {
    let redis = jobs.redis();
    let keys = jobs.keys();
    let now = Utc::now();
    let forget_before = now.timestamp_millis() - RECORD_TTL_SECS * 1000;
    let _: i64 = redis.zremrangebyscore(keys.workers(), "-inf", forget_before as f64).await?;
    let ids: Vec<String> = redis.zrevrange(keys.workers(), 0, -1, false).await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let pipeline = redis.pipeline();
    for id in &ids {
        let _: () = pipeline.hgetall(keys.worker(id)).await?;
    }
    let records: Vec<HashMap<String, String>> = pipeline.all().await?;
    let mut workers = Vec::with_capacity(ids.len());
    for (id, fields) in ids.into_iter().zip(records) {
        if fields.is_empty() {
            let _: i64 = redis.zrem(keys.workers(), id.as_str()).await?;
            continue;
        }
        let get = |name: &str| fields.get(name).cloned().unwrap_or_default();
        let number = |name: &str| get(name).parse::<u64>().unwrap_or(0);
        let time = |name: &str| {
            chrono::DateTime::parse_from_rfc3339(&get(name)).ok().map(|t| t.with_timezone(&Utc))
        };
        let last_beat = time("last_beat");
        workers.push(WorkerInfo {
            host: get("host"),
            pid: get("pid").parse().unwrap_or(0),
            queues: get("queues").split(',').filter(|q| !q.is_empty()).map(str::to_owned).collect(),
            concurrency: number("concurrency"),
            in_flight: number("in_flight"),
            processed: number("processed"),
            failed: number("failed"),
            started_at: time("started_at"),
            stale: last_beat.is_none_or(|at| (now - at).to_std().unwrap_or_default() > STALE_AFTER),
            last_beat,
            state: get("state"),
            running: get("running").split(',').filter_map(|j| j.parse().ok()).collect(),
            running_jobs: get("jobs").lines().filter_map(RunningJob::parse).collect(),
            id,
        });
    }
    Ok(workers)
}
