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

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

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
}

pub(crate) struct EffectLog {
    file: File,
    /// Length of the file up to its last complete line: where a failed append rolls back to.
    len: u64,
    path: PathBuf,
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
    /// entries to replay.
    pub(crate) fn open(
        path: &Path,
        seed: u64,
        fleet: &str,
    ) -> Result<(EffectLog, Vec<Entry>), SimError> {
        let io = |source| SimError::Io {
            path: path.to_owned(),
            source,
        };
        let existed = path.exists();
        let mut opts = OpenOptions::new();
        opts.read(true).append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut file = opts.open(path).map_err(io)?;
        #[cfg(unix)]
        {
            // The mode above only applies to a new file; an old one may be wider.
            use std::os::unix::fs::PermissionsExt as _;
            let mode = file.metadata().map_err(io)?.permissions().mode();
            if mode & 0o077 != 0 {
                file.set_permissions(std::fs::Permissions::from_mode(0o600))
                    .map_err(io)?;
            }
        }
        let mut buf = Vec::new();
        file.read_to_end(&mut buf).map_err(io)?;
        let keep = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if keep < buf.len() {
            file.set_len(keep as u64).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        let mut log = EffectLog {
            file,
            len: keep as u64,
            path: path.to_owned(),
        };
        let corrupt = |line: usize, message: String| SimError::CorruptLog {
            path: path.to_owned(),
            line,
            message,
        };
        let complete = &buf[..keep];
        if complete.is_empty() {
            let header = Header {
                format: FORMAT.to_owned(),
                seed,
                fleet: fleet.to_owned(),
            };
            log.append(&header).map_err(io)?;
            if !existed {
                sync_parent(path).map_err(io)?;
            }
            return Ok((log, Vec::new()));
        }
        // Every complete line ends with a newline: without the last one, `split` yields
        // exactly the lines, and an empty one among them is damage.
        let body = complete.strip_suffix(b"\n").unwrap_or(complete);
        let mut lines = body.split(|b| *b == b'\n');
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
        Ok((log, entries))
    }

    /// Appends one line and syncs it. On failure the file is cut back to its last complete
    /// line, so that a later append never follows a torn one.
    pub(crate) fn append<T: Serialize>(&mut self, value: &T) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(value).map_err(std::io::Error::other)?;
        line.push(b'\n');
        if let Err(e) = self
            .file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
        {
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        self.len += line.len() as u64;
        Ok(())
    }
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
