//! Planner tests: the Deep Security rules on several inventories, snapshots of every
//! rendering, determinism, and property tests over generated fleets.

mod lines;
mod props;
mod rules;
mod snapshots;
mod util;
mod zones;
