//! Drivers: how an action reaches the world. Each implements [`medic_exec::Driver`] and
//! never sees the plan's graph.

mod manual;
mod sim;

pub use manual::ManualDriver;
pub use sim::SimDriver;
