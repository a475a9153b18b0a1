//! The run report: what a run did, host by host, read back from its journal, for the change
//! board and for finding what went wrong without reading the journal.
//!
//! [`read`] builds a [`Report`] (the model: per host the builds observed before and after,
//! every step with its start, end, attempts, result, output excerpt and verification
//! evidence, the reasons hosts were skipped; per phase and wave the counts and the plan's
//! estimate beside the actual durations; the gates with who or what opened them; the host
//! keys the SSH driver accepted as new or refused). It reads
//! the journal through `medic_journal::JournalRead` only (a file with [`read`], a run in
//! PostgreSQL or any other backend with [`read_from`]), so it works on a finished run,
//! a stopped one and one still running. [`render`] turns it into one self-contained HTML
//! file (an SVG timeline drawn here, a host table filtered by a little inline script, no
//! network), markdown, or JSON (`medic.report/v1`, the model as it is).
//!
//! Every value that comes from the inventory, the playbook or a host's output is escaped
//! for where it lands: HTML text and attributes, JSON inside a `<script>` element (no `<`
//! survives), markdown cells.

mod html;
mod markdown;
mod model;
mod svg;

use std::path::{Path, PathBuf};

pub use model::{
    Evidence, GateReport, HostKeyReport, HostReport, PhaseReport, Report, RunInfo, SkipReason,
    StepReport, WaveReport,
};

/// The report's formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Html,
    Markdown,
    Json,
}

impl Format {
    /// The file name extension of a report in this format.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Markdown => "md",
            Format::Json => "json",
        }
    }
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Journal(#[from] medic_journal::JournalError),
    #[error("{0}")]
    Plan(String),
}

/// Reads the journal file at `path` into a report (the plan and the rows over two
/// connections at once).
pub fn read(path: &Path) -> Result<Report, ReportError> {
    model::read(path)
}

/// Reads a run into a report through any journal backend (a run in PostgreSQL:
/// `medic report --journal postgres://...`); `journal` is the name the report shows.
pub fn read_from<R: medic_journal::JournalRead + ?Sized>(
    reader: &R,
    journal: &str,
) -> Result<Report, ReportError> {
    model::read_from(reader, journal)
}

/// The report in `format`.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Html => html::to_html(report),
        Format::Markdown => markdown::to_markdown(report),
        Format::Json => {
            let mut s = serde_json::to_string(report).unwrap_or_else(|e| {
                // Only maps with string keys and plain values are serialized.
                format!("{{\"error\":{:?}}}", e.to_string())
            });
            s.push('\n');
            s
        }
    }
}

/// Where the report written at the end of a run goes: beside its journal, named after the
/// run (`RUN-ID.report.html`), as the events file is.
pub fn path_beside(journal: &Path, run_id: &str) -> PathBuf {
    journal.with_file_name(format!("{run_id}.report.html"))
}
