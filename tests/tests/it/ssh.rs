//! `admin-tui ssh-serve` end to end: the real server process, keys
//! registered with the real `orgstack admin-keys`, and OpenSSH's `ssh`
//! client in a `tmux` session (80×24), against real PostgreSQL and Redis.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use orgstack_tests::TestContext;

use crate::tui::{Console, tui_bin};
use crate::{eventually, run_cli, stderr, stdout};

const PASSWORD: &str = "a long enough password";

/// A running `admin-tui ssh-serve`, killed when dropped; its log (stderr)
/// goes to a file.
struct SshServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl SshServer {
    /// Starts the server on a free port with the host key at `host_key`,
    /// and waits until it accepts connections.
    async fn start(ctx: &TestContext, dir: &Path, host_key: &Path) -> SshServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = dir.join(format!("ssh-serve-{port}.log"));
        let child = Command::new(tui_bin())
            .args(["ssh-serve", "--listen", &format!("127.0.0.1:{port}")])
            .env_clear()
            .envs(ctx.env())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env("SSH_HOST_KEY", host_key)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("starting admin-tui ssh-serve");
        let server = SshServer { child, port, log };
        let up = eventually(Duration::from_secs(20), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        })
        .await;
        assert!(up, "ssh-serve never listened; its log:\n{}", server.log());
        server
    }

    /// Its log so far, without colours.
    fn log(&self) -> String {
        let raw = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut plain = String::with_capacity(raw.len());
        let mut rest = raw.as_str();
        while let Some(at) = rest.find("\x1b[") {
            plain.push_str(&rest[..at]);
            let after = &rest[at + 2..];
            rest = after.find('m').map_or("", |end| &after[end + 1..]);
        }
        plain.push_str(rest);
        plain
    }

    /// Stops it with SIGTERM and waits for it to exit.
    async fn stop(mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("ssh-serve did not stop on SIGTERM; its log:\n{}", self.log());
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new ed25519 key pair in `dir`; answers the private key's path.
fn keygen(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen is installed (apt-get install openssh-client)");
    assert!(status.success(), "ssh-keygen failed");
    path
}

/// `ssh-keygen -l`'s SHA-256 fingerprint of the public key of `key`.
fn fingerprint(key: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(key.with_extension("pub"))
        .output()
        .expect("ssh-keygen -l");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace().nth(1).expect("a fingerprint").to_owned()
}

/// OpenSSH client options: only `key`, no agent, no host key checks, no
/// prompts, no user configuration.
fn ssh_options(port: u16, key: &Path) -> Vec<String> {
    [
        "-F",
        "/dev/null",
        "-p",
        &port.to_string(),
        "-i",
        &key.display().to_string(),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "IdentityAgent=none",
        "-o",
        "PasswordAuthentication=no",
        "-o",
        "BatchMode=yes",
        "-o",
        "LogLevel=ERROR",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Runs `ssh OPTIONS op@127.0.0.1 EXTRA` without a terminal.
fn ssh(port: u16, key: &Path, extra: &[&str]) -> Output {
    Command::new("ssh")
        .args(ssh_options(port, key))
        .args(extra)
        .arg("op@127.0.0.1")
        .stdin(Stdio::null())
        .output()
        .expect("ssh is installed (apt-get install openssh-client)")
}

/// `ssh -tt ... op@127.0.0.1` in an 80×24 tmux pane; once ssh exits the
/// pane shows "ssh exited N".
fn ssh_console(port: u16, key: &Path) -> Console {
    let args: Vec<String> = ssh_options(port, key).into_iter().map(|a| format!("'{a}'")).collect();
    Console::run(&format!(
        "env -i PATH='{}' TERM=xterm-256color ssh -tt {} op@127.0.0.1; echo \"ssh exited $?\"; sleep 60",
        std::env::var("PATH").unwrap_or_default(),
        args.join(" ")
    ))
}

fn register(ctx: &TestContext, email: &str, key: &Path) -> Output {
    let public = key.with_extension("pub");
    run_cli(
        Some(ctx),
        &["admin-keys", "add", "--user", email, "--key-file", &public.display().to_string()],
        &[],
    )
}

#[tokio::test]
async fn a_session_from_an_authorized_key_shows_the_dashboard_and_acts_as_its_admin() {
    let ctx = TestContext::new().await;
    ctx.user("ops@example.com", PASSWORD, true).await;
    for slug in ["acme", "globex", "initech"] {
        ctx.org(slug).await;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let key = keygen(dir.path(), "ops_key");
    let added = register(&ctx, "ops@example.com", &key);
    assert!(added.status.success(), "{}", stderr(&added));
    assert!(
        stdout(&added)
            .contains(&format!("added ssh-ed25519 {} for ops@example.com", fingerprint(&key))),
        "{}",
        stdout(&added)
    );
    let server = SshServer::start(&ctx, dir.path(), &dir.path().join("host_key")).await;

    let console = ssh_console(server.port, &key);
    console
        .wait_for("the dashboard", Duration::from_secs(30), |s| {
            s.contains("as ops@example.com")
                && s.contains("PostgreSQL up")
                && s.contains("3 active")
        })
        .await;
    // 80 columns wide; the client's window change resizes it.
    let widest = |s: &str| s.lines().map(|l| l.trim_end().chars().count()).max().unwrap_or(0);
    assert_eq!(widest(&console.screen()), 80, "{}", console.screen());
    let status = Command::new("tmux")
        .args(["resize-window", "-t", console.session(), "-x", "100", "-y", "30"])
        .status()
        .expect("tmux resize-window");
    assert!(status.success());
    console
        .wait_for("the console at 100×30", Duration::from_secs(10), |s| {
            widest(s) == 100 && s.contains("as ops@example.com")
        })
        .await;

    // Suspend globex from the orgs view: audited with the key's admin.
    console.keys(&[":", "orgs", "Enter"]);
    console.wait_for("three orgs", Duration::from_secs(10), |s| s.contains("initech")).await;
    console.keys(&["/", "glob", "Enter"]);
    console
        .wait_for("only globex", Duration::from_secs(10), |s| {
            s.contains("matching \"glob\"") && s.contains("globex") && !s.contains("initech")
        })
        .await;
    console.keys(&["s"]);
    console
        .wait_for("the question", Duration::from_secs(10), |s| s.contains("Suspend org 'globex'?"))
        .await;
    console.keys(&["y"]);
    console
        .wait_for("globex suspended", Duration::from_secs(10), |s| {
            s.contains("org 'globex' is suspended")
        })
        .await;
    let actor: String =
        sqlx::query_scalar("SELECT actor FROM public.audit_events WHERE action = 'org.suspended'")
            .fetch_one(&ctx.pool)
            .await
            .expect("the suspension is audited");
    assert_eq!(actor, "user:ops@example.com");

    // q ends the session cleanly: ssh exits 0 and the screen is restored.
    console.keys(&["q"]);
    console
        .wait_for("ssh exiting 0", Duration::from_secs(10), |s| s.contains("ssh exited 0"))
        .await;
    assert!(!console.screen().contains("PostgreSQL up"), "left the alternate screen");

    let log = server.log();
    assert!(log.contains("console session started"), "{log}");
    let ended = log.lines().find(|l| l.contains("console session ended")).unwrap_or_default();
    assert!(ended.contains("ops@example.com") && ended.contains("bytes_sent="), "{log}");
    assert!(!log.contains("PRIVATE KEY") && !log.contains("AAAAC3"), "no key material in logs");
    let listed = run_cli(Some(&ctx), &["admin-keys", "list"], &[]);
    let row = stdout(&listed)
        .lines()
        .find(|l| l.contains("ops@example.com"))
        .unwrap_or_default()
        .to_owned();
    assert!(!row.ends_with("never"), "last use recorded: {row}");
}

/// A russh client that trusts any host key, to try what OpenSSH won't.
struct AnyHost;

impl russh::client::Handler for AnyHost {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

#[tokio::test]
async fn unknown_keys_passwords_and_former_admins_are_refused() {
    let ctx = TestContext::new().await;
    ctx.user("ops@example.com", PASSWORD, true).await;
    ctx.user("former@example.com", PASSWORD, true).await;
    ctx.user("member@example.com", PASSWORD, false).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let known = keygen(dir.path(), "known_key");
    let unknown = keygen(dir.path(), "unknown_key");
    let former = keygen(dir.path(), "former_key");
    assert!(register(&ctx, "ops@example.com", &known).status.success());
    assert!(register(&ctx, "former@example.com", &former).status.success());
    let server = SshServer::start(&ctx, dir.path(), &dir.path().join("host_key")).await;

    // The registered key gets in (a shell needs a terminal, which -T denies).
    let out = ssh(server.port, &known, &["-T"]);
    assert!(stdout(&out).contains("admin-tui needs a terminal"), "{}", stderr(&out));
    // Nor does it run commands.
    let out = Command::new("ssh")
        .args(ssh_options(server.port, &known))
        .args(["op@127.0.0.1", "ls"])
        .stdin(Stdio::null())
        .output()
        .expect("ssh");
    assert_ne!(out.status.code(), Some(0));
    assert!(
        format!("{}{}", stdout(&out), stderr(&out)).contains("exec request failed"),
        "{} {}",
        stdout(&out),
        stderr(&out)
    );
    // An unknown key does not.
    let out = ssh(server.port, &unknown, &["-T"]);
    assert_eq!(out.status.code(), Some(255));
    assert!(stderr(&out).contains("Permission denied (publickey)"), "{}", stderr(&out));
    // Nor the key of a user who is no longer active.
    let deactivated = run_cli(Some(&ctx), &["user", "deactivate", "former@example.com"], &[]);
    assert!(deactivated.status.success(), "{}", stderr(&deactivated));
    let out = ssh(server.port, &former, &["-T"]);
    assert!(stderr(&out).contains("Permission denied (publickey)"), "{}", stderr(&out));

    // Passwords (even the right one) and keyboard-interactive are refused.
    let config = Arc::new(russh::client::Config::default());
    let mut client = russh::client::connect(config, ("127.0.0.1", server.port), AnyHost)
        .await
        .expect("SSH connection");
    let answer = client.authenticate_password("ops@example.com", PASSWORD).await.expect("answer");
    assert!(!answer.success(), "a password was accepted");
    let answer = client
        .authenticate_keyboard_interactive_start("ops@example.com", None)
        .await
        .expect("answer");
    assert!(
        matches!(answer, russh::client::KeyboardInteractiveAuthResponse::Failure { .. }),
        "keyboard-interactive was not refused: {answer:?}"
    );
    assert!(server.log().contains("SSH key refused"), "{}", server.log());

    // Only platform admins get keys, and only valid keys.
    let out = register(&ctx, "member@example.com", &unknown);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("member@example.com is not an active platform admin"),
        "{}",
        stderr(&out)
    );
    let out = run_cli(
        Some(&ctx),
        &["admin-keys", "add", "--user", "ops@example.com", "--key", "ssh-ed25519 garbage"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not an OpenSSH public key"), "{}", stderr(&out));
    let private = std::fs::read_to_string(&unknown).expect("private key");
    let out = run_cli(
        Some(&ctx),
        &["admin-keys", "add", "--user", "ops@example.com", &format!("--key={private}")],
        &[],
    );
    assert!(stderr(&out).contains("that is a private key"), "{}", stderr(&out));
}

#[tokio::test]
async fn admin_keys_are_added_listed_and_removed_with_an_audit_trail() {
    let ctx = TestContext::new().await;
    ctx.user("ops@example.com", PASSWORD, true).await;
    ctx.user("other@example.com", PASSWORD, true).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let key = keygen(dir.path(), "laptop");
    let print = fingerprint(&key);
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");

    let out = run_cli(
        Some(&ctx),
        &[
            "admin-keys",
            "add",
            "--user",
            "ops@example.com",
            "--key",
            public.trim(),
            "--name",
            "ops laptop",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Again: nothing changes. For another admin: refused.
    let again = register(&ctx, "ops@example.com", &key);
    assert!(again.status.success());
    assert!(stdout(&again).contains("already registered for ops@example.com; nothing changed"));
    let other = register(&ctx, "other@example.com", &key);
    assert_eq!(other.status.code(), Some(1));
    assert!(
        stderr(&other)
            .contains(&format!("the key {print} is already registered for ops@example.com")),
        "{}",
        stderr(&other)
    );

    let list = stdout(&run_cli(Some(&ctx), &["admin-keys", "list"], &[]));
    let row = list.lines().find(|l| l.contains(&print)).unwrap_or_else(|| panic!("{list}"));
    assert!(
        row.contains("ops@example.com") && row.contains("ops laptop") && row.ends_with("never")
    );
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&run_cli(Some(&ctx), &["admin-keys", "list", "--json"], &[])))
            .expect("JSON list");
    assert_eq!(json[0]["fingerprint"], print.as_str());
    assert_eq!(json[0]["algorithm"], "ssh-ed25519");

    let out = run_cli(Some(&ctx), &["admin-keys", "remove", &print], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("removed {print} (ops laptop) of ops@example.com")));
    let out = run_cli(Some(&ctx), &["admin-keys", "remove", &print], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no registered key"), "{}", stderr(&out));

    let events: Vec<(String, String)> = sqlx::query_as(
        "SELECT actor, action FROM public.audit_events WHERE action LIKE 'admin_key.%' \
         ORDER BY occurred_at, id",
    )
    .fetch_all(&ctx.pool)
    .await
    .expect("audit");
    let events: Vec<(&str, &str)> = events.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(events, vec![("cli", "admin_key.added"), ("cli", "admin_key.removed")]);
}

#[tokio::test]
async fn the_host_key_is_made_once_and_served_after_a_restart() {
    let ctx = TestContext::new().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let host_key = dir.path().join("state/ssh_host_ed25519_key");
    let keyscan = |port: u16| {
        let out = Command::new("ssh-keyscan")
            .args(["-t", "ed25519", "-p", &port.to_string(), "127.0.0.1"])
            .output()
            .expect("ssh-keyscan");
        let text = stdout(&out);
        text.lines()
            .find(|l| !l.starts_with('#') && l.contains("ssh-ed25519"))
            .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("no host key from ssh-keyscan: {text} {}", stderr(&out)))
    };

    let server = SshServer::start(&ctx, dir.path(), &host_key).await;
    let first = keyscan(server.port);
    let mode = std::fs::metadata(&host_key).expect("host key file").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the host key is private");
    let content = std::fs::read(&host_key).expect("host key");
    assert!(server.log().contains("created the SSH host key"), "{}", server.log());
    let status = server.stop().await;
    assert!(status.success(), "SIGTERM is a clean stop: {status}");

    let server = SshServer::start(&ctx, dir.path(), &host_key).await;
    assert_eq!(keyscan(server.port), first, "the same host key after a restart");
    assert_eq!(std::fs::read(&host_key).expect("host key"), content, "the file is kept");
    assert!(!server.log().contains("created the SSH host key"));
}

#[tokio::test]
async fn sigterm_closes_the_open_consoles_then_stops() {
    let ctx = TestContext::new().await;
    ctx.user("ops@example.com", PASSWORD, true).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let key = keygen(dir.path(), "ops_key");
    assert!(register(&ctx, "ops@example.com", &key).status.success());
    let server = SshServer::start(&ctx, dir.path(), &dir.path().join("host_key")).await;
    let console = ssh_console(server.port, &key);
    console
        .wait_for("the dashboard", Duration::from_secs(30), |s| s.contains("PostgreSQL up"))
        .await;

    let status = server.stop().await;
    assert!(status.success(), "{status}");
    console
        .wait_for("the goodbye", Duration::from_secs(10), |s| {
            s.contains("admin-tui: the server is shutting down") && s.contains("ssh exited 0")
        })
        .await;
}
