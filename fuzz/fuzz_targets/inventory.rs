//! `medic_config::load_inventory` on arbitrary text; problems are rendered as the CLI does.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match medic_config::load_inventory("inventory.yaml", text) {
        Ok(inv) => {
            let _ = format!("{inv:?}");
        }
        Err(p) => {
            assert!(!p.is_empty(), "load_inventory failed with no problem");
            let _ = medic_fuzz::render_problems(&p);
        }
    }
});
