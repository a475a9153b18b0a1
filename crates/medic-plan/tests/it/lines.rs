//! Fixed builds per version line, target overrides, offline Relays at their bundle source's
//! build, the Relay barrier on verification and the conditional Manager upgrade, as data:
//! each case is an inventory edit and `--set` values; what the plan says about it (targets,
//! the Relays each Agent upgrade waits for, skip reasons, warnings) is a snapshot.

use std::collections::BTreeSet;

use medic_plan::{PlanError, StepKind};

use crate::util::*;

const BASE: &str = r#"manager: { name: dsm01, address: 10.0.0.5, version: "20.0.400" }
settings: { direct_download_when_relays_unavailable: true }
relay_groups:
  - { name: tokyo }
  - { name: dmz, offline: true, bundle_source: relay-src }
hosts:
  - { name: relay-src, address: 10.0.1.10, platform: linux, agent_version: "20.0.0-3445", relay: true, relay_group: tokyo }
  - { name: relay-12, address: 10.0.1.11, platform: windows, agent_version: "12.0.0-1234", relay: true, relay_group: tokyo, protected_by_appliance: true }
  - { name: relay-off, address: 10.0.9.10, platform: linux, agent_version: "12.0.0-1234", relay: true, relay_group: dmz }
  - { name: app-12-fixed, address: 10.0.1.21, platform: linux, agent_version: "12.0.0-9999", relay_group: tokyo }
  - { name: app-12, address: 10.0.1.22, platform: linux, agent_version: "12.0.0-100", relay_group: tokyo }
  - { name: app-20, address: 10.0.1.23, platform: linux, agent_version: "20.0.0-877", relay_group: tokyo }
  - { name: app-11, address: 10.0.1.24, platform: linux, agent_version: "11.0.0-100", relay_group: tokyo }
  - { name: app-dmz, address: 10.0.9.21, platform: linux, agent_version: "20.0.0-877", relay_group: dmz }
  - { name: app-nogroup, address: 10.0.1.25, platform: linux, agent_version: "20.0.0-877" }
"#;

const LINES: [&str; 3] = [
    "fixed_build.linux=12.0.0-9999,20.0.0-5137",
    "fixed_build.windows=12.0.0-9999,20.0.0-5137",
    "manager_min_build=20.0.463",
];

/// (name, inventory edits (from, to), extra --set values)
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

const CASES: &[Case] = &[
    // Each host to its own line's build; a line without one (11.0) to the highest; the
    // offline Relay (12.0) to its source's target (20.0); the appliance-protected Relay is
    // upgraded; the Manager is upgraded since Relays and Agents are.
    ("per_line", &[], &[]),
    // One build for every host of the platform; the offline Relay follows its source.
    ("target_override", &[], &["target_build.linux=20.0.1-690"]),
    // A target below a line's fixed build is planned, with a warning per line.
    (
        "target_below_fixed",
        &[],
        &["target_build.linux=12.0.0-9000"],
    ),
    // The source needs no upgrade: it still runs a security update before the export, and
    // the offline Relay goes to the source's current build.
    (
        "source_not_upgraded",
        &[(
            "agent_version: \"20.0.0-3445\", relay: true",
            "agent_version: \"20.0.0-6000\", relay: true",
        )],
        &[],
    ),
    // Across platforms each Relay gets its own platform's target, with a warning.
    (
        "offline_other_platform",
        &[(
            "relay-off, address: 10.0.9.10, platform: linux",
            "relay-off, address: 10.0.9.10, platform: windows",
        )],
        &[],
    ),
    // An Agent without a relay group waits for every Relay under the relay-group barrier.
    ("relay_group_barrier", &[], &["relay_barrier=relay-group"]),
    // Nothing to upgrade: the old Manager is skipped with the reason.
    (
        "nothing_to_upgrade",
        &[
            (
                "\"20.0.0-3445\", relay: true",
                "\"20.0.0-5137\", relay: true",
            ),
            (
                "\"12.0.0-1234\", relay: true, relay_group: tokyo",
                "\"12.0.0-9999\", relay: true, relay_group: tokyo",
            ),
            (
                "\"12.0.0-1234\", relay: true, relay_group: dmz",
                "\"20.0.0-5137\", relay: true, relay_group: dmz",
            ),
            (
                "direct_download_when_relays_unavailable: true",
                "direct_download_when_relays_unavailable: false",
            ),
        ],
        &[],
    ),
];

fn edited(edits: &[(&str, &str)]) -> String {
    let mut t = BASE.to_owned();
    for (from, to) in edits {
        assert!(t.contains(from), "the case edits `{from}`");
        t = t.replacen(from, to, 1);
    }
    t
}

fn sets(extra: &[&str]) -> Vec<String> {
    LINES.iter().chain(extra).map(|s| s.to_string()).collect()
}

/// What a person checks in the plan, one line per fact.
fn summary(plan: &medic_plan::Plan) -> String {
    let mut out = String::new();
    for s in plan.steps().iter().filter(|s| s.kind == StepKind::Action) {
        let args: Vec<String> = s
            .args
            .iter()
            .filter(|(k, _)| k == "to" || k == "min_build")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !args.is_empty() || s.phase.starts_with("bundle") || &*s.phase == "relay-security-update"
        {
            out.push_str(&format!("{} {}\n", s.id, args.join(" ")));
        }
    }
    for s in plan
        .steps()
        .iter()
        .filter(|s| &*s.phase == "agent-upgrade" && s.kind == StepKind::Action)
    {
        let waits: BTreeSet<String> = ancestors(plan, &s.id)
            .into_iter()
            .filter(|a| {
                (a.starts_with("verify/relay") || a.starts_with("reverify/relay"))
                    && !a.contains("join")
            })
            .collect();
        out.push_str(&format!(
            "{} waits for {}\n",
            s.id,
            waits.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    for s in plan.skipped() {
        out.push_str(&format!(
            "skipped {} in {}: {}\n",
            s.host, s.phase, s.reason
        ));
    }
    for w in plan.warnings() {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

#[test]
fn version_lines_and_offline_relays() {
    for (name, edits, extra) in CASES {
        let inv = inventory(&edited(edits));
        let sets = sets(extra);
        let pb = medic_config::load_playbook("ds.yaml", &playbook_text(), &sets)
            .unwrap_or_else(|p| panic!("{name}: {p}"));
        let plan = medic_plan::build_plan(&inv, &pb, &playbook_text(), None)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        insta::assert_snapshot!(format!("lines_{name}"), summary(&plan));
    }
}

/// An offline Relay above its bundle source's final build is refused, naming both hosts and
/// the parameter that would fix it; every such Relay is reported.
#[test]
fn an_offline_relay_above_its_source_is_refused() {
    /// (inventory edits, extra --set values, what the help must say)
    type Refused = (
        &'static [(&'static str, &'static str)],
        &'static [&'static str],
        &'static str,
    );
    let cases: &[Refused] = &[
        // The source goes to 20.0.0-5137; the offline Relay is at 20.0.0-6000.
        (
            &[(
                "\"12.0.0-1234\", relay: true, relay_group: dmz",
                "\"20.0.0-6000\", relay: true, relay_group: dmz",
            )],
            &[],
            "--set target_build.linux=20.0.0.6000",
        ),
        // The source is not upgraded (20.0.0-5200) and the offline Relay is above it.
        (
            &[
                (
                    "\"20.0.0-3445\", relay: true",
                    "\"20.0.0-5200\", relay: true",
                ),
                (
                    "\"12.0.0-1234\", relay: true, relay_group: dmz",
                    "\"20.0.0-6000\", relay: true, relay_group: dmz",
                ),
            ],
            &[],
            "--set fixed_build.linux=",
        ),
    ];
    for (edits, extra, fix) in cases {
        let inv = inventory(&edited(edits));
        let pb =
            medic_config::load_playbook("ds.yaml", &playbook_text(), &sets(extra)).expect("loads");
        match medic_plan::build_plan(&inv, &pb, &playbook_text(), None) {
            Err(PlanError::Refused(r)) => {
                assert_eq!(r.len(), 1, "{r:?}");
                assert_eq!(r[0].host, "relay-off");
                assert!(
                    r[0].message.contains("relay-off") && r[0].message.contains("relay-src"),
                    "{r:?}"
                );
                assert!(
                    r[0].help.as_deref().is_some_and(|h| h.contains(fix)),
                    "{r:?}"
                );
            }
            other => panic!("refused, got {:?}", other.map(|p| p.steps().len())),
        }
    }
}

/// Two builds of one line, 3-part builds and empty items: input errors naming the `--set`,
/// all reported at once; in the playbook file, with the file's position.
#[test]
fn bad_build_lists_are_input_errors() {
    let sets: Vec<String> = vec![
        "fixed_build.linux=20.0.0-1,20.0.0-2".into(),
        "fixed_build.windows=12.0.1617,,20.0.0-1".into(),
        "fixed_build.windows=".into(),
    ];
    let e = medic_config::load_playbook("ds.yaml", &playbook_text(), &sets).expect_err("bad");
    let text: Vec<String> = e.0.iter().map(|p| p.to_string()).collect();
    assert_eq!(text.len(), 3, "{text:#?}");
    assert!(
        text[0].starts_with("--set:1:1: `--set fixed_build.linux=20.0.0-1,20.0.0-2`"),
        "{text:#?}"
    );
    assert!(text[0].contains("both on line 20.0"), "{text:#?}");
    assert!(
        text[1].contains("3 parts") && text[1].contains("item 2"),
        "{text:#?}"
    );
    assert!(text[2].contains("empty"), "{text:#?}");

    let pb = playbook_text().replacen(
        "linux: [\"12.0.0-5000\", \"20.0.1-690\"]",
        "linux: [\"12.0.0-5000\", \"12.0.0-6000\"]",
        1,
    );
    assert_ne!(pb, playbook_text());
    let e = medic_config::load_playbook("ds.yaml", &pb, &[]).expect_err("bad");
    let all: Vec<String> = e.0.iter().map(|p| p.to_string()).collect();
    assert!(
        all.iter()
            .any(|p| p.starts_with("ds.yaml:") && p.contains("both on line 12.0")),
        "{all:#?}"
    );
}
