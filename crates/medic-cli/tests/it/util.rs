//! Runs the real `medic` binary in a scratch directory and reads what it printed.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// The real Deep Security playbook shipped with medic.
pub fn real_playbook() -> PathBuf {
    repo_root().join("playbooks/ds-activeupdate-cert-2023.yaml")
}

/// The lab inventory of `examples/`.
pub fn lab_inventory() -> PathBuf {
    repo_root().join("examples/lab/inventory.yaml")
}

/// The lab inventory's text with each `(from, to)` replaced; a `from` the lab no longer
/// has fails the test (the lab changed: update the caller).
pub fn lab_with(edits: &[(&str, &str)]) -> String {
    let mut text = std::fs::read_to_string(lab_inventory()).expect("read the lab inventory");
    for (from, to) in edits {
        assert!(text.contains(from), "the lab inventory has no `{from}`");
        text = text.replace(from, to);
    }
    text
}

/// `tests/fixtures/` of this crate.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A temporary directory holding the input files of one test; `medic` runs inside it, so
/// the files are named in its messages exactly as they were written (`inventory.yaml`).
pub struct TestEnv {
    dir: tempfile::TempDir,
}

impl TestEnv {
    pub fn new() -> Self {
        TestEnv {
            dir: tempfile::tempdir().expect("create a temporary directory"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` to `name` (relative to the directory) and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create the fixture's directory");
        }
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Copies the files of a fixture directory, except those in `skip`.
    pub fn copy_from(&self, from: &Path, skip: &[&str]) {
        let entries =
            std::fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()));
        for entry in entries {
            let entry = entry.expect("read a fixture entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            if skip.contains(&name.as_str()) || !entry.path().is_file() {
                continue;
            }
            let text = std::fs::read(entry.path())
                .unwrap_or_else(|e| panic!("read {}: {e}", entry.path().display()));
            self.write(&name, text);
        }
    }

    /// Runs `medic ARGS...` in the directory, without colours, and returns what happened.
    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<String> = args
            .into_iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        let mut cmd =
            Command::cargo_bin("medic").expect("the medic binary is built for integration tests");
        cmd.current_dir(self.path())
            .args(&args)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE")
            .timeout(Duration::from_secs(120));
        let out = cmd.output().expect("run medic");
        Run {
            cmd: format!(
                "(cd {} && NO_COLOR=1 medic {})",
                self.path().display(),
                shell_words(&args)
            ),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:".contains(&b))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One finished run of `medic`.
pub struct Run {
    pub cmd: String,
    /// `None` when the process was killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Fails the test with `why`, followed by the command and everything it printed.
    #[track_caller]
    pub fn fail(&self, why: impl fmt::Display) -> ! {
        panic!("{why}\n{self}")
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        if self.code != Some(code) {
            self.fail(format_args!(
                "expected exit code {code}, got {:?}",
                self.code
            ));
        }
        if self.stderr.contains("panicked") {
            self.fail("medic panicked");
        }
        self
    }

    /// The `error: ...` header lines of the problem report, in order.
    pub fn headers(&self) -> Vec<Header> {
        self.stderr
            .lines()
            .filter_map(|l| l.strip_prefix("error: "))
            .map(Header::parse)
            .collect()
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "--- command: {}", self.cmd)?;
        writeln!(f, "--- exit code: {:?}", self.code)?;
        writeln!(f, "--- stdout:\n{}", self.stdout)?;
        writeln!(f, "--- stderr:\n{}", self.stderr)?;
        write!(f, "--- end")
    }
}

/// `FILE:LINE:COL: MESSAGE` (or `FILE: MESSAGE` for a problem without a position): a
/// problem header as printed, or an expected one as written in `expect.txt`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub file: String,
    pub pos: Option<(u32, u32)>,
    pub message: String,
}

impl Header {
    pub fn parse(s: &str) -> Header {
        let (head, message) = match s.split_once(": ") {
            Some((h, m)) => (h, m),
            None => (s.strip_suffix(':').unwrap_or(s), ""),
        };
        let mut parts = head.rsplitn(3, ':');
        if let (Some(col), Some(line), Some(file)) = (parts.next(), parts.next(), parts.next())
            && let (Ok(line), Ok(col)) = (line.parse::<u32>(), col.parse::<u32>())
        {
            return Header {
                file: file.to_owned(),
                pos: Some((line, col)),
                message: message.to_owned(),
            };
        }
        Header {
            file: head.to_owned(),
            pos: None,
            message: message.to_owned(),
        }
    }

    /// The file's base name, so that absolute and relative paths compare equal.
    pub fn basename(&self) -> &str {
        Path::new(&self.file)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(&self.file)
    }

    /// Whether this printed header is the `expected` one: same file (base name), same line
    /// and column, and the expected message is part of the printed one.
    pub fn matches(&self, expected: &Header) -> bool {
        self.basename() == expected.basename()
            && self.pos == expected.pos
            && self.message.contains(&expected.message)
    }
}

impl fmt::Display for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some((l, c)) => write!(f, "{}:{l}:{c}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Header;

    #[test]
    fn headers_parse() {
        let h = Header::parse("/x/inventory.yaml:3:30: `web-01`: address `a:b` is bad");
        assert_eq!(h.basename(), "inventory.yaml");
        assert_eq!(h.pos, Some((3, 30)));
        assert_eq!(h.message, "`web-01`: address `a:b` is bad");
        let h = Header::parse("--set:1:1: parameter `x`");
        assert_eq!((h.file.as_str(), h.pos), ("--set", Some((1, 1))));
        let h = Header::parse("p.yaml: phase `a`: `rollout.waves` is empty");
        assert_eq!((h.file.as_str(), h.pos), ("p.yaml", None));
        assert_eq!(h.message, "phase `a`: `rollout.waves` is empty");
    }
}
