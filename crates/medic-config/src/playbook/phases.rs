//! One phase: selection, skip and refuse rules, actions with their checks and guards,
//! joins, rollouts, budgets and notices.

use super::*;

impl PbCtx<'_, '_> {
    #[expect(
        clippy::too_many_arguments,
        reason = "the defaults travel together only here"
    )]
    pub(super) fn phase(
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

    pub(super) fn notices(&mut self, raws: &[RawNotice], phase: &str) -> Vec<Notice> {
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

    pub(super) fn unknown_phase(&mut self, p: &At<String>, phase: &str, key: &str) {
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

    pub(super) fn rollout(&mut self, r: &RawRollout, phase: &str) -> Option<Rollout> {
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

    pub(super) fn budget(&mut self, n: &Node, phase: &str) -> Option<Budget> {
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
    pub(super) fn shell_args(
        &mut self,
        a: &RawAction,
        args: &BTreeMap<String, Template>,
        phase: &str,
    ) {
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
}
