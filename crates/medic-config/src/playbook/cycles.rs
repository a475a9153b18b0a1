//! Cycles in the phase graph (`after` and `planned_in` edges), each named whole
//! ([`medic_model::graph::cycles`]).

use super::*;

impl PbCtx<'_, '_> {
    /// Names every cycle in the phase graph (`after` and `planned_in` edges), whole.
    pub(super) fn cycles(&mut self, phases: &[(RawPhase, Loc)]) {
        let names: Vec<&str> = phases.iter().map(|(p, _)| p.name.value.as_str()).collect();
        let idx: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        for (kind, edges) in [("after", true), ("select.planned_in", false)] {
            let mut adj: Vec<(usize, usize)> = Vec::new();
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
                // A phase that waits for itself is named where it is written (phases.rs).
                adj.extend(
                    targets
                        .into_iter()
                        .filter_map(|t| idx.get(t).copied())
                        .filter(|&j| j != i)
                        .map(|j| (i, j)),
                );
            }
            for cycle in medic_model::graph::cycles(names.len(), adj) {
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
