//! The run's single writer: a thread that owns the only write connection, drains whatever
//! is queued and commits it in one transaction.
//!
//! Why one thread and batches: with `synchronous=FULL` every COMMIT costs an fsync, so
//! committing per record would cap a run at a few hundred transitions per second; one
//! transaction per drained batch amortises the fsync while keeping the records in the
//! order they were appended (one channel, one consumer).

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::JoinHandle;

use rusqlite::{CachedStatement, Connection, TransactionBehavior};

use crate::db;
use crate::error::{Failure, JournalError};
use crate::model::{Approval, EventKind, Record, StepRow, Timer, detail_text, now_ms};
use crate::reader::JournalReader;
use crate::store::{Ack, Durable, JournalRead, JournalStore, Queued as Msg, fill_batch};

/// Handle to a run's journal writer. Cheap to clone; every clone feeds the same writer
/// thread, so records keep the order in which they were appended across clones.
///
/// The queue is unbounded: `append` never blocks the executor, and the writer commits far
/// faster than steps finish (see `examples/journal_bench.rs`).
///
/// Dropping the last clone flushes and joins the writer (and blocks while doing so); call
/// [`Journal::close`] to learn whether that final flush failed.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    // Shared with every pending durable future, which names it in its error.
    path: Arc<Path>,
    // `None` once closed: dropping the only sender is what tells the writer to drain and stop.
    tx: Mutex<Option<Sender<Msg>>>,
    // Set once, by the writer, before it answers anyone with the failure.
    failure: Arc<OnceLock<Failure>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    // For `approvals()`: polling must not queue behind a large batch on the writer.
    reader: Mutex<Option<JournalReader>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values stay consistent even if a holder panicked.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Journal {
    /// Creates a new journal file (mode 0600) and starts its writer. Refuses to overwrite an
    /// existing file. A `<path>.lock` file next to it marks the run's single writer and is
    /// left in place (removing lock files races with other processes).
    pub fn create(path: &Path) -> Result<Journal, JournalError> {
        Journal::create_with(path, None)
    }

    pub(crate) fn create_with(
        path: &Path,
        max_pages: Option<u32>,
    ) -> Result<Journal, JournalError> {
        // The file exists with mode 0600 before SQLite opens it; SQLite gives the -wal and
        // -shm files the same mode.
        let created = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        match created {
            Ok(file) => drop(file),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(JournalError::Exists {
                    path: path.to_owned(),
                });
            }
            Err(source) => {
                return Err(JournalError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        }
        let setup = || -> Result<(File, Connection), JournalError> {
            let lock = take_writer_lock(path)?;
            let mut conn = db::open_writer(path, true)?;
            if let Some(pages) = max_pages {
                conn.pragma_update(None, "max_page_count", pages)
                    .map_err(|e| JournalError::open(path, e))?;
            }
            db::migrate(&mut conn, path)?;
            conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES (?1, ?2)",
                (crate::meta_keys::CREATED_MS, now_ms().to_string()),
            )
            .map_err(|e| JournalError::open(path, e))?;
            sync_parent_dir(path)?;
            Ok((lock, conn))
        };
        match setup() {
            Ok((lock, conn)) => Journal::start(path, conn, lock),
            Err(e) => {
                // A half-made file would make the retry (after freeing space, say) fail
                // with `Exists`; nothing was recorded in it yet.
                if !matches!(e, JournalError::Locked { .. }) {
                    for suffix in ["", "-wal", "-shm"] {
                        let mut p = path.as_os_str().to_owned();
                        p.push(suffix);
                        let _ = std::fs::remove_file(&p);
                    }
                }
                Err(e)
            }
        }
    }

    /// Creates a journal that holds `meta` from its first moment: it is built under a
    /// temporary name and linked into place complete, so a crash (even SIGKILL) leaves
    /// either no journal or one with every meta record, never a half-made file at `path`.
    pub fn create_with_meta(path: &Path, meta: &[(&str, &str)]) -> Result<Journal, JournalError> {
        Journal::create_with_meta_and_blobs(path, meta, &[])
    }

    /// [`Journal::create_with_meta`], with binary meta values as well (read them back with
    /// [`JournalReader::meta_blob`]); all of them are in place from the journal's first
    /// moment.
    pub fn create_with_meta_and_blobs(
        path: &Path,
        meta: &[(&str, &str)],
        blobs: &[(&str, &[u8])],
    ) -> Result<Journal, JournalError> {
        if path.exists() {
            return Err(JournalError::Exists {
                path: path.to_owned(),
            });
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".creating-{}", std::process::id()));
        let tmp = std::path::PathBuf::from(tmp);
        let io = |source: std::io::Error| JournalError::Io {
            path: path.to_owned(),
            source,
        };
        let build = || -> Result<(), JournalError> {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            let mut conn = db::open_writer(&tmp, true)?;
            db::migrate(&mut conn, &tmp)?;
            let tx = conn
                .transaction()
                .map_err(|e| JournalError::open(path, e))?;
            tx.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES (?1, ?2)",
                (crate::meta_keys::CREATED_MS, now_ms().to_string()),
            )
            .map_err(|e| JournalError::open(path, e))?;
            for (k, v) in meta {
                tx.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
                    (k, v),
                )
                .map_err(|e| JournalError::open(path, e))?;
            }
            // Stored as BLOBs in the same table: SQLite keeps a BLOB as it is in a TEXT
            // column, and readers ask for them by key with `meta_blob`.
            for (k, v) in blobs {
                tx.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
                    (k, v),
                )
                .map_err(|e| JournalError::open(path, e))?;
            }
            tx.commit().map_err(|e| JournalError::open(path, e))?;
            // Fold the WAL into the file, so the file alone is the journal when it is linked.
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                .map_err(|e| JournalError::open(path, e))?;
            conn.close().map_err(|(_, e)| JournalError::open(path, e))?;
            File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
            match std::fs::hard_link(&tmp, path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(JournalError::Exists {
                        path: path.to_owned(),
                    });
                }
                Err(e) => return Err(io(e)),
            }
            sync_parent_dir(path)
        };
        let built = build();
        for suffix in ["", "-wal", "-shm"] {
            let mut p = tmp.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::remove_file(&p);
        }
        built?;
        Journal::open_existing(path)
    }

    /// Opens an existing journal to resume its run; fails with [`JournalError::Locked`]
    /// while another process writes it.
    pub fn open_existing(path: &Path) -> Result<Journal, JournalError> {
        std::fs::metadata(path).map_err(|source| JournalError::Io {
            path: path.to_owned(),
            source,
        })?;
        let lock = take_writer_lock(path)?;
        let mut conn = db::open_writer(path, false)?;
        if db::user_version(&conn, path)? == 0 {
            return Err(JournalError::NotAJournal {
                path: path.to_owned(),
            });
        }
        db::migrate(&mut conn, path)?;
        Journal::start(path, conn, lock)
    }

    fn start(path: &Path, conn: Connection, lock: File) -> Result<Journal, JournalError> {
        let reader = JournalReader::open(path)?;
        let (tx, rx) = mpsc::channel();
        let failure = Arc::new(OnceLock::new());
        let thread_failure = Arc::clone(&failure);
        let thread = std::thread::Builder::new()
            .name("medic-journal".to_owned())
            .spawn(move || {
                let outcome =
                    std::panic::catch_unwind(AssertUnwindSafe(|| run(conn, &rx, &thread_failure)));
                if outcome.is_err() {
                    let _ = thread_failure.set(Failure::Other("writer thread panicked".to_owned()));
                }
                // Held until the connection is gone: no second writer may start earlier.
                drop(lock);
            })
            .map_err(|source| JournalError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(Journal {
            inner: Arc::new(Inner {
                path: Arc::from(path),
                tx: Mutex::new(Some(tx)),
                failure,
                thread: Mutex::new(Some(thread)),
                reader: Mutex::new(Some(reader)),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Queues a record; it is committed with the next batch. Fails with the writer's
    /// earlier failure, if any, so a lost batch is reported on the next append.
    pub fn append(&self, rec: Record) -> Result<(), JournalError> {
        self.send(Msg::Record {
            ts_ms: now_ms(),
            rec,
            ack: None,
        })
    }

    /// Queues a record now (so it keeps its place relative to later appends) and returns a
    /// future that resolves once the COMMIT containing it has returned: act on the record's
    /// intent only after that.
    pub fn append_durable(&self, rec: Record) -> Durable {
        let (ack, done) = Durable::pending(&self.inner.path);
        match self.send(Msg::Record {
            ts_ms: now_ms(),
            rec,
            ack: Some(ack),
        }) {
            Ok(()) => done,
            Err(e) => Durable::ready(Err(e)),
        }
    }

    /// Resolves once everything appended before it is committed.
    pub fn flush(&self) -> Durable {
        let (ack, done) = Durable::pending(&self.inner.path);
        match self.send(Msg::Flush(ack)) {
            Ok(()) => done,
            Err(e) => Durable::ready(Err(e)),
        }
    }

    /// Approvals recorded so far (by [`crate::approve`] from any process).
    pub fn approvals(&self) -> Result<Vec<Approval>, JournalError> {
        self.read(JournalReader::approvals)
    }

    /// Reads the committed state over the handle's own read connection: polling must not
    /// queue behind a large batch on the writer.
    fn read<T>(
        &self,
        f: impl FnOnce(&JournalReader) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        match lock(&self.inner.reader).as_ref() {
            Some(reader) => f(reader),
            None => Err(self.inner.closed()),
        }
    }

    /// Commits everything queued, stops the writer and reports any failure it had. Closes
    /// the journal for every clone of this handle. Blocks until the writer has exited; from
    /// async code call it once the run is over or from `spawn_blocking`.
    pub fn close(self) -> Result<(), JournalError> {
        self.inner.shutdown();
        match self.inner.failure.get() {
            Some(f) => Err(f.to_error(&self.inner.path)),
            None => Ok(()),
        }
    }

    fn send(&self, msg: Msg) -> Result<(), JournalError> {
        if let Some(f) = self.inner.failure.get() {
            return Err(f.to_error(&self.inner.path));
        }
        let tx = lock(&self.inner.tx);
        let Some(tx) = tx.as_ref() else {
            return Err(self.inner.closed());
        };
        tx.send(msg).map_err(|_| self.inner.stopped())
    }
}

impl Inner {
    fn closed(&self) -> JournalError {
        JournalError::Closed {
            path: self.path.to_path_buf(),
        }
    }

    fn stopped(&self) -> JournalError {
        match self.failure.get() {
            Some(f) => f.to_error(&self.path),
            None => JournalError::Writer {
                path: self.path.to_path_buf(),
                message: "writer thread stopped".to_owned(),
            },
        }
    }

    fn shutdown(&self) {
        // The reader goes first so that the writer's connection is the file's last one and
        // checkpoints the WAL away when it closes.
        drop(lock(&self.reader).take());
        drop(lock(&self.tx).take());
        if let Some(thread) = lock(&self.thread).take() {
            // A panic was already turned into a recorded failure inside the thread.
            let _ = thread.join();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One writer per journal, across processes: a second `medic run` on the same file would
/// interleave two executors' records. The lock lives on a sidecar file because closing any
/// descriptor of the database file itself would drop SQLite's POSIX locks in this process.
fn take_writer_lock(path: &Path) -> Result<File, JournalError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|source| JournalError::Io {
            path: PathBuf::from(&lock_path),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(JournalError::Locked {
            path: path.to_owned(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(JournalError::Io {
            path: PathBuf::from(lock_path),
            source,
        }),
    }
}

/// Makes the new file's directory entry durable; without it a power loss right after
/// `create` could lose the whole journal even though its first commits were synced.
fn sync_parent_dir(path: &Path) -> Result<(), JournalError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|source| JournalError::Io {
            path: path.to_owned(),
            source,
        })
}

/// The writer loop: block for one message, drain what else is queued, commit, answer.
fn run(mut conn: Connection, rx: &Receiver<Msg>, failure: &OnceLock<Failure>) {
    let mut batch: Vec<Msg> = Vec::with_capacity(1024);
    let mut acks: Vec<Ack> = Vec::with_capacity(64);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        fill_batch(&mut batch, || rx.try_recv().ok());
        let result = write_batch(&mut conn, &batch);
        acks.extend(batch.drain(..).filter_map(Msg::into_ack));
        match result {
            Ok(()) => {
                for ack in acks.drain(..) {
                    ack.send(Ok(()));
                }
            }
            Err(e) => {
                // The failed batch was rolled back; nothing after it may be written, or the
                // journal would skip records that callers believe are queued before them.
                let f = Failure::from_sqlite(&e);
                let _ = failure.set(f.clone());
                for ack in acks.drain(..) {
                    let e = f.to_error(ack.location());
                    ack.send(Err(e));
                }
                while let Ok(m) = rx.try_recv() {
                    if let Msg::Record { ack: Some(ack), .. } | Msg::Flush(ack) = m {
                        let e = f.to_error(ack.location());
                        ack.send(Err(e));
                    }
                }
                return;
            }
        }
    }
}

struct Statements<'c> {
    event: CachedStatement<'c>,
    step: CachedStatement<'c>,
}

fn write_batch(conn: &mut Connection, batch: &[Msg]) -> rusqlite::Result<()> {
    // IMMEDIATE takes the write lock up front, so contention with `approve` is resolved by
    // busy_timeout at BEGIN instead of failing halfway through the batch.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        // Prepared once per batch: the hot statements are not looked up per record.
        let mut st = Statements {
            event: tx.prepare_cached(db::SQL_EVENT)?,
            step: tx.prepare_cached(db::SQL_STEP)?,
        };
        for msg in batch {
            if let Msg::Record { ts_ms, rec, .. } = msg {
                apply(&tx, &mut st, *ts_ms, rec)?;
            }
        }
    }
    tx.commit()
}

fn apply(
    conn: &Connection,
    st: &mut Statements<'_>,
    ts: i64,
    rec: &Record,
) -> rusqlite::Result<()> {
    match rec {
        Record::Step {
            step,
            state,
            attempt,
            detail,
            already_done,
            note,
        } => {
            // The fields are folded into the text column as journals always held them;
            // most steps have neither, and their detail is written without a copy.
            let detail = if *already_done || note.is_some() {
                detail_text(detail.as_deref(), *already_done, note.as_deref()).map(Cow::Owned)
            } else {
                detail.as_deref().map(Cow::Borrowed)
            };
            let detail = detail.as_deref();
            st.event
                .execute((ts, step, state.event_kind(), attempt, detail))?;
            st.step
                .execute((step, state.as_str(), attempt, ts, detail))?;
        }
        Record::Event { step, kind, detail } => {
            st.event.execute((
                ts,
                step.as_deref(),
                kind.as_str(),
                None::<u32>,
                detail.as_deref(),
            ))?;
        }
        Record::Meta { key, value } => {
            conn.prepare_cached(db::SQL_META)?.execute((key, value))?;
        }
        Record::TimerSet { key, kind, due_ms } => {
            conn.prepare_cached(db::SQL_TIMER_SET)?
                .execute((key, kind.as_str(), due_ms))?;
        }
        Record::TimerClear { key } => {
            conn.prepare_cached(db::SQL_TIMER_CLEAR)?.execute([key])?;
        }
        Record::Approve { gate, by } => {
            db::insert_approval(conn, ts, gate, by)?;
        }
    }
    Ok(())
}

impl JournalRead for Journal {
    fn meta(&self, key: &str) -> Result<Option<String>, JournalError> {
        self.read(|r| r.meta(key))
    }
    fn meta_blob(&self, key: &str) -> Result<Option<Vec<u8>>, JournalError> {
        self.read(|r| r.meta_blob(key))
    }
    fn steps(&self) -> Result<Vec<StepRow>, JournalError> {
        self.read(JournalReader::steps)
    }
    fn timers(&self) -> Result<Vec<Timer>, JournalError> {
        self.read(JournalReader::timers)
    }
    fn approvals(&self) -> Result<Vec<Approval>, JournalError> {
        Journal::approvals(self)
    }
    fn steps_with_event(&self, kind: EventKind) -> Result<Vec<(i64, String)>, JournalError> {
        self.read(|r| r.steps_with_event(kind))
    }
    fn events_since(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<crate::model::EventRow>, JournalError> {
        self.read(|r| r.events_since(after, limit))
    }
}

impl JournalStore for Journal {
    fn location(&self) -> &Path {
        self.path()
    }
    fn append(&self, rec: Record) -> Result<(), JournalError> {
        Journal::append(self, rec)
    }
    fn append_durable(&self, rec: Record) -> Durable {
        Journal::append_durable(self, rec)
    }
    fn flush(&self) -> Durable {
        Journal::flush(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StepState;

    #[test]
    fn disk_full_is_reported_not_panicked_and_the_journal_stays_resumable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run.journal");
        // A size cap makes SQLite answer SQLITE_FULL exactly as a full disk does.
        let journal = Journal::create_with(&path, Some(16)).expect("create");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let detail = "x".repeat(4000);
        let mut acknowledged = 0u32;
        let err = loop {
            let rec = Record::step_detail(
                format!("s{acknowledged}"),
                StepState::Running,
                1,
                detail.clone(),
            );
            match rt.block_on(journal.append_durable(rec)) {
                Ok(()) => acknowledged += 1,
                Err(e) => break e,
            }
            assert!(acknowledged < 1000, "the cap was never hit");
        };
        assert!(matches!(err, JournalError::DiskFull { .. }), "{err:?}");
        assert!(err.to_string().contains("run.journal"), "{err}");
        assert!(acknowledged > 0);
        // Sticky: the next append and the close report it too.
        let next = journal.append(Record::step("late", StepState::Running, 1));
        assert!(
            matches!(next, Err(JournalError::DiskFull { .. })),
            "{next:?}"
        );
        let flushed = rt.block_on(journal.flush());
        assert!(
            matches!(flushed, Err(JournalError::DiskFull { .. })),
            "{flushed:?}"
        );
        let closed = journal.close();
        assert!(
            matches!(closed, Err(JournalError::DiskFull { .. })),
            "{closed:?}"
        );

        // Once there is space (no cap), the run resumes with every acknowledged record.
        let journal = Journal::open_existing(&path).expect("reopen");
        rt.block_on(journal.append_durable(Record::step("late", StepState::Running, 1)))
            .expect("append after space was freed");
        journal.close().expect("close");
        let reader = JournalReader::open(&path).expect("reader");
        reader.check_integrity().expect("integrity");
        let steps = reader.steps().expect("steps");
        assert_eq!(steps.len(), acknowledged as usize + 1);
    }

    #[test]
    fn a_create_that_fails_leaves_no_file_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run.journal");
        // Too small for the schema: the disk is "full" before the journal exists.
        let err = Journal::create_with(&path, Some(2)).err().expect("cap hit");
        assert!(matches!(err, JournalError::DiskFull { .. }), "{err:?}");
        assert!(!path.exists());
        Journal::create(&path)
            .expect("retry")
            .close()
            .expect("close");
    }
}
