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
pub mod ui;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use crossterm::event::{Event, EventStream, KeyEventKind};
use futures::StreamExt;
use orgstack::accounts::{Actor, Email};
use orgstack::config::Config;
use orgstack::http::AppState;
use ratatui::DefaultTerminal;
use tokio::sync::mpsc;

use crate::app::{App, Command, Message, update};

/// The operators' console.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The platform admin acting (their email); every change is audited
    /// with them as actor.
    #[arg(long = "as", env = "ADMIN_TUI_AS", value_name = "EMAIL")]
    operator: String,
}

/// The `admin-tui` command: parses its arguments, loads the configuration
/// (environment and `.env`), checks the operator and runs the console.
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
    orgstack::cli::run_to_exit(run(args, config))
}

async fn run(args: Args, config: Config) -> anyhow::Result<()> {
    let state = orgstack::app::connect_now(config).await?;
    let operator = operator(&state, &args.operator).await?;
    let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let result = event_loop(&mut terminal, state, operator).await;
    ratatui::try_restore().context("cannot restore the terminal")?;
    result
}

/// The operator, once checked to be an active platform admin.
async fn operator(state: &AppState, email: &str) -> anyhow::Result<Actor> {
    let parsed = Email::parse(email).map_err(|why| anyhow::anyhow!("--as {email:?}: {why}"))?;
    match state.accounts.user_by_email(&parsed).await? {
        Some(user) if user.is_active && user.is_platform_admin => {
            Ok(Actor::User { id: user.id, email: user.email })
        }
        Some(_) => anyhow::bail!("{email} is not an active platform admin"),
        None => anyhow::bail!("no user {email}"),
    }
}

/// One loop over terminal input, a one-second tick and the answers of
/// commands; redraws after each.
async fn event_loop(
    terminal: &mut DefaultTerminal,
    state: AppState,
    operator: Actor,
) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let name = match &operator {
        Actor::User { email, .. } => email.clone(),
        other => other.to_string(),
    };
    let mut app = App::new(name);
    let mut input = EventStream::new();
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
        let message = tokio::select! {
            event = input.next() => match event {
                Some(Ok(Event::Key(key))) if key.kind != KeyEventKind::Release => Message::Key(key),
                Some(Ok(_)) => continue, // a resize or focus change: redraw
                Some(Err(err)) => return Err(err).context("reading the terminal"),
                None => return Ok(()),
            },
            _ = tick.tick() => Message::Tick,
            Some(message) = rx.recv() => message,
        };
        if let Some(command) = update(&mut app, message) {
            spawn(command);
        }
        if app.quit {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_drill;
