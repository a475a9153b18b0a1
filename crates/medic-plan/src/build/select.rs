//! Who is in each phase: selectors, `refuse`, skip and `warn` rules, `requires_planned`,
//! the actions that apply to each member, and rollout waves.

use super::*;

/// A phase's members in rollout order, each with its wave and its applicable actions
/// (a range of `actions`).
pub(super) struct Members {
    pub(super) targets: Vec<Member>,
    pub(super) actions: Vec<u32>,
}

impl Members {
    pub(super) fn actions_of(&self, start: u32, len: u32) -> &[u32] {
        &self.actions[start as usize..(start + len) as usize]
    }
}

/// Phases ordered so that every `planned_in` phase is selected before the phases that read it.
pub(super) fn membership_order(pb: &Playbook, idx: &HashMap<&str, usize>) -> Vec<usize> {
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

/// One member of a phase.
#[derive(Clone, Copy)]
pub(super) struct Member {
    pub(super) target: Target,
    pub(super) wave: Option<u32>,
    /// Its applicable actions: `actions_len` entries of [`Members::actions`] from here.
    pub(super) actions_start: u32,
    pub(super) actions_len: u32,
}

/// Who is in a phase, and who was left out with a reason.
pub(super) struct Selection {
    pub(super) members: Members,
    /// By host index: whether the host is a member.
    pub(super) hosts_in: Vec<bool>,
    pub(super) manager_in: bool,
    pub(super) skipped: Vec<Skipped>,
}

pub(super) fn select(
    facts: &Facts<'_>,
    phase: &Phase,
    phase_idx: &HashMap<&str, usize>,
    member_sets: &[Vec<bool>],
    manager_in: &[bool],
    notes: &mut Notes,
) -> Selection {
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
    let mut targets: Vec<Member> = chosen
        .into_iter()
        .zip(waves)
        .map(|((target, actions_start, actions_len), wave)| Member {
            target,
            wave,
            actions_start,
            actions_len,
        })
        .collect();
    targets.sort_by_key(|m| (m.wave, m.target));
    Selection {
        members: Members { targets, actions },
        hosts_in: set,
        manager_in: mgr,
        skipped,
    }
}

/// Assigns rollout waves in inventory order; the last wave size repeats until every member
/// has one. A `{ group: G }` wave takes the members of G not taken yet.
pub(super) fn assign_waves(
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
