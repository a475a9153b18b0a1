//! medic's durable run journal: the source of truth for resuming a run.
//!
//! A run writes one SQLite file (WAL, `synchronous=FULL`) holding the append-only history
//! (`events`), the current state of every step (`steps`, updated in the same transaction as
//! its event), the waits that must survive a restart (`timers`), the operators' approvals
//! (`approvals`) and the run's identity (`meta`: run id, plan fingerprint, the plan in a
//! compact binary form).
//!
//! Why SQLite and not a JSON Lines file: resume and `medic status` need "current state of
//! every step" queries while a run writes, from another process, and a torn last line or a
//! replay of the whole log is exactly what a crash must not cost us.
//!
//! Writes go through a [`Journal`]: a handle to one writer thread that owns the only write
//! connection of the run, drains whatever is queued and commits it in one transaction.
//! [`Journal::append_durable`] resolves only after the COMMIT containing the record
//! returned, so the executor can make "step started" durable *before* a driver acts.
//! Readers in other processes use [`JournalReader`]; operators approve gates with
//! [`approve`] from another shell while the run goes on.
//!
//! The executor sees a journal only through [`JournalStore`] (append, durable append,
//! flush) and [`JournalRead`] (meta, steps, timers, approvals): [`Journal`] is the SQLite
//! backend, [`MemJournal`] the in-memory one the executor's tests run on. A new backend
//! implements the two traits; see `store.rs` for the promise each method keeps.
//!
//! Nothing here may carry a secret: the only free text is a step's or an event's `detail`,
//! and callers must keep API keys, passphrases and tokens out of it.

mod db;
mod error;
mod mem;
mod model;
mod reader;
mod store;
mod writer;

pub use error::JournalError;
pub use mem::MemJournal;
pub use model::{
    Approval, EventKind, EventRow, Record, RowKind, RunState, StepRow, StepState, Timer, TimerKind,
    detail_text,
};
pub use reader::{JournalReader, approve};
pub use store::{Ack, Durable, JournalRead, JournalStore, Queued, fill_batch};
pub use writer::Journal;

/// Keys of the `meta` table that medic itself writes. Values are plain text, except
/// [`meta_keys::PLAN_BIN`] (a BLOB); none holds a secret.
pub mod meta_keys {
    /// Milliseconds since the Unix epoch when the journal file was created; set by
    /// [`crate::Journal::create`].
    pub const CREATED_MS: &str = "created_ms";
    /// The run's identifier.
    pub const RUN_ID: &str = "run_id";
    /// The plan fingerprint a resume must match.
    pub const PLAN_FINGERPRINT: &str = "plan_fingerprint";
    /// The full plan as `medic.plan/v1` JSON: what journals written before `plan_bin`
    /// hold (resume still reads it when `plan_bin` is absent).
    pub const PLAN_JSON: &str = "plan_json";
    /// The full sealed plan in medic-plan's compact binary form (a BLOB, read with
    /// [`crate::JournalReader::meta_blob`]), so resume needs nothing but the journal and
    /// reads a million-step plan back in a fraction of a second.
    pub const PLAN_BIN: &str = "plan_bin";
}
