//! The console's state and the one function that changes it.
//!
//! The Elm architecture: [`App`] is plain data, [`update`] applies a
//! [`Message`] to it and may ask for a [`Command`] (I/O, run elsewhere,
//! whose outcome comes back as another message); nothing here touches the
//! terminal, PostgreSQL or Redis, so every key press is unit-testable.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use orgstack::flags::FlagState;
use orgstack::jobs::worker::WorkerInfo;
use orgstack::jobs::{JobStatus, JobSummary};
use orgstack::queue::QueueStats;
use tenancy::{Org, OrgId, OrgStatus};

/// How many one-second throughput samples the dashboard keeps (10 minutes).
pub const HISTORY: usize = 600;

/// Orgs shown per filter: a page from the database, never the whole table.
pub const ORGS_PAGE: i64 = 500;

/// The views, in `Tab` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Dashboard,
    Orgs,
    Jobs,
    Flags,
    Queues,
    Workers,
}

impl View {
    pub const ALL: [View; 6] =
        [View::Dashboard, View::Orgs, View::Jobs, View::Flags, View::Queues, View::Workers];

    pub fn name(self) -> &'static str {
        match self {
            View::Dashboard => "dashboard",
            View::Orgs => "orgs",
            View::Jobs => "jobs",
            View::Flags => "flags",
            View::Queues => "queues",
            View::Workers => "workers",
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
                ("s", "suspend the org"),
                ("u", "resume (unsuspend) the org"),
                ("Enter", "the org's jobs"),
                ("r", "reload"),
            ],
            View::Jobs => &[
                ("j/k, ↑/↓", "move"),
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
                ("+ / -", "one more / one fewer job at once (pool grow/shrink)"),
                ("S", "shut the worker down gracefully"),
                ("r", "refresh now"),
            ],
            View::Queues => &[("j/k, ↑/↓", "move"), ("g/G", "first/last"), ("r", "refresh now")],
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
}

impl Snapshot {
    /// Jobs processed and failed over all live workers (counters since each
    /// worker started).
    fn processed(&self) -> (u64, u64) {
        self.workers.iter().fold((0, 0), |(p, f), w| (p + w.processed, f + w.failed))
    }
}

/// The orgs matching a filter, with the org lineage's newest version (an
/// org below it is a laggard).
#[derive(Debug, Clone, PartialEq)]
pub struct OrgPage {
    pub filter: String,
    pub orgs: Vec<Org>,
    pub latest_version: i32,
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

/// The console's whole state.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub operator: String,
    pub view: View,
    pub snapshot: Option<Snapshot>,
    /// Jobs finished per second over the last [`HISTORY`] seconds.
    pub throughput: VecDeque<u64>,
    /// The selected row of the queues and workers tables.
    pub queue_row: usize,
    pub worker_row: usize,
    pub org_row: usize,
    /// The orgs view's page, once loaded.
    pub orgs: Option<OrgPage>,
    /// The jobs view's page (of the org chosen in the orgs view).
    pub jobs: Option<JobPage>,
    pub job_row: usize,
    /// The flags matrix, once loaded, and its cursor (column 0 is global).
    pub flags: Option<FlagPage>,
    pub flag_row: usize,
    pub flag_col: usize,
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
    /// A page of jobs arrived.
    JobsLoaded(Result<JobPage, String>),
    /// The flags matrix arrived.
    FlagsLoaded(Result<FlagPage, String>),
    /// An action finished: what it did, or why it failed.
    Done(Result<String, String>),
}

/// I/O that [`update`] asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Read a fresh [`Snapshot`]; answer with [`Message::Loaded`].
    Refresh { request: u64 },
    /// Read the orgs matching `filter`; answer with [`Message::OrgsLoaded`].
    LoadOrgs { filter: String },
    /// Suspend (or resume) an org, audited with the operator as actor;
    /// answer with [`Message::Done`].
    SetOrgStatus { slug: String, suspend: bool },
    /// Read the newest jobs of `org`; answer with [`Message::JobsLoaded`].
    LoadJobs { org: String, status: Option<JobStatus> },
    /// Retry, cancel or discard a job, as the operator; answer with
    /// [`Message::Done`].
    Job { org: String, id: uuid::Uuid, action: JobAction },
    /// Ask a worker to shut down gracefully (`concurrency` None) or to run
    /// that many jobs at once; answer with [`Message::Done`].
    Worker { id: String, concurrency: Option<usize> },
    /// Read every flag and the first orgs; answer with [`Message::FlagsLoaded`].
    LoadFlags,
    /// Set a flag globally (`org` None) or for one org, or clear that value
    /// (`enabled` None); answer with [`Message::Done`].
    SetFlag { name: String, org: Option<(OrgId, String)>, enabled: Option<bool> },
}

impl App {
    pub fn new(operator: impl Into<String>) -> App {
        App {
            operator: operator.into(),
            view: View::Dashboard,
            snapshot: None,
            throughput: VecDeque::with_capacity(HISTORY),
            queue_row: 0,
            worker_row: 0,
            org_row: 0,
            orgs: None,
            jobs: None,
            job_row: 0,
            flags: None,
            flag_row: 0,
            flag_col: 0,
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

    fn rows(&self) -> usize {
        if self.view == View::Orgs {
            return self.orgs.as_ref().map_or(0, |p| p.orgs.len());
        }
        if self.view == View::Flags {
            return self.flags.as_ref().map_or(0, |p| p.flags.len());
        }
        if self.view == View::Jobs {
            return self.jobs.as_ref().map_or(0, |p| p.jobs.len());
        }
        let Some(snapshot) = &self.snapshot else { return 0 };
        match self.view {
            View::Dashboard | View::Orgs | View::Jobs | View::Flags => 0,
            View::Queues => snapshot.queues.len(),
            View::Workers => snapshot.workers.len(),
        }
    }

    fn row_mut(&mut self) -> Option<&mut usize> {
        match self.view {
            View::Dashboard => None,
            View::Orgs => Some(&mut self.org_row),
            View::Flags => Some(&mut self.flag_row),
            View::Jobs => Some(&mut self.job_row),
            View::Queues => Some(&mut self.queue_row),
            View::Workers => Some(&mut self.worker_row),
        }
    }

    fn clamp_rows(&mut self) {
        let (queues, workers) =
            self.snapshot.as_ref().map_or((0, 0), |s| (s.queues.len(), s.workers.len()));
        self.queue_row = self.queue_row.min(queues.saturating_sub(1));
        self.worker_row = self.worker_row.min(workers.saturating_sub(1));
        let orgs = self.orgs.as_ref().map_or(0, |p| p.orgs.len());
        self.org_row = self.org_row.min(orgs.saturating_sub(1));
        let jobs = self.jobs.as_ref().map_or(0, |p| p.jobs.len());
        self.job_row = self.job_row.min(jobs.saturating_sub(1));
        let (flags, columns) =
            self.flags.as_ref().map_or((0, 0), |p| (p.flags.len(), p.orgs.len()));
        self.flag_row = self.flag_row.min(flags.saturating_sub(1));
        self.flag_col = self.flag_col.min(columns);
    }

    /// The worker under the cursor in the workers view.
    pub fn selected_worker(&self) -> Option<&WorkerInfo> {
        self.snapshot.as_ref().and_then(|s| s.workers.get(self.worker_row))
    }

    /// The org under the cursor in the orgs view.
    pub fn selected_org(&self) -> Option<&Org> {
        self.orgs.as_ref().and_then(|p| p.orgs.get(self.org_row))
    }

    /// Switches to `view`, loading the orgs the first time they are shown.
    fn show(&mut self, view: View) -> Option<Command> {
        self.view = view;
        if view == View::Orgs && self.orgs.is_none() {
            return Some(Command::LoadOrgs { filter: String::new() });
        }
        if view == View::Flags && self.flags.is_none() {
            return Some(Command::LoadFlags);
        }
        None
    }

    /// The command for the flags cursor's cell: flip the value in force
    /// there (set explicitly), or clear an explicit value (`clear`).
    fn flag_command(&self, clear: bool) -> Option<Command> {
        let page = self.flags.as_ref()?;
        let state = page.flags.get(self.flag_row)?;
        let cell = page.cell(self.flag_row, self.flag_col)?;
        let org = match self.flag_col {
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

    /// Asks before `action` on the job under the cursor, if it applies.
    fn ask_job(&mut self, action: JobAction) {
        let Some(page) = &self.jobs else { return };
        let Some(job) = page.jobs.get(self.job_row) else { return };
        if !action.allowed(job.status) {
            self.error = Some(format!("cannot {} a {} job", action.verb(), job.status));
            return;
        }
        self.confirm = Some(Confirm {
            question: format!(
                "{} {} job {} of {}? (y/n)",
                capitalized(action.verb()),
                job.kind,
                short_id(job.id),
                page.org
            ),
            command: Command::Job { org: page.org.clone(), id: job.id, action },
        });
    }

    fn org_filter(&self) -> String {
        self.orgs.as_ref().map(|p| p.filter.clone()).unwrap_or_default()
    }
}

/// Applies `message` to `app`; returns the I/O to run, if any.
pub fn update(app: &mut App, message: Message) -> Option<Command> {
    match message {
        Message::Tick => {
            app.ticks += 1;
            app.refresh()
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
        Message::OrgsLoaded(Ok(page)) => {
            app.orgs = Some(page);
            app.clamp_rows();
            None
        }
        Message::JobsLoaded(Ok(page)) => {
            app.jobs = Some(page);
            app.clamp_rows();
            None
        }
        Message::JobsLoaded(Err(why)) => {
            app.error = Some(why);
            None
        }
        Message::FlagsLoaded(Ok(page)) => {
            app.flags = Some(page);
            app.clamp_rows();
            None
        }
        Message::FlagsLoaded(Err(why)) => {
            app.error = Some(why);
            None
        }
        Message::OrgsLoaded(Err(why)) => {
            app.error = Some(why);
            None
        }
        Message::Done(Ok(what)) => {
            app.notice = Some(what);
            app.error = None;
            match app.view {
                View::Flags => Some(Command::LoadFlags),
                View::Jobs => app.reload_jobs(),
                View::Dashboard | View::Queues | View::Workers => app.refresh(),
                _ => Some(Command::LoadOrgs { filter: app.org_filter() }),
            }
        }
        Message::Done(Err(why)) => {
            app.error = Some(why);
            None
        }
        Message::Key(key) => on_key(app, key),
    }
}

/// Adds the jobs finished since the previous snapshot to the history. A
/// worker that left (or restarted) makes the sum fall: counted as zero.
fn record_throughput(app: &mut App, next: &Snapshot) {
    let Some(previous) = &app.snapshot else { return };
    let secs = (next.taken_at - previous.taken_at).num_milliseconds() as f64 / 1000.0;
    if secs <= 0.0 {
        return;
    }
    let (before, _) = previous.processed();
    let (after, _) = next.processed();
    let rate = (after.saturating_sub(before) as f64 / secs).round() as u64;
    if app.throughput.len() == HISTORY {
        app.throughput.pop_front();
    }
    app.throughput.push_back(rate);
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

fn on_key(app: &mut App, key: KeyEvent) -> Option<Command> {
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        app.quit = true;
        return None;
    }
    if let Some(confirm) = app.confirm.take() {
        // Only `y` runs it; any other key drops the question.
        return (key.code == KeyCode::Char('y')).then_some(confirm.command);
    }
    if let Some(input) = &mut app.filter_input {
        match key.code {
            KeyCode::Esc => app.filter_input = None,
            KeyCode::Enter => {
                let filter = std::mem::take(input).trim().to_owned();
                app.filter_input = None;
                app.org_row = 0;
                return Some(Command::LoadOrgs { filter });
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
    let rows = app.rows();
    match key.code {
        KeyCode::Char('q') => app.quit = true,
        KeyCode::Esc => {
            // Abandons a slow refresh; its answer will be ignored.
            app.loading = None;
        }
        KeyCode::Char('?') => app.help = true,
        KeyCode::Char(':') => app.prompt = Some(String::new()),
        KeyCode::Tab => return app.show(app.view.next()),
        KeyCode::BackTab => return app.show(app.view.previous()),
        KeyCode::Char('r') if app.view == View::Orgs => {
            return Some(Command::LoadOrgs { filter: app.org_filter() });
        }
        KeyCode::Char('r') if app.view == View::Flags => return Some(Command::LoadFlags),
        KeyCode::Char('r') if app.view == View::Jobs => return app.reload_jobs(),
        KeyCode::Enter if app.view == View::Orgs => {
            let org = app.selected_org()?.slug.to_string();
            app.view = View::Jobs;
            app.job_row = 0;
            return Some(Command::LoadJobs { org, status: None });
        }
        KeyCode::Char('f') if app.view == View::Jobs => {
            let page = app.jobs.as_ref()?;
            let next = match page.status {
                None => Some(JobStatus::ALL[0]),
                Some(current) => {
                    let i = JobStatus::ALL.iter().position(|s| *s == current).unwrap_or(0);
                    JobStatus::ALL.get(i + 1).copied()
                }
            };
            app.job_row = 0;
            return Some(Command::LoadJobs { org: page.org.clone(), status: next });
        }
        KeyCode::Char(c @ ('+' | '-')) if app.view == View::Workers => {
            let worker = app.selected_worker()?;
            if worker.stale {
                app.error = Some(format!("{} is stale: nothing answers", worker.id));
                return None;
            }
            let target = if c == '+' {
                worker.concurrency + 1
            } else {
                worker.concurrency.saturating_sub(1)
            };
            if target == 0 {
                app.error = Some("a worker runs at least one job at once (S stops it)".to_owned());
                return None;
            }
            return Some(Command::Worker {
                id: worker.id.clone(),
                concurrency: Some(target as usize),
            });
        }
        KeyCode::Char('S') if app.view == View::Workers => {
            let worker = app.selected_worker()?;
            app.confirm = Some(Confirm {
                question: format!(
                    "Shut down worker {}? It stops fetching, finishes or hands back its {} running job(s). (y/n)",
                    worker.id, worker.in_flight
                ),
                command: Command::Worker { id: worker.id.clone(), concurrency: None },
            });
        }
        KeyCode::Char('R') if app.view == View::Jobs => app.ask_job(JobAction::Retry),
        KeyCode::Char('c') if app.view == View::Jobs => app.ask_job(JobAction::Cancel),
        KeyCode::Char('d') if app.view == View::Jobs => app.ask_job(JobAction::Discard),
        KeyCode::Char('r') => return app.refresh(),
        KeyCode::Char(' ') if app.view == View::Flags => return app.flag_command(false),
        KeyCode::Char('x') if app.view == View::Flags => return app.flag_command(true),
        KeyCode::Char('l') | KeyCode::Right if app.view == View::Flags => {
            let columns = app.flags.as_ref().map_or(0, |p| p.orgs.len());
            app.flag_col = (app.flag_col + 1).min(columns);
        }
        KeyCode::Char('h') | KeyCode::Left if app.view == View::Flags => {
            app.flag_col = app.flag_col.saturating_sub(1);
        }
        KeyCode::Char('/') if app.view == View::Orgs => app.filter_input = Some(app.org_filter()),
        KeyCode::Char(c @ ('s' | 'u')) if app.view == View::Orgs => ask_status(app, c == 's'),
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
