//! The step graph as it is built (small nodes: phase, target, action, needs) and its
//! topological order.

use super::*;

/// No step.
pub(super) const NONE: u32 = u32::MAX;

/// The first and last step of each target's chain in each phase, by host slot.
pub(super) struct Chains {
    pub(super) by_phase: Vec<Vec<(u32, u32)>>,
}

impl Chains {
    pub(super) fn get(&self, phase: usize, slot: u32) -> Option<(u32, u32)> {
        self.by_phase
            .get(phase)
            .and_then(|v| v.get(slot as usize))
            .copied()
            .filter(|c| c.0 != NONE)
    }
}

/// A graph node: what its step will be, and the nodes it needs (creation indices).
pub(super) struct Node {
    pub(super) phase: u32,
    pub(super) what: What,
    pub(super) needs: Vec<Need>,
}

pub(super) enum What {
    Action {
        target: Target,
        action: u32,
        wave: Option<u32>,
        /// The only action of its target in its phase (the id then omits the action).
        single: bool,
        /// Which occurrence of this action name in its target's chain (from 1).
        nth: u32,
    },
    /// A gate or a barrier: an index into `Graph::specials`.
    Special(u32),
}

pub(super) enum SpecialAction {
    Gate,
    Barrier,
}

pub(super) struct Special {
    pub(super) id: String,
    pub(super) action: SpecialAction,
    pub(super) kind: StepKind,
    pub(super) estimate_s: u64,
}

/// The steps as they are created, before the topological order.
#[derive(Default)]
pub(super) struct Graph {
    pub(super) nodes: Vec<Node>,
    pub(super) specials: Vec<Special>,
}

impl Graph {
    pub(super) fn push(&mut self, n: Node) -> u32 {
        self.nodes.push(n);
        (self.nodes.len() - 1) as u32
    }

    pub(super) fn push_special(&mut self, phase: usize, s: Special, needs: Vec<Need>) -> u32 {
        self.specials.push(s);
        let k = (self.specials.len() - 1) as u32;
        self.push(Node {
            phase: phase as u32,
            what: What::Special(k),
            needs,
        })
    }

    pub(super) fn id_of(&self, i: usize, pb: &Playbook, facts: &Facts<'_>) -> String {
        let n = &self.nodes[i];
        match n.what {
            What::Special(k) => self.specials[k as usize].id.clone(),
            What::Action {
                target,
                action,
                single,
                nth,
                ..
            } => {
                let phase = &pb.phases[n.phase as usize];
                step_id(
                    &phase.name,
                    target_name(facts, target),
                    (!single).then_some(&phase.actions[action as usize].action),
                    nth,
                )
            }
        }
    }

    /// Kahn's algorithm with creation order as the tie-break, so the order is deterministic
    /// and follows the playbook wherever the edges allow. Returns the creation indices in
    /// order, and rewrites every node's needs to positions in that order (sorted, one per
    /// predecessor).
    /// On a cycle, the error names (up to six) nodes left on it.
    pub(super) fn order(&mut self) -> Result<Vec<u32>, Vec<usize>> {
        let n = self.nodes.len();
        let mut indeg = vec![0u32; n];
        // Distinct predecessors per node, flat; then successors in CSR form.
        let mut pred_start = Vec::with_capacity(n + 1);
        let mut preds: Vec<u32> = Vec::with_capacity(n);
        let mut out_count = vec![0u32; n + 1];
        pred_start.push(0u32);
        for (i, s) in self.nodes.iter().enumerate() {
            let from = preds.len();
            preds.extend(s.needs.iter().map(|d| d.step));
            preds[from..].sort_unstable();
            let mut w = from;
            for r in from..preds.len() {
                if r == from || preds[r] != preds[w - 1] {
                    preds[w] = preds[r];
                    w += 1;
                }
            }
            preds.truncate(w);
            indeg[i] = (w - from) as u32;
            for &d in &preds[from..] {
                out_count[d as usize + 1] += 1;
            }
            pred_start.push(preds.len() as u32);
        }
        for i in 0..n {
            out_count[i + 1] += out_count[i];
        }
        let out_start = out_count;
        let mut fill = out_start.clone();
        let mut out_edges = vec![0u32; preds.len()];
        for i in 0..n {
            for &d in &preds[pred_start[i] as usize..pred_start[i + 1] as usize] {
                let at = &mut fill[d as usize];
                out_edges[*at as usize] = i as u32;
                *at += 1;
            }
        }
        drop(preds);
        drop(pred_start);
        drop(fill);

        let mut heap: BinaryHeap<Reverse<u32>> = (0..n as u32)
            .filter(|&i| indeg[i as usize] == 0)
            .map(Reverse)
            .collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse(i)) = heap.pop() {
            order.push(i);
            let (a, b) = (out_start[i as usize], out_start[i as usize + 1]);
            for &j in &out_edges[a as usize..b as usize] {
                indeg[j as usize] -= 1;
                if indeg[j as usize] == 0 {
                    heap.push(Reverse(j));
                }
            }
        }
        if order.len() != n {
            return Err((0..n).filter(|&i| indeg[i] > 0).take(6).collect());
        }
        let mut new_pos = vec![0u32; n];
        for (pos, &old) in order.iter().enumerate() {
            new_pos[old as usize] = pos as u32;
        }
        for s in &mut self.nodes {
            for d in &mut s.needs {
                d.step = new_pos[d.step as usize];
            }
            s.needs.sort_by_key(|d| d.step);
            s.needs.dedup_by_key(|d| d.step);
        }
        Ok(order)
    }
}
