//! The HTTP skeleton: health, readiness, metrics, request ids and problem+json.

use orgstack_tests::{TestContext, config_with, spawn_app};
use serde_json::{Value, json};

#[tokio::test]
async fn healthz_and_readyz_answer_when_everything_is_up() {
    let ctx = TestContext::new().await;
    let app = ctx.spawn_app().await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.expect("json"), json!({ "status": "ok" }));

    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({ "status": "ready", "postgres": "ok", "redis": "ok" })
    );
}

#[tokio::test]
async fn readyz_names_redis_when_it_is_down() {
    let ctx = TestContext::new().await;
    let closed_port = orgstack::local::free_port().expect("port");
    let redis_url = format!("redis://127.0.0.1:{closed_port}");
    let config = config_with(&[("DATABASE_URL", &ctx.database_url), ("REDIS_URL", &redis_url)]);
    let app = spawn_app(config).await;

    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "not_ready");
    let detail = body["detail"].as_str().expect("detail");
    assert!(detail.contains("redis:"), "{detail}");
    assert!(!detail.contains("postgres:"), "PostgreSQL is up: {detail}");

    // The process itself is alive.
    assert_eq!(app.get("/healthz").await.status(), 200);

    // Redis comes up on that port: the same process reconnects and is ready.
    let dir = tempfile::tempdir().expect("dir");
    let _redis =
        orgstack::local::LocalRedis::start_on(dir.path(), closed_port, false).await.expect("redis");
    let ready = crate::eventually(std::time::Duration::from_secs(20), || async {
        app.get("/readyz").await.status() == 200
    })
    .await;
    assert!(ready, "the server reconnects to a Redis that was down at start");
}

#[tokio::test]
async fn readyz_names_postgres_when_it_is_down() {
    let ctx = TestContext::new().await;
    let closed_port = orgstack::local::free_port().expect("port");
    let database_url = format!("postgres://postgres@127.0.0.1:{closed_port}/nothing");
    let config = config_with(&[
        ("DATABASE_URL", &database_url),
        ("REDIS_URL", &ctx.redis_url),
        ("DB_CONNECT_TIMEOUT_SECS", "1"),
    ]);
    let app = spawn_app(config).await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("json");
    let detail = body["detail"].as_str().expect("detail");
    assert!(detail.contains("postgres:") && !detail.contains("redis:"), "{detail}");
}

#[tokio::test]
async fn request_ids_are_generated_or_propagated() {
    let ctx = TestContext::new().await;
    let app = ctx.spawn_app().await;
    let generated = app.get("/healthz").await;
    let id = generated.headers()["x-request-id"].to_str().expect("ascii").to_owned();
    assert_eq!(id.len(), 36, "a uuid: {id}");

    let propagated = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .expect("request");
    assert_eq!(propagated.headers()["x-request-id"], "abc-123");
}

#[tokio::test]
async fn errors_are_problem_json() {
    let ctx = TestContext::new().await;
    let app = ctx.spawn_app().await;

    let response = app.get("/no/such/path").await;
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({
            "type": "urn:orgstack:problem:not_found",
            "title": "Not Found",
            "status": 404,
            "detail": "No resource at this path.",
            "code": "not_found",
        })
    );

    let response = app.client.post(app.url("/healthz")).send().await.expect("request");
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "method_not_allowed");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_report_pool_and_orgs() {
    let ctx = TestContext::new().await;
    ctx.registry()
        .create("Metered", &tenancy::Slug::parse("metered").expect("slug"))
        .await
        .expect("org");
    let app = ctx.spawn_app().await;
    for _ in 0..3 {
        app.get("/healthz").await;
    }
    app.get("/unknown/thing").await;

    let text =
        app.client.get(app.metrics_url()).send().await.expect("scrape").text().await.expect("text");
    let counter = text
        .lines()
        .find(|l| {
            l.starts_with("orgstack_http_requests_total{")
                && l.contains("route=\"/healthz\"")
                && l.contains("status=\"200\"")
        })
        .expect("request counter for /healthz");
    let count: f64 = counter.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("value");
    assert!(count >= 3.0, "{counter}");
    assert!(text.contains("route=\"unmatched\""), "unknown paths share one label");
    assert!(text.contains("orgstack_http_request_duration_seconds_bucket{"));
    assert!(text.contains("orgstack_db_pool_connections{state=\"idle\"}"));
    assert!(text.contains("orgstack_db_pool_max_connections"));
    assert!(text.contains("orgstack_orgs{status=\"active\"}"));
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        assert!(line.starts_with("orgstack_"), "every metric name starts with orgstack_: {line}");
    }
}
