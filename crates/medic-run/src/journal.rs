//! Where a run's journal is: a SQLite file (the default) or a run in a PostgreSQL
//! database (`--journal postgres://USER@HOST/DB`, or `MEDIC_JOURNAL_URL`), and the one
//! handle type the CLI runs either with.
//!
//! A PostgreSQL journal has no directory, so what a run writes on the machine that runs
//! it (the events file, a rehearsal's simulated fleet state) goes to `.medic/runs/RUN-ID/`
//! of the working directory, or beside `--events`, named after the run (`RUN-ID.events.jsonl`,
//! `RUN-ID.sim.log`); see [`JournalTarget::local_base`].

use std::path::{Path, PathBuf};

use medic_journal::{
    Approval, Durable, EventKind, EventRow, Journal, JournalError, JournalRead, JournalReader,
    JournalStore, Record, StepRow, Timer,
};

use crate::{Error, bad};

/// A run's journal, as the command line (or the environment) names it.
#[derive(Clone, Debug)]
pub enum JournalTarget {
    Sqlite(PathBuf),
    Postgres(Box<medic_journal_pg::PgTarget>),
}

/// Whether a `--journal` value names a database rather than a file.
pub fn is_database(p: &Path) -> bool {
    p.to_str()
        .is_some_and(|s| s.starts_with("postgres://") || s.starts_with("postgresql://"))
}

impl JournalTarget {
    /// A `--journal` value: a file path, or a `postgres://` URL without a password.
    pub fn from_arg(p: &Path) -> Result<JournalTarget, Error> {
        if !is_database(p) {
            return Ok(JournalTarget::Sqlite(p.to_path_buf()));
        }
        Self::parse_url(p.to_str().unwrap_or_default(), false)
    }

    /// `MEDIC_JOURNAL_URL`, when set: the journal of a new run given no `--journal`. It may
    /// hold the password (the environment is where one belongs).
    pub fn from_env() -> Result<Option<JournalTarget>, Error> {
        match std::env::var("MEDIC_JOURNAL_URL") {
            Ok(url) if !url.is_empty() => Self::parse_url(&url, true).map(Some),
            _ => Ok(None),
        }
    }

    /// The journal of an existing run (`status`, `approve`, `resume`, `report`): the
    /// `--journal` value, else `MEDIC_JOURNAL_URL`, so that an operator who set the
    /// variable once reaches the run from any machine without naming it again.
    pub fn existing(arg: Option<&Path>) -> Result<JournalTarget, Error> {
        if let Some(p) = arg {
            return Self::from_arg(p);
        }
        Self::from_env()?.ok_or_else(|| {
            bad(
                "--journal",
                "no journal named: this command reads a run's journal",
                "pass --journal FILE (a journal file) or --journal postgres://USER@HOST/DB?run=RUN-ID, or set MEDIC_JOURNAL_URL to the database's URL",
            )
        })
    }

    fn parse_url(url: &str, env: bool) -> Result<JournalTarget, Error> {
        use medic_journal_pg::{PgTarget, Source};
        let (flag, source) = if env {
            ("MEDIC_JOURNAL_URL", Source::Environment)
        } else {
            ("--journal", Source::Argument)
        };
        PgTarget::parse(url, source)
            .map(|t| JournalTarget::Postgres(Box::new(t)))
            .map_err(|e| {
                bad(
                    flag,
                    e.to_string(),
                    "a journal URL is postgres://USER@HOST[:PORT]/DB[?run=RUN-ID]; its password comes from MEDIC_JOURNAL_URL, PGPASSWORD or a password file",
                )
            })
    }

    /// The journal as commands name it (a URL never holds the password).
    pub fn location(&self) -> PathBuf {
        match self {
            JournalTarget::Sqlite(p) => p.clone(),
            JournalTarget::Postgres(t) => PathBuf::from(t.location()),
        }
    }

    /// The same database naming run `id` (a file is its own run).
    pub fn with_run(&self, id: &str) -> JournalTarget {
        match self {
            JournalTarget::Sqlite(p) => JournalTarget::Sqlite(p.clone()),
            JournalTarget::Postgres(t) => JournalTarget::Postgres(Box::new(t.with_run(id))),
        }
    }

    /// What the run's local files are named after: the journal file itself, or for a
    /// database `.medic/runs/RUN-ID/RUN-ID` in the working directory, or `RUN-ID` beside the
    /// events file `events` when the run has one (so a resume finds them again).
    pub fn local_base(&self, id: &str, events: Option<&Path>) -> PathBuf {
        match self {
            JournalTarget::Sqlite(p) => p.clone(),
            JournalTarget::Postgres(_) => match events.and_then(Path::parent) {
                Some(dir) => dir.join(id),
                None => crate::run::abs_future(&PathBuf::from(".medic/runs").join(id).join(id)),
            },
        }
    }

    /// Opens a reader of the run, after the checks of the file (SQLite).
    pub fn reader(&self, write: bool) -> Result<AnyReader, Error> {
        match self {
            JournalTarget::Sqlite(p) => {
                crate::files::check_existing_journal(p, write)?;
                JournalReader::open(p)
                    .map(AnyReader::Sqlite)
                    .map_err(|e| crate::files::journal_failure(p, &e))
            }
            JournalTarget::Postgres(t) => medic_journal_pg::PgReader::open(t)
                .map(AnyReader::Postgres)
                .map_err(|e| db_failure(&self.location(), &e)),
        }
    }
}

/// A database journal that cannot be opened or read: the run or the database is not
/// there, or is of another version (exit 2), or the server failed (exit 4).
pub fn db_failure(location: &Path, e: &JournalError) -> Error {
    let name = location.display().to_string();
    match e {
        JournalError::NotAJournal { .. } => bad(
            &name,
            format!("there is no medic run at {name}"),
            "pass the journal URL a run printed when it started (it names the run with ?run=RUN-ID)",
        ),
        JournalError::Corrupt { detail, .. } => {
            bad(&name, format!("{name}: {detail}"), "name the run")
        }
        JournalError::UnsupportedVersion { .. }
        | JournalError::Exists { .. }
        | JournalError::Locked { .. } => bad(
            &name,
            e.to_string(),
            "use the medic that made the run, or another run id",
        ),
        e => crate::internal(e.to_string()),
    }
}

/// A reader of either journal.
pub enum AnyReader {
    Sqlite(JournalReader),
    Postgres(medic_journal_pg::PgReader),
}

macro_rules! each {
    ($self:expr, $j:ident => $e:expr) => {
        match $self {
            Self::Sqlite($j) => $e,
            Self::Postgres($j) => $e,
        }
    };
}

impl JournalRead for AnyReader {
    fn meta(&self, key: &str) -> Result<Option<String>, JournalError> {
        each!(self, r => r.meta(key))
    }
    fn meta_blob(&self, key: &str) -> Result<Option<Vec<u8>>, JournalError> {
        each!(self, r => r.meta_blob(key))
    }
    fn steps(&self) -> Result<Vec<StepRow>, JournalError> {
        each!(self, r => JournalRead::steps(r))
    }
    fn timers(&self) -> Result<Vec<Timer>, JournalError> {
        each!(self, r => JournalRead::timers(r))
    }
    fn approvals(&self) -> Result<Vec<Approval>, JournalError> {
        each!(self, r => JournalRead::approvals(r))
    }
    fn steps_with_event(&self, kind: EventKind) -> Result<Vec<(i64, String)>, JournalError> {
        each!(self, r => JournalRead::steps_with_event(r, kind))
    }
    fn events_since(&self, after: i64, limit: usize) -> Result<Vec<EventRow>, JournalError> {
        each!(self, r => JournalRead::events_since(r, after, limit))
    }
}

/// A run's journal being written: the executor runs on either.
#[derive(Clone)]
pub enum RunJournal {
    Sqlite(Journal),
    Postgres(medic_journal_pg::PgJournal),
}

impl RunJournal {
    /// The journal as commands name it.
    pub fn path(&self) -> &Path {
        each!(self, j => JournalStore::location(j))
    }

    /// Whether the journal is a database (its report and events are not beside it).
    pub fn is_database(&self) -> bool {
        !matches!(self, RunJournal::Sqlite(_))
    }

    /// Commits what is queued and stops the writer; reports a failure it had.
    pub fn close(self) -> Result<(), JournalError> {
        each!(self, j => j.close())
    }
}

impl JournalRead for RunJournal {
    fn meta(&self, key: &str) -> Result<Option<String>, JournalError> {
        each!(self, j => j.meta(key))
    }
    fn meta_blob(&self, key: &str) -> Result<Option<Vec<u8>>, JournalError> {
        each!(self, j => j.meta_blob(key))
    }
    fn steps(&self) -> Result<Vec<StepRow>, JournalError> {
        each!(self, j => JournalRead::steps(j))
    }
    fn timers(&self) -> Result<Vec<Timer>, JournalError> {
        each!(self, j => JournalRead::timers(j))
    }
    fn approvals(&self) -> Result<Vec<Approval>, JournalError> {
        each!(self, j => JournalRead::approvals(j))
    }
    fn steps_with_event(&self, kind: EventKind) -> Result<Vec<(i64, String)>, JournalError> {
        each!(self, j => JournalRead::steps_with_event(j, kind))
    }
    fn events_since(&self, after: i64, limit: usize) -> Result<Vec<EventRow>, JournalError> {
        each!(self, j => JournalRead::events_since(j, after, limit))
    }
}

impl JournalStore for RunJournal {
    fn location(&self) -> &Path {
        self.path()
    }
    fn append(&self, rec: Record) -> Result<(), JournalError> {
        each!(self, j => j.append(rec))
    }
    fn append_durable(&self, rec: Record) -> Durable {
        each!(self, j => j.append_durable(rec))
    }
    fn flush(&self) -> Durable {
        each!(self, j => j.flush())
    }
}
