//! Issue 9, items 8 and 13 on the loopback fleet: one package directory for several
//! distributions, a non-root SSH user that needs the real sudo and its password, the
//! pre-flight checks, and a version read that waits for an install an earlier (dropped)
//! run left running instead of racing it.

use std::time::{Duration, Instant};

use medic_drivers::ssh::{Reachability, SshConfig, SshDriver};
use medic_exec::{ActionStatus, Driver};
use medic_model::{AgentBuild, Become, Value};
use secrecy::SecretString;

use super::fleet::{FIXED, Fleet, OS_EL9, OS_UBUNTU, SUDO_PASSWORD};
use super::{act, build, driver, fact, failed_with, ok, refused_with};

/// Host 0: EL8 (the fake's default for rpm), host 1: EL9, host 2: Ubuntu 22.04.
fn three_distributions() -> Fleet {
    let f = Fleet::start_sudo(3);
    f.set(1, "os_release", OS_EL9.trim_end());
    f.set(2, "os_release", OS_UBUNTU.trim_end());
    f.set(2, "family", "deb");
    f
}

fn sudo_config(f: &Fleet) -> SshConfig {
    let mut c = f.config();
    c.r#become = Become::Sudo;
    c.sudo_password = Some(SecretString::from(SUDO_PASSWORD.to_owned()));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_distribution_gets_its_own_package_from_one_directory() {
    let f = three_distributions();
    let (d, _t) = driver(sudo_config(&f));
    for (i, want) in [
        "Agent-Core-RedHat_EL8-20.0.1-690.x86_64.rpm",
        "Agent-Core-RedHat_EL9-20.0.1-690.x86_64.rpm",
        "Agent-Core-Ubuntu_22.04-20.0.1-690.x86_64.deb",
    ]
    .iter()
    .enumerate()
    {
        let r = act(&d, &f, i, "agent-upgrade", &[("to", "20.0.1-690")]).await;
        ok(&r);
        assert_eq!(fact(&r, "agent_version"), &build(FIXED));
        assert_eq!(f.get(i, "package").as_deref(), Some(*want), "host {i}");
        assert_eq!(f.get(i, "installs").as_deref(), Some("1"), "host {i}");
    }

    // The EL9 package of the next build is missing: refused before anything runs, naming
    // the host, the file it needs and the files there are.
    std::fs::remove_file(
        f.packages
            .join("Agent-Core-RedHat_EL9-20.0.1-800.x86_64.rpm"),
    )
    .expect("remove");
    let r = act(&d, &f, 1, "agent-upgrade", &[("to", "20.0.1-800")]).await;
    let m = refused_with(
        &r,
        "host host-1 (Red Hat Enterprise Linux (or a rebuild) 9, from os-release): no agent package Agent-Core-RedHat_EL9-20.0.1-800.x86_64.rpm",
    );
    assert!(
        m.contains("found: Agent-Core-RedHat_EL8-20.0.1-690.x86_64.rpm"),
        "{m}"
    );
    // A stray file that only starts like the package is no second match.
    std::fs::write(
        f.packages
            .join("Agent-Core-RedHat_EL8-20.0.1-800.x86_64.rpm.bak"),
        "",
    )
    .expect("write");
    let r = act(&d, &f, 0, "agent-upgrade", &[("to", "20.0.1-800")]).await;
    ok(&r);
    assert_eq!(
        f.get(0, "package").as_deref(),
        Some("Agent-Core-RedHat_EL8-20.0.1-800.x86_64.rpm")
    );

    // The inventory says EL8, the host says EL9: refused naming both.
    let mut req = f.request(1, "agent-upgrade", &[("to", "20.0.1-800")]);
    if let Some(h) = req.host.as_mut() {
        h.os = Some("Red Hat Enterprise 8 (64 bit)".to_owned());
    }
    let r = d.run(req).await;
    refused_with(
        &r,
        "host host-1: the inventory says `Red Hat Enterprise 8 (64 bit)` (Red Hat Enterprise Linux (or a rebuild) 8) but its /etc/os-release says Red Hat Enterprise Linux (or a rebuild) 9",
    );
    assert_eq!(f.get(1, "installs").as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_root_user_upgrades_through_the_real_sudo_with_its_password_on_stdin() {
    let f = three_distributions();
    assert_ne!(f.user, "root");

    // As the SSH user: the package manager and the agent tools refuse.
    let (d, _t) = driver(f.config());
    let r = act(&d, &f, 0, "agent-upgrade", &[("to", "20.0.1-690")]).await;
    failed_with(&r, "Permission denied");
    failed_with(
        &act(&d, &f, 0, "agent-status", &[]).await,
        "permission denied",
    );

    // sudo without a password: sudo -n refuses (this user's entry asks for one).
    let mut c = f.config();
    c.r#become = Become::Sudo;
    let (d, _t) = driver(c);
    failed_with(
        &act(&d, &f, 0, "agent-upgrade", &[("to", "20.0.1-690")]).await,
        "a password is required",
    );

    // A wrong password: refused, and sudo never read the agent's password as a retry.
    let mut c = sudo_config(&f);
    c.sudo_password = Some(SecretString::from("wrong".to_owned()));
    c.agent_password = Some(SecretString::from("agent pw 9".to_owned()));
    let (d, _t) = driver(c);
    failed_with(
        &act(&d, &f, 0, "agent-upgrade", &[("to", "20.0.1-690")]).await,
        "sudo refused the password",
    );
    assert_eq!(f.get(0, "installs"), None);

    // The right one, and the agent's self-protection password behind it on stdin.
    f.set(0, "selfprotect_password", "agent pw 9");
    let mut c = sudo_config(&f);
    c.agent_password = Some(SecretString::from("agent pw 9".to_owned()));
    let (d, _t) = driver(c);
    let r = act(&d, &f, 0, "agent-upgrade", &[("to", "20.0.1-690")]).await;
    ok(&r);
    assert_eq!(f.get(0, "selfprotect").as_deref(), Some("off"));
    assert_eq!(f.get(0, "installs").as_deref(), Some("1"));
    let r = act(&d, &f, 0, "agent-status", &[]).await;
    ok(&r);
    assert_eq!(fact(&r, "agent_status"), &Value::Str("active".into()));

    // Per host: the plan's `become` wins over the driver's default.
    let (d, _t) = driver({
        let mut c = f.config();
        c.sudo_password = Some(SecretString::from(SUDO_PASSWORD.to_owned()));
        c
    });
    let mut req = f.request(1, "agent-upgrade", &[("to", "20.0.1-690")]);
    if let Some(h) = req.host.as_mut() {
        h.r#become = Some(Become::Sudo);
    }
    ok(&d.run(req).await);
    assert_eq!(f.get(1, "installs").as_deref(), Some("1"));
    // Nothing of either password reached the fake agent's files.
    for i in 0..3 {
        for entry in std::fs::read_dir(f.state.join("hosts").join(&f.hosts[i])).expect("dir") {
            let p = entry.expect("entry").path();
            if p.is_file() {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                assert!(
                    !text.contains(SUDO_PASSWORD),
                    "{} holds the sudo password",
                    p.display()
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_checks_reachability_live_agent_package_and_privilege() {
    let f = three_distributions();
    f.set(1, "relay", "yes");
    let (d, _t) = driver(sudo_config(&f));

    assert_eq!(d.check_reachable(&f.plan_host(0)).await, Reachability::Ok);
    let mut unknown = f.plan_host(0);
    unknown.address = f.unused_addr(200);
    assert!(matches!(
        d.check_reachable(&unknown).await,
        Reachability::Unreachable(_)
    ));

    let live = d.live_agent(&f.plan_host(1)).await.expect("live");
    assert_eq!(live.build, "20.0.0.877".parse::<AgentBuild>().expect("b"));
    assert_eq!(live.relay, Some(true));
    assert_eq!(
        d.live_agent(&f.plan_host(0)).await.expect("live").relay,
        Some(false)
    );

    let to: AgentBuild = FIXED.parse().expect("b");
    let p = d.package_for(&f.plan_host(1), to).await.expect("package");
    assert_eq!(p.file, "Agent-Core-RedHat_EL9-20.0.1-690.x86_64.rpm");
    assert_eq!(p.from, "os-release");
    let p = d.package_for(&f.plan_host(2), to).await.expect("package");
    assert_eq!(p.file, "Agent-Core-Ubuntu_22.04-20.0.1-690.x86_64.deb");
    let e = d
        .package_for(&f.plan_host(2), "20.0.1-1".parse().expect("b"))
        .await
        .expect_err("none");
    assert!(
        e.contains("host host-2") && e.contains("Agent-Core-Ubuntu_22.04-20.0.1-1.x86_64.deb"),
        "{e}"
    );

    let ok = d.check_privilege(&f.plan_host(0)).await.expect("root");
    assert_eq!((ok.r#become, ok.uid), (Become::Sudo, 0));
    let (plain, _t3) = driver(f.config());
    let e = plain
        .check_privilege(&f.plan_host(0))
        .await
        .expect_err("not root");
    assert!(e.contains("not root") && e.contains("become: none"), "{e}");
    // Nothing was installed by any of it.
    assert!((0..3).all(|i| f.get(i, "installs").is_none()));

    // A host key no file lists.
    f.write_known_hosts("");
    let (fresh, _t2) = driver(sudo_config(&f));
    match fresh.check_reachable(&f.plan_host(2)).await {
        Reachability::HostKey(m) => assert!(m.contains("SHA256:"), "{m}"),
        other => panic!("expected a host-key refusal, got {other:?}"),
    }
}

/// Item 13 at the driver's level: the run that started an install is dropped (its
/// connection torn down, as when medic dies) while the install is still running on the
/// host; the next version read waits for it to end and sees the new build, so the upgrade
/// it belongs to does not install a second time. The medic binary killed for real is in
/// medic-cli's end-to-end tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_read_waits_for_an_install_a_dropped_run_left_running() {
    let f = Fleet::start(1);
    std::fs::write(f.state.join("install_delay"), "3\n").expect("delay");
    let cfg = f.config();
    let d = std::sync::Arc::new(SshDriver::new(cfg.clone()).expect("driver"));
    let d1 = d.clone();
    let req = f.request(0, "agent-upgrade", &[("to", "20.0.1-690")]);
    let first = tokio::spawn(async move { d1.run(req).await });
    let lock = f.state.join("hosts").join(&f.hosts[0]).join("pkglock");
    let t = Instant::now();
    while !lock.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the install never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.abort();
    let _ = first.await;
    drop(d);
    // Still installing when the run went away.
    assert_ne!(f.get(0, "build").as_deref(), Some(FIXED));

    // A new driver (a new process, as a resume is): the check reads the version.
    let (d2, _t) = driver(cfg);
    let started = Instant::now();
    let r = act(&d2, &f, 0, "agent-version", &[]).await;
    ok(&r);
    assert_eq!(fact(&r, "agent_version"), &build(FIXED));
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "did not wait: {:?}",
        started.elapsed()
    );
    // The upgrade then finds it done: one install, and no second one refused by the lock.
    ok(&act(&d2, &f, 0, "agent-upgrade", &[("to", "20.0.1-690")]).await);
    assert_eq!(f.get(0, "installs").as_deref(), Some("1"));
    assert_eq!(f.get(0, "lock_refusals"), None);
    // The marker is gone once the install ended.
    let markers: Vec<_> = std::fs::read_dir(&f.run_dir)
        .expect("run dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".install"))
        .collect();
    assert!(markers.is_empty(), "{markers:?}");
    assert!(matches!(r.status, ActionStatus::Ok));
}
