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

mod assemble;
mod graph;
mod joins;
mod select;

use assemble::*;
use graph::*;
use joins::*;
use select::*;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The steps on one cycle, in order (`a -> b -> a`: `a` waits for `b`).
    #[error(
        "the step graph has a cycle, each step waiting for the next: {0}; check the `after` joins of these phases"
    )]
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
        air_gapped: {
            let mut z: Vec<String> = inv.air_gapped_zones().map(str::to_owned).collect();
            z.sort();
            z
        },
        slice: None,
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
        role: h.role(),
        relay_group: h.relay_group.clone(),
        os: h.os.clone(),
        r#become: h.r#become,
        zone: h.zone.clone(),
    }));
    hosts.push(PlanHost {
        name: inv.manager.name.clone(),
        address: inv.manager.address.clone(),
        port: 4119,
        user: None,
        platform: None,
        role: Role::Manager,
        relay_group: None,
        os: None,
        r#become: None,
        zone: None,
    });
    hosts
}

/// A phase's action steps: how many, and their estimated durations added up.
#[derive(Clone, Copy, Default)]
struct PhaseTotals {
    steps: u32,
    estimate_s: u64,
}

struct Built {
    steps: Vec<Step>,
    skipped: Vec<Skipped>,
    warnings: Vec<String>,
    phases: Vec<PhaseInfo>,
    estimate: crate::plan::Estimate,
    index: StepIndex,
}

/// What every stage reads: the inputs, their facts, and who is in each phase.
struct Stage<'c, 'a> {
    inv: &'a Inventory,
    pb: &'a Playbook,
    facts: &'c Facts<'a>,
    /// Per phase (by index): its members, in rollout order.
    members: &'c [Option<Members>],
}

/// The steps in stages, each a function of the earlier stages' named results: who is in
/// each phase ([`select_members`]), each member's chain of steps and the gates between waves
/// ([`chain_phases`]), the joins' edges ([`join_phases`]), the order ([`order_graph`],
/// [`take_needs`]), the steps made in it ([`make_steps`]), then the index and estimate
/// ([`schedule`]) and the phases' summaries ([`phase_infos`]).
fn build_steps(inv: &Inventory, pb: &Playbook, window: Option<Window>) -> Result<Built, PlanError> {
    let facts = Facts::new(inv, &pb.params);
    let phase_idx: HashMap<&str, usize> = pb
        .phases
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), i))
        .collect();
    let mut notes = Notes::default();
    let Membership {
        members,
        skipped_by_phase,
    } = select_members(&facts, pb, &phase_idx, &mut notes);
    if !notes.refusals.is_empty() {
        notes.refusals.append(&mut notes.missing);
        return Err(PlanError::Refused(notes.refusals));
    }
    let stage = Stage {
        inv,
        pb,
        facts: &facts,
        members: &members,
    };

    let mut g = Graph::default();
    let chained = chain_phases(&mut g, &stage);
    join_phases(&mut g, &stage, &phase_idx, &chained);
    let ChainedPhases { wave_sizes, .. } = chained;
    let order = order_graph(&mut g, &stage)?;
    let Ordered {
        phase_of,
        totals,
        needs,
    } = take_needs(&mut g, pb, &order);
    let MadeSteps {
        steps,
        missing: mut missing_args,
    } = make_steps(&g, &stage, &order, needs);
    drop(g);
    if !notes.missing.is_empty() || !missing_args.is_empty() {
        notes.missing.append(&mut missing_args);
        return Err(PlanError::Refused(notes.missing));
    }

    let Scheduled { index, estimate } = schedule(&steps, pb, &phase_of, host_slots(inv), window);
    let SkippedSteps {
        skipped,
        per_phase: skipped_counts,
    } = flatten_skipped(skipped_by_phase);
    let phases = phase_infos(
        &stage,
        &steps,
        &index,
        PhaseCounts {
            wave_sizes,
            totals,
            skipped: skipped_counts,
        },
    );
    Ok(Built {
        steps,
        skipped,
        warnings: notes.warnings,
        phases,
        estimate,
        index,
    })
}

/// Hosts and the Manager (after them).
fn host_slots(inv: &Inventory) -> usize {
    inv.hosts.len() + 1
}

/// Who is in each phase, and who was skipped.
struct Membership {
    /// Per phase (by index).
    members: Vec<Option<Members>>,
    /// Per phase (by index): the skipped hosts with their reasons.
    skipped_by_phase: Vec<Vec<Skipped>>,
}

/// Selects each phase's members, phases read by `planned_in` first; refusals, placeholders
/// without a value and warnings go to `notes`.
fn select_members(
    facts: &Facts<'_>,
    pb: &Playbook,
    phase_idx: &HashMap<&str, usize>,
    notes: &mut Notes,
) -> Membership {
    let n = pb.phases.len();
    let mut members: Vec<Option<Members>> = (0..n).map(|_| None).collect();
    let mut member_sets: Vec<Vec<bool>> = vec![Vec::new(); n];
    let mut manager_in: Vec<bool> = vec![false; n];
    let mut skipped_by_phase: Vec<Vec<Skipped>> = vec![Vec::new(); n];
    for pi in membership_order(pb, phase_idx) {
        let Selection {
            members: m,
            hosts_in,
            manager_in: mgr,
            skipped,
        } = select(
            facts,
            &pb.phases[pi],
            phase_idx,
            &member_sets,
            &manager_in,
            notes,
        );
        member_sets[pi] = hosts_in;
        manager_in[pi] = mgr;
        skipped_by_phase[pi] = skipped;
        members[pi] = Some(m);
    }
    Membership {
        members,
        skipped_by_phase,
    }
}

/// Each phase's chains and the gates between its waves.
struct ChainedPhases {
    chains: Chains,
    /// Per phase, per wave: the gate that opens the wave (none for the first).
    wave_gates: Vec<Vec<Option<u32>>>,
    /// Per phase: how many hosts each wave has.
    wave_sizes: Vec<BTreeMap<u32, u32>>,
}

/// One phase's chains: by host slot, each member's steps in action order.
struct PhaseChain {
    chain: Vec<Chain>,
    wave_sizes: BTreeMap<u32, u32>,
}

/// Makes every member's chain of action steps, phase by phase, and the phases' wave gates.
fn chain_phases(g: &mut Graph, stage: &Stage<'_, '_>) -> ChainedPhases {
    let n = stage.pb.phases.len();
    let mut out = ChainedPhases {
        chains: Chains {
            by_phase: Vec::with_capacity(n),
        },
        wave_gates: Vec::with_capacity(n),
        wave_sizes: Vec::with_capacity(n),
    };
    for pi in 0..n {
        let PhaseChain { chain, wave_sizes } = chain_phase(g, stage, pi);
        out.chains.by_phase.push(chain);
        out.wave_gates
            .push(wave_gates(g, stage, pi, &out.chains, &wave_sizes));
        out.wave_sizes.push(wave_sizes);
    }
    out
}

/// Phase `pi`'s chains: each member's applicable actions, one step each, each needing the
/// one before.
fn chain_phase(g: &mut Graph, stage: &Stage<'_, '_>, pi: usize) -> PhaseChain {
    let phase = &stage.pb.phases[pi];
    let m = stage.members[pi].as_ref();
    let targets = m.map(|m| m.targets.as_slice()).unwrap_or_default();
    let mut wave_sizes: BTreeMap<u32, u32> = BTreeMap::new();
    let mut chain = if targets.is_empty() {
        Vec::new()
    } else {
        vec![Chain::NONE; host_slots(stage.inv)]
    };
    for &Member {
        target: t,
        wave,
        actions_start: a0,
        actions_len: alen,
    } in targets
    {
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
            chain[host_slot(t, stage.inv) as usize] = Chain { first, last };
        }
    }
    PhaseChain { chain, wave_sizes }
}

/// Gates between phase `pi`'s waves: wave k+1 opens after every host of wave k finished.
/// Indexed by wave.
fn wave_gates(
    g: &mut Graph,
    stage: &Stage<'_, '_>,
    pi: usize,
    chains: &Chains,
    wave_sizes: &BTreeMap<u32, u32>,
) -> Vec<Option<u32>> {
    let phase = &stage.pb.phases[pi];
    let mut gates = vec![None; wave_sizes.len()];
    let (Some(r), Some(m)) = (&phase.rollout, stage.members[pi].as_ref()) else {
        return gates;
    };
    let waves: Vec<u32> = wave_sizes.keys().copied().collect();
    for win in waves.windows(2) {
        let (prev_w, next_w) = (win[0], win[1]);
        let needs = m
            .targets
            .iter()
            .filter(|m| m.wave == Some(prev_w))
            .filter_map(|m| {
                chains
                    .get(pi, host_slot(m.target, stage.inv))
                    .map(|c| Need {
                        step: c.last,
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
    gates
}

/// One `after` of a phase whose `when` holds: phase `phase`'s steps, joined as `join`.
struct AfterEdge {
    phase: usize,
    join: Join,
    on_finish: bool,
    /// [`host_mask`]'s bits.
    hosts: u8,
}

/// The barrier nodes made so far (one per phase, group, and filter) and the chains' last
/// steps by relay group.
#[derive(Default)]
struct Joiner<'a> {
    barriers: HashMap<JoinOf<'a>, Option<u32>>,
    cache: JoinCache<'a>,
}

/// Edges from joins and wave gates, attached to the first step of each (phase, target)
/// chain.
fn join_phases<'a>(
    g: &mut Graph,
    stage: &Stage<'_, 'a>,
    phase_idx: &HashMap<&str, usize>,
    chained: &ChainedPhases,
) {
    let mut joiner = Joiner::default();
    for (pi, phase) in stage.pb.phases.iter().enumerate() {
        let Some(m) = stage.members[pi].as_ref() else {
            continue;
        };
        let afters: Vec<AfterEdge> = phase
            .after
            .iter()
            .filter(|a| {
                a.when
                    .as_ref()
                    .is_none_or(|c| c.eval(&mut |p| stage.facts.get(Target::Manager, p)))
            })
            .filter_map(|a| {
                phase_idx.get(a.phase.as_str()).map(|&q| AfterEdge {
                    phase: q,
                    join: a.join,
                    on_finish: a.on == AfterOn::Finish,
                    hosts: host_mask(a),
                })
            })
            .collect();
        let gates = &chained.wave_gates[pi];
        if afters.is_empty() && gates.iter().all(Option::is_none) {
            continue;
        }
        for member in &m.targets {
            let Some(Chain { first, .. }) =
                chained.chains.get(pi, host_slot(member.target, stage.inv))
            else {
                continue;
            };
            let mut needs = Vec::new();
            for after in &afters {
                if let Some(need) = join_need(
                    g,
                    stage,
                    &chained.chains,
                    &mut joiner,
                    member.target,
                    first,
                    after,
                ) {
                    needs.push(need);
                }
            }
            if let Some(w) = member.wave
                && let Some(Some(gate)) = gates.get(w as usize)
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
}

/// What target `t`'s chain (starting at `first`) waits for by one `after`: the other
/// phase's chain on the same host or its bundle source, or the barrier of every step (of
/// the relay group) of the other phase.
fn join_need<'a>(
    g: &mut Graph,
    stage: &Stage<'_, 'a>,
    chains: &Chains,
    joiner: &mut Joiner<'a>,
    t: Target,
    first: u32,
    after: &AfterEdge,
) -> Option<Need> {
    let &AfterEdge {
        phase: q,
        join,
        on_finish,
        hosts: roles,
    } = after;
    let facts = stage.facts;
    let inv = stage.inv;
    match join {
        Join::SameHost => {
            if role_in(facts, t, roles)
                && let Some(c) = chains.get(q, host_slot(t, inv))
            {
                return Some(Need {
                    step: c.last,
                    on_finish,
                });
            }
            None
        }
        Join::BundleSource => {
            if let Some(b) = facts.bundle_source(t)
                && role_in(facts, Target::Host(b), roles)
                && let Some(c) = chains.get(q, b)
            {
                return Some(Need {
                    step: c.last,
                    on_finish,
                });
            }
            None
        }
        Join::All | Join::SameRelayGroup => {
            // A host without a relay group waits for every step of the other phase:
            // nothing narrower can be said about what it downloads from.
            let group = match join {
                Join::All => None,
                _ => match t {
                    Target::Host(h) => facts.host(h).relay_group.as_deref(),
                    Target::Manager => return None,
                },
            };
            let of = JoinOf {
                q,
                group,
                on_finish,
                roles,
            };
            let node = match joiner.barriers.get(&of) {
                Some(n) => *n,
                None => {
                    let n = join_node(
                        g,
                        stage.pb,
                        stage.members,
                        chains,
                        &mut joiner.cache,
                        of,
                        facts,
                        inv,
                    );
                    joiner.barriers.insert(of, n);
                    n
                }
            };
            node.filter(|&n| n != first).map(|n| Need {
                step: n,
                on_finish: false,
            })
        }
    }
}

/// Kahn's order of the graph, or the error naming the steps on one cycle.
fn order_graph(g: &mut Graph, stage: &Stage<'_, '_>) -> Result<Vec<u32>, PlanError> {
    g.order().map_err(|cycle| {
        let ids: Vec<String> = cycle
            .iter()
            .chain(cycle.first())
            .map(|&i| g.id_of(i, stage.pb, stage.facts))
            .collect();
        PlanError::Cycle(ids.join(" -> "))
    })
}

/// The graph's nodes in order: each one's phase and needs (taken out of the graph), and
/// each phase's totals.
struct Ordered {
    /// Per step: the index of its phase.
    phase_of: Vec<u32>,
    /// Per phase.
    totals: Vec<PhaseTotals>,
    /// Per step, creation indices (renumbered when the step is assembled).
    needs: Vec<Vec<Need>>,
}

fn take_needs(g: &mut Graph, pb: &Playbook, order: &[u32]) -> Ordered {
    let n = order.len();
    let mut phase_of = Vec::with_capacity(n);
    let mut totals = vec![PhaseTotals::default(); pb.phases.len()];
    let mut needs: Vec<Vec<Need>> = Vec::with_capacity(n);
    for &old in order {
        let node = &mut g.nodes[old as usize];
        phase_of.push(node.phase);
        if let What::Action { action, .. } = node.what {
            let ps = &mut totals[node.phase as usize];
            ps.steps += 1;
            ps.estimate_s += pb.phases[node.phase as usize].actions[action as usize].estimate_s;
        }
        needs.push(std::mem::take(&mut node.needs));
    }
    Ordered {
        phase_of,
        totals,
        needs,
    }
}

/// The plan's steps in their final order, and the placeholders their arguments had no
/// value for.
struct MadeSteps {
    steps: Vec<Step>,
    missing: Vec<Refusal>,
}

/// Makes the steps in their final order, in a pipeline over two threads: a worker makes
/// most of what each step owns on the heap (id, bound guard and check), this thread the
/// arguments, and it assembles the steps straight into the plan's vector.
fn make_steps(g: &Graph, stage: &Stage<'_, '_>, order: &[u32], needs: Vec<Vec<Need>>) -> MadeSteps {
    let (inv, pb) = (stage.inv, stage.pb);
    let n = order.len();
    let assembler = Assembler::new(pb, inv);
    let mut steps = Vec::with_capacity(n);
    let mut needs = needs.into_iter();
    let mut missing = Vec::new();
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
        let mut maker = Maker::new(stage.facts, pb);
        match worker {
            Some(worker) => {
                // The arguments are made here, to share the work evenly.
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
            }
            None => {
                for &old in order {
                    let parts = maker.parts(g, old);
                    let args = maker.args(g, old);
                    let needs = needs.next().unwrap_or_default();
                    steps.push(assembler.step(g, old, parts, args, needs));
                }
            }
        }
        missing = maker.missing;
    });
    MadeSteps { steps, missing }
}

/// The step index and the estimate, made on two threads.
struct Scheduled {
    index: StepIndex,
    estimate: crate::plan::Estimate,
}

fn schedule(
    steps: &[Step],
    pb: &Playbook,
    phase_of: &[u32],
    host_slots: usize,
    window: Option<Window>,
) -> Scheduled {
    let phase_limits: Vec<Option<u32>> = pb.phases.iter().map(|p| p.max_parallel).collect();
    std::thread::scope(|s| {
        let index = s.spawn(|| StepIndex::build(steps));
        let estimate = estimate(
            steps,
            &estimate::Limits {
                global: pb.max_parallel,
                endpoints: &pb.endpoint_limits,
                phases: &phase_limits,
                phase_of,
                host_slots,
            },
            window,
        );
        Scheduled {
            index: index
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            estimate,
        }
    })
}

/// Every skipped host in phase order, and how many each phase skipped.
struct SkippedSteps {
    skipped: Vec<Skipped>,
    per_phase: Vec<u32>,
}

fn flatten_skipped(by_phase: Vec<Vec<Skipped>>) -> SkippedSteps {
    let mut skipped = Vec::with_capacity(by_phase.iter().map(Vec::len).sum());
    let per_phase = by_phase.iter().map(|s| s.len() as u32).collect();
    for s in by_phase {
        skipped.extend(s);
    }
    SkippedSteps { skipped, per_phase }
}

/// What the phases' summaries count, per phase (by index).
struct PhaseCounts {
    wave_sizes: Vec<BTreeMap<u32, u32>>,
    totals: Vec<PhaseTotals>,
    skipped: Vec<u32>,
}

/// Each phase's summary: hosts, steps, waves with their budgets and gates, rollout policy.
fn phase_infos(
    stage: &Stage<'_, '_>,
    steps: &[Step],
    index: &StepIndex,
    counts: PhaseCounts,
) -> Vec<PhaseInfo> {
    let pb = stage.pb;
    let mut phases = Vec::with_capacity(pb.phases.len());
    for (pi, wave_sizes) in counts.wave_sizes.into_iter().enumerate() {
        let phase = &pb.phases[pi];
        let hosts = stage.members[pi]
            .as_ref()
            .map(|m| m.targets.len())
            .unwrap_or(0) as u32;
        let r = phase.rollout.as_ref();
        let waves = wave_sizes
            .iter()
            .map(|(&w, &n)| WaveInfo {
                index: w,
                hosts: n,
                max_failures: r
                    .and_then(|r| r.max_failures)
                    .map(|b| b.absolute(n as usize) as u32),
                gate: index.get(steps, &format!("gate/{}/wave-{w}", phase.name)),
            })
            .collect();
        phases.push(PhaseInfo {
            name: phase.name.clone(),
            description: phase.description.clone(),
            hosts,
            steps: counts.totals[pi].steps,
            skipped: counts.skipped[pi],
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
            estimate_s: counts.totals[pi].estimate_s,
        });
    }
    phases
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
