//! Slices for air-gapped zones: which steps of a sealed plan belong to a zone nothing
//! reaches, and the sub-plan (`medic plan --slice ZONE`) that runs them there.
//!
//! A zone's part of a plan is its hosts' actions and every barrier or gate on a path
//! between two of them (those cannot finish before the zone's own steps have run, so the
//! slice runs them too). The main run holds exactly these steps until a merge brings their
//! results back. What they wait for outside the zone must be done before the slice is cut:
//! it is carried in the slice as evidence. A plan where the zone's steps wait for an action
//! outside the zone that itself waits for the zone cannot be sliced (the zone could not run
//! alone): [`SliceError::Entangled`] names both.

use std::collections::BTreeMap;

use crate::plan::{Evidence, Need, PhaseInfo, Plan, SliceInfo, Step, StepIndex, StepKind};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SliceError {
    #[error("zone `{zone}` is not air-gapped in this plan (air-gapped: {known})")]
    NotAirGapped { zone: String, known: String },
    #[error("zone `{zone}` has no step in this plan")]
    Empty { zone: String },
    #[error(
        "step `{step}` of zone `{zone}` waits for `{outside}` (directly or not), outside the zone, which itself waits for the zone's own steps: the zone cannot run alone"
    )]
    Entangled {
        zone: String,
        step: String,
        outside: String,
    },
    #[error("this plan is already a slice (of zone `{zone}`)")]
    AlreadySlice { zone: String },
}

/// Which steps of `plan` belong to `zone`'s slice (one flag per step), and which steps
/// outside it the slice waits for, directly or not (the evidence, in plan order).
pub fn zone_members(plan: &Plan, zone: &str) -> Result<(Vec<bool>, Vec<u32>), SliceError> {
    let n = plan.steps.len();
    let in_zone: Vec<bool> = plan
        .steps
        .iter()
        .map(|s| {
            s.kind == StepKind::Action
                && s.host
                    .is_some_and(|h| plan.hosts[h as usize].zone_name() == zone)
        })
        .collect();
    // Reached from a zone action (forward, steps are in topological order) and reaching
    // one (backward).
    let mut from = vec![false; n];
    for (i, s) in plan.steps.iter().enumerate() {
        from[i] = s
            .needs
            .iter()
            .any(|nd| in_zone[nd.step as usize] || from[nd.step as usize]);
    }
    let mut to = vec![false; n];
    for i in (0..n).rev() {
        if in_zone[i] || to[i] {
            for nd in &plan.steps[i].needs {
                to[nd.step as usize] = true;
            }
        }
    }
    let mut member = vec![false; n];
    for i in 0..n {
        let between = from[i] && to[i];
        if in_zone[i] || (between && plan.steps[i].kind != StepKind::Action) {
            member[i] = true;
        } else if between {
            // An action of another zone between two of this zone's steps.
            let step = (i..n)
                .find(|&j| in_zone[j] && reaches(plan, j, i))
                .map_or_else(|| plan.steps[i].id.clone(), |j| plan.steps[j].id.clone());
            return Err(SliceError::Entangled {
                zone: zone.to_owned(),
                step,
                outside: plan.steps[i].id.clone(),
            });
        }
    }
    if !in_zone.iter().any(|b| *b) {
        return Err(SliceError::Empty {
            zone: zone.to_owned(),
        });
    }
    // Everything outside the slice that a member waits for, directly or not.
    let mut up = vec![false; n];
    for i in (0..n).rev() {
        if member[i] || up[i] {
            for nd in &plan.steps[i].needs {
                if !member[nd.step as usize] {
                    up[nd.step as usize] = true;
                }
            }
        }
    }
    let evidence = (0..n as u32).filter(|&i| up[i as usize]).collect();
    Ok((member, evidence))
}

/// Whether step `from` waits for step `target`, directly or not.
fn reaches(plan: &Plan, from: usize, target: usize) -> bool {
    let mut stack = vec![from];
    let mut seen = vec![false; plan.steps.len()];
    while let Some(i) = stack.pop() {
        if i == target {
            return true;
        }
        for nd in &plan.steps[i].needs {
            let j = nd.step as usize;
            if j >= target && !seen[j] {
                seen[j] = true;
                stack.push(j);
            }
        }
    }
    false
}

/// The steps the main run leaves to slices: for each step, the air-gapped zone whose
/// slice runs it. A slice itself holds nothing (it is the zone's run).
pub fn held_steps(plan: &Plan) -> Vec<Option<&str>> {
    let mut held = vec![None; plan.steps.len()];
    if plan.slice.is_some() {
        return held;
    }
    for z in &plan.air_gapped {
        // A zone that cannot be sliced still holds its own actions: the main run never
        // reaches them.
        let member = match zone_members(plan, z) {
            Ok((m, _)) => m,
            Err(_) => plan
                .steps
                .iter()
                .map(|s| {
                    s.kind == StepKind::Action
                        && s.host
                            .is_some_and(|h| plan.hosts[h as usize].zone_name() == z)
                })
                .collect(),
        };
        for (i, m) in member.into_iter().enumerate() {
            if m && held[i].is_none() {
                held[i] = Some(z.as_str());
            }
        }
    }
    held
}

/// What the main run's journal says of one evidence step, for [`make_slice`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Done {
    pub state: String,
    pub detail: String,
    pub observed: String,
}

/// The slice of `plan` for `zone`: its member steps (needs outside it dropped, since they
/// are done), its hosts, and the evidence `done` gives for each step it waits for (in
/// plan order). `done` must have an entry for every evidence step ([`zone_members`]).
pub fn make_slice(
    plan: &Plan,
    parent_seal: &str,
    zone: &str,
    done: &dyn Fn(&Step) -> Done,
) -> Result<Plan, SliceError> {
    if let Some(s) = &plan.slice {
        return Err(SliceError::AlreadySlice {
            zone: s.zone.clone(),
        });
    }
    if !plan.air_gapped.iter().any(|z| z == zone) {
        return Err(SliceError::NotAirGapped {
            zone: zone.to_owned(),
            known: if plan.air_gapped.is_empty() {
                "none".to_owned()
            } else {
                plan.air_gapped.join(", ")
            },
        });
    }
    let (member, up) = zone_members(plan, zone)?;
    let mut new_ix = vec![u32::MAX; plan.steps.len()];
    let mut host_ix: BTreeMap<u32, u32> = BTreeMap::new();
    for (i, s) in plan.steps.iter().enumerate() {
        if member[i]
            && let Some(h) = s.host
        {
            host_ix.insert(h, 0);
        }
    }
    let hosts: Vec<_> = host_ix
        .keys()
        .map(|&h| plan.hosts[h as usize].clone())
        .collect();
    for (k, (_, v)) in host_ix.iter_mut().enumerate() {
        *v = k as u32;
    }
    let mut steps = Vec::new();
    for (i, s) in plan.steps.iter().enumerate() {
        if !member[i] {
            continue;
        }
        new_ix[i] = steps.len() as u32;
        let mut st = s.clone();
        st.host = s.host.map(|h| host_ix[&h]);
        st.needs = s
            .needs
            .iter()
            .filter(|nd| member[nd.step as usize])
            .map(|nd| Need {
                step: new_ix[nd.step as usize],
                on_finish: nd.on_finish,
            })
            .collect();
        steps.push(st);
    }
    let names: std::collections::HashSet<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let phases: Vec<PhaseInfo> = plan
        .phases
        .iter()
        .map(|p| {
            let mut p = p.clone();
            for w in &mut p.waves {
                w.gate = w
                    .gate
                    .map(|g| new_ix[g as usize])
                    .filter(|g| *g != u32::MAX);
            }
            p
        })
        .collect();
    let evidence = up
        .into_iter()
        .map(|i| {
            let s = &plan.steps[i as usize];
            let d = done(s);
            Evidence {
                id: s.id.clone(),
                phase: s.phase.to_string(),
                host: plan.host_name(s).map(str::to_owned),
                action: s.action.to_string(),
                args: s.args.clone(),
                state: d.state,
                detail: d.detail,
                observed: d.observed,
            }
        })
        .collect();
    let index = StepIndex::build(&steps);
    let mut out = Plan {
        playbook: plan.playbook.clone(),
        fingerprint: plan.fingerprint.clone(),
        host_digests: plan.host_digests.clone(),
        params: plan.params.clone(),
        example_params: plan.example_params.clone(),
        max_parallel: plan.max_parallel,
        endpoint_limits: plan.endpoint_limits.clone(),
        hosts,
        steps,
        skipped: plan
            .skipped
            .iter()
            .filter(|s| names.contains(&s.host))
            .cloned()
            .collect(),
        warnings: plan.warnings.clone(),
        phases,
        estimate: plan.estimate.clone(),
        index,
        air_gapped: plan.air_gapped.clone(),
        slice: Some(SliceInfo {
            zone: zone.to_owned(),
            parent_fingerprint: plan.fingerprint.clone(),
            parent_seal: parent_seal.to_owned(),
            evidence,
        }),
    };
    // The zone's own estimate, under the same limits and window.
    let phase_limits: Vec<Option<u32>> = out.phases.iter().map(|p| p.max_parallel).collect();
    let phase_of: Vec<u32> = out
        .steps
        .iter()
        .map(|s| {
            out.phases
                .iter()
                .position(|p| *p.name == *s.phase)
                .unwrap_or(0) as u32
        })
        .collect();
    out.estimate = crate::estimate::estimate(
        &out.steps,
        &crate::estimate::Limits {
            global: out.max_parallel,
            endpoints: &out.endpoint_limits,
            phases: &phase_limits,
            phase_of: &phase_of,
            host_slots: out.hosts.len(),
        },
        plan.estimate.window,
    );
    Ok(out)
}
