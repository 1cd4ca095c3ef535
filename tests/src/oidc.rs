//! A real OpenID Connect provider for sign-in tests and the benchmark: the
//! npm package `oidc-provider`, run by `tests/oidc/provider.js` with the
//! machine's Node.js, once per test process (its packages are installed
//! with `npm ci` the first time). It stops when this process exits (it
//! watches its stdin).
//!
//! [`Browser`] walks the sign-in as a person's browser would: our
//! `/api/v1/auth/oidc/login`, the provider's authorize endpoint and sign-in
//! form, back to our callback, keeping each site's cookies.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use orgstack::config::{Config, OidcConfig};

use crate::TestApp;

/// The provider this process shares.
#[derive(Debug)]
pub struct Provider {
    /// `http://127.0.0.1:PORT`, as its discovery document names it.
    pub issuer: String,
    _child: Mutex<Child>,
}

/// A client registered with the provider for one app.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub secret: String,
}

fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// Starts the provider once per process.
pub fn provider() -> &'static Provider {
    static PROVIDER: OnceLock<Provider> = OnceLock::new();
    PROVIDER.get_or_init(|| start().unwrap_or_else(|err| panic!("OIDC test provider: {err:#}")))
}

fn start() -> anyhow::Result<Provider> {
    use anyhow::Context;
    let dir = provider_dir();
    if !dir.join("node_modules/oidc-provider/package.json").is_file() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .context("running npm ci in tests/oidc (install Node.js and npm)")?;
        anyhow::ensure!(status.success(), "npm ci in tests/oidc failed: {status}");
    }
    // Its complaints go to a file beside the test's other scratch files.
    let log =
        std::env::temp_dir().join(format!("orgstack-oidc-provider-{}.log", std::process::id()));
    let mut child = Command::new("node")
        .arg("provider.js")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).context("provider log file")?)
        .spawn()
        .context("starting node tests/oidc/provider.js (install Node.js)")?;
    let stdout = child.stdout.take().context("provider stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line).context("reading provider output")?;
    let issuer = line
        .trim()
        .strip_prefix("listening ")
        .with_context(|| format!("provider said {line:?}"))?
        .to_owned();
    Ok(Provider { issuer, _child: Mutex::new(child) })
}

impl Provider {
    /// Registers a client whose callback is `redirect_url`.
    pub async fn register(&self, redirect_url: &str) -> Client {
        let response = reqwest::Client::new()
            .post(format!("{}/reg", self.issuer))
            .json(&serde_json::json!({
                "redirect_uris": [redirect_url],
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "client_secret_basic",
            }))
            .send()
            .await
            .expect("client registration");
        assert_eq!(response.status(), 201, "registering a client");
        let body: serde_json::Value = response.json().await.expect("registration body");
        Client {
            id: body["client_id"].as_str().expect("client_id").to_owned(),
            secret: body["client_secret"].as_str().expect("client_secret").to_owned(),
        }
    }

    /// Makes the provider misbehave for `account` (see provider.js):
    /// `tamper`, `audience`, `nonce`, `expired`, `issuer` or `none`.
    pub async fn set_mode(&self, account: &str, mode: &str) {
        let response = reqwest::Client::new()
            .post(format!("{}/test/mode", self.issuer))
            .json(&serde_json::json!({ "account": account, "mode": mode }))
            .send()
            .await
            .expect("provider mode");
        assert_eq!(response.status(), 204);
    }
}

/// Serves the app for `config` with single sign-on through the test
/// provider (a client registered for this app's callback).
pub async fn spawn_app(mut config: Config) -> (TestApp, Client) {
    let provider = provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind api");
    let addr = listener.local_addr().expect("api addr");
    let redirect_url = format!("http://{addr}/api/v1/auth/oidc/callback");
    let client = provider.register(&redirect_url).await;
    config.oidc = Some(OidcConfig {
        issuer: provider.issuer.clone(),
        client_id: client.id.clone(),
        client_secret: Some(client.secret.clone().into()),
        redirect_url,
    });
    (crate::spawn_app_on(config, listener).await, client)
}

/// Where a sign-in ended: our callback's answer.
#[derive(Debug)]
pub struct Callback {
    pub status: u16,
    /// The redirect's `Location` (on success: `next#oidc_code=...`).
    pub location: Option<String>,
    /// The problem document when it failed.
    pub problem: serde_json::Value,
    /// The callback URL the provider sent the browser to.
    pub callback_url: String,
}

impl Callback {
    /// The sign-in code in the redirect's fragment.
    pub fn code(&self) -> Option<&str> {
        self.location.as_deref()?.split_once("#oidc_code=").map(|(_, code)| code)
    }
}

/// A browser: keeps cookies, follows no redirect by itself.
#[derive(Debug)]
pub struct Browser {
    pub http: reqwest::Client,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("browser client");
        Browser { http }
    }

    /// Starts a sign-in at `app`: where our login sends the browser.
    pub async fn start(&self, app: &TestApp, next: Option<&str>) -> url::Url {
        let mut start = url::Url::parse(&app.url("/api/v1/auth/oidc/login")).expect("login url");
        if let Some(next) = next {
            start.query_pairs_mut().append_pair("next", next);
        }
        let response = self.http.get(start).send().await.expect("oidc login");
        assert_eq!(response.status(), 303, "our login redirects to the provider");
        redirect_target(&response)
    }

    /// Follows a started sign-in through the provider as `email`, up to
    /// (not including) our callback: the callback URL.
    pub async fn through_provider(
        &self,
        app: &TestApp,
        mut location: url::Url,
        email: &str,
    ) -> String {
        let callback_prefix = app.url("/api/v1/auth/oidc/callback");
        for _ in 0..10 {
            if location.as_str().starts_with(&callback_prefix) {
                return location.to_string();
            }
            let response = if location.path().starts_with("/interaction/") {
                // The provider's sign-in form: read it, then submit the email.
                let form = self.http.get(location.clone()).send().await.expect("sign-in form");
                assert_eq!(form.status(), 200, "the provider shows its sign-in form");
                let login = location.join(&format!("{}/login", location.path())).expect("form url");
                self.http.post(login).form(&[("email", email)]).send().await.expect("sign in")
            } else {
                self.http.get(location.clone()).send().await.expect("provider step")
            };
            assert!(
                response.status().is_redirection(),
                "provider step {location} answered {}",
                response.status()
            );
            location = redirect_target(&response);
        }
        panic!("the provider never sent the browser back to our callback");
    }

    /// [`Browser::start`] then [`Browser::through_provider`].
    pub async fn to_callback(&self, app: &TestApp, email: &str, next: Option<&str>) -> String {
        let authorize = self.start(app, next).await;
        self.through_provider(app, authorize, email).await
    }

    /// The whole sign-in as `email`: our callback's answer.
    pub async fn sign_in(&self, app: &TestApp, email: &str, next: Option<&str>) -> Callback {
        let callback_url = self.to_callback(app, email, next).await;
        self.callback(&callback_url).await
    }

    /// Opens our callback URL in this browser.
    pub async fn callback(&self, callback_url: &str) -> Callback {
        let response = self.http.get(callback_url).send().await.expect("callback");
        let status = response.status().as_u16();
        let location =
            response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = response.bytes().await.expect("callback body");
        let problem = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Callback { status, location, problem, callback_url: callback_url.to_owned() }
    }
}

fn redirect_target(response: &reqwest::Response) -> url::Url {
    let location =
        response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_else(|| {
            panic!("{} answered {} without Location", response.url(), response.status())
        });
    response.url().join(location).expect("redirect target")
}

/// Trades a sign-in code for a session: `(status, body)`.
pub async fn exchange(app: &TestApp, code: &str) -> (u16, serde_json::Value) {
    app.call(
        reqwest::Method::POST,
        "/api/v1/auth/oidc/exchange",
        None,
        Some(serde_json::json!({ "code": code })),
    )
    .await
}
