//! A simulated Deep Security fleet, in process: a Manager, Relays and Agents that follow
//! the ActiveUpdate certificate advisory (Relays below the fixed build fail security
//! updates, Agents behind them fail too, Windows upgrades without the certificate
//! prerequisite take Anti-Malware offline, offline relay groups need a bundle made at the
//! same build, ...).
//!
//! It exists so that the orchestrator can be rehearsed and tested end to end without a
//! single real host: `medic demo`, `medic apply --simulate`, the executor's crash tests
//! and the benchmarks all drive a [`SimFleet`]. The fleet can be made durable with a
//! write-ahead effect log, so that a second process started after the first one was
//! killed sees the same world, which is what resume tests need to prove that no side
//! effect ever runs twice. Processes running at the same time may share the log too (the
//! workers of one run): each catches up with the others' effects under the log's lock,
//! and the fleet refuses requests with a stale fencing token ([`Fence`]).
//!
//! The fleet model itself has no async, no network and no clock: durations are *simulated*
//! seconds drawn from the seed. Two optional layers sit on it: `driver` (feature `driver`)
//! is the `sim` driver that runs a plan's actions on it, and `server` (feature `server`)
//! serves it as a Deep Security Manager REST API on loopback (the `medic-sim serve`
//! binary), for the `dsm` driver and its tests.

mod action;
mod config;
#[cfg(feature = "driver")]
pub mod driver;
mod fleet;
mod generate;
mod log;
mod rng;
#[cfg(feature = "server")]
pub mod server;

pub use action::ACTION_NAMES;
pub use config::{Fault, SimConfig, SimError};
pub use fleet::{
    CERT_EXPIRE_ERROR, Fence, PRE_RUN_UPDATE_MS, SimComputer, SimFleet, SimHostState, SimOutcome,
    SimRelayGroup, SimResult,
};
pub use generate::{demo_inventory_yaml, generate_inventory_yaml};
pub use log::{effect_counts, stale_refusals};

#[cfg(test)]
mod tests;
