//! Configuration: environment variables, optionally from a `.env` file,
//! loaded once in `main`, validated, and passed down.
//!
//! Every variable is documented where it is read and in `.env.example`.
//! A bad value stops the program with a message that names the variable and
//! the expected form. Secrets are [`SecretString`]s, so `Debug` hides them.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

/// `development` (the default) or `production`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The typed, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `ENVIRONMENT`: development | production.
    pub environment: Environment,
    /// `DATABASE_URL`: PostgreSQL URL. Required by `serve` in production;
    /// `orgstack dev` starts a private server when unset.
    pub database_url: Option<SecretString>,
    /// `REDIS_URL`: Redis URL, same rules as `DATABASE_URL`.
    pub redis_url: Option<SecretString>,
    /// `BIND_ADDR`: where the HTTP API listens.
    pub bind_addr: SocketAddr,
    /// `METRICS_ADDR`: where Prometheus metrics are served (a separate listener).
    pub metrics_addr: SocketAddr,
    /// `DB_POOL_SIZE`: maximum PostgreSQL connections of this process.
    pub db_pool_size: u32,
    /// `DB_CONNECT_TIMEOUT_SECS`: how long to wait for a PostgreSQL connection.
    pub db_connect_timeout: Duration,
    /// `DB_STATEMENT_CACHE`: prepared statements kept per connection, for
    /// statements on shared tables (org-scoped statements name their org's
    /// schema and are never kept, so this does not grow with orgs).
    pub db_statement_cache: usize,
    /// `REDIS_KEY_PREFIX`: prefix of every Redis key and channel.
    pub redis_key_prefix: String,
    /// `LOG_FORMAT`: text | json.
    pub log_format: LogFormat,
    /// `DEBUG_SQL`: log every SQL statement with its duration.
    pub debug_sql: bool,
    /// `SECRET_KEY`: server secret for signing and keyed hashes (≥ 32 chars in production).
    pub secret_key: Option<SecretString>,
    /// `SHUTDOWN_TIMEOUT_SECS`: how long in-flight requests may drain on SIGTERM.
    pub shutdown_timeout: Duration,
    /// `MAX_BODY_BYTES`: largest accepted request body.
    pub max_body_bytes: usize,
    /// `ASSETS_FOLDER`: a built single-page app served at `/` (its
    /// `index.html` for every other path outside the API); unset, `/` is
    /// not served.
    pub assets_folder: Option<std::path::PathBuf>,
    /// `SESSION_TTL_HOURS`: how long a session token stays valid.
    pub session_ttl: Duration,
    /// `DEFAULT_ADMIN_EMAIL`: platform admin created at start when none
    /// exists (development default `admin@example.com`).
    pub default_admin_email: Option<String>,
    /// `DEFAULT_ADMIN_PASSWORD`: that admin's password (development default
    /// [`DEV_ADMIN_PASSWORD`], refused in production).
    pub default_admin_password: Option<SecretString>,
    /// `SIGNUP_CODE`: when set, `POST /api/v1/signup` is open to whoever
    /// knows the code, and any signed-in user may create orgs.
    pub signup_code: Option<SecretString>,
    /// `AUTH_TRUSTED_HEADER` + `TRUSTED_PROXIES`: sign-in by a header set by
    /// a trusted reverse proxy (e.g. `X-NetID` behind a campus SSO proxy).
    pub trusted_header: Option<TrustedHeader>,
    /// `OIDC_ISSUER`, `OIDC_CLIENT_ID`, `OIDC_CLIENT_SECRET`,
    /// `OIDC_REDIRECT_URL` (all or none): sign-in with an OpenID Connect
    /// provider at `/api/v1/auth/oidc/login`.
    pub oidc: Option<OidcConfig>,
    /// `STORAGE_URL` (`s3://bucket/prefix`) with `STORAGE_ENDPOINT`,
    /// `STORAGE_REGION`, `STORAGE_ACCESS_KEY_ID`, `STORAGE_SECRET_ACCESS_KEY`;
    /// else `STORAGE_DIR`. `None`: neither was set (`data/files`, or the
    /// data folder of `orgstack dev`).
    pub storage: Option<StorageConfig>,
    /// `SMTP_URL`: where email goes (`smtps://user:pass@host:465`,
    /// `smtp://host:587?tls=required`, ...); unset, to the log and the dev
    /// mailbox.
    pub smtp_url: Option<SecretString>,
    /// `EMAIL_FROM`: the sender of every email (`Name <address>`).
    pub email_from: String,
    /// `PUBLIC_URL`: this server as users reach it, for links in emails
    /// (default `http://` + `BIND_ADDR`).
    pub public_url: String,
    /// `ADMIN_EMAILS`: who is emailed about server errors and dead jobs.
    pub admin_emails: Vec<String>,
    /// `DISCORD_WEBHOOK_URL`: a Discord channel told about them too.
    pub discord_webhook_url: Option<SecretString>,
    /// `WEBHOOK_ALLOW_PRIVATE`: let webhooks call private, loopback and
    /// link-local addresses (off: only public ones).
    pub webhook_allow_private: bool,
    /// `MAX_UPLOAD_BYTES`: the largest file accepted (default 100 MiB).
    pub max_upload_bytes: u64,
    /// `UPLOAD_CONTENT_TYPES`: the types (sniffed from the bytes) accepted.
    pub upload_content_types: Vec<String>,
    /// `JOB_VISIBILITY_TIMEOUT_SECS`, `JOB_RETRY_BACKOFF_MS`,
    /// `JOB_RETRY_MAX_SECS`, `JOB_SWEEP_INTERVAL_SECS`, `JOB_RETENTION_DAYS`.
    pub jobs: crate::jobs::JobsConfig,
    /// `WORKER_CONCURRENCY`: jobs a worker runs at once unless
    /// `--concurrency` says otherwise.
    pub worker_concurrency: usize,
    /// `WORKER_QUEUES`: queues a worker fetches from unless `--queues` says
    /// otherwise (`name[:weight],...`); default: every registered kind's queue.
    pub worker_queues: Option<String>,
}

/// Trusted-header sign-in settings.
#[derive(Debug, Clone)]
pub struct TrustedHeader {
    /// The header carrying the external user id.
    pub header: axum::http::HeaderName,
    /// Only requests from these networks may use it.
    pub proxies: Vec<ipnet::IpNet>,
}

/// OpenID Connect sign-in settings.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer URL exactly as the provider names itself (discovery reads
    /// `{issuer}/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    /// This server's callback, `https://host/api/v1/auth/oidc/callback`, as
    /// registered with the provider.
    pub redirect_url: String,
}

/// Where uploaded files are kept.
#[derive(Debug, Clone)]
pub enum StorageConfig {
    /// A folder on this machine.
    Filesystem { dir: std::path::PathBuf },
    /// An S3-compatible service.
    S3 {
        bucket: String,
        /// Keys go under this path in the bucket (may be empty).
        prefix: String,
        /// For services other than AWS (MinIO, Ceph, R2...): their URL.
        endpoint: Option<String>,
        region: String,
        access_key_id: Option<String>,
        secret_access_key: Option<SecretString>,
    },
}

/// Where files go when nothing is configured.
pub const DEFAULT_STORAGE_DIR: &str = "data/files";

/// Upload types accepted unless `UPLOAD_CONTENT_TYPES` says otherwise.
pub const DEFAULT_UPLOAD_TYPES: &str = "application/pdf,image/png,image/jpeg,image/gif,image/webp,text/plain,text/csv,text/markdown,application/json,application/zip";

/// The default admin password in development; production refuses it.
pub const DEV_ADMIN_PASSWORD: &str = "orgstack-dev-password";
/// The default admin email in development.
pub const DEV_ADMIN_EMAIL: &str = "admin@example.com";

/// A variable that is missing or does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{var}{shown}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    shown: String,
    problem: String,
}

impl ConfigError {
    fn new(var: &'static str, value: Option<&str>, problem: impl Into<String>) -> Self {
        let shown = match value {
            Some(v) if !is_secret(var) => format!("={v:?}"),
            Some(_) => "=<hidden>".to_owned(),
            None => String::new(),
        };
        ConfigError { var, shown, problem: problem.into() }
    }
}

fn is_secret(var: &str) -> bool {
    matches!(
        var,
        "DATABASE_URL"
            | "REDIS_URL"
            | "SECRET_KEY"
            | "DEFAULT_ADMIN_PASSWORD"
            | "SIGNUP_CODE"
            | "OIDC_CLIENT_SECRET"
            | "STORAGE_SECRET_ACCESS_KEY"
            | "SMTP_URL"
            | "DISCORD_WEBHOOK_URL"
            | "AWS_SECRET_ACCESS_KEY"
    )
}

impl Config {
    /// Reads the process environment (after loading `.env`, if any).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup`; empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let environment = match get("ENVIRONMENT").as_deref() {
            None | Some("development") => Environment::Development,
            Some("production") => Environment::Production,
            Some(other) => {
                return Err(ConfigError::new(
                    "ENVIRONMENT",
                    Some(other),
                    "expected development or production",
                ));
            }
        };
        let database_url = get("DATABASE_URL")
            .map(|url| check_url("DATABASE_URL", url, &["postgres", "postgresql"]))
            .transpose()?;
        let redis_url = get("REDIS_URL")
            .map(|url| check_url("REDIS_URL", url, &["redis", "rediss"]))
            .transpose()?;
        let log_format = match get("LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::new("LOG_FORMAT", Some(other), "expected text or json"));
            }
        };
        let prefix = get("REDIS_KEY_PREFIX").unwrap_or_else(|| "orgstack".to_owned());
        if prefix.len() > 64
            || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return Err(ConfigError::new(
                "REDIS_KEY_PREFIX",
                Some(&prefix),
                "expected 1 to 64 characters from a-z, A-Z, 0-9, '_', '-', '.'",
            ));
        }
        let secret_key = get("SECRET_KEY").map(SecretString::from);
        let trusted_header = match (get("AUTH_TRUSTED_HEADER"), get("TRUSTED_PROXIES")) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "TRUSTED_PROXIES",
                    None,
                    "is required with AUTH_TRUSTED_HEADER (comma-separated CIDRs such as 10.0.0.0/8)",
                ));
            }
            (Some(header), Some(proxies)) => {
                let header = header.parse::<axum::http::HeaderName>().map_err(|_| {
                    ConfigError::new(
                        "AUTH_TRUSTED_HEADER",
                        Some(&header),
                        "expected an HTTP header name such as X-NetID",
                    )
                })?;
                let proxies = proxies
                    .split(',')
                    .map(|p| {
                        p.trim().parse::<ipnet::IpNet>().or_else(|_| {
                            p.trim().parse::<std::net::IpAddr>().map(ipnet::IpNet::from)
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| {
                        ConfigError::new(
                            "TRUSTED_PROXIES",
                            Some(&proxies),
                            "expected comma-separated CIDRs such as 10.0.0.0/8,127.0.0.1/32",
                        )
                    })?;
                if secret_key.is_none() {
                    return Err(ConfigError::new(
                        "SECRET_KEY",
                        None,
                        "is required with AUTH_TRUSTED_HEADER (external ids are stored as HMACs under it)",
                    ));
                }
                Some(TrustedHeader { header, proxies })
            }
        };
        let oidc = parse_oidc(&get, environment)?;
        let storage = parse_storage(&get)?;
        let smtp_url = get("SMTP_URL")
            .map(|url| check_url("SMTP_URL", url, &["smtp", "smtps"]))
            .transpose()?;
        let email_from = get("EMAIL_FROM")
            .unwrap_or_else(|| "Orgstack <orgstack@localhost>".to_owned())
            .trim()
            .to_owned();
        if email_from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(ConfigError::new(
                "EMAIL_FROM",
                Some(&email_from),
                "expected an address such as Orgstack <noreply@example.com>",
            ));
        }
        let admin_emails: Vec<String> = get("ADMIN_EMAILS")
            .unwrap_or_default()
            .split(',')
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
            .collect();
        if let Some(bad) =
            admin_emails.iter().find(|e| e.parse::<lettre::message::Mailbox>().is_err())
        {
            return Err(ConfigError::new(
                "ADMIN_EMAILS",
                Some(bad),
                "expected comma-separated email addresses",
            ));
        }
        let discord_webhook_url = get("DISCORD_WEBHOOK_URL")
            .map(|url| check_url("DISCORD_WEBHOOK_URL", url, &["https", "http"]))
            .transpose()?;
        let bind_addr = parse_addr(&get, "BIND_ADDR", "127.0.0.1:8080")?;
        let public_url = match get("PUBLIC_URL") {
            None => format!("http://{bind_addr}"),
            Some(url) => {
                let trimmed = url.trim().trim_end_matches('/').to_owned();
                match url::Url::parse(&trimmed) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                        trimmed
                    }
                    _ => {
                        return Err(ConfigError::new(
                            "PUBLIC_URL",
                            Some(&url),
                            "expected the site's address, such as https://orgstack.example.com",
                        ));
                    }
                }
            }
        };
        let upload_content_types: Vec<String> = get("UPLOAD_CONTENT_TYPES")
            .unwrap_or_else(|| DEFAULT_UPLOAD_TYPES.to_owned())
            .split(',')
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        if let Some(bad) = upload_content_types.iter().find(|t| {
            t.split_once('/').is_none_or(|(a, b)| a.is_empty() || b.is_empty() || b.contains('/'))
        }) {
            return Err(ConfigError::new(
                "UPLOAD_CONTENT_TYPES",
                Some(bad),
                "expected comma-separated media types such as image/png,application/pdf",
            ));
        }
        Ok(Config {
            environment,
            database_url,
            redis_url,
            bind_addr,
            metrics_addr: parse_addr(&get, "METRICS_ADDR", "127.0.0.1:9464")?,
            db_pool_size: parse_int(&get, "DB_POOL_SIZE", 10, 1, 1000)?,
            db_connect_timeout: Duration::from_secs(parse_int(
                &get,
                "DB_CONNECT_TIMEOUT_SECS",
                5,
                1,
                600,
            )?),
            db_statement_cache: parse_int(&get, "DB_STATEMENT_CACHE", 256, 1, 100_000)?,
            redis_key_prefix: prefix,
            log_format,
            debug_sql: parse_bool(&get, "DEBUG_SQL", false)?,
            secret_key,
            shutdown_timeout: Duration::from_secs(parse_int(
                &get,
                "SHUTDOWN_TIMEOUT_SECS",
                30,
                0,
                3600,
            )?),
            max_body_bytes: parse_int::<usize>(&get, "MAX_BODY_BYTES", 1 << 20, 1024, 1 << 34)?,
            assets_folder: match get("ASSETS_FOLDER").filter(|f| !f.trim().is_empty()) {
                None => None,
                Some(folder) => {
                    let path = std::path::PathBuf::from(folder.trim());
                    if !path.join("index.html").is_file() {
                        return Err(ConfigError::new(
                            "ASSETS_FOLDER",
                            Some(&folder),
                            "expected a folder holding a built app's index.html",
                        ));
                    }
                    Some(path)
                }
            },
            session_ttl: Duration::from_secs(
                3600 * parse_int::<u64>(&get, "SESSION_TTL_HOURS", 336, 1, 24 * 366)?,
            ),
            default_admin_email: get("DEFAULT_ADMIN_EMAIL").or_else(|| {
                (environment == Environment::Development).then(|| DEV_ADMIN_EMAIL.to_owned())
            }),
            default_admin_password: get("DEFAULT_ADMIN_PASSWORD").map(SecretString::from).or_else(
                || {
                    (environment == Environment::Development)
                        .then(|| SecretString::from(DEV_ADMIN_PASSWORD))
                },
            ),
            signup_code: get("SIGNUP_CODE").map(SecretString::from),
            trusted_header,
            oidc,
            storage,
            smtp_url,
            email_from,
            public_url,
            admin_emails,
            discord_webhook_url,
            webhook_allow_private: parse_bool(&get, "WEBHOOK_ALLOW_PRIVATE", false)?,
            max_upload_bytes: parse_int(&get, "MAX_UPLOAD_BYTES", 100 << 20, 1, 1 << 40)?,
            upload_content_types,
            jobs: crate::jobs::JobsConfig {
                visibility_timeout: Duration::from_secs(parse_int(
                    &get,
                    "JOB_VISIBILITY_TIMEOUT_SECS",
                    30,
                    1,
                    86_400,
                )?),
                retry_backoff: Duration::from_millis(parse_int(
                    &get,
                    "JOB_RETRY_BACKOFF_MS",
                    1000,
                    1,
                    3_600_000,
                )?),
                retry_max: Duration::from_secs(parse_int(
                    &get,
                    "JOB_RETRY_MAX_SECS",
                    3600,
                    1,
                    7 * 86_400,
                )?),
                sweep_interval: Duration::from_secs(parse_int(
                    &get,
                    "JOB_SWEEP_INTERVAL_SECS",
                    300,
                    1,
                    86_400,
                )?),
                retention_days: parse_int(&get, "JOB_RETENTION_DAYS", 14, 1, 3650)?,
                org_retention_days: parse_int(&get, "ORG_RETENTION_DAYS", 30, 1, 3650)?,
                report_failures: false,
            },
            worker_concurrency: parse_int(&get, "WORKER_CONCURRENCY", 10, 1, 10_000)?,
            worker_queues: match get("WORKER_QUEUES") {
                None => None,
                Some(spec) => {
                    crate::jobs::worker::WorkerOptions::parse_queues(&spec)
                        .map_err(|why| ConfigError::new("WORKER_QUEUES", Some(&spec), why))?;
                    Some(spec)
                }
            },
        })
    }

    /// The job settings, with failure reports on when someone hears them.
    pub fn jobs_config(&self) -> crate::jobs::JobsConfig {
        crate::jobs::JobsConfig {
            report_failures: !self.admin_emails.is_empty() || self.discord_webhook_url.is_some(),
            ..self.jobs.clone()
        }
    }

    /// Where error reports go.
    pub fn notify_recipients(&self) -> crate::notify::Recipients {
        crate::notify::Recipients {
            admin_emails: self.admin_emails.clone(),
            discord_webhook_url: self
                .discord_webhook_url
                .as_ref()
                .map(|u| u.expose_secret().to_owned()),
        }
    }

    /// The storage to use: the configured one, else [`DEFAULT_STORAGE_DIR`].
    pub fn storage_or_default(&self) -> StorageConfig {
        self.storage.clone().unwrap_or_else(|| StorageConfig::Filesystem {
            dir: std::path::PathBuf::from(DEFAULT_STORAGE_DIR),
        })
    }

    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }

    /// `DATABASE_URL`, or an error naming it.
    pub fn require_database_url(&self) -> Result<&str, ConfigError> {
        self.database_url.as_ref().map(|s| s.expose_secret()).ok_or_else(|| {
            ConfigError::new(
                "DATABASE_URL",
                None,
                "is required (e.g. postgres://user:pass@host:5432/orgstack)",
            )
        })
    }

    /// `REDIS_URL`, or an error naming it.
    pub fn require_redis_url(&self) -> Result<&str, ConfigError> {
        self.redis_url.as_ref().map(|s| s.expose_secret()).ok_or_else(|| {
            ConfigError::new("REDIS_URL", None, "is required (e.g. redis://127.0.0.1:6379)")
        })
    }

    /// Pool settings for [`tenancy::db::connect`].
    pub fn pool_settings(&self) -> tenancy::db::PoolSettings {
        tenancy::db::PoolSettings {
            max_connections: self.db_pool_size,
            connect_timeout: self.db_connect_timeout,
            debug_sql: self.debug_sql,
            statement_cache_capacity: self.db_statement_cache,
        }
    }
}

fn parse_storage(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<StorageConfig>, ConfigError> {
    let Some(raw) = get("STORAGE_URL") else {
        return Ok(get("STORAGE_DIR")
            .map(|dir| StorageConfig::Filesystem { dir: std::path::PathBuf::from(dir.trim()) }));
    };
    let problem = "expected s3://bucket[/prefix] or file:///absolute/folder";
    let url = url::Url::parse(raw.trim())
        .map_err(|_| ConfigError::new("STORAGE_URL", Some(&raw), problem))?;
    match url.scheme() {
        "file" => Ok(Some(StorageConfig::Filesystem { dir: std::path::PathBuf::from(url.path()) })),
        "s3" => {
            let bucket = url
                .host_str()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| ConfigError::new("STORAGE_URL", Some(&raw), problem))?;
            let endpoint =
                get("STORAGE_ENDPOINT").map(|e| e.trim().trim_end_matches('/').to_owned());
            if let Some(endpoint) = &endpoint
                && !(endpoint.starts_with("https://") || endpoint.starts_with("http://"))
            {
                return Err(ConfigError::new(
                    "STORAGE_ENDPOINT",
                    Some(endpoint),
                    "expected the service's URL, such as https://s3.example.com",
                ));
            }
            Ok(Some(StorageConfig::S3 {
                bucket: bucket.to_owned(),
                prefix: url.path().trim_matches('/').to_owned(),
                endpoint,
                region: get("STORAGE_REGION")
                    .or_else(|| get("AWS_REGION"))
                    .unwrap_or_else(|| "us-east-1".to_owned()),
                access_key_id: get("STORAGE_ACCESS_KEY_ID").or_else(|| get("AWS_ACCESS_KEY_ID")),
                secret_access_key: get("STORAGE_SECRET_ACCESS_KEY")
                    .or_else(|| get("AWS_SECRET_ACCESS_KEY"))
                    .map(SecretString::from),
            }))
        }
        _ => Err(ConfigError::new("STORAGE_URL", Some(&raw), problem)),
    }
}

fn parse_oidc(
    get: &impl Fn(&str) -> Option<String>,
    environment: Environment,
) -> Result<Option<OidcConfig>, ConfigError> {
    let Some(issuer) = get("OIDC_ISSUER") else {
        for var in ["OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET", "OIDC_REDIRECT_URL"] {
            if get(var).is_some() {
                return Err(ConfigError::new(
                    "OIDC_ISSUER",
                    None,
                    format!("is required with {var}"),
                ));
            }
        }
        return Ok(None);
    };
    let issuer = issuer.trim().to_owned();
    // Plain http only to this machine (a provider in development or tests).
    let web_url = |var: &'static str, value: &str| -> Result<(), ConfigError> {
        match url::Url::parse(value) {
            Ok(url)
                if url.scheme() == "https"
                    || (url.scheme() == "http"
                        && (environment == Environment::Development
                            || matches!(
                                url.host_str(),
                                Some("127.0.0.1" | "localhost" | "[::1]")
                            ))) =>
            {
                Ok(())
            }
            _ => Err(ConfigError::new(
                var,
                Some(value),
                "expected an https:// URL (http:// only in development)",
            )),
        }
    };
    web_url("OIDC_ISSUER", &issuer)?;
    let client_id = get("OIDC_CLIENT_ID")
        .ok_or_else(|| ConfigError::new("OIDC_CLIENT_ID", None, "is required with OIDC_ISSUER"))?;
    let redirect_url = get("OIDC_REDIRECT_URL").ok_or_else(|| {
        ConfigError::new(
            "OIDC_REDIRECT_URL",
            None,
            "is required with OIDC_ISSUER (https://your-host/api/v1/auth/oidc/callback)",
        )
    })?;
    web_url("OIDC_REDIRECT_URL", &redirect_url)?;
    Ok(Some(OidcConfig {
        issuer,
        client_id: client_id.trim().to_owned(),
        client_secret: get("OIDC_CLIENT_SECRET").map(SecretString::from),
        redirect_url: redirect_url.trim().to_owned(),
    }))
}

fn check_url(
    var: &'static str,
    value: String,
    schemes: &[&str],
) -> Result<SecretString, ConfigError> {
    match url::Url::parse(&value) {
        Ok(url)
            if schemes.contains(&url.scheme()) && url.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            Ok(SecretString::from(value))
        }
        _ => Err(ConfigError::new(
            var,
            Some(&value),
            format!("expected a URL like {}://host:port/...", schemes[0]),
        )),
    }
}

fn parse_addr(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: &str,
) -> Result<SocketAddr, ConfigError> {
    let value = get(var).unwrap_or_else(|| default.to_owned());
    value.parse().map_err(|_| {
        ConfigError::new(var, Some(&value), "expected an address and port such as 127.0.0.1:8080")
    })
}

fn parse_int<T: TryFrom<u64>>(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<T, ConfigError> {
    let problem = || format!("expected a whole number from {min} to {max}");
    let value = match get(var) {
        None => default,
        Some(raw) => match raw.trim().parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => v,
            _ => return Err(ConfigError::new(var, Some(&raw), problem())),
        },
    };
    T::try_from(value).map_err(|_| ConfigError::new(var, None, problem()))
}

fn parse_bool(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match get(var) {
        None => Ok(default),
        Some(raw) => match raw.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::new(var, Some(&raw), "expected true or false")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_need_nothing() {
        let config = load(&[]).expect("defaults are valid");
        assert_eq!(config.environment, Environment::Development);
        assert_eq!(config.bind_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.db_pool_size, 10);
        assert!(config.database_url.is_none());
        assert_eq!(config.max_body_bytes, 1 << 20);
    }

    #[test]
    fn bad_values_name_the_variable_and_the_expected_form() {
        let cases = [
            (
                "DB_POOL_SIZE",
                "many",
                "DB_POOL_SIZE=\"many\": expected a whole number from 1 to 1000",
            ),
            ("DB_POOL_SIZE", "0", "DB_POOL_SIZE=\"0\": expected a whole number from 1 to 1000"),
            (
                "BIND_ADDR",
                "localhost",
                "BIND_ADDR=\"localhost\": expected an address and port such as 127.0.0.1:8080",
            ),
            ("LOG_FORMAT", "xml", "LOG_FORMAT=\"xml\": expected text or json"),
            ("ENVIRONMENT", "prod", "ENVIRONMENT=\"prod\": expected development or production"),
            ("DEBUG_SQL", "maybe", "DEBUG_SQL=\"maybe\": expected true or false"),
            (
                "REDIS_KEY_PREFIX",
                "a b",
                "REDIS_KEY_PREFIX=\"a b\": expected 1 to 64 characters from a-z, A-Z, 0-9, '_', '-', '.'",
            ),
        ];
        for (var, value, message) in cases {
            let err = load(&[(var, value)]).expect_err(var);
            assert_eq!(err.var, var);
            assert_eq!(err.to_string(), message);
        }
    }

    #[test]
    fn single_sign_on_takes_all_its_variables_and_web_urls() {
        assert!(load(&[]).expect("none").oidc.is_none());
        let err = load(&[("OIDC_CLIENT_ID", "orgstack")]).expect_err("issuer missing");
        assert_eq!(err.to_string(), "OIDC_ISSUER: is required with OIDC_CLIENT_ID");
        let err = load(&[("OIDC_ISSUER", "https://login.example.com")]).expect_err("no client");
        assert_eq!(err.var, "OIDC_CLIENT_ID");
        let full = [
            ("ENVIRONMENT", "production"),
            ("DEFAULT_ADMIN_PASSWORD", "not the development one"),
            ("OIDC_ISSUER", "http://login.example.com"),
            ("OIDC_CLIENT_ID", "orgstack"),
            ("OIDC_CLIENT_SECRET", "s3cret-value"),
            ("OIDC_REDIRECT_URL", "https://app.example.com/api/v1/auth/oidc/callback"),
        ];
        let err = load(&full).expect_err("plain http to another host in production");
        assert_eq!(err.var, "OIDC_ISSUER");
        let mut https = full;
        https[2].1 = "https://login.example.com";
        let config = load(&https).expect("valid");
        let oidc = config.oidc.expect("configured");
        assert_eq!(oidc.client_id, "orgstack");
        assert!(!format!("{oidc:?}").contains("s3cret-value"), "the secret stays hidden");
    }

    #[test]
    fn secrets_are_never_echoed() {
        let err = load(&[("DATABASE_URL", "mysql://user:hunter2@db/x")]).expect_err("wrong scheme");
        assert_eq!(
            err.to_string(),
            "DATABASE_URL=<hidden>: expected a URL like postgres://host:port/..."
        );
        let config = load(&[
            ("SECRET_KEY", "hunter2hunter2"),
            ("DATABASE_URL", "postgres://u:hunter2@db/x"),
        ])
        .expect("valid");
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
