//! The OpenAPI document: served, committed, current, and describing routes
//! that exist.

use serde_json::Value;

use orgstack_tests::TestContext;

#[test]
fn committed_openapi_json_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    let committed = std::fs::read_to_string(path).expect("docs/openapi.json exists");
    let current = format!("{}\n", orgstack::http::openapi_json());
    assert!(
        committed == current,
        "docs/openapi.json is stale: run `cargo run -- openapi > docs/openapi.json` and commit it"
    );
}

#[tokio::test]
async fn the_document_and_the_docs_page_are_served_offline() {
    let ctx = TestContext::new().await;
    let app = ctx.spawn_app().await;
    let response = app.get("/api/openapi.json").await;
    assert_eq!(response.status(), 200);
    let served: Value = response.json().await.expect("json");
    let expected: Value = serde_json::from_str(&orgstack::http::openapi_json()).expect("json");
    assert_eq!(served, expected);
    assert_eq!(served["openapi"], "3.1.0");

    let page = app.get("/api/docs/").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("swagger-ui"), "{html}");
    // Its scripts and styles come from this server, not a CDN.
    for asset in [
        "/api/docs/swagger-ui.css",
        "/api/docs/swagger-ui-bundle.js",
        "/api/docs/swagger-initializer.js",
    ] {
        assert_eq!(app.get(asset).await.status(), 200, "{asset}");
    }
    assert!(!html.contains("https://"), "no asset is fetched from the internet");
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let ctx = TestContext::new().await;
    let app = ctx.spawn_app().await;
    let doc: Value = serde_json::from_str(&orgstack::http::openapi_json()).expect("json");
    let mut checked = 0;
    for (path, operations) in doc["paths"].as_object().expect("paths") {
        let concrete = path
            .replace("{org}", "some-org")
            .replace("{user_id}", "01930000-0000-7000-8000-000000000000")
            .replace("{key_id}", "01930000-0000-7000-8000-000000000000")
            .replace("{token}", "osi_x")
            .replace("{name}", "webhooks");
        for method in operations.as_object().expect("operations").keys() {
            let method: reqwest::Method = method.to_uppercase().parse().expect("method");
            let response = app
                .client
                .request(method.clone(), app.url(&concrete))
                .send()
                .await
                .expect("request");
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_ne!(status, 405, "{method} {path} is documented but not routed");
            assert_ne!(body["code"], "not_found", "{method} {path} is documented but not routed");
            // Each answer that is documented as needing a token says so.
            if operations[method.as_str().to_lowercase()]["security"].is_array() {
                assert_eq!(status, 401, "{method} {path} without a token: {body}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 26, "{checked}");
}
