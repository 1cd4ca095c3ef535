//! Application connection pools. Every connection runs with an empty
//! `search_path`, so each table reference must be schema-qualified: an
//! unqualified name fails loudly instead of reading another tenant's table.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Executor};
use tracing::log::LevelFilter;

/// How to size and instrument a pool.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub connect_timeout: Duration,
    /// Log every statement with its duration at INFO (target `sqlx::query`).
    pub debug_sql: bool,
    /// Prepared statements kept per connection (at least 1: sqlx leaks
    /// named statements when its cache is off). Org-scoped statements are
    /// run unprepared (`persistent(false)`): their text names the org's
    /// schema, so caching them would keep one per org and connection.
    pub statement_cache_capacity: usize,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: 10,
            connect_timeout: Duration::from_secs(5),
            debug_sql: false,
            statement_cache_capacity: 256,
        }
    }
}

/// Connection options for `url` with statement logging set from `settings`.
pub fn connect_options(
    url: &str,
    settings: &PoolSettings,
) -> Result<PgConnectOptions, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    let options = options
        .application_name("orgstack")
        .statement_cache_capacity(settings.statement_cache_capacity.max(1));
    Ok(if settings.debug_sql {
        options
            .log_statements(LevelFilter::Info)
            .log_slow_statements(LevelFilter::Warn, Duration::from_secs(1))
    } else {
        options
            .log_statements(LevelFilter::Off)
            .log_slow_statements(LevelFilter::Warn, Duration::from_secs(1))
    })
}

/// A pool whose connections have an empty `search_path`.
pub async fn connect(url: &str, settings: &PoolSettings) -> Result<PgPool, sqlx::Error> {
    let options = connect_options(url, settings)?;
    pool_options(settings).connect_with(options).await
}

/// Like [`connect`], but connects on first use.
pub fn connect_lazy(url: &str, settings: &PoolSettings) -> Result<PgPool, sqlx::Error> {
    let options = connect_options(url, settings)?;
    Ok(pool_options(settings).connect_lazy_with(options))
}

/// How long a pooled connection may sit idle before it is pinged on acquire.
const IDLE_CHECK_AFTER: Duration = Duration::from_secs(1);

fn pool_options(settings: &PoolSettings) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.connect_timeout)
        // sqlx pings every connection it hands out: one more round trip
        // per query. A connection in steady use is known to be alive; only
        // one that sat idle (and may have been cut by a restart or a
        // firewall) is checked before use.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > IDLE_CHECK_AFTER {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute("SET search_path TO ''").await?;
                Ok(())
            })
        })
}
