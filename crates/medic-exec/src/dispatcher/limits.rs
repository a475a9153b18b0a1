//! The nested concurrency limits (global, phase, endpoint, relay group, one step per
//! host) as one set of counters: a step [`Slots::fits`], [`Slots::take`]s its slots when it
//! starts and [`Slots::release`]s the same ones when it ends. Built once per run; steps,
//! phases, endpoints and groups are indices into flat vectors (no per-step allocation).

use std::collections::HashMap;

use medic_plan::Plan;

/// "No phase / endpoint / group": a step outside one is not counted in it.
pub(crate) const NO: u16 = u16::MAX;

pub(crate) struct Slots {
    global: u32,
    running: u32,
    /// Per step.
    phase_of: Vec<u16>,
    endpoint_of: Vec<u16>,
    host_of: Vec<Option<u32>>,
    /// Per phase.
    phase_limit: Vec<Option<u32>>,
    phase_running: Vec<u32>,
    /// Per endpoint.
    endpoint_limit: Vec<u32>,
    endpoint_running: Vec<u32>,
    /// Per host.
    group_of_host: Vec<u16>,
    host_busy: Vec<bool>,
    /// Per relay group.
    group_limit: Option<u32>,
    group_running: Vec<u32>,
}

impl Slots {
    pub(crate) fn new(plan: &Plan, max_per_group: Option<u32>) -> Slots {
        let n = plan.steps().len();
        let mut phase_ix: HashMap<&str, u16> = HashMap::new();
        let mut phase_limit = Vec::new();
        for p in plan.phases() {
            phase_ix.insert(p.name.as_str(), phase_limit.len() as u16);
            phase_limit.push(p.max_parallel);
        }
        let mut endpoint_ix: HashMap<&str, u16> = HashMap::new();
        let mut endpoint_limit = Vec::new();
        for (e, lim) in plan.endpoint_limits() {
            endpoint_ix.insert(e.as_str(), endpoint_limit.len() as u16);
            endpoint_limit.push(*lim);
        }
        let mut group_ix: HashMap<&str, u16> = HashMap::new();
        let group_of_host: Vec<u16> = plan
            .hosts()
            .iter()
            .map(|h| match &h.relay_group {
                Some(g) => {
                    let next = group_ix.len() as u16;
                    *group_ix.entry(g.as_str()).or_insert(next)
                }
                None => NO,
            })
            .collect();
        let mut phase_of = Vec::with_capacity(n);
        let mut endpoint_of = Vec::with_capacity(n);
        let mut host_of = Vec::with_capacity(n);
        for s in plan.steps() {
            phase_of.push(phase_ix.get(&*s.phase).copied().unwrap_or(NO));
            endpoint_of.push(
                s.endpoint
                    .as_deref()
                    .and_then(|e| endpoint_ix.get(e).copied())
                    .unwrap_or(NO),
            );
            host_of.push(s.host);
        }
        Slots {
            global: plan.max_parallel(),
            running: 0,
            phase_of,
            endpoint_of,
            host_of,
            phase_running: vec![0; phase_limit.len()],
            phase_limit,
            endpoint_running: vec![0; endpoint_limit.len()],
            endpoint_limit,
            host_busy: vec![false; group_of_host.len()],
            group_of_host,
            group_limit: max_per_group,
            group_running: vec![0; group_ix.len()],
        }
    }

    /// The phase index of step `i` ([`NO`] for none).
    pub(crate) fn phase_of(&self, i: u32) -> u16 {
        self.phase_of[i as usize]
    }

    pub(crate) fn phase_limit(&self, p: u16) -> Option<u32> {
        self.phase_limit[p as usize]
    }

    pub(crate) fn running(&self) -> u32 {
        self.running
    }

    /// Global slots left.
    pub(crate) fn free(&self) -> u32 {
        self.global.saturating_sub(self.running)
    }

    /// Whether step `i` fits every limit now.
    pub(crate) fn fits(&self, i: u32) -> bool {
        let i = i as usize;
        if self.running >= self.global {
            return false;
        }
        let p = self.phase_of[i];
        if p != NO
            && let Some(lim) = self.phase_limit[p as usize]
            && self.phase_running[p as usize] >= lim
        {
            return false;
        }
        let e = self.endpoint_of[i];
        if e != NO && self.endpoint_running[e as usize] >= self.endpoint_limit[e as usize] {
            return false;
        }
        if let Some(h) = self.host_of[i] {
            if self.host_busy[h as usize] {
                return false;
            }
            let g = self.group_of_host[h as usize];
            if g != NO
                && let Some(lim) = self.group_limit
                && self.group_running[g as usize] >= lim
            {
                return false;
            }
        }
        true
    }

    /// Takes step `i`'s slots (it starts).
    pub(crate) fn take(&mut self, i: u32) {
        self.apply(i, true);
    }

    /// Gives back what [`Slots::take`] took (the step ended).
    pub(crate) fn release(&mut self, i: u32) {
        self.apply(i, false);
    }

    fn apply(&mut self, i: u32, take: bool) {
        fn bump(n: &mut u32, take: bool) {
            *n = if take { *n + 1 } else { n.saturating_sub(1) };
        }
        let i = i as usize;
        bump(&mut self.running, take);
        let p = self.phase_of[i];
        if p != NO {
            bump(&mut self.phase_running[p as usize], take);
        }
        let e = self.endpoint_of[i];
        if e != NO {
            bump(&mut self.endpoint_running[e as usize], take);
        }
        if let Some(h) = self.host_of[i] {
            self.host_busy[h as usize] = take;
            let g = self.group_of_host[h as usize];
            if g != NO {
                bump(&mut self.group_running[g as usize], take);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        let inv = "manager: { name: dsm, address: 10.0.0.1, version: \"20.0.463\" }\nrelay_groups:\n  - { name: g1 }\nhosts:\n  - { name: a, address: 10.0.1.1, platform: linux, agent_version: \"20.0.0-1\", relay_group: g1 }\n  - { name: b, address: 10.0.1.2, platform: linux, agent_version: \"20.0.0-1\", relay_group: g1 }\n  - { name: c, address: 10.0.1.3, platform: linux, agent_version: \"20.0.0-1\" }\n";
        let text = "name: t\nmax_parallel: 2\ndefaults: { driver: local, timeout: 1m, estimate: 1m }\nphases:\n  - name: p\n    select: { roles: [agent] }\n    actions: [{ action: act-x }, { action: act-y }]\n";
        let inv = medic_config::load_inventory("i.yaml", inv).expect("inventory");
        let pb = medic_config::load_playbook("p.yaml", text, &[]).expect("playbook");
        medic_plan::build_plan(&inv, &pb, text, None).expect("plan")
    }

    #[test]
    fn one_step_per_host_per_group_and_globally_and_release_gives_back_what_take_took() {
        let plan = plan();
        let mut slots = Slots::new(&plan, Some(1));
        let on = |host: &str, action: &str| -> u32 {
            let i = plan
                .steps()
                .iter()
                .position(|s| plan.host_name(s) == Some(host) && &*s.action == action)
                .expect("step");
            i as u32
        };
        let (ax, ay, bx, cx) = (
            on("a", "act-x"),
            on("a", "act-y"),
            on("b", "act-x"),
            on("c", "act-x"),
        );
        assert!(slots.fits(ax));
        slots.take(ax);
        assert!(!slots.fits(ay), "one step per host");
        assert!(!slots.fits(bx), "one step per relay group");
        assert!(slots.fits(cx), "no group, another host");
        slots.take(cx);
        assert_eq!(slots.free(), 0);
        slots.release(cx);
        assert!(!slots.fits(bx), "the group's slot is still taken");
        slots.release(ax);
        assert!(slots.fits(bx) && slots.fits(ay));
        assert_eq!(slots.running(), 0);
    }
}
