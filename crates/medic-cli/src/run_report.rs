//! `medic report`, and the report every run writes beside its journal when it ends. The
//! report itself (reading the journal, HTML, markdown, JSON) is `medic-report`'s.

use std::path::{Path, PathBuf};

use medic_report::{Format, ReportError};

use crate::Failure;
use crate::args::{ReportArgs, ReportFormat};
use crate::exit_codes;

fn failure(journal: &Path, e: &ReportError) -> Failure {
    match e {
        ReportError::Journal(j) => crate::files::journal_failure(journal, j),
        ReportError::Plan(m) => medic_run::bad(
            &journal.display().to_string(),
            format!("{}: {m}", journal.display()),
            "pass the journal `medic apply` made (it holds the plan it ran)",
        ),
    }
}

pub(crate) fn report(a: &ReportArgs) -> Result<u8, Failure> {
    crate::files::check_existing_journal(&a.journal, false)?;
    if let Some(out) = &a.out {
        crate::files::refuse_overwriting_inputs("--out", out, &[("--journal", Some(&a.journal))])?;
        crate::files::check_output("--out", out)?;
    }
    let r = medic_report::read(&a.journal).map_err(|e| failure(&a.journal, &e))?;
    let format = match a.format {
        ReportFormat::Html => Format::Html,
        ReportFormat::Markdown => Format::Markdown,
        ReportFormat::Json => Format::Json,
    };
    crate::write_out(a.out.as_deref(), &medic_report::render(&r, format))?;
    Ok(exit_codes::OK)
}

/// Writes the HTML report beside the journal at the end of a run; `None` (after a warning)
/// when it cannot: the run's outcome does not depend on its report.
pub(crate) fn write_beside(journal: &Path, run_id: &str) -> Option<PathBuf> {
    let path = medic_report::path_beside(journal, run_id);
    let written = medic_report::read(journal)
        .map_err(|e| e.to_string())
        .and_then(|r| {
            std::fs::write(&path, medic_report::render(&r, Format::Html))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))
        });
    match written {
        Ok(()) => Some(path),
        Err(e) => {
            eprintln!(
                "warning: the run's report was not written: {e}; `medic report --journal {}` makes it",
                crate::text::shell_word(&journal.display().to_string())
            );
            None
        }
    }
}
