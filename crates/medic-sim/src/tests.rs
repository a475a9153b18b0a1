//! Scenario tests of the simulated fleet against the advisory, on hand-built inventories
//! (this crate has no YAML loader).

use std::collections::BTreeMap;
use std::path::Path;

use medic_model::{
    AgentBuild, Host, Inventory, Manager, ManagerBuild, Platform, RelayGroup, Settings, Value,
};

use crate::{
    CERT_EXPIRE_ERROR, Fault, Fence, SimConfig, SimError, SimFleet, SimHostState, SimResult,
};

const OLD: &str = "20.0.0-3445";
const FIXED: &str = "20.0.1-690";

fn build(s: &str) -> AgentBuild {
    s.parse().expect("test builds are valid")
}

fn host(name: &str, platform: Platform, version: &str, relay: bool, group: &str) -> Host {
    Host {
        name: name.to_owned(),
        address: "10.0.0.1".to_owned(),
        port: 22,
        user: None,
        platform,
        os: None,
        agent_version: build(version),
        relay,
        relay_group: (!group.is_empty()).then(|| group.to_owned()),
        groups: Vec::new(),
        protected_by_appliance: false,
        r#become: None,
        vars: BTreeMap::new(),
        zone: None,
    }
}

fn with_certs(mut h: Host) -> Host {
    h.vars.insert("certs".to_owned(), "present".to_owned());
    h
}

fn inventory(hosts: Vec<Host>, direct: bool) -> Inventory {
    Inventory {
        manager: Manager {
            name: "dsm01".to_owned(),
            address: "10.0.0.5".to_owned(),
            version: "20.0.463".parse().expect("valid manager build"),
        },
        settings: Settings {
            direct_download_when_relays_unavailable: direct,
        },
        relay_groups: vec![
            RelayGroup {
                name: "tokyo".to_owned(),
                offline: false,
                bundle_source: None,
                zone: None,
            },
            RelayGroup {
                name: "dmz".to_owned(),
                offline: true,
                bundle_source: Some("relay-tky-1".to_owned()),
                zone: None,
            },
        ],
        hosts,
        zones: Vec::new(),
    }
}

/// A small two-site fleet: an affected and a fixed Relay in tokyo, an offline dmz Relay,
/// Agents on both platforms.
fn site() -> Inventory {
    inventory(
        vec![
            host("relay-tky-1", Platform::Linux, OLD, true, "tokyo"),
            host("relay-tky-2", Platform::Linux, FIXED, true, "tokyo"),
            host("relay-dmz-1", Platform::Linux, OLD, true, "dmz"),
            host("app-1", Platform::Linux, OLD, false, "tokyo"),
            host("win-1", Platform::Windows, OLD, false, "tokyo"),
            with_certs(host("win-2", Platform::Windows, OLD, false, "tokyo")),
            host("dmz-1", Platform::Linux, OLD, false, "dmz"),
        ],
        true,
    )
}

fn config() -> SimConfig {
    SimConfig::demo(42)
}

fn open(inv: &Inventory) -> SimFleet {
    SimFleet::open(inv, config(), None).expect("fleet opens")
}

fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn run(f: &SimFleet, host: &str, action: &str, a: &[(&str, &str)]) -> SimResult {
    f.perform(host, action, &args(a)).result
}

fn state(f: &SimFleet, host: &str) -> SimHostState {
    f.host_state(host).expect("host exists")
}

fn failed_with(r: &SimResult, needle: &str) -> bool {
    matches!(r, SimResult::Failed(m) if m.contains(needle))
}

/// The fixes exist per version line: a 12.0 Relay at its own line's fix updates fine
/// although it is below the 20.0 fix; one below its line's fix, or on a line with no fix of
/// its own (compared with the highest), fails.
#[test]
fn relays_are_affected_per_version_line() {
    let f = open(&inventory(
        vec![
            host("r12-fixed", Platform::Linux, "12.0.0-5000", true, "tokyo"),
            host("r12-old", Platform::Linux, "12.0.0-4999", true, "tokyo"),
            host("r11-old", Platform::Linux, "11.0.0-9999", true, "tokyo"),
            host("r20-fixed", Platform::Linux, FIXED, true, "tokyo"),
        ],
        false,
    ));
    assert_eq!(run(&f, "r12-fixed", "security-update", &[]), SimResult::Ok);
    assert_eq!(run(&f, "r20-fixed", "security-update", &[]), SimResult::Ok);
    for h in ["r12-old", "r11-old"] {
        assert_eq!(
            run(&f, h, "security-update", &[]),
            SimResult::Failed(CERT_EXPIRE_ERROR.to_owned()),
            "{h}"
        );
    }
    assert_eq!(
        f.fixed_builds(Platform::Linux).text(),
        "12.0.0-5000,20.0.1-690"
    );
}

#[test]
fn relay_below_fixed_fails_security_update() {
    let f = open(&site());
    let r = run(&f, "relay-tky-1", "security-update", &[]);
    assert_eq!(r, SimResult::Failed(CERT_EXPIRE_ERROR.to_owned()));
    assert_eq!(
        state(&f, "relay-tky-1")
            .last_security_update_error
            .as_deref(),
        Some(CERT_EXPIRE_ERROR)
    );
    assert_eq!(
        run(&f, "relay-tky-2", "security-update", &[]),
        SimResult::Ok
    );

    assert_eq!(
        run(&f, "relay-tky-1", "agent-upgrade", &[("to", FIXED)]),
        SimResult::Ok
    );
    let probe = f.perform("relay-tky-1", "security-status", &BTreeMap::new());
    assert_eq!(
        probe.facts.get("security_update_current"),
        Some(&Value::Bool(false))
    );
    assert_eq!(
        run(&f, "relay-tky-1", "security-update", &[]),
        SimResult::Ok
    );
    let s = state(&f, "relay-tky-1");
    assert!(s.security_update_current);
    assert_eq!(s.build, build(FIXED));
    assert_eq!(s.last_security_update_error, None);

    let counts = f.effect_counts();
    let key = |h: &str, a: &str| (h.to_owned(), a.to_owned());
    assert_eq!(counts.get(&key("relay-tky-1", "agent-upgrade")), Some(&1));
    // Failed updates are not counted as performed side effects.
    assert_eq!(counts.get(&key("relay-tky-1", "security-update")), Some(&1));
    assert_eq!(counts.get(&key("relay-tky-2", "security-update")), Some(&1));
    assert_eq!(counts.len(), 3);
    // Downgrades are refused and change nothing.
    let r = run(&f, "relay-tky-1", "agent-upgrade", &[("to", OLD)]);
    assert!(failed_with(&r, "downgrade"), "{r:?}");
    assert_eq!(state(&f, "relay-tky-1").build, build(FIXED));
}

#[test]
fn agent_behind_an_affected_relay_fails() {
    let f = open(&site());
    // app-1 is fine on its own once upgraded, but relay-tky-1 (its group's) is affected.
    assert_eq!(
        run(&f, "app-1", "agent-upgrade", &[("to", FIXED)]),
        SimResult::Ok
    );
    let r = run(&f, "app-1", "security-update", &[]);
    assert!(failed_with(&r, CERT_EXPIRE_ERROR), "{r:?}");
    assert!(failed_with(&r, "relay-tky-1"), "{r:?}");

    assert_eq!(
        run(&f, "relay-tky-1", "agent-upgrade", &[("to", FIXED)]),
        SimResult::Ok
    );
    assert_eq!(run(&f, "app-1", "security-update", &[]), SimResult::Ok);
}

#[test]
fn direct_download_makes_an_agents_own_build_matter() {
    let mut inv = site();
    for h in &mut inv.hosts {
        if h.relay {
            h.agent_version = build(FIXED);
        }
    }
    let f = open(&inv);
    let r = run(&f, "app-1", "security-update", &[]);
    assert!(failed_with(&r, "direct download"), "{r:?}");

    inv.settings.direct_download_when_relays_unavailable = false;
    let f = open(&inv);
    assert_eq!(run(&f, "app-1", "security-update", &[]), SimResult::Ok);
}

#[test]
fn windows_upgrade_without_certs_takes_antimalware_offline_until_reinstall() {
    let f = open(&site());
    let certs = f.perform("win-1", "windows-certs", &BTreeMap::new());
    assert_eq!(certs.facts.get("sha2_supported"), Some(&Value::Bool(false)));
    assert_eq!(
        run(&f, "relay-tky-1", "agent-upgrade", &[("to", FIXED)]),
        SimResult::Ok
    );

    assert_eq!(
        run(&f, "win-1", "agent-upgrade", &[("to", FIXED)]),
        SimResult::Ok
    );
    let st = f.perform("win-1", "agent-status", &BTreeMap::new());
    assert_eq!(
        st.facts.get("antimalware"),
        Some(&Value::Str("offline".to_owned()))
    );
    assert_eq!(run(&f, "win-1", "security-update", &[]), SimResult::Ok);
    let _ = run(&f, "win-1", "reboot", &[]);
    let v = f.perform("win-1", "verify", &args(&[("min_build", FIXED)]));
    assert!(
        failed_with(&v.result, "anti-malware engine offline"),
        "{v:?}"
    );
    assert_eq!(
        v.facts.get("security_update_current"),
        Some(&Value::Bool(true))
    );

    // A reboot does not bring the engine back; a reinstall without the prerequisite
    // does not either.
    assert!(!state(&f, "win-1").antimalware_online);
    let r = run(&f, "win-1", "reinstall", &[("to", FIXED)]);
    assert!(failed_with(&r, "still offline"), "{r:?}");
    assert!(!state(&f, "win-1").antimalware_online);

    assert_eq!(run(&f, "win-1", "windows-prereq", &[]), SimResult::Ok);
    assert_eq!(
        run(&f, "win-1", "reinstall", &[("to", FIXED)]),
        SimResult::Ok
    );
    // A repair over the same build keeps the security update it had, as the Manager's
    // view of it does: the host verifies without another update.
    let s = state(&f, "win-1");
    assert!(s.antimalware_online && s.security_update_current, "{s:?}");
    let v = f.perform("win-1", "verify", &args(&[("min_build", FIXED)]));
    assert_eq!(v.result, SimResult::Ok, "{v:?}");

    // With the prerequisite in place from the start, the engine stays online.
    assert_eq!(
        run(&f, "win-2", "agent-upgrade", &[("to", FIXED)]),
        SimResult::Ok
    );
    assert!(state(&f, "win-2").antimalware_online);
    // And Linux has no such prerequisite.
    let r = run(&f, "app-1", "windows-prereq", &[]);
    assert_eq!(r, SimResult::Failed("not a windows host".to_owned()));
}

#[test]
fn windows_reboots_follow_the_probability_and_the_seed() {
    let inv = site();
    let mut cfg = config();
    cfg.windows_reboot_probability = 1.0;
    let f = SimFleet::open(&inv, cfg.clone(), None).expect("opens");
    assert_eq!(
        run(&f, "win-2", "agent-upgrade", &[("to", FIXED)]),
        SimResult::Ok
    );
    assert!(state(&f, "win-2").pending_reboot);
    let v = f.perform("win-2", "verify", &args(&[("min_build", FIXED)]));
    assert!(failed_with(&v.result, "reboot is pending"), "{v:?}");
    assert_eq!(run(&f, "win-2", "reboot", &[]), SimResult::Ok);
    let s = state(&f, "win-2");
    assert!(!s.pending_reboot);
    assert_eq!(s.boot_id, 1);

    cfg.windows_reboot_probability = 0.0;
    let f = SimFleet::open(&inv, cfg.clone(), None).expect("opens");
    assert_eq!(
        run(&f, "win-2", "agent-upgrade", &[("to", FIXED)]),
        SimResult::Ok
    );
    assert!(!state(&f, "win-2").pending_reboot);
    // Linux upgrades never ask for a reboot.
    cfg.windows_reboot_probability = 1.0;
    let f = SimFleet::open(&inv, cfg.clone(), None).expect("opens");
    assert_eq!(
        run(&f, "app-1", "agent-upgrade", &[("to", FIXED)]),
        SimResult::Ok
    );
    assert!(!state(&f, "app-1").pending_reboot);

    cfg.windows_reboot_probability = 1.5;
    assert!(matches!(
        SimFleet::open(&inv, cfg, None),
        Err(SimError::BadProbability(_))
    ));
}

#[test]
fn offline_relay_import_needs_the_bundle_makers_build() {
    let f = open(&site());
    let bundle = [("bundle", "dsupdate-medic")];
    // The bundle maker must be current first.
    let r = run(&f, "relay-tky-1", "bundle-export", &bundle);
    assert!(failed_with(&r, "no successful security update"), "{r:?}");
    assert_eq!(
        run(&f, "relay-tky-1", "agent-upgrade", &[("to", FIXED)]),
        SimResult::Ok
    );
    assert_eq!(
        run(&f, "relay-tky-1", "security-update", &[]),
        SimResult::Ok
    );
    assert_eq!(
        run(&f, "relay-tky-1", "bundle-export", &bundle),
        SimResult::Ok
    );
    assert_eq!(f.bundles().get("dsupdate-medic"), Some(&build(FIXED)));

    // The dmz Relay still runs the old build: the import is refused.
    let r = run(&f, "relay-dmz-1", "bundle-import", &bundle);
    let expected = format!(
        "bundle made by build {} cannot be imported on build {}",
        build(FIXED),
        build(OLD)
    );
    assert_eq!(r, SimResult::Failed(expected));
    let r = run(&f, "relay-dmz-1", "bundle-import", &[("bundle", "nope")]);
    assert!(failed_with(&r, "does not exist"), "{r:?}");
    let r = run(
        &f,
        "relay-dmz-1",
        "security-update",
        &[("source", "bundle")],
    );
    assert_eq!(r, SimResult::Failed("no bundle imported".to_owned()));
    // An offline Relay cannot reach ActiveUpdate at all.
    let r = run(&f, "relay-dmz-1", "security-update", &[]);
    assert!(failed_with(&r, "offline"), "{r:?}");
    // Bundles are imported on offline Relays only.
    let r = run(&f, "relay-tky-2", "bundle-import", &bundle);
    assert!(failed_with(&r, "not a relay of an offline group"), "{r:?}");

    assert_eq!(
        run(&f, "relay-dmz-1", "agent-upgrade", &[("to", FIXED)]),
        SimResult::Ok
    );
    assert_eq!(
        run(&f, "relay-dmz-1", "bundle-import", &bundle),
        SimResult::Ok
    );
    let r = run(
        &f,
        "relay-dmz-1",
        "security-update",
        &[("source", "bundle")],
    );
    assert_eq!(r, SimResult::Ok);
    let s = state(&f, "relay-dmz-1");
    assert!(s.security_update_current);
    assert_eq!(s.imported_bundle.as_deref(), Some("dsupdate-medic"));
    // Its Agents now download through a fixed Relay.
    assert_eq!(
        run(&f, "dmz-1", "agent-upgrade", &[("to", FIXED)]),
        SimResult::Ok
    );
    assert_eq!(run(&f, "dmz-1", "security-update", &[]), SimResult::Ok);
}

#[test]
fn manager_upgrade_and_support_policy() {
    let f = open(&site());
    let v = f.perform("dsm01", "manager-version", &BTreeMap::new());
    let m: ManagerBuild = "20.0.463".parse().expect("valid");
    assert_eq!(v.facts.get("manager_version"), Some(&Value::Manager(m)));
    let up = [("to", FIXED), ("manager_min", "20.0.500")];
    let r = run(&f, "relay-tky-1", "agent-upgrade", &up);
    assert!(failed_with(&r, "upgrade the manager first"), "{r:?}");
    assert_eq!(state(&f, "relay-tky-1").build, build(OLD));

    assert_eq!(
        run(&f, "dsm01", "manager-upgrade", &[("to", "20.0.500")]),
        SimResult::Ok
    );
    assert_eq!(f.manager_version().to_string(), "20.0.500");
    assert_eq!(run(&f, "relay-tky-1", "agent-upgrade", &up), SimResult::Ok);
    let r = run(&f, "dsm01", "manager-upgrade", &[("to", "20.0.463")]);
    assert!(failed_with(&r, "downgrade"), "{r:?}");
    let r = run(&f, "dsm01", "reboot", &[]);
    assert!(failed_with(&r, "is the manager"), "{r:?}");
    let r = run(&f, "app-1", "manager-upgrade", &[("to", "20.0.500")]);
    assert!(failed_with(&r, "runs on the manager"), "{r:?}");
    assert_eq!(
        f.effect_counts()
            .get(&("dsm01".to_owned(), "manager-upgrade".to_owned())),
        Some(&1)
    );
}

#[test]
fn bad_requests_and_faults() {
    let inv = site();
    let mut cfg = config();
    cfg.faults = vec![
        Fault::Unreachable {
            host: "app-1".to_owned(),
        },
        Fault::Hang {
            host: "win-1".to_owned(),
            action: "agent-upgrade".to_owned(),
        },
    ];
    let f = SimFleet::open(&inv, cfg, None).expect("opens");
    assert_eq!(
        run(&f, "app-1", "agent-version", &[]),
        SimResult::Unreachable
    );
    assert_eq!(run(&f, "app-1", "noop", &[]), SimResult::Unreachable);
    assert_eq!(
        run(&f, "win-1", "agent-upgrade", &[("to", FIXED)]),
        SimResult::Hang
    );
    assert_eq!(state(&f, "win-1").build, build(OLD));
    assert_eq!(run(&f, "win-1", "reboot", &[]), SimResult::Ok);
    assert!(failed_with(&run(&f, "nope", "noop", &[]), "unknown host"));
    assert!(failed_with(
        &run(&f, "win-2", "frobnicate", &[]),
        "unknown action"
    ));
    let r = run(&f, "win-2", "agent-upgrade", &[]);
    assert!(failed_with(&r, "needs the argument `to`"), "{r:?}");
    let r = run(&f, "win-2", "agent-upgrade", &[("to", "11.0.1617")]);
    assert!(failed_with(&r, "ambiguous"), "{r:?}");
    assert_eq!(run(&f, "win-2", "noop", &[]), SimResult::Ok);
    assert!(
        f.perform("win-2", "noop", &BTreeMap::new())
            .facts
            .is_empty()
    );

    let mut cfg = config();
    cfg.faults = vec![Fault::Unreachable {
        host: "ghost".to_owned(),
    }];
    assert!(matches!(
        SimFleet::open(&inv, cfg, None),
        Err(SimError::UnknownFaultHost(h)) if h == "ghost"
    ));
}

#[test]
fn durations_are_deterministic_per_seed() {
    let inv = site();
    let a = open(&inv);
    let b = open(&inv);
    let mut cfg = config();
    cfg.seed = 43;
    let c = SimFleet::open(&inv, cfg, None).expect("opens");
    let mut differ = 0;
    for (host, action, base) in [
        ("relay-tky-1", "agent-upgrade", 600.0),
        ("win-1", "reboot", 240.0),
        ("dsm01", "manager-upgrade", 1800.0),
        ("app-1", "agent-version", 2.0),
    ] {
        for attempt in 0..5 {
            let d = a.duration_s(host, action, attempt);
            assert_eq!(d.to_bits(), b.duration_s(host, action, attempt).to_bits());
            assert!(d > base * 0.4 && d < base * 2.5, "{host} {action} {d}");
            if d.to_bits() != c.duration_s(host, action, attempt).to_bits() {
                differ += 1;
            }
        }
        assert_ne!(a.duration_s(host, action, 0), a.duration_s(host, action, 1));
    }
    assert_eq!(differ, 20);
    assert_eq!(a.duration_s("app-1", "noop", 0), 0.0);
}

/// Everything observable, for comparing a fleet with its replay.
#[derive(Clone, Debug, PartialEq)]
struct Snapshot {
    hosts: Vec<SimHostState>,
    counts: BTreeMap<(String, String), u32>,
    computers: Vec<crate::SimComputer>,
    manager: ManagerBuild,
    bundles: BTreeMap<String, AgentBuild>,
}

impl Snapshot {
    /// The same world, but for when its security updates ended (wall-clock times).
    fn without_times(mut self) -> Snapshot {
        for h in &mut self.hosts {
            h.update_ms = 0;
        }
        for c in &mut self.computers {
            c.update_ms = 0;
        }
        self
    }
}

fn snapshot(f: &SimFleet, inv: &Inventory) -> Snapshot {
    Snapshot {
        hosts: inv.hosts.iter().map(|h| state(f, &h.name)).collect(),
        counts: f.effect_counts(),
        computers: f.computers(),
        manager: f.manager_version(),
        bundles: f.bundles(),
    }
}

/// host, action, args
type Step<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

/// A remediation of most of `site()`, with failures and a reboot along the way.
fn remediate(f: &SimFleet) {
    let to = [("to", FIXED)];
    let bundle = [("bundle", "b1")];
    let steps: [Step<'_>; 16] = [
        ("dsm01", "manager-upgrade", &[("to", "20.0.500")]),
        ("app-1", "security-update", &[]),
        ("relay-tky-1", "agent-upgrade", &to),
        ("relay-tky-1", "security-update", &[]),
        ("relay-tky-1", "bundle-export", &bundle),
        ("relay-dmz-1", "bundle-import", &bundle),
        ("relay-dmz-1", "agent-upgrade", &to),
        ("relay-dmz-1", "bundle-import", &bundle),
        ("relay-dmz-1", "security-update", &[("source", "bundle")]),
        ("win-1", "agent-upgrade", &to),
        ("win-1", "windows-prereq", &[]),
        ("win-1", "reinstall", &to),
        ("win-2", "agent-upgrade", &to),
        ("win-2", "reboot", &[]),
        ("relay-tky-2", "cache-clear", &[]),
        ("app-1", "agent-upgrade", &to),
    ];
    for (h, a, x) in steps {
        let _ = run(f, h, a, x);
    }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .expect("log exists")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn replay_after_a_crash_gives_the_same_world() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sim.jsonl");
    let inv = site();
    let before;
    {
        let f = SimFleet::open(&inv, config(), Some(&path)).expect("opens");
        remediate(&f);
        before = snapshot(&f, &inv);
        // The crash: the process dies while writing the next effect.
        assert_eq!(run(&f, "app-1", "security-update", &[]), SimResult::Ok);
    }
    assert_eq!(mode(&path), 0o600);
    let full = std::fs::read(&path).expect("read log");
    let last_start = full[..full.len() - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .expect("several lines")
        + 1;
    let torn = last_start + (full.len() - last_start) / 2;
    std::fs::write(&path, &full[..torn]).expect("tear the log");

    let f = SimFleet::open(&inv, config(), Some(&path)).expect("reopens");
    assert_eq!(snapshot(&f, &inv), before);
    // The torn line is gone from the file, not just skipped.
    assert_eq!(std::fs::read(&path).expect("read"), full[..last_start]);
    // The reference: the same steps on an in-memory fleet, which ran them later, so only
    // the wall-clock times of its security updates differ.
    let mem = open(&inv);
    remediate(&mem);
    assert_eq!(
        snapshot(&mem, &inv).without_times(),
        before.clone().without_times()
    );

    // Life goes on after the replay, and a second restart sees that too.
    assert_eq!(run(&f, "app-1", "security-update", &[]), SimResult::Ok);
    let after = snapshot(&f, &inv);
    assert_ne!(after, before);
    drop(f);
    let g = SimFleet::open(&inv, config(), Some(&path)).expect("reopens");
    assert_eq!(snapshot(&g, &inv), after);

    // The log refuses another seed or another inventory.
    let mut other = config();
    other.seed = 1;
    assert!(matches!(
        SimFleet::open(&inv, other, Some(&path)),
        Err(SimError::Mismatch { .. })
    ));
    let mut inv2 = inv.clone();
    inv2.hosts[3].agent_version = build(FIXED);
    assert!(matches!(
        SimFleet::open(&inv2, config(), Some(&path)),
        Err(SimError::Mismatch { .. })
    ));
}

#[test]
fn a_damaged_middle_line_is_an_error_not_a_silent_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sim.jsonl");
    let inv = site();
    {
        let f = SimFleet::open(&inv, config(), Some(&path)).expect("opens");
        remediate(&f);
    }
    let text = std::fs::read_to_string(&path).expect("read");
    let damaged = text.replacen("\"agent-upgrade\"", "\"agent-upgr", 1);
    std::fs::write(&path, damaged).expect("write");
    let err = SimFleet::open(&inv, config(), Some(&path)).expect_err("refused");
    assert!(
        matches!(err, SimError::CorruptLog { line, .. } if line > 1),
        "{err}"
    );
}

#[test]
fn fail_times_then_success_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sim.jsonl");
    let inv = site();
    let mut cfg = config();
    cfg.faults = vec![Fault::FailTimes {
        host: "relay-tky-1".to_owned(),
        action: "agent-upgrade".to_owned(),
        times: 2,
    }];
    let to = [("to", FIXED)];
    {
        let f = SimFleet::open(&inv, cfg.clone(), Some(&path)).expect("opens");
        let r = run(&f, "relay-tky-1", "agent-upgrade", &to);
        assert_eq!(r, SimResult::Failed("injected failure 1 of 2".to_owned()));
        assert_eq!(state(&f, "relay-tky-1").build, build(OLD));
    }
    let f = SimFleet::open(&inv, cfg.clone(), Some(&path)).expect("reopens");
    let r = run(&f, "relay-tky-1", "agent-upgrade", &to);
    assert_eq!(r, SimResult::Failed("injected failure 2 of 2".to_owned()));
    assert_eq!(run(&f, "relay-tky-1", "agent-upgrade", &to), SimResult::Ok);
    assert_eq!(run(&f, "relay-tky-1", "agent-upgrade", &to), SimResult::Ok);
    assert_eq!(
        f.effect_counts()
            .get(&("relay-tky-1".to_owned(), "agent-upgrade".to_owned())),
        Some(&2)
    );
    drop(f);
    // Spent faults stay spent.
    let f = SimFleet::open(&inv, cfg, Some(&path)).expect("reopens");
    assert_eq!(run(&f, "relay-tky-1", "agent-upgrade", &to), SimResult::Ok);

    // In memory, the same fault also fails exactly `times` times.
    let mut cfg = config();
    cfg.faults = vec![Fault::FailTimes {
        host: "app-1".to_owned(),
        action: "agent-version".to_owned(),
        times: 1,
    }];
    let f = SimFleet::open(&inv, cfg, None).expect("opens");
    assert!(failed_with(
        &run(&f, "app-1", "agent-version", &[]),
        "injected"
    ));
    let v = f.perform("app-1", "agent-version", &BTreeMap::new());
    assert_eq!(
        v.facts.get("agent_version"),
        Some(&Value::Agent(build(OLD)))
    );
}

/// Two processes on one log share the fault's count: whoever fails it, the other one sees
/// it consumed.
#[test]
fn injected_failures_consumed_by_another_process_are_consumed_here() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sim.jsonl");
    let inv = site();
    let mut cfg = config();
    cfg.faults = vec![Fault::FailTimes {
        host: "relay-tky-1".to_owned(),
        action: "agent-upgrade".to_owned(),
        times: 2,
    }];
    let a = SimFleet::open(&inv, cfg.clone(), Some(&path)).expect("opens");
    let b = SimFleet::open(&inv, cfg, Some(&path)).expect("opens");
    let to = [("to", FIXED)];
    let fail = |n| SimResult::Failed(format!("injected failure {n} of 2"));
    assert_eq!(run(&a, "relay-tky-1", "agent-upgrade", &to), fail(1));
    assert_eq!(run(&b, "relay-tky-1", "agent-upgrade", &to), fail(2));
    assert_eq!(run(&a, "relay-tky-1", "agent-upgrade", &to), SimResult::Ok);
    assert_eq!(run(&b, "relay-tky-1", "agent-upgrade", &to), SimResult::Ok);
    assert_eq!(
        crate::effect_counts(&path).get(&("relay-tky-1".to_owned(), "agent-upgrade".to_owned())),
        Some(&2)
    );
}

/// A log written before fencing tokens (no `step`, `fence`) still replays.
#[test]
fn a_log_from_before_fencing_still_replays() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sim.jsonl");
    let inv = site();
    drop(SimFleet::open(&inv, config(), Some(&path)).expect("writes the header"));
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("opens")
        .write_all(
            concat!(
                r#"{"host":"app-1","action":"reboot","args":{},"result":"ok","effect":{"kind":"rebooted"}}"#,
                "\n",
                r#"{"host":"app-1","action":"reboot","args":{},"result":{"failed":"injected failure 1 of 1"},"injected":true}"#,
                "\n"
            )
            .as_bytes(),
        )
        .expect("writes");
    let f = SimFleet::open(&inv, config(), Some(&path)).expect("replays");
    assert_eq!(state(&f, "app-1").boot_id, 1);
    assert_eq!(crate::stale_refusals(&path), 0);
}

/// A whole but unreadable line appended by another process: this one's world is no longer
/// the log's, so it refuses every request rather than deciding on it.
#[test]
fn a_damaged_line_from_another_process_stops_this_one() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sim.jsonl");
    let inv = site();
    let f = SimFleet::open(&inv, config(), Some(&path)).expect("opens");
    assert_eq!(run(&f, "app-1", "reboot", &[]), SimResult::Ok);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("opens")
        .write_all(b"{\"host\":\"nobody\",\"action\":\"reboot\",\"result\":\"ok\"}\n")
        .expect("writes");
    for _ in 0..2 {
        let r = run(&f, "app-1", "reboot", &[]);
        assert!(failed_with(&r, "line 3: unknown host `nobody`"), "{r:?}");
    }
    assert!(f.refresh().is_err());
    assert_eq!(state(&f, "app-1").boot_id, 1);
}

/// Without a log the tokens are still enforced (one process, several threads); a token
/// travels with an injected failure, and both survive a restart of a durable fleet.
#[test]
fn fencing_tokens_in_memory_and_across_a_restart() {
    let inv = site();
    let none = BTreeMap::new();
    let fence = |step, token| Some(Fence { step, token });
    let f = open(&inv);
    assert!(
        f.perform_fenced("app-1", "agent-version", &none, fence("s", 5))
            .is_ok()
    );
    let r = f.perform_fenced("app-1", "reboot", &none, fence("s", 4));
    assert_eq!(
        r.result,
        SimResult::Refused("stale fencing token 4 for step s: 5 was seen".to_owned())
    );
    assert_eq!(state(&f, "app-1").boot_id, 0);
    assert!(
        f.perform_fenced("app-1", "reboot", &none, fence("t", 1))
            .is_ok()
    );
    assert!(f.perform_fenced("app-1", "reboot", &none, None).is_ok());
    assert_eq!(state(&f, "app-1").boot_id, 2);

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sim.jsonl");
    let mut cfg = config();
    cfg.faults = vec![Fault::FailTimes {
        host: "app-1".to_owned(),
        action: "reboot".to_owned(),
        times: 1,
    }];
    {
        let f = SimFleet::open(&inv, cfg.clone(), Some(&path)).expect("opens");
        let r = f.perform_fenced("app-1", "reboot", &none, fence("s", 9));
        assert!(failed_with(&r.result, "injected failure 1 of 1"), "{r:?}");
    }
    let f = SimFleet::open(&inv, cfg, Some(&path)).expect("reopens");
    assert!(matches!(
        f.perform_fenced("app-1", "reboot", &none, fence("s", 8))
            .result,
        SimResult::Refused(_)
    ));
    // The fault was spent before the restart.
    assert!(
        f.perform_fenced("app-1", "reboot", &none, fence("s", 9))
            .is_ok()
    );
    assert_eq!(state(&f, "app-1").boot_id, 1);
    assert_eq!(crate::stale_refusals(&path), 1);

    // A call that hangs reached the host: its token counts. One that finds the host
    // unreachable never did.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sim.jsonl");
    let mut cfg = config();
    cfg.faults = vec![
        Fault::Hang {
            host: "app-1".to_owned(),
            action: "agent-version".to_owned(),
        },
        Fault::Unreachable {
            host: "dmz-1".to_owned(),
        },
    ];
    let f = SimFleet::open(&inv, cfg.clone(), Some(&path)).expect("opens");
    let r = f.perform_fenced("app-1", "agent-version", &none, fence("h", 4));
    assert_eq!(r.result, SimResult::Hang);
    let r = f.perform_fenced("dmz-1", "agent-version", &none, fence("u", 4));
    assert_eq!(r.result, SimResult::Unreachable);
    let g = SimFleet::open(&inv, cfg, Some(&path)).expect("reopens");
    assert!(matches!(
        g.perform_fenced("app-1", "reboot", &none, fence("h", 3))
            .result,
        SimResult::Refused(_)
    ));
    assert!(
        g.perform_fenced("app-1", "reboot", &none, fence("u", 3))
            .is_ok()
    );
}

#[test]
fn the_managers_view_of_the_computers() {
    let mut inv = site();
    let mut vm = host("vm-9", Platform::Linux, "0.0.0.0", false, "");
    vm.protected_by_appliance = true;
    vm.os = Some("CentOS 7 (64 bit)".to_owned());
    inv.hosts.push(vm);
    let f = open(&inv);
    let _ = run(&f, "relay-tky-1", "security-update", &[]);
    let _ = run(&f, "win-1", "agent-upgrade", &[("to", FIXED)]);
    let cs = f.computers();
    assert_eq!(cs.len(), inv.hosts.len());
    let by = |n: &str| cs.iter().find(|c| c.host_name == n).expect("listed");
    let r = by("relay-tky-1");
    assert_eq!((r.id, r.relay, r.relay_list_id), (1, true, 1));
    assert_eq!(r.agent_version, "20.0.0.3445");
    assert_eq!(r.platform, "Red Hat Enterprise 8 (64 bit)");
    assert_eq!(r.security_update_status, "error");
    assert_eq!(r.security_update_message, CERT_EXPIRE_ERROR);
    assert_eq!(by("relay-dmz-1").relay_list_id, 2);
    let w = by("win-1");
    assert_eq!(w.platform, "Microsoft Windows Server 2019 (64 bit)");
    assert_eq!((w.agent_status, w.anti_malware_status), ("error", "error"));
    assert_eq!(w.agent_version, "20.0.1.690");
    assert!(w.last_changed > r.last_changed && r.last_changed > 0);
    // The upgrade leaves the Manager's "up to date" from before the run as it was: the
    // stale state a check after the upgrade must not count.
    assert_eq!(
        (w.security_update_status, w.update_ms),
        ("active", crate::PRE_RUN_UPDATE_MS)
    );
    assert!(r.update_ms > crate::PRE_RUN_UPDATE_MS);
    let v = by("vm-9");
    assert_eq!((v.id, v.relay_list_id), (8, 0));
    assert_eq!(v.agent_version, "0.0.0.0");
    assert!(v.appliance_protected);
    assert_eq!(v.agent_status, "inactive");
    assert_eq!(v.platform, "CentOS 7 (64 bit)");
    assert_eq!(by("app-1").security_update_status, "active");

    let groups = f.relay_groups();
    assert_eq!(groups[0].relays, ["relay-tky-1", "relay-tky-2"]);
    assert_eq!(
        (
            groups[1].id,
            groups[1].offline,
            groups[1].bundle_source.as_deref()
        ),
        (2, true, Some("relay-tky-1"))
    );
}

#[test]
fn shared_between_threads() {
    fn send_sync<T: Send + Sync + Clone>() {}
    send_sync::<SimFleet>();
    let f = open(&site());
    let none = BTreeMap::new();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let f = f.clone();
            let none = &none;
            s.spawn(move || {
                for _ in 0..10_000 {
                    assert!(f.perform("app-1", "noop", none).is_ok());
                }
            });
        }
    });
    assert!(f.effect_counts().is_empty());
}

#[test]
fn the_reboot_coin_has_the_configured_bias() {
    let hosts = (0..2_000)
        .map(|i| host(&format!("w{i}"), Platform::Windows, OLD, false, ""))
        .collect();
    let inv = inventory(hosts, false);
    let f = open(&inv);
    let mut pending = 0;
    for h in &inv.hosts {
        assert_eq!(
            run(&f, &h.name, "agent-upgrade", &[("to", FIXED)]),
            SimResult::Ok
        );
        if state(&f, &h.name).pending_reboot {
            pending += 1;
        }
    }
    // SimConfig::demo: 0.8.
    assert!((1_500..1_700).contains(&pending), "{pending}");
}

#[test]
fn the_demo_fleet_is_a_valid_inventory() {
    let inv = medic_config::load_inventory("demo.yaml", crate::demo_inventory_yaml())
        .unwrap_or_else(|p| panic!("demo.yaml loads: {p}"));
    assert!(
        (55..=65).contains(&inv.hosts.len()),
        "{} hosts",
        inv.hosts.len()
    );
    assert!(inv.relay_groups.iter().any(|g| g.offline));
    let big = medic_config::load_inventory("gen.yaml", &crate::generate_inventory_yaml(2_000, 7))
        .unwrap_or_else(|p| panic!("generated inventory loads: {p}"));
    assert_eq!(big.hosts.len(), 2_000);
}
