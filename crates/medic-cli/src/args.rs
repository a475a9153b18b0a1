//! The command line, as clap types. Nothing here does work; `main.rs` turns these into
//! validated inputs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// medic plans a fleet remediation as a dependency graph, shows exactly what will happen,
/// then runs it in stages: resumable after any crash, never claiming a success it did not
/// verify.
#[derive(Parser, Debug)]
#[command(
    name = "medic",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Cmd {
    /// Check an inventory and a playbook; report every problem at once (exit 2 if any).
    Validate(InputArgs),
    /// Build the plan and render it: what runs where, in which order and waves, how long,
    /// and which hosts are skipped and why. Touches no host.
    Plan(PlanArgs),
}

#[derive(Args, Debug)]
pub(crate) struct InputArgs {
    /// The fleet: inventory v1 YAML (Manager, relay groups, hosts).
    #[arg(long, short = 'i', value_name = "INV")]
    pub(crate) inventory: PathBuf,
    /// The remediation: playbook YAML (parameters and phases), e.g.
    /// playbooks/ds-activeupdate-cert-2023.yaml.
    #[arg(long, short = 'p', value_name = "PB")]
    pub(crate) playbook: PathBuf,
    /// Set a playbook parameter, e.g. --set fixed_build.linux=20.0.1-690 (repeatable).
    #[arg(long = "set", value_name = "K=V")]
    pub(crate) sets: Vec<String>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// A summary for people.
    Text,
    /// The plan contract (medic.plan/v1), also accepted by `medic apply --plan`.
    Json,
    /// Graphviz.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
    /// A change-board runbook.
    Markdown,
}

#[derive(Args, Debug)]
pub(crate) struct PlanArgs {
    #[command(flatten)]
    pub(crate) input: InputArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
    /// Write to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// The approved change window, RFC 3339 with offsets:
    /// 2026-12-01T22:00+09:00/2026-12-02T04:00+09:00. The plan says whether it fits.
    #[arg(long, value_name = "START/END")]
    pub(crate) window: Option<String>,
}
