//! Parameters: declared types, defaults (also from another parameter), `--set` values,
//! and builds per version line.

use super::*;

impl PbCtx<'_, '_> {
    pub(super) fn params(&mut self, node: Option<&Node>, sets: &[String]) {
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
    pub(super) fn index_lines(&mut self, copied: &[String]) {
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

    pub(super) fn param_default(
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
}

/// A scalar, or for a list of builds per line also a YAML list (read as its text).
pub(super) fn scalar_or_list(n: &Node, ty: &ParamType) -> Option<Scalar> {
    match (&n.kind, ty) {
        (NodeKind::Seq(items), ParamType::BuildLines) => {
            let texts: Option<Vec<String>> = items.iter().map(|i| i.scalar_text()).collect();
            Some(Scalar::Str(texts?.join(",")))
        }
        _ => scalar_of(n),
    }
}

/// The `agent_build` parameters that default from an `agent_build_lines` one.
pub(super) fn pending_lines_from(params: &Params) -> Vec<String> {
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
