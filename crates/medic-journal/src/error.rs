//! Journal errors. Every error names the journal file, because an operator reading
//! "database is locked" without a path cannot tell which run is affected.

use std::path::{Path, PathBuf};

/// Why a journal operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    #[error("journal {} already exists; resume it or choose another path", .path.display())]
    Exists { path: PathBuf },
    #[error("cannot open journal {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open journal {}: {source}", .path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{} is not a medic journal", .path.display())]
    NotAJournal { path: PathBuf },
    #[error(
        "journal {} has schema version {found}, this medic reads version {supported}",
        .path.display()
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("journal {} is in use by another medic process", .path.display())]
    Locked { path: PathBuf },
    /// SQLITE_FULL: the disk (or the journal's size cap) is full. Everything acknowledged
    /// before it is durable, so the run can stop and be resumed once there is space.
    #[error("disk full writing journal {}; free space and resume the run", .path.display())]
    DiskFull { path: PathBuf },
    /// SQLITE_IOERR: the system refused a write (a file-size limit, a failing disk, or a full
    /// disk reported as EFBIG/EIO rather than ENOSPC). Like [`JournalError::DiskFull`],
    /// everything acknowledged before it is durable and the run can be resumed.
    #[error(
        "cannot write journal {}: {detail} (is its disk full or failing?); free space or fix the disk and resume the run",
        .path.display()
    )]
    CannotWrite { path: PathBuf, detail: String },
    #[error("journal {}: {source}", .path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The writer thread failed earlier; the journal accepts no more records.
    #[error("journal writer for {} failed: {message}", .path.display())]
    Writer { path: PathBuf, message: String },
    #[error("journal {} is closed", .path.display())]
    Closed { path: PathBuf },
    #[error("journal {} is corrupt: {detail}", .path.display())]
    Corrupt { path: PathBuf, detail: String },
}

impl JournalError {
    /// Maps a SQLite error met on an open journal, keeping disk full distinct.
    pub(crate) fn sqlite(path: &Path, source: rusqlite::Error) -> JournalError {
        Self::from_sqlite_or(path, source, |path, source| JournalError::Sqlite {
            path,
            source,
        })
    }

    /// Maps a SQLite error met while opening, keeping disk full distinct.
    pub(crate) fn open(path: &Path, source: rusqlite::Error) -> JournalError {
        Self::from_sqlite_or(path, source, |path, source| JournalError::Open {
            path,
            source,
        })
    }

    /// Disk full and I/O failures read the same wherever they are met; `other` names the
    /// rest by where they were met.
    fn from_sqlite_or(
        path: &Path,
        source: rusqlite::Error,
        other: impl FnOnce(PathBuf, rusqlite::Error) -> JournalError,
    ) -> JournalError {
        if is_disk_full(&source) {
            JournalError::DiskFull {
                path: path.to_owned(),
            }
        } else if is_io_error(&source) {
            JournalError::CannotWrite {
                path: path.to_owned(),
                detail: source.to_string(),
            }
        } else {
            other(path.to_owned(), source)
        }
    }
}

pub(crate) fn is_disk_full(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull)
}

/// SQLite reports ENOSPC as SQLITE_FULL but every other failed write(2) (EFBIG past a file
/// size limit, EIO, EDQUOT on some systems) as SQLITE_IOERR; the operator's remedy is the
/// same, so both must stop the run with a message that says what to do.
pub(crate) fn is_io_error(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::SystemIoFailure)
}

/// A writer-thread failure. It is reported to every waiter and to every later append, so it
/// must be cloneable, which `rusqlite::Error` is not.
#[derive(Clone, Debug)]
pub(crate) enum Failure {
    DiskFull,
    CannotWrite(String),
    Other(String),
}

impl Failure {
    pub(crate) fn from_sqlite(e: &rusqlite::Error) -> Failure {
        if is_disk_full(e) {
            Failure::DiskFull
        } else if is_io_error(e) {
            Failure::CannotWrite(e.to_string())
        } else {
            Failure::Other(e.to_string())
        }
    }

    pub(crate) fn to_error(&self, path: &Path) -> JournalError {
        match self {
            Failure::DiskFull => JournalError::DiskFull {
                path: path.to_owned(),
            },
            Failure::CannotWrite(detail) => JournalError::CannotWrite {
                path: path.to_owned(),
                detail: detail.clone(),
            },
            Failure::Other(message) => JournalError::Writer {
                path: path.to_owned(),
                message: message.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite_error(code: std::ffi::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn a_refused_write_says_what_to_do_with_the_journal() {
        let path = Path::new("/runs/j.sqlite");
        // EFBIG past RLIMIT_FSIZE comes back as SQLITE_IOERR_WRITE, not SQLITE_FULL.
        let e = JournalError::sqlite(path, sqlite_error(rusqlite::ffi::SQLITE_IOERR_WRITE));
        assert!(matches!(e, JournalError::CannotWrite { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("cannot write journal /runs/j.sqlite"),
            "{text}"
        );
        assert!(
            text.contains("free space or fix the disk and resume"),
            "{text}"
        );
        let f = Failure::from_sqlite(&sqlite_error(rusqlite::ffi::SQLITE_IOERR_FSYNC));
        assert!(matches!(f.to_error(path), JournalError::CannotWrite { .. }));

        let e = JournalError::open(path, sqlite_error(rusqlite::ffi::SQLITE_FULL));
        assert!(matches!(e, JournalError::DiskFull { .. }), "{e:?}");
        // Not every failure is the disk's.
        let e = JournalError::sqlite(path, sqlite_error(rusqlite::ffi::SQLITE_CONSTRAINT));
        assert!(matches!(e, JournalError::Sqlite { .. }), "{e:?}");
    }
}
