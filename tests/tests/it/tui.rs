//! `admin-tui` end to end, as an operator uses it: the real binary in a
//! `tmux` session against real PostgreSQL and Redis, driven with
//! `send-keys` and read with `capture-pane`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use orgstack_tests::TestContext;

use crate::{eventually, spawn_cli};

pub(crate) fn tui_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_admin-tui-cli"))
}

/// A `tmux` session running `admin-tui` (or an SSH client), killed when
/// dropped.
pub(crate) struct Console {
    session: String,
}

impl Console {
    /// Starts `admin-tui --as OPERATOR` on an 80×24 terminal.
    fn start(ctx: &TestContext, operator: &str) -> Console {
        Console::start_with(ctx, &format!("--as '{operator}'"), &[])
    }

    /// Starts `admin-tui ARGS` with `ctx`'s environment and `extra_env`.
    fn start_with(ctx: &TestContext, args: &str, extra_env: &[(&str, &str)]) -> Console {
        let mut env: Vec<String> = ctx
            .env()
            .into_iter()
            .chain(extra_env.iter().map(|(k, v)| (*k, v.to_string())))
            .map(|(k, v)| format!("{k}='{v}'"))
            .collect();
        env.push(format!("PATH='{}'", std::env::var("PATH").unwrap_or_default()));
        let dir = std::env::temp_dir();
        Console::run(&format!(
            "cd '{}' && env -i {} '{}' {args}",
            dir.display(),
            env.join(" "),
            tui_bin().display()
        ))
    }

    /// Runs the shell `command` in a new 80×24 `tmux` session.
    pub(crate) fn run(command: &str) -> Console {
        let session = format!("orgstack-tui-{}", uuid::Uuid::new_v4().simple());
        let status = Command::new("tmux")
            .args(["new-session", "-d", "-s", &session, "-x", "80", "-y", "24", command])
            .status()
            .expect("tmux is installed (apt-get install tmux)");
        assert!(status.success(), "tmux new-session failed");
        Console { session }
    }

    /// The tmux session's name.
    pub(crate) fn session(&self) -> &str {
        &self.session
    }

    pub(crate) fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.session])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    pub(crate) fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub(crate) fn alive(&self) -> bool {
        Command::new("tmux")
            .args(["has-session", "-t", &self.session])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits until the screen satisfies `check`; panics with the screen
    /// after `within` (a failure bound, not a performance figure).
    pub(crate) async fn wait_for(
        &self,
        what: &str,
        within: Duration,
        check: impl Fn(&str) -> bool,
    ) {
        let shown = eventually(within, || async { check(&self.screen()) }).await;
        assert!(shown, "the console never showed {what}; the screen:\n{}", self.screen());
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[tokio::test]
async fn an_operator_grows_a_worker_and_shuts_it_down() {
    let ctx = TestContext::new().await;
    ctx.user("ops@example.com", "a long enough password", true).await;
    ctx.org("acme").await;
    let console = Console::start(&ctx, "ops@example.com");
    console
        .wait_for("the dashboard", Duration::from_secs(20), |s| {
            s.contains("as ops@example.com")
                && s.contains("PostgreSQL up")
                && s.contains("Redis      up")
                && s.contains("1 active")
                && s.contains("workers  0 live")
        })
        .await;

    let worker = spawn_cli(&ctx, &["worker", "--concurrency", "2"]);
    let pid = worker.child.id().to_string();
    console
        .wait_for("one live worker", Duration::from_secs(20), |s| s.contains("workers  1 live"))
        .await;

    console.keys(&[":", "workers", "Enter"]);
    console
        .wait_for("the worker's row", Duration::from_secs(20), |s| {
            s.contains("workers (1 live") && s.contains(&format!(":{pid}:"))
        })
        .await;

    // Pool grow, as in Flower: the worker takes the new concurrency.
    console.keys(&["+"]);
    console
        .wait_for("the request", Duration::from_secs(10), |s| s.contains("to run 3 at once"))
        .await;
    let jobs = ctx.jobs();
    let grown = eventually(Duration::from_secs(10), || async {
        orgstack::jobs::worker::list_workers(&jobs)
            .await
            .is_ok_and(|w| w.len() == 1 && w[0].concurrency == 3)
    })
    .await;
    assert!(grown, "the worker never ran 3 at once");

    // A graceful shutdown from the console: the process exits and its row goes.
    console.keys(&["S"]);
    console
        .wait_for("the question", Duration::from_secs(10), |s| s.contains("Shut down worker"))
        .await;
    console.keys(&["y"]);
    let mut worker = worker;
    let exited = eventually(Duration::from_secs(30), || {
        let done = worker.child.try_wait().is_ok_and(|status| status.is_some());
        async move { done }
    })
    .await;
    assert!(exited, "the worker did not shut down");
    console
        .wait_for("the worker gone", Duration::from_secs(30), |s| {
            // (The status line still names it: "asked … to shut down".)
            s.contains("workers (0 live")
                && !s.lines().any(|l| l.starts_with('│') && l.contains(&format!(":{pid}:")))
        })
        .await;
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM public.audit_events WHERE actor = 'user:ops@example.com' \
         AND action IN ('worker.concurrency', 'worker.shutdown')",
    )
    .fetch_one(&ctx.pool)
    .await
    .expect("audit");
    assert_eq!(audited, 2);
    drop(worker);

    console.keys(&["?"]);
    console
        .wait_for("the keys of the view", Duration::from_secs(10), |s| s.contains("workers view"))
        .await;
    // Esc and q sent together would read as Alt-q: one, then the other.
    console.keys(&["Escape"]);
    console
        .wait_for("the help closed", Duration::from_secs(10), |s| !s.contains("workers view"))
        .await;
    console.keys(&["q"]);
    let ended = eventually(Duration::from_secs(10), || async { !console.alive() }).await;
    assert!(ended, "q did not quit; the screen:\n{}", console.screen());
}

#[tokio::test]
async fn the_console_refuses_an_operator_who_is_not_a_platform_admin() {
    let ctx = TestContext::new().await;
    ctx.user("member@example.com", "a long enough password", false).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |args: &[&str]| {
        Command::new(tui_bin())
            .args(args)
            .env_clear()
            .envs(ctx.env())
            .current_dir(dir.path())
            .output()
            .expect("running admin-tui")
    };
    for (who, expected) in [
        ("member@example.com", "member@example.com is not an active platform admin"),
        ("nobody@example.com", "no user nobody@example.com"),
        ("not-an-email", "--as \"not-an-email\""),
    ] {
        let out = run(&["--as", who]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{who}: {stderr}");
        assert!(stderr.contains(expected), "{who}: {stderr}");
    }
    // Without --as and without a mapping of the OS user: no operator.
    let out = run(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no operator: pass --as EMAIL"), "{stderr}");
    assert!(stderr.contains(&format!("map OS user '{}'", os_user())), "{stderr}");

    // ADMIN_TUI_AS may come from `.env`, as the rest of the configuration.
    std::fs::write(dir.path().join(".env"), "ADMIN_TUI_AS=member@example.com\n").expect(".env");
    let out = run(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("member@example.com is not an active platform admin"), "{stderr}");
}

/// The name of the OS user running the tests.
fn os_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .expect("the OS user has a name")
}

#[tokio::test]
async fn without_as_the_os_user_is_mapped_to_a_platform_admin() {
    let ctx = TestContext::new().await;
    ctx.user("ops@example.com", "a long enough password", true).await;
    ctx.user("member@example.com", "a long enough password", false).await;
    let me = os_user();

    // Mapped to someone who is not a platform admin: refused, naming why.
    let dir = tempfile::tempdir().expect("temp dir");
    let mapping = format!("nobody-else=ops@example.com,{me}=member@example.com");
    let out = Command::new(tui_bin())
        .env_clear()
        .envs(ctx.env())
        .env("ADMIN_TUI_OS_USERS", &mapping)
        .current_dir(dir.path())
        .output()
        .expect("running admin-tui");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "OS user '{me}' (ADMIN_TUI_OS_USERS): member@example.com is not an active platform admin"
        )),
        "{stderr}"
    );

    // Mapped to a platform admin: the console runs as them.
    let mapping = format!("{me}=ops@example.com");
    let console = Console::start_with(&ctx, "", &[("ADMIN_TUI_OS_USERS", &mapping)]);
    console
        .wait_for("the dashboard as the mapped admin", Duration::from_secs(20), |s| {
            s.contains("as ops@example.com") && s.contains("PostgreSQL up")
        })
        .await;
    console.keys(&["q"]);
    let ended = eventually(Duration::from_secs(10), || async { !console.alive() }).await;
    assert!(ended, "q did not quit; the screen:\n{}", console.screen());
}

#[tokio::test]
async fn an_operator_finds_an_org_and_suspends_it() {
    let ctx = TestContext::new().await;
    ctx.user("ops@example.com", "a long enough password", true).await;
    for slug in ["acme", "globex", "initech"] {
        ctx.org(slug).await;
    }
    let app = ctx.spawn_app().await;
    let token = app.login("ops@example.com", "a long enough password").await;
    let get_org = || app.client.get(app.url("/api/v1/orgs/globex")).bearer_auth(&token).send();
    assert_eq!(get_org().await.expect("GET org").status(), 200);

    let console = Console::start(&ctx, "ops@example.com");
    console.wait_for("the dashboard", Duration::from_secs(20), |s| s.contains("3 active")).await;
    console.keys(&[":", "orgs", "Enter"]);
    console
        .wait_for("three orgs", Duration::from_secs(10), |s| s.contains("orgs (3, by slug)"))
        .await;
    console.keys(&["/", "glob", "Enter"]);
    console
        .wait_for("only globex", Duration::from_secs(10), |s| {
            s.contains("orgs (1 matching \"glob\", by slug)")
                && s.contains("globex")
                && !s.contains("initech")
        })
        .await;
    console.keys(&["s"]);
    console
        .wait_for("the question", Duration::from_secs(10), |s| s.contains("Suspend org 'globex'?"))
        .await;
    console.keys(&["y"]);
    console
        .wait_for("globex suspended", Duration::from_secs(10), |s| {
            s.contains("org 'globex' is suspended") && s.contains("suspended")
        })
        .await;

    // The API no longer serves it (every process drops its cached org).
    let gone = eventually(Duration::from_secs(5), || async {
        get_org().await.is_ok_and(|r| r.status() == 404)
    })
    .await;
    assert!(gone, "GET /orgs/globex still answers after the suspension");
    let (actor, action): (String, String) = sqlx::query_as(
        "SELECT actor, action FROM public.audit_events WHERE action = 'org.suspended'",
    )
    .fetch_one(&ctx.pool)
    .await
    .expect("the suspension is audited");
    assert_eq!((actor.as_str(), action.as_str()), ("user:ops@example.com", "org.suspended"));
}

#[tokio::test]
async fn an_operator_switches_a_flag_on_for_one_org() {
    let ctx = TestContext::new().await;
    ctx.user("ops@example.com", "a long enough password", true).await;
    ctx.org("acme").await;
    ctx.org("globex").await;
    let app = ctx.spawn_app().await;
    let token = app.login("ops@example.com", "a long enough password").await;
    let webhooks = |slug: &'static str| {
        let request =
            app.client.get(app.url(&format!("/api/v1/orgs/{slug}/flags"))).bearer_auth(&token);
        async move {
            let body: serde_json::Value =
                request.send().await.expect("GET flags").json().await.expect("flags body");
            body["items"]
                .as_array()
                .and_then(|flags| flags.iter().find(|f| f["name"] == "webhooks").cloned())
                .unwrap_or(body)
        }
    };
    assert_eq!(webhooks("acme").await["enabled"], false);

    let console = Console::start(&ctx, "ops@example.com");
    console.wait_for("the dashboard", Duration::from_secs(20), |s| s.contains("2 active")).await;
    console.keys(&[":", "flags", "Enter"]);
    console
        .wait_for("the matrix", Duration::from_secs(10), |s| {
            s.contains("globex") && s.contains("webhooks")
        })
        .await;
    // webhooks is the second flag; acme the first org column after global.
    console.keys(&["j", "l", "Space"]);
    console
        .wait_for("the change", Duration::from_secs(10), |s| s.contains("webhooks on for acme"))
        .await;

    let on = eventually(Duration::from_secs(5), || async {
        let flag = webhooks("acme").await;
        flag["enabled"] == true && flag["source"] == "org"
    })
    .await;
    assert!(on, "GET /orgs/acme/flags: {}", webhooks("acme").await);
    assert_eq!(webhooks("globex").await["enabled"], false, "other orgs keep their value");
    let actor: String =
        sqlx::query_scalar("SELECT actor FROM public.audit_events WHERE action = 'flag.changed'")
            .fetch_one(&ctx.pool)
            .await
            .expect("the change is audited");
    assert_eq!(actor, "user:ops@example.com");
}

#[tokio::test]
async fn an_operator_retries_a_dead_job_and_it_runs() {
    use orgstack::jobs::{JobStatus, NewJob};
    let ctx = TestContext::new().await;
    ctx.user("ops@example.com", "a long enough password", true).await;
    let org = ctx.org("acme").await;
    let jobs = ctx.jobs();
    let until = chrono::Utc::now() + chrono::Duration::seconds(2);
    let job = NewJob {
        max_attempts: Some(1),
        ..NewJob::new("sleep", serde_json::json!({ "fail_until": until }))
    };
    let id =
        jobs.enqueue(&org, &orgstack::accounts::Actor::System, job).await.expect("enqueue").job.id;
    let _worker = spawn_cli(&ctx, &["worker", "--concurrency", "2"]);
    let status = |want: JobStatus| {
        let jobs = jobs.clone();
        let org = org.clone();
        async move { jobs.get(&org, id).await.is_ok_and(|j| j.status == want) }
    };
    assert!(eventually(Duration::from_secs(20), || status(JobStatus::Dead)).await, "never dead");

    let console = Console::start(&ctx, "ops@example.com");
    console.wait_for("the dashboard", Duration::from_secs(20), |s| s.contains("1 active")).await;
    console.keys(&[":", "orgs", "Enter"]);
    console.wait_for("acme", Duration::from_secs(10), |s| s.contains("orgs (1, by slug)")).await;
    console.keys(&["Enter"]);
    console
        .wait_for("the dead job", Duration::from_secs(10), |s| {
            s.contains("jobs of acme") && s.contains("sleep") && s.contains("dead")
        })
        .await;
    // The handler fails until `until`: retry after it.
    tokio::time::sleep((until - chrono::Utc::now()).to_std().unwrap_or_default()).await;
    console.keys(&["R"]);
    console
        .wait_for("the question", Duration::from_secs(10), |s| s.contains("Retry sleep job"))
        .await;
    console.keys(&["y"]);
    console.wait_for("the retry", Duration::from_secs(10), |s| s.contains("retry done")).await;
    assert!(
        eventually(Duration::from_secs(20), || status(JobStatus::Succeeded)).await,
        "the retry never ran"
    );
    console.keys(&["r"]);
    console
        .wait_for("the job succeeded", Duration::from_secs(10), |s| s.contains("succeeded"))
        .await;
    let job = jobs.get(&org, id).await.expect("job");
    assert_eq!(job.attempts, 1, "a retried dead job gets a fresh set of attempts");
}

#[tokio::test]
async fn an_operator_creates_a_user_and_deletes_an_org_by_typing_its_slug() {
    let ctx = TestContext::new().await;
    ctx.user("ops@example.com", "a long enough password", true).await;
    ctx.org("acme").await;
    let app = ctx.spawn_app().await;

    let console = Console::start(&ctx, "ops@example.com");
    console.wait_for("the dashboard", Duration::from_secs(20), |s| s.contains("1 active")).await;
    console.keys(&[":", "users", "Enter"]);
    console.wait_for("the users", Duration::from_secs(10), |s| s.contains("ops@example.com")).await;
    // A new user from the form; the password is never shown.
    console.keys(&["n"]);
    console.wait_for("the form", Duration::from_secs(10), |s| s.contains("create a user")).await;
    console.keys(&["-l", "carol@example.com"]);
    console.keys(&["Tab"]);
    console.keys(&["-l", "Carol"]);
    console.keys(&["Tab"]);
    console.keys(&["-l", "carols long password"]);
    console.keys(&["Tab"]);
    console.keys(&["-l", "carols long password"]);
    console
        .wait_for("the masked password", Duration::from_secs(10), |s| {
            s.contains("••••••••••") && !s.contains("carols long")
        })
        .await;
    console.keys(&["Enter"]);
    console
        .wait_for("the new user", Duration::from_secs(10), |s| {
            s.contains("created user carol@example.com") && s.contains("carol@example.com")
        })
        .await;
    app.login("carol@example.com", "carols long password").await;

    // Soft-delete acme: only its slug typed back does it.
    console.keys(&[":", "orgs", "Enter"]);
    console.wait_for("acme", Duration::from_secs(10), |s| s.contains("orgs (1")).await;
    console.keys(&["D"]);
    console
        .wait_for("the question", Duration::from_secs(10), |s| s.contains("soft-delete acme"))
        .await;
    console.keys(&["-l", "acm"]);
    console.keys(&["Enter"]);
    console
        .wait_for("the refusal", Duration::from_secs(10), |s| s.contains("type \"acme\" exactly"))
        .await;
    console.keys(&["-l", "e"]);
    console.keys(&["Enter"]);
    console
        .wait_for("acme deleted", Duration::from_secs(10), |s| {
            s.contains("org 'acme' deleted") && s.contains("deleted")
        })
        .await;
    let status: String = sqlx::query_scalar("SELECT status FROM public.orgs WHERE slug = 'acme'")
        .fetch_one(&ctx.pool)
        .await
        .expect("acme");
    assert_eq!(status, "deleted");
    let actors: Vec<String> = sqlx::query_scalar(
        "SELECT actor FROM public.audit_events WHERE action = 'org.deleted' \
         OR (action = 'user.created' AND details->>'email' = 'carol@example.com') \
         ORDER BY occurred_at",
    )
    .fetch_all(&ctx.pool)
    .await
    .expect("audit");
    assert_eq!(actors, ["user:ops@example.com", "user:ops@example.com"]);
}
