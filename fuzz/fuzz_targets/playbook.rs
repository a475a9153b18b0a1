//! `medic_config::load_playbook` on arbitrary text, with no `--set`; problems are rendered
//! as the CLI does. A playbook that loads is planned on the lab inventory.
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
    match medic_config::load_playbook("playbook.yaml", text, &[]) {
        Ok(pb) => {
            if let Ok(plan) = medic_plan::build_plan(lab(), &pb, text, None) {
                medic_fuzz::check_plan(&plan);
            }
        }
        Err(p) => {
            assert!(!p.is_empty(), "load_playbook failed with no problem");
            let _ = medic_fuzz::render_problems(&p);
        }
    }
});
