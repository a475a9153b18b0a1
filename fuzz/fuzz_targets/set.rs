//! The `--set` parser, reached through `medic_config::load_playbook(name, text, sets)` with
//! the shipped playbook and arbitrary `sets`: one `--set` argument per input line. Each
//! playbook that loads is planned on the lab inventory (the values reach the plan).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use medic_model::Inventory;

fn lab() -> &'static Inventory {
    static LAB: OnceLock<Inventory> = OnceLock::new();
    LAB.get_or_init(|| {
        medic_config::load_inventory("lab.yaml", medic_fuzz::LAB_INVENTORY)
            .unwrap_or_else(|p| panic!("the lab inventory loads: {p}"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let sets = medic_fuzz::set_lines(text);
    let pb_text = medic_fuzz::PLAYBOOK;
    match medic_config::load_playbook("playbook.yaml", pb_text, &sets) {
        Ok(pb) => match medic_plan::build_plan(lab(), &pb, pb_text, None) {
            Ok(plan) => medic_fuzz::check_plan(&plan),
            Err(e) => {
                let _ = e.to_string();
            }
        },
        Err(p) => {
            assert!(!p.is_empty(), "load_playbook failed with no problem");
            let _ = medic_fuzz::render_problems(&p);
        }
    }
});
