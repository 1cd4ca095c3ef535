//! `update` on key presses and answers, and snapshots of every view on
//! fixed data at 80×24 and 160×48.

use chrono::{TimeZone, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use orgstack::jobs::worker::WorkerInfo;
use orgstack::queue::{QueueName, QueueStats};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use crate::app::{App, Command, Message, OrgPage, Snapshot, View, update};

pub(crate) fn key(code: KeyCode) -> Message {
    Message::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

pub(crate) fn press(app: &mut App, keys: &str) -> Vec<Command> {
    keys.chars().filter_map(|c| update(app, key(KeyCode::Char(c)))).collect()
}

pub(crate) fn worker(id: &str, processed: u64, stale: bool) -> WorkerInfo {
    let at = Utc.with_ymd_and_hms(2026, 12, 2, 9, 0, 0).single().expect("a valid time");
    WorkerInfo {
        id: id.to_owned(),
        host: "app-1".to_owned(),
        pid: 4242,
        queues: vec!["default:1".to_owned(), "emails:2".to_owned()],
        concurrency: 10,
        in_flight: 3,
        processed,
        failed: 2,
        started_at: Some(at - chrono::Duration::minutes(90)),
        last_beat: Some(if stale { at - chrono::Duration::seconds(40) } else { at }),
        state: "running".to_owned(),
        stale,
        running: Vec::new(),
        running_jobs: Vec::new(),
    }
}

fn queue(name: &str, depth: u64, dead: u64, paused: bool) -> QueueStats {
    QueueStats {
        name: QueueName::parse(name).expect("a valid queue name"),
        depth,
        in_flight: 4,
        scheduled: 1,
        dead,
        oldest_age_secs: if depth > 0 { 12.5 } else { 0.0 },
        paused,
        done: 0,
    }
}

pub(crate) fn snapshot(second: u32, processed: u64) -> Snapshot {
    Snapshot {
        taken_at: Utc.with_ymd_and_hms(2026, 12, 2, 9, 0, second).single().expect("a valid time"),
        orgs: vec![
            ("active".to_owned(), 9_812),
            ("suspended".to_owned(), 120),
            ("deleted".to_owned(), 68),
        ],
        users: 100_000,
        active_users: 99_120,
        queues: vec![
            QueueStats { done: processed, ..queue("default", 1_200, 0, false) },
            queue("emails", 0, 7, true),
        ],
        workers: vec![
            worker("vm:4242:1a2b3c4d", processed, false),
            worker("vm:777:9f8e7d6c", 10, true),
        ],
        postgres: Ok(0.42),
        redis: Err("connection refused".to_owned()),
        slugs: Default::default(),
    }
}

pub(crate) fn loaded(app: &mut App, snap: Snapshot) {
    let Some(Command::Refresh { request }) = app.refresh() else { panic!("no refresh started") };
    assert_eq!(update(app, Message::Loaded { request, result: Ok(Box::new(snap)) }), None);
}

pub(crate) fn render(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("a test terminal");
    terminal.draw(|frame| crate::ui::view(app, frame)).expect("drawn");
    terminal.backend().to_string()
}

pub(crate) fn app_with_data() -> App {
    let mut app = App::new("ops@example.com");
    loaded(&mut app, snapshot(0, 1_000));
    loaded(&mut app, snapshot(2, 1_900)); // 450 jobs/s
    app
}

#[test]
fn tab_and_shift_tab_cycle_the_views() {
    let mut app = App::new("ops@example.com");
    assert_eq!(app.view, View::Dashboard);
    let first = update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.view, View::Orgs);
    assert_eq!(
        first,
        Some(Command::LoadOrgs { filter: String::new() }),
        "orgs load when first shown"
    );
    assert_eq!(
        update(&mut app, key(KeyCode::Tab)),
        Some(Command::LoadUsers { filter: String::new() })
    );
    assert_eq!(app.view, View::Users);
    assert_eq!(update(&mut app, key(KeyCode::Tab)), None, "jobs wait for an org");
    assert_eq!(app.view, View::Jobs);
    assert_eq!(update(&mut app, key(KeyCode::Tab)), Some(Command::LoadFlags));
    assert_eq!(app.view, View::Flags);
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.view, View::Queues);
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.view, View::Workers);
    assert_eq!(update(&mut app, key(KeyCode::Tab)), Some(Command::LoadSchedules { org: None }));
    assert_eq!(
        update(&mut app, key(KeyCode::Tab)),
        Some(Command::LoadAudit { org: None, search: Default::default() })
    );
    assert_eq!(app.view, View::Audit);
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.view, View::Dashboard);
    update(&mut app, key(KeyCode::BackTab));
    assert_eq!(app.view, View::Audit);
}

pub(crate) fn job(
    n: u128,
    kind: &str,
    status: orgstack::jobs::JobStatus,
    attempts: i32,
) -> orgstack::jobs::JobSummary {
    let at = Utc.with_ymd_and_hms(2026, 12, 2, 8, 59, 0).single().expect("a valid time");
    orgstack::jobs::JobSummary {
        id: uuid::Uuid::from_u128(0x019a_0000_0000_7000_8000_0000_0000_0000 + n),
        kind: kind.to_owned(),
        queue: "default".to_owned(),
        status,
        attempts,
        max_attempts: 3,
        run_at: at,
        error: (status == orgstack::jobs::JobStatus::Dead)
            .then(|| "failing attempt 3 as asked".to_owned()),
        created_by: "user:dev@example.com".to_owned(),
        created_at: at,
        started_at: None,
        finished_at: None,
    }
}

pub(crate) fn app_with_jobs() -> App {
    use orgstack::jobs::JobStatus::*;
    let mut app = app_with_orgs();
    let load = update(&mut app, key(KeyCode::Enter));
    assert_eq!(load, Some(Command::LoadJobs { org: "acme".into(), status: None }));
    assert_eq!(app.view, View::Jobs);
    let page = crate::app::JobPage {
        org: "acme".into(),
        status: None,
        jobs: vec![
            job(3, "sleep", Dead, 3),
            job(2, "noop", Queued, 0),
            job(1, "noop", Succeeded, 1),
        ],
    };
    update(&mut app, Message::JobsLoaded(Ok(page)));
    app
}

#[test]
fn enter_on_an_org_shows_its_jobs_and_f_cycles_the_status() {
    use orgstack::jobs::JobStatus::*;
    let mut app = app_with_jobs();
    let mut seen = Vec::new();
    for _ in 0..7 {
        let Some(Command::LoadJobs { status, .. }) = press(&mut app, "f").pop() else {
            panic!("f reloads")
        };
        seen.push(status);
        let mut page = app.jobs.clone().expect("jobs");
        page.status = status;
        update(&mut app, Message::JobsLoaded(Ok(page)));
    }
    assert_eq!(
        seen,
        vec![
            Some(Queued),
            Some(Running),
            Some(Succeeded),
            Some(Failed),
            Some(Cancelled),
            Some(Dead),
            None
        ]
    );
}

#[test]
fn job_actions_ask_first_and_only_where_they_apply() {
    let mut app = app_with_jobs();
    press(&mut app, "R");
    let question = app.confirm.as_ref().map(|c| c.question.clone()).expect("a question");
    assert_eq!(question, "Retry sleep job 00000003 of acme? (y/n)");
    let Some(Command::Job { org, id, action }) = press(&mut app, "y").pop() else {
        panic!("no command")
    };
    assert_eq!(
        (org.as_str(), id.as_u128() & 0xff, action),
        ("acme", 3, crate::app::JobAction::Retry)
    );
    assert_eq!(
        update(&mut app, Message::Done(Ok("retried".into()))),
        Some(Command::LoadJobs { org: "acme".into(), status: None })
    );

    press(&mut app, "j");
    press(&mut app, "d");
    assert_eq!(app.confirm, None);
    assert_eq!(app.error.as_deref(), Some("cannot discard a queued job"));
    press(&mut app, "c");
    assert!(app.confirm.is_some(), "a queued job can be cancelled");
    press(&mut app, "n");
    press(&mut app, "jR");
    assert_eq!(app.error.as_deref(), Some("cannot retry a succeeded job"));
}

#[test]
fn the_jobs_view_at_both_sizes() {
    let app = app_with_jobs();
    insta::assert_snapshot!("jobs_80x24", render(&app, 80, 24));
    insta::assert_snapshot!("jobs_160x48", render(&app, 160, 48));
}

#[test]
fn colon_jumps_to_a_view_by_name_or_prefix() {
    let mut app = App::new("ops@example.com");
    press(&mut app, ":work");
    assert_eq!(app.prompt.as_deref(), Some("work"));
    update(&mut app, key(KeyCode::Enter));
    assert_eq!((app.view, app.prompt.clone()), (View::Workers, None));

    press(&mut app, ":q");
    update(&mut app, key(KeyCode::Backspace));
    press(&mut app, "queues");
    update(&mut app, key(KeyCode::Enter));
    assert_eq!(app.view, View::Queues);

    press(&mut app, ":nope");
    update(&mut app, key(KeyCode::Enter));
    assert_eq!(app.view, View::Queues, "an unknown name changes nothing");
    assert_eq!(app.error.as_deref(), Some("no view named \"nope\""));

    press(&mut app, ":o");
    assert_eq!(
        update(&mut app, key(KeyCode::Enter)),
        Some(Command::LoadOrgs { filter: String::new() })
    );
    assert_eq!(app.view, View::Orgs);
    app.view = View::Queues;

    press(&mut app, ":dash");
    update(&mut app, key(KeyCode::Esc));
    assert_eq!((app.view, app.prompt.clone()), (View::Queues, None), "Esc closes the prompt");
    assert!(!app.quit, "q typed in the prompt does not quit");
}

#[test]
fn help_opens_and_closes_and_swallows_other_keys() {
    let mut app = App::new("ops@example.com");
    press(&mut app, "?");
    assert!(app.help);
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.view, View::Dashboard);
    update(&mut app, key(KeyCode::Esc));
    assert!(!app.help);
    assert!(!app.quit);
}

#[test]
fn q_and_ctrl_c_quit() {
    let mut app = App::new("ops@example.com");
    press(&mut app, "q");
    assert!(app.quit);
    let mut app = App::new("ops@example.com");
    update(&mut app, Message::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)));
    assert!(app.quit);
}

#[test]
fn moving_in_a_table_stays_within_its_rows() {
    let mut app = app_with_data();
    press(&mut app, "jjj");
    assert_eq!(app.queue_row, 0, "the dashboard has no rows");
    app.view = View::Queues;
    press(&mut app, "jjjj");
    assert_eq!(app.queue_row, 1, "two queues");
    press(&mut app, "k");
    assert_eq!(app.queue_row, 0);
    press(&mut app, "G");
    assert_eq!(app.queue_row, 1);
    press(&mut app, "g");
    assert_eq!(app.queue_row, 0);
}

#[test]
fn one_refresh_at_a_time_and_esc_abandons_it() {
    let mut app = App::new("ops@example.com");
    let Some(Command::Refresh { request }) = update(&mut app, Message::Tick) else {
        panic!("a tick refreshes")
    };
    assert_eq!(update(&mut app, Message::Tick), None, "still loading: no second refresh");
    assert_eq!(press(&mut app, "r"), Vec::new());
    update(&mut app, key(KeyCode::Esc));
    assert_eq!(app.loading, None);
    // The abandoned answer arrives late and is ignored.
    update(&mut app, Message::Loaded { request, result: Ok(Box::new(snapshot(0, 5))) });
    assert_eq!(app.snapshot, None);
    assert_eq!(press(&mut app, "r").len(), 1, "a new refresh can start");
}

#[test]
fn a_failed_refresh_keeps_the_data_and_shows_why() {
    let mut app = app_with_data();
    let Some(Command::Refresh { request }) = app.refresh() else { panic!("no refresh") };
    update(&mut app, Message::Loaded { request, result: Err("no answer within 10 s".into()) });
    assert_eq!(app.error.as_deref(), Some("no answer within 10 s"));
    assert!(app.snapshot.is_some());
    loaded(&mut app, snapshot(3, 2_000));
    assert_eq!(app.error, None);
}

#[test]
fn throughput_is_jobs_finished_per_second_between_snapshots() {
    let mut app = app_with_data();
    assert_eq!(app.throughput.iter().copied().collect::<Vec<_>>(), vec![450]);
    // The same per queue (entries acknowledged) and per worker.
    assert_eq!(app.queue_rates.get("default"), Some(&450.0));
    assert_eq!(app.queue_rates.get("emails"), Some(&0.0));
    assert_eq!(app.worker_rates.get("vm:4242:1a2b3c4d"), Some(&(450.0, 0.0)));
    // A worker restarted: its counter fell. Counted as zero, not negative.
    loaded(&mut app, snapshot(3, 100));
    assert_eq!(app.throughput.back(), Some(&0));
    for second in 0..super::app::HISTORY as u32 + 5 {
        loaded(&mut app, snapshot(4 + second % 50, 100));
    }
    assert!(app.throughput.len() <= super::app::HISTORY);
}

#[test]
fn rows_are_clamped_when_a_table_shrinks() {
    let mut app = app_with_data();
    press(&mut app, ":workers");
    update(&mut app, key(KeyCode::Enter));
    press(&mut app, "j");
    assert_eq!(app.worker_row, 1);
    let mut fewer = snapshot(4, 2_000);
    fewer.workers.truncate(1);
    loaded(&mut app, fewer);
    assert_eq!(app.worker_row, 0);
}

#[test]
fn views_at_80x24() {
    let mut app = app_with_data();
    insta::assert_snapshot!("dashboard_80x24", render(&app, 80, 24));
    app.view = View::Queues;
    insta::assert_snapshot!("queues_80x24", render(&app, 80, 24));
    app.view = View::Workers;
    insta::assert_snapshot!("workers_80x24", render(&app, 80, 24));
    app.help = true;
    insta::assert_snapshot!("workers_help_80x24", render(&app, 80, 24));
}

#[test]
fn views_at_160x48() {
    let mut app = app_with_data();
    insta::assert_snapshot!("dashboard_160x48", render(&app, 160, 48));
    app.view = View::Queues;
    insta::assert_snapshot!("queues_160x48", render(&app, 160, 48));
    app.view = View::Workers;
    insta::assert_snapshot!("workers_160x48", render(&app, 160, 48));
}

#[test]
fn before_the_first_answer_the_views_say_so() {
    let mut app = App::new("ops@example.com");
    let _ = app.refresh();
    insta::assert_snapshot!("loading_80x24", render(&app, 80, 24));
}

pub(crate) fn org(slug: &str, status: tenancy::OrgStatus, version: i32) -> tenancy::Org {
    let at = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).single().expect("a valid time");
    tenancy::Org {
        // A fixed id per slug, so snapshots are stable and orgs differ.
        id: tenancy::OrgId::from_uuid(uuid::Uuid::from_u128(
            0x01a2_3456_789a_7bcd_8ef0_0000_0000_0000 + slug.bytes().map(u128::from).sum::<u128>(),
        )),
        slug: tenancy::Slug::parse(slug).expect("a valid slug"),
        name: format!("{slug} Inc."),
        status,
        org_version: version,
        created_at: at,
        updated_at: at,
        deleted_at: None,
    }
}

pub(crate) fn app_with_orgs() -> App {
    use tenancy::OrgStatus::*;
    let mut app = app_with_data();
    update(&mut app, key(KeyCode::Tab));
    let page = OrgPage {
        filter: String::new(),
        orgs: vec![org("acme", Active, 2), org("globex", Suspended, 2), org("initech", Active, 1)],
        latest_version: 2,
        members: [(org("acme", Active, 2).id, 12), (org("globex", Suspended, 2).id, 3)]
            .into_iter()
            .collect(),
    };
    update(&mut app, Message::OrgsLoaded(Ok(page)));
    app
}

#[test]
fn slash_filters_the_orgs_from_the_database() {
    let mut app = app_with_orgs();
    press(&mut app, "jj");
    assert_eq!(app.org_row, 2);
    press(&mut app, "/");
    assert_eq!(app.filter_input.as_deref(), Some(""));
    press(&mut app, "glo");
    assert_eq!(app.view, View::Orgs, "typed letters go to the filter, not to navigation");
    assert_eq!(
        update(&mut app, key(KeyCode::Enter)),
        Some(Command::LoadOrgs { filter: "glo".into() })
    );
    assert_eq!((app.filter_input.clone(), app.org_row), (None, 0));

    // r reloads with the filter in force; Esc drops an unfinished filter.
    let mut page = app.orgs.clone().expect("orgs");
    page.filter = "glo".into();
    update(&mut app, Message::OrgsLoaded(Ok(page)));
    assert_eq!(press(&mut app, "r"), vec![Command::LoadOrgs { filter: "glo".into() }]);
    press(&mut app, "/x");
    update(&mut app, key(KeyCode::Esc));
    assert_eq!(app.filter_input, None);
}

#[test]
fn suspending_an_org_asks_first_and_only_y_runs_it() {
    let mut app = app_with_orgs();
    assert_eq!(press(&mut app, "s"), Vec::new());
    let question = app.confirm.as_ref().map(|c| c.question.clone()).expect("a question");
    assert!(question.starts_with("Suspend org 'acme'?"), "{question}");
    assert_eq!(press(&mut app, "n"), Vec::new(), "n cancels");
    assert_eq!(app.confirm, None);

    press(&mut app, "s");
    assert_eq!(
        press(&mut app, "y"),
        vec![Command::SetOrgStatus { slug: "acme".into(), suspend: true }]
    );
    // Done: the notice shows and the page reloads.
    let reload = update(&mut app, Message::Done(Ok("org 'acme' is suspended".into())));
    assert_eq!(reload, Some(Command::LoadOrgs { filter: String::new() }));
    assert_eq!(app.notice.as_deref(), Some("org 'acme' is suspended"));
}

#[test]
fn resume_applies_only_to_a_suspended_org() {
    let mut app = app_with_orgs();
    press(&mut app, "u");
    assert_eq!(app.confirm, None);
    assert_eq!(app.error.as_deref(), Some("acme is active, not suspended"));
    press(&mut app, "js");
    assert_eq!(app.error.as_deref(), Some("globex is suspended, not active"));
    press(&mut app, "u");
    assert_eq!(
        press(&mut app, "y"),
        vec![Command::SetOrgStatus { slug: "globex".into(), suspend: false }]
    );
    update(&mut app, Message::Done(Err("org globex cannot resume: it is deleted".into())));
    assert_eq!(app.error.as_deref(), Some("org globex cannot resume: it is deleted"));
}

#[test]
fn the_orgs_view_at_both_sizes() {
    let mut app = app_with_orgs();
    insta::assert_snapshot!("orgs_80x24", render(&app, 80, 24));
    insta::assert_snapshot!("orgs_160x48", render(&app, 160, 48));
    press(&mut app, "s");
    insta::assert_snapshot!("orgs_confirm_80x24", render(&app, 80, 24));
}

pub(crate) fn app_with_flags() -> App {
    use tenancy::OrgStatus::*;
    let mut app = app_with_data();
    let orgs = vec![org("acme", Active, 2), org("globex", Active, 2)];
    let acme = orgs[0].id;
    let flags = vec![
        orgstack::flags::FlagState {
            name: "file_uploads",
            description: "Members may upload files to the org (processed in the background).",
            default: true,
            global: None,
            overrides: vec![],
        },
        orgstack::flags::FlagState {
            name: "webhooks",
            description: "Admins may register webhook endpoints for org events.",
            default: false,
            global: Some(true),
            overrides: vec![(acme, false)],
        },
    ];
    press(&mut app, ":flags");
    assert_eq!(update(&mut app, key(KeyCode::Enter)), Some(Command::LoadFlags));
    update(&mut app, Message::FlagsLoaded(Ok(crate::app::FlagPage { flags, orgs })));
    app
}

#[test]
fn the_flags_matrix_shows_what_is_in_force_where() {
    let app = app_with_flags();
    let page = app.flags.as_ref().expect("flags");
    let cell = |r, c| page.cell(r, c).map(|x| (x.enabled, x.explicit));
    assert_eq!(cell(0, 0), Some((true, false)), "file_uploads: the default, inherited");
    assert_eq!(cell(1, 0), Some((true, true)), "webhooks: set globally");
    assert_eq!(cell(1, 1), Some((false, true)), "webhooks: acme's override");
    assert_eq!(cell(1, 2), Some((true, false)), "webhooks: globex inherits the global value");
    assert_eq!(cell(1, 3), None);
}

#[test]
fn space_flips_a_cell_and_x_clears_only_an_explicit_value() {
    let mut app = app_with_flags();
    press(&mut app, "jl");
    assert_eq!((app.flag_row, app.flag_col), (1, 1));
    let acme = app.flags.as_ref().expect("flags").orgs[0].id;
    assert_eq!(
        press(&mut app, " "),
        vec![Command::SetFlag {
            name: "webhooks".into(),
            org: Some((acme, "acme".into())),
            enabled: Some(true)
        }]
    );
    assert_eq!(
        press(&mut app, "x"),
        vec![Command::SetFlag {
            name: "webhooks".into(),
            org: Some((acme, "acme".into())),
            enabled: None
        }]
    );
    press(&mut app, "lll");
    assert_eq!(app.flag_col, 2, "no column past the last org");
    assert_eq!(press(&mut app, "x"), Vec::new(), "globex inherits: nothing to clear");
    press(&mut app, "hhhk");
    assert_eq!((app.flag_row, app.flag_col), (0, 0));
    assert_eq!(
        press(&mut app, " "),
        vec![Command::SetFlag { name: "file_uploads".into(), org: None, enabled: Some(false) }]
    );
    assert_eq!(
        update(&mut app, Message::Done(Ok("file_uploads off globally".into()))),
        Some(Command::LoadFlags)
    );
}

#[test]
fn the_flags_view_at_both_sizes() {
    let mut app = app_with_flags();
    press(&mut app, "jl");
    insta::assert_snapshot!("flags_80x24", render(&app, 80, 24));
    insta::assert_snapshot!("flags_160x48", render(&app, 160, 48));
}

#[test]
fn plus_minus_and_shift_s_control_the_selected_worker() {
    let mut app = app_with_data();
    press(&mut app, ":workers");
    update(&mut app, key(KeyCode::Enter));
    assert_eq!(
        press(&mut app, "+"),
        vec![Command::Worker { id: "vm:4242:1a2b3c4d".into(), concurrency: Some(11) }]
    );
    assert_eq!(
        press(&mut app, "-"),
        vec![Command::Worker { id: "vm:4242:1a2b3c4d".into(), concurrency: Some(9) }]
    );
    assert_eq!(press(&mut app, "S"), Vec::new(), "shutting down asks first");
    let question = app.confirm.as_ref().map(|c| c.question.clone()).expect("a question");
    assert!(question.starts_with("Shut down worker vm:4242:1a2b3c4d?"), "{question}");
    assert_eq!(
        press(&mut app, "y"),
        vec![Command::Worker { id: "vm:4242:1a2b3c4d".into(), concurrency: None }]
    );
    // After an action the views refresh.
    assert!(matches!(
        update(&mut app, Message::Done(Ok("asked".into()))),
        Some(Command::Refresh { .. })
    ));

    press(&mut app, "j");
    assert_eq!(press(&mut app, "+"), Vec::new(), "a stale worker cannot answer");
    assert_eq!(app.error.as_deref(), Some("vm:777:9f8e7d6c is stale: nothing answers"));
}
