//! The pool of live connections: one slot per endpoint, a bound on live connections,
//! the least recently used idle one closed to make room.

use super::*;

impl Inner {
    pub(super) fn slots(&self) -> MutexGuard<'_, HashMap<Endpoint, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn slot(&self, ep: &Endpoint) -> Slot {
        self.slots().entry(ep.clone()).or_default().clone()
    }

    pub(super) async fn exec(
        &self,
        ep: &Endpoint,
        cmd: RemoteCommand,
    ) -> Result<ExecOutput, TransportError> {
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
    pub(super) async fn connect(
        &self,
        ep: &Endpoint,
        slot_deadline: Instant,
    ) -> Result<Conn, TransportError> {
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
    pub(super) async fn permit(
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
    pub(super) fn evict_idle(&self, except: &Endpoint) {
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
pub(super) struct LiveGuard(Arc<Counters>);

impl LiveGuard {
    pub(super) fn new(c: Arc<Counters>) -> Self {
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
