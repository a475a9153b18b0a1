//! `medic approve`: an approval recorded in a run's journal, for a gate that asks for one
//! or a manual step of the run's plan, and nothing else (a typo would look approved).

use crate::journal::{AnyReader, JournalTarget};

use crate::{Error, bad};

/// Records that `by` approved `gate` (a gate or a manual step) of the run of `target`,
/// after the same checks of the file as `status` and `resume`.
pub fn record(target: &JournalTarget, gate: &str, by: &str) -> Result<(), Error> {
    let name = target.location().display().to_string();
    // The same checks as `status` and `resume`: a missing, damaged or read-only file, or
    // one that is not a journal, is named for what it is.
    let reader = target.reader(true)?;
    // Only what the run can wait for is recorded: a gate that asks for an approval, or a
    // manual step. Anything else would be a typo that looks approved.
    let plan = medic_exec::read_plan(&reader).map_err(|e| {
        bad(
            &name,
            e.to_string(),
            "pass the journal of a run started by `medic apply`",
        )
    })?;
    let approvable: Vec<&str> = plan
        .steps()
        .iter()
        .filter(|s| match &s.kind {
            medic_plan::StepKind::Gate(g) => g.approval,
            medic_plan::StepKind::Action => &*s.driver == medic_exec::MANUAL_DRIVER,
            _ => false,
        })
        .map(|s| s.id.as_str())
        .collect();
    if !approvable.contains(&gate) {
        let list = if approvable.is_empty() {
            "this run has no gate that asks for an approval and no manual step".to_owned()
        } else {
            let shown: Vec<&str> = approvable.iter().take(20).copied().collect();
            let more = approvable.len().saturating_sub(shown.len());
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            format!("what can be approved: {}{more}", shown.join(", "))
        };
        return Err(bad(
            "approve",
            format!(
                "`{}` is neither a gate nor a manual step of this run; {list}",
                gate
            ),
            "`medic status --journal FILE` lists what the run waits for",
        ));
    }
    let recorded = match &reader {
        AnyReader::Sqlite(_) => {
            // A file's location is its path.
            let journal = target.location();
            crate::files::check_existing_journal(&journal, true)?;
            medic_journal::approve(&journal, gate, by)
        }
        AnyReader::Postgres(r) => r.approve(gate, by),
    };
    recorded.map_err(|e| bad(&name, e.to_string(), "pass the journal of the run"))?;
    Ok(())
}
