//! The closed set of everything that happens in a run. Reporters (progress bars, the JSON
//! lines file, the summary) consume these and nothing else.

use std::collections::BTreeMap;

use serde::Serialize;

/// How a step ended in this run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The action ran and its post-condition was observed (or it has none to observe).
    Succeeded,
    /// The check held before acting: nothing to do.
    AlreadyDone,
    /// The guard was false: the step did not act.
    Skipped,
    Failed,
    /// Stopped before it finished (second Ctrl-C); the outcome is unknown.
    Unknown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::AlreadyDone => "already_done",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
            Outcome::Unknown => "unknown",
        }
    }
}

/// Why a run stopped before the end (exit 3, resumable).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StopReason {
    Cancelled,
    Aborted,
    BudgetExceeded {
        phase: String,
        wave: Option<u32>,
        failures: u32,
        tolerated: u32,
    },
    WindowClosed,
    WindowTooShort {
        phase: String,
        wave: u32,
        needed_s: u64,
        left_s: u64,
    },
    /// Steps whose outcome is unknown and that cannot be re-probed need an operator.
    UnknownOutcomes {
        steps: Vec<String>,
    },
    JournalFailed {
        message: String,
    },
    /// Everything the main run can do is done; the steps of these air-gapped zones wait
    /// for their slices' results (`medic journal merge`).
    WaitingForSlices {
        zones: Vec<String>,
    },
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Cancelled => {
                f.write_str("cancelled by the operator; in-flight steps were drained")
            }
            StopReason::Aborted => f.write_str(
                "aborted by the operator; in-flight steps were stopped and are recorded as unknown",
            ),
            StopReason::BudgetExceeded {
                phase,
                wave,
                failures,
                tolerated,
            } => match wave {
                Some(w) => write!(
                    f,
                    "failure budget exceeded in {phase} wave {w}: {failures} failed, {tolerated} tolerated"
                ),
                None => write!(
                    f,
                    "failure budget exceeded in {phase}: {failures} failed, {tolerated} tolerated"
                ),
            },
            StopReason::WindowClosed => {
                f.write_str("the change window closed; in-flight steps finished")
            }
            StopReason::WindowTooShort {
                phase,
                wave,
                needed_s,
                left_s,
            } => write!(
                f,
                "{phase} wave {wave} needs about {needed_s}s but the window has {left_s}s left; not started"
            ),
            StopReason::UnknownOutcomes { steps } => write!(
                f,
                "{} step(s) have an unknown outcome and no check to re-probe them: {}",
                steps.len(),
                steps.join(", ")
            ),
            StopReason::JournalFailed { message } => {
                write!(f, "the journal cannot be written: {message}")
            }
            StopReason::WaitingForSlices { zones } => write!(
                f,
                "the steps of air-gapped zone(s) {} wait for their slice to be run there and merged",
                zones.join(", ")
            ),
        }
    }
}

/// Host and step counts at the end of a run, by *verified* state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Hosts whose last verification succeeded (or, without one, whose every step was observed done).
    pub hosts_verified: u32,
    pub hosts_failed: u32,
    /// Hosts with steps not run yet (stopped, blocked by a failure, or unknown).
    pub hosts_incomplete: u32,
    /// Hosts in the inventory that the plan gives no step.
    pub hosts_without_steps: u32,
    /// Per action: how many steps acted, found the work already done, were skipped by their guard, failed.
    pub actions: BTreeMap<String, ActionCounts>,
    /// Steps and gates (not the graph's barriers) per final journal state.
    pub steps: BTreeMap<String, u32>,
    /// The first failures, `step: reason`.
    pub failures: Vec<String>,
    /// The first notes of steps that succeeded, `step: note` (Anti-Malware off by policy,
    /// a pending Linux reboot, the Manager and the host disagreeing): not failures.
    pub notes: Vec<String>,
    /// Failures of steps that were already running when a budget was exceeded.
    pub overshoot: u32,
    /// Every host key accepted as new or refused during the run, one line each (from
    /// [`RunEvent::HostKeyAccepted`] and [`RunEvent::HostKeyRefused`]).
    pub host_keys: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ActionCounts {
    pub acted: u32,
    pub already_done: u32,
    pub guard_skipped: u32,
    pub failed: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    RunStarted {
        run_id: String,
        playbook: String,
        fingerprint: String,
        /// Steps and gates; the graph's barriers are not counted.
        steps: u32,
        done_before: u32,
        resumed: bool,
    },
    PhaseStarted {
        phase: String,
        steps: u32,
    },
    PhaseFinished {
        phase: String,
        succeeded: u32,
        failed: u32,
        skipped: u32,
    },
    WaveStarted {
        phase: String,
        wave: u32,
        hosts: u32,
    },
    WaveFinished {
        phase: String,
        wave: u32,
        failed: u32,
    },
    StepStarted {
        step: String,
        phase: String,
        host: Option<String>,
        action: String,
        attempt: u32,
    },
    StepRetrying {
        step: String,
        attempt: u32,
        wait_ms: u64,
        error: String,
    },
    StepFinished {
        step: String,
        phase: String,
        host: Option<String>,
        action: String,
        attempt: u32,
        outcome: Outcome,
        elapsed_ms: u64,
        detail: Option<String>,
    },
    /// A step that succeeded reported something the operator should know (not a failure);
    /// sent just before its `StepFinished`.
    StepNoted {
        step: String,
        phase: String,
        host: Option<String>,
        note: String,
    },
    /// A step was re-probed after a crash: its check decided.
    StepReprobed {
        step: String,
        done: bool,
    },
    GateWaiting {
        gate: String,
        phase: String,
        wave: u32,
        waiting_for: String,
    },
    GateOpened {
        gate: String,
        phase: String,
        wave: u32,
        approved_by: Option<String>,
    },
    /// A manual step (`driver: manual`) waits for the operator: they do `instruction`, then
    /// approve the step by its id (`medic approve`, or the prompt on a terminal; `--yes`
    /// never does). Only the steps that need it wait; the rest of the run goes on.
    ManualStepWaiting {
        step: String,
        phase: String,
        host: Option<String>,
        action: String,
        instruction: String,
        question: String,
    },
    /// The operator approved a manual step; its check now observes the result, polled
    /// until the step's deadline.
    ManualStepApproved {
        step: String,
        host: Option<String>,
        action: String,
        instruction: String,
        approved_by: String,
    },
    BudgetExceeded {
        phase: String,
        wave: Option<u32>,
        failures: u32,
        tolerated: u32,
        in_flight: u32,
    },
    /// The SSH driver met a host whose key no known_hosts file listed and accepted it
    /// (`--accept-new-host-keys`): the key was appended to `file`. `host` is the inventory
    /// name (when the driver knows it), `endpoint` `user@address:port`.
    HostKeyAccepted {
        host: Option<String>,
        endpoint: String,
        key_type: String,
        fingerprint: String,
        file: String,
    },
    /// The SSH driver refused a host's key and ran nothing there: `reason` is `unknown`
    /// (not listed, new keys not accepted), `changed`, `revoked` or `other_type` (a type
    /// known_hosts does not list for the host); `message` says which file and line.
    HostKeyRefused {
        host: Option<String>,
        endpoint: String,
        key_type: String,
        fingerprint: String,
        reason: String,
        message: String,
    },
    WindowWaiting {
        until_ms: i64,
    },
    WindowClosed,
    CancelRequested {
        hard: bool,
    },
    RunFinished {
        summary: Summary,
        stop: Option<StopReason>,
        elapsed_ms: u64,
    },
}

impl RunEvent {
    /// The run summary's line for a host-key event.
    pub fn host_key_line(&self) -> Option<String> {
        let name = |host: &Option<String>, endpoint: &str| match host {
            Some(h) => format!("{h} ({endpoint})"),
            None => endpoint.to_owned(),
        };
        match self {
            RunEvent::HostKeyAccepted {
                host,
                endpoint,
                key_type,
                fingerprint,
                file,
            } => Some(format!(
                "{}: new host key {key_type} {fingerprint} accepted, recorded in {file}",
                name(host, endpoint)
            )),
            RunEvent::HostKeyRefused {
                host,
                endpoint,
                key_type,
                fingerprint,
                reason,
                ..
            } => Some(format!(
                "{}: host key {key_type} {fingerprint} refused ({})",
                name(host, endpoint),
                reason.replace('_', " ")
            )),
            _ => None,
        }
    }
}

/// Events a driver reports outside a step's reply (a host key accepted or refused on a
/// connection), queued here and sent by the executor, in order, before its next event.
#[derive(Clone, Debug, Default)]
pub struct DriverEvents(std::sync::Arc<Queue>);

#[derive(Debug, Default)]
struct Queue {
    /// Checked before the lock: the executor looks at every one of its events, and a
    /// driver reports rarely.
    pending: std::sync::atomic::AtomicBool,
    events: std::sync::Mutex<Vec<RunEvent>>,
}

impl DriverEvents {
    pub fn push(&self, ev: RunEvent) {
        let mut q = self.0.events.lock().unwrap_or_else(|e| e.into_inner());
        q.push(ev);
        self.0
            .pending
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Everything queued so far, oldest first.
    pub fn take(&self) -> Vec<RunEvent> {
        if !self.0.pending.load(std::sync::atomic::Ordering::Acquire) {
            return Vec::new();
        }
        let mut q = self.0.events.lock().unwrap_or_else(|e| e.into_inner());
        self.0
            .pending
            .store(false, std::sync::atomic::Ordering::Release);
        std::mem::take(&mut *q)
    }
}

/// A consumer of run events. Called synchronously by the dispatcher, in order.
pub trait Reporter: Send {
    fn event(&mut self, ev: &RunEvent);
}

/// Sends every event to each reporter in turn.
#[derive(Default)]
pub struct Fanout(pub Vec<Box<dyn Reporter>>);

impl Reporter for Fanout {
    fn event(&mut self, ev: &RunEvent) {
        for r in &mut self.0 {
            r.event(ev);
        }
    }
}
