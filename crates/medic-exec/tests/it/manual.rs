//! Manual steps (`driver: manual`): the run pauses at them for the operator, `--yes` never
//! approves them, an approval lets the check observe the work (polled to the deadline),
//! and a resume honours an approval given before it. The "Manager" is a driver whose
//! reported build the test changes, as an operator's upgrade would.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use medic_exec::{
    ActionFuture, ActionReply, ActionRequest, Control, Driver, Drivers, ManualAsk, Outcome,
    RunEvent, RunExit,
};
use medic_journal::{EventKind, JournalRead, MemJournal, RowKind};
use medic_model::Value;

use crate::util::{Harness, Scripted, inventory, opts, plan};

const PLAYBOOK: &str = r#"
name: manual
params:
  manager_min_build: { type: manager_build, default: "20.0.463" }
defaults: { driver: local, timeout: 10m, estimate: 1m, retries: { max: 0 } }
phases:
  - name: manager-upgrade
    select: { roles: [manager] }
    actions:
      - action: manager-upgrade
        driver: manual
        args: { to: "{params.manager_min_build}" }
        timeout: 1h
        check:
          probe: manager-version
          when: { compare: { left: facts.manager_version, op: ge, right: params.manager_min_build } }
  - name: after
    select: { roles: [agent] }
    actions: [{ action: act-a }]
    after: [{ phase: manager-upgrade, join: all }]
  - name: independent
    select: { roles: [agent] }
    actions: [{ action: act-b }]
"#;

const STEP: &str = "manager-upgrade/dsm";

/// One answer of the Manager's version probe.
#[derive(Clone, Copy)]
enum Answer {
    Build(&'static str),
    /// No answer (a Manager restarting during its upgrade).
    Down,
}

/// The Manager as the `manual` driver sees it: its version probe gives the scripted answers
/// in turn, then the last one for ever (the operator's upgrade is what changes them); its
/// own action does nothing (a person does the work). Scripted by call, not by clock: the
/// paused clock jumps to whatever the run waits for next.
#[derive(Clone)]
struct Manager {
    answers: Arc<Mutex<VecDeque<Answer>>>,
    calls: Arc<Mutex<BTreeMap<String, u32>>>,
}

impl Manager {
    fn answering(answers: &[Answer]) -> Self {
        Manager {
            answers: Arc::new(Mutex::new(answers.iter().copied().collect())),
            calls: Arc::default(),
        }
    }

    fn calls(&self, action: &str) -> u32 {
        self.calls
            .lock()
            .expect("lock")
            .get(action)
            .copied()
            .unwrap_or(0)
    }
}

impl Driver for Manager {
    fn run(&self, req: ActionRequest) -> ActionFuture<'_> {
        Box::pin(async move {
            *self
                .calls
                .lock()
                .expect("lock")
                .entry(req.action.clone())
                .or_default() += 1;
            if req.action != "manager-version" {
                return ActionReply::ok();
            }
            let answer = {
                let mut a = self.answers.lock().expect("lock");
                match a.len() {
                    0 => Answer::Down,
                    1 => a[0],
                    _ => a.pop_front().unwrap_or(Answer::Down),
                }
            };
            match answer {
                Answer::Down => ActionReply::failed("connection refused (restarting)"),
                Answer::Build(v) => {
                    let mut r = ActionReply::ok();
                    r.facts.insert(
                        "manager_version".to_owned(),
                        Value::Manager(v.parse().expect("build")),
                    );
                    r
                }
            }
        })
    }

    fn idempotent(&self, action: &str) -> bool {
        action == "manager-version"
    }

    fn manual_ask(&self, req: &ActionRequest) -> ManualAsk {
        let to = req.args.get("to").cloned().unwrap_or_default();
        ManualAsk {
            instruction: format!("upgrade the Manager to {to}"),
            question: format!("did you upgrade the Manager to {to}?"),
        }
    }
}

fn harness(m: &Manager) -> Harness {
    let inv = inventory(3).replace("version: \"20.0.463\"", "version: \"20.0.400\"");
    let local = Scripted::new(1.0);
    let mut h = Harness::new(plan(&inv, PLAYBOOK), local);
    let local = h.drivers.get("local").expect("local driver");
    h.drivers = Drivers::new()
        .with("local", local)
        .with("manual", Arc::new(m.clone()));
    h
}

/// Whether the journal says the manual step waits for the operator.
fn waits(journal: &MemJournal) -> bool {
    journal.events_since(0).iter().any(|e| {
        e.kind == RowKind::Event(EventKind::ManualWaiting) && e.step.as_deref() == Some(STEP)
    })
}

/// Returns once the journal says the step waits; panics after two simulated days.
async fn until_waiting(journal: &MemJournal) {
    for _ in 0..48 * 60 {
        tokio::time::sleep(Duration::from_secs(60)).await;
        if waits(journal) {
            return;
        }
    }
    panic!("{STEP} never waited for the operator");
}

/// Once the step waits, approves it as `medic approve` does from another process.
fn approve_when_waiting(h: &Harness, by: &'static str) -> tokio::task::JoinHandle<()> {
    let journal = h.journal.clone();
    tokio::spawn(async move {
        until_waiting(&journal).await;
        assert!(journal.approve(STEP, by));
    })
}

/// Once the step waits, stops the run (as a crash would leave it: resumable).
fn stop_when_waiting(h: &Harness, control: &Control) -> tokio::task::JoinHandle<()> {
    let journal = h.journal.clone();
    let c = control.clone();
    tokio::spawn(async move {
        until_waiting(&journal).await;
        c.cancel.cancel();
    })
}

fn finished(h: &Harness, step: &str) -> Option<(Outcome, Option<String>)> {
    h.events().into_iter().find_map(|e| match e {
        RunEvent::StepFinished {
            step: s,
            outcome,
            detail,
            ..
        } if s == step => Some((outcome, detail)),
        _ => None,
    })
}

fn journal_events(h: &Harness, kind: EventKind) -> usize {
    h.journal
        .events_since(0)
        .iter()
        .filter(|e| e.kind == RowKind::Event(kind) && e.step.as_deref() == Some(STEP))
        .count()
}

const OLD: Answer = Answer::Build("20.0.400");

#[tokio::test(start_paused = true)]
async fn a_manual_step_waits_for_the_operator_and_yes_does_not_approve_it() {
    let m = Manager::answering(&[OLD]);
    let h = harness(&m);
    let control = Control::default();
    let stop = {
        let c = control.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(6 * 3600)).await;
            c.cancel.cancel();
        })
    };
    let mut o = opts();
    // --yes approves gates, never a manual step.
    o.yes = true;
    let r = h.run(o, control).await;
    stop.await.expect("stopper");
    assert_eq!(r.exit, RunExit::Stopped, "{:?}", r.summary);
    let waiting: Vec<(String, String)> = h
        .events()
        .into_iter()
        .filter_map(|e| match e {
            RunEvent::ManualStepWaiting {
                step,
                instruction,
                question,
                ..
            } if step == STEP => Some((instruction, question)),
            _ => None,
        })
        .collect();
    assert_eq!(
        waiting,
        [(
            "upgrade the Manager to 20.0.463".to_owned(),
            "did you upgrade the Manager to 20.0.463?".to_owned()
        )]
    );
    assert_eq!(
        m.calls("manager-upgrade"),
        0,
        "nothing acted for the operator"
    );
    assert_eq!(
        m.calls("manager-version"),
        1,
        "the check looked once, then asked"
    );
    for i in 0..3 {
        assert_eq!(
            h.calls(&format!("h{i:02}"), "act-a"),
            0,
            "its dependents wait"
        );
        assert_eq!(h.calls(&format!("h{i:02}"), "act-b"), 1, "the rest goes on");
    }
    let states = h.states();
    assert_eq!(states.get(STEP).map(String::as_str), Some("pending"));
    assert_eq!(journal_events(&h, EventKind::ManualWaiting), 1);
    assert_eq!(journal_events(&h, EventKind::ManualApproved), 0);
}

#[tokio::test(start_paused = true)]
async fn an_approval_lets_the_check_observe_the_work_still_finishing() {
    // Old before the question; after the approval the Manager is still restarting, then
    // reports the old build once more, then the new one: the check keeps looking.
    let m = Manager::answering(&[
        OLD,
        Answer::Down,
        Answer::Down,
        OLD,
        Answer::Build("20.0.463"),
    ]);
    let h = harness(&m);
    let approver = approve_when_waiting(&h, "alice");
    let r = h.run(opts(), Control::default()).await;
    approver.await.expect("approver");
    assert_eq!(r.exit, RunExit::Ok, "{:?}", h.events());
    let (outcome, detail) = finished(&h, STEP).expect("finished");
    assert_eq!(outcome, Outcome::Succeeded, "{detail:?}");
    assert!(
        h.events().iter().any(|e| matches!(e,
            RunEvent::ManualStepApproved { step, approved_by, .. } if step == STEP && approved_by == "alice"))
    );
    assert_eq!(m.calls("manager-version"), 5, "polled through the restart");
    assert_eq!(
        m.calls("manager-upgrade"),
        1,
        "the driver's part, after the approval"
    );
    assert_eq!(h.calls("h00", "act-a"), 1, "the dependents ran after");
    assert_eq!(journal_events(&h, EventKind::ManualWaiting), 1);
    assert_eq!(journal_events(&h, EventKind::ManualApproved), 1);
}

#[tokio::test(start_paused = true)]
async fn a_check_that_does_not_see_the_new_build_fails_the_step_naming_both_builds() {
    let m = Manager::answering(&[OLD]);
    let h = harness(&m);
    let approver = approve_when_waiting(&h, "alice");
    let t0 = tokio::time::Instant::now();
    let r = h.run(opts(), Control::default()).await;
    approver.await.expect("approver");
    assert_eq!(r.exit, RunExit::Failed);
    assert!(
        t0.elapsed() >= Duration::from_secs(3600),
        "polled to the deadline"
    );
    assert!(
        m.calls("manager-version") > 10,
        "polled, not looked at once"
    );
    let (outcome, detail) = finished(&h, STEP).expect("finished");
    assert_eq!(outcome, Outcome::Failed);
    let detail = detail.unwrap_or_default();
    for part in [
        "facts.manager_version = 20.0.400",
        "facts.manager_version >= 20.0.463",
        "medic apply --retry-failed --journal",
    ] {
        assert!(detail.contains(part), "{part}: {detail}");
    }
    assert_eq!(h.calls("h00", "act-a"), 0, "dependents blocked");
    assert_eq!(h.calls("h00", "act-b"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_resume_whose_manager_is_already_upgraded_sees_it_and_moves_on() {
    let m = Manager::answering(&[OLD, Answer::Build("20.0.463")]);
    let h = harness(&m);
    let control = Control::default();
    let stop = stop_when_waiting(&h, &control);
    let first = h.run(opts(), control).await;
    stop.await.expect("stopper");
    assert_eq!(first.exit, RunExit::Stopped);
    let before = h.events().len();
    let second = h.run(opts(), Control::default()).await;
    assert_eq!(second.exit, RunExit::Ok, "{:?}", second.summary);
    let resumed = &h.events()[before..];
    assert!(
        !resumed.iter().any(|e| matches!(
            e,
            RunEvent::ManualStepWaiting { .. } | RunEvent::ManualStepApproved { .. }
        )),
        "not asked again"
    );
    assert!(resumed.iter().any(|e| matches!(e,
        RunEvent::StepFinished { step, outcome: Outcome::AlreadyDone, .. } if step == STEP)));
    assert_eq!(h.calls("h00", "act-a"), 1);
}

#[tokio::test(start_paused = true)]
async fn an_approval_recorded_before_a_crash_is_honoured_and_the_check_still_decides() {
    let m = Manager::answering(&[OLD, OLD, Answer::Down, Answer::Build("20.0.500")]);
    let h = harness(&m);
    let control = Control::default();
    let stop = stop_when_waiting(&h, &control);
    let first = h.run(opts(), control).await;
    stop.await.expect("stopper");
    assert_eq!(first.exit, RunExit::Stopped);
    // Approved while no run is going: the run that saw the question is gone.
    assert!(h.journal.approve(STEP, "carol"));
    let before = h.events().len();
    let second = h.run(opts(), Control::default()).await;
    assert_eq!(second.exit, RunExit::Ok, "{:?}", second.summary);
    let resumed = &h.events()[before..];
    assert!(
        !resumed
            .iter()
            .any(|e| matches!(e, RunEvent::ManualStepWaiting { .. })),
        "the earlier approval counts"
    );
    assert!(resumed.iter().any(|e| matches!(e,
        RunEvent::ManualStepApproved { approved_by, .. } if approved_by == "carol")));
    assert!(resumed.iter().any(|e| matches!(e,
        RunEvent::StepFinished { step, outcome: Outcome::Succeeded, .. } if step == STEP)));
    assert_eq!(
        m.calls("manager-version"),
        4,
        "asked, then polled until it saw it"
    );
}

#[tokio::test(start_paused = true)]
async fn a_yes_at_the_terminal_approves_the_manual_step_and_the_run_records_it() {
    let m = Manager::answering(&[OLD, Answer::Build("20.0.463")]);
    let h = harness(&m);
    let control = Control::default();
    let (c, journal) = (control.clone(), h.journal.clone());
    let operator = tokio::spawn(async move {
        until_waiting(&journal).await;
        c.approve(STEP, "tty");
    });
    let mut o = opts();
    // Only the terminal's input can answer in time.
    o.approval_poll = Duration::from_secs(30 * 24 * 3600);
    let r = h.run(o, control).await;
    operator.await.expect("operator");
    assert_eq!(r.exit, RunExit::Ok, "{:?}", r.summary);
    assert!(h.events().iter().any(|e| matches!(e,
        RunEvent::ManualStepApproved { step, approved_by, .. } if step == STEP && approved_by == "tty")));
    let approvals = h.journal.approvals().expect("approvals");
    assert_eq!(
        approvals
            .iter()
            .map(|a| (a.gate.as_str(), a.by.as_str()))
            .collect::<Vec<_>>(),
        [(STEP, "tty")]
    );
    assert_eq!(journal_events(&h, EventKind::ManualApproved), 1);
}
