//! Drivers: how an action reaches the world. Each implements [`medic_exec::Driver`] and
//! never sees the plan's graph.

mod actions;
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

pub use actions::{
    ACTIONS, DSM_ACTIONS, Effect, LOCAL_ACTIONS, SSH_ACTIONS, driver_actions, effect, idempotent,
};
