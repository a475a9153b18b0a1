//! A run's pieces before the executor takes them: what it was started with (recorded in
//! the journal), the connection settings, the drivers, a new run's journal and the opening
//! of an existing one for `resume`. The run itself (reporters, signals, summary) is the
//! caller's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use medic_config::{Problem, Problems, SourceFile};
use medic_drivers::{ManualDriver, SimDriver};
use medic_exec::{Clock, Drivers, Prior, RunOptions, WindowPolicy};
use medic_journal::{Journal, JournalError, JournalReader, meta_keys};
use medic_model::Inventory;
use medic_plan::{Plan, Window};
use medic_sim::{SimConfig, SimFleet};
use serde::{Deserialize, Serialize};

use crate::load::parse_window;
use crate::{Error as Failure, bad, internal};

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

/// Where the connection settings are; never the secrets themselves.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Conn {
    pub known_hosts: Option<PathBuf>,
    pub accept_new_host_keys: bool,
    pub ssh_keys: Vec<PathBuf>,
    pub ssh_passphrase_file: Option<PathBuf>,
    pub dsm: Option<String>,
    pub dsm_ca: Option<PathBuf>,
    pub dsm_api_key_file: Option<PathBuf>,
    #[serde(default)]
    pub linux_agent_dir: Option<String>,
    #[serde(default)]
    pub linux_package_dir: Option<String>,
    #[serde(default)]
    pub allow_unverified_commands: bool,
    #[serde(default)]
    pub poll_interval_s: Option<f64>,
    #[serde(default)]
    pub become_method: Option<String>,
    #[serde(default)]
    pub sudo_password_file: Option<PathBuf>,
    #[serde(default)]
    pub agent_password_file: Option<PathBuf>,
}

impl Conn {
    /// `--poll-interval`, checked.
    pub fn poll_interval(&self) -> Result<Option<Duration>, Failure> {
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
pub fn runtime() -> Result<&'static tokio::runtime::Runtime, Failure> {
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

pub fn dsm_client_with(
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
        ssh = Some(Arc::new(ssh_driver(&inputs.conn, poll)?));
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
pub fn ssh_driver(c: &Conn, poll: Option<Duration>) -> Result<medic_drivers::SshDriver, Failure> {
    let cfg = ssh_config(c, poll)?;
    medic_drivers::SshDriver::new(cfg)
        .map_err(|e| bad("ssh", e.to_string(), "check the SSH settings"))
}

/// The `ssh` driver's configuration from the connection settings.
pub fn ssh_config(c: &Conn, poll: Option<Duration>) -> Result<medic_drivers::SshConfig, Failure> {
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
pub fn manager_url(plan: &Plan, c: &Conn) -> String {
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
pub fn manager_client(plan: &Plan, c: &Conn) -> Result<medic_drivers::DsmClient, Failure> {
    manager_client_with(plan, c, |_| {})
}

/// [`manager_client`], with its configuration adjusted (timeouts, retries).
pub fn manager_client_with(
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

/// A real run never starts on the playbook's example values (the advisory's build numbers
/// are the operator's to confirm): each one is named with the `--set` that replaces it.
/// Checked before anything is written.
pub fn refuse_example_values(plan: &Plan) -> Result<(), Failure> {
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
    pub journal: Journal,
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
) -> Result<Ready, Failure> {
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

/// Goes on with the run of `path`; `new_window` replaces the recorded change window (a run
/// stopped at the end of its window goes on in the next one; the plan stays the same).
/// `warn` is given the warnings of the inputs reloaded for the drift check.
pub fn resume_journal(
    path: &Path,
    events: Option<PathBuf>,
    yes: bool,
    retry_failed: bool,
    new_window: Option<&str>,
    warn: &(dyn Fn(&Problems) + Sync),
) -> Result<Ready, Failure> {
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
                let l = crate::load::files(&inv, &pb, &sets)?;
                warn(&l.warnings);
                let (i, p, pb_text, inv_text) =
                    (l.inventory, l.playbook, l.playbook_text, l.inventory_text);
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
    let mut window_changed = None;
    if new_window.is_some() && inputs.window != old_window {
        record_window(&journal, &inputs, old_window.as_deref())?;
        window_changed = Some((
            old_window.unwrap_or_else(|| "none".to_owned()),
            inputs.window.clone().unwrap_or_else(|| "none".to_owned()),
        ));
    }
    let opts = options(&inputs, id, window, retry_failed);
    Ok(Ready {
        plan,
        drivers,
        journal,
        prior,
        opts,
        inputs,
        events,
        window_changed,
    })
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
    Ok(())
}
