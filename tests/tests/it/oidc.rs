//! Single sign-on against a real OpenID Connect provider (the npm package
//! `oidc-provider`, started by the harness): the code flow with PKCE, state
//! and nonce, users matched or created, and every forged or misdirected ID
//! token refused.

use reqwest::Method;
use serde_json::Value;

use crate::accounts::PW;
use orgstack_tests::TestContext;
use orgstack_tests::oidc::{self, Browser};

async fn user_count(ctx: &TestContext, email: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM public.users WHERE email = $1")
        .bind(email)
        .fetch_one(&ctx.pool)
        .await
        .expect("users")
}

async fn session_count(ctx: &TestContext) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM public.sessions")
        .fetch_one(&ctx.pool)
        .await
        .expect("sessions")
}

async fn audit_actions(ctx: &TestContext) -> Vec<String> {
    sqlx::query_scalar("SELECT action FROM public.audit_events ORDER BY id")
        .fetch_all(&ctx.pool)
        .await
        .expect("audit")
}

#[tokio::test]
async fn first_sign_in_creates_the_user_and_later_ones_find_them_by_subject() {
    let ctx = TestContext::new().await;
    let (app, _client) = oidc::spawn_app(ctx.config.clone()).await;
    let browser = Browser::new();

    let callback = browser.sign_in(&app, "grace@example.com", Some("/orgs?tab=jobs")).await;
    assert_eq!(callback.status, 303, "{:?}", callback.problem);
    let location = callback.location.as_deref().expect("location");
    assert!(location.starts_with("/orgs?tab=jobs#oidc_code="), "{location}");
    let code = callback.code().expect("code").to_owned();

    let (status, session) = oidc::exchange(&app, &code).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["token_type"], "Bearer");
    assert_eq!(session["user"]["email"], "grace@example.com");
    assert_eq!(session["user"]["name"], "grace");
    let token = session["token"].as_str().expect("token");
    let (status, me) = app.call(Method::GET, "/api/v1/me", Some(token), None).await;
    assert_eq!((status, me["user"]["email"].as_str()), (200, Some("grace@example.com")));

    // The code was for one session only.
    let (status, again) = oidc::exchange(&app, &code).await;
    assert_eq!((status, again["code"].as_str()), (401, Some("oidc_unknown_code")));

    // A user who can only sign in through the provider (no password), linked
    // by the provider's subject.
    let (password_hash, user_id): (Option<String>, uuid::Uuid) = sqlx::query_as(
        "SELECT password_hash, id FROM public.users WHERE email = 'grace@example.com'",
    )
    .fetch_one(&ctx.pool)
    .await
    .expect("user");
    assert!(password_hash.is_none());
    let links: Vec<(String, String, uuid::Uuid)> =
        sqlx::query_as("SELECT issuer, subject, user_id FROM public.user_identities")
            .fetch_all(&ctx.pool)
            .await
            .expect("identities");
    assert_eq!(
        links,
        vec![(oidc::provider().issuer.clone(), "grace@example.com".to_owned(), user_id)]
    );

    // Again, in another browser: the same user, no second link or user.
    let second = Browser::new().sign_in(&app, "grace@example.com", None).await;
    assert_eq!(second.status, 303, "{:?}", second.problem);
    assert!(second.location.as_deref().is_some_and(|l| l.starts_with("/#oidc_code=")));
    let (status, session) = oidc::exchange(&app, second.code().expect("code")).await;
    assert_eq!(status, 200);
    assert_eq!(session["user"]["id"], Value::String(user_id.to_string()));
    assert_eq!(user_count(&ctx, "grace@example.com").await, 1);
    assert_eq!(session_count(&ctx).await, 2);

    let actions = audit_actions(&ctx).await;
    assert_eq!(
        actions,
        ["user.created", "user.identity_linked", "auth.oidc_login", "auth.oidc_login"]
    );
}

#[tokio::test]
async fn an_existing_user_is_matched_by_verified_email_and_keeps_their_password() {
    let ctx = TestContext::new().await;
    let existing = ctx.user("Linus@Example.com", PW, false).await;
    let (app, _client) = oidc::spawn_app(ctx.config.clone()).await;

    let callback = Browser::new().sign_in(&app, "linus@example.com", None).await;
    assert_eq!(callback.status, 303, "{:?}", callback.problem);
    let (status, session) = oidc::exchange(&app, callback.code().expect("code")).await;
    assert_eq!(status, 200);
    assert_eq!(session["user"]["id"], Value::String(existing.id.to_string()));
    assert_eq!(user_count(&ctx, "linus@example.com").await, 1);
    // The password still works.
    app.login("linus@example.com", PW).await;
}

#[tokio::test]
async fn an_unverified_email_or_a_deactivated_user_is_refused() {
    let ctx = TestContext::new().await;
    let (app, _client) = oidc::spawn_app(ctx.config.clone()).await;

    // The provider says it has not verified this address: no user is made
    // (else anyone could claim an address at a provider that does not check).
    let callback = Browser::new().sign_in(&app, "unverified-eve@example.com", None).await;
    assert_eq!(callback.status, 403);
    assert_eq!(callback.problem["code"], "oidc_email_unverified");
    assert_eq!(user_count(&ctx, "unverified-eve@example.com").await, 0);

    let user = ctx.user("ken@example.com", PW, false).await;
    let email = orgstack::accounts::Email::parse(&user.email).expect("email");
    ctx.accounts()
        .deactivate_user(&orgstack::accounts::Actor::System, &email)
        .await
        .expect("deactivate");
    let callback = Browser::new().sign_in(&app, "ken@example.com", None).await;
    assert_eq!(callback.status, 403);
    assert_eq!(callback.problem["code"], "forbidden");
    assert_eq!(session_count(&ctx).await, 0);
}

#[tokio::test]
async fn forged_or_misdirected_id_tokens_are_refused() {
    let ctx = TestContext::new().await;
    let (app, _client) = oidc::spawn_app(ctx.config.clone()).await;
    let provider = oidc::provider();
    // Each token comes from the real token endpoint, then is changed:
    // a claim edited under the old signature; signed by the issuer's key
    // for another client; with another nonce; expired; naming another issuer.
    for (mode, why) in [
        ("tamper", "signature"),
        ("audience", "audience"),
        ("nonce", "nonce"),
        ("expired", "expired"),
        ("issuer", "issuer"),
    ] {
        let email = format!("mallory-{mode}-{}@example.com", &ctx.db_name[ctx.db_name.len() - 6..]);
        provider.set_mode(&email, mode).await;
        let callback = Browser::new().sign_in(&app, &email, None).await;
        assert_eq!(callback.status, 401, "{mode}: {:?}", callback.problem);
        assert_eq!(callback.problem["code"], "oidc_invalid_token", "{mode}");
        let detail = callback.problem["detail"].as_str().unwrap_or_default().to_lowercase();
        assert!(detail.contains(why), "{mode}: {detail}");
        assert!(callback.location.is_none());
        assert_eq!(user_count(&ctx, &email).await, 0, "{mode}: no user");
        assert_eq!(user_count(&ctx, "mallory@example.test").await, 0, "{mode}");
    }
    assert_eq!(session_count(&ctx).await, 0);
}

#[tokio::test]
async fn the_state_belongs_to_the_browser_that_started_and_is_used_once() {
    let ctx = TestContext::new().await;
    let (app, _client) = oidc::spawn_app(ctx.config.clone()).await;

    // A victim's browser is sent to a callback URL from the attacker's own
    // sign-in (login CSRF): it has no matching state cookie.
    let attacker = Browser::new();
    let callback_url = attacker.to_callback(&app, "attacker@example.com", None).await;
    let victim = Browser::new().callback(&callback_url).await;
    assert_eq!(victim.status, 400);
    assert_eq!(victim.problem["code"], "oidc_state_mismatch");
    assert_eq!(user_count(&ctx, "attacker@example.com").await, 0);

    // The one it was for still works, once: a replay with the state cookie
    // put back finds the sign-in used up.
    let done = attacker.callback(&callback_url).await;
    assert_eq!(done.status, 303, "{:?}", done.problem);
    let state = url::Url::parse(&callback_url)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("state");
    let replay = app
        .client
        .get(&callback_url)
        .header("cookie", format!("orgstack_oidc_state={state}"))
        .send()
        .await
        .expect("replay");
    assert_eq!(replay.status(), 400);
    let problem: Value = replay.json().await.expect("problem");
    assert_eq!(problem["code"], "oidc_flow_expired");

    // The provider's refusal is passed on, and `next` cannot leave the site.
    let denied = app
        .client
        .get(app.url("/api/v1/auth/oidc/callback?error=access_denied&error_description=no+thanks"))
        .send()
        .await
        .expect("denied");
    assert_eq!(denied.status(), 401);
    let problem: Value = denied.json().await.expect("problem");
    assert_eq!(problem["code"], "oidc_denied");
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("access_denied")));
    for next in ["//evil.example/", "https://evil.example/", "/\\evil.example"] {
        let (status, body) = app
            .call(
                Method::GET,
                &format!("/api/v1/auth/oidc/login?next={}", urlencode(next)),
                None,
                None,
            )
            .await;
        assert_eq!((status, body["code"].as_str()), (400, Some("invalid_next")), "{next}");
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn without_configuration_or_a_reachable_provider_the_endpoints_say_so() {
    let ctx = TestContext::new().await;
    let app = ctx.spawn_app().await;
    let (status, body) = app.call(Method::GET, "/api/v1/auth/oidc/login", None, None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("oidc_not_configured")));

    // A provider that does not answer: 502 naming it, nothing else broken.
    let mut config = ctx.config.clone();
    config.oidc = Some(orgstack::config::OidcConfig {
        issuer: "http://127.0.0.1:9".to_owned(),
        client_id: "orgstack".to_owned(),
        client_secret: None,
        redirect_url: "http://127.0.0.1:8080/api/v1/auth/oidc/callback".to_owned(),
    });
    let app = orgstack_tests::spawn_app(config).await;
    let (status, body) = app.call(Method::GET, "/api/v1/auth/oidc/login", None, None).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["code"], "oidc_provider_unavailable");
    assert_eq!(app.get("/healthz").await.status(), 200);
}
