//! The seam between the SSH driver (Deep Security commands, facts, reboot-and-wait) and an
//! SSH library. The driver only ever asks "run this command line on that endpoint before
//! this deadline"; [`crate::ssh::Ssh2Transport`] answers it with libssh2, and another
//! library (russh, the `openssh` crate) can be added as a second implementation without
//! touching the driver or the executor.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use secrecy::SecretString;

use super::capture::Captured;

/// Where to connect and as whom.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// An IP address or a DNS name, as the inventory gives it; also the name looked up in
    /// `known_hosts`.
    pub address: String,
    pub port: u16,
    pub user: String,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.address.contains(':') {
            write!(f, "{}@[{}]:{}", self.user, self.address, self.port)
        } else {
            write!(f, "{}@{}:{}", self.user, self.address, self.port)
        }
    }
}

/// One command line for the remote login shell. It must already be quoted for that shell
/// (see [`crate::ssh::quote`]); the transport sends it as is.
#[derive(Debug)]
pub struct RemoteCommand {
    pub line: String,
    /// Written to the command's standard input, then end-of-file. Secrets go here, never
    /// in `line` (which the remote `ps`, audit logs and sshd's logs can show).
    pub stdin: Option<SecretString>,
    /// The command (and the connection it needs) must be done by then.
    pub deadline: Instant,
    /// `line` is POSIX sh and reads no input, so it may run in the connection's long-lived
    /// shell session instead of a session of its own (see [`crate::ssh::Ssh2Transport`]).
    pub shared_shell: bool,
}

impl RemoteCommand {
    pub fn new(line: impl Into<String>, timeout: Duration) -> Self {
        RemoteCommand {
            line: line.into(),
            stdin: None,
            deadline: Instant::now() + timeout,
            shared_shell: false,
        }
    }

    /// The same command, allowed to run in the connection's shell session.
    pub fn in_shared_shell(mut self) -> Self {
        self.shared_shell = true;
        self
    }
}

/// How the remote command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    /// Killed by a signal (`KILL`, `TERM`, ...).
    Signal(String),
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// What the remote command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit: Exit,
    pub stdout: Captured,
    pub stderr: Captured,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.exit == Exit::Code(0)
    }
}

/// Why a command could not be run (or its end could not be observed). A non-zero exit is
/// not an error here: it is an [`ExecOutput`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("cannot connect to {endpoint}: {message}")]
    Connect { endpoint: String, message: String },
    #[error("{0}")]
    HostKey(#[from] super::known_hosts::HostKeyError),
    #[error("ssh handshake with {endpoint} failed: {message}")]
    Handshake { endpoint: String, message: String },
    #[error("authentication as `{user}` on {endpoint} failed (tried: {tried})")]
    Auth {
        endpoint: String,
        user: String,
        tried: String,
    },
    #[error(
        "{endpoint}: no result within {after:?} (the command was stopped, its outcome is unknown)"
    )]
    Timeout { endpoint: String, after: Duration },
    #[error(
        "{endpoint}: connection lost while the command ran ({message}); its outcome is unknown"
    )]
    Lost { endpoint: String, message: String },
    #[error("{endpoint}: {message}")]
    Other { endpoint: String, message: String },
}

impl TransportError {
    /// True when the command was certainly never started on the host: the host was not
    /// reached, not trusted or refused us.
    pub fn nothing_done(&self) -> bool {
        matches!(
            self,
            TransportError::Connect { .. }
                | TransportError::HostKey(_)
                | TransportError::Handshake { .. }
                | TransportError::Auth { .. }
        )
    }
}

pub type TransportFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A way to run commands on hosts over SSH.
///
/// Implementations keep at most one connection per endpoint and reuse it; the futures they
/// return are cancel-safe: dropping one stops waiting *and* tears down the connection the
/// command was using, so nothing is left blocked.
pub trait Transport: Send + Sync {
    fn exec<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        cmd: RemoteCommand,
    ) -> TransportFuture<'a, Result<ExecOutput, TransportError>>;

    /// Drops the connection to `endpoint`, if any (e.g. after a reboot); the next
    /// [`Transport::exec`] connects again.
    fn disconnect<'a>(&'a self, endpoint: &'a Endpoint) -> TransportFuture<'a, ()>;
}
