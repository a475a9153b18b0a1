//! `medic report`, and the report every run writes beside its journal when it ends. The
//! report itself (reading the journal, HTML, markdown, JSON) is `medic-report`'s.
//!
//! A run in PostgreSQL (`--journal postgres://...`, or `MEDIC_JOURNAL_URL`) is read through
//! the same journal trait as a file, so both give the same report; it goes to standard
//! output (or `--out`), as a file's does.

use std::path::{Path, PathBuf};

use medic_report::{Format, ReportError};
use medic_run::journal::{AnyReader, JournalTarget};

use crate::Failure;
use crate::args::{ReportArgs, ReportFormat};
use crate::exit_codes;

fn failure(journal: &Path, database: bool, e: &ReportError) -> Failure {
    match e {
        ReportError::Journal(j) if database => medic_run::journal::db_failure(journal, j),
        ReportError::Journal(j) => crate::files::journal_failure(journal, j),
        ReportError::Plan(m) => medic_run::bad(
            &journal.display().to_string(),
            format!("{}: {m}", journal.display()),
            "pass the journal `medic apply` made (it holds the plan it ran)",
        ),
    }
}

pub(crate) fn report(a: &ReportArgs) -> Result<u8, Failure> {
    let target = JournalTarget::existing(a.journal.as_deref())?;
    let r = match &target {
        JournalTarget::Sqlite(journal) => {
            crate::files::check_existing_journal(journal, false)?;
            if let Some(out) = &a.out {
                crate::files::refuse_overwriting_inputs(
                    "--out",
                    out,
                    &[("--journal", Some(journal))],
                )?;
                crate::files::check_output("--out", out)?;
            }
            medic_report::read(journal).map_err(|e| failure(journal, false, &e))?
        }
        JournalTarget::Postgres(_) => {
            if let Some(out) = &a.out {
                crate::files::check_output("--out", out)?;
            }
            let reader = target.reader(false)?;
            // The run's own URL (with `?run=`, never a password) names it in the report.
            let name = match &reader {
                AnyReader::Postgres(p) => p.location().to_path_buf(),
                AnyReader::Sqlite(_) => target.location(),
            };
            medic_report::read_from(&reader, &name.display().to_string())
                .map_err(|e| failure(&name, true, &e))?
        }
    };
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
