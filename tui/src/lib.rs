//! `admin-tui`: the operators' console (users, orgs, flags, queues and
//! workers) in a terminal, usable over SSH. It reads the same configuration
//! as `orgstack` and works through the `server` library's services, so
//! every action obeys the same rules and is audited with the operator as
//! actor.

pub mod app;
pub mod details;
pub mod effects;
pub mod form;
pub mod live;
pub mod operator;
pub mod ssh;
pub mod ui;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use crossterm::event::{Event, EventStream, KeyEventKind};
use futures::{Stream, StreamExt};
use orgstack::accounts::Actor;
use orgstack::config::Config;
use orgstack::http::AppState;
use ratatui::Terminal;
use ratatui::backend::Backend;
use tokio::sync::mpsc;

use crate::app::{App, Command, Message, update};
use crate::operator::OsUsers;

/// The operators' console.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    /// The platform admin acting (their email); every change is audited
    /// with them as actor. Default: the admin the OS user is mapped to in
    /// ADMIN_TUI_OS_USERS.
    #[arg(long = "as", env = "ADMIN_TUI_AS", value_name = "EMAIL")]
    operator: Option<String>,
    /// OS users mapped to platform admins, for when --as is not given:
    /// `alice=alice@example.com,root=ops@example.com`.
    #[arg(
        long = "os-users",
        env = "ADMIN_TUI_OS_USERS",
        value_name = "USER=EMAIL,...",
        value_parser = OsUsers::parse
    )]
    os_users: Option<OsUsers>,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Serve the console over SSH (one console per session; public keys
    /// from `orgstack admin-keys` only).
    SshServe(ssh::ServeArgs),
}

/// The `admin-tui` command: parses its arguments, loads the configuration
/// (environment and `.env`), then runs the console on this terminal, or
/// serves it over SSH (`ssh-serve`).
pub fn main() -> ExitCode {
    // `.env` first: it may set ADMIN_TUI_AS, which the arguments read.
    if let Err(code) = orgstack::cli::load_dotenv() {
        return code;
    }
    let args = Args::parse();
    let config = match orgstack::cli::load_config() {
        Ok(config) => config,
        Err(code) => return code,
    };
    match args.command {
        Some(Sub::SshServe(serve)) => {
            orgstack::telemetry::init_tracing(&config);
            orgstack::cli::run_to_exit(ssh::serve(serve, config))
        }
        None => orgstack::cli::run_to_exit(run(args, config)),
    }
}

async fn run(args: Args, config: Config) -> anyhow::Result<()> {
    let state = orgstack::app::connect_now(config).await?;
    let operator =
        operator::local_operator(&state, args.operator.as_deref(), args.os_users.as_ref()).await?;
    let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let result =
        run_console(&mut terminal, EventStream::new(), state, operator, Duration::ZERO).await;
    ratatui::try_restore().context("cannot restore the terminal")?;
    result
}

/// The console, on any terminal: one loop over `input` (key presses and
/// resizes), a one-second tick and the answers of commands, redrawing after
/// them, until the operator quits (`Ok`) or `input` ends (`Ok`: the
/// terminal went away). The local terminal passes crossterm's
/// `EventStream`; an SSH session, the keys parsed from its channel and its
/// window changes ([`ssh`]).
///
/// `frame_delay` is how long the changes after a first one are gathered
/// into the same frame: zero draws after every message; over SSH a few tens
/// of milliseconds let a refresh's answer land in the frame of the tick
/// that asked for it, so passing states (a "loading" line) are not sent.
pub async fn run_console<B, I>(
    terminal: &mut Terminal<B>,
    mut input: I,
    state: AppState,
    operator: Actor,
    frame_delay: Duration,
) -> anyhow::Result<()>
where
    B: Backend,
    B::Error: Send + Sync + 'static,
    I: Stream<Item = std::io::Result<Event>> + Unpin,
{
    let (tx, mut rx) = mpsc::unbounded_channel();
    let name = match &operator {
        Actor::User { email, .. } => email.clone(),
        other => other.to_string(),
    };
    let mut app = App::new(name);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let spawn = |command: Command| {
        tokio::spawn(effects::run(command, state.clone(), operator.clone(), tx.clone()));
    };
    tokio::spawn(live::listen(state.clone(), tx.clone()));
    if let Some(command) = app.refresh() {
        spawn(command);
    }
    loop {
        terminal.draw(|frame| ui::view(&app, frame))?;
        let mut due = None;
        loop {
            let next = match due {
                None => next_input(&mut input, &mut tick, &mut rx).await?,
                Some(at) => tokio::select! {
                    next = next_input(&mut input, &mut tick, &mut rx) => next?,
                    () = tokio::time::sleep_until(at) => break,
                },
            };
            match next {
                Next::End => return Ok(()),
                Next::Redraw => {}
                Next::Message(message) => {
                    if let Some(command) = update(&mut app, message) {
                        spawn(command);
                    }
                    if app.quit {
                        return Ok(());
                    }
                }
            }
            if frame_delay.is_zero() {
                break;
            }
            due.get_or_insert_with(|| tokio::time::Instant::now() + frame_delay);
        }
    }
}

/// What woke the console.
enum Next {
    Message(Message),
    /// A resize or focus change: only a redraw.
    Redraw,
    /// The terminal is gone.
    End,
}

/// The next key, tick or command answer (each source is cancel-safe).
async fn next_input<I>(
    input: &mut I,
    tick: &mut tokio::time::Interval,
    rx: &mut mpsc::UnboundedReceiver<Message>,
) -> anyhow::Result<Next>
where
    I: Stream<Item = std::io::Result<Event>> + Unpin,
{
    Ok(tokio::select! {
        event = input.next() => match event {
            Some(Ok(Event::Key(key))) if key.kind != KeyEventKind::Release => Next::Message(Message::Key(key)),
            Some(Ok(_)) => Next::Redraw,
            Some(Err(err)) => return Err(err).context("reading the terminal"),
            None => Next::End,
        },
        _ = tick.tick() => Next::Message(Message::Tick),
        Some(message) = rx.recv() => Next::Message(message),
    })
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_drill;

#[cfg(test)]
mod args_tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_definition_is_valid() {
        Args::command().debug_assert();
        let args = Args::try_parse_from(["admin-tui", "ssh-serve", "--listen", "127.0.0.1:2022"])
            .expect("valid");
        assert!(matches!(args.command, Some(Sub::SshServe(s)) if s.listen.port() == 2022));
    }
}
