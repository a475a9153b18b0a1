//! The human summary printed by `medic plan` (default format).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use medic_model::format_duration;

use super::escape_text;
use crate::plan::{Plan, StepKind};

pub fn to_text(plan: &Plan) -> String {
    let mut o = String::new();
    let fp = &plan.fingerprint[..plan.fingerprint.len().min(16)];
    let _ = writeln!(o, "plan {} (fingerprint {fp})", plan.playbook);
    let hosts = plan.hosts.len().saturating_sub(1);
    let planned: std::collections::BTreeSet<u32> = plan
        .steps
        .iter()
        .filter(|s| s.kind == StepKind::Action)
        .filter_map(|s| s.host)
        .collect();
    let _ = writeln!(
        o,
        "scope: {hosts} hosts and the Manager; {} get steps; {}",
        planned.len(),
        plan.size()
    );
    if !plan.params.is_empty() {
        let _ = writeln!(o, "parameters:");
        for (k, v) in &plan.params {
            let mark = if plan.example_params.iter().any(|e| e == k) {
                "  (EXAMPLE value: confirm it, then --set it)"
            } else {
                ""
            };
            let _ = writeln!(o, "  {k} = {}{mark}", escape_text(v));
        }
    }
    let _ = writeln!(o, "\nphases:");
    // The name column fits the longest phase name, so the counts stay aligned.
    let width = plan
        .phases
        .iter()
        .map(|p| p.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(24);
    for (i, p) in plan.phases.iter().enumerate() {
        let _ = write!(
            o,
            "{:>3}. {:<width$} {:>5} {} {:>6} {}",
            i + 1,
            p.name,
            p.hosts,
            if p.hosts == 1 { "host " } else { "hosts" },
            p.steps,
            if p.steps == 1 { "step" } else { "steps" },
        );
        if p.skipped > 0 {
            let _ = write!(o, "  ({} skipped)", p.skipped);
        }
        if let Some(g) = &p.guard {
            let _ = write!(o, "  guard: {}", escape_text(g));
        }
        if p.point_of_no_return {
            let _ = write!(o, "  [point of no return]");
        }
        o.push('\n');
        if p.waves.len() > 1 || p.waves.iter().any(|w| w.max_failures.is_some()) {
            for w in &p.waves {
                let _ = write!(
                    o,
                    "       wave {}: {} host{}",
                    w.index,
                    w.hosts,
                    if w.hosts == 1 { "" } else { "s" }
                );
                if let Some(m) = w.max_failures {
                    let _ = write!(
                        o,
                        ", tolerates {m} failed host{}",
                        if m == 1 { "" } else { "s" }
                    );
                }
                if let Some(g) = w.gate {
                    let gs = &plan.steps[g as usize];
                    if let StepKind::Gate(spec) = gs.kind {
                        let mut parts =
                            vec!["after the previous wave finished within budget".to_owned()];
                        if spec.pause_s > 0 {
                            parts.push(format!("soak {}", format_duration(spec.pause_s)));
                        }
                        if spec.approval {
                            parts.push("approval".to_owned());
                        }
                        let _ = write!(o, "; opens {}", parts.join(", then "));
                    }
                }
                o.push('\n');
            }
            if let Some(t) = p.max_failures_total {
                let _ = writeln!(
                    o,
                    "       whole phase tolerates {t} failed host{}{}",
                    if t == 1 { "" } else { "s" },
                    if p.strict { " (strict)" } else { "" }
                );
            }
        }
    }
    let e = &plan.estimate;
    let _ = write!(
        o,
        "\nestimate: {} with the concurrency limits (global {}), {} if run one step at a time",
        format_duration(e.makespan_s),
        plan.max_parallel,
        format_duration(e.serial_s)
    );
    o.push('\n');
    if let Some(w) = e.window {
        let fits = if e.fits_window == Some(true) {
            "fits"
        } else {
            "DOES NOT FIT"
        };
        let _ = writeln!(
            o,
            "window: {} to {} ({}): {fits}",
            w.start_text(),
            w.end_text(),
            format_duration(w.length_s())
        );
    }
    targets(plan, &mut o);
    manual_steps(plan, &mut o);
    if !plan.skipped.is_empty() {
        let _ = writeln!(o, "\nskipped ({}):", plan.skipped.len());
        let mut by_reason: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
        for s in &plan.skipped {
            by_reason
                .entry((s.phase.as_str(), s.reason.as_str()))
                .or_default()
                .push(&s.host);
        }
        for ((phase, reason), hosts) in by_reason {
            let _ = writeln!(
                o,
                "  {phase}: {}\n      {}",
                escape_text(reason),
                super::host_list(&hosts, 8)
            );
        }
    }
    for w in &plan.warnings {
        let _ = writeln!(o, "\nwarning: {}", escape_text(w));
    }
    if !plan.example_params.is_empty() {
        let _ = writeln!(
            o,
            "\nwarning: still at the playbook's example values: {}; confirm them against the advisory and set each one ({}); a real `medic apply` refuses to start until then",
            plan.example_params.join(", "),
            plan.example_params
                .iter()
                .map(|k| format!("--set {k}=..."))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    o
}

/// Hosts by the build their steps go to (`args.to`), per phase: where per-line fixed
/// builds and offline Relays show which host ends at which build.
fn targets(plan: &Plan, o: &mut String) {
    let mut by: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for s in &plan.steps {
        if let (Some(h), Some((_, to))) = (s.host, s.args.iter().find(|(k, _)| k == "to")) {
            by.entry((&s.phase, to.as_str()))
                .or_default()
                .push(&plan.hosts[h as usize].name);
        }
    }
    if by.is_empty() {
        return;
    }
    let _ = writeln!(o, "\ntargets (args.to):");
    for ((phase, to), hosts) in by {
        let _ = writeln!(
            o,
            "  {phase} to {}: {}",
            escape_text(to),
            super::host_list(&hosts, 8)
        );
    }
}

/// Steps of the `manual` driver: the run pauses at each until the operator approves it.
fn manual_steps(plan: &Plan, o: &mut String) {
    let manual = super::manual_steps(plan);
    if manual.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "\nmanual steps (the run pauses at each until the operator approves it; --yes does not):"
    );
    for (s, what) in manual {
        let _ = writeln!(o, "  {}: {}", s.id, escape_text(&what));
    }
}
