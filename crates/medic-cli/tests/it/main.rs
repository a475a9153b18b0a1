//! Black-box tests of the `medic` binary: the real executable, real files, exit codes and
//! what it prints.

mod crash;
mod disk_full;
mod journeys;
mod manual;
mod planning;
mod runs;
mod util;
mod validation;
