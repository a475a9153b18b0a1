//! Makes each full [`Step`] in its final place once the order is known, computing once
//! what only depends on the phase, the action and the target's class.

use super::*;

/// Steps are made on two threads from this many.
pub(super) const PIPELINE_FROM: usize = 8192;
/// Steps per message between the two threads.
pub(super) const CHUNK: usize = 2048;

/// What a step owns on the heap, made by [`Maker`] (but its arguments).
pub(super) struct Parts {
    pub(super) id: String,
    pub(super) guard: Option<StepGuard>,
    pub(super) check: Option<StepCheck>,
    pub(super) soft_fail: bool,
}

/// Makes the parts of steps that depend on their target, computing once what only depends
/// on the phase, the action and the target's platform.
pub(super) struct Maker<'f, 'a> {
    pub(super) facts: &'f Facts<'a>,
    pub(super) pb: &'a Playbook,
    pub(super) phases: Vec<PhaseConsts>,
    /// Arguments whose placeholders had no value.
    pub(super) missing: Vec<Refusal>,
}

/// Per class (platform and version line): computed once each.
pub(super) type PerPlatform<T> = ByClass<T>;

pub(super) struct PhaseConsts {
    /// Whether the guard, once bound, is the same for every target of a platform.
    pub(super) guard_const: bool,
    pub(super) guard: PerPlatform<Option<StepGuard>>,
    pub(super) soft_fail_const: bool,
    pub(super) soft_fail: PerPlatform<bool>,
    pub(super) actions: Vec<ActionConsts>,
}

pub(super) struct ActionConsts {
    pub(super) args_const: bool,
    pub(super) args: PerPlatform<Vec<(String, String)>>,
    pub(super) check_const: bool,
    pub(super) check: PerPlatform<Option<StepCheck>>,
}

pub(super) fn cond_platform_only(c: &medic_model::Cond) -> bool {
    let mut paths = Vec::new();
    c.paths(&mut paths);
    paths.into_iter().all(platform_only)
}

pub(super) type Get<'g> = &'g mut dyn FnMut(&medic_model::Path) -> Option<medic_model::Value>;

impl<'f, 'a> Maker<'f, 'a> {
    pub(super) fn new(facts: &'f Facts<'a>, pb: &'a Playbook) -> Self {
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

    pub(super) fn parts(&mut self, g: &Graph, old: u32) -> Parts {
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

    pub(super) fn action(
        &mut self,
        pi: usize,
        t: Target,
        ai: u32,
        single: bool,
        nth: u32,
    ) -> Parts {
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
    pub(super) fn args(&mut self, g: &Graph, old: u32) -> Vec<(String, String)> {
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
pub(super) struct Assembler<'a> {
    pub(super) pb: &'a Playbook,
    pub(super) inv: &'a Inventory,
    /// Per phase: its name, and per action: action, driver, endpoint.
    pub(super) phases: Vec<PhaseNames>,
    pub(super) gate: Arc<str>,
    pub(super) barrier: Arc<str>,
    pub(super) none: Arc<str>,
}

/// A phase's shared names.
pub(super) struct PhaseNames {
    pub(super) name: Arc<str>,
    pub(super) actions: Vec<ActionNames>,
}

/// An action's shared names.
pub(super) struct ActionNames {
    pub(super) action: Arc<str>,
    pub(super) driver: Arc<str>,
    pub(super) endpoint: Option<Arc<str>>,
}

impl<'a> Assembler<'a> {
    pub(super) fn new(pb: &'a Playbook, inv: &'a Inventory) -> Self {
        Assembler {
            pb,
            inv,
            phases: pb
                .phases
                .iter()
                .map(|p| PhaseNames {
                    name: Arc::from(p.name.as_str()),
                    actions: p
                        .actions
                        .iter()
                        .map(|a| ActionNames {
                            action: Arc::from(a.action.as_str()),
                            driver: Arc::from(a.driver.as_str()),
                            endpoint: a.endpoint.as_deref().map(Arc::from),
                        })
                        .collect(),
                })
                .collect(),
            gate: Arc::from("gate"),
            barrier: Arc::from("barrier"),
            none: Arc::from("none"),
        }
    }

    pub(super) fn step(
        &self,
        g: &Graph,
        old: u32,
        p: Parts,
        args: Vec<(String, String)>,
        needs: Vec<Need>,
    ) -> Step {
        let node = &g.nodes[old as usize];
        let pi = node.phase as usize;
        let PhaseNames {
            name: phase_name,
            actions: names,
        } = &self.phases[pi];
        match node.what {
            What::Action {
                target,
                action,
                wave,
                ..
            } => {
                let phase = &self.pb.phases[pi];
                let a = &phase.actions[action as usize];
                let ActionNames {
                    action,
                    driver,
                    endpoint,
                } = &names[action as usize];
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
