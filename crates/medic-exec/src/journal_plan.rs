//! The plan as a journal holds it, and what a resume reads back: one place for `medic
//! apply`, `medic resume` and the benchmarks, so the benchmarks time what the CLI does.
//!
//! A journal made here holds the sealed plan in medic-plan's binary form
//! ([`medic_plan::plan_to_bytes`], meta key [`meta_keys::PLAN_BIN`]) and its fingerprint
//! as text. Reading a journal for a resume decodes the plan on one thread while the other
//! reads the state of every step and timer: the two are independent, and on a million-step
//! journal each takes a good part of a second.

use std::path::Path;

use medic_journal::{Journal, JournalError, JournalRead, JournalReader, meta_keys};
use medic_plan::{
    Plan, PlanBinError, PlanReadError, plan_from_bytes, plan_from_json, plan_to_bytes,
};

use crate::Prior;

/// Creates a run's journal holding `plan` and `meta` (text values) from its first moment.
pub fn create_journal(
    path: &Path,
    plan: &Plan,
    meta: &[(&str, &str)],
) -> Result<Journal, JournalError> {
    let bytes = plan_to_bytes(plan);
    let mut text = Vec::with_capacity(meta.len() + 1);
    text.push((meta_keys::PLAN_FINGERPRINT, plan.fingerprint()));
    text.extend_from_slice(meta);
    Journal::create_with_meta_and_blobs(path, &text, &[(meta_keys::PLAN_BIN, &bytes)])
}

/// Why a journal could not be read back for a resume.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The journal holds no plan (it was not made by `medic apply`).
    #[error("the journal holds no plan")]
    NoPlan,
    /// The stored plan does not decode.
    #[error("the journal's plan cannot be read: {0}")]
    BadPlan(#[from] BadPlan),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// A stored plan that does not decode, by the form it was stored in.
#[derive(Debug, thiserror::Error)]
pub enum BadPlan {
    /// The binary form (meta key `plan_bin`).
    #[error(transparent)]
    Binary(#[from] PlanBinError),
    /// The `medic.plan/v1` JSON of journals made before it (meta key `plan_json`).
    #[error(transparent)]
    Json(#[from] PlanReadError),
}

/// Reads the plan a journal was started with: the binary form, or the `medic.plan/v1`
/// JSON that journals written before it hold. Any backend.
pub fn read_plan<R: JournalRead + ?Sized>(reader: &R) -> Result<Plan, ReadError> {
    if let Some(bytes) = reader.meta_blob(meta_keys::PLAN_BIN)? {
        return Ok(plan_from_bytes(&bytes).map_err(BadPlan::from)?);
    }
    let json = reader
        .meta(meta_keys::PLAN_JSON)?
        .ok_or(ReadError::NoPlan)?;
    Ok(plan_from_json(&json).map_err(BadPlan::from)?)
}

/// Reads the journal's view of the run: every step's state and the pending timers. Any
/// backend.
pub fn read_prior<R: JournalRead + ?Sized>(reader: &R) -> Result<Prior, JournalError> {
    let mut prior = Prior {
        steps: reader.steps()?,
        ..Prior::default()
    };
    for t in reader.timers()? {
        prior.timers.insert(t.key, t.due_ms);
    }
    Ok(prior)
}

/// Everything a resume needs from the journal at `path`: its plan and its prior state, read
/// at the same time over two read-only connections.
pub fn read_for_resume(path: &Path) -> Result<(Plan, Prior), ReadError> {
    let (plan, prior) = std::thread::scope(|s| {
        let plan =
            s.spawn(|| -> Result<Plan, ReadError> { read_plan(&JournalReader::open(path)?) });
        let prior =
            (|| -> Result<Prior, JournalError> { read_prior(&JournalReader::open(path)?) })();
        (
            plan.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            prior,
        )
    });
    Ok((plan?, prior?))
}
