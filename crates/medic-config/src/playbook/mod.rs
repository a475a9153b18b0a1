//! The playbook format: load, check every reference and type, and build a
//! [`medic_model::Playbook`]. The format is documented in `docs/playbook.md`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use medic_model::{
    ActionSpec, After, AfterOn, Budget, BuildLines, Check, CmpOp, Cond, FactType, Guard, Join,
    Notice, Operand, ParamSpec, ParamType, Params, Path, PathRoot, Phase, Platform, Playbook,
    RequiresPlanned, Retry, Role, Rollout, Scalar, Selector, SkipRule, Template, TemplatePart,
    Value, WaveSpec, parse_duration,
};
use serde::Deserialize;

use crate::diag::{Problem, Problems, SourceFile};
use crate::inventory::Ctx;
use crate::names::is_name;
use crate::yaml::{self, At, Loc, Node, NodeKind, Raw};

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    #[serde(rename = "type")]
    ty: At<String>,
    values: Option<Vec<String>>,
    per_platform: Option<bool>,
    default: Option<Raw>,
    default_from: Option<At<String>>,
    example: Option<bool>,
    doc: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    driver: Option<At<String>>,
    timeout: Option<At<String>>,
    estimate: Option<At<String>>,
    retries: Option<RawRetry>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    max: u32,
    backoff: Option<At<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPhase {
    name: At<String>,
    description: Option<String>,
    select: Option<RawSelect>,
    #[serde(default)]
    skip: Vec<RawSkip>,
    #[serde(default)]
    refuse: Vec<RawNotice>,
    #[serde(default)]
    warn: Vec<RawNotice>,
    requires_planned: Option<RawRequiresPlanned>,
    actions: Vec<RawAction>,
    #[serde(default)]
    after: Vec<RawAfter>,
    guard: Option<RawGuard>,
    rollout: Option<RawRollout>,
    max_parallel: Option<At<u32>>,
    soft_fail: Option<RawCond>,
    verifies: Option<bool>,
    point_of_no_return: Option<bool>,
    backout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSelect {
    #[serde(default)]
    roles: Vec<At<String>>,
    #[serde(default)]
    platforms: Vec<At<String>>,
    #[serde(default)]
    groups: Vec<At<String>>,
    #[serde(default)]
    relay_groups: Vec<At<String>>,
    #[serde(default)]
    planned_in: Vec<At<String>>,
    when: Option<RawCond>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSkip {
    when: RawCond,
    reason: At<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotice {
    when: RawCond,
    message: At<String>,
    help: Option<At<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequiresPlanned {
    phases: Vec<At<String>>,
    reason: At<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    action: At<String>,
    driver: Option<At<String>>,
    #[serde(default)]
    args: BTreeMap<String, At<String>>,
    timeout: Option<At<String>>,
    retries: Option<RawRetry>,
    estimate: Option<At<String>>,
    check: Option<RawCheck>,
    only: Option<RawCond>,
    endpoint: Option<At<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    probe: At<String>,
    when: RawCond,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuard {
    probe: Option<At<String>>,
    when: RawCond,
    describe: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAfter {
    phase: At<String>,
    join: Option<At<String>>,
    outcome: Option<At<String>>,
    when: Option<RawCond>,
    #[serde(default)]
    roles: Vec<At<String>>,
    #[serde(default)]
    platforms: Vec<At<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRollout {
    waves: At<Vec<Raw>>,
    max_failures: Option<Raw>,
    max_failures_total: Option<Raw>,
    strict: Option<bool>,
    pause: Option<At<String>>,
    approval: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompare {
    left: At<String>,
    op: At<CmpOp>,
    right: Option<At<String>>,
    value: Option<Raw>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEquals {
    path: At<String>,
    value: Raw,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIn {
    path: At<String>,
    values: Vec<Raw>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContains {
    path: At<String>,
    value: At<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawCond {
    Is(At<String>),
    IsNot(At<String>),
    Compare(RawCompare),
    Equals(RawEquals),
    In(RawIn),
    Contains(RawContains),
    All(Vec<RawCond>),
    Any(Vec<RawCond>),
    Not(Box<RawCond>),
}

impl RawCond {
    /// Where the first path starting with `prefix` is written.
    fn first_path(&self, prefix: &str) -> Option<Loc> {
        let hit = |p: &At<String>| p.value.trim().starts_with(prefix).then_some(p.loc);
        match self {
            RawCond::Is(p) | RawCond::IsNot(p) => hit(p),
            RawCond::Compare(c) => hit(&c.left).or_else(|| c.right.as_ref().and_then(hit)),
            RawCond::Equals(e) => hit(&e.path),
            RawCond::In(i) => hit(&i.path),
            RawCond::Contains(c) => hit(&c.path),
            RawCond::All(cs) | RawCond::Any(cs) => cs.iter().find_map(|c| c.first_path(prefix)),
            RawCond::Not(c) => c.first_path(prefix),
        }
    }
}

/// Which path roots a condition may read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Parameters and settings only (edges).
    Global,
    /// A host's plan-time facts.
    Host,
    /// Plus `facts.` from a probe.
    Probe,
    /// Plus `facts.` and `needs.`.
    Guard,
}

/// Arguments of the ssh driver that are shell code, taken literally.
const SHELL_ARGS: &[&str] = &["command", "check_command"];

const PATH_ROOTS: &[&str] = &[
    "host",
    "params",
    "settings",
    "manager",
    "bundle_source",
    "facts",
    "needs",
];

const HOST_FACTS: &[(&str, FactType)] = &[
    ("name", FactType::Str),
    ("address", FactType::Str),
    ("platform", FactType::Str),
    ("os", FactType::Str),
    ("role", FactType::Str),
    ("relay_group", FactType::Str),
    ("agent_version", FactType::AgentBuild),
    ("relay", FactType::Bool),
    ("relay_group_offline", FactType::Bool),
    ("protected_by_appliance", FactType::Bool),
    ("has_agent", FactType::Bool),
    ("is_bundle_source", FactType::Bool),
    ("groups", FactType::StrList),
    ("port", FactType::Int),
];

/// The type of a fact of `host.` (and `bundle_source.`), `None` if unknown.
pub fn host_fact_type(field: &str) -> Option<FactType> {
    if let Some(rest) = field.strip_prefix("vars.") {
        return is_name(rest).then_some(FactType::Str);
    }
    HOST_FACTS
        .iter()
        .find(|(n, _)| *n == field)
        .map(|(_, t)| *t)
}

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
            problems.push(
                Problem::new(&file, e.loc, "medic::yaml::syntax", format!("invalid YAML: {}", e.message))
                    .help("fix the YAML syntax at this position; the playbook format is described in docs/playbook.md"),
            );
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

    // --- parameters -------------------------------------------------------------------

    fn params(&mut self, node: Option<&Node>, sets: &[String]) {
        let mut raws: Vec<(At<String>, RawParam)> = Vec::new();
        if let Some(node) = node {
            match &node.kind {
                NodeKind::Null => {}
                NodeKind::Map(entries) => {
                    for (k, v) in entries {
                        let key = At {
                            value: k.scalar_text().unwrap_or_default(),
                            loc: k.loc,
                        };
                        if !is_name(&key) || key.contains('.') {
                            self.err(k.loc, "medic::playbook::bad_name", format!("parameter name `{}` is not allowed", key.value), "use letters, digits, `_` and `-` (no dots: per-platform values are written NAME.linux)");
                            continue;
                        }
                        if let Some(p) = self.c.one::<RawParam>(v, "playbook") {
                            raws.push((key, p));
                        }
                    }
                }
                _ => self.err(
                    node.loc,
                    "medic::yaml::shape",
                    format!("`params` must be a map, found {}", node.kind_name()),
                    "write `params:` followed by `name: { type: ..., default: ... }` entries",
                ),
            }
        }
        let mut specs = Vec::new();
        let mut values: BTreeMap<String, Value> = BTreeMap::new();
        let mut pending_from: Vec<(String, At<String>)> = Vec::new();
        for (key, p) in &raws {
            let ty = match p.ty.as_str() {
                "bool" => Some(ParamType::Scalar(FactType::Bool)),
                "int" => Some(ParamType::Scalar(FactType::Int)),
                "string" => Some(ParamType::Scalar(FactType::Str)),
                "agent_build" => Some(ParamType::Scalar(FactType::AgentBuild)),
                "agent_build_lines" => Some(ParamType::BuildLines),
                "manager_build" => Some(ParamType::Scalar(FactType::ManagerBuild)),
                "duration" => Some(ParamType::Scalar(FactType::Duration)),
                "enum" => match &p.values {
                    Some(vs) if !vs.is_empty() => Some(ParamType::Enum(vs.clone())),
                    _ => {
                        self.err(
                            p.ty.loc,
                            "medic::playbook::bad_param",
                            format!("parameter `{}`: an enum needs `values`", key.value),
                            "add `values: [a, b]`",
                        );
                        None
                    }
                },
                other => {
                    self.err(
                        p.ty.loc,
                        "medic::playbook::bad_param",
                        format!("parameter `{}`: unknown type `{other}`", key.value),
                        "use one of bool, int, string, agent_build, agent_build_lines, manager_build, duration, enum",
                    );
                    None
                }
            };
            let Some(ty) = ty else { continue };
            let per_platform = p.per_platform.unwrap_or(false);
            if let Some(d) = &p.default {
                self.param_default(&key.value, &ty, per_platform, &d.0, &mut values);
            }
            if let Some(from) = &p.default_from {
                pending_from.push((key.value.clone(), from.clone()));
            }
            specs.push(ParamSpec {
                name: key.value.clone(),
                ty,
                per_platform,
                doc: p.doc.clone(),
                example: p.example.unwrap_or(false),
            });
        }
        self.params = Params {
            specs,
            values,
            lines: BTreeMap::new(),
            set_by_operator: Vec::new(),
        };

        // Operator values first, then defaults copied from other parameters, so that
        // `--set fixed_build.linux=X` also moves a `target_build` that defaults to it.
        let cmdline = SourceFile::new("--set", sets.join(" "));
        let mut offset = 0usize;
        for s in sets {
            let loc = Loc {
                line: 1,
                col: offset as u32 + 1,
                offset,
                len: s.len(),
            };
            offset += s.len() + 1;
            match crate::set::parse_set(s, &self.params) {
                Ok((k, v)) => {
                    self.params.values.insert(k.clone(), v);
                    self.params.set_by_operator.push(k);
                }
                Err((msg, help)) => {
                    self.c.problems.push(
                        Problem::new(&cmdline, Some(loc), "medic::params::bad_set", msg).help(help),
                    );
                }
            }
        }
        for (name, from) in pending_from {
            let (Some(spec), Some(src)) = (
                self.params.spec(&name).cloned(),
                self.params.spec(&from).cloned(),
            ) else {
                self.err(
                    from.loc,
                    "medic::playbook::bad_param",
                    format!(
                        "parameter `{name}`: `default_from` names unknown parameter `{}`",
                        from.value
                    ),
                    "name another parameter of this playbook",
                );
                continue;
            };
            // A single build may default from builds per line: each host then takes its
            // line's build, as it would from the source itself.
            let from_lines = spec.ty == ParamType::Scalar(FactType::AgentBuild)
                && src.ty == ParamType::BuildLines;
            if (spec.ty != src.ty && !from_lines) || spec.per_platform != src.per_platform {
                self.err(
                    from.loc,
                    "medic::playbook::bad_param",
                    format!(
                        "parameter `{name}` cannot default from `{}`: the types differ",
                        from.value
                    ),
                    "default from a parameter of the same type",
                );
                continue;
            }
            let keys: Vec<String> = if spec.per_platform {
                [Platform::Linux, Platform::Windows]
                    .iter()
                    .map(|p| p.as_str().to_owned())
                    .collect()
            } else {
                vec![String::new()]
            };
            for suffix in keys {
                let (k, ks) = if suffix.is_empty() {
                    (name.clone(), from.value.clone())
                } else {
                    (
                        format!("{name}.{suffix}"),
                        format!("{}.{suffix}", from.value),
                    )
                };
                if !self.params.values.contains_key(&k)
                    && let Some(v) = self.params.values.get(&ks).cloned()
                {
                    self.params.values.insert(k, v);
                }
            }
        }
        self.index_lines(&pending_lines_from(&self.params));
        for spec in self.params.specs.clone() {
            let missing: Vec<String> = if spec.per_platform {
                ["linux", "windows"]
                    .iter()
                    .map(|p| format!("{}.{p}", spec.name))
                    .filter(|k| !self.params.values.contains_key(k))
                    .collect()
            } else if self.params.values.contains_key(&spec.name) {
                Vec::new()
            } else {
                vec![spec.name.clone()]
            };
            for k in missing {
                let loc = raws
                    .iter()
                    .find(|(n, _)| n.value == spec.name)
                    .map(|(n, _)| n.loc);
                self.c.problems.push(
                    Problem::new(
                        self.c.file,
                        loc,
                        "medic::params::missing",
                        format!("parameter `{k}` has no value"),
                    )
                    .help(format!(
                        "give it a default in the playbook or pass `--set {k}=VALUE`"
                    )),
                );
            }
        }
    }

    /// Reads every list of builds per line (kept as text in `values`) into `params.lines`:
    /// the values of `agent_build_lines` parameters, and of the `agent_build` parameters in
    /// `copied` that still hold such a list (defaulted from one).
    fn index_lines(&mut self, copied: &[String]) {
        let mut lines = BTreeMap::new();
        for (k, v) in &self.params.values {
            let base = k.split('.').next().unwrap_or(k);
            let is_lines = self
                .params
                .spec(base)
                .is_some_and(|s| s.ty == ParamType::BuildLines);
            if (is_lines || copied.iter().any(|c| c == base))
                && let Value::Str(t) = v
                && let Ok(l) = BuildLines::parse(t)
            {
                lines.insert(k.clone(), l);
            }
        }
        self.params.lines = lines;
    }

    fn param_default(
        &mut self,
        name: &str,
        ty: &ParamType,
        per_platform: bool,
        node: &Node,
        values: &mut BTreeMap<String, Value>,
    ) {
        let mut put = |this: &mut Self, key: String, n: &Node| match scalar_or_list(n, ty)
            .map(|s| typed(ty, &s))
        {
            Some(Ok(v)) => {
                values.insert(key, v);
            }
            Some(Err(e)) => this.err(
                n.loc,
                "medic::playbook::bad_param",
                format!("default of `{key}`: {e}"),
                format!("write a value of type {}", ty.describe()),
            ),
            None => this.err(
                n.loc,
                "medic::playbook::bad_param",
                format!(
                    "default of `{key}` must be a single value, found {}",
                    n.kind_name()
                ),
                format!("write a value of type {}", ty.describe()),
            ),
        };
        match (&node.kind, per_platform) {
            (NodeKind::Map(entries), true) => {
                for (k, v) in entries {
                    let plat = k.scalar_text().unwrap_or_default();
                    if Platform::parse(&plat).is_none() {
                        self.err(
                            k.loc,
                            "medic::playbook::bad_param",
                            format!("parameter `{name}`: unknown platform `{plat}`"),
                            "per-platform defaults are keyed `linux` and `windows`",
                        );
                        continue;
                    }
                    put(self, format!("{name}.{plat}"), v);
                }
            }
            (_, true) => {
                put(self, format!("{name}.linux"), node);
                put(self, format!("{name}.windows"), node);
            }
            (_, false) => put(self, name.to_owned(), node),
        }
    }

    // --- phases -------------------------------------------------------------------------

    #[expect(
        clippy::too_many_arguments,
        reason = "the defaults travel together only here"
    )]
    fn phase(
        &mut self,
        rp: &RawPhase,
        loc: Loc,
        dflt_driver: &str,
        dflt_timeout: u64,
        dflt_estimate: u64,
        dflt_retry: Retry,
        endpoints: &BTreeMap<String, u32>,
    ) -> Option<Phase> {
        let sel = rp.select.as_ref();
        let mut roles = Vec::new();
        for r in sel.map(|s| s.roles.as_slice()).unwrap_or_default() {
            match Role::parse(r) {
                Some(x) => roles.push(x),
                None => self.err(
                    r.loc,
                    "medic::playbook::bad_selector",
                    format!("phase `{}`: unknown role `{}`", rp.name.value, r.value),
                    "use manager, relay or agent",
                ),
            }
        }
        let mut platforms = Vec::new();
        for p in sel.map(|s| s.platforms.as_slice()).unwrap_or_default() {
            match Platform::parse(p) {
                Some(x) => platforms.push(x),
                None => self.err(
                    p.loc,
                    "medic::playbook::bad_selector",
                    format!("phase `{}`: unknown platform `{}`", rp.name.value, p.value),
                    "use linux or windows",
                ),
            }
        }
        for g in sel
            .map(|s| s.groups.iter().chain(s.relay_groups.iter()))
            .into_iter()
            .flatten()
        {
            if !is_name(g) {
                self.err(
                    g.loc,
                    "medic::playbook::bad_selector",
                    format!(
                        "phase `{}`: group name `{}` is not allowed",
                        rp.name.value, g.value
                    ),
                    "use letters, digits, `.`, `_` and `-`",
                );
            }
        }
        let mut planned_in = Vec::new();
        for p in sel.map(|s| s.planned_in.as_slice()).unwrap_or_default() {
            if self.phase_names.contains_key(&p.value) {
                planned_in.push(p.value.clone());
            } else {
                self.unknown_phase(p, &rp.name.value, "select.planned_in");
            }
        }
        let when = sel
            .and_then(|s| s.when.as_ref())
            .and_then(|c| self.cond(c, Scope::Host, &rp.name.value, &[]));

        let mut skip = Vec::new();
        for s in &rp.skip {
            let when = self.cond(&s.when, Scope::Host, &rp.name.value, &[]);
            let reason = self.template(&s.reason, &rp.name.value);
            if let (Some(when), Some(reason)) = (when, reason) {
                skip.push(SkipRule { when, reason });
            }
        }

        let refuse = self.notices(&rp.refuse, &rp.name.value);
        let warn = self.notices(&rp.warn, &rp.name.value);
        let requires_planned = rp.requires_planned.as_ref().and_then(|r| {
            let mut phases = Vec::new();
            for p in &r.phases {
                if self.phase_names.contains_key(&p.value) {
                    phases.push(p.value.clone());
                } else {
                    self.unknown_phase(p, &rp.name.value, "requires_planned.phases");
                }
            }
            let reason = self.template(&r.reason, &rp.name.value)?;
            Some(RequiresPlanned { phases, reason })
        });

        let after_names: Vec<String> = rp.after.iter().map(|a| a.phase.value.clone()).collect();
        let mut after = Vec::new();
        for a in &rp.after {
            if !self.phase_names.contains_key(&a.phase.value) {
                self.unknown_phase(&a.phase, &rp.name.value, "after");
                continue;
            }
            let join = match a.join.as_ref().map(|j| j.as_str()) {
                None | Some("same-host") => Join::SameHost,
                Some("same-relay-group") => Join::SameRelayGroup,
                Some("bundle-source") => Join::BundleSource,
                Some("all") => Join::All,
                Some(other) => {
                    let l = a.join.as_ref().map(|j| j.loc).unwrap_or(a.phase.loc);
                    self.err(
                        l,
                        "medic::playbook::bad_join",
                        format!("phase `{}`: unknown join `{other}`", rp.name.value),
                        "use same-host, same-relay-group, bundle-source or all",
                    );
                    continue;
                }
            };
            if a.phase.value == rp.name.value && matches!(join, Join::SameHost | Join::All) {
                self.err(a.phase.loc, "medic::playbook::cycle", format!("phase `{}` waits for itself with join `{}`", rp.name.value, join.as_str()), "a phase may wait for itself only through `bundle-source` or `same-relay-group`, which name other hosts");
                continue;
            }
            let on = match a.outcome.as_ref().map(|o| o.as_str()) {
                None | Some("success") => AfterOn::Success,
                Some("any") => AfterOn::Finish,
                Some(other) => {
                    let l = a.outcome.as_ref().map(|o| o.loc).unwrap_or(a.phase.loc);
                    self.err(l, "medic::playbook::bad_join", format!("phase `{}`: unknown `outcome: {other}`", rp.name.value), "use `success` (the default: the predecessor must succeed) or `any` (it must only have finished)");
                    continue;
                }
            };
            let when = match &a.when {
                Some(c) => match self.cond(c, Scope::Global, &rp.name.value, &[]) {
                    Some(c) => Some(c),
                    None => continue,
                },
                None => None,
            };
            let mut roles = Vec::new();
            for r in &a.roles {
                match Role::parse(r) {
                    Some(Role::Manager) | None => self.err(
                        r.loc,
                        "medic::playbook::bad_join",
                        format!("phase `{}`: `after.roles` takes relay or agent, not `{}`", rp.name.value, r.value),
                        "write e.g. `roles: [relay]` to wait only for the other phase's steps on Relays",
                    ),
                    Some(x) => roles.push(x),
                }
            }
            let mut platforms = Vec::new();
            for p in &a.platforms {
                match Platform::parse(p) {
                    Some(x) => platforms.push(x),
                    None => self.err(
                        p.loc,
                        "medic::playbook::bad_join",
                        format!(
                            "phase `{}`: unknown platform `{}` in `after.platforms`",
                            rp.name.value, p.value
                        ),
                        "use linux or windows",
                    ),
                }
            }
            after.push(After {
                phase: a.phase.value.clone(),
                join,
                on,
                when,
                roles,
                platforms,
            });
        }

        let guard = rp.guard.as_ref().and_then(|g| {
            let probe = g.probe.as_ref().map(|p| p.value.clone());
            let when = self.cond(&g.when, Scope::Guard, &rp.name.value, &after_names)?;
            let mut paths = Vec::new();
            when.paths(&mut paths);
            if probe.is_none() && paths.iter().any(|p| p.root == PathRoot::Facts) {
                self.err(
                    g.when.first_path("facts.").unwrap_or(loc),
                    "medic::playbook::bad_guard",
                    format!(
                        "phase `{}`: the guard reads `facts.` but names no `probe`",
                        rp.name.value
                    ),
                    "add `probe: ACTION` that returns those facts",
                );
                return None;
            }
            Some(Guard {
                probe,
                when,
                describe: g.describe.clone(),
            })
        });

        if rp.actions.is_empty() {
            self.err(
                rp.name.loc,
                "medic::playbook::no_actions",
                format!("phase `{}` has no actions", rp.name.value),
                "add `actions: [{ action: NAME }]`",
            );
        }
        let mut actions = Vec::new();
        let mut guard_drivers: Vec<String> = Vec::new();
        for a in &rp.actions {
            if !is_name(&a.action) {
                self.err(
                    a.action.loc,
                    "medic::playbook::bad_name",
                    format!("action name `{}` is not allowed", a.action.value),
                    "use letters, digits, `.`, `_` and `-`",
                );
            }
            let driver = a
                .driver
                .as_ref()
                .map(|d| d.value.clone())
                .unwrap_or_else(|| dflt_driver.to_owned());
            if !["ssh", "dsm", "local", "manual", "sim"].contains(&driver.as_str()) {
                let l = a.driver.as_ref().map(|d| d.loc).unwrap_or(a.action.loc);
                self.err(
                    l,
                    "medic::playbook::bad_driver",
                    format!("unknown driver `{driver}`"),
                    "use ssh, dsm, local, manual or sim",
                );
            }
            if is_name(&a.action) {
                self.known_action(&a.action, &driver, &rp.name.value, "action");
            }
            if let Some(c) = &a.check {
                self.known_action(&c.probe, &driver, &rp.name.value, "probe");
            }
            // Each step of the phase runs the guard's probe with its own driver.
            if let Some(p) = rp.guard.as_ref().and_then(|g| g.probe.as_ref())
                && !guard_drivers.contains(&driver)
            {
                self.known_action(p, &driver, &rp.name.value, "probe");
                guard_drivers.push(driver.clone());
            }
            let mut args = BTreeMap::new();
            for (k, v) in &a.args {
                if (driver == "ssh" || driver == "local") && SHELL_ARGS.contains(&k.as_str()) {
                    // Shell code is literal: `${x}` and `{ ...; }` are the shell's own.
                    args.insert(
                        k.clone(),
                        Template {
                            parts: vec![TemplatePart::Text(v.value.clone())],
                        },
                    );
                } else if let Some(t) = self.template(v, &rp.name.value) {
                    args.insert(k.clone(), t);
                }
            }
            if driver == "ssh" || driver == "local" {
                self.shell_args(a, &args, &rp.name.value);
            }
            let timeout_s = a
                .timeout
                .as_ref()
                .and_then(|t| self.duration(t, "timeout"))
                .unwrap_or(dflt_timeout);
            let estimate_s = a
                .estimate
                .as_ref()
                .and_then(|t| self.duration(t, "estimate"))
                .unwrap_or(dflt_estimate);
            let retry = a
                .retries
                .as_ref()
                .map(|r| self.retry(r))
                .unwrap_or(dflt_retry);
            let check = a.check.as_ref().and_then(|c| {
                Some(Check {
                    probe: c.probe.value.clone(),
                    when: self.cond(&c.when, Scope::Probe, &rp.name.value, &[])?,
                })
            });
            let only = a
                .only
                .as_ref()
                .and_then(|c| self.cond(c, Scope::Host, &rp.name.value, &[]));
            if let Some(e) = &a.endpoint
                && !endpoints.contains_key(&e.value)
            {
                self.err(
                    e.loc,
                    "medic::playbook::unknown_endpoint",
                    format!("unknown endpoint `{}`", e.value),
                    "declare it under `endpoints:` with its concurrency limit",
                );
            }
            actions.push(ActionSpec {
                action: a.action.value.clone(),
                driver,
                args,
                timeout_s,
                retry,
                estimate_s,
                check,
                only,
                endpoint: a.endpoint.as_ref().map(|e| e.value.clone()),
            });
        }

        let rollout = rp
            .rollout
            .as_ref()
            .and_then(|r| self.rollout(r, &rp.name.value));
        let soft_fail = rp
            .soft_fail
            .as_ref()
            .and_then(|c| self.cond(c, Scope::Host, &rp.name.value, &[]));

        Some(Phase {
            name: rp.name.value.clone(),
            description: rp.description.clone(),
            select: Selector {
                roles,
                platforms,
                groups: sel
                    .map(|s| s.groups.iter().map(|g| g.value.clone()).collect())
                    .unwrap_or_default(),
                relay_groups: sel
                    .map(|s| s.relay_groups.iter().map(|g| g.value.clone()).collect())
                    .unwrap_or_default(),
                planned_in,
                when,
            },
            skip,
            refuse,
            warn,
            requires_planned,
            actions,
            after,
            guard,
            rollout,
            max_parallel: rp.max_parallel.as_ref().map(|m| {
                if m.value == 0 {
                    self.err(
                        m.loc,
                        "medic::playbook::zero_limit",
                        format!("phase `{}`: `max_parallel: 0` would never start a step", rp.name.value),
                        "give the number of this phase's steps that may run at once (at least 1), or leave it out",
                    );
                }
                m.value.max(1)
            }),
            soft_fail: soft_fail.unwrap_or(Cond::Const(false)),
            verifies: rp.verifies.unwrap_or(false),
            point_of_no_return: rp.point_of_no_return.unwrap_or(false),
            backout: rp.backout.clone(),
        })
    }

    fn notices(&mut self, raws: &[RawNotice], phase: &str) -> Vec<Notice> {
        let mut out = Vec::new();
        for n in raws {
            let when = self.cond(&n.when, Scope::Host, phase, &[]);
            let message = self.template(&n.message, phase);
            let help = match &n.help {
                Some(h) => self.template(h, phase).map(Some),
                None => Some(None),
            };
            if let (Some(when), Some(message), Some(help)) = (when, message, help) {
                out.push(Notice {
                    when,
                    message,
                    help,
                });
            }
        }
        out
    }

    fn unknown_phase(&mut self, p: &At<String>, phase: &str, key: &str) {
        let mut known: Vec<&String> = self.phase_names.keys().collect();
        known.sort();
        let known: Vec<&str> = known.iter().map(|s| s.as_str()).collect();
        self.err(
            p.loc,
            "medic::playbook::unknown_phase",
            format!("phase `{phase}`: `{key}` names unknown phase `{}`", p.value),
            format!("use one of: {}", known.join(", ")),
        );
    }

    fn rollout(&mut self, r: &RawRollout, phase: &str) -> Option<Rollout> {
        let mut waves = Vec::new();
        for w in r.waves.iter() {
            let n = &w.0;
            match &n.kind {
                NodeKind::Int(i) if *i > 0 && *i <= i64::from(u32::MAX) => waves.push(WaveSpec::Count(*i as u32)),
                NodeKind::Str(s) if s.ends_with('%') => match s.trim_end_matches('%').trim().parse::<u32>() {
                    Ok(p) if (1..=100).contains(&p) => waves.push(WaveSpec::Percent(p)),
                    _ => self.err(n.loc, "medic::playbook::bad_wave", format!("phase `{phase}`: wave `{s}` is not a percentage between 1% and 100%"), "write e.g. \"10%\""),
                },
                NodeKind::Map(_) => match n.get("group").and_then(|g| g.scalar_text()) {
                    Some(g) if is_name(&g) && matches!(&n.kind, NodeKind::Map(e) if e.len() == 1) => waves.push(WaveSpec::Group(g)),
                    _ => self.err(n.loc, "medic::playbook::bad_wave", format!("phase `{phase}`: a wave map must be `{{ group: NAME }}`"), "write `{ group: canary }` to make a wave of that host group"),
                },
                _ => self.err(n.loc, "medic::playbook::bad_wave", format!("phase `{phase}`: a wave is a count, a percentage or `{{ group: NAME }}`, found {}", n.kind_name()), "write e.g. `waves: [1, \"10%\", \"100%\"]`"),
            }
        }
        if waves.is_empty() && r.waves.is_empty() {
            self.err(
                r.waves.loc,
                "medic::playbook::bad_wave",
                format!("phase `{phase}`: `rollout.waves` is empty"),
                "list at least one wave, e.g. `waves: [\"100%\"]`",
            );
        }
        let max_failures = r
            .max_failures
            .as_ref()
            .and_then(|b| self.budget(&b.0, phase));
        let max_failures_total = r
            .max_failures_total
            .as_ref()
            .and_then(|b| self.budget(&b.0, phase));
        let pause_s = r
            .pause
            .as_ref()
            .and_then(|p| self.duration(p, "rollout pause"))
            .unwrap_or(0);
        Some(Rollout {
            waves,
            max_failures,
            max_failures_total,
            strict: r.strict.unwrap_or(false),
            pause_s,
            approval: r.approval.unwrap_or(false),
        })
    }

    fn budget(&mut self, n: &Node, phase: &str) -> Option<Budget> {
        match &n.kind {
            NodeKind::Int(i) if *i >= 0 && *i <= i64::from(u32::MAX) => {
                Some(Budget::Count(*i as u32))
            }
            NodeKind::Str(s) if s.ends_with('%') => {
                match s.trim_end_matches('%').trim().parse::<u32>() {
                    Ok(p) if p <= 100 => Some(Budget::Percent(p)),
                    _ => {
                        self.err(
                            n.loc,
                            "medic::playbook::bad_budget",
                            format!("phase `{phase}`: failure budget `{s}` is not a percentage"),
                            "write a count (e.g. 1) or a percentage (e.g. \"5%\")",
                        );
                        None
                    }
                }
            }
            _ => {
                self.err(
                    n.loc,
                    "medic::playbook::bad_budget",
                    format!(
                        "phase `{phase}`: a failure budget is a count or a percentage, found {}",
                        n.kind_name()
                    ),
                    "write a count (e.g. 1) or a percentage (e.g. \"5%\")",
                );
                None
            }
        }
    }

    /// The ssh driver's own shell commands: present where used, and without anything that
    /// looks like a template, because a value pasted into shell code could run as code;
    /// values go in `arg1`, `arg2`... and the script reads them as "$1", "$2".
    fn shell_args(&mut self, a: &RawAction, args: &BTreeMap<String, Template>, phase: &str) {
        let mut needed = Vec::new();
        if a.action.value == "command" {
            needed.push("command");
        }
        if a.check
            .as_ref()
            .is_some_and(|c| c.probe.value == "command-probe")
        {
            needed.push("check_command");
        }
        for key in needed {
            if !args.contains_key(key) {
                self.err(
                    a.action.loc,
                    "medic::playbook::missing_arg",
                    format!("phase `{phase}`: `{}` needs `args.{key}`", a.action.value),
                    format!("add `{key}: \"a shell line\"` under `args:`"),
                );
            }
        }
        for key in SHELL_ARGS {
            let Some(raw) = a.args.get(*key) else {
                continue;
            };
            let looks_like_template = raw.value.match_indices('{').any(|(i, _)| {
                let after = &raw.value[i + 1..];
                PATH_ROOTS.iter().any(|r| {
                    after
                        .trim_start()
                        .strip_prefix(r)
                        .is_some_and(|t| t.starts_with('.'))
                })
            });
            if looks_like_template {
                self.err(
                    raw.loc,
                    "medic::playbook::template_in_shell",
                    format!("phase `{phase}`: `args.{key}` is shell code, taken literally: it cannot contain templates"),
                    "pass the value as `arg1: \"{...}\"` and read it in the command as \"$1\" (arg2 as \"$2\", ...)",
                );
            }
        }
    }

    // --- conditions, paths and templates ----------------------------------------------

    fn path(
        &mut self,
        p: &At<String>,
        scope: Scope,
        phase: &str,
        needs: &[String],
    ) -> Option<(Path, Option<FactType>)> {
        let Some(path) = Path::parse(p) else {
            self.err(p.loc, "medic::playbook::bad_path", format!("phase `{phase}`: `{}` is not a path", p.value), "write ROOT.FIELD with ROOT one of host, params, settings, manager, bundle_source, facts, needs");
            return None;
        };
        let allowed = match path.root {
            PathRoot::Params | PathRoot::Settings => true,
            PathRoot::Host | PathRoot::Manager | PathRoot::BundleSource => scope != Scope::Global,
            PathRoot::Facts => matches!(scope, Scope::Probe | Scope::Guard),
            PathRoot::Needs => scope == Scope::Guard,
        };
        if !allowed {
            let hint = match scope {
                Scope::Global => "only `params.` and `settings.` are known here",
                Scope::Host => {
                    "`facts.` and `needs.` are known only at run time: use them in a `guard` or a `check`"
                }
                Scope::Probe => "a check reads `facts.` from its probe and plan-time facts",
                Scope::Guard => "",
            };
            self.err(
                p.loc,
                "medic::playbook::bad_path",
                format!("phase `{phase}`: `{}` cannot be read here", p.value),
                hint,
            );
            return None;
        }
        let ty = match path.root {
            // The bundle source's own value of a parameter (its line's build).
            PathRoot::BundleSource if path.field.starts_with("params.") => {
                let field = &path.field["params.".len()..];
                self.params
                    .spec(field)
                    .filter(|_| !field.contains('.'))
                    .map(|s| s.ty.fact_type())
            }
            PathRoot::Host | PathRoot::BundleSource => host_fact_type(&path.field),
            PathRoot::Manager => match path.field.as_str() {
                "name" | "address" => Some(FactType::Str),
                "version" => Some(FactType::ManagerBuild),
                _ => None,
            },
            PathRoot::Settings => {
                (path.field == "direct_download_when_relays_unavailable").then_some(FactType::Bool)
            }
            PathRoot::Params => {
                let (base, plat) = match path.field.split_once('.') {
                    Some((b, p)) => (b, Some(p)),
                    None => (path.field.as_str(), None),
                };
                match (self.params.spec(base), plat) {
                    (Some(s), None) => Some(s.ty.fact_type()),
                    (Some(s), Some(pl)) if s.per_platform && Platform::parse(pl).is_some() => {
                        Some(s.ty.fact_type())
                    }
                    _ => None,
                }
            }
            PathRoot::Facts => return Some((path, None)),
            PathRoot::Needs => {
                if !needs.contains(&path.field) {
                    self.err(p.loc, "medic::playbook::bad_path", format!("phase `{phase}`: `{}` reads phase `{}`, which this phase does not wait for", p.value, path.field), "add the phase to `after:` first");
                    return None;
                }
                Some(FactType::Str)
            }
        };
        match ty {
            Some(t) => Some((path, Some(t))),
            None => {
                let known = match path.root {
                    PathRoot::Host | PathRoot::BundleSource => {
                        HOST_FACTS
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                            + ", vars.NAME"
                            + if path.root == PathRoot::BundleSource {
                                ", params.NAME"
                            } else {
                                ""
                            }
                    }
                    PathRoot::Manager => "name, address, version".to_owned(),
                    PathRoot::Settings => "direct_download_when_relays_unavailable".to_owned(),
                    PathRoot::Params => self
                        .params
                        .specs
                        .iter()
                        .map(|s| s.name.clone())
                        .collect::<Vec<_>>()
                        .join(", "),
                    _ => String::new(),
                };
                self.err(
                    p.loc,
                    "medic::playbook::unknown_path",
                    format!("phase `{phase}`: unknown `{}`", p.value),
                    format!("known here: {known}"),
                );
                None
            }
        }
    }

    fn cond(&mut self, c: &RawCond, scope: Scope, phase: &str, needs: &[String]) -> Option<Cond> {
        match c {
            RawCond::Is(p) | RawCond::IsNot(p) => {
                let (path, ty) = self.path(p, scope, phase, needs)?;
                if let Some(t) = ty
                    && t != FactType::Bool
                {
                    self.err(
                        p.loc,
                        "medic::playbook::type_mismatch",
                        format!(
                            "phase `{phase}`: `{}` is {}, not a boolean",
                            p.value,
                            t.as_str()
                        ),
                        "use `compare` or `equals` for non-boolean facts",
                    );
                    return None;
                }
                Some(if matches!(c, RawCond::Is(_)) {
                    Cond::Is(path)
                } else {
                    Cond::IsNot(path)
                })
            }
            RawCond::Compare(rc) => {
                let (left, lt) = self.path(&rc.left, scope, phase, needs)?;
                let right = match (&rc.right, &rc.value) {
                    (Some(r), None) => {
                        let (rp, rt) = self.path(r, scope, phase, needs)?;
                        if let (Some(a), Some(b)) = (lt, rt)
                            && a != b
                        {
                            self.err(r.loc, "medic::playbook::type_mismatch", format!("phase `{phase}`: cannot compare {} `{}` with {} `{}`", a.as_str(), rc.left.value, b.as_str(), r.value), "compare values of the same type (agent and Manager builds are different number sequences)");
                            return None;
                        }
                        let t = lt.or(rt);
                        if let Some(t) = t
                            && !t.is_ordered()
                            && !matches!(rc.op.value, CmpOp::Eq | CmpOp::Ne)
                        {
                            self.err(
                                rc.op.loc,
                                "medic::playbook::type_mismatch",
                                format!(
                                    "phase `{phase}`: `{}` is not ordered for {}",
                                    rc.op.value.symbol(),
                                    t.as_str()
                                ),
                                "use eq or ne",
                            );
                            return None;
                        }
                        Operand::Path(rp)
                    }
                    (None, Some(v)) => {
                        let t = lt.unwrap_or(FactType::Str);
                        let lit = self.literal(t, &v.0, phase)?;
                        Operand::Lit(lit)
                    }
                    _ => {
                        self.err(rc.left.loc, "medic::playbook::bad_cond", format!("phase `{phase}`: `compare` takes exactly one of `right` (a path) and `value` (a literal)"), "write `right: params.x` or `value: \"20.0.1-690\"`");
                        return None;
                    }
                };
                Some(Cond::Compare {
                    left,
                    op: rc.op.value,
                    right,
                })
            }
            RawCond::Equals(e) => {
                let (path, ty) = self.path(&e.path, scope, phase, needs)?;
                let lit = self.literal(ty.unwrap_or(FactType::Str), &e.value.0, phase)?;
                Some(Cond::Compare {
                    left: path,
                    op: CmpOp::Eq,
                    right: Operand::Lit(lit),
                })
            }
            RawCond::In(i) => {
                let (path, ty) = self.path(&i.path, scope, phase, needs)?;
                let mut values = Vec::new();
                for v in &i.values {
                    values.push(self.literal(ty.unwrap_or(FactType::Str), &v.0, phase)?);
                }
                Some(Cond::In { path, values })
            }
            RawCond::Contains(cn) => {
                let (path, ty) = self.path(&cn.path, scope, phase, needs)?;
                if ty.is_some_and(|t| t != FactType::StrList) {
                    self.err(
                        cn.path.loc,
                        "medic::playbook::type_mismatch",
                        format!("phase `{phase}`: `{}` is not a list", cn.path.value),
                        "use `contains` on host.groups",
                    );
                    return None;
                }
                Some(Cond::Contains {
                    path,
                    value: cn.value.value.clone(),
                })
            }
            RawCond::All(cs) | RawCond::Any(cs) => {
                let mut out = Vec::new();
                let mut ok = true;
                for c in cs {
                    match self.cond(c, scope, phase, needs) {
                        Some(c) => out.push(c),
                        None => ok = false,
                    }
                }
                ok.then_some(if matches!(c, RawCond::All(_)) {
                    Cond::All(out)
                } else {
                    Cond::Any(out)
                })
            }
            RawCond::Not(inner) => {
                Some(Cond::Not(Box::new(self.cond(inner, scope, phase, needs)?)))
            }
        }
    }

    fn literal(&mut self, t: FactType, n: &Node, phase: &str) -> Option<Value> {
        let Some(s) = scalar_of(n) else {
            self.err(
                n.loc,
                "medic::playbook::bad_cond",
                format!(
                    "phase `{phase}`: expected a single value, found {}",
                    n.kind_name()
                ),
                "write a string, a number or true/false",
            );
            return None;
        };
        match Value::parse_as(t, &s) {
            Ok(v) => Some(v),
            Err(e) => {
                self.err(
                    n.loc,
                    "medic::playbook::type_mismatch",
                    format!("phase `{phase}`: {e}"),
                    format!("write a value of type {}", t.as_str()),
                );
                None
            }
        }
    }

    fn template(&mut self, t: &At<String>, phase: &str) -> Option<Template> {
        let mut parts = Vec::new();
        let mut rest = t.value.as_str();
        let mut ok = true;
        while let Some(start) = rest.find('{') {
            if start > 0 {
                parts.push(TemplatePart::Text(rest[..start].to_owned()));
            }
            let Some(end) = rest[start..].find('}') else {
                self.err(
                    t.loc,
                    "medic::playbook::bad_template",
                    format!(
                        "phase `{phase}`: `{{` without a closing `}}` in `{}`",
                        t.value
                    ),
                    "write placeholders as {host.name}",
                );
                return None;
            };
            let inner = &rest[start + 1..start + end];
            let at = At {
                value: inner.trim().to_owned(),
                loc: t.loc,
            };
            match self.path(&at, Scope::Host, phase, &[]) {
                Some((p, _)) => parts.push(TemplatePart::Path(p)),
                None => ok = false,
            }
            rest = &rest[start + end + 1..];
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Text(rest.to_owned()));
        }
        ok.then_some(Template { parts })
    }

    /// Names every cycle in the phase graph (`after` and `planned_in` edges), whole.
    fn cycles(&mut self, phases: &[(RawPhase, Loc)]) {
        let names: Vec<&str> = phases.iter().map(|(p, _)| p.name.value.as_str()).collect();
        let idx: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        for (kind, edges) in [("after", true), ("select.planned_in", false)] {
            let mut adj: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); names.len()];
            for (i, (p, _)) in phases.iter().enumerate() {
                let targets: Vec<&str> = if edges {
                    // Joins on other hosts (bundle-source, same-relay-group) may loop through
                    // phases without looping through steps; the step graph checks those. A loop
                    // of same-host or all joins is a real cycle for any host in it.
                    p.after
                        .iter()
                        // A join restricted to some roles may wait for a phase that follows
                        // this one on other hosts (Agents wait for the Relays' verify); the
                        // step graph checks it too.
                        .filter(|a| {
                            a.roles.is_empty()
                                && a.platforms.is_empty()
                                && matches!(
                                    a.join.as_ref().map(|j| j.as_str()),
                                    None | Some("same-host") | Some("all")
                                )
                        })
                        .map(|a| a.phase.value.as_str())
                        .filter(|t| *t != p.name.value)
                        .collect()
                } else {
                    p.select
                        .iter()
                        .flat_map(|s| s.planned_in.iter().map(|x| x.value.as_str()))
                        .chain(
                            p.requires_planned
                                .iter()
                                .flat_map(|r| r.phases.iter().map(|x| x.value.as_str())),
                        )
                        .collect()
                };
                for t in targets {
                    if let Some(&j) = idx.get(t) {
                        adj[i].insert(j);
                    }
                }
            }
            for cycle in find_cycles(&adj) {
                let mut path: Vec<&str> = cycle.iter().map(|&i| names[i]).collect();
                path.push(names[cycle[0]]);
                let loc = phases[cycle[0]].0.name.loc;
                self.err(
                    loc,
                    "medic::playbook::cycle",
                    format!(
                        "phase dependency cycle through `{kind}`: {}",
                        path.join(" -> ")
                    ),
                    "remove one of these dependencies so that the phases can be ordered",
                );
            }
        }
    }
}

/// Strongly connected components with more than one node (Tarjan), each as a cycle path in
/// dependency order, starting from its lowest index.
fn find_cycles(adj: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    let n = adj.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0;
    let mut sccs = Vec::new();
    #[expect(
        clippy::too_many_arguments,
        reason = "Tarjan's state, kept local to this function"
    )]
    fn strong(
        v: usize,
        adj: &[BTreeSet<usize>],
        index: &mut [usize],
        low: &mut [usize],
        on: &mut [bool],
        stack: &mut Vec<usize>,
        next: &mut usize,
        sccs: &mut Vec<Vec<usize>>,
    ) {
        index[v] = *next;
        low[v] = *next;
        *next += 1;
        stack.push(v);
        on[v] = true;
        for &w in &adj[v] {
            if index[w] == usize::MAX {
                strong(w, adj, index, low, on, stack, next, sccs);
                low[v] = low[v].min(low[w]);
            } else if on[w] {
                low[v] = low[v].min(index[w]);
            }
        }
        if low[v] == index[v] {
            let mut comp = Vec::new();
            while let Some(w) = stack.pop() {
                on[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                sccs.push(comp);
            }
        }
    }
    for v in 0..n {
        if index[v] == usize::MAX {
            strong(
                v, adj, &mut index, &mut low, &mut on, &mut stack, &mut next, &mut sccs,
            );
        }
    }
    // Report a real cycle inside each component: the shortest path from its lowest node
    // back to itself along existing edges (breadth-first), so every arrow is an edge.
    sccs.into_iter()
        .filter_map(|comp| {
            let set: BTreeSet<usize> = comp.iter().copied().collect();
            let start = *set.iter().next()?;
            let mut prev: std::collections::BTreeMap<usize, usize> =
                std::collections::BTreeMap::new();
            let mut queue = std::collections::VecDeque::from([start]);
            while let Some(v) = queue.pop_front() {
                for &w in adj[v].iter().filter(|w| set.contains(w)) {
                    if w == start {
                        let mut path = vec![v];
                        let mut cur = v;
                        while cur != start {
                            cur = prev[&cur];
                            path.push(cur);
                        }
                        path.reverse();
                        return Some(path);
                    }
                    if let std::collections::btree_map::Entry::Vacant(e) = prev.entry(w) {
                        e.insert(v);
                        queue.push_back(w);
                    }
                }
            }
            None
        })
        .collect()
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

/// A scalar, or for a list of builds per line also a YAML list (read as its text).
fn scalar_or_list(n: &Node, ty: &ParamType) -> Option<Scalar> {
    match (&n.kind, ty) {
        (NodeKind::Seq(items), ParamType::BuildLines) => {
            let texts: Option<Vec<String>> = items.iter().map(|i| i.scalar_text()).collect();
            Some(Scalar::Str(texts?.join(",")))
        }
        _ => scalar_of(n),
    }
}

/// The `agent_build` parameters that default from an `agent_build_lines` one.
fn pending_lines_from(params: &Params) -> Vec<String> {
    params
        .specs
        .iter()
        .filter(|s| s.ty == ParamType::Scalar(FactType::AgentBuild))
        .map(|s| s.name.clone())
        .collect()
}

pub(crate) fn typed(ty: &ParamType, s: &Scalar) -> Result<Value, String> {
    match ty {
        // Kept as its canonical text; `Params::lines` holds the builds.
        ParamType::BuildLines => BuildLines::parse(&s.text())
            .map(|l| Value::Str(l.text()))
            .map_err(|e| e.join("; ")),
        ParamType::Enum(vs) => {
            let t = s.text();
            if vs.contains(&t) {
                Ok(Value::Str(t))
            } else {
                Err(format!("`{t}` is not one of {}", vs.join(", ")))
            }
        }
        ParamType::Scalar(t) => Value::parse_as(*t, s),
    }
}
