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

mod ansible;
mod args;
mod completions;
mod exit_codes;
mod files;
mod logs;
mod out;
mod preflight;
mod report;
mod reporters;
mod run;
mod sign;
mod status;
mod text;
mod values;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use medic_config::{Problem, Problems, SourceFile};
use medic_model::{Inventory, Playbook};
use medic_plan::{Plan, PlanError, Window, build_plan, plan_to_json};

use crate::args::{Cli, Cmd, Format, InputArgs, PlanArgs};

/// Why a command stopped early; each maps to one exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    BadInput(Problems),
    Internal(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logs::init(&cli.log) {
        return finish(Err(e), report::NotDone::Nothing);
    }
    let not_done = match &cli.cmd {
        Cmd::Resume(_) => report::NotDone::Resumed,
        Cmd::Approve(_) => report::NotDone::Approved,
        Cmd::Status(_) | Cmd::Inventory(_) => report::NotDone::Nothing,
        Cmd::Apply(a) if a.retry_failed => report::NotDone::Resumed,
        _ => report::NotDone::PlannedOrRun,
    };
    let result = match cli.cmd {
        Cmd::Validate(a) => validate(&a),
        Cmd::Plan(a) => plan(&a),
        Cmd::Preflight(a) => preflight::preflight(&a),
        Cmd::Apply(a) => run::apply(&a),
        Cmd::Resume(a) => run::resume(&a),
        Cmd::Status(a) => status::status(&a),
        Cmd::Approve(a) => run::approve(&a),
        Cmd::Demo(a) => run::demo(&a),
        Cmd::Inventory(args::InventoryCmd::Import(a)) => run::inventory_import(&a),
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

/// An input file's text; a file that is not text says so (empty, binary, not UTF-8) rather
/// than being handed to the YAML parser. `doc` is where its format is described.
fn read(path: &Path, doc: &str) -> Result<String, Failure> {
    let name = path.display().to_string();
    let problem = |msg: String, help: String| {
        let file = SourceFile::new(name.clone(), "");
        Failure::BadInput(Problems(vec![
            Problem::new(&file, None, "medic::io::read", msg).help(help),
        ]))
    };
    let bytes = std::fs::read(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_owned(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
            std::io::ErrorKind::IsADirectory => "it is a directory".to_owned(),
            _ => e.to_string(),
        };
        problem(
            format!("cannot read the file: {why}"),
            "check the path and its permissions".to_owned(),
        )
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(problem(
            "the file is empty".to_owned(),
            format!("write the file as {doc} describes"),
        ));
    }
    if bytes.contains(&0) {
        return Err(problem(
            "a binary file, not YAML text".to_owned(),
            format!("pass the YAML file that {doc} describes"),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        problem(
            format!("not UTF-8 text (line {line}, byte {at} is not UTF-8)"),
            "save the file as UTF-8".to_owned(),
        )
    })
}

/// Loads and validates both inputs, reporting the problems of both files together; also
/// returns the playbook's and the inventory's text.
pub(crate) fn load(a: &InputArgs) -> Result<(Inventory, Playbook, String, String), Failure> {
    load_files(&a.inventory, &a.playbook, &a.sets)
}

/// Like [`load`], also returning the inventory's text.
pub(crate) fn load_files(
    inv_path: &Path,
    pb_path: &Path,
    sets: &[String],
) -> Result<(Inventory, Playbook, String, String), Failure> {
    let (inv_text, pb_text) = match (
        read(inv_path, "docs/inventory.md"),
        read(pb_path, "docs/playbook.md"),
    ) {
        (Ok(i), Ok(p)) => (i, p),
        (i, p) => {
            let mut all = Problems::default();
            for r in [i, p] {
                if let Err(Failure::BadInput(e)) = r {
                    all.extend(e);
                }
            }
            return Err(Failure::BadInput(all));
        }
    };
    let inv = medic_config::load_inventory(&inv_path.display().to_string(), &inv_text);
    let pb = medic_config::load_playbook_for(
        &pb_path.display().to_string(),
        &pb_text,
        sets,
        &medic_drivers::driver_actions,
    );
    match (inv, pb) {
        (Ok(i), Ok(p)) => {
            let name = inv_path.display().to_string();
            report::warnings(&medic_config::inventory_warnings(&name, &inv_text, &i));
            Ok((i, p, pb_text, inv_text))
        }
        (i, p) => {
            let mut all = Problems::default();
            if let Err(e) = i {
                all.extend(e);
            }
            if let Err(e) = p {
                all.extend(e);
            }
            Err(Failure::BadInput(all))
        }
    }
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

/// Plans; `inv_src` (the inventory's path and text) places what the playbook refuses on the
/// host it is about.
pub(crate) fn make_plan(
    inv: &Inventory,
    pb: &Playbook,
    text: &str,
    window: Option<Window>,
    inv_src: (&Path, &str),
) -> Result<Plan, Failure> {
    build_plan(inv, pb, text, window).map_err(|e| match e {
        PlanError::Refused(refusals) => {
            let file = SourceFile::new(inv_src.0.display().to_string(), inv_src.1);
            Failure::BadInput(Problems(
                refusals
                    .into_iter()
                    .map(|r| {
                        let field = r.field.unwrap_or("agent_version");
                        let loc = medic_config::host_location(inv_src.1, &r.host, field);
                        let p = Problem::new(&file, loc, "medic::plan::refused", r.message);
                        match r.help {
                            Some(h) => p.help(h),
                            None => p,
                        }
                    })
                    .collect(),
            ))
        }
        e => {
            let file = SourceFile::new("plan", "");
            Failure::BadInput(Problems(vec![Problem::new(
                &file,
                None,
                "medic::plan::cycle",
                e.to_string(),
            )]))
        }
    })
}

pub(crate) fn parse_window(w: Option<&str>) -> Result<Option<Window>, Failure> {
    match w {
        None => Ok(None),
        Some(w) => Window::parse(w).map(Some).map_err(|e| {
            let file = SourceFile::new("--window", w);
            Failure::BadInput(Problems(vec![
                Problem::new(&file, None, "medic::cli::window", e.to_string())
                    .help("write --window 2026-12-01T22:00+09:00/2026-12-02T04:00+09:00"),
            ]))
        }),
    }
}

/// A new plan or run needs a window that has not ended: planned into the past it would
/// "fit" and then run nothing.
pub(crate) fn refuse_past_window(w: Option<&Window>) -> Result<(), Failure> {
    let Some(w) = w else { return Ok(()) };
    let now = jiff::Timestamp::now();
    let now = jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);
    if w.end > now {
        return Ok(());
    }
    // Now, in the offset the window was given in, so the two compare at a glance.
    let shown = now.display_with_offset(w.end_offset).to_string();
    let file = SourceFile::new("--window", "");
    Err(Failure::BadInput(Problems(vec![
        Problem::new(
            &file,
            None,
            "medic::cli::window_past",
            format!(
                "the window {} ended before now ({}); nothing could run in it",
                w.text(),
                shown
            ),
        )
        .help("pass the approved window that is still to come, e.g. --window 2027-01-15T22:00+09:00/2027-01-16T04:00+09:00"),
    ])))
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
