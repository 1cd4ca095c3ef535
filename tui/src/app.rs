//! The console's state and the one function that changes it.
//!
//! The Elm architecture: [`App`] is plain data, [`update`] applies a
//! [`Message`] to it and may ask for a [`Command`] (I/O, run elsewhere,
//! whose outcome comes back as another message); nothing here touches the
//! terminal, PostgreSQL or Redis, so every key press is unit-testable.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use orgstack::accounts::Role;
use orgstack::accounts::audit::{AuditEvent, AuditSearch};
use orgstack::accounts::members::{ApiKey, Member, Membership};
use orgstack::accounts::users::{SessionInfo, User};
use orgstack::flags::FlagState;
use orgstack::jobs::browse::{QueuedJob, Section};
use orgstack::jobs::schedules::Schedule;
use orgstack::jobs::worker::WorkerInfo;
use orgstack::jobs::{Job, JobStatus, JobSummary, StoredLine};
use orgstack::queue::QueueStats;
use tenancy::{Org, OrgId, OrgStatus};

use crate::form::{Form, FormKey, Purpose};

/// How many one-second throughput samples the dashboard keeps (10 minutes).
pub const HISTORY: usize = 600;

/// Orgs shown per filter: a page from the database, never the whole table.
pub const ORGS_PAGE: i64 = 500;

/// Users shown per search.
pub const USERS_PAGE: i64 = 500;

/// The views, in `Tab` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Dashboard,
    Orgs,
    Users,
    Jobs,
    Flags,
    Queues,
    Workers,
    Schedules,
    Audit,
}

impl View {
    pub const ALL: [View; 9] = [
        View::Dashboard,
        View::Orgs,
        View::Users,
        View::Jobs,
        View::Flags,
        View::Queues,
        View::Workers,
        View::Schedules,
        View::Audit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            View::Dashboard => "dashboard",
            View::Orgs => "orgs",
            View::Users => "users",
            View::Jobs => "jobs",
            View::Flags => "flags",
            View::Queues => "queues",
            View::Workers => "workers",
            View::Schedules => "schedules",
            View::Audit => "audit",
        }
    }

    /// The view a `:` command names (a unique prefix is enough).
    pub fn named(text: &str) -> Option<View> {
        let text = text.trim().to_ascii_lowercase();
        if text.is_empty() {
            return None;
        }
        let mut found = View::ALL.into_iter().filter(|v| v.name().starts_with(&text));
        match (found.next(), found.next()) {
            (Some(view), None) => Some(view),
            _ => None,
        }
    }

    fn next(self) -> View {
        let i = View::ALL.iter().position(|v| *v == self).unwrap_or(0);
        View::ALL[(i + 1) % View::ALL.len()]
    }

    fn previous(self) -> View {
        let i = View::ALL.iter().position(|v| *v == self).unwrap_or(0);
        View::ALL[(i + View::ALL.len() - 1) % View::ALL.len()]
    }

    /// The keys of this view, for `?`.
    pub fn keys(self) -> &'static [(&'static str, &'static str)] {
        match self {
            View::Dashboard => &[("r", "refresh now")],
            View::Orgs => &[
                ("j/k, ↑/↓", "move"),
                ("/", "filter by slug or name"),
                ("o", "sort by the next column"),
                ("n", "create an org"),
                ("e", "rename the org"),
                ("s / u", "suspend / resume the org"),
                ("D", "soft-delete the org (type its slug)"),
                ("P", "purge a deleted org's data (type its slug)"),
                ("Enter", "the org's jobs"),
                ("m", "the org's members (and their roles)"),
                ("F", "the org's flags"),
                ("r", "reload"),
            ],
            View::Users => &[
                ("j/k, ↑/↓", "move"),
                ("/", "search by email or name"),
                ("Enter", "memberships, sessions and API keys"),
                ("n", "create a user"),
                ("p", "set the password"),
                ("D", "deactivate (ends every session)"),
                ("A", "promote to platform admin"),
                ("r", "reload"),
            ],
            View::Jobs => &[
                ("j/k, ↑/↓", "move"),
                ("Enter", "the job: payload, attempts, error, live log"),
                ("f", "filter by status (all, queued, running, …)"),
                ("R", "retry the job (dead, failed or cancelled)"),
                ("c", "cancel the job (queued or running)"),
                ("d", "discard the dead job"),
                ("r", "reload"),
            ],
            View::Flags => &[
                ("j/k, ↑/↓", "flag"),
                ("h/l, ←/→", "global, then each org"),
                ("space", "switch the value here"),
                ("x", "clear it (inherit again)"),
                ("r", "reload"),
            ],
            View::Workers => &[
                ("j/k, ↑/↓", "move"),
                ("Enter", "the jobs the worker runs now"),
                ("+ / -", "one more / one fewer job at once (pool grow/shrink)"),
                ("S", "shut the worker down gracefully"),
                ("r", "refresh now"),
            ],
            View::Queues => &[
                ("j/k, ↑/↓", "move"),
                ("Enter", "the queue's jobs (waiting, running, scheduled, dead)"),
                ("p", "pause or resume the queue (workers stop fetching)"),
                ("P", "purge the queue's waiting jobs"),
                ("r", "refresh now"),
            ],
            View::Schedules => &[
                ("j/k, ↑/↓", "move"),
                ("/", "show an org's schedules (its slug)"),
                ("e", "enable or disable the schedule"),
                ("N", "run the schedule now"),
                ("r", "reload"),
            ],
            View::Audit => {
                &[("j/k, ↑/↓", "move"), ("/", "filter by org, actor and action"), ("r", "reload")]
            }
        }
    }
}

/// Everything the dashboard, queues and workers views show, read at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub taken_at: DateTime<Utc>,
    /// `(status, count)` for every org status.
    pub orgs: Vec<(String, i64)>,
    pub users: i64,
    pub active_users: i64,
    pub queues: Vec<QueueStats>,
    pub workers: Vec<WorkerInfo>,
    /// Round-trip time of a trivial query, or why it failed.
    pub postgres: Result<f64, String>,
    pub redis: Result<f64, String>,
    /// The slugs of the orgs whose jobs the workers run.
    pub slugs: HashMap<OrgId, String>,
}

/// The orgs matching a filter, with the org lineage's newest version (an
/// org below it is a laggard).
#[derive(Debug, Clone, PartialEq)]
pub struct OrgPage {
    pub filter: String,
    pub orgs: Vec<Org>,
    pub latest_version: i32,
    /// Members of each org on the page.
    pub members: HashMap<OrgId, i64>,
}

/// What the orgs page is sorted by (`o` cycles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgSort {
    Slug,
    Name,
    Status,
    Version,
    Members,
    Newest,
}

impl OrgSort {
    pub fn name(self) -> &'static str {
        match self {
            OrgSort::Slug => "slug",
            OrgSort::Name => "name",
            OrgSort::Status => "status",
            OrgSort::Version => "version",
            OrgSort::Members => "members",
            OrgSort::Newest => "newest",
        }
    }

    fn next(self) -> OrgSort {
        match self {
            OrgSort::Slug => OrgSort::Name,
            OrgSort::Name => OrgSort::Status,
            OrgSort::Status => OrgSort::Version,
            OrgSort::Version => OrgSort::Members,
            OrgSort::Members => OrgSort::Newest,
            OrgSort::Newest => OrgSort::Slug,
        }
    }

    fn apply(self, page: &mut OrgPage) {
        let members = page.members.clone();
        let count = |org: &Org| members.get(&org.id).copied().unwrap_or(0);
        match self {
            OrgSort::Slug => page.orgs.sort_by(|a, b| a.slug.as_str().cmp(b.slug.as_str())),
            OrgSort::Name => page.orgs.sort_by(|a, b| a.name.cmp(&b.name)),
            OrgSort::Status => page.orgs.sort_by_key(|o| o.status.as_str()),
            // Laggards first.
            OrgSort::Version => page.orgs.sort_by_key(|o| o.org_version),
            OrgSort::Members => page.orgs.sort_by_key(|o| std::cmp::Reverse(count(o))),
            OrgSort::Newest => page.orgs.sort_by_key(|o| std::cmp::Reverse(o.created_at)),
        }
    }
}

/// Users matching a search.
#[derive(Debug, Clone, PartialEq)]
pub struct UserPage {
    pub filter: String,
    pub users: Vec<User>,
}

/// One user with their memberships, sessions and the API keys they made.
#[derive(Debug, Clone, PartialEq)]
pub struct UserDetail {
    pub user: User,
    pub memberships: Vec<Membership>,
    pub sessions: Vec<SessionInfo>,
    /// `(org slug, org, key)`.
    pub keys: Vec<(String, OrgId, ApiKey)>,
    /// The selected row: sessions first, then keys.
    pub row: usize,
}

/// The members of one org.
#[derive(Debug, Clone, PartialEq)]
pub struct MembersPage {
    pub org: String,
    pub members: Vec<Member>,
    pub row: usize,
}

/// One job with its log, followed live while it is open.
#[derive(Debug, Clone, PartialEq)]
pub struct JobDetail {
    pub org: String,
    pub job: Job,
    pub logs: Vec<StoredLine>,
    /// Lines scrolled up from the end (0 follows the tail).
    pub scroll: usize,
}

/// Part of one queue, across orgs.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueJobPage {
    pub queue: String,
    pub section: Section,
    /// Filters as typed: an org slug, a kind (empty: any).
    pub org: String,
    pub kind: String,
    /// Each job with its org's slug (`None`: a platform job).
    pub jobs: Vec<(Option<String>, QueuedJob)>,
    pub row: usize,
}

/// A global schedule (declared in code) as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalRow {
    pub name: String,
    pub cron: String,
    pub kind: String,
    pub next_run_at: Option<DateTime<Utc>>,
}

/// The global schedules, and one org's.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulePage {
    /// The org whose schedules are shown.
    pub org: Option<String>,
    pub global: Vec<GlobalRow>,
    pub schedules: Vec<Schedule>,
    /// The status of each schedule's last job.
    pub outcomes: HashMap<uuid::Uuid, JobStatus>,
}

/// Audit events: an org's, or the platform's.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditPage {
    pub org: Option<String>,
    pub search: AuditSearch,
    pub events: Vec<AuditEvent>,
}

/// A drill-down drawn over the view; `Esc` goes back to what was under it.
#[derive(Debug, Clone, PartialEq)]
pub enum Detail {
    Members(MembersPage),
    /// One org's flags: a flags page with that org as its only column.
    OrgFlags {
        page: FlagPage,
        row: usize,
    },
    User(Box<UserDetail>),
    Job(Box<JobDetail>),
    /// The jobs a worker runs now (read from the live snapshot).
    Worker {
        id: String,
        row: usize,
    },
    Queue(QueueJobPage),
}

/// What a member's role can be set to from the members drill-down.
fn role_key(c: char) -> Option<Role> {
    match c {
        'o' => Some(Role::Owner),
        'a' => Some(Role::Admin),
        'm' => Some(Role::Member),
        'v' => Some(Role::Viewer),
        _ => None,
    }
}

/// Every flag with its values, and the orgs shown as columns (the first
/// page of orgs).
#[derive(Debug, Clone, PartialEq)]
pub struct FlagPage {
    pub flags: Vec<FlagState>,
    pub orgs: Vec<Org>,
}

/// What one cell of the flags matrix holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagCell {
    /// The value in force there.
    pub enabled: bool,
    /// Set at this level (not inherited).
    pub explicit: bool,
}

impl FlagPage {
    /// The cell of `flag` at column `col` (0 global, then the orgs).
    pub fn cell(&self, flag: usize, col: usize) -> Option<FlagCell> {
        let state = self.flags.get(flag)?;
        let global = state.global.unwrap_or(state.default);
        if col == 0 {
            return Some(FlagCell { enabled: global, explicit: state.global.is_some() });
        }
        let org = self.orgs.get(col - 1)?;
        Some(match state.overrides.iter().find(|(id, _)| *id == org.id) {
            Some((_, value)) => FlagCell { enabled: *value, explicit: true },
            None => FlagCell { enabled: global, explicit: false },
        })
    }
}

/// The newest jobs of one org, maybe of one status.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPage {
    pub org: String,
    pub status: Option<JobStatus>,
    pub jobs: Vec<JobSummary>,
}

/// What can be done to one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobAction {
    Retry,
    Cancel,
    Discard,
}

impl JobAction {
    fn allowed(self, status: JobStatus) -> bool {
        use JobStatus::*;
        match self {
            JobAction::Retry => matches!(status, Dead | Failed | Cancelled),
            JobAction::Cancel => matches!(status, Queued | Running | Failed),
            JobAction::Discard => status == Dead,
        }
    }

    pub fn verb(self) -> &'static str {
        match self {
            JobAction::Retry => "retry",
            JobAction::Cancel => "cancel",
            JobAction::Discard => "discard",
        }
    }
}

/// A question that needs a `y` before its command runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    pub question: String,
    pub command: Command,
}

/// What can be done to a user from the users view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserAction {
    Deactivate,
    Promote,
}

/// What can be done to a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueAction {
    Pause,
    Resume,
    Purge,
}

/// What can be done to an org schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleAction {
    Enable,
    Disable,
    RunNow,
}

/// An org, by slug or by id (jobs found in a queue or on a worker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgRef {
    Slug(String),
    Id(OrgId),
}

/// The console's whole state.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub operator: String,
    pub view: View,
    pub snapshot: Option<Snapshot>,
    /// Jobs finished per second over the last [`HISTORY`] seconds.
    pub throughput: VecDeque<u64>,
    /// Entries finished per second by queue, between the last two snapshots.
    pub queue_rates: HashMap<String, f64>,
    /// Jobs processed and failed per second by worker, likewise.
    pub worker_rates: HashMap<String, (f64, f64)>,
    /// The counters of the last few seconds, one sample a second.
    pub samples: VecDeque<Sample>,
    /// The selected row of each view's table.
    pub queue_row: usize,
    pub worker_row: usize,
    pub org_row: usize,
    pub user_row: usize,
    pub schedule_row: usize,
    pub audit_row: usize,
    /// The orgs view's page, once loaded, and its order.
    pub orgs: Option<OrgPage>,
    pub org_sort: OrgSort,
    pub users: Option<UserPage>,
    /// The jobs view's page (of the org chosen in the orgs view).
    pub jobs: Option<JobPage>,
    pub job_row: usize,
    /// The flags matrix, once loaded, and its cursor (column 0 is global).
    pub flags: Option<FlagPage>,
    pub flag_row: usize,
    pub flag_col: usize,
    pub schedules: Option<SchedulePage>,
    pub audit: Option<AuditPage>,
    /// Drill-downs opened over the view, the last on top.
    pub details: Vec<Detail>,
    /// A form being filled in.
    pub form: Option<Form>,
    /// The filter being typed after `/`.
    pub filter_input: Option<String>,
    /// A question waiting for `y`.
    pub confirm: Option<Confirm>,
    /// The outcome of the last action, shown in the status line.
    pub notice: Option<String>,
    /// The `:` prompt, while it is open.
    pub prompt: Option<String>,
    pub help: bool,
    /// A refresh is in flight (its number, so an abandoned one is ignored).
    pub loading: Option<u64>,
    pub next_request: u64,
    /// Ticks since start (drives the spinner).
    pub ticks: u64,
    /// The last error, shown in the status line until the next success.
    pub error: Option<String>,
    pub quit: bool,
}

/// What other processes changed (announced on Redis pub/sub).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    pub orgs: bool,
    pub users: bool,
    pub flags: bool,
    pub workers: bool,
    /// Some job's status, in some org.
    pub jobs: bool,
}

impl Changes {
    pub fn all() -> Changes {
        Changes { orgs: true, users: true, flags: true, workers: true, jobs: true }
    }
}

/// What can happen to the console.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Key(KeyEvent),
    /// One second passed.
    Tick,
    /// A refresh finished.
    Loaded {
        request: u64,
        result: Result<Box<Snapshot>, String>,
    },
    /// A page of orgs arrived.
    OrgsLoaded(Result<OrgPage, String>),
    UsersLoaded(Result<UserPage, String>),
    UserLoaded(Result<Box<UserDetail>, String>),
    MembersLoaded(Result<MembersPage, String>),
    /// A page of jobs arrived.
    JobsLoaded(Result<JobPage, String>),
    /// One job and its log arrived.
    JobLoaded(Result<Box<JobDetail>, String>),
    /// A job's record again and the log lines after those shown.
    JobTail(Result<(Box<Job>, Vec<StoredLine>), String>),
    QueueJobsLoaded(Result<QueueJobPage, String>),
    /// The flags matrix arrived.
    FlagsLoaded(Result<FlagPage, String>),
    /// One org's flags arrived.
    OrgFlagsLoaded(Result<FlagPage, String>),
    SchedulesLoaded(Result<SchedulePage, String>),
    AuditLoaded(Result<AuditPage, String>),
    /// An action finished: what it did, or why it failed.
    Done(Result<String, String>),
    /// Other processes changed something: refresh what it touches.
    Changed(Changes),
}

/// I/O that [`update`] asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Several at once.
    Batch(Vec<Command>),
    /// Read a fresh [`Snapshot`]; answer with [`Message::Loaded`].
    Refresh {
        request: u64,
    },
    /// Read the orgs matching `filter`; answer with [`Message::OrgsLoaded`].
    LoadOrgs {
        filter: String,
    },
    /// Suspend (or resume) an org, audited with the operator as actor;
    /// answer with [`Message::Done`].
    SetOrgStatus {
        slug: String,
        suspend: bool,
    },
    CreateOrg {
        name: String,
        slug: String,
    },
    RenameOrg {
        slug: String,
        name: String,
    },
    DeleteOrg {
        slug: String,
    },
    PurgeOrg {
        slug: String,
    },
    LoadMembers {
        org: String,
    },
    SetRole {
        org: String,
        user: uuid::Uuid,
        role: Role,
    },
    LoadOrgFlags {
        org: String,
    },
    /// Users whose email or name contains `filter`.
    LoadUsers {
        filter: String,
    },
    LoadUser {
        id: uuid::Uuid,
    },
    CreateUser {
        email: String,
        name: String,
        password: String,
    },
    SetPassword {
        email: String,
        password: String,
    },
    User {
        email: String,
        action: UserAction,
    },
    RevokeSession {
        user: uuid::Uuid,
        session: uuid::Uuid,
    },
    RevokeApiKey {
        org: OrgId,
        key: uuid::Uuid,
    },
    /// Read the newest jobs of `org`; answer with [`Message::JobsLoaded`].
    LoadJobs {
        org: String,
        status: Option<JobStatus>,
    },
    /// Read one job and its log; answer with [`Message::JobLoaded`].
    LoadJob {
        org: OrgRef,
        id: uuid::Uuid,
    },
    /// Read a job again and its log lines after `after`.
    TailJob {
        org: String,
        id: uuid::Uuid,
        after: Option<(i32, i32)>,
    },
    /// Retry, cancel or discard a job, as the operator; answer with
    /// [`Message::Done`].
    Job {
        org: String,
        id: uuid::Uuid,
        action: JobAction,
    },
    /// Read part of a queue; `org` (a slug) and `kind` filter when not empty.
    LoadQueueJobs {
        queue: String,
        section: Section,
        org: String,
        kind: String,
    },
    Queue {
        queue: String,
        action: QueueAction,
    },
    /// Ask a worker to shut down gracefully (`concurrency` None) or to run
    /// that many jobs at once; answer with [`Message::Done`].
    Worker {
        id: String,
        concurrency: Option<usize>,
    },
    /// Read every flag and the first orgs; answer with [`Message::FlagsLoaded`].
    LoadFlags,
    /// Set a flag globally (`org` None) or for one org, or clear that value
    /// (`enabled` None); answer with [`Message::Done`].
    SetFlag {
        name: String,
        org: Option<(OrgId, String)>,
        enabled: Option<bool>,
    },
    /// The global schedules, and `org`'s.
    LoadSchedules {
        org: Option<String>,
    },
    Schedule {
        org: String,
        id: uuid::Uuid,
        action: ScheduleAction,
    },
    /// Audit events of `org` (the platform's when `None`).
    LoadAudit {
        org: Option<String>,
        search: AuditSearch,
    },
}

impl App {
    pub fn new(operator: impl Into<String>) -> App {
        App {
            operator: operator.into(),
            view: View::Dashboard,
            snapshot: None,
            throughput: VecDeque::with_capacity(HISTORY),
            queue_rates: HashMap::new(),
            worker_rates: HashMap::new(),
            samples: VecDeque::new(),
            queue_row: 0,
            worker_row: 0,
            org_row: 0,
            user_row: 0,
            schedule_row: 0,
            audit_row: 0,
            orgs: None,
            org_sort: OrgSort::Slug,
            users: None,
            jobs: None,
            job_row: 0,
            flags: None,
            flag_row: 0,
            flag_col: 0,
            schedules: None,
            audit: None,
            details: Vec::new(),
            form: None,
            filter_input: None,
            confirm: None,
            notice: None,
            prompt: None,
            help: false,
            loading: None,
            next_request: 1,
            ticks: 0,
            error: None,
            quit: false,
        }
    }

    /// Starts a refresh unless one is already running.
    pub fn refresh(&mut self) -> Option<Command> {
        if self.loading.is_some() {
            return None;
        }
        let request = self.next_request;
        self.next_request += 1;
        self.loading = Some(request);
        Some(Command::Refresh { request })
    }

    /// The time of the last snapshot (what "ago" is measured from), or now.
    pub fn now(&self) -> DateTime<Utc> {
        self.snapshot.as_ref().map_or_else(Utc::now, |s| s.taken_at)
    }

    /// The running jobs of the worker a drill-down shows.
    pub fn worker_jobs(&self, id: &str) -> &[orgstack::jobs::worker::RunningJob] {
        self.snapshot
            .as_ref()
            .and_then(|s| s.workers.iter().find(|w| w.id == id))
            .map_or(&[], |w| w.running_jobs.as_slice())
    }

    fn rows(&self) -> usize {
        if let Some(detail) = self.details.last() {
            return match detail {
                Detail::Members(page) => page.members.len(),
                Detail::OrgFlags { page, .. } => page.flags.len(),
                Detail::User(user) => user.sessions.len() + user.keys.len(),
                Detail::Job(job) => job.logs.len(),
                Detail::Worker { id, .. } => self.worker_jobs(id).len(),
                Detail::Queue(page) => page.jobs.len(),
            };
        }
        match self.view {
            View::Dashboard => 0,
            View::Orgs => self.orgs.as_ref().map_or(0, |p| p.orgs.len()),
            View::Users => self.users.as_ref().map_or(0, |p| p.users.len()),
            View::Flags => self.flags.as_ref().map_or(0, |p| p.flags.len()),
            View::Jobs => self.jobs.as_ref().map_or(0, |p| p.jobs.len()),
            View::Schedules => self.schedules.as_ref().map_or(0, |p| p.schedules.len()),
            View::Audit => self.audit.as_ref().map_or(0, |p| p.events.len()),
            View::Queues => self.snapshot.as_ref().map_or(0, |s| s.queues.len()),
            View::Workers => self.snapshot.as_ref().map_or(0, |s| s.workers.len()),
        }
    }

    fn row_mut(&mut self) -> Option<&mut usize> {
        if let Some(detail) = self.details.last_mut() {
            return Some(match detail {
                Detail::Members(page) => &mut page.row,
                Detail::OrgFlags { row, .. } => row,
                Detail::User(user) => &mut user.row,
                Detail::Job(job) => &mut job.scroll,
                Detail::Worker { row, .. } => row,
                Detail::Queue(page) => &mut page.row,
            });
        }
        match self.view {
            View::Dashboard => None,
            View::Orgs => Some(&mut self.org_row),
            View::Users => Some(&mut self.user_row),
            View::Flags => Some(&mut self.flag_row),
            View::Jobs => Some(&mut self.job_row),
            View::Queues => Some(&mut self.queue_row),
            View::Workers => Some(&mut self.worker_row),
            View::Schedules => Some(&mut self.schedule_row),
            View::Audit => Some(&mut self.audit_row),
        }
    }

    fn clamp_rows(&mut self) {
        fn clamp(row: &mut usize, len: usize) {
            *row = (*row).min(len.saturating_sub(1));
        }
        let (queues, workers) =
            self.snapshot.as_ref().map_or((0, 0), |s| (s.queues.len(), s.workers.len()));
        clamp(&mut self.queue_row, queues);
        clamp(&mut self.worker_row, workers);
        clamp(&mut self.org_row, self.orgs.as_ref().map_or(0, |p| p.orgs.len()));
        clamp(&mut self.user_row, self.users.as_ref().map_or(0, |p| p.users.len()));
        clamp(&mut self.job_row, self.jobs.as_ref().map_or(0, |p| p.jobs.len()));
        clamp(&mut self.schedule_row, self.schedules.as_ref().map_or(0, |p| p.schedules.len()));
        clamp(&mut self.audit_row, self.audit.as_ref().map_or(0, |p| p.events.len()));
        let (flags, columns) =
            self.flags.as_ref().map_or((0, 0), |p| (p.flags.len(), p.orgs.len()));
        clamp(&mut self.flag_row, flags);
        self.flag_col = self.flag_col.min(columns);
        let running: Vec<usize> = self
            .details
            .iter()
            .map(|d| match d {
                Detail::Worker { id, .. } => self.worker_jobs(id).len(),
                _ => 0,
            })
            .collect();
        for (detail, running) in self.details.iter_mut().zip(running) {
            match detail {
                Detail::Members(page) => clamp(&mut page.row, page.members.len()),
                Detail::OrgFlags { page, row } => clamp(row, page.flags.len()),
                Detail::User(user) => clamp(&mut user.row, user.sessions.len() + user.keys.len()),
                Detail::Job(job) => clamp(&mut job.scroll, job.logs.len()),
                Detail::Worker { row, .. } => clamp(row, running),
                Detail::Queue(page) => clamp(&mut page.row, page.jobs.len()),
            }
        }
    }

    /// The worker under the cursor in the workers view.
    pub fn selected_worker(&self) -> Option<&WorkerInfo> {
        self.snapshot.as_ref().and_then(|s| s.workers.get(self.worker_row))
    }

    /// The org under the cursor in the orgs view.
    pub fn selected_org(&self) -> Option<&Org> {
        self.orgs.as_ref().and_then(|p| p.orgs.get(self.org_row))
    }

    pub fn selected_user(&self) -> Option<&User> {
        self.users.as_ref().and_then(|p| p.users.get(self.user_row))
    }

    pub fn selected_queue(&self) -> Option<&QueueStats> {
        self.snapshot.as_ref().and_then(|s| s.queues.get(self.queue_row))
    }

    /// Switches to `view`, loading its data the first time it is shown.
    fn show(&mut self, view: View) -> Option<Command> {
        self.view = view;
        self.details.clear();
        match view {
            View::Orgs if self.orgs.is_none() => Some(Command::LoadOrgs { filter: String::new() }),
            View::Users if self.users.is_none() => {
                Some(Command::LoadUsers { filter: String::new() })
            }
            View::Flags if self.flags.is_none() => Some(Command::LoadFlags),
            View::Schedules if self.schedules.is_none() => {
                Some(Command::LoadSchedules { org: None })
            }
            View::Audit if self.audit.is_none() => {
                Some(Command::LoadAudit { org: None, search: AuditSearch::default() })
            }
            _ => None,
        }
    }

    /// The command that reloads what is on screen (after an action, or `r`).
    fn reload(&mut self) -> Option<Command> {
        if let Some(detail) = self.details.last() {
            return match detail {
                Detail::Members(page) => Some(Command::LoadMembers { org: page.org.clone() }),
                Detail::OrgFlags { page, .. } => {
                    page.orgs.first().map(|o| Command::LoadOrgFlags { org: o.slug.to_string() })
                }
                Detail::User(user) => Some(Command::LoadUser { id: user.user.id }),
                Detail::Job(job) => {
                    Some(Command::LoadJob { org: OrgRef::Slug(job.org.clone()), id: job.job.id })
                }
                Detail::Worker { .. } => self.refresh(),
                Detail::Queue(page) => Some(Command::LoadQueueJobs {
                    queue: page.queue.clone(),
                    section: page.section,
                    org: page.org.clone(),
                    kind: page.kind.clone(),
                }),
            };
        }
        match self.view {
            View::Orgs => Some(Command::LoadOrgs { filter: self.org_filter() }),
            View::Users => Some(Command::LoadUsers {
                filter: self.users.as_ref().map(|p| p.filter.clone()).unwrap_or_default(),
            }),
            View::Flags => Some(Command::LoadFlags),
            View::Jobs => self.reload_jobs(),
            View::Schedules => Some(Command::LoadSchedules {
                org: self.schedules.as_ref().and_then(|p| p.org.clone()),
            }),
            View::Audit => Some(match &self.audit {
                Some(page) => {
                    Command::LoadAudit { org: page.org.clone(), search: page.search.clone() }
                }
                None => Command::LoadAudit { org: None, search: AuditSearch::default() },
            }),
            View::Dashboard | View::Queues | View::Workers => self.refresh(),
        }
    }

    /// The command for a flags cursor's cell: flip the value in force
    /// there (set explicitly), or clear an explicit value (`clear`).
    fn flag_command(page: &FlagPage, row: usize, col: usize, clear: bool) -> Option<Command> {
        let state = page.flags.get(row)?;
        let cell = page.cell(row, col)?;
        let org = match col {
            0 => None,
            col => page.orgs.get(col - 1).map(|o| (o.id, o.slug.to_string())),
        };
        let enabled = if clear { None } else { Some(!cell.enabled) };
        if clear && !cell.explicit {
            return None;
        }
        Some(Command::SetFlag { name: state.name.to_owned(), org, enabled })
    }

    /// The command that reloads the jobs view as it is.
    fn reload_jobs(&self) -> Option<Command> {
        self.jobs.as_ref().map(|p| Command::LoadJobs { org: p.org.clone(), status: p.status })
    }

    /// The job under the cursor, wherever it is shown: `(org slug, id,
    /// kind, status)`; platform jobs have no record to act on.
    fn selected_job(&self) -> Option<(String, uuid::Uuid, String, JobStatus)> {
        match self.details.last() {
            Some(Detail::Job(detail)) => Some((
                detail.org.clone(),
                detail.job.id,
                detail.job.kind.clone(),
                detail.job.status,
            )),
            Some(Detail::Queue(page)) => {
                let (slug, job) = page.jobs.get(page.row)?;
                Some((slug.clone()?, job.id, job.kind.clone(), job.status?))
            }
            Some(_) => None,
            None if self.view == View::Jobs => {
                let page = self.jobs.as_ref()?;
                let job = page.jobs.get(self.job_row)?;
                Some((page.org.clone(), job.id, job.kind.clone(), job.status))
            }
            None => None,
        }
    }

    /// Asks before `action` on the job under the cursor, if it applies.
    fn ask_job(&mut self, action: JobAction) {
        let Some((org, id, kind, status)) = self.selected_job() else { return };
        if !action.allowed(status) {
            self.error = Some(format!("cannot {} a {status} job", action.verb()));
            return;
        }
        self.confirm = Some(Confirm {
            question: format!(
                "{} {kind} job {} of {org}? (y/n)",
                capitalized(action.verb()),
                short_id(id),
            ),
            command: Command::Job { org, id, action },
        });
    }

    fn org_filter(&self) -> String {
        self.orgs.as_ref().map(|p| p.filter.clone()).unwrap_or_default()
    }

    /// Opens `form`.
    fn open(&mut self, form: Form) {
        self.form = Some(form);
    }

    /// Asks for the slug to be typed back before `command`.
    fn typed_confirm(&mut self, title: String, slug: &str, command: Command) {
        self.open(Form::new(
            title,
            Purpose::TypedConfirm { expected: slug.to_owned(), command: Box::new(command) },
            &[("type the slug", "", false)],
        ));
    }
}

/// Applies `message` to `app`; returns the I/O to run, if any.
pub fn update(app: &mut App, message: Message) -> Option<Command> {
    match message {
        Message::Tick => {
            app.ticks += 1;
            let refresh = app.refresh();
            let tail = match app.details.last() {
                Some(Detail::Job(detail)) => Some(Command::TailJob {
                    org: detail.org.clone(),
                    id: detail.job.id,
                    after: detail.logs.last().map(|l| (l.attempt, l.line_no)),
                }),
                _ => None,
            };
            match (refresh, tail) {
                (Some(refresh), Some(tail)) => Some(Command::Batch(vec![refresh, tail])),
                (refresh, tail) => refresh.or(tail),
            }
        }
        Message::Loaded { request, result } => {
            if app.loading != Some(request) {
                return None; // abandoned with Esc, or superseded
            }
            app.loading = None;
            match result {
                Ok(snapshot) => {
                    record_throughput(app, &snapshot);
                    app.snapshot = Some(*snapshot);
                    app.error = None;
                    app.clamp_rows();
                }
                Err(why) => app.error = Some(why),
            }
            None
        }
        Message::OrgsLoaded(result) => loaded(app, result, |app, mut page| {
            app.org_sort.apply(&mut page);
            app.orgs = Some(page);
        }),
        Message::UsersLoaded(result) => loaded(app, result, |app, page| app.users = Some(page)),
        Message::UserLoaded(result) => loaded(app, result, |app, user| {
            replace_detail(app, Detail::User(user), |d| matches!(d, Detail::User(_)));
        }),
        Message::MembersLoaded(result) => loaded(app, result, |app, page| {
            replace_detail(app, Detail::Members(page), |d| matches!(d, Detail::Members(_)));
        }),
        Message::OrgFlagsLoaded(result) => loaded(app, result, |app, page| {
            let row = match app.details.last() {
                Some(Detail::OrgFlags { row, .. }) => *row,
                _ => 0,
            };
            replace_detail(app, Detail::OrgFlags { page, row }, |d| {
                matches!(d, Detail::OrgFlags { .. })
            });
        }),
        Message::JobsLoaded(result) => loaded(app, result, |app, page| app.jobs = Some(page)),
        Message::JobLoaded(result) => loaded(app, result, |app, job| {
            replace_detail(app, Detail::Job(job), |d| matches!(d, Detail::Job(_)));
        }),
        Message::JobTail(Ok((job, lines))) => {
            if let Some(Detail::Job(detail)) = app.details.last_mut()
                && detail.job.id == job.id
            {
                detail.job = *job;
                detail.logs.extend(lines);
                if detail.scroll > 0 {
                    // Scrolled up: keep the same lines on screen.
                    detail.scroll = detail.scroll.min(detail.logs.len().saturating_sub(1));
                }
            }
            None
        }
        Message::JobTail(Err(why)) => {
            app.error = Some(why);
            None
        }
        Message::QueueJobsLoaded(result) => loaded(app, result, |app, mut page| {
            if let Some(Detail::Queue(old)) = app.details.last()
                && old.queue == page.queue
                && old.section == page.section
            {
                page.row = old.row;
            }
            replace_detail(app, Detail::Queue(page), |d| matches!(d, Detail::Queue(_)));
        }),
        Message::FlagsLoaded(result) => loaded(app, result, |app, page| app.flags = Some(page)),
        Message::SchedulesLoaded(result) => {
            loaded(app, result, |app, page| app.schedules = Some(page))
        }
        Message::AuditLoaded(result) => loaded(app, result, |app, page| app.audit = Some(page)),
        Message::Done(Ok(what)) => {
            app.notice = Some(what);
            app.error = None;
            app.reload()
        }
        Message::Done(Err(why)) => {
            app.error = Some(why);
            None
        }
        Message::Key(key) => on_key(app, key),
        Message::Changed(changes) => on_changes(app, changes),
    }
}

/// Refreshes the figures, and the page on screen when the change touches
/// it (not under an open form or question, which a reload would not
/// disturb anyway, but the operator is reading).
fn on_changes(app: &mut App, changes: Changes) -> Option<Command> {
    let mut commands: Vec<Command> = app.refresh().into_iter().collect();
    let touched = match (app.details.last(), app.view) {
        (Some(Detail::Members(_)), _) => changes.users || changes.orgs,
        (Some(Detail::OrgFlags { .. }), _) => changes.flags,
        (Some(Detail::User(_)), _) => changes.users,
        (Some(Detail::Queue(_)), _) => changes.jobs,
        // The job detail follows its job every second; the worker's jobs
        // come with the figures.
        (Some(Detail::Job(_) | Detail::Worker { .. }), _) => false,
        (None, View::Orgs) => changes.orgs,
        (None, View::Users) => changes.users,
        (None, View::Flags) => changes.flags || changes.orgs,
        (None, View::Jobs) => changes.jobs,
        (None, View::Schedules | View::Audit | View::Dashboard | View::Queues | View::Workers) => {
            false
        }
    };
    if touched
        && let Some(reload) = app.reload()
        && !commands.contains(&reload)
    {
        commands.push(reload);
    }
    match commands.len() {
        0 => None,
        1 => commands.pop(),
        _ => Some(Command::Batch(commands)),
    }
}

/// Stores a page that arrived (and clears the error), or shows why it
/// did not.
fn loaded<T>(
    app: &mut App,
    result: Result<T, String>,
    store: impl FnOnce(&mut App, T),
) -> Option<Command> {
    match result {
        Ok(value) => {
            store(app, value);
            app.error = None;
            app.clamp_rows();
        }
        Err(why) => app.error = Some(why),
    }
    None
}

/// Puts `detail` on top: in place of the top one when it is of the same
/// kind (a reload), otherwise over it (a drill-down).
fn replace_detail(app: &mut App, detail: Detail, same: impl Fn(&Detail) -> bool) {
    match app.details.last_mut() {
        Some(top) if same(top) => *top = detail,
        _ => app.details.push(detail),
    }
}

/// The counters of one snapshot that rates are computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at: DateTime<Utc>,
    /// Entries finished by each queue (acknowledged: counted at once).
    pub done: HashMap<String, u64>,
    /// Processed and failed of each worker (published with its heartbeat,
    /// every two seconds).
    pub workers: HashMap<String, (u64, u64)>,
}

impl Sample {
    fn of(snapshot: &Snapshot) -> Sample {
        Sample {
            at: snapshot.taken_at,
            done: snapshot.queues.iter().map(|q| (q.name.to_string(), q.done)).collect(),
            workers: snapshot
                .workers
                .iter()
                .map(|w| (w.id.clone(), (w.processed, w.failed)))
                .collect(),
        }
    }
}

/// Worker rates span at least this long: their counters move only with
/// heartbeats, so a shorter span would alternate between 0 and twice the
/// rate.
const WORKER_RATE_SPAN_SECS: i64 = 5;

/// Samples the counters at most once a second (a change announced between
/// ticks refreshes the figures but does not make a new sample) and derives
/// the rates: jobs finished per second for the chart and each queue, from
/// the queues' counters, and each worker's over a few heartbeats. A counter
/// that fell (a restarted worker) counts as zero.
fn record_throughput(app: &mut App, next: &Snapshot) {
    let sample = Sample::of(next);
    let Some(previous) = app.samples.back() else {
        app.samples.push_back(sample);
        return;
    };
    let secs = (sample.at - previous.at).num_milliseconds() as f64 / 1000.0;
    if secs < 0.95 {
        return;
    }
    let per_sec = |before: u64, after: u64, secs: f64| after.saturating_sub(before) as f64 / secs;
    app.queue_rates = sample
        .done
        .iter()
        .filter_map(|(name, done)| {
            let before = previous.done.get(name)?;
            Some((name.clone(), per_sec(*before, *done, secs)))
        })
        .collect();
    let finished: u64 = sample
        .done
        .iter()
        .map(|(name, done)| previous.done.get(name).map_or(0, |b| done.saturating_sub(*b)))
        .sum();
    if app.throughput.len() == HISTORY {
        app.throughput.pop_front();
    }
    app.throughput.push_back((finished as f64 / secs).round() as u64);
    // The oldest sample within a few heartbeats' span.
    let base = app
        .samples
        .iter()
        .rev()
        .find(|s| (sample.at - s.at).num_seconds() >= WORKER_RATE_SPAN_SECS)
        .or(app.samples.front());
    if let Some(base) = base {
        let span = (sample.at - base.at).num_milliseconds() as f64 / 1000.0;
        app.worker_rates = sample
            .workers
            .iter()
            .filter_map(|(id, (processed, failed))| {
                let (p0, f0) = base.workers.get(id)?;
                Some((id.clone(), (per_sec(*p0, *processed, span), per_sec(*f0, *failed, span))))
            })
            .collect();
    }
    app.samples.push_back(sample);
    while app.samples.len() > 2 * WORKER_RATE_SPAN_SECS as usize {
        app.samples.pop_front();
    }
}

/// Asks to suspend (or resume) the selected org, if that makes sense for
/// its status.
fn ask_status(app: &mut App, suspend: bool) {
    let Some(org) = app.selected_org() else { return };
    let (from, verb) =
        if suspend { (OrgStatus::Active, "Suspend") } else { (OrgStatus::Suspended, "Resume") };
    if org.status != from {
        app.error = Some(format!("{} is {}, not {}", org.slug, org.status, from));
        return;
    }
    let question = if suspend {
        format!("Suspend org '{}'? Its API answers 404 until resumed. (y/n)", org.slug)
    } else {
        format!("{verb} org '{}'? (y/n)", org.slug)
    };
    app.confirm = Some(Confirm {
        question,
        command: Command::SetOrgStatus { slug: org.slug.to_string(), suspend },
    });
}

/// Turns a submitted form into its command, or says what is wrong.
fn submit(form: &Form) -> Result<Command, String> {
    let value = |i: usize| form.value(i).trim().to_owned();
    match &form.purpose {
        Purpose::CreateOrg => {
            if value(0).is_empty() {
                return Err("an org needs a name".to_owned());
            }
            Ok(Command::CreateOrg { name: value(0), slug: value(1) })
        }
        Purpose::RenameOrg { slug } => {
            if value(0).is_empty() {
                return Err("an org needs a name".to_owned());
            }
            Ok(Command::RenameOrg { slug: slug.clone(), name: value(0) })
        }
        Purpose::TypedConfirm { expected, command } => {
            if &value(0) == expected {
                Ok((**command).clone())
            } else {
                Err(format!("type {expected:?} exactly to go on (Esc to stop)"))
            }
        }
        Purpose::CreateUser => {
            if form.value(2) != form.value(3) {
                return Err("the two passwords differ".to_owned());
            }
            Ok(Command::CreateUser {
                email: value(0),
                name: value(1),
                password: form.value(2).to_owned(),
            })
        }
        Purpose::SetPassword { email } => {
            if form.value(0) != form.value(1) {
                return Err("the two passwords differ".to_owned());
            }
            if form.value(0).is_empty() {
                return Err("type the new password".to_owned());
            }
            Ok(Command::SetPassword { email: email.clone(), password: form.value(0).to_owned() })
        }
        Purpose::QueueFilter { queue, section } => Ok(Command::LoadQueueJobs {
            queue: queue.clone(),
            section: *section,
            org: value(0),
            kind: value(1),
        }),
        Purpose::AuditFilter => {
            let org = Some(value(0)).filter(|o| !o.is_empty());
            let search = AuditSearch {
                actor: Some(value(1)).filter(|a| !a.is_empty()),
                action: Some(value(2)).filter(|a| !a.is_empty()),
            };
            Ok(Command::LoadAudit { org, search })
        }
    }
}

fn on_key(app: &mut App, key: KeyEvent) -> Option<Command> {
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        app.quit = true;
        return None;
    }
    if let Some(confirm) = app.confirm.take() {
        // Only `y` runs it; any other key drops the question.
        return (key.code == KeyCode::Char('y')).then_some(confirm.command);
    }
    if let Some(form) = &mut app.form {
        match form.key(key) {
            FormKey::Editing => {}
            FormKey::Cancel => app.form = None,
            FormKey::Submit => match submit(form) {
                Ok(command) => {
                    app.form = None;
                    return Some(command);
                }
                Err(why) => form.error = Some(why),
            },
        }
        return None;
    }
    if let Some(input) = &mut app.filter_input {
        match key.code {
            KeyCode::Esc => app.filter_input = None,
            KeyCode::Enter => {
                let filter = std::mem::take(input).trim().to_owned();
                app.filter_input = None;
                return match app.view {
                    View::Users => {
                        app.user_row = 0;
                        Some(Command::LoadUsers { filter })
                    }
                    View::Schedules => {
                        app.schedule_row = 0;
                        Some(Command::LoadSchedules { org: Some(filter).filter(|f| !f.is_empty()) })
                    }
                    _ => {
                        app.org_row = 0;
                        Some(Command::LoadOrgs { filter })
                    }
                };
            }
            KeyCode::Backspace => {
                input.pop();
            }
            KeyCode::Char(c) => input.push(c),
            _ => {}
        }
        return None;
    }
    if let Some(prompt) = &mut app.prompt {
        match key.code {
            KeyCode::Esc => app.prompt = None,
            KeyCode::Enter => {
                let text = std::mem::take(prompt);
                app.prompt = None;
                match text.trim() {
                    "q" | "quit" => app.quit = true,
                    other => match View::named(other) {
                        Some(view) => return app.show(view),
                        None => app.error = Some(format!("no view named {other:?}")),
                    },
                }
            }
            KeyCode::Backspace => {
                prompt.pop();
            }
            KeyCode::Char(c) => prompt.push(c),
            _ => {}
        }
        return None;
    }
    if app.help {
        if matches!(key.code, KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q')) {
            app.help = false;
        }
        return None;
    }
    if !app.details.is_empty() {
        if let Some(command) = on_detail_key(app, key) {
            return command;
        }
    } else if let Some(command) = on_view_key(app, key) {
        return command;
    }
    let rows = app.rows();
    match key.code {
        KeyCode::Char('q') => app.quit = true,
        // Back from a drill-down; otherwise abandons a slow refresh (its
        // answer will be ignored).
        KeyCode::Esc if app.details.pop().is_none() => app.loading = None,
        KeyCode::Char('?') => app.help = true,
        KeyCode::Char(':') => app.prompt = Some(String::new()),
        KeyCode::Tab => return app.show(app.view.next()),
        KeyCode::BackTab => return app.show(app.view.previous()),
        KeyCode::Char('r') => return app.reload(),
        KeyCode::Char('j') | KeyCode::Down => {
            if let Some(row) = app.row_mut() {
                *row = (*row + 1).min(rows.saturating_sub(1));
            }
        }
        KeyCode::Char('k') | KeyCode::Up => {
            if let Some(row) = app.row_mut() {
                *row = row.saturating_sub(1);
            }
        }
        KeyCode::Char('g') | KeyCode::Home => {
            if let Some(row) = app.row_mut() {
                *row = 0;
            }
        }
        KeyCode::Char('G') | KeyCode::End => {
            if let Some(row) = app.row_mut() {
                *row = rows.saturating_sub(1);
            }
        }
        _ => {}
    }
    None
}

/// The keys of the drill-down on top; `None` when the key is a common one.
fn on_detail_key(app: &mut App, key: KeyEvent) -> Option<Option<Command>> {
    let detail = app.details.last()?;
    let command = match (detail, key.code) {
        (Detail::Members(page), KeyCode::Char(c)) if role_key(c).is_some() => {
            let member = page.members.get(page.row)?;
            let role = role_key(c)?;
            if member.role == role {
                app.error = Some(format!("{} is already {}", member.email, role.as_str()));
                return Some(None);
            }
            app.confirm = Some(Confirm {
                question: format!("Make {} {} of {}? (y/n)", member.email, role.as_str(), page.org),
                command: Command::SetRole { org: page.org.clone(), user: member.user_id, role },
            });
            None
        }
        (Detail::OrgFlags { page, row }, KeyCode::Char(c @ (' ' | 'x'))) => {
            App::flag_command(page, *row, 1, c == 'x')
        }
        (Detail::User(user), KeyCode::Char('x')) => {
            let (question, command) = if let Some(session) = user.sessions.get(user.row) {
                if session.revoked_at.is_some() {
                    app.error = Some("that session has already ended".to_owned());
                    return Some(None);
                }
                (
                    format!("End session {} of {}? (y/n)", short_id(session.id), user.user.email),
                    Command::RevokeSession { user: user.user.id, session: session.id },
                )
            } else {
                let (slug, org, key) = user.keys.get(user.row - user.sessions.len())?;
                if key.revoked_at.is_some() {
                    app.error = Some("that API key is already revoked".to_owned());
                    return Some(None);
                }
                (
                    format!("Revoke API key {} ({}) of {slug}? (y/n)", key.prefix, key.name),
                    Command::RevokeApiKey { org: *org, key: key.id },
                )
            };
            app.confirm = Some(Confirm { question, command });
            None
        }
        (Detail::Worker { id, row }, KeyCode::Enter) => {
            let job = app.worker_jobs(id).get(*row)?;
            match job.org {
                Some(org) => Some(Command::LoadJob { org: OrgRef::Id(org), id: job.id }),
                None => {
                    app.error = Some("a platform job has no record to show".to_owned());
                    None
                }
            }
        }
        (Detail::Queue(page), KeyCode::Enter) => {
            let (slug, job) = page.jobs.get(page.row)?;
            match slug {
                Some(slug) => {
                    Some(Command::LoadJob { org: OrgRef::Slug(slug.clone()), id: job.id })
                }
                None => {
                    app.error = Some("a platform job has no record to show".to_owned());
                    None
                }
            }
        }
        (Detail::Queue(page), KeyCode::Char('f')) => {
            let i = Section::ALL.iter().position(|s| *s == page.section).unwrap_or(0);
            Some(Command::LoadQueueJobs {
                queue: page.queue.clone(),
                section: Section::ALL[(i + 1) % Section::ALL.len()],
                org: page.org.clone(),
                kind: page.kind.clone(),
            })
        }
        (Detail::Queue(page), KeyCode::Char('/')) => {
            let form = Form::new(
                format!("filter {} jobs of {}", page.section, page.queue),
                Purpose::QueueFilter { queue: page.queue.clone(), section: page.section },
                &[("org (slug)", &page.org, false), ("kind", &page.kind, false)],
            );
            app.open(form);
            None
        }
        (Detail::Queue(_) | Detail::Job(_), KeyCode::Char('R')) => {
            app.ask_job(JobAction::Retry);
            None
        }
        (Detail::Queue(_) | Detail::Job(_), KeyCode::Char('c')) => {
            app.ask_job(JobAction::Cancel);
            None
        }
        (Detail::Queue(_) | Detail::Job(_), KeyCode::Char('d')) => {
            app.ask_job(JobAction::Discard);
            None
        }
        (Detail::Job(_), KeyCode::Char('k') | KeyCode::Up) => {
            // Scroll up the log (away from the tail).
            if let Some(Detail::Job(job)) = app.details.last_mut() {
                job.scroll = (job.scroll + 1).min(job.logs.len().saturating_sub(1));
            }
            None
        }
        (Detail::Job(_), KeyCode::Char('j') | KeyCode::Down) => {
            if let Some(Detail::Job(job)) = app.details.last_mut() {
                job.scroll = job.scroll.saturating_sub(1);
            }
            None
        }
        (Detail::Job(_), KeyCode::Char('G') | KeyCode::End) => {
            if let Some(Detail::Job(job)) = app.details.last_mut() {
                job.scroll = 0;
            }
            None
        }
        _ => return None,
    };
    Some(command)
}

/// The keys of the view itself; `None` when the key is a common one.
fn on_view_key(app: &mut App, key: KeyEvent) -> Option<Option<Command>> {
    let command = match (app.view, key.code) {
        (View::Orgs, KeyCode::Enter) => {
            let org = app.selected_org()?.slug.to_string();
            app.view = View::Jobs;
            app.job_row = 0;
            Some(Command::LoadJobs { org, status: None })
        }
        (View::Orgs, KeyCode::Char('/')) => {
            app.filter_input = Some(app.org_filter());
            None
        }
        (View::Orgs, KeyCode::Char('o')) => {
            app.org_sort = app.org_sort.next();
            if let Some(page) = &mut app.orgs {
                app.org_sort.apply(page);
            }
            app.notice = Some(format!("orgs by {}", app.org_sort.name()));
            None
        }
        (View::Orgs, KeyCode::Char(c @ ('s' | 'u'))) => {
            ask_status(app, c == 's');
            None
        }
        (View::Orgs, KeyCode::Char('n')) => {
            app.open(Form::new(
                "create an org",
                Purpose::CreateOrg,
                &[("name", "", false), ("slug (empty: from the name)", "", false)],
            ));
            None
        }
        (View::Orgs, KeyCode::Char('e')) => {
            let org = app.selected_org()?;
            let form = Form::new(
                format!("rename {}", org.slug),
                Purpose::RenameOrg { slug: org.slug.to_string() },
                &[("name", &org.name, false)],
            );
            app.open(form);
            None
        }
        (View::Orgs, KeyCode::Char('D')) => {
            let org = app.selected_org()?;
            if org.status == OrgStatus::Deleted {
                app.error = Some(format!("{} is already deleted (P purges it)", org.slug));
                return Some(None);
            }
            let slug = org.slug.to_string();
            let title = format!("soft-delete {slug}: its API stops; P purges its data later");
            app.typed_confirm(title, &slug.clone(), Command::DeleteOrg { slug });
            None
        }
        (View::Orgs, KeyCode::Char('P')) => {
            let org = app.selected_org()?;
            if org.status != OrgStatus::Deleted {
                app.error =
                    Some(format!("{} is {}: soft-delete it first (D)", org.slug, org.status));
                return Some(None);
            }
            let slug = org.slug.to_string();
            let title = format!("PURGE {slug}: drops its schema and data for good");
            app.typed_confirm(title, &slug.clone(), Command::PurgeOrg { slug });
            None
        }
        (View::Orgs, KeyCode::Char('m')) => {
            Some(Command::LoadMembers { org: app.selected_org()?.slug.to_string() })
        }
        (View::Orgs, KeyCode::Char('F')) => {
            Some(Command::LoadOrgFlags { org: app.selected_org()?.slug.to_string() })
        }
        (View::Users, KeyCode::Char('/')) => {
            app.filter_input =
                Some(app.users.as_ref().map(|p| p.filter.clone()).unwrap_or_default());
            None
        }
        (View::Users, KeyCode::Enter) => Some(Command::LoadUser { id: app.selected_user()?.id }),
        (View::Users, KeyCode::Char('n')) => {
            app.open(Form::new(
                "create a user",
                Purpose::CreateUser,
                &[
                    ("email", "", false),
                    ("name", "", false),
                    ("password", "", true),
                    ("password again", "", true),
                ],
            ));
            None
        }
        (View::Users, KeyCode::Char('p')) => {
            let email = app.selected_user()?.email.clone();
            app.open(Form::new(
                format!("new password for {email} (ends their sessions)"),
                Purpose::SetPassword { email },
                &[("password", "", true), ("password again", "", true)],
            ));
            None
        }
        (View::Users, KeyCode::Char(c @ ('D' | 'A'))) => {
            let user = app.selected_user()?;
            let (action, question) = if c == 'D' {
                if !user.is_active {
                    app.error = Some(format!("{} is already inactive", user.email));
                    return Some(None);
                }
                (
                    UserAction::Deactivate,
                    format!("Deactivate {}? They are signed out everywhere. (y/n)", user.email),
                )
            } else {
                if user.is_platform_admin {
                    app.error = Some(format!("{} is already a platform admin", user.email));
                    return Some(None);
                }
                (
                    UserAction::Promote,
                    format!(
                        "Make {} a platform admin (every org, this console)? (y/n)",
                        user.email
                    ),
                )
            };
            let command = Command::User { email: user.email.clone(), action };
            app.confirm = Some(Confirm { question, command });
            None
        }
        (View::Jobs, KeyCode::Enter) => {
            let page = app.jobs.as_ref()?;
            let job = page.jobs.get(app.job_row)?;
            Some(Command::LoadJob { org: OrgRef::Slug(page.org.clone()), id: job.id })
        }
        (View::Jobs, KeyCode::Char('f')) => {
            let page = app.jobs.as_ref()?;
            let next = match page.status {
                None => Some(JobStatus::ALL[0]),
                Some(current) => {
                    let i = JobStatus::ALL.iter().position(|s| *s == current).unwrap_or(0);
                    JobStatus::ALL.get(i + 1).copied()
                }
            };
            app.job_row = 0;
            Some(Command::LoadJobs { org: page.org.clone(), status: next })
        }
        (View::Jobs, KeyCode::Char('R')) => {
            app.ask_job(JobAction::Retry);
            None
        }
        (View::Jobs, KeyCode::Char('c')) => {
            app.ask_job(JobAction::Cancel);
            None
        }
        (View::Jobs, KeyCode::Char('d')) => {
            app.ask_job(JobAction::Discard);
            None
        }
        (View::Flags, KeyCode::Char(c @ (' ' | 'x'))) => {
            App::flag_command(app.flags.as_ref()?, app.flag_row, app.flag_col, c == 'x')
        }
        (View::Flags, KeyCode::Char('l') | KeyCode::Right) => {
            let columns = app.flags.as_ref().map_or(0, |p| p.orgs.len());
            app.flag_col = (app.flag_col + 1).min(columns);
            None
        }
        (View::Flags, KeyCode::Char('h') | KeyCode::Left) => {
            app.flag_col = app.flag_col.saturating_sub(1);
            None
        }
        (View::Queues, KeyCode::Enter) => Some(Command::LoadQueueJobs {
            queue: app.selected_queue()?.name.to_string(),
            section: Section::Waiting,
            org: String::new(),
            kind: String::new(),
        }),
        (View::Queues, KeyCode::Char('p')) => {
            let queue = app.selected_queue()?;
            let name = queue.name.to_string();
            if queue.paused {
                Some(Command::Queue { queue: name, action: QueueAction::Resume })
            } else {
                app.confirm = Some(Confirm {
                    question: format!("Pause queue {name}? Workers stop fetching from it. (y/n)"),
                    command: Command::Queue { queue: name, action: QueueAction::Pause },
                });
                None
            }
        }
        (View::Queues, KeyCode::Char('P')) => {
            let queue = app.selected_queue()?;
            app.confirm = Some(Confirm {
                question: format!(
                    "Purge queue {}? Its {} waiting job(s) are cancelled and never run. (y/n)",
                    queue.name, queue.depth
                ),
                command: Command::Queue {
                    queue: queue.name.to_string(),
                    action: QueueAction::Purge,
                },
            });
            None
        }
        (View::Workers, KeyCode::Enter) => {
            let id = app.selected_worker()?.id.clone();
            app.details.push(Detail::Worker { id, row: 0 });
            None
        }
        (View::Workers, KeyCode::Char(c @ ('+' | '-'))) => {
            let worker = app.selected_worker()?;
            if worker.stale {
                app.error = Some(format!("{} is stale: nothing answers", worker.id));
                return Some(None);
            }
            let target = if c == '+' {
                worker.concurrency + 1
            } else {
                worker.concurrency.saturating_sub(1)
            };
            if target == 0 {
                app.error = Some("a worker runs at least one job at once (S stops it)".to_owned());
                return Some(None);
            }
            Some(Command::Worker { id: worker.id.clone(), concurrency: Some(target as usize) })
        }
        (View::Workers, KeyCode::Char('S')) => {
            let worker = app.selected_worker()?;
            app.confirm = Some(Confirm {
                question: format!(
                    "Shut down worker {}? It stops fetching, finishes or hands back its {} running job(s). (y/n)",
                    worker.id, worker.in_flight
                ),
                command: Command::Worker { id: worker.id.clone(), concurrency: None },
            });
            None
        }
        (View::Schedules, KeyCode::Char('/')) => {
            app.filter_input =
                Some(app.schedules.as_ref().and_then(|p| p.org.clone()).unwrap_or_default());
            None
        }
        (View::Schedules, KeyCode::Char(c @ ('e' | 'N'))) => {
            let page = app.schedules.as_ref()?;
            let org = page.org.clone()?;
            let schedule = page.schedules.get(app.schedule_row)?;
            let (action, verb) = match (c, schedule.enabled) {
                ('N', _) => (ScheduleAction::RunNow, "Run"),
                (_, true) => (ScheduleAction::Disable, "Disable"),
                (_, false) => (ScheduleAction::Enable, "Enable"),
            };
            app.confirm = Some(Confirm {
                question: format!(
                    "{verb} schedule {} of {org}{}? (y/n)",
                    schedule.name,
                    if c == 'N' { " now" } else { "" }
                ),
                command: Command::Schedule { org, id: schedule.id, action },
            });
            None
        }
        (View::Audit, KeyCode::Char('/')) => {
            let (org, actor, action) = app.audit.as_ref().map_or_else(Default::default, |p| {
                (
                    p.org.clone().unwrap_or_default(),
                    p.search.actor.clone().unwrap_or_default(),
                    p.search.action.clone().unwrap_or_default(),
                )
            });
            app.open(Form::new(
                "audit events (empty org: the platform's)",
                Purpose::AuditFilter,
                &[
                    ("org (slug)", &org, false),
                    ("actor contains", &actor, false),
                    ("action starts with", &action, false),
                ],
            ));
            None
        }
        _ => return None,
    };
    Some(command)
}

/// The last 8 characters of a job id (its random part: the first ones
/// are a timestamp, shared by jobs enqueued together).
pub fn short_id(id: uuid::Uuid) -> String {
    let text = id.simple().to_string();
    text[text.len() - 8..].to_owned()
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or(String::new(), |c| c.to_uppercase().chain(chars).collect())
}
