//! End-to-end behaviour of the journal through its public API, with real files, a second
//! connection and a second process.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use medic_journal::{
    EventKind, Journal, JournalError, JournalReader, Record, RowKind, StepState, TimerKind,
    approve, meta_keys,
};
use proptest::prelude::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn journal_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("run.journal")
}

fn event(detail: String) -> Record {
    Record::Event {
        step: None,
        kind: EventKind::WindowChanged,
        detail: Some(detail),
    }
}

#[test]
fn durable_append_is_visible_to_another_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = journal_path(&dir);
    let journal = Journal::create(&path).expect("create");
    let reader = JournalReader::open(&path).expect("reader");
    assert!(reader.meta(meta_keys::CREATED_MS).expect("meta").is_some());
    assert_eq!(reader.steps().expect("steps"), vec![]);

    runtime()
        .block_on(journal.append_durable(Record::step("web-1/upgrade", StepState::Running, 1)))
        .expect("durable");

    let row = reader
        .step("web-1/upgrade")
        .expect("step")
        .expect("present");
    assert_eq!((row.state, row.attempt), (StepState::Running, 1));
    let events = reader.events_since(0, 10).expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, RowKind::Step(StepState::Running));
    assert_eq!(events[0].step.as_deref(), Some("web-1/upgrade"));
    assert_eq!(events[0].attempt, Some(1));
    journal.close().expect("close");
}

#[test]
fn ordering_is_preserved_across_batches_and_producers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = journal_path(&dir);
    let journal = Journal::create(&path).expect("create");
    let rt = runtime();
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let j = journal.clone();
            std::thread::spawn(move || {
                let rt = runtime();
                for i in 0..2_000u32 {
                    let rec = event(format!("{p}:{i}"));
                    // Mix fire-and-forget with durable records and flushes so that the
                    // records span many batches of different sizes.
                    if i % 97 == 0 {
                        rt.block_on(j.append_durable(rec)).expect("durable");
                    } else {
                        j.append(rec).expect("append");
                    }
                    if i % 501 == 0 {
                        rt.block_on(j.flush()).expect("flush");
                    }
                }
            })
        })
        .collect();
    for p in producers {
        p.join().expect("producer");
    }
    rt.block_on(journal.flush()).expect("flush");

    let reader = JournalReader::open(&path).expect("reader");
    let events = reader.events_since(0, usize::MAX).expect("events");
    assert_eq!(events.len(), 8_000);
    let mut next = [0u32; 4];
    for (e, pair) in events
        .iter()
        .zip(events.windows(2).map(|w| (w[0].seq, w[1].seq)))
    {
        assert!(pair.0 < pair.1);
        let detail = e.detail.as_deref().expect("detail");
        let (p, i) = detail.split_once(':').expect("p:i");
        let (p, i): (usize, u32) = (p.parse().expect("p"), i.parse().expect("i"));
        assert_eq!(i, next[p], "producer {p} out of order");
        next[p] += 1;
    }
    // events_since pages from the last seq seen.
    let page = reader.events_since(events[99].seq, 5).expect("page");
    assert_eq!(page, events[100..105].to_vec());
    journal.close().expect("close");
}

#[test]
fn reopen_after_drop_resumes_the_same_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = journal_path(&dir);
    {
        let journal = Journal::create(&path).expect("create");
        journal
            .append(Record::Meta {
                key: meta_keys::RUN_ID.to_owned(),
                value: "run-1".to_owned(),
            })
            .expect("meta");
        journal
            .append(Record::step("a", StepState::Running, 1))
            .expect("a");
        journal
            .append(Record::TimerSet {
                key: "retry:a".to_owned(),
                kind: TimerKind::Retry,
                due_ms: 42,
            })
            .expect("timer");
        journal
            .append(Record::TimerSet {
                key: "soak:wave-1".to_owned(),
                kind: TimerKind::Soak,
                due_ms: 7,
            })
            .expect("timer");
        // Dropped without close: dropping the last handle still commits what was queued.
    }
    assert!(matches!(
        Journal::create(&path),
        Err(JournalError::Exists { .. })
    ));

    let journal = Journal::open_existing(&path).expect("reopen");
    journal
        .append(Record::TimerClear {
            key: "retry:a".to_owned(),
        })
        .expect("clear");
    journal
        .append(Record::step_detail(
            "a",
            StepState::Succeeded,
            2,
            "build 20.0.1-690",
        ))
        .expect("a");
    journal
        .append(Record::step("b", StepState::Skipped, 0))
        .expect("b");
    journal.close().expect("close");

    let reader = JournalReader::open(&path).expect("reader");
    assert_eq!(
        reader.meta(meta_keys::RUN_ID).expect("meta").as_deref(),
        Some("run-1")
    );
    assert_eq!(reader.meta("nope").expect("meta"), None);
    let steps = reader.steps().expect("steps");
    assert_eq!(steps.len(), 2);
    assert_eq!(
        (steps[0].step.as_str(), steps[0].state, steps[0].attempt),
        ("a", StepState::Succeeded, 2)
    );
    assert_eq!(steps[0].detail.as_deref(), Some("build 20.0.1-690"));
    assert_eq!(
        (steps[1].step.as_str(), steps[1].state),
        ("b", StepState::Skipped)
    );
    let counts = reader.counts().expect("counts");
    assert_eq!(counts.get(&StepState::Succeeded), Some(&1));
    assert_eq!(counts.get(&StepState::Skipped), Some(&1));
    assert_eq!(counts.get(&StepState::Running), None);
    let timers = reader.timers().expect("timers");
    assert_eq!(timers.len(), 1);
    assert_eq!(
        (timers[0].key.as_str(), timers[0].due_ms),
        ("soak:wave-1", 7)
    );
    reader.check_integrity().expect("integrity");
}

#[test]
fn journal_files_are_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = journal_path(&dir);
    let journal = Journal::create(&path).expect("create");
    runtime()
        .block_on(journal.append_durable(Record::step("a", StepState::Running, 1)))
        .expect("durable");
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&path), 0o600);
    for suffix in ["-wal", "-shm", ".lock"] {
        let mut side = path.clone().into_os_string();
        side.push(suffix);
        assert_eq!(mode(Path::new(&side)), 0o600, "{suffix}");
    }
    journal.close().expect("close");
}

#[test]
fn approve_from_a_second_connection_while_the_writer_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = journal_path(&dir);
    let journal = Journal::create(&path).expect("create");
    let rt = runtime();
    assert_eq!(journal.approvals().expect("approvals"), vec![]);

    // The writer keeps committing while another thread, with its own connection, approves.
    let writer = {
        let j = journal.clone();
        std::thread::spawn(move || {
            let rt = runtime();
            for i in 0..300u32 {
                rt.block_on(j.append_durable(Record::step(format!("s{i}"), StepState::Running, 1)))
                    .expect("durable");
            }
        })
    };
    let approver = {
        let path = path.clone();
        std::thread::spawn(move || approve(&path, "wave-2", "alice"))
    };
    approver.join().expect("approver").expect("approve");
    writer.join().expect("writer");
    approve(&path, "wave-2", "bob").expect("second approval is a no-op");

    let approvals = journal.approvals().expect("approvals");
    assert_eq!(approvals.len(), 1);
    assert_eq!(
        (approvals[0].gate.as_str(), approvals[0].by.as_str()),
        ("wave-2", "alice")
    );
    let reader = JournalReader::open(&path).expect("reader");
    assert_eq!(
        reader.approval("wave-2").expect("approval"),
        Some(approvals[0].clone())
    );
    assert_eq!(reader.approval("wave-3").expect("approval"), None);
    let gate_events: Vec<_> = reader
        .events_since(0, usize::MAX)
        .expect("events")
        .into_iter()
        .filter(|e| e.kind == RowKind::Event(EventKind::GateApproved))
        .collect();
    assert_eq!(gate_events.len(), 1);
    rt.block_on(journal.append_durable(Record::step("after", StepState::Running, 1)))
        .expect("writer still works after the approval");
    assert_eq!(reader.steps().expect("steps").len(), 301);
    journal.close().expect("close");
}

#[test]
fn the_runs_own_approval_record_is_stored_as_medic_approve_stores_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = journal_path(&dir);
    let journal = Journal::create(&path).expect("create");
    for by in ["tty", "later"] {
        journal
            .append(Record::Approve {
                gate: "gate/a/wave-1".to_owned(),
                by: by.to_owned(),
            })
            .expect("append");
    }
    // And from another process afterwards: the first approval still stands.
    runtime().block_on(journal.flush()).expect("flush");
    approve(&path, "gate/a/wave-1", "bob").expect("approve");
    let reader = JournalReader::open(&path).expect("reader");
    let approvals = reader.approvals().expect("approvals");
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0].by, "tty");
    let events = reader.events_since(0, usize::MAX).expect("events");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, RowKind::Event(EventKind::GateApproved));
    assert_eq!(
        events[0].detail.as_deref(),
        Some(r#"{"by":"tty","gate":"gate/a/wave-1"}"#)
    );
    journal.close().expect("close");
}

#[test]
fn a_success_found_done_and_noted_reads_back_as_fields_from_the_text_journals_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = journal_path(&dir);
    let journal = Journal::create(&path).expect("create");
    journal
        .append(Record::Step {
            step: "a".to_owned(),
            state: StepState::Succeeded,
            attempt: 1,
            detail: Some("check held before acting: x".to_owned()),
            already_done: true,
            note: Some("anti-malware off".to_owned()),
        })
        .expect("append");
    // As a journal written before the fields existed holds a failure: free text.
    journal
        .append(Record::step_detail(
            "b",
            StepState::Failed,
            1,
            "already done: no; note: not a note",
        ))
        .expect("append");
    journal.close().expect("close");
    let reader = JournalReader::open(&path).expect("reader");
    let a = reader.step("a").expect("read").expect("row");
    assert!(a.already_done);
    assert_eq!(a.note.as_deref(), Some("anti-malware off"));
    assert_eq!(a.detail.as_deref(), Some("check held before acting: x"));
    let events = reader.events_since(0, 10).expect("events");
    assert_eq!(
        events[0].detail.as_deref(),
        Some("already done: check held before acting: x; note: anti-malware off"),
        "the same text as before the fields"
    );
    let b = reader.step("b").expect("read").expect("row");
    assert!(!b.already_done && b.note.is_none());
    assert_eq!(
        b.detail.as_deref(),
        Some("already done: no; note: not a note")
    );
}

#[test]
fn errors_name_the_journal_and_never_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = journal_path(&dir);

    let missing = JournalReader::open(&path).err().expect("missing journal");
    assert!(missing.to_string().contains("run.journal"), "{missing}");
    assert!(matches!(
        Journal::open_existing(&path),
        Err(JournalError::Io { .. })
    ));
    assert!(matches!(
        approve(&path, "g", "me"),
        Err(JournalError::Io { .. })
    ));

    let junk = dir.path().join("junk");
    std::fs::write(
        &junk,
        b"this is not a database, just some bytes long enough",
    )
    .expect("write");
    let err = JournalReader::open(&junk).err().expect("junk refused");
    assert!(err.to_string().contains("junk"), "{err}");
    assert!(Journal::open_existing(&junk).is_err());

    let journal = Journal::create(&path).expect("create");
    assert!(matches!(
        Journal::open_existing(&path),
        Err(JournalError::Locked { .. })
    ));
    let other = journal.clone();
    journal.close().expect("close");
    let closed = other.append(Record::step("a", StepState::Running, 1));
    assert!(
        matches!(closed, Err(JournalError::Closed { .. })),
        "{closed:?}"
    );
    let closed = runtime().block_on(other.append_durable(Record::step("a", StepState::Running, 1)));
    assert!(
        matches!(closed, Err(JournalError::Closed { .. })),
        "{closed:?}"
    );
    drop(other);
    // Closed means the lock is released too.
    Journal::open_existing(&path)
        .expect("reopen")
        .close()
        .expect("close");
}

/// The child half of `killed_writer_loses_no_acknowledged_record`: appends durable records
/// until it is killed, printing each step id once its future resolved.
#[test]
fn crash_child() {
    let Some(path) = std::env::var_os("MEDIC_JOURNAL_CRASH_CHILD") else {
        return;
    };
    let journal = Journal::create(Path::new(&path)).expect("create");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    rt.block_on(async {
        // Several tasks so that batches hold several durable records.
        let tasks: Vec<_> = (0..4)
            .map(|t| {
                let j = journal.clone();
                tokio::spawn(async move {
                    for i in 0u64.. {
                        let step = format!("t{t}-{i}");
                        j.append(event(step.clone())).expect("append");
                        j.append_durable(Record::step(step.clone(), StepState::Running, 1))
                            .await
                            .expect("durable");
                        println!("durable {step}");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
    });
}

#[test]
fn killed_writer_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = journal_path(&dir);
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env("MEDIC_JOURNAL_CRASH_CHILD", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut acknowledged = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.len() < 400 && Instant::now() < deadline {
        match lines.next() {
            Some(line) => {
                if let Some(step) = line.expect("line").strip_prefix("durable ") {
                    acknowledged.push(step.to_owned());
                }
            }
            None => break,
        }
    }
    child.kill().expect("SIGKILL");
    // Lines printed before the kill are still in the pipe.
    for line in lines {
        if let Some(step) = line.expect("line").strip_prefix("durable ") {
            acknowledged.push(step.to_owned());
        }
    }
    let status = child.wait().expect("wait");
    assert!(!status.success(), "child was killed");
    assert!(
        acknowledged.len() >= 400,
        "child acknowledged {}",
        acknowledged.len()
    );

    let reader = JournalReader::open(&path).expect("reader after crash");
    reader.check_integrity().expect("integrity");
    let steps: std::collections::HashSet<String> = reader
        .steps()
        .expect("steps")
        .into_iter()
        .map(|r| r.step)
        .collect();
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|s| !steps.contains(*s))
        .collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    drop(reader);

    // The run can be resumed: a new writer takes over the crashed one's lock and file.
    let journal = Journal::open_existing(&path).expect("resume");
    runtime()
        .block_on(journal.append_durable(Record::step("resumed", StepState::Running, 1)))
        .expect("durable after crash");
    journal.close().expect("close");
    JournalReader::open(&path)
        .expect("reader")
        .check_integrity()
        .expect("integrity");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The steps table always holds each step's last transition, in append order.
    #[test]
    fn steps_hold_the_last_transition(
        ops in prop::collection::vec((0..6usize, 0..StepState::ALL.len(), 0..4u32, any::<bool>()), 1..60)
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = journal_path(&dir);
        let journal = Journal::create(&path).expect("create");
        let rt = runtime();
        let mut expected = std::collections::BTreeMap::new();
        for (step, state, attempt, durable) in ops.iter().copied() {
            let rec = Record::step(format!("s{step}"), StepState::ALL[state], attempt);
            if durable {
                rt.block_on(journal.append_durable(rec)).expect("durable");
            } else {
                journal.append(rec).expect("append");
            }
            expected.insert(format!("s{step}"), (StepState::ALL[state], attempt));
        }
        rt.block_on(journal.flush()).expect("flush");
        let reader = JournalReader::open(&path).expect("reader");
        let got: std::collections::BTreeMap<_, _> = reader
            .steps()
            .expect("steps")
            .into_iter()
            .map(|r| (r.step, (r.state, r.attempt)))
            .collect();
        prop_assert_eq!(got, expected);
        prop_assert_eq!(reader.events_since(0, usize::MAX).expect("events").len(), ops.len());
        journal.close().expect("close");
    }
}

#[test]
fn binary_meta_values_read_back_as_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("j.sqlite");
    let blob: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let j = medic_journal::Journal::create_with_meta_and_blobs(
        &path,
        &[("run_id", "r1")],
        &[("plan_bin", &blob), ("empty", &[])],
    )
    .expect("create");
    let r = medic_journal::JournalReader::open(&path).expect("reader");
    assert_eq!(
        r.meta_blob("plan_bin").expect("blob").as_deref(),
        Some(&blob[..])
    );
    assert_eq!(
        r.meta_blob("empty").expect("blob").as_deref(),
        Some(&[][..])
    );
    assert_eq!(r.meta_blob("absent").expect("blob"), None);
    assert_eq!(r.meta("run_id").expect("meta").as_deref(), Some("r1"));
    drop(r);
    j.close().expect("close");
}

#[test]
fn a_journal_created_with_meta_is_complete_from_its_first_moment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("j.sqlite");
    let j =
        medic_journal::Journal::create_with_meta(&path, &[("plan_json", "{}"), ("run_id", "r1")])
            .expect("create");
    let r = medic_journal::JournalReader::open(&path).expect("reader");
    assert_eq!(r.meta("plan_json").expect("meta").as_deref(), Some("{}"));
    assert_eq!(r.meta("run_id").expect("meta").as_deref(), Some("r1"));
    drop(r);
    j.close().expect("close");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("creating"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(
        medic_journal::Journal::create_with_meta(&path, &[]).is_err(),
        "never overwrites"
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
        0o600
    );
}
