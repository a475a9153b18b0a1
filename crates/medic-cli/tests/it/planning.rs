//! Planning from the outside: targets per version line in the plan JSON, the refusal of a
//! real run on example values, and what `medic plan --help` explains.

use crate::util::{TestEnv, lab_inventory, real_playbook};

fn step<'a>(plan: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    plan["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("step {id} in the plan"))
}

#[test]
fn the_plan_json_carries_each_hosts_target_by_version_line() {
    let env = TestEnv::new();
    let (inv, pb) = (lab_inventory(), real_playbook());
    let run = env.run([
        "plan",
        "--inventory",
        inv.to_str().expect("utf-8"),
        "--playbook",
        pb.to_str().expect("utf-8"),
        "--set",
        "fixed_build.linux=12.0.0-9999,20.0.0-5137",
        "--set",
        "fixed_build.windows=12.0.0-8888,20.0.0-5137",
        "--format",
        "json",
    ]);
    run.assert_code(0);
    let plan: serde_json::Value = serde_json::from_str(&run.stdout).expect("plan json");
    let to = |id: &str| step(&plan, id)["args"]["to"].as_str().map(str::to_owned);
    // Each host to its own line's fixed build.
    assert_eq!(to("agent-upgrade/app-01").as_deref(), Some("20.0.0.5137"));
    assert_eq!(to("agent-upgrade/web-01").as_deref(), Some("12.0.0.8888"));
    assert_eq!(
        to("relay-upgrade/relay-osk-1").as_deref(),
        Some("12.0.0.8888")
    );
    // The offline Relay (12.0) to the build of its bundle source (20.0).
    assert_eq!(
        to("relay-upgrade/relay-tky-1").as_deref(),
        Some("20.0.0.5137")
    );
    assert_eq!(
        to("relay-upgrade/relay-dmz-1").as_deref(),
        Some("20.0.0.5137")
    );
    // Verification and skip reasons speak of the host's own line.
    assert_eq!(
        step(&plan, "verify/relay-dmz-1")["args"]["min_build"],
        "12.0.0.9999"
    );
    let skipped = plan["skipped"].as_array().expect("skipped");
    assert!(
        skipped.iter().any(|s| s["host"] == "app-02"
            && s["reason"] == "build 20.0.1.690 is not affected (fixed build 20.0.0.5137)"),
        "{skipped:?}"
    );
    // Setting both platforms leaves only the Manager's build as an example.
    assert_eq!(
        plan["example_params"],
        serde_json::json!(["manager_min_build"])
    );
}

#[test]
fn a_real_apply_refuses_example_values_before_writing_anything() {
    let env = TestEnv::new();
    let (inv, pb) = (lab_inventory(), real_playbook());
    let (inv, pb) = (inv.to_str().expect("utf-8"), pb.to_str().expect("utf-8"));
    let run = env.run([
        "apply",
        "--inventory",
        inv,
        "--playbook",
        pb,
        "--set",
        "fixed_build.windows=12.0.0-8888,20.0.0-5137",
        "--journal",
        "runs/journal.sqlite",
        "--yes",
    ]);
    run.assert_code(2);
    let first = run.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(
            "error: --set: parameter `fixed_build.linux` still has the playbook's example value `12.0.0-5000,20.0.1-690`"
        ),
        "{run}"
    );
    // Every example still in effect, each with the --set that replaces it; Windows' was set.
    assert!(
        run.stderr.contains("pass `--set fixed_build.linux=VALUE`"),
        "{run}"
    );
    assert!(
        run.stderr.contains("`manager_min_build` still has"),
        "{run}"
    );
    assert!(!run.stderr.contains("`fixed_build.windows` still"), "{run}");
    assert!(
        run.stderr
            .contains("2 problems found; nothing was planned or run"),
        "{run}"
    );
    assert!(!env.path().join("runs").exists(), "no journal directory");
    assert!(!env.path().join(".medic").exists(), "no run directory");

    // A saved plan is refused the same way.
    let plan = env.run([
        "plan",
        "--inventory",
        inv,
        "--playbook",
        pb,
        "--format",
        "json",
        "--out",
        "plan.json",
    ]);
    plan.assert_code(0);
    let run = env.run([
        "apply",
        "--plan",
        "plan.json",
        "--journal",
        "runs/journal.sqlite",
        "--yes",
    ]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("`fixed_build.windows` still has"),
        "{run}"
    );
    assert!(!env.path().join("runs").exists(), "no journal directory");
}

#[test]
fn the_plan_text_names_the_manual_step_and_the_per_line_targets() {
    let env = TestEnv::new();
    let inv = env.write(
        "inventory.yaml",
        std::fs::read_to_string(lab_inventory())
            .expect("lab")
            .replace("version: \"20.0.463\"", "version: \"20.0.400\""),
    );
    let pb = real_playbook();
    let run = env.run([
        "plan",
        "--inventory",
        inv.to_str().expect("utf-8"),
        "--playbook",
        pb.to_str().expect("utf-8"),
    ]);
    run.assert_code(0);
    for want in [
        "manual steps (the run pauses at each until the operator approves it; --yes does not):",
        "manager-upgrade/dsm01: manual step: back up the Manager database, upgrade the Manager dsm01 to build 20.0.463",
        "medic approve --journal JOURNAL manager-upgrade/dsm01",
        "relay-upgrade to 12.0.0.5000: relay-osk-1",
        "relay-upgrade to 20.0.1.690: relay-tky-1, relay-dmz-1",
        "warning: still at the playbook's example values: fixed_build.linux, fixed_build.windows, manager_min_build",
    ] {
        assert!(
            run.stdout.contains(want),
            "missing `{want}`:\n{}",
            run.stdout
        );
    }
}

#[test]
fn plan_help_explains_the_parameter_format_and_manual_steps() {
    let env = TestEnv::new();
    let run = env.run(["plan", "--help"]);
    run.assert_code(0);
    for want in [
        "fixed_build.linux=12.0.0-9999,20.0.0-5137",
        "target_build",
        "Manual steps",
        "medic approve",
    ] {
        assert!(
            run.stdout.contains(want),
            "missing `{want}`:\n{}",
            run.stdout
        );
    }
}
