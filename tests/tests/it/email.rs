//! Email through a real SMTP server (aiosmtpd, started per test):
//! invitations, the password-reset flow, `orgstack email test`, and the dev
//! mailbox when no SMTP server is configured.

use std::time::Duration;

use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::accounts::PW;
use crate::{eventually, run_cli, stderr, stdout};
use orgstack_tests::smtp::SmtpServer;
use orgstack_tests::{TestApp, TestContext, TestWorker};

/// Waits until `smtp` holds `count` messages; returns them.
async fn received(smtp: &SmtpServer, count: usize) -> Vec<Value> {
    let arrived =
        eventually(Duration::from_secs(30), || async { smtp.messages().len() >= count }).await;
    assert!(arrived, "expected {count} emails, got {:?}", smtp.messages());
    smtp.messages()
}

async fn app_with_smtp(ctx: &TestContext, smtp: &SmtpServer) -> TestApp {
    let mut config = ctx.config.clone();
    config.smtp_url = Some(SecretString::from(smtp.url.clone()));
    config.email_from = "Orgstack <noreply@orgstack.test>".to_owned();
    config.public_url = "https://orgstack.test".to_owned();
    orgstack_tests::spawn_app(config).await
}

/// The token at the end of `url` after `marker`.
fn token_after<'a>(text: &'a str, marker: &str) -> &'a str {
    let start = text.find(marker).unwrap_or_else(|| panic!("{marker} in {text}")) + marker.len();
    text[start..].split(|c: char| c.is_whitespace() || c == '"' || c == '<').next().unwrap_or("")
}

#[tokio::test]
async fn an_invitation_is_mailed_with_both_parts() {
    let ctx = TestContext::new().await;
    let smtp = SmtpServer::start();
    let app = app_with_smtp(&ctx, &smtp).await;
    let owner = ctx.user("owner@example.com", PW, false).await;
    let org = ctx.org("acme").await;
    ctx.accounts()
        .add_owner(&orgstack::accounts::Actor::System, &org, owner.id)
        .await
        .expect("owner");
    let token = app.login("owner@example.com", PW).await;
    let worker = TestWorker::start_all(&app.state.jobs, 2);

    let (status, invitation) = app
        .call(
            Method::POST,
            "/api/v1/orgs/acme/invitations",
            Some(&token),
            Some(json!({ "email": "New.Person@Example.com", "role": "member" })),
        )
        .await;
    assert_eq!(status, 201, "{invitation}");
    let message = &received(&smtp, 1).await[0];
    assert_eq!(message["to"], json!(["new.person@example.com"]));
    assert_eq!(message["mail_from"], "noreply@orgstack.test");
    assert_eq!(message["subject"], "owner@example.com invited you to acme");
    assert_eq!(message["multipart"], "multipart/alternative");
    let accept = format!(
        "https://orgstack.test/invitations/{}",
        invitation["token"].as_str().expect("token")
    );
    assert!(message["text"].as_str().is_some_and(|t| t.contains(&accept)), "{message}");
    assert!(
        message["html"].as_str().is_some_and(|h| h.contains(&accept) && h.contains("<a href")),
        "{message}"
    );
    worker.stop().await;

    // The token is not in any job an org member can list.
    let (_, jobs) = app.call(Method::GET, "/api/v1/orgs/acme/jobs", Some(&token), None).await;
    assert!(!jobs.to_string().contains(invitation["token"].as_str().expect("token")));
}

#[tokio::test]
async fn a_password_reset_link_works_once_and_ends_every_session() {
    let ctx = TestContext::new().await;
    let smtp = SmtpServer::start();
    let app = app_with_smtp(&ctx, &smtp).await;
    ctx.user("ada@example.com", PW, false).await;
    let old_session = app.login("ada@example.com", PW).await;
    let worker = TestWorker::start_all(&app.state.jobs, 2);

    // Unknown and known emails get the same answer.
    for email in ["nobody@example.com", "ADA@example.com"] {
        let (status, body) = app
            .call(
                Method::POST,
                "/api/v1/auth/password_reset",
                None,
                Some(json!({ "email": email })),
            )
            .await;
        assert_eq!(status, 202, "{email}");
        assert!(
            body["detail"].as_str().is_some_and(|d| d.contains("If an account uses this email"))
        );
    }
    let messages = received(&smtp, 1).await;
    let message = &messages[0];
    assert_eq!(message["to"], json!(["ada@example.com"]));
    assert_eq!(message["subject"], "Reset your Orgstack password");
    let text = message["text"].as_str().expect("text");
    let token = token_after(text, "https://orgstack.test/reset-password#token=").to_owned();
    assert!(message["html"].as_str().is_some_and(|h| h.contains(&token)));
    // Only a hash of it is stored.
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT token_hash FROM public.password_resets")
        .fetch_all(&ctx.pool)
        .await
        .expect("resets");
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], token.as_bytes());

    let path = format!("/api/v1/auth/password_reset/{token}");
    let (status, body) =
        app.call(Method::POST, &path, None, Some(json!({ "password": "short" }))).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("weak_password")), "{body}");
    let new_password = "a brand new long password";
    let (status, _) =
        app.call(Method::POST, &path, None, Some(json!({ "password": new_password }))).await;
    assert_eq!(status, 204);
    let (status, _) = app.call(Method::GET, "/api/v1/me", Some(&old_session), None).await;
    assert_eq!(status, 401, "the old session ended");
    app.login("ada@example.com", new_password).await;
    let (status, body) = app
        .call(Method::POST, &path, None, Some(json!({ "password": "yet another long password" })))
        .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_reset_token")), "used once");
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/auth/password_reset/not-a-token",
            None,
            Some(json!({ "password": new_password })),
        )
        .await;
    assert_eq!(status, 400);
    worker.stop().await;
    assert_eq!(smtp.messages().len(), 1, "nothing was sent for the unknown email");
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM public.audit_events WHERE action LIKE 'user.password_reset%' ORDER BY id",
    )
    .fetch_all(&ctx.pool)
    .await
    .expect("audit");
    assert_eq!(actions, ["user.password_reset_requested", "user.password_reset"]);
}

#[tokio::test]
async fn an_expired_reset_link_is_refused() {
    let ctx = TestContext::new().await;
    let app = ctx.spawn_app().await;
    ctx.user("ada@example.com", PW, false).await;
    let reset = ctx
        .accounts()
        .start_password_reset("ada@example.com")
        .await
        .expect("start")
        .expect("a reset");
    sqlx::query("UPDATE public.password_resets SET expires_at = now() - interval '1 second'")
        .execute(&ctx.pool)
        .await
        .expect("expire");
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/api/v1/auth/password_reset/{}", reset.token),
            None,
            Some(json!({ "password": "a brand new long password" })),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_reset_token")));
    app.login("ada@example.com", PW).await;
}

#[tokio::test]
async fn email_test_sends_through_smtp_and_names_a_bad_address() {
    let ctx = TestContext::new().await;
    let smtp = SmtpServer::start();
    let env = [("SMTP_URL", smtp.url.as_str()), ("EMAIL_FROM", "Ops <ops@orgstack.test>")];
    let out = run_cli(Some(&ctx), &["email", "test", "--to", "me@example.com"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("sent a test email to me@example.com"));
    let message = &received(&smtp, 1).await[0];
    assert_eq!(message["to"], json!(["me@example.com"]));
    assert_eq!(message["from"], "Ops <ops@orgstack.test>");
    assert_eq!(message["subject"], "Orgstack test email");
    assert!(message["text"].as_str().is_some_and(|t| t.contains("email delivery works")));

    let out = run_cli(Some(&ctx), &["email", "test", "--to", "not an address"], &env);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not an address"), "{}", stderr(&out));
    // A server that is not there: the error says so, the secret does not show.
    let env = [("SMTP_URL", "smtp://user:hunter2@127.0.0.1:9")];
    let out = run_cli(Some(&ctx), &["email", "test", "--to", "me@example.com"], &env);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("sending to me@example.com"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("hunter2"));
}

#[tokio::test]
async fn without_smtp_emails_go_to_the_log_and_the_dev_mailbox() {
    let ctx = TestContext::new().await;
    let app = ctx.spawn_app().await;
    ctx.user("ada@example.com", PW, false).await;
    let worker = TestWorker::start_all(&app.state.jobs, 2);
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/auth/password_reset",
            None,
            Some(json!({ "email": "ada@example.com" })),
        )
        .await;
    assert_eq!(status, 202);
    let arrived = eventually(Duration::from_secs(30), || async {
        let (_, mails) = app.call(Method::GET, "/dev/mail.json", None, None).await;
        mails.as_array().is_some_and(|m| m.len() == 1)
    })
    .await;
    assert!(arrived, "the reset email reached the dev mailbox");
    worker.stop().await;
    let (_, mails) = app.call(Method::GET, "/dev/mail.json", None, None).await;
    assert_eq!(mails[0]["to"], json!(["ada@example.com"]));
    assert_eq!(mails[0]["subject"], "Reset your Orgstack password");
    let page = app.get("/dev/mail").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("page");
    assert!(html.contains("Reset your Orgstack password") && html.contains("srcdoc="));
    assert!(!html.contains("<a href=\"http"), "the HTML part is escaped into the frame");

    // Not served in production.
    let mut config = ctx.config.clone();
    config.environment = orgstack::config::Environment::Production;
    let production = orgstack_tests::spawn_app(config).await;
    assert_eq!(production.get("/dev/mail").await.status(), 404);
}

#[tokio::test]
async fn server_errors_and_dead_jobs_mail_the_admins_at_most_once_an_hour() {
    let ctx = TestContext::new().await;
    let smtp = SmtpServer::start();
    let mut config = ctx.config.clone();
    config.smtp_url = Some(SecretString::from(smtp.url.clone()));
    config.admin_emails = vec!["ops@example.com".to_owned(), "oncall@example.com".to_owned()];
    let app = orgstack_tests::spawn_app(config).await;
    let owner = ctx.user("owner@example.com", PW, false).await;
    let org = ctx.org("acme").await;
    ctx.accounts()
        .add_owner(&orgstack::accounts::Actor::System, &org, owner.id)
        .await
        .expect("owner");
    let token = app.login("owner@example.com", PW).await;
    let worker = TestWorker::start_all(&app.state.jobs, 2);

    // A fault: a table the files endpoint reads is gone.
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {}", org.schema().qualify("files"))))
        .execute(&ctx.pool)
        .await
        .expect("drop");
    let mut request_ids = Vec::new();
    for _ in 0..3 {
        let response = app
            .client
            .get(app.url("/api/v1/orgs/acme/files"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 500);
        request_ids.push(response.headers()["x-request-id"].to_str().expect("id").to_owned());
    }
    let message = received(&smtp, 1).await.remove(0);
    assert_eq!(message["to"], json!(["ops@example.com", "oncall@example.com"]));
    assert_eq!(message["subject"], "[Orgstack] 500 on GET /api/v1/orgs/{org}/files");
    let text = message["text"].as_str().expect("text");
    assert!(request_ids.iter().any(|id| text.contains(id.as_str())), "{text}");
    assert!(!text.contains(&token), "no credentials in the report");

    // A job that goes dead is reported too (its own fingerprint).
    let job = app
        .state
        .jobs
        .enqueue(
            &org,
            &orgstack::accounts::Actor::System,
            orgstack::jobs::NewJob {
                max_attempts: Some(1),
                ..orgstack::jobs::NewJob::new("sleep", json!({ "ms": 1, "fail_attempts": 5 }))
            },
        )
        .await
        .expect("enqueue")
        .job;
    let messages = received(&smtp, 2).await;
    assert_eq!(messages[1]["subject"], "[Orgstack] a sleep job is dead");
    assert!(messages[1]["text"].as_str().is_some_and(|t| t.contains(&job.id.to_string())));

    // More of the same within the hour: nothing more is sent.
    for _ in 0..3 {
        let response = app
            .client
            .get(app.url("/api/v1/orgs/acme/files"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 500);
    }
    ctx.drain(&org, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    worker.stop().await;
    assert_eq!(smtp.messages().len(), 2, "{:?}", smtp.messages());
}

#[tokio::test]
async fn the_weekly_digest_goes_to_the_admins_of_orgs_that_turned_it_on() {
    let ctx = TestContext::new().await;
    let smtp = SmtpServer::start();
    let app = app_with_smtp(&ctx, &smtp).await;
    let system = orgstack::accounts::Actor::System;
    let owner = ctx.user("owner@example.com", PW, false).await;
    let acme = ctx.org("acme").await;
    ctx.accounts().add_owner(&system, &acme, owner.id).await.expect("owner");
    let token = app.login("owner@example.com", PW).await;
    for (email, role) in [("admin@example.com", "admin"), ("viewer@example.com", "viewer")] {
        ctx.user(email, PW, false).await;
        let (status, _) = app
            .call(
                Method::POST,
                "/api/v1/orgs/acme/members",
                Some(&token),
                Some(json!({ "email": email, "role": role })),
            )
            .await;
        assert_eq!(status, 201);
    }
    // Beta has an owner too, but not the flag.
    let bella = ctx.user("bella@example.com", PW, false).await;
    let beta = ctx.org("beta").await;
    ctx.accounts().add_owner(&system, &beta, bella.id).await.expect("owner");
    app.state.flags.set(&system, "weekly_digest", Some(acme.id), true).await.expect("flag");

    let worker = TestWorker::start_all(&app.state.jobs, 4);
    for fail in [0, 0, 5] {
        let job = orgstack::jobs::NewJob {
            max_attempts: Some(1),
            ..orgstack::jobs::NewJob::new("sleep", json!({ "ms": 1, "fail_attempts": fail }))
        };
        app.state.jobs.enqueue(&acme, &system, job).await.expect("enqueue");
    }
    ctx.drain(&acme, Duration::from_secs(30)).await;
    app.state
        .jobs
        .enqueue_platform(orgstack::jobs::NewJob::new("digest.fan_out", Value::Null))
        .await
        .expect("fan out");
    let messages = received(&smtp, 1).await;
    ctx.drain(&acme, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker.stop().await;
    assert_eq!(smtp.messages().len(), 1, "only acme has the digest on");
    let digest = &messages[0];
    assert_eq!(digest["to"], json!(["admin@example.com", "owner@example.com"]));
    assert_eq!(digest["subject"], "acme: your week on Orgstack");
    let text = digest["text"].as_str().expect("text");
    assert!(text.contains("Jobs run:          3 (2 succeeded, 1 failed or dead)"), "{text}");
    assert!(text.contains("Members added:     3"), "{text}");
    assert!(text.contains("https://orgstack.test/orgs/acme/jobs"), "{text}");
    assert!(
        digest["html"]
            .as_str()
            .is_some_and(|h| h.contains("href=\"https://orgstack.test/orgs/acme/files\""))
    );
}
