//! Snapshots of every rendering for the examples. A change in output is a change in what
//! operators and the change board see: review it with `cargo insta review`.

use crate::util::*;

fn render_all(name: &str, inv_rel: &str, sets: &[&str]) {
    let inv = inventory(&inventory_text(inv_rel));
    let pb = playbook(sets);
    let w =
        medic_plan::Window::parse("2026-12-01T22:00+09:00/2026-12-02T04:00+09:00").expect("valid");
    let plan = medic_plan::build_plan(&inv, &pb, &playbook_text(), Some(w)).expect("plan builds");
    insta::assert_snapshot!(format!("{name}.text"), medic_plan::render::to_text(&plan));
    insta::assert_snapshot!(format!("{name}.json"), medic_plan::plan_to_json(&plan));
    insta::assert_snapshot!(format!("{name}.dot"), medic_plan::render::to_dot(&plan));
    insta::assert_snapshot!(
        format!("{name}.mermaid"),
        medic_plan::render::to_mermaid(&plan)
    );
    insta::assert_snapshot!(
        format!("{name}.markdown"),
        medic_plan::render::to_markdown(&plan)
    );
}

#[test]
fn lab() {
    render_all("lab", "examples/lab/inventory.yaml", &[]);
}

#[test]
fn multi_site() {
    render_all(
        "multi_site",
        "examples/multi-site/inventory.yaml",
        &["manager_min_build=20.0.463", "relay_barrier=relay-group"],
    );
}
