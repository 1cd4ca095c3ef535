//! Building the shared state from configuration.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fred::prelude::ClientLike;
use tenancy::{Lineage, OrgRegistry, RedisKeys};

use crate::config::Config;
use crate::http::AppState;

/// Connects to PostgreSQL and Redis and builds the state every entry point
/// shares. Neither server has to be up yet: the pool connects lazily and
/// Redis reconnects on its own, so `serve` can start and report on `/readyz`.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    let db = tenancy::db::connect_lazy(config.require_database_url()?, &config.pool_settings())
        .context("invalid DATABASE_URL")?;
    let redis = crate::redis::client(config.require_redis_url()?).context("invalid REDIS_URL")?;
    let _connection = redis.connect();
    match tokio::time::timeout(Duration::from_secs(3), redis.wait_for_connect()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "cannot reach Redis yet; retrying, /readyz reports it until it answers")
        }
        Err(_) => tracing::warn!(
            "Redis is not answering yet; retrying, /readyz reports it until it answers"
        ),
    }
    let orgs = OrgRegistry::new(
        db.clone(),
        redis.clone(),
        RedisKeys::new(&config.redis_key_prefix),
        Lineage::org(),
    );
    let accounts = crate::accounts::auth::Accounts::new(
        db.clone(),
        redis.clone(),
        RedisKeys::new(&config.redis_key_prefix),
        config.session_ttl,
    );
    let flags = crate::flags::Flags::new(
        db.clone(),
        redis.clone(),
        RedisKeys::new(&config.redis_key_prefix),
    );
    let storage = crate::storage::Storage::from_config(&config.storage_or_default())
        .context("file storage (STORAGE_URL / STORAGE_DIR)")?;
    let mailer = crate::email::Mailer::from_config(
        &config,
        redis.clone(),
        RedisKeys::new(&config.redis_key_prefix),
    )
    .context("email (SMTP_URL / EMAIL_FROM)")?;
    let jobs = crate::jobs::Jobs::new(
        db.clone(),
        redis.clone(),
        RedisKeys::new(&config.redis_key_prefix),
        orgs.clone(),
        crate::jobs::Registry::standard(&crate::jobs::handler::HandlerDeps {
            storage: storage.clone(),
            mailer: mailer.clone(),
            recipients: config.notify_recipients(),
            webhook_allow_private: config.webhook_allow_private,
        }),
        config.jobs_config(),
    );
    let webhooks = crate::webhooks::Webhooks::new(jobs.clone(), config.webhook_allow_private);
    let files = crate::files::Files::new(
        jobs.clone(),
        storage,
        crate::files::UploadRules {
            max_bytes: config.max_upload_bytes,
            allowed_types: config.upload_content_types.clone(),
        },
    );
    let hub = crate::jobs::events::Hub::new(redis.clone());
    let oidc = config
        .oidc
        .clone()
        .map(|oidc| {
            crate::oidc::Oidc::new(oidc, redis.clone(), RedisKeys::new(&config.redis_key_prefix))
        })
        .transpose()
        .context("OpenID Connect client")?;
    Ok(AppState {
        config: Arc::new(config),
        db,
        redis,
        orgs,
        accounts,
        flags,
        jobs,
        job_pages: crate::http::JobPages::default(),
        files,
        webhooks,
        mailer,
        hub,
        oidc,
    })
}

/// Connects and waits for both servers (for CLI commands that need them now).
pub async fn connect_now(config: Config) -> anyhow::Result<AppState> {
    let url = config.require_database_url()?.to_owned();
    let state = build_state(config).await?;
    sqlx::query("SELECT 1")
        .execute(&state.db)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", redact_url(&url)))?;
    Ok(state)
}

/// A URL with its password replaced, for messages.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        Err(_) => "<invalid url>".into(),
    }
}

/// Creates the default platform admin from `DEFAULT_ADMIN_EMAIL` /
/// `DEFAULT_ADMIN_PASSWORD` when none exists (as Unstract does); logs what
/// it did. Needs the public lineage applied.
pub async fn ensure_default_admin(state: &AppState) -> anyhow::Result<Option<String>> {
    use secrecy::ExposeSecret;
    let (Some(email), Some(password)) =
        (&state.config.default_admin_email, &state.config.default_admin_password)
    else {
        return Ok(None);
    };
    let email =
        crate::accounts::Email::parse(email).context("DEFAULT_ADMIN_EMAIL is not a valid email")?;
    let created = state
        .accounts
        .ensure_default_admin(&email, password.expose_secret().to_owned())
        .await
        .context("creating the default admin (DEFAULT_ADMIN_EMAIL / DEFAULT_ADMIN_PASSWORD)")?;
    if let Some(user) = &created {
        tracing::info!(email = %user.email, "created the default platform admin");
    }
    Ok(created.map(|u| u.email))
}

/// The cache-invalidation subscriptions of one process (orgs, accounts,
/// flags). Dropping them stops them.
#[derive(Debug)]
pub struct Listeners(Vec<tenancy::Listener>);

impl Listeners {
    /// Unsubscribes and closes their Redis connections.
    pub async fn stop(self) {
        for listener in self.0 {
            listener.stop().await;
        }
    }
}

/// Starts every cache-invalidation subscription of `state`.
pub async fn listen(state: &AppState) -> anyhow::Result<Listeners> {
    Ok(Listeners(vec![
        state.orgs.listen().await?,
        state.accounts.listen().await?,
        state.flags.listen().await?,
    ]))
}
