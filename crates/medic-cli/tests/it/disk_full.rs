//! A real `medic apply --simulate` whose journal fills its disk halfway through the run.
//!
//! The "disk" is the process's file-size limit (RLIMIT_FSIZE, set by `ulimit -f` in the
//! `sh` that execs medic, with SIGXFSZ ignored so that writes past it fail with EFBIG
//! instead of killing the process). That needs no mount and no privilege, so it runs
//! anywhere CI does; the journal's WAL is by far the largest file medic writes, so it is the
//! one that hits the limit. Once the limit is lifted, `medic resume` must finish the run
//! with every side effect exactly once.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::crash::{apply_args, effects, medic, run_to_end};
use crate::util::TestEnv;

/// Room for the journal's creation (its file holds the whole plan) and about a third of the
/// lab run's commits (each appends at least one 16 KiB page to the WAL): measured, 14 or 15
/// of the run's 27 side effects happen before the limit is hit.
const LIMIT_BYTES: u64 = 1 << 20;

/// `medic ARGS` under a file-size limit of `bytes`, SIGXFSZ ignored (an ignored signal
/// stays ignored across exec).
fn capped_medic(bytes: u64, args: &[String]) -> Command {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        // POSIX `ulimit -f` counts 512-byte blocks (dash, and bash as sh).
        .arg(r#"ulimit -f "$1" && trap '' XFSZ && shift && exec "$@""#)
        .arg("sh")
        .arg((bytes / 512).to_string())
        .arg(env!("CARGO_BIN_EXE_medic"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    sh
}

fn status_json(journal: &Path) -> serde_json::Value {
    let out = medic()
        .args(["status", "--format", "json", "--journal"])
        .arg(journal)
        .stdout(Stdio::piped())
        .output()
        .expect("run medic status");
    assert_eq!(
        out.status.code(),
        Some(0),
        "the journal must open after the disk filled up: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("medic status prints JSON")
}

#[test]
fn a_full_disk_stops_the_run_cleanly_and_resume_finishes_it_exactly_once() {
    let env = TestEnv::new();
    let reference_journal = env.path().join("reference.sqlite");
    let out = run_to_end(&reference_journal);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference = effects(&reference_journal);
    assert!(reference.values().all(|&n| n == 1), "{reference:?}");

    let journal = env.path().join("full.sqlite");
    let out = capped_medic(LIMIT_BYTES, &apply_args(&journal))
        .output()
        .expect("run medic apply under a file-size limit");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(4),
        "a journal that cannot be written is exit code 4:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let name = journal.display().to_string();
    assert!(
        stderr.contains(&format!("cannot write journal {name}"))
            || stderr.contains(&format!("disk full writing journal {name}")),
        "the error names the journal and says it cannot be written:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("then run `medic resume --journal {name}`")),
        "the error says what to do:\n{stderr}"
    );
    // The limit was hit halfway through the run: some side effects happened, not all.
    let partial = effects(&journal);
    let done: u32 = partial.values().sum();
    let all: u32 = reference.values().sum();
    assert!(
        done > 0 && done < all,
        "the limit must be hit mid-run: {done} of {all} side effects before it"
    );
    assert!(partial.values().all(|&n| n == 1), "{partial:?}");

    let status = status_json(&journal);
    assert!(status["steps"].is_object(), "{status}");

    // Space is back (no limit): resume finishes the run, every side effect exactly once.
    let out = medic()
        .args(["resume", "--yes", "--progress", "never", "--journal"])
        .arg(&journal)
        .output()
        .expect("run medic resume");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(effects(&journal), reference);
    let status = status_json(&journal);
    assert_eq!(status["failed"], serde_json::json!([]), "{status}");
    assert_eq!(status["running"], serde_json::json!([]), "{status}");
}

#[test]
fn a_disk_too_full_for_the_new_journal_runs_nothing_and_leaves_no_journal() {
    let env = TestEnv::new();
    let journal = env.path().join("never.sqlite");
    // Less than the journal's first file, which holds the whole plan.
    let out = capped_medic(32 << 10, &apply_args(&journal))
        .output()
        .expect("run medic apply under a file-size limit");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot create journal {}", journal.display()))
            && stderr.contains("nothing was run: free space and start the run again"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        effects(&journal).is_empty(),
        "no side effect before the journal"
    );
    // No journal, and no half-made one under its temporary name either.
    let left: Vec<String> = std::fs::read_dir(env.path())
        .expect("read the directory")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("never.sqlite") && !n.ends_with(".sim.log"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // With room, the same command starts the run.
    let out = run_to_end(&journal);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
