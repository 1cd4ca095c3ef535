//! Invitations, sign-up with a code, and trusted-header sign-in.

use reqwest::Method;
use serde_json::json;
use tenancy::Slug;

use orgstack_tests::{TestContext, config_with, spawn_app};

const PW: &str = "correct horse battery";

#[tokio::test]
async fn invitations_are_single_use_and_expire() {
    let ctx = TestContext::new().await;
    let org =
        ctx.registry().create("Team", &Slug::parse("team").expect("slug")).await.expect("org");
    let owner = ctx.user("owner@example.com", PW, false).await;
    ctx.accounts()
        .add_owner(&orgstack::accounts::Actor::System, &org, owner.id)
        .await
        .expect("owner");
    let app = ctx.spawn_app().await;
    let token = app.login("owner@example.com", PW).await;

    let (status, invitation) = app
        .call(
            Method::POST,
            "/api/v1/orgs/team/invitations",
            Some(&token),
            Some(json!({ "email": "New@Example.com", "role": "member" })),
        )
        .await;
    assert_eq!(status, 201, "{invitation}");
    assert_eq!(invitation["email"], "new@example.com");
    let accept_token = invitation["token"].as_str().expect("token").to_owned();
    let accept = format!("/api/v1/invitations/{accept_token}/accept");

    // Without an account and without a password: told how to accept.
    assert_eq!(app.call(Method::POST, &accept, None, None).await.0, 401);
    // Someone else, signed in, cannot take it.
    ctx.user("other@example.com", PW, false).await;
    let other = app.login("other@example.com", PW).await;
    let (status, body) = app.call(Method::POST, &accept, Some(&other), None).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));

    // The invitee creates the account by accepting, and is a member.
    let (status, accepted) = app
        .call(Method::POST, &accept, None, Some(json!({ "password": "new member passphrase" })))
        .await;
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["role"], "member");
    let session = accepted["token"].as_str().expect("session").to_owned();
    let (status, org_view) = app.call(Method::GET, "/api/v1/orgs/team", Some(&session), None).await;
    assert_eq!((status, org_view["role"].as_str()), (200, Some("member")));

    // Single use.
    let (status, body) = app.call(Method::POST, &accept, Some(&session), None).await;
    assert_eq!((status, body["code"].as_str()), (410, Some("invitation_used")));

    // Expired.
    let (_, second) = app
        .call(
            Method::POST,
            "/api/v1/orgs/team/invitations",
            Some(&token),
            Some(json!({ "email": "late@example.com", "role": "viewer" })),
        )
        .await;
    sqlx::query("UPDATE public.invitations SET expires_at = now() - interval '1 minute' WHERE email = 'late@example.com'")
        .execute(&ctx.pool)
        .await
        .expect("expire");
    let late = format!("/api/v1/invitations/{}/accept", second["token"].as_str().expect("token"));
    let (status, body) = app
        .call(Method::POST, &late, None, Some(json!({ "password": "late comer passphrase" })))
        .await;
    assert_eq!((status, body["code"].as_str()), (410, Some("invitation_expired")));
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/invitations/osi_nothing/accept",
            None,
            Some(json!({ "password": PW })),
        )
        .await;
    assert_eq!(status, 404);

    // Members cannot invite; the list shows who accepted.
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/orgs/team/invitations",
            Some(&session),
            Some(json!({ "email": "x@example.com", "role": "viewer" })),
        )
        .await;
    assert_eq!(status, 403);
    let (_, list) =
        app.call(Method::GET, "/api/v1/orgs/team/invitations", Some(&token), None).await;
    let accepted_count = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| !i["accepted_at"].is_null())
        .count();
    assert_eq!(accepted_count, 1);
    assert!(list.to_string().find("\"token\"").is_none(), "tokens are never listed");
}

#[tokio::test]
async fn signup_needs_the_code_when_on_and_is_closed_when_off() {
    let ctx = TestContext::new().await;
    let closed = ctx.spawn_app().await;
    let body = json!({ "email": "a@example.com", "password": PW, "code": "anything" });
    let (status, response) = closed.call(Method::POST, "/api/v1/signup", None, Some(body)).await;
    assert_eq!((status, response["code"].as_str()), (403, Some("signup_disabled")));

    let config = config_with(&[
        ("DATABASE_URL", &ctx.database_url),
        ("REDIS_URL", &ctx.redis_url),
        ("REDIS_KEY_PREFIX", ctx.keys.prefix()),
        ("SIGNUP_CODE", "open-sesame-2026"),
    ]);
    let open = spawn_app(config).await;
    let wrong = json!({ "email": "a@example.com", "password": PW, "code": "open-sesame-2025" });
    let (status, response) = open.call(Method::POST, "/api/v1/signup", None, Some(wrong)).await;
    assert_eq!((status, response["code"].as_str()), (403, Some("invalid_signup_code")));
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM public.users")
        .fetch_one(&ctx.pool)
        .await
        .expect("count");
    assert_eq!(users, 0);

    let right = json!({ "email": "a@example.com", "password": PW, "code": "open-sesame-2026", "org": { "name": "A Team" } });
    let (status, response) = open.call(Method::POST, "/api/v1/signup", None, Some(right)).await;
    assert_eq!(status, 201, "{response}");
    assert_eq!(
        (response["org"]["slug"].as_str(), response["org"]["role"].as_str()),
        (Some("a-team"), Some("owner"))
    );
    let token = response["token"].as_str().expect("token");
    let (status, _) = open.call(Method::GET, "/api/v1/orgs/a-team", Some(token), None).await;
    assert_eq!(status, 200);
    // With sign-up on, any signed-in user may create orgs.
    let (status, _) = open
        .call(Method::POST, "/api/v1/orgs", Some(token), Some(json!({ "name": "Second" })))
        .await;
    assert_eq!(status, 201);
    let again = json!({ "email": "A@example.com", "password": PW, "code": "open-sesame-2026" });
    assert_eq!(open.call(Method::POST, "/api/v1/signup", None, Some(again)).await.0, 409);
}

#[tokio::test]
async fn trusted_header_signs_in_only_from_trusted_proxies() {
    let ctx = TestContext::new().await;
    let base = [
        ("DATABASE_URL", ctx.database_url.as_str()),
        ("REDIS_URL", ctx.redis_url.as_str()),
        ("REDIS_KEY_PREFIX", ctx.keys.prefix()),
        ("SECRET_KEY", "3c1f0e6e2b9a4d7c8f5e1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d"),
        ("AUTH_TRUSTED_HEADER", "X-NetID"),
    ];
    let mut trusted = base.to_vec();
    trusted.push(("TRUSTED_PROXIES", "127.0.0.1/32"));
    let app = spawn_app(config_with(&trusted)).await;
    let me = |app: &orgstack_tests::TestApp| {
        app.client.get(app.url("/api/v1/me")).header("X-NetID", "ab123").send()
    };
    let response = me(&app).await.expect("request");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    let user_id = body["user"]["id"].as_str().expect("id").to_owned();
    // Seen again, past the cache (the insert meets the existing row): the
    // same user, not a new one.
    app.state.accounts.evict_all();
    let again: serde_json::Value = me(&app).await.expect("request").json().await.expect("json");
    assert_eq!(again["user"]["id"], user_id.as_str());

    // The external id is never stored in clear.
    let leaks: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM public.users WHERE email LIKE '%ab123%' OR name LIKE '%ab123%') \
         + (SELECT count(*) FROM public.audit_events WHERE details::text LIKE '%ab123%' OR coalesce(target, '') LIKE '%ab123%')",
    )
    .fetch_one(&ctx.pool)
    .await
    .expect("count");
    assert_eq!(leaks, 0);
    let hmac: Vec<u8> = sqlx::query_scalar("SELECT external_id_hmac FROM public.users")
        .fetch_one(&ctx.pool)
        .await
        .expect("hmac");
    assert_eq!(hmac.len(), 32);

    // From an address that is not a trusted proxy, the header is ignored.
    let mut untrusted = base.to_vec();
    untrusted.push(("TRUSTED_PROXIES", "10.0.0.0/8"));
    let other = spawn_app(config_with(&untrusted)).await;
    assert_eq!(me(&other).await.expect("request").status(), 401);
}
