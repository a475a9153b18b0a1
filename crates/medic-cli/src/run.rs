//! `apply`, `resume`, `demo`, `status` and `approve`: turning the command line into a run of
//! the executor, with its journal, drivers, reporters and signal handling.

use std::collections::BTreeSet;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use medic_config::{Problem, Problems, SourceFile};
use medic_drivers::{ManualDriver, SimDriver};
use medic_exec::{
    Clock, Control, Drivers, Fanout, Prior, Reporter, RunExit, RunOptions, StopReason, WindowPolicy,
};
use medic_journal::{Journal, JournalError, JournalReader, meta_keys};
use medic_model::Inventory;
use medic_plan::{Plan, Window};
use medic_sim::{SimConfig, SimFleet};
use serde::{Deserialize, Serialize};

use crate::args::{ApplyArgs, ApproveArgs, DemoArgs, Progress, ResumeArgs, WindowPolicyArg};
use crate::reporters::{JsonLines, Operator, summary_text};
use crate::{Failure, exit_codes, load_files, make_plan, parse_window};

/// What a run was started with, kept in the journal so that `resume` needs nothing else.
/// Never holds a secret.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Inputs {
    inventory: Option<PathBuf>,
    playbook: Option<PathBuf>,
    sets: Vec<String>,
    window: Option<String>,
    window_policy_continue: bool,
    yes: bool,
    strict: bool,
    max_per_group: Option<u32>,
    events: PathBuf,
    simulate: bool,
    time_scale: f64,
    sim_seed: u64,
    /// The inventory the simulated fleet was built from (its log refuses any other).
    sim_inventory: Option<String>,
    #[serde(default)]
    sim_faults: Vec<String>,
    #[serde(default)]
    conn: Conn,
    /// `medic demo`: its manual steps are approved automatically (a resume of it too).
    #[serde(default)]
    demo: bool,
}

/// Where the connection settings are; never the secrets themselves.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Conn {
    known_hosts: Option<PathBuf>,
    accept_new_host_keys: bool,
    ssh_keys: Vec<PathBuf>,
    ssh_passphrase_file: Option<PathBuf>,
    dsm: Option<String>,
    dsm_ca: Option<PathBuf>,
    pub(crate) dsm_api_key_file: Option<PathBuf>,
    #[serde(default)]
    linux_agent_dir: Option<String>,
    #[serde(default)]
    linux_package_dir: Option<String>,
    #[serde(default)]
    allow_unverified_commands: bool,
    #[serde(default)]
    poll_interval_s: Option<f64>,
    #[serde(default)]
    become_method: Option<String>,
    #[serde(default)]
    sudo_password_file: Option<PathBuf>,
    #[serde(default)]
    agent_password_file: Option<PathBuf>,
}

impl From<&crate::args::ConnArgs> for Conn {
    fn from(a: &crate::args::ConnArgs) -> Self {
        Conn {
            known_hosts: a.known_hosts.as_deref().map(abs),
            accept_new_host_keys: a.accept_new_host_keys,
            ssh_keys: a.ssh_keys.iter().map(|k| abs(k)).collect(),
            ssh_passphrase_file: a.ssh_passphrase_file.as_deref().map(abs),
            dsm: a.dsm.clone(),
            dsm_ca: a.dsm_ca.as_deref().map(abs),
            dsm_api_key_file: a.dsm_api_key_file.as_deref().map(abs),
            linux_agent_dir: a.linux_agent_dir.clone(),
            linux_package_dir: a.linux_package_dir.clone(),
            allow_unverified_commands: a.allow_unverified_commands,
            poll_interval_s: a.poll_interval,
            become_method: a.become_method.clone(),
            sudo_password_file: a.sudo_password_file.as_deref().map(abs),
            agent_password_file: a.agent_password_file.as_deref().map(abs),
        }
    }
}

impl Conn {
    /// `--poll-interval`, checked.
    pub(crate) fn poll_interval(&self) -> Result<Option<Duration>, Failure> {
        match self.poll_interval_s {
            None => Ok(None),
            Some(s) if s.is_finite() && s > 0.0 && s <= 3600.0 => {
                Ok(Some(Duration::from_secs_f64(s)))
            }
            Some(s) => Err(bad(
                "--poll-interval",
                format!("`{s}` is not a usable poll interval"),
                "pass a number of seconds above 0 and at most 3600, e.g. 10 or 0.5",
            )),
        }
    }
}

/// One runtime for the process: drivers spawn their tasks on it when they are built.
pub(crate) fn runtime() -> Result<&'static tokio::runtime::Runtime, Failure> {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(rt) = RT.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| internal(format!("cannot start the runtime: {e}")))?;
    Ok(RT.get_or_init(|| rt))
}

fn dsm_client_with(
    url: &str,
    ca: Option<&Path>,
    key_file: Option<&Path>,
    adjust: impl FnOnce(&mut medic_drivers::DsmConfig),
) -> Result<medic_drivers::DsmClient, Failure> {
    use medic_drivers::dsm::load_api_key;
    let key = load_api_key(key_file).map_err(|e| {
        bad(
            "--dsm-api-key-file",
            e.to_string(),
            "set MEDIC_DSM_API_KEY or pass --dsm-api-key-file FILE",
        )
    })?;
    let mut cfg = medic_drivers::DsmConfig::new(url, key).map_err(|e| {
        bad(
            "--dsm",
            e.to_string(),
            "pass the Manager's URL, e.g. https://dsm01:4119",
        )
    })?;
    if let Some(ca) = ca {
        cfg.ca_pem = Some(std::fs::read(ca).map_err(|e| {
            bad(
                &ca.display().to_string(),
                format!("cannot read {}: {e}", ca.display()),
                "pass a PEM CA bundle",
            )
        })?);
    }
    adjust(&mut cfg);
    medic_drivers::DsmClient::new(cfg)
        .map_err(|e| bad("--dsm", e.to_string(), "check the URL and the CA bundle"))
}

const INPUTS: &str = "inputs";
/// The journal's record of the pre-flight of a real run: `passed: ...` or
/// `skipped (--skip-preflight)`.
pub(crate) const PREFLIGHT: &str = "preflight";

pub(crate) fn bad(file: &str, msg: impl Into<String>, help: &str) -> Failure {
    let f = SourceFile::new(file, "");
    Failure::BadInput(Problems(vec![
        Problem::new(&f, None, "medic::run::input", msg).help(help),
    ]))
}

pub(crate) fn internal(msg: impl Into<String>) -> Failure {
    Failure::Internal(msg.into())
}

fn run_id() -> String {
    let now = jiff::Timestamp::now();
    let t = now.strftime("%Y%m%dT%H%M%SZ").to_string();
    format!("{t}-{:04x}", std::process::id() & 0xffff)
}

fn abs(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn sim_state_path(journal: &Path) -> PathBuf {
    let mut s = journal.as_os_str().to_owned();
    s.push(".sim.log");
    PathBuf::from(s)
}

/// The simulated world follows the plan's fixed builds, so a rehearsal fails where the
/// real fleet would.
fn sim_config(plan: &Plan, seed: u64, faults: &[String]) -> Result<SimConfig, Failure> {
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
fn check_fault_target(plan: &Plan, spec: &str, fault: &medic_sim::Fault) -> Result<(), Failure> {
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
fn drivers_for(
    plan: &Plan,
    inputs: &Inputs,
    journal: Option<&Path>,
    loaded: Option<Inventory>,
) -> Result<Drivers, Failure> {
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
                .map_err(Failure::BadInput)?,
        };
        let fleet = SimFleet::open(
            &inv,
            sim_config(plan, inputs.sim_seed, &inputs.sim_faults)?,
            journal.map(sim_state_path).as_deref(),
        )
        .map_err(|e| internal(format!("cannot open the simulated fleet: {e}")))?;
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

/// The `ssh` driver as the connection settings say (secrets from their files or the
/// environment).
pub(crate) fn ssh_driver(
    c: &Conn,
    poll: Option<Duration>,
    events: medic_exec::DriverEvents,
) -> Result<medic_drivers::SshDriver, Failure> {
    let mut cfg = ssh_config(c, poll)?;
    cfg.host_key_events = Some(medic_drivers::ssh::HostKeyEvents::new(events));
    medic_drivers::SshDriver::new(cfg)
        .map_err(|e| bad("ssh", e.to_string(), "check the SSH settings"))
}

/// The `ssh` driver's configuration from the connection settings.
pub(crate) fn ssh_config(
    c: &Conn,
    poll: Option<Duration>,
) -> Result<medic_drivers::SshConfig, Failure> {
    let mut cfg = medic_drivers::SshConfig::new();
    cfg.known_hosts = c.known_hosts.clone();
    cfg.accept_new_host_keys = c.accept_new_host_keys;
    if !c.ssh_keys.is_empty() {
        cfg.identity_files = c.ssh_keys.clone();
    }
    if let Some(d) = &c.linux_agent_dir {
        cfg.linux.agent_dir = d.clone();
    }
    if let Some(d) = &c.linux_package_dir {
        cfg.linux.package_dir = d.clone();
    }
    cfg.allow_unverified_commands = c.allow_unverified_commands;
    if let Some(p) = poll {
        cfg.poll_interval = p;
    }
    cfg.passphrase = match &c.ssh_passphrase_file {
        Some(f) => Some(medic_drivers::ssh::secret_from_file(f).map_err(|e| {
            bad(
                &f.display().to_string(),
                e.to_string(),
                "pass a readable file",
            )
        })?),
        None => medic_drivers::ssh::secret_from_env("MEDIC_SSH_PASSPHRASE").ok(),
    };
    ssh_privileges(&mut cfg, c)?;
    Ok(cfg)
}

/// The Manager's URL: `--dsm`, else the inventory's Manager address on port 4119.
pub(crate) fn manager_url(plan: &Plan, c: &Conn) -> String {
    match &c.dsm {
        Some(u) => u.clone(),
        None => {
            let m = plan
                .hosts()
                .iter()
                .find(|h| h.role == "manager")
                .map(|h| h.address.clone())
                .unwrap_or_default();
            format!("https://{m}:4119/api")
        }
    }
}

/// The Manager API client as the connection settings say.
pub(crate) fn manager_client(plan: &Plan, c: &Conn) -> Result<medic_drivers::DsmClient, Failure> {
    manager_client_with(plan, c, |_| {})
}

/// [`manager_client`], with its configuration adjusted (timeouts, retries).
pub(crate) fn manager_client_with(
    plan: &Plan,
    c: &Conn,
    adjust: impl FnOnce(&mut medic_drivers::DsmConfig),
) -> Result<medic_drivers::DsmClient, Failure> {
    dsm_client_with(
        &manager_url(plan, c),
        c.dsm_ca.as_deref(),
        c.dsm_api_key_file.as_deref(),
        adjust,
    )
}

/// `--become`, and the sudo and agent passwords: each from its file when one was given,
/// else from its environment variable; never from the command line.
fn ssh_privileges(cfg: &mut medic_drivers::SshConfig, c: &Conn) -> Result<(), Failure> {
    if let Some(b) = c.become_method.as_deref() {
        cfg.r#become = medic_model::Become::parse(b).ok_or_else(|| {
            bad(
                "--become",
                format!("unknown method `{b}`"),
                "use --become sudo or --become none",
            )
        })?;
    }
    let secret = |file: &Option<PathBuf>, env: &str| match file {
        Some(f) => medic_drivers::ssh::secret_from_file(f)
            .map(Some)
            .map_err(|e| {
                bad(
                    &f.display().to_string(),
                    e.to_string(),
                    "pass a readable file (its first line is the password)",
                )
            }),
        None => Ok(medic_drivers::ssh::secret_from_env(env).ok()),
    };
    cfg.sudo_password = secret(&c.sudo_password_file, "MEDIC_SUDO_PASSWORD")?;
    cfg.agent_password = secret(&c.agent_password_file, "MEDIC_AGENT_PASSWORD")?;
    Ok(())
}

fn options(
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

pub(crate) fn show_bars(p: Progress) -> bool {
    match p {
        Progress::Always => true,
        Progress::Never => false,
        Progress::Auto => std::io::stderr().is_terminal(),
    }
}

pub(crate) fn apply(a: &ApplyArgs) -> Result<u8, Failure> {
    // clap's `requires = "plan"` is not enforced when --playbook (which --plan conflicts
    // with) is given: the key would be ignored and a fresh, unverified plan would run.
    if a.verify_key.is_some() && a.plan.is_none() {
        return Err(bad(
            "--verify-key",
            "--verify-key checks the signature of a saved plan, and no --plan was given",
            "pass the signed plan with --plan PLAN.json (without --playbook), or drop --verify-key",
        ));
    }
    // A flag's value is checked whatever the run: a rehearsal that does not use it would
    // otherwise accept a value the help calls invalid, and the real run would refuse it.
    if let Some(s) = a.run.conn.poll_interval {
        Conn {
            poll_interval_s: Some(s),
            ..Conn::default()
        }
        .poll_interval()?;
    }
    if a.retry_failed && a.run.journal.as_deref().is_some_and(Path::exists) {
        // A retry runs the journal's own plan with its recorded inputs: a new plan, inventory,
        // playbook, parameter or run setting would be ignored, silently.
        let given = [
            ("--plan", a.plan.is_some()),
            ("--inventory", a.inventory.is_some()),
            ("--playbook", a.playbook.is_some()),
            ("--set", !a.sets.is_empty()),
            ("--simulate", a.sim.simulate),
            ("--strict", a.run.strict),
            ("--max-per-group", a.run.max_per_group.is_some()),
        ];
        let ignored: Vec<&str> = given.iter().filter(|g| g.1).map(|g| g.0).collect();
        if !ignored.is_empty() {
            return Err(bad(
                "--retry-failed",
                format!(
                    "a retry runs the journal's own plan and inputs; {} cannot change them",
                    ignored.join(", ")
                ),
                "run `medic apply --retry-failed --journal FILE` without them, or start a new run (with a new --journal) for new inputs",
            ));
        }
        parse_window(a.run.window.as_deref())?;
    }
    if a.run.journal.as_deref().is_some_and(Path::exists) && a.retry_failed {
        return resume_journal(
            a.run.journal.as_deref().unwrap_or(Path::new("")),
            a.run.events.clone(),
            a.run.yes,
            a.run.progress,
            true,
            a.run.window.as_deref(),
        );
    }
    let window = parse_window(a.run.window.as_deref())?;
    crate::refuse_past_window(window.as_ref())?;
    for (flag, out) in [("--events", &a.run.events), ("--journal", &a.run.journal)] {
        if let Some(out) = out {
            let mut inputs = vec![
                ("--inventory", a.inventory.as_deref()),
                ("--playbook", a.playbook.as_deref()),
                ("--plan", a.plan.as_deref()),
                ("--verify-key", a.verify_key.as_deref()),
            ];
            inputs.extend(crate::files::conn_files(&a.run.conn));
            crate::files::refuse_overwriting_inputs(flag, out, &inputs)?;
        }
    }
    let (plan, inv_text) = match (&a.plan, &a.playbook, &a.inventory) {
        (Some(p), _, inv) => {
            let plan = crate::sign::read_plan(p, a.verify_key.as_deref())?;
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
            let (i, p, pb_text, inv_text) = load_files(inv, pb, &a.sets)?;
            (
                make_plan(&i, &p, &pb_text, window, (inv, &inv_text))?,
                Some(inv_text),
            )
        }
        _ => {
            return Err(bad(
                "apply",
                "nothing to apply",
                "pass --plan PLAN.json, or --inventory INV --playbook PB",
            ));
        }
    };
    if a.sim.simulate && inv_text.is_none() {
        return Err(bad(
            "--simulate",
            "a rehearsal builds its simulated fleet from the inventory",
            "pass --inventory INV as well",
        ));
    }
    if !a.sim.simulate {
        refuse_example_values(&plan)?;
    }
    // A real run checks that it can run before its journal exists (`medic preflight`).
    let preflight = if a.sim.simulate {
        None
    } else if a.skip_preflight {
        Some(crate::preflight::SKIPPED.to_owned())
    } else {
        let conn = Conn::from(&a.run.conn);
        Some(crate::preflight::before_apply(
            &plan,
            inv_text.as_deref(),
            &conn,
            a.run.progress,
        )?)
    };
    let id = run_id();
    let journal_path = a.run.journal.clone().unwrap_or_else(|| {
        PathBuf::from(".medic/runs")
            .join(&id)
            .join("journal.sqlite")
    });
    if let Some(ev) = &a.run.events {
        crate::files::check_events(ev, &journal_path)?;
    }
    let events = a
        .run
        .events
        .clone()
        .unwrap_or_else(|| events_beside(&journal_path, &id));
    let inputs = Inputs {
        inventory: a.inventory.as_deref().map(abs),
        playbook: a.playbook.as_deref().map(abs),
        sets: a.sets.clone(),
        window: a.run.window.clone(),
        window_policy_continue: a.run.window_policy == WindowPolicyArg::Continue,
        yes: a.run.yes,
        strict: a.run.strict,
        max_per_group: a.run.max_per_group,
        events: abs_future(&events),
        simulate: a.sim.simulate,
        time_scale: a.sim.time_scale,
        sim_seed: a.sim.sim_seed,
        sim_inventory: if a.sim.simulate { inv_text } else { None },
        sim_faults: a.sim.sim_faults.clone(),
        conn: Conn::from(&a.run.conn),
        demo: false,
    };
    start_new(
        plan,
        inputs,
        &journal_path,
        id,
        window,
        a.run.progress,
        preflight.as_deref(),
    )
}

/// A real run never starts on the playbook's example values (the advisory's build numbers
/// are the operator's to confirm): each one is named with the `--set` that replaces it.
/// Checked before anything is written.
fn refuse_example_values(plan: &Plan) -> Result<(), Failure> {
    let examples = plan.example_params();
    if examples.is_empty() {
        return Ok(());
    }
    let file = SourceFile::new("--set", "");
    Err(Failure::BadInput(Problems(
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
fn events_beside(journal: &Path, run_id: &str) -> PathBuf {
    journal.with_file_name(format!("{run_id}.events.jsonl"))
}

/// An absolute path for a file that may not exist yet.
fn abs_future(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    std::env::current_dir()
        .map(|d| d.join(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

/// A new run from its sealed plan. `preflight`: what the pre-flight said (a real run), recorded in the
/// journal's meta for `medic status`.
fn start_new(
    plan: Plan,
    inputs: Inputs,
    journal_path: &Path,
    id: String,
    window: Option<Window>,
    progress: Progress,
    preflight: Option<&str>,
) -> Result<u8, Failure> {
    // Every check before anything is written: the inputs can be recorded, the journal's
    // path, the simulator's state file, the drivers' settings (a rehearsal's fleet is built
    // in memory first).
    let inputs_json = serde_json::to_string(&inputs).map_err(|e| unrecordable(&inputs, &e))?;
    crate::files::check_new_journal(journal_path)?;
    if inputs.simulate {
        crate::files::check_no_stale_sim_state(&sim_state_path(journal_path))?;
    }
    let drivers = drivers_for(&plan, &inputs, None, None)?;
    if let Some(dir) = journal_path.parent().filter(|d| !d.as_os_str().is_empty()) {
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
    let journal = medic_exec::create_journal(journal_path, &plan, &meta).map_err(|e| match e {
        // Nothing was run and no journal is left behind, so there is nothing to resume.
        JournalError::DiskFull { .. } | JournalError::CannotWrite { .. } => internal(format!(
            "cannot create journal {}: the disk is full or refused a write; nothing was run: free space and start the run again",
            journal_path.display()
        )),
        e => crate::files::journal_failure(journal_path, &e),
    })?;
    // The rehearsal's fleet keeps its state beside the journal, which now exists.
    let drivers = if inputs.simulate {
        drivers_for(&plan, &inputs, Some(journal_path), None)?
    } else {
        drivers
    };
    let opts = options(&inputs, id, window, false);
    execute(
        plan,
        drivers,
        journal,
        Prior::default(),
        opts,
        &inputs.events,
        progress,
        &inputs,
    )
}

/// The journal records the inputs' paths as JSON text, so that `resume` finds them again:
/// a path that is not UTF-8 cannot be recorded, and is refused naming it.
fn unrecordable(inputs: &Inputs, e: &serde_json::Error) -> Failure {
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

pub(crate) fn resume(a: &ResumeArgs) -> Result<u8, Failure> {
    resume_journal(
        &a.journal,
        a.events.clone(),
        a.yes,
        a.progress,
        false,
        a.window.as_deref(),
    )
}

/// Goes on with the run of `path`; `new_window` replaces the recorded change window (a run
/// stopped at the end of its window goes on in the next one; the plan stays the same).
fn resume_journal(
    path: &Path,
    events: Option<PathBuf>,
    yes: bool,
    progress: Progress,
    retry_failed: bool,
    new_window: Option<&str>,
) -> Result<u8, Failure> {
    let name = path.display().to_string();
    // Checked before anything is read or written.
    let new = parse_window(new_window)?;
    crate::files::check_existing_journal(path, true)?;
    if let Some(ev) = &events {
        crate::files::check_events(ev, path)?;
    }
    let reader = JournalReader::open(path).map_err(|e| crate::files::journal_failure(path, &e))?;
    let get = |k: &str| reader.meta(k).map_err(|e| internal(e.to_string()));
    let inputs: Result<Inputs, _> = serde_json::from_str(&get(INPUTS)?.unwrap_or_default());
    // The inputs of the drift check, when they are still on disk.
    let on_disk = inputs
        .as_ref()
        .ok()
        .and_then(|i| match (&i.inventory, &i.playbook) {
            (Some(inv), Some(pb)) if inv.exists() && pb.exists() => {
                Some((inv.clone(), pb.clone(), i.sets.clone()))
            }
            _ => None,
        });
    // Three independent reads at the same time: the plan, the state of every step, and
    // today's inputs with the fingerprint a plan of them would have (no planning).
    let (read, today) = medic_model::par::join(
        || medic_exec::read_for_resume(path),
        || {
            on_disk.map(|(inv, pb, sets)| {
                let (i, p, pb_text, inv_text) = load_files(&inv, &pb, &sets)?;
                let (fingerprint, digests) = medic_plan::fingerprint_inputs(&i, &p, &pb_text);
                Ok::<_, Failure>((inv, fingerprint, digests, i, inv_text))
            })
        },
    );
    let (plan, prior) = read.map_err(|e| match e {
        medic_exec::ReadError::NoPlan => bad(
            &name,
            "the journal holds no plan",
            "was it written by `medic apply`?",
        ),
        medic_exec::ReadError::Journal(e) => crate::files::journal_failure(path, &e),
        e => bad(
            &name,
            format!("the journal {name} is damaged: {e}"),
            "restore it from a backup or a copy; medic changed nothing",
        ),
    })?;
    let mut inputs = inputs.map_err(|e| {
        bad(
            &name,
            format!("the journal's inputs cannot be read: {e}"),
            "resume it with the medic that started it",
        )
    })?;
    let id = get(meta_keys::RUN_ID)?.unwrap_or_else(run_id);
    let old_window = inputs.window.clone();
    if let Some(w) = new_window {
        inputs.window = Some(w.to_owned());
    }
    let window = match new {
        Some(w) => Some(w),
        None => parse_window(inputs.window.as_deref())?,
    };

    // Refuse a plan whose inputs changed since the run started, naming the hosts.
    let mut loaded = None;
    if let Some(today) = today {
        let (inv, now, digests, i, inv_text) = today?;
        if now != plan.fingerprint() {
            let drifted = plan.drifted_hosts_from(&digests);
            let hosts = if drifted.is_empty() {
                "none (the playbook or parameters changed)".to_owned()
            } else {
                drifted.join(", ")
            };
            return Err(bad(
                &inv.display().to_string(),
                format!(
                    "the inputs changed since this run started (plan fingerprint differs); hosts that drifted: {hosts}"
                ),
                "restore the inputs, or start a new run with `medic apply` for the changed fleet",
            ));
        }
        // A rehearsal's fleet is built from the inventory it recorded: when that is the text
        // just loaded, it is not loaded twice.
        if inputs.sim_inventory.as_deref() == Some(inv_text.as_str()) {
            loaded = Some(i);
        }
    }
    drop(reader);
    if yes {
        inputs.yes = true;
    }
    let events = events.unwrap_or_else(|| inputs.events.clone());
    let drivers = drivers_for(&plan, &inputs, Some(path), loaded)?;
    let journal =
        Journal::open_existing(path).map_err(|e| crate::files::journal_failure(path, &e))?;
    if new_window.is_some() && inputs.window != old_window {
        record_window(&journal, &inputs, old_window.as_deref())?;
    }
    let opts = options(&inputs, id, window, retry_failed);
    execute(
        plan, drivers, journal, prior, opts, &events, progress, &inputs,
    )
}

/// A new change window goes into the journal's inputs (so a later `resume` keeps it) and
/// its history, durably, before the run goes on in it.
fn record_window(journal: &Journal, inputs: &Inputs, old: Option<&str>) -> Result<(), Failure> {
    let json = serde_json::to_string(inputs).map_err(|e| internal(e.to_string()))?;
    let new = inputs.window.as_deref().unwrap_or("none");
    let recorded = journal
        .append(medic_journal::Record::Event {
            step: None,
            kind: "window.changed".to_owned(),
            detail: Some(format!("from {} to {new}", old.unwrap_or("none"))),
        })
        .and_then(|()| {
            journal.append(medic_journal::Record::Meta {
                key: INPUTS.to_owned(),
                value: json,
            })
        });
    let rt = runtime()?;
    recorded
        .and_then(|()| rt.block_on(journal.flush()))
        .map_err(|e| internal(format!("cannot record the new window in the journal: {e}")))?;
    eprintln!("change window: {new} (was {})", old.unwrap_or("none"));
    Ok(())
}

#[expect(
    clippy::too_many_arguments,
    reason = "the pieces of a run meet only here"
)]
fn execute(
    plan: Plan,
    drivers: Drivers,
    journal: Journal,
    prior: Prior,
    opts: RunOptions,
    events: &Path,
    progress: Progress,
    inputs: &Inputs,
) -> Result<u8, Failure> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| internal(format!("cannot start the runtime: {e}")))?;
    let terminal = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let operator = if inputs.demo {
        Operator::Demo
    } else if terminal {
        Operator::Terminal
    } else {
        Operator::Elsewhere
    };
    let mut reporters: Vec<Box<dyn Reporter>> = vec![Box::new(crate::reporters::Progress::new(
        show_bars(progress),
        journal.path().to_path_buf(),
        operator,
        inputs.simulate,
        !inputs.yes,
        plan.size(),
    ))];
    crate::status::record_outcome(
        &journal,
        &crate::status::Outcome {
            state: "running".to_owned(),
            ..Default::default()
        },
    );
    match JsonLines::create(events, &opts.run_id) {
        Ok(j) => reporters.push(Box::new(j)),
        Err(e) => eprintln!("warning: cannot write events to {}: {e}", events.display()),
    }
    let mut fan = Fanout(reporters);
    let control = Control::default();
    let plan = Arc::new(plan);
    crate::out::stop_on_close(&control);
    let report = rt.block_on(async {
        tokio::spawn(crate::out::watch_streams());
        let c = control.clone();
        tokio::spawn(async move {
            // First interrupt drains, the second aborts in-flight steps.
            if tokio::signal::ctrl_c().await.is_ok() {
                c.cancel.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    c.abort.cancel();
                }
            }
        });
        medic_exec::execute(
            plan.clone(),
            &drivers,
            &journal,
            &prior,
            &opts,
            control,
            &mut fan,
        )
        .await
    });
    drop(fan);
    let path = journal.path().to_path_buf();
    let journal_failed = matches!(report.stop, Some(StopReason::JournalFailed { .. }));
    let next = crate::status::next_step(report.exit, report.stop.as_ref(), &path);
    if !journal_failed {
        let state = match report.exit {
            RunExit::Ok => "finished",
            RunExit::Failed => "failed",
            RunExit::Stopped => "stopped",
        };
        crate::status::record_outcome(
            &journal,
            &crate::status::Outcome {
                state: state.to_owned(),
                reason: report.stop.as_ref().map(ToString::to_string),
                next: next.clone(),
            },
        );
    }
    // After a journal failure the close reports the same failure again; the stop reason
    // already said it.
    if let Err(e) = journal.close()
        && !journal_failed
    {
        eprintln!("error: the journal could not be closed cleanly: {e}");
    }
    eprint!(
        "{}",
        summary_text(&report.summary, report.stop.as_ref(), plan.skipped())
    );
    eprintln!("  journal: {}", path.display());
    eprintln!("  events:  {}", events.display());
    if let Some(next) = &next
        && !journal_failed
    {
        eprintln!("  next: {next}");
    }
    if journal_failed {
        // Not the plain "stopped" code: nothing can go on until someone frees space or
        // fixes the disk. Every step recorded before the failure is durable, and steps in
        // flight are re-probed by `resume`, so no side effect is repeated.
        eprintln!(
            "error: the journal {} cannot be written; free space on its disk (or fix the disk), then run `medic resume --journal {}`",
            path.display(),
            path.display()
        );
        return Ok(exit_codes::INTERNAL);
    }
    // The process ends after this: the plan and the journal's view are plain data (a million
    // steps are a few hundred MiB in small allocations, about 0.2 s to free one by one), so
    // they are left to the exit. The drivers and the journal are dropped as usual.
    std::mem::forget(plan);
    std::mem::forget(prior);
    Ok(match report.exit {
        RunExit::Ok => exit_codes::OK,
        RunExit::Failed => exit_codes::RUN_FAILED,
        RunExit::Stopped => exit_codes::STOPPED,
    })
}

pub(crate) const DEMO_PLAYBOOK: &str =
    include_str!("../../../playbooks/ds-activeupdate-cert-2023.yaml");

/// The demo's Manager build: older than the playbook's `manager_min_build`, so that the
/// demo shows the Manager upgrade, a manual step (approved automatically in the demo).
const DEMO_MANAGER_BUILD: &str = "20.0.400";

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

pub(crate) fn demo(a: &DemoArgs) -> Result<u8, Failure> {
    let id = run_id();
    let dir = a
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(".medic").join(format!("demo-{id}")));
    std::fs::create_dir_all(&dir)
        .map_err(|e| internal(format!("cannot create {}: {e}", dir.display())))?;
    let inv_path = dir.join("inventory.yaml");
    let pb_path = dir.join("playbook.yaml");
    std::fs::write(&inv_path, demo_inventory()).map_err(|e| internal(e.to_string()))?;
    std::fs::write(&pb_path, DEMO_PLAYBOOK).map_err(|e| internal(e.to_string()))?;
    let (i, p, pb_text, inv_text): (Inventory, _, _, _) = load_files(&inv_path, &pb_path, &[])?;
    let plan = make_plan(&i, &p, &pb_text, None, (&inv_path, &inv_text))?;
    eprintln!(
        "medic demo: the Deep Security remediation on a simulated fleet of {} hosts (3 sites, one air-gapped), {}, estimated {} of real work, replayed {}x faster",
        i.hosts.len(),
        plan.size(),
        medic_model::format_duration(plan.estimate().makespan_s),
        a.time_scale
    );
    let journal = dir.join("journal.sqlite");
    let inputs = Inputs {
        inventory: Some(abs(&inv_path)),
        playbook: Some(abs(&pb_path)),
        sets: Vec::new(),
        window: None,
        window_policy_continue: false,
        yes: true,
        strict: false,
        max_per_group: None,
        events: abs_future(&events_beside(&journal, &id)),
        simulate: true,
        time_scale: a.time_scale,
        sim_seed: 2023,
        sim_inventory: Some(inv_text),
        sim_faults: Vec::new(),
        conn: Conn::default(),
        demo: true,
    };
    start_new(plan, inputs, &journal, id, None, a.progress, None)
}

pub(crate) fn approve(a: &ApproveArgs) -> Result<u8, Failure> {
    let by =
        a.by.clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "operator".to_owned());
    let name = a.journal.display().to_string();
    // The same checks as `status` and `resume`: a missing, damaged or read-only file, or
    // one that is not a journal, is named for what it is.
    crate::files::check_existing_journal(&a.journal, true)?;
    let reader = JournalReader::open(&a.journal)
        .map_err(|e| crate::files::journal_failure(&a.journal, &e))?;
    // Only what the run can wait for is recorded: a gate that asks for an approval, or a
    // manual step. Anything else would be a typo that looks approved.
    let plan = medic_exec::read_plan(&reader).map_err(|e| {
        bad(
            &name,
            e.to_string(),
            "pass the journal of a run started by `medic apply`",
        )
    })?;
    let approvable: Vec<&str> = plan
        .steps()
        .iter()
        .filter(|s| match &s.kind {
            medic_plan::StepKind::Gate(g) => g.approval,
            medic_plan::StepKind::Action => &*s.driver == medic_exec::MANUAL_DRIVER,
            _ => false,
        })
        .map(|s| s.id.as_str())
        .collect();
    if !approvable.contains(&a.gate.as_str()) {
        let list = if approvable.is_empty() {
            "this run has no gate that asks for an approval and no manual step".to_owned()
        } else {
            let shown: Vec<&str> = approvable.iter().take(20).copied().collect();
            let more = approvable.len().saturating_sub(shown.len());
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            format!("what can be approved: {}{more}", shown.join(", "))
        };
        return Err(bad(
            "approve",
            format!(
                "`{}` is neither a gate nor a manual step of this run; {list}",
                a.gate
            ),
            "`medic status --journal FILE` lists what the run waits for",
        ));
    }
    crate::files::check_existing_journal(&a.journal, true)?;
    medic_journal::approve(&a.journal, &a.gate, &by).map_err(|e| {
        bad(
            &a.journal.display().to_string(),
            e.to_string(),
            "pass the journal of the run",
        )
    })?;
    println!("approved {} as {by}", a.gate);
    Ok(exit_codes::OK)
}

pub(crate) fn inventory_import(a: &crate::args::ImportArgs) -> Result<u8, Failure> {
    if let Some(out) = &a.out {
        crate::files::refuse_overwriting_inputs(
            "--out",
            out,
            &[
                ("--dsm-ca", a.dsm_ca.as_deref()),
                ("--dsm-api-key-file", a.dsm_api_key_file.as_deref()),
                ("--ansible", a.ansible.as_deref()),
            ],
        )?;
        crate::files::check_output("--out", out)?;
    }
    // Bad Ansible input is refused before the Manager is asked anything.
    let ansible = a.ansible.as_deref().map(crate::ansible::read).transpose()?;
    let rt = runtime()?;
    let _g = rt.enter();
    let timeout = Duration::from_secs_f64(a.dsm_timeout);
    let client = dsm_client_with(
        &a.dsm,
        a.dsm_ca.as_deref(),
        a.dsm_api_key_file.as_deref(),
        |cfg| {
            cfg.connect_timeout = timeout;
            cfg.read_timeout = timeout;
            // One retry: a Manager that does not answer fails the import in about two
            // timeouts, not after eight backoffs. A 429 has its own budget.
            cfg.retry.max_retries = cfg.retry.max_retries.min(1);
        },
    )?;
    let mut opts = medic_drivers::dsm::ImportOptions::for_client(&client);
    if let Some(n) = &a.manager_name {
        opts.manager_name = n.clone();
    }
    for h in &a.relay_groups {
        opts.relay_groups.push(h.parse().map_err(
            |e: medic_drivers::dsm::RelayGroupHintError| {
                bad(
                    "--relay-group",
                    e.to_string(),
                    "write ID=NAME[,offline][,bundle_source=HOST]",
                )
            },
        )?);
    }
    let url = client.base_url().to_owned();
    eprintln!(
        "importing from {url} (each request times out after {} s)",
        a.dsm_timeout
    );
    let imported = rt
        .block_on(async {
            let ticker = tokio::spawn({
                let url = url.clone();
                let c = client.clone();
                async move {
                    let start = std::time::Instant::now();
                    loop {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        eprintln!(
                            "  still reading from {url}: {} s, {} requests sent",
                            start.elapsed().as_secs(),
                            c.requests_sent()
                        );
                    }
                }
            });
            let r = medic_drivers::import_inventory(&client, &opts).await;
            ticker.abort();
            r
        })
        .map_err(|e| internal(format!("the import from {url} failed: {e}")))?;
    let text = match (&ansible, a.ansible.as_deref()) {
        (Some(inv), Some(path)) => crate::ansible::merged(&imported, inv, path),
        _ => medic_config::write_inventory(&imported.inventory, &imported.comments),
    };
    // Never write an inventory that medic itself would refuse.
    medic_config::load_inventory("imported inventory", &text).map_err(Failure::BadInput)?;
    crate::write_out(a.out.as_deref(), &text)?;
    if let Some(o) = &a.out {
        eprintln!("wrote {}", o.display());
    }
    Ok(exit_codes::OK)
}
