//! `build_plan`: selectors and skip rules decide who is in each phase, joins become edges,
//! rollouts become waves and gates, and the result is ordered, estimated and sealed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

use medic_model::{AfterOn, Inventory, Join, Phase, Playbook, Role, WaveSpec};

use crate::estimate::estimate;
use crate::facts::{Facts, Target};
use crate::fingerprint::digests;
use crate::plan::{
    GateSpec, Need, PhaseInfo, Plan, PlanHost, Skipped, Step, StepCheck, StepGuard, StepKind,
    WaveInfo,
};
use crate::window::Window;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the step graph has a cycle through {0}: check the `after` joins of these phases")]
    Cycle(String),
}

/// A phase's members in rollout order, each with its wave and its applicable actions.
struct Members {
    targets: Vec<(Target, Option<u32>, Vec<usize>)>,
}

/// Builds the sealed plan. `playbook_text` is hashed into the fingerprint.
pub fn build_plan(
    inv: &Inventory,
    pb: &Playbook,
    playbook_text: &str,
    window: Option<Window>,
) -> Result<Plan, PlanError> {
    let facts = Facts::new(inv, &pb.params);
    let phase_idx: HashMap<&str, usize> = pb
        .phases
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), i))
        .collect();

    let mut members: Vec<Option<Members>> = (0..pb.phases.len()).map(|_| None).collect();
    let mut member_sets: Vec<Vec<bool>> = vec![Vec::new(); pb.phases.len()];
    let mut manager_in: Vec<bool> = vec![false; pb.phases.len()];
    let mut skipped_by_phase: Vec<Vec<Skipped>> = vec![Vec::new(); pb.phases.len()];
    for pi in membership_order(pb, &phase_idx) {
        let phase = &pb.phases[pi];
        let (m, set, mgr, skipped) = select(&facts, phase, &phase_idx, &member_sets, &manager_in);
        member_sets[pi] = set;
        manager_in[pi] = mgr;
        skipped_by_phase[pi] = skipped;
        members[pi] = Some(m);
    }

    let mut g = Graph::default();
    // (phase, target) -> (first step, last step)
    let mut chains: HashMap<(usize, Target), (u32, u32)> = HashMap::new();
    let mut phase_infos = Vec::with_capacity(pb.phases.len());
    let mut wave_gates: Vec<Vec<Option<u32>>> = vec![Vec::new(); pb.phases.len()];
    for (pi, phase) in pb.phases.iter().enumerate() {
        let m = members[pi]
            .as_ref()
            .map(|m| m.targets.as_slice())
            .unwrap_or_default();
        let pname: Arc<str> = Arc::from(phase.name.as_str());
        let mut wave_sizes: BTreeMap<u32, u32> = BTreeMap::new();
        for (t, wave, actions) in m {
            if let Some(w) = wave {
                *wave_sizes.entry(*w).or_default() += 1;
            }
            let single = actions.len() == 1;
            let mut prev: Option<u32> = None;
            let mut first = 0;
            let mut seen: HashMap<&str, u32> = HashMap::new();
            for &ai in actions {
                let a = &phase.actions[ai];
                let get = &mut |p: &medic_model::Path| facts.get(*t, p);
                // The same action twice on a host gets `#2`, `#3`... so ids stay unique.
                let nth = {
                    let n = seen.entry(a.action.as_str()).or_default();
                    *n += 1;
                    *n
                };
                let id = match (*t, single) {
                    (Target::Manager, true) => format!("{}/{}", phase.name, inv.manager.name),
                    (Target::Manager, false) => {
                        format!("{}/{}/{}", phase.name, inv.manager.name, a.action)
                    }
                    (Target::Host(h), true) => format!("{}/{}", phase.name, facts.host(h).name),
                    (Target::Host(h), false) => {
                        format!("{}/{}/{}", phase.name, facts.host(h).name, a.action)
                    }
                };
                let id = if nth > 1 { format!("{id}#{nth}") } else { id };
                let idx = g.push(Step {
                    id,
                    phase: pname.clone(),
                    host: Some(host_slot(*t, inv)),
                    action: Arc::from(a.action.as_str()),
                    kind: StepKind::Action,
                    driver: Arc::from(a.driver.as_str()),
                    args: a
                        .args
                        .iter()
                        .map(|(k, v)| (k.clone(), v.render(get)))
                        .collect(),
                    needs: prev
                        .map(|p| {
                            vec![Need {
                                step: p,
                                on_finish: false,
                            }]
                        })
                        .unwrap_or_default(),
                    wave: *wave,
                    guard: phase.guard.as_ref().map(|gd| StepGuard {
                        probe: gd.probe.clone(),
                        when: gd.when.bind(get),
                        describe: gd.describe.clone(),
                    }),
                    check: a.check.as_ref().map(|c| StepCheck {
                        probe: c.probe.clone(),
                        when: c.when.bind(get),
                    }),
                    estimate_s: a.estimate_s,
                    timeout_s: a.timeout_s,
                    retry: a.retry,
                    endpoint: a.endpoint.as_deref().map(Arc::from),
                    soft_fail: phase.soft_fail.eval(get),
                    verifies: phase.verifies,
                });
                if prev.is_none() {
                    first = idx;
                }
                prev = Some(idx);
            }
            if let Some(last) = prev {
                chains.insert((pi, *t), (first, last));
            }
        }
        // Gates between waves: wave k+1 opens after every host of wave k finished.
        let mut gates = vec![None; wave_sizes.len()];
        if let Some(r) = &phase.rollout {
            let waves: Vec<u32> = wave_sizes.keys().copied().collect();
            for win in waves.windows(2) {
                let (prev_w, next_w) = (win[0], win[1]);
                let needs = m
                    .iter()
                    .filter(|(_, w, _)| *w == Some(prev_w))
                    .filter_map(|(t, _, _)| {
                        chains.get(&(pi, *t)).map(|c| Need {
                            step: c.1,
                            on_finish: true,
                        })
                    })
                    .collect();
                let gate = g.push(special(
                    format!("gate/{}/wave-{next_w}", phase.name),
                    &pname,
                    "gate",
                    StepKind::Gate(GateSpec {
                        approval: r.approval,
                        pause_s: r.pause_s,
                        opens_wave: next_w,
                    }),
                    needs,
                    r.pause_s,
                ));
                gates[next_w as usize] = Some(gate);
            }
        }
        wave_gates[pi] = gates;
        phase_infos.push((pi, wave_sizes));
    }

    // Edges from joins, attached to the first step of each (phase, target) chain.
    let mut barriers: HashMap<(usize, Option<String>, bool), Option<u32>> = HashMap::new();
    for (pi, phase) in pb.phases.iter().enumerate() {
        let Some(m) = members[pi].as_ref() else {
            continue;
        };
        let afters: Vec<(usize, Join, bool)> = phase
            .after
            .iter()
            .filter(|a| {
                a.when
                    .as_ref()
                    .is_none_or(|c| c.eval(&mut |p| facts.get(Target::Manager, p)))
            })
            .filter_map(|a| {
                phase_idx
                    .get(a.phase.as_str())
                    .map(|&q| (q, a.join, a.on == AfterOn::Finish))
            })
            .collect();
        for (t, wave, _) in &m.targets {
            let Some(&(first, _)) = chains.get(&(pi, *t)) else {
                continue;
            };
            let mut needs = Vec::new();
            for &(q, join, on_finish) in &afters {
                match join {
                    Join::SameHost => {
                        if let Some(c) = chains.get(&(q, *t)) {
                            needs.push(Need {
                                step: c.1,
                                on_finish,
                            });
                        }
                    }
                    Join::BundleSource => {
                        if let Some(b) = facts.bundle_source(*t)
                            && let Some(c) = chains.get(&(q, Target::Host(b)))
                        {
                            needs.push(Need {
                                step: c.1,
                                on_finish,
                            });
                        }
                    }
                    Join::All | Join::SameRelayGroup => {
                        let group = match join {
                            Join::All => None,
                            _ => match t {
                                Target::Host(h) => match &facts.host(*h).relay_group {
                                    Some(g) => Some(g.clone()),
                                    None => continue,
                                },
                                Target::Manager => continue,
                            },
                        };
                        let key = (q, group.clone(), on_finish);
                        let node = match barriers.get(&key) {
                            Some(n) => *n,
                            None => {
                                let n = join_node(
                                    &mut g,
                                    pb,
                                    &members,
                                    &chains,
                                    q,
                                    group.as_deref(),
                                    on_finish,
                                    &facts,
                                );
                                barriers.insert(key, n);
                                n
                            }
                        };
                        if let Some(n) = node
                            && n != first
                        {
                            needs.push(Need {
                                step: n,
                                on_finish: false,
                            });
                        }
                    }
                }
            }
            if let Some(w) = wave
                && let Some(Some(gate)) = wave_gates[pi].get(*w as usize)
            {
                needs.push(Need {
                    step: *gate,
                    on_finish: false,
                });
            }
            g.steps[first as usize].needs.extend(needs);
        }
    }

    let steps = g.sorted()?;
    let index: HashMap<String, u32> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.clone(), i as u32))
        .collect();

    let mut skipped = Vec::new();
    for s in skipped_by_phase {
        skipped.extend(s);
    }

    let mut phases = Vec::with_capacity(pb.phases.len());
    for (pi, wave_sizes) in phase_infos {
        let phase = &pb.phases[pi];
        let ps: Vec<&Step> = steps
            .iter()
            .filter(|s| &*s.phase == phase.name.as_str() && s.kind == StepKind::Action)
            .collect();
        let hosts = members[pi].as_ref().map(|m| m.targets.len()).unwrap_or(0) as u32;
        let r = phase.rollout.as_ref();
        let waves = wave_sizes
            .iter()
            .map(|(&w, &n)| WaveInfo {
                index: w,
                hosts: n,
                max_failures: r
                    .and_then(|r| r.max_failures)
                    .map(|b| b.absolute(n as usize) as u32),
                gate: index.get(&format!("gate/{}/wave-{w}", phase.name)).copied(),
            })
            .collect();
        phases.push(PhaseInfo {
            name: phase.name.clone(),
            description: phase.description.clone(),
            hosts,
            steps: ps.len() as u32,
            skipped: skipped.iter().filter(|s| s.phase == phase.name).count() as u32,
            waves,
            max_failures_total: r
                .and_then(|r| r.max_failures_total)
                .map(|b| b.absolute(hosts as usize) as u32),
            strict: r.is_some_and(|r| r.strict),
            approval: r.is_some_and(|r| r.approval),
            pause_s: r.map(|r| r.pause_s).unwrap_or(0),
            max_parallel: phase.max_parallel,
            point_of_no_return: phase.point_of_no_return,
            backout: phase.backout.clone(),
            guard: phase.guard.as_ref().map(|g| g.describe.clone()),
            estimate_s: ps.iter().map(|s| s.estimate_s).sum(),
        });
    }

    let mut hosts: Vec<PlanHost> = inv
        .hosts
        .iter()
        .map(|h| PlanHost {
            name: h.name.clone(),
            address: h.address.clone(),
            port: h.port,
            user: h.user.clone(),
            platform: Some(h.platform),
            role: h.role().as_str(),
            relay_group: h.relay_group.clone(),
        })
        .collect();
    hosts.push(PlanHost {
        name: inv.manager.name.clone(),
        address: inv.manager.address.clone(),
        port: 4119,
        user: None,
        platform: None,
        role: Role::Manager.as_str(),
        relay_group: None,
    });

    let phase_limits: HashMap<&str, u32> = pb
        .phases
        .iter()
        .filter_map(|p| p.max_parallel.map(|m| (p.name.as_str(), m)))
        .collect();
    let est = estimate(
        &steps,
        pb.max_parallel,
        &pb.endpoint_limits,
        &phase_limits,
        window,
    );
    let (fingerprint, host_digests) = digests(inv, pb, playbook_text);

    let params = pb
        .params
        .values
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    let example_params = pb
        .params
        .specs
        .iter()
        .filter(|s| s.example)
        .filter(|s| {
            !pb.params
                .set_by_operator
                .iter()
                .any(|k| k == &s.name || k.starts_with(&format!("{}.", s.name)))
        })
        .map(|s| s.name.clone())
        .collect();

    Ok(Plan {
        playbook: pb.name.clone(),
        fingerprint,
        host_digests,
        params,
        example_params,
        max_parallel: pb.max_parallel,
        endpoint_limits: pb.endpoint_limits.clone(),
        hosts,
        steps,
        skipped,
        phases,
        estimate: est,
        index,
    })
}

/// The host slot of a target; the Manager is stored after the hosts.
fn host_slot(t: Target, inv: &Inventory) -> u32 {
    match t {
        Target::Host(h) => h,
        Target::Manager => inv.hosts.len() as u32,
    }
}

fn special(
    id: String,
    phase: &Arc<str>,
    action: &str,
    kind: StepKind,
    needs: Vec<Need>,
    estimate_s: u64,
) -> Step {
    Step {
        id,
        phase: phase.clone(),
        host: None,
        action: Arc::from(action),
        kind,
        driver: Arc::from("none"),
        args: Vec::new(),
        needs,
        wave: None,
        guard: None,
        check: None,
        estimate_s,
        timeout_s: 0,
        retry: medic_model::Retry {
            max: 0,
            backoff_s: 0,
        },
        endpoint: None,
        soft_fail: false,
        verifies: false,
    }
}

/// The node that stands for "every step of phase `q` (in `group`) is done": the single step
/// itself when there is one, a barrier when there are several, nothing when there are none.
#[expect(clippy::too_many_arguments, reason = "a private helper of build_plan")]
fn join_node(
    g: &mut Graph,
    pb: &Playbook,
    members: &[Option<Members>],
    chains: &HashMap<(usize, Target), (u32, u32)>,
    q: usize,
    group: Option<&str>,
    on_finish: bool,
    facts: &Facts<'_>,
) -> Option<u32> {
    let m = members[q].as_ref()?;
    let lasts: Vec<u32> = m
        .targets
        .iter()
        .filter(|(t, _, _)| match (group, t) {
            (None, _) => true,
            (Some(gname), Target::Host(h)) => facts.host(*h).relay_group.as_deref() == Some(gname),
            (Some(_), Target::Manager) => false,
        })
        .filter_map(|(t, _, _)| chains.get(&(q, *t)).map(|c| c.1))
        .collect();
    match lasts.len() {
        0 => None,
        1 if !on_finish => Some(lasts[0]),
        _ => {
            let phase = &pb.phases[q].name;
            let suffix = if on_finish { "/finished" } else { "" };
            let id = match group {
                None => format!("join/{phase}/all{suffix}"),
                Some(gname) => format!("join/{phase}/relay-group/{gname}{suffix}"),
            };
            let needs = lasts
                .into_iter()
                .map(|s| Need { step: s, on_finish })
                .collect();
            Some(g.push(special(
                id,
                &Arc::from(phase.as_str()),
                "barrier",
                StepKind::Barrier,
                needs,
                0,
            )))
        }
    }
}

/// Phases ordered so that every `planned_in` phase is selected before the phases that read it.
fn membership_order(pb: &Playbook, idx: &HashMap<&str, usize>) -> Vec<usize> {
    let n = pb.phases.len();
    let mut done = vec![false; n];
    let mut out = Vec::with_capacity(n);
    // Validation rejected cycles, so n passes are enough.
    for _ in 0..n {
        for (i, p) in pb.phases.iter().enumerate() {
            if !done[i]
                && p.select
                    .planned_in
                    .iter()
                    .all(|d| idx.get(d.as_str()).is_none_or(|&j| done[j]))
            {
                done[i] = true;
                out.push(i);
            }
        }
    }
    out
}

type Selected = (Members, Vec<bool>, bool, Vec<Skipped>);

fn select(
    facts: &Facts<'_>,
    phase: &Phase,
    phase_idx: &HashMap<&str, usize>,
    member_sets: &[Vec<bool>],
    manager_in: &[bool],
) -> Selected {
    let inv = facts.inv;
    let sel = &phase.select;
    let roles = &sel.roles;
    let mut candidates: Vec<Target> = Vec::new();
    if roles.contains(&Role::Manager)
        && sel.platforms.is_empty()
        && sel.groups.is_empty()
        && sel.relay_groups.is_empty()
    {
        candidates.push(Target::Manager);
    }
    let planned: Vec<usize> = sel
        .planned_in
        .iter()
        .filter_map(|p| phase_idx.get(p.as_str()).copied())
        .collect();
    if !planned.is_empty()
        && (roles.is_empty() || roles.contains(&Role::Manager))
        && planned.iter().any(|&p| manager_in[p])
        && !candidates.contains(&Target::Manager)
        && sel.platforms.is_empty()
    {
        candidates.push(Target::Manager);
    }
    let want_hosts = roles.is_empty() || roles.iter().any(|r| *r != Role::Manager);
    if want_hosts {
        for (i, h) in inv.hosts.iter().enumerate() {
            if !roles.is_empty() && !roles.contains(&h.role()) {
                continue;
            }
            if !sel.platforms.is_empty() && !sel.platforms.contains(&h.platform) {
                continue;
            }
            if !sel.groups.is_empty() && !h.groups.iter().any(|g| sel.groups.contains(g)) {
                continue;
            }
            if !sel.relay_groups.is_empty()
                && !h
                    .relay_group
                    .as_ref()
                    .is_some_and(|g| sel.relay_groups.contains(g))
            {
                continue;
            }
            if !planned.is_empty()
                && !planned
                    .iter()
                    .any(|&p| member_sets[p].get(i).copied().unwrap_or(false))
            {
                continue;
            }
            candidates.push(Target::Host(i as u32));
        }
    }

    let mut set = vec![false; inv.hosts.len()];
    let mut mgr = false;
    let mut skipped = Vec::new();
    let mut chosen: Vec<(Target, Vec<usize>)> = Vec::new();
    for t in candidates {
        let get = &mut |p: &medic_model::Path| facts.get(t, p);
        if let Some(w) = &sel.when
            && !w.eval(get)
        {
            continue;
        }
        let name = match t {
            Target::Manager => inv.manager.name.clone(),
            Target::Host(h) => facts.host(h).name.clone(),
        };
        if let Some(rule) = phase.skip.iter().find(|r| r.when.eval(get)) {
            skipped.push(Skipped {
                host: name,
                phase: phase.name.clone(),
                reason: rule.reason.render(get),
            });
            continue;
        }
        let actions: Vec<usize> = phase
            .actions
            .iter()
            .enumerate()
            .filter(|(_, a)| a.only.as_ref().is_none_or(|c| c.eval(get)))
            .map(|(i, _)| i)
            .collect();
        if actions.is_empty() {
            skipped.push(Skipped {
                host: name,
                phase: phase.name.clone(),
                reason: "no action of this phase applies to this host".to_owned(),
            });
            continue;
        }
        match t {
            Target::Manager => mgr = true,
            Target::Host(h) => set[h as usize] = true,
        }
        chosen.push((t, actions));
    }

    let waves = assign_waves(facts, phase, &chosen);
    let mut targets: Vec<(Target, Option<u32>, Vec<usize>)> = chosen
        .into_iter()
        .zip(waves)
        .map(|((t, a), w)| (t, w, a))
        .collect();
    targets.sort_by_key(|(t, w, _)| (*w, *t));
    (Members { targets }, set, mgr, skipped)
}

/// Assigns rollout waves in inventory order; the last wave size repeats until every member
/// has one. A `{ group: G }` wave takes the members of G not taken yet.
fn assign_waves(
    facts: &Facts<'_>,
    phase: &Phase,
    chosen: &[(Target, Vec<usize>)],
) -> Vec<Option<u32>> {
    let Some(r) = &phase.rollout else {
        return vec![None; chosen.len()];
    };
    let n = chosen.len();
    let mut out: Vec<Option<u32>> = vec![None; n];
    let mut left = n;
    let mut wave = 0u32;
    let mut spec_i = 0usize;
    let in_group = |t: Target, g: &str| match t {
        Target::Host(h) => facts.host(h).groups.iter().any(|x| x == g),
        Target::Manager => false,
    };
    while left > 0 {
        let spec = &r.waves[spec_i.min(r.waves.len() - 1)];
        let last_spec = spec_i >= r.waves.len() - 1;
        let mut took = 0usize;
        match spec {
            WaveSpec::Group(g) => {
                for (i, (t, _)) in chosen.iter().enumerate() {
                    if out[i].is_none() && in_group(*t, g) {
                        out[i] = Some(wave);
                        took += 1;
                    }
                }
                if last_spec && took == 0 {
                    // The group is exhausted and nothing follows: the rest is one last wave.
                    for slot in out.iter_mut().filter(|s| s.is_none()) {
                        *slot = Some(wave);
                        took += 1;
                    }
                }
            }
            WaveSpec::Count(c) | WaveSpec::Percent(c) => {
                let size = match spec {
                    WaveSpec::Count(_) => *c as usize,
                    _ => (n * *c as usize).div_ceil(100).max(1),
                };
                for slot in out.iter_mut().filter(|s| s.is_none()).take(size) {
                    *slot = Some(wave);
                    took += 1;
                }
            }
        }
        left -= took;
        if took > 0 {
            wave += 1;
        }
        spec_i += 1;
    }
    out
}

/// The steps as they are created, before the topological order.
#[derive(Default)]
struct Graph {
    steps: Vec<Step>,
}

impl Graph {
    fn push(&mut self, s: Step) -> u32 {
        self.steps.push(s);
        (self.steps.len() - 1) as u32
    }

    /// Kahn's algorithm with creation order as the tie-break, so the order is deterministic
    /// and follows the playbook wherever the edges allow.
    fn sorted(self) -> Result<Vec<Step>, PlanError> {
        let n = self.steps.len();
        let mut indeg = vec![0u32; n];
        let mut out_edges: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (i, s) in self.steps.iter().enumerate() {
            let mut seen: Vec<u32> = s.needs.iter().map(|d| d.step).collect();
            seen.sort_unstable();
            seen.dedup();
            indeg[i] = seen.len() as u32;
            for d in seen {
                out_edges[d as usize].push(i as u32);
            }
        }
        let mut heap: BinaryHeap<Reverse<u32>> = (0..n as u32)
            .filter(|&i| indeg[i as usize] == 0)
            .map(Reverse)
            .collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse(i)) = heap.pop() {
            order.push(i);
            for &j in &out_edges[i as usize] {
                indeg[j as usize] -= 1;
                if indeg[j as usize] == 0 {
                    heap.push(Reverse(j));
                }
            }
        }
        if order.len() != n {
            let stuck: Vec<&str> = (0..n)
                .filter(|&i| indeg[i] > 0)
                .take(6)
                .map(|i| self.steps[i].id.as_str())
                .collect();
            return Err(PlanError::Cycle(stuck.join(", ")));
        }
        let mut new_pos = vec![0u32; n];
        for (pos, &old) in order.iter().enumerate() {
            new_pos[old as usize] = pos as u32;
        }
        let mut slots: Vec<Option<Step>> = self.steps.into_iter().map(Some).collect();
        let mut out = Vec::with_capacity(n);
        for old in order {
            let mut s = slots[old as usize].take().expect("each step is taken once");
            for d in &mut s.needs {
                d.step = new_pos[d.step as usize];
            }
            s.needs.sort_by_key(|d| d.step);
            s.needs.dedup_by_key(|d| d.step);
            out.push(s);
        }
        Ok(out)
    }
}
