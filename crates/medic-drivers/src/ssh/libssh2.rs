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

impl Inner {
    fn slots(&self) -> MutexGuard<'_, HashMap<Endpoint, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slot(&self, ep: &Endpoint) -> Slot {
        self.slots().entry(ep.clone()).or_default().clone()
    }

    async fn exec(&self, ep: &Endpoint, cmd: RemoteCommand) -> Result<ExecOutput, TransportError> {
        let started = Instant::now();
        let deadline = cmd.deadline;
        let timeout = || TransportError::Timeout {
            endpoint: ep.to_string(),
            after: deadline.saturating_duration_since(started),
        };
        let t_deadline = tokio::time::Instant::from_std(deadline);
        let slot = self.slot(ep);
        let Ok(mut guard) = tokio::time::timeout_at(t_deadline, slot.lock()).await else {
            return Err(timeout());
        };
        let mut cmd = Some(cmd);
        for _attempt in 0..2 {
            let Some(job_cmd) = cmd.take() else { break };
            if guard.as_ref().is_none_or(|c| c.control.is_dead()) {
                *guard = None;
                *guard = Some(self.connect(ep, deadline).await?);
            }
            let Some(conn) = guard.as_mut() else { break };
            conn.last_used = Instant::now();
            let (reply, wait) = oneshot::channel();
            match conn.tx.try_send(Job {
                cmd: job_cmd,
                reply,
            }) {
                Ok(()) => {}
                Err(TrySendError::Disconnected(job)) => {
                    // The actor ended (keepalive failed): connect again.
                    cmd = Some(job.cmd);
                    *guard = None;
                    continue;
                }
                Err(TrySendError::Full(_)) => {
                    return Err(TransportError::Other {
                        endpoint: ep.to_string(),
                        message: "too many commands queued on one connection".to_owned(),
                    });
                }
            }
            let kill = KillOnDrop(Some(conn.control.clone()));
            match tokio::time::timeout_at(t_deadline, wait).await {
                Ok(Ok(Ok(out))) => {
                    kill.disarm();
                    return Ok(out);
                }
                Ok(Ok(Err(ExecError::Stale { cmd: c, message }))) => {
                    tracing::debug!(endpoint = %ep, %message, "stale connection, reconnecting");
                    drop(kill);
                    *guard = None;
                    cmd = Some(c);
                }
                Ok(Ok(Err(ExecError::Fatal(e)))) => {
                    drop(kill);
                    *guard = None;
                    return Err(e);
                }
                Ok(Err(_)) => {
                    drop(kill);
                    *guard = None;
                    return Err(TransportError::Lost {
                        endpoint: ep.to_string(),
                        message: "the connection thread ended".to_owned(),
                    });
                }
                Err(_) => {
                    drop(kill);
                    *guard = None;
                    return Err(timeout());
                }
            }
        }
        Err(TransportError::Lost {
            endpoint: ep.to_string(),
            message: "the connection broke twice before the command could be sent".to_owned(),
        })
    }

    /// Starts a connection thread for `ep` and waits until it is authenticated.
    async fn connect(&self, ep: &Endpoint, slot_deadline: Instant) -> Result<Conn, TransportError> {
        let permit = self.permit(ep, slot_deadline).await?;
        let deadline = slot_deadline.min(Instant::now() + self.settings.connect_timeout);
        let t_deadline = tokio::time::Instant::from_std(deadline);
        let control = Arc::new(Control::default());
        let (tx, rx) = sync_channel(QUEUE);
        let (ready_tx, ready_rx) = oneshot::channel();
        let actor = Actor {
            settings: self.settings.clone(),
            ep: ep.clone(),
            deadline,
            control: control.clone(),
            counters: self.counters.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("medic-ssh {}:{}", ep.address, ep.port))
            .spawn(move || actor.run(rx, ready_tx, permit));
        if let Err(e) = spawned {
            return Err(TransportError::Other {
                endpoint: ep.to_string(),
                message: format!("cannot start a connection thread: {e}"),
            });
        }
        let kill = KillOnDrop(Some(control.clone()));
        match tokio::time::timeout_at(t_deadline, ready_rx).await {
            Ok(Ok(Ok(()))) => {
                kill.disarm();
                Ok(Conn {
                    tx,
                    control,
                    last_used: Instant::now(),
                })
            }
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(TransportError::Other {
                endpoint: ep.to_string(),
                message: "the connection thread ended during the connect".to_owned(),
            }),
            Err(_) => Err(TransportError::Connect {
                endpoint: ep.to_string(),
                message: format!(
                    "no ssh session within {:?} (connect, handshake and authentication)",
                    self.settings.connect_timeout
                ),
            }),
        }
    }

    /// A connection slot, waiting until `deadline` for one: while none is free, idle
    /// connections of other endpoints are closed as they become idle.
    async fn permit(
        &self,
        ep: &Endpoint,
        deadline: Instant,
    ) -> Result<OwnedSemaphorePermit, TransportError> {
        loop {
            if let Ok(p) = self.permits.clone().try_acquire_owned() {
                return Ok(p);
            }
            self.evict_idle(ep);
            let now = Instant::now();
            if now >= deadline {
                return Err(TransportError::Connect {
                    endpoint: ep.to_string(),
                    message:
                        "every connection slot stayed busy until the deadline (max_connections)"
                            .to_owned(),
                });
            }
            let wait = (deadline - now).min(Duration::from_millis(50));
            if let Ok(Ok(p)) =
                tokio::time::timeout(wait, self.permits.clone().acquire_owned()).await
            {
                return Ok(p);
            }
        }
    }

    /// Closes the least recently used idle connection of another endpoint, if any; its
    /// thread then ends and gives its permit back.
    fn evict_idle(&self, except: &Endpoint) {
        let slots = self.slots();
        let mut oldest: Option<(Instant, tokio::sync::MutexGuard<'_, Option<Conn>>)> = None;
        for (ep, slot) in slots.iter() {
            if ep == except {
                continue;
            }
            let Ok(guard) = slot.try_lock() else { continue };
            let Some(used) = guard.as_ref().map(|c| c.last_used) else {
                continue;
            };
            if oldest.as_ref().is_none_or(|(t, _)| used < *t) {
                oldest = Some((used, guard));
            }
        }
        if let Some((_, mut guard)) = oldest
            && let Some(c) = guard.take()
        {
            c.control.kill();
        }
    }
}

/// Keeps the live-connection counters true for the life of an actor thread.
struct LiveGuard(Arc<Counters>);

impl LiveGuard {
    fn new(c: Arc<Counters>) -> Self {
        let now = c.live.fetch_add(1, Ordering::SeqCst) + 1;
        c.max_live.fetch_max(now, Ordering::SeqCst);
        LiveGuard(c)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Actor {
    settings: Arc<Settings>,
    ep: Endpoint,
    deadline: Instant,
    control: Arc<Control>,
    counters: Arc<Counters>,
}

impl Actor {
    fn run(
        self,
        jobs: Receiver<Job>,
        ready: oneshot::Sender<Result<(), TransportError>>,
        permit: OwnedSemaphorePermit,
    ) {
        let _permit = permit;
        let _live = LiveGuard::new(self.counters.clone());
        let mut conn =
            match Connection::open(&self.settings, &self.ep, self.deadline, &self.control) {
                Ok(c) => c,
                Err(e) => {
                    self.control.kill();
                    let _ = ready.send(Err(e));
                    return;
                }
            };
        self.counters.connects.fetch_add(1, Ordering::SeqCst);
        if conn.signed_here {
            self.counters.signed_here.fetch_add(1, Ordering::SeqCst);
        }
        if ready.send(Ok(())).is_err() {
            conn.close();
            return;
        }
        loop {
            match jobs.recv_timeout(self.settings.keepalive) {
                Ok(job) => {
                    let result = conn.exec(job.cmd, &self.control);
                    let broken = result.is_err();
                    let _ = job.reply.send(result);
                    if broken {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = conn.keepalive() {
                        tracing::debug!(endpoint = %self.ep, error = %e, "keepalive failed, closing");
                        break;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if self.control.is_dead() {
                break;
            }
        }
        conn.close();
        self.control.kill();
        // `conn` (session, socket) is dropped here, on this thread.
    }
}

/// An authenticated, non-blocking session. Lives on its actor thread only.
struct Connection {
    sess: Session,
    /// A clone of the session's socket, to poll on.
    sock: TcpStream,
    ep: Endpoint,
    cap: usize,
    /// The shared shell session, once a command asked for it.
    shell: Option<SharedShell>,
    /// Logged in with a key parsed once ([`Identity`]).
    signed_here: bool,
}

/// The connection's long-lived POSIX `sh`: it reads one request line at a time (a token
/// and a command line), runs the command in a subshell with stdin from /dev/null, then
/// writes `\n<token> <exit code>\n` to stdout and `\n<token>\n` to stderr. Everything
/// before those markers is the command's output. Newlines of a command line (inside single
/// quotes, as [`super::quote::sh_join`] writes them) travel as `'"$nl"'`.
const SHARED_SHELL: &str = r#"nl='
'
while IFS= read -r medic_req; do
  medic_tok=${medic_req%% *}
  ( eval "${medic_req#* }" ) </dev/null
  medic_rc=$?
  printf '\n%s %s\n' "$medic_tok" "$medic_rc"
  printf '\n%s\n' "$medic_tok" >&2
done
"#;

struct SharedShell {
    channel: ssh2::Channel,
    /// Random per connection, so no output can end a command early by chance.
    tag: u64,
    seq: u64,
}

/// `line` as one request line of the shared shell, or `None` when it cannot be one (a
/// newline outside single quotes, double quotes around one).
fn request_line(line: &str) -> Option<String> {
    if !line.contains('\n') {
        return Some(line.to_owned());
    }
    let mut out = String::with_capacity(line.len() + 16);
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '\n' if quoted => out.push_str("'\"$nl\"'"),
            '\n' | '"' if !quoted => return None,
            '\\' if !quoted => {
                out.push(c);
                match chars.next() {
                    Some('\n') | None => return None,
                    Some(n) => out.push(n),
                }
            }
            _ => out.push(c),
        }
    }
    (!quoted).then_some(out)
}

/// Cuts one command's output out of a shared-shell stream: the bytes before `marker` go
/// to the capture (all but a marker's length, kept back in case the marker is split
/// across reads), what follows the marker is the trailer.
struct Framer {
    marker: Vec<u8>,
    pending: Vec<u8>,
    trailer: Option<Vec<u8>>,
}

impl Framer {
    fn new(marker: Vec<u8>) -> Self {
        Framer {
            marker,
            pending: Vec::new(),
            trailer: None,
        }
    }

    fn push(&mut self, data: &[u8], capture: &mut Captured) {
        if let Some(t) = self.trailer.as_mut() {
            t.extend_from_slice(data);
            return;
        }
        self.pending.extend_from_slice(data);
        let m = self.marker.len();
        if let Some(at) = self
            .pending
            .windows(m)
            .position(|w| w == self.marker.as_slice())
        {
            capture.push(&self.pending[..at]);
            self.trailer = Some(self.pending[at + m..].to_vec());
            self.pending = Vec::new();
        } else if self.pending.len() >= m {
            let n = self.pending.len() - (m - 1);
            capture.push(&self.pending[..n]);
            self.pending.drain(..n);
        }
    }
}

enum Nb {
    Timeout,
    Ssh(ssh2::Error),
    Io(std::io::Error),
}

fn is_eagain(e: &ssh2::Error) -> bool {
    e.code() == ErrorCode::Session(EAGAIN)
}

impl Connection {
    fn open(
        s: &Settings,
        ep: &Endpoint,
        deadline: Instant,
        control: &Control,
    ) -> Result<Connection, TransportError> {
        let endpoint = ep.to_string();
        let connect_err = |message: String| TransportError::Connect {
            endpoint: endpoint.clone(),
            message,
        };
        let left = || deadline.saturating_duration_since(Instant::now());
        let addrs: Vec<SocketAddr> = (ep.address.as_str(), ep.port)
            .to_socket_addrs()
            .map_err(|e| connect_err(format!("cannot resolve the address: {e}")))?
            .collect();
        let mut tcp = None;
        let mut last = String::from("no address");
        for a in addrs {
            if left().is_zero() {
                last = "the connect deadline passed".to_owned();
                break;
            }
            match TcpStream::connect_timeout(&a, left()) {
                Ok(t) => {
                    tcp = Some(t);
                    break;
                }
                Err(e) => last = format!("{a}: {e}"),
            }
        }
        let tcp = tcp.ok_or_else(|| connect_err(last))?;
        let _ = tcp.set_nodelay(true);
        let io_err = |e: std::io::Error| connect_err(e.to_string());
        *control.lock() = Some(tcp.try_clone().map_err(io_err)?);
        if control.is_dead() {
            return Err(connect_err("cancelled".to_owned()));
        }
        let sock = tcp.try_clone().map_err(io_err)?;
        let ssh_err = |what: &str, e: ssh2::Error| {
            let timed_out = e.code() == ErrorCode::Session(LIBSSH2_ERROR_TIMEOUT);
            if timed_out || control.is_dead() || left().is_zero() {
                connect_err(format!("{what} did not finish before the deadline"))
            } else {
                TransportError::Handshake {
                    endpoint: endpoint.clone(),
                    message: format!("{what}: {e}"),
                }
            }
        };
        let mut sess = Session::new().map_err(|e| ssh_err("session", e))?;
        sess.set_tcp_stream(tcp);
        sess.set_timeout(millis(left()));
        let known = s.known_hosts.get()?;
        let listed = known.key_types(&ep.address, ep.port);
        let supported = sess
            .supported_algs(MethodType::HostKey)
            .map_err(|e| ssh_err("listing host key algorithms", e))?;
        let algs: Vec<&str> = listed
            .iter()
            .flat_map(|t| known_hosts::algorithms_for_key_type(t).iter().copied())
            .filter(|a| supported.contains(a))
            .collect();
        if !algs.is_empty() {
            sess.method_pref(MethodType::HostKey, &algs.join(","))
                .map_err(|e| ssh_err("host key preference", e))?;
        }
        if let Err(e) = sess.handshake() {
            let mut err = ssh_err("handshake", e);
            if let TransportError::Handshake { message, .. } = &mut err
                && !algs.is_empty()
            {
                message.push_str(&format!(
                    " (only {} accepted: the key types known_hosts lists for this host)",
                    listed.join(", ")
                ));
            }
            return Err(err);
        }
        let host = known_hosts::host_token(&ep.address, ep.port);
        let blob = sess
            .host_key()
            .map(|(b, _)| b.to_vec())
            .ok_or(HostKeyError::NoKey { host: host.clone() })?;
        let refused = |e: HostKeyError| {
            if let Some(ev) = &s.host_key_events {
                ev.refused(ep, &e);
            }
            // The step's failure (or the pre-flight's finding) says it to the operator.
            tracing::debug!(endpoint = %ep, error = %e, "host key refused");
            TransportError::from(e)
        };
        match known.check(&ep.address, ep.port, &blob) {
            Verdict::Match => {}
            Verdict::Refused(e) => return Err(refused(e)),
            Verdict::NotFound => match (&s.learn_file, s.accept_new) {
                (Some(file), true) => {
                    known_hosts::append(file, &ep.address, ep.port, &blob)?;
                    if let Some(ev) = &s.host_key_events {
                        ev.accepted(ep, &blob, file);
                    }
                    tracing::warn!(
                        endpoint = %ep,
                        fingerprint = %known_hosts::fingerprint_sha256(&blob),
                        file = %file.display(),
                        "new host key accepted and recorded"
                    );
                }
                _ => return Err(refused(known.unknown(&ep.address, ep.port, &blob))),
            },
        }
        let signed_here = authenticate(s, &sess, ep)?;
        sess.set_timeout(0);
        sess.set_blocking(false);
        sess.set_keepalive(true, u32::try_from(s.keepalive.as_secs()).unwrap_or(15));
        Ok(Connection {
            sess,
            sock,
            ep: ep.clone(),
            cap: s.output_cap,
            shell: None,
            signed_here,
        })
    }

    fn lost(&self, message: impl Into<String>) -> ExecError {
        ExecError::Fatal(TransportError::Lost {
            endpoint: self.ep.to_string(),
            message: message.into(),
        })
    }

    fn timeout(&self, started: Instant) -> ExecError {
        ExecError::Fatal(TransportError::Timeout {
            endpoint: self.ep.to_string(),
            after: started.elapsed(),
        })
    }

    /// Waits until the socket is ready in the direction libssh2 is blocked on, the
    /// deadline, or the next keepalive, whichever is first; sends the keepalive.
    fn wait(&self, deadline: Instant) -> Result<(), Nb> {
        let next = match self.sess.keepalive_send() {
            Ok(secs) => Duration::from_secs(u64::from(secs.max(1))),
            Err(e) if is_eagain(&e) => Duration::from_millis(50),
            Err(e) => return Err(Nb::Ssh(e)),
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(Nb::Timeout);
        }
        let (flags, cap) = match self.sess.block_directions() {
            BlockDirections::Inbound => (PollFlags::IN, Duration::from_secs(1)),
            BlockDirections::Outbound => (PollFlags::OUT, Duration::from_secs(1)),
            BlockDirections::Both => (PollFlags::IN | PollFlags::OUT, Duration::from_secs(1)),
            BlockDirections::None => (PollFlags::IN, Duration::from_millis(5)),
        };
        let wait = (deadline - now).min(next).min(cap);
        let ts = Timespec {
            tv_sec: i64::try_from(wait.as_secs()).unwrap_or(1),
            tv_nsec: i64::from(wait.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&self.sock, flags)];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
            Err(e) => Err(Nb::Io(e.into())),
        }
    }

    /// Repeats a non-blocking libssh2 call until it stops saying "would block".
    fn nb<T>(
        &self,
        deadline: Instant,
        mut f: impl FnMut() -> Result<T, ssh2::Error>,
    ) -> Result<T, Nb> {
        loop {
            match f() {
                Ok(v) => return Ok(v),
                Err(e) if is_eagain(&e) => self.wait(deadline)?,
                Err(e) => return Err(Nb::Ssh(e)),
            }
        }
    }

    fn nb_err(&self, what: &str, started: Instant, e: Nb) -> ExecError {
        match e {
            Nb::Timeout => self.timeout(started),
            Nb::Ssh(e) => self.lost(format!("{what}: {e}")),
            Nb::Io(e) => self.lost(format!("{what}: {e}")),
        }
    }

    fn exec(&mut self, cmd: RemoteCommand, control: &Control) -> Result<ExecOutput, ExecError> {
        if cmd.shared_shell
            && cmd.stdin.is_none()
            && let Some(req) = request_line(&cmd.line)
        {
            return self.exec_shared(cmd, &req, control);
        }
        self.exec_session(cmd, control)
    }

    /// A new channel for `cmd`. Failing to open one means the connection broke while idle,
    /// before anything was sent, so `cmd` comes back to be sent on a new connection.
    fn open_channel(
        &self,
        cmd: RemoteCommand,
        started: Instant,
    ) -> Result<(ssh2::Channel, RemoteCommand), ExecError> {
        match self.nb(cmd.deadline, || self.sess.channel_session()) {
            Ok(c) => Ok((c, cmd)),
            Err(Nb::Timeout) => Err(self.timeout(started)),
            Err(Nb::Ssh(e)) => Err(ExecError::Stale {
                cmd,
                message: e.to_string(),
            }),
            Err(Nb::Io(e)) => Err(ExecError::Stale {
                cmd,
                message: e.to_string(),
            }),
        }
    }

    /// Runs `cmd` in the shared shell, starting it first if needed.
    fn exec_shared(
        &mut self,
        mut cmd: RemoteCommand,
        req: &str,
        control: &Control,
    ) -> Result<ExecOutput, ExecError> {
        let started = Instant::now();
        let deadline = cmd.deadline;
        let mut shell = match self.shell.take() {
            Some(sh) => sh,
            None => {
                let (mut channel, c) = self.open_channel(cmd, started)?;
                cmd = c;
                let start = match super::quote::sh_quote(SHARED_SHELL) {
                    Ok(q) => format!("exec sh -c {q}"),
                    Err(e) => return Err(self.lost(e.to_string())),
                };
                self.nb(deadline, || channel.exec(&start))
                    .map_err(|e| self.nb_err("starting the shell session", started, e))?;
                SharedShell {
                    channel,
                    tag: random_tag(),
                    seq: 0,
                }
            }
        };
        shell.seq += 1;
        let token = format!("medic-{:016x}-{}", shell.tag, shell.seq);
        let request = format!("{token} {req}\n");
        let mut written = 0;
        while written < request.len() {
            if Instant::now() >= deadline {
                return Err(self.timeout(started));
            }
            match shell.channel.write(&request.as_bytes()[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => self
                    .wait(deadline)
                    .map_err(|e| self.nb_err("sending the command", started, e))?,
                // Nothing ran: the shell only acts on a whole line.
                Err(e) if written == 0 => {
                    return Err(ExecError::Stale {
                        cmd,
                        message: e.to_string(),
                    });
                }
                Err(e) => return Err(self.lost(format!("sending the command: {e}"))),
            }
        }
        let mut framers = [
            Framer::new(format!("\n{token} ").into_bytes()),
            Framer::new(format!("\n{token}\n").into_bytes()),
        ];
        let mut out = [Captured::new(self.cap), Captured::new(self.cap)];
        let mut buf = vec![0u8; 32 * 1024];
        let code = loop {
            if Instant::now() >= deadline {
                return Err(self.timeout(started));
            }
            if control.is_dead() {
                return Err(self.lost("cancelled"));
            }
            let mut progress = false;
            for (id, (framer, capture)) in framers.iter_mut().zip(out.iter_mut()).enumerate() {
                let mut stream = shell.channel.stream(i32::try_from(id).unwrap_or(0));
                for _ in 0..8 {
                    match stream.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            framer.push(&buf[..n], capture);
                            progress = true;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return Err(self.lost(format!("reading output: {e}"))),
                    }
                }
            }
            let code = framers[0]
                .trailer
                .as_deref()
                .and_then(|t| t.iter().position(|&b| b == b'\n').map(|end| &t[..end]));
            if let (Some(code), Some(_)) = (code, &framers[1].trailer) {
                let code = std::str::from_utf8(code)
                    .ok()
                    .and_then(|c| c.parse::<i32>().ok());
                match code {
                    Some(c) => break c,
                    None => return Err(self.lost("the shell session sent a garbled exit code")),
                }
            }
            if shell.channel.eof() {
                return Err(self.lost(
                    "the shell session ended before the command did (connection lost or host rebooting)",
                ));
            }
            if !progress {
                self.wait(deadline)
                    .map_err(|e| self.nb_err("waiting for output", started, e))?;
            }
        };
        self.shell = Some(shell);
        let [stdout, stderr] = out;
        Ok(ExecOutput {
            exit: Exit::Code(code),
            stdout,
            stderr,
        })
    }

    /// Runs `cmd` in an SSH session of its own.
    fn exec_session(
        &mut self,
        cmd: RemoteCommand,
        control: &Control,
    ) -> Result<ExecOutput, ExecError> {
        let started = Instant::now();
        let deadline = cmd.deadline;
        let (mut channel, cmd) = self.open_channel(cmd, started)?;
        self.nb(deadline, || channel.exec(&cmd.line))
            .map_err(|e| self.nb_err("starting the command", started, e))?;
        let input: &[u8] = cmd
            .stdin
            .as_ref()
            .map(|s| s.expose_secret().as_bytes())
            .unwrap_or_default();
        let mut written = 0;
        let mut eof_sent = false;
        let mut out = [Captured::new(self.cap), Captured::new(self.cap)];
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            if Instant::now() >= deadline {
                return Err(self.timeout(started));
            }
            if control.is_dead() {
                return Err(self.lost("cancelled"));
            }
            let mut progress = false;
            if !eof_sent {
                if written < input.len() {
                    match channel.write(&input[written..]) {
                        Ok(n) => {
                            written += n;
                            progress = true;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(e) => return Err(self.lost(format!("writing stdin: {e}"))),
                    }
                }
                if written == input.len() {
                    match channel.send_eof() {
                        Ok(()) => {
                            eof_sent = true;
                            progress = true;
                        }
                        Err(e) if is_eagain(&e) => {}
                        Err(e) => return Err(self.lost(format!("closing stdin: {e}"))),
                    }
                }
            }
            for (id, capture) in out.iter_mut().enumerate() {
                let mut stream = channel.stream(i32::try_from(id).unwrap_or(0));
                // A few chunks per stream per turn, so neither starves the other.
                for _ in 0..8 {
                    match stream.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            capture.push(&buf[..n]);
                            progress = true;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return Err(self.lost(format!("reading output: {e}"))),
                    }
                }
            }
            if channel.eof() {
                break;
            }
            if !progress {
                self.wait(deadline)
                    .map_err(|e| self.nb_err("waiting for output", started, e))?;
            }
        }
        self.nb(deadline, || channel.wait_close())
            .map_err(|e| self.nb_err("closing the channel", started, e))?;
        let signal = channel.exit_signal().ok().and_then(|s| s.exit_signal);
        let exit = match signal {
            Some(sig) => Exit::Signal(sig),
            None => Exit::Code(
                channel
                    .exit_status()
                    .map_err(|e| self.lost(format!("reading the exit status: {e}")))?,
            ),
        };
        let [stdout, stderr] = out;
        Ok(ExecOutput {
            exit,
            stdout,
            stderr,
        })
    }

    fn keepalive(&self) -> Result<(), ssh2::Error> {
        match self.sess.keepalive_send() {
            Ok(_) => Ok(()),
            Err(e) if is_eagain(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Says goodbye if the socket lets us without waiting, then shuts it down.
    fn close(&mut self) {
        let _ = self
            .sess
            .disconnect(None, "medic: connection no longer needed", None);
        let _ = self.sock.shutdown(Shutdown::Both);
    }
}

/// A tag no remote output can guess by accident: std's randomly keyed hasher over the
/// time and the thread.
fn random_tag() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write(format!("{:?}", std::thread::current().id()).as_bytes());
    h.finish()
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
}

/// The key in `file` parsed for signing here, or `None` to leave it to libssh2 (another
/// key type or format, a missing file, a wrong passphrase: libssh2 then reports it per
/// host as it always did).
fn preload(file: &std::path::Path, passphrase: Option<&SecretString>) -> Option<Arc<Identity>> {
    if !file.exists() {
        return None;
    }
    match Identity::load(file, passphrase) {
        Ok(id) => id.map(Arc::new),
        Err(e) => {
            tracing::debug!(file = %file.display(), error = %e, "ssh key left to libssh2");
            None
        }
    }
}

/// Public-key authentication where medic signs the challenge with a key it parsed once
/// ([`Identity`]), through libssh2's sign callback, which the `ssh2` crate does not wrap.
#[expect(
    unsafe_code,
    reason = "FFI: libssh2_userauth_publickey and its sign callback"
)]
mod sign {
    use std::ffi::{CString, c_char, c_int, c_uchar, c_void};

    use libssh2_sys::LIBSSH2_SESSION;
    use ssh2::Session;

    use super::Identity;

    type SignFn = extern "C" fn(
        *mut LIBSSH2_SESSION,
        *mut *mut c_uchar,
        *mut usize,
        *const c_uchar,
        usize,
        *mut *mut c_void,
    ) -> c_int;

    unsafe extern "C" {
        /// libssh2.h: `libssh2_userauth_publickey(session, username, pubkeydata,
        /// pubkeydata_len, sign_callback, abstract)`.
        fn libssh2_userauth_publickey(
            session: *mut LIBSSH2_SESSION,
            username: *const c_char,
            pubkeydata: *const c_uchar,
            pubkeydata_len: usize,
            sign_callback: SignFn,
            abstract_: *mut *mut c_void,
        ) -> c_int;
        /// The session's allocator: `ssh2` creates sessions with libssh2's defaults
        /// (malloc/free), and libssh2 frees the signature with it.
        fn malloc(size: usize) -> *mut c_void;
    }

    /// libssh2's sign callback: `abstract` points at the `Identity`; the signature goes
    /// into a malloc'd buffer that libssh2 frees.
    extern "C" fn sign_challenge(
        _session: *mut LIBSSH2_SESSION,
        sig: *mut *mut c_uchar,
        sig_len: *mut usize,
        data: *const c_uchar,
        data_len: usize,
        abstract_: *mut *mut c_void,
    ) -> c_int {
        if sig.is_null() || sig_len.is_null() || data.is_null() || abstract_.is_null() {
            return -1;
        }
        // SAFETY: `abstract_` is the pointer `userauth` passed, to an `Identity` that
        // outlives the call; `data` is `data_len` bytes owned by libssh2 for the call.
        let (id, data) = unsafe {
            (
                &*((*abstract_) as *const Identity),
                std::slice::from_raw_parts(data, data_len),
            )
        };
        let signature = id.sign(data);
        // SAFETY: a fresh buffer of the signature's size, filled before it is handed over.
        unsafe {
            let buf = malloc(signature.len()).cast::<c_uchar>();
            if buf.is_null() {
                return -1;
            }
            std::ptr::copy_nonoverlapping(signature.as_ptr(), buf, signature.len());
            *sig = buf;
            *sig_len = signature.len();
        }
        0
    }

    /// One `publickey` authentication attempt with `id`; the session is in blocking mode.
    pub(super) fn userauth(sess: &Session, user: &str, id: &Identity) -> Result<(), ssh2::Error> {
        let user = CString::new(user).map_err(|_| {
            ssh2::Error::new(
                ssh2::ErrorCode::Session(-1),
                "the user name contains a NUL byte",
            )
        })?;
        let blob = id.public_blob();
        let mut abstract_ = (id as *const Identity).cast_mut().cast::<c_void>();
        let rc = {
            let mut raw = sess.raw();
            let raw: *mut LIBSSH2_SESSION = &mut *raw;
            // SAFETY: `raw` is the live session (its lock held for the call), `user` is
            // NUL-terminated, `blob` and `abstract_` outlive the call, and the callback
            // only reads through `abstract_`.
            unsafe {
                libssh2_userauth_publickey(
                    raw,
                    user.as_ptr(),
                    blob.as_ptr(),
                    blob.len(),
                    sign_challenge,
                    &mut abstract_,
                )
            }
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(ssh2::Error::last_session_error(sess).unwrap_or_else(|| {
                ssh2::Error::new(
                    ssh2::ErrorCode::Session(rc),
                    "public key authentication failed",
                )
            }))
        }
    }
}

/// The ssh-agent first, then each identity file. Never mentions the passphrase. True
/// when a key parsed here signed the login.
fn authenticate(s: &Settings, sess: &Session, ep: &Endpoint) -> Result<bool, TransportError> {
    let mut tried: Vec<String> = Vec::new();
    if s.use_agent {
        match agent_auth(sess, &ep.user, s.agent_socket.as_deref()) {
            Ok(true) => return Ok(false),
            Ok(false) => tried.push("ssh-agent (no key accepted)".to_owned()),
            Err(e) => tried.push(format!("ssh-agent ({})", e.message())),
        }
    }
    for (file, id) in s.identity_files.iter().zip(&s.identities) {
        if let Some(id) = id {
            match sign::userauth(sess, &ep.user, id) {
                Ok(()) if sess.authenticated() => return Ok(true),
                Ok(()) => tried.push(format!("{} (not accepted)", file.display())),
                Err(e) => tried.push(format!("{} ({})", file.display(), e.message())),
            }
            continue;
        }
        if !file.exists() {
            continue;
        }
        let pass = s.passphrase.as_ref().map(|p| p.expose_secret());
        match sess.userauth_pubkey_file(&ep.user, None, file, pass) {
            Ok(()) if sess.authenticated() => return Ok(false),
            Ok(()) => tried.push(format!("{} (not accepted)", file.display())),
            Err(e) => tried.push(format!("{} ({})", file.display(), e.message())),
        }
    }
    if tried.is_empty() {
        tried.push("nothing: no ssh-agent and no identity file".to_owned());
    }
    Err(TransportError::Auth {
        endpoint: ep.to_string(),
        user: ep.user.clone(),
        tried: tried.join("; "),
    })
}

fn agent_auth(
    sess: &Session,
    user: &str,
    socket: Option<&std::path::Path>,
) -> Result<bool, ssh2::Error> {
    let mut agent = sess.agent()?;
    if let Some(p) = socket {
        agent.set_identity_path(p)?;
    }
    agent.connect()?;
    agent.list_identities()?;
    let mut ok = false;
    for id in agent.identities()? {
        if agent.userauth(user, &id).is_ok() && sess.authenticated() {
            ok = true;
            break;
        }
    }
    let _ = agent.disconnect();
    Ok(ok)
}
