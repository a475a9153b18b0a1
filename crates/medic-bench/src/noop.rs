//! The executor benchmarks' plan: N no-op steps, N/10 generated hosts x 10 chained `noop`
//! actions of the simulator (which cost nothing), run with the journal on; and the check
//! that a run of it succeeded, so that a benchmark never prints the figures of a failed run.

use std::sync::Arc;
use std::time::Instant;

use medic_exec::{Control, Drivers, Fanout, Plan, Prior, RunOptions, RunReport};
use medic_journal::JournalStore;

/// The playbook: every host, ten `noop` actions in a chain, nothing estimated.
pub fn playbook() -> String {
    let mut s = String::from(
        "name: noop-bench\nmax_parallel: 2000\ndefaults: { driver: sim, timeout: 1m, estimate: 0s, retries: { max: 0 } }\nphases:\n  - name: noop\n    select: { roles: [agent, relay] }\n    actions:\n",
    );
    for _ in 0..10 {
        s.push_str("      - { action: noop }\n");
    }
    s
}

/// The name of zone `i` of the zoned inventory: `zone-a`, `zone-b`, ...
pub fn zone_name(i: usize) -> String {
    let letter = char::from(b'a' + u8::try_from(i % 26).unwrap_or(0));
    if i < 26 {
        format!("zone-{letter}")
    } else {
        format!("zone-{letter}{}", i / 26)
    }
}

/// The generated inventory of `hosts` hosts; with `zones` > 0, its relay groups (and so
/// their hosts) spread over that many zones in turn (`zone-a`, `zone-b`, ...). Without
/// zones, the text is the generator's own (the figures of `medic-exec-bench` stay those
/// of the same inventory).
pub fn inventory(hosts: usize, zones: usize) -> String {
    let text = medic_sim::generate_inventory_yaml(hosts, 1);
    if zones == 0 {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 64 * zones);
    let mut group = 0usize;
    for line in text.lines() {
        if line == "relay_groups:" {
            out.push_str("zones:\n");
            for z in 0..zones {
                out.push_str(&format!("  - {{ name: {} }}\n", zone_name(z)));
            }
        }
        // A relay group's line, `  - { name: rg0000 }`: hosts carry an address.
        match line.strip_suffix(" }") {
            Some(head) if line.starts_with("  - { name: rg") && !line.contains("address") => {
                out.push_str(&format!("{head}, zone: {} }}\n", zone_name(group % zones)));
                group += 1;
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// The no-op plan of `steps` steps (rounded to whole hosts), and what it was made from.
pub struct NoopPlan {
    pub inventory: String,
    pub playbook: String,
    pub inv: medic_model::Inventory,
    pub plan: Arc<Plan>,
}

impl NoopPlan {
    pub fn new(steps: usize, zones: usize) -> Result<NoopPlan, String> {
        let hosts = (steps / 10).max(1);
        let inventory = inventory(hosts, zones);
        let inv =
            medic_config::load_inventory("gen.yaml", &inventory).map_err(|p| p.to_string())?;
        let playbook = playbook();
        let pb =
            medic_config::load_playbook("noop.yaml", &playbook, &[]).map_err(|p| p.to_string())?;
        let plan = Arc::new(
            medic_plan::build_plan(&inv, &pb, &playbook, None).map_err(|e| e.to_string())?,
        );
        Ok(NoopPlan {
            inventory,
            playbook,
            inv,
            plan,
        })
    }

    /// The action steps (every one a `noop`).
    pub fn actions(&self) -> usize {
        self.plan
            .steps()
            .iter()
            .filter(|s| s.kind == medic_plan::StepKind::Action)
            .count()
    }

    /// The simulated fleet's driver at zero latency, in memory (no state file).
    pub fn drivers(&self) -> Result<Drivers, String> {
        let fleet = medic_sim::SimFleet::open(&self.inv, medic_sim::SimConfig::demo(1), None)
            .map_err(|e| e.to_string())?;
        Ok(Drivers::everything(Arc::new(
            medic_sim::driver::SimDriver::new(fleet, 1.0),
        )))
    }

    /// Runs the plan with `journal` (made with the plan in it, as `medic apply` makes it):
    /// the report and the wall seconds of the run.
    pub fn run<J: JournalStore>(
        &self,
        rt: &tokio::runtime::Runtime,
        drivers: &Drivers,
        journal: &J,
    ) -> (RunReport, f64) {
        let t = Instant::now();
        let report = rt.block_on(medic_exec::execute(
            self.plan.clone(),
            drivers,
            journal,
            &Prior::default(),
            &RunOptions::default(),
            Control::default(),
            &mut Fanout::default(),
        ));
        (report, t.elapsed().as_secs_f64())
    }

    /// The run as `medic apply` runs it with a journal file at `path` (made with the plan
    /// and its fingerprint in, from the first moment), timed in its parts.
    pub fn run_sqlite(
        &self,
        rt: &tokio::runtime::Runtime,
        drivers: &Drivers,
        path: &std::path::Path,
    ) -> Result<Timed, String> {
        let t = Instant::now();
        let journal = medic_exec::create_journal(path, &self.plan, &[("run_id", "bench")])
            .map_err(|e| e.to_string())?;
        let create_s = t.elapsed().as_secs_f64();
        let (report, run_s) = self.run(rt, drivers, &journal);
        let t = Instant::now();
        journal.close().map_err(|e| e.to_string())?;
        Ok(Timed {
            report,
            create_s,
            run_s,
            close_s: t.elapsed().as_secs_f64(),
        })
    }

    /// `Ok` with a line to print when every step of the run succeeded and every `noop`
    /// acted; else why not.
    pub fn check(&self, report: &RunReport) -> Result<String, String> {
        let n = self.actions();
        let succeeded = report.summary.steps.get("succeeded").copied().unwrap_or(0);
        let acted = report
            .summary
            .actions
            .get("noop")
            .map_or(0, |c| c.acted as usize);
        let steps = &report.summary.steps;
        if report.exit != medic_exec::RunExit::Ok
            || succeeded as usize != n
            || acted != n
            || steps.len() != 1
        {
            return Err(format!(
                "the run did not succeed: exit {:?}, steps {steps:?}, {acted} of {n} noops acted, first failures {:?}",
                report.exit, report.summary.failures
            ));
        }
        Ok(format!("all {n} steps succeeded"))
    }
}

/// A run of the plan, timed: the journal made (with the plan), the run, the journal closed.
pub struct Timed {
    pub report: RunReport,
    pub create_s: f64,
    pub run_s: f64,
    pub close_s: f64,
}

/// The peak resident set of this process (VmHWM), in MiB.
pub fn peak_rss_mib() -> f64 {
    proc_peak_rss_mib("self").unwrap_or(0.0)
}

/// The peak resident set of process `pid` (`self` for this one), in MiB, while it runs.
pub fn proc_peak_rss_mib(pid: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Starts this process's peak resident set again from its current size (Linux: `5` to
/// `/proc/self/clear_refs`), so that a later part of a benchmark has a peak of its own.
/// Whether it could.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}
