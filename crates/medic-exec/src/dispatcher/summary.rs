//! The run's end in numbers: hosts by *verified* state, steps per state, per-action counts,
//! the first failures and notes. Computed once, at the end, from the step states.

use std::collections::HashMap;

use medic_journal::JournalStore;
use medic_plan::StepKind;

use super::{Dispatcher, St, journal_state};
use crate::event::{ActionCounts, Outcome, Summary};

impl<J: JournalStore + ?Sized> Dispatcher<'_, J> {
    /// Failed steps whose failure no later phase repairs.
    pub(super) fn hard_failures(&self) -> usize {
        self.st
            .iter()
            .enumerate()
            .filter(|(i, st)| {
                **st == St::Done(Outcome::Failed) && !self.plan.step(*i as u32).soft_fail
            })
            .count()
    }

    pub(super) fn summary(&self) -> Summary {
        let plan = &self.plan;
        let mut sum = Summary {
            overshoot: self.budget.overshoot,
            host_keys: self.host_keys.clone(),
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
