//! `medic_plan::plan_from_json` on arbitrary text (what `medic apply --plan FILE` reads). A
//! plan that reads is rendered every way, and writing it then reading it back is lossless.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(plan) = medic_plan::plan_from_json(text) {
        medic_fuzz::check_plan(&plan);
    }
});
