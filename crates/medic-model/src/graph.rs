//! Cycles of a directed graph over `0..n`, found with `petgraph` (strongly connected
//! components, Tarjan), each reported as one real cycle: shared by the playbook's phase
//! graph (`medic-config`) and the plan's step graph (`medic-plan`), so that both name the
//! nodes on a cycle in order rather than every node that merely waits for one.

use std::collections::VecDeque;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

/// One cycle per strongly connected component that has one (two nodes or more, or a node
/// with an edge to itself), as the nodes along it from the component's lowest node: each
/// has an edge to the next, the last to the first. The shortest such cycle through that
/// node (breadth-first), so every arrow shown is an edge. Sorted by their first node.
pub fn cycles(n: usize, edges: impl IntoIterator<Item = (usize, usize)>) -> Vec<Vec<usize>> {
    let mut g = DiGraph::<(), ()>::with_capacity(n, 0);
    for _ in 0..n {
        g.add_node(());
    }
    for (a, b) in edges {
        g.update_edge(NodeIndex::new(a), NodeIndex::new(b), ());
    }
    let mut out: Vec<Vec<usize>> = tarjan_scc(&g)
        .into_iter()
        .filter_map(|comp| {
            let start = *comp.iter().min()?;
            if comp.len() == 1 {
                return g.contains_edge(start, start).then(|| vec![start.index()]);
            }
            shortest_cycle(&g, &comp, start)
        })
        .collect();
    out.sort_unstable();
    out
}

/// The shortest path from `start` back to itself inside `comp`.
fn shortest_cycle(g: &DiGraph<(), ()>, comp: &[NodeIndex], start: NodeIndex) -> Option<Vec<usize>> {
    let inside = |v: NodeIndex| comp.contains(&v);
    let mut prev: Vec<Option<NodeIndex>> = vec![None; g.node_count()];
    let mut queue = VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        // Neighbours in a fixed order (petgraph lists the newest edge first).
        let mut next: Vec<NodeIndex> = g.neighbors(v).filter(|&w| inside(w)).collect();
        next.sort_unstable();
        for w in next {
            if w == start {
                let mut path = vec![v.index()];
                let mut cur = v;
                while cur != start {
                    cur = prev[cur.index()]?;
                    path.push(cur.index());
                }
                path.reverse();
                return Some(path);
            }
            if prev[w.index()].is_none() {
                prev[w.index()] = Some(v);
                queue.push_back(w);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::cycles;

    #[test]
    fn a_cycle_is_named_in_order_and_its_waiters_are_not() {
        // 0 -> 1 -> 2 -> 0 is the cycle; 3 only waits for it, 4 waits for 3.
        let edges = [(0, 1), (1, 2), (2, 0), (3, 0), (4, 3)];
        assert_eq!(cycles(5, edges), vec![vec![0, 1, 2]]);
        // The same cycle listed from its lowest node whatever the numbering.
        assert_eq!(
            cycles(4, [(3, 2), (2, 1), (1, 3), (0, 3)]),
            vec![vec![1, 3, 2]]
        );
    }

    #[test]
    fn every_component_once_self_loops_included_acyclic_graphs_none() {
        let edges = [(0, 1), (1, 0), (2, 3), (3, 4), (4, 2), (5, 5), (6, 0)];
        assert_eq!(cycles(7, edges), vec![vec![0, 1], vec![2, 3, 4], vec![5]]);
        assert!(cycles(4, [(0, 1), (1, 2), (0, 2), (3, 2)]).is_empty());
        assert!(cycles(0, []).is_empty());
    }

    #[test]
    fn the_shortest_cycle_through_the_lowest_node_is_shown() {
        // 0 -> 1 -> 2 -> 3 -> 0 and the shortcut 1 -> 3.
        let edges = [(0, 1), (1, 2), (2, 3), (3, 0), (1, 3)];
        assert_eq!(cycles(4, edges), vec![vec![0, 1, 3]]);
    }
}
