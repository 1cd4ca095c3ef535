//! Feature flags: default < global < org, refused unknown names, admin-only
//! changes, and changes made by another process seen by the server.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tenancy::Slug;

use crate::{eventually, run_cli, stderr, stdout};
use orgstack_tests::TestContext;

const PW: &str = "correct horse battery";

fn flag<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["items"]
        .as_array()
        .and_then(|items| items.iter().find(|f| f["name"] == name))
        .expect("flag listed")
}

#[tokio::test]
async fn effective_value_is_org_then_global_then_default() {
    let ctx = TestContext::new().await;
    let registry = ctx.registry();
    let org =
        registry.create("Flagged", &Slug::parse("flagged").expect("slug")).await.expect("org");
    registry.create("Other", &Slug::parse("other").expect("slug")).await.expect("org");
    let member = ctx.user("member@example.com", PW, false).await;
    sqlx::query("INSERT INTO public.memberships (org_id, user_id, role) VALUES ($1, $2, 'viewer')")
        .bind(org.id.as_uuid())
        .bind(member.id)
        .execute(&ctx.pool)
        .await
        .expect("membership");
    ctx.user("root@example.com", PW, true).await;
    let app = ctx.spawn_app().await;
    let viewer = app.login("member@example.com", PW).await;
    let admin = app.login("root@example.com", PW).await;
    let flags = |token: String| {
        let app = &app;
        async move { app.call(Method::GET, "/api/v1/orgs/flagged/flags", Some(&token), None).await }
    };

    let (status, list) = flags(viewer.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(flag(&list, "webhooks")["enabled"], false);
    assert_eq!(flag(&list, "webhooks")["source"], "default");

    let put = |body: Value| {
        let (app, admin) = (&app, admin.clone());
        async move {
            app.call(Method::PUT, "/api/v1/admin/flags/webhooks", Some(&admin), Some(body)).await.0
        }
    };
    assert_eq!(put(json!({ "enabled": true })).await, 204);
    let (_, list) = flags(viewer.clone()).await;
    assert_eq!(
        (flag(&list, "webhooks")["enabled"].clone(), flag(&list, "webhooks")["source"].clone()),
        (json!(true), json!("global"))
    );

    assert_eq!(put(json!({ "enabled": false, "org": "flagged" })).await, 204);
    let (_, list) = flags(viewer.clone()).await;
    assert_eq!(
        (flag(&list, "webhooks")["enabled"].clone(), flag(&list, "webhooks")["source"].clone()),
        (json!(false), json!("org"))
    );
    // The override is for that org only.
    assert!(
        app.state
            .flags
            .enabled(
                "webhooks",
                registry.get(&Slug::parse("other").expect("slug")).await.expect("o").id
            )
            .await
            .expect("flag")
    );

    let (status, _) = app
        .call(Method::DELETE, "/api/v1/admin/flags/webhooks?org=flagged", Some(&admin), None)
        .await;
    assert_eq!(status, 204);
    let (_, list) = flags(viewer.clone()).await;
    assert_eq!(flag(&list, "webhooks")["source"], "global");

    let (status, overview) = app.call(Method::GET, "/api/v1/admin/flags", Some(&admin), None).await;
    assert_eq!(status, 200);
    assert_eq!(flag(&overview, "webhooks")["global"], true);

    // Refused: unknown flags, non-admins, unknown orgs.
    let (status, body) = app
        .call(
            Method::PUT,
            "/api/v1/admin/flags/no_such_flag",
            Some(&admin),
            Some(json!({ "enabled": true })),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("flag_not_found")));
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains("known flags: file_uploads")),
        "{body}"
    );
    let (status, _) = app
        .call(
            Method::PUT,
            "/api/v1/admin/flags/webhooks",
            Some(&viewer),
            Some(json!({ "enabled": true })),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(put(json!({ "enabled": true, "org": "nowhere" })).await, 404);
    let (status, _) = app.call(Method::GET, "/api/v1/orgs/other/flags", Some(&viewer), None).await;
    assert_eq!(status, 404, "not a member of 'other'");
}

#[tokio::test]
async fn cli_flag_commands_reach_a_running_server() {
    let ctx = TestContext::new().await;
    let registry = ctx.registry();
    let org =
        registry.create("Flagged", &Slug::parse("flagged").expect("slug")).await.expect("org");
    let app = ctx.spawn_app().await;
    assert!(!app.state.flags.enabled("weekly_digest", org.id).await.expect("flag"));

    let out = run_cli(Some(&ctx), &["flags", "enable", "weekly_digest", "--org", "flagged"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "weekly_digest enabled for 'flagged'");
    let seen = eventually(Duration::from_secs(1), || async {
        app.state.flags.enabled("weekly_digest", org.id).await.unwrap_or(false)
    })
    .await;
    assert!(seen, "a change made by another process is seen within a second");

    let out = run_cli(Some(&ctx), &["flags", "enable", "nope"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: unknown flag 'nope'; known flags:"),
        "{}",
        stderr(&out)
    );

    assert_eq!(run_cli(Some(&ctx), &["flags", "enable-all-global"], &[]).status.code(), Some(0));
    let out = run_cli(Some(&ctx), &["flags", "disable", "webhooks"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let list = run_cli(Some(&ctx), &["flags", "list", "--org", "flagged", "--json"], &[]);
    let effective: Value = serde_json::from_slice(&list.stdout).expect("json");
    let get = |name: &str| {
        effective
            .as_array()
            .and_then(|a| a.iter().find(|f| f["name"] == name))
            .cloned()
            .expect("flag")
    };
    assert_eq!(
        (get("webhooks")["enabled"].clone(), get("webhooks")["source"].clone()),
        (json!(false), json!("global"))
    );
    assert_eq!(
        (get("weekly_digest")["enabled"].clone(), get("weekly_digest")["source"].clone()),
        (json!(true), json!("org"))
    );
    assert_eq!(get("file_uploads")["source"], "global");

    let audit: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM public.audit_events WHERE action = 'flag.changed'",
    )
    .fetch_one(&ctx.pool)
    .await
    .expect("audit");
    assert!(audit >= 6, "every flag change is audited ({audit})");
}
