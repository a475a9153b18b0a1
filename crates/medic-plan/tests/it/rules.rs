//! DESIGN.md's Deep Security rules 1-10, checked on the lab inventory and variants of it.

use medic_model::{AgentBuild, Platform};
use medic_plan::StepKind;

use crate::util::*;

const LAB: &str = "examples/lab/inventory.yaml";

fn fixed() -> AgentBuild {
    "20.0.1-690".parse().expect("valid")
}

#[test]
fn every_rule_on_the_lab() {
    let inv = inventory(&inventory_text(LAB));
    let plan = plan(&inv, &playbook(&[]));
    let phases = by_phase(&plan);

    // R1: the Manager (20.0.463) meets manager_min_build (20.0.463): no upgrade, with a reason.
    assert!(!phases.contains_key("manager-upgrade"));
    assert!(plan.skipped().iter().any(|s| s.host == "dsm01"
        && s.phase == "manager-upgrade"
        && s.reason.contains("already supports")));

    // R2, R9: affected Relays are upgraded then updated; the rest are skipped with reasons.
    for h in &inv.hosts {
        let affected = h.has_agent() && !h.protected_by_appliance && h.agent_version < fixed();
        let phase = if h.relay {
            "relay-upgrade"
        } else {
            "agent-upgrade"
        };
        let planned = has(&plan, &format!("{phase}/{}", h.name));
        assert_eq!(
            planned, affected,
            "{} planned={planned} affected={affected}",
            h.name
        );
        if !affected {
            assert!(
                plan.skipped()
                    .iter()
                    .any(|s| s.host == h.name && s.phase == phase && !s.reason.is_empty()),
                "{} has a skip reason",
                h.name
            );
        }
        if affected && h.relay {
            assert!(
                direct_needs(&plan, &format!("relay-security-update/{}", h.name))
                    .contains(&format!("relay-upgrade/{}", h.name))
            );
        }
        if affected {
            // R3: Windows prerequisites before the upgrade.
            let up = format!("{phase}/{}", h.name);
            let pre = format!("windows-prereq/{}", h.name);
            assert_eq!(has(&plan, &pre), h.platform == Platform::Windows, "{pre}");
            if h.platform == Platform::Windows {
                assert!(direct_needs(&plan, &up).contains(&pre), "{up} needs {pre}");
                // R6: reboot guarded by the OS's answer.
                let reboot = plan.step(
                    plan.step_index(&format!("reboot/{}", h.name))
                        .expect("reboot step"),
                );
                assert!(
                    reboot
                        .guard
                        .as_ref()
                        .is_some_and(|g| g.when.to_string().contains("facts.pending_reboot"))
                );
                // R7: reinstall guarded, then verify again.
                let re = plan.step(
                    plan.step_index(&format!("reinstall/{}", h.name))
                        .expect("reinstall"),
                );
                assert!(re.guard.is_some());
                assert!(
                    direct_needs(&plan, &format!("reverify/{}", h.name))
                        .contains(&format!("reinstall/{}", h.name))
                );
            }
            // R7: every upgraded host is verified after its security update.
            let su = if h.relay {
                "relay-security-update"
            } else {
                "agent-security-update"
            };
            assert!(
                ancestors(&plan, &format!("verify/{}", h.name))
                    .contains(&format!("{su}/{}", h.name))
            );
        }
    }

    // R5 (global barrier): every Agent upgrade waits for every Relay security update.
    let relay_updates: Vec<String> = phases["relay-security-update"]
        .iter()
        .map(|h| format!("relay-security-update/{h}"))
        .collect();
    for a in &phases["agent-upgrade"] {
        let anc = ancestors(&plan, &format!("agent-upgrade/{a}"));
        for r in &relay_updates {
            assert!(anc.contains(r), "agent-upgrade/{a} waits for {r}");
        }
    }

    // R8: the offline Relay after its bundle source, to the same build; export after the
    // source's update; import after both; its security update from the bundle.
    assert!(direct_needs(&plan, "relay-upgrade/relay-dmz-1").contains("relay-upgrade/relay-tky-1"));
    // Through the troubleshooting branch (cache clear, retry), which is skipped when the
    // first security update completes.
    assert!(
        direct_needs(&plan, "bundle-export/relay-tky-1")
            .contains("relay-security-update-retry/relay-tky-1")
    );
    assert!(
        ancestors(&plan, "bundle-export/relay-tky-1").contains("relay-security-update/relay-tky-1")
    );
    let import = direct_needs(&plan, "bundle-import/relay-dmz-1");
    assert!(
        import.contains("bundle-export/relay-tky-1")
            && import.contains("relay-upgrade/relay-dmz-1")
    );
    assert!(
        direct_needs(&plan, "relay-security-update/relay-dmz-1")
            .contains("bundle-import/relay-dmz-1")
    );
    let to = |id: &str| {
        plan.step(plan.step_index(id).expect("step"))
            .args
            .iter()
            .find(|(k, _)| k == "to")
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        to("relay-upgrade/relay-dmz-1"),
        to("relay-upgrade/relay-tky-1")
    );
    let offline_su = plan.step(
        plan.step_index("relay-security-update/relay-dmz-1")
            .expect("step"),
    );
    assert!(
        offline_su
            .args
            .iter()
            .any(|(k, v)| k == "source" && v == "bundle")
    );
}

#[test]
fn an_old_manager_is_upgraded_before_any_relay() {
    let text = inventory_text(LAB).replace("version: \"20.0.463\"", "version: \"20.0.100\"");
    let inv = inventory(&text);
    let plan = plan(&inv, &playbook(&[]));
    assert!(has(&plan, "manager-upgrade/dsm01"));
    for h in &by_phase(&plan)["relay-upgrade"] {
        assert!(
            ancestors(&plan, &format!("relay-upgrade/{h}")).contains("manager-upgrade/dsm01"),
            "{h}"
        );
    }
}

#[test]
fn with_the_setting_off_no_plain_agent_is_touched() {
    let text = inventory_text(LAB).replace(
        "direct_download_when_relays_unavailable: true",
        "direct_download_when_relays_unavailable: false",
    );
    let plan = plan(&inventory(&text), &playbook(&[]));
    assert!(!by_phase(&plan).contains_key("agent-upgrade"));
    let reasons: Vec<_> = plan
        .skipped()
        .iter()
        .filter(|s| s.phase == "agent-upgrade")
        .collect();
    assert!(
        reasons
            .iter()
            .any(|s| s.host == "web-01"
                && s.reason.contains("does not let Agents download directly"))
    );
    // Relays are still remediated.
    assert!(has(&plan, "relay-upgrade/relay-tky-1"));
}

#[test]
fn the_relay_group_barrier_waits_only_for_the_agents_own_relays() {
    let plan = plan(
        &inventory(&inventory_text(LAB)),
        &playbook(&["relay_barrier=relay-group"]),
    );
    // Direct edges: waves may add indirect waits (a wave gate after another group's hosts).
    let needs = direct_needs(&plan, "agent-upgrade/db-01");
    // relay-osk-1 runs Windows: its last verification is the reverify.
    assert!(
        needs.contains("reverify/relay-osk-1"),
        "db-01 is in osaka: {needs:?}"
    );
    assert!(
        !needs
            .iter()
            .any(|n| n.contains("relay-tky") || n.starts_with("join/")),
        "db-01 does not wait for tokyo: {needs:?}"
    );
    let anc = ancestors(&plan, "agent-upgrade/app-01");
    assert!(anc.contains("verify/relay-tky-1"));
    assert!(
        !anc.contains("relay-security-update/relay-osk-1"),
        "app-01 is in wave 0 and tokyo: {anc:?}"
    );
}

#[test]
fn raising_the_fixed_build_brings_hosts_in_and_set_moves_the_target() {
    let plan = plan(
        &inventory(&inventory_text(LAB)),
        &playbook(&["fixed_build.linux=20.0.1-9000"]),
    );
    assert!(
        has(&plan, "agent-upgrade/app-02"),
        "app-02 (20.0.1-690) is now affected"
    );
    let s = plan.step(plan.step_index("agent-upgrade/app-02").expect("step"));
    assert!(
        s.args
            .contains(&("to".to_owned(), "20.0.1.9000".to_owned())),
        "{:?}",
        s.args
    );
    // Setting Linux's value leaves Windows' an example.
    assert!(
        plan.example_params()
            .iter()
            .all(|p| p != "fixed_build.linux")
    );
    assert!(
        plan.example_params()
            .iter()
            .any(|p| p == "fixed_build.windows")
    );
}

#[test]
fn the_multi_site_example_has_waves_gates_and_a_canary() {
    let inv = inventory(&inventory_text("examples/multi-site/inventory.yaml"));
    let plan = plan(&inv, &playbook(&["manager_min_build=20.0.463"]));
    let info = plan.phase_info("agent-upgrade").expect("phase");
    assert!(info.waves.len() >= 3, "{:?}", info.waves);
    let canary: Vec<_> = plan
        .steps()
        .iter()
        .filter(|s| &*s.phase == "agent-upgrade" && s.wave == Some(0))
        .filter_map(|s| plan.host_name(s))
        .collect();
    for h in &canary {
        assert!(
            inv.host(h)
                .expect("host")
                .groups
                .iter()
                .any(|g| g == "canary"),
            "{h} in canary wave"
        );
    }
    assert!(
        plan.steps()
            .iter()
            .any(|s| matches!(s.kind, StepKind::Gate(g) if g.approval))
    );
    assert!(has(&plan, "manager-upgrade/dsm-prod"));
}

#[test]
fn plans_are_deterministic_and_round_trip_through_json() {
    let inv = inventory(&inventory_text(LAB));
    let pb = playbook(&[]);
    let a = medic_plan::plan_to_json(&plan(&inv, &pb));
    let b = medic_plan::plan_to_json(&plan(&inv, &pb));
    assert_eq!(a, b, "same inputs, same bytes");
    let back = medic_plan::plan_from_json(&a).expect("reads back");
    assert_eq!(
        medic_plan::plan_to_json(&back),
        a,
        "JSON round trip is lossless"
    );
}

/// Step ids and host names are keys (the journal records step states by id), and a step
/// lists each of its needs once: a plan that repeats one is refused by both readers. The binary case is the fuzzer's reproducer
/// (`fuzz/` target `plan_bin`): a mutated id that equals another step's.
#[test]
fn plans_that_repeat_a_step_id_or_a_host_are_refused() {
    let bytes = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/plan_bin/duplicate_step_id.bin"),
    )
    .expect("the reproducer");
    let err = medic_plan::plan_from_bytes(&bytes).expect_err("refused");
    assert!(
        matches!(
            &err,
            medic_plan::PlanBinError::Repeated { kind: "step", .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("appears twice"), "{err}");
    // The second reproducer: a step listing the same need twice.
    let bytes = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/plan_bin/repeated_need.bin"),
    )
    .expect("the reproducer");
    let err = medic_plan::plan_from_bytes(&bytes).expect_err("refused");
    assert!(err.to_string().contains("the same step twice"), "{err}");

    let p = plan(&inventory(&inventory_text(LAB)), &playbook(&[]));
    let mut json: serde_json::Value =
        serde_json::from_str(&medic_plan::plan_to_json(&p)).expect("json");
    let steps = json["steps"].as_array_mut().expect("steps");
    let first = steps[0].clone();
    let id = first["id"].as_str().expect("an id").to_owned();
    steps.push(first);
    let err = medic_plan::plan_from_json(&json.to_string()).expect_err("refused");
    assert_eq!(
        err,
        medic_plan::PlanReadError::Invalid(medic_plan::InvalidPlan::RepeatedStep(id.clone()))
    );
    assert_eq!(err.to_string(), format!("step `{id}` appears twice"));
}

/// The JSON reader's errors are typed: each says what was wrong (the step, the field, what
/// was found there), and reads as it always did.
#[test]
fn json_plan_errors_name_what_was_wrong() {
    use medic_plan::{BadCondition, InvalidPlan, PlanReadError};
    let p = plan(&inventory(&inventory_text(LAB)), &playbook(&[]));
    let good: serde_json::Value =
        serde_json::from_str(&medic_plan::plan_to_json(&p)).expect("json");
    let read = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut json = good.clone();
        edit(&mut json);
        match medic_plan::plan_from_json(&json.to_string()) {
            Err(PlanReadError::Invalid(e)) => e,
            other => panic!("not refused as invalid: {other:?}"),
        }
    };
    let step = good["steps"][1]["id"].as_str().expect("an id").to_owned();

    let e = read(&|j| j["format"] = "medic.plan/v0".into());
    assert_eq!(
        e,
        InvalidPlan::Format {
            found: "medic.plan/v0".into()
        }
    );
    assert_eq!(
        e.to_string(),
        "unsupported plan format `medic.plan/v0` (this medic reads medic.plan/v1)"
    );

    let e = read(&|j| j["steps"][1]["needs"] = serde_json::json!(["nowhere"]));
    assert_eq!(
        e,
        InvalidPlan::UnknownNeed {
            step: step.clone(),
            need: "nowhere".into()
        }
    );
    assert_eq!(
        e.to_string(),
        format!("step `{step}` needs unknown step `nowhere`")
    );

    let e = read(&|j| j["steps"][1]["kind"] = "launch".into());
    assert_eq!(
        e,
        InvalidPlan::UnknownKind {
            step: step.clone(),
            found: "launch".into()
        }
    );

    let e = read(&|j| j["steps"][1]["host"] = "ghost".into());
    assert_eq!(
        e,
        InvalidPlan::UnknownHost {
            step: step.clone(),
            host: "ghost".into()
        }
    );

    let host = good["hosts"][0]["name"]
        .as_str()
        .expect("a name")
        .to_owned();
    let e = read(&|j| j["hosts"][0]["platform"] = "plan9".into());
    assert_eq!(
        e,
        InvalidPlan::UnknownPlatform {
            host: host.clone(),
            found: "plan9".into()
        }
    );

    let e =
        read(&|j| j["steps"][1]["check"] = serde_json::json!({"probe": "x", "when": {"is": 3}}));
    assert_eq!(
        e,
        InvalidPlan::Condition {
            step: step.clone(),
            error: BadCondition::NotAPath { found: "3".into() }
        }
    );
    assert_eq!(e.to_string(), "not a path: 3");

    let e = match medic_plan::plan_from_json("{\n  \"format\": 1\n}") {
        Err(PlanReadError::Invalid(e)) => e,
        other => panic!("not refused as invalid: {other:?}"),
    };
    assert!(matches!(e, InvalidPlan::NotAPlan { line: 2, .. }), "{e:?}");
    assert!(e.to_string().starts_with("not a medic plan: "), "{e}");
}

#[test]
fn plans_round_trip_through_the_journal_binary_form() {
    // Waves, gates, guards and checks, skipped hosts, relay groups: the lab with the
    // Deep Security playbook, with and without a change window.
    let inv = inventory(&inventory_text(LAB));
    let pb = playbook(&[]);
    let window = medic_plan::Window::parse("2026-12-01T22:00+09:00/2026-12-02T04:00+09:00")
        .expect("a window");
    let windowed =
        medic_plan::build_plan(&inv, &pb, &playbook_text(), Some(window)).expect("plan builds");
    assert!(windowed.estimate().window.is_some());
    let back =
        medic_plan::plan_from_bytes(&medic_plan::plan_to_bytes(&windowed)).expect("reads back");
    assert!(back == windowed, "the window survives");
    let p = plan(&inv, &pb);
    let bytes = medic_plan::plan_to_bytes(&p);
    let back = medic_plan::plan_from_bytes(&bytes).expect("reads back");
    assert!(back == p, "binary round trip is lossless");
    assert_eq!(
        medic_plan::plan_to_json(&back),
        medic_plan::plan_to_json(&p)
    );
    assert_eq!(
        medic_plan::plan_to_bytes(&back),
        bytes,
        "same plan, same bytes"
    );
    assert!(
        bytes.len() * 4 < medic_plan::plan_to_json(&p).len(),
        "{} bytes",
        bytes.len()
    );
    // Damaged bytes are refused, never a panic: every truncation, and every single byte
    // changed (to a few values).
    for n in 0..bytes.len() {
        assert!(
            medic_plan::plan_from_bytes(&bytes[..n]).is_err(),
            "prefix {n}"
        );
    }
    let mut changed = bytes.clone();
    for i in (0..bytes.len()).step_by(bytes.len() / 3000 + 1) {
        for v in [0u8, 1, 2, 0x7f, 0x80, 0xff, bytes[i] ^ 1] {
            changed[i] = v;
            let _ = medic_plan::plan_from_bytes(&changed);
        }
        changed[i] = bytes[i];
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(
        medic_plan::plan_from_bytes(&longer).is_err(),
        "trailing bytes"
    );
    assert!(medic_plan::plan_from_bytes(b"{\"format\": \"medic.plan/v1\"}").is_err());
}

#[test]
fn a_changed_host_is_named_as_drift() {
    let pb = playbook(&[]);
    let a = plan(&inventory(&inventory_text(LAB)), &pb);
    let text = inventory_text(LAB).replace(
        "agent_version: \"20.0.0-877\", relay_group: osaka, groups: [osaka] }",
        "agent_version: \"20.0.0-878\", relay_group: osaka, groups: [osaka] }",
    );
    let b = plan(&inventory(&text), &pb);
    assert_ne!(a.fingerprint(), b.fingerprint());
    assert_eq!(
        a.drifted_hosts(&b),
        vec!["db-01".to_owned(), "file-01".to_owned()]
    );
}
