//! The console's commands against real PostgreSQL and Redis: each
//! [`Command`] as `admin-tui` runs it (through `effects::run`), checked in
//! the rows, the Redis keys and the audit logs.

use std::time::Duration;

use admin_tui::app::{Command, Message, OrgRef, QueueAction, ScheduleAction, UserAction};
use orgstack::accounts::audit::AuditSearch;
use orgstack::accounts::{Actor, Role};
use orgstack::http::AppState;
use orgstack::jobs::browse::Section;
use orgstack::jobs::{JobStatus, NewJob};
use orgstack::queue::QueueName;
use orgstack_tests::{TestContext, TestWorker};
use tokio::sync::mpsc;

use crate::eventually;

/// The operator and the state the console would have.
async fn console(ctx: &TestContext) -> (AppState, Actor) {
    let ops = ctx.user("ops@example.com", "a long enough password", true).await;
    let state = orgstack::app::build_state(ctx.config.clone()).await.expect("app state");
    (state, Actor::User { id: ops.id, email: ops.email })
}

/// Runs `command` as the console does and returns its answer.
async fn run(state: &AppState, operator: &Actor, command: Command) -> Message {
    let (tx, mut rx) = mpsc::unbounded_channel();
    admin_tui::effects::run(command, state.clone(), operator.clone(), tx).await;
    rx.recv().await.expect("an answer")
}

/// Runs an action and returns what the status line would say; panics with
/// the error otherwise.
async fn done(state: &AppState, operator: &Actor, command: Command) -> String {
    match run(state, operator, command.clone()).await {
        Message::Done(Ok(what)) => what,
        other => panic!("{command:?} answered {other:?}"),
    }
}

async fn platform_actions(ctx: &TestContext, action: &str) -> Vec<(String, Option<String>)> {
    sqlx::query_as(
        "SELECT actor, target FROM public.audit_events WHERE action = $1 ORDER BY occurred_at",
    )
    .bind(action)
    .fetch_all(&ctx.pool)
    .await
    .expect("audit rows")
}

#[tokio::test]
async fn a_queue_is_browsed_across_orgs_paused_and_purged() {
    let ctx = TestContext::new().await;
    let (state, ops) = console(&ctx).await;
    let acme = ctx.org("acme").await;
    let globex = ctx.org("globex").await;
    let jobs = ctx.jobs();
    for (org, n) in [(&acme, 3), (&globex, 2)] {
        for _ in 0..n {
            jobs.enqueue(org, &Actor::System, NewJob::new("noop", serde_json::json!({})))
                .await
                .expect("enqueue");
        }
    }
    let later = NewJob {
        run_at: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
        ..NewJob::new("noop", serde_json::json!({}))
    };
    let delayed = jobs.enqueue(&acme, &Actor::System, later).await.expect("delayed").job.id;

    let browse = |section, org: &str, kind: &str| Command::LoadQueueJobs {
        queue: "default".into(),
        section,
        org: org.into(),
        kind: kind.into(),
    };
    let Message::QueueJobsLoaded(Ok(page)) =
        run(&state, &ops, browse(Section::Waiting, "", "")).await
    else {
        panic!("no page")
    };
    assert_eq!(page.jobs.len(), 5);
    let slugs: Vec<_> = page.jobs.iter().map(|(s, _)| s.clone().unwrap_or_default()).collect();
    assert_eq!(slugs, ["acme", "acme", "acme", "globex", "globex"], "oldest first, with slugs");
    assert!(page.jobs.iter().all(|(_, j)| j.kind == "noop" && j.status == Some(JobStatus::Queued)));
    let Message::QueueJobsLoaded(Ok(page)) =
        run(&state, &ops, browse(Section::Waiting, "globex", "")).await
    else {
        panic!("no page")
    };
    assert_eq!(page.jobs.len(), 2, "only globex's");
    let Message::QueueJobsLoaded(Ok(page)) =
        run(&state, &ops, browse(Section::Waiting, "", "sleep")).await
    else {
        panic!("no page")
    };
    assert!(page.jobs.is_empty(), "no sleep job waits");
    let Message::QueueJobsLoaded(Ok(page)) =
        run(&state, &ops, browse(Section::Scheduled, "", "")).await
    else {
        panic!("no page")
    };
    assert_eq!(page.jobs.iter().map(|(_, j)| j.id).collect::<Vec<_>>(), [delayed]);
    let Message::QueueJobsLoaded(Err(why)) =
        run(&state, &ops, browse(Section::Waiting, "nope", "")).await
    else {
        panic!("an unknown org is an error")
    };
    assert!(why.contains("nope"), "{why}");

    // Pause: workers stop fetching; the queue says so.
    let queue = QueueName::default_queue();
    let pause = Command::Queue { queue: "default".into(), action: QueueAction::Pause };
    assert_eq!(done(&state, &ops, pause).await, "queue default paused");
    let handle = jobs.queue(&queue).await.expect("queue");
    assert!(handle.is_paused().await.expect("paused?"));
    let worker = TestWorker::start(&jobs, 2);

    // Purge: the waiting jobs are cancelled and never run; the delayed one stays.
    let purge = Command::Queue { queue: "default".into(), action: QueueAction::Purge };
    assert_eq!(done(&state, &ops, purge).await, "queue default purged: 5 waiting job(s) cancelled");
    assert_eq!(handle.stats().await.expect("stats").depth, 0);
    assert_eq!(
        ctx.job_counts(&acme).await,
        [("cancelled".to_owned(), 3), ("queued".to_owned(), 1)]
    );
    assert_eq!(ctx.job_counts(&globex).await, [("cancelled".to_owned(), 2)]);
    let resume = Command::Queue { queue: "default".into(), action: QueueAction::Resume };
    assert_eq!(done(&state, &ops, resume).await, "queue default resumed");
    tokio::time::sleep(Duration::from_millis(500)).await;
    worker.stop().await;
    assert_eq!(ctx.job_counts(&globex).await, [("cancelled".to_owned(), 2)], "none ran");
    for action in ["queue.paused", "queue.purged", "queue.resumed"] {
        assert_eq!(
            platform_actions(&ctx, action).await,
            [("user:ops@example.com".to_owned(), Some("default".to_owned()))],
            "{action}"
        );
    }
    let org_audit: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {} WHERE action = 'queue.purged' AND actor = 'user:ops@example.com'",
        acme.schema().qualify("audit_events")
    )))
    .fetch_one(&ctx.pool)
    .await
    .expect("org audit");
    assert_eq!(org_audit, 1, "each org's log records the purge");
}

#[tokio::test]
async fn dead_jobs_and_running_jobs_are_found_with_their_org() {
    let ctx = TestContext::new().await;
    let (state, ops) = console(&ctx).await;
    let acme = ctx.org("acme").await;
    let jobs = ctx.jobs();
    let failing = NewJob {
        max_attempts: Some(1),
        ..NewJob::new("sleep", serde_json::json!({ "fail_attempts": 5 }))
    };
    let dead = jobs.enqueue(&acme, &Actor::System, failing).await.expect("enqueue").job.id;
    let slow = NewJob::new("sleep", serde_json::json!({ "ms": 30_000, "lines": 30 }));
    let running = jobs.enqueue(&acme, &Actor::System, slow).await.expect("enqueue").job.id;
    let worker = TestWorker::start(&jobs, 2);

    // The worker's heartbeat names the job it runs, with its org and kind.
    let seen = eventually(Duration::from_secs(20), || async {
        orgstack::jobs::worker::list_workers(&jobs).await.is_ok_and(|w| {
            w.iter().any(|w| {
                w.running_jobs
                    .iter()
                    .any(|j| j.id == running && j.org == Some(acme.id) && j.kind == "sleep")
            })
        })
    })
    .await;
    assert!(seen, "the heartbeat never listed the running job");
    let dead_now = eventually(Duration::from_secs(20), || async {
        jobs.get(&acme, dead).await.is_ok_and(|j| j.status == JobStatus::Dead)
    })
    .await;
    assert!(dead_now, "the failing job never died");
    // Finished entries are counted per queue (the console's jobs/s).
    let counted = eventually(Duration::from_secs(5), || async {
        let queue = jobs.queue(&QueueName::default_queue()).await.expect("queue");
        queue.stats().await.is_ok_and(|s| s.done >= 1)
    })
    .await;
    assert!(counted, "the dead job's entry was not counted as finished");

    let Message::QueueJobsLoaded(Ok(page)) = run(
        &state,
        &ops,
        Command::LoadQueueJobs {
            queue: "default".into(),
            section: Section::Dead,
            org: String::new(),
            kind: String::new(),
        },
    )
    .await
    else {
        panic!("no page")
    };
    assert_eq!(page.jobs.len(), 1);
    let (slug, job) = &page.jobs[0];
    assert_eq!((slug.as_deref(), job.id, job.status), (Some("acme"), dead, Some(JobStatus::Dead)));
    assert!(job.error.as_deref().is_some_and(|e| e.contains("failing attempt 1")));

    let Message::QueueJobsLoaded(Ok(page)) = run(
        &state,
        &ops,
        Command::LoadQueueJobs {
            queue: "default".into(),
            section: Section::Running,
            org: "acme".into(),
            kind: "sleep".into(),
        },
    )
    .await
    else {
        panic!("no page")
    };
    assert_eq!(page.jobs.iter().map(|(_, j)| j.id).collect::<Vec<_>>(), [running]);
    assert!(page.jobs[0].1.worker.as_deref().is_some_and(|w| w == worker.id));

    // The job detail by org id (from a worker's row), then its log tail.
    let Message::JobLoaded(Ok(detail)) =
        run(&state, &ops, Command::LoadJob { org: OrgRef::Id(acme.id), id: running }).await
    else {
        panic!("no job")
    };
    assert_eq!((detail.org.as_str(), detail.job.status), ("acme", JobStatus::Running));
    let after = detail.logs.last().map(|l| (l.attempt, l.line_no));
    let more = eventually(Duration::from_secs(10), || {
        let state = state.clone();
        let ops = ops.clone();
        async move {
            let tail = Command::TailJob { org: "acme".into(), id: running, after };
            matches!(run(&state, &ops, tail).await, Message::JobTail(Ok((_, lines))) if !lines.is_empty())
        }
    })
    .await;
    assert!(more, "the log tail never brought new lines");
    let cancel =
        Command::Job { org: "acme".into(), id: running, action: admin_tui::app::JobAction::Cancel };
    done(&state, &ops, cancel).await;
    worker.stop().await;
}

#[tokio::test]
async fn users_are_managed_from_the_console() {
    let ctx = TestContext::new().await;
    let (state, ops) = console(&ctx).await;
    let create = Command::CreateUser {
        email: "Bob@Example.com".into(),
        name: "Bob".into(),
        password: "a long enough password".into(),
    };
    assert_eq!(done(&state, &ops, create).await, "created user bob@example.com");
    let weak = Command::CreateUser {
        email: "weak@example.com".into(),
        name: String::new(),
        password: "short".into(),
    };
    let Message::Done(Err(why)) = run(&state, &ops, weak).await else { panic!("accepted") };
    assert!(why.contains("password"), "{why}");

    let Message::UsersLoaded(Ok(page)) =
        run(&state, &ops, Command::LoadUsers { filter: "BOB".into() }).await
    else {
        panic!("no users")
    };
    assert_eq!(
        page.users.iter().map(|u| u.email.as_str()).collect::<Vec<_>>(),
        ["bob@example.com"]
    );
    let bob = page.users[0].id;

    // Two sign-ins; one session ended from the console, then every other
    // one by a new password.
    let app = ctx.spawn_app().await;
    let first = app.login("bob@example.com", "a long enough password").await;
    let second = app.login("bob@example.com", "a long enough password").await;
    let Message::UserLoaded(Ok(detail)) = run(&state, &ops, Command::LoadUser { id: bob }).await
    else {
        panic!("no user")
    };
    assert_eq!(detail.sessions.len(), 2);
    let newest = detail.sessions[0].id;
    let revoke = Command::RevokeSession { user: bob, session: newest };
    assert!(done(&state, &ops, revoke.clone()).await.ends_with("ended"));
    assert!(done(&state, &ops, revoke).await.ends_with("had already ended"));
    let me = |token: String| {
        let request = app.client.get(app.url("/api/v1/me")).bearer_auth(token);
        async move { request.send().await.expect("GET me").status().as_u16() }
    };
    let ended = eventually(Duration::from_secs(5), || me(second.clone()).then_some_eq(401)).await;
    assert!(ended, "the revoked session still works");
    assert_eq!(me(first.clone()).await, 200, "the other session goes on");
    assert_eq!(
        platform_actions(&ctx, "session.revoked").await,
        [("user:ops@example.com".to_owned(), Some(newest.to_string()))]
    );

    let password = Command::SetPassword {
        email: "bob@example.com".into(),
        password: "another long password".into(),
    };
    done(&state, &ops, password).await;
    let signed_out =
        eventually(Duration::from_secs(5), || me(first.clone()).then_some_eq(401)).await;
    assert!(signed_out, "a new password ends the sessions");
    app.login("bob@example.com", "another long password").await;

    let promote = Command::User { email: "bob@example.com".into(), action: UserAction::Promote };
    assert_eq!(done(&state, &ops, promote).await, "bob@example.com is now a platform admin");
    let deactivate =
        Command::User { email: "bob@example.com".into(), action: UserAction::Deactivate };
    done(&state, &ops, deactivate).await;
    let (active, admin): (bool, bool) =
        sqlx::query_as("SELECT is_active, is_platform_admin FROM public.users WHERE id = $1")
            .bind(bob)
            .fetch_one(&ctx.pool)
            .await
            .expect("bob");
    assert_eq!((active, admin), (false, true));
    for action in ["user.created", "user.password_changed", "user.promoted", "user.deactivated"] {
        let rows = platform_actions(&ctx, action).await;
        assert!(
            rows.iter().any(|(actor, _)| actor == "user:ops@example.com"),
            "{action}: {rows:?}"
        );
    }
}

/// `status == want`, as a future for [`eventually`].
trait ThenSomeEq {
    async fn then_some_eq(self, want: u16) -> bool;
}

impl<F: std::future::Future<Output = u16>> ThenSomeEq for F {
    async fn then_some_eq(self, want: u16) -> bool {
        self.await == want
    }
}

#[tokio::test]
async fn orgs_are_created_renamed_deleted_and_purged_from_the_console() {
    let ctx = TestContext::new().await;
    let (state, ops) = console(&ctx).await;
    let create = Command::CreateOrg { name: "Umbrella Corp".into(), slug: String::new() };
    assert_eq!(done(&state, &ops, create).await, "created org 'umbrella-corp' (Umbrella Corp)");
    let taken = Command::CreateOrg { name: "Again".into(), slug: "umbrella-corp".into() };
    assert!(matches!(run(&state, &ops, taken).await, Message::Done(Err(_))));
    let rename = Command::RenameOrg { slug: "umbrella-corp".into(), name: "Umbrella".into() };
    done(&state, &ops, rename).await;
    let Message::OrgsLoaded(Ok(page)) =
        run(&state, &ops, Command::LoadOrgs { filter: "umbr".into() }).await
    else {
        panic!("no orgs")
    };
    assert_eq!(page.orgs.len(), 1);
    let org = page.orgs[0].clone();
    assert_eq!(org.name, "Umbrella");
    assert_eq!(page.members.get(&org.id), None, "no members yet");

    // Members and roles: the last owner cannot be demoted.
    let accounts = ctx.accounts();
    let ada = ctx.user("ada@example.com", "a long enough password", false).await;
    accounts.add_owner(&Actor::System, &org, ada.id).await.expect("owner");
    let Message::MembersLoaded(Ok(members)) =
        run(&state, &ops, Command::LoadMembers { org: "umbrella-corp".into() }).await
    else {
        panic!("no members")
    };
    assert_eq!(members.members.len(), 1);
    let demote = Command::SetRole { org: "umbrella-corp".into(), user: ada.id, role: Role::Member };
    let Message::Done(Err(why)) = run(&state, &ops, demote).await else { panic!("demoted") };
    assert!(why.contains("owner"), "{why}");

    done(&state, &ops, Command::DeleteOrg { slug: "umbrella-corp".into() }).await;
    let status: String = sqlx::query_scalar("SELECT status FROM public.orgs WHERE id = $1")
        .bind(org.id.as_uuid())
        .fetch_one(&ctx.pool)
        .await
        .expect("org row");
    assert_eq!(status, "deleted");
    let schema = org.schema().to_string();
    assert!(ctx.schema_exists(&schema).await, "a soft delete keeps the data");
    let purged = done(&state, &ops, Command::PurgeOrg { slug: "umbrella-corp".into() }).await;
    assert!(purged.starts_with("purged org 'umbrella-corp'"), "{purged}");
    assert!(!ctx.schema_exists(&schema).await, "the purge drops the schema");
    for action in ["org.created", "org.renamed", "org.deleted", "org.purged"] {
        assert_eq!(
            platform_actions(&ctx, action).await.first().map(|(actor, _)| actor.as_str()),
            Some("user:ops@example.com"),
            "{action}"
        );
    }
}

#[tokio::test]
async fn schedules_and_audit_from_the_console() {
    let ctx = TestContext::new().await;
    let (state, ops) = console(&ctx).await;
    let acme = ctx.org("acme").await;
    let jobs = ctx.jobs();
    let schedule = jobs
        .create_schedule(
            &acme,
            &Actor::System,
            orgstack::jobs::schedules::NewSchedule {
                name: "digest".into(),
                cron: "0 7 * * *".into(),
                kind: "noop".into(),
                queue: None,
                payload: serde_json::json!({}),
                enabled: true,
                skip_missed: false,
            },
        )
        .await
        .expect("schedule");
    let Message::SchedulesLoaded(Ok(page)) =
        run(&state, &ops, Command::LoadSchedules { org: Some("acme".into()) }).await
    else {
        panic!("no schedules")
    };
    assert!(
        page.global.iter().any(|g| g.name == "maintenance.prune_jobs" && g.next_run_at.is_some())
    );
    assert_eq!(page.schedules.iter().map(|s| s.id).collect::<Vec<_>>(), [schedule.id]);

    let disable =
        Command::Schedule { org: "acme".into(), id: schedule.id, action: ScheduleAction::Disable };
    assert_eq!(done(&state, &ops, disable).await, "schedule digest disabled");
    let now =
        Command::Schedule { org: "acme".into(), id: schedule.id, action: ScheduleAction::RunNow };
    assert!(done(&state, &ops, now).await.starts_with("schedule ran now"));
    assert_eq!(ctx.job_counts(&acme).await, [("queued".to_owned(), 1)]);

    let search = AuditSearch { actor: Some("OPS@".into()), action: Some("schedule.".into()) };
    let Message::AuditLoaded(Ok(page)) =
        run(&state, &ops, Command::LoadAudit { org: Some("acme".into()), search }).await
    else {
        panic!("no audit")
    };
    let actions: Vec<_> = page.events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["schedule.updated"], "only the operator's schedule events");
    let Message::AuditLoaded(Ok(page)) = run(
        &state,
        &ops,
        Command::LoadAudit {
            org: None,
            search: AuditSearch { actor: None, action: Some("org.".into()) },
        },
    )
    .await
    else {
        panic!("no audit")
    };
    assert!(page.events.iter().all(|e| e.action.starts_with("org.")));
}

#[tokio::test]
async fn the_console_hears_of_changes_made_elsewhere() {
    let ctx = TestContext::new().await;
    let (state, _ops) = console(&ctx).await;
    let acme = ctx.org("acme").await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = tokio::spawn(admin_tui::live::listen(state.clone(), tx));
    // Subscribed once a change is heard: keep changing until then.
    let flipper = {
        let state = state.clone();
        tokio::spawn(async move {
            for i in 0..50 {
                let _ = state.flags.set(&Actor::System, "webhooks", None, i % 2 == 0).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let got = tokio::time::timeout(Duration::from_secs(10), heard(&mut rx, |c| c.flags)).await;
    assert_eq!(got, Ok(true), "a flag change was not heard");
    flipper.abort();
    let jobs = ctx.jobs();
    let enqueuer = tokio::spawn(async move {
        for _ in 0..50 {
            let _ = jobs
                .enqueue(&acme, &Actor::System, NewJob::new("noop", serde_json::json!({})))
                .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let got = tokio::time::timeout(Duration::from_secs(10), heard(&mut rx, |c| c.jobs)).await;
    assert_eq!(got, Ok(true), "a job event was not heard");
    enqueuer.abort();
    listener.abort();
}

/// Waits for a [`Message::Changed`] that `want` accepts.
async fn heard(
    rx: &mut mpsc::UnboundedReceiver<Message>,
    want: fn(&admin_tui::app::Changes) -> bool,
) -> bool {
    loop {
        match rx.recv().await {
            Some(Message::Changed(changes)) if want(&changes) => return true,
            Some(_) => {}
            None => return false,
        }
    }
}
