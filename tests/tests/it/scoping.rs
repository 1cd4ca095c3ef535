//! Tenant scope: empty search_path, the `OrgScope` extractor, and the org
//! cache invalidated across processes.

use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use orgstack::http::OrgScope;
use sea_query::{Asterisk, Expr, Func, PostgresQueryBuilder, Query};
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;
use tenancy::{OrgStatus, Slug};

use crate::eventually;
use orgstack_tests::TestContext;

fn slug(s: &str) -> Slug {
    Slug::parse(s).expect("valid slug")
}

#[tokio::test]
async fn unqualified_table_names_fail_on_application_connections() {
    let ctx = TestContext::new().await;
    let org = ctx.registry().create("Scoped", &slug("scoped")).await.expect("org");

    let path: String =
        sqlx::query_scalar("SHOW search_path").fetch_one(&ctx.pool).await.expect("show");
    assert_eq!(path, "\"\"", "application connections have an empty search_path");
    let server = orgstack::app::build_state(ctx.config.clone()).await.expect("server state");
    let path: String =
        sqlx::query_scalar("SHOW search_path").fetch_one(&server.db).await.expect("show");
    assert_eq!(path, "\"\"", "the server's pool too");

    let err = sqlx::query("SELECT count(*) FROM orgs")
        .fetch_one(&ctx.pool)
        .await
        .expect_err("unqualified");
    assert!(err.to_string().contains("relation \"orgs\" does not exist"), "{err}");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM public.orgs")
        .fetch_one(&ctx.pool)
        .await
        .expect("qualified");
    assert_eq!(n, 1);

    let err = sqlx::query("SELECT count(*) FROM audit_events")
        .fetch_one(&ctx.pool)
        .await
        .expect_err("unqualified");
    assert!(err.to_string().contains("does not exist"), "{err}");
    let sql = Query::select()
        .expr(Func::count(Expr::col(Asterisk)))
        .from(org.schema().table("audit_events"))
        .to_string(PostgresQueryBuilder);
    let n: i64 =
        sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&ctx.pool).await.expect("qualified");
    assert_eq!(n, 0);
}

async fn whoami(scope: OrgScope) -> Json<Value> {
    Json(json!({ "slug": scope.org().slug, "schema": scope.schema().as_str() }))
}

/// The app's middleware and state around one org-scoped route.
async fn serve_scoped(ctx: &TestContext) -> String {
    let state = orgstack::app::build_state(ctx.config.clone()).await.expect("state");
    let listener_task = state.orgs.listen().await.expect("listen");
    let routes = Router::new().route("/api/v1/orgs/{org}/whoami", get(whoami));
    let app = orgstack::http::with_layers(routes, &state.config).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _keep = listener_task;
        let _ = axum::serve(listener, app).await;
    });
    base
}

async fn get_json(url: &str) -> (u16, String, Value) {
    let response = reqwest::get(url).await.expect("request");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, response.json().await.expect("json body"))
}

#[tokio::test]
async fn org_extractor_serves_active_orgs_and_hides_the_rest() {
    let ctx = TestContext::new().await;
    let registry = ctx.registry();
    let acme = registry.create("Acme", &slug("acme")).await.expect("acme");
    let other = registry.create("Other", &slug("other")).await.expect("other");
    let base = serve_scoped(&ctx).await;
    let url = |s: &str| format!("{base}/api/v1/orgs/{s}/whoami");

    let (status, _, body) = get_json(&url("acme")).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({ "slug": "acme", "schema": acme.schema().as_str() }));
    let (_, _, body) = get_json(&url("other")).await;
    assert_eq!(body["schema"], other.schema().as_str(), "each org resolves to its own schema");

    let not_found = |slug: &str| {
        json!({
            "type": "urn:orgstack:problem:org_not_found",
            "title": "Not Found",
            "status": 404,
            "detail": format!("No org named '{slug}'."),
            "code": "org_not_found",
        })
    };
    for unknown in ["nobody-here", "BAD_SLUG"] {
        let (status, content_type, body) = get_json(&url(unknown)).await;
        assert_eq!((status, content_type.as_str()), (404, "application/problem+json"));
        assert_eq!(body, not_found(unknown));
    }

    // Changes made through another registry (another process) reach the
    // server's cache over Redis.
    registry.suspend(&slug("acme")).await.expect("suspend");
    assert!(
        eventually(Duration::from_secs(5), || async { get_json(&url("acme")).await.0 == 404 })
            .await
    );
    assert_eq!(
        get_json(&url("acme")).await.2,
        not_found("acme"),
        "suspended looks exactly like unknown"
    );

    registry.resume(&slug("acme")).await.expect("resume");
    assert!(
        eventually(Duration::from_secs(5), || async { get_json(&url("acme")).await.0 == 200 })
            .await
    );

    registry.change_slug(&slug("acme"), &slug("acme-renamed")).await.expect("rename slug");
    assert!(
        eventually(Duration::from_secs(5), || async { get_json(&url("acme")).await.0 == 404 })
            .await
    );
    let (status, _, body) = get_json(&url("acme-renamed")).await;
    assert_eq!(status, 200);
    assert_eq!(body["schema"], acme.schema().as_str(), "a renamed slug keeps its schema");

    registry.soft_delete(&slug("other")).await.expect("delete");
    assert!(
        eventually(Duration::from_secs(5), || async { get_json(&url("other")).await.0 == 404 })
            .await
    );
    assert_eq!(get_json(&url("other")).await.2, not_found("other"));
    registry.purge(&slug("other"), false).await.expect("purge");
    assert_eq!(get_json(&url("other")).await.2, not_found("other"), "purged looks like unknown");
}

#[tokio::test]
async fn cache_invalidation_from_another_process_is_seen() {
    let ctx = TestContext::new().await;
    let here = ctx.registry();
    let _listening = here.listen().await.expect("listen");
    here.create("Cached", &slug("cached")).await.expect("org");
    assert_eq!(
        here.by_slug(&slug("cached")).await.expect("lookup").expect("found").status,
        OrgStatus::Active
    );

    // Without the announcement this process would keep serving its cached
    // copy for up to a minute.
    let elsewhere = ctx.other_process_registry().await;
    elsewhere.suspend(&slug("cached")).await.expect("suspend elsewhere");
    let seen = eventually(Duration::from_secs(5), || async {
        here.by_slug(&slug("cached"))
            .await
            .ok()
            .flatten()
            .is_some_and(|o| o.status == OrgStatus::Suspended)
    })
    .await;
    assert!(seen, "the suspension made by another process must reach this cache");

    elsewhere.rename(&slug("cached"), "Renamed").await.expect("rename elsewhere");
    let renamed = eventually(Duration::from_secs(5), || async {
        here.by_slug(&slug("cached")).await.ok().flatten().is_some_and(|o| o.name == "Renamed")
    })
    .await;
    assert!(renamed);
}

#[tokio::test]
async fn cache_is_dropped_when_the_subscription_reconnects() {
    let ctx = TestContext::new().await;
    let here = ctx.registry();
    let _listening = here.listen().await.expect("listen");
    here.create("Before", &slug("reconnect")).await.expect("org");
    assert_eq!(
        here.by_slug(&slug("reconnect")).await.expect("lookup").expect("found").name,
        "Before"
    );

    // A change nobody announced (as if the message was lost while
    // disconnected), then the subscription's connection drops.
    sqlx::query("UPDATE public.orgs SET name = 'After' WHERE slug = 'reconnect'")
        .execute(&ctx.pool)
        .await
        .expect("silent change");
    assert_eq!(
        here.by_slug(&slug("reconnect")).await.expect("lookup").expect("found").name,
        "Before"
    );
    let _: fred::types::Value = fred::prelude::ClientLike::custom(
        &ctx.redis,
        fred::types::CustomCommand::new_static("CLIENT", None, false),
        vec!["KILL", "TYPE", "pubsub"],
    )
    .await
    .expect("client kill");
    let reloaded = eventually(Duration::from_secs(10), || async {
        here.by_slug(&slug("reconnect")).await.ok().flatten().is_some_and(|o| o.name == "After")
    })
    .await;
    assert!(reloaded, "after a reconnect the cache must not keep what it may have missed");
}

/// The worker's claim connections (a `Lane`, outside the pool): an empty
/// search_path like every application connection, their own setup on top,
/// handed back and reused after a statement, and closed, never reused, when
/// a statement is abandoned midway (its reply would otherwise reach the
/// next caller).
#[tokio::test]
async fn lane_connections_keep_their_setup_and_are_closed_when_abandoned() {
    let ctx = TestContext::new().await;
    let lane = tenancy::db::Lane::new(
        (*ctx.pool.connect_options()).clone(),
        "SET synchronous_commit = off",
        1,
    );
    let probe = "SELECT current_setting('search_path'), current_setting('synchronous_commit'), pg_backend_pid()";

    let mut conn = lane.lease().await.expect("lease");
    let first: Result<(String, String, i32), _> = sqlx::query_as(probe).fetch_one(&mut *conn).await;
    conn.give_back(&first);
    let (path, sync, backend) = first.expect("probe");
    assert_eq!((path.as_str(), sync.as_str()), ("\"\"", "off"));

    // A statement that fails in PostgreSQL leaves the connection in step:
    // it goes back and serves the next statement.
    let mut conn = lane.lease().await.expect("lease");
    let failed = sqlx::query("SELECT 1 FROM jobs").execute(&mut *conn).await;
    assert!(failed.is_err(), "unqualified names fail here too");
    conn.give_back(&failed);
    let mut conn = lane.lease().await.expect("lease");
    let again: Result<(String, String, i32), _> = sqlx::query_as(probe).fetch_one(&mut *conn).await;
    conn.give_back(&again);
    assert_eq!(again.expect("probe").2, backend, "the same connection, reused");

    // Abandoned mid-statement: that connection is not handed out again.
    {
        let mut conn = lane.lease().await.expect("lease");
        let slow = sqlx::query("SELECT pg_sleep(2)").execute(&mut *conn);
        assert!(tokio::time::timeout(Duration::from_millis(200), slow).await.is_err());
    }
    let mut conn = lane.lease().await.expect("lease after an abandoned statement");
    let answer: Result<(i32, i32), _> =
        sqlx::query_as("SELECT 42, pg_backend_pid()").fetch_one(&mut *conn).await;
    conn.give_back(&answer);
    let (value, fresh) = answer.expect("a statement on a fresh connection");
    assert_eq!(value, 42);
    assert_ne!(fresh, backend, "the abandoned connection was closed, a new one opened");
}

/// A lane warmed at start has all its connections open and set up before
/// the first lease, and no more.
#[tokio::test]
async fn a_warmed_lane_has_its_connections_open_before_the_first_lease() {
    let ctx = TestContext::new().await;
    let lane = tenancy::db::Lane::new(
        (*ctx.pool.connect_options()).clone().application_name("orgstack-lane-warm-test"),
        "SET synchronous_commit = off",
        2,
    );
    lane.warm().await.expect("warm");
    let opened: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name = 'orgstack-lane-warm-test' ORDER BY pid",
    )
    .fetch_all(&ctx.pool)
    .await
    .expect("backends");
    assert_eq!(opened.len(), 2, "as many connections as the lane holds, no more");

    let probe = "SELECT current_setting('synchronous_commit'), pg_backend_pid()";
    let mut a = lane.lease().await.expect("lease");
    let mut b = lane.lease().await.expect("lease");
    let first: Result<(String, i32), _> = sqlx::query_as(probe).fetch_one(&mut *a).await;
    let second: Result<(String, i32), _> = sqlx::query_as(probe).fetch_one(&mut *b).await;
    a.give_back(&first);
    b.give_back(&second);
    let (first, second) = (first.expect("probe"), second.expect("probe"));
    assert_eq!((first.0.as_str(), second.0.as_str()), ("off", "off"), "set up when opened");
    let mut leased = vec![first.1, second.1];
    leased.sort_unstable();
    assert_eq!(leased, opened, "the leases got the connections warm opened");
}

/// A lane connection whose session PostgreSQL ended (here by
/// `pg_terminate_backend`, as on a server shutdown) is closed when its
/// failed statement gives it back, not handed out again.
#[tokio::test]
async fn a_lane_connection_whose_session_ended_is_not_reused() {
    let ctx = TestContext::new().await;
    let lane = tenancy::db::Lane::new((*ctx.pool.connect_options()).clone(), "SELECT 1", 1);
    let pid = "SELECT pg_backend_pid()";

    let mut conn = lane.lease().await.expect("lease");
    let first: Result<i32, _> = sqlx::query_scalar(pid).fetch_one(&mut *conn).await;
    conn.give_back(&first);
    let first = first.expect("pid");
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(first)
        .fetch_one(&ctx.pool)
        .await
        .expect("terminate");
    assert!(terminated);
    // Let the backend's goodbye reach the client's socket.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut conn = lane.lease().await.expect("lease");
    let failed: Result<i32, _> = sqlx::query_scalar(pid).fetch_one(&mut *conn).await;
    assert!(failed.is_err(), "the ended session cannot answer");
    conn.give_back(&failed);

    let mut conn = lane.lease().await.expect("lease after the failure");
    let next: Result<i32, _> = sqlx::query_scalar(pid).fetch_one(&mut *conn).await;
    conn.give_back(&next);
    assert_ne!(next.expect("a fresh connection answers"), first);
}
