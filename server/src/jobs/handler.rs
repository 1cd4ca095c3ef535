//! What a job kind is: a [`Handler`] (name, queue, attempts, timeout, and an
//! async `run`), the [`JobContext`] a run gets (org scope, payload, attempt,
//! cancellation, a logger), and the [`Registry`] of kinds.
//!
//! Kinds are registered in one place, [`Registry::standard`]; enqueueing a
//! kind that is not registered is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;
use tenancy::{Org, SchemaName};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::queue::QueueName;

/// How a run ended when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    /// Worth another attempt (after backoff), if any are left.
    Retry(String),
    /// Retrying cannot help (bad payload, a refused request): the job is
    /// dead at once.
    Permanent(String),
}

impl JobError {
    pub fn retry(message: impl Into<String>) -> Self {
        JobError::Retry(message.into())
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        JobError::Permanent(message.into())
    }

    pub fn message(&self) -> &str {
        match self {
            JobError::Retry(m) | JobError::Permanent(m) => m,
        }
    }
}

impl From<anyhow::Error> for JobError {
    fn from(err: anyhow::Error) -> Self {
        JobError::Retry(format!("{err:#}"))
    }
}

/// What a run returns: a JSON result kept on the job, or why it failed.
pub type JobResult = Result<Value, JobError>;

/// What the built-in handlers need besides the job services.
#[derive(Debug, Clone)]
pub struct HandlerDeps {
    /// Where `file.process` reads uploads and the retention purge removes
    /// an org's files.
    pub storage: crate::storage::Storage,
    /// How `email.send` and `notify.error` send.
    pub mailer: crate::email::Mailer,
    /// Who `notify.error` tells.
    pub recipients: crate::notify::Recipients,
    /// Whether `webhook.deliver` may call private addresses.
    pub webhook_allow_private: bool,
}

/// A kind of job. Implementations are registered in [`Registry::standard`].
pub trait Handler: Send + Sync + 'static {
    /// The kind's name, as clients enqueue it (`[a-z0-9_.-]`).
    fn kind(&self) -> &'static str;

    /// The queue its jobs go to unless the caller names another.
    fn queue(&self) -> &'static str {
        "default"
    }

    /// Attempts before the job is dead, unless the caller sets its own.
    fn max_attempts(&self) -> u32 {
        5
    }

    /// A run that takes longer is aborted and counts as a failed attempt
    /// (a kind may let the payload ask for less).
    fn timeout(&self, _payload: &Value) -> Duration {
        Duration::from_secs(300)
    }

    /// Checks a payload at enqueue time; an error is answered as 422.
    fn validate(&self, _payload: &Value) -> Result<(), String> {
        Ok(())
    }

    /// Does the work. Long runs should watch `ctx.cancel`; a run is dropped
    /// when its job is cancelled or times out.
    fn run<'a>(&'a self, ctx: &'a JobContext) -> BoxFuture<'a, JobResult>;
}

impl std::fmt::Debug for dyn Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler").field("kind", &self.kind()).finish_non_exhaustive()
    }
}

/// Everything one run of a job gets.
#[derive(Debug)]
pub struct JobContext {
    pub id: Uuid,
    pub kind: String,
    /// The org whose job this is; `None` for platform jobs.
    pub org: Option<Arc<Org>>,
    pub payload: Value,
    /// 1 for the first run.
    pub attempt: u32,
    pub max_attempts: u32,
    /// Cancelled when the job is cancelled, times out, or the worker stops.
    pub cancel: CancellationToken,
    pub log: JobLogger,
    /// The job services (to enqueue follow-up jobs, take locks, query).
    pub jobs: super::Jobs,
}

impl JobContext {
    /// The org's schema, for schema-qualified queries.
    pub fn schema(&self) -> Option<SchemaName> {
        self.org.as_ref().map(|o| o.schema())
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

/// Severity of a job log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// One line a handler logged.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LogLine {
    pub job_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub org_id: Option<Uuid>,
    pub attempt: u32,
    pub line_no: u32,
    pub at: chrono::DateTime<chrono::Utc>,
    pub level: Level,
    pub line: String,
}

/// Lines longer than this are cut.
pub const MAX_LINE_BYTES: usize = 4096;
/// Lines after this many in one attempt are dropped (one notice says so).
pub const MAX_LINES_PER_ATTEMPT: u32 = 10_000;

/// A handler's logger. Each line is published live at once and stored with
/// the job in batches. Cheap to clone.
#[derive(Debug, Clone)]
pub struct JobLogger {
    job_id: Uuid,
    org_id: Option<Uuid>,
    attempt: u32,
    next: Arc<AtomicU32>,
    sink: Option<mpsc::UnboundedSender<super::worker::Record>>,
}

impl JobLogger {
    pub(crate) fn new(
        job_id: Uuid,
        org_id: Option<Uuid>,
        attempt: u32,
        sink: Option<mpsc::UnboundedSender<super::worker::Record>>,
    ) -> Self {
        JobLogger { job_id, org_id, attempt, next: Arc::new(AtomicU32::new(1)), sink }
    }

    /// A logger that only writes to the process log (tests, one-off runs).
    pub fn detached(job_id: Uuid) -> Self {
        Self::new(job_id, None, 1, None)
    }

    pub fn info(&self, line: impl Into<String>) {
        self.write(Level::Info, line.into());
    }

    pub fn warn(&self, line: impl Into<String>) {
        self.write(Level::Warn, line.into());
    }

    pub fn error(&self, line: impl Into<String>) {
        self.write(Level::Error, line.into());
    }

    /// Lines written so far in this attempt.
    pub fn lines(&self) -> u32 {
        self.next.load(Ordering::Relaxed).saturating_sub(1).min(MAX_LINES_PER_ATTEMPT + 1)
    }

    fn write(&self, level: Level, mut line: String) {
        let line_no = self.next.fetch_add(1, Ordering::Relaxed);
        if line_no > MAX_LINES_PER_ATTEMPT + 1 {
            return;
        }
        if line_no == MAX_LINES_PER_ATTEMPT + 1 {
            line = format!("(more than {MAX_LINES_PER_ATTEMPT} lines; the rest are dropped)");
        }
        if line.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
        }
        tracing::debug!(job_id = %self.job_id, attempt = self.attempt, level = level.as_str(), "{line}");
        if let Some(sink) = &self.sink {
            let _ = sink.send(super::worker::Record::Line(LogLine {
                job_id: self.job_id,
                org_id: self.org_id,
                attempt: self.attempt,
                line_no,
                at: chrono::Utc::now(),
                level,
                line,
            }));
        }
    }
}

/// The registered job kinds. Cheap to clone.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: BTreeMap<&'static str, Arc<dyn Handler>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.handlers.keys()).finish()
    }
}

impl Registry {
    /// Every kind Orgstack runs. Register new kinds here.
    /// Every kind this program runs, with what they need.
    pub fn standard(deps: &HandlerDeps) -> Self {
        let storage = &deps.storage;
        let mut registry = Registry::default();
        registry.register(crate::files::process::ProcessFile::new(storage.clone()));
        registry.register(crate::email::SendEmail::new(deps.mailer.clone()));
        registry.register(crate::digest::FanOut);
        registry.register(crate::digest::Send::new(deps.mailer.clone()));
        registry
            .register(crate::webhooks::deliver::DeliverWebhook::new(deps.webhook_allow_private));
        registry.register(crate::notify::NotifyError::new(
            deps.mailer.clone(),
            deps.recipients.clone(),
        ));
        registry.register(super::builtin::Noop);
        registry.register(super::builtin::Sleep);
        registry.register(super::builtin::PruneJobs);
        registry.register(super::builtin::PurgeDeletedOrgs { storage: storage.clone() });
        registry
    }

    /// Adds a kind (replacing one of the same name). Kind names are 1 to
    /// 100 of `[a-z0-9_.-]`.
    pub fn register(&mut self, handler: impl Handler) {
        let kind = handler.kind();
        debug_assert!(
            !kind.is_empty()
                && kind.len() <= 100
                && kind
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b)),
            "job kind {kind:?} must be 1 to 100 of [a-z0-9_.-]"
        );
        debug_assert!(
            QueueName::parse(handler.queue()).is_ok(),
            "queue of {} is not a valid name",
            handler.kind()
        );
        self.handlers.insert(handler.kind(), Arc::new(handler));
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Handler>> {
        self.handlers.get(kind)
    }

    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.handlers.keys().copied()
    }

    /// The queues the registered kinds use by default.
    pub fn queues(&self) -> Vec<QueueName> {
        let names: BTreeSet<&str> = self.handlers.values().map(|h| h.queue()).collect();
        names.into_iter().filter_map(|n| QueueName::parse(n).ok()).collect()
    }
}
