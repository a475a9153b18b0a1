//! Reading a run from any process while it runs (`medic status`, a resume's read), and
//! approvals recorded from another process (`medic approve`).

use std::path::Path;
use std::sync::Arc;

use medic_journal::{Approval, EventKind, EventRow, JournalError, JournalRead, StepRow, Timer};
use tokio_postgres::Client;

use crate::conn::{check_version, connect, describe, io_err};
use crate::journal::{Bg, SQL_APPROVE, approval_detail, now_ms, q, resolve_run};
use crate::target::PgTarget;

/// A read-only view of one run. Each call reads one committed state.
pub struct PgReader {
    client: Arc<Client>,
    run: Arc<str>,
    pub(crate) location: Arc<Path>,
    bg: Bg,
}

impl PgReader {
    /// Opens the run `target` names (or the database's only run).
    pub fn open(target: &PgTarget) -> Result<PgReader, JournalError> {
        let target = resolve_run(target)?;
        let location: Arc<Path> = Arc::from(Path::new(&target.location()));
        let bg = Bg::new(&location)?;
        let (t, loc) = (target.clone(), Arc::clone(&location));
        let client = bg.call(&location, async move {
            let c = connect(&t, &loc).await?;
            check_version(&c, &loc).await?;
            let run = t.run().unwrap_or_default();
            let found = c
                .query("SELECT 1 FROM medic.runs WHERE run_id = $1", &[&run])
                .await
                .map_err(|e| io_err(&loc, describe(&e)))?;
            if found.is_empty() {
                return Err(JournalError::NotAJournal {
                    path: loc.to_path_buf(),
                });
            }
            Ok(c)
        })?;
        Ok(PgReader {
            client: Arc::new(client),
            run: Arc::from(target.run().unwrap_or_default()),
            location,
            bg,
        })
    }

    /// The read side of a run a [`crate::PgJournal`] has just opened (and locked).
    pub(crate) fn from_parts(client: Client, run: Arc<str>, location: Arc<Path>, bg: Bg) -> Self {
        PgReader {
            client: Arc::new(client),
            run,
            location,
            bg,
        }
    }

    /// Where the run is, as `--journal` names it.
    pub fn location(&self) -> &Path {
        &self.location
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run
    }

    fn read<T: Send + 'static, F>(
        &self,
        f: impl FnOnce(Arc<Client>, Arc<str>, Arc<Path>) -> F,
    ) -> Result<T, JournalError>
    where
        F: std::future::Future<Output = Result<T, JournalError>> + Send + 'static,
    {
        let fut = f(
            Arc::clone(&self.client),
            Arc::clone(&self.run),
            Arc::clone(&self.location),
        );
        self.bg.call(&self.location, fut)
    }

    /// History entries with `seq > after`, oldest first, at most `limit`.
    pub fn events_since(&self, after: i64, limit: usize) -> Result<Vec<EventRow>, JournalError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c, r, l| async move { q::events_since(&c, &r, after, limit, &l).await })
    }
}

impl JournalRead for PgReader {
    fn meta(&self, key: &str) -> Result<Option<String>, JournalError> {
        let key = key.to_owned();
        self.read(|c, r, l| async move { q::meta(&c, &r, &key, &l).await })
    }
    fn meta_blob(&self, key: &str) -> Result<Option<Vec<u8>>, JournalError> {
        let key = key.to_owned();
        self.read(|c, r, l| async move { q::meta_blob(&c, &r, &key, &l).await })
    }
    fn steps(&self) -> Result<Vec<StepRow>, JournalError> {
        self.read(|c, r, l| async move { q::steps(&c, &r, &l).await })
    }
    fn timers(&self) -> Result<Vec<Timer>, JournalError> {
        self.read(|c, r, l| async move { q::timers(&c, &r, &l).await })
    }
    fn approvals(&self) -> Result<Vec<Approval>, JournalError> {
        self.read(|c, r, l| async move { q::approvals(&c, &r, &l).await })
    }
    fn steps_with_event(&self, kind: EventKind) -> Result<Vec<(i64, String)>, JournalError> {
        self.read(move |c, r, l| async move { q::steps_with_event(&c, &r, kind, &l).await })
    }
    fn events_since(&self, after: i64, limit: usize) -> Result<Vec<EventRow>, JournalError> {
        PgReader::events_since(self, after, limit)
    }
}

impl PgReader {
    /// Records that `by` approved `gate` of this run, as `medic approve` does from any
    /// machine while the run goes on (the run polls its approvals). The first approval of
    /// an id stands. `by` is an operator's name, never a credential.
    pub fn approve(&self, gate: &str, by: &str) -> Result<(), JournalError> {
        let (gate, by) = (gate.to_owned(), by.to_owned());
        self.read(move |c, r, l| async move {
            let detail = approval_detail(&gate, &by);
            c.execute(SQL_APPROVE, &[&&*r, &gate, &now_ms(), &by, &detail])
                .await
                .map_err(|e| io_err(&l, describe(&e)))?;
            Ok(())
        })
    }
}
