//! The validated playbook: typed parameters and phases.
//!
//! A phase selects hosts, runs actions on each, waits for other phases through joins and
//! rolls out in waves. The planner is generic over these types; what is specific to Deep
//! Security lives in the playbook file, not here.

use std::collections::BTreeMap;

use crate::build::{AgentBuild, BuildLines};
use crate::cond::{Cond, FactType, Path, Value};
use crate::inventory::{Platform, Role};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamType {
    Scalar(FactType),
    /// One of a closed set of strings.
    Enum(Vec<String>),
    /// Agent builds, at most one per version line (`12.0.0-9999,20.0.0-5137`): read as
    /// `params.NAME` for a host, it is the build of that host's line (the highest one when
    /// its line has none), an `agent_build`.
    BuildLines,
}

impl ParamType {
    pub fn fact_type(&self) -> FactType {
        match self {
            ParamType::Scalar(t) => *t,
            ParamType::Enum(_) => FactType::Str,
            ParamType::BuildLines => FactType::AgentBuild,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            ParamType::Scalar(t) => t.as_str().to_owned(),
            ParamType::Enum(vs) => format!("one of {}", vs.join(", ")),
            ParamType::BuildLines => "a comma-separated list of agent builds, at most one per MAJOR.MINOR line (agent_build_lines)".to_owned(),
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
    /// A list of builds per line is kept here as its text (`12.0.0-9999,20.0.0-5137`), and
    /// read through `lines`.
    pub values: BTreeMap<String, Value>,
    /// The keys whose value is a list of builds per line (an `agent_build_lines` parameter,
    /// or one that defaults from it).
    pub lines: BTreeMap<String, BuildLines>,
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

    /// The value of `field` for a target of `platform` whose agent build is `build`: like
    /// [`Params::get`], except that a list of builds per line gives the build of `build`'s
    /// line (nothing without a build, as for the Manager).
    pub fn resolve(
        &self,
        field: &str,
        platform: Option<Platform>,
        build: Option<AgentBuild>,
    ) -> Option<Value> {
        let lines = match self.lines.get(field) {
            Some(l) => Some(l),
            None if self.values.contains_key(field) => None,
            None => match (self.spec(field), platform) {
                (Some(s), Some(p)) if s.per_platform => {
                    self.lines.get(&format!("{field}.{}", p.as_str()))
                }
                _ => None,
            },
        };
        match lines {
            Some(l) => build.and_then(|b| l.for_build(b)).map(Value::Agent),
            None => self.get(field, platform).cloned(),
        }
    }

    /// Whether `params.field` may differ between two targets of one platform (it then
    /// depends on their version line too).
    pub fn per_line(&self, field: &str) -> bool {
        let base = field.split('.').next().unwrap_or(field);
        self.lines
            .keys()
            .any(|k| k == field || k.split('.').next() == Some(base))
    }
}

/// A plan-time rule with a message: a refusal (the plan is not made) or a warning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub when: Cond,
    pub message: Template,
    pub help: Option<Template>,
}

/// A phase that plans nothing unless one of `phases` planned a step; its targets are then
/// skipped with `reason`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequiresPlanned {
    pub phases: Vec<String>,
    pub reason: Template,
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

    /// [`Template::render`], or the first placeholder that has no value.
    pub fn try_render(&self, get: &mut dyn FnMut(&Path) -> Option<Value>) -> Result<String, &Path> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                TemplatePart::Text(t) => out.push_str(t),
                TemplatePart::Path(path) => match get(path) {
                    Some(v) => out.push_str(&v.to_string()),
                    None => return Err(path),
                },
            }
        }
        Ok(out)
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
    /// Only the other phase's steps on hosts of these roles (empty: every role).
    pub roles: Vec<Role>,
    /// Only the other phase's steps on hosts of these platforms (empty: every platform).
    pub platforms: Vec<Platform>,
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
    /// Checked on every selected target before the skip rules: one that holds makes the
    /// inputs invalid (the plan is refused with its message).
    pub refuse: Vec<Notice>,
    /// Checked on every target that gets steps: one that holds adds its message to the
    /// plan's warnings (each distinct message once).
    pub warn: Vec<Notice>,
    pub requires_planned: Option<RequiresPlanned>,
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
