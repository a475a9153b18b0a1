//! The sealed plan: built once by [`crate::build_plan`], never mutated afterwards.
//!
//! Fields are private to this crate; readers get slices and references, so a plan that was
//! rendered for the change board is exactly the plan the executor walks.

use std::collections::BTreeMap;
use std::sync::Arc;

use medic_model::{Become, Cond, Platform, Retry, Role};

use crate::window::Window;

/// A host as the drivers need it: where and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanHost {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: Option<String>,
    /// `None` for the Manager.
    pub platform: Option<Platform>,
    pub role: Role,
    pub relay_group: Option<String>,
    /// The inventory's `os` (free text, e.g. "Red Hat Enterprise 9 (64 bit)"): the ssh
    /// driver picks the agent package from it and the host's `/etc/os-release`.
    pub os: Option<String>,
    /// The inventory's `become` (host, else top level); `None`: the driver's default.
    pub r#become: Option<Become>,
    /// The host's zone; `None`: the default zone (and always for the Manager).
    pub zone: Option<String>,
}

impl PlanHost {
    /// The zone's name, `default` included.
    pub fn zone_name(&self) -> &str {
        self.zone.as_deref().unwrap_or(medic_model::DEFAULT_ZONE)
    }
}

/// What makes a plan a slice (`medic plan --slice ZONE`): the plan it was cut from and
/// the evidence of what that plan's run did before the zone's steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceInfo {
    pub zone: String,
    /// The main plan's fingerprint and seal digest.
    pub parent_fingerprint: String,
    pub parent_seal: String,
    /// Every step outside the zone that the zone's steps wait for, directly or not, as the
    /// main run's journal recorded it, in plan order.
    pub evidence: Vec<Evidence>,
}

/// One step the main run did before the slice was cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    pub id: String,
    pub phase: String,
    pub host: Option<String>,
    pub action: String,
    pub args: Vec<(String, String)>,
    /// `succeeded`, `failed` or `skipped`, as the main journal has it.
    pub state: String,
    pub detail: String,
    /// The `step.observed` facts of its last attempt (JSON), empty when none.
    pub observed: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepGuard {
    pub probe: Option<String>,
    /// Bound: only `facts.` and `needs.` paths are left.
    pub when: Cond,
    pub describe: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepCheck {
    pub probe: String,
    pub when: Cond,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GateSpec {
    pub approval: bool,
    pub pause_s: u64,
    /// The rollout wave this gate opens (0-based).
    pub opens_wave: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepKind {
    /// Runs an action on a host (or on the Manager).
    Action,
    /// Joins many predecessors into one node so that edges stay linear in the fleet size.
    Barrier,
    /// Between two rollout waves: budget check, soak pause, approval.
    Gate(GateSpec),
}

/// An edge: the step at index `step` must be done first; with `on_finish`, any terminal
/// outcome will do, otherwise it must succeed (or be skipped by its guard).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Need {
    pub step: u32,
    pub on_finish: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub id: String,
    pub phase: Arc<str>,
    pub host: Option<u32>,
    pub action: Arc<str>,
    pub kind: StepKind,
    pub driver: Arc<str>,
    pub args: Vec<(String, String)>,
    pub needs: Vec<Need>,
    pub wave: Option<u32>,
    pub guard: Option<StepGuard>,
    pub check: Option<StepCheck>,
    pub estimate_s: u64,
    pub timeout_s: u64,
    pub retry: Retry,
    pub endpoint: Option<Arc<str>>,
    pub soft_fail: bool,
    pub verifies: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub host: String,
    pub phase: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaveInfo {
    pub index: u32,
    pub hosts: u32,
    /// Failures tolerated in this wave, as an absolute number of hosts.
    pub max_failures: Option<u32>,
    /// The gate that opens this wave, if any (index into the steps).
    pub gate: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhaseInfo {
    pub name: String,
    pub description: Option<String>,
    pub hosts: u32,
    pub steps: u32,
    pub skipped: u32,
    pub waves: Vec<WaveInfo>,
    /// Cumulative failure budget for the whole phase, absolute.
    pub max_failures_total: Option<u32>,
    pub strict: bool,
    pub approval: bool,
    pub pause_s: u64,
    pub max_parallel: Option<u32>,
    pub point_of_no_return: bool,
    pub backout: Option<String>,
    pub guard: Option<String>,
    pub estimate_s: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Estimate {
    pub makespan_s: u64,
    pub fits_window: Option<bool>,
    pub window: Option<Window>,
    /// Sum of all step estimates: what the run would take one step at a time.
    pub serial_s: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub(crate) playbook: String,
    pub(crate) fingerprint: String,
    pub(crate) host_digests: BTreeMap<String, String>,
    pub(crate) params: BTreeMap<String, String>,
    pub(crate) example_params: Vec<String>,
    pub(crate) max_parallel: u32,
    pub(crate) endpoint_limits: BTreeMap<String, u32>,
    pub(crate) hosts: Vec<PlanHost>,
    pub(crate) steps: Vec<Step>,
    pub(crate) skipped: Vec<Skipped>,
    /// What the operator should know before approving the plan (each message once).
    pub(crate) warnings: Vec<String>,
    pub(crate) phases: Vec<PhaseInfo>,
    pub(crate) estimate: Estimate,
    pub(crate) index: StepIndex,
    /// The zones nothing reaches (inventory `air_gapped: true`), sorted.
    pub(crate) air_gapped: Vec<String>,
    /// Set on a slice of another plan.
    pub(crate) slice: Option<SliceInfo>,
}

impl Plan {
    pub fn playbook(&self) -> &str {
        &self.playbook
    }
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
    /// One digest per host (and the Manager) of the facts the plan was built from.
    pub fn host_digests(&self) -> &BTreeMap<String, String> {
        &self.host_digests
    }
    pub fn params(&self) -> &BTreeMap<String, String> {
        &self.params
    }
    /// Parameters still at a default the playbook marks as an example to confirm.
    pub fn example_params(&self) -> &[String] {
        &self.example_params
    }
    pub fn max_parallel(&self) -> u32 {
        self.max_parallel
    }
    pub fn endpoint_limits(&self) -> &BTreeMap<String, u32> {
        &self.endpoint_limits
    }
    pub fn hosts(&self) -> &[PlanHost] {
        &self.hosts
    }
    pub fn host(&self, i: u32) -> &PlanHost {
        &self.hosts[i as usize]
    }
    /// Steps in a topological order: every step comes after all it needs.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }
    pub fn step(&self, i: u32) -> &Step {
        &self.steps[i as usize]
    }
    pub fn step_index(&self, id: &str) -> Option<u32> {
        self.index.get(&self.steps, id)
    }
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
    pub fn phases(&self) -> &[PhaseInfo] {
        &self.phases
    }
    pub fn phase_info(&self, name: &str) -> Option<&PhaseInfo> {
        self.phases.iter().find(|p| p.name == name)
    }
    pub fn estimate(&self) -> &Estimate {
        &self.estimate
    }
    /// The zones whose steps the main run leaves to a slice, sorted.
    pub fn air_gapped_zones(&self) -> &[String] {
        &self.air_gapped
    }
    /// What this plan is a slice of, when it is one.
    pub fn slice_info(&self) -> Option<&SliceInfo> {
        self.slice.as_ref()
    }
    pub fn host_name(&self, step: &Step) -> Option<&str> {
        step.host.map(|h| self.hosts[h as usize].name.as_str())
    }
    /// The steps a person counts: actions and gates (barriers are the graph's own).
    pub fn size(&self) -> PlanSize {
        let mut size = PlanSize::default();
        for s in &self.steps {
            match s.kind {
                StepKind::Action => size.steps += 1,
                StepKind::Gate(_) => size.gates += 1,
                StepKind::Barrier => {}
            }
        }
        size
    }

    /// Names the hosts whose digests differ between two plans (added, removed or changed).
    pub fn drifted_hosts(&self, other: &Plan) -> Vec<String> {
        self.drifted_hosts_from(&other.host_digests)
    }

    /// Names the hosts whose digests differ from `digests` (as
    /// [`crate::fingerprint_inputs`] makes them): added, removed or changed.
    pub fn drifted_hosts_from(&self, digests: &BTreeMap<String, String>) -> Vec<String> {
        let mut out = Vec::new();
        for (h, d) in &self.host_digests {
            if digests.get(h) != Some(d) {
                out.push(h.clone());
            }
        }
        for h in digests.keys() {
            if !self.host_digests.contains_key(h) {
                out.push(h.clone());
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// Step ids to step positions: an open-addressing table of positions, the ids themselves
/// staying in the steps (no second copy of every id). Where two steps share an id, the later
/// one wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct StepIndex {
    /// A power of two long, at most half full; `u32::MAX` is an empty slot.
    slots: Vec<u32>,
}

const EMPTY: u32 = u32::MAX;

fn id_hash(id: &str) -> u64 {
    // FxHash-style, a word at a time; deterministic, so equal plans have equal tables.
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h: u64 = id.len() as u64;
    let mut chunks = id.as_bytes().chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    for &b in chunks.remainder() {
        h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
    }
    // The table takes the low bits, which a product alone mixes poorly: fold the high
    // bits in.
    h ^= h >> 29;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^ (h >> 32)
}

impl StepIndex {
    pub(crate) fn build(steps: &[Step]) -> Self {
        let len = (steps.len() * 2).max(8).next_power_of_two();
        let mask = len - 1;
        let mut slots = vec![EMPTY; len];
        for (i, s) in steps.iter().enumerate() {
            let mut at = id_hash(&s.id) as usize & mask;
            loop {
                let cur = slots[at];
                if cur == EMPTY || steps[cur as usize].id == s.id {
                    slots[at] = i as u32;
                    break;
                }
                at = (at + 1) & mask;
            }
        }
        StepIndex { slots }
    }

    pub(crate) fn get(&self, steps: &[Step], id: &str) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut at = id_hash(id) as usize & mask;
        loop {
            let cur = self.slots[at];
            if cur == EMPTY {
                return None;
            }
            if steps.get(cur as usize).is_some_and(|s| s.id == id) {
                return Some(cur);
            }
            at = (at + 1) & mask;
        }
    }
}

/// How big a plan is, counted one way everywhere: "51 steps and 3 gates".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanSize {
    /// Actions on hosts (and on the Manager).
    pub steps: usize,
    /// Go/no-go points between rollout waves.
    pub gates: usize,
}

impl std::fmt::Display for PlanSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        write!(
            f,
            "{} step{} and {} gate{}",
            self.steps,
            plural(self.steps),
            self.gates,
            plural(self.gates)
        )
    }
}
