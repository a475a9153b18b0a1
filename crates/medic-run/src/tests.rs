//! The library's pieces on real files: the demo playbook and fleet, real journals in a
//! temporary directory.

use std::path::{Path, PathBuf};

use medic_journal::{Record, StepState};
use medic_plan::{Plan, StepKind};

use crate::Error;
use crate::conn::Conn;
use crate::run::{PlanInputs, RunSpec, Simulate};
use crate::status::Outcome;
use medic_journal::RunState;

const PLAYBOOK: &str = crate::demo::DEMO_PLAYBOOK;

/// The demo fleet and the playbook, written to `dir`.
fn inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let inv = dir.join("inventory.yaml");
    let pb = dir.join("playbook.yaml");
    std::fs::write(&inv, medic_sim::demo_inventory_yaml()).expect("write inventory");
    std::fs::write(&pb, PLAYBOOK).expect("write playbook");
    (inv, pb)
}

fn plan_of(inv: &Path, pb: &Path) -> Plan {
    let l = crate::load::files(inv, pb, &[]).expect("the demo inputs load");
    crate::load::make_plan(
        &l.inventory,
        &l.playbook,
        &l.playbook_text,
        None,
        (inv, &l.inventory_text),
    )
    .expect("the demo plans")
}

fn spec(inputs: PlanInputs) -> RunSpec {
    RunSpec {
        inputs,
        window: None,
        window_policy: medic_exec::WindowPolicy::Stop,
        yes: false,
        strict: false,
        max_per_group: None,
        simulate: false,
        sim: Simulate {
            time_scale: 1.0,
            seed: 1,
            faults: Vec::new(),
        },
        conn: Conn::default(),
        journal: None,
        events: None,
    }
}

/// The first problem's message and file, from a bad-input error.
fn problem(e: Error) -> (String, String) {
    match e {
        Error::BadInput(p) => {
            let first = p.0.first().expect("one problem at least");
            (first.message.clone(), first.file.name.to_string())
        }
        Error::Internal(m) => panic!("expected bad input, got internal error: {m}"),
    }
}

#[test]
fn status_reads_failed_blocked_and_waiting_steps_from_a_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (inv, pb) = inputs(dir.path());
    let plan = plan_of(&inv, &pb);
    // An action step another step needs, and a gate.
    let needed: Vec<u32> = plan
        .steps()
        .iter()
        .flat_map(|s| s.needs.iter().filter(|n| !n.on_finish).map(|n| n.step))
        .collect();
    let failed = plan
        .steps()
        .iter()
        .enumerate()
        .find(|(i, s)| s.kind == StepKind::Action && needed.contains(&(*i as u32)))
        .map(|(_, s)| s.id.clone())
        .expect("the demo plan has a step that another needs");
    let gate = plan
        .steps()
        .iter()
        .find(|s| matches!(s.kind, StepKind::Gate(_)))
        .map(|s| s.id.clone())
        .expect("the demo plan has a gate");
    let path = dir.path().join("journal.sqlite");
    let journal =
        medic_exec::create_journal(&path, &plan, &[("run_id", "r-1")]).expect("create journal");
    let outcome = Outcome {
        state: RunState::Stopped,
        reason: Some("interrupted".to_owned()),
        next: Some("run it again".to_owned()),
    };
    let records = [
        Record::step_detail(failed.clone(), StepState::Failed, 1, "exit 1: boom"),
        Record::Event {
            step: Some(gate.clone()),
            kind: medic_journal::EventKind::GateWaiting,
            detail: Some("approval".to_owned()),
        },
        // Said twice, listed once.
        Record::Event {
            step: Some(gate.clone()),
            kind: medic_journal::EventKind::GateWaiting,
            detail: Some("approval".to_owned()),
        },
    ];
    for r in records {
        journal.append(r).expect("append");
    }
    crate::status::record_outcome(&journal, &outcome);
    journal.close().expect("close");

    let s = crate::status::read(&crate::journal::JournalTarget::Sqlite(path.clone()))
        .expect("status reads");
    assert_eq!(s.run_id.as_deref(), Some("r-1"));
    assert_eq!(s.run_state, Some(RunState::Stopped));
    assert_eq!(s.stop_reason.as_deref(), Some("interrupted"));
    assert_eq!(s.failed, vec![failed.clone()]);
    assert_eq!(s.failed_on[0].detail.as_deref(), Some("exit 1: boom"));
    assert!(
        s.blocked.iter().any(|b| b.blocked_by == failed),
        "a step that needs {failed} is blocked by it: {:?}",
        s.blocked
    );
    assert_eq!(s.waiting_for_approval, vec![gate.clone()]);
    assert_eq!(s.gates_waiting.len(), 1);
    assert!(
        s.gates_waiting[0].approve.ends_with(&gate),
        "{}",
        s.gates_waiting[0].approve
    );
    assert_eq!(s.steps.get("failed"), Some(&1));
    // Every step and gate of the plan is counted once.
    let counted: u64 = s.steps.values().sum();
    let size = plan
        .steps()
        .iter()
        .filter(|s| s.kind != StepKind::Barrier)
        .count();
    assert_eq!(counted, size as u64);

    // Approved: no longer waiting.
    medic_journal::approve(&path, &gate, "tester").expect("approve");
    let s = crate::status::read(&crate::journal::JournalTarget::Sqlite(path.clone()))
        .expect("status reads");
    assert!(s.waiting_for_approval.is_empty());
    assert_eq!(s.approvals, vec![format!("{gate} by tester")]);
}

#[test]
fn status_names_a_file_that_is_not_a_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("j.sqlite");
    std::fs::write(
        &path,
        "not a journal at all, just some text that is long enough",
    )
    .expect("write");
    let (msg, _) = problem(
        crate::status::read(&crate::journal::JournalTarget::Sqlite(path.clone()))
            .expect_err("refused"),
    );
    assert!(msg.contains("is not a journal"), "{msg}");
    let (msg, _) = problem(
        crate::status::read(&crate::journal::JournalTarget::Sqlite(
            dir.path().join("none"),
        ))
        .expect_err("refused"),
    );
    assert!(msg.contains("there is no journal"), "{msg}");
}

#[test]
fn a_run_spec_checks_its_flags_before_any_file() {
    let mut s = spec(PlanInputs {
        verify_key: Some("keys.pub".into()),
        playbook: Some("pb.yaml".into()),
        ..PlanInputs::default()
    });
    let (msg, file) = problem(s.check_flags().expect_err("a key without a plan"));
    assert_eq!(file, "--verify-key");
    assert!(msg.contains("no --plan was given"), "{msg}");

    s.inputs.verify_key = None;
    s.conn.poll_interval_s = Some(0.0);
    let (msg, file) = problem(s.check_flags().expect_err("a poll interval of 0"));
    assert_eq!(file, "--poll-interval");
    assert!(msg.contains("not a usable poll interval"), "{msg}");

    s.conn.poll_interval_s = Some(2.0);
    s.check_flags().expect("fine flags");
    s.window = Some("2020-01-01T00:00Z/2020-01-01T01:00Z".to_owned());
    let (msg, file) = problem(s.window().expect_err("a past window"));
    assert_eq!(file, "--window");
    assert!(msg.contains("ended before now"), "{msg}");
}

#[test]
fn a_run_spec_resolves_its_plan_and_refuses_what_cannot_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (inv, pb) = inputs(dir.path());
    let never =
        |_: &Path, _: Option<&Path>| -> Result<Plan, Error> { panic!("no sealed plan was given") };
    let quiet = |_: &medic_config::Problems| {};

    let (msg, _) = problem(
        spec(PlanInputs {
            playbook: Some(pb.clone()),
            ..PlanInputs::default()
        })
        .plan(None, &never, &quiet)
        .expect_err("a playbook alone"),
    );
    assert_eq!(msg, "nothing to apply");

    // A rehearsal of a sealed plan needs the inventory its fleet is built from.
    let sealed = plan_of(&inv, &pb);
    let read = |_: &Path, _: Option<&Path>| Ok(sealed.clone());
    let mut s = spec(PlanInputs {
        plan: Some(dir.path().join("plan.json")),
        ..PlanInputs::default()
    });
    s.simulate = true;
    let (msg, file) = problem(s.plan(None, &read, &quiet).expect_err("no inventory"));
    assert_eq!(file, "--simulate");
    assert!(msg.contains("builds its simulated fleet"), "{msg}");

    // The playbook's example values: a rehearsal runs on them, a real run does not.
    let mut s = spec(PlanInputs {
        inventory: Some(inv.clone()),
        playbook: Some(pb.clone()),
        ..PlanInputs::default()
    });
    s.simulate = true;
    let (plan, inv_text) = s.plan(None, &never, &quiet).expect("a rehearsal plans");
    assert!(
        !plan.example_params().is_empty(),
        "the playbook has examples"
    );
    assert!(inv_text.is_some());
    s.simulate = false;
    let e = s
        .plan(None, &never, &quiet)
        .expect_err("a real run on examples");
    let Error::BadInput(p) = e else {
        panic!("bad input expected")
    };
    assert_eq!(p.0.len(), plan.example_params().len(), "each value named");
}

#[test]
fn a_sim_fault_must_name_a_host_and_an_action_of_the_plan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (inv, pb) = inputs(dir.path());
    let mut s = spec(PlanInputs {
        inventory: Some(inv.clone()),
        playbook: Some(pb.clone()),
        ..PlanInputs::default()
    });
    s.simulate = true;
    let quiet = |_: &medic_config::Problems| {};
    let never = |_: &Path, _: Option<&Path>| -> Result<Plan, Error> { unreachable!() };
    let (plan, inv_text) = s.plan(None, &never, &quiet).expect("plans");
    let host = plan.hosts()[1].name.clone();
    for (fault, says) in [
        ("unreachable:nohost".to_owned(), "no host of the inventory"),
        (
            format!("hang:{host}:no-such-action"),
            "no step of the plan runs",
        ),
        (format!("fail:{host}:x:many"), "is not a number of times"),
        ("explode:x".to_owned(), "is not a fault"),
    ] {
        s.sim.faults = vec![fault.clone()];
        s.journal = Some(dir.path().join("j").join("journal.sqlite"));
        let (msg, file) = problem(
            s.start(plan.clone(), inv_text.clone(), None, None)
                .err()
                .unwrap_or_else(|| panic!("{fault} is refused")),
        );
        assert_eq!(file, "--sim-fault");
        assert!(msg.contains(says), "{fault}: {msg}");
        // Refused before anything was written.
        assert!(!dir.path().join("j").exists(), "{fault}: nothing written");
    }
}

/// `medic demo`'s inputs: the built-in fleet with its Manager older than the playbook's
/// minimum (so the demo shows the manual Manager upgrade), written into the directory,
/// planned, and started as a rehearsal whose journal records the demo.
#[test]
fn the_demo_writes_its_inputs_and_starts_a_rehearsal() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let demo_dir = dir.path().join("demo");
    let d = crate::demo::Demo::write(Some(&demo_dir)).expect("the demo's inputs");
    assert_eq!(d.dir, demo_dir);
    assert_eq!(d.loaded.inventory.manager.version.to_string(), "20.0.400");
    let written = std::fs::read_to_string(demo_dir.join("playbook.yaml")).expect("written");
    assert_eq!(written, crate::demo::DEMO_PLAYBOOK);
    let plan = d.plan().expect("the demo plans");
    assert!(
        plan.steps().iter().any(|s| &*s.action == "manager-upgrade"),
        "the demo shows the Manager upgrade"
    );
    let ready = d.start(plan, 1000.0).expect("the rehearsal starts");
    assert!(ready.inputs.simulate && ready.inputs.demo && ready.inputs.yes);
    assert!(demo_dir.join("journal.sqlite").is_file());

    // A `--dir` that cannot be a directory is the operator's input to change.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").expect("a file");
    let (msg, flag) = problem(
        crate::demo::Demo::write(Some(&file))
            .map(|_| ())
            .expect_err("refused"),
    );
    assert_eq!(flag, "--dir");
    assert!(msg.starts_with("cannot use "), "{msg}");
}

/// `medic inventory import` refuses bad input before the Manager is asked anything: an
/// output that is one of its inputs, a bad relay-group hint, an Ansible file that is
/// not there. The Manager's URL is on loopback and never contacted.
#[test]
fn an_import_refuses_bad_input_before_asking_the_manager() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let key = dir.path().join("key");
    std::fs::write(&key, "secret").expect("a key file");
    let rt = crate::runtime().expect("a runtime");
    let _g = rt.enter();
    fn prepare(
        key: &Path,
        out: Option<&Path>,
        relay_groups: &[String],
        ansible: Option<&Path>,
    ) -> Result<(), Error> {
        crate::import::Import::prepare(&crate::import::Request {
            dsm: "https://127.0.0.1:9",
            dsm_ca: None,
            dsm_api_key_file: Some(key),
            timeout: std::time::Duration::from_secs(1),
            manager_name: None,
            relay_groups,
            ansible,
            out,
        })
        .map(|_| ())
    }
    let (_, flag) = problem(prepare(&key, Some(&key), &[], None).expect_err("refused"));
    assert_eq!(flag, "--out");
    let hints = ["not a hint".to_owned()];
    let (_, flag) = problem(prepare(&key, None, &hints, None).expect_err("refused"));
    assert_eq!(flag, "--relay-group");
    let missing = dir.path().join("no-such-inventory.ini");
    let (msg, _) = problem(prepare(&key, None, &[], Some(&missing)).expect_err("refused"));
    assert!(
        msg.starts_with("cannot read the Ansible inventory"),
        "{msg}"
    );
    prepare(&key, None, &[], None).expect("a good request is ready");
}
