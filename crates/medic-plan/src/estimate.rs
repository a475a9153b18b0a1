//! The makespan estimate: a list-scheduling simulation of the plan under its concurrency
//! limits (global, per phase, per endpoint, one step at a time per host) and its gates, not
//! a sum of durations. Approval gates count as instant; soak pauses count in full.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use crate::plan::{Estimate, Step, StepKind};
use crate::window::Window;

/// What the simulation needs to know of the playbook besides the steps.
pub(crate) struct Limits<'a> {
    pub(crate) global: u32,
    pub(crate) endpoints: &'a BTreeMap<String, u32>,
    /// Per phase (by index): its `max_parallel`.
    pub(crate) phases: &'a [Option<u32>],
    /// Per step: the index of its phase.
    pub(crate) phase_of: &'a [u32],
    /// Host slots (hosts and the Manager) that steps may name.
    pub(crate) host_slots: usize,
}

pub(crate) fn estimate(steps: &[Step], limits: &Limits<'_>, window: Option<Window>) -> Estimate {
    let makespan_s = simulate(steps, limits);
    let serial_s = steps.iter().map(|s| s.estimate_s).sum();
    Estimate {
        makespan_s,
        fits_window: window.map(|w| makespan_s <= w.length_s()),
        window,
        serial_s,
    }
}

/// Ready steps share a queue when they compete for the same limits: same phase, same
/// endpoint.
struct Class {
    phase: usize,
    endpoint: Option<usize>,
    phase_limit: Option<u32>,
    endpoint_limit: Option<u32>,
}

fn simulate(steps: &[Step], limits: &Limits<'_>) -> u64 {
    let n = steps.len();
    if n == 0 {
        return 0;
    }
    let mut waiting = vec![0u32; n];
    // Dependents in one flat array (CSR): the dependents of step i are
    // `dependents[dep_start[i]..dep_start[i + 1]]`, in increasing order.
    let mut dep_start = vec![0u32; n + 1];
    for (i, s) in steps.iter().enumerate() {
        waiting[i] = s.needs.len() as u32;
        for d in &s.needs {
            dep_start[d.step as usize + 1] += 1;
        }
    }
    for i in 0..n {
        dep_start[i + 1] += dep_start[i];
    }
    let mut fill = dep_start.clone();
    let mut dependents = vec![0u32; dep_start[n] as usize];
    for (i, s) in steps.iter().enumerate() {
        for d in &s.needs {
            let at = &mut fill[d.step as usize];
            dependents[*at as usize] = i as u32;
            *at += 1;
        }
    }

    let mut endpoint_names: Vec<&str> = Vec::new();
    let mut classes: Vec<Class> = Vec::new();
    let mut class_of: Vec<u32> = Vec::with_capacity(n);
    for (i, s) in steps.iter().enumerate() {
        let phase = limits.phase_of.get(i).map_or(0, |&p| p as usize);
        let endpoint =
            s.endpoint
                .as_deref()
                .map(|e| match endpoint_names.iter().position(|x| *x == e) {
                    Some(k) => k,
                    None => {
                        endpoint_names.push(e);
                        endpoint_names.len() - 1
                    }
                });
        let id = match classes
            .iter()
            .position(|c| c.phase == phase && c.endpoint == endpoint)
        {
            Some(k) => k,
            None => {
                classes.push(Class {
                    phase,
                    endpoint,
                    phase_limit: limits.phases.get(phase).copied().flatten(),
                    endpoint_limit: endpoint
                        .and_then(|k| limits.endpoints.get(endpoint_names[k]).copied()),
                });
                classes.len() - 1
            }
        };
        class_of.push(id as u32);
    }
    // What the simulation reads of each step, packed (the steps themselves are large).
    let action: Vec<bool> = steps.iter().map(|s| s.kind == StepKind::Action).collect();
    let host: Vec<Option<u32>> = steps.iter().map(|s| s.host).collect();
    let duration: Vec<u64> = steps.iter().map(|s| s.estimate_s).collect();
    let mut queues: Vec<VecDeque<u32>> = (0..classes.len()).map(|_| VecDeque::new()).collect();
    let mut phase_running = vec![0u32; limits.phases.len().max(1)];
    let mut endpoint_running = vec![0u32; endpoint_names.len()];
    let slots = limits
        .host_slots
        .max(host.iter().flatten().max().map_or(0, |&h| h as usize + 1));
    let mut host_busy = vec![false; slots];
    let mut host_waiting: Vec<VecDeque<u32>> = (0..slots).map(|_| VecDeque::new()).collect();
    let mut running = 0u32;
    let mut now = 0u64;
    let mut end = 0u64;
    // (finish time, step)
    let mut events: BinaryHeap<Reverse<(u64, u32)>> = BinaryHeap::new();

    for i in 0..n {
        if waiting[i] == 0 {
            queues[class_of[i] as usize].push_back(i as u32);
        }
    }
    loop {
        // Start what fits, lowest (topological) index first across the queues.
        loop {
            let mut best: Option<(u32, usize)> = None;
            for (ci, q) in queues.iter().enumerate() {
                let Some(&head) = q.front() else { continue };
                if action[head as usize] {
                    let c = &classes[ci];
                    if running >= limits.global {
                        continue;
                    }
                    if let Some(lim) = c.phase_limit
                        && phase_running[c.phase] >= lim
                    {
                        continue;
                    }
                    if let (Some(e), Some(lim)) = (c.endpoint, c.endpoint_limit)
                        && endpoint_running[e] >= lim
                    {
                        continue;
                    }
                }
                if best.is_none_or(|(b, _)| head < b) {
                    best = Some((head, ci));
                }
            }
            let Some((i, ci)) = best else { break };
            queues[ci].pop_front();
            let takes_slot = action[i as usize];
            if let Some(h) = host[i as usize].filter(|_| takes_slot) {
                let h = h as usize;
                if host_busy[h] {
                    host_waiting[h].push_back(i);
                    continue;
                }
                host_busy[h] = true;
            }
            if takes_slot {
                let c = &classes[ci];
                running += 1;
                phase_running[c.phase] += 1;
                if let Some(e) = c.endpoint {
                    endpoint_running[e] += 1;
                }
            }
            events.push(Reverse((now + duration[i as usize], i)));
        }
        let Some(Reverse((t, i))) = events.pop() else {
            break;
        };
        now = t;
        end = end.max(t);
        if action[i as usize] {
            let c = &classes[class_of[i as usize] as usize];
            running -= 1;
            phase_running[c.phase] -= 1;
            if let Some(e) = c.endpoint {
                endpoint_running[e] -= 1;
            }
            if let Some(h) = host[i as usize] {
                let h = h as usize;
                host_busy[h] = false;
                if let Some(next) = host_waiting[h].pop_front() {
                    queues[class_of[next as usize] as usize].push_front(next);
                }
            }
        }
        let (a, b) = (dep_start[i as usize], dep_start[i as usize + 1]);
        for &d in &dependents[a as usize..b as usize] {
            waiting[d as usize] -= 1;
            if waiting[d as usize] == 0 {
                queues[class_of[d as usize] as usize].push_back(d);
            }
        }
    }
    end
}
