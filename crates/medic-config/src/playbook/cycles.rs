//! Cycles in the phase graph (`after` and `planned_in` edges), each named whole.

use super::*;

impl PbCtx<'_, '_> {
    /// Names every cycle in the phase graph (`after` and `planned_in` edges), whole.
    pub(super) fn cycles(&mut self, phases: &[(RawPhase, Loc)]) {
        let names: Vec<&str> = phases.iter().map(|(p, _)| p.name.value.as_str()).collect();
        let idx: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        for (kind, edges) in [("after", true), ("select.planned_in", false)] {
            let mut adj: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); names.len()];
            for (i, (p, _)) in phases.iter().enumerate() {
                let targets: Vec<&str> = if edges {
                    // Joins on other hosts (bundle-source, same-relay-group) may loop through
                    // phases without looping through steps; the step graph checks those. A loop
                    // of same-host or all joins is a real cycle for any host in it.
                    p.after
                        .iter()
                        // A join restricted to some roles may wait for a phase that follows
                        // this one on other hosts (Agents wait for the Relays' verify); the
                        // step graph checks it too.
                        .filter(|a| {
                            a.roles.is_empty()
                                && a.platforms.is_empty()
                                && matches!(
                                    a.join.as_ref().map(|j| j.as_str()),
                                    None | Some("same-host") | Some("all")
                                )
                        })
                        .map(|a| a.phase.value.as_str())
                        .filter(|t| *t != p.name.value)
                        .collect()
                } else {
                    p.select
                        .iter()
                        .flat_map(|s| s.planned_in.iter().map(|x| x.value.as_str()))
                        .chain(
                            p.requires_planned
                                .iter()
                                .flat_map(|r| r.phases.iter().map(|x| x.value.as_str())),
                        )
                        .collect()
                };
                for t in targets {
                    if let Some(&j) = idx.get(t) {
                        adj[i].insert(j);
                    }
                }
            }
            for cycle in find_cycles(&adj) {
                let mut path: Vec<&str> = cycle.iter().map(|&i| names[i]).collect();
                path.push(names[cycle[0]]);
                let loc = phases[cycle[0]].0.name.loc;
                self.err(
                    loc,
                    "medic::playbook::cycle",
                    format!(
                        "phase dependency cycle through `{kind}`: {}",
                        path.join(" -> ")
                    ),
                    "remove one of these dependencies so that the phases can be ordered",
                );
            }
        }
    }
}

/// Strongly connected components with more than one node (Tarjan), each as a cycle path in
/// dependency order, starting from its lowest index.
fn find_cycles(adj: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    let n = adj.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0;
    let mut sccs = Vec::new();
    #[expect(
        clippy::too_many_arguments,
        reason = "Tarjan's state, kept local to this function"
    )]
    fn strong(
        v: usize,
        adj: &[BTreeSet<usize>],
        index: &mut [usize],
        low: &mut [usize],
        on: &mut [bool],
        stack: &mut Vec<usize>,
        next: &mut usize,
        sccs: &mut Vec<Vec<usize>>,
    ) {
        index[v] = *next;
        low[v] = *next;
        *next += 1;
        stack.push(v);
        on[v] = true;
        for &w in &adj[v] {
            if index[w] == usize::MAX {
                strong(w, adj, index, low, on, stack, next, sccs);
                low[v] = low[v].min(low[w]);
            } else if on[w] {
                low[v] = low[v].min(index[w]);
            }
        }
        if low[v] == index[v] {
            let mut comp = Vec::new();
            while let Some(w) = stack.pop() {
                on[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                sccs.push(comp);
            }
        }
    }
    for v in 0..n {
        if index[v] == usize::MAX {
            strong(
                v, adj, &mut index, &mut low, &mut on, &mut stack, &mut next, &mut sccs,
            );
        }
    }
    // Report a real cycle inside each component: the shortest path from its lowest node
    // back to itself along existing edges (breadth-first), so every arrow is an edge.
    sccs.into_iter()
        .filter_map(|comp| {
            let set: BTreeSet<usize> = comp.iter().copied().collect();
            let start = *set.iter().next()?;
            let mut prev: std::collections::BTreeMap<usize, usize> =
                std::collections::BTreeMap::new();
            let mut queue = std::collections::VecDeque::from([start]);
            while let Some(v) = queue.pop_front() {
                for &w in adj[v].iter().filter(|w| set.contains(w)) {
                    if w == start {
                        let mut path = vec![v];
                        let mut cur = v;
                        while cur != start {
                            cur = prev[&cur];
                            path.push(cur);
                        }
                        path.reverse();
                        return Some(path);
                    }
                    if let std::collections::btree_map::Entry::Vacant(e) = prev.entry(w) {
                        e.insert(v);
                        queue.push_back(w);
                    }
                }
            }
            None
        })
        .collect()
}
