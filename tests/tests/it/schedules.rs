//! Schedules: CRUD over HTTP, and the scheduler firing each tick exactly
//! once with several schedulers, the missed-tick policy, and global
//! schedules.

use std::time::Duration;

use chrono::Utc;
use fred::prelude::StreamsInterface;
use orgstack::accounts::Actor;
use orgstack::jobs::Jobs;
use orgstack::jobs::scheduler::{GlobalSchedule, Scheduler, SchedulerOptions};
use orgstack::jobs::schedules::NewSchedule;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;
use tenancy::Org;

use crate::accounts::{World, world};
use orgstack_tests::TestContext;

fn every_second(name: &str) -> NewSchedule {
    NewSchedule {
        name: name.into(),
        cron: "* * * * * *".into(),
        kind: "noop".into(),
        queue: None,
        payload: json!(null),
        enabled: true,
        skip_missed: false,
    }
}

/// The `run_at` (its tick) of every job a schedule made, in order.
async fn ticks(ctx: &TestContext, org: &Org, schedule: &str) -> Vec<chrono::DateTime<Utc>> {
    let sql = format!(
        "SELECT run_at FROM {} WHERE created_by = $1 ORDER BY run_at",
        org.schema().qualify("jobs")
    );
    sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(format!("schedule:{schedule}"))
        .fetch_all(&ctx.pool)
        .await
        .expect("ticks")
}

/// Runs schedulers over `jobs` (each its own services) for `time`.
async fn run_schedulers(ctxs: &[Jobs], options: SchedulerOptions, time: Duration) {
    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    let tasks: Vec<_> = ctxs
        .iter()
        .map(|jobs| {
            let mut stopped = stop.subscribe();
            tokio::spawn(Scheduler::new(jobs.clone(), options.clone()).run(async move {
                let _ = stopped.recv().await;
            }))
        })
        .collect();
    tokio::time::sleep(time).await;
    let _ = stop.send(());
    for task in tasks {
        task.await.expect("scheduler task").expect("scheduler");
    }
}

fn fast(use_leader_lock: bool) -> SchedulerOptions {
    SchedulerOptions {
        tick: Duration::from_millis(50),
        lock_ttl: Duration::from_millis(600),
        use_leader_lock,
        globals: Vec::new(),
    }
}

#[tokio::test]
async fn two_schedulers_racing_each_fire_every_tick_once() {
    let ctx = TestContext::new().await;
    let org = ctx.org("acme").await;
    ctx.jobs()
        .create_schedule(&org, &Actor::System, every_second("pulse"))
        .await
        .expect("schedule");
    // No leader lock: both act on every tick; the per-tick guard in
    // PostgreSQL must keep each tick to one job.
    run_schedulers(&[ctx.jobs(), ctx.jobs()], fast(false), Duration::from_millis(3500)).await;
    let fired = ticks(&ctx, &org, "pulse").await;
    assert!(fired.len() >= 3, "fired {fired:?}");
    let mut distinct = fired.clone();
    distinct.dedup();
    assert_eq!(distinct, fired, "a tick fired twice");
    for pair in fired.windows(2) {
        assert_eq!(
            (pair[1] - pair[0]).num_milliseconds(),
            1000,
            "consecutive ticks, none skipped: {fired:?}"
        );
    }
}

#[tokio::test]
async fn one_scheduler_leads_and_another_takes_over_when_it_stops() {
    let ctx = TestContext::new().await;
    let org = ctx.org("acme").await;
    ctx.jobs()
        .create_schedule(&org, &Actor::System, every_second("pulse"))
        .await
        .expect("schedule");
    let (first_stop, first_stopped) = tokio::sync::oneshot::channel::<()>();
    let first = tokio::spawn(Scheduler::new(ctx.jobs(), fast(true)).run(async move {
        let _ = first_stopped.await;
    }));
    let (second_stop, second_stopped) = tokio::sync::oneshot::channel::<()>();
    let second = tokio::spawn(Scheduler::new(ctx.jobs(), fast(true)).run(async move {
        let _ = second_stopped.await;
    }));
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let _ = first_stop.send(());
    let first = first.await.expect("task").expect("first");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let _ = second_stop.send(());
    let second = second.await.expect("task").expect("second");
    // Whichever led first fired, then the other took over.
    assert!(first.fired + second.fired >= 3, "{first:?} {second:?}");
    let fired = ticks(&ctx, &org, "pulse").await;
    let mut distinct = fired.clone();
    distinct.dedup();
    assert_eq!(distinct, fired, "a tick fired twice");
    assert_eq!(fired.len() as u64, first.fired + second.fired);
}

#[tokio::test]
async fn after_downtime_a_schedule_runs_once_or_skips_as_asked() {
    let ctx = TestContext::new().await;
    let org = ctx.org("acme").await;
    let jobs = ctx.jobs();
    let mut once = every_second("catch-up");
    once.cron = "* * * * *".into();
    let once = jobs.create_schedule(&org, &Actor::System, once).await.expect("schedule");
    let mut skip = every_second("skip");
    skip.cron = "* * * * *".into();
    skip.skip_missed = true;
    let skip = jobs.create_schedule(&org, &Actor::System, skip).await.expect("schedule");
    // No scheduler ran for ten minutes.
    let now = Utc::now();
    let sql = format!("UPDATE {} SET next_run_at = $1", org.schema().qualify("schedules"));
    sqlx::query(AssertSqlSafe(sql))
        .bind(now - chrono::Duration::minutes(10))
        .execute(&ctx.pool)
        .await
        .expect("backdate");
    orgstack::jobs::scheduler::rebuild_index(&jobs).await.expect("index");

    let (fired, skipped) = orgstack::jobs::scheduler::tick(&jobs, &[], now).await.expect("tick");
    assert_eq!((fired, skipped), (1, 1));
    let made = ticks(&ctx, &org, "catch-up").await;
    assert_eq!(made.len(), 1, "ten missed ticks run once");
    assert!(made[0] > now - chrono::Duration::minutes(1), "for the latest missed tick");
    assert!(ticks(&ctx, &org, "skip").await.is_empty(), "skipped");
    for id in [once.id, skip.id] {
        let schedule = jobs.get_schedule(&org, id).await.expect("schedule");
        assert!(schedule.next_run_at.expect("next") > now, "next tick is in the future");
    }
    // Nothing more until the next tick.
    assert_eq!(orgstack::jobs::scheduler::tick(&jobs, &[], now).await.expect("tick"), (0, 0));
}

#[tokio::test]
async fn a_global_schedule_fires_each_tick_once_across_schedulers() {
    let ctx = TestContext::new().await;
    let globals = vec![GlobalSchedule {
        name: "test.pulse",
        cron: "* * * * * *",
        kind: "noop",
        payload: Value::Null,
    }];
    let options = SchedulerOptions { globals, ..fast(false) };
    run_schedulers(&[ctx.jobs(), ctx.jobs()], options, Duration::from_millis(3500)).await;
    // No worker ran: each fired tick is one platform job in the stream.
    let entries: u64 = ctx.redis.xlen(ctx.keys.queue_stream("default")).await.expect("xlen");
    let marks = ctx.redis.scan_buffered(
        format!("{}:schedules:fired:test.pulse:*", ctx.keys.prefix()),
        Some(100),
        None,
    );
    let marks: Vec<_> = futures::TryStreamExt::try_collect(marks).await.expect("scan");
    let ticks = marks.len() as u64 - 1; // one key holds the last tick
    assert!(ticks >= 2, "fired {ticks} ticks");
    assert_eq!(entries, ticks, "one job per tick");
}

#[tokio::test]
async fn schedules_over_http() {
    let ctx = TestContext::new().await;
    let World { app, tokens, .. } = world(&ctx).await;
    let admin = tokens[1].1.as_deref();
    let (status, created) = app
        .call(
            Method::POST,
            "/api/v1/orgs/alpha/schedules",
            admin,
            Some(json!({ "name": "nightly report", "cron": "30 2 * * *", "kind": "sleep", "payload": { "ms": 1 } })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (created["enabled"].as_bool(), created["skip_missed"].as_bool()),
        (Some(true), Some(false))
    );
    let next: chrono::DateTime<Utc> =
        serde_json::from_value(created["next_run_at"].clone()).expect("next run");
    assert!(next > Utc::now() && next.format("%H:%M:%S").to_string() == "02:30:00", "{next}");
    let id = created["id"].as_str().expect("id").to_owned();
    let path = format!("/api/v1/orgs/alpha/schedules/{id}");

    let (status, off) =
        app.call(Method::PATCH, &path, admin, Some(json!({ "enabled": false }))).await;
    assert_eq!((status, off["next_run_at"].clone()), (200, Value::Null));
    let (_, on) = app
        .call(Method::PATCH, &path, admin, Some(json!({ "enabled": true, "cron": "@hourly" })))
        .await;
    assert_eq!(on["cron"], "@hourly");
    assert!(on["next_run_at"].is_string());
    let (status, run) = app.call(Method::POST, &format!("{path}/run"), admin, None).await;
    assert_eq!((status, run["kind"].as_str()), (201, Some("sleep")));
    let (_, list) =
        app.call(Method::GET, "/api/v1/orgs/alpha/schedules", tokens[3].1.as_deref(), None).await;
    assert_eq!(list["items"][0]["name"], "nightly report");

    for (body, code) in [
        (json!({ "name": "x", "cron": "every day", "kind": "noop" }), "invalid_job"),
        (json!({ "name": "x", "cron": "0 3 31 2 *", "kind": "noop" }), "invalid_job"),
        (json!({ "name": "x", "cron": "@daily", "kind": "nope" }), "unknown_kind"),
        (
            json!({ "name": "nightly report", "cron": "@daily", "kind": "noop" }),
            "schedule_name_taken",
        ),
        (json!({ "name": "", "cron": "@daily", "kind": "noop" }), "invalid_job"),
    ] {
        let (status, problem) =
            app.call(Method::POST, "/api/v1/orgs/alpha/schedules", admin, Some(body.clone())).await;
        assert_eq!(problem["code"], code, "{body}: {status} {problem}");
        assert!(status == 422 || status == 409);
    }
    let (status, _) = app.call(Method::DELETE, &path, admin, None).await;
    assert_eq!(status, 204);
    let (status, problem) = app.call(Method::GET, &path, admin, None).await;
    assert_eq!((status, problem["code"].as_str()), (404, Some("schedule_not_found")));
    // The audit log has the changes.
    let (_, audit) = app.call(Method::GET, "/api/v1/orgs/alpha/audit", admin, None).await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in ["schedule.created", "schedule.updated", "schedule.deleted"] {
        assert!(actions.contains(&action), "{actions:?}");
    }
}
