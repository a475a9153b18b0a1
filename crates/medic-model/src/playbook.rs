//! The validated playbook: typed parameters and phases.
//!
//! A phase selects hosts, runs actions on each, waits for other phases through joins and
//! rolls out in waves. The planner is generic over these types; what is specific to Deep
//! Security lives in the playbook file, not here.

use std::collections::BTreeMap;

use crate::cond::{Cond, FactType, Path, Value};
use crate::inventory::{Platform, Role};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamType {
    Scalar(FactType),
    /// One of a closed set of strings.
    Enum(Vec<String>),
}

impl ParamType {
    pub fn fact_type(&self) -> FactType {
        match self {
            ParamType::Scalar(t) => *t,
            ParamType::Enum(_) => FactType::Str,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            ParamType::Scalar(t) => t.as_str().to_owned(),
            ParamType::Enum(vs) => format!("one of {}", vs.join(", ")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: String,
    pub ty: ParamType,
    /// A per-platform parameter holds one value per platform (`fixed_build.linux`); a path
    /// `params.NAME` read for a host resolves to the host's platform.
    pub per_platform: bool,
    pub doc: Option<String>,
    /// The shipped default is an example the operator must confirm.
    pub example: bool,
}

/// Resolved parameter values, keyed `name` or `name.linux` / `name.windows`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    pub specs: Vec<ParamSpec>,
    pub values: BTreeMap<String, Value>,
    /// Keys the operator set with `--set` (the rest are defaults).
    pub set_by_operator: Vec<String>,
}

impl Params {
    pub fn spec(&self, name: &str) -> Option<&ParamSpec> {
        self.specs.iter().find(|s| s.name == name)
    }

    /// Looks `field` up (`fixed_build` or `fixed_build.linux`), resolving a per-platform
    /// parameter with `platform` when the platform was not written.
    pub fn get(&self, field: &str, platform: Option<Platform>) -> Option<&Value> {
        if let Some(v) = self.values.get(field) {
            return Some(v);
        }
        let spec = self.spec(field)?;
        if spec.per_platform {
            return self.values.get(&format!("{field}.{}", platform?.as_str()));
        }
        None
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    /// Empty = any role except the Manager.
    pub roles: Vec<Role>,
    pub platforms: Vec<Platform>,
    /// Any of these host groups.
    pub groups: Vec<String>,
    pub relay_groups: Vec<String>,
    /// Only hosts that got a step in one of these phases.
    pub planned_in: Vec<String>,
    pub when: Option<Cond>,
}

/// Text with `{path}` placeholders, such as `build {host.agent_version} is not affected`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pub parts: Vec<TemplatePart>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplatePart {
    Text(String),
    Path(Path),
}

impl Template {
    pub fn render(&self, get: &mut dyn FnMut(&Path) -> Option<Value>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                TemplatePart::Text(t) => out.push_str(t),
                TemplatePart::Path(path) => match get(path) {
                    Some(v) => out.push_str(&v.to_string()),
                    None => out.push_str("(unknown)"),
                },
            }
        }
        out
    }

    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.parts.iter().filter_map(|p| match p {
            TemplatePart::Path(p) => Some(p),
            TemplatePart::Text(_) => None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkipRule {
    pub when: Cond,
    pub reason: Template,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Attempts after the first.
    pub max: u32,
    /// First backoff in seconds; doubled each attempt, with jitter.
    pub backoff_s: u64,
}

/// Tells whether the work of an action is already done: run `probe`, then evaluate `when`
/// over the facts it returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub probe: String,
    pub when: Cond,
}

/// A run-time condition that decides whether a step acts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guard {
    /// The action to run first to learn `facts.*`; none when the guard reads `needs.*` only.
    pub probe: Option<String>,
    pub when: Cond,
    pub describe: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionSpec {
    pub action: String,
    pub driver: String,
    pub args: BTreeMap<String, Template>,
    pub timeout_s: u64,
    pub retry: Retry,
    pub estimate_s: u64,
    pub check: Option<Check>,
    /// Plan-time filter: the action applies to a host only if this holds.
    pub only: Option<Cond>,
    /// The shared endpoint the action talks to (e.g. `dsm-api`), for concurrency limits.
    pub endpoint: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Join {
    /// The step of the same host in the other phase.
    SameHost,
    /// Every step of the other phase whose host is in my relay group.
    SameRelayGroup,
    /// The step of my relay group's bundle source in the other phase.
    BundleSource,
    /// Every step of the other phase.
    All,
}

impl Join {
    pub fn as_str(self) -> &'static str {
        match self {
            Join::SameHost => "same-host",
            Join::SameRelayGroup => "same-relay-group",
            Join::BundleSource => "bundle-source",
            Join::All => "all",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AfterOn {
    /// The predecessor must succeed (or be skipped by its guard).
    Success,
    /// The predecessor must only have finished, whatever its outcome.
    Finish,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct After {
    pub phase: String,
    pub join: Join,
    pub on: AfterOn,
    /// Plan-time condition on parameters and settings: the edge exists only if it holds.
    pub when: Option<Cond>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaveSpec {
    Count(u32),
    /// 1..=100.
    Percent(u32),
    /// The phase's hosts in this host group that no earlier wave took.
    Group(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    Count(u32),
    Percent(u32),
}

impl Budget {
    /// The absolute number of failures tolerated among `n` steps.
    pub fn absolute(self, n: usize) -> usize {
        match self {
            Budget::Count(c) => c as usize,
            Budget::Percent(p) => n * p as usize / 100,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rollout {
    /// Batch sizes in order; the last one repeats until every host has a wave.
    pub waves: Vec<WaveSpec>,
    pub max_failures: Option<Budget>,
    pub max_failures_total: Option<Budget>,
    pub strict: bool,
    pub pause_s: u64,
    pub approval: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phase {
    pub name: String,
    pub description: Option<String>,
    pub select: Selector,
    pub skip: Vec<SkipRule>,
    pub actions: Vec<ActionSpec>,
    pub after: Vec<After>,
    pub guard: Option<Guard>,
    pub rollout: Option<Rollout>,
    pub max_parallel: Option<u32>,
    /// Plan-time condition per host: a failure there is repaired by a later phase, so it
    /// does not count against budgets nor fail the run by itself.
    pub soft_fail: Cond,
    /// This phase's success is the host's verified state.
    pub verifies: bool,
    pub point_of_no_return: bool,
    pub backout: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Playbook {
    pub name: String,
    pub description: Option<String>,
    pub params: Params,
    pub max_parallel: u32,
    pub endpoint_limits: BTreeMap<String, u32>,
    /// In file order; phase names are unique and the `after` graph is acyclic.
    pub phases: Vec<Phase>,
}

impl Playbook {
    pub fn phase(&self, name: &str) -> Option<&Phase> {
        self.phases.iter().find(|p| p.name == name)
    }
}
