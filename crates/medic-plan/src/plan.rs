//! The sealed plan: built once by [`crate::build_plan`], never mutated afterwards.
//!
//! Fields are private to this crate; readers get slices and references, so a plan that was
//! rendered for the change board is exactly the plan the executor walks.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use medic_model::{Cond, Platform, Retry};

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
    pub role: &'static str,
    pub relay_group: Option<String>,
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
    pub(crate) phases: Vec<PhaseInfo>,
    pub(crate) estimate: Estimate,
    pub(crate) index: HashMap<String, u32>,
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
        self.index.get(id).copied()
    }
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
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
    pub fn host_name(&self, step: &Step) -> Option<&str> {
        step.host.map(|h| self.hosts[h as usize].name.as_str())
    }

    /// Names the hosts whose digests differ between two plans (added, removed or changed).
    pub fn drifted_hosts(&self, other: &Plan) -> Vec<String> {
        let mut out = Vec::new();
        for (h, d) in &self.host_digests {
            if other.host_digests.get(h) != Some(d) {
                out.push(h.clone());
            }
        }
        for h in other.host_digests.keys() {
            if !self.host_digests.contains_key(h) {
                out.push(h.clone());
            }
        }
        out.sort();
        out.dedup();
        out
    }
}
