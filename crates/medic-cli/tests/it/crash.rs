//! A real `medic apply` on the simulated fleet, killed with SIGKILL at 20 points of its run,
//! then `medic resume`: every run ends verified and every side effect happened exactly
//! once (counted from the simulator's write-ahead log, persisted beside the journal).
//!
//! A kill point is a count of the side-effect attempts in that log, never a share of a
//! reference run's wall time: the kills fall at the same points of the run on a fast
//! machine and on a loaded one.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{TestEnv, lab_inventory, real_playbook};

const SCALE: &str = "3000";

pub(crate) fn medic() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_medic"));
    c.env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

pub(crate) fn apply_args(journal: &Path) -> Vec<String> {
    vec![
        "apply".into(),
        "--inventory".into(),
        lab_inventory().display().to_string(),
        "--playbook".into(),
        real_playbook().display().to_string(),
        "--simulate".into(),
        "--time-scale".into(),
        SCALE.into(),
        "--yes".into(),
        "--progress".into(),
        "never".into(),
        "--journal".into(),
        journal.display().to_string(),
    ]
}

/// Side effects per (host, action) from the simulator's log.
pub(crate) fn effects(journal: &Path) -> BTreeMap<(String, String), u32> {
    medic_sim::effect_counts(Path::new(&format!("{}.sim.log", journal.display())))
}

/// Side-effect attempts the simulator's log holds so far (its complete lines after the
/// header): how far a run has gone, whatever the machine's speed.
fn attempts(journal: &Path) -> u64 {
    let log = std::fs::read(format!("{}.sim.log", journal.display())).unwrap_or_default();
    (log.iter().filter(|&&b| b == b'\n').count() as u64).saturating_sub(1)
}

/// Longest a run may take to reach a kill point: longer is a hang.
const POINT_LIMIT: Duration = Duration::from_secs(120);

/// Polls until `journal`'s run has made `n` side-effect attempts (true), or `child` ended
/// (false); panics after [`POINT_LIMIT`].
fn await_attempts(child: &mut std::process::Child, journal: &Path, n: u64) -> bool {
    let t0 = Instant::now();
    while attempts(journal) < n {
        if child.try_wait().expect("poll medic").is_some() {
            return false;
        }
        assert!(
            t0.elapsed() < POINT_LIMIT,
            "the run made no {n}th side-effect attempt within {POINT_LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

pub(crate) fn run_to_end(journal: &Path) -> std::process::Output {
    medic()
        .args(apply_args(journal))
        .output()
        .expect("run medic apply")
}

#[test]
fn sigkill_at_twenty_points_then_resume_performs_every_side_effect_exactly_once() {
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
    let total = attempts(&reference_journal);
    assert!(reference.values().all(|&n| n == 1), "{reference:?}");
    assert!(
        reference.len() > 20,
        "the lab run has side effects: {}",
        reference.len()
    );

    for point in 0..20u32 {
        let journal = env.path().join(format!("run{point}.sqlite"));
        // Spread the kills over the whole run: point 0 before the first side effect (while
        // the journal is made), then one every twentieth of the attempts.
        let at = total * u64::from(point) / 20;
        let mut child = medic()
            .args(apply_args(&journal))
            .spawn()
            .expect("spawn medic apply");
        let reached = await_attempts(&mut child, &journal, at);
        let _ = child.kill();
        let st = child.wait().expect("reap medic");
        assert!(
            reached,
            "point {point}: the run ended ({st}) before its {at}th of {total} side-effect attempts"
        );
        let out = medic()
            .args([
                "resume",
                "--journal",
                &journal.display().to_string(),
                "--yes",
                "--progress",
                "never",
            ])
            .output()
            .expect("run medic resume");
        match out.status.code() {
            Some(0) => {}
            // A kill before the journal held the plan leaves nothing to resume: start again.
            Some(2) | Some(4)
                if !journal.exists()
                    || String::from_utf8_lossy(&out.stderr).contains("holds no plan") =>
            {
                let _ = std::fs::remove_file(&journal);
                let out = run_to_end(&journal);
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            code => panic!(
                "point {point} ({at} attempts): resume exited {code:?}\n{}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
        let got = effects(&journal);
        assert_eq!(
            got, reference,
            "point {point} (killed at {at} attempts): side effects differ from an uninterrupted run"
        );
    }
}

/// SQLite's `WAL_WRITE_LOCK` byte in the `-shm` file (unix VFS: `UNIX_SHM_BASE + 0`): held
/// as a POSIX WRITE lock from `BEGIN IMMEDIATE` to the end of `COMMIT`.
const WAL_WRITE_LOCK_BYTE: u64 = 120;

/// Sends `sig` with the shell's builtin `kill` (std can only send SIGKILL, and the
/// workspace has no unsafe code).
fn signal(pid: u32, sig: &str) -> bool {
    Command::new("sh")
        .args(["-c", r#"kill -s "$1" "$2" 2>/dev/null"#, "sh", sig])
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success())
}

/// Every thread of `pid` is stopped (or gone).
fn frozen(pid: u32) -> bool {
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return true;
        };
        let running = tasks.flatten().any(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or("");
            !matches!(state, "T" | "Z" | "X" | "")
        });
        if !running {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Whether `pid` holds the WAL writer lock of `journal` (read from `/proc/locks`) while its
/// journal writer thread runs. The lock is per process, and before that thread exists a
/// resume holds it only to recover the WAL the previous kill left.
fn in_write_transaction(pid: u32, journal: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let writer_thread = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim() == "medic-journal")
        });
    if !writer_thread {
        return false;
    }
    let Ok(ino) = std::fs::metadata(format!("{}-shm", journal.display())).map(|m| m.ino()) else {
        return false;
    };
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    locks.lines().any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        f.len() >= 8
            && f[1] == "POSIX"
            && f[3] == "WRITE"
            && f[4] == pid.to_string()
            && f[5].rsplit(':').next() == Some(ino.to_string().as_str())
            && f[6].parse::<u64>().is_ok_and(|s| s <= WAL_WRITE_LOCK_BYTE)
            && (f[7] == "EOF" || f[7].parse::<u64>().is_ok_and(|e| e >= WAL_WRITE_LOCK_BYTE))
    })
}

/// What the 20-point test does not: `medic resume` itself is killed again and again, and
/// each kill waits until the process is frozen (SIGSTOP) inside a journal write
/// transaction, so it provably dies halfway through a COMMIT (SIGKILL lets a stopped process
/// run no further instruction). After every kill the journal must open with
/// `medic status`, and the count of succeeded steps must never go back.
#[test]
fn kills_inside_journal_writes_of_apply_and_of_resume_lose_and_repeat_nothing() {
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
    // Kill k hunts between the k+1-th and the k+2-th eighth of the run's side-effect
    // attempts, then kills wherever the run is: the run cannot end before its fifth kill.
    let total = attempts(&reference_journal);
    let eighth = |k: u32| total * u64::from(k) / 8;

    let journal = env.path().join("tortured.sqlite");
    let (mut kills, mut mid_write, mut succeeded_seen) = (0u32, 0u32, 0u64);
    let last = loop {
        let mut child = if journal.exists() {
            medic()
                .args(["resume", "--yes", "--progress", "never", "--journal"])
                .arg(&journal)
                .spawn()
        } else {
            medic().args(apply_args(&journal)).spawn()
        }
        .expect("spawn medic");
        if kills == 5 {
            break child.wait().expect("wait for medic");
        }
        if !await_attempts(&mut child, &journal, eighth(kills + 1)) {
            break child.wait().expect("wait for medic");
        }
        let pid = child.id();
        let hunt_until = eighth(kills + 2);
        let hunt_started = Instant::now();
        let mut landed = false;
        let exited = loop {
            if let Some(st) = child.try_wait().expect("poll medic") {
                break Some(st);
            }
            let stopped = signal(pid, "STOP");
            landed = stopped && frozen(pid) && in_write_transaction(pid, &journal);
            if landed || attempts(&journal) >= hunt_until || hunt_started.elapsed() > POINT_LIMIT {
                let _ = child.kill();
                let st = child.wait().expect("reap medic");
                use std::os::unix::process::ExitStatusExt as _;
                // A process that finished on its own just before the kill is not a kill.
                break (st.signal() != Some(libc::SIGKILL)).then_some(st);
            }
            if stopped {
                signal(pid, "CONT");
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        if let Some(st) = exited {
            break st;
        }
        kills += 1;
        mid_write += u32::from(landed);
        if journal.exists() {
            let out = medic()
                .args(["status", "--format", "json", "--journal"])
                .arg(&journal)
                .stdout(Stdio::piped())
                .output()
                .expect("run medic status");
            assert_eq!(
                out.status.code(),
                Some(0),
                "kill {kills}: the journal does not open: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: serde_json::Value =
                serde_json::from_slice(&out.stdout).expect("medic status prints JSON");
            let n = v["steps"]["succeeded"].as_u64().unwrap_or(0);
            assert!(n >= succeeded_seen, "kill {kills}: {succeeded_seen} -> {n}");
            succeeded_seen = n;
        }
    };
    eprintln!("{kills} kills, {mid_write} of them inside a journal write transaction");
    assert_eq!(last.code(), Some(0), "the last process finishes the run");
    assert_eq!(effects(&journal), reference);
    assert_eq!(kills, 5, "the run ended after {kills} kills");
    assert!(
        mid_write >= 1,
        "no kill landed inside a journal write ({kills} kills)"
    );
}
