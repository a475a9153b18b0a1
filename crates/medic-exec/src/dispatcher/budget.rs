//! The failure budgets (per wave and per phase) and the tallies they need: how many
//! steps of each phase and wave are left, failed, running. `strict` budgets cap in-flight
//! steps at the tolerance left + 1; failures of steps already running when a budget was
//! exceeded are counted as overshoot.

use std::collections::{HashMap, HashSet};

use medic_plan::{Plan, StepKind};

use super::limits::{NO, Slots};
use crate::event::{Outcome, StopReason};

type Wave = (u16, u32);

pub(super) struct Budget {
    /// Strict budgets in every phase, whatever the playbook says.
    strict: bool,
    wave_failures: HashMap<Wave, u32>,
    wave_running: HashMap<Wave, u32>,
    wave_left: HashMap<Wave, u32>,
    wave_started: HashSet<Wave>,
    phase_failures: Vec<u32>,
    phase_left: Vec<u32>,
    phase_started: Vec<bool>,
    /// Failures of steps that were already running when a budget was exceeded.
    pub(super) overshoot: u32,
}

/// A budget just exceeded.
pub(super) struct Exceeded {
    pub(super) phase: String,
    pub(super) wave: Option<u32>,
    pub(super) failures: u32,
    pub(super) tolerated: u32,
    pub(super) in_flight: u32,
}

/// What a step's start began, to announce.
pub(super) struct Began {
    /// The phase's first step: the phase's step count.
    pub(super) phase: Option<u32>,
    /// The wave's first step: its index and hosts.
    pub(super) wave: Option<(u32, u32)>,
}

impl Budget {
    pub(super) fn new(plan: &Plan, slots: &Slots, strict: bool) -> Budget {
        let phases = plan.phases().len();
        let mut phase_left = vec![0u32; phases];
        let mut wave_left: HashMap<Wave, u32> = HashMap::new();
        for (i, s) in plan.steps().iter().enumerate() {
            let p = slots.phase_of(i as u32);
            if s.kind == StepKind::Action && p != NO {
                phase_left[p as usize] += 1;
                if let Some(w) = s.wave {
                    *wave_left.entry((p, w)).or_default() += 1;
                }
            }
        }
        Budget {
            strict,
            wave_failures: HashMap::new(),
            wave_running: HashMap::new(),
            wave_left,
            wave_started: HashSet::new(),
            phase_failures: vec![0; phases],
            phase_left,
            phase_started: vec![false; phases],
            overshoot: 0,
        }
    }

    /// Whether a strict budget leaves room for step `i` (in phase `p`) to run now.
    pub(super) fn allows(&self, plan: &Plan, i: u32, p: u16) -> bool {
        let s = plan.step(i);
        let Some(info) = plan.phases().get(p as usize) else {
            return true;
        };
        if !(info.strict || self.strict) || s.soft_fail {
            return true;
        }
        if let Some(w) = s.wave
            && let Some(t) = info
                .waves
                .iter()
                .find(|x| x.index == w)
                .and_then(|x| x.max_failures)
        {
            let failed = self.wave_failures.get(&(p, w)).copied().unwrap_or(0);
            let running = self.wave_running.get(&(p, w)).copied().unwrap_or(0);
            // At most the tolerance left + 1 in flight.
            if running > t.saturating_sub(failed) {
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

    /// Step `i` of phase `p` started.
    pub(super) fn started(&mut self, plan: &Plan, i: u32, p: u16) -> Began {
        let mut began = Began {
            phase: None,
            wave: None,
        };
        if p == NO {
            return began;
        }
        if !self.phase_started[p as usize] {
            self.phase_started[p as usize] = true;
            began.phase = Some(self.phase_left[p as usize]);
        }
        if let Some(w) = plan.step(i).wave {
            *self.wave_running.entry((p, w)).or_default() += 1;
            if self.wave_started.insert((p, w)) {
                let hosts = plan.phases()[p as usize]
                    .waves
                    .iter()
                    .find(|x| x.index == w)
                    .map(|x| x.hosts)
                    .unwrap_or(0);
                began.wave = Some((w, hosts));
            }
        }
        began
    }

    /// Step `i` of phase `p` is no longer running.
    pub(super) fn stopped_running(&mut self, plan: &Plan, i: u32, p: u16) {
        if p != NO
            && let Some(w) = plan.step(i).wave
            && let Some(r) = self.wave_running.get_mut(&(p, w))
        {
            *r = r.saturating_sub(1);
        }
    }

    /// Counts a finished step in its phase's and wave's tallies; true when it is a failure
    /// that counts against the budget.
    pub(super) fn count_done(&mut self, plan: &Plan, i: u32, p: u16, o: Outcome) -> bool {
        let s = plan.step(i);
        if s.kind != StepKind::Action || p == NO {
            return false;
        }
        self.phase_left[p as usize] = self.phase_left[p as usize].saturating_sub(1);
        if let Some(w) = s.wave
            && let Some(l) = self.wave_left.get_mut(&(p, w))
        {
            *l = l.saturating_sub(1);
        }
        if o != Outcome::Failed || s.soft_fail {
            return false;
        }
        self.phase_failures[p as usize] += 1;
        if let Some(w) = s.wave {
            *self.wave_failures.entry((p, w)).or_default() += 1;
        }
        true
    }

    /// Whether the failure of step `i` (already counted) exceeds its wave's or phase's
    /// tolerance.
    pub(super) fn exceeded(&self, plan: &Plan, i: u32, p: u16) -> Option<Exceeded> {
        let wave = plan.step(i).wave;
        let info = &plan.phases()[p as usize];
        let wave_tol = wave.and_then(|w| {
            info.waves
                .iter()
                .find(|x| x.index == w)
                .and_then(|x| x.max_failures)
        });
        let wave_fail = wave
            .map(|w| self.wave_failures.get(&(p, w)).copied().unwrap_or(0))
            .unwrap_or(0);
        let (w, failures, tolerated) = match (wave_tol, info.max_failures_total) {
            (Some(t), _) if wave_fail > t => (wave, wave_fail, t),
            (_, Some(t)) if self.phase_failures[p as usize] > t => {
                (None, self.phase_failures[p as usize], t)
            }
            _ => return None,
        };
        let in_flight = wave
            .map(|w| self.wave_running.get(&(p, w)).copied().unwrap_or(0))
            .unwrap_or(0);
        Some(Exceeded {
            phase: info.name.clone(),
            wave: w,
            failures,
            tolerated,
            in_flight,
        })
    }

    /// Before a gate opens wave `opens` of phase `p`: the waves before it, and the phase,
    /// must be within budget. Holds on a resume too, where the failures come from the journal.
    pub(super) fn gate_stop(&self, plan: &Plan, p: u16, opens: u32) -> Option<StopReason> {
        let info = &plan.phases()[p as usize];
        for w in info.waves.iter().filter(|w| w.index < opens) {
            let failures = self.wave_failures.get(&(p, w.index)).copied().unwrap_or(0);
            if let Some(t) = w.max_failures
                && failures > t
            {
                return Some(StopReason::BudgetExceeded {
                    phase: info.name.clone(),
                    wave: Some(w.index),
                    failures,
                    tolerated: t,
                });
            }
        }
        if let Some(t) = info.max_failures_total
            && self.phase_failures[p as usize] > t
        {
            return Some(StopReason::BudgetExceeded {
                phase: info.name.clone(),
                wave: None,
                failures: self.phase_failures[p as usize],
                tolerated: t,
            });
        }
        None
    }

    /// The failures of wave `w` of phase `p` once its last step finished.
    pub(super) fn wave_finished(&self, p: u16, w: u32) -> Option<u32> {
        (self.wave_left.get(&(p, w)) == Some(&0))
            .then(|| self.wave_failures.get(&(p, w)).copied().unwrap_or(0))
    }

    pub(super) fn phase_finished(&self, p: u16) -> bool {
        self.phase_left[p as usize] == 0
    }
}
