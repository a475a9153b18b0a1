//! The documented exit codes of `medic` (README.md, "Exit codes").

/// Everything succeeded and was verified.
pub(crate) const OK: u8 = 0;
/// The run finished with failed steps.
pub(crate) const RUN_FAILED: u8 = 1;
/// `medic preflight`: at least one check found the plan cannot run as it is.
pub(crate) const FINDINGS: u8 = 1;
/// Bad input: validation failed, nothing was run.
pub(crate) const BAD_INPUT: u8 = 2;
/// Stopped (window closed, budget exceeded, cancelled) and resumable.
pub(crate) const STOPPED: u8 = 3;
/// An IO or internal error that is not the input's fault (e.g. the journal cannot be written).
pub(crate) const INTERNAL: u8 = 4;
