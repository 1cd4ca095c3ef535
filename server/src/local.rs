//! Private PostgreSQL and Redis servers started from the binaries installed
//! on the machine, for `orgstack dev` and the test harness.
//!
//! PostgreSQL is found on `PATH`, through `pg_config --bindir`, or under
//! `/usr/lib/postgresql/*/bin`. PostgreSQL refuses to run as root, so when
//! this process is root the server runs as the `postgres` user (or `nobody`)
//! and its data folder is handed to that user.
//!
//! Children are spawned from one long-lived thread with a parent-death
//! signal, so they stop when this process dies, even on SIGKILL.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, Uid, User};

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How to tune a private PostgreSQL.
#[derive(Debug, Clone, Copy)]
pub struct PostgresOptions {
    /// Keep `fsync` on (dev data survives a crash); tests turn it off.
    pub durable: bool,
}

/// A running private PostgreSQL. Stopped (fast shutdown) on drop.
#[derive(Debug)]
pub struct LocalPostgres {
    child: Option<Child>,
    port: u16,
    data_dir: PathBuf,
}

impl LocalPostgres {
    /// Initializes `dir/data` if needed and starts a server on a free port.
    pub async fn start(dir: &Path, options: PostgresOptions) -> anyhow::Result<Self> {
        let bin = find_postgres_bin()?;
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = &fs::canonicalize(dir)?;
        let data_dir = dir.join("data");
        let run_as = unprivileged_user()?;
        if let Some(user) = &run_as {
            check_traversable(dir, user)?;
            chown(dir, user)?;
        }
        if !data_dir.join("PG_VERSION").exists() {
            fs::create_dir_all(&data_dir)?;
            if let Some(user) = &run_as {
                chown(&data_dir, user)?;
            }
            let mut initdb = Command::new(bin.join("initdb"));
            initdb
                .arg("-D")
                .arg(&data_dir)
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            as_user(&mut initdb, run_as.as_ref(), dir);
            let output = initdb.output().context("running initdb")?;
            if !output.status.success() {
                bail!("initdb failed: {}", String::from_utf8_lossy(&output.stderr).trim());
            }
        }
        let port = free_port()?;
        let log_path = dir.join("postgres.log");
        let log = fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut cmd = Command::new(bin.join("postgres"));
        let buffers = format!("shared_buffers={}MB", shared_buffers_mb(total_memory_mb()));
        cmd.arg("-D").arg(&data_dir).args(["-p", &port.to_string()]).args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=300",
            "-c",
            &buffers,
        ]);
        if !options.durable {
            cmd.args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]);
        }
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        as_user(&mut cmd, run_as.as_ref(), dir);
        let child = spawn_supervised(cmd, Signal::SIGINT).context("starting postgres")?;
        let mut server = LocalPostgres { child: Some(child), port, data_dir };
        server.wait_ready(&log_path).await?;
        Ok(server)
    }

    async fn wait_ready(&mut self, log_path: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let url = self.url("postgres");
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                let log = fs::read_to_string(log_path).unwrap_or_default();
                bail!("postgres exited ({status}) while starting:\n{}", tail(&log, 10));
            }
            if let Ok(conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await {
                let _ = sqlx::Connection::close(conn).await;
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "postgres did not accept connections within {}s (log: {})",
                    START_TIMEOUT.as_secs(),
                    log_path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A URL for database `db` as the `postgres` superuser.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Fast shutdown; waits for the server to exit.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child, Signal::SIGINT);
        }
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running private Redis. Stopped on drop.
#[derive(Debug)]
pub struct LocalRedis {
    child: Option<Child>,
    port: u16,
}

impl LocalRedis {
    /// Starts `redis-server` on a free port with its files in `dir`;
    /// `persistent` keeps an append-only file there between runs.
    pub async fn start(dir: &Path, persistent: bool) -> anyhow::Result<Self> {
        Self::start_on(dir, free_port()?, persistent).await
    }

    /// Like [`start`](Self::start), on a given port.
    pub async fn start_on(dir: &Path, port: u16, persistent: bool) -> anyhow::Result<Self> {
        let bin = find_on_path("redis-server").ok_or_else(|| {
            anyhow::anyhow!(
                "redis-server not found on PATH; install it (Debian/Ubuntu: apt-get install redis-server; \
                 macOS: brew install redis) or set REDIS_URL"
            )
        })?;
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = &fs::canonicalize(dir)?;
        let log_path = dir.join("redis.log");
        let mut cmd = Command::new(bin);
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", if persistent { "yes" } else { "no" }])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(&log_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = spawn_supervised(cmd, Signal::SIGTERM).context("starting redis-server")?;
        let mut server = LocalRedis { child: Some(child), port };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = server.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                bail!("redis-server exited ({status}) while starting:\n{}", tail(&log, 10));
            }
            if redis_ping(port) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!(
                    "redis-server did not answer within {}s (log: {})",
                    START_TIMEOUT.as_secs(),
                    log_path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child, Signal::SIGTERM);
        }
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// PostgreSQL's buffer cache for a private server: an eighth of the
/// machine's memory, between 128 MB (PostgreSQL's default) and 1 GB.
/// With 128 MB, an org's jobs table and indexes outgrow the cache at a
/// backlog of about a million jobs: draining one ran at about 25,000
/// jobs/s, against 33,830 with 1 GB (docs/benchmarks.md). PostgreSQL
/// touches the memory only as it uses it.
fn shared_buffers_mb(total_mb: Option<u64>) -> u64 {
    total_mb.map_or(128, |total| (total / 8).clamp(128, 1024))
}

/// `MemTotal` from `/proc/meminfo`, in MB.
fn total_memory_mb() -> Option<u64> {
    let info = fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

fn redis_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 16];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read(&mut buf).is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The folder holding `initdb` and `postgres`.
pub fn find_postgres_bin() -> anyhow::Result<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(initdb) = find_on_path("initdb") {
        let real = fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(dir) = real.parent().filter(|d| has_both(d)) {
            return Ok(dir.to_path_buf());
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_both(&dir) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, dir): &(u32, PathBuf)| has_both(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir).ok_or_else(|| {
        anyhow::anyhow!(
            "PostgreSQL server binaries (initdb, postgres) not found on PATH, via pg_config, or in \
             /usr/lib/postgresql/*/bin; install them (Debian/Ubuntu: apt-get install postgresql; \
             macOS: brew install postgresql@16) or set DATABASE_URL"
        )
    })
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// When running as root: the user PostgreSQL runs as instead.
fn unprivileged_user() -> anyhow::Result<Option<User>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Ok(Some(user)) = User::from_name(name) {
            return Ok(Some(user));
        }
    }
    bail!(
        "PostgreSQL refuses to run as root and no 'postgres' or 'nobody' user exists; run as a regular user or set DATABASE_URL"
    )
}

fn check_traversable(dir: &Path, user: &User) -> anyhow::Result<()> {
    let dir = fs::canonicalize(dir)?;
    for ancestor in dir.ancestors().skip(1) {
        let meta = fs::metadata(ancestor)?;
        use std::os::unix::fs::MetadataExt;
        let others_x = meta.mode() & 0o001 != 0;
        let owner_x = meta.uid() == user.uid.as_raw() && meta.mode() & 0o100 != 0;
        let group_x = meta.gid() == user.gid.as_raw() && meta.mode() & 0o010 != 0;
        if !(others_x || owner_x || group_x) {
            bail!(
                "PostgreSQL must run as user '{}' (it refuses root), but that user cannot enter {}; \
                 run as a regular user, choose a data folder under /tmp, or set DATABASE_URL",
                user.name,
                ancestor.display()
            );
        }
    }
    Ok(())
}

fn chown(path: &Path, user: &User) -> anyhow::Result<()> {
    nix::unistd::chown(path, Some(user.uid), Some(user.gid))
        .with_context(|| format!("handing {} to user {}", path.display(), user.name))?;
    Ok(())
}

/// Runs `cmd` as `user` (when given) from `dir`: PostgreSQL up to 15 changes
/// back to the working folder it inherited, which another user may not be
/// allowed to enter.
fn as_user(cmd: &mut Command, user: Option<&User>, dir: &Path) {
    cmd.current_dir(dir);
    if let Some(user) = user {
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        // Its own home, not root's.
        cmd.envs([("HOME", &user.dir)]);
    }
}

type SpawnRequest = (Command, Signal, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `cmd` in a process group of its own (so Ctrl-C in a terminal
/// reaches only this process, which then stops the child in order) and, on
/// Linux, with `on_parent_death` delivered when this process exits. The
/// parent-death signal fires when the *thread* that spawned the child ends,
/// so every child is spawned from one thread that lives as long as the
/// process.
fn spawn_supervised(mut cmd: Command, on_parent_death: Signal) -> std::io::Result<Child> {
    cmd.process_group(0);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("orgstack-local-services".into())
            .spawn(move || {
                for (mut cmd, signal, reply) in rx {
                    set_parent_death_signal(&mut cmd, signal);
                    let _ = reply.send(cmd.spawn());
                }
                // The channel lives in a static and is never closed, so this
                // thread never ends while the process runs.
            })
            .ok();
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .lock()
        .map_err(|_| std::io::Error::other("spawner lock poisoned"))?
        .send((cmd, on_parent_death, reply_tx))
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?;
    reply_rx.recv().map_err(|_| std::io::Error::other("spawner thread is gone"))?
}

#[cfg(target_os = "linux")]
#[expect(
    unsafe_code,
    reason = "pre_exec is unsafe; the hook only calls prctl, which is async-signal-safe"
)]
fn set_parent_death_signal(cmd: &mut Command, signal: Signal) {
    // SAFETY: the closure runs between fork and exec and only makes one
    // prctl(2) system call; it allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(move || nix::sys::prctl::set_pdeathsig(signal).map_err(std::io::Error::from));
    }
}

#[cfg(not(target_os = "linux"))]
fn set_parent_death_signal(_cmd: &mut Command, _signal: Signal) {}

/// Signals `child` and waits (blocking, up to 15 s) for it to exit, then
/// kills it.
fn stop_child(mut child: Child, signal: Signal) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_buffers_follow_the_machine_within_bounds() {
        assert_eq!(shared_buffers_mb(None), 128, "unknown memory: PostgreSQL's default");
        assert_eq!(shared_buffers_mb(Some(512)), 128);
        assert_eq!(shared_buffers_mb(Some(4096)), 512);
        assert_eq!(shared_buffers_mb(Some(24 * 1024)), 1024);
        assert!(total_memory_mb().is_some_and(|mb| mb > 0), "read from /proc/meminfo");
    }
}
