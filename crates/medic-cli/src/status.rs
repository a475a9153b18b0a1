//! `medic status`, and what a run records about how it ended: why it stopped and the
//! command that moves it on, so that `status`, the end of `apply` and a `resume` that stops
//! again all say the same thing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use medic_exec::{RunExit, StopReason};
use medic_journal::{
    EventKind, Journal, JournalReader, Record, RowKind, RunState, StepState, meta_keys,
};
use medic_plan::{Plan, StepKind};
use serde::{Deserialize, Serialize};

use crate::args::{StatusArgs, StatusFormat};
use crate::text::shell_word;
use crate::{Failure, exit_codes};

/// The journal's `meta` key holding the last [`Outcome`] of the run.
pub(crate) const OUTCOME: &str = "run_outcome";

/// How the last process of a run ended (or that one is under way).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Outcome {
    /// `running`, `finished`, `failed` (finished with failed steps) or `stopped`.
    pub(crate) state: RunState,
    /// Why it stopped, in words.
    pub(crate) reason: Option<String>,
    /// What moves the run on: the command and when to run it.
    pub(crate) next: Option<String>,
}

/// What moves a run on after it ended this way; `None` when there is nothing left to do.
pub(crate) fn next_step(
    exit: RunExit,
    stop: Option<&StopReason>,
    journal: &Path,
) -> Option<String> {
    let j = shell_word(&journal.display().to_string()).into_owned();
    match (exit, stop) {
        (_, Some(StopReason::BudgetExceeded { .. })) => Some(format!(
            "the failed steps count against the failure budget, so `medic resume` would stop here again: find and fix their cause, then run `medic apply --retry-failed --journal {j}` (it runs the failed steps again, then what depends on them)"
        )),
        (_, Some(StopReason::WindowClosed | StopReason::WindowTooShort { .. })) => Some(format!(
            "the change window is over or too short: with a new approved window, run `medic resume --journal {j} --window START/END`"
        )),
        (_, Some(StopReason::UnknownOutcomes { .. })) => Some(format!(
            "medic cannot tell whether those steps acted: look at their hosts, then run `medic resume --journal {j}`"
        )),
        (_, Some(StopReason::JournalFailed { .. })) => Some(format!(
            "free space on the journal's disk (or fix the disk), then run `medic resume --journal {j}`"
        )),
        (_, Some(StopReason::Cancelled | StopReason::Aborted)) | (RunExit::Stopped, None) => {
            Some(format!("run `medic resume --journal {j}` to finish it"))
        }
        (RunExit::Failed, None) => Some(format!(
            "find and fix the cause of the failed steps, then run `medic apply --retry-failed --journal {j}`"
        )),
        (RunExit::Ok, None) => None,
    }
}

/// Records how this process's part of the run ended. Best effort: the steps' own states
/// are already durable, and a journal that cannot take this line has said so already.
pub(crate) fn record_outcome(journal: &Journal, outcome: &Outcome) {
    let Ok(value) = serde_json::to_string(outcome) else {
        return;
    };
    let _ = journal.append(Record::Event {
        step: None,
        kind: EventKind::Run(outcome.state),
        detail: outcome.reason.clone(),
    });
    let _ = journal.append(Record::Meta {
        key: OUTCOME.to_owned(),
        value,
    });
}

#[derive(Serialize)]
struct StepAt {
    step: String,
    host: Option<String>,
}

#[derive(Serialize)]
struct Blocked {
    step: String,
    host: Option<String>,
    /// The failed (or unknown) step it waits for, directly or through others.
    blocked_by: String,
}

#[derive(Serialize)]
struct Waiting {
    id: String,
    host: Option<String>,
    /// The command that approves it.
    approve: String,
}

#[derive(Serialize)]
struct StatusJson {
    run_id: Option<String>,
    fingerprint: Option<String>,
    /// Steps and gates per state, as `medic plan` counts them (barriers are not counted).
    steps: BTreeMap<String, u64>,
    failed: Vec<String>,
    running: Vec<String>,
    unknown: Vec<String>,
    waiting_for_approval: Vec<String>,
    approvals: Vec<String>,
    /// `running`, `finished`, `failed`, `stopped`, or `unknown` (a journal that does not say).
    run_state: String,
    /// The change window the run goes by (the last one given), if any.
    window: Option<String>,
    stop_reason: Option<String>,
    next: Option<String>,
    running_on: Vec<StepAt>,
    failed_on: Vec<StepAt>,
    pending: Vec<StepAt>,
    blocked: Vec<Blocked>,
    gates_waiting: Vec<Waiting>,
    manual_waiting: Vec<Waiting>,
    /// What the pre-flight of a real run said (`passed: ...`, `skipped (--skip-preflight)`).
    preflight: Option<String>,
}

pub(crate) fn status(a: &StatusArgs) -> Result<u8, Failure> {
    let name = a.journal.display().to_string();
    crate::files::check_existing_journal(&a.journal, false)?;
    let r = JournalReader::open(&a.journal)
        .map_err(|e| crate::files::journal_failure(&a.journal, &e))?;
    let e = |x: medic_journal::JournalError| Failure::Internal(x.to_string());
    let rows = r.steps().map_err(e)?;
    // The plan gives steps that have no row yet, hosts and kinds; a journal without one
    // (none is made so) would still show its rows.
    let plan = medic_exec::read_plan(&r).ok();
    let approvals = r.approvals().map_err(e)?;
    let approved: BTreeSet<&str> = approvals.iter().map(|a| a.gate.as_str()).collect();
    let state_of: HashMap<&str, (StepState, Option<&str>)> = rows
        .iter()
        .map(|s| (s.step.as_str(), (s.state, s.detail.as_deref())))
        .collect();
    let host_of = |id: &str| -> Option<String> {
        let p = plan.as_ref()?;
        let s = p.step(p.step_index(id)?);
        p.host_name(s).map(str::to_owned)
    };

    let mut waiting: Vec<String> = Vec::new();
    let mut after = 0;
    loop {
        let evs = r.events_since(after, 10_000).map_err(e)?;
        let Some(last) = evs.last() else { break };
        after = last.seq;
        for ev in &evs {
            if matches!(
                ev.kind,
                RowKind::Event(EventKind::GateWaiting | EventKind::ManualWaiting)
            ) && let Some(g) = &ev.step
                && !approved.contains(g.as_str())
                && state_of
                    .get(g.as_str())
                    .is_none_or(|(s, _)| *s != StepState::Succeeded)
                && !waiting.contains(g)
            {
                waiting.push(g.clone());
            }
        }
    }
    let outcome: Option<Outcome> = r
        .meta(OUTCOME)
        .map_err(e)?
        .and_then(|v| serde_json::from_str(&v).ok());

    let journal_word = shell_word(&name).into_owned();
    let approve = |id: &str| format!("medic approve --journal {journal_word} {}", shell_word(id));
    let mut s = StatusJson {
        run_id: r.meta(meta_keys::RUN_ID).map_err(e)?,
        fingerprint: r.meta(meta_keys::PLAN_FINGERPRINT).map_err(e)?,
        steps: BTreeMap::new(),
        failed: Vec::new(),
        running: Vec::new(),
        unknown: Vec::new(),
        waiting_for_approval: waiting.clone(),
        approvals: approvals
            .iter()
            .map(|a| format!("{} by {}", a.gate, a.by))
            .collect(),
        run_state: String::new(),
        window: r
            .meta("inputs")
            .map_err(e)?
            .and_then(|v| serde_json::from_str::<serde_json::Value>(&v).ok())
            .and_then(|v| v.get("window")?.as_str().map(str::to_owned)),
        stop_reason: None,
        next: None,
        running_on: Vec::new(),
        failed_on: Vec::new(),
        pending: Vec::new(),
        blocked: Vec::new(),
        gates_waiting: Vec::new(),
        manual_waiting: Vec::new(),
        preflight: r.meta(crate::run::PREFLIGHT).map_err(e)?,
    };
    for id in &waiting {
        let w = Waiting {
            id: id.clone(),
            host: host_of(id),
            approve: approve(id),
        };
        let is_gate = plan.as_ref().is_some_and(|p| {
            p.step_index(id)
                .is_some_and(|i| matches!(p.step(i).kind, StepKind::Gate(_)))
        });
        if is_gate {
            s.gates_waiting.push(w);
        } else {
            s.manual_waiting.push(w);
        }
    }
    match &plan {
        Some(p) => by_plan(p, &state_of, &mut s),
        None => {
            for row in &rows {
                *s.steps.entry(row.state.as_str().to_owned()).or_default() += 1;
                let at = StepAt {
                    step: row.step.clone(),
                    host: None,
                };
                match row.state {
                    StepState::Running => s.running_on.push(at),
                    StepState::Failed => s.failed_on.push(at),
                    StepState::Pending => s.pending.push(at),
                    _ => {}
                }
            }
        }
    }
    s.failed = s.failed_on.iter().map(|x| x.step.clone()).collect();
    s.running = s.running_on.iter().map(|x| x.step.clone()).collect();
    s.unknown = rows
        .iter()
        .filter(|r| r.state == StepState::Unknown)
        .map(|r| r.step.clone())
        .collect();
    match outcome {
        Some(o) => {
            s.run_state = o.state.as_str().to_owned();
            s.stop_reason = o.reason;
            s.next = o.next;
        }
        None => {
            s.run_state = "unknown".to_owned();
        }
    }
    if s.run_state == "running" {
        s.next = Some(format!(
            "if no medic process runs it any more (it was killed), `medic resume --journal {journal_word}` finishes it"
        ));
    }
    let out = match a.format {
        StatusFormat::Json => {
            serde_json::to_string_pretty(&s).map_err(|x| Failure::Internal(x.to_string()))? + "\n"
        }
        StatusFormat::Text => text(&s, &state_of),
    };
    crate::write_out(None, &out)?;
    Ok(exit_codes::OK)
}

/// Every step and gate of the plan in its journal state; a step that cannot start because
/// a step it needs failed (or is unknown), directly or not, is `blocked`.
fn by_plan(p: &Plan, state_of: &HashMap<&str, (StepState, Option<&str>)>, s: &mut StatusJson) {
    // Per step: the failed or unknown step that blocks it.
    let mut blocked_by: Vec<Option<u32>> = vec![None; p.steps().len()];
    for (i, step) in p.steps().iter().enumerate() {
        let state = state_of.get(step.id.as_str()).map(|x| x.0);
        let open =
            !state.is_some_and(StepState::is_terminal) || state == Some(StepState::Cancelled);
        if open {
            blocked_by[i] = step.needs.iter().find_map(|n| {
                let need = p.step(n.step);
                match state_of.get(need.id.as_str()).map(|x| x.0) {
                    Some(StepState::Failed) if !n.on_finish => Some(n.step),
                    Some(StepState::Unknown) => Some(n.step),
                    _ => blocked_by[n.step as usize],
                }
            });
        }
        if step.kind == StepKind::Barrier {
            continue;
        }
        let host = p.host_name(step).map(str::to_owned);
        let at = || StepAt {
            step: step.id.clone(),
            host: host.clone(),
        };
        let word = match (state, blocked_by[i]) {
            (Some(StepState::Running), _) => {
                s.running_on.push(at());
                "running"
            }
            (Some(StepState::Failed), _) => {
                s.failed_on.push(at());
                "failed"
            }
            (Some(st), _) if st.is_terminal() && st != StepState::Cancelled => st.as_str(),
            (_, Some(by)) => {
                s.blocked.push(Blocked {
                    step: step.id.clone(),
                    host: host.clone(),
                    blocked_by: p.step(by).id.clone(),
                });
                "blocked"
            }
            _ => {
                s.pending.push(at());
                "pending"
            }
        };
        *s.steps.entry(word.to_owned()).or_default() += 1;
    }
}

fn text(s: &StatusJson, state_of: &HashMap<&str, (StepState, Option<&str>)>) -> String {
    use std::fmt::Write as _;
    let esc = medic_plan::render::escape_text;
    let mut o = String::new();
    let fp = s
        .fingerprint
        .as_deref()
        .map(|f| &f[..f.len().min(16)])
        .unwrap_or("?");
    let state = match (s.run_state.as_str(), &s.stop_reason) {
        ("stopped", Some(r)) => format!("stopped: {}", esc(r)),
        ("failed", _) => "finished with failed steps".to_owned(),
        ("running", _) => "running".to_owned(),
        ("unknown", _) => "state not recorded".to_owned(),
        (other, _) => other.to_owned(),
    };
    let _ = writeln!(
        o,
        "run {} (plan {fp}): {state}",
        esc(s.run_id.as_deref().unwrap_or("?"))
    );
    if let Some(n) = &s.next {
        let _ = writeln!(o, "next: {}", esc(n));
    }
    if let Some(w) = &s.window {
        let _ = writeln!(o, "window: {}", esc(w));
    }
    if let Some(p) = &s.preflight {
        let _ = writeln!(o, "pre-flight: {}", esc(p));
    }
    let counts: Vec<String> = s.steps.iter().map(|(k, v)| format!("{v} {k}")).collect();
    let _ = writeln!(o, "steps and gates: {}", counts.join(", "));
    let on = |x: &StepAt| match &x.host {
        Some(h) => format!("{} on {h}", x.step),
        None => x.step.clone(),
    };
    let list = |o: &mut String, label: &str, items: Vec<String>| {
        if items.is_empty() {
            return;
        }
        let n = items.len();
        let shown = items.into_iter().take(20).collect::<Vec<_>>().join(", ");
        let more = if n > 20 {
            format!(" and {} more", n - 20)
        } else {
            String::new()
        };
        let _ = writeln!(o, "{label} ({n}): {shown}{more}");
    };
    list(&mut o, "running", s.running_on.iter().map(on).collect());
    for f in s.failed_on.iter().take(20) {
        let why = state_of
            .get(f.step.as_str())
            .and_then(|x| x.1)
            .map(|d| format!(": {}", esc(d)))
            .unwrap_or_default();
        let _ = writeln!(o, "failed: {}{why}", on(f));
    }
    if s.failed_on.len() > 20 {
        let _ = writeln!(o, "failed: and {} more", s.failed_on.len() - 20);
    }
    list(&mut o, "unknown", s.unknown.clone());
    list(
        &mut o,
        "blocked",
        s.blocked
            .iter()
            .map(|b| {
                let at = on(&StepAt {
                    step: b.step.clone(),
                    host: b.host.clone(),
                });
                format!("{at} (by {})", b.blocked_by)
            })
            .collect(),
    );
    list(&mut o, "pending", s.pending.iter().map(on).collect());
    for w in &s.gates_waiting {
        let _ = writeln!(o, "gate waiting for approval: {}: {}", w.id, w.approve);
    }
    for w in &s.manual_waiting {
        let on = w
            .host
            .as_deref()
            .map(|h| format!(" on {h}"))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "manual step waiting for the operator: {}{on}: once the work is done, {}",
            w.id, w.approve
        );
    }
    list(
        &mut o,
        "approved",
        s.approvals.iter().map(|a| esc(a).into_owned()).collect(),
    );
    o
}
