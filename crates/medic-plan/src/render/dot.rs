//! Graph renderings: Graphviz DOT and Mermaid. Node order is the plan's order, so output is
//! deterministic.

use std::fmt::Write as _;

use crate::plan::{Plan, StepKind};

fn label(plan: &Plan, i: usize) -> String {
    let s = &plan.steps[i];
    match s.kind {
        StepKind::Action => match plan.host_name(s) {
            Some(h) => format!("{}\\n{} ({})", s.phase, h, s.action),
            None => s.id.clone(),
        },
        StepKind::Barrier => format!("all of {}", s.phase),
        StepKind::Gate(g) => {
            let mut l = format!("{} wave {}", s.phase, g.opens_wave);
            if g.pause_s > 0 {
                let _ = write!(l, "\\nsoak {}", medic_model::format_duration(g.pause_s));
            }
            if g.approval {
                l.push_str("\\napproval");
            }
            l
        }
    }
}

pub fn to_dot(plan: &Plan) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "digraph plan {{");
    let _ = writeln!(o, "  rankdir=LR;\n  node [shape=box, fontsize=10];");
    for (i, s) in plan.steps.iter().enumerate() {
        let shape = match s.kind {
            StepKind::Action if s.guard.is_some() => ", style=dashed",
            StepKind::Action => "",
            StepKind::Barrier => ", shape=circle, width=0.2",
            StepKind::Gate(_) => ", shape=diamond",
        };
        let _ = writeln!(
            o,
            "  n{i} [label=\"{}\"{shape}];",
            label(plan, i).replace('"', "'")
        );
    }
    for (i, s) in plan.steps.iter().enumerate() {
        for n in &s.needs {
            let style = if n.on_finish { " [style=dotted]" } else { "" };
            let _ = writeln!(o, "  n{} -> n{i}{style};", n.step);
        }
    }
    o.push_str("}\n");
    o
}

pub fn to_mermaid(plan: &Plan) -> String {
    let mut o = String::from("flowchart LR\n");
    for (i, s) in plan.steps.iter().enumerate() {
        let l = label(plan, i).replace("\\n", "<br/>").replace('"', "'");
        let _ = match s.kind {
            StepKind::Action => writeln!(o, "  n{i}[\"{l}\"]"),
            StepKind::Barrier => writeln!(o, "  n{i}((\"{l}\"))"),
            StepKind::Gate(_) => writeln!(o, "  n{i}{{\"{l}\"}}"),
        };
    }
    for (i, s) in plan.steps.iter().enumerate() {
        for n in &s.needs {
            let arrow = if n.on_finish { "-.->" } else { "-->" };
            let _ = writeln!(o, "  n{} {arrow} n{i}", n.step);
        }
    }
    o
}
