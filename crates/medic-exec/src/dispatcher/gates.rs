//! Gates (budget check, window estimate, soak, approval), the operator's approvals of
//! gates and manual steps (from this process's terminal through [`crate::Control`], or
//! from `medic approve` in another process, found in the journal by the approval poll),
//! and the change window.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use medic_journal::{EventKind, JournalStore, Record, StepState, TimerKind};
use medic_plan::StepKind;
use tokio::time::Instant;

use super::{Dispatcher, InternalEvent, St, Wake, WindowPolicy};
use crate::driver::{MANUAL_DRIVER, ManualAsk};
use crate::event::{Outcome, RunEvent, StopReason};

/// What gates and manual steps wait for.
#[derive(Default)]
pub(super) struct Gates {
    /// Gates whose soak pause is over.
    soak_done: HashSet<u32>,
    awaiting_approval: BTreeSet<u32>,
    /// Manual steps waiting for the operator, with what they were asked.
    awaiting_operator: BTreeMap<u32, ManualAsk>,
    /// Manual steps the operator approved (by whom): their next attempt observes the work.
    pub(super) approved_by: HashMap<u32, String>,
    /// A wake-up at the window's start is set.
    window_wait_set: bool,
}

impl Gates {
    /// Something waits for an operator (the approval poll runs only then).
    pub(super) fn waiting(&self) -> bool {
        !self.awaiting_approval.is_empty() || !self.awaiting_operator.is_empty()
    }

    pub(super) fn soak_over(&mut self, i: u32) {
        self.soak_done.insert(i);
    }

    pub(super) fn window_reached(&mut self) {
        self.window_wait_set = false;
    }
}

impl<J: JournalStore + ?Sized> Dispatcher<'_, J> {
    /// An approval already in the journal for `id` (from another process, or before a crash).
    fn journal_approval(&self, id: &str) -> Option<String> {
        self.journal
            .approvals()
            .ok()?
            .into_iter()
            .find(|a| a.gate == id)
            .map(|a| a.by)
    }

    fn wave_estimate_s(&self, p: u16, w: u32) -> u64 {
        let mut steps = 0u64;
        let mut longest = 0u64;
        for (i, s) in self.plan.steps().iter().enumerate() {
            if self.slots.phase_of(i as u32) == p && s.wave == Some(w) && s.kind == StepKind::Action
            {
                steps += 1;
                longest = longest.max(s.estimate_s);
            }
        }
        let par = self
            .slots
            .phase_limit(p)
            .unwrap_or(self.plan.max_parallel())
            .min(self.plan.max_parallel())
            .max(1) as u64;
        steps.div_ceil(par) * longest
    }

    pub(super) fn advance_gate(&mut self, i: u32) {
        if self.stop.is_some() {
            return;
        }
        let plan = self.plan.clone();
        let step = plan.step(i);
        let StepKind::Gate(spec) = &step.kind else {
            return;
        };
        let p = self.slots.phase_of(i);
        let phase = step.phase.to_string();
        if let Some(stop) = self.budget.gate_stop(&plan, p, spec.opens_wave) {
            self.stop = Some(stop);
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
        if spec.pause_s > 0 && !self.gates.soak_done.contains(&i) {
            if self.st[i as usize] != St::GateSoak {
                let due = match self.prior_timers.remove(&step.id) {
                    Some(due) => due,
                    None => {
                        let due =
                            self.now_ms() + self.scaled(spec.pause_s as f64).as_millis() as i64;
                        self.record(Record::TimerSet {
                            key: step.id.clone(),
                            kind: TimerKind::Soak,
                            due_ms: due,
                        });
                        due
                    }
                };
                self.st[i as usize] = St::GateSoak;
                let at = self.opts.clock.instant_at(due);
                self.timers.push(Reverse((at, i, Wake::Soak)));
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
            match self.journal_approval(&step.id) {
                Some(by) => self.open_gate(i, Some(by)),
                None => {
                    if self.gates.awaiting_approval.insert(i) {
                        self.st[i as usize] = St::GateApproval;
                        self.record(Record::Event {
                            step: Some(step.id.clone()),
                            kind: EventKind::GateWaiting,
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
        self.open_gate(i, spec.approval.then(|| "--yes".to_owned()));
    }

    fn open_gate(&mut self, i: u32, approved_by: Option<String>) {
        let plan = self.plan.clone();
        let step = plan.step(i);
        let wave = match &step.kind {
            StepKind::Gate(g) => g.opens_wave,
            _ => 0,
        };
        self.gates.awaiting_approval.remove(&i);
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

    /// The approval poll: approvals in the journal (`medic approve` from another process)
    /// of what waits, as events.
    pub(super) fn poll_approvals(&self) -> Vec<InternalEvent> {
        let Ok(approvals) = self.journal.approvals() else {
            return Vec::new();
        };
        let mut by_id: HashMap<String, String> =
            approvals.into_iter().map(|a| (a.gate, a.by)).collect();
        let waiting = self
            .gates
            .awaiting_approval
            .iter()
            .chain(self.gates.awaiting_operator.keys());
        waiting
            .filter_map(|&i| {
                let by = by_id.remove(&self.plan.step(i).id)?;
                Some(InternalEvent::Approved { step: i, by })
            })
            .collect()
    }

    /// The operator at this process's terminal approved `id` (through [`crate::Control`]):
    /// recorded in the journal as `medic approve` records it, then acted on if it waits. An
    /// id that is neither a gate asking for approval nor a manual step is ignored.
    pub(super) fn approval_input(&mut self, id: &str, by: String) -> Option<InternalEvent> {
        let i = self.plan.step_index(id)?;
        let s = self.plan.step(i);
        let approvable = match &s.kind {
            StepKind::Gate(g) => g.approval,
            StepKind::Action => &*s.driver == MANUAL_DRIVER,
            StepKind::Barrier => false,
        };
        if !approvable || matches!(self.st[i as usize], St::Done(_)) {
            return None;
        }
        self.record(Record::Approve {
            gate: s.id.clone(),
            by: by.clone(),
        });
        let waits = self.gates.awaiting_approval.contains(&i)
            || self.gates.awaiting_operator.contains_key(&i);
        waits.then_some(InternalEvent::Approved { step: i, by })
    }

    /// An approval of step `i`, from wherever it came.
    pub(super) fn approval_given(&mut self, i: u32, by: String) {
        if self.gates.awaiting_approval.contains(&i) {
            self.open_gate(i, Some(by));
        } else if self.gates.awaiting_operator.contains_key(&i) {
            self.operator_approved(i, by);
        }
    }

    /// A manual step's work is not observed done: it waits for the operator, recorded in
    /// the journal (so `medic status` shows it and a resume asks again). An approval
    /// already in the journal (given from another shell, or before a crash) counts at once.
    pub(super) fn operator_wait(&mut self, i: u32, ask: ManualAsk) {
        let plan = self.plan.clone();
        let s = plan.step(i);
        // The question did not act: the attempt that acts after the approval is this one.
        self.attempt[i as usize] = self.attempt[i as usize].saturating_sub(1);
        if let Some(by) = self.journal_approval(&s.id) {
            self.gates.awaiting_operator.insert(i, ask);
            self.operator_approved(i, by);
            return;
        }
        self.st[i as usize] = St::OperatorWait;
        self.record(Record::Step {
            step: s.id.clone(),
            state: StepState::Pending,
            attempt: self.attempt[i as usize],
            detail: Some(format!("waiting for the operator: {}", ask.instruction)),
            already_done: false,
            note: None,
        });
        self.record(Record::Event {
            step: Some(s.id.clone()),
            kind: EventKind::ManualWaiting,
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
        self.gates.awaiting_operator.insert(i, ask);
    }

    /// The operator approved a manual step: it runs again, to observe the work.
    fn operator_approved(&mut self, i: u32, by: String) {
        let Some(ask) = self.gates.awaiting_operator.remove(&i) else {
            return;
        };
        let plan = self.plan.clone();
        let s = plan.step(i);
        self.record(Record::Event {
            step: Some(s.id.clone()),
            kind: EventKind::ManualApproved,
            detail: Some(by.clone()),
        });
        self.emit(RunEvent::ManualStepApproved {
            step: s.id.clone(),
            host: self.host_name(i),
            action: s.action.to_string(),
            instruction: ask.instruction,
            approved_by: by.clone(),
        });
        self.gates.approved_by.insert(i, by);
        self.st[i as usize] = St::Ready;
        self.ready.insert(i);
    }

    /// Whether the window lets a step start now; sets the stop or the wake-up otherwise.
    pub(super) fn window_open(&mut self) -> bool {
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
            if !self.gates.window_wait_set {
                self.gates.window_wait_set = true;
                let at: Instant = self.opts.clock.instant_at(w.start.as_millisecond());
                self.timers.push(Reverse((at, u32::MAX, Wake::Window)));
                self.emit(RunEvent::WindowWaiting {
                    until_ms: w.start.as_millisecond(),
                });
            }
            return false;
        }
        true
    }
}
