//! Zones in the plan: an inventory without them gives the plan it always gave; a zoned
//! plan and its slice read back equal from JSON and from the binary form; the held steps
//! are exactly the slice's.

use medic_plan::{
    Done, held_steps, make_slice, plan_digest, plan_from_bytes, plan_from_json, plan_to_bytes,
    plan_to_json,
};

use crate::util::{inventory, inventory_text, plan, playbook};

fn zoned_lab() -> String {
    inventory_text("examples/lab/inventory.yaml")
        .replace(
            "  - { name: dmz, offline: true, bundle_source: relay-tky-1 }",
            "  - { name: dmz, offline: true, bundle_source: relay-tky-1, zone: dmz }",
        )
        .replace(
            "relay_groups:\n",
            "zones:\n  - { name: dmz, air_gapped: true }\nrelay_groups:\n",
        )
}

#[test]
fn zones_change_only_what_they_say() {
    let pb = playbook(&["relay_barrier=relay-group"]);
    let plain = plan(
        &inventory(&inventory_text("examples/lab/inventory.yaml")),
        &pb,
    );
    let json = plan_to_json(&plain);
    assert!(!json.contains("\"zone\"") && !json.contains("air_gapped_zones"));

    let zoned = plan(&inventory(&zoned_lab()), &pb);
    assert_eq!(zoned.air_gapped_zones(), ["dmz".to_owned()]);
    // The same steps; the seal and the zone hosts' digests differ.
    let ids = |p: &medic_plan::Plan| p.steps().iter().map(|s| s.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&plain), ids(&zoned));
    assert_ne!(plan_digest(&plain), plan_digest(&zoned));
    assert_eq!(
        zoned.drifted_hosts(&plain),
        vec!["dmz-web-01", "relay-dmz-1"]
    );
    let back = plan_from_json(&plan_to_json(&zoned)).expect("reads back");
    assert_eq!(back, zoned);
    assert_eq!(
        plan_from_bytes(&plan_to_bytes(&zoned)).expect("reads back"),
        zoned
    );

    // Held: the zone's steps, and only those.
    let held: Vec<&str> = held_steps(&zoned)
        .iter()
        .zip(zoned.steps())
        .filter(|(h, _)| h.is_some())
        .map(|(_, s)| s.id.as_str())
        .collect();
    let done = |_: &medic_plan::Step| Done {
        state: "succeeded".to_owned(),
        detail: String::new(),
        observed: "{}".to_owned(),
    };
    let slice = make_slice(&zoned, &plan_digest(&zoned), "dmz", &done).expect("slices");
    assert_eq!(held, ids(&slice));
    assert!(
        held.iter()
            .all(|id| id.ends_with("dmz-1") || id.ends_with("dmz-web-01")),
        "{held:?}"
    );
    let info = slice.slice_info().expect("a slice");
    assert!(
        info.evidence
            .iter()
            .any(|e| e.id == "bundle-export/relay-tky-1")
    );
    assert!(
        held_steps(&slice).iter().all(Option::is_none),
        "a slice holds nothing"
    );
    assert_eq!(
        plan_from_json(&plan_to_json(&slice)).expect("reads back"),
        slice
    );
    assert_eq!(
        plan_from_bytes(&plan_to_bytes(&slice)).expect("reads back"),
        slice
    );
    // Not air-gapped: refused.
    assert!(make_slice(&zoned, "x", "default", &done).is_err());
}
