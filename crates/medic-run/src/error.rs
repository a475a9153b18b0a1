//! What stops a command early: bad input (the problems to show, exit 2) or an internal
//! failure (exit 4).

use medic_config::{Problem, Problems, SourceFile};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operator's input is wrong: every problem found, each naming its file or flag.
    #[error("{0}")]
    BadInput(Problems),
    /// medic could not do its part (a runtime, a disk, a journal that fails).
    #[error("{0}")]
    Internal(String),
}

/// One bad-input problem about `file` (a path, or a flag such as `--window`).
pub fn bad(file: &str, msg: impl Into<String>, help: &str) -> Error {
    let f = SourceFile::new(file, "");
    Error::BadInput(Problems(vec![
        Problem::new(&f, None, "medic::run::input", msg).help(help),
    ]))
}

pub fn internal(msg: impl Into<String>) -> Error {
    Error::Internal(msg.into())
}
