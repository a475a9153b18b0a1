//! What any journal backend provides, so that the executor never names one.
//!
//! Two traits, both object-safe: [`JournalRead`] (what a resume and `medic status` read:
//! meta values, step states, timers, approvals) and [`JournalStore`] (what a run appends).
//! The executor is generic over `J: JournalStore + ?Sized`, so the SQLite journal is called
//! without dynamic dispatch while a caller that picks a backend at run time can still pass
//! a `&dyn JournalStore`.
//!
//! The one promise every backend must keep is [`JournalStore::append_durable`]: the
//! returned [`Durable`] resolves only once the record is committed (on disk for SQLite, in
//! the database for a server), because the executor acts on a "started" record only then.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::error::JournalError;
use crate::model::{Approval, EventKind, EventRow, Record, StepRow, Timer};

/// What a journal holds, read back. Each call reads one consistent committed state; a
/// record appended but not yet committed is not seen (flush first).
pub trait JournalRead {
    /// A text `meta` value (see [`crate::meta_keys`]).
    fn meta(&self, key: &str) -> Result<Option<String>, JournalError>;
    /// A binary `meta` value (the plan).
    fn meta_blob(&self, key: &str) -> Result<Option<Vec<u8>>, JournalError>;
    /// The current state of every step, ordered by step id.
    fn steps(&self) -> Result<Vec<StepRow>, JournalError>;
    /// Pending waits, soonest first.
    fn timers(&self) -> Result<Vec<Timer>, JournalError>;
    /// Approvals recorded so far, from any process.
    fn approvals(&self) -> Result<Vec<Approval>, JournalError>;
    /// The steps named by history entries of `kind`, each once with the `seq` of its
    /// first such entry, in that order (what `medic status` asks of the history).
    fn steps_with_event(&self, kind: EventKind) -> Result<Vec<(i64, String)>, JournalError>;
    /// History entries with `seq > after`, oldest first, at most `limit` of them (what
    /// `medic report` reads, page by page; pass the last `seq` seen for the next page).
    fn events_since(&self, after: i64, limit: usize) -> Result<Vec<EventRow>, JournalError>;
}

/// A run's journal: records appended in order, some of them durably before the run acts.
///
/// Appends never block: a backend queues them and commits in the background, in the order
/// they were appended (across clones of one handle). Once a commit fails, every later
/// append, durable wait and flush reports that failure: nothing after a lost record may be
/// written, or a resume would see a later record without an earlier one.
pub trait JournalStore: JournalRead + Send + Sync {
    /// Where the journal is, as an operator names it in a command (`--journal` value).
    fn location(&self) -> &Path;
    /// Queues a record for the next commit.
    fn append(&self, rec: Record) -> Result<(), JournalError>;
    /// Queues a record now (keeping its place among later appends) and resolves once the
    /// commit containing it has returned.
    fn append_durable(&self, rec: Record) -> Durable;
    /// Resolves once everything appended before it is committed.
    fn flush(&self) -> Durable;
}

/// A pending durable acknowledgement: resolves when the backend has committed (or failed
/// to commit) what it was given for. One small channel per durable append, as before the
/// trait existed; no boxing.
#[must_use = "a durable append means nothing until it is awaited"]
pub struct Durable(State);

enum State {
    Done(Option<Result<(), JournalError>>),
    Waiting(oneshot::Receiver<Result<(), JournalError>>),
}

impl Durable {
    /// Already decided: a backend that commits synchronously, or refused the record at once.
    pub fn ready(result: Result<(), JournalError>) -> Durable {
        Durable(State::Done(Some(result)))
    }

    /// A pending acknowledgement, and the [`Ack`] that the committing side answers.
    /// `location` names the journal if the ack is dropped unanswered.
    pub fn pending(location: &Arc<Path>) -> (Ack, Durable) {
        let (tx, rx) = oneshot::channel();
        (
            Ack {
                tx: Some(tx),
                location: Arc::clone(location),
            },
            Durable(State::Waiting(rx)),
        )
    }
}

impl Future for Durable {
    type Output = Result<(), JournalError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            State::Done(r) => Poll::Ready(r.take().unwrap_or_else(|| {
                Err(JournalError::Writer {
                    path: PathBuf::new(),
                    message: "acknowledgement polled after it resolved".to_owned(),
                })
            })),
            State::Waiting(rx) => Pin::new(rx).poll(cx).map(|r| {
                // `Ack` answers on drop, so a closed channel means it was leaked.
                r.unwrap_or_else(|_| {
                    Err(JournalError::Writer {
                        path: PathBuf::new(),
                        message: "the journal stopped before acknowledging".to_owned(),
                    })
                })
            }),
        }
    }
}

/// The committing side of a [`Durable`]. Dropped unanswered (a writer that died), it
/// answers that the writer stopped, so no durable wait hangs.
pub struct Ack {
    tx: Option<oneshot::Sender<Result<(), JournalError>>>,
    location: Arc<Path>,
}

impl Ack {
    pub fn send(mut self, result: Result<(), JournalError>) {
        if let Some(tx) = self.tx.take() {
            // The waiter may have given up (future dropped); nothing to tell it.
            let _ = tx.send(result);
        }
    }

    /// The journal this ack is for, to name it in an error.
    pub fn location(&self) -> &Path {
        &self.location
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Err(JournalError::Writer {
                path: self.location.to_path_buf(),
                message: "writer thread stopped".to_owned(),
            }));
        }
    }
}

/// Upper bound on records per writer transaction, so a producer that outruns the store
/// still gets its durable acknowledgements at a bounded interval (and SQLite's WAL stays
/// bounded).
const MAX_BATCH: usize = 65_536;

/// Adds to `batch` what is already queued (`try_next` answers without waiting), up to
/// `MAX_BATCH`: every backend's writer commits one such batch a transaction.
#[inline]
pub fn fill_batch(batch: &mut Vec<Queued>, mut try_next: impl FnMut() -> Option<Queued>) {
    while batch.len() < MAX_BATCH {
        match try_next() {
            Some(m) => batch.push(m),
            None => break,
        }
    }
}

/// What a journal handle queues for its writer, in append order.
pub enum Queued {
    /// A record stamped when it was appended; `ack` is answered once it is committed.
    Record {
        ts_ms: i64,
        rec: crate::model::Record,
        ack: Option<Ack>,
    },
    /// Answered once everything queued before it is committed.
    Flush(Ack),
}

impl Queued {
    /// The acknowledgement to answer once this message's batch commits (or fails).
    #[inline]
    pub fn into_ack(self) -> Option<Ack> {
        match self {
            Queued::Record { ack, .. } => ack,
            Queued::Flush(ack) => Some(ack),
        }
    }
}
