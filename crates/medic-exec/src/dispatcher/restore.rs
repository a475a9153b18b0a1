//! The run state rebuilt from the journal's view ([`crate::Prior`]): finished steps stay
//! finished (a success is never repeated), started ones are re-probed, failed ones run
//! again only with `retry_failed`; budgets count the journal's failures.

use medic_journal::{JournalStore, StepRow, StepState};

use super::{Dispatcher, St, satisfies};
use crate::Prior;
use crate::event::Outcome;

impl<J: JournalStore + ?Sized> Dispatcher<'_, J> {
    pub(super) fn restore(&mut self, prior: &Prior) {
        let plan = self.plan.clone();
        // Where each row's step is in the plan: a million lookups are random reads of the
        // plan, so a large journal's are split between two threads (same result either way).
        let find = |rows: &[StepRow]| -> Vec<Option<u32>> {
            rows.iter().map(|r| plan.step_index(&r.step)).collect()
        };
        let at: Vec<Option<u32>> = if prior.steps.len() >= 100_000 {
            let (a, b) = prior.steps.split_at(prior.steps.len() / 2);
            let (mut a, b) = std::thread::scope(|s| {
                let a = s.spawn(|| find(a));
                let b = find(b);
                (a.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), b)
            });
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
            let state = row.state;
            if matches!(
                state,
                StepState::Succeeded | StepState::Skipped | StepState::Failed
            ) && let Some(h) = plan.step(i as u32).host
            {
                let t = &mut self.host_done_ms[h as usize];
                *t = (*t).max(row.updated_ms);
            }
            if state == StepState::Succeeded
                && let Some(n) = &row.note
            {
                self.notes.insert(i as u32, n.clone());
            }
            self.attempt[i] = row.attempt;
            self.st[i] = match state {
                StepState::Succeeded if row.already_done => St::Done(Outcome::AlreadyDone),
                StepState::Succeeded => St::Done(Outcome::Succeeded),
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
                let p = self.slots.phase_of(i as u32);
                // Counted, never announced: the budget stops this run only at a gate.
                self.budget.count_done(&plan, i as u32, p, o);
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
}
