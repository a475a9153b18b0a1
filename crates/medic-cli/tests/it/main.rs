//! Black-box tests of the `medic` binary: the real executable, real files, exit codes and
//! what it prints.

mod ansible;
mod cli_fuzz;
mod completions;
mod crash;
mod disk_full;
mod events;
mod help;
mod journeys;
mod load_names;
mod logs;
mod manual;
mod operator;
mod plan_seal;
mod planning;
mod postgres;
mod postgres_view;
mod readme;
mod report;
mod runs;
mod slice;
mod util;
mod validation;
mod verify;
mod workers;
