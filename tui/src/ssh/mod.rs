//! `admin-tui ssh-serve`: the console served by a built-in SSH server
//! (russh), so operators run `ssh -p 2222 host` instead of logging in to the
//! machine.
//!
//! - Public keys only: a client is let in when its key is registered in
//!   `public.admin_keys` (`orgstack admin-keys add`) and the key's user is
//!   an active platform admin. Passwords, keyboard-interactive and unknown
//!   keys are refused.
//! - One console per session: each shell on a pty gets its own [`App`] and
//!   event loop ([`run_console`], the same as the local console's), acting
//!   as the key's admin, so every action is audited with them. `exec` and
//!   subsystem requests are refused.
//! - The host key (ed25519) is generated on the first start and kept in a
//!   file (`SSH_HOST_KEY`), so clients see the same key after a restart.
//! - Each session's start and end are logged with the admin's email, the
//!   client's address and the bytes sent; keys appear only as fingerprints.
//!
//! [`App`]: crate::app::App

pub mod input;
pub mod term;

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::Context;
use crossterm::event::Event;
use futures::StreamExt;
use orgstack::accounts::Actor;
use orgstack::accounts::admin_keys::fingerprint_of;
use orgstack::config::Config;
use orgstack::http::AppState;
use ratatui::Terminal;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::{HashAlg, LineEnding, PrivateKey};
use russh::server::{
    Auth, ChannelOpenHandle, Handle, Handler, Msg, PublicKeyOffer, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, MethodKind, MethodSet, Pty};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, watch};

use self::term::{SharedSize, SshBackend, SshWriter};
use crate::run_console;

/// `admin-tui ssh-serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "SSH_LISTEN_ADDR", value_name = "ADDR", default_value = "127.0.0.1:2222")]
    pub listen: SocketAddr,
    /// The host key file (OpenSSH ed25519 private key), created on the first
    /// start; default: $STATE_DIRECTORY, $XDG_STATE_HOME/orgstack or
    /// ~/.local/state/orgstack, then ssh_host_ed25519_key.
    #[arg(long, env = "SSH_HOST_KEY", value_name = "PATH")]
    pub host_key: Option<PathBuf>,
}

/// How long sessions may take to say goodbye on SIGTERM / Ctrl-C.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves the console over SSH until SIGTERM or Ctrl-C.
pub async fn serve(args: ServeArgs, config: Config) -> anyhow::Result<()> {
    let key_path = match args.host_key {
        Some(path) => path,
        None => default_host_key_path()?,
    };
    let host_key = load_or_create_host_key(&key_path)?;
    let state = orgstack::app::connect_now(config).await?;
    match state.accounts.list_admin_keys().await {
        Ok(keys) if keys.is_empty() => tracing::warn!(
            "no SSH keys are registered yet: nobody can sign in (`orgstack admin-keys add`)"
        ),
        Ok(_) => {}
        Err(err) => anyhow::bail!("reading the admin keys (has `orgstack migrate` run?): {err}"),
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let ssh_config = Arc::new(russh::server::Config {
        server_id: russh::SshId::Standard(
            format!("SSH-2.0-orgstack-admin-tui_{}", env!("CARGO_PKG_VERSION")).into(),
        ),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_secs(1),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key.clone()],
        // The console ticks every second, so an idle session is not idle
        // traffic-wise; keepalives find clients that vanished.
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    });
    tracing::info!(
        listen = %listener.local_addr().unwrap_or(args.listen),
        host_key = %key_path.display(),
        fingerprint = %host_key.public_key().fingerprint(HashAlg::Sha256),
        "serving admin-tui over SSH"
    );
    // First the consoles are asked to end (each says goodbye and closes its
    // channel), then what is left of the connections is disconnected.
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (disconnect_tx, disconnect_rx) = watch::channel(false);
    let live = Arc::new(Live::default());
    let connections = Arc::new(Live::default());
    let stop = orgstack::http::shutdown_signal();
    tokio::pin!(stop);
    while let Some((socket, peer)) =
        orgstack::http::accept_until(&listener, stop.as_mut(), "SSH").await
    {
        let wire = Arc::new(AtomicU64::new(0));
        let connection = Connection {
            state: state.clone(),
            peer,
            admin: None,
            channels: HashMap::new(),
            wire: wire.clone(),
            shutdown: shutdown_rx.clone(),
            live: live.clone(),
        };
        let ssh_config = ssh_config.clone();
        let mut disconnect = disconnect_rx.clone();
        let connected = connections.started();
        tokio::spawn(async move {
            let _connected = connected;
            let stream = Counted { inner: socket, written: wire };
            let session = match russh::server::run_stream(ssh_config, stream, connection).await {
                Ok(session) => session,
                Err(err) => {
                    tracing::debug!(client = %peer, error = %err, "SSH handshake failed");
                    return;
                }
            };
            let handle = session.handle();
            tokio::select! {
                result = session => if let Err(err) = result {
                    tracing::debug!(client = %peer, error = %err, "SSH connection ended with an error");
                },
                _ = async { disconnect.wait_for(|stop| *stop).await.map(|_| ()) } => {
                    let _ = handle
                        .disconnect(russh::Disconnect::ByApplication, "admin-tui is shutting down".into(), String::new())
                        .await;
                }
            }
        });
    }
    let sessions = live.count.load(Ordering::Relaxed);
    tracing::info!(sessions, "stopping: closing the consoles");
    let _ = shutdown_tx.send(true);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, live.all_ended()).await;
    // Clients whose console closed leave by themselves; the others are told.
    let _ = tokio::time::timeout(Duration::from_secs(1), connections.all_ended()).await;
    let _ = disconnect_tx.send(true);
    // Time for the disconnect messages to go out.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

/// The consoles (or connections) running, to wait for them on shutdown.
#[derive(Debug, Default)]
struct Live {
    count: AtomicUsize,
    ended: Notify,
}

impl Live {
    fn started(self: &Arc<Self>) -> LiveGuard {
        self.count.fetch_add(1, Ordering::Relaxed);
        LiveGuard(self.clone())
    }

    async fn all_ended(&self) {
        loop {
            let ended = self.ended.notified();
            if self.count.load(Ordering::Relaxed) == 0 {
                return;
            }
            ended.await;
        }
    }
}

/// One running console (or connection); its drop counts it out.
#[derive(Debug)]
struct LiveGuard(Arc<Live>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::Relaxed);
        self.0.ended.notify_waiters();
    }
}

/// Where the host key is kept unless `SSH_HOST_KEY` says otherwise.
fn default_host_key_path() -> anyhow::Result<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let dir = var("STATE_DIRECTORY") // systemd's StateDirectory=
        .or_else(|| var("XDG_STATE_HOME").map(|d| d.join("orgstack")))
        .or_else(|| var("HOME").map(|h| h.join(".local/state/orgstack")))
        .context("no place for the SSH host key: set SSH_HOST_KEY (or HOME)")?;
    Ok(dir.join("ssh_host_ed25519_key"))
}

/// Reads the host key at `path`, or creates it (ed25519, mode 0600, its
/// folder 0700 if missing) on the first start.
pub fn load_or_create_host_key(path: &Path) -> anyhow::Result<PrivateKey> {
    if path.exists() {
        let key = PrivateKey::read_openssh_file(path).with_context(|| {
            format!("SSH_HOST_KEY {}: cannot read the host key", path.display())
        })?;
        anyhow::ensure!(
            !key.is_encrypted(),
            "SSH_HOST_KEY {}: the host key must not have a passphrase",
            path.display()
        );
        return Ok(key);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("SSH_HOST_KEY: cannot create {}", dir.display()))?;
    }
    let seed: [u8; 32] = rand::random();
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.set_comment("orgstack admin-tui host key");
    let pem = key.to_openssh(LineEnding::LF).context("encoding the new host key")?;
    // create_new: two servers starting at once do not overwrite each other.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("SSH_HOST_KEY {}: cannot create the host key", path.display()))?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("SSH_HOST_KEY {}: cannot write the host key", path.display()))?;
    tracing::info!(
        path = %path.display(),
        fingerprint = %key.public_key().fingerprint(HashAlg::Sha256),
        "created the SSH host key"
    );
    Ok(key)
}

/// The TCP stream of one connection, counting the bytes written to it.
struct Counted {
    inner: TcpStream,
    written: Arc<AtomicU64>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &result {
            self.written.fetch_add(*n as u64, Ordering::Relaxed);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The admin a connection signed in as.
#[derive(Debug, Clone)]
struct SignedIn {
    actor: Actor,
    email: String,
    fingerprint: String,
}

/// A session channel: its pty size until the shell starts, then the
/// console's input.
#[derive(Debug)]
struct ChannelState {
    size: SharedSize,
    pty: bool,
    input: Option<mpsc::UnboundedSender<Event>>,
}

/// One SSH connection (russh calls it a handler).
struct Connection {
    state: AppState,
    peer: SocketAddr,
    admin: Option<SignedIn>,
    channels: HashMap<ChannelId, ChannelState>,
    /// Bytes written to the TCP connection (the SSH protocol, encrypted).
    wire: Arc<AtomicU64>,
    shutdown: watch::Receiver<bool>,
    live: Arc<Live>,
}

impl Connection {
    fn refuse(&self, user: &str, fingerprint: &str, why: &str) -> Auth {
        tracing::info!(client = %self.peer, user, fingerprint, why, "SSH key refused");
        Auth::Reject { proceed_with_methods: None, partial_success: false }
    }

    /// Sends `text` on a channel that cannot run the console, and closes it.
    fn decline(session: &mut Session, channel: ChannelId, text: &str) -> Result<(), russh::Error> {
        session.data(channel, format!("{text}\r\n").into_bytes())?;
        session.exit_status_request(channel, 1)?;
        session.eof(channel)?;
        session.close(channel)
    }
}

impl Handler for Connection {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        })
    }

    async fn auth_password(&mut self, user: &str, _password: &str) -> Result<Auth, Self::Error> {
        tracing::warn!(client = %self.peer, user, "SSH password refused: keys only");
        Ok(Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        })
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let fingerprint = offer.public_key.fingerprint(HashAlg::Sha256).to_string();
        match self.state.accounts.admin_key_exists(&fingerprint).await {
            Ok(true) => Ok(Auth::Accept),
            Ok(false) => Ok(self.refuse(user, &fingerprint, "not a registered key")),
            Err(err) => {
                tracing::error!(error = %err, "reading the admin keys");
                Ok(self.refuse(user, &fingerprint, "the keys cannot be read now"))
            }
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let fingerprint = match fingerprint_of(key.public_key) {
            Ok(parsed) => parsed.fingerprint,
            Err(_) => key.public_key.fingerprint(HashAlg::Sha256).to_string(),
        };
        match self.state.accounts.admin_for_key(&fingerprint).await {
            Ok(Some((_, admin))) => {
                tracing::info!(
                    client = %self.peer,
                    admin = %admin.email,
                    fingerprint,
                    "SSH key accepted"
                );
                self.admin = Some(SignedIn {
                    actor: Actor::User { id: admin.id, email: admin.email.clone() },
                    email: admin.email,
                    fingerprint,
                });
                Ok(Auth::Accept)
            }
            Ok(None) => Ok(self.refuse(
                user,
                &fingerprint,
                "not registered, or its user is no longer an active platform admin",
            )),
            Err(err) => {
                tracing::error!(error = %err, "reading the admin keys");
                Ok(self.refuse(user, &fingerprint, "the keys cannot be read now"))
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.admin.is_none() {
            reply.reject(russh::ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        }
        // The channel's messages come through this handler; the channel
        // object itself is not needed.
        let id = channel.id();
        drop(channel);
        self.channels
            .insert(id, ChannelState { size: SharedSize::new(80, 24), pty: false, input: None });
        reply.accept().await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get_mut(&channel) {
            Some(state) if state.input.is_none() => {
                state.size.set(col_width, row_height);
                state.pty = true;
                session.channel_success(channel)
            }
            _ => session.channel_failure(channel),
        }
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(admin), Some(state)) = (self.admin.clone(), self.channels.get_mut(&channel))
        else {
            return session.channel_failure(channel);
        };
        if state.input.is_some() {
            return session.channel_failure(channel);
        }
        session.channel_success(channel)?;
        if !state.pty {
            return Self::decline(
                session,
                channel,
                "admin-tui needs a terminal: connect with `ssh -t`",
            );
        }
        let (tx, rx) = mpsc::unbounded_channel();
        state.input = Some(tx);
        let console = ConsoleSession {
            handle: session.handle(),
            channel,
            size: state.size.clone(),
            state: self.state.clone(),
            admin,
            peer: self.peer,
            wire: self.wire.clone(),
            shutdown: self.shutdown.clone(),
            live: self.live.started(),
        };
        tokio::spawn(console.run(rx));
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Self::decline(session, channel, "admin-tui runs no commands; connect without one")
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(state) = self.channels.get(&channel) {
            let (width, height) = state.size.set(col_width, row_height);
            if let Some(input) = &state.input {
                let _ = input.send(Event::Resize(width, height));
            }
        }
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(input) = self.channels.get(&channel).and_then(|s| s.input.as_ref()) {
            for key in input::parse_keys(data) {
                let _ = input.send(Event::Key(key));
            }
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The client will send nothing more: the console ends.
        if let Some(state) = self.channels.get_mut(&channel) {
            state.input = None;
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        Ok(())
    }
}

/// One console on one channel, until the operator quits or the client goes.
struct ConsoleSession {
    handle: Handle,
    channel: ChannelId,
    size: SharedSize,
    state: AppState,
    admin: SignedIn,
    peer: SocketAddr,
    wire: Arc<AtomicU64>,
    shutdown: watch::Receiver<bool>,
    live: LiveGuard,
}

/// Changes within this long of a first one go out in the same frame (see
/// [`run_console`]): a key's echo waits at most this, and a dashboard refresh
/// usually lands in its tick's frame instead of making a frame of its own.
const FRAME_DELAY: Duration = Duration::from_millis(50);

/// Enter the alternate screen, clear it and hide the cursor.
const ENTER: &[u8] = b"\x1b[?1049h\x1b[2J\x1b[?25l";
/// Show the cursor and leave the alternate screen.
const LEAVE: &[u8] = b"\x1b[?25h\x1b[?1049l";

impl ConsoleSession {
    async fn run(self, mut input: mpsc::UnboundedReceiver<Event>) {
        let ConsoleSession { handle, channel, size, state, admin, peer, wire, shutdown, live } =
            self;
        let mut stopping = shutdown.clone();
        let started = Instant::now();
        let wire_at_start = wire.load(Ordering::Relaxed);
        let sent = Arc::new(AtomicU64::new(0));
        let (out_tx, out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let sender = tokio::spawn(send_frames(handle.clone(), channel, out_rx, sent.clone()));
        let size_now = size.get();
        tracing::info!(
            admin = %admin.email,
            client = %peer,
            fingerprint = %admin.fingerprint,
            width = size_now.width,
            height = size_now.height,
            "console session started"
        );
        let result = async {
            let mut backend = SshBackend::new(SshWriter::new(out_tx), size);
            backend.write_all(ENTER)?;
            backend.flush()?;
            let mut terminal = Terminal::new(backend)?;
            let events = futures::stream::poll_fn(move |cx| input.poll_recv(cx)).map(Ok);
            let stop = Box::pin(async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            });
            let events = events.take_until(stop);
            let outcome =
                run_console(&mut terminal, events, state, admin.actor.clone(), FRAME_DELAY).await;
            let writer = terminal.backend_mut();
            let _ = writer.write_all(LEAVE).and_then(|()| writer.flush());
            if *shutdown.borrow() {
                let _ = writer
                    .write_all(b"admin-tui: the server is shutting down\r\n")
                    .and_then(|()| writer.flush());
            }
            outcome
        }
        .await;
        // Every frame out before the channel closes.
        let _ = sender.await;
        let status = u32::from(result.is_err());
        if let Err(err) = &result {
            tracing::error!(admin = %admin.email, client = %peer, error = format!("{err:#}"), "console failed");
            let _ = handle.data(channel, format!("admin-tui: {err:#}\r\n").into_bytes()).await;
        }
        let _ = handle.exit_status_request(channel, status).await;
        let _ = handle.eof(channel).await;
        let _ = handle.close(channel).await;
        let seconds = started.elapsed().as_secs_f64();
        let bytes = sent.load(Ordering::Relaxed);
        tracing::info!(
            admin = %admin.email,
            client = %peer,
            seconds = format!("{seconds:.1}"),
            bytes_sent = bytes,
            wire_bytes_sent = wire.load(Ordering::Relaxed) - wire_at_start,
            "console session ended"
        );
        drop(live);
    }
}

/// Sends the console's frames on the channel in order, waiting for the
/// client's window; frames that queued up meanwhile go out as one message.
async fn send_frames(
    handle: Handle,
    channel: ChannelId,
    mut frames: mpsc::UnboundedReceiver<Vec<u8>>,
    sent: Arc<AtomicU64>,
) {
    while let Some(mut data) = frames.recv().await {
        while let Ok(more) = frames.try_recv() {
            data.extend_from_slice(&more);
        }
        let len = data.len() as u64;
        if handle.data(channel, data).await.is_err() {
            return; // the connection is gone
        }
        sent.fetch_add(len, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_key_is_created_once_private_and_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state/orgstack/ssh_host_ed25519_key");
        let first = load_or_create_host_key(&path).expect("created");
        assert_eq!(first.algorithm(), russh::keys::Algorithm::Ed25519);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode =
            std::fs::metadata(path.parent().expect("dir")).expect("dir").permissions().mode()
                & 0o777;
        assert_eq!(dir_mode, 0o700);
        let again = load_or_create_host_key(&path).expect("read back");
        assert_eq!(again.public_key().key_data(), first.public_key().key_data());

        std::fs::write(&path, "not a key").expect("write");
        let err = load_or_create_host_key(&path).expect_err("garbage");
        assert!(format!("{err:#}").contains("SSH_HOST_KEY"), "{err:#}");
    }
}
