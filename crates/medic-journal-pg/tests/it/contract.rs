//! The journal contract: the same test bodies on the SQLite journal and on PostgreSQL.
//! Each body gets a fresh run (a new file, or a new run id in one database).

use std::path::PathBuf;

use medic_journal::{
    EventKind, Journal, JournalError, JournalRead, JournalReader, JournalStore, Record, StepState,
    TimerKind, meta_keys,
};
use medic_journal_pg::server::TestServer;
use medic_journal_pg::{PgJournal, PgReader, PgTarget, Source};

pub(crate) enum Fx<'a> {
    Sqlite(tempfile::TempDir),
    Pg(&'a TestServer),
}

impl Fx<'_> {
    fn path(&self, run: &str) -> PathBuf {
        match self {
            Fx::Sqlite(d) => d.path().join(format!("{run}.sqlite")),
            Fx::Pg(_) => PathBuf::new(),
        }
    }

    fn target(&self) -> PgTarget {
        match self {
            Fx::Pg(s) => {
                PgTarget::parse(&s.url_with_password(), Source::Environment).expect("target")
            }
            Fx::Sqlite(_) => unreachable!("sqlite has no target"),
        }
    }

    fn create(
        &self,
        run: &str,
        meta: &[(&str, &str)],
        blobs: &[(&str, &[u8])],
    ) -> Result<Box<dyn JournalStore>, JournalError> {
        Ok(match self {
            Fx::Sqlite(_) => Box::new(Journal::create_with_meta_and_blobs(
                &self.path(run),
                meta,
                blobs,
            )?),
            Fx::Pg(_) => Box::new(PgJournal::create(&self.target(), run, meta, blobs)?),
        })
    }

    fn reopen(&self, run: &str) -> Result<Box<dyn JournalStore>, JournalError> {
        Ok(match self {
            Fx::Sqlite(_) => Box::new(Journal::open_existing(&self.path(run))?),
            Fx::Pg(_) => Box::new(PgJournal::open_existing(&self.target().with_run(run))?),
        })
    }

    fn reader(&self, run: &str) -> Box<dyn JournalRead> {
        match self {
            Fx::Sqlite(_) => Box::new(JournalReader::open(&self.path(run)).expect("reader")),
            Fx::Pg(_) => Box::new(PgReader::open(&self.target().with_run(run)).expect("reader")),
        }
    }

    /// As `medic approve` does, from another connection.
    fn approve(&self, run: &str, gate: &str, by: &str) {
        match self {
            Fx::Sqlite(_) => medic_journal::approve(&self.path(run), gate, by).expect("approve"),
            Fx::Pg(_) => PgReader::open(&self.target().with_run(run))
                .expect("reader")
                .approve(gate, by)
                .expect("approve"),
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

type Body = fn(&Fx<'_>);

const BODIES: &[(&str, Body)] = &[
    (
        "durable_append_is_visible_elsewhere",
        durable_append_is_visible_elsewhere,
    ),
    (
        "the_last_record_of_a_step_is_its_state",
        the_last_record_of_a_step_is_its_state,
    ),
    (
        "a_reopened_run_has_everything_acknowledged",
        a_reopened_run_has_everything_acknowledged,
    ),
    (
        "approvals_from_another_process_while_it_runs",
        approvals_from_another_process_while_it_runs,
    ),
    (
        "a_success_found_done_keeps_its_fields",
        a_success_found_done_keeps_its_fields,
    ),
    ("a_run_is_created_once", a_run_is_created_once),
];

fn run_all(fx: &Fx<'_>) {
    for (name, body) in BODIES {
        eprintln!("contract: {name}");
        body(fx);
    }
}

#[test]
fn contract_on_sqlite() {
    run_all(&Fx::Sqlite(tempfile::tempdir().expect("tempdir")));
}

#[test]
fn contract_on_postgres() {
    let server = TestServer::start().expect("a throwaway PostgreSQL");
    run_all(&Fx::Pg(&server));
}

fn durable_append_is_visible_elsewhere(fx: &Fx<'_>) {
    let run = "durable";
    let j = fx
        .create(
            run,
            &[(meta_keys::RUN_ID, run)],
            &[(meta_keys::PLAN_BIN, b"\x00\x01plan")],
        )
        .expect("create");
    let r = fx.reader(run);
    assert_eq!(
        r.meta(meta_keys::RUN_ID).expect("meta").as_deref(),
        Some(run)
    );
    assert!(r.meta(meta_keys::CREATED_MS).expect("meta").is_some());
    assert_eq!(
        r.meta_blob(meta_keys::PLAN_BIN).expect("blob").as_deref(),
        Some(&b"\x00\x01plan"[..])
    );
    assert!(r.steps().expect("steps").is_empty());
    rt().block_on(j.append_durable(Record::step("web-1/upgrade", StepState::Running, 1)))
        .expect("durable");
    // No flush: the durable append alone made it visible to another connection.
    let steps = r.steps().expect("steps");
    assert_eq!(steps.len(), 1);
    assert_eq!((steps[0].state, steps[0].attempt), (StepState::Running, 1));
    drop(j);
}

fn the_last_record_of_a_step_is_its_state(fx: &Fx<'_>) {
    let run = "order";
    let j = fx.create(run, &[], &[]).expect("create");
    for i in 0..300u32 {
        let id = format!("s{:03}", i % 10);
        let state = if i >= 290 {
            StepState::Succeeded
        } else {
            StepState::Running
        };
        j.append(Record::step(id, state, i / 10 + 1))
            .expect("append");
    }
    j.append(Record::TimerSet {
        key: "b".into(),
        kind: TimerKind::Soak,
        due_ms: 20,
    })
    .expect("timer");
    j.append(Record::TimerSet {
        key: "a".into(),
        kind: TimerKind::Retry,
        due_ms: 10,
    })
    .expect("timer");
    j.append(Record::TimerSet {
        key: "c".into(),
        kind: TimerKind::Retry,
        due_ms: 5,
    })
    .expect("timer");
    j.append(Record::TimerClear { key: "c".into() })
        .expect("clear");
    j.append(Record::Meta {
        key: "k".into(),
        value: "v1".into(),
    })
    .expect("meta");
    j.append(Record::Meta {
        key: "k".into(),
        value: "v2".into(),
    })
    .expect("meta");
    rt().block_on(j.flush()).expect("flush");
    let steps = j.steps().expect("steps");
    let ids: Vec<&str> = steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(ids, (0..10).map(|i| format!("s{i:03}")).collect::<Vec<_>>());
    assert!(
        steps
            .iter()
            .all(|s| s.state == StepState::Succeeded && s.attempt == 30)
    );
    let timers = j.timers().expect("timers");
    let keys: Vec<(&str, TimerKind)> = timers.iter().map(|t| (t.key.as_str(), t.kind)).collect();
    assert_eq!(keys, [("a", TimerKind::Retry), ("b", TimerKind::Soak)]);
    assert_eq!(j.meta("k").expect("meta").as_deref(), Some("v2"));
}

fn a_reopened_run_has_everything_acknowledged(fx: &Fx<'_>) {
    let run = "reopen";
    let j = fx
        .create(run, &[(meta_keys::RUN_ID, run)], &[])
        .expect("create");
    rt().block_on(j.append_durable(Record::step("a", StepState::Succeeded, 1)))
        .expect("durable");
    j.append(Record::step("b", StepState::Running, 2))
        .expect("append");
    // One writer per run: a second one is refused while the first lives.
    let second = fx.reopen(run).err().expect("locked");
    assert!(matches!(second, JournalError::Locked { .. }), "{second:?}");
    drop(j);
    let j = fx.reopen(run).expect("reopen");
    let states: Vec<(String, StepState)> = j
        .steps()
        .expect("steps")
        .into_iter()
        .map(|s| (s.step, s.state))
        .collect();
    assert_eq!(
        states,
        [
            ("a".to_owned(), StepState::Succeeded),
            ("b".to_owned(), StepState::Running)
        ]
    );
    assert_eq!(
        j.meta(meta_keys::RUN_ID).expect("meta").as_deref(),
        Some(run)
    );
}

fn approvals_from_another_process_while_it_runs(fx: &Fx<'_>) {
    let run = "approvals";
    let j = fx.create(run, &[], &[]).expect("create");
    j.append(Record::Event {
        step: Some("gate/a".into()),
        kind: EventKind::GateWaiting,
        detail: None,
    })
    .expect("event");
    j.append(Record::Event {
        step: Some("manual/m".into()),
        kind: EventKind::ManualWaiting,
        detail: None,
    })
    .expect("event");
    rt().block_on(j.flush()).expect("flush");
    assert!(j.approvals().expect("approvals").is_empty());
    fx.approve(run, "gate/a", "alice");
    fx.approve(run, "gate/a", "bob");
    let a = j.approvals().expect("approvals");
    assert_eq!(a.len(), 1);
    assert_eq!((a[0].gate.as_str(), a[0].by.as_str()), ("gate/a", "alice"));
    // The run's own record of a terminal approval is stored as `medic approve` stores one.
    j.append(Record::Approve {
        gate: "manual/m".into(),
        by: "carol".into(),
    })
    .expect("approve");
    j.append(Record::Approve {
        gate: "gate/a".into(),
        by: "dave".into(),
    })
    .expect("approve");
    rt().block_on(j.flush()).expect("flush");
    let r = fx.reader(run);
    let by: Vec<(String, String)> = r
        .approvals()
        .expect("approvals")
        .into_iter()
        .map(|a| (a.gate, a.by))
        .collect();
    assert!(by.contains(&("gate/a".into(), "alice".into())), "{by:?}");
    assert!(by.contains(&("manual/m".into(), "carol".into())), "{by:?}");
    assert_eq!(by.len(), 2);
    let waiting = r.steps_with_event(EventKind::GateWaiting).expect("history");
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].1, "gate/a");
    let approved = r
        .steps_with_event(EventKind::GateApproved)
        .expect("history");
    assert!(approved.is_empty(), "approvals name no step: {approved:?}");
}

fn a_success_found_done_keeps_its_fields(fx: &Fx<'_>) {
    let run = "fields";
    let j = fx.create(run, &[], &[]).expect("create");
    rt().block_on(j.append_durable(Record::Step {
        step: "a".into(),
        state: StepState::Succeeded,
        attempt: 1,
        detail: Some("check held".into()),
        already_done: true,
        note: Some("anti-malware off by policy".into()),
    }))
    .expect("durable");
    rt().block_on(j.append_durable(Record::step_detail("b", StepState::Failed, 3, "exit 1")))
        .expect("durable");
    let steps = fx.reader(run).steps().expect("steps");
    assert_eq!(steps[0].detail.as_deref(), Some("check held"));
    assert!(steps[0].already_done);
    assert_eq!(steps[0].note.as_deref(), Some("anti-malware off by policy"));
    assert_eq!(
        (steps[1].state, steps[1].attempt, steps[1].detail.as_deref()),
        (StepState::Failed, 3, Some("exit 1"))
    );
    assert!(!steps[1].already_done);
}

fn a_run_is_created_once(fx: &Fx<'_>) {
    let run = "once";
    let j = fx.create(run, &[], &[]).expect("create");
    drop(j);
    let again = fx.create(run, &[], &[]).err().expect("exists");
    assert!(matches!(again, JournalError::Exists { .. }), "{again:?}");
}
