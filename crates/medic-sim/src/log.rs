//! The durable effect log: an append-only JSON-lines file with one line per side-effect
//! attempt that reached a host, written and synced *before* the in-memory state changes.
//!
//! Why write-ahead: a test kills the process at arbitrary points and starts a second one
//! on the same file. Whatever the first process told its caller is on disk, and whatever
//! is not on disk never happened, so replaying the log rebuilds exactly the world the
//! caller saw and a side effect is never counted twice. A line only counts once its
//! newline is on disk: a torn last line is a write the caller never saw the result of,
//! and is cut away on open.
//!
//! The log records each effect's *outcome* (the new build, whether a reboot is pending,
//! ...), not just the request, so that replay applies the same mutations even if the
//! rules of the simulator change between versions.
//!
//! Several processes may share one log (the workers of one run, each with its own fleet
//! over the same file): it is then the world itself, and each process's memory a cache of
//! it. Every read-decide-write holds an exclusive `flock` on the file and first catches up
//! with the lines the others appended since this process last read, so two processes never
//! decide on different worlds. A process that dies mid-write leaves a torn last line and
//! releases its lock; whoever takes the lock next cuts the line away.
//!
//! The log also carries the fencing tokens the simulator saw per step (`step`, `fence`),
//! and the requests it refused for a stale token (`result: {"refused": ..}`), so that the
//! highest token seen survives restarts and is shared by every process.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use medic_model::{AgentBuild, ManagerBuild};
use serde::{Deserialize, Serialize};

use crate::config::SimError;

pub(crate) const FORMAT: &str = "medic.sim-log/v1";

/// The side effects a log records as done, per (host, action): what tests and the crash
/// torture compare with an uninterrupted run to prove every effect happened exactly once.
/// A missing or unreadable log counts none.
pub fn effect_counts(log: &Path) -> BTreeMap<(String, String), u32> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text.lines().skip(1) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v.get("result").and_then(|r| r.as_str()) == Some("ok") && v.get("effect").is_some() {
            let host = v["host"].as_str().unwrap_or("").to_owned();
            let action = v["action"].as_str().unwrap_or("").to_owned();
            *out.entry((host, action)).or_default() += 1;
        }
    }
    out
}

/// How many requests the simulator refused for a stale fencing token (a worker that acted
/// after another one took its step over). A missing or unreadable log counts none.
pub fn stale_refusals(log: &Path) -> u64 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut n = 0;
    for line in text.lines().skip(1) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v.get("result").and_then(|r| r.get("refused")).is_some() {
            n += 1;
        }
    }
    n
}

/// The first line: which fleet the log belongs to, so that a log is never replayed onto
/// another inventory or seed.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    seed: u64,
    fleet: String,
}

/// What an attempt changed. Failed attempts mostly change nothing (`None` in the entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) enum Effect {
    ManagerVersion {
        #[serde(with = "as_text")]
        to: ManagerBuild,
    },
    Certificates,
    Upgraded {
        #[serde(with = "as_text")]
        to: AgentBuild,
        pending_reboot: bool,
        antimalware_online: bool,
    },
    /// `at_ms`: when it ended (wall clock, Unix ms), the Manager's `lastChanged`; logs made
    /// before it was recorded read 0.
    UpdateSucceeded {
        #[serde(default)]
        at_ms: i64,
    },
    /// A failed security update is still news for the Manager's view of the computer.
    UpdateFailed {
        message: String,
        #[serde(default)]
        at_ms: i64,
    },
    BundleMade {
        bundle: String,
        #[serde(with = "as_text")]
        build: AgentBuild,
    },
    BundleImported {
        bundle: String,
        #[serde(with = "as_text")]
        build: AgentBuild,
    },
    Rebooted,
    Reinstalled {
        #[serde(with = "as_text")]
        to: AgentBuild,
    },
    CacheCleared,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Logged {
    Ok,
    Failed(String),
    /// Nothing happened but the simulator saw a new highest fencing token for the step (a
    /// probe, a hang, a malformed request): the line exists to make that token durable.
    Seen,
    /// Refused for a stale fencing token: nothing happened and nothing changed.
    Refused(String),
}

/// One line of the log, as read back.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Entry {
    pub(crate) host: String,
    pub(crate) action: String,
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "recorded for people reading the log; replay needs only the effect"
    )]
    pub(crate) args: BTreeMap<String, String>,
    pub(crate) result: Logged,
    #[serde(default)]
    pub(crate) effect: Option<Effect>,
    /// The failure came from a `FailTimes` fault, whose count must survive a restart.
    #[serde(default)]
    pub(crate) injected: bool,
    /// The step and fencing token of the request (`medic worker`); absent without one.
    #[serde(default)]
    pub(crate) step: Option<String>,
    #[serde(default)]
    pub(crate) fence: Option<u64>,
}

/// One line of the log, as written: borrows everything so that logging clones nothing.
#[derive(Serialize)]
pub(crate) struct EntryRef<'a> {
    pub(crate) host: &'a str,
    pub(crate) action: &'a str,
    pub(crate) args: &'a BTreeMap<String, String>,
    pub(crate) result: &'a Logged,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) effect: Option<&'a Effect>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) injected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) step: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fence: Option<u64>,
}

pub(crate) struct EffectLog {
    /// Shared with the [`LogLock`]s taken on it, which unlock it when dropped.
    file: Arc<File>,
    /// How far this process has read (and applied) the file: always the end of a complete
    /// line, and, under the lock, after catching up, the end of the file, where a failed
    /// append rolls back to.
    len: u64,
    /// Complete lines read so far, the header included: numbers the lines of errors.
    lines: usize,
    path: PathBuf,
}

/// The exclusive `flock` on the log, held while a process reads, decides and writes; other
/// processes' (and other opens') `lock` wait. Unlocked when dropped, and by the kernel when
/// the process dies.
#[must_use]
pub(crate) struct LogLock(Arc<File>);

impl Drop for LogLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl std::fmt::Debug for EffectLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EffectLog")
            .field("path", &self.path)
            .field("len", &self.len)
            .finish()
    }
}

impl EffectLog {
    /// Opens (or creates, mode 0600) the log, cuts a torn last line away and returns the
    /// entries to replay. All of it under the lock: another process may be creating the
    /// same log, or appending to it, at the same time.
    pub(crate) fn open(
        path: &Path,
        seed: u64,
        fleet: &str,
    ) -> Result<(EffectLog, Vec<Entry>), SimError> {
        let io = |source| SimError::Io {
            path: path.to_owned(),
            source,
        };
        let mut opts = OpenOptions::new();
        opts.read(true).append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let file = Arc::new(opts.open(path).map_err(io)?);
        let mut log = EffectLog {
            file,
            len: 0,
            lines: 0,
            path: path.to_owned(),
        };
        let held = log.lock()?;
        #[cfg(unix)]
        {
            // The mode above only applies to a new file; an old one may be wider.
            use std::os::unix::fs::PermissionsExt as _;
            let mode = log.file.metadata().map_err(io)?.permissions().mode();
            if mode & 0o077 != 0 {
                log.file
                    .set_permissions(std::fs::Permissions::from_mode(0o600))
                    .map_err(io)?;
            }
        }
        let complete = log.read_new(&held)?;
        let corrupt = |line: usize, message: String| SimError::CorruptLog {
            path: path.to_owned(),
            line,
            message,
        };
        if complete.is_empty() {
            let header = Header {
                format: FORMAT.to_owned(),
                seed,
                fleet: fleet.to_owned(),
            };
            log.append(&held, &header).map_err(io)?;
            // Whoever writes the header made the file (or found it empty): only then is
            // its directory entry new.
            sync_parent(path).map_err(io)?;
            return Ok((log, Vec::new()));
        }
        let mut lines = complete_lines(&complete);
        let first = lines.next().unwrap_or_default();
        let header: Header =
            serde_json::from_slice(first).map_err(|e| corrupt(1, e.to_string()))?;
        let mismatch = |message: String| SimError::Mismatch {
            path: path.to_owned(),
            message,
        };
        if header.format != FORMAT {
            return Err(mismatch(format!(
                "format `{}`, expected `{FORMAT}`",
                header.format
            )));
        }
        if header.seed != seed {
            return Err(mismatch(format!(
                "seed {}, this fleet has seed {seed}",
                header.seed
            )));
        }
        if header.fleet != fleet {
            return Err(mismatch(format!(
                "inventory fingerprint {}, this inventory has {fleet}",
                header.fleet
            )));
        }
        let mut entries = Vec::new();
        for (i, line) in lines.enumerate() {
            let entry: Entry =
                serde_json::from_slice(line).map_err(|e| corrupt(i + 2, e.to_string()))?;
            entries.push(entry);
        }
        log.lines = entries.len() + 1;
        Ok((log, entries))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the exclusive lock, waiting for whoever holds it.
    pub(crate) fn lock(&self) -> Result<LogLock, SimError> {
        self.file.lock().map_err(|source| SimError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(LogLock(Arc::clone(&self.file)))
    }

    /// The entries other processes appended since this one last read, with their line
    /// numbers, in order. The common case, nothing new, costs one `fstat`.
    pub(crate) fn catch_up(&mut self, held: &LogLock) -> Result<Vec<(usize, Entry)>, SimError> {
        let complete = self.read_new(held)?;
        if complete.is_empty() {
            return Ok(Vec::new());
        }
        let mut entries = Vec::new();
        for line in complete_lines(&complete) {
            self.lines += 1;
            let entry: Entry = serde_json::from_slice(line).map_err(|e| SimError::CorruptLog {
                path: self.path.clone(),
                line: self.lines,
                message: e.to_string(),
            })?;
            entries.push((self.lines, entry));
        }
        Ok(entries)
    }

    /// Reads the file from where this process stopped to its last complete line, cuts a
    /// torn line after it away (its writer died: the lock is ours, so nobody is still
    /// writing it) and moves `len` past what it returns.
    fn read_new(&mut self, _held: &LogLock) -> Result<Vec<u8>, SimError> {
        let io = |source| SimError::Io {
            path: self.path.clone(),
            source,
        };
        let size = self.file.metadata().map_err(io)?.len();
        if size == self.len {
            return Ok(Vec::new());
        }
        if size < self.len {
            return Err(SimError::CorruptLog {
                path: self.path.clone(),
                line: self.lines,
                message: format!(
                    "the file is {size} bytes, shorter than the {} already read: something else cut it",
                    self.len
                ),
            });
        }
        let mut buf = Vec::new();
        let mut f = &*self.file;
        f.seek(SeekFrom::Start(self.len)).map_err(io)?;
        f.take(size - self.len).read_to_end(&mut buf).map_err(io)?;
        let keep = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if keep < buf.len() {
            self.file.set_len(self.len + keep as u64).map_err(io)?;
            self.file.sync_data().map_err(io)?;
        }
        buf.truncate(keep);
        self.len += keep as u64;
        Ok(buf)
    }

    /// Appends one line and syncs it, under the lock and after catching up (so that the
    /// line lands where this process stopped reading). On failure the file is cut back to
    /// its last complete line, so that a later append never follows a torn one.
    pub(crate) fn append<T: Serialize>(
        &mut self,
        _held: &LogLock,
        value: &T,
    ) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(value).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut f = &*self.file;
        if let Err(e) = f.write_all(&line).and_then(|()| f.sync_data()) {
            let _ = f.set_len(self.len);
            return Err(e);
        }
        self.len += line.len() as u64;
        self.lines += 1;
        Ok(())
    }
}

/// The lines of `complete`, which is not empty and ends with a newline. Without the last
/// newline, `split` yields exactly the lines, and an empty one among them is damage.
fn complete_lines(complete: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = complete.strip_suffix(b"\n").unwrap_or(complete);
    body.split(|b| *b == b'\n')
}

/// A new file is only durable once its directory entry is.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(parent)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Builds travel through the log in their display form and are parsed back on replay.
mod as_text {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize as _, Deserializer, Serializer, de::Error as _};

    pub(crate) fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub(crate) fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let s = String::deserialize(d)?;
        s.parse().map_err(D::Error::custom)
    }
}
