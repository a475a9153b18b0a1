//! The driver set of a run, built from its recorded inputs: the simulated fleet for a
//! rehearsal (with its `--sim-fault`s), else each driver the plan's steps use (ssh, dsm,
//! local, manual), from the connection settings. A driver the plan uses and nothing
//! provides is refused before anything runs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use medic_drivers::ManualDriver;
use medic_exec::Drivers;
use medic_model::Inventory;
use medic_plan::Plan;
use medic_sim::driver::SimDriver;
use medic_sim::{SimConfig, SimFleet};

use crate::conn::{manager_client, ssh_driver};
use crate::run::Inputs;
use crate::{Error, bad, internal, runtime};

pub(crate) fn sim_state_path(journal: &Path) -> PathBuf {
    let mut s = journal.as_os_str().to_owned();
    s.push(".sim.log");
    PathBuf::from(s)
}

/// A slice's rehearsal: the bundles its evidence says were exported in the main run are
/// carried into the site's simulated world, as the operator carries the file. The bundle's
/// build is the one its source was upgraded to in the main run (its evidence), else the
/// source's build as this world knows it.
fn carry_bundles(plan: &Plan, fleet: &SimFleet) {
    let Some(slice) = plan.slice_info() else {
        return;
    };
    let arg = |e: &medic_plan::Evidence, k: &str| {
        e.args
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    for e in &slice.evidence {
        if e.action != "bundle-export" || e.state != "succeeded" {
            continue;
        }
        let (Some(bundle), Some(host)) = (arg(e, "bundle"), e.host.as_deref()) else {
            continue;
        };
        let upgraded = slice
            .evidence
            .iter()
            .filter(|u| {
                u.action == "agent-upgrade"
                    && u.state == "succeeded"
                    && u.host.as_deref() == Some(host)
            })
            .filter_map(|u| arg(u, "to")?.parse::<medic_model::AgentBuild>().ok())
            .next_back();
        let build = upgraded.or_else(|| fleet.host_state(host).map(|h| h.build));
        if let Some(build) = build {
            fleet.carry_bundle(&bundle, build);
        }
    }
}

/// The simulated world follows the plan's fixed builds, so a rehearsal fails where the
/// real fleet would.
fn sim_config(plan: &Plan, seed: u64, faults: &[String]) -> Result<SimConfig, Error> {
    let mut c = SimConfig::demo(seed);
    for f in faults {
        let parts: Vec<&str> = f.split(':').collect();
        let fault = match parts.as_slice() {
            ["unreachable", host] => medic_sim::Fault::Unreachable {
                host: (*host).to_owned(),
            },
            ["hang", host, action] => medic_sim::Fault::Hang {
                host: (*host).to_owned(),
                action: (*action).to_owned(),
            },
            ["fail", host, action, n] => match n.parse() {
                Ok(times) => medic_sim::Fault::FailTimes {
                    host: (*host).to_owned(),
                    action: (*action).to_owned(),
                    times,
                },
                Err(_) => {
                    return Err(bad(
                        "--sim-fault",
                        format!("`{f}`: `{n}` is not a number of times"),
                        "write fail:HOST:ACTION:TIMES",
                    ));
                }
            },
            _ => {
                return Err(bad(
                    "--sim-fault",
                    format!("`{f}` is not a fault"),
                    "write unreachable:HOST, hang:HOST:ACTION or fail:HOST:ACTION:TIMES",
                ));
            }
        };
        check_fault_target(plan, f, &fault)?;
        c.faults.push(fault);
    }
    // The simulated world is affected exactly as the plan says: per version line.
    let get = |k: &str| {
        plan.params()
            .get(k)
            .and_then(|v| medic_model::BuildLines::parse(v).ok())
    };
    if let Some(b) = get("fixed_build.linux") {
        c.fixed_build_linux = b;
    }
    if let Some(b) = get("fixed_build.windows") {
        c.fixed_build_windows = b;
    }
    Ok(c)
}

/// A fault must name a host of the plan and, for `hang` and `fail`, an action the plan runs
/// on it: a typo would otherwise rehearse a run without the fault, silently.
fn check_fault_target(plan: &Plan, spec: &str, fault: &medic_sim::Fault) -> Result<(), Error> {
    let (host, action, times) = match fault {
        medic_sim::Fault::Unreachable { host } => (host, None, None),
        medic_sim::Fault::Hang { host, action } => (host, Some(action), None),
        medic_sim::Fault::FailTimes {
            host,
            action,
            times,
        } => (host, Some(action), Some(*times)),
    };
    let Some(h) = plan.hosts().iter().position(|x| &x.name == host) else {
        return Err(bad(
            "--sim-fault",
            format!("`{spec}`: no host of the inventory is named `{host}`"),
            "name a host of the inventory",
        ));
    };
    if let Some(action) = action {
        let on_host: BTreeSet<&str> = plan
            .steps()
            .iter()
            .filter(|s| s.kind == medic_plan::StepKind::Action && s.host == Some(h as u32))
            .flat_map(|s| {
                // The probes of checks and guards are actions of the fleet too.
                let probes = [
                    s.check.as_ref().map(|c| c.probe.as_str()),
                    s.guard.as_ref().and_then(|g| g.probe.as_deref()),
                ];
                std::iter::once(&*s.action).chain(probes.into_iter().flatten())
            })
            .collect();
        if !on_host.contains(action.as_str()) {
            let list = if on_host.is_empty() {
                format!("the plan gives {host} no step")
            } else {
                format!(
                    "the actions of its steps: {}",
                    on_host.into_iter().collect::<Vec<_>>().join(", ")
                )
            };
            return Err(bad(
                "--sim-fault",
                format!("`{spec}`: no step of the plan runs `{action}` on {host}"),
                &list,
            ));
        }
    }
    if times == Some(0) {
        return Err(bad(
            "--sim-fault",
            format!("`{spec}`: failing 0 times injects nothing"),
            "give how many times the action fails, at least 1",
        ));
    }
    Ok(())
}

/// The drivers of a run. `loaded` is the recorded simulation inventory when the caller
/// has already loaded that very text. Without a journal, a simulated fleet lives in
/// memory only (to check the rehearsal's settings before anything is written).
pub fn build(
    plan: &Plan,
    inputs: &Inputs,
    journal: Option<&Path>,
    loaded: Option<Inventory>,
) -> Result<Drivers, Error> {
    if inputs.simulate {
        let text = inputs.sim_inventory.as_deref().ok_or_else(|| {
            bad(
                "--simulate",
                "a simulated run needs the inventory",
                "pass --inventory",
            )
        })?;
        let inv = match loaded {
            Some(inv) => inv,
            None => medic_config::load_inventory("inventory (recorded)", text)
                .map_err(Error::BadInput)?,
        };
        let fleet = SimFleet::open(
            &inv,
            sim_config(plan, inputs.sim_seed, &inputs.sim_faults)?,
            journal.map(sim_state_path).as_deref(),
        )
        .map_err(|e| internal(format!("cannot open the simulated fleet: {e}")))?;
        carry_bundles(plan, &fleet);
        return Ok(Drivers::everything(Arc::new(SimDriver::new(
            fleet,
            inputs.time_scale,
        ))));
    }
    let used: BTreeSet<&str> = plan
        .steps()
        .iter()
        .filter(|s| s.kind == medic_plan::StepKind::Action)
        .map(|s| &*s.driver)
        .collect();
    // A manual step's check reads the Manager's build through its API: the Manager API is
    // needed (and refused up front without its key) as soon as one such step is planned.
    let manual_reads_manager = plan.steps().iter().any(|s| {
        &*s.driver == medic_exec::MANUAL_DRIVER
            && s.check
                .as_ref()
                .is_some_and(|c| medic_drivers::MANAGER_PROBES.contains(&c.probe.as_str()))
    });
    let mut drivers = Drivers::new();
    let mut manager_api: Option<Arc<dyn medic_exec::Driver>> = None;
    let _rt = runtime()?.enter();
    let poll = inputs.conn.poll_interval()?;
    let mut ssh: Option<Arc<medic_drivers::SshDriver>> = None;
    if used.contains("ssh") {
        ssh = Some(Arc::new(ssh_driver(&inputs.conn, poll, drivers.events())?));
    }
    let mut dsm: Option<medic_drivers::DsmDriver> = None;
    if used.contains("dsm") || manual_reads_manager {
        let client = manager_client(plan, &inputs.conn)?;
        let mut dcfg = medic_drivers::DsmDriverConfig::default();
        if let Some(p) = poll {
            dcfg.poll_interval = p;
        }
        dsm = Some(medic_drivers::DsmDriver::new(client, dcfg));
    }
    // `verify` (and the reinstall guard's Anti-Malware probe) read the Manager's view of
    // the computer first and the host's dsa_query second, whenever the run talks to the
    // Manager: the ssh steps go through the Verifier, which sends everything else on.
    if let Some(s) = ssh {
        drivers = match &dsm {
            Some(m) => drivers.with("ssh", Arc::new(medic_drivers::Verifier::new(s, m.clone()))),
            None => drivers.with("ssh", s),
        };
    }
    if let Some(m) = dsm {
        let m: Arc<dyn medic_exec::Driver> = Arc::new(m);
        manager_api = Some(m.clone());
        drivers = drivers.with("dsm", m);
    }
    if used.contains("local") {
        drivers = drivers.with(
            "local",
            Arc::new(medic_drivers::LocalDriver::new(
                medic_drivers::LocalConfig::default(),
            )),
        );
    }
    drivers = drivers.with("manual", Arc::new(ManualDriver::new(manager_api)));
    let missing: BTreeSet<&str> = used
        .into_iter()
        .filter(|d| drivers.get(d).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(bad(
            "apply",
            format!(
                "no {} driver is configured for this run",
                missing.into_iter().collect::<Vec<_>>().join(", ")
            ),
            "use ssh, dsm, local, manual or --simulate",
        ));
    }
    Ok(drivers)
}
