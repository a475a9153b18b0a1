//! Issue 9 item 10 with the real binary: `medic preflight` over a loopback sshd fleet (a
//! non-root SSH user with the real sudo) and against the DSM simulator server, and the same
//! checks at the start of a real `medic apply`.

use std::path::Path;
use std::process::{Command, Output};

use crate::fleet::{Fleet, OS_EL9, SUDO_PASSWORD, SUDO_USER};
use crate::world::{Opts, Spec, World};

/// Upgrades every host over SSH: no Manager step, so only the hosts are checked.
const PLAYBOOK: &str = r#"format: medic.playbook/v1
name: preflight-hosts
description: upgrade every agent and relay to the target build
params:
  target: { type: agent_build, default: "20.0.1.690", doc: the build every host must reach }
max_parallel: 10
defaults: { driver: ssh, timeout: 2m, estimate: 10s, retries: { max: 0, backoff: 1s } }
phases:
  - name: upgrade
    select: { roles: [agent, relay] }
    actions:
      - action: agent-upgrade
        args: { to: "{params.target}" }
        check:
          probe: agent-version
          when: { compare: { left: facts.agent_version, op: ge, right: params.target } }
"#;

fn medic(dir: &Path, f: &Fleet, sudo_password: &str) -> Command {
    crate::fleet_medic(dir, f, sudo_password)
}

fn text(o: &Output) -> (Option<i32>, String, String) {
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The status and detail of `host`'s `check` row in a `--format json` answer.
fn cell(json: &serde_json::Value, host: &str, check: &str) -> (String, String) {
    let r = json["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|r| r["host"] == host && r["check"] == check)
        .unwrap_or_else(|| panic!("no row {host} {check} in {json:#}"));
    (
        r["status"].as_str().unwrap_or("").to_owned(),
        r["detail"].as_str().unwrap_or("").to_owned(),
    )
}

/// Five hosts, a real sudo that asks for its password: everything in order is exit 0;
/// then a drifted build, a drifted Relay role, a missing package, an unknown host key and
/// a wrong sudo password are each a finding on their host (exit 1), and a real `apply`
/// refuses to start on them (exit 2, no journal).
#[test]
fn preflight_names_drift_a_missing_package_an_unknown_key_and_a_wrong_sudo_password() {
    let f = Fleet::start_sudo(5);
    f.set(3, "os_release", OS_EL9.trim_end());
    let dir = tempfile::tempdir().expect("dir");
    let mut inv = String::from(
        "manager: { name: dsm01, address: 127.0.0.1, version: \"20.0.463\" }\nbecome: sudo\nhosts:\n",
    );
    for i in 0..5 {
        let os = if i == 3 {
            "Red Hat Enterprise 9 (64 bit)"
        } else {
            "Red Hat Enterprise 8 (64 bit)"
        };
        inv.push_str(&format!(
            "  - {{ name: host-{i}, address: {}, port: {}, user: {SUDO_USER}, platform: linux, os: \"{os}\", agent_version: \"20.0.0-877\" }}\n",
            f.hosts[i], f.port
        ));
    }
    let p = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(p("inventory.yaml"), inv).expect("inventory");
    std::fs::write(p("playbook.yaml"), PLAYBOOK).expect("playbook");
    let conn = crate::fleet_args(dir.path(), &f);
    let preflight = |password: &str, format: &str| {
        let out = medic(dir.path(), &f, password)
            .arg("preflight")
            .args(&conn)
            .args(["--format", format])
            .output()
            .expect("medic preflight");
        text(&out)
    };

    // All in order.
    let (code, out, err) = preflight(SUDO_PASSWORD, "text");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.starts_with("pre-flight of preflight-hosts (plan "),
        "{out}"
    );
    assert!(
        out.contains(
            "summary: 33 checks on 5 hosts and the Manager: 30 ok, 0 findings, 3 not checked"
        ),
        "{out}"
    );
    assert!(out.trim_end().ends_with("the plan can run"), "{out}");
    let (_, json, _) = preflight(SUDO_PASSWORD, "json");
    let json: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(json["can_run"], true);
    assert_eq!(
        cell(&json, "host-3", "packages").1,
        "Agent-Core-RedHat_EL9-20.0.1-690.x86_64.rpm (Red Hat Enterprise Linux (or a rebuild) 9, from os-release and inventory os)"
    );
    assert_eq!(
        cell(&json, "host-0", "privilege").1,
        "privileged commands run as root (become: sudo)"
    );
    assert_eq!(
        cell(&json, "dsm01", "manager-api"),
        (
            "not-checked".to_owned(),
            "the plan does not talk to the Manager".to_owned()
        )
    );

    // Break one thing per host.
    f.set(1, "build", "20.0.0.500");
    f.set(2, "relay", "yes");
    std::fs::remove_file(
        f.packages
            .join("Agent-Core-RedHat_EL9-20.0.1-690.x86_64.rpm"),
    )
    .expect("remove the EL9 package");
    let known = std::fs::read_to_string(&f.known_hosts).expect("known_hosts");
    let without: String = known
        .lines()
        .filter(|l| !l.starts_with(&format!("[{}]:", f.hosts[4])))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(known, without);
    f.write_known_hosts(&without);

    let (code, json, err) = preflight("not the sudo password", "json");
    assert_eq!(code, Some(1), "{json}{err}");
    let json: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(json["can_run"], false);
    let finding = |host: &str, check: &str, needle: &str| {
        let (status, detail) = cell(&json, host, check);
        assert_eq!(status, "finding", "{host} {check}: {detail}");
        assert!(detail.contains(needle), "{host} {check}: {detail}");
    };
    finding(
        "host-1",
        "agent-build",
        "drift: the host runs build 20.0.0.500, the inventory says 20.0.0.877",
    );
    finding(
        "host-2",
        "relay-role",
        "drift: the host is a Relay (port 4122 listening), the inventory says an Agent",
    );
    finding(
        "host-3",
        "packages",
        "Agent-Core-RedHat_EL9-20.0.1-690.x86_64.rpm",
    );
    finding("host-4", "host-key", "SHA256:");
    for i in 0..4 {
        finding(
            &format!("host-{i}"),
            "privilege",
            "sudo refused the password",
        );
    }
    assert_eq!(cell(&json, "host-4", "reachable").0, "not-checked");
    // Nothing else is a finding, and nothing was installed.
    let findings = json["summary"]["findings"].as_u64().expect("findings");
    assert_eq!(findings, 8, "{json:#}");
    assert!((0..5).all(|i| f.get(i, "installs").is_none()));
    // The password never reaches the output.
    assert!(!json.to_string().contains("not the sudo password"));

    // A real apply runs the same checks first and refuses to start.
    let out = medic(dir.path(), &f, SUDO_PASSWORD)
        .arg("apply")
        .args(&conn)
        .args(["--yes", "--journal", &p("run.journal.sqlite")])
        .output()
        .expect("medic apply");
    let (code, _, err) = text(&out);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.starts_with("error: pre-flight: finding on host-1 (agent-build): drift"),
        "{err}"
    );
    for needle in [
        "finding on host-2 (relay-role)",
        "finding on host-3 (packages)",
        "finding on host-4 (host-key)",
        "--skip-preflight",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    assert!(!dir.path().join("run.journal.sqlite").exists());
    assert!(!dir.path().join(".medic").exists());
    assert!((0..5).all(|i| f.get(i, "installs").is_none()));
}

/// `medic preflight` of a world as `medic apply` would run it.
pub(crate) fn preflight_args(w: &World, format: &str) -> Vec<String> {
    let mut args = w.apply_args("unused");
    args[0] = "preflight".to_owned();
    // What only a run takes.
    let mut out = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--yes" => {}
            "--journal" | "--events" => {
                it.next();
            }
            _ => out.push(a),
        }
    }
    out.extend(["--format".to_owned(), format.to_owned()]);
    out
}

/// Replaces `manager_min_build=...` among the `--set`s.
fn with_min_build(mut args: Vec<String>, build: &str) -> Vec<String> {
    for a in &mut args {
        if a.starts_with("manager_min_build=") {
            *a = format!("manager_min_build={build}");
        }
    }
    args
}

/// The DS playbook against the DSM simulator: all good is exit 0 (its JSON shape is a
/// snapshot); a Manager below `manager_min_build` that the plan does not upgrade and a
/// direct-download setting the inventory gets wrong are findings; `apply` refuses on them,
/// and `--skip-preflight` runs anyway and is recorded in the journal.
#[test]
fn preflight_checks_the_manager_and_apply_refuses_unless_told_to_skip() {
    let w = World::new(Spec::sized(6), Opts::default());
    let r = w.run(&preflight_args(&w, "json"));
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let json: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(
        cell(&json, "dsm01", "manager-build").1,
        "build 20.0.463, at least manager_min_build 20.0.463"
    );
    assert_eq!(
        cell(&json, "relay-e1", "relay-role").1,
        "Relay as in the inventory"
    );
    insta::with_settings!({filters => vec![
        (r"127\.\d+\.\d+\.\d+:\d+", "[ADDR]"),
        (r"logged in as [a-z0-9_-]+@", "logged in as [USER]@"),
        (r#""fingerprint": "[0-9a-f]+""#, r#""fingerprint": "[FP]""#),
    ]}, {
        insta::assert_snapshot!("preflight_json_all_good", r.stdout);
    });

    // The inventory gets the Manager's setting and build wrong.
    let inv = std::fs::read_to_string(&w.inventory).expect("inventory");
    let changed = inv
        .replace(
            "direct_download_when_relays_unavailable: true",
            "direct_download_when_relays_unavailable: false",
        )
        .replace("version: \"20.0.463\"", "version: \"20.0.500\"");
    assert_ne!(inv, changed);
    std::fs::write(&w.inventory, changed).expect("inventory");

    let r = w.run(&with_min_build(preflight_args(&w, "text"), "20.0.500"));
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    for (check, needle) in [
        (
            "manager-build",
            "build 20.0.463 (the inventory says 20.0.500) is below manager_min_build 20.0.500 and the plan does not upgrade the Manager",
        ),
        (
            "direct-download",
            "the Manager's platformSettingUpdateAgentSecurityContactPrimarySourceOnMissingRelayEnabled is true, the inventory's settings.direct_download_when_relays_unavailable is false",
        ),
    ] {
        let row = r.stdout.lines().find(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() > 3 && w[0] == "dsm01" && w[1] == check
        });
        let row = row.unwrap_or_else(|| panic!("no {check} row:\n{}", r.stdout));
        assert!(
            row.split_whitespace().nth(2) == Some("finding") && row.contains(needle),
            "{row}"
        );
    }
    assert!(r.stdout.contains(", 2 findings, "), "{}", r.stdout);
    let r = w.run(&with_min_build(preflight_args(&w, "markdown"), "20.0.500"));
    assert_eq!(r.code, Some(1));
    assert!(
        r.stdout
            .contains("| dsm01 | direct-download | **finding** | the Manager's"),
        "{}",
        r.stdout
    );

    // A real apply refuses, naming both, and writes nothing.
    let apply = with_min_build(w.apply_args("run"), "20.0.500");
    let r = w.run(&apply);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("finding on dsm01 (manager-build)")
            && r.stderr.contains("finding on dsm01 (direct-download)"),
        "{}",
        r.stderr
    );
    assert!(!w.path("run.journal.sqlite").exists());
    assert!(w.effects().is_empty(), "{:?}", w.effects());

    // --skip-preflight: the run starts, and the journal says it was skipped.
    let mut skip = apply.clone();
    skip.push("--skip-preflight".to_owned());
    let r = w.run(&skip);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let status = w.run(&[
        "status".to_owned(),
        "--journal".to_owned(),
        w.path("run.journal.sqlite").display().to_string(),
        "--format".to_owned(),
        "json".to_owned(),
    ]);
    let s: serde_json::Value = serde_json::from_str(&status.stdout).expect("status json");
    assert_eq!(s["preflight"], "skipped (--skip-preflight)", "{s:#}");
    let status = w.run(&[
        "status".to_owned(),
        "--journal".to_owned(),
        w.path("run.journal.sqlite").display().to_string(),
    ]);
    assert!(
        status
            .stdout
            .contains("pre-flight: skipped (--skip-preflight)"),
        "{}",
        status.stdout
    );
}
