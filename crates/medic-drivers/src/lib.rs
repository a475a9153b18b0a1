//! Drivers: how an action reaches the world. Each implements [`medic_exec::Driver`] and
//! never sees the plan's graph.

pub mod dsm;
mod manual;
mod sim;
pub mod ssh;

pub use dsm::{DsmClient, DsmConfig, DsmDriver, DsmDriverConfig, import_inventory};
pub use manual::ManualDriver;
pub use sim::SimDriver;
pub use ssh::{SshConfig, SshDriver};
