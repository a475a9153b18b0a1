//! The closed set of actions the simulator understands. Action names arrive as strings
//! from drivers; parsing them once into an enum keeps `perform` cheap (no string
//! compares past the parse) and makes every `match` on them exhaustive.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Action {
    Noop,
    AgentVersion,
    PendingReboot,
    AgentStatus,
    WindowsCerts,
    ManagerVersion,
    SecurityStatus,
    BundleStatus,
    Verify,
    ManagerUpgrade,
    WindowsPrereq,
    AgentUpgrade,
    SecurityUpdate,
    BundleExport,
    BundleImport,
    Reboot,
    Reinstall,
    CacheClear,
}

/// How many actions have side effects: the width of the per-host effect counters.
pub(crate) const EFFECT_SLOTS: usize = 9;

/// The side-effect actions, in slot order.
pub(crate) const SIDE_EFFECTS: [Action; EFFECT_SLOTS] = [
    Action::ManagerUpgrade,
    Action::WindowsPrereq,
    Action::AgentUpgrade,
    Action::SecurityUpdate,
    Action::BundleExport,
    Action::BundleImport,
    Action::Reboot,
    Action::Reinstall,
    Action::CacheClear,
];

/// Every action the simulator runs, by name (what a playbook may give the `sim` driver).
pub const ACTION_NAMES: [&str; 18] = [
    "noop",
    "agent-version",
    "pending-reboot",
    "agent-status",
    "windows-certs",
    "manager-version",
    "security-status",
    "bundle-status",
    "verify",
    "manager-upgrade",
    "windows-prereq",
    "agent-upgrade",
    "security-update",
    "bundle-export",
    "bundle-import",
    "reboot",
    "reinstall",
    "cache-clear",
];

impl Action {
    pub(crate) fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "noop" => Action::Noop,
            "agent-version" => Action::AgentVersion,
            "pending-reboot" => Action::PendingReboot,
            "agent-status" => Action::AgentStatus,
            "windows-certs" => Action::WindowsCerts,
            "manager-version" => Action::ManagerVersion,
            "security-status" => Action::SecurityStatus,
            "bundle-status" => Action::BundleStatus,
            "verify" => Action::Verify,
            "manager-upgrade" => Action::ManagerUpgrade,
            "windows-prereq" => Action::WindowsPrereq,
            "agent-upgrade" => Action::AgentUpgrade,
            "security-update" => Action::SecurityUpdate,
            "bundle-export" => Action::BundleExport,
            "bundle-import" => Action::BundleImport,
            "reboot" => Action::Reboot,
            "reinstall" => Action::Reinstall,
            "cache-clear" => Action::CacheClear,
            _ => return None,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Noop => "noop",
            Action::AgentVersion => "agent-version",
            Action::PendingReboot => "pending-reboot",
            Action::AgentStatus => "agent-status",
            Action::WindowsCerts => "windows-certs",
            Action::ManagerVersion => "manager-version",
            Action::SecurityStatus => "security-status",
            Action::BundleStatus => "bundle-status",
            Action::Verify => "verify",
            Action::ManagerUpgrade => "manager-upgrade",
            Action::WindowsPrereq => "windows-prereq",
            Action::AgentUpgrade => "agent-upgrade",
            Action::SecurityUpdate => "security-update",
            Action::BundleExport => "bundle-export",
            Action::BundleImport => "bundle-import",
            Action::Reboot => "reboot",
            Action::Reinstall => "reinstall",
            Action::CacheClear => "cache-clear",
        }
    }

    /// The index of this action's effect counter, or `None` for probes (which change
    /// nothing and so are never counted or logged).
    pub(crate) fn effect_slot(self) -> Option<usize> {
        SIDE_EFFECTS.iter().position(|a| *a == self)
    }

    /// Median duration in simulated seconds.
    pub(crate) fn base_duration_s(self) -> f64 {
        match self {
            Action::Noop => 0.0,
            Action::AgentVersion
            | Action::PendingReboot
            | Action::AgentStatus
            | Action::WindowsCerts
            | Action::ManagerVersion
            | Action::SecurityStatus
            | Action::BundleStatus => 2.0,
            Action::Verify => 30.0,
            Action::ManagerUpgrade => 1800.0,
            Action::WindowsPrereq => 120.0,
            Action::AgentUpgrade => 600.0,
            Action::SecurityUpdate => 300.0,
            Action::BundleExport => 300.0,
            Action::BundleImport => 300.0,
            Action::Reboot => 240.0,
            Action::Reinstall => 900.0,
            Action::CacheClear => 60.0,
        }
    }

    /// Actions that only make sense on the Manager.
    pub(crate) fn on_manager(self) -> bool {
        matches!(self, Action::ManagerVersion | Action::ManagerUpgrade)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_slots_are_dense() {
        for a in SIDE_EFFECTS {
            assert_eq!(Action::parse(a.as_str()), Some(a));
            assert!(a.effect_slot().is_some());
        }
        assert_eq!(Action::parse("verify").and_then(Action::effect_slot), None);
        assert_eq!(Action::parse("Verify"), None);
    }
}

#[cfg(test)]
mod names {
    use super::{ACTION_NAMES, Action};

    #[test]
    fn every_name_is_an_action_and_every_action_is_named() {
        let mut seen = std::collections::BTreeSet::new();
        for n in ACTION_NAMES {
            let a = Action::parse(n).unwrap_or_else(|| panic!("`{n}` is not an action"));
            assert_eq!(a.as_str(), n);
            seen.insert(a);
        }
        // The enum has 18 variants: a new one must be named here too.
        assert_eq!(seen.len(), 18);
    }
}
