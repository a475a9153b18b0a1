//! What reaches a run from outside the plan: the operator's answer at this process's
//! terminal (`Control::approve`, an input event the run records itself), and a journal that
//! stops taking records (the run stops; no driver acts on a start that was not durable).

use std::time::Duration;

use medic_exec::{Control, RunEvent, RunExit, StopReason};
use medic_journal::{EventKind, JournalRead, RowKind};

use crate::util::*;

const GATED: &str = r#"
name: gated
defaults: { driver: local, timeout: 10m, estimate: 1m, retries: { max: 0 } }
phases:
  - name: a
    select: { roles: [agent] }
    actions: [{ action: act-a }]
    rollout: { waves: [{ group: canary }, "100%"], approval: true }
"#;

const GATE: &str = "gate/a/wave-1";

#[tokio::test(start_paused = true)]
async fn a_yes_at_the_terminal_opens_the_gate_and_the_run_records_it() {
    let h = Harness::new(plan(&inventory(3), GATED), Scripted::new(1.0));
    let mut o = opts();
    o.yes = false;
    // A poll far longer than the run: only the terminal's input can open the gate in time.
    o.approval_poll = Duration::from_secs(24 * 3600);
    let control = Control::default();
    let (c, events) = (control.clone(), h.events.clone());
    let operator = tokio::spawn(async move {
        let waiting = || {
            events.0.lock().expect("events").iter().any(|e| {
                matches!(e, RunEvent::GateWaiting { gate, waiting_for, .. }
                    if gate == GATE && waiting_for == "approval")
            })
        };
        while !waiting() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // Not a gate nor a manual step: ignored, never recorded.
        c.approve("a/h00", "mallory");
        c.approve(GATE, "tty");
    });
    let t0 = tokio::time::Instant::now();
    let r = h.run(o, control).await;
    operator.await.expect("operator");
    assert_eq!(r.exit, RunExit::Ok, "{:?}", r.summary);
    assert!(
        t0.elapsed() < Duration::from_secs(3600),
        "opened by the input, not the poll"
    );
    assert!(h.events().iter().any(|e| matches!(e,
        RunEvent::GateOpened { gate, approved_by: Some(by), .. } if gate == GATE && by == "tty")));
    let approvals = h.journal.approvals().expect("approvals");
    assert_eq!(approvals.len(), 1, "{approvals:?}");
    assert_eq!(
        (approvals[0].gate.as_str(), approvals[0].by.as_str()),
        (GATE, "tty")
    );
    let recorded = h
        .journal
        .events_since(0)
        .iter()
        .filter(|e| e.kind == RowKind::Event(EventKind::GateApproved))
        .count();
    assert_eq!(recorded, 1, "as `medic approve` records it");
    assert_eq!(h.calls("h02", "act-a"), 1, "wave 1 ran after the gate");
}

#[tokio::test(start_paused = true)]
async fn a_journal_that_stops_taking_records_stops_the_run_before_any_unrecorded_start() {
    let h = Harness::new(plan(&inventory(6), GATED), Scripted::new(1.0));
    // Room for a few records: the canary's start and end, then nothing.
    h.journal.fill_after(3);
    let r = h.run(opts(), Control::default()).await;
    assert_eq!(r.exit, RunExit::Stopped);
    assert!(
        matches!(r.stop, Some(StopReason::JournalFailed { ref message }) if message.contains("disk full")),
        "{:?}",
        r.stop
    );
    let rows = h.journal.steps().expect("steps");
    let acted: u32 = h.log.lock().expect("log").calls.values().sum();
    assert!(acted >= 1, "the canary's start was durable and it ran");
    for i in 0..6 {
        let host = format!("h{i:02}");
        if h.calls(&host, "act-a") > 0 {
            assert!(
                rows.iter().any(|r| r.step == format!("a/{host}")),
                "{host} acted without a durable start: {rows:?}"
            );
        }
    }
}
