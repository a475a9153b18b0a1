//! Every action a driver runs, and what it does to the world, declared once: the name
//! lists are what each driver dispatches on (a test reads the drivers' `act` to keep them
//! equal), [`ACTIONS`] says which only read. A driver may run an action again after a
//! crash left it running ([`idempotent`]) when it runs it and it only reads.

/// What an action does to the world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Reads only (a probe, a verification): running it again is harmless.
    Reads,
    /// Changes a host or the Manager.
    Changes,
}

/// Every action name of every driver, with its effect.
pub const ACTIONS: &[(&str, Effect)] = &[
    ("noop", Effect::Reads),
    ("agent-version", Effect::Reads),
    ("pending-reboot", Effect::Reads),
    ("agent-status", Effect::Reads),
    ("security-status", Effect::Reads),
    ("windows-certs", Effect::Reads),
    ("bundle-status", Effect::Reads),
    ("verify", Effect::Reads),
    ("command-probe", Effect::Reads),
    ("manager-version", Effect::Reads),
    ("windows-prereq", Effect::Changes),
    ("agent-upgrade", Effect::Changes),
    ("reinstall", Effect::Changes),
    ("security-update", Effect::Changes),
    ("bundle-export", Effect::Changes),
    ("bundle-import", Effect::Changes),
    ("cache-clear", Effect::Changes),
    ("reboot", Effect::Changes),
    ("command", Effect::Changes),
    ("manager-upgrade", Effect::Changes),
];

/// What `action` does, `None` for a name no driver runs.
pub fn effect(action: &str) -> Option<Effect> {
    ACTIONS.iter().find(|(n, _)| *n == action).map(|(_, e)| *e)
}

/// Whether a driver that runs the actions `runs` may run `action` again after a crash left
/// it running: it runs it, and it only reads. The simulator's driver asks it too.
pub fn idempotent(runs: &[&str], action: &str) -> bool {
    runs.contains(&action) && effect(action) == Some(Effect::Reads)
}

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

/// The actions the `local` driver runs (a playbook's own commands on the controller).
pub const LOCAL_ACTIONS: &[&str] = &["command", "command-probe"];

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

    /// A new action of any driver must say what it does: every name is in [`super::ACTIONS`]
    /// once, and every entry is run by some driver.
    #[test]
    fn every_action_of_every_driver_declares_its_effect_once() {
        let table: Vec<&str> = super::ACTIONS.iter().map(|(n, _)| *n).collect();
        assert_eq!(set(&table).len(), table.len(), "a name declared twice");
        let mut run = set(super::SSH_ACTIONS);
        run.extend(set(super::DSM_ACTIONS));
        run.extend(set(super::LOCAL_ACTIONS));
        run.extend(set(crate::MANAGER_PROBES));
        // Every entry is run by some driver, the simulator's included: checked beside it
        // (medic-sim's `driver` tests), since this crate does not know the simulator.
        assert!(run.is_subset(&set(&table)), "an action without its effect");
        // The Manager probes a manual step's check may use only read.
        assert!(
            crate::MANAGER_PROBES
                .iter()
                .all(|p| super::idempotent(crate::MANAGER_PROBES, p))
        );
        // A driver that does not run an action never calls it idempotent.
        assert!(!super::idempotent(super::SSH_ACTIONS, "manager-version"));
        assert!(super::idempotent(super::DSM_ACTIONS, "manager-version"));
        assert!(!super::idempotent(super::DSM_ACTIONS, "security-update"));
    }
}
