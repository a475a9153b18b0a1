//! `medic_plan::plan_from_bytes` on arbitrary bytes (what `medic resume` reads back from a
//! journal's `plan_bin`, which a damaged disk could garble). A plan that decodes is
//! rendered every way, and encoding it again decodes to the same plan.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(plan) = medic_plan::plan_from_bytes(data) {
        medic_fuzz::check_plan(&plan);
        let again = medic_plan::plan_to_bytes(&plan);
        let back = medic_plan::plan_from_bytes(&again).expect("a re-encoded plan decodes");
        assert_eq!(
            medic_plan::plan_to_json(&back),
            medic_plan::plan_to_json(&plan),
            "binary round trip changed the plan"
        );
    }
});
