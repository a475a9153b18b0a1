//! medic's run journal in PostgreSQL: the same records, states and promises as the SQLite
//! journal (`medic-journal`), for a run whose journal must outlive the machine that runs
//! it, and that `medic status` and `medic approve` reach from anywhere.
//!
//! One database holds many runs; every table is keyed by run id (see
//! `migrations/0001_journal.sql`). [`PgJournal`] is a run's writer: one connection that
//! commits whatever is queued in one transaction, `append_durable` resolving after the
//! COMMIT returned (so, with `synchronous_commit` on, after the server's WAL flush, and
//! with a synchronous standby, after the standby's); a session advisory lock on the run id
//! keeps a second writer out while the first one's connection lives. [`PgReader`] reads a
//! run and records approvals. [`PgTarget`] is the `postgres://` URL: never a password on
//! the command line, TLS verified unless the server is on loopback or a Unix socket.
//!
//! The schema is versioned: `medic.schema_version` lists the numbered migrations applied
//! (in one transaction), and a database migrated by a newer medic is refused.
//!
//! [`server`] starts a throwaway PostgreSQL for tests and benchmarks.

mod conn;
mod journal;
mod reader;
pub mod server;
mod target;
pub mod work;
mod work_status;

pub use conn::SCHEMA_VERSION;
pub use journal::{PgJournal, list_runs, resolve_run};
pub use reader::PgReader;
pub use target::{PgTarget, Source, TargetError, URL_ENV, is_postgres_url};
pub use work_status::{ReclaimedCall, WorkStatus, WorkerState, ZoneWork, work_status};

pub(crate) use journal::now_ms;
