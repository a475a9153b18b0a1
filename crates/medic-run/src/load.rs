//! The inputs of a plan: the inventory and the playbook read and validated together, the
//! plan built from them (a refusal placed on the host's inventory line), and the change
//! window.

use std::path::Path;

use medic_config::{Problem, Problems, SourceFile};
use medic_model::{Inventory, Playbook};
use medic_plan::{Plan, PlanError, Window, build_plan};

use crate::Error;

/// Both inputs, loaded and valid.
#[derive(Debug)]
pub struct Loaded {
    pub inventory: Inventory,
    pub playbook: Playbook,
    pub playbook_text: String,
    pub inventory_text: String,
    /// What is odd in the inventory but not wrong (a Relay without a relay group, ...):
    /// the caller shows them.
    pub warnings: Problems,
}

/// An input file's text; a file that is not text says so (empty, binary, not UTF-8) rather
/// than being handed to the YAML parser. `doc` is where its format is described.
fn read(path: &Path, doc: &str) -> Result<String, Error> {
    let name = path.display().to_string();
    let problem = |msg: String, help: String| {
        let file = SourceFile::new(name.clone(), "");
        Error::BadInput(Problems(vec![
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

/// Loads and validates both inputs, reporting the problems of both files together.
pub fn files(inv_path: &Path, pb_path: &Path, sets: &[String]) -> Result<Loaded, Error> {
    let (inv_text, pb_text) = match (
        read(inv_path, "docs/inventory.md"),
        read(pb_path, "docs/playbook.md"),
    ) {
        (Ok(i), Ok(p)) => (i, p),
        (i, p) => {
            let mut all = Problems::default();
            for r in [i, p] {
                if let Err(Error::BadInput(e)) = r {
                    all.extend(e);
                }
            }
            return Err(Error::BadInput(all));
        }
    };
    let inv = medic_config::load_inventory(&inv_path.display().to_string(), &inv_text);
    let pb = medic_config::load_playbook_for(
        &pb_path.display().to_string(),
        &pb_text,
        sets,
        &medic_sim::driver::driver_actions,
    );
    match (inv, pb) {
        (Ok(i), Ok(p)) => {
            let name = inv_path.display().to_string();
            let warnings = medic_config::inventory_warnings(&name, &inv_text, &i);
            Ok(Loaded {
                inventory: i,
                playbook: p,
                playbook_text: pb_text,
                inventory_text: inv_text,
                warnings,
            })
        }
        (i, p) => {
            let mut all = Problems::default();
            if let Err(e) = i {
                all.extend(e);
            }
            if let Err(e) = p {
                all.extend(e);
            }
            Err(Error::BadInput(all))
        }
    }
}

/// Plans; `inv_src` (the inventory's path and text) places what the playbook refuses on the
/// host it is about.
pub fn make_plan(
    inv: &Inventory,
    pb: &Playbook,
    text: &str,
    window: Option<Window>,
    inv_src: (&Path, &str),
) -> Result<Plan, Error> {
    build_plan(inv, pb, text, window).map_err(|e| match e {
        PlanError::Refused(refusals) => {
            let file = SourceFile::new(inv_src.0.display().to_string(), inv_src.1);
            Error::BadInput(Problems(
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
            Error::BadInput(Problems(vec![Problem::new(
                &file,
                None,
                "medic::plan::cycle",
                e.to_string(),
            )]))
        }
    })
}

/// `--window START/END`, parsed.
pub fn parse_window(w: Option<&str>) -> Result<Option<Window>, Error> {
    match w {
        None => Ok(None),
        Some(w) => Window::parse(w).map(Some).map_err(|e| {
            let file = SourceFile::new("--window", w);
            Error::BadInput(Problems(vec![
                Problem::new(&file, None, "medic::cli::window", e.to_string())
                    .help("write --window 2026-12-01T22:00+09:00/2026-12-02T04:00+09:00"),
            ]))
        }),
    }
}

/// A new plan or run needs a window that has not ended: planned into the past it would
/// "fit" and then run nothing.
pub fn refuse_past_window(w: Option<&Window>) -> Result<(), Error> {
    let Some(w) = w else { return Ok(()) };
    let now = jiff::Timestamp::now();
    let now = jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);
    if w.end > now {
        return Ok(());
    }
    // Now, in the offset the window was given in, so the two compare at a glance.
    let shown = now.display_with_offset(w.end_offset).to_string();
    let file = SourceFile::new("--window", "");
    Err(Error::BadInput(Problems(vec![
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
