//! Conditions, paths and templates: which roots a path may read in which place, the types
//! of host facts, and literals typed against the fact they are compared with.

use super::*;

/// Which path roots a condition may read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
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
pub(super) const SHELL_ARGS: &[&str] = &["command", "check_command"];

pub(super) const PATH_ROOTS: &[&str] = &[
    "host",
    "params",
    "settings",
    "manager",
    "bundle_source",
    "facts",
    "needs",
];

pub(super) const HOST_FACTS: &[(&str, FactType)] = &[
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

impl PbCtx<'_, '_> {
    pub(super) fn path(
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

    pub(super) fn cond(
        &mut self,
        c: &RawCond,
        scope: Scope,
        phase: &str,
        needs: &[String],
    ) -> Option<Cond> {
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

    pub(super) fn literal(&mut self, t: FactType, n: &Node, phase: &str) -> Option<Value> {
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

    pub(super) fn template(&mut self, t: &At<String>, phase: &str) -> Option<Template> {
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
}
