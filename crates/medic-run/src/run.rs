//! What to run and a new run started: the [`RunSpec`] (the plan's inputs or a sealed
//! plan, the run's settings, the rehearsal's, the connection settings, where the journal
//! and the events go), checked before anything is written; the [`Inputs`] a run records
//! in its journal so that `resume` needs nothing else; and the new journal created with
//! its plan, ready for the executor. The run itself (reporters, signals, summary) is the
//! caller's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use medic_config::{Problem, Problems, SourceFile};
use medic_exec::{Clock, Drivers, Prior, RunOptions, WindowPolicy};
use medic_journal::{JournalError, meta_keys};
use medic_plan::{Plan, Window};
use serde::{Deserialize, Serialize};

use crate::conn::Conn;
use crate::drivers::sim_state_path;
use crate::journal::{JournalTarget, RunJournal};
use crate::load::{make_plan, parse_window, refuse_past_window};
use crate::{Error, bad, internal};

/// Where a new run's plan comes from: as given on the command line, resolved by
/// [`RunSpec::plan`] (so that its problems are reported in the same order as ever).
#[derive(Clone, Debug, Default)]
pub struct PlanInputs {
    /// A saved (sealed) plan, `--plan`.
    pub plan: Option<PathBuf>,
    /// The public keys its signature must verify with, `--verify-key`.
    pub verify_key: Option<PathBuf>,
    pub inventory: Option<PathBuf>,
    pub playbook: Option<PathBuf>,
    /// `--set KEY=VALUE`, in order.
    pub sets: Vec<String>,
}

/// The settings of a rehearsal on the simulated fleet (recorded whether or not the run
/// is one).
#[derive(Clone, Debug)]
pub struct Simulate {
    /// Durations are divided by it.
    pub time_scale: f64,
    pub seed: u64,
    /// `--sim-fault`s, as written (`unreachable:HOST`, `hang:HOST:ACTION`,
    /// `fail:HOST:ACTION:TIMES`), checked against the plan by [`crate::drivers::build`].
    pub faults: Vec<String>,
}

/// What to run: everything a new run is started from.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub inputs: PlanInputs,
    /// `--window START/END`, as written (recorded so).
    pub window: Option<String>,
    pub window_policy: WindowPolicy,
    pub yes: bool,
    pub strict: bool,
    pub max_per_group: Option<u32>,
    /// A rehearsal on the simulated fleet (`--simulate`), with `sim`'s settings.
    pub simulate: bool,
    pub sim: Simulate,
    pub conn: Conn,
    /// The new journal; default `.medic/runs/RUN-ID/journal.sqlite`.
    pub journal: Option<PathBuf>,
    /// The events file; default `RUN-ID.events.jsonl` beside the journal.
    pub events: Option<PathBuf>,
}

/// A sealed plan reader: the plan file and the keys its signature must verify with.
pub type ReadSealed<'a> = &'a dyn Fn(&Path, Option<&Path>) -> Result<Plan, Error>;

impl RunSpec {
    /// The checks of the flags alone, before any file is read: a value is checked whatever
    /// the run (a rehearsal that does not use it would otherwise accept a value the help
    /// calls invalid, and the real run would refuse it).
    pub fn check_flags(&self) -> Result<(), Error> {
        // A key with no saved plan would be ignored and a fresh, unverified plan would run.
        if self.inputs.verify_key.is_some() && self.inputs.plan.is_none() {
            return Err(bad(
                "--verify-key",
                "--verify-key checks the signature of a saved plan, and no --plan was given",
                "pass the signed plan with --plan PLAN.json (without --playbook), or drop --verify-key",
            ));
        }
        self.conn.poll_interval()?;
        Ok(())
    }

    /// The change window, parsed; a window that has already ended is refused.
    pub fn window(&self) -> Result<Option<Window>, Error> {
        let window = parse_window(self.window.as_deref())?;
        refuse_past_window(window.as_ref())?;
        Ok(window)
    }

    /// The plan to run and the inventory's text when there is one: the sealed plan read
    /// back with `read_sealed`, or the inventory and playbook loaded and planned (`warn`
    /// is given the inventory's warnings as soon as they are known). Then the checks of
    /// the plan against the run: a rehearsal needs the inventory, a real run refuses the
    /// playbook's example values.
    pub fn plan(
        &self,
        window: Option<Window>,
        read_sealed: ReadSealed<'_>,
        warn: &dyn Fn(&Problems),
    ) -> Result<(Plan, Option<String>), Error> {
        let i = &self.inputs;
        let (plan, inv_text) = match (&i.plan, &i.playbook, &i.inventory) {
            (Some(p), _, inv) => {
                let plan = read_sealed(p, i.verify_key.as_deref())?;
                let inv_text = match inv {
                    Some(i) => Some(std::fs::read_to_string(i).map_err(|e| {
                        bad(
                            &i.display().to_string(),
                            format!("cannot read {}: {e}", i.display()),
                            "check the path",
                        )
                    })?),
                    None => None,
                };
                (plan, inv_text)
            }
            (None, Some(pb), Some(inv)) => {
                let l = crate::load::files(inv, pb, &i.sets)?;
                warn(&l.warnings);
                let plan = make_plan(
                    &l.inventory,
                    &l.playbook,
                    &l.playbook_text,
                    window,
                    (inv, &l.inventory_text),
                )?;
                (plan, Some(l.inventory_text))
            }
            _ => {
                return Err(bad(
                    "apply",
                    "nothing to apply",
                    "pass --plan PLAN.json, or --inventory INV --playbook PB",
                ));
            }
        };
        if self.simulate && inv_text.is_none() {
            return Err(bad(
                "--simulate",
                "a rehearsal builds its simulated fleet from the inventory",
                "pass --inventory INV as well",
            ));
        }
        if !self.simulate {
            refuse_example_values(&plan)?;
        }
        Ok((plan, inv_text))
    }

    /// Starts the run of `plan`: its journal created with the plan and the recorded
    /// [`Inputs`] (after every check of what would be written), its drivers built.
    /// `preflight` is what the pre-flight of a real run said, recorded for `medic status`.
    pub fn start(
        &self,
        plan: Plan,
        inv_text: Option<String>,
        window: Option<Window>,
        preflight: Option<&str>,
    ) -> Result<Ready, Error> {
        let id = run_id();
        let target = match &self.journal {
            Some(p) => JournalTarget::from_arg(p)?,
            None => JournalTarget::from_env()?.unwrap_or_else(|| {
                JournalTarget::Sqlite(
                    PathBuf::from(".medic/runs")
                        .join(&id)
                        .join("journal.sqlite"),
                )
            }),
        }
        .with_run(&id);
        let journal_path = target.local_base(&id, None);
        if let Some(ev) = &self.events {
            crate::files::check_events(ev, &journal_path)?;
        }
        let events = self
            .events
            .clone()
            .unwrap_or_else(|| events_beside(&journal_path, &id));
        let inputs = Inputs {
            inventory: self.inputs.inventory.as_deref().map(abs),
            playbook: self.inputs.playbook.as_deref().map(abs),
            sets: self.inputs.sets.clone(),
            window: self.window.clone(),
            window_policy_continue: self.window_policy == WindowPolicy::Continue,
            yes: self.yes,
            strict: self.strict,
            max_per_group: self.max_per_group,
            events: abs_future(&events),
            simulate: self.simulate,
            time_scale: self.sim.time_scale,
            sim_seed: self.sim.seed,
            sim_inventory: if self.simulate { inv_text } else { None },
            sim_faults: self.sim.faults.clone(),
            conn: self.conn.clone(),
            demo: false,
        };
        start_new_in(plan, inputs, &target, id, window, preflight)
    }
}

/// What a run was started with, kept in the journal so that `resume` needs nothing else.
/// Never holds a secret.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Inputs {
    pub inventory: Option<PathBuf>,
    pub playbook: Option<PathBuf>,
    pub sets: Vec<String>,
    pub window: Option<String>,
    pub window_policy_continue: bool,
    pub yes: bool,
    pub strict: bool,
    pub max_per_group: Option<u32>,
    pub events: PathBuf,
    pub simulate: bool,
    pub time_scale: f64,
    pub sim_seed: u64,
    /// The inventory the simulated fleet was built from (its log refuses any other).
    pub sim_inventory: Option<String>,
    #[serde(default)]
    pub sim_faults: Vec<String>,
    #[serde(default)]
    pub conn: Conn,
    /// `medic demo`: its manual steps are approved automatically (a resume of it too).
    #[serde(default)]
    pub demo: bool,
}

/// The journal's `meta` key holding the run's [`Inputs`].
pub const INPUTS: &str = "inputs";
/// The journal's record of the pre-flight of a real run: `passed: ...` or
/// `skipped (--skip-preflight)`.
pub const PREFLIGHT: &str = "preflight";

pub fn run_id() -> String {
    let now = jiff::Timestamp::now();
    let t = now.strftime("%Y%m%dT%H%M%SZ").to_string();
    format!("{t}-{:04x}", std::process::id() & 0xffff)
}

pub fn abs(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

pub(crate) fn options(
    inputs: &Inputs,
    run_id: String,
    window: Option<Window>,
    retry_failed: bool,
) -> RunOptions {
    RunOptions {
        run_id,
        yes: inputs.yes,
        window,
        window_policy: if inputs.window_policy_continue {
            WindowPolicy::Continue
        } else {
            WindowPolicy::Stop
        },
        time_scale: if inputs.simulate {
            inputs.time_scale
        } else {
            1.0
        },
        max_per_group: inputs.max_per_group,
        strict: inputs.strict,
        retry_failed,
        approval_poll: Duration::from_millis(300),
        clock: Clock::system(),
    }
}

/// A real run never starts on the playbook's example values (the advisory's build numbers
/// are the operator's to confirm): each one is named with the `--set` that replaces it.
/// Checked before anything is written.
pub fn refuse_example_values(plan: &Plan) -> Result<(), Error> {
    let examples = plan.example_params();
    if examples.is_empty() {
        return Ok(());
    }
    let file = SourceFile::new("--set", "");
    Err(Error::BadInput(Problems(
        examples
            .iter()
            .map(|k| {
                let now = plan.params().get(k).map(String::as_str).unwrap_or("?");
                Problem::new(
                    &file,
                    None,
                    "medic::apply::example_value",
                    format!("parameter `{k}` still has the playbook's example value `{now}`: a real run does not start on example values"),
                )
                .help(format!(
                    "confirm the value in the advisory and pass `--set {k}=VALUE` (a rehearsal with --simulate runs on example values)"
                ))
            })
            .collect(),
    )))
}

/// A run's own events file: beside its journal, named after the run, so that two runs
/// with journals in one directory never share one.
pub fn events_beside(journal: &Path, run_id: &str) -> PathBuf {
    journal.with_file_name(format!("{run_id}.events.jsonl"))
}

/// An absolute path for a file that may not exist yet.
pub fn abs_future(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    std::env::current_dir()
        .map(|d| d.join(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

/// A run ready for the executor: its journal holds its plan and inputs, its drivers are
/// built. The caller runs it with its reporters.
pub struct Ready {
    pub plan: Plan,
    pub drivers: Drivers,
    pub journal: RunJournal,
    /// What the journal says was done before (empty for a new run).
    pub prior: Prior,
    pub opts: RunOptions,
    pub inputs: Inputs,
    /// Where the run's events go.
    pub events: PathBuf,
    /// A resume in a new change window: the window it replaced and the new one, both
    /// already recorded in the journal.
    pub window_changed: Option<(String, String)>,
}

/// A new run from its sealed plan. `preflight`: what the pre-flight said (a real run), recorded in the
/// journal's meta for `medic status`.
pub fn start_new(
    plan: Plan,
    inputs: Inputs,
    journal_path: &Path,
    id: String,
    window: Option<Window>,
    preflight: Option<&str>,
) -> Result<Ready, Error> {
    let target = JournalTarget::Sqlite(journal_path.to_path_buf());
    start_new_in(plan, inputs, &target, id, window, preflight)
}

/// [`start_new`] with its journal in a file or a database.
pub fn start_new_in(
    plan: Plan,
    inputs: Inputs,
    target: &JournalTarget,
    id: String,
    window: Option<Window>,
    preflight: Option<&str>,
) -> Result<Ready, Error> {
    // Every check before anything is written: the inputs can be recorded, the journal's
    // path, the simulator's state file, the drivers' settings (a rehearsal's fleet is built
    // in memory first).
    let inputs_json = serde_json::to_string(&inputs).map_err(|e| unrecordable(&inputs, &e))?;
    let journal_path = &target.local_base(&id, Some(&inputs.events));
    if let JournalTarget::Sqlite(p) = target {
        crate::files::check_new_journal(p)?;
    }
    if inputs.simulate {
        crate::files::check_no_stale_sim_state(&sim_state_path(journal_path))?;
    }
    let drivers = crate::drivers::build(&plan, &inputs, None, None)?;
    // The directories made for this run, deepest first, so that a journal that cannot be
    // created (a database that does not answer, a full disk) leaves no empty run directory.
    let mut made: Vec<&Path> = Vec::new();
    if let Some(dir) = journal_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        made = dir
            .ancestors()
            .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
            .collect();
        std::fs::create_dir_all(dir)
            .map_err(|e| internal(format!("cannot create {}: {e}", dir.display())))?;
    }
    // The journal appears complete with its plan and inputs, or not at all.
    let mut meta = vec![
        (meta_keys::RUN_ID, id.as_str()),
        (INPUTS, inputs_json.as_str()),
    ];
    if let Some(p) = preflight {
        meta.push((PREFLIGHT, p));
    }
    let journal = create_journal(target, &id, &plan, &meta).inspect_err(|_| {
        for d in &made {
            // Only an empty directory goes: anything else in it is not ours to remove.
            let _ = std::fs::remove_dir(d);
        }
    })?;
    // The rehearsal's fleet keeps its state beside the journal, which now exists.
    let drivers = if inputs.simulate {
        crate::drivers::build(&plan, &inputs, Some(journal_path), None)?
    } else {
        drivers
    };
    let opts = options(&inputs, id, window, false);
    Ok(Ready {
        plan,
        drivers,
        journal,
        prior: Prior::default(),
        opts,
        events: inputs.events.clone(),
        inputs,
        window_changed: None,
    })
}

/// The new run's journal, holding its plan and `meta` from its first moment.
fn create_journal(
    target: &JournalTarget,
    id: &str,
    plan: &Plan,
    meta: &[(&str, &str)],
) -> Result<RunJournal, Error> {
    let location = target.location();
    let refused = |e: JournalError| match e {
        // Nothing was run and no journal is left behind, so there is nothing to resume.
        JournalError::DiskFull { .. } | JournalError::CannotWrite { .. } => internal(format!(
            "cannot create journal {}: the disk is full or refused a write; nothing was run: free space and start the run again",
            location.display()
        )),
        e => match target {
            JournalTarget::Sqlite(p) => crate::files::journal_failure(p, &e),
            JournalTarget::Postgres(_) => crate::journal::db_failure(&location, &e),
        },
    };
    match target {
        JournalTarget::Sqlite(p) => medic_exec::create_journal(p, plan, meta)
            .map(RunJournal::Sqlite)
            .map_err(refused),
        JournalTarget::Postgres(t) => {
            // The same meta and plan form as `medic_exec::create_journal` writes.
            let bytes = medic_plan::plan_to_bytes(plan);
            let mut text = vec![(meta_keys::PLAN_FINGERPRINT, plan.fingerprint())];
            text.extend_from_slice(meta);
            medic_journal_pg::PgJournal::create(t, id, &text, &[(meta_keys::PLAN_BIN, &bytes)])
                .map(RunJournal::Postgres)
                .map_err(refused)
        }
    }
}

/// The journal records the inputs' paths as JSON text, so that `resume` finds them again:
/// a path that is not UTF-8 cannot be recorded, and is refused naming it.
fn unrecordable(inputs: &Inputs, e: &serde_json::Error) -> Error {
    let c = &inputs.conn;
    let paths = [
        inputs.inventory.as_deref(),
        inputs.playbook.as_deref(),
        Some(inputs.events.as_path()),
        c.known_hosts.as_deref(),
        c.ssh_passphrase_file.as_deref(),
        c.dsm_ca.as_deref(),
        c.dsm_api_key_file.as_deref(),
        c.sudo_password_file.as_deref(),
        c.agent_password_file.as_deref(),
    ];
    let not_utf8 = paths
        .into_iter()
        .flatten()
        .chain(c.ssh_keys.iter().map(PathBuf::as_path))
        .find(|p| p.to_str().is_none());
    match not_utf8 {
        Some(p) => {
            let name = p.display().to_string();
            bad(
                &name,
                "this path is not valid UTF-8: a run records its files' paths in its journal, as text",
                "rename the file (or its directory) to a UTF-8 name, or pass a path to a copy with one",
            )
        }
        None => internal(format!("cannot record the run's inputs: {e}")),
    }
}
