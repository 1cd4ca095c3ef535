//! `admin-tui` at scale, on the seeded data set (`scripts/seed-scale.sh`:
//! 10,000 orgs, 100,000 users, 1,000,000 jobs):
//!
//! 1. time to the first full frame: the real binary started in `tmux` at
//!    160×48 until the pane shows the dashboard's data (the user count),
//!    beside the tmux harness's own overhead; and the same steps in this
//!    process (configuration, `connect_now`, operator check, the first
//!    refresh through `effects::run`, `ui::view` into a `TestBackend`),
//!    timed one by one;
//! 2. per-frame render time of every view (`View::ALL`) with its data
//!    loaded, and of the drill-downs met on the way (an org's members, a
//!    job with its log, a queue's dead jobs across orgs, ...), at 80×24
//!    and 160×48;
//! 3. the time of every load command the views issued on that tour
//!    (dashboard refresh, org and user filters, the jobs of the org with
//!    the most jobs by status, the flags matrix, queue sections, audit
//!    searches, ...), so a stall shows.
//!
//! Run: `cargo bench -p orgstack-tests --bench console [-- --frames N
//! --runs N --loads N --history N --skip-tmux]` (or `scripts/bench-console.sh
//! --frames-only`). Reads `SCALE_DATABASE_URL`, `SCALE_REDIS_URL`,
//! `SCALE_REDIS_PREFIX` (see `orgstack_tests::scale`); writes nothing.
//!
//! The views are opened the way an operator opens them (Tab, `/` filters,
//! Enter, `f`, `m`, Esc), through `update` and `effects::run`, so views
//! added later are measured too; only reads are ever run.

use std::collections::VecDeque;
use std::process::Command as Process;
use std::time::{Duration, Instant};

use admin_tui::app::{App, Command, Message, View, update};
use admin_tui::{effects, ui};
use anyhow::Context;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use orgstack::accounts::{Actor, Email};
use orgstack::http::AppState;
use orgstack_tests::scale::{self, ScaleEnv, summary};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A view is "stalled" past these (a load, a frame).
const LOAD_BUDGET_MS: f64 = 100.0;
const FRAME_BUDGET_MS: f64 = 16.0;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    orgstack::alloc::tune();
    let args: Vec<String> = std::env::args().collect();
    let frames = arg(&args, "--frames", 2000);
    let runs = arg(&args, "--runs", 10);
    let loads = arg(&args, "--loads", 20);
    let history = arg(&args, "--history", 120);
    let env = ScaleEnv::from_env();

    let state = orgstack::app::connect_now(env.config(&[])?)
        .await
        .context("the scale database (run scripts/seed-scale.sh first)")?;
    let (orgs, users) = about(&state).await?;

    if !args.iter().any(|a| a == "--skip-tmux") {
        first_frame_tmux(&env, runs, users)?;
    }
    first_frame_in_process(&env, runs, users).await?;

    let operator = operator(&state, scale::OPERATOR).await?;
    let mut console = Console::new(state.clone(), operator);
    let started = Instant::now();
    console.tour(history, orgs).await?;
    println!(
        "\nopened every view as an operator would ({:.1} s, {history} dashboard refreshes for the throughput history)",
        started.elapsed().as_secs_f64()
    );
    console.frames(frames)?;
    console.loads(loads).await?;
    println!("\nload average at the end: {}", load_average());
    Ok(())
}

/// Prints what the data set holds and the machine's load; returns the
/// number of orgs and of users (what the dashboard shows once loaded).
async fn about(state: &AppState) -> anyhow::Result<(i64, i64)> {
    let (orgs, users): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM public.orgs), (SELECT count(*) FROM public.users)",
    )
    .fetch_one(&state.db)
    .await?;
    let jobs: Option<f64> = sqlx::query_scalar(
        "SELECT sum(c.reltuples)::float8 FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relname = 'jobs' AND c.relkind = 'r' AND n.nspname LIKE 'org\\_%'",
    )
    .fetch_one(&state.db)
    .await?;
    let version: String = sqlx::query_scalar("SHOW server_version").fetch_one(&state.db).await?;
    println!(
        "data set: {orgs} orgs, {users} users, about {:.0} jobs (planner estimate); PostgreSQL {version}",
        jobs.unwrap_or(0.0)
    );
    println!(
        "machine: {} CPUs, load average {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average()
    );
    Ok((orgs, users))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The operator, checked as `admin-tui` checks it.
async fn operator(state: &AppState, email: &str) -> anyhow::Result<Actor> {
    let parsed = Email::parse(email).map_err(|why| anyhow::anyhow!("{email}: {why}"))?;
    match state.accounts.user_by_email(&parsed).await? {
        Some(user) if user.is_active && user.is_platform_admin => {
            Ok(Actor::User { id: user.id, email: user.email })
        }
        _ => anyhow::bail!("{email} is not an active platform admin (run scripts/seed-scale.sh)"),
    }
}

/// Whether `screen` shows `count` (as digits, with or without separators).
fn shows_count(screen: &str, count: i64) -> bool {
    let plain = count.to_string();
    let mut grouped = String::new();
    for (i, c) in plain.chars().enumerate() {
        if i > 0 && (plain.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    screen.contains(&plain) || screen.contains(&grouped)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The real binary in tmux, timed from `tmux new-session` until the pane
/// shows the user count; and a trivial program the same way, for what
/// tmux and the polling cost by themselves.
fn first_frame_tmux(env: &ScaleEnv, runs: usize, users: i64) -> anyhow::Result<()> {
    let bin = env!("CARGO_BIN_EXE_admin-tui-cli");
    let dir = tempfile::tempdir()?;
    let hold = format!("console-bench-hold-{}", std::process::id());
    // A session that outlives the runs, so each run starts a window on a
    // running tmux server (not the server itself).
    tmux(&["new-session", "-d", "-s", &hold, "-x", "160", "-y", "48", "sleep 3600"])?;
    let mut vars: Vec<String> = env.vars().into_iter().map(|(k, v)| format!("{k}='{v}'")).collect();
    vars.push(format!("PATH='{}'", std::env::var("PATH").unwrap_or_default()));
    vars.push("TERM=xterm-256color".to_owned());
    let console = format!(
        "cd '{}' && exec env -i {} '{bin}' --as '{}'",
        dir.path().display(),
        vars.join(" "),
        scale::OPERATOR
    );
    let trivial = "printf 'PostgreSQL %s' 0; sleep 60".to_owned();
    let result = (|| {
        let mut baseline = Vec::new();
        let mut real = Vec::new();
        for run in 0..runs + 1 {
            let base = time_until_shown(&trivial, |s| s.contains("PostgreSQL 0"))?;
            let full =
                time_until_shown(&console, |s| s.contains("PostgreSQL") && shows_count(s, users))?;
            // The first run loads the binary from disk: left out.
            if run > 0 {
                baseline.push(base);
                real.push(full);
            }
        }
        let (b50, b99, _) = summary(&mut baseline);
        let (r50, _, rmax) = summary(&mut real);
        let min = real.first().copied().unwrap_or(0.0);
        println!("\n## Time to first full frame (real admin-tui in tmux, 160×48, {runs} runs)\n");
        println!("| what | median | min | max |\n| --- | --- | --- | --- |");
        println!(
            "| `admin-tui` start to dashboard data on screen | **{r50:.0} ms** | {min:.0} ms | {rmax:.0} ms |"
        );
        println!(
            "| tmux harness alone (new window, trivial program, polling) | {b50:.0} ms | | {b99:.0} ms |"
        );
        anyhow::Ok(())
    })();
    let _ = tmux(&["kill-session", "-t", &hold]);
    result
}

fn tmux(args: &[&str]) -> anyhow::Result<String> {
    let out =
        Process::new("tmux").args(args).output().context("running tmux (apt-get install tmux)")?;
    anyhow::ensure!(
        out.status.success(),
        "tmux {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Starts `command` in a new 160×48 tmux session and returns the ms until
/// its pane satisfies `shown` (polled every 2 ms); kills the session.
fn time_until_shown(command: &str, shown: impl Fn(&str) -> bool) -> anyhow::Result<f64> {
    let session = format!("console-bench-{}", uuid::Uuid::new_v4().simple());
    let started = Instant::now();
    tmux(&["new-session", "-d", "-s", &session, "-x", "160", "-y", "48", command])?;
    let result = loop {
        let screen = tmux(&["capture-pane", "-p", "-t", &session]).unwrap_or_default();
        if shown(&screen) {
            break Ok(ms(started.elapsed()));
        }
        if started.elapsed() > Duration::from_secs(60) {
            break Err(anyhow::anyhow!("nothing shown within 60 s; the screen:\n{screen}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let _ = tmux(&["kill-session", "-t", &session]);
    std::thread::sleep(Duration::from_millis(100));
    result
}

/// The steps `admin-tui` takes before its first full frame, in this
/// process, each timed.
async fn first_frame_in_process(env: &ScaleEnv, runs: usize, users: i64) -> anyhow::Result<()> {
    let mut steps: [Vec<f64>; 6] = Default::default();
    for run in 0..runs + 1 {
        let started = Instant::now();
        let config = env.config(&[])?;
        // `connect_now`, in its two steps: the state (Redis connects),
        // then the first PostgreSQL connection.
        let state = orgstack::app::build_state(config).await?;
        let built = started.elapsed();
        sqlx::query("SELECT 1").execute(&state.db).await?;
        let connected = started.elapsed();
        let actor = operator(&state, scale::OPERATOR).await?;
        let checked = started.elapsed();
        let mut console = Console::new(state.clone(), actor);
        let mut terminal = Terminal::new(TestBackend::new(160, 48))?;
        // As the binary: a first frame (no data yet), then the refresh.
        terminal.draw(|frame| ui::view(&console.app, frame))?;
        let refresh = console.app.refresh();
        console.settle(refresh).await?;
        let loaded = started.elapsed();
        terminal.draw(|frame| ui::view(&console.app, frame))?;
        let drawn = started.elapsed();
        anyhow::ensure!(
            shows_count(&screen(&terminal), users),
            "the first full frame does not show the users:\n{}",
            screen(&terminal)
        );
        state.db.close().await;
        if run > 0 {
            steps[0].push(ms(built));
            steps[1].push(ms(connected - built));
            steps[2].push(ms(checked - connected));
            steps[3].push(ms(loaded - checked));
            steps[4].push(ms(drawn - loaded));
            steps[5].push(ms(drawn));
        }
    }
    println!("\n## The same steps in this process ({runs} runs, 160×48 TestBackend)\n");
    println!("| step | median | p99 | max |\n| --- | --- | --- | --- |");
    let names = [
        "configuration and `build_state` (Redis connects)",
        "first PostgreSQL connection (`SELECT 1`; the rest of `connect_now`)",
        "operator check",
        "first refresh (`effects::run`) and `update`",
        "`ui::view` of the dashboard",
        "**total: first full frame**",
    ];
    for (name, values) in names.iter().zip(steps.iter_mut()) {
        let (median, p99, max) = summary(values);
        println!("| {name} | {median:.1} ms | {p99:.1} ms | {max:.1} ms |");
    }
    Ok(())
}

/// The text of a test terminal's screen, row by row.
fn screen(terminal: &Terminal<TestBackend>) -> String {
    let buffer = terminal.backend().buffer();
    let mut text = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            text.push_str(buffer[(x, y)].symbol());
        }
        text.push('\n');
    }
    text
}

/// The console's model driven as the binary drives it, minus the terminal.
struct Console {
    app: App,
    state: AppState,
    operator: Actor,
    /// Every load command the views issued, once each, in order.
    loads: Vec<Command>,
    /// States met on the tour, to draw: (what, the model then).
    shown: Vec<(String, App)>,
}

impl Console {
    fn new(state: AppState, operator: Actor) -> Console {
        let name = match &operator {
            Actor::User { email, .. } => email.clone(),
            other => other.to_string(),
        };
        Console { app: App::new(name), state, operator, loads: Vec::new(), shown: Vec::new() }
    }

    /// Runs one command as the binary does and returns its answers.
    async fn run(&self, command: Command) -> anyhow::Result<Vec<Message>> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        effects::run(command, self.state.clone(), self.operator.clone(), tx).await;
        let mut answers = Vec::new();
        while let Ok(message) = rx.try_recv() {
            answers.push(message);
        }
        anyhow::ensure!(!answers.is_empty(), "a command did not answer");
        Ok(answers)
    }

    /// Runs `command` and whatever its answers ask for, until nothing is
    /// left; an answer that carries an error stops the benchmark.
    async fn settle(&mut self, command: Option<Command>) -> anyhow::Result<()> {
        let mut pending: VecDeque<Command> = command.into_iter().collect();
        while let Some(command) = pending.pop_front() {
            let label = format!("{command:?}");
            anyhow::ensure!(is_load(&command), "the benchmark would have run {label}");
            if !self.loads.iter().any(|c| same_load(c, &command)) {
                self.loads.push(command.clone());
            }
            for message in self.run(command).await? {
                if let Some(why) = failure(&message) {
                    anyhow::bail!("{} failed: {why}", shorten(&label, 200));
                }
                if let Some(next) = update(&mut self.app, message) {
                    pending.push_back(next);
                }
            }
        }
        Ok(())
    }

    async fn key(&mut self, code: KeyCode) -> anyhow::Result<()> {
        let command = update(&mut self.app, Message::Key(KeyEvent::new(code, KeyModifiers::NONE)));
        self.settle(command).await
    }

    async fn keys(&mut self, codes: &[KeyCode]) -> anyhow::Result<()> {
        for code in codes {
            self.key(*code).await?;
        }
        Ok(())
    }

    async fn type_text(&mut self, text: &str) -> anyhow::Result<()> {
        for c in text.chars() {
            self.key(KeyCode::Char(c)).await?;
        }
        Ok(())
    }

    /// In `view`: `/`, the filter (replacing the one there), Enter.
    async fn filter(&mut self, view: View, text: &str) -> anyhow::Result<()> {
        self.show(view).await?;
        self.key(KeyCode::Char('/')).await?;
        for _ in 0..64 {
            self.key(KeyCode::Backspace).await?;
        }
        self.type_text(text).await?;
        self.key(KeyCode::Enter).await
    }

    /// Tab until `view` shows (opening, and so loading, the views between).
    async fn show(&mut self, view: View) -> anyhow::Result<()> {
        self.key(KeyCode::Esc).await?; // out of a drill-down
        for _ in 0..View::ALL.len() {
            if self.app.view == view {
                return Ok(());
            }
            self.key(KeyCode::Tab).await?;
        }
        anyhow::ensure!(self.app.view == view, "Tab never reached the {} view", view.name());
        Ok(())
    }

    /// Keeps the model as it is now, to draw it later as `what`.
    fn snap(&mut self, what: impl Into<String>) {
        self.shown.push((what.into(), self.app.clone()));
    }

    /// Opens every view with data, as an operator would: a dashboard with
    /// `history` refreshes behind it; an average org (the middle one of
    /// `orgs`) and the org with the most jobs, its members, flags, jobs by
    /// each status and one job with its log; org and user filters, one
    /// user; each queue section across orgs; an org's schedules; audit
    /// searches. Drill-downs are kept to be drawn; each view is left with
    /// its fullest page.
    async fn tour(&mut self, history: usize, orgs: i64) -> anyhow::Result<()> {
        for _ in 0..history.max(1) {
            let refresh = self.app.refresh();
            self.settle(refresh).await?;
        }
        let big = scale::org_slug(1);
        for slug in [scale::org_slug((orgs as u64 / 2).max(1)), big.clone()] {
            self.filter(View::Orgs, &slug).await?;
            self.key(KeyCode::Char('m')).await?; // members
            self.snap("orgs › members");
            self.keys(&[KeyCode::Esc, KeyCode::Char('F')]).await?; // the org's flags
            self.snap("orgs › flags of an org");
            self.keys(&[KeyCode::Esc, KeyCode::Enter]).await?; // its jobs
            anyhow::ensure!(self.app.view == View::Jobs, "Enter on an org did not open its jobs");
        }
        // `f` walks the status filters and back to all; then one job.
        for _ in 0..=orgstack::jobs::JobStatus::ALL.len() {
            self.key(KeyCode::Char('f')).await?;
        }
        self.key(KeyCode::Enter).await?;
        self.snap(format!("jobs › a job of {big} with its log"));
        for filter in ["harbor", "scale-0999", "no-such-org", ""] {
            self.filter(View::Orgs, filter).await?;
        }
        for filter in ["user-0500", "nobody-here", ""] {
            self.filter(View::Users, filter).await?;
        }
        self.key(KeyCode::Enter).await?;
        self.snap("users › a user");
        self.show(View::Queues).await?;
        self.key(KeyCode::Enter).await?; // the first queue, waiting
        for section in 0..4 {
            self.key(KeyCode::Char('f')).await?; // running, scheduled, dead, waiting
            if section == 2 {
                self.snap("queues › dead jobs across orgs");
            }
        }
        self.filter(View::Schedules, &big).await?;
        self.show(View::Audit).await?;
        // The search form: org, actor contains, action starts with.
        self.key(KeyCode::Char('/')).await?;
        self.keys(&[KeyCode::Enter]).await?;
        self.type_text("ops@").await?;
        self.keys(&[KeyCode::Enter, KeyCode::Enter]).await?;
        self.key(KeyCode::Char('/')).await?;
        self.type_text(&big).await?;
        self.key(KeyCode::Enter).await?;
        for _ in 0..8 {
            self.key(KeyCode::Backspace).await?; // the actor typed before
        }
        self.keys(&[KeyCode::Enter, KeyCode::Enter]).await?;
        for view in View::ALL {
            self.show(view).await?;
            self.snap(view.name());
        }
        Ok(())
    }

    /// Draws every state met on the tour `frames` times at 80×24 and
    /// 160×48.
    fn frames(&self, frames: usize) -> anyhow::Result<()> {
        println!(
            "\n## Per-frame render time (`ui::view` into a TestBackend, {frames} frames each)\n"
        );
        println!(
            "| view | size | median | p99 | max | over {FRAME_BUDGET_MS} ms | what it shows |\n| --- | --- | --- | --- | --- | --- | --- |"
        );
        let mut order: Vec<&(String, App)> = self.shown.iter().collect();
        // The views in their order, then the drill-downs.
        order.sort_by_key(|(what, _)| {
            (what.contains('›'), View::ALL.iter().position(|v| v.name() == what))
        });
        for (what, app) in order {
            for (width, height) in [(80, 24), (160, 48)] {
                let mut terminal = Terminal::new(TestBackend::new(width, height))?;
                for _ in 0..frames / 20 + 1 {
                    terminal.draw(|frame| ui::view(app, frame))?;
                }
                let mut times = Vec::with_capacity(frames);
                for _ in 0..frames {
                    let started = Instant::now();
                    terminal.draw(|frame| ui::view(app, frame))?;
                    times.push(ms(started.elapsed()));
                }
                let over = times.iter().filter(|t| **t > FRAME_BUDGET_MS).count();
                let (median, p99, max) = summary(&mut times);
                println!(
                    "| {what} | {width}×{height} | {median:.3} ms | {p99:.3} ms | {max:.2} ms | {over} | {} |",
                    titles(&terminal)
                );
            }
        }
        Ok(())
    }

    /// Times every load command the views issued, `runs` times each.
    async fn loads(&self, runs: usize) -> anyhow::Result<()> {
        println!("\n## Load commands on the seeded data ({runs} runs each, after one warm-up)\n");
        println!(
            "| command | first (cold caches) | median | p99 | max | rows |\n| --- | --- | --- | --- | --- | --- |"
        );
        for command in &self.loads {
            let label = format!("{command:?}");
            let mut times = Vec::with_capacity(runs);
            let (mut rows, mut first) = (String::new(), 0.0);
            // A state of its own, as a console just started: nothing cached.
            // Its PostgreSQL connection is made first (as `connect_now` does).
            let fresh = orgstack::app::connect_now((*self.state.config).clone()).await?;
            for run in 0..=runs {
                let state = if run == 0 { fresh.clone() } else { self.state.clone() };
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let started = Instant::now();
                effects::run(command.clone(), state, self.operator.clone(), tx).await;
                let took = ms(started.elapsed());
                if run == 0 {
                    first = took;
                    let mut answers = Vec::new();
                    while let Ok(message) = rx.try_recv() {
                        answers.push(shown_rows(&message));
                    }
                    rows = answers.join("; ");
                } else {
                    times.push(took);
                }
            }
            fresh.db.close().await;
            let (median, p99, max) = summary(&mut times);
            let flag = if p99 > LOAD_BUDGET_MS { " ⚠" } else { "" };
            println!(
                "| `{}` | {first:.1} ms | {median:.1} ms | {p99:.1} ms{flag} | {max:.1} ms | {rows} |",
                shorten(&label, 90).replace('|', "/")
            );
        }
        Ok(())
    }
}

/// The titles of the boxes on a drawn screen's second row (the view's).
fn titles(terminal: &Terminal<TestBackend>) -> String {
    let text = screen(terminal);
    let row = text.lines().nth(1).unwrap_or_default().replace(|c: char| "┌┐─│".contains(c), " ");
    let titles = row.split_whitespace().collect::<Vec<_>>().join(" ");
    shorten(&titles, 60).replace('|', "/")
}

/// The same read (refreshes differ only in their request number).
fn same_load(a: &Command, b: &Command) -> bool {
    let key = |c: &Command| {
        let text = format!("{c:?}");
        if text.starts_with("Refresh") { "Refresh".to_owned() } else { text }
    };
    key(a) == key(b)
}

/// Only reads are run by this benchmark: loads, refreshes and batches of
/// them.
fn is_load(command: &Command) -> bool {
    if let Command::Batch(commands) = command {
        return commands.iter().all(is_load);
    }
    let label = format!("{command:?}");
    ["Load", "Refresh", "TailJob"].iter().any(|read| label.starts_with(read))
}

/// Why an answer failed, if it did (from its `Debug` text, so that new
/// messages need no change here).
fn failure(message: &Message) -> Option<String> {
    let text = format!("{message:?}");
    let at = text.find("(Err(").or_else(|| text.find("result: Err("))?;
    Some(shorten(&text[at..], 300))
}

/// What a load answer carried: its most frequent records (`Debug` struct
/// names), such as "500 Org".
fn shown_rows(message: &Message) -> String {
    let text = format!("{message:?}");
    let mut counts: Vec<(String, usize)> = Vec::new();
    for (at, _) in text.match_indices(" { ") {
        let name: String = text[..at]
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_uppercase()) {
            continue;
        }
        match counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => *count += 1,
            None => counts.push((name, 1)),
        }
    }
    // Records, not the page or detail that holds them.
    counts.retain(|(name, _)| {
        !["Page", "Detail", "Search", "Snapshot"].iter().any(|w| name.ends_with(w))
    });
    counts.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    counts.iter().take(2).map(|(name, n)| format!("{n} {name}")).collect::<Vec<_>>().join(", ")
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max).collect();
    cut.push('…');
    cut
}
