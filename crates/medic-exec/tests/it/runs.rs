use std::time::Duration;

use medic_exec::{Control, Outcome, RunEvent, RunExit, StopReason};
use medic_journal::{EventKind, RowKind};

use crate::util::*;

const CHAIN: &str = r#"
name: chain
max_parallel: 3
endpoints: { api: 1 }
defaults: { driver: local, timeout: 10m, estimate: 1m, retries: { max: 0 } }
phases:
  - name: a
    select: { roles: [agent] }
    actions: [{ action: act-a }]
    max_parallel: 2
  - name: b
    select: { planned_in: [a] }
    actions: [{ action: act-b, endpoint: api }]
    after: [{ phase: a, join: same-host }]
"#;

fn start_of(h: &Harness, step: &str) -> u128 {
    h.log
        .lock()
        .expect("log")
        .timeline
        .iter()
        .find(|(_, k, s)| *k == "start" && s == step)
        .map(|t| t.0)
        .unwrap_or_else(|| panic!("{step} started"))
}

fn end_of(h: &Harness, step: &str) -> u128 {
    h.log
        .lock()
        .expect("log")
        .timeline
        .iter()
        .find(|(_, k, s)| *k == "end" && s == step)
        .map(|t| t.0)
        .unwrap_or_else(|| panic!("{step} ended"))
}

//   a/h0 -- b/h0
//   a/h1 -- b/h1     (x6 hosts; a: phase limit 2, b: endpoint limit 1, global 3)
#[tokio::test(start_paused = true)]
async fn order_and_every_limit_hold() {
    let h = Harness::new(plan(&inventory(6), CHAIN), Scripted::new(10.0));
    let r = h.run(opts(), Control::default()).await;
    assert_eq!(r.exit, RunExit::Ok, "{:?}", r.summary);
    assert_eq!(r.summary.hosts_verified, 6);
    for i in 0..6 {
        assert!(
            start_of(&h, &format!("b/h{i:02}")) >= end_of(&h, &format!("a/h{i:02}")),
            "b waits for a on h{i:02}"
        );
        assert_eq!(
            h.max_running(&format!("host:h{i:02}")),
            1,
            "one step at a time per host"
        );
    }
    assert!(
        h.max_running("all") <= 3,
        "global limit: {}",
        h.max_running("all")
    );
    assert!(h.max_running("action:act-a") <= 2, "phase limit");
    assert!(h.max_running("action:act-b") <= 1, "endpoint limit");
}

//   a/h0 (slow) -- b/h0
//   a/h1 -------- b/h1   must not wait for the slow a/h0
// The in-memory journal commits at once, so the paused clock never jumps over a commit.
#[tokio::test(start_paused = true)]
async fn a_slow_step_blocks_only_its_dependents() {
    let d = Scripted::new(0.02).script(
        "h00",
        "act-a",
        Script {
            secs: 2.0,
            ..Script::default()
        },
    );
    let h = Harness::new(plan(&inventory(2), CHAIN), d);
    let r = h.run(opts(), Control::default()).await;
    assert_eq!(r.exit, RunExit::Ok);
    let tl = h.log.lock().expect("log").timeline.clone();
    assert!(
        end_of(&h, "b/h01") < end_of(&h, "a/h00"),
        "h01 finished its chain while h00 was still in a: {tl:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_blocks_dependents_and_fails_the_run() {
    let d = Scripted::new(1.0).script(
        "h01",
        "act-a",
        Script {
            fail_times: 9,
            ..Script::default()
        },
    );
    let h = Harness::new(plan(&inventory(3), CHAIN), d);
    let r = h.run(opts(), Control::default()).await;
    assert_eq!(r.exit, RunExit::Failed);
    assert_eq!(h.calls("h01", "act-b"), 0, "b/h01 never runs");
    assert_eq!(r.summary.hosts_failed, 1);
    assert_eq!(r.summary.hosts_verified, 2);
    assert_eq!(
        h.states().get("b/h01"),
        None,
        "a blocked step was never started"
    );
}

const RETRY: &str = r#"
name: retry
defaults: { driver: local, timeout: 30s, estimate: 1m, retries: { max: 2, backoff: 10s } }
phases:
  - name: a
    select: { roles: [agent] }
    actions: [{ action: act-a }]
"#;

#[tokio::test(start_paused = true)]
async fn retries_back_off_then_succeed() {
    let d = Scripted::new(1.0).script(
        "h00",
        "act-a",
        Script {
            fail_times: 2,
            secs: 1.0,
            ..Script::default()
        },
    );
    let h = Harness::new(plan(&inventory(1), RETRY), d);
    let r = h.run(opts(), Control::default()).await;
    assert_eq!(r.exit, RunExit::Ok, "{:?}", r.summary);
    assert_eq!(h.calls("h00", "act-a"), 3);
    let waits: Vec<u64> = h
        .events()
        .iter()
        .filter_map(|e| match e {
            RunEvent::StepRetrying { wait_ms, .. } => Some(*wait_ms),
            _ => None,
        })
        .collect();
    assert_eq!(waits.len(), 2);
    assert!(waits[1] > waits[0], "exponential backoff: {waits:?}");
    assert!(
        (7_500..=12_500).contains(&waits[0]),
        "10s with jitter: {waits:?}"
    );
}

/// A refusal (an untrusted host key) fails the step at once: retries would only repeat it.
#[tokio::test(start_paused = true)]
async fn a_refused_action_is_not_retried() {
    let d = Scripted::new(1.0).script(
        "h00",
        "act-a",
        Script {
            refuse: true,
            secs: 1.0,
            ..Script::default()
        },
    );
    let h = Harness::new(plan(&inventory(1), RETRY), d);
    let r = h.run(opts(), Control::default()).await;
    assert_ne!(r.exit, RunExit::Ok, "{:?}", r.summary);
    assert_eq!(h.calls("h00", "act-a"), 1);
    assert!(
        !h.events()
            .iter()
            .any(|e| matches!(e, RunEvent::StepRetrying { .. }))
    );
}

#[tokio::test(start_paused = true)]
async fn a_hung_action_times_out_at_its_deadline() {
    let d = Scripted::new(1.0).script(
        "h00",
        "act-a",
        Script {
            hang: true,
            ..Script::default()
        },
    );
    let h = Harness::new(plan(&inventory(1), RETRY), d);
    let t0 = tokio::time::Instant::now();
    let r = h.run(opts(), Control::default()).await;
    assert_eq!(r.exit, RunExit::Failed);
    assert_eq!(h.calls("h00", "act-a"), 3, "the timeout is retryable");
    let took = t0.elapsed().as_secs();
    // 3 x 30s timeouts + ~10s + ~20s backoff.
    assert!((110..=140).contains(&took), "took {took}s");
    let failed = h.events().iter().any(|e| matches!(e, RunEvent::StepFinished { outcome: Outcome::Failed, detail: Some(d), .. } if d.contains("timed out")));
    assert!(failed);
}

fn waves(strict: bool) -> String {
    format!(
        r#"
name: waves
max_parallel: 50
defaults: {{ driver: local, timeout: 10m, estimate: 1m, retries: {{ max: 0 }} }}
phases:
  - name: a
    select: {{ roles: [agent] }}
    actions: [{{ action: act-a }}]
    rollout: {{ waves: [10, "100%"], max_failures: 1, strict: {strict} }}
"#
    )
}

fn with_three_failures(d: Scripted) -> Scripted {
    ["h02", "h05", "h07"].iter().fold(d, |d, h| {
        d.script(
            h,
            "act-a",
            Script {
                fail_times: 1,
                secs: 5.0,
                ..Script::default()
            },
        )
    })
}

/// Issue acceptance: max_failures 1, three failures in a first wave of 10, strict.
#[tokio::test(start_paused = true)]
async fn strict_budget_stops_before_wave_two_after_at_most_two_failures() {
    let h = Harness::new(
        plan(&inventory(20), &waves(true)),
        with_three_failures(Scripted::new(5.0)),
    );
    let r = h.run(opts(), Control::default()).await;
    assert_eq!(r.exit, RunExit::Stopped);
    assert!(
        matches!(
            r.stop,
            Some(StopReason::BudgetExceeded {
                failures: 2,
                tolerated: 1,
                ..
            })
        ),
        "{:?}",
        r.stop
    );
    let failed = r.summary.actions["act-a"].failed;
    assert!(failed <= 2, "at most 2 failures, got {failed}");
    assert_eq!(r.summary.overshoot, 0, "strict cannot overshoot");
    assert!(
        h.max_running("all") <= 2,
        "in flight capped at tolerance left + 1"
    );
    for i in 10..20 {
        assert_eq!(
            h.calls(&format!("h{i:02}"), "act-a"),
            0,
            "wave 1 never starts"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn without_strict_the_overshoot_of_in_flight_steps_is_reported() {
    let h = Harness::new(
        plan(&inventory(20), &waves(false)),
        with_three_failures(Scripted::new(5.0)),
    );
    let r = h.run(opts(), Control::default()).await;
    assert_eq!(r.exit, RunExit::Stopped);
    assert!(
        matches!(r.stop, Some(StopReason::BudgetExceeded { .. })),
        "{:?}",
        r.stop
    );
    assert_eq!(
        r.summary.actions["act-a"].failed, 3,
        "all ten of wave 0 were in flight"
    );
    assert_eq!(
        r.summary.overshoot, 1,
        "the third failure came from a step already in flight"
    );
    let in_flight = h.events().iter().find_map(|e| match e {
        RunEvent::BudgetExceeded { in_flight, .. } => Some(*in_flight),
        _ => None,
    });
    assert!(in_flight.is_some_and(|n| n >= 1), "{in_flight:?}");
    for i in 10..20 {
        assert_eq!(
            h.calls(&format!("h{i:02}"), "act-a"),
            0,
            "wave 1 never starts"
        );
    }
}

const GATED: &str = r#"
name: gated
defaults: { driver: local, timeout: 10m, estimate: 1m, retries: { max: 0 } }
phases:
  - name: a
    select: { roles: [agent] }
    actions: [{ action: act-a }]
    rollout: { waves: [{ group: canary }, "100%"], pause: 10m, approval: true }
"#;

#[tokio::test(start_paused = true)]
async fn a_gate_soaks_then_waits_for_an_approval_from_another_connection() {
    let h = Harness::new(plan(&inventory(4), GATED), Scripted::new(1.0));
    let journal = h.journal.clone();
    let mut o = opts();
    o.yes = false;
    let approver = tokio::spawn(async move {
        // Long after the soak: the run must still be waiting.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        // As `medic approve` records it from another process: the poll finds it.
        assert!(journal.approve("gate/a/wave-1", "alice"));
    });
    let t0 = tokio::time::Instant::now();
    let r = h.run(o, Control::default()).await;
    approver.await.expect("approver");
    assert_eq!(r.exit, RunExit::Ok);
    assert!(t0.elapsed() >= Duration::from_secs(3600));
    let ev = h.events();
    assert!(ev.iter().any(|e| matches!(e, RunEvent::GateWaiting { waiting_for, .. } if waiting_for.starts_with("soak"))));
    assert!(
        ev.iter().any(
            |e| matches!(e, RunEvent::GateOpened { approved_by: Some(b), .. } if b == "alice")
        )
    );
    assert!(
        start_of(&h, "a/h01") > end_of(&h, "a/h00"),
        "wave 1 after the canary"
    );
}

#[tokio::test(start_paused = true)]
async fn the_window_holds_the_start_and_its_end_stops_the_run() {
    let h = Harness::new(
        plan(
            &inventory(6),
            &CHAIN.replace("max_parallel: 3", "max_parallel: 1"),
        ),
        Scripted::new(600.0),
    );
    let mut o = opts();
    let now = o.clock.wall_ms();
    // Opens in an hour, lasts 50 minutes: room for 5 ten-minute steps of 12.
    let w = format!(
        "{}/{}",
        jiff::Timestamp::from_millisecond(now + 3_600_000).expect("ts"),
        jiff::Timestamp::from_millisecond(now + 3_600_000 + 3_000_000).expect("ts")
    );
    o.window = Some(medic_plan::Window::parse(&w).expect("window"));
    let t0 = tokio::time::Instant::now();
    let r = h.run(o, Control::default()).await;
    assert_eq!(r.exit, RunExit::Stopped);
    assert_eq!(r.stop, Some(StopReason::WindowClosed));
    let first = h
        .log
        .lock()
        .expect("log")
        .timeline
        .first()
        .map(|t| t.0)
        .expect("something ran");
    assert!(
        first >= 3_600_000,
        "nothing starts before the window: {first}"
    );
    let ran = h
        .log
        .lock()
        .expect("log")
        .timeline
        .iter()
        .filter(|t| t.1 == "start")
        .count();
    assert_eq!(
        ran, 5,
        "steps that fit started; the one in flight at the cutoff finished"
    );
    assert!(t0.elapsed() >= Duration::from_secs(3600 + 3000));
}

#[tokio::test(start_paused = true)]
async fn cancel_drains_and_a_resume_finishes_without_rerunning() {
    let h = Harness::new(plan(&inventory(6), CHAIN), Scripted::new(10.0));
    let control = Control::default();
    let c = control.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(15)).await;
        c.cancel.cancel();
    });
    let r = h.run(opts(), control).await;
    assert_eq!(r.exit, RunExit::Stopped);
    assert_eq!(r.stop, Some(StopReason::Cancelled));
    let before: u32 = h.log.lock().expect("log").calls.values().sum();
    assert!(before > 0 && before < 12, "{before}");
    assert!(
        !h.states().values().any(|s| s == "running"),
        "in-flight steps drained to an outcome"
    );
    let r = h.run(opts(), Control::default()).await;
    assert_eq!(r.exit, RunExit::Ok, "{:?}", r.summary);
    for i in 0..6 {
        assert_eq!(h.calls(&format!("h{i:02}"), "act-a"), 1, "exactly once");
        assert_eq!(h.calls(&format!("h{i:02}"), "act-b"), 1, "exactly once");
    }
}

#[tokio::test(start_paused = true)]
async fn abort_records_unknown_and_resume_reprobes() {
    let h = Harness::new(plan(&inventory(4), CHAIN), Scripted::new(10.0));
    let control = Control::default();
    let c = control.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        c.cancel.cancel();
        c.abort.cancel();
    });
    let r = h.run(opts(), control).await;
    assert_eq!(r.stop, Some(StopReason::Aborted));
    let unknown = h.states().values().filter(|s| *s == "unknown").count();
    assert!(unknown >= 1, "{:?}", h.states());
    // The scripted driver's actions are idempotent, so unknown steps may run again.
    let r = h.run(opts(), Control::default()).await;
    assert_eq!(r.exit, RunExit::Ok, "{:?}", r.summary);
    assert!(
        h.events()
            .iter()
            .any(|e| matches!(e, RunEvent::RunStarted { resumed: true, .. }))
    );
}

#[test]
fn a_journal_gives_back_its_plan_binary_or_json_and_its_steps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = plan(&inventory(6), GATED);
    // As `medic apply` makes it: the binary plan.
    let made = dir.path().join("made.sqlite");
    let j = medic_exec::create_journal(&made, &p, &[("run_id", "r1")]).expect("create");
    j.append(medic_journal::Record::Step {
        step: p.steps()[0].id.clone(),
        state: medic_journal::StepState::Succeeded,
        attempt: 1,
        detail: Some("check held before acting: x".to_owned()),
        already_done: true,
        note: Some("anti-malware off".to_owned()),
    })
    .expect("append");
    j.close().expect("close");
    let (back, prior) = medic_exec::read_for_resume(&made).expect("reads");
    assert!(back == p, "the plan comes back equal");
    assert_eq!(prior.steps.len(), 1);
    assert_eq!(prior.steps[0].step, p.steps()[0].id);
    // The fields come back as fields (the text column holds them as it always did).
    assert!(prior.steps[0].already_done);
    assert_eq!(prior.steps[0].note.as_deref(), Some("anti-malware off"));
    assert_eq!(
        prior.steps[0].detail.as_deref(),
        Some("check held before acting: x")
    );
    // A journal made before the binary plan: its JSON is read.
    let old = dir.path().join("old.sqlite");
    let json = medic_plan::plan_to_json(&p);
    medic_journal::Journal::create_with_meta(&old, &[("plan_json", json.as_str())])
        .expect("create")
        .close()
        .expect("close");
    let (back, _) = medic_exec::read_for_resume(&old).expect("reads");
    assert_eq!(medic_plan::plan_to_json(&back), json);
    // No plan at all.
    let none = dir.path().join("none.sqlite");
    medic_journal::Journal::create_with_meta(&none, &[("run_id", "r2")])
        .expect("create")
        .close()
        .expect("close");
    assert!(matches!(
        medic_exec::read_for_resume(&none),
        Err(medic_exec::ReadError::NoPlan)
    ));
    // A plan that does not decode: the error says which form, and why.
    let bad = dir.path().join("bad.sqlite");
    medic_journal::Journal::create_with_meta(&bad, &[("plan_json", "{\"format\": \"x\"}")])
        .expect("create")
        .close()
        .expect("close");
    let err = medic_exec::read_for_resume(&bad)
        .map(|_| ())
        .expect_err("refused");
    assert!(
        matches!(
            &err,
            medic_exec::ReadError::BadPlan(medic_exec::BadPlan::Json(
                medic_plan::PlanReadError::Invalid(medic_plan::InvalidPlan::NotAPlan { .. })
            ))
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("the journal's plan cannot be read: not a medic plan: "),
        "{err}"
    );
}

/// A host key refused on a connection is not any step's event: the driver queues it, and
/// the dispatcher sends it, lists it in the summary and journals it (the run report reads
/// only the journal), with the summary's line and no step.
#[tokio::test(start_paused = true)]
async fn a_host_key_a_driver_reports_is_journaled_and_in_the_summary() {
    let h = Harness::new(plan(&inventory(2), CHAIN), Scripted::new(1.0));
    let refused = RunEvent::HostKeyRefused {
        host: Some("h01".to_owned()),
        endpoint: "root@10.0.1.2:22".to_owned(),
        key_type: "ssh-ed25519".to_owned(),
        fingerprint: "SHA256:abc".to_owned(),
        reason: "changed".to_owned(),
        message: "HOST KEY CHANGED (known_hosts line 2)".to_owned(),
    };
    h.drivers.events().push(refused.clone());
    let r = h.run(opts(), Control::default()).await;
    let line = "h01 (root@10.0.1.2:22): host key ssh-ed25519 SHA256:abc refused (changed)";
    assert_eq!(r.summary.host_keys, [line]);
    assert!(h.events().contains(&refused), "{:?}", h.events());
    let journaled: Vec<_> = h
        .journal
        .events_since(0)
        .into_iter()
        .filter(|e| e.kind == RowKind::Event(EventKind::HostKeyRefused))
        .collect();
    assert_eq!(journaled.len(), 1, "{journaled:?}");
    assert_eq!(journaled[0].step, None);
    let detail: serde_json::Value =
        serde_json::from_str(journaled[0].detail.as_deref().expect("a detail")).expect("JSON");
    assert_eq!(detail["host"], "h01");
    assert_eq!(detail["reason"], "changed");
    assert_eq!(detail["fingerprint"], "SHA256:abc");
    assert_eq!(detail["line"], line);
}
