//! Issue 9 item 13 with the real binary: `medic apply` is SIGKILLed while slow package
//! installs run on EL8, EL9 and Ubuntu hosts (one package directory, a non-root SSH user
//! with the real sudo and its password from the environment); the installs go on without
//! it. `medic resume` must wait for them, see them done, and install nothing a second time
//! (the fake package manager refuses a second install while the first holds its lock, as
//! rpm and dpkg do, and counts the refusals).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fleet::{FIXED, Fleet, OS_EL9, OS_UBUNTU, SUDO_PASSWORD, SUDO_USER};
use crate::{sigkill, wait_until};

const PLAYBOOK: &str = r#"format: medic.playbook/v1
name: install-race
description: upgrade every agent to the target build
params:
  target: { type: agent_build, default: "20.0.1.690", doc: the build every host must reach }
max_parallel: 10
defaults: { driver: ssh, timeout: 2m, estimate: 10s, retries: { max: 0, backoff: 1s } }
phases:
  - name: upgrade
    select: { roles: [agent] }
    actions:
      - action: agent-upgrade
        args: { to: "{params.target}" }
        check:
          probe: agent-version
          when: { compare: { left: facts.agent_version, op: ge, right: params.target } }
"#;

fn medic(dir: &Path, f: &Fleet) -> Command {
    crate::fleet_medic(dir, f, SUDO_PASSWORD)
}

#[test]
fn a_resume_waits_for_the_installs_a_killed_run_left_running() {
    let f = Fleet::start_sudo(3);
    f.set(1, "os_release", OS_EL9.trim_end());
    f.set(2, "os_release", OS_UBUNTU.trim_end());
    f.set(2, "family", "deb");
    std::fs::write(f.state.join("install_delay"), "4\n").expect("delay");
    let dir = tempfile::tempdir().expect("dir");
    let os = [
        "Red Hat Enterprise 8 (64 bit)",
        "Red Hat Enterprise 9 (64 bit)",
        "Ubuntu Linux 22.04 (64 bit)",
    ];
    let mut inv = String::from(
        "manager: { name: dsm01, address: 127.0.0.1, version: \"20.0.463\" }\nbecome: sudo\nhosts:\n",
    );
    for (i, os) in os.iter().enumerate() {
        inv.push_str(&format!(
            "  - {{ name: host-{i}, address: {}, port: {}, user: {SUDO_USER}, platform: linux, os: \"{os}\", agent_version: \"20.0.0-877\" }}\n",
            f.hosts[i], f.port
        ));
    }
    let p = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(p("inventory.yaml"), inv).expect("inventory");
    std::fs::write(p("playbook.yaml"), PLAYBOOK).expect("playbook");
    let journal = p("run.journal.sqlite");
    let mut args = vec!["apply".to_owned()];
    args.extend(crate::fleet_args(dir.path(), &f));
    args.extend(
        [
            "--poll-interval",
            "0.2",
            "--yes",
            "--journal",
            &journal,
            "--events",
            &p("run.events.jsonl"),
        ]
        .map(str::to_owned),
    );

    let child = medic(dir.path(), &f)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start medic");
    let locked = |i: usize| {
        f.state
            .join("hosts")
            .join(&f.hosts[i])
            .join("pkglock")
            .exists()
    };
    assert!(
        wait_until(Duration::from_secs(30), || (0..3).all(locked)),
        "the installs did not all start"
    );
    sigkill(child);
    // The installs outlived the run that started them.
    assert!((0..3).all(locked), "an install died with medic");
    assert!((0..3).all(|i| f.get(i, "installs").is_none()));

    let t = Instant::now();
    let out = medic(dir.path(), &f)
        .args([
            "resume",
            "--journal",
            &journal,
            "--events",
            &p("resume.events.jsonl"),
        ])
        .output()
        .expect("resume");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "the resume cannot have waited: {:?}",
        t.elapsed()
    );
    for (i, pkg) in [
        "Agent-Core-RedHat_EL8-20.0.1-690.x86_64.rpm",
        "Agent-Core-RedHat_EL9-20.0.1-690.x86_64.rpm",
        "Agent-Core-Ubuntu_22.04-20.0.1-690.x86_64.deb",
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(
            f.get(i, "installs").as_deref(),
            Some("1"),
            "host {i}: {text}"
        );
        assert_eq!(f.get(i, "lock_refusals"), None, "host {i}: {text}");
        assert_eq!(f.get(i, "build").as_deref(), Some(FIXED), "host {i}");
        assert_eq!(f.get(i, "package").as_deref(), Some(*pkg), "host {i}");
    }
    // The sudo password reached no file medic wrote.
    for name in [
        "run.journal.sqlite",
        "run.events.jsonl",
        "resume.events.jsonl",
    ] {
        let bytes = std::fs::read(dir.path().join(name)).unwrap_or_default();
        let hay = String::from_utf8_lossy(&bytes);
        assert!(
            !hay.contains(SUDO_PASSWORD),
            "{name} holds the sudo password"
        );
    }
}
