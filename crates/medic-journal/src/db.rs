//! The schema, its migrator and the connection settings shared by the writer, the readers
//! and `approve`.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::error::JournalError;

/// One entry per schema version; `PRAGMA user_version` is the number of entries applied.
/// Append only: a released entry is never edited.
const MIGRATIONS: &[&str] = &[
    // 1. Keyed tables are WITHOUT ROWID: one b-tree instead of a table plus its index.
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
     CREATE TABLE events(seq INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, step TEXT,
                         kind TEXT NOT NULL, attempt INTEGER, detail TEXT);
     CREATE TABLE steps(step TEXT PRIMARY KEY, state TEXT NOT NULL, attempt INTEGER NOT NULL,
                        updated_ms INTEGER NOT NULL, detail TEXT) WITHOUT ROWID;
     CREATE TABLE timers(key TEXT PRIMARY KEY, kind TEXT NOT NULL, due_ms INTEGER NOT NULL)
                        WITHOUT ROWID;
     CREATE TABLE approvals(gate TEXT PRIMARY KEY, approved_ms INTEGER NOT NULL,
                            by TEXT NOT NULL) WITHOUT ROWID;",
];

pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

const PAGE_SIZE: u32 = 16384;

const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

pub(crate) const SQL_EVENT: &str =
    "INSERT INTO events(ts_ms, step, kind, attempt, detail) VALUES (?1, ?2, ?3, ?4, ?5)";
pub(crate) const SQL_STEP: &str = "INSERT INTO steps(step, state, attempt, updated_ms, detail)
     VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT(step) DO UPDATE SET state = excluded.state, attempt = excluded.attempt,
        updated_ms = excluded.updated_ms, detail = excluded.detail";
pub(crate) const SQL_META: &str = "INSERT INTO meta(key, value) VALUES (?1, ?2)
     ON CONFLICT(key) DO UPDATE SET value = excluded.value";
pub(crate) const SQL_TIMER_SET: &str = "INSERT INTO timers(key, kind, due_ms) VALUES (?1, ?2, ?3)
     ON CONFLICT(key) DO UPDATE SET kind = excluded.kind, due_ms = excluded.due_ms";
pub(crate) const SQL_TIMER_CLEAR: &str = "DELETE FROM timers WHERE key = ?1";

/// Records an approval unless the id has one (the first stands), with its `gate.approved`
/// history entry; true when it was new. For [`crate::approve`] and the run's own writer.
pub(crate) fn insert_approval(
    conn: &Connection,
    now: i64,
    gate: &str,
    by: &str,
) -> rusqlite::Result<bool> {
    let added = conn
        .prepare_cached(
            "INSERT INTO approvals(gate, approved_ms, by) VALUES (?1, ?2, ?3)
         ON CONFLICT(gate) DO NOTHING",
        )?
        .execute((gate, now, by))?;
    if added == 1 {
        let detail = serde_json::json!({ "gate": gate, "by": by }).to_string();
        conn.prepare_cached(SQL_EVENT)?.execute((
            now,
            None::<&str>,
            crate::model::EventKind::GateApproved.as_str(),
            None::<u32>,
            &detail,
        ))?;
    }
    Ok(added == 1)
}

/// Opens the connection that writes (the run's writer thread, or `approve`). The file must
/// exist: creating it is the caller's job, so that it gets mode 0600 before SQLite sees it.
pub(crate) fn open_writer(path: &Path, fresh: bool) -> Result<Connection, JournalError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| JournalError::open(path, e))?;
    let setup = || -> rusqlite::Result<String> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        if fresh {
            // Only settable before the first write. Larger pages mean fewer b-tree pages to
            // touch and checkpoint per record; the journal has no small random updates.
            conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        }
        // WAL lets `medic status` read while the run writes; FULL because NORMAL may lose
        // the last commits on power loss, and those are the "started" intents.
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        conn.execute_batch(
            "PRAGMA synchronous=FULL;
             PRAGMA foreign_keys=ON;
             PRAGMA temp_store=MEMORY;
             PRAGMA cache_size=-32768;
             PRAGMA journal_size_limit=67108864;
             PRAGMA wal_autocheckpoint=16384;",
        )?;
        conn.set_prepared_statement_cache_capacity(16);
        Ok(mode)
    };
    let mode = setup().map_err(|e| JournalError::open(path, e))?;
    // Without WAL, readers in other processes would block the run's commits.
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(JournalError::Corrupt {
            path: path.to_owned(),
            detail: format!("journal_mode is {mode}, expected wal"),
        });
    }
    Ok(conn)
}

/// Opens a read-only connection: it can never take the write lock away from the run.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, JournalError> {
    std::fs::metadata(path).map_err(|source| JournalError::Io {
        path: path.to_owned(),
        source,
    })?;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| JournalError::open(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| JournalError::open(path, e))?;
    Ok(conn)
}

pub(crate) fn user_version(conn: &Connection, path: &Path) -> Result<i64, JournalError> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| JournalError::open(path, e))
}

/// Refuses a file that is not a journal of the version this build reads.
pub(crate) fn check_version(conn: &Connection, path: &Path) -> Result<(), JournalError> {
    match user_version(conn, path)? {
        0 => Err(JournalError::NotAJournal {
            path: path.to_owned(),
        }),
        SCHEMA_VERSION => Ok(()),
        found => Err(JournalError::UnsupportedVersion {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        }),
    }
}

/// Brings the schema up to [`SCHEMA_VERSION`], one transaction per step so a crash leaves a
/// consistent version behind.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), JournalError> {
    let found = user_version(conn, path)?;
    if !(0..=SCHEMA_VERSION).contains(&found) {
        return Err(JournalError::UnsupportedVersion {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (version, sql) in (found + 1..).zip(MIGRATIONS.iter().skip(found as usize)) {
        let mut step = || -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", version)?;
            tx.commit()
        };
        step().map_err(|e| JournalError::open(path, e))?;
    }
    Ok(())
}
