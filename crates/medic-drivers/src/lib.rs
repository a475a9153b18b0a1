//! Drivers: how an action reaches the world. Each implements [`medic_exec::Driver`] and
//! never sees the plan's graph.

pub mod dsm;
mod local;
mod manual;
pub mod preflight;
pub mod ssh;
mod verify;

pub use dsm::{DsmClient, DsmConfig, DsmDriver, DsmDriverConfig, import_inventory};
pub use local::{LocalConfig, LocalDriver};
pub use manual::{MANAGER_PROBES, ManualDriver, ask as manual_ask};
pub use ssh::{SshConfig, SshDriver};
pub use verify::{ManagerFields, Verifier, verify_reply};

/// The actions the `ssh` driver runs (its `act`; `manager-version` and `manager-upgrade`
/// run on the Manager, not over ssh).
pub const SSH_ACTIONS: &[&str] = &[
    "noop",
    "agent-version",
    "pending-reboot",
    "agent-status",
    "security-status",
    "windows-certs",
    "windows-prereq",
    "bundle-status",
    "verify",
    "agent-upgrade",
    "reinstall",
    "security-update",
    "bundle-export",
    "bundle-import",
    "cache-clear",
    "reboot",
    "command",
    "command-probe",
];

/// The actions the `dsm` driver runs (its `act`).
pub const DSM_ACTIONS: &[&str] = &[
    "noop",
    "manager-version",
    "security-update",
    "security-status",
    "agent-status",
    "agent-version",
];

/// The actions a playbook may give `driver`, for the loader's check
/// (`medic_config::load_playbook_for`); `None` when any name will do (a `manual` step is
/// done by a person) or the driver is not one of these (the loader names it). The `sim`
/// driver lives with the simulator: `medic_sim::driver::driver_actions` adds it.
pub fn driver_actions(driver: &str) -> Option<&'static [&'static str]> {
    match driver {
        "ssh" => Some(SSH_ACTIONS),
        "dsm" => Some(DSM_ACTIONS),
        _ => None,
    }
}

/// The playbook's actions that only read (probes and verification): a step left running
/// by a crash may simply run them again. Each driver adds its own (`command-probe`,
/// `manager-version`).
pub const READ_ONLY_ACTIONS: &[&str] = &[
    "noop",
    "verify",
    "agent-version",
    "pending-reboot",
    "agent-status",
    "windows-certs",
    "security-status",
    "bundle-status",
];

#[cfg(test)]
mod catalog {
    /// The quoted names of the match arms of `fn act` in a driver's source: what the driver
    /// really dispatches on, so that the lists above cannot drift from the code.
    fn arms(src: &str) -> std::collections::BTreeSet<String> {
        let start = src.find("async fn act(").expect("an act function");
        let body = &src[start..];
        let end = body[1..]
            .find("\n    async fn ")
            .map_or(body.len(), |e| e + 1);
        let mut out = std::collections::BTreeSet::new();
        for line in body[..end].lines() {
            let t = line.trim_start();
            if !t.starts_with('"') || !t.contains("=>") {
                continue;
            }
            let pattern = &t[..t.find("=>").unwrap_or(t.len())];
            for name in pattern.split('|') {
                let name = name.trim().trim_matches('"');
                if !name.is_empty() {
                    out.insert(name.to_owned());
                }
            }
        }
        out
    }

    fn set(names: &[&str]) -> std::collections::BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn the_lists_are_what_the_drivers_dispatch_on() {
        let mut ssh = arms(include_str!("ssh/driver.rs"));
        // Answered before the dispatch: `noop` succeeds, the Manager's actions are refused.
        ssh.insert("noop".to_owned());
        assert_eq!(ssh, set(super::SSH_ACTIONS));
        assert_eq!(arms(include_str!("dsm/driver.rs")), set(super::DSM_ACTIONS));
    }
}
