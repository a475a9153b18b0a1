//! The [`Transport`] on libssh2 (the `ssh2` crate), made safe to use under tokio.
//!
//! libssh2 is blocking C code whose session is one mutex inside, so each live connection
//! is an **actor**: one OS thread owns the `TcpStream`, the `Session` and every `Channel`,
//! and async tasks send it jobs over a bounded channel and wait on a oneshot. Channels and
//! sessions are created *and dropped* on that thread (a `Channel` drop can block: ssh2-rs
//! #165). A semaphore bounds the live connections; when it is exhausted the least recently
//! used idle connection is closed to make room.
//!
//! Deadlines really unblock: after the handshake the session is non-blocking and the
//! actor polls the socket itself (stdout and stderr read alternately, so a full stderr
//! window can never stall a stdout read, each capped to its head and tail), checking the
//! deadline and sending keepalives between polls; and every wait on the async side shuts
//! the socket down through a control handle (a `try_clone` of the stream) when the
//! deadline passes or the future is dropped, which ends any libssh2 call still blocked
//! (the connect and handshake are blocking, bounded by `set_timeout`).
//!
//! Commands marked `shared_shell` (POSIX lines without stdin) run in one long-lived `sh`
//! per connection, started on first use ([`SHARED_SHELL`]): sshd starts a login shell for
//! every session, ~3 ms of the host's CPU, where the shared shell forks once per command.
//! Its end-of-command markers carry a per-connection random tag and a sequence number, so
//! no output ends a command early; if the shell dies mid-command the connection is dropped
//! like a lost one (the command may have run).
//!
//! Host keys are checked by [`super::known_hosts`] after the handshake and before any
//! authentication, with the negotiation restricted beforehand to the key types the files
//! list for the host.

use std::collections::HashMap;
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use secrecy::{ExposeSecret as _, SecretString};
use ssh2::{BlockDirections, ErrorCode, MethodType, Session};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::capture::Captured;
use super::config::{SshConfig, SshConfigError};
use super::identity::Identity;
use super::known_hosts::{self, HostKeyError, Verdict};
use super::transport::{
    Endpoint, ExecOutput, Exit, RemoteCommand, Transport, TransportError, TransportFuture,
};

/// libssh2's "would block" code.
const EAGAIN: i32 = -37;
/// libssh2's "timed out" code (a blocking call ran past `set_timeout`).
const LIBSSH2_ERROR_TIMEOUT: i32 = -9;
/// Jobs queued for one connection at most (steps of a host run one at a time).
const QUEUE: usize = 4;

mod auth;
mod connection;
mod pool;
mod shell;
#[expect(
    unsafe_code,
    reason = "FFI: libssh2_userauth_publickey and its sign callback"
)]
mod sign;

use auth::*;
use connection::*;
use pool::*;
use shell::*;

/// What the transport needs from [`SshConfig`].
struct Settings {
    known_hosts: known_hosts::Cache,
    learn_file: Option<PathBuf>,
    accept_new: bool,
    host_key_events: Option<known_hosts::HostKeyEvents>,
    use_agent: bool,
    agent_socket: Option<PathBuf>,
    identity_files: Vec<PathBuf>,
    /// Per identity file, the key parsed once when this module can sign with it itself.
    identities: Vec<Option<Arc<Identity>>>,
    passphrase: Option<SecretString>,
    connect_timeout: Duration,
    keepalive: Duration,
    output_cap: usize,
}

/// Counters, for tests and the run's summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Connections established (authenticated) so far.
    pub connects: u64,
    /// Of those, logins signed here with a key parsed once (not re-read by libssh2).
    pub signed_here: u64,
    /// Connection threads alive now.
    pub live: usize,
    /// The most connection threads ever alive at once.
    pub max_live: usize,
}

#[derive(Default)]
struct Counters {
    connects: AtomicU64,
    signed_here: AtomicU64,
    live: AtomicUsize,
    max_live: AtomicUsize,
}

/// SSH over libssh2; see the module docs.
pub struct Ssh2Transport {
    inner: Arc<Inner>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Conn>>>;

struct Inner {
    settings: Arc<Settings>,
    slots: Mutex<HashMap<Endpoint, Slot>>,
    permits: Arc<Semaphore>,
    counters: Arc<Counters>,
}

/// The async side's handle on a live connection.
struct Conn {
    tx: SyncSender<Job>,
    control: Arc<Control>,
    last_used: Instant,
}

/// Shared by the actor and the async side: the way to kill a connection from outside.
#[derive(Default)]
struct Control {
    sock: Mutex<Option<TcpStream>>,
    dead: AtomicBool,
}

impl Control {
    fn lock(&self) -> MutexGuard<'_, Option<TcpStream>> {
        self.sock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the connection dead and shuts its socket down, which makes any libssh2 call
    /// blocked on it return.
    fn kill(&self) {
        self.dead.store(true, Ordering::SeqCst);
        if let Some(s) = self.lock().as_ref() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }
}

/// Kills the connection when dropped armed: the future waiting on it was dropped
/// (cancelled) or its deadline passed.
struct KillOnDrop(Option<Arc<Control>>);

impl KillOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.kill();
        }
    }
}

struct Job {
    cmd: RemoteCommand,
    reply: oneshot::Sender<Result<ExecOutput, ExecError>>,
}

enum ExecError {
    /// The connection was found broken before the command was sent (an idle connection
    /// the server dropped): safe to run again on a new one.
    Stale {
        cmd: RemoteCommand,
        message: String,
    },
    Fatal(TransportError),
}

impl Ssh2Transport {
    pub fn new(cfg: &SshConfig) -> Result<Ssh2Transport, SshConfigError> {
        if cfg.max_connections == 0 {
            return Err(SshConfigError::NoConnections);
        }
        let settings = Settings {
            known_hosts: known_hosts::Cache::new(cfg.known_hosts_files()),
            learn_file: cfg.learn_file().map(PathBuf::from),
            accept_new: cfg.accept_new_host_keys,
            host_key_events: cfg.host_key_events.clone(),
            use_agent: cfg.use_agent,
            agent_socket: cfg.agent_socket.clone(),
            identity_files: cfg.identity_files.clone(),
            identities: cfg
                .identity_files
                .iter()
                .map(|f| preload(f, cfg.passphrase.as_ref()))
                .collect(),
            passphrase: cfg.passphrase.clone(),
            connect_timeout: cfg.connect_timeout,
            keepalive: cfg.keepalive_interval.max(Duration::from_secs(2)),
            output_cap: cfg.output_cap.max(1),
        };
        Ok(Ssh2Transport {
            inner: Arc::new(Inner {
                settings: Arc::new(settings),
                slots: Mutex::new(HashMap::new()),
                permits: Arc::new(Semaphore::new(cfg.max_connections)),
                counters: Arc::new(Counters::default()),
            }),
        })
    }

    pub fn stats(&self) -> TransportStats {
        let c = &self.inner.counters;
        TransportStats {
            connects: c.connects.load(Ordering::SeqCst),
            signed_here: c.signed_here.load(Ordering::SeqCst),
            live: c.live.load(Ordering::SeqCst),
            max_live: c.max_live.load(Ordering::SeqCst),
        }
    }
}

impl Transport for Ssh2Transport {
    fn exec<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        cmd: RemoteCommand,
    ) -> TransportFuture<'a, Result<ExecOutput, TransportError>> {
        Box::pin(self.inner.exec(endpoint, cmd))
    }

    fn disconnect<'a>(&'a self, endpoint: &'a Endpoint) -> TransportFuture<'a, ()> {
        Box::pin(async move {
            let slot = self.inner.slot(endpoint);
            let mut guard = slot.lock().await;
            if let Some(c) = guard.take() {
                c.control.kill();
            }
        })
    }
}
