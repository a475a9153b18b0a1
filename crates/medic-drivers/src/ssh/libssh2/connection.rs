//! One connection's actor thread and its non-blocking session: connect, handshake, host
//! key check, login, then commands in their own session or in the shared shell.

use super::*;

pub(super) struct Actor {
    pub(super) settings: Arc<Settings>,
    pub(super) ep: Endpoint,
    pub(super) deadline: Instant,
    pub(super) control: Arc<Control>,
    pub(super) counters: Arc<Counters>,
}

impl Actor {
    pub(super) fn run(
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
pub(super) struct Connection {
    pub(super) sess: Session,
    /// A clone of the session's socket, to poll on.
    pub(super) sock: TcpStream,
    pub(super) ep: Endpoint,
    pub(super) cap: usize,
    /// The shared shell session, once a command asked for it.
    pub(super) shell: Option<SharedShell>,
    /// Logged in with a key parsed once ([`Identity`]).
    pub(super) signed_here: bool,
}

pub(super) enum Nb {
    Timeout,
    Ssh(ssh2::Error),
    Io(std::io::Error),
}

pub(super) fn is_eagain(e: &ssh2::Error) -> bool {
    e.code() == ErrorCode::Session(EAGAIN)
}

impl Connection {
    pub(super) fn open(
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

    pub(super) fn lost(&self, message: impl Into<String>) -> ExecError {
        ExecError::Fatal(TransportError::Lost {
            endpoint: self.ep.to_string(),
            message: message.into(),
        })
    }

    pub(super) fn timeout(&self, started: Instant) -> ExecError {
        ExecError::Fatal(TransportError::Timeout {
            endpoint: self.ep.to_string(),
            after: started.elapsed(),
        })
    }

    /// Waits until the socket is ready in the direction libssh2 is blocked on, the
    /// deadline, or the next keepalive, whichever is first; sends the keepalive.
    pub(super) fn wait(&self, deadline: Instant) -> Result<(), Nb> {
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
    pub(super) fn nb<T>(
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

    pub(super) fn nb_err(&self, what: &str, started: Instant, e: Nb) -> ExecError {
        match e {
            Nb::Timeout => self.timeout(started),
            Nb::Ssh(e) => self.lost(format!("{what}: {e}")),
            Nb::Io(e) => self.lost(format!("{what}: {e}")),
        }
    }

    pub(super) fn exec(
        &mut self,
        cmd: RemoteCommand,
        control: &Control,
    ) -> Result<ExecOutput, ExecError> {
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
    pub(super) fn open_channel(
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
    pub(super) fn exec_shared(
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
                let start = match crate::ssh::quote::sh_quote(SHARED_SHELL) {
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
    pub(super) fn exec_session(
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

    pub(super) fn keepalive(&self) -> Result<(), ssh2::Error> {
        match self.sess.keepalive_send() {
            Ok(_) => Ok(()),
            Err(e) if is_eagain(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Says goodbye if the socket lets us without waiting, then shuts it down.
    pub(super) fn close(&mut self) {
        let _ = self
            .sess
            .disconnect(None, "medic: connection no longer needed", None);
        let _ = self.sock.shutdown(Shutdown::Both);
    }
}

/// A tag no remote output can guess by accident: std's randomly keyed hasher over the
/// time and the thread.
pub(super) fn random_tag() -> u64 {
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

pub(super) fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
}
