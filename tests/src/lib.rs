//! Test harness for Orgstack: real PostgreSQL and Redis, one fresh database
//! and one Redis key prefix per test, the app served on `127.0.0.1:0`.
//!
//! Servers: `DATABASE_URL` / `REDIS_URL` are reused when set; otherwise a
//! private PostgreSQL and Redis are started once per test process (as
//! `orgstack dev` does) and stop when the process exits. Each test database
//! is cloned from a template that already has the public lineage, so a test
//! starts in tens of milliseconds; it is dropped when the context drops.

pub mod oidc;
pub mod s3;
pub mod scale;
pub mod smtp;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use fred::prelude::{ClientLike, KeysInterface};
use futures::TryStreamExt;
use orgstack::config::Config;
use orgstack::http::AppState;
use orgstack::jobs::worker::{Worker, WorkerOptions, WorkerReport};
use orgstack::jobs::{Jobs, Registry};
use orgstack::local::{LocalPostgres, LocalRedis, PostgresOptions};
use orgstack::queue::QueueName;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};
use tenancy::{Lineage, OrgRegistry, RedisKeys};
use tokio::task::JoinHandle;

/// The servers shared by every test of this process.
#[derive(Debug)]
pub struct Servers {
    /// A superuser URL to the `postgres` (or configured) database.
    pub admin_url: url::Url,
    pub redis_url: String,
    template: String,
    _postgres: Option<LocalPostgres>,
    _redis: Option<LocalRedis>,
}

/// Starts (or finds) the servers once per process.
pub fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Servers> = OnceLock::new();
    SERVERS.get_or_init(|| {
        // A runtime of its own: the test that gets here first has its own,
        // which ends with that test.
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("test runtime");
            runtime.block_on(start_servers()).unwrap_or_else(|err| panic!("test servers: {err:#}"))
        })
        .join()
        .expect("starting test servers")
    })
}

async fn start_servers() -> anyhow::Result<Servers> {
    let pid = std::process::id();
    let scratch = std::env::temp_dir().join(format!("orgstack-test-{pid}"));
    remove_stale_scratch_dirs();
    let (postgres, admin_url) = match std::env::var("DATABASE_URL").ok().filter(|s| !s.is_empty()) {
        Some(url) => (None, url),
        None => {
            let pg =
                LocalPostgres::start(&scratch.join("postgres"), PostgresOptions { durable: false })
                    .await?;
            let url = pg.url("postgres");
            (Some(pg), url)
        }
    };
    let (redis, redis_url) = match std::env::var("REDIS_URL").ok().filter(|s| !s.is_empty()) {
        Some(url) => (None, url),
        None => {
            let redis = LocalRedis::start(&scratch.join("redis"), false).await?;
            let url = redis.url();
            (Some(redis), url)
        }
    };
    let admin_url = url::Url::parse(&admin_url)?;
    let mut admin = PgConnection::connect(admin_url.as_str()).await?;
    drop_stale_databases(&mut admin).await?;
    let template = format!("orgstack_tpl_{pid}");
    exec(&mut admin, &format!("DROP DATABASE IF EXISTS \"{template}\"")).await?;
    exec(&mut admin, &format!("CREATE DATABASE \"{template}\"")).await?;
    admin.close().await?;
    let pool =
        tenancy::db::connect(with_database(&admin_url, &template).as_str(), &Default::default())
            .await?;
    tenancy::migrator::migrate_public(&pool, &Lineage::public(), Duration::from_secs(10)).await?;
    pool.close().await;
    Ok(Servers { admin_url, redis_url, template, _postgres: postgres, _redis: redis })
}

async fn exec(conn: &mut PgConnection, sql: &str) -> sqlx::Result<()> {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(conn).await.map(|_| ())
}

fn with_database(url: &url::Url, db: &str) -> url::Url {
    let mut url = url.clone();
    url.set_path(&format!("/{db}"));
    url
}

fn pid_alive(pid: u32) -> bool {
    i32::try_from(pid).is_ok_and(|pid| {
        // Signal 0 checks existence; EPERM means it exists but is not ours.
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
            Ok(()) => true,
            Err(errno) => errno == nix::errno::Errno::EPERM,
        }
    })
}

/// Databases left by test processes that died (their pid is in the name).
async fn drop_stale_databases(admin: &mut PgConnection) -> anyhow::Result<()> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM pg_catalog.pg_database WHERE datname LIKE 'orgstack\\_t%\\_%'",
    )
    .fetch_all(&mut *admin)
    .await?;
    for name in names {
        let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !pid_alive(pid)) {
            exec(admin, &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await?;
        }
    }
    Ok(())
}

fn remove_stale_scratch_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("orgstack-test-").and_then(|p| p.parse::<u32>().ok())
            && !pid_alive(pid)
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Tests reclaim a lost worker's jobs after this many seconds...
pub const TEST_VISIBILITY_SECS: &str = "2";
/// ...and retry failed jobs after 50 ms, doubling.
pub const TEST_BACKOFF_MS: &str = "50";

/// One test's world: its own database (public lineage applied), its own
/// Redis key prefix, and a configuration pointing at both.
#[derive(Debug)]
pub struct TestContext {
    pub db_name: String,
    pub database_url: String,
    pub redis_url: String,
    pub pool: PgPool,
    pub redis: fred::clients::Client,
    pub keys: RedisKeys,
    pub config: Config,
    /// Where this test's files are stored (`STORAGE_DIR`).
    pub files_dir: tempfile::TempDir,
}

impl TestContext {
    pub async fn new() -> Self {
        let servers = servers();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let db_name = format!("orgstack_t_{}_{}", std::process::id(), &id[..12]);
        let mut admin =
            PgConnection::connect(servers.admin_url.as_str()).await.expect("admin connection");
        let create = format!("CREATE DATABASE \"{db_name}\" TEMPLATE \"{}\"", servers.template);
        let mut attempt = 0;
        while let Err(err) = exec(&mut admin, &create).await {
            // Another test copying the template at the same moment.
            attempt += 1;
            assert!(attempt < 50, "creating test database: {err}");
            tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
        }
        admin.close().await.ok();
        let database_url = with_database(&servers.admin_url, &db_name).to_string();
        let settings = tenancy::db::PoolSettings { max_connections: 8, ..Default::default() };
        let pool = tenancy::db::connect(&database_url, &settings).await.expect("test pool");
        let prefix = format!("test-{}", &id[..16]);
        let redis = orgstack::redis::connect(&servers.redis_url, Duration::from_secs(10))
            .await
            .expect("test redis");
        let files_dir = tempfile::tempdir().expect("files dir");
        let storage_dir = files_dir.path().to_str().expect("utf-8 temp dir").to_owned();
        let config = config_with(&[
            ("STORAGE_DIR", &storage_dir),
            ("DATABASE_URL", &database_url),
            ("REDIS_URL", &servers.redis_url),
            ("REDIS_KEY_PREFIX", &prefix),
            ("JOB_VISIBILITY_TIMEOUT_SECS", TEST_VISIBILITY_SECS),
            ("JOB_RETRY_BACKOFF_MS", TEST_BACKOFF_MS),
        ]);
        TestContext {
            db_name,
            database_url,
            redis_url: servers.redis_url.clone(),
            pool,
            redis,
            keys: RedisKeys::new(prefix),
            config,
            files_dir,
        }
    }

    /// A registry provisioning with the real org lineage.
    pub fn registry(&self) -> OrgRegistry {
        self.registry_with(Lineage::org())
    }

    /// A registry provisioning with `lineage`.
    pub fn registry_with(&self, lineage: Lineage) -> OrgRegistry {
        OrgRegistry::new(self.pool.clone(), self.redis.clone(), self.keys.clone(), lineage)
    }

    /// A registry as a separate server process would have: its own pool,
    /// Redis connection and cache.
    pub async fn other_process_registry(&self) -> OrgRegistry {
        let pool = tenancy::db::connect(&self.database_url, &Default::default())
            .await
            .expect("second pool");
        let redis = orgstack::redis::connect(&self.redis_url, Duration::from_secs(10))
            .await
            .expect("second redis");
        OrgRegistry::new(pool, redis, self.keys.clone(), Lineage::org())
    }

    /// The accounts services over this context's database and Redis.
    pub fn accounts(&self) -> orgstack::accounts::auth::Accounts {
        orgstack::accounts::auth::Accounts::new(
            self.pool.clone(),
            self.redis.clone(),
            self.keys.clone(),
            Duration::from_secs(3600),
        )
    }

    /// Creates a user with `password` (platform admin when `admin`).
    pub async fn user(
        &self,
        email: &str,
        password: &str,
        admin: bool,
    ) -> orgstack::accounts::users::User {
        let email = orgstack::accounts::Email::parse(email).expect("test email");
        let new = orgstack::accounts::users::NewUser {
            email: &email,
            name: "",
            password: Some(password.to_owned()),
            platform_admin: admin,
        };
        self.accounts()
            .create_user(&orgstack::accounts::Actor::System, new)
            .await
            .expect("test user")
    }

    /// The job services over this context's database and Redis.
    pub fn jobs(&self) -> Jobs {
        Jobs::new(
            self.pool.clone(),
            self.redis.clone(),
            self.keys.clone(),
            self.registry(),
            Registry::standard(&orgstack::jobs::handler::HandlerDeps {
                storage: orgstack::storage::Storage::from_config(&self.config.storage_or_default())
                    .expect("test storage"),
                mailer: orgstack::email::Mailer::from_config(
                    &self.config,
                    self.redis.clone(),
                    self.keys.clone(),
                )
                .expect("test mailer"),
                recipients: self.config.notify_recipients(),
                webhook_allow_private: self.config.webhook_allow_private,
            }),
            self.config.jobs_config(),
        )
    }

    /// Provisions an org named after `slug`.
    pub async fn org(&self, slug: &str) -> tenancy::Org {
        let slug = tenancy::Slug::parse(slug).expect("test slug");
        self.registry().create(slug.as_str(), &slug).await.expect("provision org")
    }

    /// Jobs of `org` in each status: `(status, count)`, sorted by status.
    pub async fn job_counts(&self, org: &tenancy::Org) -> Vec<(String, i64)> {
        let sql = format!(
            "SELECT status, count(*) FROM {} GROUP BY status ORDER BY status",
            org.schema().qualify("jobs")
        );
        sqlx::query_as(AssertSqlSafe(sql)).fetch_all(&self.pool).await.expect("job counts")
    }

    /// Waits until `org` has no queued, running or retry-waiting job;
    /// panics after `within` (a failure bound, not a performance figure).
    pub async fn drain(&self, org: &tenancy::Org, within: Duration) {
        let sql = format!(
            "SELECT count(*) FROM {} WHERE status IN ('queued', 'running', 'failed')",
            org.schema().qualify("jobs")
        );
        let deadline = std::time::Instant::now() + within;
        loop {
            let left: i64 = sqlx::query_scalar(AssertSqlSafe(sql.clone()))
                .fetch_one(&self.pool)
                .await
                .expect("pending jobs");
            if left == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{left} job(s) still unfinished in {} after {within:?}: {:?}",
                org.slug,
                self.job_counts(org).await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Environment for running the `orgstack` binary against this context.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", self.database_url.clone()),
            ("REDIS_URL", self.redis_url.clone()),
            ("REDIS_KEY_PREFIX", self.keys.prefix().to_owned()),
            ("RUST_LOG", "warn".to_owned()),
            ("JOB_VISIBILITY_TIMEOUT_SECS", TEST_VISIBILITY_SECS.to_owned()),
            ("JOB_RETRY_BACKOFF_MS", TEST_BACKOFF_MS.to_owned()),
            ("STORAGE_DIR", self.files_dir.path().display().to_string()),
        ]
    }

    /// Serves the full app (API and metrics) on free ports.
    pub async fn spawn_app(&self) -> TestApp {
        spawn_app(self.config.clone()).await
    }

    /// Number of tables in `schema` (0 when it does not exist).
    pub async fn table_count(&self, schema: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = $1")
            .bind(schema)
            .fetch_one(&self.pool)
            .await
            .expect("counting tables")
    }

    /// Whether `schema` exists.
    pub async fn schema_exists(&self, schema: &str) -> bool {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)",
        )
        .bind(schema)
        .fetch_one(&self.pool)
        .await
        .expect("looking up schema")
    }
}

impl Drop for TestContext {
    fn drop(&mut self) {
        let servers = servers();
        let admin_url = servers.admin_url.to_string();
        let redis_url = servers.redis_url.clone();
        let db_name = self.db_name.clone();
        let pattern = self.keys.all_pattern();
        // Drop runs inside the test's runtime, which is blocked while we wait:
        // clean up on a thread with a runtime of its own, and leave the pool
        // alone (its connections belong to the blocked runtime; the forced
        // DROP DATABASE ends them).
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    let _ = exec(
                        &mut admin,
                        &format!("DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)"),
                    )
                    .await;
                    let _ = admin.close().await;
                }
                if let Ok(redis) =
                    orgstack::redis::connect(&redis_url, Duration::from_secs(5)).await
                {
                    let keys: Vec<String> = redis
                        .scan_buffered(pattern, Some(1000), None)
                        .try_filter_map(|k| async move { Ok(k.as_str().map(str::to_owned)) })
                        .try_collect()
                        .await
                        .unwrap_or_default();
                    for chunk in keys.chunks(500) {
                        let _: Result<i64, _> = redis.del(chunk.to_vec()).await;
                    }
                    let _ = redis.quit().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// A configuration built from `vars` only (nothing from the environment).
pub fn config_with(vars: &[(&str, &str)]) -> Config {
    let vars: Vec<(String, String)> =
        vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Config::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        .expect("test config")
}

/// The app running on free ports.
#[derive(Debug)]
pub struct TestApp {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub state: AppState,
    pub client: reqwest::Client,
    server: JoinHandle<anyhow::Result<()>>,
    _listeners: orgstack::app::Listeners,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics_addr)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request")
    }

    /// Signs in and returns the session token (panics unless 200).
    pub async fn login(&self, email: &str, password: &str) -> String {
        let response = self
            .client
            .post(self.url("/api/v1/auth/login"))
            .json(&serde_json::json!({ "email": email, "password": password }))
            .send()
            .await
            .expect("login request");
        assert_eq!(response.status(), 200, "login as {email}");
        let body: serde_json::Value = response.json().await.expect("login body");
        body["token"].as_str().expect("token").to_owned()
    }

    /// Sends `method path` with an optional bearer token and JSON body;
    /// returns the status and the JSON body (`null` when empty).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("body");
        let json = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("json body")
        };
        (status, json)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Serves the app for `config` on `127.0.0.1:0`: the listeners are bound
/// before this returns, so requests can be sent at once.
pub async fn spawn_app(config: Config) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind api");
    spawn_app_on(config, listener).await
}

/// Serves the app for `config` on `listener` (bound already, when the
/// configuration must name the address, e.g. a sign-in callback).
pub async fn spawn_app_on(mut config: Config, listener: tokio::net::TcpListener) -> TestApp {
    config.bind_addr = "127.0.0.1:0".parse().expect("addr");
    config.metrics_addr = "127.0.0.1:0".parse().expect("addr");
    orgstack::telemetry::metrics_handle();
    let state = orgstack::app::build_state(config).await.expect("app state");
    let listeners = orgstack::app::listen(&state).await.expect("cache listeners");
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind metrics");
    let addr = listener.local_addr().expect("api addr");
    let metrics_addr = metrics.local_addr().expect("metrics addr");
    let server = tokio::spawn(orgstack::http::serve(
        state.clone(),
        listener,
        Some(metrics),
        std::future::pending(),
    ));
    TestApp {
        addr,
        metrics_addr,
        state,
        client: reqwest::Client::new(),
        server,
        _listeners: listeners,
    }
}

/// A worker running in this process, stopped gracefully by [`TestWorker::stop`].
#[derive(Debug)]
pub struct TestWorker {
    pub id: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<WorkerReport>>,
}

impl TestWorker {
    /// A worker on the `default` queue with `concurrency` slots.
    pub fn start(jobs: &Jobs, concurrency: usize) -> Self {
        Self::start_with(
            jobs,
            WorkerOptions {
                queues: vec![(QueueName::default_queue(), 1)],
                concurrency,
                autoscale: None,
                shutdown_timeout: Duration::from_secs(10),
            },
        )
    }

    /// A worker on every registered kind's queue (as `orgstack worker`
    /// runs by default), not only `default`.
    pub fn start_all(jobs: &Jobs, concurrency: usize) -> Self {
        let queues = jobs.registry().queues().into_iter().map(|q| (q, 1)).collect();
        Self::start_with(
            jobs,
            WorkerOptions {
                queues,
                concurrency,
                autoscale: None,
                shutdown_timeout: Duration::from_secs(10),
            },
        )
    }

    pub fn start_with(jobs: &Jobs, options: WorkerOptions) -> Self {
        let worker = Worker::new(jobs.clone(), options);
        let id = worker.id().to_owned();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(worker.run(async move {
            let _ = stopped.await;
        }));
        TestWorker { id, stop: Some(stop), task }
    }

    /// Asks for a graceful stop and waits for it.
    pub async fn stop(mut self) -> WorkerReport {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.expect("worker task").expect("worker run")
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        self.task.abort();
    }
}
