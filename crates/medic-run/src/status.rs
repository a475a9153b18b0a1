//! A run's status read from its journal (what `medic status` shows), and what a run
//! records about how it ended: why it stopped and the command that moves it on, so that
//! `status`, the end of `apply` and a `resume` that stops again all say the same thing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use medic_exec::{RunExit, StopReason};
use medic_journal::{EventKind, JournalRead, JournalStore, Record, RunState, StepState, meta_keys};
use medic_plan::{Plan, StepKind};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::journal::{AnyReader, JournalTarget};
use crate::text::shell_word;

/// The journal's `meta` key holding the last [`Outcome`] of the run.
pub const OUTCOME: &str = "run_outcome";

/// How a run that ended this way is recorded.
pub fn state_of_exit(exit: RunExit) -> RunState {
    match exit {
        RunExit::Ok => RunState::Finished,
        RunExit::Failed => RunState::Failed,
        RunExit::Stopped => RunState::Stopped,
    }
}

/// `None` (no outcome recorded: the journal predates it, or no run wrote one) is shown as
/// `unknown`.
fn state_or_unknown<S: serde::Serializer>(v: &Option<RunState>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.map_or("unknown", RunState::as_str))
}

/// How the last process of a run ended (or that one is under way).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub state: RunState,
    /// Why it stopped, in words.
    pub reason: Option<String>,
    /// What moves the run on: the command and when to run it.
    pub next: Option<String>,
}

/// What moves a run on after it ended this way; `None` when there is nothing left to do.
pub fn next_step(exit: RunExit, stop: Option<&StopReason>, journal: &Path) -> Option<String> {
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
        (_, Some(StopReason::WaitingForSlices { zones })) => Some(format!(
            "for each zone ({}): `medic plan --slice ZONE --journal {j} --out ZONE.slice.json`, run it there with `medic apply --plan ZONE.slice.json`, bring its journal back, `medic journal merge SLICE-JOURNAL --journal {j}`, then `medic resume --journal {j}`",
            zones.join(", ")
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
pub fn record_outcome(journal: &impl JournalStore, outcome: &Outcome) {
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

/// A step (or gate) and the host it is on.
#[derive(Clone, Debug, Serialize)]
pub struct StepAt {
    pub step: String,
    pub host: Option<String>,
    /// What the journal says of it (a failed step's error); not in the JSON, which lists
    /// the steps only.
    #[serde(skip)]
    pub detail: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Blocked {
    pub step: String,
    pub host: Option<String>,
    /// The failed (or unknown) step it waits for, directly or through others.
    pub blocked_by: String,
}

/// A gate or manual step waiting for the operator.
#[derive(Clone, Debug, Serialize)]
pub struct Waiting {
    pub id: String,
    pub host: Option<String>,
    /// The command that approves it.
    pub approve: String,
}

/// An air-gapped zone whose steps wait for its slice's merge.
#[derive(Clone, Debug, Serialize)]
pub struct SliceWaiting {
    pub zone: String,
    /// Its steps and gates not merged yet.
    pub steps: u64,
    /// The commands that cut the slice and bring its result back.
    pub slice: String,
    pub merge: String,
}

/// A run's status as its journal says it: what `medic status` shows as text, and its JSON
/// (this struct serialized) as is.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub run_id: Option<String>,
    pub fingerprint: Option<String>,
    /// Steps and gates per state, as `medic plan` counts them (barriers are not counted).
    pub steps: BTreeMap<String, u64>,
    pub failed: Vec<String>,
    pub running: Vec<String>,
    pub unknown: Vec<String>,
    pub waiting_for_approval: Vec<String>,
    pub approvals: Vec<String>,
    #[serde(serialize_with = "state_or_unknown")]
    pub run_state: Option<RunState>,
    /// The change window the run goes by (the last one given), if any.
    pub window: Option<String>,
    pub stop_reason: Option<String>,
    pub next: Option<String>,
    pub running_on: Vec<StepAt>,
    pub failed_on: Vec<StepAt>,
    pub pending: Vec<StepAt>,
    pub blocked: Vec<Blocked>,
    pub gates_waiting: Vec<Waiting>,
    pub manual_waiting: Vec<Waiting>,
    /// Air-gapped zones whose steps wait for their slice (`waiting for slice merge`).
    pub slices_waiting: Vec<SliceWaiting>,
    /// What the pre-flight of a real run said (`passed: ...`, `skipped (--skip-preflight)`).
    pub preflight: Option<String>,
    /// A run in PostgreSQL served by `medic worker` processes: its queue per zone and its
    /// workers (absent for a run without workers, and for a journal file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<Workers>,
}

/// The workers of a run and its queue of driver calls (`medic.work`, `medic.workers`).
#[derive(Clone, Debug, Serialize)]
pub struct Workers {
    pub zones: Vec<ZoneCalls>,
    pub workers: Vec<Worker>,
}

/// A zone's driver calls per state.
#[derive(Clone, Debug, Serialize)]
pub struct ZoneCalls {
    pub zone: String,
    pub queued: u64,
    /// Claimed by a worker, not answered yet.
    pub in_flight: u64,
    pub done: u64,
    pub lost: u64,
    pub cancelled: u64,
    /// Calls whose lease ran out (claimed more than once), all counted.
    pub lease_ran_out: u64,
    /// The first of them (at most 20 per zone).
    pub lease_ran_out_on: Vec<ReclaimedCall>,
}

/// A call whose lease ran out at least once.
#[derive(Clone, Debug, Serialize)]
pub struct ReclaimedCall {
    pub step: String,
    pub driver: String,
    pub action: String,
    pub state: String,
    pub claims: i64,
    pub lease_owner: Option<String>,
}

/// One worker process.
#[derive(Clone, Debug, Serialize)]
pub struct Worker {
    pub name: String,
    pub zone: String,
    /// Seconds since its last heartbeat, by the database's clock.
    pub seen_s_ago: u64,
    pub calls: i64,
    /// Its writes refused because another claim took the call over (fencing).
    pub refused: i64,
    pub coordinating: bool,
    pub stopped: bool,
    /// The lease it claims with (renewed every third of it).
    pub lease_s: u64,
    /// Not stopped and not seen for longer than its lease.
    pub silent: bool,
}

impl Workers {
    fn from_db(w: medic_journal_pg::WorkStatus) -> Workers {
        let secs = |ms: i64| u64::try_from(ms / 1000).unwrap_or(0);
        Workers {
            zones: w
                .zones
                .into_iter()
                .map(|z| ZoneCalls {
                    zone: z.zone,
                    queued: z.queued,
                    in_flight: z.claimed,
                    done: z.done,
                    lost: z.lost,
                    cancelled: z.cancelled,
                    lease_ran_out: z.reclaimed,
                    lease_ran_out_on: z
                        .reclaimed_calls
                        .into_iter()
                        .map(|c| ReclaimedCall {
                            step: c.step,
                            driver: c.driver,
                            action: c.action,
                            state: c.state,
                            claims: c.claims,
                            lease_owner: c.lease_owner,
                        })
                        .collect(),
                })
                .collect(),
            workers: w
                .workers
                .into_iter()
                .map(|x| Worker {
                    name: x.worker,
                    zone: x.zone,
                    seen_s_ago: secs(x.seen_ago_ms),
                    calls: x.calls,
                    refused: x.refused,
                    // A killed coordinator's row still says so; a silent worker coordinates nothing.
                    coordinating: x.coordinating && !x.silent,
                    stopped: x.stopped_ms.is_some(),
                    silent: x.silent,
                    lease_s: secs(x.lease_ms),
                })
                .collect(),
        }
    }
}

/// The history entries that say a step waits for the operator.
const WAITING_KINDS: [EventKind; 2] = [EventKind::GateWaiting, EventKind::ManualWaiting];

/// Reads the status of the run whose journal is `target` (a file is checked first: a
/// missing, damaged file, or one that is not a journal, is named for what it is); a run in
/// PostgreSQL also shows its workers. Only reads.
pub fn read(target: &JournalTarget) -> Result<Status, Error> {
    let r = target.reader(false)?;
    let name = match &r {
        AnyReader::Sqlite(_) => target.location().display().to_string(),
        // A database named without its run: the command names it from here on.
        AnyReader::Postgres(p) => p.location().display().to_string(),
    };
    let e = |x: medic_journal::JournalError| Error::Internal(x.to_string());
    let workers = match (target, &r) {
        (JournalTarget::Postgres(t), AnyReader::Postgres(p)) => {
            medic_journal_pg::work_status(&t.with_run(p.run_id()))
                .map_err(|x| crate::journal::db_failure(p.location(), &x))?
                .map(Workers::from_db)
        }
        _ => None,
    };
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

    // What waited for the operator and still does, in the order it began to wait.
    let mut asked: Vec<(i64, String)> = Vec::new();
    for kind in WAITING_KINDS {
        asked.extend(r.steps_with_event(kind).map_err(e)?);
    }
    asked.sort();
    let mut waiting: Vec<String> = Vec::new();
    for (_, g) in asked {
        if !approved.contains(g.as_str())
            && state_of
                .get(g.as_str())
                .is_none_or(|(s, _)| *s != StepState::Succeeded)
            && !waiting.contains(&g)
        {
            waiting.push(g);
        }
    }
    let outcome: Option<Outcome> = r
        .meta(OUTCOME)
        .map_err(e)?
        .and_then(|v| serde_json::from_str(&v).ok());

    let journal_word = shell_word(&name).into_owned();
    let approve = |id: &str| format!("medic approve --journal {journal_word} {}", shell_word(id));
    let mut s = Status {
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
        run_state: None,
        window: r
            .meta(crate::run::INPUTS)
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
        slices_waiting: Vec::new(),
        preflight: r.meta(crate::run::PREFLIGHT).map_err(e)?,
        workers,
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
        Some(p) => by_plan(p, &state_of, &mut s, &journal_word),
        None => {
            for row in &rows {
                *s.steps.entry(row.state.as_str().to_owned()).or_default() += 1;
                let at = StepAt {
                    step: row.step.clone(),
                    host: None,
                    detail: row.detail.clone(),
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
    if let Some(o) = outcome {
        s.run_state = Some(o.state);
        s.stop_reason = o.reason;
        s.next = o.next;
    }
    if s.run_state == Some(RunState::Running) {
        s.next = Some(format!(
            "if no medic process runs it any more (it was killed), `medic resume --journal {journal_word}` finishes it"
        ));
    }
    Ok(s)
}

/// Every step and gate of the plan in its journal state; a step that cannot start because
/// a step it needs failed (or is unknown), directly or not, is `blocked`.
fn by_plan(
    p: &Plan,
    state_of: &HashMap<&str, (StepState, Option<&str>)>,
    s: &mut Status,
    journal_word: &str,
) {
    let held = medic_plan::held_steps(p);
    let mut sliced: BTreeMap<&str, u64> = BTreeMap::new();
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
            detail: state_of
                .get(step.id.as_str())
                .and_then(|x| x.1)
                .map(str::to_owned),
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
            _ if held[i].is_some() => {
                *sliced.entry(held[i].unwrap_or_default()).or_default() += 1;
                "waiting for slice merge"
            }
            _ => {
                s.pending.push(at());
                "pending"
            }
        };
        *s.steps.entry(word.to_owned()).or_default() += 1;
    }
    for (zone, steps) in sliced {
        let z = shell_word(zone).into_owned();
        let file = shell_word(&format!("{zone}.slice.json")).into_owned();
        s.slices_waiting.push(SliceWaiting {
            zone: zone.to_owned(),
            steps,
            slice: format!("medic plan --slice {z} --journal {journal_word} --out {file}"),
            merge: format!("medic journal merge SLICE-JOURNAL --journal {journal_word}"),
        });
    }
}
