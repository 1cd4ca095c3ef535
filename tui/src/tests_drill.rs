//! `update` and snapshots of the users, schedules and audit views, the
//! forms and the drill-downs (members, an org's flags, a user, a job with
//! its live log, a worker's jobs, a queue's jobs).

use chrono::{TimeZone, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use orgstack::accounts::Role;
use orgstack::accounts::audit::{AuditEvent, AuditSearch};
use orgstack::accounts::members::{ApiKey, Member, Membership};
use orgstack::accounts::users::{SessionInfo, User};
use orgstack::jobs::browse::{QueuedJob, Section};
use orgstack::jobs::worker::RunningJob;
use orgstack::jobs::{Job, JobStatus, StoredLine};
use tenancy::OrgStatus;
use uuid::Uuid;

use crate::app::{
    AuditPage, Command, Detail, GlobalRow, JobAction, JobDetail, MembersPage, Message, OrgRef,
    QueueAction, QueueJobPage, ScheduleAction, SchedulePage, UserAction, UserDetail, UserPage,
    View, update,
};
use crate::tests::{app_with_data, app_with_orgs, key, org, press, render};

fn at(minute: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, 8, minute, 0).single().expect("a valid time")
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(0x019a_0000_0000_7000_8000_0000_0000_0000 + n)
}

fn enter() -> Message {
    key(KeyCode::Enter)
}

fn type_text(app: &mut crate::app::App, text: &str) {
    for c in text.chars() {
        assert_eq!(update(app, key(KeyCode::Char(c))), None, "typing {c:?} runs nothing");
    }
}

fn user(email: &str, active: bool, admin: bool) -> User {
    User {
        id: id(u128::from(email.len() as u64) * 7),
        email: email.to_owned(),
        name: email.split('@').next().unwrap_or_default().to_owned(),
        is_platform_admin: admin,
        is_active: active,
        last_login_at: active.then(|| at(30)),
        created_at: at(0),
    }
}

fn app_with_users() -> crate::app::App {
    let mut app = app_with_data();
    press(&mut app, ":us");
    assert_eq!(update(&mut app, enter()), Some(Command::LoadUsers { filter: String::new() }));
    let page = UserPage {
        filter: String::new(),
        users: vec![
            user("ada@example.com", true, true),
            user("bob@example.com", true, false),
            user("eve@example.com", false, false),
        ],
    };
    update(&mut app, Message::UsersLoaded(Ok(page)));
    app
}

#[test]
fn users_are_searched_in_the_database() {
    let mut app = app_with_users();
    press(&mut app, "/");
    type_text(&mut app, "bob");
    assert_eq!(update(&mut app, enter()), Some(Command::LoadUsers { filter: "bob".into() }));
    assert_eq!(app.view, View::Users);
}

#[test]
fn creating_a_user_masks_the_password_and_checks_both_copies() {
    let mut app = app_with_users();
    press(&mut app, "n");
    assert!(app.form.is_some());
    type_text(&mut app, "new@example.com");
    update(&mut app, key(KeyCode::Tab));
    type_text(&mut app, "New");
    update(&mut app, key(KeyCode::Tab));
    type_text(&mut app, "correct horse battery");
    update(&mut app, key(KeyCode::Tab));
    type_text(&mut app, "correct horse battery!");
    insta::assert_snapshot!("user_form_80x24", render(&app, 80, 24));
    insta::assert_snapshot!("user_form_160x48", render(&app, 160, 48));
    let screen = render(&app, 80, 24);
    assert!(!screen.contains("horse"), "a password is never drawn");
    assert_eq!(update(&mut app, enter()), None, "the copies differ: refused");
    assert!(app.form.as_ref().and_then(|f| f.error.clone()).is_some_and(|e| e.contains("differ")));
    update(&mut app, key(KeyCode::Backspace));
    assert_eq!(
        update(&mut app, enter()),
        Some(Command::CreateUser {
            email: "new@example.com".into(),
            name: "New".into(),
            password: "correct horse battery".into(),
        })
    );
    assert_eq!(app.form, None);
}

#[test]
fn set_password_deactivate_and_promote_ask_first() {
    let mut app = app_with_users();
    press(&mut app, "j"); // bob
    press(&mut app, "p");
    type_text(&mut app, "a new long password");
    update(&mut app, key(KeyCode::Tab));
    type_text(&mut app, "a new long password");
    assert_eq!(
        update(&mut app, enter()),
        Some(Command::SetPassword {
            email: "bob@example.com".into(),
            password: "a new long password".into(),
        })
    );
    assert_eq!(press(&mut app, "D"), vec![]);
    assert!(app.confirm.is_some());
    assert_eq!(
        press(&mut app, "y"),
        vec![Command::User { email: "bob@example.com".into(), action: UserAction::Deactivate }]
    );
    press(&mut app, "A");
    assert_eq!(
        press(&mut app, "y"),
        vec![Command::User { email: "bob@example.com".into(), action: UserAction::Promote }]
    );
    // Ada is already an admin; Eve is already inactive.
    press(&mut app, "gA");
    assert!(app.confirm.is_none());
    assert!(app.error.as_deref().is_some_and(|e| e.contains("already a platform admin")));
    press(&mut app, "GD");
    assert!(app.confirm.is_none());
    assert!(app.error.as_deref().is_some_and(|e| e.contains("already inactive")));
}

fn user_detail() -> UserDetail {
    let acme = org("acme", OrgStatus::Active, 2);
    UserDetail {
        user: user("bob@example.com", true, false),
        memberships: vec![Membership {
            org_id: acme.id,
            slug: "acme".into(),
            name: "acme Inc.".into(),
            role: Role::Admin,
        }],
        sessions: vec![
            SessionInfo {
                id: id(11),
                created_at: at(10),
                expires_at: at(10) + chrono::Duration::days(14),
                last_used_at: Some(at(59)),
                revoked_at: None,
            },
            SessionInfo {
                id: id(12),
                created_at: at(1),
                expires_at: at(1) + chrono::Duration::days(14),
                last_used_at: None,
                revoked_at: Some(at(2)),
            },
        ],
        keys: vec![(
            "acme".into(),
            acme.id,
            ApiKey {
                id: id(21),
                name: "ci".into(),
                role: Role::Member,
                prefix: "osk_ab12".into(),
                created_at: at(5),
                expires_at: None,
                last_used_at: None,
                revoked_at: None,
            },
        )],
        row: 0,
    }
}

#[test]
fn a_user_shows_memberships_sessions_and_keys_with_revoke() {
    let mut app = app_with_users();
    press(&mut app, "j");
    let bob = app.selected_user().map(|u| u.id).expect("a user");
    assert_eq!(update(&mut app, enter()), Some(Command::LoadUser { id: bob }));
    update(&mut app, Message::UserLoaded(Ok(Box::new(user_detail()))));
    insta::assert_snapshot!("user_detail_80x24", render(&app, 80, 24));
    insta::assert_snapshot!("user_detail_160x48", render(&app, 160, 48));
    press(&mut app, "x");
    assert_eq!(press(&mut app, "y"), vec![Command::RevokeSession { user: bob, session: id(11) }]);
    press(&mut app, "jx");
    assert!(app.confirm.is_none(), "an ended session is not revoked again");
    press(&mut app, "jx");
    let acme = org("acme", OrgStatus::Active, 2).id;
    assert_eq!(press(&mut app, "y"), vec![Command::RevokeApiKey { org: acme, key: id(21) }]);
    // Esc goes back to the list.
    update(&mut app, key(KeyCode::Esc));
    assert!(app.details.is_empty());
    assert_eq!(app.view, View::Users);
}

#[test]
fn orgs_are_created_renamed_and_sorted() {
    let mut app = app_with_orgs();
    press(&mut app, "n");
    type_text(&mut app, "Umbrella Corp");
    update(&mut app, enter());
    assert_eq!(
        update(&mut app, enter()),
        Some(Command::CreateOrg { name: "Umbrella Corp".into(), slug: String::new() })
    );
    press(&mut app, "e");
    for _ in 0.."acme Inc.".len() {
        update(&mut app, key(KeyCode::Backspace));
    }
    type_text(&mut app, "Acme Corporation");
    assert_eq!(
        update(&mut app, enter()),
        Some(Command::RenameOrg { slug: "acme".into(), name: "Acme Corporation".into() })
    );
    // o: by name, status, version (laggards first), members (most first).
    press(&mut app, "ooo");
    let slugs = |app: &crate::app::App| -> Vec<String> {
        app.orgs.as_ref().map_or(vec![], |p| p.orgs.iter().map(|o| o.slug.to_string()).collect())
    };
    assert_eq!(slugs(&app)[0], "initech", "by version: the laggard first");
    press(&mut app, "o");
    assert_eq!(slugs(&app), ["acme", "globex", "initech"], "by members: most first");
}

#[test]
fn delete_and_purge_need_the_slug_typed_back() {
    let mut app = app_with_orgs();
    press(&mut app, "P");
    assert!(app.form.is_none(), "an active org is not purged");
    assert!(app.error.as_deref().is_some_and(|e| e.contains("soft-delete it first")));
    press(&mut app, "D");
    type_text(&mut app, "acne");
    assert_eq!(update(&mut app, enter()), None, "a wrong slug is refused");
    insta::assert_snapshot!("org_delete_80x24", render(&app, 80, 24));
    insta::assert_snapshot!("org_delete_160x48", render(&app, 160, 48));
    for _ in 0..4 {
        update(&mut app, key(KeyCode::Backspace));
    }
    type_text(&mut app, "acme");
    assert_eq!(update(&mut app, enter()), Some(Command::DeleteOrg { slug: "acme".into() }));

    let mut page = app.orgs.clone().expect("orgs");
    page.orgs[0].status = OrgStatus::Deleted;
    update(&mut app, Message::OrgsLoaded(Ok(page)));
    press(&mut app, "D");
    assert!(app.form.is_none(), "already deleted");
    press(&mut app, "P");
    type_text(&mut app, "acme");
    assert_eq!(update(&mut app, enter()), Some(Command::PurgeOrg { slug: "acme".into() }));
}

#[test]
fn members_of_an_org_and_their_roles() {
    let mut app = app_with_orgs();
    assert_eq!(press(&mut app, "m"), vec![Command::LoadMembers { org: "acme".into() }]);
    let page = MembersPage {
        org: "acme".into(),
        members: vec![
            Member {
                user_id: id(1),
                email: "ada@example.com".into(),
                name: "Ada".into(),
                role: Role::Owner,
                joined_at: at(0),
            },
            Member {
                user_id: id(2),
                email: "bob@example.com".into(),
                name: "Bob".into(),
                role: Role::Member,
                joined_at: at(1),
            },
        ],
        row: 0,
    };
    update(&mut app, Message::MembersLoaded(Ok(page)));
    insta::assert_snapshot!("members_80x24", render(&app, 80, 24));
    insta::assert_snapshot!("members_160x48", render(&app, 160, 48));
    press(&mut app, "o");
    assert!(app.confirm.is_none(), "Ada is already owner");
    press(&mut app, "ja");
    assert_eq!(
        press(&mut app, "y"),
        vec![Command::SetRole { org: "acme".into(), user: id(2), role: Role::Admin }]
    );
    // After the change, the members are read again.
    assert_eq!(
        update(&mut app, Message::Done(Ok("bob is admin".into()))),
        Some(Command::LoadMembers { org: "acme".into() })
    );
}

#[test]
fn an_orgs_flags_switch_for_that_org() {
    let mut app = crate::tests::app_with_flags();
    let flags = app.flags.clone().expect("flags");
    update(&mut app, key(KeyCode::Tab)); // leave flags
    press(&mut app, ":orgs");
    update(&mut app, enter());
    update(
        &mut app,
        Message::OrgsLoaded(Ok(crate::app::OrgPage {
            filter: String::new(),
            orgs: vec![flags.orgs[0].clone()],
            latest_version: 2,
            members: Default::default(),
        })),
    );
    assert_eq!(press(&mut app, "F"), vec![Command::LoadOrgFlags { org: "acme".into() }]);
    let page = crate::app::FlagPage { flags: flags.flags, orgs: vec![flags.orgs[0].clone()] };
    update(&mut app, Message::OrgFlagsLoaded(Ok(page)));
    insta::assert_snapshot!("org_flags_80x24", render(&app, 80, 24));
    insta::assert_snapshot!("org_flags_160x48", render(&app, 160, 48));
    let acme = (flags.orgs[0].id, "acme".to_owned());
    assert_eq!(
        press(&mut app, " "),
        vec![Command::SetFlag {
            name: "file_uploads".into(),
            org: Some(acme.clone()),
            enabled: Some(false)
        }]
    );
    assert_eq!(press(&mut app, "x"), vec![], "nothing set there to clear");
    assert_eq!(
        press(&mut app, "jx"),
        vec![Command::SetFlag { name: "webhooks".into(), org: Some(acme), enabled: None }]
    );
}

fn queued(
    n: u128,
    org: Option<&str>,
    kind: &str,
    status: Option<JobStatus>,
) -> (Option<String>, QueuedJob) {
    (
        org.map(str::to_owned),
        QueuedJob {
            id: id(n),
            org: org.map(|slug| crate::tests::org(slug, OrgStatus::Active, 2).id),
            kind: kind.to_owned(),
            status,
            attempts: if status == Some(JobStatus::Dead) { 3 } else { 0 },
            max_attempts: 3,
            error: (status == Some(JobStatus::Dead)).then(|| "boom".to_owned()),
            since: Some(at(58)),
            worker: None,
        },
    )
}

fn app_with_queue_jobs() -> crate::app::App {
    let mut app = app_with_data();
    press(&mut app, ":queues");
    update(&mut app, enter());
    assert_eq!(
        update(&mut app, enter()),
        Some(Command::LoadQueueJobs {
            queue: "default".into(),
            section: Section::Waiting,
            org: String::new(),
            kind: String::new(),
        })
    );
    let page = QueueJobPage {
        queue: "default".into(),
        section: Section::Dead,
        org: String::new(),
        kind: String::new(),
        jobs: vec![
            queued(1, Some("acme"), "sleep", Some(JobStatus::Dead)),
            queued(2, None, "maintenance.prune_jobs", None),
        ],
        row: 0,
    };
    update(&mut app, Message::QueueJobsLoaded(Ok(page)));
    app
}

#[test]
fn a_queues_jobs_by_section_and_filter() {
    let mut app = app_with_queue_jobs();
    insta::assert_snapshot!("queue_jobs_80x24", render(&app, 80, 24));
    insta::assert_snapshot!("queue_jobs_160x48", render(&app, 160, 48));
    assert_eq!(
        press(&mut app, "f"),
        vec![Command::LoadQueueJobs {
            queue: "default".into(),
            section: Section::Waiting,
            org: String::new(),
            kind: String::new(),
        }],
        "f cycles the sections: dead → waiting"
    );
    press(&mut app, "/");
    type_text(&mut app, "acme");
    update(&mut app, key(KeyCode::Tab));
    type_text(&mut app, "sleep");
    assert_eq!(
        update(&mut app, enter()),
        Some(Command::LoadQueueJobs {
            queue: "default".into(),
            section: Section::Dead,
            org: "acme".into(),
            kind: "sleep".into(),
        })
    );
    // A dead org job is retried after a y; a platform job has no record.
    press(&mut app, "R");
    assert_eq!(
        press(&mut app, "y"),
        vec![Command::Job { org: "acme".into(), id: id(1), action: JobAction::Retry }]
    );
    assert_eq!(
        update(&mut app, enter()),
        Some(Command::LoadJob { org: OrgRef::Slug("acme".into()), id: id(1) })
    );
    press(&mut app, "j");
    assert_eq!(update(&mut app, enter()), None);
    assert!(app.error.as_deref().is_some_and(|e| e.contains("platform job")));
}

#[test]
fn queues_pause_resume_and_purge_after_a_y() {
    let mut app = app_with_data();
    press(&mut app, ":queues");
    update(&mut app, enter());
    press(&mut app, "p");
    assert_eq!(
        press(&mut app, "y"),
        vec![Command::Queue { queue: "default".into(), action: QueueAction::Pause }]
    );
    press(&mut app, "P");
    assert!(app.confirm.as_ref().is_some_and(|c| c.question.contains("1200 waiting")));
    assert_eq!(
        press(&mut app, "y"),
        vec![Command::Queue { queue: "default".into(), action: QueueAction::Purge }]
    );
    // `emails` is paused: p resumes it at once.
    assert_eq!(
        press(&mut app, "jp"),
        vec![Command::Queue { queue: "emails".into(), action: QueueAction::Resume }]
    );
}

fn job_record(status: JobStatus) -> Job {
    Job {
        id: id(1),
        kind: "sleep".into(),
        queue: "default".into(),
        status,
        payload: serde_json::json!({ "ms": 5000 }),
        result: None,
        error: None,
        attempts: 1,
        max_attempts: 3,
        run_at: at(58),
        unique_key: None,
        created_by: "user:ada@example.com".into(),
        worker_id: Some("vm:4242:1a2b3c4d".into()),
        cancel_requested_at: None,
        created_at: at(58),
        updated_at: at(59),
        started_at: Some(at(59)),
        finished_at: None,
    }
}

fn line(n: i32, text: &str) -> StoredLine {
    StoredLine { attempt: 1, line_no: n, at: at(59), level: "info".into(), line: text.into() }
}

#[test]
fn a_job_shows_its_record_and_follows_its_log() {
    let mut app = app_with_queue_jobs();
    let detail = JobDetail {
        org: "acme".into(),
        job: job_record(JobStatus::Running),
        logs: vec![line(1, "sleeping 5000 ms"), line(2, "half way")],
        scroll: 0,
    };
    update(&mut app, Message::JobLoaded(Ok(Box::new(detail))));
    assert_eq!(app.details.len(), 2, "over the queue's jobs");
    insta::assert_snapshot!("job_detail_80x24", render(&app, 80, 24));
    insta::assert_snapshot!("job_detail_160x48", render(&app, 160, 48));
    // Each second: the snapshot and the lines after the last one shown.
    let Some(Command::Batch(commands)) = update(&mut app, Message::Tick) else {
        panic!("a tick refreshes and tails")
    };
    assert!(commands.contains(&Command::TailJob {
        org: "acme".into(),
        id: id(1),
        after: Some((1, 2))
    }));
    let mut done = job_record(JobStatus::Succeeded);
    done.finished_at = Some(at(59));
    update(&mut app, Message::JobTail(Ok((Box::new(done), vec![line(3, "done")]))));
    let Some(Detail::Job(shown)) = app.details.last() else { panic!("the job is shown") };
    assert_eq!(shown.logs.len(), 3);
    assert_eq!(shown.job.status, JobStatus::Succeeded);
    press(&mut app, "c");
    assert!(app.error.as_deref().is_some_and(|e| e.contains("cannot cancel a succeeded job")));
    // Esc back to the queue's jobs, then to the queues.
    update(&mut app, key(KeyCode::Esc));
    assert!(matches!(app.details.last(), Some(Detail::Queue(_))));
    update(&mut app, key(KeyCode::Esc));
    assert!(app.details.is_empty());
    assert_eq!(app.view, View::Queues);
}

#[test]
fn a_workers_running_jobs_are_live() {
    let mut app = app_with_data();
    let mut snap = crate::tests::snapshot(4, 2_000);
    let acme = org("acme", OrgStatus::Active, 2).id;
    snap.workers[0].running_jobs = vec![
        RunningJob { id: id(1), org: Some(acme), kind: "sleep".into(), started_at: Some(at(59)) },
        RunningJob { id: id(2), org: None, kind: "noop".into(), started_at: Some(at(59)) },
    ];
    snap.slugs.insert(acme, "acme".to_owned());
    crate::tests::loaded(&mut app, snap);
    press(&mut app, ":workers");
    update(&mut app, enter());
    assert_eq!(update(&mut app, enter()), None);
    insta::assert_snapshot!("worker_jobs_80x24", render(&app, 80, 24));
    insta::assert_snapshot!("worker_jobs_160x48", render(&app, 160, 48));
    assert_eq!(
        update(&mut app, enter()),
        Some(Command::LoadJob { org: OrgRef::Id(acme), id: id(1) })
    );
    press(&mut app, "j");
    assert_eq!(update(&mut app, enter()), None, "a platform job has no record");
}

fn schedule(name: &str, enabled: bool, last: Option<Uuid>) -> orgstack::jobs::schedules::Schedule {
    orgstack::jobs::schedules::Schedule {
        id: id(name.len() as u128),
        name: name.into(),
        cron: "*/5 * * * *".into(),
        kind: "noop".into(),
        queue: None,
        payload: serde_json::Value::Null,
        enabled,
        skip_missed: false,
        last_fire_at: last.map(|_| at(55)),
        last_job_id: last,
        next_run_at: enabled.then(|| at(59) + chrono::Duration::minutes(1)),
        created_by: "user:ada@example.com".into(),
        created_at: at(0),
        updated_at: at(0),
    }
}

#[test]
fn schedules_of_an_org_enable_disable_and_run_now() {
    let mut app = app_with_data();
    press(&mut app, ":sch");
    assert_eq!(update(&mut app, enter()), Some(Command::LoadSchedules { org: None }));
    press(&mut app, "/");
    type_text(&mut app, "acme");
    assert_eq!(
        update(&mut app, enter()),
        Some(Command::LoadSchedules { org: Some("acme".into()) })
    );
    let page = SchedulePage {
        org: Some("acme".into()),
        global: vec![GlobalRow {
            name: "maintenance.prune_jobs".into(),
            cron: "17 3 * * *".into(),
            kind: "maintenance.prune_jobs".into(),
            next_run_at: Some(at(0) + chrono::Duration::hours(19)),
        }],
        schedules: vec![schedule("digest", true, Some(id(99))), schedule("cleanup", false, None)],
        outcomes: [(id(99), JobStatus::Failed)].into_iter().collect(),
    };
    update(&mut app, Message::SchedulesLoaded(Ok(page)));
    insta::assert_snapshot!("schedules_80x24", render(&app, 80, 24));
    insta::assert_snapshot!("schedules_160x48", render(&app, 160, 48));
    press(&mut app, "e");
    assert_eq!(
        press(&mut app, "y"),
        vec![Command::Schedule { org: "acme".into(), id: id(6), action: ScheduleAction::Disable }]
    );
    press(&mut app, "je");
    assert_eq!(
        press(&mut app, "y"),
        vec![Command::Schedule { org: "acme".into(), id: id(7), action: ScheduleAction::Enable }]
    );
    press(&mut app, "N");
    assert_eq!(
        press(&mut app, "y"),
        vec![Command::Schedule { org: "acme".into(), id: id(7), action: ScheduleAction::RunNow }]
    );
}

#[test]
fn audit_events_filtered_by_org_actor_and_action() {
    let mut app = app_with_data();
    press(&mut app, ":audit");
    update(&mut app, enter());
    press(&mut app, "/");
    type_text(&mut app, "acme");
    update(&mut app, key(KeyCode::Tab));
    type_text(&mut app, "ada");
    update(&mut app, key(KeyCode::Tab));
    type_text(&mut app, "job.");
    let search = AuditSearch { actor: Some("ada".into()), action: Some("job.".into()) };
    assert_eq!(
        update(&mut app, enter()),
        Some(Command::LoadAudit { org: Some("acme".into()), search: search.clone() })
    );
    let event = |n: u128, action: &str| AuditEvent {
        id: id(n),
        occurred_at: at(50 + n as u32),
        actor: "user:ada@example.com".into(),
        action: action.into(),
        target: Some(id(100 + n).to_string()),
        details: serde_json::json!({ "kind": "sleep" }),
    };
    let page = AuditPage {
        org: Some("acme".into()),
        search,
        events: vec![event(2, "job.retried"), event(1, "job.cancelled")],
    };
    update(&mut app, Message::AuditLoaded(Ok(page)));
    insta::assert_snapshot!("audit_80x24", render(&app, 80, 24));
    insta::assert_snapshot!("audit_160x48", render(&app, 160, 48));
}

#[test]
fn the_users_view_at_both_sizes() {
    let app = app_with_users();
    insta::assert_snapshot!("users_80x24", render(&app, 80, 24));
    insta::assert_snapshot!("users_160x48", render(&app, 160, 48));
}

#[test]
fn ctrl_c_quits_even_inside_a_form() {
    let mut app = app_with_users();
    press(&mut app, "n");
    update(&mut app, Message::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)));
    assert!(app.quit);
}

#[test]
fn changes_elsewhere_refresh_the_figures_and_the_page_they_touch() {
    use crate::app::Changes;
    let mut app = crate::tests::app_with_flags();
    let flags = Changes { flags: true, ..Changes::default() };
    let Some(Command::Batch(commands)) = update(&mut app, Message::Changed(flags)) else {
        panic!("a flag change refreshes the matrix and the figures")
    };
    assert!(matches!(commands[0], Command::Refresh { .. }));
    assert_eq!(commands[1], Command::LoadFlags);
    // While a refresh runs, only the page is read again.
    assert_eq!(update(&mut app, Message::Changed(flags)), Some(Command::LoadFlags));
    // A job event does not touch the flags.
    let jobs = Changes { jobs: true, ..Changes::default() };
    assert_eq!(update(&mut app, Message::Changed(jobs)), None);

    let mut app = app_with_queue_jobs();
    let Some(Command::Batch(commands)) = update(&mut app, Message::Changed(jobs)) else {
        panic!("job events refresh the queue's jobs")
    };
    assert!(commands.contains(&Command::LoadQueueJobs {
        queue: "default".into(),
        section: Section::Dead,
        org: String::new(),
        kind: String::new(),
    }));
}

#[test]
fn docs_console_md_lists_every_key_of_every_view() {
    let docs = include_str!("../../docs/console.md");
    for view in View::ALL {
        for (key, what) in view.keys() {
            let row = format!("| `{key}` | {what} |");
            assert!(docs.contains(&row), "docs/console.md lacks {row} ({} view)", view.name());
        }
    }
}

#[test]
fn rates_use_one_sample_a_second_and_workers_span_heartbeats() {
    let mut app = crate::app::App::new("ops@example.com");
    // Snapshots every half second (live changes between ticks); the queue
    // finishes 100 jobs/s; the worker's counter moves every 2 s (heartbeats).
    for half in 0..=24u32 {
        let mut snap = crate::tests::snapshot(0, 0);
        snap.taken_at = at(0) + chrono::Duration::milliseconds(500 * i64::from(half));
        snap.queues[0].done = u64::from(half) * 50;
        snap.workers[0].processed = u64::from(half / 4) * 200;
        crate::tests::loaded(&mut app, snap);
    }
    assert_eq!(app.throughput.len(), 12, "one sample a second over 12 s");
    assert!(app.throughput.iter().all(|r| *r == 100), "{:?}", app.throughput);
    let (processed, _) = app.worker_rates["vm:4242:1a2b3c4d"];
    assert!((80.0..=120.0).contains(&processed), "smoothed over heartbeats: {processed}");
}
