//! Jobs over HTTP: enqueue, list, cancel, retry and discard with their
//! roles, logs as a page and as a WebSocket, org events, the admin queue
//! and worker views, and metrics.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use orgstack::accounts::Actor;
use orgstack::jobs::{JobStatus, NewJob};
use reqwest::Method;
use serde_json::{Value, json};
use tenancy::Slug;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

use crate::accounts::{PW, World, world};
use crate::eventually;
use orgstack_tests::{TestApp, TestContext, TestWorker};

async fn alpha(app: &TestApp) -> tenancy::Org {
    (*app.state.orgs.get(&Slug::parse("alpha").expect("slug")).await.expect("alpha")).clone()
}

/// A job of `org` in `status`, made directly through the services.
async fn job_in(app: &TestApp, org: &tenancy::Org, status: JobStatus) -> Uuid {
    let jobs = &app.state.jobs;
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let job = jobs
        .enqueue(
            org,
            &Actor::System,
            NewJob { run_at: Some(later), ..NewJob::new("noop", Value::Null) },
        )
        .await
        .expect("enqueue")
        .job;
    if status != JobStatus::Queued {
        let sql = format!(
            "UPDATE {} SET status = $2, attempts = max_attempts, finished_at = now() WHERE id = $1",
            org.schema().qualify("jobs")
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(job.id)
            .bind(status.as_str())
            .execute(&app.state.db)
            .await
            .expect("set status");
    }
    job.id
}

#[tokio::test]
async fn permission_matrix_for_job_and_schedule_endpoints() {
    let ctx = TestContext::new().await;
    let World { app, tokens, .. } = world(&ctx).await;
    let org = alpha(&app).await;
    let schedule = app
        .state
        .jobs
        .create_schedule(
            &org,
            &Actor::System,
            orgstack::jobs::schedules::NewSchedule {
                name: "nightly".into(),
                cron: "0 3 * * *".into(),
                kind: "noop".into(),
                queue: None,
                payload: Value::Null,
                enabled: true,
                skip_missed: false,
            },
        )
        .await
        .expect("schedule");
    let readable = job_in(&app, &org, JobStatus::Queued).await;
    //  owner admin member viewer other_org no_token revoked key_owner key_admin key_member key_viewer key_other_org
    let read = [200, 200, 200, 200, 404, 401, 401, 200, 200, 200, 200, 404];
    let run = [201, 201, 201, 403, 404, 401, 401, 201, 201, 201, 403, 404];
    let act = [200, 200, 200, 403, 404, 401, 401, 200, 200, 200, 403, 404];
    let gone = [204, 204, 204, 403, 404, 401, 401, 204, 204, 204, 403, 404];
    let admin_only = [201, 201, 403, 403, 404, 401, 401, 201, 201, 403, 403, 404];
    let admin_ok = [200, 200, 403, 403, 404, 401, 401, 200, 200, 403, 403, 404];
    let s = schedule.id;
    let fixed: Vec<(Method, String, Option<Value>, [u16; 12])> = vec![
        (Method::GET, "/api/v1/orgs/alpha/jobs".into(), None, read),
        (Method::GET, format!("/api/v1/orgs/alpha/jobs/{readable}"), None, read),
        (Method::GET, format!("/api/v1/orgs/alpha/jobs/{readable}/logs"), None, read),
        (Method::POST, "/api/v1/orgs/alpha/jobs".into(), Some(json!({ "kind": "noop" })), run),
        (Method::GET, "/api/v1/orgs/alpha/schedules".into(), None, read),
        (Method::GET, format!("/api/v1/orgs/alpha/schedules/{s}"), None, read),
        (
            Method::PATCH,
            format!("/api/v1/orgs/alpha/schedules/{s}"),
            Some(json!({ "enabled": true })),
            admin_ok,
        ),
        (Method::POST, format!("/api/v1/orgs/alpha/schedules/{s}/run"), None, admin_only),
        (
            Method::POST,
            "/api/v1/orgs/alpha/schedules".into(),
            Some(json!({ "name": "new", "cron": "@hourly", "kind": "noop" })),
            [201, 409, 403, 403, 404, 401, 401, 409, 409, 403, 403, 404],
        ),
    ];
    for (method, path, body, expected) in &fixed {
        for ((label, token), want) in tokens.iter().zip(expected) {
            let (status, response) =
                app.call(method.clone(), path, token.as_deref(), body.clone()).await;
            assert_eq!(status, *want, "{method} {path} as {label}: {response}");
        }
    }
    // State-changing calls get a fresh job per caller.
    let per_job: Vec<(Method, &str, JobStatus, [u16; 12])> = vec![
        (Method::POST, "cancel", JobStatus::Queued, act),
        (Method::POST, "retry", JobStatus::Dead, act),
        (Method::DELETE, "", JobStatus::Dead, gone),
    ];
    for (method, action, status, expected) in per_job {
        for ((label, token), want) in tokens.iter().zip(expected) {
            let id = job_in(&app, &org, status).await;
            let path = if action.is_empty() {
                format!("/api/v1/orgs/alpha/jobs/{id}")
            } else {
                format!("/api/v1/orgs/alpha/jobs/{id}/{action}")
            };
            let (got, response) = app.call(method.clone(), &path, token.as_deref(), None).await;
            assert_eq!(got, want, "{method} {path} as {label}: {response}");
        }
    }
    let delete_schedule = [204, 204, 403, 403, 404, 401, 401, 204, 204, 403, 403, 404];
    for ((label, token), want) in tokens.iter().zip(delete_schedule) {
        let made = app
            .state
            .jobs
            .create_schedule(
                &org,
                &Actor::System,
                orgstack::jobs::schedules::NewSchedule {
                    name: format!("to-delete-{label}"),
                    cron: "@daily".into(),
                    kind: "noop".into(),
                    queue: None,
                    payload: Value::Null,
                    enabled: true,
                    skip_missed: false,
                },
            )
            .await
            .expect("schedule");
        let path = format!("/api/v1/orgs/alpha/schedules/{}", made.id);
        let (got, response) = app.call(Method::DELETE, &path, token.as_deref(), None).await;
        assert_eq!(got, want, "DELETE {path} as {label}: {response}");
    }
    // The admin views are for platform admins only.
    ctx.user("root@example.com", PW, true).await;
    let root = app.login("root@example.com", PW).await;
    for path in ["/api/v1/admin/queues", "/api/v1/admin/workers"] {
        assert_eq!(app.call(Method::GET, path, Some(&root), None).await.0, 200, "{path}");
        for (label, token) in &tokens {
            let (status, _) = app.call(Method::GET, path, token.as_deref(), None).await;
            let want = if token.is_none() || *label == "revoked" { 401 } else { 403 };
            assert_eq!(status, want, "{path} as {label}");
        }
    }
}

#[tokio::test]
async fn enqueue_list_and_follow_a_job_over_http() {
    let ctx = TestContext::new().await;
    let World { app, tokens, .. } = world(&ctx).await;
    let member = tokens[2].1.as_deref();
    let worker = TestWorker::start(&app.state.jobs, 4);

    let (status, job) = app
        .call(
            Method::POST,
            "/api/v1/orgs/alpha/jobs",
            member,
            Some(json!({ "kind": "sleep", "payload": { "ms": 10, "lines": 2 } })),
        )
        .await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(
        (job["status"].as_str(), job["kind"].as_str(), job["queue"].as_str()),
        (Some("queued"), Some("sleep"), Some("default"))
    );
    assert_eq!(job["created_by"], "user:member@alpha.example.com");
    let id = job["id"].as_str().expect("id").to_owned();
    let done = eventually(Duration::from_secs(20), || async {
        app.call(Method::GET, &format!("/api/v1/orgs/alpha/jobs/{id}"), member, None).await.1["status"] == "succeeded"
    })
    .await;
    assert!(done, "the job ran");
    let (status, logs) = app
        .call(Method::GET, &format!("/api/v1/orgs/alpha/jobs/{id}/logs?limit=2"), member, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(logs["items"].as_array().map(Vec::len), Some(2));
    let cursor = logs["next_cursor"].as_str().expect("more lines");
    let (_, rest) = app
        .call(
            Method::GET,
            &format!("/api/v1/orgs/alpha/jobs/{id}/logs?cursor={cursor}"),
            member,
            None,
        )
        .await;
    assert_eq!(rest["items"][0]["line"], "line 2 of 2");
    assert_eq!(rest["next_cursor"], Value::Null);

    // A unique key returns the unfinished job (200) instead of a new one.
    let unique = json!({ "kind": "noop", "unique_key": "once", "delay_secs": 3600 });
    let (first, a) =
        app.call(Method::POST, "/api/v1/orgs/alpha/jobs", member, Some(unique.clone())).await;
    let (second, b) = app.call(Method::POST, "/api/v1/orgs/alpha/jobs", member, Some(unique)).await;
    assert_eq!((first, second), (201, 200));
    assert_eq!(a["id"], b["id"]);

    // Filters and pages.
    for _ in 0..3 {
        app.call(
            Method::POST,
            "/api/v1/orgs/alpha/jobs",
            member,
            Some(json!({ "kind": "noop", "delay_secs": 3600 })),
        )
        .await;
    }
    let (_, queued) = app
        .call(Method::GET, "/api/v1/orgs/alpha/jobs?status=queued&kind=noop&limit=3", member, None)
        .await;
    let items = queued["items"].as_array().expect("items");
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|j| j["status"] == "queued" && j["kind"] == "noop"));
    let cursor = queued["next_cursor"].as_str().expect("a fourth");
    let (_, next) = app
        .call(
            Method::GET,
            &format!("/api/v1/orgs/alpha/jobs?status=queued&kind=noop&limit=3&cursor={cursor}"),
            member,
            None,
        )
        .await;
    assert_eq!(next["items"].as_array().map(Vec::len), Some(1));
    assert!(next["items"][0]["id"].as_str() < items[2]["id"].as_str(), "newest first");

    // Bad input gets problem+json naming it.
    let cases = [
        (json!({ "kind": "nope" }), 422, "unknown_kind"),
        (json!({ "kind": "sleep", "payload": { "ms": -1 } }), 422, "invalid_payload"),
        // Over 256 KiB as JSON.
        (json!({ "kind": "noop", "payload": "x".repeat(256 * 1024) }), 422, "invalid_payload"),
        (json!({ "kind": "noop", "queue": "Bad Queue" }), 422, "invalid_queue"),
        (
            json!({ "kind": "noop", "delay_secs": 5, "run_at": "2030-01-01T00:00:00Z" }),
            422,
            "invalid_job",
        ),
        (json!({ "kind": "noop", "max_attempts": 1000 }), 422, "invalid_job"),
        (json!({ "kind": "noop", "colour": "red" }), 422, "invalid_body"),
    ];
    for (body, want, code) in cases {
        let response = app
            .client
            .post(app.url("/api/v1/orgs/alpha/jobs"))
            .bearer_auth(member.unwrap_or_default())
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), want, "{body}");
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        let problem: Value = response.json().await.expect("problem");
        assert_eq!(problem["code"], code, "{body}: {problem}");
    }
    for (path, code) in [
        ("/api/v1/orgs/alpha/jobs?status=lost", "invalid_status"),
        ("/api/v1/orgs/alpha/jobs?cursor=bm9wZQ", "invalid_cursor"),
    ] {
        let (status, body) = app.call(Method::GET, path, member, None).await;
        assert_eq!((status, body["code"].as_str()), (400, Some(code)), "{path}");
    }
    for id in ["not-a-uuid".to_owned(), Uuid::now_v7().to_string()] {
        let (status, body) =
            app.call(Method::GET, &format!("/api/v1/orgs/alpha/jobs/{id}"), member, None).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("job_not_found")));
    }
    // A finished job cannot be cancelled; only a dead one is discarded.
    let (status, body) =
        app.call(Method::POST, &format!("/api/v1/orgs/alpha/jobs/{id}/cancel"), member, None).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("wrong_job_status")));
    let (status, body) =
        app.call(Method::DELETE, &format!("/api/v1/orgs/alpha/jobs/{id}"), member, None).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("wrong_job_status")));
    worker.stop().await;
}

#[tokio::test]
async fn no_job_of_one_org_is_reachable_through_another() {
    let ctx = TestContext::new().await;
    let World { app, tokens, .. } = world(&ctx).await;
    let beta =
        (*app.state.orgs.get(&Slug::parse("beta").expect("slug")).await.expect("beta")).clone();
    let beta_job = job_in(&app, &beta, JobStatus::Dead).await;
    // A platform admin acts as owner in both orgs: still, alpha's paths
    // read alpha's schema only.
    ctx.user("root@example.com", PW, true).await;
    let root = app.login("root@example.com", PW).await;
    for (method, suffix) in [
        (Method::GET, ""),
        (Method::GET, "/logs"),
        (Method::POST, "/retry"),
        (Method::POST, "/cancel"),
        (Method::DELETE, ""),
    ] {
        let path = format!("/api/v1/orgs/alpha/jobs/{beta_job}{suffix}");
        let (status, body) = app.call(method.clone(), &path, Some(&root), None).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("job_not_found")),
            "{method} {path}"
        );
    }
    let (_, list) = app.call(Method::GET, "/api/v1/orgs/alpha/jobs", Some(&root), None).await;
    assert!(!list.to_string().contains(&beta_job.to_string()));
    // Through beta, with beta's owner, it is there.
    let beta_owner = tokens[4].1.as_deref();
    let (status, _) = app
        .call(Method::GET, &format!("/api/v1/orgs/beta/jobs/{beta_job}"), beta_owner, None)
        .await;
    assert_eq!(status, 200);
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(app: &TestApp, path: &str, token: &str, in_query: bool) -> Socket {
    let url = format!("ws://{}{}", app.addr, path);
    let mut request = if in_query {
        format!("{url}?access_token={token}").into_client_request().expect("request")
    } else {
        url.into_client_request().expect("request")
    };
    if !in_query {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().expect("header"));
    }
    tokio_tungstenite::connect_async(request).await.expect("websocket").0
}

/// The next JSON message (panics after 20 s).
async fn next_json(socket: &mut Socket) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("a message in time")?;
        match message.expect("frame") {
            Message::Text(text) => return Some(serde_json::from_str(&text).expect("json")),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

#[tokio::test]
async fn the_log_websocket_sends_the_backlog_then_live_lines_and_ends_with_the_job() {
    let ctx = TestContext::new().await;
    let World { app, tokens, .. } = world(&ctx).await;
    let viewer = tokens[3].1.clone().expect("viewer");
    let org = alpha(&app).await;
    let worker = TestWorker::start(&app.state.jobs, 2);
    let job = app
        .state
        .jobs
        .enqueue(&org, &Actor::System, NewJob::new("sleep", json!({ "ms": 3000, "lines": 10 })))
        .await
        .expect("enqueue")
        .job;
    // Wait until some lines are stored: they come as the backlog.
    let sql =
        format!("SELECT count(*) FROM {} WHERE job_id = $1", org.schema().qualify("job_logs"));
    let stored = eventually(Duration::from_secs(20), || async {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.clone()))
            .bind(job.id)
            .fetch_one(&ctx.pool)
            .await
            .is_ok_and(|n| n >= 3)
    })
    .await;
    assert!(stored, "lines are stored while the job runs");
    let mut socket =
        connect(&app, &format!("/api/v1/orgs/alpha/jobs/{}/logs/ws", job.id), &viewer, true).await;
    let mut numbers = Vec::new();
    let end = loop {
        let message = next_json(&mut socket).await.expect("the stream ends with an end message");
        match message["type"].as_str() {
            Some("line") => numbers.push(message["line_no"].as_i64().expect("line_no")),
            Some("end") => break message,
            other => panic!("unexpected message {other:?}: {message}"),
        }
    };
    assert_eq!(end["status"], "succeeded");
    assert_eq!(
        numbers,
        (1..=11).collect::<Vec<_>>(),
        "every line once, in order: the backlog, then live"
    );
    assert!(next_json(&mut socket).await.is_none(), "closed after the end");
    // A finished job's stream is its stored lines and the end.
    let mut again =
        connect(&app, &format!("/api/v1/orgs/alpha/jobs/{}/logs/ws", job.id), &viewer, false).await;
    let mut count = 0;
    while let Some(message) = next_json(&mut again).await {
        if message["type"] == "end" {
            break;
        }
        count += 1;
    }
    assert_eq!(count, 11);
    let _ = again.close(None).await;
    // Unknown jobs and strangers are refused before the upgrade.
    let refused = |path: String, token: Option<String>| {
        let mut request =
            format!("ws://{}{}", app.addr, path).into_client_request().expect("request");
        if let Some(token) = token {
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().expect("header"));
        }
        async move {
            match tokio_tungstenite::connect_async(request).await {
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                    response.status().as_u16()
                }
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
    };
    assert_eq!(
        refused(
            format!("/api/v1/orgs/alpha/jobs/{}/logs/ws", Uuid::now_v7()),
            Some(viewer.clone())
        )
        .await,
        404
    );
    assert_eq!(refused(format!("/api/v1/orgs/alpha/jobs/{}/logs/ws", job.id), None).await, 401);
    assert_eq!(
        refused(format!("/api/v1/orgs/alpha/jobs/{}/logs/ws", job.id), tokens[4].1.clone()).await,
        404
    );
    worker.stop().await;
}

#[tokio::test]
async fn the_events_websocket_follows_job_status_changes() {
    let ctx = TestContext::new().await;
    let World { app, tokens, .. } = world(&ctx).await;
    let viewer = tokens[3].1.clone().expect("viewer");
    let member = tokens[2].1.clone().expect("member");
    let mut socket = connect(&app, "/api/v1/orgs/alpha/events/ws", &viewer, false).await;
    let worker = TestWorker::start(&app.state.jobs, 2);
    let (status, job) = app
        .call(
            Method::POST,
            "/api/v1/orgs/alpha/jobs",
            Some(&member),
            Some(json!({ "kind": "sleep", "payload": { "ms": 50 } })),
        )
        .await;
    assert_eq!(status, 201);
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("succeeded") {
        let event = next_json(&mut socket).await.expect("events");
        assert_eq!(event["event"], "job.status", "{event}");
        if event["job_id"] == job["id"] {
            seen.push(event["status"].as_str().expect("status").to_owned());
        }
    }
    assert_eq!(seen, ["queued", "running", "succeeded"]);
    let _ = socket.close(None).await;
    // Another org's member cannot listen.
    let response = app
        .client
        .get(app.url("/api/v1/orgs/alpha/events/ws"))
        .bearer_auth(tokens[4].1.as_deref().unwrap_or_default())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 404);
    worker.stop().await;
}

#[tokio::test]
async fn admins_see_queues_workers_and_job_metrics() {
    let ctx = TestContext::new().await;
    ctx.user("root@example.com", PW, true).await;
    let app = ctx.spawn_app().await;
    let root = app.login("root@example.com", PW).await;
    let org = ctx.org("acme").await;
    let worker = TestWorker::start(&app.state.jobs, 2);
    app.state
        .jobs
        .enqueue(&org, &Actor::System, NewJob::new("noop", Value::Null))
        .await
        .expect("enqueue");
    app.state
        .jobs
        .enqueue(
            &org,
            &Actor::System,
            NewJob {
                run_at: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
                ..NewJob::new("noop", Value::Null)
            },
        )
        .await
        .expect("delayed");
    let sql =
        format!("SELECT count(*) FROM {} WHERE status = 'succeeded'", org.schema().qualify("jobs"));
    let ran = eventually(Duration::from_secs(10), || async {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.clone()))
            .fetch_one(&ctx.pool)
            .await
            .is_ok_and(|n| n == 1)
    })
    .await;
    assert!(ran, "the due job ran");
    let seen = eventually(Duration::from_secs(10), || async {
        app.call(Method::GET, "/api/v1/admin/workers", Some(&root), None).await.1["items"]
            .as_array()
            .is_some_and(|w| w.iter().any(|w| w["id"] == worker.id.as_str() && w["stale"] == false))
    })
    .await;
    assert!(seen, "the worker is listed");
    let (_, queues) = app.call(Method::GET, "/api/v1/admin/queues", Some(&root), None).await;
    let default = queues["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|q| q["name"] == "default")
        .cloned()
        .expect("default");
    assert_eq!(
        (default["depth"].as_u64(), default["scheduled"].as_u64(), default["paused"].as_bool()),
        (Some(0), Some(1), Some(false)),
        "{default}"
    );
    let text = app
        .client
        .get(app.metrics_url())
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for needle in [
        "orgstack_jobs_enqueued_total{queue=\"default\",kind=\"noop\"}",
        "orgstack_jobs_finished_total{queue=\"default\",kind=\"noop\",outcome=\"succeeded\"}",
        "orgstack_job_duration_seconds_bucket{queue=\"default\",kind=\"noop\"",
        "orgstack_queue_scheduled{queue=\"default\"} 1",
        "orgstack_queue_depth{queue=\"default\"} 0",
        "orgstack_queue_oldest_age_seconds{queue=\"default\"}",
        "orgstack_workers{state=\"live\"}",
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle}:\n{text}");
    }
    worker.stop().await;
}

#[tokio::test]
async fn a_websocket_ping_pong_keeps_working() {
    let ctx = TestContext::new().await;
    let World { app, tokens, .. } = world(&ctx).await;
    let viewer = tokens[3].1.clone().expect("viewer");
    let mut socket = connect(&app, "/api/v1/orgs/alpha/events/ws", &viewer, false).await;
    socket.send(Message::Ping(vec![1, 2, 3].into())).await.expect("ping");
    let pong = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("in time")
        .expect("frame")
        .expect("ok");
    assert!(matches!(pong, Message::Pong(_)), "{pong:?}");
}

#[tokio::test]
async fn concurrent_enqueues_are_each_recorded_once_under_their_callers() {
    let ctx = TestContext::new().await;
    let World { app, tokens, .. } = world(&ctx).await;
    let (owner, member) = (tokens[0].1.clone(), tokens[2].1.clone());
    // 200 calls at once, from two users; they are written together, and
    // one payload PostgreSQL could not store is refused on its own.
    let calls = (0..200).map(|i| {
        let (app, owner, member) = (&app, owner.clone(), member.clone());
        async move {
            let token = if i % 2 == 0 { owner } else { member };
            let payload = match i {
                7 => json!({ "bad": "nul \u{0}" }),
                // The six characters `\u0000` are text like any other.
                8 => json!({ "n": i, "text": "a backslash, then u0000: \\u0000" }),
                _ => json!({ "n": i }),
            };
            let body = json!({ "kind": "noop", "payload": payload, "delay_secs": 3600 });
            (
                i,
                app.call(Method::POST, "/api/v1/orgs/alpha/jobs", token.as_deref(), Some(body))
                    .await,
            )
        }
    });
    let answers = futures::future::join_all(calls).await;
    let mut ids = std::collections::HashSet::new();
    for (i, (status, job)) in answers {
        if i == 7 {
            assert_eq!((status, job["code"].as_str()), (422, Some("invalid_payload")), "{job}");
            continue;
        }
        assert_eq!(status, 201, "{job}");
        assert_eq!(job["payload"]["n"], i);
        if i == 8 {
            assert_eq!(job["payload"]["text"], "a backslash, then u0000: \\u0000");
        }
        let by = if i % 2 == 0 {
            "user:owner@alpha.example.com"
        } else {
            "user:member@alpha.example.com"
        };
        assert_eq!(job["created_by"], by);
        assert!(ids.insert(job["id"].as_str().expect("id").to_owned()), "a fresh id");
    }
    let org = alpha(&app).await;
    let sql = format!(
        "SELECT created_by, count(*) FROM {} GROUP BY created_by ORDER BY created_by",
        org.schema().qualify("jobs")
    );
    let rows: Vec<(String, i64)> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&app.state.db).await.expect("rows");
    assert_eq!(
        rows,
        vec![
            ("user:member@alpha.example.com".to_owned(), 99),
            ("user:owner@alpha.example.com".to_owned(), 100)
        ]
    );
}

#[tokio::test]
async fn job_lists_follow_every_change_of_the_org_s_jobs() {
    let ctx = TestContext::new().await;
    let World { app, tokens, .. } = world(&ctx).await;
    let member = tokens[2].1.as_deref();
    let org = alpha(&app).await;
    let list = || async {
        let (status, body) =
            app.call(Method::GET, "/api/v1/orgs/alpha/jobs?limit=10", member, None).await;
        assert_eq!(status, 200, "{body}");
        body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|j| (j["id"].as_str().unwrap_or_default().to_owned(), j["status"].clone()))
            .collect::<Vec<_>>()
    };
    assert!(list().await.is_empty());
    // The same page twice while nothing changes: the same answer.
    assert_eq!(list().await, list().await);

    // An enqueue through the services (not this request path) shows.
    let dead = job_in(&app, &org, JobStatus::Dead).await;
    // That one was changed behind the services' back (a test shortcut);
    // the next enqueue marks the list changed.
    let (_, posted) = app
        .call(Method::POST, "/api/v1/orgs/alpha/jobs", member, Some(json!({ "kind": "noop" })))
        .await;
    let id = posted["id"].as_str().expect("id").to_owned();
    let page = list().await;
    assert_eq!(page.len(), 2);
    assert_eq!(page[0], (id.clone(), json!("queued")));
    assert_eq!(page[1], (dead.to_string(), json!("dead")));

    // A worker runs it: the cached page is not served again.
    let worker = TestWorker::start(&app.state.jobs, 2);
    let ran = eventually(Duration::from_secs(20), || async {
        list().await[0] == (id.clone(), json!("succeeded"))
    })
    .await;
    assert!(ran, "the list shows the job succeeded: {:?}", list().await);
    worker.stop().await;

    // Discarding the dead job (which announces no status) drops it.
    let path = format!("/api/v1/orgs/alpha/jobs/{dead}");
    assert_eq!(app.call(Method::DELETE, &path, member, None).await.0, 204);
    assert_eq!(list().await, vec![(id, json!("succeeded"))]);
}
