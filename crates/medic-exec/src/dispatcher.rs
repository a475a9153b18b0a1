//! The dispatcher owns all run state and reacts to one closed set of internal events
//! ([`InternalEvent`]: an attempt finished, a timer fired, an approval was given, cancel,
//! abort, the journal failed), as cargo-nextest's runner does: the `select!` in
//! [`Dispatcher::run`] only turns what it waited on into an event, and
//! [`Dispatcher::handle`] is where the run state changes. It decides what starts next
//! under the nested limits (`limits.rs`), keeps the failure budgets (`budget.rs`), opens
//! gates and takes approvals (`gates.rs`), rebuilds its state from the journal on a resume
//! (`restore.rs`), and records every transition in the journal. It never mutates the plan.

mod budget;
mod gates;
mod limits;
mod restore;
mod summary;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use medic_journal::{
    EventKind, JournalError, JournalStore, Record, StepRow, StepState, TimerKind, detail_text,
};
use medic_plan::{Plan, StepKind};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use tracing::Instrument as _;

use crate::attempt::{AttemptInput, AttemptResult, Attempted, Manual, run_attempt};
use crate::clock::Clock;
use crate::driver::{ActionRequest, Drivers, MANUAL_DRIVER};
use crate::event::{Outcome, Reporter, RunEvent, StopReason, Summary};
use budget::Budget;
use gates::Gates;
use limits::Slots;

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

/// How the world steers a run from this process. Stop semantics, as in moon: `cancel`
/// drains, `abort` stops in-flight steps. [`Control::approve`] is the operator at this
/// process's terminal (or `medic demo` playing one): an input event into the dispatcher,
/// which records the approval in the journal itself, so reporters never write.
#[derive(Clone, Debug)]
pub struct Control {
    pub cancel: CancellationToken,
    pub abort: CancellationToken,
    input: mpsc::UnboundedSender<Input>,
    /// Taken by the run that is given this control (one run per control).
    inbox: Arc<Mutex<Option<mpsc::UnboundedReceiver<Input>>>>,
}

/// What the operator said at this process's terminal.
#[derive(Debug)]
enum Input {
    Approve { step: String, by: String },
}

impl Default for Control {
    fn default() -> Self {
        let (input, inbox) = mpsc::unbounded_channel();
        Control {
            cancel: CancellationToken::new(),
            abort: CancellationToken::new(),
            input,
            inbox: Arc::new(Mutex::new(Some(inbox))),
        }
    }
}

impl Control {
    /// Approves the gate or manual step `step` as `by` (an operator name, never a
    /// credential). The run records it in its journal, as `medic approve` would, and acts
    /// on it if the step waits; an id that is neither a gate asking for approval nor a
    /// manual step is ignored. After the run ended it does nothing.
    pub fn approve(&self, step: impl Into<String>, by: impl Into<String>) {
        // The run may be over; then there is nobody to tell.
        let _ = self.input.send(Input::Approve {
            step: step.into(),
            by: by.into(),
        });
    }

    fn take_inbox(&self) -> Option<mpsc::UnboundedReceiver<Input>> {
        self.inbox
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
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
    /// A step of an air-gapped zone: its slice runs it, and `medic journal merge` brings
    /// the result; this run never does.
    SliceWait,
    Done(Outcome),
    /// A predecessor failed: this step will not run in this run.
    Blocked,
}

/// What a timer wakes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Wake {
    Retry,
    Soak,
    Window,
}

/// One attempt's end, sent by its task.
struct Completion {
    step: u32,
    attempt: u32,
    /// `Err`: the start could not be made durable, so the driver never acted.
    result: Result<Attempted, JournalError>,
    elapsed_ms: u64,
}

/// Everything the dispatcher reacts to: a closed set, handled in one place.
enum InternalEvent {
    AttemptFinished(Completion),
    /// The soonest timer is due (retry wait, soak pause, window start).
    TimerFired,
    /// An operator approved a gate or manual step that waits: at this process's terminal
    /// (through [`Control::approve`]) or with `medic approve` (found by the poll).
    Approved {
        step: u32,
        by: String,
    },
    Cancel,
    Abort,
    /// A record could not be committed: nothing more may be started.
    JournalFailed(JournalError),
}

pub(crate) struct Dispatcher<'a, J: JournalStore + ?Sized> {
    plan: Arc<Plan>,
    /// The summary's lines of the host-key events drivers reported.
    host_keys: Vec<String>,
    drivers: &'a Drivers,
    journal: &'a J,
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
    timers: BinaryHeap<Reverse<(Instant, u32, Wake)>>,
    prior_timers: HashMap<String, i64>,
    handles: HashMap<u32, AbortHandle>,

    slots: Slots,
    budget: Budget,
    gates: Gates,
    /// When each host's latest step finished (wall ms; 0 = none yet): a step's
    /// `ActionRequest::after_ms`, so that a check can refuse evidence older than the work
    /// before it on the host (a security update from before the upgrade).
    host_done_ms: Vec<i64>,
    /// Notes of steps that succeeded, by step (few: a `HashMap`, not a per-step vector).
    notes: HashMap<u32, String>,

    stop: Option<StopReason>,
    /// Per step, the air-gapped zone whose slice runs it (`medic_plan::held_steps`).
    held: Vec<Option<String>>,
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

impl<'a, J: JournalStore + ?Sized> Dispatcher<'a, J> {
    pub(crate) fn new(
        plan: Arc<Plan>,
        drivers: &'a Drivers,
        journal: &'a J,
        opts: &'a RunOptions,
        reporter: &'a mut dyn Reporter,
        prior: &Prior,
    ) -> Self {
        let n = plan.steps().len();
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
        for (i, s) in plan.steps().iter().enumerate() {
            for need in &s.needs {
                let at = &mut fill[need.step as usize];
                dependents[*at as usize] = i as u32;
                *at += 1;
            }
        }
        let slots = Slots::new(&plan, opts.max_per_group);
        let budget = Budget::new(&plan, &slots, opts.strict);
        let hosts = plan.hosts().len();
        let mut d = Dispatcher {
            plan,
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
            handles: HashMap::new(),
            slots,
            budget,
            gates: Gates::default(),
            host_done_ms: vec![0; hosts],
            notes: HashMap::new(),
            stop: None,
            start: Instant::now(),
            held: Vec::new(),
        };
        d.held = medic_plan::held_steps(&d.plan)
            .into_iter()
            .map(|z| z.map(str::to_owned))
            .collect();
        d.restore(prior);
        d
    }

    fn now_ms(&self) -> i64 {
        self.opts.clock.wall_ms()
    }

    fn scaled(&self, secs: f64) -> Duration {
        Duration::from_secs_f64((secs / self.opts.time_scale.max(1e-9)).max(0.0))
    }

    fn emit(&mut self, mut ev: RunEvent) {
        // What drivers reported since the last event comes first, as it happened first.
        self.driver_events();
        if let RunEvent::RunFinished { summary, .. } = &mut ev {
            summary.host_keys.clone_from(&self.host_keys);
        }
        self.reporter.event(&ev);
    }

    /// Sends what drivers reported outside a step's reply. A host-key event is also
    /// journaled, because the run report reads only the journal.
    fn driver_events(&mut self) {
        for d in self.drivers.take_events() {
            if let Some(line) = d.host_key_line() {
                if let Some(rec) = host_key_record(&d, &line) {
                    self.record(rec);
                }
                self.host_keys.push(line);
            }
            self.reporter.event(&d);
        }
    }

    fn record(&mut self, rec: Record) {
        if let Err(e) = self.journal.append(rec) {
            self.handle(InternalEvent::JournalFailed(e));
        }
    }

    fn host_name(&self, i: u32) -> Option<String> {
        let s = self.plan.step(i);
        self.plan.host_name(s).map(str::to_owned)
    }

    pub(crate) async fn run(mut self, control: Control) -> RunReport {
        let (tx, mut rx) = mpsc::unbounded_channel::<Completion>();
        let mut inbox = control.take_inbox();
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
            let idle = self.ready.is_empty() && self.timers.is_empty() && !self.gates.waiting();
            if self.slots.running() == 0
                && (self.stop.is_some() || idle)
                && self.worklist.is_empty()
            {
                break;
            }
            let next_timer = self.timers.peek().map(|Reverse((t, _, _))| *t);
            let polling = self.gates.waiting();
            // Only turns what was waited on into an event; `handle` changes the state.
            let ev = tokio::select! {
                biased;
                _ = control.abort.cancelled() => InternalEvent::Abort,
                _ = control.cancel.cancelled(), if !cancelled => {
                    cancelled = true;
                    InternalEvent::Cancel
                }
                Some(c) = rx.recv() => InternalEvent::AttemptFinished(c),
                _ = async { tokio::time::sleep_until(next_timer.unwrap_or_else(Instant::now)).await }, if next_timer.is_some() => {
                    InternalEvent::TimerFired
                }
                Some(Input::Approve { step, by }) = async {
                    match inbox.as_mut() {
                        Some(r) => r.recv().await,
                        None => std::future::pending().await,
                    }
                } => match self.approval_input(&step, by) {
                    Some(ev) => ev,
                    None => continue,
                },
                _ = tick.tick(), if polling => {
                    for ev in self.poll_approvals() {
                        self.handle(ev);
                    }
                    continue;
                }
            };
            // An abort ends the loop at once: in-flight steps are already recorded unknown.
            let abort = matches!(ev, InternalEvent::Abort);
            self.handle(ev);
            if abort {
                break;
            }
        }
        // Journaled before the last flush, so the run report lists every key the run met.
        self.driver_events();
        if let Err(e) = self.journal.flush().await {
            self.handle(InternalEvent::JournalFailed(e));
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
        // What is left of an air-gapped zone waits for its slice's merge.
        let mut zones: Vec<String> = self
            .held
            .iter()
            .zip(&self.st)
            .filter(|(_, st)| !matches!(st, St::Done(_) | St::Blocked))
            .filter_map(|(z, _)| z.clone())
            .collect();
        zones.sort();
        zones.dedup();
        if self.stop.is_none() && !zones.is_empty() {
            self.stop = Some(StopReason::WaitingForSlices { zones });
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

    /// The one place the run state changes in response to the world.
    fn handle(&mut self, ev: InternalEvent) {
        match ev {
            InternalEvent::Abort => {
                self.emit(RunEvent::CancelRequested { hard: true });
                self.abort_all();
                self.stop = Some(StopReason::Aborted);
            }
            InternalEvent::Cancel => {
                self.emit(RunEvent::CancelRequested { hard: false });
                if self.stop.is_none() {
                    self.stop = Some(StopReason::Cancelled);
                }
            }
            InternalEvent::AttemptFinished(c) => self.completed(c),
            InternalEvent::TimerFired => self.fire_timers(),
            InternalEvent::Approved { step, by } => self.approval_given(step, by),
            InternalEvent::JournalFailed(e) => {
                if self.stop.is_none() {
                    self.stop = Some(StopReason::JournalFailed {
                        message: e.to_string(),
                    });
                }
            }
        }
    }

    /// Steps whose needs are all met: barriers finish at once, gates advance, actions queue.
    fn process_worklist(&mut self) {
        while let Some(i) = self.worklist.pop_front() {
            if self.st[i as usize] != St::Waiting {
                continue;
            }
            if self.held[i as usize].is_some() {
                self.st[i as usize] = St::SliceWait;
                continue;
            }
            match self.plan.step(i).kind {
                StepKind::Barrier => self.finish(i, Outcome::Succeeded, None, 0),
                StepKind::Gate(_) => {
                    self.st[i as usize] = St::Ready;
                    self.advance_gate(i);
                }
                StepKind::Action => {
                    let key = &self.plan.step(i).id;
                    if let Some(due) = self.prior_timers.remove(key) {
                        self.st[i as usize] = St::RetryWait;
                        let at = self.opts.clock.instant_at(due);
                        self.timers.push(Reverse((at, i, Wake::Retry)));
                    } else {
                        self.st[i as usize] = St::Ready;
                        self.ready.insert(i);
                    }
                }
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((t, i, wake))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            match wake {
                Wake::Retry => {
                    if self.st[i as usize] == St::RetryWait {
                        let id = self.plan.step(i).id.clone();
                        self.record(Record::TimerClear { key: id });
                        self.st[i as usize] = St::Ready;
                        self.ready.insert(i);
                    }
                }
                Wake::Soak => {
                    self.gates.soak_over(i);
                    self.st[i as usize] = St::Ready;
                    self.advance_gate(i);
                }
                Wake::Window => self.gates.window_reached(),
            }
        }
    }

    fn schedule(&mut self, tx: &mpsc::UnboundedSender<Completion>) {
        if self.ready.is_empty() || !self.window_open() {
            return;
        }
        // Walk the ready set in order, a slice at a time, so that a large ready set costs
        // only what can start now (plus the steps passed over for a limit).
        let mut from = 0u32;
        'scan: while self.slots.free() > 0 && self.stop.is_none() {
            let slice: Vec<u32> = self
                .ready
                .range(from..)
                .take((self.slots.free() as usize).max(64))
                .copied()
                .collect();
            let Some(&last) = slice.last() else { break };
            from = last.saturating_add(1);
            for i in slice {
                if self.slots.free() == 0 || self.stop.is_some() {
                    break 'scan;
                }
                if self.slots.fits(i) && self.budget.allows(&self.plan, i, self.slots.phase_of(i)) {
                    self.start_step(i, tx);
                }
            }
            if last == u32::MAX {
                break;
            }
        }
    }

    fn start_step(&mut self, i: u32, tx: &mpsc::UnboundedSender<Completion>) {
        let plan = self.plan.clone();
        let s = plan.step(i);
        self.ready.remove(&i);
        let Some(driver) = self.drivers.get(&s.driver) else {
            let msg = format!("no driver `{}` is configured for this run", s.driver);
            self.finish(i, Outcome::Failed, Some(msg), 0);
            return;
        };
        self.st[i as usize] = St::Running;
        self.attempt[i as usize] += 1;
        let attempt = self.attempt[i as usize];
        let p = self.slots.phase_of(i);
        self.slots.take(i);
        let began = self.budget.started(&plan, i, p);
        if let Some(steps) = began.phase {
            self.emit(RunEvent::PhaseStarted {
                phase: s.phase.to_string(),
                steps,
            });
        }
        if let Some((wave, hosts)) = began.wave {
            self.emit(RunEvent::WaveStarted {
                phase: s.phase.to_string(),
                wave,
                hosts,
            });
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
        let durable =
            self.journal
                .append_durable(Record::step(s.id.clone(), StepState::Running, attempt));
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
                fence: None,
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
            } else if self.gates.approved_by.contains_key(&i) {
                let timeout = self.scaled(s.timeout_s.max(1) as f64);
                Manual::Approved {
                    // A few dozen looks over the deadline, but never hammering the endpoint.
                    poll: (timeout / 100).clamp(Duration::from_millis(50), Duration::from_secs(10)),
                    retry: format!(
                        "medic apply --retry-failed --journal {}",
                        self.journal.location().display()
                    ),
                }
            } else {
                Manual::Ask
            },
        };
        let tx = tx.clone();
        let started = Instant::now();
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
                            outcome = outcome_word(r.result.outcome()),
                            retryable =
                                matches!(&r.result, AttemptResult::Failed(e) if e.retryable()),
                            "attempt ended"
                        );
                        Ok(r)
                    }
                    Err(e) => Err(e),
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
        self.slots.release(i);
        let p = self.slots.phase_of(i);
        self.budget.stopped_running(&self.plan, i, p);
        self.handles.remove(&i);
    }

    fn completed(&mut self, c: Completion) {
        let i = c.step;
        if self.st[i as usize] != St::Running {
            return;
        }
        self.release(i);
        let r = match c.result {
            Ok(r) => r,
            Err(e) => {
                // The start could not be made durable: the driver never acted.
                self.handle(InternalEvent::JournalFailed(e));
                self.st[i as usize] = St::Ready;
                self.attempt[i as usize] -= 1;
                return;
            }
        };
        let plan = self.plan.clone();
        let s = plan.step(i);
        // What the probes and the action answered: the run report's evidence (builds
        // before and after, the Manager's and the host's view, a command's output).
        if !r.observed.is_empty() {
            self.record(Record::Event {
                step: Some(s.id.clone()),
                kind: EventKind::StepObserved,
                detail: Some(r.observed.to_json(c.attempt)),
            });
        }
        let r = match r.result {
            AttemptResult::AskOperator(ask) => {
                self.reprobe[i as usize] = false;
                self.operator_wait(i, ask);
                return;
            }
            r => r,
        };
        if self.reprobe[i as usize] {
            self.reprobe[i as usize] = false;
            if s.check.is_some() {
                self.emit(RunEvent::StepReprobed {
                    step: s.id.clone(),
                    done: r.outcome() == Outcome::AlreadyDone,
                });
            }
        }
        match r {
            AttemptResult::Failed(e)
                if e.retryable() && c.attempt <= s.retry.max && self.stop.is_none() =>
            {
                let base =
                    s.retry.backoff_s.max(1) as f64 * 2f64.powi(c.attempt.saturating_sub(1) as i32);
                // Jitter, so that a fleet does not retry in lockstep (the due time is
                // journaled: a resume keeps it).
                let jitter = rand::random_range(0.75..1.25);
                let wait = self.scaled(base * jitter);
                let due = self.now_ms() + wait.as_millis() as i64;
                let error = e.to_string();
                self.record(Record::step_detail(
                    s.id.clone(),
                    StepState::Pending,
                    c.attempt,
                    error.clone(),
                ));
                self.record(Record::TimerSet {
                    key: s.id.clone(),
                    kind: TimerKind::Retry,
                    due_ms: due,
                });
                self.emit(RunEvent::StepRetrying {
                    step: s.id.clone(),
                    attempt: c.attempt,
                    wait_ms: wait.as_millis() as u64,
                    error,
                });
                self.st[i as usize] = St::RetryWait;
                self.timers
                    .push(Reverse((Instant::now() + wait, i, Wake::Retry)));
            }
            AttemptResult::Failed(e) => {
                self.finish(i, Outcome::Failed, Some(e.to_string()), c.elapsed_ms);
            }
            AttemptResult::Ended {
                outcome,
                detail,
                note,
            } => self.finish_noted(i, outcome, detail, c.elapsed_ms, note),
            AttemptResult::AskOperator(_) => unreachable!("handled above"),
        }
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

    /// Counts a finished step against the budgets; stops the run when one is exceeded.
    fn account_done(&mut self, i: u32, o: Outcome) {
        let p = self.slots.phase_of(i);
        if !self.budget.count_done(&self.plan, i, p, o) {
            return;
        }
        if matches!(self.stop, Some(StopReason::BudgetExceeded { .. })) {
            self.budget.overshoot += 1;
            return;
        }
        if let Some(x) = self.budget.exceeded(&self.plan, i, p) {
            self.emit(RunEvent::BudgetExceeded {
                phase: x.phase.clone(),
                wave: x.wave,
                failures: x.failures,
                tolerated: x.tolerated,
                in_flight: x.in_flight,
            });
            self.stop = Some(StopReason::BudgetExceeded {
                phase: x.phase,
                wave: x.wave,
                failures: x.failures,
                tolerated: x.tolerated,
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
        self.gates.approved_by.remove(&i);
        let plan = self.plan.clone();
        let s = plan.step(i);
        if let Some(h) = s.host {
            let t = &mut self.host_done_ms[h as usize];
            *t = (*t).max(self.opts.clock.wall_ms());
        }
        let already_done = o == Outcome::AlreadyDone;
        // Only a success carries a note: a failure's detail already says everything.
        let note = note.filter(|_| matches!(o, Outcome::Succeeded | Outcome::AlreadyDone));
        // The event's detail is one line, as the journal's text has always read.
        let text = detail_text(detail.as_deref(), already_done, note.as_deref());
        if let Some(n) = &note {
            if s.kind == StepKind::Action {
                self.emit(RunEvent::StepNoted {
                    step: s.id.clone(),
                    phase: s.phase.to_string(),
                    host: self.host_name(i),
                    note: n.clone(),
                });
            }
            self.notes.insert(i, n.clone());
        }
        self.record(Record::Step {
            step: s.id.clone(),
            state: journal_state(o),
            attempt: self.attempt[i as usize],
            detail,
            already_done,
            note,
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
                detail: text,
            });
        }
        self.account_done(i, o);
        let p = self.slots.phase_of(i);
        if s.kind == StepKind::Action && p != limits::NO {
            if let Some(w) = s.wave
                && let Some(failed) = self.budget.wave_finished(p, w)
            {
                self.emit(RunEvent::WaveFinished {
                    phase: s.phase.to_string(),
                    wave: w,
                    failed,
                });
            }
            if self.budget.phase_finished(p) {
                self.phase_finished(p);
            }
        }
        for k in self.dependents_of(i) {
            let d = self.dependents[k];
            let on_finish = plan
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
            if self.slots.phase_of(i as u32) == p
                && self.plan.step(i as u32).kind == StepKind::Action
            {
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
}

/// The journal's record of a host-key event: public key facts and the summary's `line`
/// as JSON, no step (a connection is not a step's). `None` for any other event.
fn host_key_record(ev: &RunEvent, line: &str) -> Option<Record> {
    let (kind, detail) = match ev {
        RunEvent::HostKeyAccepted {
            host,
            endpoint,
            key_type,
            fingerprint,
            ..
        } => (
            EventKind::HostKeyAccepted,
            serde_json::json!({
                "host": host,
                "endpoint": endpoint,
                "key_type": key_type,
                "fingerprint": fingerprint,
                "line": line,
            }),
        ),
        RunEvent::HostKeyRefused {
            host,
            endpoint,
            key_type,
            fingerprint,
            reason,
            ..
        } => (
            EventKind::HostKeyRefused,
            serde_json::json!({
                "host": host,
                "endpoint": endpoint,
                "key_type": key_type,
                "fingerprint": fingerprint,
                "reason": reason,
                "line": line,
            }),
        ),
        _ => return None,
    };
    Some(Record::Event {
        step: None,
        kind,
        detail: Some(detail.to_string()),
    })
}
