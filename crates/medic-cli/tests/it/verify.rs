//! Verification in a rehearsal (issue 9, item 6): Anti-Malware switched off by policy and a
//! pending reboot on Linux finish as succeeded with notes, in the summary and the events;
//! only "Anti-Malware offline" after a Windows upgrade gets the reinstall.

use crate::util::{TestEnv, real_playbook};

const INVENTORY: &str = r#"manager: { name: dsm01, address: 10.0.0.5, version: "20.0.463" }
settings: { direct_download_when_relays_unavailable: true }
relay_groups: [ { name: tokyo } ]
hosts:
  - { name: relay-1, address: 10.0.1.10, platform: linux, agent_version: "20.0.0-3445", relay: true, relay_group: tokyo, groups: [canary] }
  - { name: am-off, address: 10.0.1.21, platform: windows, agent_version: "20.0.0-5995", relay_group: tokyo, vars: { antimalware: "off" } }
  - { name: linux-reboot, address: 10.0.1.22, platform: linux, agent_version: "20.0.0-3445", relay_group: tokyo, groups: [canary], vars: { reboot: pending } }
  - { name: win-offline, address: 10.0.1.23, platform: windows, agent_version: "20.0.0-5995", relay_group: tokyo, vars: { certs: present, antimalware: offline-after-upgrade } }
"#;

#[test]
fn off_by_policy_and_a_linux_reboot_are_notes_and_only_offline_is_reinstalled() {
    let env = TestEnv::new();
    env.write("inv.yaml", INVENTORY);
    let pb = real_playbook().display().to_string();
    let run = env.run([
        "apply",
        "-i",
        "inv.yaml",
        "-p",
        &pb,
        "--simulate",
        "--time-scale",
        "6000",
        "--yes",
        "--journal",
        "j.sqlite",
        "--events",
        "events.jsonl",
        "--progress",
        "never",
    ]);
    run.assert_code(0);
    let err = &run.stderr;
    assert!(
        err.contains("hosts: 4 verified, 0 failed, 0 incomplete"),
        "{err}"
    );
    let notes = &err[err
        .find("  notes (succeeded, not failures):")
        .unwrap_or_else(|| panic!("no notes in the summary:\n{err}"))..];
    let line = |host: &str| {
        notes
            .lines()
            .find(|l| l.contains("verify") && l.contains(host))
            .unwrap_or_else(|| panic!("no note for {host}:\n{notes}"))
            .to_owned()
    };
    assert!(line("am-off").contains("switched off by policy"), "{notes}");
    assert!(
        line("linux-reboot").contains("reboot is pending"),
        "{notes}"
    );
    assert!(
        !notes
            .lines()
            .any(|l| l.contains("win-offline") && l.contains("reboot is pending")),
        "{notes}"
    );

    // The reinstall ran on the host whose Anti-Malware went offline, and only there.
    let reinstall = err
        .lines()
        .find(|l| l.trim_start().starts_with("reinstall "))
        .unwrap_or_else(|| panic!("no reinstall row:\n{err}"));
    let counts: Vec<u32> = reinstall
        .split_whitespace()
        .skip(1)
        .map(|n| n.parse().expect("count"))
        .collect();
    assert_eq!(
        counts,
        [1, 0, 1, 0],
        "acted, already done, guard skipped, failed: {reinstall}"
    );

    // The events say the same, host by host.
    let events = std::fs::read_to_string(env.path().join("events.jsonl")).expect("events");
    let noted: Vec<serde_json::Value> = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "step_noted")
        .collect();
    let hosts: Vec<&str> = noted.iter().filter_map(|e| e["host"].as_str()).collect();
    assert!(
        hosts.contains(&"am-off") && hosts.contains(&"linux-reboot"),
        "{noted:?}"
    );
    let finished = |host: &str, action: &str| -> Vec<String> {
        events
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["event"] == "step_finished" && e["host"] == host && e["action"] == action)
            .map(|e| e["outcome"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    // `verify`, then `reverify` (the same action), skipped: nothing was reinstalled.
    assert_eq!(finished("am-off", "verify"), ["succeeded", "skipped"]);
    assert_eq!(finished("linux-reboot", "verify"), ["succeeded"]);
    assert_eq!(finished("am-off", "reinstall"), ["skipped"]);
    // Verify, reinstall, verify again.
    assert_eq!(finished("win-offline", "verify"), ["failed", "succeeded"]);
    assert_eq!(finished("win-offline", "reinstall"), ["succeeded"]);
}
