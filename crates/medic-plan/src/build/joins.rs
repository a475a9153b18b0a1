//! `after` joins: which steps a join waits for, through one barrier node when there are
//! several.

use super::*;

/// For each phase (and role filter) that a relay-group join reads: the last steps of its
/// chains, by relay group, in rollout order.
#[derive(Default)]
pub(super) struct JoinCache<'a> {
    pub(super) by_group: HashMap<(usize, u8), HashMap<&'a str, Vec<u32>>>,
}

/// What a join waits for: phase `q`'s steps (in `group`, on hosts of `roles`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct JoinOf<'g> {
    pub(super) q: usize,
    pub(super) group: Option<&'g str>,
    pub(super) on_finish: bool,
    pub(super) roles: u8,
}

/// Bits of a join's host filter: roles, then platforms.
pub(super) const HOST_BITS: [(u8, &str); 5] = [
    (1, "relay"),
    (2, "agent"),
    (4, "manager"),
    (8, "linux"),
    (16, "windows"),
];
pub(super) const ROLE_BITS: u8 = 7;
pub(super) const PLATFORM_BITS: u8 = 24;

/// `after.roles` and `after.platforms` as bits; 0 is every target.
pub(super) fn host_mask(a: &medic_model::After) -> u8 {
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
pub(super) fn role_in(facts: &Facts<'_>, t: Target, mask: u8) -> bool {
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
pub(super) fn join_node<'a>(
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
            .filter(|m| role_in(facts, m.target, roles))
            .filter_map(|m| chains.get(q, host_slot(m.target, inv)).map(|c| c.last))
            .collect(),
        Some(gname) => {
            let by_group = joins.by_group.entry((q, roles)).or_insert_with(|| {
                let mut by: HashMap<&'a str, Vec<u32>> = HashMap::new();
                for member in &m.targets {
                    let t = &member.target;
                    if let Target::Host(h) = t
                        && role_in(facts, *t, roles)
                        && let Some(rg) = facts.host(*h).relay_group.as_deref()
                        && let Some(c) = chains.get(q, *h)
                    {
                        by.entry(rg).or_default().push(c.last);
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
