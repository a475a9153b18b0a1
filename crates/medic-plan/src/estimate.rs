//! The makespan estimate: a list-scheduling simulation of the plan under its concurrency
//! limits (global, per phase, per endpoint, one step at a time per host) and its gates, not
//! a sum of durations. Approval gates count as instant; soak pauses count in full.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};

use crate::plan::{Estimate, Step, StepKind};
use crate::window::Window;

/// Ready steps share a queue when they compete for the same limits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Class {
    phase: String,
    endpoint: Option<String>,
}

pub(crate) fn estimate(
    steps: &[Step],
    global: u32,
    endpoints: &BTreeMap<String, u32>,
    phases: &HashMap<&str, u32>,
    window: Option<Window>,
) -> Estimate {
    let makespan_s = simulate(steps, global, endpoints, phases);
    let serial_s = steps.iter().map(|s| s.estimate_s).sum();
    Estimate {
        makespan_s,
        fits_window: window.map(|w| makespan_s <= w.length_s()),
        window,
        serial_s,
    }
}

fn simulate(
    steps: &[Step],
    global: u32,
    endpoints: &BTreeMap<String, u32>,
    phases: &HashMap<&str, u32>,
) -> u64 {
    let n = steps.len();
    if n == 0 {
        return 0;
    }
    let mut waiting = vec![0u32; n];
    let mut dependents: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (i, s) in steps.iter().enumerate() {
        waiting[i] = s.needs.len() as u32;
        for d in &s.needs {
            dependents[d.step as usize].push(i as u32);
        }
    }
    let mut class_of: Vec<u32> = Vec::with_capacity(n);
    let mut classes: Vec<Class> = Vec::new();
    let mut class_ids: HashMap<Class, u32> = HashMap::new();
    for s in steps {
        let c = Class {
            phase: s.phase.to_string(),
            endpoint: s.endpoint.as_deref().map(str::to_owned),
        };
        let id = *class_ids.entry(c.clone()).or_insert_with(|| {
            classes.push(c);
            (classes.len() - 1) as u32
        });
        class_of.push(id);
    }
    let mut queues: Vec<VecDeque<u32>> = vec![VecDeque::new(); classes.len()];
    let mut phase_running: HashMap<String, u32> = HashMap::new();
    let mut endpoint_running: HashMap<String, u32> = HashMap::new();
    let mut host_busy: HashMap<u32, bool> = HashMap::new();
    let mut host_waiting: HashMap<u32, VecDeque<u32>> = HashMap::new();
    let mut running = 0u32;
    let mut now = 0u64;
    let mut end = 0u64;
    // (finish time, step)
    let mut events: BinaryHeap<Reverse<(u64, u32)>> = BinaryHeap::new();

    let takes_slot = |s: &Step| s.kind == StepKind::Action;
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
                let s = &steps[head as usize];
                if takes_slot(s) {
                    let c = &classes[ci];
                    if running >= global {
                        continue;
                    }
                    if let Some(&lim) = phases.get(c.phase.as_str())
                        && phase_running.get(&c.phase).copied().unwrap_or(0) >= lim
                    {
                        continue;
                    }
                    if let Some(e) = &c.endpoint
                        && let Some(&lim) = endpoints.get(e)
                        && endpoint_running.get(e).copied().unwrap_or(0) >= lim
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
            let s = &steps[i as usize];
            if let Some(h) = s.host.filter(|_| takes_slot(s)) {
                if host_busy.get(&h).copied().unwrap_or(false) {
                    host_waiting.entry(h).or_default().push_back(i);
                    continue;
                }
                host_busy.insert(h, true);
            }
            if takes_slot(s) {
                running += 1;
                *phase_running.entry(s.phase.to_string()).or_default() += 1;
                if let Some(e) = &s.endpoint {
                    *endpoint_running.entry(e.to_string()).or_default() += 1;
                }
            }
            events.push(Reverse((now + s.estimate_s, i)));
        }
        let Some(Reverse((t, i))) = events.pop() else {
            break;
        };
        now = t;
        end = end.max(t);
        let s = &steps[i as usize];
        if takes_slot(s) {
            running -= 1;
            if let Some(c) = phase_running.get_mut(&*s.phase) {
                *c -= 1;
            }
            if let Some(e) = &s.endpoint
                && let Some(c) = endpoint_running.get_mut(&**e)
            {
                *c -= 1;
            }
            if let Some(h) = s.host {
                host_busy.insert(h, false);
                if let Some(next) = host_waiting.get_mut(&h).and_then(|q| q.pop_front()) {
                    queues[class_of[next as usize] as usize].push_front(next);
                }
            }
        }
        for &d in &dependents[i as usize] {
            waiting[d as usize] -= 1;
            if waiting[d as usize] == 0 {
                queues[class_of[d as usize] as usize].push_back(d);
            }
        }
    }
    end
}
