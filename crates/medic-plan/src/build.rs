//! `build_plan`: selectors and skip rules decide who is in each phase, joins become edges,
//! rollouts become waves and gates, and the result is ordered, estimated and sealed.
//!
//! The graph is first built from small nodes (phase, target, action, edges); once Kahn's
//! order is known, each full [`Step`] is made directly in its final place, so the large step
//! values are never moved around by the sort. Whatever only depends on a target's platform
//! (rendered arguments, bound checks and guards, `soft_fail`, `only`) is computed once per
//! phase, action and platform.
//!
//! Two cores are used where the work splits into independent pieces put back together in a
//! fixed order, so the plan never depends on the threads: the per-host digests and the host
//! table are made while the graph is built; the steps are made in a pipeline (one thread
//! makes their ids, guards and checks, the other their arguments and the steps); the step
//! index is built while the estimate is simulated.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

use medic_model::{AfterOn, Inventory, Join, Phase, Playbook, Role, WaveSpec};

use crate::estimate::{self, estimate};
use crate::facts::{ByClass, Facts, Target, platform_only};
use crate::fingerprint::digests;
use crate::plan::{
    GateSpec, Need, PhaseInfo, Plan, PlanHost, Skipped, Step, StepCheck, StepGuard, StepIndex,
    StepKind, WaveInfo,
};
use crate::window::Window;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the step graph has a cycle through {0}: check the `after` joins of these phases")]
    Cycle(String),
    /// The inputs break one of the playbook's `refuse` rules (each listed once).
    #[error("{}", .0.iter().map(|r| r.message.as_str()).collect::<Vec<_>>().join("; "))]
    Refused(Vec<Refusal>),
}

/// A `refuse` rule of the playbook that held for a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub phase: String,
    pub host: String,
    pub message: String,
    pub help: Option<String>,
    /// The host's inventory key the problem is about, when it is not its build.
    pub field: Option<&'static str>,
}

/// What planning found besides the steps: refusals and warnings.
#[derive(Default)]
struct Notes {
    refusals: Vec<Refusal>,
    /// Placeholders without a value (reported with the refusals, or after planning).
    missing: Vec<Refusal>,
    warnings: Vec<String>,
}

/// A placeholder without a value for a target: an input error (the text would otherwise
/// say "(unknown)" to the operator, or pass it to a driver as an argument).
fn missing_value(phase: &str, host: &str, path: &medic_model::Path, what: &str) -> Refusal {
    let help = match path.field.strip_prefix("vars.") {
        Some(k)
            if matches!(
                path.root,
                medic_model::PathRoot::Host | medic_model::PathRoot::BundleSource
            ) =>
        {
            format!(
                "give the host `vars: {{ {k}: ... }}` in the inventory, or remove `{{{path}}}` from the playbook"
            )
        }
        _ => format!("give `{path}` a value, or remove `{{{path}}}` from the playbook"),
    };
    Refusal {
        phase: phase.to_owned(),
        host: host.to_owned(),
        message: format!("phase `{phase}`: `{{{path}}}` in {what} has no value for host {host}"),
        help: Some(help),
        field: Some(if path.field.starts_with("vars.") {
            "vars"
        } else {
            "name"
        }),
    }
}

/// Renders `t`, or records the placeholder that has no value (once per message).
fn render_or_note<W: std::fmt::Display>(
    t: &medic_model::Template,
    get: Get<'_>,
    missing: &mut Vec<Refusal>,
    phase: &str,
    host: &str,
    what: impl FnOnce() -> W,
) -> String {
    match t.try_render(get) {
        Ok(s) => s,
        Err(path) => {
            let r = missing_value(phase, host, path, &what().to_string());
            if !missing.contains(&r) {
                missing.push(r);
            }
            String::new()
        }
    }
}

impl Notes {
    fn warn(&mut self, w: String) {
        if !self.warnings.contains(&w) {
            self.warnings.push(w);
        }
    }
}

/// A phase's members in rollout order, each with its wave and its applicable actions
/// (a range of `actions`).
struct Members {
    targets: Vec<(Target, Option<u32>, u32, u32)>,
    actions: Vec<u32>,
}

impl Members {
    fn actions_of(&self, start: u32, len: u32) -> &[u32] {
        &self.actions[start as usize..(start + len) as usize]
    }
}

/// No step.
const NONE: u32 = u32::MAX;

/// The first and last step of each target's chain in each phase, by host slot.
struct Chains {
    by_phase: Vec<Vec<(u32, u32)>>,
}

impl Chains {
    fn get(&self, phase: usize, slot: u32) -> Option<(u32, u32)> {
        self.by_phase
            .get(phase)
            .and_then(|v| v.get(slot as usize))
            .copied()
            .filter(|c| c.0 != NONE)
    }
}

/// Builds the sealed plan. `playbook_text` is hashed into the fingerprint.
pub fn build_plan(
    inv: &Inventory,
    pb: &Playbook,
    playbook_text: &str,
    window: Option<Window>,
) -> Result<Plan, PlanError> {
    // The digests and the host table do not depend on the graph: made on a second core
    // meanwhile.
    let (((fingerprint, host_digests), hosts), built) = std::thread::scope(|s| {
        let side = s.spawn(|| (digests(inv, pb, playbook_text), plan_hosts(inv)));
        let built = build_steps(inv, pb, window);
        (
            side.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            built,
        )
    });
    let b = built?;
    Ok(Plan {
        playbook: pb.name.clone(),
        fingerprint,
        host_digests,
        params: pb
            .params
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
        example_params: example_params(pb),
        max_parallel: pb.max_parallel,
        endpoint_limits: pb.endpoint_limits.clone(),
        hosts,
        steps: b.steps,
        skipped: b.skipped,
        warnings: b.warnings,
        phases: b.phases,
        estimate: b.estimate,
        index: b.index,
    })
}

/// Every key (`fixed_build.linux`, `manager_min_build`) still at a value the playbook marks
/// as an example: setting one platform's value leaves the other's an example.
fn example_params(pb: &Playbook) -> Vec<String> {
    let mut out = Vec::new();
    for s in pb.params.specs.iter().filter(|s| s.example) {
        let keys: Vec<String> = if s.per_platform {
            [medic_model::Platform::Linux, medic_model::Platform::Windows]
                .iter()
                .map(|p| format!("{}.{}", s.name, p.as_str()))
                .collect()
        } else {
            vec![s.name.clone()]
        };
        for k in keys {
            if !pb.params.set_by_operator.contains(&k) {
                out.push(k);
            }
        }
    }
    out
}

fn plan_hosts(inv: &Inventory) -> Vec<PlanHost> {
    let mut hosts: Vec<PlanHost> = Vec::with_capacity(inv.hosts.len() + 1);
    hosts.extend(inv.hosts.iter().map(|h| PlanHost {
        name: h.name.clone(),
        address: h.address.clone(),
        port: h.port,
        user: h.user.clone(),
        platform: Some(h.platform),
        role: h.role().as_str(),
        relay_group: h.relay_group.clone(),
        os: h.os.clone(),
        r#become: h.r#become,
    }));
    hosts.push(PlanHost {
        name: inv.manager.name.clone(),
        address: inv.manager.address.clone(),
        port: 4119,
        user: None,
        platform: None,
        role: Role::Manager.as_str(),
        relay_group: None,
        os: None,
        r#become: None,
    });
    hosts
}

struct Built {
    steps: Vec<Step>,
    skipped: Vec<Skipped>,
    warnings: Vec<String>,
    phases: Vec<PhaseInfo>,
    estimate: crate::plan::Estimate,
    index: StepIndex,
}

fn build_steps(inv: &Inventory, pb: &Playbook, window: Option<Window>) -> Result<Built, PlanError> {
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
    let mut notes = Notes::default();
    for pi in membership_order(pb, &phase_idx) {
        let phase = &pb.phases[pi];
        let (m, set, mgr, skipped) = select(
            &facts,
            phase,
            &phase_idx,
            &member_sets,
            &manager_in,
            &mut notes,
        );
        member_sets[pi] = set;
        manager_in[pi] = mgr;
        skipped_by_phase[pi] = skipped;
        members[pi] = Some(m);
    }
    drop(member_sets);
    if !notes.refusals.is_empty() {
        notes.refusals.append(&mut notes.missing);
        return Err(PlanError::Refused(notes.refusals));
    }

    let slots = inv.hosts.len() as u32 + 1;
    let mut g = Graph::default();
    let mut chains = Chains {
        by_phase: vec![Vec::new(); pb.phases.len()],
    };
    let mut phase_infos = Vec::with_capacity(pb.phases.len());
    let mut wave_gates: Vec<Vec<Option<u32>>> = vec![Vec::new(); pb.phases.len()];
    for (pi, phase) in pb.phases.iter().enumerate() {
        let m = members[pi].as_ref();
        let targets = m.map(|m| m.targets.as_slice()).unwrap_or_default();
        let mut wave_sizes: BTreeMap<u32, u32> = BTreeMap::new();
        let mut chain = if targets.is_empty() {
            Vec::new()
        } else {
            vec![(NONE, NONE); slots as usize]
        };
        for &(t, wave, a0, alen) in targets {
            if let Some(w) = wave {
                *wave_sizes.entry(w).or_default() += 1;
            }
            let acts = m.map(|m| m.actions_of(a0, alen)).unwrap_or_default();
            let single = acts.len() == 1;
            let mut prev: Option<u32> = None;
            let mut first = 0;
            for (i, &ai) in acts.iter().enumerate() {
                // The same action twice on a host gets `#2`, `#3`... so ids stay unique.
                let name = &phase.actions[ai as usize].action;
                let nth = 1 + acts[..i]
                    .iter()
                    .filter(|&&aj| phase.actions[aj as usize].action == *name)
                    .count() as u32;
                let idx = g.push(Node {
                    phase: pi as u32,
                    what: What::Action {
                        target: t,
                        action: ai,
                        wave,
                        single,
                        nth,
                    },
                    needs: prev
                        .map(|p| {
                            vec![Need {
                                step: p,
                                on_finish: false,
                            }]
                        })
                        .unwrap_or_default(),
                });
                if prev.is_none() {
                    first = idx;
                }
                prev = Some(idx);
            }
            if let Some(last) = prev {
                chain[host_slot(t, inv) as usize] = (first, last);
            }
        }
        chains.by_phase[pi] = chain;
        // Gates between waves: wave k+1 opens after every host of wave k finished.
        let mut gates = vec![None; wave_sizes.len()];
        if let Some(r) = &phase.rollout {
            let waves: Vec<u32> = wave_sizes.keys().copied().collect();
            for win in waves.windows(2) {
                let (prev_w, next_w) = (win[0], win[1]);
                let needs = targets
                    .iter()
                    .filter(|(_, w, _, _)| *w == Some(prev_w))
                    .filter_map(|(t, _, _, _)| {
                        chains.get(pi, host_slot(*t, inv)).map(|c| Need {
                            step: c.1,
                            on_finish: true,
                        })
                    })
                    .collect();
                let gate = g.push_special(
                    pi,
                    Special {
                        id: format!("gate/{}/wave-{next_w}", phase.name),
                        action: SpecialAction::Gate,
                        kind: StepKind::Gate(GateSpec {
                            approval: r.approval,
                            pause_s: r.pause_s,
                            opens_wave: next_w,
                        }),
                        estimate_s: r.pause_s,
                    },
                    needs,
                );
                gates[next_w as usize] = Some(gate);
            }
        }
        wave_gates[pi] = gates;
        phase_infos.push((pi, wave_sizes));
    }

    // Edges from joins, attached to the first step of each (phase, target) chain.
    let mut barriers: HashMap<(usize, Option<&str>, bool, u8), Option<u32>> = HashMap::new();
    let mut joins = JoinCache::default();
    for (pi, phase) in pb.phases.iter().enumerate() {
        let Some(m) = members[pi].as_ref() else {
            continue;
        };
        let afters: Vec<(usize, Join, bool, u8)> = phase
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
                    .map(|&q| (q, a.join, a.on == AfterOn::Finish, host_mask(a)))
            })
            .collect();
        if afters.is_empty() && wave_gates[pi].iter().all(Option::is_none) {
            continue;
        }
        for (t, wave, _, _) in &m.targets {
            let Some((first, _)) = chains.get(pi, host_slot(*t, inv)) else {
                continue;
            };
            let mut needs = Vec::new();
            for &(q, join, on_finish, roles) in &afters {
                match join {
                    Join::SameHost => {
                        if role_in(&facts, *t, roles)
                            && let Some(c) = chains.get(q, host_slot(*t, inv))
                        {
                            needs.push(Need {
                                step: c.1,
                                on_finish,
                            });
                        }
                    }
                    Join::BundleSource => {
                        if let Some(b) = facts.bundle_source(*t)
                            && role_in(&facts, Target::Host(b), roles)
                            && let Some(c) = chains.get(q, b)
                        {
                            needs.push(Need {
                                step: c.1,
                                on_finish,
                            });
                        }
                    }
                    Join::All | Join::SameRelayGroup => {
                        // A host without a relay group waits for every step of the other
                        // phase: nothing narrower can be said about what it downloads from.
                        let group = match join {
                            Join::All => None,
                            _ => match t {
                                Target::Host(h) => facts.host(*h).relay_group.as_deref(),
                                Target::Manager => continue,
                            },
                        };
                        let key = (q, group, on_finish, roles);
                        let node = match barriers.get(&key) {
                            Some(n) => *n,
                            None => {
                                let n = join_node(
                                    &mut g,
                                    pb,
                                    &members,
                                    &chains,
                                    &mut joins,
                                    JoinOf {
                                        q,
                                        group,
                                        on_finish,
                                        roles,
                                    },
                                    &facts,
                                    inv,
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
            if !needs.is_empty() {
                g.nodes[first as usize].needs.extend(needs);
            }
        }
    }
    drop(joins);
    drop(chains);

    let order = g.order().map_err(|stuck| {
        let ids: Vec<String> = stuck.iter().map(|&i| g.id_of(i, pb, &facts)).collect();
        PlanError::Cycle(ids.join(", "))
    })?;
    // The steps are made in their final order, in a pipeline over two threads: a worker
    // makes most of what each step owns on the heap (id, bound guard and check), this thread
    // the arguments, and it assembles the steps straight into the plan's vector.
    let n = order.len();
    let mut phase_of = Vec::with_capacity(n);
    let mut phase_steps = vec![(0u32, 0u64); pb.phases.len()];
    let mut needs: Vec<Vec<Need>> = Vec::with_capacity(n);
    for &old in &order {
        let node = &mut g.nodes[old as usize];
        phase_of.push(node.phase);
        if let What::Action { action, .. } = node.what {
            let ps = &mut phase_steps[node.phase as usize];
            ps.0 += 1;
            ps.1 += pb.phases[node.phase as usize].actions[action as usize].estimate_s;
        }
        needs.push(std::mem::take(&mut node.needs));
    }
    let g = &g;
    let order = &order;
    let assembler = Assembler::new(pb, inv);
    let mut steps = Vec::with_capacity(n);
    let mut needs = needs.into_iter();
    let mut missing_args = Vec::new();
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Parts>>(4);
        let worker = (n >= PIPELINE_FROM)
            .then(|| {
                std::thread::Builder::new()
                    .spawn_scoped(s, move || {
                        let facts = Facts::new(inv, &pb.params);
                        let mut maker = Maker::new(&facts, pb);
                        for chunk in order.chunks(CHUNK) {
                            let parts = chunk.iter().map(|&old| maker.parts(g, old)).collect();
                            if tx.send(parts).is_err() {
                                break;
                            }
                        }
                    })
                    .ok()
            })
            .flatten();
        match worker {
            Some(worker) => {
                // The arguments are made here, to share the work evenly.
                let mut maker = Maker::new(&facts, pb);
                for (chunk, parts) in order.chunks(CHUNK).zip(rx.iter()) {
                    for (&old, parts) in chunk.iter().zip(parts) {
                        let args = maker.args(g, old);
                        let needs = needs.next().unwrap_or_default();
                        steps.push(assembler.step(g, old, parts, args, needs));
                    }
                }
                if let Err(panic) = worker.join() {
                    std::panic::resume_unwind(panic);
                }
                missing_args = maker.missing;
            }
            None => {
                let mut maker = Maker::new(&facts, pb);
                for &old in order {
                    let parts = maker.parts(g, old);
                    let args = maker.args(g, old);
                    let needs = needs.next().unwrap_or_default();
                    steps.push(assembler.step(g, old, parts, args, needs));
                }
                missing_args = maker.missing;
            }
        }
    });
    drop(needs);
    if !notes.missing.is_empty() || !missing_args.is_empty() {
        notes.missing.append(&mut missing_args);
        return Err(PlanError::Refused(notes.missing));
    }

    let phase_limits: Vec<Option<u32>> = pb.phases.iter().map(|p| p.max_parallel).collect();
    let (index, est) = std::thread::scope(|s| {
        let index = s.spawn(|| StepIndex::build(&steps));
        let est = estimate(
            &steps,
            &estimate::Limits {
                global: pb.max_parallel,
                endpoints: &pb.endpoint_limits,
                phases: &phase_limits,
                phase_of: &phase_of,
                host_slots: slots as usize,
            },
            window,
        );
        (
            index
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            est,
        )
    });
    let mut skipped = Vec::with_capacity(skipped_by_phase.iter().map(Vec::len).sum());
    let skipped_counts: Vec<u32> = skipped_by_phase.iter().map(|s| s.len() as u32).collect();
    for s in skipped_by_phase {
        skipped.extend(s);
    }

    let mut phases = Vec::with_capacity(pb.phases.len());
    for (pi, wave_sizes) in phase_infos {
        let phase = &pb.phases[pi];
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
                gate: index.get(&steps, &format!("gate/{}/wave-{w}", phase.name)),
            })
            .collect();
        phases.push(PhaseInfo {
            name: phase.name.clone(),
            description: phase.description.clone(),
            hosts,
            steps: phase_steps[pi].0,
            skipped: skipped_counts[pi],
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
            estimate_s: phase_steps[pi].1,
        });
    }

    Ok(Built {
        steps,
        skipped,
        warnings: notes.warnings,
        phases,
        estimate: est,
        index,
    })
}

/// Steps are made on two threads from this many.
const PIPELINE_FROM: usize = 8192;
/// Steps per message between the two threads.
const CHUNK: usize = 2048;

/// What a step owns on the heap, made by [`Maker`] (but its arguments).
struct Parts {
    id: String,
    guard: Option<StepGuard>,
    check: Option<StepCheck>,
    soft_fail: bool,
}

/// Makes the parts of steps that depend on their target, computing once what only depends
/// on the phase, the action and the target's platform.
struct Maker<'f, 'a> {
    facts: &'f Facts<'a>,
    pb: &'a Playbook,
    phases: Vec<PhaseConsts>,
    /// Arguments whose placeholders had no value.
    missing: Vec<Refusal>,
}

/// Per class (platform and version line): computed once each.
type PerPlatform<T> = ByClass<T>;

struct PhaseConsts {
    /// Whether the guard, once bound, is the same for every target of a platform.
    guard_const: bool,
    guard: PerPlatform<Option<StepGuard>>,
    soft_fail_const: bool,
    soft_fail: PerPlatform<bool>,
    actions: Vec<ActionConsts>,
}

struct ActionConsts {
    args_const: bool,
    args: PerPlatform<Vec<(String, String)>>,
    check_const: bool,
    check: PerPlatform<Option<StepCheck>>,
}

fn cond_platform_only(c: &medic_model::Cond) -> bool {
    let mut paths = Vec::new();
    c.paths(&mut paths);
    paths.into_iter().all(platform_only)
}

type Get<'g> = &'g mut dyn FnMut(&medic_model::Path) -> Option<medic_model::Value>;

impl<'f, 'a> Maker<'f, 'a> {
    fn new(facts: &'f Facts<'a>, pb: &'a Playbook) -> Self {
        let phases = pb
            .phases
            .iter()
            .map(|p| PhaseConsts {
                guard_const: p.guard.as_ref().is_none_or(|g| cond_platform_only(&g.when)),
                guard: ByClass::new(),
                soft_fail_const: cond_platform_only(&p.soft_fail),
                soft_fail: ByClass::new(),
                actions: p
                    .actions
                    .iter()
                    .map(|a| ActionConsts {
                        args_const: a.args.values().all(|t| t.paths().all(platform_only)),
                        args: ByClass::new(),
                        check_const: a.check.as_ref().is_none_or(|c| cond_platform_only(&c.when)),
                        check: ByClass::new(),
                    })
                    .collect(),
            })
            .collect();
        Maker {
            facts,
            pb,
            phases,
            missing: Vec::new(),
        }
    }

    fn parts(&mut self, g: &Graph, old: u32) -> Parts {
        let node = &g.nodes[old as usize];
        match node.what {
            What::Action {
                target,
                action,
                single,
                nth,
                ..
            } => self.action(node.phase as usize, target, action, single, nth),
            What::Special(k) => Parts {
                id: g.specials[k as usize].id.clone(),
                guard: None,
                check: None,
                soft_fail: false,
            },
        }
    }

    fn action(&mut self, pi: usize, t: Target, ai: u32, single: bool, nth: u32) -> Parts {
        let facts = self.facts;
        let phase = &self.pb.phases[pi];
        let a = &phase.actions[ai as usize];
        let slot = facts.class(t);
        let get = &mut |p: &medic_model::Path| facts.get(t, p);
        let pc = &mut self.phases[pi];

        let guard = match &phase.guard {
            None => None,
            Some(gd) => {
                let make = |get: Get<'_>| StepGuard {
                    probe: gd.probe.clone(),
                    when: gd.when.bind(get),
                    describe: gd.describe.clone(),
                };
                if pc.guard_const {
                    pc.guard
                        .get_or_insert_with(slot, || Some(make(get)))
                        .clone()
                } else {
                    Some(make(get))
                }
            }
        };
        let soft_fail = if pc.soft_fail_const {
            *pc.soft_fail
                .get_or_insert_with(slot, || phase.soft_fail.eval(get))
        } else {
            phase.soft_fail.eval(get)
        };
        let ac = &mut pc.actions[ai as usize];
        let check = match &a.check {
            None => None,
            Some(c) => {
                let make = |get: Get<'_>| StepCheck {
                    probe: c.probe.clone(),
                    when: c.when.bind(get),
                };
                if ac.check_const {
                    ac.check
                        .get_or_insert_with(slot, || Some(make(get)))
                        .clone()
                } else {
                    Some(make(get))
                }
            }
        };
        Parts {
            id: step_id(
                &phase.name,
                target_name(facts, t),
                (!single).then_some(&a.action),
                nth,
            ),
            guard,
            check,
            soft_fail,
        }
    }

    /// A step's rendered arguments.
    fn args(&mut self, g: &Graph, old: u32) -> Vec<(String, String)> {
        let node = &g.nodes[old as usize];
        let What::Action { target, action, .. } = node.what else {
            return Vec::new();
        };
        let facts = self.facts;
        let phase = &self.pb.phases[node.phase as usize];
        let a = &phase.actions[action as usize];
        let get = &mut |p: &medic_model::Path| facts.get(target, p);
        let missing = &mut self.missing;
        let mut render = |get: Get<'_>| {
            a.args
                .iter()
                .map(|(k, v)| {
                    let host = target_name(facts, target);
                    let what = || format!("`args.{k}` of `{}`", a.action);
                    (
                        k.clone(),
                        render_or_note(v, get, missing, &phase.name, host, what),
                    )
                })
                .collect::<Vec<_>>()
        };
        let ac = &mut self.phases[node.phase as usize].actions[action as usize];
        if ac.args_const {
            let slot = facts.class(target);
            ac.args.get_or_insert_with(slot, || render(get)).clone()
        } else {
            render(get)
        }
    }
}

/// Puts steps together from graph nodes and their parts; the names it hands out are shared.
struct Assembler<'a> {
    pb: &'a Playbook,
    inv: &'a Inventory,
    /// Per phase: its name, and per action: action, driver, endpoint.
    phases: Vec<(Arc<str>, Vec<ActionNames>)>,
    gate: Arc<str>,
    barrier: Arc<str>,
    none: Arc<str>,
}

type ActionNames = (Arc<str>, Arc<str>, Option<Arc<str>>);

impl<'a> Assembler<'a> {
    fn new(pb: &'a Playbook, inv: &'a Inventory) -> Self {
        Assembler {
            pb,
            inv,
            phases: pb
                .phases
                .iter()
                .map(|p| {
                    (
                        Arc::from(p.name.as_str()),
                        p.actions
                            .iter()
                            .map(|a| {
                                (
                                    Arc::from(a.action.as_str()),
                                    Arc::from(a.driver.as_str()),
                                    a.endpoint.as_deref().map(Arc::from),
                                )
                            })
                            .collect(),
                    )
                })
                .collect(),
            gate: Arc::from("gate"),
            barrier: Arc::from("barrier"),
            none: Arc::from("none"),
        }
    }

    fn step(
        &self,
        g: &Graph,
        old: u32,
        p: Parts,
        args: Vec<(String, String)>,
        needs: Vec<Need>,
    ) -> Step {
        let node = &g.nodes[old as usize];
        let pi = node.phase as usize;
        let (phase_name, names) = &self.phases[pi];
        match node.what {
            What::Action {
                target,
                action,
                wave,
                ..
            } => {
                let phase = &self.pb.phases[pi];
                let a = &phase.actions[action as usize];
                let (action, driver, endpoint) = &names[action as usize];
                Step {
                    id: p.id,
                    phase: phase_name.clone(),
                    host: Some(host_slot(target, self.inv)),
                    action: action.clone(),
                    kind: StepKind::Action,
                    driver: driver.clone(),
                    args,
                    needs,
                    wave,
                    guard: p.guard,
                    check: p.check,
                    estimate_s: a.estimate_s,
                    timeout_s: a.timeout_s,
                    retry: a.retry,
                    endpoint: endpoint.clone(),
                    soft_fail: p.soft_fail,
                    verifies: phase.verifies,
                }
            }
            What::Special(k) => {
                let s = &g.specials[k as usize];
                Step {
                    id: p.id,
                    phase: phase_name.clone(),
                    host: None,
                    action: match s.action {
                        SpecialAction::Gate => self.gate.clone(),
                        SpecialAction::Barrier => self.barrier.clone(),
                    },
                    kind: s.kind.clone(),
                    driver: self.none.clone(),
                    args: Vec::new(),
                    needs,
                    wave: None,
                    guard: None,
                    check: None,
                    estimate_s: s.estimate_s,
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
        }
    }
}

fn target_name<'a>(facts: &Facts<'a>, t: Target) -> &'a str {
    match t {
        Target::Manager => &facts.inv.manager.name,
        Target::Host(h) => &facts.host(h).name,
    }
}

/// `phase/host` or `phase/host/action`, then `#n` for the n-th (n > 1) occurrence of an
/// action in its host's chain.
fn step_id(phase: &str, host: &str, action: Option<&String>, nth: u32) -> String {
    let len = phase.len() + 1 + host.len() + action.map_or(0, |a| a.len() + 1);
    let mut id = String::with_capacity(len + if nth > 1 { 4 } else { 0 });
    id.push_str(phase);
    id.push('/');
    id.push_str(host);
    if let Some(a) = action {
        id.push('/');
        id.push_str(a);
    }
    if nth > 1 {
        id.push('#');
        id.push_str(&nth.to_string());
    }
    id
}

/// The host slot of a target; the Manager is stored after the hosts.
fn host_slot(t: Target, inv: &Inventory) -> u32 {
    match t {
        Target::Host(h) => h,
        Target::Manager => inv.hosts.len() as u32,
    }
}

/// For each phase (and role filter) that a relay-group join reads: the last steps of its
/// chains, by relay group, in rollout order.
#[derive(Default)]
struct JoinCache<'a> {
    by_group: HashMap<(usize, u8), HashMap<&'a str, Vec<u32>>>,
}

/// What a join waits for: phase `q`'s steps (in `group`, on hosts of `roles`).
struct JoinOf<'g> {
    q: usize,
    group: Option<&'g str>,
    on_finish: bool,
    roles: u8,
}

/// Bits of a join's host filter: roles, then platforms.
const HOST_BITS: [(u8, &str); 5] = [
    (1, "relay"),
    (2, "agent"),
    (4, "manager"),
    (8, "linux"),
    (16, "windows"),
];
const ROLE_BITS: u8 = 7;
const PLATFORM_BITS: u8 = 24;

/// `after.roles` and `after.platforms` as bits; 0 is every target.
fn host_mask(a: &medic_model::After) -> u8 {
    let roles = a.roles.iter().fold(0, |m, r| {
        m | match r {
            Role::Relay => 1,
            Role::Agent => 2,
            Role::Manager => 4,
        }
    });
    a.platforms.iter().fold(roles, |m, p| {
        m | match p {
            medic_model::Platform::Linux => 8,
            medic_model::Platform::Windows => 16,
        }
    })
}

/// Whether a target passes a join's host filter.
fn role_in(facts: &Facts<'_>, t: Target, mask: u8) -> bool {
    let (role, platform) = match t {
        Target::Manager => (4, 0),
        Target::Host(h) => {
            let h = facts.host(h);
            (
                if h.relay { 1 } else { 2 },
                match h.platform {
                    medic_model::Platform::Linux => 8,
                    medic_model::Platform::Windows => 16,
                },
            )
        }
    };
    (mask & ROLE_BITS == 0 || mask & role != 0)
        && (mask & PLATFORM_BITS == 0 || mask & platform != 0)
}

/// The node that stands for "every step of phase `q` (in `group`) is done": the single step
/// itself when there is one, a barrier when there are several, nothing when there are none.
#[expect(clippy::too_many_arguments, reason = "a private helper of build_plan")]
fn join_node<'a>(
    g: &mut Graph,
    pb: &Playbook,
    members: &[Option<Members>],
    chains: &Chains,
    joins: &mut JoinCache<'a>,
    of: JoinOf<'_>,
    facts: &Facts<'a>,
    inv: &Inventory,
) -> Option<u32> {
    let JoinOf {
        q,
        group,
        on_finish,
        roles,
    } = of;
    let m = members[q].as_ref()?;
    let lasts: Vec<u32> = match group {
        None => m
            .targets
            .iter()
            .filter(|(t, _, _, _)| role_in(facts, *t, roles))
            .filter_map(|(t, _, _, _)| chains.get(q, host_slot(*t, inv)).map(|c| c.1))
            .collect(),
        Some(gname) => {
            let by_group = joins.by_group.entry((q, roles)).or_insert_with(|| {
                let mut by: HashMap<&'a str, Vec<u32>> = HashMap::new();
                for (t, _, _, _) in &m.targets {
                    if let Target::Host(h) = t
                        && role_in(facts, *t, roles)
                        && let Some(rg) = facts.host(*h).relay_group.as_deref()
                        && let Some(c) = chains.get(q, *h)
                    {
                        by.entry(rg).or_default().push(c.1);
                    }
                }
                by
            });
            by_group.get(gname).cloned().unwrap_or_default()
        }
    };
    match lasts.len() {
        0 => None,
        1 if !on_finish => Some(lasts[0]),
        _ => {
            let phase = &pb.phases[q].name;
            // `/relay`, `/relay/linux`, `/relay+agent`...: one id per filter.
            let mut suffix = String::new();
            for group_bits in [ROLE_BITS, PLATFORM_BITS] {
                let mut first = true;
                for (bit, name) in HOST_BITS {
                    if roles & group_bits & bit != 0 {
                        suffix.push(if first { '/' } else { '+' });
                        suffix.push_str(name);
                        first = false;
                    }
                }
            }
            if on_finish {
                suffix.push_str("/finished");
            }
            let id = match group {
                None => format!("join/{phase}/all{suffix}"),
                Some(gname) => format!("join/{phase}/relay-group/{gname}{suffix}"),
            };
            let needs = lasts
                .into_iter()
                .map(|s| Need { step: s, on_finish })
                .collect();
            Some(g.push_special(
                q,
                Special {
                    id,
                    action: SpecialAction::Barrier,
                    kind: StepKind::Barrier,
                    estimate_s: 0,
                },
                needs,
            ))
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
                    .chain(p.requires_planned.iter().flat_map(|r| r.phases.iter()))
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
    notes: &mut Notes,
) -> Selected {
    // `requires_planned`: whether one of those phases has a step.
    let required_missing = phase.requires_planned.as_ref().filter(|r| {
        !r.phases.iter().any(|p| {
            phase_idx
                .get(p.as_str())
                .is_some_and(|&q| manager_in[q] || member_sets[q].iter().any(|&b| b))
        })
    });
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
    let mut chosen: Vec<(Target, u32, u32)> = Vec::new();
    let mut actions: Vec<u32> = Vec::new();
    // Whether `only` is the same for every target of a platform; then evaluated once each.
    let only_const: Vec<bool> = phase
        .actions
        .iter()
        .map(|a| a.only.as_ref().is_none_or(cond_platform_only))
        .collect();
    let mut only_cache: Vec<ByClass<bool>> =
        (0..phase.actions.len()).map(|_| ByClass::new()).collect();
    for t in candidates {
        let get = &mut |p: &medic_model::Path| facts.get(t, p);
        if let Some(w) = &sel.when
            && !w.eval(get)
        {
            continue;
        }
        let name = || target_name(facts, t).to_owned();
        for r in &phase.refuse {
            if !r.when.eval(get) {
                continue;
            }
            let host = name();
            let mut missing = Vec::new();
            let message = render_or_note(
                &r.message,
                get,
                &mut missing,
                &phase.name,
                &host,
                || "a refusal",
            );
            let help = r.help.as_ref().map(|h| {
                render_or_note(
                    h,
                    get,
                    &mut missing,
                    &phase.name,
                    &host,
                    || "a refusal's help",
                )
            });
            for m in missing {
                if !notes.missing.contains(&m) {
                    notes.missing.push(m);
                }
            }
            let refusal = Refusal {
                phase: phase.name.clone(),
                host,
                message,
                help,
                field: None,
            };
            if !notes.refusals.contains(&refusal) {
                notes.refusals.push(refusal);
            }
        }
        // A skip rule first, then `requires_planned`: both skip the host with a reason.
        let skip_reason = phase
            .skip
            .iter()
            .find(|r| r.when.eval(get))
            .map(|r| &r.reason)
            .or(required_missing.map(|r| &r.reason));
        if let Some(template) = skip_reason {
            let host = name();
            let reason = render_or_note(
                template,
                get,
                &mut notes.missing,
                &phase.name,
                &host,
                || "a skip reason",
            );
            skipped.push(Skipped {
                host,
                phase: phase.name.clone(),
                reason,
            });
            continue;
        }
        let start = actions.len();
        let class = facts.class(t);
        for (i, a) in phase.actions.iter().enumerate() {
            let applies = match &a.only {
                None => true,
                Some(c) if only_const[i] => {
                    *only_cache[i].get_or_insert_with(class, || c.eval(get))
                }
                Some(c) => c.eval(get),
            };
            if applies {
                actions.push(i as u32);
            }
        }
        if actions.len() == start {
            skipped.push(Skipped {
                host: name(),
                phase: phase.name.clone(),
                reason: "no action of this phase applies to this host".to_owned(),
            });
            continue;
        }
        for w in &phase.warn {
            if w.when.eval(get) {
                let msg = render_or_note(
                    &w.message,
                    get,
                    &mut notes.refusals,
                    &phase.name,
                    target_name(facts, t),
                    || "a warning",
                );
                notes.warn(msg);
            }
        }
        match t {
            Target::Manager => mgr = true,
            Target::Host(h) => set[h as usize] = true,
        }
        chosen.push((t, start as u32, (actions.len() - start) as u32));
    }

    let waves = assign_waves(facts, phase, &chosen);
    let mut targets: Vec<(Target, Option<u32>, u32, u32)> = chosen
        .into_iter()
        .zip(waves)
        .map(|((t, a0, alen), w)| (t, w, a0, alen))
        .collect();
    targets.sort_by_key(|(t, w, _, _)| (*w, *t));
    (Members { targets, actions }, set, mgr, skipped)
}

/// Assigns rollout waves in inventory order; the last wave size repeats until every member
/// has one. A `{ group: G }` wave takes the members of G not taken yet.
fn assign_waves(
    facts: &Facts<'_>,
    phase: &Phase,
    chosen: &[(Target, u32, u32)],
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
                for (i, (t, _, _)) in chosen.iter().enumerate() {
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

/// A graph node: what its step will be, and the nodes it needs (creation indices).
struct Node {
    phase: u32,
    what: What,
    needs: Vec<Need>,
}

enum What {
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

enum SpecialAction {
    Gate,
    Barrier,
}

struct Special {
    id: String,
    action: SpecialAction,
    kind: StepKind,
    estimate_s: u64,
}

/// The steps as they are created, before the topological order.
#[derive(Default)]
struct Graph {
    nodes: Vec<Node>,
    specials: Vec<Special>,
}

impl Graph {
    fn push(&mut self, n: Node) -> u32 {
        self.nodes.push(n);
        (self.nodes.len() - 1) as u32
    }

    fn push_special(&mut self, phase: usize, s: Special, needs: Vec<Need>) -> u32 {
        self.specials.push(s);
        let k = (self.specials.len() - 1) as u32;
        self.push(Node {
            phase: phase as u32,
            what: What::Special(k),
            needs,
        })
    }

    fn id_of(&self, i: usize, pb: &Playbook, facts: &Facts<'_>) -> String {
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
    fn order(&mut self) -> Result<Vec<u32>, Vec<usize>> {
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

#[cfg(test)]
mod tests {
    /// A phase that runs the same action twice on a host gives the second step `#2`, so step
    /// ids stay unique.
    #[test]
    fn a_repeated_action_gets_a_numbered_id() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let read = |p: &str| std::fs::read_to_string(root.join(p)).expect("readable");
        // Both security updates of a Relay phase apply to every Relay.
        let pb_text = read("playbooks/ds-activeupdate-cert-2023.yaml")
            .replace("        only: { is: host.relay_group_offline }\n", "");
        let pb = medic_config::load_playbook("pb.yaml", &pb_text, &[]).expect("a playbook");
        let inv_text = read("examples/multi-site/inventory.yaml");
        let inv = medic_config::load_inventory("inv.yaml", &inv_text).expect("an inventory");
        let plan = super::build_plan(&inv, &pb, &pb_text, None).expect("a plan");
        let numbered: Vec<&str> = plan
            .steps()
            .iter()
            .map(|s| s.id.as_str())
            .filter(|id| id.ends_with("/security-update#2"))
            .collect();
        assert!(!numbered.is_empty());
        for id in numbered {
            let first = id.trim_end_matches("#2");
            let (a, b) = (plan.step_index(first), plan.step_index(id));
            assert!(a.is_some() && b.is_some() && a < b, "{id}");
        }
        let mut ids: Vec<&str> = plan.steps().iter().map(|s| s.id.as_str()).collect();
        ids.sort_unstable();
        assert!(ids.windows(2).all(|w| w[0] != w[1]), "ids are unique");
    }
}
