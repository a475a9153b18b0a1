//! Checks of the files a command is about to read or write, made before anything is
//! written: an output that is one of the inputs, a journal path that is a directory, an
//! existing file that is not a journal, a truncated journal, a directory medic cannot
//! write. Each says what is wrong with the file (exit 2) instead of letting SQLite or the
//! filesystem answer with "disk I/O error" later.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use medic_journal::JournalError;

use crate::{Error, bad};

/// Whether `a` and `b` name one file (through symlinks, hard links or `..`). A path that
/// does not exist is no other file.
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Refuses to write `out` (named by `flag`) when it is one of `inputs` (flag, path).
pub fn refuse_overwriting_inputs(
    flag: &str,
    out: &Path,
    inputs: &[(&str, Option<&Path>)],
) -> Result<(), Error> {
    for (input_flag, input) in inputs {
        if let Some(input) = input
            && same_file(out, input)
        {
            return Err(bad(
                flag,
                format!(
                    "{flag} {} is the same file as the input {input_flag} {}; medic never writes over its inputs",
                    out.display(),
                    input.display()
                ),
                &format!("pass another file to {flag}"),
            ));
        }
    }
    Ok(())
}

/// An output file (`--out`), before any work: not empty, not a directory, in a directory
/// that exists and may be written (an existing file: that may be written), so that a
/// command never does its work and then fails to save it.
pub fn check_output(flag: &str, path: &Path) -> Result<(), Error> {
    let name = path.display().to_string();
    let help = format!("pass {flag} a file path in a directory that exists and that you can write");
    if path.as_os_str().is_empty() {
        return Err(bad(flag, format!("{flag} needs a file path"), &help));
    }
    if path.is_dir() {
        return Err(bad(
            &name,
            format!("{name} is a directory, not a file ({flag})"),
            &help,
        ));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(bad(
            &name,
            format!(
                "{name} cannot be written: the directory {} does not exist",
                dir.display()
            ),
            &help,
        ));
    }
    let ok = if path.exists() {
        writable(path)
    } else {
        writable(dir)
    };
    if !ok {
        return Err(bad(&name, format!("{name} is not writable"), &help));
    }
    Ok(())
}

/// `--events FILE`, before the run starts: events are appended to it (its missing
/// directories are created), so it must not be empty, a directory, the run's journal, or
/// somewhere medic cannot write. Otherwise the run would go on with a warning and no
/// event record.
pub fn check_events(path: &Path, journal: &Path) -> Result<(), Error> {
    let name = path.display().to_string();
    let help = "pass --events a file path (FILE.jsonl) that you can write, not the journal";
    if path.as_os_str().is_empty() {
        return Err(bad("--events", "--events needs a file path", help));
    }
    if path.is_dir() {
        return Err(bad(
            &name,
            format!("{name} is a directory, not an events file (--events)"),
            help,
        ));
    }
    let same = same_file(path, journal)
        || matches!(
            (std::path::absolute(path), std::path::absolute(journal)),
            (Ok(a), Ok(b)) if a == b
        );
    if same {
        return Err(bad(
            &name,
            format!("--events {name} is the run's journal; events would be written into it"),
            help,
        ));
    }
    let dir = nearest_dir(path);
    let ok = if path.exists() {
        writable(path)
    } else {
        dir.is_dir() && writable(&dir)
    };
    if !ok {
        return Err(bad(
            &name,
            format!("the events file {name} cannot be written"),
            help,
        ));
    }
    Ok(())
}

/// Whether this process may write in `dir` (`access(2)`, so root may write anywhere).
fn writable(p: &Path) -> bool {
    rustix::fs::access(p, rustix::fs::Access::WRITE_OK).is_ok()
}

/// The directory a new file at `path` would be created in, or the nearest one above it
/// that exists (medic creates the missing ones).
fn nearest_dir(path: &Path) -> PathBuf {
    let mut dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    while !dir.exists() {
        match dir.parent() {
            Some(d) if !d.as_os_str().is_empty() => dir = d.to_path_buf(),
            _ => return PathBuf::from("."),
        }
    }
    dir
}

/// A new run's journal: `path` must not exist (an existing journal is resumed, never
/// started again), must not be a directory, and its directory must be writable.
pub fn check_new_journal(path: &Path) -> Result<(), Error> {
    let name = path.display().to_string();
    if path.is_dir() {
        return Err(bad(
            &name,
            format!("{name} is a directory, not a journal file"),
            &format!("pass a file path to --journal, e.g. {name}/journal.sqlite"),
        ));
    }
    if path.symlink_metadata().is_ok() {
        return Err(bad(
            &name,
            format!("{name} already exists; a new run needs a new journal"),
            &format!(
                "finish that run with `medic resume --journal {name}`, or pass a new path to --journal"
            ),
        ));
    }
    let dir = nearest_dir(path);
    if !dir.is_dir() {
        return Err(bad(
            &name,
            format!(
                "the journal {name} cannot be created: {} is not a directory",
                dir.display()
            ),
            "pass a --journal path in a directory",
        ));
    }
    if !writable(&dir) {
        return Err(bad(
            &name,
            format!(
                "the journal {name} cannot be created: the directory {} is not writable",
                dir.display()
            ),
            "pass a --journal path in a directory you can write, or fix its permissions",
        ));
    }
    Ok(())
}

/// Refuses a simulator state file left without its journal: replaying it would start the
/// rehearsal from another run's world.
pub fn check_no_stale_sim_state(sim_state: &Path) -> Result<(), Error> {
    if sim_state.symlink_metadata().is_ok() {
        let name = sim_state.display().to_string();
        return Err(bad(
            &name,
            format!("the simulator state file {name} exists without its journal"),
            "remove it (it belongs to a run whose journal is gone), or pass another --journal",
        ));
    }
    Ok(())
}

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// An existing journal, before SQLite opens it: it exists, is a file, is a SQLite
/// database, is not shorter than its header says, and (when `write`) may be written,
/// with its directory (SQLite creates `-wal` and `-shm` files beside it).
pub fn check_existing_journal(path: &Path, write: bool) -> Result<(), Error> {
    let name = path.display().to_string();
    let help = "pass the journal of a run started by `medic apply` (its path is printed when the run starts and in its summary)";
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(bad(
                &name,
                format!("there is no journal at {name}: no run was started there"),
                help,
            ));
        }
        Err(e) => {
            return Err(bad(&name, format!("cannot read {name}: {e}"), help));
        }
    };
    if meta.is_dir() {
        return Err(bad(
            &name,
            format!("{name} is a directory, not a journal"),
            help,
        ));
    }
    let mut head = [0u8; 100];
    let n = std::fs::File::open(path)
        .and_then(|mut f| read_up_to(&mut f, &mut head))
        .map_err(|e| bad(&name, format!("cannot read {name}: {e}"), help))?;
    if n == 0 {
        return Err(bad(
            &name,
            format!("{name} is empty: it is not a journal"),
            help,
        ));
    }
    if n < head.len() || &head[..16] != SQLITE_MAGIC {
        return Err(bad(
            &name,
            format!("{name} is not a journal (it is not an SQLite database)"),
            help,
        ));
    }
    if truncated(path, &head, meta.len()) {
        return Err(damaged(path));
    }
    if write {
        if !writable(path) {
            return Err(bad(
                &name,
                format!("the journal {name} is not writable"),
                "give yourself write permission on it (and on its directory), or run medic as its owner",
            ));
        }
        let dir = nearest_dir(path);
        if !writable(&dir) {
            return Err(bad(
                &name,
                format!(
                    "the journal {name} cannot be written: its directory {} is not writable (SQLite keeps its -wal and -shm files there)",
                    dir.display()
                ),
                "give yourself write permission on the directory, or run medic as its owner",
            ));
        }
    }
    Ok(())
}

fn read_up_to(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Whether the database file is shorter than its header says. Only decided when the
/// header's page count is valid (SQLite's "version-valid-for" equals the change counter)
/// and no write-ahead log holds newer pages: a run killed mid-write leaves a WAL whose
/// recovery is SQLite's business, never a false "damaged".
fn truncated(path: &Path, head: &[u8; 100], len: u64) -> bool {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    if std::fs::metadata(PathBuf::from(wal)).is_ok_and(|m| m.len() > 0) {
        return false;
    }
    let be32 = |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let page_size = match u16::from_be_bytes([head[16], head[17]]) {
        1 => 65_536u64,
        p => u64::from(p),
    };
    let change_counter = be32(24);
    let pages = u64::from(be32(28));
    let valid_for = be32(92);
    if page_size < 512 || !page_size.is_power_of_two() {
        return true;
    }
    if !len.is_multiple_of(page_size) {
        return true;
    }
    valid_for == change_counter && pages > 0 && len < pages * page_size
}

fn damaged(path: &Path) -> Error {
    let name = path.display().to_string();
    bad(
        &name,
        format!(
            "the journal {name} is damaged (truncated or overwritten); it cannot be read as a journal"
        ),
        "restore it from a backup or a copy; medic changed nothing",
    )
}

/// What a journal error met while opening or reading an existing journal says about the
/// file, in the operator's words: damaged, not a journal, not writable (exit 2); anything
/// else is an internal error (exit 4).
pub fn journal_failure(path: &Path, e: &JournalError) -> Error {
    use rusqlite::ErrorCode as C;
    let name = path.display().to_string();
    let code = match e {
        JournalError::Open { source, .. } | JournalError::Sqlite { source, .. } => {
            source.sqlite_error_code()
        }
        _ => None,
    };
    match (e, code) {
        (JournalError::Corrupt { .. }, _) | (_, Some(C::DatabaseCorrupt)) => damaged(path),
        (JournalError::NotAJournal { .. }, _) | (_, Some(C::NotADatabase)) => bad(
            &name,
            format!("{name} is not a journal"),
            "pass the journal of a run started by `medic apply`",
        ),
        (_, Some(C::ReadOnly | C::PermissionDenied | C::CannotOpen)) => bad(
            &name,
            format!("the journal {name} is not writable ({e})"),
            "give yourself write permission on it and on its directory, or run medic as its owner",
        ),
        (JournalError::Locked { .. }, _) => bad(
            &name,
            e.to_string(),
            "wait for that run to end, or stop it (Ctrl-C) first",
        ),
        (JournalError::UnsupportedVersion { .. }, _) => {
            bad(&name, e.to_string(), "use the medic that made this journal")
        }
        _ => Error::Internal(e.to_string()),
    }
}
