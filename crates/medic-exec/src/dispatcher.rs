//! The dispatcher owns all run state and reacts to one closed set of internal events: a
//! step attempt finished, a timer fired (retry wait, soak pause, window start), a signal
//! (cancel, abort), an approval poll. It decides what starts next under the nested limits
//! (global, phase, endpoint, relay group, one step per host), keeps the failure budgets,
//! opens gates, and records every transition in the journal. It never mutates the plan.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use medic_journal::{Journal, Record, StepRow, StepState};
use medic_plan::{Plan, StepKind};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use tracing::Instrument as _;

use crate::attempt::{AttemptInput, AttemptResult, Manual, run_attempt};
use crate::clock::Clock;
use crate::driver::{ActionRequest, Drivers, MANUAL_DRIVER, ManualAsk};
use crate::event::{ActionCounts, Outcome, Reporter, RunEvent, StopReason, Summary};

/// What to do when a wave's estimate does not fit the time left in the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowPolicy {
    /// Do not start the wave; stop, resumable in the next window (the default).
    Stop,
    /// Start it anyway; the cutoff still stops new steps.
    Continue,
}

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub run_id: String,
    /// Approve every gate without asking.
    pub yes: bool,
    pub window: Option<medic_plan::Window>,
    pub window_policy: WindowPolicy,
    /// Divides backoffs, soak pauses and timeouts (a rehearsal runs fast).
    pub time_scale: f64,
    /// At most this many steps at once per relay group.
    pub max_per_group: Option<u32>,
    /// Strict budgets in every phase, whatever the playbook says.
    pub strict: bool,
    /// Failed steps from the journal run again (with what depends on them).
    pub retry_failed: bool,
    pub approval_poll: Duration,
    pub clock: Clock,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            run_id: "run".to_owned(),
            yes: false,
            window: None,
            window_policy: WindowPolicy::Stop,
            time_scale: 1.0,
            max_per_group: None,
            strict: false,
            retry_failed: false,
            approval_poll: Duration::from_millis(500),
            clock: Clock::system(),
        }
    }
}

/// What the journal says about a run so far (empty for a new run).
#[derive(Clone, Debug, Default)]
pub struct Prior {
    /// The state of every step the journal knows, as [`medic_journal::JournalReader::steps`]
    /// reads them (one row per step id; rows of ids the plan does not have are ignored).
    pub steps: Vec<StepRow>,
    /// Timer key (step or gate id) -> due, wall-clock milliseconds.
    pub timers: HashMap<String, i64>,
}

/// Stop semantics, as in moon: `cancel` drains, `abort` stops in-flight steps.
#[derive(Clone, Debug, Default)]
pub struct Control {
    pub cancel: CancellationToken,
    pub abort: CancellationToken,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunExit {
    /// Everything succeeded and was verified.
    Ok,
    /// The run finished with failed steps.
    Failed,
    /// Stopped early; resumable.
    Stopped,
}

#[derive(Clone, Debug)]
pub struct RunReport {
    pub summary: Summary,
    pub stop: Option<StopReason>,
    pub exit: RunExit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    Waiting,
    Ready,
    Running,
    RetryWait,
    GateSoak,
    GateApproval,
    /// A manual step whose work is not observed done: it waits for the operator's approval,
    /// holding no limit, so that only the steps that need it wait.
    OperatorWait,
    Done(Outcome),
    /// A predecessor failed: this step will not run in this run.
    Blocked,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Retry,
    Soak,
    Window,
}

struct Completion {
    step: u32,
    attempt: u32,
    result: Result<AttemptResult, String>,
    elapsed_ms: u64,
}

const NO: u16 = u16::MAX;

pub(crate) struct Dispatcher<'a> {
    plan: Arc<Plan>,
    /// The summary's lines of the host-key events drivers reported.
    host_keys: Vec<String>,
    drivers: &'a Drivers,
    journal: &'a Journal,
    opts: &'a RunOptions,
    reporter: &'a mut dyn Reporter,

    st: Vec<St>,
    attempt: Vec<u32>,
    reprobe: Vec<bool>,
    waiting: Vec<u32>,
    /// The steps that need each step (see `Dispatcher::new`).
    dependents: Vec<u32>,
    dep_start: Vec<u32>,
    ready: BTreeSet<u32>,
    worklist: VecDeque<u32>,
    timers: BinaryHeap<Reverse<(Instant, u32, TimerKind)>>,
    prior_timers: HashMap<String, i64>,
    soak_done: HashSet<u32>,
    awaiting_approval: BTreeSet<u32>,
    /// Manual steps waiting for the operator, with what they were asked.
    awaiting_operator: BTreeMap<u32, ManualAsk>,
    /// Manual steps the operator approved (by whom): their next attempt observes the work.
    approved_by: HashMap<u32, String>,
    handles: HashMap<u32, AbortHandle>,
    started_at: HashMap<u32, Instant>,

    phase_of: Vec<u16>,
    phase_limit: Vec<Option<u32>>,
    phase_running: Vec<u32>,
    endpoint_of: Vec<u16>,
    endpoint_limit: Vec<u32>,
    endpoint_running: Vec<u32>,
    group_of_host: Vec<u16>,
    group_running: Vec<u32>,
    host_busy: Vec<bool>,
    /// When each host's latest step finished (wall ms; 0 = none yet): a step's
    /// `ActionRequest::after_ms`, so that a check can refuse evidence older than the work
    /// before it on the host (a security update from before the upgrade).
    host_done_ms: Vec<i64>,
    /// Notes of steps that succeeded, by step (few: a `HashMap`, not a per-step vector).
    notes: HashMap<u32, String>,
    running: u32,

    wave_failures: HashMap<(u16, u32), u32>,
    wave_running: HashMap<(u16, u32), u32>,
    phase_failures: Vec<u32>,
    phase_left: Vec<u32>,
    phase_started: Vec<bool>,
    wave_left: HashMap<(u16, u32), u32>,
    wave_started: HashSet<(u16, u32)>,

    stop: Option<StopReason>,
    window_wait_set: bool,
    overshoot: u32,
    start: Instant,
}

fn journal_state(o: Outcome) -> StepState {
    match o {
        Outcome::Succeeded | Outcome::AlreadyDone => StepState::Succeeded,
        Outcome::Skipped => StepState::Skipped,
        Outcome::Failed => StepState::Failed,
        Outcome::Unknown => StepState::Unknown,
    }
}

fn satisfies(o: Outcome, on_finish: bool) -> bool {
    matches!(
        o,
        Outcome::Succeeded | Outcome::AlreadyDone | Outcome::Skipped
    ) || (on_finish && o == Outcome::Failed)
}

fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Succeeded | Outcome::AlreadyDone => "succeeded",
        Outcome::Skipped => "skipped",
        Outcome::Failed => "failed",
        Outcome::Unknown => "unknown",
    }
}

const ALREADY: &str = "already done: ";
/// Starts the note of a succeeded step in its journal detail (alone or after `; `), so that
/// a resumed run's summary still lists it.
const NOTE: &str = "note: ";

/// The note inside a succeeded step's journal detail.
fn note_of(detail: &str) -> Option<&str> {
    if let Some(n) = detail.strip_prefix(NOTE) {
        return Some(n);
    }
    detail
        .find("; note: ")
        .map(|k| &detail[k + 2 + NOTE.len()..])
}

impl<'a> Dispatcher<'a> {
    pub(crate) fn new(
        plan: Arc<Plan>,
        drivers: &'a Drivers,
        journal: &'a Journal,
        opts: &'a RunOptions,
        reporter: &'a mut dyn Reporter,
        prior: &Prior,
    ) -> Self {
        let n = plan.steps().len();
        let mut phase_ix: HashMap<&str, u16> = HashMap::new();
        let mut phase_limit = Vec::new();
        for p in plan.phases() {
            phase_ix.insert(p.name.as_str(), phase_limit.len() as u16);
            phase_limit.push(p.max_parallel);
        }
        let mut endpoint_ix: HashMap<&str, u16> = HashMap::new();
        let mut endpoint_limit = Vec::new();
        for (e, lim) in plan.endpoint_limits() {
            endpoint_ix.insert(e.as_str(), endpoint_limit.len() as u16);
            endpoint_limit.push(*lim);
        }
        let mut group_ix: HashMap<&str, u16> = HashMap::new();
        let group_of_host: Vec<u16> = plan
            .hosts()
            .iter()
            .map(|h| match &h.relay_group {
                Some(g) => {
                    let next = group_ix.len() as u16;
                    *group_ix.entry(g.as_str()).or_insert(next)
                }
                None => NO,
            })
            .collect();
        let groups = group_ix.len();
        let mut phase_of = Vec::with_capacity(n);
        let mut endpoint_of = Vec::with_capacity(n);
        // Who needs each step, as one list (CSR): `dependents[dep_start[i]..dep_start[i + 1]]`
        // need step i, in step order. One allocation instead of one per step.
        let mut dep_start = vec![0u32; n + 1];
        for s in plan.steps() {
            for need in &s.needs {
                dep_start[need.step as usize + 1] += 1;
            }
        }
        for i in 0..n {
            dep_start[i + 1] += dep_start[i];
        }
        let mut dependents = vec![0u32; dep_start[n] as usize];
        let mut fill = dep_start.clone();
        let mut phase_left = vec![0u32; phase_limit.len()];
        let mut wave_left: HashMap<(u16, u32), u32> = HashMap::new();
        for (i, s) in plan.steps().iter().enumerate() {
            let p = phase_ix.get(&*s.phase).copied().unwrap_or(NO);
            phase_of.push(p);
            endpoint_of.push(
                s.endpoint
                    .as_deref()
                    .and_then(|e| endpoint_ix.get(e).copied())
                    .unwrap_or(NO),
            );
            for need in &s.needs {
                let at = &mut fill[need.step as usize];
                dependents[*at as usize] = i as u32;
                *at += 1;
            }
            if s.kind == StepKind::Action && p != NO {
                phase_left[p as usize] += 1;
                if let Some(w) = s.wave {
                    *wave_left.entry((p, w)).or_default() += 1;
                }
            }
        }
        let phases = phase_limit.len();
        let endpoints = endpoint_limit.len();
        let mut d = Dispatcher {
            plan: plan.clone(),
            host_keys: Vec::new(),
            drivers,
            journal,
            opts,
            reporter,
            st: vec![St::Waiting; n],
            attempt: vec![0; n],
            reprobe: vec![false; n],
            waiting: vec![0; n],
            dependents,
            dep_start,
            ready: BTreeSet::new(),
            worklist: VecDeque::new(),
            timers: BinaryHeap::new(),
            prior_timers: prior.timers.clone(),
            soak_done: HashSet::new(),
            awaiting_approval: BTreeSet::new(),
            awaiting_operator: BTreeMap::new(),
            approved_by: HashMap::new(),
            handles: HashMap::new(),
            started_at: HashMap::new(),
            phase_of,
            phase_limit,
            phase_running: vec![0; phases],
            endpoint_of,
            endpoint_limit,
            endpoint_running: vec![0; endpoints],
            group_of_host,
            group_running: vec![0; groups],
            host_busy: vec![false; plan.hosts().len()],
            host_done_ms: vec![0; plan.hosts().len()],
            notes: HashMap::new(),
            running: 0,
            wave_failures: HashMap::new(),
            wave_running: HashMap::new(),
            phase_failures: vec![0; phases],
            phase_left,
            phase_started: vec![false; phases],
            wave_left,
            wave_started: HashSet::new(),
            stop: None,
            window_wait_set: false,
            overshoot: 0,
            start: Instant::now(),
        };
        d.restore(prior);
        d
    }

    /// Puts the journal's view back: finished steps stay finished, started ones are
    /// re-probed, failed ones run again only with `retry_failed`.
    fn restore(&mut self, prior: &Prior) {
        let plan = self.plan.clone();
        // Where each row's step is in the plan: a million lookups are random reads of the
        // plan, so a large journal's are split between two threads (same result either way).
        let find = |rows: &[StepRow]| -> Vec<Option<u32>> {
            rows.iter().map(|r| plan.step_index(&r.step)).collect()
        };
        let at: Vec<Option<u32>> = if prior.steps.len() >= 100_000 {
            let (a, b) = prior.steps.split_at(prior.steps.len() / 2);
            let (mut a, b) = medic_model::par::join(|| find(a), || find(b));
            a.extend(b);
            a
        } else {
            find(&prior.steps)
        };
        for (row, i) in prior.steps.iter().zip(at) {
            let Some(i) = i else {
                continue;
            };
            let i = i as usize;
            let (state, detail) = (&row.state, &row.detail);
            if matches!(
                state,
                StepState::Succeeded | StepState::Skipped | StepState::Failed
            ) && let Some(h) = plan.step(i as u32).host
            {
                let t = &mut self.host_done_ms[h as usize];
                *t = (*t).max(row.updated_ms);
            }
            if *state == StepState::Succeeded
                && let Some(n) = detail.as_deref().and_then(note_of)
            {
                self.notes.insert(i as u32, n.to_owned());
            }
            self.attempt[i] = row.attempt;
            self.st[i] = match state {
                StepState::Succeeded => {
                    if detail.as_deref().is_some_and(|d| d.starts_with(ALREADY)) {
                        St::Done(Outcome::AlreadyDone)
                    } else {
                        St::Done(Outcome::Succeeded)
                    }
                }
                StepState::Skipped => St::Done(Outcome::Skipped),
                StepState::Failed if self.opts.retry_failed => {
                    self.attempt[i] = 0;
                    St::Waiting
                }
                StepState::Failed => St::Done(Outcome::Failed),
                StepState::Running | StepState::Unknown => {
                    self.reprobe[i] = true;
                    St::Waiting
                }
                StepState::Pending | StepState::Cancelled => St::Waiting,
            };
            if let St::Done(o) = self.st[i] {
                self.account_done(i as u32, o, true);
            }
        }
        for i in 0..plan.steps().len() {
            if matches!(self.st[i], St::Done(_)) {
                continue;
            }
            let mut waiting = 0;
            let mut blocked = false;
            for need in &plan.steps()[i].needs {
                match self.st[need.step as usize] {
                    St::Done(o) if satisfies(o, need.on_finish) => {}
                    St::Done(_) | St::Blocked => blocked = true,
                    _ => waiting += 1,
                }
            }
            self.waiting[i] = waiting;
            if blocked {
                self.st[i] = St::Blocked;
            } else if waiting == 0 {
                self.worklist.push_back(i as u32);
            }
        }
    }

    fn now_ms(&self) -> i64 {
        self.opts.clock.wall_ms()
    }

    fn scaled(&self, secs: f64) -> Duration {
        Duration::from_secs_f64((secs / self.opts.time_scale.max(1e-9)).max(0.0))
    }

    fn emit(&mut self, mut ev: RunEvent) {
        // What drivers reported since the last event comes first, as it happened first.
        for d in self.drivers.take_events() {
            if let Some(line) = d.host_key_line() {
                self.host_keys.push(line);
            }
            self.reporter.event(&d);
        }
        if let RunEvent::RunFinished { summary, .. } = &mut ev {
            summary.host_keys.clone_from(&self.host_keys);
        }
        self.reporter.event(&ev);
    }

    fn record(&mut self, rec: Record) {
        if let Err(e) = self.journal.append(rec)
            && self.stop.is_none()
        {
            self.stop = Some(StopReason::JournalFailed {
                message: e.to_string(),
            });
        }
    }

    fn host_name(&self, i: u32) -> Option<String> {
        let s = self.plan.step(i);
        self.plan.host_name(s).map(str::to_owned)
    }

    pub(crate) async fn run(mut self, control: Control) -> RunReport {
        let (tx, mut rx) = mpsc::unbounded_channel::<Completion>();
        // Counted as a person counts the plan: steps and gates, not the graph's barriers.
        let counted = |i: &usize| self.plan.step(*i as u32).kind != StepKind::Barrier;
        let done_before = (0..self.st.len())
            .filter(counted)
            .filter(|&i| matches!(self.st[i], St::Done(_)))
            .count() as u32;
        let resumed = done_before > 0 || self.reprobe.iter().any(|r| *r);
        self.emit(RunEvent::RunStarted {
            run_id: self.opts.run_id.clone(),
            playbook: self.plan.playbook().to_owned(),
            fingerprint: self.plan.fingerprint().to_owned(),
            steps: (0..self.st.len()).filter(counted).count() as u32,
            done_before,
            resumed,
        });
        let mut tick = tokio::time::interval(self.opts.approval_poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut cancelled = false;
        loop {
            self.process_worklist();
            if self.stop.is_none() {
                self.schedule(&tx);
            }
            let idle = self.ready.is_empty()
                && self.timers.is_empty()
                && self.awaiting_approval.is_empty()
                && self.awaiting_operator.is_empty();
            if self.running == 0 && (self.stop.is_some() || idle) && self.worklist.is_empty() {
                break;
            }
            let next_timer = self.timers.peek().map(|Reverse((t, _, _))| *t);
            let polling = !self.awaiting_approval.is_empty() || !self.awaiting_operator.is_empty();
            tokio::select! {
                biased;
                _ = control.abort.cancelled() => {
                    self.emit(RunEvent::CancelRequested { hard: true });
                    self.abort_all();
                    self.stop = Some(StopReason::Aborted);
                    break;
                }
                _ = control.cancel.cancelled(), if !cancelled => {
                    cancelled = true;
                    self.emit(RunEvent::CancelRequested { hard: false });
                    if self.stop.is_none() {
                        self.stop = Some(StopReason::Cancelled);
                    }
                }
                Some(c) = rx.recv() => self.completed(c),
                _ = async { tokio::time::sleep_until(next_timer.unwrap_or_else(Instant::now)).await }, if next_timer.is_some() => {
                    self.fire_timers();
                }
                _ = tick.tick(), if polling => self.poll_approvals(),
            }
        }
        if let Err(e) = self.journal.flush().await
            && self.stop.is_none()
        {
            self.stop = Some(StopReason::JournalFailed {
                message: e.to_string(),
            });
        }
        let unknown: Vec<String> = self
            .st
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == St::Done(Outcome::Unknown))
            .map(|(i, _)| self.plan.step(i as u32).id.clone())
            .collect();
        if self.stop.is_none() && !unknown.is_empty() {
            self.stop = Some(StopReason::UnknownOutcomes { steps: unknown });
        }
        let summary = self.summary();
        let exit = if self.stop.is_some() {
            RunExit::Stopped
        } else if summary.hosts_failed > 0
            || summary.hosts_incomplete > 0
            || self.hard_failures() > 0
        {
            RunExit::Failed
        } else {
            RunExit::Ok
        };
        self.emit(RunEvent::RunFinished {
            summary: summary.clone(),
            stop: self.stop.clone(),
            elapsed_ms: self.start.elapsed().as_millis() as u64,
        });
        RunReport {
            summary,
            stop: self.stop.clone(),
            exit,
        }
    }

    /// Steps whose needs are all met: barriers finish at once, gates advance, actions queue.
    fn process_worklist(&mut self) {
        while let Some(i) = self.worklist.pop_front() {
            if self.st[i as usize] != St::Waiting {
                continue;
            }
            let kind = self.plan.step(i).kind.clone();
            match kind {
                StepKind::Barrier => self.finish(i, Outcome::Succeeded, None, 0),
                StepKind::Gate(_) => {
                    self.st[i as usize] = St::Ready;
                    self.advance_gate(i);
                }
                StepKind::Action => {
                    let key = self.plan.step(i).id.clone();
                    if let Some(due) = self.prior_timers.remove(&key) {
                        self.st[i as usize] = St::RetryWait;
                        let at = self.opts.clock.instant_at(due);
                        self.timers.push(Reverse((at, i, TimerKind::Retry)));
                    } else {
                        self.st[i as usize] = St::Ready;
                        self.ready.insert(i);
                    }
                }
            }
        }
    }

    fn wave_estimate_s(&self, p: u16, w: u32) -> u64 {
        let steps: Vec<u64> = self
            .plan
            .steps()
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                self.phase_of[*i] == p && s.wave == Some(w) && s.kind == StepKind::Action
            })
            .map(|(_, s)| s.estimate_s)
            .collect();
        let par = self.phase_limit[p as usize]
            .unwrap_or(self.plan.max_parallel())
            .min(self.plan.max_parallel())
            .max(1) as u64;
        let longest = steps.iter().copied().max().unwrap_or(0);
        (steps.len() as u64).div_ceil(par) * longest
    }

    fn advance_gate(&mut self, i: u32) {
        if self.stop.is_some() {
            return;
        }
        let step = self.plan.step(i).clone();
        let StepKind::Gate(spec) = step.kind else {
            return;
        };
        let p = self.phase_of[i as usize];
        let phase = step.phase.to_string();
        // A wave opens only if the waves before it, and the phase, are within budget; this
        // also holds on a resume, where the failures come from the journal.
        let info = self.plan.phases()[p as usize].clone();
        for w in info.waves.iter().filter(|w| w.index < spec.opens_wave) {
            let failures = self.wave_failures.get(&(p, w.index)).copied().unwrap_or(0);
            if let Some(t) = w.max_failures
                && failures > t
            {
                self.stop = Some(StopReason::BudgetExceeded {
                    phase,
                    wave: Some(w.index),
                    failures,
                    tolerated: t,
                });
                return;
            }
        }
        if let Some(t) = info.max_failures_total
            && self.phase_failures[p as usize] > t
        {
            self.stop = Some(StopReason::BudgetExceeded {
                phase,
                wave: None,
                failures: self.phase_failures[p as usize],
                tolerated: t,
            });
            return;
        }
        if let Some(w) = self.opts.window {
            let left_s = ((w.end.as_millisecond() - self.now_ms()) / 1000).max(0) as u64;
            let needed_s = self.wave_estimate_s(p, spec.opens_wave);
            if needed_s > left_s && self.opts.window_policy == WindowPolicy::Stop {
                self.stop = Some(StopReason::WindowTooShort {
                    phase,
                    wave: spec.opens_wave,
                    needed_s,
                    left_s,
                });
                return;
            }
        }
        if spec.pause_s > 0 && !self.soak_done.contains(&i) {
            if self.st[i as usize] != St::GateSoak {
                let due = match self.prior_timers.remove(&step.id) {
                    Some(due) => due,
                    None => {
                        let due =
                            self.now_ms() + self.scaled(spec.pause_s as f64).as_millis() as i64;
                        self.record(Record::TimerSet {
                            key: step.id.clone(),
                            kind: "soak".to_owned(),
                            due_ms: due,
                        });
                        due
                    }
                };
                self.st[i as usize] = St::GateSoak;
                let at = self.opts.clock.instant_at(due);
                self.timers.push(Reverse((at, i, TimerKind::Soak)));
                let left = (due - self.now_ms()).max(0) as f64 / 1000.0;
                self.emit(RunEvent::GateWaiting {
                    gate: step.id.clone(),
                    phase,
                    wave: spec.opens_wave,
                    waiting_for: format!(
                        "soak of {} ({left:.1}s at this time scale)",
                        medic_model::format_duration(spec.pause_s)
                    ),
                });
            }
            return;
        }
        if spec.approval && !self.opts.yes {
            let approved = self
                .journal
                .approvals()
                .map(|a| a.into_iter().find(|a| a.gate == step.id))
                .unwrap_or(None);
            match approved {
                Some(a) => self.open_gate(i, Some(a.by)),
                None => {
                    if self.awaiting_approval.insert(i) {
                        self.st[i as usize] = St::GateApproval;
                        self.record(Record::Event {
                            step: Some(step.id.clone()),
                            kind: "gate.waiting".to_owned(),
                            detail: Some("approval".to_owned()),
                        });
                        self.emit(RunEvent::GateWaiting {
                            gate: step.id.clone(),
                            phase,
                            wave: spec.opens_wave,
                            waiting_for: "approval".to_owned(),
                        });
                    }
                }
            }
            return;
        }
        self.open_gate(
            i,
            if spec.approval {
                Some("--yes".to_owned())
            } else {
                None
            },
        );
    }

    fn open_gate(&mut self, i: u32, approved_by: Option<String>) {
        let step = self.plan.step(i).clone();
        let wave = match step.kind {
            StepKind::Gate(g) => g.opens_wave,
            _ => 0,
        };
        self.awaiting_approval.remove(&i);
        self.emit(RunEvent::GateOpened {
            gate: step.id.clone(),
            phase: step.phase.to_string(),
            wave,
            approved_by,
        });
        self.record(Record::TimerClear {
            key: step.id.clone(),
        });
        self.finish(i, Outcome::Succeeded, None, 0);
    }

    fn poll_approvals(&mut self) {
        let Ok(approvals) = self.journal.approvals() else {
            return;
        };
        let by_gate: HashMap<String, String> =
            approvals.into_iter().map(|a| (a.gate, a.by)).collect();
        let waiting: Vec<u32> = self.awaiting_approval.iter().copied().collect();
        for i in waiting {
            if let Some(by) = by_gate.get(&self.plan.step(i).id) {
                self.open_gate(i, Some(by.clone()));
            }
        }
        let operator: Vec<u32> = self.awaiting_operator.keys().copied().collect();
        for i in operator {
            if let Some(by) = by_gate.get(&self.plan.step(i).id) {
                self.operator_approved(i, by.clone());
            }
        }
    }

    /// A manual step's work is not observed done: it waits for the operator, recorded in
    /// the journal (so `medic status` shows it and a resume asks again). An approval
    /// already in the journal (given from another shell, or before a crash) counts at once.
    fn operator_wait(&mut self, i: u32, ask: ManualAsk) {
        let plan = self.plan.clone();
        let s = plan.step(i);
        // The question did not act: the attempt that acts after the approval is this one.
        self.attempt[i as usize] = self.attempt[i as usize].saturating_sub(1);
        if let Ok(Some(a)) = self
            .journal
            .approvals()
            .map(|all| all.into_iter().find(|a| a.gate == s.id))
        {
            self.awaiting_operator.insert(i, ask);
            self.operator_approved(i, a.by);
            return;
        }
        self.st[i as usize] = St::OperatorWait;
        self.record(Record::Step {
            step: s.id.clone(),
            state: StepState::Pending,
            attempt: self.attempt[i as usize],
            detail: Some(format!("waiting for the operator: {}", ask.instruction)),
        });
        self.record(Record::Event {
            step: Some(s.id.clone()),
            kind: "manual.waiting".to_owned(),
            detail: Some(ask.instruction.clone()),
        });
        self.emit(RunEvent::ManualStepWaiting {
            step: s.id.clone(),
            phase: s.phase.to_string(),
            host: self.host_name(i),
            action: s.action.to_string(),
            instruction: ask.instruction.clone(),
            question: ask.question.clone(),
        });
        self.awaiting_operator.insert(i, ask);
    }

    /// The operator approved a manual step: it runs again, to observe the work.
    fn operator_approved(&mut self, i: u32, by: String) {
        let Some(ask) = self.awaiting_operator.remove(&i) else {
            return;
        };
        let plan = self.plan.clone();
        let s = plan.step(i);
        self.record(Record::Event {
            step: Some(s.id.clone()),
            kind: "manual.approved".to_owned(),
            detail: Some(by.clone()),
        });
        self.emit(RunEvent::ManualStepApproved {
            step: s.id.clone(),
            host: self.host_name(i),
            action: s.action.to_string(),
            instruction: ask.instruction,
            approved_by: by.clone(),
        });
        self.approved_by.insert(i, by);
        self.st[i as usize] = St::Ready;
        self.ready.insert(i);
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((t, i, kind))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            match kind {
                TimerKind::Retry => {
                    if self.st[i as usize] == St::RetryWait {
                        let id = self.plan.step(i).id.clone();
                        self.record(Record::TimerClear { key: id });
                        self.st[i as usize] = St::Ready;
                        self.ready.insert(i);
                    }
                }
                TimerKind::Soak => {
                    self.soak_done.insert(i);
                    self.st[i as usize] = St::Ready;
                    self.advance_gate(i);
                }
                TimerKind::Window => self.window_wait_set = false,
            }
        }
    }

    /// Whether the window lets a step start now; sets the stop or the wake-up otherwise.
    fn window_open(&mut self) -> bool {
        let Some(w) = self.opts.window else {
            return true;
        };
        let now = self.now_ms();
        if now >= w.end.as_millisecond() {
            if self.stop.is_none() {
                self.stop = Some(StopReason::WindowClosed);
                self.emit(RunEvent::WindowClosed);
            }
            return false;
        }
        if now < w.start.as_millisecond() {
            if !self.window_wait_set {
                self.window_wait_set = true;
                let at = self.opts.clock.instant_at(w.start.as_millisecond());
                self.timers.push(Reverse((at, u32::MAX, TimerKind::Window)));
                self.emit(RunEvent::WindowWaiting {
                    until_ms: w.start.as_millisecond(),
                });
            }
            return false;
        }
        true
    }

    /// Tolerance left in a step's wave and phase, for strict budgets.
    fn strict_allows(&self, i: u32) -> bool {
        let s = self.plan.step(i);
        let p = self.phase_of[i as usize];
        let Some(info) = self.plan.phases().get(p as usize) else {
            return true;
        };
        if !(info.strict || self.opts.strict) || s.soft_fail {
            return true;
        }
        let mut cap = u32::MAX;
        if let Some(w) = s.wave
            && let Some(t) = info
                .waves
                .iter()
                .find(|x| x.index == w)
                .and_then(|x| x.max_failures)
        {
            let failed = self.wave_failures.get(&(p, w)).copied().unwrap_or(0);
            let running = self.wave_running.get(&(p, w)).copied().unwrap_or(0);
            cap = cap.min(t.saturating_sub(failed) + 1);
            if running >= cap {
                return false;
            }
        }
        if let Some(t) = info.max_failures_total {
            let running: u32 = self
                .wave_running
                .iter()
                .filter(|((pp, _), _)| *pp == p)
                .map(|(_, r)| *r)
                .sum();
            if running > t.saturating_sub(self.phase_failures[p as usize]) {
                return false;
            }
        }
        true
    }

    fn schedule(&mut self, tx: &mpsc::UnboundedSender<Completion>) {
        if self.ready.is_empty() || !self.window_open() {
            return;
        }
        let global = self.plan.max_parallel();
        // Walk the ready set in order, a slice at a time, so that a large ready set costs
        // only what can start now (plus the steps passed over for a limit).
        let mut from = 0u32;
        'scan: while self.running < global && self.stop.is_none() {
            let slice: Vec<u32> = self
                .ready
                .range(from..)
                .take(((global - self.running) as usize).max(64))
                .copied()
                .collect();
            let Some(&last) = slice.last() else { break };
            from = last.saturating_add(1);
            for i in slice {
                if self.running >= global || self.stop.is_some() {
                    break 'scan;
                }
                if self.fits(i) {
                    self.start_step(i, tx);
                }
            }
            if last == u32::MAX {
                break;
            }
        }
    }

    /// Whether step `i` fits every limit now.
    fn fits(&self, i: u32) -> bool {
        let s = self.plan.step(i);
        let p = self.phase_of[i as usize];
        if p != NO
            && let Some(lim) = self.phase_limit[p as usize]
            && self.phase_running[p as usize] >= lim
        {
            return false;
        }
        let e = self.endpoint_of[i as usize];
        if e != NO && self.endpoint_running[e as usize] >= self.endpoint_limit[e as usize] {
            return false;
        }
        if let Some(h) = s.host {
            if self.host_busy[h as usize] {
                return false;
            }
            let g = self.group_of_host[h as usize];
            if g != NO
                && let Some(lim) = self.opts.max_per_group
                && self.group_running[g as usize] >= lim
            {
                return false;
            }
        }
        self.strict_allows(i)
    }

    fn start_step(&mut self, i: u32, tx: &mpsc::UnboundedSender<Completion>) {
        let plan = self.plan.clone();
        let s = plan.step(i);
        let Some(driver) = self.drivers.get(&s.driver) else {
            self.ready.remove(&i);
            let msg = format!("no driver `{}` is configured for this run", s.driver);
            self.finish(i, Outcome::Failed, Some(msg), 0);
            return;
        };
        self.ready.remove(&i);
        self.st[i as usize] = St::Running;
        self.attempt[i as usize] += 1;
        let attempt = self.attempt[i as usize];
        let p = self.phase_of[i as usize];
        self.running += 1;
        if p != NO {
            self.phase_running[p as usize] += 1;
            if !self.phase_started[p as usize] {
                self.phase_started[p as usize] = true;
                let steps = self.phase_left[p as usize];
                self.emit(RunEvent::PhaseStarted {
                    phase: s.phase.to_string(),
                    steps,
                });
            }
            if let Some(w) = s.wave {
                *self.wave_running.entry((p, w)).or_default() += 1;
                if self.wave_started.insert((p, w)) {
                    let hosts = self.plan.phases()[p as usize]
                        .waves
                        .iter()
                        .find(|x| x.index == w)
                        .map(|x| x.hosts)
                        .unwrap_or(0);
                    self.emit(RunEvent::WaveStarted {
                        phase: s.phase.to_string(),
                        wave: w,
                        hosts,
                    });
                }
            }
        }
        let e = self.endpoint_of[i as usize];
        if e != NO {
            self.endpoint_running[e as usize] += 1;
        }
        if let Some(h) = s.host {
            self.host_busy[h as usize] = true;
            let g = self.group_of_host[h as usize];
            if g != NO {
                self.group_running[g as usize] += 1;
            }
        }
        let host = s.host.map(|h| plan.host(h).clone());
        self.emit(RunEvent::StepStarted {
            step: s.id.clone(),
            phase: s.phase.to_string(),
            host: host.as_ref().map(|h| h.name.clone()),
            action: s.action.to_string(),
            attempt,
        });
        let mut needs = BTreeMap::new();
        for n in &s.needs {
            let pred = plan.step(n.step);
            if pred.host == s.host
                && let St::Done(o) = self.st[n.step as usize]
            {
                needs.insert(pred.phase.to_string(), outcome_word(o).to_owned());
            }
        }
        let durable = self.journal.append_durable(Record::Step {
            step: s.id.clone(),
            state: StepState::Running,
            attempt,
            detail: None,
        });
        let input = AttemptInput {
            req: ActionRequest {
                step: s.id.clone(),
                host,
                action: s.action.to_string(),
                args: s.args.iter().cloned().collect(),
                attempt,
                after_ms: s
                    .host
                    .map(|h| self.host_done_ms[h as usize])
                    .filter(|&t| t > 0),
            },
            plan: plan.clone(),
            index: i,
            driver,
            needs,
            // A rehearsal scales deadlines down with durations, but never below what a busy
            // machine needs to answer a probe.
            timeout: self
                .scaled(s.timeout_s.max(1) as f64)
                .max(Duration::from_secs(2).min(Duration::from_secs(s.timeout_s.max(1)))),
            reprobe: self.reprobe[i as usize],
            manual: if &*s.driver != MANUAL_DRIVER {
                Manual::No
            } else if self.approved_by.contains_key(&i) {
                let timeout = self.scaled(s.timeout_s.max(1) as f64);
                Manual::Approved {
                    // A few dozen looks over the deadline, but never hammering the endpoint.
                    poll: (timeout / 100).clamp(Duration::from_millis(50), Duration::from_secs(10)),
                    retry: format!(
                        "medic apply --retry-failed --journal {}",
                        self.journal.path().display()
                    ),
                }
            } else {
                Manual::Ask
            },
        };
        let tx = tx.clone();
        let started = Instant::now();
        self.started_at.insert(i, started);
        // Every line a driver logs while it works on this attempt carries the attempt's
        // context. Only names go in the span, never the action's arguments.
        let span = tracing::info_span!(
            "step",
            run = %self.opts.run_id,
            step = %s.id,
            host = input.req.host.as_ref().map(|h| h.name.as_str()).unwrap_or("-"),
            action = %s.action,
            attempt,
        );
        let handle = tokio::spawn(
            async move {
                // "Started" is durable before the driver acts.
                let result = match durable.await {
                    Ok(()) => {
                        tracing::debug!("attempt started");
                        let r = run_attempt(input).await;
                        tracing::debug!(
                            outcome = outcome_word(r.outcome),
                            retryable = r.retryable,
                            "attempt ended"
                        );
                        Ok(r)
                    }
                    Err(e) => Err(e.to_string()),
                };
                let _ = tx.send(Completion {
                    step: i,
                    attempt,
                    result,
                    elapsed_ms: started.elapsed().as_millis() as u64,
                });
            }
            .instrument(span),
        );
        self.handles.insert(i, handle.abort_handle());
    }

    fn release(&mut self, i: u32) {
        let s = self.plan.step(i);
        let p = self.phase_of[i as usize];
        self.running = self.running.saturating_sub(1);
        if p != NO {
            self.phase_running[p as usize] = self.phase_running[p as usize].saturating_sub(1);
            if let Some(w) = s.wave
                && let Some(r) = self.wave_running.get_mut(&(p, w))
            {
                *r = r.saturating_sub(1);
            }
        }
        let e = self.endpoint_of[i as usize];
        if e != NO {
            self.endpoint_running[e as usize] = self.endpoint_running[e as usize].saturating_sub(1);
        }
        if let Some(h) = s.host {
            self.host_busy[h as usize] = false;
            let g = self.group_of_host[h as usize];
            if g != NO {
                self.group_running[g as usize] = self.group_running[g as usize].saturating_sub(1);
            }
        }
        self.handles.remove(&i);
    }

    fn completed(&mut self, c: Completion) {
        if self.st[c.step as usize] != St::Running {
            return;
        }
        self.release(c.step);
        self.started_at.remove(&c.step);
        let r = match c.result {
            Ok(r) => r,
            Err(msg) => {
                // The start could not be made durable: the driver never acted.
                if self.stop.is_none() {
                    self.stop = Some(StopReason::JournalFailed {
                        message: msg.clone(),
                    });
                }
                self.st[c.step as usize] = St::Ready;
                self.attempt[c.step as usize] -= 1;
                return;
            }
        };
        let plan = self.plan.clone();
        let s = plan.step(c.step);
        if let Some(ask) = r.operator {
            self.reprobe[c.step as usize] = false;
            self.operator_wait(c.step, ask);
            return;
        }
        if self.reprobe[c.step as usize] {
            self.reprobe[c.step as usize] = false;
            if s.check.is_some() {
                self.emit(RunEvent::StepReprobed {
                    step: s.id.clone(),
                    done: r.outcome == Outcome::AlreadyDone,
                });
            }
        }
        if r.outcome == Outcome::Failed
            && r.retryable
            && c.attempt <= s.retry.max
            && self.stop.is_none()
        {
            let base =
                s.retry.backoff_s.max(1) as f64 * 2f64.powi(c.attempt.saturating_sub(1) as i32);
            // Jitter from the step and attempt, so that a fleet does not retry in lockstep.
            let h = s.id.bytes().fold(c.attempt as u64 * 0x9E37_79B9, |a, b| {
                a.rotate_left(5) ^ b as u64
            });
            let jitter = 0.75 + (h % 1000) as f64 / 2000.0;
            let wait = self.scaled(base * jitter);
            let due = self.now_ms() + wait.as_millis() as i64;
            self.record(Record::Step {
                step: s.id.clone(),
                state: StepState::Pending,
                attempt: c.attempt,
                detail: r.detail.clone(),
            });
            self.record(Record::TimerSet {
                key: s.id.clone(),
                kind: "retry".to_owned(),
                due_ms: due,
            });
            self.emit(RunEvent::StepRetrying {
                step: s.id.clone(),
                attempt: c.attempt,
                wait_ms: wait.as_millis() as u64,
                error: r.detail.clone().unwrap_or_default(),
            });
            self.st[c.step as usize] = St::RetryWait;
            self.timers
                .push(Reverse((Instant::now() + wait, c.step, TimerKind::Retry)));
            return;
        }
        self.finish_noted(c.step, r.outcome, r.detail, c.elapsed_ms, r.note);
    }

    fn abort_all(&mut self) {
        let running: Vec<u32> = self.handles.keys().copied().collect();
        for i in running {
            if let Some(h) = self.handles.get(&i) {
                h.abort();
            }
            self.release(i);
            self.finish(
                i,
                Outcome::Unknown,
                Some("aborted while running: outcome unknown".to_owned()),
                0,
            );
        }
    }

    /// Counts a finished step in the phase and wave tallies and the budgets.
    fn account_done(&mut self, i: u32, o: Outcome, restoring: bool) {
        let s = self.plan.step(i);
        if s.kind != StepKind::Action {
            return;
        }
        let p = self.phase_of[i as usize];
        if p == NO {
            return;
        }
        self.phase_left[p as usize] = self.phase_left[p as usize].saturating_sub(1);
        let wave = s.wave;
        if let Some(w) = wave
            && let Some(l) = self.wave_left.get_mut(&(p, w))
        {
            *l = l.saturating_sub(1);
        }
        if o != Outcome::Failed || s.soft_fail {
            return;
        }
        self.phase_failures[p as usize] += 1;
        if let Some(w) = wave {
            *self.wave_failures.entry((p, w)).or_default() += 1;
        }
        if restoring {
            return;
        }
        if matches!(self.stop, Some(StopReason::BudgetExceeded { .. })) {
            self.overshoot += 1;
            return;
        }
        let info = self.plan.phases()[p as usize].clone();
        let wave_tol = wave.and_then(|w| {
            info.waves
                .iter()
                .find(|x| x.index == w)
                .and_then(|x| x.max_failures)
        });
        let wave_fail = wave
            .map(|w| self.wave_failures.get(&(p, w)).copied().unwrap_or(0))
            .unwrap_or(0);
        let exceeded = match (wave_tol, info.max_failures_total) {
            (Some(t), _) if wave_fail > t => Some((wave, wave_fail, t)),
            (_, Some(t)) if self.phase_failures[p as usize] > t => {
                Some((None, self.phase_failures[p as usize], t))
            }
            _ => None,
        };
        if let Some((w, failures, tolerated)) = exceeded {
            let in_flight = wave
                .map(|w| self.wave_running.get(&(p, w)).copied().unwrap_or(0))
                .unwrap_or(0);
            self.emit(RunEvent::BudgetExceeded {
                phase: info.name.clone(),
                wave: w,
                failures,
                tolerated,
                in_flight,
            });
            self.stop = Some(StopReason::BudgetExceeded {
                phase: info.name,
                wave: w,
                failures,
                tolerated,
            });
        }
    }

    fn finish(&mut self, i: u32, o: Outcome, detail: Option<String>, elapsed_ms: u64) {
        self.finish_noted(i, o, detail, elapsed_ms, None);
    }

    fn finish_noted(
        &mut self,
        i: u32,
        o: Outcome,
        detail: Option<String>,
        elapsed_ms: u64,
        note: Option<String>,
    ) {
        self.st[i as usize] = St::Done(o);
        self.approved_by.remove(&i);
        let plan = self.plan.clone();
        let s = plan.step(i);
        if let Some(h) = s.host {
            let t = &mut self.host_done_ms[h as usize];
            *t = (*t).max(self.opts.clock.wall_ms());
        }
        let detail = match (o, detail) {
            (Outcome::AlreadyDone, Some(d)) => Some(format!("{ALREADY}{d}")),
            (Outcome::AlreadyDone, None) => Some(ALREADY.trim_end().to_owned()),
            (_, d) => d,
        };
        // Only a success carries a note: a failure's detail already says everything.
        let note = note.filter(|_| matches!(o, Outcome::Succeeded | Outcome::AlreadyDone));
        let detail = match (&note, detail) {
            (Some(n), Some(d)) => Some(format!("{d}; {NOTE}{n}")),
            (Some(n), None) => Some(format!("{NOTE}{n}")),
            (None, d) => d,
        };
        if let Some(n) = note {
            if s.kind == StepKind::Action {
                self.emit(RunEvent::StepNoted {
                    step: s.id.clone(),
                    phase: s.phase.to_string(),
                    host: self.host_name(i),
                    note: n.clone(),
                });
            }
            self.notes.insert(i, n);
        }
        self.record(Record::Step {
            step: s.id.clone(),
            state: journal_state(o),
            attempt: self.attempt[i as usize],
            detail: detail.clone(),
        });
        if s.kind == StepKind::Action {
            self.emit(RunEvent::StepFinished {
                step: s.id.clone(),
                phase: s.phase.to_string(),
                host: self.host_name(i),
                action: s.action.to_string(),
                attempt: self.attempt[i as usize],
                outcome: o,
                elapsed_ms,
                detail,
            });
        }
        self.account_done(i, o, false);
        let p = self.phase_of[i as usize];
        if s.kind == StepKind::Action && p != NO {
            if let Some(w) = s.wave
                && self.wave_left.get(&(p, w)) == Some(&0)
            {
                let failed = self.wave_failures.get(&(p, w)).copied().unwrap_or(0);
                self.emit(RunEvent::WaveFinished {
                    phase: s.phase.to_string(),
                    wave: w,
                    failed,
                });
            }
            if self.phase_left[p as usize] == 0 {
                self.phase_finished(p);
            }
        }
        for k in self.dependents_of(i) {
            let d = self.dependents[k];
            let on_finish = self
                .plan
                .step(d)
                .needs
                .iter()
                .find(|n| n.step == i)
                .is_some_and(|n| n.on_finish);
            if satisfies(o, on_finish) {
                self.waiting[d as usize] = self.waiting[d as usize].saturating_sub(1);
                if self.waiting[d as usize] == 0 && self.st[d as usize] == St::Waiting {
                    self.worklist.push_back(d);
                }
            } else {
                self.block(d);
            }
        }
    }

    /// Positions in `dependents` of the steps that need step `i`.
    fn dependents_of(&self, i: u32) -> std::ops::Range<usize> {
        self.dep_start[i as usize] as usize..self.dep_start[i as usize + 1] as usize
    }

    fn phase_finished(&mut self, p: u16) {
        let name = self.plan.phases()[p as usize].name.clone();
        let (mut ok, mut failed, mut skipped) = (0, 0, 0);
        for (i, s) in self.st.iter().enumerate() {
            if self.phase_of[i] == p && self.plan.step(i as u32).kind == StepKind::Action {
                match s {
                    St::Done(Outcome::Succeeded | Outcome::AlreadyDone) => ok += 1,
                    St::Done(Outcome::Skipped) => skipped += 1,
                    St::Done(Outcome::Failed | Outcome::Unknown) => failed += 1,
                    _ => {}
                }
            }
        }
        self.emit(RunEvent::PhaseFinished {
            phase: name,
            succeeded: ok,
            failed,
            skipped,
        });
    }

    fn block(&mut self, d: u32) {
        let mut stack = vec![d];
        while let Some(x) = stack.pop() {
            if !matches!(self.st[x as usize], St::Waiting | St::Ready) {
                continue;
            }
            self.ready.remove(&x);
            self.st[x as usize] = St::Blocked;
            // A blocked step never finishes, so it counts as left in its phase forever.
            stack.extend_from_slice(&self.dependents[self.dependents_of(x)]);
        }
    }

    /// Failed steps whose failure no later phase repairs.
    fn hard_failures(&self) -> usize {
        self.st
            .iter()
            .enumerate()
            .filter(|(i, st)| {
                **st == St::Done(Outcome::Failed) && !self.plan.step(*i as u32).soft_fail
            })
            .count()
    }

    fn summary(&self) -> Summary {
        let plan = &self.plan;
        let mut sum = Summary {
            overshoot: self.overshoot,
            ..Summary::default()
        };
        // Counted with borrowed keys, made into the summary's owned ones at the end: a
        // million steps must not cost a million allocations here.
        let mut words: HashMap<&'static str, u32> = HashMap::new();
        // Few distinct actions, and runs of steps with the same one: a list and the last hit.
        let mut actions: Vec<(&str, ActionCounts)> = Vec::new();
        let mut last_action = usize::MAX;
        // (host, step) of every action step on a host, grouped by host below.
        let mut host_steps: Vec<(u32, u32)> = Vec::new();
        for (i, s) in plan.steps().iter().enumerate() {
            // Barriers are the graph's own: the counts are of steps and gates.
            if s.kind == StepKind::Barrier {
                continue;
            }
            let word = match self.st[i] {
                St::Done(o) => journal_state(o).as_str(),
                St::Blocked => "blocked",
                St::Running => "running",
                _ => "pending",
            };
            match words.get_mut(word) {
                Some(n) => *n += 1,
                None => {
                    words.insert(word, 1);
                }
            }
            if s.kind != StepKind::Action {
                continue;
            }
            if let Some(h) = s.host {
                host_steps.push((h, i as u32));
            }
            let a: &str = &s.action;
            if actions.get(last_action).is_none_or(|(x, _)| *x != a) {
                last_action = match actions.iter().position(|(x, _)| *x == a) {
                    Some(k) => k,
                    None => {
                        actions.push((a, ActionCounts::default()));
                        actions.len() - 1
                    }
                };
            }
            let c: &mut ActionCounts = &mut actions[last_action].1;
            match self.st[i] {
                St::Done(Outcome::Succeeded) => c.acted += 1,
                St::Done(Outcome::AlreadyDone) => c.already_done += 1,
                St::Done(Outcome::Skipped) => c.guard_skipped += 1,
                St::Done(Outcome::Failed) => {
                    c.failed += 1;
                    if sum.failures.len() < 20 {
                        sum.failures.push(if s.soft_fail {
                            format!("{} (soft: a later phase repairs it)", s.id)
                        } else {
                            s.id.clone()
                        });
                    }
                }
                _ => {}
            }
        }
        let mut noted: Vec<(&u32, &String)> = self
            .notes
            .iter()
            .filter(|(i, _)| {
                matches!(
                    self.st[**i as usize],
                    St::Done(Outcome::Succeeded | Outcome::AlreadyDone)
                )
            })
            .collect();
        noted.sort_unstable_by_key(|(i, _)| **i);
        sum.notes = noted
            .into_iter()
            .take(50)
            .map(|(i, n)| format!("{}: {n}", plan.step(*i).id))
            .collect();
        sum.steps = words.into_iter().map(|(w, n)| (w.to_owned(), n)).collect();
        sum.actions = actions
            .into_iter()
            .map(|(a, c)| (a.to_owned(), c))
            .collect();
        // By host in host order, each host's steps in step order (the sort is stable).
        host_steps.sort_by_key(|&(h, _)| h);
        let mut hosts_with_steps = 0usize;
        for group in host_steps.chunk_by(|a, b| a.0 == b.0) {
            hosts_with_steps += 1;
            let steps: Vec<u32> = group.iter().map(|&(_, i)| i).collect();
            let hard_fail = steps.iter().any(|&i| {
                self.st[i as usize] == St::Done(Outcome::Failed) && !plan.step(i).soft_fail
            });
            let open = steps
                .iter()
                .any(|&i| !matches!(self.st[i as usize], St::Done(o) if o != Outcome::Unknown));
            let last_verifier = steps.iter().rev().find(|&&i| {
                plan.step(i).verifies
                    && matches!(self.st[i as usize], St::Done(o) if o != Outcome::Skipped)
            });
            if hard_fail {
                sum.hosts_failed += 1;
            } else if open {
                sum.hosts_incomplete += 1;
            } else {
                match last_verifier {
                    Some(&v)
                        if matches!(
                            self.st[v as usize],
                            St::Done(Outcome::Succeeded | Outcome::AlreadyDone)
                        ) =>
                    {
                        sum.hosts_verified += 1
                    }
                    Some(_) => sum.hosts_failed += 1,
                    None => sum.hosts_verified += 1,
                }
            }
        }
        sum.hosts_without_steps = (plan.hosts().len() - hosts_with_steps) as u32;
        sum
    }
}
