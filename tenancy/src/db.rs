//! Application connection pools. Every connection runs with an empty
//! `search_path`, so each table reference must be schema-qualified: an
//! unqualified name fails loudly instead of reading another tenant's table.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
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

/// Run on every application connection, pooled or not: no schema is
/// searched, so an unqualified table name fails.
const EMPTY_SEARCH_PATH: &str = "SET search_path TO ''";

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

/// How long a [`Lane`] tries to open a connection.
const LANE_OPEN_TIMEOUT: Duration = Duration::from_secs(5);

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
                conn.execute(EMPTY_SEARCH_PATH).await?;
                Ok(())
            })
        })
}

/// A few connections of one hot path's own, outside the pool, for
/// single statements the path runs again and again (the worker's claims).
///
/// Two things differ from the pool. A statement ending hands its
/// connection straight back: the pool instead pings every connection
/// returned to it (sqlx 0.9 cannot be told not to), one more wake-up of
/// PostgreSQL per statement. And the connections are set up once for the
/// path (`setup`, run after connecting and after the empty `search_path`
/// every application connection has: whatever the path wants, such as
/// `synchronous_commit` or `plan_cache_mode`), so its statements need no
/// per-statement settings.
///
/// A connection is given back only by [`Leased::give_back`] with the
/// statement's result; one whose statement was abandoned (its future
/// dropped mid-statement) or failed on the wire is closed instead, since
/// it may still owe replies, and so is one whose session PostgreSQL ended
/// (a shutdown, `pg_terminate_backend`). Only single statements outside a transaction
/// belong here.
pub struct Lane {
    options: PgConnectOptions,
    setup: &'static str,
    idle: std::sync::Mutex<Vec<(PgConnection, std::time::Instant)>>,
    slots: tokio::sync::Semaphore,
    max: u32,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane").field("setup", &self.setup).finish_non_exhaustive()
    }
}

/// A connection leased from a [`Lane`]; closed when dropped unless given
/// back.
pub struct Leased<'a> {
    lane: &'a Lane,
    conn: Option<PgConnection>,
    _slot: tokio::sync::SemaphorePermit<'a>,
}

impl std::fmt::Debug for Leased<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leased").field("lane", self.lane).finish_non_exhaustive()
    }
}

impl Lane {
    /// At most `max` connections made with `options` (those of the
    /// application's pool, say: `PgPool::connect_options`), each with an
    /// empty `search_path` and then set up by `setup` (one or more
    /// statements, run once).
    pub fn new(options: PgConnectOptions, setup: &'static str, max: usize) -> Self {
        Lane {
            options,
            setup,
            idle: std::sync::Mutex::new(Vec::new()),
            slots: tokio::sync::Semaphore::new(max.max(1)),
            max: u32::try_from(max.max(1)).unwrap_or(u32::MAX),
        }
    }

    /// An idle connection (the one used last, whose backend is warm), or a
    /// new one while fewer than `max` are open; otherwise waits for one.
    pub async fn lease(&self) -> Result<Leased<'_>, sqlx::Error> {
        let slot = self.slots.acquire().await.map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = self.lock().pop();
        let conn = match idle {
            // As the pool does: one that sat idle (and may have been cut by a
            // restart or a firewall) is checked first.
            Some((mut conn, since)) if since.elapsed() > IDLE_CHECK_AFTER => {
                match sqlx::Connection::ping(&mut conn).await {
                    Ok(()) => conn,
                    Err(_) => self.open().await?,
                }
            }
            Some((conn, _)) => conn,
            None => self.open().await?,
        };
        Ok(Leased { lane: self, conn: Some(conn), _slot: slot })
    }

    /// Runs `statement` on a leased connection and gives the connection
    /// back according to its result (see [`Leased::give_back`]).
    pub async fn run<T>(
        &self,
        statement: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let mut conn = self.lease().await?;
        let result = statement(&mut conn).await;
        conn.give_back(&result);
        result
    }

    /// Opens every connection the lane may hold, so that a path's first
    /// statements do not wait for connecting (each open gives up after 5
    /// s). Does nothing while any connection is leased.
    pub async fn warm(&self) -> Result<(), sqlx::Error> {
        // Holding every slot keeps leases from opening connections meanwhile.
        let Ok(_slots) = self.slots.try_acquire_many(self.max) else {
            return Ok(());
        };
        let missing = (self.max as usize).saturating_sub(self.lock().len());
        let opened = futures::future::join_all((0..missing).map(|_| self.open())).await;
        for conn in opened {
            let conn = conn?;
            self.lock().push((conn, std::time::Instant::now()));
        }
        Ok(())
    }

    /// A new connection, set up; given up after [`LANE_OPEN_TIMEOUT`] (as
    /// the pool gives up acquiring), so that an unreachable server cannot
    /// hold a path for the system's TCP timeout.
    async fn open(&self) -> Result<PgConnection, sqlx::Error> {
        let open = async {
            let mut conn = self.options.connect().await?;
            conn.execute(EMPTY_SEARCH_PATH).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(self.setup)).execute(&mut conn).await?;
            Ok(conn)
        };
        tokio::time::timeout(LANE_OPEN_TIMEOUT, open)
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(PgConnection, std::time::Instant)>> {
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Leased<'_> {
    /// Hands the connection back to its lane after a statement that ended
    /// with `result`, unless the failure was the connection's own (an I/O
    /// or protocol error, a timeout, or PostgreSQL ending the session, as
    /// when it shuts down), in which case it is closed.
    pub fn give_back<T>(mut self, result: &Result<T, sqlx::Error>) {
        let healthy = match result {
            Ok(_) => true,
            // PostgreSQL answered: the connection is in step, unless the
            // answer ends the session (class 57P: operator intervention,
            // such as a shutdown; class 08: connection exception).
            Err(sqlx::Error::Database(err)) => {
                !err.code().is_some_and(|code| code.starts_with("57P") || code.starts_with("08"))
            }
            Err(sqlx::Error::RowNotFound) => true,
            Err(_) => false,
        };
        if healthy && let Some(conn) = self.conn.take() {
            self.lane.lock().push((conn, std::time::Instant::now()));
        }
    }
}

impl std::ops::Deref for Leased<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.conn.as_ref().expect("a leased connection is present until given back")
    }
}

impl std::ops::DerefMut for Leased<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn.as_mut().expect("a leased connection is present until given back")
    }
}
