//! Drivers: how an action reaches the world. Each implements [`medic_exec::Driver`] and
//! never sees the plan's graph.

pub mod dsm;
mod local;
mod manual;
mod sim;
pub mod ssh;

pub use dsm::{DsmClient, DsmConfig, DsmDriver, DsmDriverConfig, import_inventory};
pub use local::{LocalConfig, LocalDriver};
pub use manual::{MANAGER_PROBES, ManualDriver};
pub use sim::SimDriver;
pub use ssh::{SshConfig, SshDriver};

/// The playbook's actions that only read (probes and verification): a step left running
/// by a crash may simply run them again. Each driver adds its own (`command-probe`,
/// `manager-version`).
pub(crate) const READ_ONLY_ACTIONS: &[&str] = &[
    "noop",
    "verify",
    "agent-version",
    "pending-reboot",
    "agent-status",
    "windows-certs",
    "security-status",
    "bundle-status",
];
