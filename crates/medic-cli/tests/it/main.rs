//! Black-box tests of the `medic` binary: the real executable, real files, exit codes and
//! what it prints.

mod crash;
mod disk_full;
mod events;
mod load_names;
mod plan_seal;
mod planning;
mod runs;
mod util;
mod validation;
