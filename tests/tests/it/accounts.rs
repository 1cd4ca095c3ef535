//! Accounts over HTTP: sign-in, sessions, API keys, roles and tenant
//! isolation.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tenancy::Slug;

use crate::{eventually, run_cli, stderr, stdout};
use orgstack_tests::{TestApp, TestContext};

pub(crate) const PW: &str = "correct horse battery";

#[tokio::test]
async fn login_me_and_logout() {
    let ctx = TestContext::new().await;
    ctx.user("Ada@Example.com", PW, false).await;
    let app = ctx.spawn_app().await;

    // Emails are case-insensitive.
    let token = app.login("ADA@example.COM", PW).await;
    assert!(token.starts_with("oss_"));
    let (status, me) = app.call(Method::GET, "/api/v1/me", Some(&token), None).await;
    assert_eq!(status, 200);
    assert_eq!(me["kind"], "user");
    assert_eq!(me["user"]["email"], "ada@example.com");
    assert!(me["user"].get("password_hash").is_none());

    let stored: Vec<u8> = sqlx::query_scalar("SELECT token_hash FROM public.sessions")
        .fetch_one(&ctx.pool)
        .await
        .expect("row");
    assert_ne!(stored, token.as_bytes(), "only a hash of the token is stored");

    let (status, _) = app.call(Method::POST, "/api/v1/auth/logout", Some(&token), None).await;
    assert_eq!(status, 204);
    let (status, body) = app.call(Method::GET, "/api/v1/me", Some(&token), None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    let (status, _) = app.call(Method::GET, "/api/v1/me", None, None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_the_same_answer() {
    let ctx = TestContext::new().await;
    ctx.user("ada@example.com", PW, false).await;
    let app = ctx.spawn_app().await;
    let attempt = |email: &'static str, password: &'static str| {
        let app = &app;
        async move {
            app.call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({ "email": email, "password": password })),
            )
            .await
        }
    };
    let unknown = attempt("nobody@example.com", PW).await;
    let wrong = attempt("ada@example.com", "wrong horse battery").await;
    assert_eq!(unknown.0, 401);
    assert_eq!(unknown, wrong, "the same status and body, so emails cannot be enumerated");
}

#[tokio::test]
async fn repeated_failures_are_throttled_with_retry_after() {
    let ctx = TestContext::new().await;
    ctx.user("ada@example.com", PW, false).await;
    let app = ctx.spawn_app().await;
    for _ in 0..5 {
        let (status, _) = app
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({ "email": "ada@example.com", "password": "nope nope nope" })),
            )
            .await;
        assert_eq!(status, 401);
    }
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({ "email": "ada@example.com", "password": PW }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 429, "even the right password is refused while throttled");
    let retry: u64 =
        response.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!(retry > 800 && retry <= 900, "the counter expires with the 15-minute window: {retry}");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "too_many_attempts");
}

#[tokio::test]
async fn parallel_guesses_cannot_slip_past_the_throttle() {
    let ctx = TestContext::new().await;
    ctx.user("ada@example.com", PW, false).await;
    let app = ctx.spawn_app().await;
    let body = json!({ "email": "ada@example.com", "password": "guess guess guess" });
    let attempts =
        (0..12).map(|_| app.call(Method::POST, "/api/v1/auth/login", None, Some(body.clone())));
    let statuses: Vec<u16> =
        futures::future::join_all(attempts).await.into_iter().map(|(s, _)| s).collect();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        (checked, refused),
        (5, 7),
        "only 5 guesses may reach the password check: {statuses:?}"
    );
}

#[tokio::test]
async fn parallel_correct_sign_ins_are_not_throttled() {
    let ctx = TestContext::new().await;
    ctx.user("ada@example.com", PW, false).await;
    for i in 0..8 {
        ctx.user(&format!("user{i}@example.com"), PW, false).await;
    }
    let app = ctx.spawn_app().await;
    // Several sessions for one account at once (a user on many devices),
    // and many accounts behind one address (an office NAT).
    let same = (0..8).map(|_| {
        app.call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({ "email": "ada@example.com", "password": PW })),
        )
    });
    let many = (0..8).map(|i| {
        let body = json!({ "email": format!("user{i}@example.com"), "password": PW });
        app.call(Method::POST, "/api/v1/auth/login", None, Some(body))
    });
    let statuses: Vec<u16> =
        futures::future::join_all(same.chain(many)).await.into_iter().map(|(s, _)| s).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

#[tokio::test]
async fn revocation_reaches_a_second_server_within_a_second() {
    let ctx = TestContext::new().await;
    ctx.user("ada@example.com", PW, false).await;
    let first = ctx.spawn_app().await;
    let second = ctx.spawn_app().await;
    let token = first.login("ada@example.com", PW).await;
    // The second server caches the session.
    assert_eq!(second.call(Method::GET, "/api/v1/me", Some(&token), None).await.0, 200);
    assert_eq!(second.call(Method::GET, "/api/v1/me", Some(&token), None).await.0, 200);

    assert_eq!(first.call(Method::POST, "/api/v1/auth/logout", Some(&token), None).await.0, 204);
    let seen = eventually(Duration::from_secs(1), || async {
        second.call(Method::GET, "/api/v1/me", Some(&token), None).await.0 == 401
    })
    .await;
    assert!(seen, "the second server must refuse the revoked session within one second");

    // The same for an API key revoked and a membership removed on the first.
    let org =
        ctx.registry().create("Shared", &Slug::parse("shared").expect("slug")).await.expect("org");
    let owner = ctx.user("owner@example.com", PW, false).await;
    let accounts = ctx.accounts();
    accounts.add_owner(&orgstack::accounts::Actor::System, &org, owner.id).await.expect("owner");
    let admin_token = first.login("owner@example.com", PW).await;
    let (_, key) = first
        .call(
            Method::POST,
            "/api/v1/orgs/shared/api_keys",
            Some(&admin_token),
            Some(json!({ "name": "k", "role": "viewer" })),
        )
        .await;
    let key_token = key["token"].as_str().expect("token").to_owned();
    assert_eq!(
        second.call(Method::GET, "/api/v1/orgs/shared", Some(&key_token), None).await.0,
        200
    );
    let revoke = format!("/api/v1/orgs/shared/api_keys/{}", key["id"].as_str().expect("id"));
    assert_eq!(first.call(Method::DELETE, &revoke, Some(&admin_token), None).await.0, 204);
    let seen = eventually(Duration::from_secs(1), || async {
        second.call(Method::GET, "/api/v1/orgs/shared", Some(&key_token), None).await.0 == 401
    })
    .await;
    assert!(seen, "a revoked API key is refused by the second server within one second");

    let ada = ctx.user("member@example.com", PW, false).await;
    let member_token = first.login("member@example.com", PW).await;
    let (status, _) = first
        .call(
            Method::POST,
            "/api/v1/orgs/shared/members",
            Some(&admin_token),
            Some(json!({ "email": "member@example.com", "role": "member" })),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        second.call(Method::GET, "/api/v1/orgs/shared", Some(&member_token), None).await.0,
        200
    );
    let remove = format!("/api/v1/orgs/shared/members/{}", ada.id);
    assert_eq!(first.call(Method::DELETE, &remove, Some(&admin_token), None).await.0, 204);
    let seen = eventually(Duration::from_secs(1), || async {
        second.call(Method::GET, "/api/v1/orgs/shared", Some(&member_token), None).await.0 == 404
    })
    .await;
    assert!(seen, "a removed member loses the org on the second server within one second");
}

/// An org with one user per role, a member of another org, and API keys.
pub(crate) struct World {
    pub app: TestApp,
    /// owner admin member viewer other_org no_token revoked key_owner
    /// key_admin key_member key_viewer key_other_org
    pub tokens: Vec<(&'static str, Option<String>)>,
    pub alpha_ids: Vec<String>,
    pub beta_ids: Vec<String>,
}

pub(crate) async fn world(ctx: &TestContext) -> World {
    let registry = ctx.registry();
    let accounts = ctx.accounts();
    let alpha =
        registry.create("Alpha", &Slug::parse("alpha").expect("slug")).await.expect("alpha");
    let beta = registry.create("Beta", &Slug::parse("beta").expect("slug")).await.expect("beta");
    let mut alpha_ids = vec![alpha.id.to_string()];
    let mut beta_ids = vec![beta.id.to_string()];
    for role in ["owner", "admin", "member", "viewer"] {
        for (org, ids) in [(&alpha, &mut alpha_ids), (&beta, &mut beta_ids)] {
            let email = format!("{role}@{}.example.com", org.slug);
            let user = ctx.user(&email, PW, false).await;
            sqlx::query(
                "INSERT INTO public.memberships (org_id, user_id, role) VALUES ($1, $2, $3)",
            )
            .bind(org.id.as_uuid())
            .bind(user.id)
            .bind(role)
            .execute(&ctx.pool)
            .await
            .expect("membership");
            ids.push(user.id.to_string());
        }
    }
    let app = ctx.spawn_app().await;
    let mut tokens: Vec<(&'static str, Option<String>)> = Vec::new();
    for role in ["owner", "admin", "member", "viewer"] {
        tokens.push((role, Some(app.login(&format!("{role}@alpha.example.com"), PW).await)));
    }
    tokens.push(("other_org", Some(app.login("owner@beta.example.com", PW).await)));
    tokens.push(("no_token", None));
    let revoked = app.login("viewer@alpha.example.com", PW).await;
    assert_eq!(app.call(Method::POST, "/api/v1/auth/logout", Some(&revoked), None).await.0, 204);
    tokens.push(("revoked", Some(revoked)));
    let acting = orgstack::accounts::members::Acting {
        actor: orgstack::accounts::Actor::System,
        role: orgstack::accounts::Role::Owner,
        user_id: None,
    };
    for (label, role) in [
        ("key_owner", "owner"),
        ("key_admin", "admin"),
        ("key_member", "member"),
        ("key_viewer", "viewer"),
    ] {
        let key = accounts
            .create_api_key(&acting, &alpha, label, role.parse().expect("role"), None)
            .await
            .expect("key");
        alpha_ids.push(key.key.id.to_string());
        tokens.push((label, Some(key.token)));
    }
    let beta_key = accounts
        .create_api_key(&acting, &beta, "beta_admin", orgstack::accounts::Role::Admin, None)
        .await
        .expect("key");
    beta_ids.push(beta_key.key.id.to_string());
    tokens.push(("key_other_org", Some(beta_key.token)));
    World { app, tokens, alpha_ids, beta_ids }
}

#[tokio::test]
async fn permission_matrix_for_org_endpoints() {
    let ctx = TestContext::new().await;
    let w = world(&ctx).await;
    let nobody = uuid::Uuid::now_v7();
    // (method, path, body, expected status per caller:
    //  owner admin member viewer other_org no_token revoked key_owner key_admin key_member key_viewer key_other_org)
    let cases: Vec<(Method, String, Option<Value>, [u16; 12])> = vec![
        (
            Method::GET,
            "/api/v1/orgs/alpha".into(),
            None,
            [200, 200, 200, 200, 404, 401, 401, 200, 200, 200, 200, 404],
        ),
        (
            Method::PATCH,
            "/api/v1/orgs/alpha".into(),
            Some(json!({ "name": "Alpha" })),
            [200, 200, 403, 403, 404, 401, 401, 200, 200, 403, 403, 404],
        ),
        (
            Method::DELETE,
            "/api/v1/orgs/alpha".into(),
            None,
            [0, 403, 403, 403, 404, 401, 401, 0, 403, 403, 403, 404],
        ),
        (
            Method::GET,
            "/api/v1/orgs/alpha/members".into(),
            None,
            [200, 200, 200, 200, 404, 401, 401, 200, 200, 200, 200, 404],
        ),
        (
            Method::POST,
            "/api/v1/orgs/alpha/members".into(),
            Some(json!({ "email": "ghost@example.com", "role": "member" })),
            [404, 404, 403, 403, 404, 401, 401, 404, 404, 403, 403, 404],
        ),
        (
            Method::PATCH,
            format!("/api/v1/orgs/alpha/members/{nobody}"),
            Some(json!({ "role": "viewer" })),
            [404, 404, 403, 403, 404, 401, 401, 404, 404, 403, 403, 404],
        ),
        (
            Method::DELETE,
            format!("/api/v1/orgs/alpha/members/{nobody}"),
            None,
            [404, 404, 403, 403, 404, 401, 401, 404, 404, 403, 403, 404],
        ),
        (
            Method::GET,
            "/api/v1/orgs/alpha/api_keys".into(),
            None,
            [200, 200, 403, 403, 404, 401, 401, 200, 200, 403, 403, 404],
        ),
        (
            Method::POST,
            "/api/v1/orgs/alpha/api_keys".into(),
            Some(json!({ "name": "ci", "role": "viewer" })),
            // API keys never mint API keys.
            [201, 201, 403, 403, 404, 401, 401, 403, 403, 403, 403, 404],
        ),
        (
            Method::DELETE,
            format!("/api/v1/orgs/alpha/api_keys/{nobody}"),
            None,
            [404, 404, 403, 403, 404, 401, 401, 404, 404, 403, 403, 404],
        ),
        (
            Method::GET,
            "/api/v1/orgs/alpha/audit".into(),
            None,
            [200, 200, 403, 403, 404, 401, 401, 200, 200, 403, 403, 404],
        ),
        (
            Method::GET,
            "/api/v1/orgs/alpha/flags".into(),
            None,
            [200, 200, 200, 200, 404, 401, 401, 200, 200, 200, 200, 404],
        ),
        (
            Method::PUT,
            "/api/v1/orgs/alpha/flags/webhooks".into(),
            Some(json!({ "enabled": true })),
            [204, 204, 403, 403, 404, 401, 401, 204, 204, 403, 403, 404],
        ),
        (
            Method::GET,
            "/api/v1/admin/flags".into(),
            None,
            [403, 403, 403, 403, 403, 401, 401, 403, 403, 403, 403, 403],
        ),
        (
            Method::GET,
            "/api/v1/orgs/alpha/invitations".into(),
            None,
            [200, 200, 403, 403, 404, 401, 401, 200, 200, 403, 403, 404],
        ),
        (
            Method::POST,
            "/api/v1/orgs/alpha/invitations".into(),
            Some(json!({ "email": "guest@example.com", "role": "viewer" })),
            [201, 201, 403, 403, 404, 401, 401, 201, 201, 403, 403, 404],
        ),
    ];
    for (method, path, body, expected) in &cases {
        for ((label, token), want) in w.tokens.iter().zip(expected) {
            if *want == 0 {
                continue; // destructive for that caller: covered by its own test
            }
            let (status, response) =
                w.app.call(method.clone(), path, token.as_deref(), body.clone()).await;
            assert_eq!(status, *want, "{method} {path} as {label}: {response}");
            if status == 404 && path.ends_with("/alpha") {
                assert_eq!(response["code"], "org_not_found", "non-members see the org as missing");
            }
        }
    }
}

#[tokio::test]
async fn no_request_for_one_org_returns_rows_of_another() {
    let ctx = TestContext::new().await;
    let w = world(&ctx).await;
    let paths = [
        "/api/v1/me",
        "/api/v1/orgs",
        "/api/v1/orgs/alpha",
        "/api/v1/orgs/alpha/members",
        "/api/v1/orgs/alpha/api_keys",
        "/api/v1/orgs/alpha/audit",
        "/api/v1/orgs/alpha/flags",
        "/api/v1/orgs/alpha/invitations",
        "/api/v1/orgs/beta",
        "/api/v1/orgs/beta/members",
        "/api/v1/orgs/beta/api_keys",
        "/api/v1/orgs/beta/audit",
        "/api/v1/orgs/beta/invitations",
    ];
    let mut saw_alpha = 0;
    for (label, token) in
        w.tokens.iter().filter(|(l, _)| !matches!(*l, "other_org" | "key_other_org"))
    {
        for path in paths {
            let (_, body) = w.app.call(Method::GET, path, token.as_deref(), None).await;
            let text = body.to_string();
            for id in &w.beta_ids {
                assert!(
                    !text.contains(id.as_str()),
                    "{label} GET {path} leaked {id} of beta: {text}"
                );
            }
            saw_alpha += w.alpha_ids.iter().filter(|id| text.contains(id.as_str())).count();
        }
    }
    assert!(saw_alpha > 0, "the check must see alpha's own ids, or it proves nothing");
}

#[tokio::test]
async fn an_org_always_keeps_an_owner() {
    let ctx = TestContext::new().await;
    let w = world(&ctx).await;
    let owner = w.tokens[0].1.as_deref();
    let owner_id = &w.alpha_ids[1];
    let path = format!("/api/v1/orgs/alpha/members/{owner_id}");
    let (status, body) =
        w.app.call(Method::PATCH, &path, owner, Some(json!({ "role": "admin" }))).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("last_owner")));
    let (status, body) = w.app.call(Method::DELETE, &path, owner, None).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("last_owner")));

    // An admin cannot make anyone owner; an owner can, and then may step down.
    let admin = w.tokens[1].1.as_deref();
    let admin_id = &w.alpha_ids[3];
    let admin_path = format!("/api/v1/orgs/alpha/members/{admin_id}");
    let (status, _) =
        w.app.call(Method::PATCH, &admin_path, admin, Some(json!({ "role": "owner" }))).await;
    assert_eq!(status, 403);
    let (status, body) =
        w.app.call(Method::PATCH, &admin_path, owner, Some(json!({ "role": "owner" }))).await;
    assert_eq!((status, body["role"].as_str()), (200, Some("owner")));
    let (status, body) =
        w.app.call(Method::PATCH, &path, owner, Some(json!({ "role": "admin" }))).await;
    assert_eq!((status, body["role"].as_str()), (200, Some("admin")));

    // An API key never outranks its creator.
    let (status, _) = w
        .app
        .call(
            Method::POST,
            "/api/v1/orgs/alpha/api_keys",
            admin,
            Some(json!({ "name": "x", "role": "owner" })),
        )
        .await;
    assert_eq!(status, 403);

    // Every change is in the org's audit log.
    let (_, audit) = w.app.call(Method::GET, "/api/v1/orgs/alpha/audit", owner, None).await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.iter().filter(|a| **a == "member.role_changed").count() >= 2, "{actions:?}");
    assert!(actions.contains(&"api_key.created"), "{actions:?}");
}

#[tokio::test]
async fn owner_deletes_the_org_and_keys_are_revoked() {
    let ctx = TestContext::new().await;
    let w = world(&ctx).await;
    let key_admin =
        w.tokens.iter().find(|(l, _)| *l == "key_admin").and_then(|(_, t)| t.clone()).expect("key");
    let key_id = &w.alpha_ids[w.alpha_ids.len() - 3];
    let owner = w.tokens[0].1.as_deref();
    let (status, _) = w
        .app
        .call(Method::DELETE, &format!("/api/v1/orgs/alpha/api_keys/{key_id}"), owner, None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = w.app.call(Method::GET, "/api/v1/orgs/alpha", Some(&key_admin), None).await;
    assert_eq!(status, 401, "a revoked key stops working at once");

    let (status, _) = w.app.call(Method::DELETE, "/api/v1/orgs/alpha", owner, None).await;
    assert_eq!(status, 204);
    let (status, body) = w.app.call(Method::GET, "/api/v1/orgs/alpha", owner, None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("org_not_found")));
    let (_, orgs) = w.app.call(Method::GET, "/api/v1/orgs", owner, None).await;
    assert_eq!(orgs["items"], json!([]), "a deleted org is not listed");
}

#[tokio::test]
async fn audit_log_pages_with_a_cursor() {
    let ctx = TestContext::new().await;
    let w = world(&ctx).await;
    let owner = w.tokens[0].1.as_deref();
    for i in 0..5 {
        let (status, _) = w
            .app
            .call(
                Method::PATCH,
                "/api/v1/orgs/alpha",
                owner,
                Some(json!({ "name": format!("Alpha {i}") })),
            )
            .await;
        assert_eq!(status, 200);
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/orgs/alpha/audit?limit=2".to_owned();
    loop {
        let (status, page) = w.app.call(Method::GET, &path, owner, None).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|e| e["id"].as_str().expect("id").to_owned()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/orgs/alpha/audit?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {}",
        tenancy::OrgId::from_uuid(w.alpha_ids[0].parse().expect("uuid"))
            .schema()
            .qualify("audit_events")
    )))
    .fetch_one(&ctx.pool)
    .await
    .expect("count");
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(
        (seen.len(), unique.len()),
        (total as usize, total as usize),
        "every event once, none twice"
    );
    let (status, body) =
        w.app.call(Method::GET, "/api/v1/orgs/alpha/audit?limit=500", owner, None).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_limit")));
}

#[tokio::test]
async fn cli_user_and_member_commands() {
    let ctx = TestContext::new().await;
    let env = [("ORGSTACK_PASSWORD", PW)];
    let out = run_cli(Some(&ctx), &["user", "create", "ops@example.com", "--admin"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run_cli(Some(&ctx), &["user", "create", "ops@example.com"], &env);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).trim(), "error: a user with that email already exists");
    let weak = run_cli(
        Some(&ctx),
        &["user", "create", "weak@example.com"],
        &[("ORGSTACK_PASSWORD", "password1")],
    );
    assert_eq!(weak.status.code(), Some(1));
    assert_eq!(stderr(&weak).trim(), "error: password must be at least 10 characters long");

    // org create --owner creates the user and is idempotent.
    for _ in 0..2 {
        let out =
            run_cli(Some(&ctx), &["org", "create", "Gamma", "--owner", "lead@example.com"], &env);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let counts: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM public.orgs), (SELECT count(*) FROM public.users), (SELECT count(*) FROM public.memberships WHERE role = 'owner')",
    )
    .fetch_one(&ctx.pool)
    .await
    .expect("counts");
    assert_eq!(counts, (1, 2, 1), "no duplicates after running it twice");

    assert_eq!(
        run_cli(
            Some(&ctx),
            &["member", "add", "gamma", "ops@example.com", "--role", "viewer"],
            &[]
        )
        .status
        .code(),
        Some(0)
    );
    let out = run_cli(Some(&ctx), &["member", "remove", "gamma", "lead@example.com"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).trim(), "error: an org must keep at least one owner");
    assert_eq!(
        run_cli(Some(&ctx), &["member", "set-role", "gamma", "ops@example.com", "owner"], &[])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        run_cli(Some(&ctx), &["member", "remove", "gamma", "lead@example.com"], &[]).status.code(),
        Some(0)
    );

    let out = run_cli(Some(&ctx), &["user", "create", "lead2@example.com"], &env);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        run_cli(Some(&ctx), &["user", "promote", "lead2@example.com"], &[]).status.code(),
        Some(0)
    );
    let promoted: bool = sqlx::query_scalar(
        "SELECT is_platform_admin FROM public.users WHERE email = 'lead2@example.com'",
    )
    .fetch_one(&ctx.pool)
    .await
    .expect("row");
    assert!(promoted);
    let missing = run_cli(Some(&ctx), &["user", "promote", "nobody@example.com"], &[]);
    assert_eq!((missing.status.code(), stderr(&missing).trim()), (Some(1), "error: no such user"));

    let list = run_cli(Some(&ctx), &["user", "list", "--json"], &[]);
    let users: Value = serde_json::from_slice(&list.stdout).expect("json");
    assert_eq!(users.as_array().map(Vec::len), Some(3));

    // Password change and deactivation end sessions; sign-in then fails.
    let app = ctx.spawn_app().await;
    let token = app.login("ops@example.com", PW).await;
    let out = run_cli(
        Some(&ctx),
        &["user", "set-password", "ops@example.com"],
        &[("ORGSTACK_PASSWORD", "a brand new passphrase")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("their sessions were ended"));
    let gone = eventually(Duration::from_secs(1), || async {
        app.call(Method::GET, "/api/v1/me", Some(&token), None).await.0 == 401
    })
    .await;
    assert!(gone);
    app.login("ops@example.com", "a brand new passphrase").await;
    assert_eq!(
        run_cli(Some(&ctx), &["user", "deactivate", "ops@example.com"], &[]).status.code(),
        Some(0)
    );
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({ "email": "ops@example.com", "password": "a brand new passphrase" })),
        )
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn platform_admins_create_orgs_and_default_admin_is_created_once() {
    let ctx = TestContext::new().await;
    let app = ctx.spawn_app().await;
    let state = &app.state;
    let created = orgstack::app::ensure_default_admin(state).await.expect("default admin");
    assert_eq!(created.as_deref(), Some(orgstack::config::DEV_ADMIN_EMAIL));
    assert_eq!(orgstack::app::ensure_default_admin(state).await.expect("again"), None);

    let admin =
        app.login(orgstack::config::DEV_ADMIN_EMAIL, orgstack::config::DEV_ADMIN_PASSWORD).await;
    let (status, org) = app
        .call(Method::POST, "/api/v1/orgs", Some(&admin), Some(json!({ "name": "Delta Labs" })))
        .await;
    assert_eq!(status, 201, "{org}");
    assert_eq!((org["slug"].as_str(), org["role"].as_str()), (Some("delta-labs"), Some("owner")));
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/orgs",
            Some(&admin),
            Some(json!({ "name": "Dup", "slug": "delta-labs" })),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("slug_taken")));
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/orgs",
            Some(&admin),
            Some(json!({ "name": "Bad", "slug": "Bad Slug" })),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_slug")));

    ctx.user("plain@example.com", PW, false).await;
    let plain = app.login("plain@example.com", PW).await;
    let (status, _) =
        app.call(Method::POST, "/api/v1/orgs", Some(&plain), Some(json!({ "name": "Mine" }))).await;
    assert_eq!(status, 403);
    let (status, body) =
        app.call(Method::POST, "/api/v1/orgs", Some(&admin), Some(json!({ "nme": 1 }))).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_body")));
}
