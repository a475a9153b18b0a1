use std::collections::{BTreeSet, HashMap};

use medic_model::{Inventory, Playbook};
use medic_plan::{Plan, StepKind, build_plan};

pub(crate) fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub(crate) fn playbook_text() -> String {
    std::fs::read_to_string(root().join("playbooks/ds-activeupdate-cert-2023.yaml"))
        .expect("playbook is in the repo")
}

pub(crate) fn playbook(sets: &[&str]) -> Playbook {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    medic_config::load_playbook("ds.yaml", &playbook_text(), &sets)
        .unwrap_or_else(|p| panic!("playbook loads: {p}"))
}

pub(crate) fn inventory_text(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).expect("fixture exists")
}

pub(crate) fn inventory(text: &str) -> Inventory {
    medic_config::load_inventory("inv.yaml", text)
        .unwrap_or_else(|p| panic!("inventory loads: {p}"))
}

pub(crate) fn plan(inv: &Inventory, pb: &Playbook) -> Plan {
    build_plan(inv, pb, &playbook_text(), None).expect("plan builds")
}

/// Every step id that `id` waits for, directly or not.
pub(crate) fn ancestors(plan: &Plan, id: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Some(start) = plan.step_index(id) else {
        return out;
    };
    let mut stack = vec![start];
    while let Some(i) = stack.pop() {
        for n in &plan.step(i).needs {
            let nid = plan.step(n.step).id.clone();
            if out.insert(nid) {
                stack.push(n.step);
            }
        }
    }
    out
}

pub(crate) fn direct_needs(plan: &Plan, id: &str) -> BTreeSet<String> {
    let i = plan
        .step_index(id)
        .unwrap_or_else(|| panic!("step {id} exists"));
    plan.step(i)
        .needs
        .iter()
        .map(|n| plan.step(n.step).id.clone())
        .collect()
}

pub(crate) fn has(plan: &Plan, id: &str) -> bool {
    plan.step_index(id).is_some()
}

/// Action steps per phase: phase -> hosts.
pub(crate) fn by_phase(plan: &Plan) -> HashMap<String, BTreeSet<String>> {
    let mut m: HashMap<String, BTreeSet<String>> = HashMap::new();
    for s in plan.steps() {
        if s.kind == StepKind::Action {
            m.entry(s.phase.to_string())
                .or_default()
                .insert(plan.host_name(s).unwrap_or("").to_owned());
        }
    }
    m
}
