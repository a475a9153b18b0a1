//! The step graph as it is built (small nodes: phase, target, action, needs) and its
//! topological order.

use super::*;

/// The first and last step of one target's chain in one phase.
#[derive(Clone, Copy)]
pub(super) struct Chain {
    pub(super) first: u32,
    pub(super) last: u32,
}

impl Chain {
    /// No step.
    pub(super) const NONE: Chain = Chain {
        first: u32::MAX,
        last: u32::MAX,
    };
}

/// Each target's chain in each phase, by host slot.
pub(super) struct Chains {
    pub(super) by_phase: Vec<Vec<Chain>>,
}

impl Chains {
    pub(super) fn get(&self, phase: usize, slot: u32) -> Option<Chain> {
        self.by_phase
            .get(phase)
            .and_then(|v| v.get(slot as usize))
            .copied()
            .filter(|c| c.first != Chain::NONE.first)
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
    /// On a cycle, the error is the nodes on one cycle, in order (each needs the next).
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
            return Err(self.a_cycle(|i| indeg[i] > 0));
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

    /// One cycle among the nodes `stuck` (those Kahn's order could not place), as creation
    /// indices in order, each needing the next: the nodes that merely wait for a cycle are
    /// stuck too, but are not on it. Only on the error path, so a graph of its own is fine.
    fn a_cycle(&self, stuck: impl Fn(usize) -> bool) -> Vec<usize> {
        let edges = self
            .nodes
            .iter()
            .enumerate()
            .filter(|&(i, _)| stuck(i))
            .flat_map(|(i, s)| {
                s.needs
                    .iter()
                    .map(move |d| (i, d.step as usize))
                    .filter(|&(_, d)| stuck(d))
            });
        let edges: Vec<(usize, usize)> = edges.collect();
        medic_model::graph::cycles(self.nodes.len(), edges)
            .into_iter()
            .next()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn barrier(g: &mut Graph, name: &str) -> u32 {
        let s = Special {
            id: name.to_owned(),
            action: SpecialAction::Barrier,
            kind: StepKind::Barrier,
            estimate_s: 0,
        };
        g.push_special(0, s, Vec::new())
    }

    fn need(g: &mut Graph, from: u32, to: u32) {
        g.nodes[from as usize].needs.push(Need {
            step: to,
            on_finish: false,
        });
    }

    /// A node that waits for a cycle is not on it: the error names the three nodes of the
    /// cycle, in order, and not the waiter (created first, so it sorts first).
    #[test]
    fn a_failed_order_names_the_cycle_not_its_waiters() {
        let mut g = Graph::default();
        let waiter = barrier(&mut g, "waiter");
        let ok = barrier(&mut g, "ok");
        let a = barrier(&mut g, "a");
        let b = barrier(&mut g, "b");
        let c = barrier(&mut g, "c");
        need(&mut g, waiter, b);
        need(&mut g, waiter, ok);
        need(&mut g, b, c);
        need(&mut g, c, a);
        need(&mut g, a, b);
        let cycle = g.order().expect_err("a cycle");
        let ids: Vec<&str> = cycle
            .iter()
            .map(|&i| match g.nodes[i].what {
                What::Special(k) => g.specials[k as usize].id.as_str(),
                What::Action { .. } => "an action",
            })
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[test]
    fn an_acyclic_graph_orders_by_creation_where_edges_allow() {
        let mut g = Graph::default();
        let x = barrier(&mut g, "x");
        let y = barrier(&mut g, "y");
        let z = barrier(&mut g, "z");
        need(&mut g, x, z);
        assert_eq!(g.order().expect("no cycle"), [y, z, x]);
    }
}
