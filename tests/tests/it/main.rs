//! Integration tests against real PostgreSQL and Redis (see the harness in
//! `orgstack_tests`). One binary, tests in parallel, a database each.

mod accounts;
mod assets;
mod cli;
mod console;
mod deploy;
mod dev;
mod email;
mod files;
mod flags;
mod http;
mod jobs;
mod jobs_api;
mod locks;
mod migrate;
mod oidc;
mod onboarding;
mod openapi;
mod orgio;
mod provisioning;
mod queue;
mod schedules;
mod scoping;
mod ssh;
mod tui;
mod webhooks;

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use orgstack_tests::TestContext;

/// The real `orgstack` command line, built for these tests.
pub fn orgstack_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_orgstack-cli"))
}

/// Runs `orgstack ARGS` against `ctx` with a clean environment (plus
/// `extra_env`) in an empty folder, so no `.env` or outside variable leaks in.
pub fn run_cli(ctx: Option<&TestContext>, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = std::process::Command::new(orgstack_bin());
    cmd.args(args).current_dir(dir.path()).env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    if let Some(ctx) = ctx {
        for (k, v) in ctx.env() {
            cmd.env(k, v);
        }
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output().expect("running orgstack")
}

/// A running `orgstack` process, killed when dropped.
#[derive(Debug)]
pub struct CliProcess {
    pub child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl CliProcess {
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"))
    }
}

impl Drop for CliProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `orgstack ARGS` against `ctx` in the background (as `run_cli`,
/// with its output discarded).
pub fn spawn_cli(ctx: &TestContext, args: &[&str]) -> CliProcess {
    spawn_cli_with(ctx, args, &[])
}

/// [`spawn_cli`] with more environment (after the context's, so it wins).
pub fn spawn_cli_with(ctx: &TestContext, args: &[&str], extra_env: &[(&str, &str)]) -> CliProcess {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = std::process::Command::new(orgstack_bin());
    cmd.args(args)
        .current_dir(dir.path())
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in ctx.env() {
        cmd.env(k, v);
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    CliProcess { child: cmd.spawn().expect("starting orgstack"), _dir: dir }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Polls `check` until it returns true or `within` passes. Used for effects
/// that travel through Redis pub/sub; the deadline is a failure bound, not a
/// performance assertion.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
