//! The `medic` binary: parses the command line, loads inputs, calls the planner and the
//! executor, and maps outcomes to the documented exit codes. Only this crate knows about
//! terminals, colours and clap.

// The standard printing macros panic when the reader has gone away (`medic apply 2>&1 |
// head -1`); these, defined before every module so that they shadow the standard ones in
// the whole crate, never do, and a closed output stops a run like a first Ctrl-C
// (`out.rs`).
macro_rules! eprintln {
    () => { $crate::out::err_line("") };
    ($($t:tt)*) => { $crate::out::err_line(&format!($($t)*)) };
}
macro_rules! eprint {
    ($($t:tt)*) => { $crate::out::err_text(&format!($($t)*)) };
}
macro_rules! println {
    () => { $crate::out::out_line("") };
    ($($t:tt)*) => { $crate::out::out_line(&format!($($t)*)) };
}

mod apply;
mod args;
mod completions;
mod exit_codes;
mod logs;
mod out;
mod preflight;
mod report;
mod reporters;
mod run_report;
mod sign;
mod status_view;
mod text;
mod values;
mod worker;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use medic_config::{Problem, Problems, SourceFile};
use medic_model::{Inventory, Playbook};
use medic_plan::plan_to_json;
use medic_run::files;

use crate::args::{Cli, Cmd, Format, InputArgs, PlanArgs};

/// Why a command stopped early; each maps to one exit code.
pub(crate) use medic_run::Error as Failure;
pub(crate) use medic_run::load::{make_plan, parse_window, refuse_past_window};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logs::init(&cli.log) {
        return finish(Err(e), report::NotDone::Nothing);
    }
    let not_done = match &cli.cmd {
        Cmd::Resume(_) => report::NotDone::Resumed,
        Cmd::Worker(_) => report::NotDone::Served,
        Cmd::Approve(_) => report::NotDone::Approved,
        Cmd::Journal(_) => report::NotDone::Merged,
        Cmd::Status(_) | Cmd::Inventory(_) | Cmd::Report(_) => report::NotDone::Nothing,
        Cmd::Apply(a) if a.retry_failed => report::NotDone::Resumed,
        _ => report::NotDone::PlannedOrRun,
    };
    let result = match cli.cmd {
        Cmd::Validate(a) => validate(&a),
        Cmd::Plan(a) => plan(&a),
        Cmd::Preflight(a) => preflight::preflight(&a),
        Cmd::Apply(a) => apply::apply(&a),
        Cmd::Resume(a) => apply::resume(&a),
        Cmd::Worker(a) => worker::worker(&a),
        Cmd::Status(a) => status_view::status(&a),
        Cmd::Approve(a) => apply::approve(&a),
        Cmd::Report(a) => run_report::report(&a),
        Cmd::Demo(a) => apply::demo(&a),
        Cmd::Inventory(args::InventoryCmd::Import(a)) => apply::inventory_import(&a),
        Cmd::Journal(args::JournalCmd::Merge(a)) => merge(&a),
        Cmd::Completions(a) => completions::completions(&a),
        Cmd::Man => completions::man(),
    };
    finish(result, not_done)
}

fn finish(result: Result<u8, Failure>, not_done: report::NotDone) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Failure::BadInput(p)) => {
            report::problems(&p, not_done);
            ExitCode::from(exit_codes::BAD_INPUT)
        }
        Err(Failure::Internal(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(exit_codes::INTERNAL)
        }
    }
}

/// Loads and validates both inputs, reporting the problems of both files together; also
/// returns the playbook's and the inventory's text.
pub(crate) fn load(a: &InputArgs) -> Result<(Inventory, Playbook, String, String), Failure> {
    load_files(&a.inventory, &a.playbook, &a.sets)
}

/// Like [`load`], for these files; the inventory's warnings are shown.
pub(crate) fn load_files(
    inv_path: &Path,
    pb_path: &Path,
    sets: &[String],
) -> Result<(Inventory, Playbook, String, String), Failure> {
    let l = medic_run::load::files(inv_path, pb_path, sets)?;
    report::warnings(&l.warnings);
    Ok((l.inventory, l.playbook, l.playbook_text, l.inventory_text))
}

fn validate(a: &InputArgs) -> Result<u8, Failure> {
    let (inv, pb, text, inv_text) = load(a)?;
    let plan = make_plan(&inv, &pb, &text, None, (&a.inventory, &inv_text))?;
    println!(
        "ok: {} hosts, {} relay groups, playbook {} with {} phases; the plan has {}",
        inv.hosts.len(),
        inv.relay_groups.len(),
        pb.name,
        pb.phases.len(),
        plan.size()
    );
    // What the playbook's `warn` rules say (the example values are `plan`'s to list).
    for w in plan.warnings() {
        eprintln!("warning: {w}");
    }
    Ok(exit_codes::OK)
}

fn plan(a: &PlanArgs) -> Result<u8, Failure> {
    if let Some(out) = &a.out {
        files::refuse_overwriting_inputs(
            "--out",
            out,
            &[
                ("--inventory", Some(&a.input.inventory)),
                ("--playbook", Some(&a.input.playbook)),
                ("--sign", a.sign.as_deref()),
            ],
        )?;
        files::check_output("--out", out)?;
    }
    if let (Some(zone), Some(journal)) = (&a.slice, &a.journal) {
        return slice(a, zone, journal);
    }
    let window = parse_window(a.window.as_deref())?;
    refuse_past_window(window.as_ref())?;
    let (inv, pb, text, inv_text) = load(&a.input)?;
    if a.sign.is_some() && a.format != Format::Json {
        let file = SourceFile::new("--sign", "");
        return Err(Failure::BadInput(Problems(vec![
            Problem::new(
                &file,
                None,
                "medic::cli::sign",
                "a signature is kept in the plan's JSON: --sign needs --format json",
            )
            .help("write `medic plan --format json --sign KEY --out plan.json`"),
        ])));
    }
    let plan = make_plan(&inv, &pb, &text, window, (&a.input.inventory, &inv_text))?;
    let out = match a.format {
        Format::Text => medic_plan::render::to_text(&plan),
        Format::Json => match &a.sign {
            None => plan_to_json(&plan),
            Some(key) => {
                let sig = sign::sign(&plan, key)?;
                let mut out = Vec::new();
                medic_plan::write_plan_json_signed(&plan, Some(&sig), &mut out)
                    .map_err(|e| Failure::Internal(format!("cannot render the plan: {e}")))?;
                String::from_utf8(out).map_err(|e| Failure::Internal(e.to_string()))?
            }
        },
        Format::Dot => medic_plan::render::to_dot(&plan),
        Format::Mermaid => medic_plan::render::to_mermaid(&plan),
        Format::Markdown => medic_plan::render::to_markdown(&plan),
    };
    write_out(a.out.as_deref(), &out)?;
    Ok(exit_codes::OK)
}

/// `medic plan --slice ZONE --journal MAIN`: the slice as plan JSON (signed with --sign).
/// Today's inputs must still give the main run's plan (drift is refused, naming hosts).
fn slice(a: &PlanArgs, zone: &str, journal: &Path) -> Result<u8, Failure> {
    if !matches!(a.format, Format::Json | Format::Text) || a.window.is_some() {
        let file = SourceFile::new("--slice", "");
        return Err(Failure::BadInput(Problems(vec![
            Problem::new(
                &file,
                None,
                "medic::cli::slice",
                "--slice writes the slice as plan JSON, under the main run's window: --format and --window do not apply",
            )
            .help("write `medic plan -i INV -p PB --slice ZONE --journal MAIN --out ZONE.slice.json`"),
        ])));
    }
    if let Some(out) = &a.out {
        files::refuse_overwriting_inputs("--out", out, &[("--journal", Some(journal))])?;
    }
    let (inv, pb, text, _) = load(&a.input)?;
    let sliced = medic_run::slice::cut(journal, zone)?;
    let (fingerprint, digests) = medic_plan::fingerprint_inputs(&inv, &pb, &text);
    if fingerprint != sliced.fingerprint() {
        let drifted = sliced.drifted_hosts_from(&digests);
        let file = SourceFile::new(a.input.inventory.display().to_string(), "");
        return Err(Failure::BadInput(Problems(vec![
            Problem::new(
                &file,
                None,
                "medic::cli::slice_drift",
                format!(
                    "the inventory and playbook no longer give the plan {} runs{}",
                    journal.display(),
                    if drifted.is_empty() {
                        String::new()
                    } else {
                        format!(" (hosts changed: {})", drifted.join(", "))
                    }
                ),
            )
            .help("pass the inventory, playbook and --set values the main run was started with"),
        ])));
    }
    let out = match &a.sign {
        None => plan_to_json(&sliced),
        Some(key) => {
            let sig = sign::sign(&sliced, key)?;
            let mut out = Vec::new();
            medic_plan::write_plan_json_signed(&sliced, Some(&sig), &mut out)
                .map_err(|e| Failure::Internal(format!("cannot render the slice: {e}")))?;
            String::from_utf8(out).map_err(|e| Failure::Internal(e.to_string()))?
        }
    };
    write_out(a.out.as_deref(), &out)?;
    if let Some(info) = sliced.slice_info() {
        eprintln!(
            "slice of zone {}: {}, carrying the evidence of {} step(s) of the main run",
            info.zone,
            sliced.size(),
            info.evidence.len()
        );
    }
    Ok(exit_codes::OK)
}

/// `medic journal merge SLICE --journal MAIN`.
fn merge(a: &args::MergeArgs) -> Result<u8, Failure> {
    let m = medic_run::slice::merge(&a.slice, &a.journal)?;
    let j = medic_run::text::shell_word(&a.journal.display().to_string()).into_owned();
    let states: Vec<String> = m.states.iter().map(|(k, v)| format!("{v} {k}")).collect();
    if m.steps == 0 {
        println!(
            "zone {}: nothing new to merge ({} already holds the slice's results: {})",
            m.zone,
            a.journal.display(),
            states.join(", ")
        );
    } else {
        println!(
            "zone {}: merged {} step(s) into {} ({}); next: `medic resume --journal {j}`",
            m.zone,
            m.steps,
            a.journal.display(),
            states.join(", ")
        );
    }
    Ok(exit_codes::OK)
}

pub(crate) fn write_out(path: Option<&Path>, text: &str) -> Result<(), Failure> {
    use std::io::Write as _;
    match path {
        Some(p) => std::fs::write(p, text)
            .map_err(|e| Failure::Internal(format!("cannot write {}: {e}", p.display()))),
        None => {
            let mut out = std::io::stdout().lock();
            match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
                Ok(()) => Ok(()),
                // A closed pipe (`medic plan | head`) is the reader's choice, not an error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                Err(e) => Err(Failure::Internal(format!(
                    "cannot write to standard output: {e}"
                ))),
            }
        }
    }
}
