//! medic's run library: everything a command does between its parsed arguments and what it
//! shows. What to run, the drivers the connection settings describe, the checks of the
//! files a run reads and writes, opening a journal to resume it, and a run's status as a
//! typed model. It never prints and knows nothing of terminals or clap: the `medic` binary
//! (`medic-cli`) parses the command line and renders what this crate returns.

pub mod approve;
pub mod conn;
pub mod demo;
pub mod drivers;
pub mod error;
pub mod files;
pub mod import;
pub mod journal;
pub mod load;
pub mod resume;
pub mod run;
pub mod slice;
pub mod status;
pub mod text;
pub mod worker;

pub use error::{Error, bad, internal};

#[cfg(test)]
mod tests;

/// One runtime for the process: drivers spawn their tasks on it when they are built.
pub fn runtime() -> Result<&'static tokio::runtime::Runtime, Error> {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(rt) = RT.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| internal(format!("cannot start the runtime: {e}")))?;
    Ok(RT.get_or_init(|| rt))
}
