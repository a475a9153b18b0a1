//! The run's journal in PostgreSQL: one writer connection that commits whatever is queued
//! in one transaction (as the SQLite writer thread does), and a read connection.
//!
//! The traits are synchronous and the executor calls them from its runtime, so the
//! connections live on a small runtime of their own: an append queues without blocking,
//! a read runs there and the caller waits for its answer on a plain channel (never
//! `block_on`, which would panic inside the caller's runtime).

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use medic_journal::{
    Ack, Approval, Durable, EventKind, EventRow, JournalError, JournalRead, JournalStore,
    Queued as Msg, Record, RowKind, StepRow, StepState, Timer, TimerKind, detail_text, fill_batch,
    meta_keys,
};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{Client, Row, Statement};

use crate::conn::{check_version, connect, describe, io_err, migrate};
use crate::reader::PgReader;
use crate::target::PgTarget;

/// The first key of the run's advisory lock (the second is the run id's hash): one
/// writer per run across every machine that reaches the database.
pub(crate) const RUN_LOCK_SQL: &str =
    "SELECT pg_try_advisory_lock(hashtextextended('medic.run:' || $1, 0))";

/// A small runtime owned by a journal handle. Shut down in the background on drop, since
/// a handle may be dropped inside another runtime, where a blocking shutdown panics.
pub(crate) struct Bg(Option<tokio::runtime::Runtime>);

impl Bg {
    pub(crate) fn new(location: &Path) -> Result<Bg, JournalError> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("medic-journal-pg")
            .enable_all()
            .build()
            .map(|rt| Bg(Some(rt)))
            .map_err(|e| io_err(location, e))
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        match &self.0 {
            Some(rt) => rt.handle(),
            // Only `Drop` takes it.
            None => unreachable!("runtime used after drop"),
        }
    }

    /// Runs `fut` on this runtime and waits for it from any thread, inside a runtime or not.
    pub(crate) fn call<T: Send + 'static>(
        &self,
        location: &Path,
        fut: impl Future<Output = Result<T, JournalError>> + Send + 'static,
    ) -> Result<T, JournalError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle().spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(JournalError::Writer {
                path: location.to_owned(),
                message: "the journal's connection task stopped".to_owned(),
            })
        })
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A run's journal in PostgreSQL. Cheap to clone; clones feed one writer, in order.
/// Dropping the last clone (or [`PgJournal::close`]) commits what is queued and releases
/// the run's lock.
#[derive(Clone)]
pub struct PgJournal {
    inner: Arc<Inner>,
}

struct Inner {
    tx: Mutex<Option<UnboundedSender<Msg>>>,
    failure: Arc<OnceLock<String>>,
    /// Told when the writer has committed its last batch and let its connection go.
    done: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    /// The read side over its own connection; last, so its runtime outlives the rest.
    reads: PgReader,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PgJournal {
    /// Creates the run `run_id` in the database (migrating its schema first) holding `meta`
    /// and `blobs` from its first moment (one transaction: the run exists complete or not
    /// at all), and starts its writer. Refuses a run id that exists.
    pub fn create(
        target: &PgTarget,
        run_id: &str,
        meta: &[(&str, &str)],
        blobs: &[(&str, &[u8])],
    ) -> Result<PgJournal, JournalError> {
        let target = target.with_run(run_id);
        let location: Arc<Path> = Arc::from(Path::new(&target.location()));
        let bg = Bg::new(&location)?;
        let meta: Vec<(String, String)> = meta
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let blobs: Vec<(String, Vec<u8>)> = blobs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
            .collect();
        let (t, loc, run) = (target.clone(), Arc::clone(&location), run_id.to_owned());
        let mut writer = bg.call(&location, async move {
            let mut c = connect(&t, &loc).await?;
            migrate(&mut c, &loc).await?;
            let e = |e: tokio_postgres::Error| io_err(&loc, describe(&e));
            let tx = c.transaction().await.map_err(e)?;
            let now = now_ms();
            let added = tx
                .execute(
                    "INSERT INTO medic.runs(run_id, created_ms) VALUES ($1, $2)
                     ON CONFLICT DO NOTHING",
                    &[&run, &now],
                )
                .await
                .map_err(e)?;
            if added == 0 {
                return Err(JournalError::Exists {
                    path: loc.to_path_buf(),
                });
            }
            let put = "INSERT INTO medic.meta(run_id, key, value, blob) VALUES ($1, $2, $3, $4)
                       ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value, blob = excluded.blob";
            let created = now.to_string();
            tx.execute(
                put,
                &[&run, &meta_keys::CREATED_MS, &created, &None::<Vec<u8>>],
            )
            .await
            .map_err(e)?;
            for (k, v) in &meta {
                tx.execute(put, &[&run, k, v, &None::<Vec<u8>>])
                    .await
                    .map_err(e)?;
            }
            for (k, v) in &blobs {
                tx.execute(put, &[&run, k, &None::<String>, v])
                    .await
                    .map_err(e)?;
            }
            tx.commit().await.map_err(e)?;
            Ok(c)
        })?;
        let (t, loc) = (target.clone(), Arc::clone(&location));
        writer = bg.call(&location, async move {
            take_run_lock(&writer, t.run().unwrap_or_default(), &loc).await?;
            Ok(writer)
        })?;
        PgJournal::start(&target, location, bg, writer)
    }

    /// Opens the run `target` names (or the database's only run) to resume it; fails with
    /// [`JournalError::Locked`] while another process writes it.
    pub fn open_existing(target: &PgTarget) -> Result<PgJournal, JournalError> {
        let target = resolve_run(target)?;
        let location: Arc<Path> = Arc::from(Path::new(&target.location()));
        let bg = Bg::new(&location)?;
        let (t, loc) = (target.clone(), Arc::clone(&location));
        let writer = bg.call(&location, async move {
            let mut c = connect(&t, &loc).await?;
            check_version(&c, &loc).await?;
            migrate(&mut c, &loc).await?;
            let run = t.run().unwrap_or_default();
            run_exists(&c, run, &loc).await?;
            take_run_lock(&c, run, &loc).await?;
            Ok(c)
        })?;
        PgJournal::start(&target, location, bg, writer)
    }

    fn start(
        target: &PgTarget,
        location: Arc<Path>,
        bg: Bg,
        writer: Client,
    ) -> Result<PgJournal, JournalError> {
        let (t, loc) = (target.clone(), Arc::clone(&location));
        let reader = bg.call(&location, async move { connect(&t, &loc).await })?;
        let run: Arc<str> = Arc::from(target.run().unwrap_or_default());
        let (tx, rx) = unbounded_channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let failure = Arc::new(OnceLock::new());
        let (f, r, loc) = (
            Arc::clone(&failure),
            Arc::clone(&run),
            Arc::clone(&location),
        );
        bg.handle().spawn(async move {
            write_loop(writer, rx, &f, &r, &loc).await;
            let _ = done_tx.send(());
        });
        Ok(PgJournal {
            inner: Arc::new(Inner {
                tx: Mutex::new(Some(tx)),
                failure,
                done: Mutex::new(Some(done_rx)),
                reads: PgReader::from_parts(reader, run, location, bg),
            }),
        })
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        self.inner.reads.run_id()
    }

    /// Commits everything queued, stops the writer (releasing the run's lock) and reports
    /// any failure it had. Blocks until then.
    pub fn close(self) -> Result<(), JournalError> {
        self.inner.shutdown();
        match self.inner.failure.get() {
            Some(m) => Err(self.inner.failed(m)),
            None => Ok(()),
        }
    }

    fn send(&self, msg: Msg) -> Result<(), JournalError> {
        if let Some(m) = self.inner.failure.get() {
            return Err(self.inner.failed(m));
        }
        let tx = lock(&self.inner.tx);
        let Some(tx) = tx.as_ref() else {
            return Err(JournalError::Closed {
                path: self.inner.reads.location().to_path_buf(),
            });
        };
        tx.send(msg).map_err(|_| match self.inner.failure.get() {
            Some(m) => self.inner.failed(m),
            None => self.inner.failed("writer stopped"),
        })
    }
}

impl Inner {
    fn failed(&self, message: &str) -> JournalError {
        JournalError::Writer {
            path: self.reads.location().to_path_buf(),
            message: message.to_owned(),
        }
    }

    fn shutdown(&self) {
        drop(lock(&self.tx).take());
        if let Some(done) = lock(&self.done).take() {
            // Disconnected means the writer task ended (or the runtime went) either way.
            let _ = done.recv();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn take_run_lock(c: &Client, run: &str, loc: &Path) -> Result<(), JournalError> {
    let got: bool = c
        .query_one(RUN_LOCK_SQL, &[&run])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(|e| io_err(loc, describe(&e)))?;
    if got {
        Ok(())
    } else {
        Err(JournalError::Locked {
            path: loc.to_owned(),
        })
    }
}

async fn run_exists(c: &Client, run: &str, loc: &Path) -> Result<(), JournalError> {
    let n = c
        .query("SELECT 1 FROM medic.runs WHERE run_id = $1", &[&run])
        .await
        .map_err(|e| io_err(loc, describe(&e)))?;
    if n.is_empty() {
        return Err(JournalError::NotAJournal {
            path: loc.to_owned(),
        });
    }
    Ok(())
}

/// The target with its run named: as given, or the database's only run. A database with
/// several runs and no `run=` is refused, listing the newest ones.
pub fn resolve_run(target: &PgTarget) -> Result<PgTarget, JournalError> {
    if target.run().is_some() {
        return Ok(target.clone());
    }
    let location: Arc<Path> = Arc::from(Path::new(&target.location()));
    let runs = list_runs(target)?;
    match runs.as_slice() {
        [one] => Ok(target.with_run(one)),
        [] => Err(JournalError::NotAJournal {
            path: location.to_path_buf(),
        }),
        many => Err(JournalError::Corrupt {
            path: location.to_path_buf(),
            detail: format!(
                "the database holds {} runs; name one with ?run=RUN-ID (newest: {})",
                many.len(),
                many.iter()
                    .rev()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// Every run the database holds, oldest first.
pub fn list_runs(target: &PgTarget) -> Result<Vec<String>, JournalError> {
    let location: Arc<Path> = Arc::from(Path::new(&target.location()));
    let bg = Bg::new(&location)?;
    let (t, loc) = (target.clone(), Arc::clone(&location));
    bg.call(&location, async move {
        let c = connect(&t, &loc).await?;
        check_version(&c, &loc).await?;
        let rows = c
            .query(
                "SELECT run_id FROM medic.runs ORDER BY created_ms, run_id",
                &[],
            )
            .await
            .map_err(|e| io_err(&loc, describe(&e)))?;
        rows.iter()
            .map(|r| r.try_get(0).map_err(|e| io_err(&loc, describe(&e))))
            .collect()
    })
}

struct Prepared {
    events: Statement,
    steps: Statement,
    meta: Statement,
    timer_set: Statement,
    timer_clear: Statement,
    approve: Statement,
}

const SQL_EVENTS: &str = "INSERT INTO medic.events(run_id, ts_ms, step, kind, attempt, detail)
     SELECT $1, t.ts, t.step, t.kind, t.attempt, t.detail
     FROM unnest($2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::text[])
          WITH ORDINALITY AS t(ts, step, kind, attempt, detail, n)
     ORDER BY t.n";
const SQL_STEPS: &str =
    "INSERT INTO medic.steps(run_id, step, state, attempt, updated_ms, detail, already_done, note)
     SELECT $1, t.* FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[],
                               $7::bool[], $8::text[]) AS t
     ON CONFLICT (run_id, step) DO UPDATE SET state = excluded.state, attempt = excluded.attempt,
        updated_ms = excluded.updated_ms, detail = excluded.detail,
        already_done = excluded.already_done, note = excluded.note";
const SQL_META: &str = "INSERT INTO medic.meta(run_id, key, value) VALUES ($1, $2, $3)
     ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value, blob = NULL";
const SQL_TIMER_SET: &str =
    "INSERT INTO medic.timers(run_id, key, kind, due_ms) VALUES ($1, $2, $3, $4)
     ON CONFLICT (run_id, key) DO UPDATE SET kind = excluded.kind, due_ms = excluded.due_ms";
const SQL_TIMER_CLEAR: &str = "DELETE FROM medic.timers WHERE run_id = $1 AND key = $2";
/// The first approval of an id stands; its `gate.approved` history entry only when new.
pub(crate) const SQL_APPROVE: &str = "WITH a AS (
         INSERT INTO medic.approvals(run_id, gate, approved_ms, by) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING RETURNING gate)
     INSERT INTO medic.events(run_id, ts_ms, step, kind, attempt, detail)
     SELECT $1, $3, NULL, 'gate.approved', NULL, $5 FROM a";

pub(crate) fn approval_detail(gate: &str, by: &str) -> String {
    serde_json::json!({ "gate": gate, "by": by }).to_string()
}

async fn prepare(c: &Client) -> Result<Prepared, tokio_postgres::Error> {
    Ok(Prepared {
        events: c.prepare(SQL_EVENTS).await?,
        steps: c.prepare(SQL_STEPS).await?,
        meta: c.prepare(SQL_META).await?,
        timer_set: c.prepare(SQL_TIMER_SET).await?,
        timer_clear: c.prepare(SQL_TIMER_CLEAR).await?,
        approve: c.prepare(SQL_APPROVE).await?,
    })
}

async fn write_loop(
    mut c: Client,
    mut rx: UnboundedReceiver<Msg>,
    failure: &OnceLock<String>,
    run: &str,
    loc: &Path,
) {
    let fail_all = |rx: &mut UnboundedReceiver<Msg>, acks: Vec<Ack>, m: &str| {
        let _ = failure.set(m.to_owned());
        let err = || JournalError::Writer {
            path: loc.to_owned(),
            message: m.to_owned(),
        };
        for a in acks {
            a.send(Err(err()));
        }
        rx.close();
        while let Ok(msg) = rx.try_recv() {
            if let Msg::Record { ack: Some(a), .. } | Msg::Flush(a) = msg {
                a.send(Err(err()));
            }
        }
    };
    // An acknowledged commit must survive the server's crash: a database set to
    // `synchronous_commit = off` would acknowledge before its WAL is flushed.
    let setup = async {
        let mode: String = c
            .query_one("SHOW synchronous_commit", &[])
            .await?
            .try_get(0)?;
        if mode == "off" {
            c.batch_execute("SET synchronous_commit = on").await?;
        }
        prepare(&c).await
    };
    let st = match setup.await {
        Ok(st) => st,
        Err(e) => return fail_all(&mut rx, Vec::new(), &describe(&e)),
    };
    let mut batch = Vec::with_capacity(1024);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        fill_batch(&mut batch, || rx.try_recv().ok());
        let result = write_batch(&mut c, &st, run, &batch).await;
        let acks: Vec<Ack> = batch.drain(..).filter_map(Msg::into_ack).collect();
        match result {
            Ok(()) => acks.into_iter().for_each(|a| a.send(Ok(()))),
            Err(e) => {
                // Rolled back; nothing after a lost record may be written.
                return fail_all(&mut rx, acks, &describe(&e));
            }
        }
    }
}

/// Column vectors of one batch: history rows in order, the last state of each step.
#[derive(Default)]
struct Columns {
    ts: Vec<i64>,
    step: Vec<Option<String>>,
    kind: Vec<&'static str>,
    attempt: Vec<Option<i64>>,
    detail: Vec<Option<String>>,
}

impl Columns {
    fn push(
        &mut self,
        ts: i64,
        step: Option<String>,
        kind: RowKind,
        attempt: Option<i64>,
        d: Option<String>,
    ) {
        self.ts.push(ts);
        self.step.push(step);
        self.kind.push(kind.as_str());
        self.attempt.push(attempt);
        self.detail.push(d);
    }

    async fn insert(
        &mut self,
        tx: &tokio_postgres::Transaction<'_>,
        st: &Prepared,
        run: &str,
    ) -> Result<(), tokio_postgres::Error> {
        if self.ts.is_empty() {
            return Ok(());
        }
        tx.execute(
            &st.events,
            &[
                &run,
                &self.ts,
                &self.step,
                &self.kind,
                &self.attempt,
                &self.detail,
            ],
        )
        .await?;
        *self = Columns::default();
        Ok(())
    }
}

async fn write_batch(
    c: &mut Client,
    st: &Prepared,
    run: &str,
    batch: &[Msg],
) -> Result<(), tokio_postgres::Error> {
    let tx = c.transaction().await?;
    let mut events = Columns::default();
    // The last record of each step in this batch is its state (the history keeps all).
    let mut last: HashMap<&str, (i64, &Record)> = HashMap::new();
    for msg in batch {
        let Msg::Record { ts_ms, rec, .. } = msg else {
            continue;
        };
        let ts = *ts_ms;
        match rec {
            Record::Step {
                step,
                state,
                attempt,
                detail,
                already_done,
                note,
            } => {
                let text = detail_text(detail.as_deref(), *already_done, note.as_deref());
                events.push(
                    ts,
                    Some(step.clone()),
                    RowKind::Step(*state),
                    Some(i64::from(*attempt)),
                    text,
                );
                last.insert(step.as_str(), (ts, rec));
            }
            Record::Event { step, kind, detail } => {
                events.push(
                    ts,
                    step.clone(),
                    RowKind::Event(*kind),
                    None,
                    detail.clone(),
                );
            }
            Record::Meta { key, value } => {
                tx.execute(&st.meta, &[&run, key, value]).await?;
            }
            Record::TimerSet { key, kind, due_ms } => {
                tx.execute(&st.timer_set, &[&run, key, &kind.as_str(), due_ms])
                    .await?;
            }
            Record::TimerClear { key } => {
                tx.execute(&st.timer_clear, &[&run, key]).await?;
            }
            Record::Approve { gate, by } => {
                // Its history entry keeps its place among the others.
                events.insert(&tx, st, run).await?;
                tx.execute(
                    &st.approve,
                    &[&run, gate, &ts, by, &approval_detail(gate, by)],
                )
                .await?;
            }
        }
    }
    events.insert(&tx, st, run).await?;
    if !last.is_empty() {
        let n = last.len();
        let (mut id, mut state, mut attempt, mut at) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut detail, mut done, mut note) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (ts, rec) in last.into_values() {
            if let Record::Step {
                step,
                state: s,
                attempt: a,
                detail: d,
                already_done,
                note: nt,
            } = rec
            {
                id.push(step.as_str());
                state.push(s.as_str());
                attempt.push(i64::from(*a));
                at.push(ts);
                detail.push(d.as_deref());
                done.push(*already_done);
                note.push(nt.as_deref());
            }
        }
        tx.execute(
            &st.steps,
            &[&run, &id, &state, &attempt, &at, &detail, &done, &note],
        )
        .await?;
    }
    tx.commit().await
}

/// The reads every backend answers, over one connection, for one run.
pub(crate) mod q {
    use super::*;

    fn err(loc: &Path, e: &tokio_postgres::Error) -> JournalError {
        io_err(loc, describe(e))
    }

    fn corrupt(loc: &Path, detail: String) -> JournalError {
        JournalError::Corrupt {
            path: loc.to_owned(),
            detail,
        }
    }

    /// One query's rows, its failure named by the run's location.
    async fn rows(
        c: &Client,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        loc: &Path,
    ) -> Result<Vec<Row>, JournalError> {
        c.query(sql, params).await.map_err(|e| err(loc, &e))
    }

    /// Column `i` of `r`, a type mismatch named by the run's location.
    fn get<'a, T: FromSql<'a>>(r: &'a Row, i: usize, loc: &Path) -> Result<T, JournalError> {
        r.try_get(i).map_err(|e| err(loc, &e))
    }

    /// One `meta` column of `key` (`value` or `blob`, as `sql` selects).
    async fn meta_column<T: for<'a> FromSql<'a>>(
        c: &Client,
        sql: &str,
        run: &str,
        key: &str,
        loc: &Path,
    ) -> Result<Option<T>, JournalError> {
        let rows = rows(c, sql, &[&run, &key], loc).await?;
        rows.first().map_or(Ok(None), |r| get(r, 0, loc))
    }

    pub(crate) async fn meta(
        c: &Client,
        run: &str,
        key: &str,
        loc: &Path,
    ) -> Result<Option<String>, JournalError> {
        let sql = "SELECT value FROM medic.meta WHERE run_id = $1 AND key = $2";
        meta_column(c, sql, run, key, loc).await
    }

    pub(crate) async fn meta_blob(
        c: &Client,
        run: &str,
        key: &str,
        loc: &Path,
    ) -> Result<Option<Vec<u8>>, JournalError> {
        let sql = "SELECT blob FROM medic.meta WHERE run_id = $1 AND key = $2";
        meta_column(c, sql, run, key, loc).await
    }

    pub(crate) async fn steps(
        c: &Client,
        run: &str,
        loc: &Path,
    ) -> Result<Vec<StepRow>, JournalError> {
        // "C": byte order, as SQLite orders the ids.
        let rows = rows(
            c,
            "SELECT step, state, attempt, updated_ms, detail, already_done, note
                 FROM medic.steps WHERE run_id = $1 ORDER BY step COLLATE \"C\"",
            &[&run],
            loc,
        )
        .await?;
        rows.iter()
            .map(|r| {
                let step: String = get(r, 0, loc)?;
                let s: &str = get(r, 1, loc)?;
                let state = StepState::parse(s).ok_or_else(|| {
                    corrupt(loc, format!("step {step:?} has unknown state {s:?}"))
                })?;
                let attempt: i64 = get(r, 2, loc)?;
                Ok(StepRow {
                    state,
                    attempt: u32::try_from(attempt).map_err(|_| {
                        corrupt(loc, format!("step {step:?} has attempt {attempt}"))
                    })?,
                    updated_ms: get(r, 3, loc)?,
                    detail: get(r, 4, loc)?,
                    already_done: get(r, 5, loc)?,
                    note: get(r, 6, loc)?,
                    step,
                })
            })
            .collect()
    }

    pub(crate) async fn timers(
        c: &Client,
        run: &str,
        loc: &Path,
    ) -> Result<Vec<Timer>, JournalError> {
        let rows = rows(
            c,
            "SELECT key, kind, due_ms FROM medic.timers WHERE run_id = $1
                 ORDER BY due_ms, key COLLATE \"C\"",
            &[&run],
            loc,
        )
        .await?;
        rows.iter()
            .map(|r| {
                let key: String = get(r, 0, loc)?;
                let k: &str = get(r, 1, loc)?;
                let kind = TimerKind::parse(k)
                    .ok_or_else(|| corrupt(loc, format!("timer {key:?} has unknown kind {k:?}")))?;
                Ok(Timer {
                    key,
                    kind,
                    due_ms: get(r, 2, loc)?,
                })
            })
            .collect()
    }

    pub(crate) async fn approvals(
        c: &Client,
        run: &str,
        loc: &Path,
    ) -> Result<Vec<Approval>, JournalError> {
        let rows = rows(
            c,
            "SELECT gate, approved_ms, by FROM medic.approvals WHERE run_id = $1
                 ORDER BY approved_ms, gate COLLATE \"C\"",
            &[&run],
            loc,
        )
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Approval {
                    gate: get(r, 0, loc)?,
                    approved_ms: get(r, 1, loc)?,
                    by: get(r, 2, loc)?,
                })
            })
            .collect()
    }

    pub(crate) async fn steps_with_event(
        c: &Client,
        run: &str,
        kind: EventKind,
        loc: &Path,
    ) -> Result<Vec<(i64, String)>, JournalError> {
        let rows = rows(
            c,
            "SELECT MIN(seq), step FROM medic.events
                 WHERE run_id = $1 AND kind = $2 AND step IS NOT NULL
                 GROUP BY step ORDER BY MIN(seq)",
            &[&run, &kind.as_str()],
            loc,
        )
        .await?;
        rows.iter()
            .map(|r| Ok((get(r, 0, loc)?, get(r, 1, loc)?)))
            .collect()
    }

    pub(crate) async fn events_since(
        c: &Client,
        run: &str,
        after: i64,
        limit: i64,
        loc: &Path,
    ) -> Result<Vec<EventRow>, JournalError> {
        let rows = rows(
            c,
            "SELECT seq, ts_ms, step, kind, attempt, detail FROM medic.events
                 WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            &[&run, &after, &limit],
            loc,
        )
        .await?;
        rows.iter()
            .map(|r| {
                let seq: i64 = get(r, 0, loc)?;
                let k: &str = get(r, 3, loc)?;
                let kind = RowKind::parse(k)
                    .ok_or_else(|| corrupt(loc, format!("event {seq} has unknown kind {k:?}")))?;
                let attempt: Option<i64> = get(r, 4, loc)?;
                Ok(EventRow {
                    seq,
                    ts_ms: get(r, 1, loc)?,
                    step: get(r, 2, loc)?,
                    kind,
                    attempt: attempt.and_then(|a| u32::try_from(a).ok()),
                    detail: get(r, 5, loc)?,
                })
            })
            .collect()
    }
}

impl JournalRead for PgJournal {
    fn meta(&self, key: &str) -> Result<Option<String>, JournalError> {
        self.inner.reads.meta(key)
    }
    fn meta_blob(&self, key: &str) -> Result<Option<Vec<u8>>, JournalError> {
        self.inner.reads.meta_blob(key)
    }
    fn steps(&self) -> Result<Vec<StepRow>, JournalError> {
        self.inner.reads.steps()
    }
    fn timers(&self) -> Result<Vec<Timer>, JournalError> {
        self.inner.reads.timers()
    }
    fn approvals(&self) -> Result<Vec<Approval>, JournalError> {
        self.inner.reads.approvals()
    }
    fn steps_with_event(&self, kind: EventKind) -> Result<Vec<(i64, String)>, JournalError> {
        self.inner.reads.steps_with_event(kind)
    }
    fn events_since(&self, after: i64, limit: usize) -> Result<Vec<EventRow>, JournalError> {
        self.inner.reads.events_since(after, limit)
    }
}

impl JournalStore for PgJournal {
    fn location(&self) -> &Path {
        self.inner.reads.location()
    }
    fn append(&self, rec: Record) -> Result<(), JournalError> {
        self.send(Msg::Record {
            ts_ms: now_ms(),
            rec,
            ack: None,
        })
    }
    fn append_durable(&self, rec: Record) -> Durable {
        let (ack, done) = Durable::pending(&self.inner.reads.location);
        match self.send(Msg::Record {
            ts_ms: now_ms(),
            rec,
            ack: Some(ack),
        }) {
            Ok(()) => done,
            Err(e) => Durable::ready(Err(e)),
        }
    }
    fn flush(&self) -> Durable {
        let (ack, done) = Durable::pending(&self.inner.reads.location);
        match self.send(Msg::Flush(ack)) {
            Ok(()) => done,
            Err(e) => Durable::ready(Err(e)),
        }
    }
}
