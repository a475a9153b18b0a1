//! Black-box tests of the `medic` binary: the real executable, real files, exit codes and
//! what it prints.

mod util;
mod validation;
