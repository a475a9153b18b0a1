//! Runs of the binary on the simulated fleet: the demo, the summary, status and approve.

use crate::util::{TestEnv, lab_inventory, real_playbook};

fn summary_block(stderr: &str) -> String {
    let start = stderr.find("\nsummary").map(|i| i + 1).unwrap_or(0);
    let end = stderr.find("  journal:").unwrap_or(stderr.len());
    stderr[start..end].to_owned()
}

#[test]
fn the_demo_runs_green_and_says_what_it_did() {
    let env = TestEnv::new();
    let run = env.run([
        "demo",
        "--dir",
        "demo",
        "--time-scale",
        "6000",
        "--progress",
        "never",
    ]);
    run.assert_code(0);
    let s = summary_block(&run.stderr);
    // 54 hosts and the Manager, whose upgrade is a manual step the demo approves itself.
    assert!(s.contains("55 verified, 0 failed, 0 incomplete"), "{s}");
    for line in [
        "manual step manager-upgrade/dsm01: waiting for the operator: upgrade the Deep Security Manager dsm01 to build 20.0.463",
        "demo: approving manual step manager-upgrade/dsm01 automatically",
        "manual step manager-upgrade/dsm01: approved by medic demo",
        "rehearsal: medic plays the operator: the simulated fleet performs manager-upgrade on dsm01",
    ] {
        assert!(run.stderr.contains(line), "{line}\n{}", run.stderr);
    }
    for word in [
        "agent-upgrade",
        "reboot",
        "reinstall",
        "skipped by the plan",
    ] {
        assert!(s.contains(word), "summary mentions {word}:\n{s}");
    }
    assert!(
        run.stderr.contains("journal: demo/journal.sqlite"),
        "{}",
        run.stderr
    );
    let events = crate::events::files(&env.path().join("demo"));
    assert_eq!(events.len(), 1, "one events file, named after the run");
    let events = format!("demo/{}", events[0]);
    insta::assert_snapshot!("demo_summary", s);
    // One host needs the reinstall (its Anti-Malware goes offline after its Windows
    // upgrade): verify fails, the reinstall acts, reverify succeeds; no host else.
    let text = std::fs::read_to_string(env.path().join(&events)).expect("events");
    let finished: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "step_finished" && e["outcome"] != "skipped")
        .filter(|e| {
            e["step"]
                .as_str()
                .is_some_and(|s| s.starts_with("reinstall/") || s.starts_with("reverify/"))
        })
        .map(|e| {
            (
                e["step"].as_str().unwrap_or("").to_owned(),
                e["outcome"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let want = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        finished,
        [
            want("reinstall/osk-web-02", "succeeded"),
            want("reverify/osk-web-02", "succeeded")
        ]
    );
    assert!(
        run.stderr.contains(
            "failed verify/osk-web-02: the agent is in error (Anti-Malware Engine Offline)"
        ),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("disagree"), "{}", run.stderr);
    let mode = |p: &str| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(env.path().join(p))
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    };
    assert_eq!(mode("demo/journal.sqlite"), 0o600);
    assert_eq!(mode(&events), 0o600);
    let status = env.run([
        "status",
        "--journal",
        "demo/journal.sqlite",
        "--format",
        "json",
    ]);
    status.assert_code(0);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).expect("status json");
    assert!(
        v["steps"]["succeeded"].as_u64().is_some_and(|n| n > 100),
        "{v}"
    );
}

#[test]
fn a_gate_waits_for_approve_from_another_process() {
    let env = TestEnv::new();
    let inv = lab_inventory().display().to_string();
    let pb = real_playbook().display().to_string();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_medic"))
        .current_dir(env.path())
        .args([
            "apply",
            "-i",
            &inv,
            "-p",
            &pb,
            "--simulate",
            "--time-scale",
            "6000",
            "--journal",
            "j.sqlite",
            "--progress",
            "never",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut approved = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while approved.len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let st = env.run(["status", "--journal", "j.sqlite", "--format", "json"]);
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&st.stdout) else {
            continue;
        };
        for g in v["waiting_for_approval"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g.as_str())
        {
            if !approved.contains(&g.to_owned()) {
                env.run(["approve", "--journal", "j.sqlite", g, "--by", "carol"])
                    .assert_code(0);
                approved.push(g.to_owned());
            }
        }
    }
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        approved,
        ["gate/agent-upgrade/wave-1", "gate/agent-upgrade/wave-2"]
    );
    assert!(stderr.contains("approved by carol"), "{stderr}");
}

#[test]
fn a_changed_inventory_is_refused_on_resume_naming_the_hosts() {
    let env = TestEnv::new();
    let inv_text = std::fs::read_to_string(lab_inventory()).expect("lab");
    env.write("inv.yaml", &inv_text);
    let pb = real_playbook().display().to_string();
    // A run stopped by its budget cannot happen here, so stop it with a window too short
    // for its next wave (a window that has already ended is refused).
    let now = jiff::Timestamp::now();
    let window = format!(
        "{}/{}",
        now - jiff::SignedDuration::from_secs(3600),
        now + jiff::SignedDuration::from_secs(120)
    );
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
        "--window",
        &window,
        "--progress",
        "never",
    ]);
    run.assert_code(3);
    env.write(
        "inv.yaml",
        inv_text.replace(
            "agent_version: \"20.0.0-877\", relay_group: osaka",
            "agent_version: \"20.0.0-900\", relay_group: osaka",
        ),
    );
    let r = env.run(["resume", "--journal", "j.sqlite"]);
    r.assert_code(2);
    assert!(
        r.stderr.contains("hosts that drifted: db-01, file-01"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_budget_stop_survives_resume_and_retry_failed_reruns_only_what_failed() {
    let env = TestEnv::new();
    let inv = lab_inventory().display().to_string();
    let pb = real_playbook().display().to_string();
    let first = env.run([
        "apply",
        "-i",
        &inv,
        "-p",
        &pb,
        "--simulate",
        "--time-scale",
        "6000",
        "--yes",
        "--journal",
        "j.sqlite",
        "--progress",
        "never",
        "--sim-fault",
        "fail:db-01:agent-upgrade:2",
    ]);
    first.assert_code(3);
    assert!(
        first
            .stderr
            .contains("failure budget exceeded in agent-upgrade"),
        "{}",
        first.stderr
    );
    let again = env.run(["resume", "--journal", "j.sqlite", "--progress", "never"]);
    again.assert_code(3);
    assert!(
        again.stderr.contains("failure budget exceeded"),
        "a resume does not open the next wave: {}",
        again.stderr
    );
    let retry = env.run([
        "apply",
        "--retry-failed",
        "--journal",
        "j.sqlite",
        "--progress",
        "never",
    ]);
    retry.assert_code(0);
    assert!(
        retry.stderr.contains("hosts: 9 verified, 0 failed"),
        "{}",
        retry.stderr
    );
    let log = std::fs::read_to_string(env.path().join("j.sqlite.sim.log")).expect("sim log");
    let upgrades = log
        .lines()
        .filter(|l| {
            l.contains("\"host\":\"web-01\"")
                && l.contains("\"action\":\"agent-upgrade\"")
                && l.contains("\"result\":\"ok\"")
        })
        .count();
    assert_eq!(upgrades, 1, "a host that succeeded is never upgraded again");
}

#[tokio::test(flavor = "multi_thread")]
async fn inventory_import_from_the_dsm_simulator_writes_a_valid_inventory() {
    let inv_text = std::fs::read_to_string(lab_inventory()).expect("lab");
    let inv = medic_config::load_inventory("lab.yaml", &inv_text).expect("lab loads");
    let fleet =
        medic_sim::SimFleet::open(&inv, medic_sim::SimConfig::demo(1), None).expect("fleet");
    let key = "import-test-key-0123";
    let server = medic_sim::server::serve(
        fleet,
        &inv,
        medic_sim::server::ServerConfig::new(secrecy::SecretString::from(key.to_owned())),
    )
    .await
    .expect("server starts");
    let env = TestEnv::new();
    let url = server.base_url();
    let (ok, bad) = tokio::task::spawn_blocking({
        let dir = env.path().to_path_buf();
        move || {
            let run = |k: &str| {
                std::process::Command::new(env!("CARGO_BIN_EXE_medic"))
                    .current_dir(&dir)
                    .env("MEDIC_DSM_API_KEY", k)
                    .args([
                        "inventory",
                        "import",
                        "--dsm",
                        &url,
                        "--relay-group",
                        "3=dmz,offline,bundle_source=relay-tky-1",
                        "--out",
                        "imported.yaml",
                    ])
                    .output()
                    .expect("run medic")
            };
            (run(key), run("wrong-key-9876"))
        }
    })
    .await
    .expect("join");
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let text = std::fs::read_to_string(env.path().join("imported.yaml")).expect("written");
    let imported = medic_config::load_inventory("imported.yaml", &text).expect("valid inventory");
    assert_eq!(imported.hosts.len(), inv.hosts.len());
    assert!(
        imported
            .relay_groups
            .iter()
            .any(|g| g.name == "dmz" && g.offline)
    );
    assert!(server.request_count("POST", "/api/computers/search") <= 3);
    assert_ne!(bad.status.code(), Some(0));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !err.contains("wrong-key-9876") && !err.contains(key),
        "no key in messages: {err}"
    );
}

/// The advisory's troubleshooting branch: a Relay's security update that does not complete
/// gets its cache cleared and one more try; if that fails too, the host fails clearly.
#[test]
fn a_stuck_relay_update_is_repaired_by_cache_clear_or_fails_clearly() {
    let env = TestEnv::new();
    let inv = lab_inventory().display().to_string();
    let pb = real_playbook().display().to_string();
    let run = |journal: &str, times: &str| {
        env.run([
            "apply",
            "-i",
            &inv,
            "-p",
            &pb,
            "--simulate",
            "--time-scale",
            "6000",
            "--yes",
            "--journal",
            journal,
            "--progress",
            "never",
            "--sim-fault",
            &format!("fail:relay-osk-1:security-update:{times}"),
        ])
    };
    // Three failures: the first attempt and its two retries; the retry after the cache clear works.
    let repaired = run("a.sqlite", "3");
    repaired.assert_code(0);
    assert!(
        repaired.stderr.contains("9 verified, 0 failed"),
        "{}",
        repaired.stderr
    );
    let line = repaired
        .stderr
        .lines()
        .find(|l| l.trim_start().starts_with("cache-clear"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        line.split_whitespace().nth(1) == Some("1"),
        "one cache clear acted: {line}"
    );
    // Five failures: the retry fails too.
    let failed = run("b.sqlite", "5");
    failed.assert_code(1);
    assert!(
        failed
            .stderr
            .contains("relay-security-update-retry/relay-osk-1"),
        "{}",
        failed.stderr
    );
}

/// A host that never comes back from its reboot fails at the step's deadline; the rest of
/// the fleet is not held up.
#[test]
fn a_host_that_never_returns_from_reboot_fails_at_its_deadline() {
    let env = TestEnv::new();
    let inv = lab_inventory().display().to_string();
    let pb = real_playbook().display().to_string();
    let t0 = std::time::Instant::now();
    let run = env.run([
        "apply",
        "-i",
        &inv,
        "-p",
        &pb,
        "--simulate",
        "--time-scale",
        "6000",
        "--yes",
        "--journal",
        "j.sqlite",
        "--progress",
        "never",
        "--sim-fault",
        "hang:web-01:reboot",
    ]);
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("failed reboot/web-01: reboot timed out"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("8 verified, 1 failed"),
        "{}",
        run.stderr
    );
    // The reboot's 20-minute deadline is scaled down (2 s floor) and not retried.
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        t0.elapsed()
    );
}
