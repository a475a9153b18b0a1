//! `medic demo`: the built-in fleet and the Deep Security playbook written to the demo's
//! directory, loaded and planned as any input would be, and the rehearsal started on the
//! simulated fleet with its manual steps approved automatically.

use std::path::{Path, PathBuf};

use medic_plan::Plan;

use crate::load::{Loaded, make_plan};
use crate::run::{Inputs, Ready, abs, abs_future, events_beside, run_id, start_new};
use crate::{Error, bad, internal};

/// The playbook the demo runs (and `medic-run`'s tests read).
pub const DEMO_PLAYBOOK: &str = include_str!("../../../playbooks/ds-activeupdate-cert-2023.yaml");

/// The demo's Manager build: older than the playbook's `manager_min_build`, so that the
/// demo shows the Manager upgrade, a manual step (approved automatically in the demo).
const DEMO_MANAGER_BUILD: &str = "20.0.400";

/// The seed of the demo's simulated fleet: every demo plays the same fleet.
const DEMO_SEED: u64 = 2023;

/// The built-in demo fleet with its Manager at [`DEMO_MANAGER_BUILD`].
fn demo_inventory() -> String {
    let mut out = String::new();
    for line in medic_sim::demo_inventory_yaml().lines() {
        let old = line
            .starts_with("manager:")
            .then(|| line.split_once("version: \"")?.1.split_once('"'))
            .flatten()
            .map(|(v, _)| v);
        match old {
            Some(v) => out.push_str(&line.replace(
                &format!("version: \"{v}\""),
                &format!("version: \"{DEMO_MANAGER_BUILD}\""),
            )),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The demo's inputs, written and loaded: the caller shows `loaded.warnings`, then plans.
pub struct Demo {
    pub run_id: String,
    /// `--dir`, else `.medic/demo-RUN-ID`.
    pub dir: PathBuf,
    pub inventory_path: PathBuf,
    pub playbook_path: PathBuf,
    pub loaded: Loaded,
}

impl Demo {
    /// Writes the demo's inventory and playbook into `dir` (made if needed) and loads them.
    pub fn write(dir: Option<&Path>) -> Result<Demo, Error> {
        let run_id = run_id();
        let dir = dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".medic").join(format!("demo-{run_id}")));
        // A directory the operator named that cannot be one is their input to change, not
        // an internal error (the fuzzer found `--dir` naming an existing file).
        std::fs::create_dir_all(&dir).map_err(|e| {
            bad(
                "--dir",
                format!("cannot use {} as the demo's directory: {e}", dir.display()),
                "give `--dir` a new or existing directory you can write to",
            )
        })?;
        let inventory_path = dir.join("inventory.yaml");
        let playbook_path = dir.join("playbook.yaml");
        std::fs::write(&inventory_path, demo_inventory()).map_err(|e| internal(e.to_string()))?;
        std::fs::write(&playbook_path, DEMO_PLAYBOOK).map_err(|e| internal(e.to_string()))?;
        let loaded = crate::load::files(&inventory_path, &playbook_path, &[])?;
        Ok(Demo {
            run_id,
            dir,
            inventory_path,
            playbook_path,
            loaded,
        })
    }

    /// The demo's plan.
    pub fn plan(&self) -> Result<Plan, Error> {
        let l = &self.loaded;
        make_plan(
            &l.inventory,
            &l.playbook,
            &l.playbook_text,
            None,
            (&self.inventory_path, &l.inventory_text),
        )
    }

    /// Starts the rehearsal of `plan` on the simulated fleet, durations divided by
    /// `time_scale`: its journal (`journal.sqlite` in the demo's directory) and events file
    /// beside it.
    pub fn start(self, plan: Plan, time_scale: f64) -> Result<Ready, Error> {
        let journal = self.dir.join("journal.sqlite");
        let inputs = Inputs {
            inventory: Some(abs(&self.inventory_path)),
            playbook: Some(abs(&self.playbook_path)),
            sets: Vec::new(),
            window: None,
            window_policy_continue: false,
            yes: true,
            strict: false,
            max_per_group: None,
            events: abs_future(&events_beside(&journal, &self.run_id)),
            simulate: true,
            time_scale,
            sim_seed: DEMO_SEED,
            sim_inventory: Some(self.loaded.inventory_text),
            sim_faults: Vec::new(),
            conn: crate::conn::Conn::default(),
            demo: true,
        };
        start_new(plan, inputs, &journal, self.run_id, None, None)
    }
}
