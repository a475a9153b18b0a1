//! A journal held in memory: the same records, states and approvals as the SQLite one,
//! committed as soon as they are appended. For the executor's tests (paused time, no
//! writer thread for the clock to jump over) and for runs that need no record (none today).
//! Nothing survives the process; clones share one journal, as a resumed run would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::error::JournalError;
use crate::model::{
    Approval, EventKind, EventRow, Record, RowKind, StepRow, Timer, detail_text, now_ms,
};
use crate::store::{Durable, JournalRead, JournalStore};

/// An in-memory journal; see the module documentation.
#[derive(Clone)]
pub struct MemJournal {
    inner: Arc<Mutex<Mem>>,
    location: Arc<Path>,
}

#[derive(Default)]
struct Mem {
    meta: BTreeMap<String, String>,
    blobs: BTreeMap<String, Vec<u8>>,
    steps: BTreeMap<String, StepRow>,
    events: Vec<EventRow>,
    timers: BTreeMap<String, Timer>,
    approvals: BTreeMap<String, Approval>,
    /// Records still accepted before it behaves as a full disk (`None`: no limit).
    room: Option<usize>,
    full: bool,
}

impl Default for MemJournal {
    fn default() -> Self {
        MemJournal::new()
    }
}

impl MemJournal {
    pub fn new() -> MemJournal {
        MemJournal {
            inner: Arc::default(),
            location: Arc::from(PathBuf::from("memory").as_path()),
        }
    }

    /// A journal holding `meta` and `blobs` from its first moment, as
    /// [`crate::Journal::create_with_meta_and_blobs`] makes one.
    pub fn with_meta(meta: &[(&str, &str)], blobs: &[(&str, &[u8])]) -> MemJournal {
        let j = MemJournal::new();
        {
            let mut m = j.lock();
            for (k, v) in meta {
                m.meta.insert((*k).to_owned(), (*v).to_owned());
            }
            for (k, v) in blobs {
                m.blobs.insert((*k).to_owned(), v.to_vec());
            }
        }
        j
    }

    /// After `records` more records, every append fails as a full disk does (and the
    /// record that hits the limit is not kept), so tests can see a run stop on it.
    pub fn fill_after(&self, records: usize) {
        self.lock().room = Some(records);
    }

    /// Records an approval as `medic approve` does from another process; true when it was
    /// new (the first approval of an id stands).
    pub fn approve(&self, gate: &str, by: &str) -> bool {
        let mut m = self.lock();
        m.approve(now_ms(), gate, by)
    }

    /// History entries with `seq > after`, oldest first.
    pub fn events_since(&self, after: i64) -> Vec<EventRow> {
        self.lock()
            .events
            .iter()
            .filter(|e| e.seq > after)
            .cloned()
            .collect()
    }

    /// The current state of one step.
    pub fn step(&self, step: &str) -> Option<StepRow> {
        self.lock().steps.get(step).cloned()
    }

    fn lock(&self) -> MutexGuard<'_, Mem> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn full(&self) -> JournalError {
        JournalError::DiskFull {
            path: self.location.to_path_buf(),
        }
    }
}

impl Mem {
    fn event(
        &mut self,
        ts_ms: i64,
        step: Option<String>,
        kind: RowKind,
        attempt: Option<u32>,
        detail: Option<String>,
    ) {
        let seq = self.events.len() as i64 + 1;
        self.events.push(EventRow {
            seq,
            ts_ms,
            step,
            kind,
            attempt,
            detail,
        });
    }

    fn approve(&mut self, ts_ms: i64, gate: &str, by: &str) -> bool {
        if self.approvals.contains_key(gate) {
            return false;
        }
        self.approvals.insert(
            gate.to_owned(),
            Approval {
                gate: gate.to_owned(),
                approved_ms: ts_ms,
                by: by.to_owned(),
            },
        );
        let detail = serde_json::json!({ "gate": gate, "by": by }).to_string();
        self.event(
            ts_ms,
            None,
            RowKind::Event(EventKind::GateApproved),
            None,
            Some(detail),
        );
        true
    }

    fn apply(&mut self, ts_ms: i64, rec: Record) {
        match rec {
            Record::Meta { key, value } => {
                self.meta.insert(key, value);
            }
            Record::Step {
                step,
                state,
                attempt,
                detail,
                already_done,
                note,
            } => {
                // The history keeps the text as SQLite's does; the state keeps the fields.
                let text = detail_text(detail.as_deref(), already_done, note.as_deref());
                self.event(
                    ts_ms,
                    Some(step.clone()),
                    RowKind::Step(state),
                    Some(attempt),
                    text,
                );
                self.steps.insert(
                    step.clone(),
                    StepRow {
                        step,
                        state,
                        attempt,
                        updated_ms: ts_ms,
                        detail,
                        already_done,
                        note,
                    },
                );
            }
            Record::Event { step, kind, detail } => {
                self.event(ts_ms, step, RowKind::Event(kind), None, detail);
            }
            Record::TimerSet { key, kind, due_ms } => {
                self.timers.insert(key.clone(), Timer { key, kind, due_ms });
            }
            Record::TimerClear { key } => {
                self.timers.remove(&key);
            }
            Record::Approve { gate, by } => {
                self.approve(ts_ms, &gate, &by);
            }
        }
    }
}

impl JournalRead for MemJournal {
    fn meta(&self, key: &str) -> Result<Option<String>, JournalError> {
        Ok(self.lock().meta.get(key).cloned())
    }
    fn meta_blob(&self, key: &str) -> Result<Option<Vec<u8>>, JournalError> {
        Ok(self.lock().blobs.get(key).cloned())
    }
    fn steps(&self) -> Result<Vec<StepRow>, JournalError> {
        Ok(self.lock().steps.values().cloned().collect())
    }
    fn timers(&self) -> Result<Vec<Timer>, JournalError> {
        let mut t: Vec<Timer> = self.lock().timers.values().cloned().collect();
        t.sort_by(|a, b| (a.due_ms, &a.key).cmp(&(b.due_ms, &b.key)));
        Ok(t)
    }
    fn approvals(&self) -> Result<Vec<Approval>, JournalError> {
        let mut a: Vec<Approval> = self.lock().approvals.values().cloned().collect();
        a.sort_by(|x, y| (x.approved_ms, &x.gate).cmp(&(y.approved_ms, &y.gate)));
        Ok(a)
    }
    fn steps_with_event(&self, kind: EventKind) -> Result<Vec<(i64, String)>, JournalError> {
        let m = self.lock();
        let mut seen = std::collections::HashSet::new();
        Ok(m.events
            .iter()
            .filter(|e| e.kind == RowKind::Event(kind))
            .filter_map(|e| e.step.as_ref().map(|s| (e.seq, s)))
            .filter(|(_, s)| seen.insert(s.as_str()))
            .map(|(seq, s)| (seq, s.clone()))
            .collect())
    }
    fn events_since(&self, after: i64, limit: usize) -> Result<Vec<EventRow>, JournalError> {
        let m = self.lock();
        Ok(m.events
            .iter()
            .filter(|e| e.seq > after)
            .take(limit)
            .cloned()
            .collect())
    }
}

impl JournalStore for MemJournal {
    fn location(&self) -> &Path {
        &self.location
    }

    fn append(&self, rec: Record) -> Result<(), JournalError> {
        let mut m = self.lock();
        if m.full {
            return Err(self.full());
        }
        if let Some(room) = &mut m.room {
            if *room == 0 {
                m.full = true;
                return Err(self.full());
            }
            *room -= 1;
        }
        m.apply(now_ms(), rec);
        Ok(())
    }

    fn append_durable(&self, rec: Record) -> Durable {
        Durable::ready(self.append(rec))
    }

    fn flush(&self) -> Durable {
        Durable::ready(if self.lock().full {
            Err(self.full())
        } else {
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{StepState, TimerKind};

    #[test]
    fn holds_what_was_appended_as_the_sqlite_journal_reads_it() {
        let j = MemJournal::with_meta(&[("run_id", "r")], &[("plan_bin", b"\x01\x02")]);
        j.append(Record::Step {
            step: "a".to_owned(),
            state: StepState::Succeeded,
            attempt: 1,
            detail: Some("check held".to_owned()),
            already_done: true,
            note: Some("n".to_owned()),
        })
        .expect("append");
        j.append(Record::TimerSet {
            key: "b".to_owned(),
            kind: TimerKind::Retry,
            due_ms: 5,
        })
        .expect("append");
        assert!(j.approve("g", "alice"));
        assert!(!j.approve("g", "bob"), "the first approval stands");
        j.append(Record::Approve {
            gate: "g".to_owned(),
            by: "carol".to_owned(),
        })
        .expect("append");
        let a = j.step("a").expect("row");
        assert!(a.already_done);
        assert_eq!(a.note.as_deref(), Some("n"));
        assert_eq!(a.detail.as_deref(), Some("check held"));
        let ev = j.events_since(0);
        assert_eq!(ev[0].kind, RowKind::Step(StepState::Succeeded));
        assert_eq!(
            ev[0].detail.as_deref(),
            Some("already done: check held; note: n")
        );
        assert_eq!(
            ev.iter()
                .filter(|e| e.kind == RowKind::Event(EventKind::GateApproved))
                .count(),
            1
        );
        assert_eq!(j.approvals().expect("approvals")[0].by, "alice");
        assert_eq!(j.timers().expect("timers")[0].kind, TimerKind::Retry);
        assert_eq!(j.meta("run_id").expect("meta").as_deref(), Some("r"));
        assert_eq!(
            j.meta_blob("plan_bin").expect("blob").as_deref(),
            Some(&b"\x01\x02"[..])
        );
    }

    #[test]
    fn a_full_journal_refuses_every_later_record() {
        let j = MemJournal::new();
        j.fill_after(1);
        j.append(Record::step("a", StepState::Running, 1))
            .expect("room for one");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let err = rt
            .block_on(j.append_durable(Record::step("b", StepState::Running, 1)))
            .expect_err("full");
        assert!(matches!(err, JournalError::DiskFull { .. }), "{err:?}");
        assert!(j.append(Record::step("c", StepState::Running, 1)).is_err());
        assert!(rt.block_on(j.flush()).is_err());
        assert_eq!(j.steps().expect("steps").len(), 1);
    }
}
