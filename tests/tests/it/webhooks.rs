//! Webhooks against a receiver started by the test: signed per Standard
//! Webhooks, retried after a 500, given up after the last attempt,
//! replayed; private addresses refused unless allowed; another org's
//! webhooks invisible.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine;
use hmac::Mac;
use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts::PW;
use crate::eventually;
use orgstack::jobs::NewJob;
use orgstack_tests::{TestApp, TestContext, TestWorker};

/// What the receiver got: each request's headers and body.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    /// The statuses to answer with, in order; 200 once they run out (or
    /// `otherwise`).
    statuses: Arc<Mutex<VecDeque<u16>>>,
    otherwise: u16,
}

impl Receiver {
    async fn start(statuses: &[u16], otherwise: u16) -> (String, Receiver) {
        let receiver = Receiver {
            got: Arc::default(),
            statuses: Arc::new(Mutex::new(statuses.iter().copied().collect())),
            otherwise,
        };
        let state = receiver.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let state = state.clone();
                async move {
                    state.got.lock().expect("lock").push((headers, body));
                    let status =
                        state.statuses.lock().expect("lock").pop_front().unwrap_or(state.otherwise);
                    (axum::http::StatusCode::from_u16(status).expect("status"), "thanks")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://127.0.0.1:{port}/hook"), receiver)
    }

    fn requests(&self) -> Vec<(HeaderMap, String)> {
        self.got.lock().expect("lock").clone()
    }

    async fn wait_for(&self, count: usize) -> Vec<(HeaderMap, String)> {
        let arrived =
            eventually(Duration::from_secs(30), || async { self.requests().len() >= count }).await;
        assert!(arrived, "expected {count} requests, got {}", self.requests().len());
        self.requests()
    }
}

/// An app that may call 127.0.0.1, an owner's token and the org.
async fn setup(ctx: &TestContext, allow_private: bool) -> (TestApp, String, tenancy::Org) {
    let mut config = ctx.config.clone();
    config.webhook_allow_private = allow_private;
    let app = orgstack_tests::spawn_app(config).await;
    let owner = ctx.user("owner@example.com", PW, false).await;
    let org = ctx.org("acme").await;
    ctx.accounts()
        .add_owner(&orgstack::accounts::Actor::System, &org, owner.id)
        .await
        .expect("owner");
    let token = app.login("owner@example.com", PW).await;
    app.state
        .flags
        .set(&orgstack::accounts::Actor::System, "webhooks", Some(org.id), true)
        .await
        .expect("flag");
    (app, token, org)
}

async fn create(app: &TestApp, token: &str, body: Value) -> (u16, Value) {
    app.call(Method::POST, "/api/v1/orgs/acme/webhooks", Some(token), Some(body)).await
}

/// The signature checked twice: by the Standard Webhooks library, and by
/// hand from the spec (HMAC-SHA256 of `id.timestamp.body` under the
/// base64 key after `whsec_`).
fn assert_signed(secret: &str, headers: &HeaderMap, body: &str) {
    standardwebhooks::Webhook::new(secret)
        .expect("secret")
        .verify(body.as_bytes(), headers)
        .expect("the signature verifies");
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_"))
        .expect("base64 key");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("key");
    let id = headers["webhook-id"].to_str().expect("id");
    let timestamp = headers["webhook-timestamp"].to_str().expect("timestamp");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(headers["webhook-signature"].to_str().expect("signature"), expected);
    // Another secret does not verify it.
    let other = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode([7u8; 32]));
    assert!(
        standardwebhooks::Webhook::new(&other)
            .expect("secret")
            .verify(body.as_bytes(), headers)
            .is_err()
    );
}

async fn deliveries(app: &TestApp, token: &str, webhook: &str) -> Vec<Value> {
    let (status, page) = app
        .call(
            Method::GET,
            &format!("/api/v1/orgs/acme/webhooks/{webhook}/deliveries"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().cloned().unwrap_or_default()
}

async fn wait_delivery(app: &TestApp, token: &str, webhook: &str, status: &str) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let list = deliveries(app, token, webhook).await;
        if list.first().is_some_and(|d| d["status"] == status) {
            return list;
        }
        assert!(std::time::Instant::now() < deadline, "never {status}: {list:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn deliveries_are_signed_retried_after_a_500_and_replayable() {
    let ctx = TestContext::new().await;
    let (app, token, org) = setup(&ctx, true).await;
    let (url, receiver) = Receiver::start(&[500], 200).await;
    let (status, created) =
        create(&app, &token, json!({ "url": url, "event_types": ["job.succeeded"] })).await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"));
    let webhook = created["id"].as_str().expect("id").to_owned();
    // The secret is shown once.
    let (_, shown) = app
        .call(Method::GET, &format!("/api/v1/orgs/acme/webhooks/{webhook}"), Some(&token), None)
        .await;
    assert!(shown.get("secret").is_none() && !shown.to_string().contains(&secret));

    let worker = TestWorker::start_all(&app.state.jobs, 4);
    let job = app
        .state
        .jobs
        .enqueue(&org, &orgstack::accounts::Actor::System, NewJob::new("noop", Value::Null))
        .await
        .expect("enqueue")
        .job;
    let got = receiver.wait_for(2).await;
    let list = wait_delivery(&app, &token, &webhook, "succeeded").await;
    assert_eq!(list.len(), 1, "one delivery, two attempts");
    assert_eq!(list[0]["attempts"], 2);
    assert_eq!(list[0]["response_status"], 200);
    assert_eq!(list[0]["response_excerpt"], "thanks");
    assert!(list[0]["latency_ms"].as_i64().is_some());
    // The same message both times: the same id, both signed.
    assert_eq!(got[0].0["webhook-id"], got[1].0["webhook-id"]);
    for (headers, body) in &got {
        assert_signed(&secret, headers, body);
        let event: Value = serde_json::from_str(body).expect("json");
        assert_eq!(event["type"], "job.succeeded");
        assert_eq!(event["org"]["slug"], "acme");
        assert_eq!(event["data"]["id"], job.id.to_string());
        assert_eq!(event["data"]["kind"], "noop");
    }

    // Replay: a new delivery of the same event.
    let delivery = list[0]["id"].as_str().expect("id");
    let (status, replayed) = app
        .call(
            Method::POST,
            &format!("/api/v1/orgs/acme/webhooks/{webhook}/deliveries/{delivery}/replay"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 202, "{replayed}");
    assert_ne!(replayed["id"], list[0]["id"]);
    assert_eq!(replayed["event_id"], list[0]["event_id"]);
    let got = receiver.wait_for(3).await;
    assert_eq!(got[2].0["webhook-id"], got[0].0["webhook-id"]);
    assert_signed(&secret, &got[2].0, &got[2].1);
    ctx.drain(&org, Duration::from_secs(30)).await;
    worker.stop().await;
    // Deliveries do not announce themselves (no loop): 3 requests in all.
    assert_eq!(receiver.requests().len(), 3);
}

#[tokio::test]
async fn events_announced_together_reach_each_subscribed_endpoint_once() {
    let ctx = TestContext::new().await;
    let (app, token, org) = setup(&ctx, true).await;
    let (url_a, a) = Receiver::start(&[], 200).await;
    let (url_b, b) = Receiver::start(&[], 200).await;
    let (_, created_a) =
        create(&app, &token, json!({ "url": url_a, "event_types": ["job.succeeded", "job.dead"] }))
            .await;
    let (_, created_b) =
        create(&app, &token, json!({ "url": url_b, "event_types": ["job.succeeded"] })).await;
    let worker = TestWorker::start_all(&app.state.jobs, 4);
    // One call with three events, as a worker finishing a batch makes.
    let made = orgstack::webhooks::emit(
        &app.state.jobs,
        org.id,
        vec![
            ("job.succeeded", json!({ "id": "one" })),
            ("job.dead", json!({ "id": "two" })),
            ("member.added", json!({ "id": "nobody subscribed" })),
            ("job.succeeded", json!({ "id": "three" })),
        ],
    )
    .await;
    assert_eq!(made, 5, "three events for A, two for B");
    let got_a = a.wait_for(3).await;
    let got_b = b.wait_for(2).await;
    let seen = |got: &[(HeaderMap, String)]| {
        let mut seen: Vec<(String, String, String)> = got
            .iter()
            .map(|(headers, body)| {
                let event: Value = serde_json::from_str(body).expect("json");
                (
                    event["type"].as_str().expect("type").to_owned(),
                    event["data"]["id"].as_str().expect("id").to_owned(),
                    headers["webhook-id"].to_str().expect("webhook-id").to_owned(),
                )
            })
            .collect();
        seen.sort();
        seen
    };
    let (seen_a, seen_b) = (seen(&got_a), seen(&got_b));
    let events = |seen: &[(String, String, String)]| {
        seen.iter().map(|(t, id, _)| format!("{t} {id}")).collect::<Vec<_>>()
    };
    assert_eq!(events(&seen_a), ["job.dead two", "job.succeeded one", "job.succeeded three"]);
    assert_eq!(events(&seen_b), ["job.succeeded one", "job.succeeded three"]);
    // An event is one message: the same webhook-id at both endpoints, and
    // each event its own.
    assert_eq!(seen_a[1].2, seen_b[0].2);
    assert_eq!(seen_a[2].2, seen_b[1].2);
    assert_ne!(seen_a[1].2, seen_a[2].2);
    for created in [&created_a, &created_b] {
        let webhook = created["id"].as_str().expect("id");
        let list = wait_delivery(&app, &token, webhook, "succeeded").await;
        for delivery in &list {
            assert!(delivery["job_id"].is_string(), "each delivery names its job: {delivery}");
        }
    }
    ctx.drain(&org, Duration::from_secs(30)).await;
    worker.stop().await;
    assert_eq!((a.requests().len(), b.requests().len()), (3, 2), "each delivered once");
}

#[tokio::test]
async fn a_delivery_that_keeps_failing_gives_up_after_the_last_attempt() {
    let ctx = TestContext::new().await;
    let (app, token, org) = setup(&ctx, true).await;
    let (url, receiver) = Receiver::start(&[], 500).await;
    let (_, created) =
        create(&app, &token, json!({ "url": url, "event_types": ["job.dead"] })).await;
    let webhook = created["id"].as_str().expect("id").to_owned();
    let worker = TestWorker::start_all(&app.state.jobs, 4);
    let job = NewJob {
        max_attempts: Some(1),
        ..NewJob::new("sleep", json!({ "ms": 1, "fail_attempts": 5 }))
    };
    app.state.jobs.enqueue(&org, &orgstack::accounts::Actor::System, job).await.expect("enqueue");
    let list = wait_delivery(&app, &token, &webhook, "failed").await;
    ctx.drain(&org, Duration::from_secs(30)).await;
    worker.stop().await;
    assert_eq!(list[0]["attempts"], 6);
    assert_eq!(list[0]["response_status"], 500);
    assert_eq!(list[0]["event_type"], "job.dead");
    assert_eq!(receiver.requests().len(), 6);
    let counts = ctx.job_counts(&org).await;
    assert!(counts.contains(&("dead".to_owned(), 2)), "the sleep job and the delivery: {counts:?}");
}

#[tokio::test]
async fn webhooks_to_private_addresses_are_refused_unless_allowed() {
    let ctx = TestContext::new().await;
    let (app, token, org) = setup(&ctx, false).await;
    let (url, receiver) = Receiver::start(&[], 200).await;
    for target in [
        url.clone(),
        url.replace("127.0.0.1", "localhost"),
        "http://10.0.0.1/x".into(),
        "http://[::1]/x".into(),
    ] {
        let (status, body) =
            create(&app, &token, json!({ "url": target, "event_types": ["job.succeeded"] })).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("webhook_url_refused")),
            "{target}: {body}"
        );
    }
    // Registered where private addresses are allowed, delivered by a
    // worker where they are not (its own check, after resolving the name).
    let mut allowing = ctx.config.clone();
    allowing.webhook_allow_private = true;
    let allowing = orgstack_tests::spawn_app(allowing).await;
    let token = allowing.login("owner@example.com", PW).await;
    let (status, created) =
        create(&allowing, &token, json!({ "url": url, "event_types": ["job.succeeded"] })).await;
    assert_eq!(status, 201);
    let webhook = created["id"].as_str().expect("id").to_owned();
    let worker = TestWorker::start_all(&ctx.jobs(), 2);
    app.state
        .jobs
        .enqueue(&org, &orgstack::accounts::Actor::System, NewJob::new("noop", Value::Null))
        .await
        .expect("enqueue");
    let list = wait_delivery(&allowing, &token, &webhook, "failed").await;
    ctx.drain(&org, Duration::from_secs(30)).await;
    worker.stop().await;
    assert_eq!(list[0]["attempts"], 1, "refused at once, not retried");
    let error = list[0]["error"].as_str().expect("error");
    assert!(error.contains("127.0.0.1") && error.contains("loopback"), "{error}");
    assert!(receiver.requests().is_empty(), "nothing reached the receiver");
}

#[tokio::test]
async fn files_ready_and_members_added_are_announced_and_other_orgs_see_nothing() {
    let ctx = TestContext::new().await;
    let (app, token, _org) = setup(&ctx, true).await;
    let (url, receiver) = Receiver::start(&[], 200).await;
    let (_, created) = create(
        &app,
        &token,
        json!({ "url": url, "event_types": ["file.ready", "member.added"], "description": "ops" }),
    )
    .await;
    let webhook = created["id"].as_str().expect("id").to_owned();
    let worker = TestWorker::start_all(&app.state.jobs, 4);
    ctx.user("new@example.com", PW, false).await;
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/orgs/acme/members",
            Some(&token),
            Some(json!({ "email": "new@example.com", "role": "viewer" })),
        )
        .await;
    assert_eq!(status, 201);
    let part = reqwest::multipart::Part::bytes(b"hello\n".to_vec()).file_name("hello.txt");
    let response = app
        .client
        .post(app.url("/api/v1/orgs/acme/files"))
        .bearer_auth(&token)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 201);
    let got = receiver.wait_for(2).await;
    worker.stop().await;
    let mut types: Vec<String> = got
        .iter()
        .map(|(_, body)| {
            serde_json::from_str::<Value>(body).expect("json")["type"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    types.sort();
    assert_eq!(types, ["file.ready", "member.added"]);

    // Another org's admin sees none of it.
    let bella = ctx.user("bella@example.com", PW, false).await;
    let beta = ctx.org("beta").await;
    ctx.accounts()
        .add_owner(&orgstack::accounts::Actor::System, &beta, bella.id)
        .await
        .expect("owner");
    let other = app.login("bella@example.com", PW).await;
    let delivery =
        deliveries(&app, &token, &webhook).await[0]["id"].as_str().expect("id").to_owned();
    for path in [
        format!("/api/v1/orgs/beta/webhooks/{webhook}"),
        format!("/api/v1/orgs/beta/webhooks/{webhook}/deliveries"),
        format!("/api/v1/orgs/acme/webhooks/{webhook}"),
        "/api/v1/orgs/acme/webhooks".to_owned(),
    ] {
        let (status, _) = app.call(Method::GET, &path, Some(&other), None).await;
        assert_eq!(status, 404, "{path}");
    }
    let (status, _) = app
        .call(
            Method::POST,
            &format!("/api/v1/orgs/beta/webhooks/{webhook}/deliveries/{delivery}/replay"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (_, list) = app.call(Method::GET, "/api/v1/orgs/beta/webhooks", Some(&other), None).await;
    assert_eq!(list["items"], json!([]));
    // Beta has not had the `webhooks` flag turned on.
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/orgs/beta/webhooks",
            Some(&other),
            Some(json!({ "url": "https://hooks.example.com/x", "event_types": ["file.ready"] })),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
}

#[tokio::test]
async fn the_cli_lists_webhooks_and_replays_a_delivery() {
    let ctx = TestContext::new().await;
    let (app, token, org) = setup(&ctx, true).await;
    let (url, receiver) = Receiver::start(&[], 200).await;
    let (_, created) =
        create(&app, &token, json!({ "url": url, "event_types": ["job.succeeded"] })).await;
    let webhook = created["id"].as_str().expect("id").to_owned();
    let worker = TestWorker::start_all(&app.state.jobs, 2);
    app.state
        .jobs
        .enqueue(&org, &orgstack::accounts::Actor::System, NewJob::new("noop", Value::Null))
        .await
        .expect("enqueue");
    let list = wait_delivery(&app, &token, &webhook, "succeeded").await;
    let delivery = list[0]["id"].as_str().expect("id").to_owned();

    let env = [("WEBHOOK_ALLOW_PRIVATE", "true")];
    let out = crate::run_cli(Some(&ctx), &["webhooks", "list", "acme"], &env);
    assert!(out.status.success(), "{}", crate::stderr(&out));
    let text = crate::stdout(&out);
    assert!(text.contains(&webhook) && text.contains(&url) && text.contains(&delivery), "{text}");
    let out = crate::run_cli(Some(&ctx), &["webhooks", "replay", "acme", &delivery], &env);
    assert!(out.status.success(), "{}", crate::stderr(&out));
    assert!(crate::stdout(&out).contains(&format!("replayed delivery {delivery}")));
    let got = receiver.wait_for(2).await;
    assert_eq!(got[0].0["webhook-id"], got[1].0["webhook-id"]);
    ctx.drain(&org, Duration::from_secs(30)).await;
    worker.stop().await;
    let out = crate::run_cli(
        Some(&ctx),
        &["webhooks", "replay", "acme", &uuid::Uuid::now_v7().to_string()],
        &env,
    );
    assert!(!out.status.success());
    assert!(crate::stderr(&out).contains("no such delivery"), "{}", crate::stderr(&out));
}

#[tokio::test]
async fn discord_endpoints_and_the_platform_discord_channel_get_discord_messages() {
    let ctx = TestContext::new().await;
    let (discord_url, discord) = Receiver::start(&[], 204).await;
    let mut config = ctx.config.clone();
    config.webhook_allow_private = true;
    config.discord_webhook_url = Some(secrecy::SecretString::from(discord_url.clone()));
    let app = orgstack_tests::spawn_app(config).await;
    let owner = ctx.user("owner@example.com", PW, false).await;
    let org = ctx.org("acme").await;
    ctx.accounts()
        .add_owner(&orgstack::accounts::Actor::System, &org, owner.id)
        .await
        .expect("owner");
    app.state
        .flags
        .set(&orgstack::accounts::Actor::System, "webhooks", Some(org.id), true)
        .await
        .expect("flag");
    let token = app.login("owner@example.com", PW).await;
    let (url, channel) = Receiver::start(&[], 204).await;
    let (status, _) =
        create(&app, &token, json!({ "url": url, "kind": "discord", "event_types": ["job.dead"] }))
            .await;
    assert_eq!(status, 201);
    let worker = TestWorker::start_all(&app.state.jobs, 4);
    let job = NewJob {
        max_attempts: Some(1),
        ..NewJob::new("sleep", json!({ "ms": 1, "fail_attempts": 5 }))
    };
    let job = app
        .state
        .jobs
        .enqueue(&org, &orgstack::accounts::Actor::System, job)
        .await
        .expect("enqueue")
        .job;
    // The org's Discord endpoint: the event as a Discord message.
    let got = channel.wait_for(1).await;
    let message: Value = serde_json::from_str(&got[0].1).expect("json");
    let content = message["content"].as_str().expect("content");
    assert!(
        content.contains("job.dead")
            && content.contains("acme")
            && content.contains(&job.id.to_string()),
        "{content}"
    );
    assert_eq!(message["allowed_mentions"], json!({ "parse": [] }));
    // The platform's channel (DISCORD_WEBHOOK_URL): the dead job reported.
    let got = discord.wait_for(1).await;
    let report: Value = serde_json::from_str(&got[0].1).expect("json");
    let content = report["content"].as_str().expect("content");
    assert!(
        content.contains("a sleep job is dead") && content.contains(&job.id.to_string()),
        "{content}"
    );
    ctx.drain(&org, Duration::from_secs(30)).await;
    worker.stop().await;
}
