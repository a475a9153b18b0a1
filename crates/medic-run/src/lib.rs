//! medic's run library: everything a command does between its parsed arguments and what it
//! shows. What to run, the drivers the connection settings describe, the checks of the
//! files a run reads and writes, opening a journal to resume it, and a run's status as a
//! typed model. It never prints and knows nothing of terminals or clap: the `medic` binary
//! (`medic-cli`) parses the command line and renders what this crate returns.

pub mod error;
pub mod files;
pub mod load;
pub mod run;
pub mod status;
pub mod text;

pub use error::{Error, bad, internal};
