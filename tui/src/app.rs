//! The console's state and the one function that changes it.
//!
//! The Elm architecture: [`App`] is plain data, [`update`] applies a
//! [`Message`] to it and may ask for a [`Command`] (I/O, run elsewhere,
//! whose outcome comes back as another message); nothing here touches the
//! terminal, PostgreSQL or Redis, so every key press is unit-testable.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use orgstack::jobs::worker::WorkerInfo;
use orgstack::queue::QueueStats;

/// How many one-second throughput samples the dashboard keeps (10 minutes).
pub const HISTORY: usize = 600;

/// The views, in `Tab` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Dashboard,
    Queues,
    Workers,
}

impl View {
    pub const ALL: [View; 3] = [View::Dashboard, View::Queues, View::Workers];

    pub fn name(self) -> &'static str {
        match self {
            View::Dashboard => "dashboard",
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
            View::Queues | View::Workers => {
                &[("j/k, ↑/↓", "move"), ("g/G", "first/last"), ("r", "refresh now")]
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
}

impl Snapshot {
    /// Jobs processed and failed over all live workers (counters since each
    /// worker started).
    fn processed(&self) -> (u64, u64) {
        self.workers.iter().fold((0, 0), |(p, f), w| (p + w.processed, f + w.failed))
    }
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
}

/// I/O that [`update`] asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Read a fresh [`Snapshot`]; answer with [`Message::Loaded`].
    Refresh { request: u64 },
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
        let Some(snapshot) = &self.snapshot else { return 0 };
        match self.view {
            View::Dashboard => 0,
            View::Queues => snapshot.queues.len(),
            View::Workers => snapshot.workers.len(),
        }
    }

    fn row_mut(&mut self) -> Option<&mut usize> {
        match self.view {
            View::Dashboard => None,
            View::Queues => Some(&mut self.queue_row),
            View::Workers => Some(&mut self.worker_row),
        }
    }

    fn clamp_rows(&mut self) {
        let (queues, workers) =
            self.snapshot.as_ref().map_or((0, 0), |s| (s.queues.len(), s.workers.len()));
        self.queue_row = self.queue_row.min(queues.saturating_sub(1));
        self.worker_row = self.worker_row.min(workers.saturating_sub(1));
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

fn on_key(app: &mut App, key: KeyEvent) -> Option<Command> {
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        app.quit = true;
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
                        Some(view) => app.view = view,
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
        KeyCode::Tab => app.view = app.view.next(),
        KeyCode::BackTab => app.view = app.view.previous(),
        KeyCode::Char('r') => return app.refresh(),
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
