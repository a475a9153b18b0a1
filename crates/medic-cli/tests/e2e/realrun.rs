//! Issue 9 item 12: a real run (no `--simulate`) of the Deep Security playbook, as an
//! operator would make it, over the loopback sshd fleet and the DSM simulator: an old
//! Manager that the test upgrades and approves (playing the operator), Relays on two
//! version lines (12.0 and 20.0), an offline relay group fed by a bundle, EL8, EL9 and
//! Ubuntu hosts sharing one package directory, a non-root SSH user with the real sudo
//! (its password in `MEDIC_SUDO_PASSWORD`, the agents' self-protection password in
//! `MEDIC_AGENT_PASSWORD`), a host whose Anti-Malware is off by policy and a Linux host with
//! a pending reboot (both notes, not failures). Pre-flight runs as in any real apply.
//!
//! Everything asserted about the hosts comes from the fleet's and the simulator's own
//! records, not from medic's output: the simulator's state and its effect log (each side
//! effect, in the order it happened), and the fake agents' call log (every command, when,
//! on which host and as which user) and install counts.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::world::{HostSpec, OLD, OS_EL8, OS_EL9, OS_UBUNTU, Opts, Spec, World};
use crate::{assert_no_secrets, wait_until};

/// The simulator's fixed builds (`SimConfig::demo`), one per version line: what the
/// operator confirmed in the advisory and passes with `--set`.
const FIXED_LINES: &str = "12.0.0-5000,20.0.1-690";
const FIX_12: &str = "12.0.0.5000";
const FIX_20: &str = "20.0.1.690";
const OLD_12: &str = "12.0.0.4000";
const STEP: &str = "manager-upgrade/dsm01";
const AGENT_PASSWORD: &str = "agent self-protection 9f2c";

/// 3 Relays and 5 Agents; relay-e1 (EL8, 20.0) makes the bundle for the offline group
/// `vault`, whose Relay is an Ubuntu host of the 12.0 line: it must end at relay-e1's
/// build, not at its own line's fix.
fn spec() -> Spec {
    let host = |name: &str, relay: bool, group: &'static str, os: &'static str, build| {
        let mut h = HostSpec::new(name, relay, group);
        h.os = os;
        h.build = build;
        h
    };
    let mut canary = host("agent-01", false, "east", OS_EL8, OLD);
    canary.groups.push("canary");
    let mut am_off = host("agent-04", false, "east", OS_EL8, OLD);
    am_off.vars.push(("antimalware", "off"));
    let mut reboot = host("agent-02", false, "west", OS_EL9, OLD);
    reboot.vars.push(("reboot", "pending"));
    let mut spec = Spec::sized(6);
    spec.hosts = vec![
        host("relay-e1", true, "east", OS_EL8, OLD),
        host("relay-w1", true, "west", OS_EL9, OLD_12),
        host("relay-v1", true, "vault", OS_UBUNTU, OLD_12),
        canary,
        reboot,
        host("agent-03", false, "west", OS_UBUNTU, OLD_12),
        am_off,
        host("agent-05", false, "vault", OS_UBUNTU, OLD),
    ];
    spec.manager_version = "20.0.400";
    spec
}

/// Where each host must end, and the package file its install must have used.
fn expected(name: &str) -> (&'static str, &'static str) {
    match name {
        "relay-e1" | "agent-01" | "agent-04" => {
            (FIX_20, "Agent-Core-RedHat_EL8-20.0.1-690.x86_64.rpm")
        }
        "agent-02" => (FIX_20, "Agent-Core-RedHat_EL9-20.0.1-690.x86_64.rpm"),
        "relay-w1" => (FIX_12, "Agent-Core-RedHat_EL9-12.0.0-5000.x86_64.rpm"),
        "agent-03" => (FIX_12, "Agent-Core-Ubuntu_22.04-12.0.0-5000.x86_64.deb"),
        // The bundle source's final build, on the offline Relay's own distribution.
        "relay-v1" | "agent-05" => (FIX_20, "Agent-Core-Ubuntu_22.04-20.0.1-690.x86_64.deb"),
        other => panic!("no expectation for {other}"),
    }
}

/// One line of the fake agents' call log.
#[derive(Debug)]
struct Call {
    ns: u128,
    host: String,
    uid: u32,
    name: String,
    args: String,
}

fn calls(w: &World) -> Vec<Call> {
    let by_addr: BTreeMap<&str, &str> = w
        .fleet
        .hosts
        .iter()
        .zip(&w.spec.hosts)
        .map(|(a, h)| (a.as_str(), h.name.as_str()))
        .collect();
    let text = std::fs::read_to_string(w.fleet.state.join("calls.log")).expect("the call log");
    text.lines()
        .map(|l| {
            let mut f = l.splitn(5, ' ');
            let mut next = || f.next().unwrap_or_default().to_owned();
            let (ns, addr, uid, name, args) = (next(), next(), next(), next(), next());
            Call {
                ns: ns.parse().unwrap_or_else(|_| panic!("{l}")),
                host: by_addr.get(addr.as_str()).map_or(addr, |h| (*h).to_owned()),
                uid: uid.parse().unwrap_or_else(|_| panic!("{l}")),
                name,
                args,
            }
        })
        .collect()
}

/// One line of the simulator's effect log: (host, action, ok).
fn effect_log(w: &World) -> Vec<(String, String, bool)> {
    let text = std::fs::read_to_string(&w.sim_log).expect("the effect log");
    text.lines()
        .skip(1)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a log line");
            (
                v["host"].as_str().unwrap_or("").to_owned(),
                v["action"].as_str().unwrap_or("").to_owned(),
                v["result"] == "ok",
            )
        })
        .collect()
}

/// The operator's Manager upgrade: the simulator's operator route, over TLS with its CA,
/// the API key from the 0600 header file (never on a command line).
fn upgrade_manager(w: &World, to: &str) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert"])
        .arg(&w.ca)
        .arg("-H")
        .arg(format!("@{}", w.fleet.state.join("sim/headers").display()))
        .args(["-H", "content-type: application/json", "--data-binary"])
        .arg(format!(r#"{{"args": {{"to": "{to}"}}}}"#))
        .arg(format!(
            "https://{}/sim/hosts/dsm01/actions/manager-upgrade",
            w.server.addr()
        ))
        .output()
        .expect("curl");
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && answer.contains(r#""result":"ok""#),
        "{answer}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What `medic status --format json` says the run waits for.
fn waiting_for(w: &World, journal: &str) -> Vec<String> {
    let r = w.run(&[
        "status".to_owned(),
        "--journal".to_owned(),
        journal.to_owned(),
        "--format".to_owned(),
        "json".to_owned(),
    ]);
    serde_json::from_str::<serde_json::Value>(&r.stdout)
        .ok()
        .and_then(|v| {
            v["waiting_for_approval"].as_array().map(|a| {
                a.iter()
                    .filter_map(|g| g.as_str().map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default()
}

#[test]
fn a_real_run_with_an_old_manager_two_lines_an_offline_group_and_sudo_remediates_every_host() {
    let t0 = Instant::now();
    let w = World::new(
        spec(),
        Opts {
            sudo: true,
            ..Opts::default()
        },
    );
    // The 12.0 line's packages, next to the 20.0 ones, in the one package directory.
    for p in [
        "Agent-Core-RedHat_EL8-12.0.0-5000.x86_64.rpm",
        "Agent-Core-RedHat_EL9-12.0.0-5000.x86_64.rpm",
        "Agent-Core-Ubuntu_22.04-12.0.0-5000.x86_64.deb",
    ] {
        std::fs::write(w.fleet.packages.join(p), "").expect("stage a package");
    }
    // The operator's confirmed values for every example parameter.
    let mut args = w.apply_args("run");
    for a in &mut args {
        if let Some(platform) = a
            .strip_prefix("fixed_build.")
            .and_then(|r| r.split_once('=').map(|(p, _)| p.to_owned()))
        {
            *a = format!("fixed_build.{platform}={FIXED_LINES}");
        }
    }
    assert!(args.iter().any(|a| a == "manager_min_build=20.0.463"));
    let journal = w.path("run.journal.sqlite").display().to_string();

    // Days before the window, the operator's pre-flight: the plan can run (the old Manager
    // is the plan's manual step, not a finding), and it changed nothing.
    let mut pf = crate::preflight::preflight_args(&w, "text");
    for a in &mut pf {
        if let Some(i) = args.iter().position(|x| {
            x.starts_with("fixed_build.") && x.split('=').next() == a.split('=').next()
        }) {
            *a = args[i].clone();
        }
    }
    let r = w.run(&pf);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.trim_end().ends_with("the plan can run"),
        "{}",
        r.stdout
    );
    let manager_row = r
        .stdout
        .lines()
        .find(|l| l.starts_with("dsm01") && l.contains("manager-build"))
        .unwrap_or_else(|| panic!("no manager-build row:\n{}", r.stdout));
    eprintln!("(realrun) pre-flight: {manager_row}");
    assert!(manager_row.contains("20.0.400"), "{manager_row}");
    assert!(w.effects().is_empty(), "the pre-flight changed something");

    let setup = t0.elapsed();
    let t = Instant::now();
    let file =
        |ext: &str| std::fs::File::create(w.path(&format!("apply.{ext}"))).expect("an output file");
    // The agents' self-protection password, from the environment only: each install
    // turns self-protection off first (after sudo has read its own password).
    let mut child = w
        .medic()
        .args(&args)
        .env("MEDIC_AGENT_PASSWORD", AGENT_PASSWORD)
        .stdout(std::process::Stdio::from(file("stdout")))
        .stderr(std::process::Stdio::from(file("stderr")))
        .spawn()
        .expect("start medic");
    let waiting = wait_until(Duration::from_secs(90), || {
        waiting_for(&w, &journal).iter().any(|s| s == STEP)
            || child.try_wait().ok().flatten().is_some()
    });
    let stderr = || std::fs::read_to_string(w.path("apply.stderr")).unwrap_or_default();
    assert!(
        waiting && child.try_wait().ok().flatten().is_none(),
        "the run did not wait for {STEP}:\n{}",
        stderr()
    );
    let paused_after = t.elapsed();
    // Nothing touched a host while the Manager was old.
    assert!(w.effects().is_empty(), "{:?}", w.effects());

    upgrade_manager(&w, "20.0.463");
    let r = w.run(&[
        "approve".to_owned(),
        "--journal".to_owned(),
        journal.clone(),
        STEP.to_owned(),
    ]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);

    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(240),
            "the run did not end:\n{}",
            stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let run_time = t.elapsed();
    w.settle();
    let err = stderr();
    eprintln!(
        "(realrun) set-up {setup:.1?}; paused at {STEP} after {paused_after:.1?}; run ended with {status} after {run_time:.1?}"
    );
    assert_eq!(status.code(), Some(0), "{err}");

    // 1. Final builds, from the simulator (the Manager's world) and the fake agents.
    assert_eq!(w.sim.manager_version().to_string(), "20.0.463");
    for (i, h) in w.spec.hosts.iter().enumerate() {
        let (build, package) = expected(&h.name);
        let s = w.state(&h.name);
        assert_eq!(s.build.to_string(), build, "{}: {s:?}", h.name);
        assert!(s.security_update_current, "{}: {s:?}", h.name);
        assert_eq!(
            w.fleet.get(i, "installs").as_deref(),
            Some("1"),
            "{}",
            h.name
        );
        assert_eq!(
            w.fleet.get(i, "package").as_deref(),
            Some(package),
            "{}",
            h.name
        );
    }
    assert!(w.state("agent-04").antimalware_off_by_policy);
    assert_eq!(
        w.sim
            .bundles()
            .get("dsupdate_0000000000.zip")
            .map(ToString::to_string),
        Some(FIX_20.to_owned())
    );

    // 2. Each side effect exactly once (the Manager's upgrade is the operator's).
    let mut want: BTreeMap<(String, String), u32> = BTreeMap::new();
    for h in &w.spec.hosts {
        for a in ["agent-upgrade", "security-update"] {
            want.insert((h.name.clone(), a.to_owned()), 1);
        }
    }
    want.insert(("relay-e1".to_owned(), "bundle-export".to_owned()), 1);
    want.insert(("relay-v1".to_owned(), "bundle-import".to_owned()), 1);
    want.insert(("dsm01".to_owned(), "manager-upgrade".to_owned()), 1);
    assert_eq!(w.effects(), want);
    let log = effect_log(&w);
    assert!(
        log.iter().all(|(_, _, ok)| *ok),
        "a side effect failed: {log:?}"
    );
    assert_eq!(
        medic_sim::effect_counts(&w.sim_log),
        want,
        "the durable log agrees"
    );

    // 3. A security update after each upgrade, and the Manager upgraded before anything.
    let pos = |host: &str, action: &str| {
        log.iter()
            .position(|(h, a, _)| h == host && a == action)
            .unwrap_or_else(|| panic!("no {action} on {host}: {log:?}"))
    };
    assert_eq!(pos("dsm01", "manager-upgrade"), 0, "{log:?}");
    for h in &w.spec.hosts {
        assert!(
            pos(&h.name, "agent-upgrade") < pos(&h.name, "security-update"),
            "{}: {log:?}",
            h.name
        );
    }
    // The bundle is made after its maker's update, and imported before the offline
    // Relay's update from it.
    assert!(pos("relay-e1", "security-update") < pos("relay-e1", "bundle-export"));
    assert!(pos("relay-e1", "bundle-export") < pos("relay-v1", "bundle-import"));
    assert!(pos("relay-v1", "agent-upgrade") < pos("relay-v1", "bundle-import"));
    assert!(pos("relay-v1", "bundle-import") < pos("relay-v1", "security-update"));

    // 4. Every Relay verified before any Agent upgrade. The effect log: every Relay effect
    // before the first Agent install. The fleet's call log: each Relay's verification
    // (its last probe, `needs-restarting`, runs only in verify on Linux) before the first
    // Agent install.
    let is_relay = |h: &str| h.starts_with("relay-");
    let first_agent_effect = log
        .iter()
        .position(|(h, _, _)| h.starts_with("agent-"))
        .expect("an agent effect");
    let last_relay_effect = log
        .iter()
        .rposition(|(h, _, _)| is_relay(h))
        .expect("a relay effect");
    assert!(last_relay_effect < first_agent_effect, "{log:?}");
    assert_eq!(log[first_agent_effect].1, "agent-upgrade", "{log:?}");
    // Kept with the run's files (MEDIC_E2E_KEEP=1 keeps them) for a person to read.
    let _ = std::fs::copy(w.fleet.state.join("calls.log"), w.path("fleet-calls.log"));
    let calls = calls(&w);
    let installs: Vec<&Call> = calls
        .iter()
        .filter(|c| {
            (c.name == "rpm" && c.args.starts_with("-U"))
                || (c.name == "dpkg" && c.args.starts_with("-i"))
        })
        .collect();
    let first_agent_install = installs
        .iter()
        .filter(|c| !is_relay(&c.host))
        .map(|c| c.ns)
        .min()
        .expect("an agent install");
    for relay in ["relay-e1", "relay-w1", "relay-v1"] {
        let verified = calls
            .iter()
            .filter(|c| c.host == relay && c.name == "needs-restarting")
            .map(|c| c.ns)
            .max()
            .unwrap_or_else(|| panic!("{relay} was never verified on the host"));
        assert!(
            verified < first_agent_install,
            "{relay} verified {} ms after the first agent install",
            (verified - first_agent_install) / 1_000_000
        );
    }
    // The fleet saw one install per host: the same count as the simulator's.
    assert_eq!(installs.len(), w.spec.hosts.len(), "{installs:?}");
    // As root through sudo, logged in as the non-root user: every privileged command ran as
    // uid 0, and the unprivileged probes as the SSH user.
    let privileged = |c: &Call| {
        matches!(c.name.as_str(), "dsa_query" | "dsa_control")
            || (c.name == "rpm" && c.args.starts_with("-U"))
            || c.name == "dpkg"
    };
    assert!(
        calls.iter().filter(|c| privileged(c)).all(|c| c.uid == 0),
        "a privileged command did not run as root"
    );
    assert!(
        calls.iter().any(|c| c.uid != 0 && c.name == "rpm"),
        "every call ran as root: the SSH user is not the sudo user"
    );

    // 5. The AM-off host succeeded with a note (its verify step's event); pre-flight ran.
    let ev = w.events("run");
    let note = ev
        .iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == "verify/agent-04")
        .unwrap_or_else(|| panic!("no verify/agent-04 in the events"));
    assert_eq!(note["outcome"], "succeeded", "{note}");
    assert!(
        note.to_string().to_lowercase().contains("anti-malware"),
        "{note}"
    );
    let reboot_note = ev
        .iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == "verify/agent-02")
        .unwrap_or_else(|| panic!("no verify/agent-02 in the events"));
    assert_eq!(reboot_note["outcome"], "succeeded", "{reboot_note}");
    assert!(reboot_note.to_string().contains("reboot"), "{reboot_note}");
    assert!(
        w.state("agent-02").pending_reboot,
        "nothing rebooted a Linux host"
    );
    // Self-protection went off before every install, as root.
    let off = calls
        .iter()
        .filter(|c| c.name == "dsa_control" && c.args.starts_with("--selfprotect=0 -p"))
        .count();
    assert_eq!(
        off,
        installs.len(),
        "self-protection off before each install"
    );
    // No secret reached a file of the run (journal, events, effect log, outputs).
    assert_no_secrets(
        &w,
        &[
            AGENT_PASSWORD,
            crate::fleet::SUDO_PASSWORD,
            w.api_key.as_str(),
        ],
        &[&err],
    );
    let status = w.run(&[
        "status".to_owned(),
        "--journal".to_owned(),
        journal,
        "--format".to_owned(),
        "json".to_owned(),
    ]);
    let s: serde_json::Value = serde_json::from_str(&status.stdout).expect("status json");
    eprintln!("(realrun) pre-flight: {}", s["preflight"]);
    assert!(
        !s["preflight"].to_string().contains("skipped"),
        "{}",
        s["preflight"]
    );
    eprintln!("(realrun) whole test: {:.1?}", t0.elapsed());
}
