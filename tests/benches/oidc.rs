//! OpenID Connect sign-in round trip against the local provider (the npm
//! `oidc-provider` the tests use): from `GET /api/v1/auth/oidc/login` to a
//! session token, one browser after another, for a returning user and for
//! first sign-ins (the user is created), beside `GET /healthz` as the
//! baseline.
//!
//! Run: `cargo bench -p orgstack-tests --bench oidc` (add `-- --sign-ins N`,
//! default 200). Uses `DATABASE_URL`/`REDIS_URL` when set, otherwise starts
//! private servers, like the tests.

use std::time::{Duration, Instant};

use orgstack_tests::TestContext;
use orgstack_tests::oidc::{self, Browser};
use orgstack_tests::scale::summary;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(name: &str, values: &mut [f64]) {
    let (median, p99, max) = summary(values);
    println!("{name:<44} median {median:>7.2} ms   p99 {p99:>7.2} ms   max {max:>7.2} ms");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .iter()
        .position(|a| a == "--sign-ins")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let ctx = TestContext::new().await;
    let (app, _client) = oidc::spawn_app(ctx.config.clone()).await;

    for (label, new_users) in [("returning user", false), ("first sign-in (user created)", true)] {
        let mut total = Vec::with_capacity(n);
        let mut provider_part = Vec::with_capacity(n);
        let mut ours = Vec::with_capacity(n);
        // Warm-up: discovery, keys, connections.
        for i in 0..5 {
            sign_in(&app, &format!("warm-{i}@example.com")).await?;
        }
        for i in 0..n {
            let email = if new_users {
                format!("new-{i}@example.com")
            } else {
                "returning@example.com".to_owned()
            };
            let (t_total, t_provider) = sign_in(&app, &email).await?;
            total.push(ms(t_total));
            provider_part.push(ms(t_provider));
            ours.push(ms(t_total - t_provider));
        }
        println!("-- {label}, {n} sign-ins");
        report("round trip (login redirect .. session)", &mut total);
        report("  at the provider (authorize, form, code)", &mut provider_part);
        report("  ours (login, callback + code exchange, exchange)", &mut ours);
    }

    let mut health = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let status = app.get("/healthz").await.status();
        anyhow::ensure!(status == 200, "healthz answered {status}");
        health.push(ms(start.elapsed()));
    }
    println!("-- baseline");
    report("GET /healthz", &mut health);
    Ok(())
}

/// One sign-in in a new browser: (whole round trip, the provider's part).
async fn sign_in(
    app: &orgstack_tests::TestApp,
    email: &str,
) -> anyhow::Result<(Duration, Duration)> {
    let browser = Browser::new();
    let start = Instant::now();
    let authorize = browser.start(app, None).await;
    let at_provider = Instant::now();
    let callback_url = browser.through_provider(app, authorize, email).await;
    let back = Instant::now();
    let callback = browser.callback(&callback_url).await;
    let code = callback
        .code()
        .ok_or_else(|| anyhow::anyhow!("sign-in failed: {} {}", callback.status, callback.problem))?
        .to_owned();
    let (status, body) = oidc::exchange(app, &code).await;
    anyhow::ensure!(status == 200 && body["token"].is_string(), "exchange answered {status}");
    Ok((start.elapsed(), back - at_provider))
}
