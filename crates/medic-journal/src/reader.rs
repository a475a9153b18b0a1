//! Reading a journal from any process while a run writes it, and recording approvals.
//!
//! Readers use a read-only connection: in WAL mode they see the last committed batch and
//! never block the writer, so `medic status` in another shell cannot stall a run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior};

use crate::db;
use crate::error::JournalError;
use crate::model::{
    Approval, EventKind, EventRow, RowKind, StepRow, StepState, Timer, TimerKind, now_ms,
    split_detail,
};
use crate::store::JournalRead;

/// A read-only view of a journal. Each call reads one consistent committed state.
pub struct JournalReader {
    conn: Connection,
    path: PathBuf,
}

impl JournalReader {
    pub fn open(path: &Path) -> Result<JournalReader, JournalError> {
        let conn = db::open_reader(path)?;
        db::check_version(&conn, path)?;
        Ok(JournalReader {
            conn,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: rusqlite::Error) -> JournalError {
        JournalError::sqlite(&self.path, e)
    }

    fn corrupt(&self, detail: String) -> JournalError {
        JournalError::Corrupt {
            path: self.path.clone(),
            detail,
        }
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, JournalError> {
        self.meta_value(key)
    }

    /// One meta value, found by a scan of the keys rather than a lookup. `meta` is a
    /// WITHOUT ROWID table, and a b-tree seek compares the key asked for with whole
    /// records: passing a record whose value spills onto overflow pages (the plan, tens of
    /// MiB for a large fleet) reads all of it, so looking `run_id` up could read the plan.
    /// A scan reads each row's key from its first page and only the value asked for.
    fn meta_value<T: rusqlite::types::FromSql>(
        &self,
        key: &str,
    ) -> Result<Option<T>, JournalError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT key, value FROM meta")
            .map_err(|e| self.err(e))?;
        let mut rows = st.query([]).map_err(|e| self.err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let k = row
                .get_ref(0)
                .and_then(|v| Ok(v.as_str()?))
                .map_err(|e| self.err(e))?;
            if k == key {
                return row.get(1).map(Some).map_err(|e| self.err(e));
            }
        }
        Ok(None)
    }

    /// A binary meta value (written with [`crate::Journal::create_with_meta_and_blobs`]).
    pub fn meta_blob(&self, key: &str) -> Result<Option<Vec<u8>>, JournalError> {
        self.meta_value(key)
    }

    /// The current state of one step, if it ever had a transition.
    pub fn step(&self, step: &str) -> Result<Option<StepRow>, JournalError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT step, state, attempt, updated_ms, detail FROM steps WHERE step = ?1",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = st.query([step]).map_err(|e| self.err(e))?;
        match rows.next().map_err(|e| self.err(e))? {
            Some(row) => self.step_row(row).map(Some),
            None => Ok(None),
        }
    }

    /// The current state of every step, ordered by step id.
    pub fn steps(&self) -> Result<Vec<StepRow>, JournalError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT step, state, attempt, updated_ms, detail FROM steps ORDER BY step",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = st.query([]).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            out.push(self.step_row(row)?);
        }
        Ok(out)
    }

    fn step_row(&self, row: &Row<'_>) -> Result<StepRow, JournalError> {
        let read = || -> rusqlite::Result<(String, &str, u32, i64, Option<String>)> {
            Ok((
                row.get(0)?,
                // Borrowed: parsing the state must not allocate per row.
                row.get_ref(1)?.as_str()?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        };
        let (step, state, attempt, updated_ms, text) = read().map_err(|e| self.err(e))?;
        let state = StepState::parse(state)
            .ok_or_else(|| self.corrupt(format!("step {step:?} has unknown state {state:?}")))?;
        let (detail, already_done, note) = split_detail(state, text);
        Ok(StepRow {
            step,
            state,
            attempt,
            updated_ms,
            detail,
            already_done,
            note,
        })
    }

    /// How many steps are in each state; states with no step are absent.
    pub fn counts(&self) -> Result<BTreeMap<StepState, u64>, JournalError> {
        // Counted here rather than with GROUP BY: there is no index on state (it would cost
        // every write), and a sort of a million strings is slower than this scan.
        let mut st = self
            .conn
            .prepare_cached("SELECT state FROM steps")
            .map_err(|e| self.err(e))?;
        let mut rows = st.query([]).map_err(|e| self.err(e))?;
        let mut counts = [0u64; StepState::ALL.len()];
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let state = row
                .get_ref(0)
                .and_then(|v| Ok(v.as_str()?))
                .map_err(|e| self.err(e))?;
            let parsed = StepState::parse(state)
                .ok_or_else(|| self.corrupt(format!("unknown step state {state:?}")))?;
            counts[parsed as usize] += 1;
        }
        Ok(StepState::ALL
            .into_iter()
            .zip(counts)
            .filter(|&(_, n)| n > 0)
            .collect())
    }

    /// Pending waits, soonest first.
    pub fn timers(&self) -> Result<Vec<Timer>, JournalError> {
        let rows: Vec<(String, String, i64)> = self.collect(
            "SELECT key, kind, due_ms FROM timers ORDER BY due_ms, key",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        rows.into_iter()
            .map(|(key, kind, due_ms)| {
                let kind = TimerKind::parse(&kind).ok_or_else(|| {
                    self.corrupt(format!("timer {key:?} has unknown kind {kind:?}"))
                })?;
                Ok(Timer { key, kind, due_ms })
            })
            .collect()
    }

    pub fn approvals(&self) -> Result<Vec<Approval>, JournalError> {
        self.collect(
            "SELECT gate, approved_ms, by FROM approvals ORDER BY approved_ms, gate",
            [],
            approval_row,
        )
    }

    pub fn approval(&self, gate: &str) -> Result<Option<Approval>, JournalError> {
        self.conn
            .prepare_cached("SELECT gate, approved_ms, by FROM approvals WHERE gate = ?1")
            .and_then(|mut st| st.query_row([gate], approval_row).optional())
            .map_err(|e| self.err(e))
    }

    /// History entries with `seq > after`, oldest first, at most `limit` of them; pass the
    /// last `seq` seen to follow a running journal.
    pub fn events_since(&self, after: i64, limit: usize) -> Result<Vec<EventRow>, JournalError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT seq, ts_ms, step, kind, attempt, detail FROM events
                 WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = st.query((after, limit)).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let seq: i64 = r.get(0).map_err(|e| self.err(e))?;
            let kind = r
                .get_ref(3)
                .and_then(|v| Ok(v.as_str()?))
                .map_err(|e| self.err(e))?;
            // A kind this build does not know is a journal it cannot read correctly: named,
            // never guessed at.
            let kind = RowKind::parse(kind)
                .ok_or_else(|| self.corrupt(format!("event {seq} has unknown kind {kind:?}")))?;
            let read = || -> rusqlite::Result<EventRow> {
                Ok(EventRow {
                    seq,
                    ts_ms: r.get(1)?,
                    step: r.get(2)?,
                    kind,
                    attempt: r.get(4)?,
                    detail: r.get(5)?,
                })
            };
            out.push(read().map_err(|e| self.err(e))?);
        }
        Ok(out)
    }

    /// The steps named by history entries of `kind`, each once with the `seq` of its first
    /// such entry, in that order: a question about the history answered by one query
    /// rather than by reading every entry back.
    pub fn steps_with_event(&self, kind: EventKind) -> Result<Vec<(i64, String)>, JournalError> {
        self.collect(
            "SELECT MIN(seq), step FROM events WHERE kind = ?1 AND step IS NOT NULL
             GROUP BY step ORDER BY MIN(seq)",
            [kind.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    /// Runs SQLite's `PRAGMA integrity_check`.
    pub fn check_integrity(&self) -> Result<(), JournalError> {
        let problems: Vec<String> = self.collect("PRAGMA integrity_check", [], |r| r.get(0))?;
        if problems.len() == 1 && problems[0] == "ok" {
            Ok(())
        } else {
            Err(self.corrupt(problems.join("; ")))
        }
    }

    fn collect<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, JournalError> {
        let mut st = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        st.query_map(params, f)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }
}

impl JournalRead for JournalReader {
    fn meta(&self, key: &str) -> Result<Option<String>, JournalError> {
        JournalReader::meta(self, key)
    }
    fn meta_blob(&self, key: &str) -> Result<Option<Vec<u8>>, JournalError> {
        JournalReader::meta_blob(self, key)
    }
    fn steps(&self) -> Result<Vec<StepRow>, JournalError> {
        JournalReader::steps(self)
    }
    fn timers(&self) -> Result<Vec<Timer>, JournalError> {
        JournalReader::timers(self)
    }
    fn approvals(&self) -> Result<Vec<Approval>, JournalError> {
        JournalReader::approvals(self)
    }
    fn steps_with_event(&self, kind: EventKind) -> Result<Vec<(i64, String)>, JournalError> {
        JournalReader::steps_with_event(self, kind)
    }
    fn events_since(&self, after: i64, limit: usize) -> Result<Vec<EventRow>, JournalError> {
        JournalReader::events_since(self, after, limit)
    }
}

fn approval_row(r: &Row<'_>) -> rusqlite::Result<Approval> {
    Ok(Approval {
        gate: r.get(0)?,
        approved_ms: r.get(1)?,
        by: r.get(2)?,
    })
}

/// Records that `by` approved `gate`, from any process, while the run may be writing (the
/// run polls [`JournalReader::approval`] or [`crate::Journal::approvals`]). The first
/// approval of a gate stands; approving again changes nothing. `by` is an operator name,
/// never a credential.
pub fn approve(path: &Path, gate: &str, by: &str) -> Result<(), JournalError> {
    std::fs::metadata(path).map_err(|source| JournalError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut conn = db::open_writer(path, false)?;
    db::check_version(&conn, path)?;
    let now = now_ms();
    let mut write = || -> rusqlite::Result<()> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        db::insert_approval(&tx, now, gate, by)?;
        tx.commit()
    };
    write().map_err(|e| JournalError::sqlite(path, e))
}
