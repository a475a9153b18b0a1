//! The typed matcher used by selectors, skip rules, guards and checks.
//!
//! A condition is data, not text: YAML maps such as `{ compare: { left: host.agent_version,
//! op: lt, right: params.fixed_build } }` deserialize into [`Cond`], `medic-config` checks
//! every path and type at load time, and the planner evaluates conditions with plan-time
//! facts. Paths under `facts.` (probed on the host at run time) and `needs.` (outcomes of
//! the same host's predecessor steps) stay unresolved in the plan and are evaluated by the
//! executor.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::build::{AgentBuild, ManagerBuild};

/// The first segment of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathRoot {
    Host,
    Params,
    Settings,
    Manager,
    BundleSource,
    Facts,
    Needs,
}

impl PathRoot {
    pub const ALL: [PathRoot; 7] = [
        PathRoot::Host,
        PathRoot::Params,
        PathRoot::Settings,
        PathRoot::Manager,
        PathRoot::BundleSource,
        PathRoot::Facts,
        PathRoot::Needs,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PathRoot::Host => "host",
            PathRoot::Params => "params",
            PathRoot::Settings => "settings",
            PathRoot::Manager => "manager",
            PathRoot::BundleSource => "bundle_source",
            PathRoot::Facts => "facts",
            PathRoot::Needs => "needs",
        }
    }

    /// Roots known only while the run goes on.
    pub fn is_runtime(self) -> bool {
        matches!(self, PathRoot::Facts | PathRoot::Needs)
    }
}

/// A dotted reference such as `host.agent_version` or `params.fixed_build.linux`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Path {
    pub root: PathRoot,
    /// The rest after the root, e.g. `agent_version` or `fixed_build.linux`.
    pub field: String,
}

impl Path {
    /// Splits at the first dot; the field may itself contain dots (`params.fixed_build.linux`).
    pub fn parse(s: &str) -> Option<Path> {
        let (root, field) = s.split_once('.')?;
        let root = PathRoot::ALL.into_iter().find(|r| r.as_str() == root)?;
        let ok = !field.is_empty()
            && field.split('.').all(|seg| {
                !seg.is_empty()
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
        ok.then(|| Path {
            root,
            field: field.to_owned(),
        })
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.root.as_str(), self.field)
    }
}

impl Serialize for Path {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Path {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Path::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{s}` is not a path: write ROOT.FIELD where ROOT is one of host, params, settings, manager, bundle_source, facts, needs"
            ))
        })
    }
}

/// The type of a fact, parameter or literal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FactType {
    Bool,
    Int,
    Str,
    AgentBuild,
    ManagerBuild,
    /// Seconds.
    Duration,
    StrList,
}

impl FactType {
    pub fn as_str(self) -> &'static str {
        match self {
            FactType::Bool => "bool",
            FactType::Int => "int",
            FactType::Str => "string",
            FactType::AgentBuild => "agent_build",
            FactType::ManagerBuild => "manager_build",
            FactType::Duration => "duration",
            FactType::StrList => "list of strings",
        }
    }

    /// Whether `<`, `<=`, `>` and `>=` mean something for this type.
    pub fn is_ordered(self) -> bool {
        matches!(
            self,
            FactType::Int | FactType::AgentBuild | FactType::ManagerBuild | FactType::Duration
        )
    }
}

/// A typed value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    Agent(AgentBuild),
    Manager(ManagerBuild),
    Duration(u64),
    List(Vec<String>),
}

impl Value {
    /// `text` read as a value of `like`'s type; `None` when it is not one.
    fn read_like(text: &str, like: &Value) -> Option<Value> {
        Some(match like {
            Value::Int(_) => Value::Int(text.parse().ok()?),
            Value::Agent(_) => Value::Agent(text.parse().ok()?),
            Value::Manager(_) => Value::Manager(text.parse().ok()?),
            Value::Bool(_) => Value::Bool(text.parse().ok()?),
            _ => return None,
        })
    }

    pub fn fact_type(&self) -> Option<FactType> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(_) => FactType::Bool,
            Value::Int(_) => FactType::Int,
            Value::Str(_) => FactType::Str,
            Value::Agent(_) => FactType::AgentBuild,
            Value::Manager(_) => FactType::ManagerBuild,
            Value::Duration(_) => FactType::Duration,
            Value::List(_) => FactType::StrList,
        })
    }

    pub fn truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Agent(b) => !b.is_none(),
            Value::Manager(_) | Value::Duration(_) => true,
        }
    }

    /// Parses a literal written in YAML as the given type.
    pub fn parse_as(ty: FactType, s: &Scalar) -> Result<Value, String> {
        let text = s.text();
        match ty {
            FactType::Bool => match s {
                Scalar::Bool(b) => Ok(Value::Bool(*b)),
                _ => Err(format!("expected true or false, found `{text}`")),
            },
            FactType::Int => match s {
                Scalar::Int(i) => Ok(Value::Int(*i)),
                _ => Err(format!("expected an integer, found `{text}`")),
            },
            FactType::Str => Ok(Value::Str(text)),
            FactType::AgentBuild => text
                .parse()
                .map(Value::Agent)
                .map_err(|e: crate::BuildError| e.to_string()),
            FactType::ManagerBuild => text
                .parse()
                .map(Value::Manager)
                .map_err(|e: crate::BuildError| e.to_string()),
            FactType::Duration => parse_duration(&text).map(Value::Duration),
            FactType::StrList => Err("a list cannot be written as a single literal".to_owned()),
        }
    }
}

/// Parses `90s`, `10m`, `1h30m`, `2h 30m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration".to_owned());
    }
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    let mut saw_unit = false;
    for c in t.chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else if c == ' ' {
            continue;
        } else {
            let mult = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => return Err(format!("`{s}` is not a duration: use e.g. 90s, 10m, 1h30m")),
            };
            let n: u64 = num
                .parse()
                .map_err(|_| format!("`{s}` is not a duration: use e.g. 90s, 10m, 1h30m"))?;
            total = total
                .checked_add(
                    n.checked_mul(mult)
                        .ok_or_else(|| format!("duration `{s}` is too large"))?,
                )
                .ok_or_else(|| format!("duration `{s}` is too large"))?;
            num.clear();
            saw_unit = true;
        }
    }
    if !num.is_empty() || !saw_unit {
        return Err(format!("`{s}` is not a duration: use e.g. 90s, 10m, 1h30m"));
    }
    Ok(total)
}

/// Formats seconds the way operators write them: `1h30m`, `10m`, `45s`.
pub fn format_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".to_owned();
    }
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (n, u) in [(d, "d"), (h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{u}"));
        }
    }
    out
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => f.write_str(s),
            Value::Agent(b) => write!(f, "{b}"),
            Value::Manager(b) => write!(f, "{b}"),
            Value::Duration(s) => f.write_str(&format_duration(*s)),
            Value::List(l) => write!(f, "[{}]", l.join(", ")),
        }
    }
}

/// A literal as written in YAML, before it is given the type of what it is compared with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Str(String),
}

impl Scalar {
    pub fn text(&self) -> String {
        match self {
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Str(s) => s.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl CmpOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }

    pub fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            CmpOp::Lt => ord == Less,
            CmpOp::Le => ord != Greater,
            CmpOp::Gt => ord == Greater,
            CmpOp::Ge => ord != Less,
            CmpOp::Eq => ord == Equal,
            CmpOp::Ne => ord != Equal,
        }
    }
}

/// The right-hand side of a comparison: another path, or a literal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operand {
    Path(Path),
    Lit(Value),
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Path(p) => write!(f, "{p}"),
            Operand::Lit(Value::Str(s)) => write!(f, "{s:?}"),
            Operand::Lit(v) => write!(f, "{v}"),
        }
    }
}

/// A condition over facts. Validated by `medic-config`: every path exists and both sides of
/// a comparison have the same type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cond {
    /// The boolean at `path` is true (a missing runtime fact is false).
    Is(Path),
    /// The boolean at `path` is false.
    IsNot(Path),
    Compare {
        left: Path,
        op: CmpOp,
        right: Operand,
    },
    /// The value at `path` equals one of `values`.
    In {
        path: Path,
        values: Vec<Value>,
    },
    /// The list at `path` contains `value`.
    Contains {
        path: Path,
        value: String,
    },
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
    /// A condition that was decided when the plan was built.
    Const(bool),
}

impl Cond {
    /// Evaluates with a resolver; `None` from the resolver means "unknown", which makes
    /// every comparison false and `Is` false.
    pub fn eval(&self, get: &mut dyn FnMut(&Path) -> Option<Value>) -> bool {
        match self {
            Cond::Is(p) => get(p).is_some_and(|v| v.truthy()),
            Cond::IsNot(p) => !get(p).is_some_and(|v| v.truthy()),
            Cond::Compare { left, op, right } => {
                let Some(l) = get(left) else { return false };
                let r = match right {
                    Operand::Path(p) => match get(p) {
                        Some(v) => v,
                        None => return false,
                    },
                    Operand::Lit(v) => v.clone(),
                };
                compare(&l, *op, &r)
            }
            Cond::In { path, values } => get(path).is_some_and(|v| values.contains(&v)),
            Cond::Contains { path, value } => {
                matches!(get(path), Some(Value::List(l)) if l.iter().any(|x| x == value))
            }
            Cond::All(cs) => cs.iter().all(|c| c.eval(get)),
            Cond::Any(cs) => cs.iter().any(|c| c.eval(get)),
            Cond::Not(c) => !c.eval(get),
            Cond::Const(b) => *b,
        }
    }

    /// Replaces every plan-time path by its value, keeping runtime paths (`facts.`,
    /// `needs.`), and folds what became constant.
    pub fn bind(&self, get: &mut dyn FnMut(&Path) -> Option<Value>) -> Cond {
        let lit = |p: &Path, get: &mut dyn FnMut(&Path) -> Option<Value>| -> Option<Value> {
            if p.root.is_runtime() {
                None
            } else {
                Some(get(p).unwrap_or(Value::Null))
            }
        };
        match self {
            Cond::Is(p) | Cond::IsNot(p) if !p.root.is_runtime() => Cond::Const(self.eval(get)),
            Cond::Compare { left, op, right } => {
                let right = match right {
                    Operand::Path(rp) => match lit(rp, get) {
                        Some(v) => Operand::Lit(v),
                        None => Operand::Path(rp.clone()),
                    },
                    Operand::Lit(v) => Operand::Lit(v.clone()),
                };
                if left.root.is_runtime() {
                    Cond::Compare {
                        left: left.clone(),
                        op: *op,
                        right,
                    }
                } else {
                    let c = Cond::Compare {
                        left: left.clone(),
                        op: *op,
                        right,
                    };
                    match &c {
                        Cond::Compare {
                            right: Operand::Lit(_),
                            ..
                        } => Cond::Const(c.eval(get)),
                        _ => c,
                    }
                }
            }
            Cond::In { path, .. } | Cond::Contains { path, .. } if !path.root.is_runtime() => {
                Cond::Const(self.eval(get))
            }
            Cond::All(cs) => {
                let cs: Vec<Cond> = cs.iter().map(|c| c.bind(get)).collect();
                if cs.contains(&Cond::Const(false)) {
                    Cond::Const(false)
                } else {
                    let rest: Vec<Cond> =
                        cs.into_iter().filter(|c| *c != Cond::Const(true)).collect();
                    match rest.len() {
                        0 => Cond::Const(true),
                        1 => rest.into_iter().next().unwrap_or(Cond::Const(true)),
                        _ => Cond::All(rest),
                    }
                }
            }
            Cond::Any(cs) => {
                let cs: Vec<Cond> = cs.iter().map(|c| c.bind(get)).collect();
                if cs.contains(&Cond::Const(true)) {
                    Cond::Const(true)
                } else {
                    let rest: Vec<Cond> = cs
                        .into_iter()
                        .filter(|c| *c != Cond::Const(false))
                        .collect();
                    match rest.len() {
                        0 => Cond::Const(false),
                        1 => rest.into_iter().next().unwrap_or(Cond::Const(false)),
                        _ => Cond::Any(rest),
                    }
                }
            }
            Cond::Not(c) => match c.bind(get) {
                Cond::Const(b) => Cond::Const(!b),
                other => Cond::Not(Box::new(other)),
            },
            other => other.clone(),
        }
    }

    /// Every path the condition reads.
    pub fn paths<'a>(&'a self, out: &mut Vec<&'a Path>) {
        match self {
            Cond::Is(p) | Cond::IsNot(p) => out.push(p),
            Cond::Compare { left, right, .. } => {
                out.push(left);
                if let Operand::Path(p) = right {
                    out.push(p);
                }
            }
            Cond::In { path, .. } | Cond::Contains { path, .. } => out.push(path),
            Cond::All(cs) | Cond::Any(cs) => cs.iter().for_each(|c| c.paths(out)),
            Cond::Not(c) => c.paths(out),
            Cond::Const(_) => {}
        }
    }
}

fn compare(l: &Value, op: CmpOp, r: &Value) -> bool {
    // A probe's text (a shell command's output) meets a typed value only at run time (the
    // loader types every other path): read it as that type.
    match (l, r) {
        (Value::Str(s), typed) if !matches!(typed, Value::Str(_)) => {
            return match Value::read_like(s.trim(), typed) {
                Some(v) => compare(&v, op, r),
                None => op == CmpOp::Ne,
            };
        }
        (typed, Value::Str(s)) if !matches!(typed, Value::Str(_)) => {
            return match Value::read_like(s.trim(), typed) {
                Some(v) => compare(l, op, &v),
                None => op == CmpOp::Ne,
            };
        }
        _ => {}
    }
    let ord = match (l, r) {
        (Value::Int(a), Value::Int(b)) => a.cmp(b),
        (Value::Agent(a), Value::Agent(b)) => a.cmp(b),
        (Value::Manager(a), Value::Manager(b)) => a.cmp(b),
        (Value::Duration(a), Value::Duration(b)) => a.cmp(b),
        (Value::Str(a), Value::Str(b)) if matches!(op, CmpOp::Eq | CmpOp::Ne) => a.cmp(b),
        (Value::Bool(a), Value::Bool(b)) if matches!(op, CmpOp::Eq | CmpOp::Ne) => a.cmp(b),
        _ => return op == CmpOp::Ne,
    };
    op.holds(ord)
}

/// Renders a condition the way a person reads it: `facts.pending_reboot`,
/// `host.agent_version < 20.0.1.690`, `not (a or b)`.
impl fmt::Display for Cond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cond::Is(p) => write!(f, "{p}"),
            Cond::IsNot(p) => write!(f, "not {p}"),
            Cond::Compare { left, op, right } => write!(f, "{left} {} {right}", op.symbol()),
            Cond::In { path, values } => {
                let vs: Vec<String> = values.iter().map(|v| v.to_string()).collect();
                write!(f, "{path} in [{}]", vs.join(", "))
            }
            Cond::Contains { path, value } => write!(f, "{path} contains {value:?}"),
            Cond::All(cs) | Cond::Any(cs) => {
                let sep = if matches!(self, Cond::All(_)) {
                    " and "
                } else {
                    " or "
                };
                let parts: Vec<String> = cs
                    .iter()
                    .map(|c| match c {
                        Cond::All(_) | Cond::Any(_) => format!("({c})"),
                        _ => c.to_string(),
                    })
                    .collect();
                f.write_str(&parts.join(sep))
            }
            Cond::Not(c) => write!(f, "not ({c})"),
            Cond::Const(b) => write!(f, "{b}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        Path::parse(s).expect("valid path")
    }

    #[test]
    fn paths_parse() {
        assert_eq!(p("params.fixed_build.linux").field, "fixed_build.linux");
        assert!(Path::parse("nope.x").is_none());
        assert!(Path::parse("host.").is_none());
        assert!(Path::parse("host.a b").is_none());
        assert!(Path::parse("host").is_none());
    }

    #[test]
    fn bind_keeps_runtime_paths_and_folds_the_rest() {
        let c = Cond::All(vec![
            Cond::Is(p("host.relay")),
            Cond::Compare {
                left: p("facts.agent_version"),
                op: CmpOp::Ge,
                right: Operand::Path(p("params.target_build")),
            },
        ]);
        let target: AgentBuild = "20.0.1-690".parse().expect("valid");
        let bound = c.bind(&mut |path| match path.to_string().as_str() {
            "host.relay" => Some(Value::Bool(true)),
            "params.target_build" => Some(Value::Agent(target)),
            _ => None,
        });
        assert_eq!(bound.to_string(), "facts.agent_version >= 20.0.1.690");
        let later: AgentBuild = "20.0.1-700".parse().expect("valid");
        assert!(bound.eval(&mut |_| Some(Value::Agent(later))));
        assert!(!bound.eval(&mut |_| None));
    }

    #[test]
    fn probe_text_is_read_as_the_typed_side() {
        let c = Cond::Compare {
            left: p("facts.output"),
            op: CmpOp::Ge,
            right: Operand::Lit(Value::Agent("20.0.1-690".parse().expect("valid"))),
        };
        let text = |t: &str| {
            let v = Value::Str(t.to_owned());
            move |_: &Path| Some(v.clone())
        };
        assert!(c.eval(&mut text("20.0.1.690\n")));
        assert!(c.eval(&mut text("20.0.2.1")));
        assert!(!c.eval(&mut text("20.0.0.877")));
        // Not a build: never "done".
        assert!(!c.eval(&mut text("command not found")));
        let ne = Cond::Compare {
            left: p("facts.output"),
            op: CmpOp::Ne,
            right: Operand::Lit(Value::Int(0)),
        };
        assert!(ne.eval(&mut text("garbage")));
        assert!(!ne.eval(&mut text(" 0 ")));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("2h 30m"), Ok(9000));
        assert_eq!(parse_duration("45"), Ok(45));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("m").is_err());
        assert_eq!(format_duration(5400), "1h30m");
    }
}
