//! The change-board runbook: scope, counts, window, estimated duration, ordered tasks with
//! predecessors and expected durations, go/no-go gates, the point of no return and the
//! backout notes of every phase.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use medic_model::format_duration;

use super::{code_md, escape_md};
use crate::plan::{Plan, StepKind};

pub fn to_markdown(plan: &Plan) -> String {
    let mut o = String::new();
    let e = &plan.estimate;
    let _ = writeln!(o, "# Change runbook: {}\n", plan.playbook);
    let _ = writeln!(o, "Plan fingerprint: `{}`\n", plan.fingerprint);
    let _ = writeln!(o, "## Scope\n");
    let hosts = plan.hosts.len().saturating_sub(1);
    let planned: BTreeSet<u32> = plan
        .steps
        .iter()
        .filter(|s| s.kind == StepKind::Action)
        .filter_map(|s| s.host)
        .collect();
    let size = plan.size();
    let _ = writeln!(o, "| | |\n|---|---|");
    let _ = writeln!(o, "| hosts in inventory | {hosts} (+ the Manager) |");
    let _ = writeln!(o, "| hosts with work | {} |", planned.len());
    let _ = writeln!(o, "| steps | {size} |");
    let _ = writeln!(o, "| hosts skipped (per phase) | {} |", plan.skipped.len());
    let _ = writeln!(
        o,
        "| estimated duration | {} (concurrency {}) |",
        format_duration(e.makespan_s),
        plan.max_parallel
    );
    match e.window {
        Some(w) => {
            let fits = if e.fits_window == Some(true) {
                "fits"
            } else {
                "**does not fit**"
            };
            let _ = writeln!(
                o,
                "| change window | {} to {} ({}): {fits} |",
                w.start_text(),
                w.end_text(),
                format_duration(w.length_s())
            );
        }
        None => {
            let _ = writeln!(o, "| change window | not given (`--window START/END`) |");
        }
    }
    o.push('\n');
    if !plan.example_params.is_empty() {
        let _ = writeln!(
            o,
            "> **Confirm before approval:** {} still carry the playbook's example values.\n",
            plan.example_params
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for w in &plan.warnings {
        let _ = writeln!(o, "> **Warning:** {}\n", escape_md(w));
    }
    let manual = super::manual_steps(plan);
    if !manual.is_empty() {
        let _ = writeln!(o, "## Manual steps\n");
        let _ = writeln!(
            o,
            "The run pauses at each of these until the operator approves it (`--yes` does not).\n"
        );
        for (s, what) in manual {
            let _ = writeln!(o, "- `{}`: {}", s.id, escape_md(&what));
        }
        o.push('\n');
    }
    let mut targets: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for s in &plan.steps {
        if let (Some(h), Some((_, to))) = (s.host, s.args.iter().find(|(k, _)| k == "to")) {
            targets
                .entry((&s.phase, to.as_str()))
                .or_default()
                .push(&plan.hosts[h as usize].name);
        }
    }
    if !targets.is_empty() {
        let _ = writeln!(o, "## Target builds\n");
        let _ = writeln!(o, "| phase | to | hosts |");
        let _ = writeln!(o, "|---|---|---|");
        for ((phase, to), hosts) in targets {
            let _ = writeln!(o, "| {phase} | {} | {} |", escape_md(to), hosts.join(", "));
        }
        o.push('\n');
    }
    let _ = writeln!(o, "## Parameters\n");
    for (k, v) in &plan.params {
        let _ = writeln!(o, "- `{k}` = {}", code_md(v));
    }

    let _ = writeln!(o, "\n## Tasks\n");
    let _ = writeln!(
        o,
        "| # | task | hosts | predecessors | expected duration | notes |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    // One task per (phase, wave), listed in dependency order: a task's predecessors are
    // the tasks its steps wait for, and each comes before it. Steps come in topological
    // order; a step that waits for a task listed after its (phase, wave)'s task opens a
    // further part of it (the offline Relays' security update after the bundle import).
    let mut task_of: Vec<usize> = Vec::with_capacity(plan.steps.len());
    // (name, hosts, predecessor tasks, longest step estimate, notes)
    type Task = (String, BTreeSet<u32>, BTreeSet<usize>, u64, String);
    let mut tasks: Vec<Task> = Vec::new();
    // Per (phase, wave): its latest part and how many parts it has.
    let mut current: BTreeMap<String, (usize, u32)> = BTreeMap::new();
    for s in &plan.steps {
        let key = match s.kind {
            StepKind::Action => match s.wave {
                Some(w) => format!("{} (wave {w})", s.phase),
                None => s.phase.to_string(),
            },
            StepKind::Barrier => format!("{} done", s.phase),
            StepKind::Gate(g) => format!("GO/NO-GO before {} wave {}", s.phase, g.opens_wave),
        };
        let cur = current.get(&key).copied();
        let latest_pred = s
            .needs
            .iter()
            .map(|n| task_of[n.step as usize])
            .filter(|&t| Some(t) != cur.map(|c| c.0))
            .max();
        let ix = match cur {
            Some((ix, _)) if latest_pred.is_none_or(|p| p < ix) => ix,
            _ => {
                let part = cur.map_or(1, |c| c.1 + 1);
                let name = if part == 1 {
                    key.clone()
                } else {
                    format!("{key}, part {part}")
                };
                tasks.push((name, BTreeSet::new(), BTreeSet::new(), 0, String::new()));
                current.insert(key, (tasks.len() - 1, part));
                tasks.len() - 1
            }
        };
        for n in &s.needs {
            let pred = task_of[n.step as usize];
            if pred != ix {
                tasks[ix].2.insert(pred);
            }
        }
        if let Some(h) = s.host {
            tasks[ix].1.insert(h);
        }
        tasks[ix].3 = tasks[ix].3.max(s.estimate_s);
        if let StepKind::Gate(g) = s.kind {
            let mut n = vec!["previous wave within its failure budget".to_owned()];
            if g.pause_s > 0 {
                n.push(format!("soak {}", format_duration(g.pause_s)));
            }
            if g.approval {
                n.push("approver signs off (`medic approve`)".to_owned());
            }
            tasks[ix].4 = n.join("; ");
        } else if let Some(gd) = &s.guard {
            tasks[ix].4 = escape_md(&gd.describe).into_owned();
        }
        task_of.push(ix);
    }
    let mut ponr_done = false;
    for (i, (name, hosts, preds, dur, notes)) in tasks.iter().enumerate() {
        let preds: Vec<String> = preds.iter().map(|n| (n + 1).to_string()).collect();
        let phase = name.split(' ').next().unwrap_or(name);
        let mut notes = notes.clone();
        if !ponr_done
            && plan.phase_info(phase).is_some_and(|p| p.point_of_no_return)
            && !name.starts_with("GO/NO-GO")
        {
            ponr_done = true;
            notes = if notes.is_empty() {
                "**point of no return**".to_owned()
            } else {
                format!("**point of no return**; {notes}")
            };
        }
        let _ = writeln!(
            o,
            "| {} | {name} | {} | {} | {} per host | {notes} |",
            i + 1,
            hosts.len(),
            if preds.is_empty() {
                "-".to_owned()
            } else {
                preds.join(", ")
            },
            format_duration(*dur),
        );
    }

    let _ = writeln!(o, "\n## Go/no-go gates\n");
    let mut any = false;
    for p in &plan.phases {
        for w in &p.waves {
            if w.gate.is_some() {
                any = true;
                let _ = writeln!(
                    o,
                    "- **{} wave {}** ({} hosts): go when wave {} finished with at most {} failed hosts{}{}.",
                    p.name,
                    w.index,
                    w.hosts,
                    w.index.saturating_sub(1),
                    p.waves
                        .get(w.index.saturating_sub(1) as usize)
                        .and_then(|x| x.max_failures)
                        .map(|m| m.to_string())
                        .unwrap_or_else(|| "no".to_owned()),
                    if p.pause_s > 0 {
                        format!(", after a soak of {}", format_duration(p.pause_s))
                    } else {
                        String::new()
                    },
                    if p.approval {
                        ", and an approver signed off"
                    } else {
                        ""
                    },
                );
            }
        }
    }
    if !any {
        let _ = writeln!(o, "- none: the plan runs without waves");
    }

    let _ = writeln!(o, "\n## Backout, per phase\n");
    for p in &plan.phases {
        if p.steps == 0 {
            continue;
        }
        let ponr = if p.point_of_no_return {
            " (point of no return)"
        } else {
            ""
        };
        let _ = writeln!(
            o,
            "- **{}**{ponr}: {}",
            p.name,
            escape_md(
                p.backout
                    .as_deref()
                    .unwrap_or("no backout note in the playbook")
            )
        );
    }

    if !plan.skipped.is_empty() {
        let _ = writeln!(o, "\n## Skipped hosts\n");
        let mut by: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
        for s in &plan.skipped {
            by.entry((s.phase.as_str(), s.reason.as_str()))
                .or_default()
                .push(&s.host);
        }
        for ((phase, reason), hosts) in by {
            let _ = writeln!(
                o,
                "- {phase}: {}: {}",
                escape_md(reason),
                super::host_list(&hosts, 20)
            );
        }
    }
    o
}
