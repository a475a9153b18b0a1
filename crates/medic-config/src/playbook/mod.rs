//! The playbook format: load, check every reference and type, and build a
//! [`medic_model::Playbook`]. The format is documented in `docs/playbook.md`.

use std::collections::{BTreeMap, HashMap};

use medic_model::{
    ActionSpec, After, AfterOn, Budget, BuildLines, Check, CmpOp, Cond, FactType, Guard, Join,
    Notice, Operand, ParamSpec, ParamType, Params, Path, PathRoot, Phase, Platform, Playbook,
    RequiresPlanned, Retry, Role, Rollout, Scalar, Selector, SkipRule, Template, TemplatePart,
    Value, WaveSpec, parse_duration,
};
use serde::Deserialize;

use crate::diag::{Problem, Problems, SourceFile};
use crate::inventory::Ctx;
use crate::yaml::{self, At, Loc, Node, NodeKind, Raw};
use medic_model::names::is_name;

pub const PLAYBOOK_FORMAT: &str = "medic.playbook/v1";

const TOP_KEYS: &[&str] = &[
    "format",
    "name",
    "description",
    "params",
    "defaults",
    "max_parallel",
    "endpoints",
    "phases",
];

mod conditions;
mod cycles;
mod params;
mod phases;
mod raw;

pub use conditions::host_fact_type;
use conditions::{PATH_ROOTS, SHELL_ARGS, Scope};
pub(crate) use params::typed;
use raw::*;

/// The actions a driver runs (`None`: any name, e.g. a manual step a person does); given
/// by the drivers to [`load_playbook_for`].
pub type DriverActions<'a> = &'a dyn Fn(&str) -> Option<&'static [&'static str]>;

/// Loads a playbook from its text, with the operator's `--set` values applied. Action names
/// are not checked against the drivers: [`load_playbook_for`] does.
pub fn load_playbook(name: &str, text: &str, sets: &[String]) -> Result<Playbook, Problems> {
    load(name, text, sets, None)
}

/// [`load_playbook`], and every action and probe name must be one its driver runs: an
/// unknown one is an input error at its position.
pub fn load_playbook_for(
    name: &str,
    text: &str,
    sets: &[String],
    actions: DriverActions<'_>,
) -> Result<Playbook, Problems> {
    load(name, text, sets, Some(actions))
}

fn load(
    name: &str,
    text: &str,
    sets: &[String],
    actions: Option<DriverActions<'_>>,
) -> Result<Playbook, Problems> {
    let file = SourceFile::new(name, text);
    let mut problems = Problems::default();
    let root = match yaml::parse(text) {
        Ok(r) => r,
        Err(e) => {
            problems.push(e.problem(&file, "playbook format is described in docs/playbook.md"));
            return Err(problems);
        }
    };
    let pb = {
        let mut ctx = Ctx {
            file: &file,
            problems: &mut problems,
        };
        PbCtx {
            c: &mut ctx,
            params: Params::default(),
            phase_names: HashMap::new(),
            actions,
        }
        .playbook(&root, sets)
    };
    match pb {
        Some(pb) if problems.is_empty() => Ok(pb),
        _ => Err(problems.sorted()),
    }
}

struct PbCtx<'a, 'b> {
    c: &'a mut Ctx<'b>,
    params: Params,
    phase_names: HashMap<String, Loc>,
    actions: Option<DriverActions<'b>>,
}

impl PbCtx<'_, '_> {
    /// An action (or probe) name its driver does not run is an error at its position.
    fn known_action(&mut self, name: &At<String>, driver: &str, phase: &str, what: &str) {
        let Some(list) = self.actions.and_then(|f| f(driver)) else {
            return;
        };
        if list.contains(&name.value.as_str()) {
            return;
        }
        self.err(
            name.loc,
            "medic::playbook::unknown_action",
            format!(
                "phase `{phase}`: the {driver} driver has no {what} `{}`",
                name.value
            ),
            format!("the {driver} driver runs: {}", list.join(", ")),
        );
    }

    fn err(
        &mut self,
        loc: Loc,
        code: &'static str,
        msg: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.c.err(loc, code, msg, help);
    }

    fn duration(&mut self, d: &At<String>, what: &str) -> Option<u64> {
        match parse_duration(d) {
            Ok(v) => Some(v),
            Err(e) => {
                self.err(
                    d.loc,
                    "medic::playbook::bad_duration",
                    format!("{what}: {e}"),
                    "write a duration such as 90s, 10m or 1h30m",
                );
                None
            }
        }
    }

    fn playbook(&mut self, root: &Node, sets: &[String]) -> Option<Playbook> {
        let entries = self.c.top_map(root, TOP_KEYS, "playbook")?;
        let get = |k: &str| {
            entries
                .iter()
                .find(|(kk, _)| kk.scalar_text().as_deref() == Some(k))
                .map(|(_, v)| v)
        };

        if let Some(f) = get("format") {
            let t = f.scalar_text().unwrap_or_default();
            if t != PLAYBOOK_FORMAT {
                self.err(
                    f.loc,
                    "medic::playbook::format",
                    format!("unsupported playbook format `{t}`"),
                    format!("this medic reads `format: {PLAYBOOK_FORMAT}`"),
                );
            }
        }
        let name = match get("name") {
            Some(n) => self.c.one::<At<String>>(n, "playbook"),
            None => {
                self.err(
                    root.loc,
                    "medic::playbook::no_name",
                    "missing key `name`",
                    "add `name: my-remediation`",
                );
                None
            }
        };
        if let Some(n) = &name
            && !is_name(n)
        {
            self.err(
                n.loc,
                "medic::playbook::bad_name",
                format!("playbook name `{}` is not allowed", n.value),
                "use letters, digits, `.`, `_` and `-`",
            );
        }
        let description = get("description").and_then(|n| self.c.one::<String>(n, "playbook"));
        let defaults: RawDefaults = get("defaults")
            .and_then(|n| self.c.one(n, "playbook"))
            .unwrap_or_default();
        let max_parallel = match get("max_parallel")
            .and_then(|n| self.c.one::<At<u32>>(n, "playbook"))
        {
            None => 50,
            Some(m) if m.value == 0 => {
                self.err(
                    m.loc,
                    "medic::playbook::zero_limit",
                    "`max_parallel: 0` would never start a step",
                    "give the number of steps that may run at once (at least 1), or leave it out for 50",
                );
                1
            }
            Some(m) => m.value,
        };
        let endpoint_limits: BTreeMap<String, u32> = get("endpoints")
            .and_then(|n| self.c.one(n, "playbook"))
            .unwrap_or_default();

        self.params(get("params"), sets);

        let raw_phases: Vec<(RawPhase, Loc)> = match get("phases") {
            Some(n) => self.c.items(Some(n), "phases", "playbook"),
            None => {
                self.err(
                    root.loc,
                    "medic::playbook::no_phases",
                    "missing key `phases`",
                    "add `phases:` with at least one phase",
                );
                Vec::new()
            }
        };
        // Names come from the nodes, so that a phase with a mistake of its own is still known
        // to the phases that name it.
        let name_nodes: Vec<&Node> = match get("phases").map(|n| &n.kind) {
            Some(NodeKind::Seq(items)) => items.iter().filter_map(|it| it.get("name")).collect(),
            _ => Vec::new(),
        };
        for n in name_nodes {
            let name = n.scalar_text().unwrap_or_default();
            if !is_name(&name) {
                self.err(
                    n.loc,
                    "medic::playbook::bad_name",
                    format!("phase name `{name}` is not allowed"),
                    "use letters, digits, `.`, `_` and `-`",
                );
            } else if let Some(first) = self.phase_names.get(&name) {
                let line = first.line;
                self.err(
                    n.loc,
                    "medic::playbook::duplicate_phase",
                    format!("duplicate phase `{name}` (first defined on line {line})"),
                    "give every phase a unique name",
                );
            } else {
                self.phase_names.insert(name, n.loc);
            }
        }

        let dflt_driver = defaults
            .driver
            .as_ref()
            .map(|d| d.value.clone())
            .unwrap_or_else(|| "ssh".to_owned());
        let dflt_timeout = defaults
            .timeout
            .as_ref()
            .and_then(|d| self.duration(d, "default timeout"))
            .unwrap_or(1800);
        let dflt_estimate = defaults
            .estimate
            .as_ref()
            .and_then(|d| self.duration(d, "default estimate"))
            .unwrap_or(60);
        let dflt_retry = match &defaults.retries {
            Some(r) => self.retry(r),
            None => Retry {
                max: 0,
                backoff_s: 30,
            },
        };

        let mut phases = Vec::with_capacity(raw_phases.len());
        for (rp, loc) in &raw_phases {
            if let Some(p) = self.phase(
                rp,
                *loc,
                &dflt_driver,
                dflt_timeout,
                dflt_estimate,
                dflt_retry,
                &endpoint_limits,
            ) {
                phases.push(p);
            }
        }
        self.cycles(&raw_phases);

        Some(Playbook {
            name: name?.value,
            description,
            params: std::mem::take(&mut self.params),
            max_parallel,
            endpoint_limits,
            phases,
        })
    }

    fn retry(&mut self, r: &RawRetry) -> Retry {
        let backoff_s = r
            .backoff
            .as_ref()
            .and_then(|b| self.duration(b, "retry backoff"))
            .unwrap_or(30);
        Retry {
            max: r.max,
            backoff_s,
        }
    }
}

pub(crate) fn scalar_of(n: &Node) -> Option<Scalar> {
    match &n.kind {
        NodeKind::Bool(b) => Some(Scalar::Bool(*b)),
        NodeKind::Int(i) => Some(Scalar::Int(*i)),
        NodeKind::Float(f) => Some(Scalar::Str(f.to_string())),
        NodeKind::Str(s) => Some(Scalar::Str(s.to_string())),
        _ => None,
    }
}
