//! The pre-flight: read-only checks that a plan can run, days before the window (`medic
//! preflight`) and at the start of a real `medic apply`.
//!
//! For every host that has a step over SSH: reachable, host key known (strictly: an unknown
//! key is a finding, never accepted here), the live agent build and Relay role against the
//! inventory, the packages (and on Windows the prerequisites' certificate files) its steps
//! will need, and privilege escalation. From the Manager: its API answers with the key, its
//! build against `manager_min_build`, and the direct-download setting against the
//! inventory. Every check is one [`CheckRow`] (ok, finding, or not checked with the
//! reason); the plan can run when there is no finding.
//!
//! Hosts are checked concurrently, at most [`PreflightOptions::parallel`] at once, each
//! check under [`PreflightOptions::timeout`]. Nothing here changes a host or the Manager.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use medic_exec::{Plan, PlanHost, StepKind};
use medic_model::{AgentBuild, Inventory, ManagerBuild, Platform};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::dsm::{DIRECT_DOWNLOAD_SETTING, DsmClient};
use crate::ssh::{Reachability, SshDriver};

/// One kind of check, in the order rows are listed for a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    /// TCP, SSH handshake, login and a harmless command.
    Reachable,
    /// The host's key is in known_hosts (unknown or changed: a finding).
    HostKey,
    /// The live agent build is the inventory's.
    AgentBuild,
    /// The live Relay role is the inventory's.
    RelayRole,
    /// The agent packages (and Windows prerequisites' files) the steps need are staged.
    Packages,
    /// Privileged commands run as root.
    Privilege,
    /// The Manager's API answers with the API key.
    ManagerApi,
    /// The Manager's build against `manager_min_build`.
    ManagerBuild,
    /// The Manager's direct-download setting against the inventory's.
    DirectDownload,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Reachable => "reachable",
            Check::HostKey => "host-key",
            Check::AgentBuild => "agent-build",
            Check::RelayRole => "relay-role",
            Check::Packages => "packages",
            Check::Privilege => "privilege",
            Check::ManagerApi => "manager-api",
            Check::ManagerBuild => "manager-build",
            Check::DirectDownload => "direct-download",
        }
    }
}

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckStatus {
    Ok,
    /// The plan cannot run as it is.
    Finding,
    /// Not checked (the reason is the row's detail): an earlier check of the host failed,
    /// the check does not apply, or medic cannot tell.
    NotChecked,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Ok => "ok",
            CheckStatus::Finding => "finding",
            CheckStatus::NotChecked => "not checked",
        }
    }
}

/// One row of the pre-flight table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckRow {
    /// The host's (or the Manager's) inventory name.
    pub host: String,
    pub check: Check,
    pub status: CheckStatus,
    /// What was seen, or why it was not checked.
    pub detail: String,
}

/// Every row, hosts in plan order, then the Manager.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreflightReport {
    pub rows: Vec<CheckRow>,
    /// Hosts checked over SSH.
    pub hosts: usize,
}

impl PreflightReport {
    pub fn findings(&self) -> impl Iterator<Item = &CheckRow> {
        self.rows
            .iter()
            .filter(|r| r.status == CheckStatus::Finding)
    }

    /// The plan can run: no finding.
    pub fn can_run(&self) -> bool {
        self.findings().next().is_none()
    }

    /// (ok, findings, not checked).
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |s: CheckStatus| self.rows.iter().filter(|r| r.status == s).count();
        (
            n(CheckStatus::Ok),
            n(CheckStatus::Finding),
            n(CheckStatus::NotChecked),
        )
    }
}

/// How the Manager is reached, as far as the caller could set it up.
#[derive(Clone, Debug)]
pub enum ManagerAccess {
    Client(DsmClient),
    /// The plan talks to the Manager but no client could be made (e.g. no API key): a
    /// finding with this text.
    Unavailable(String),
    /// The plan never talks to the Manager.
    NotNeeded,
}

#[derive(Clone, Copy, Debug)]
pub struct PreflightOptions {
    /// Hosts checked at once.
    pub parallel: usize,
    /// Deadline of each check.
    pub timeout: Duration,
}

impl Default for PreflightOptions {
    fn default() -> Self {
        PreflightOptions {
            parallel: 16,
            timeout: Duration::from_secs(60),
        }
    }
}

/// What a host's steps need, read from the plan.
#[derive(Clone, Debug)]
struct HostJob {
    host: PlanHost,
    /// The inventory's build and Relay flag, when an inventory was given.
    expected: Option<(AgentBuild, bool)>,
    /// The builds its installs (`agent-upgrade`, `reinstall`) go to.
    builds: Vec<AgentBuild>,
    /// It has a `windows-prereq` step.
    prereq: bool,
}

/// The actions that install a package (`args.to` is the build).
const INSTALLS: [&str; 2] = ["agent-upgrade", "reinstall"];

/// The hosts with at least one step over SSH, in plan order, with what their steps need.
fn jobs(plan: &Plan, inv: Option<&Inventory>) -> Vec<HostJob> {
    let mut out: Vec<Option<HostJob>> = vec![None; plan.hosts().len()];
    for s in plan.steps() {
        let (Some(h), StepKind::Action) = (s.host, &s.kind) else {
            continue;
        };
        if &*s.driver != "ssh" {
            continue;
        }
        let host = plan.host(h);
        let job = out[h as usize].get_or_insert_with(|| HostJob {
            host: host.clone(),
            expected: inv
                .and_then(|i| i.host(&host.name))
                .map(|ih| (ih.agent_version, ih.relay)),
            builds: Vec::new(),
            prereq: false,
        });
        if INSTALLS.contains(&&*s.action)
            && let Some(to) = s
                .args
                .iter()
                .find(|(k, _)| k == "to")
                .and_then(|(_, v)| v.parse::<AgentBuild>().ok())
            && !job.builds.contains(&to)
        {
            job.builds.push(to);
        }
        if &*s.action == "windows-prereq" {
            job.prereq = true;
        }
    }
    out.into_iter().flatten().collect()
}

/// The Manager's API row that failed, then its build and setting rows, not checked.
fn unanswered(
    first: CheckRow,
    why: &str,
    r: impl Fn(Check, CheckStatus, String) -> CheckRow,
) -> Vec<CheckRow> {
    vec![
        first,
        r(Check::ManagerBuild, CheckStatus::NotChecked, why.to_owned()),
        r(
            Check::DirectDownload,
            CheckStatus::NotChecked,
            why.to_owned(),
        ),
    ]
}

fn row(host: &str, check: Check, status: CheckStatus, detail: impl Into<String>) -> CheckRow {
    CheckRow {
        host: host.to_owned(),
        check,
        status,
        detail: detail.into(),
    }
}

async fn within<T>(t: Duration, f: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(t, f)
        .await
        .map_err(|_| format!("no answer within {} s", t.as_secs_f64()))
}

/// The rows of one host, in [`Check`] order.
async fn check_host(ssh: Arc<SshDriver>, job: HostJob, t: Duration) -> Vec<CheckRow> {
    use CheckStatus::{Finding, NotChecked, Ok};
    let name = job.host.name.clone();
    let r = |c, s, d: String| row(&name, c, s, d);
    let mut rows = Vec::new();
    let later = [
        Check::AgentBuild,
        Check::RelayRole,
        Check::Packages,
        Check::Privilege,
    ];
    let stop = |rows: &mut Vec<CheckRow>, why: &str| {
        for c in later {
            rows.push(row(&name, c, NotChecked, why));
        }
    };
    let user = job
        .host
        .user
        .clone()
        .or_else(|| ssh.config().default_user.clone())
        .unwrap_or_default();
    let at = format!("{user}@{}:{}", job.host.address, job.host.port);
    match within(t, ssh.check_reachable(&job.host)).await {
        Result::Ok(Reachability::Ok) => {
            rows.push(r(Check::Reachable, Ok, format!("logged in as {at}")));
            rows.push(r(Check::HostKey, Ok, "known".to_owned()));
        }
        Result::Ok(Reachability::HostKey(m)) => {
            rows.push(r(
                Check::Reachable,
                NotChecked,
                "no login: the host key is not trusted".to_owned(),
            ));
            rows.push(r(
                Check::HostKey,
                Finding,
                format!("{m}: check the key with the host's administrator and add it to known_hosts (--known-hosts FILE); the pre-flight never accepts a new key"),
            ));
            stop(&mut rows, "not reached");
            return rows;
        }
        Result::Ok(Reachability::Auth(m)) => {
            rows.push(r(Check::Reachable, Finding, m));
            rows.push(r(Check::HostKey, Ok, "known".to_owned()));
            stop(&mut rows, "not logged in");
            return rows;
        }
        Result::Ok(Reachability::Unreachable(m) | Reachability::Failed(m)) | Err(m) => {
            rows.push(r(Check::Reachable, Finding, m));
            rows.push(r(Check::HostKey, NotChecked, "not reached".to_owned()));
            stop(&mut rows, "not reached");
            return rows;
        }
    }

    match within(t, ssh.live_agent(&job.host)).await.and_then(|x| x) {
        Result::Ok(live) => {
            rows.push(match job.expected {
                None => r(
                    Check::AgentBuild,
                    NotChecked,
                    format!("live build {}; no inventory to compare with", live.build),
                ),
                Some((want, _)) if want == live.build => r(
                    Check::AgentBuild,
                    Ok,
                    format!("{} as in the inventory", live.build),
                ),
                Some((want, _)) => r(
                    Check::AgentBuild,
                    Finding,
                    format!(
                        "drift: the host runs build {}, the inventory says {want}; the plan was made for the inventory's build: correct the inventory (or `medic inventory import`) and plan again",
                        live.build
                    ),
                ),
            });
            rows.push(match (live.relay, job.expected) {
                (None, _) => r(
                    Check::RelayRole,
                    NotChecked,
                    "medic cannot tell the Relay role of a Windows host over SSH".to_owned(),
                ),
                (Some(is), None) => r(
                    Check::RelayRole,
                    NotChecked,
                    format!(
                        "live role {}; no inventory to compare with",
                        role_name(is)
                    ),
                ),
                (Some(is), Some((_, want))) if is == want => r(
                    Check::RelayRole,
                    Ok,
                    format!("{} as in the inventory", role_name(is)),
                ),
                (Some(is), Some((_, want))) => r(
                    Check::RelayRole,
                    Finding,
                    format!(
                        "drift: the host is {} (port 4122 {}), the inventory says {}: correct `relay:` in the inventory and plan again",
                        article(role_name(is)),
                        if is { "listening" } else { "not listening" },
                        article(role_name(want))
                    ),
                ),
            });
        }
        Err(m) => {
            rows.push(r(
                Check::AgentBuild,
                Finding,
                format!("cannot read the agent build: {m}"),
            ));
            rows.push(r(
                Check::RelayRole,
                NotChecked,
                "the agent could not be read".to_owned(),
            ));
        }
    }

    rows.push(packages(&ssh, &job, t).await);

    rows.push(match job.host.platform {
        Some(Platform::Linux) => match within(t, ssh.check_privilege(&job.host)).await {
            Result::Ok(Result::Ok(p)) => r(
                Check::Privilege,
                Ok,
                format!(
                    "privileged commands run as root (become: {})",
                    p.r#become.as_str()
                ),
            ),
            Result::Ok(Err(m)) | Err(m) => r(Check::Privilege, Finding, m),
        },
        _ => r(
            Check::Privilege,
            NotChecked,
            "Windows hosts run commands with the SSH user's rights (an administrator)".to_owned(),
        ),
    });
    rows
}

fn role_name(relay: bool) -> &'static str {
    if relay { "Relay" } else { "Agent" }
}

fn article(role: &str) -> String {
    if role.starts_with(['A', 'E', 'I', 'O', 'U']) {
        format!("an {role}")
    } else {
        format!("a {role}")
    }
}

async fn packages(ssh: &SshDriver, job: &HostJob, t: Duration) -> CheckRow {
    use CheckStatus::{Finding, NotChecked, Ok};
    let name = &job.host.name;
    match job.host.platform {
        Some(Platform::Windows) => {
            if job.builds.is_empty() && !job.prereq {
                return row(name, Check::Packages, NotChecked, "no install step");
            }
            match within(t, ssh.windows_files(&job.host, &job.builds, job.prereq))
                .await
                .and_then(|x| x)
            {
                Result::Ok(w) => {
                    let mut parts = w.packages;
                    parts.extend(w.certificates);
                    parts.extend(w.sha2_update);
                    row(name, Check::Packages, Ok, parts.join(", "))
                }
                Err(m) => row(name, Check::Packages, Finding, m),
            }
        }
        Some(Platform::Linux) => {
            if job.builds.is_empty() {
                return row(name, Check::Packages, NotChecked, "no install step");
            }
            let mut found = Vec::new();
            let mut problems = Vec::new();
            for b in &job.builds {
                match within(t, ssh.package_for(&job.host, *b))
                    .await
                    .and_then(|x| x)
                {
                    Result::Ok(p) => {
                        found.push(format!("{} ({}, from {})", p.file, p.distro, p.from))
                    }
                    Err(m) => problems.push(m),
                }
            }
            if problems.is_empty() {
                row(name, Check::Packages, Ok, found.join(", "))
            } else {
                row(name, Check::Packages, Finding, problems.join("; "))
            }
        }
        None => row(name, Check::Packages, NotChecked, "the Manager"),
    }
}

/// The Manager's rows.
async fn check_manager(
    plan: &Plan,
    inv: Option<&Inventory>,
    access: ManagerAccess,
    t: Duration,
) -> Vec<CheckRow> {
    use CheckStatus::{Finding, NotChecked, Ok};
    let manager = plan
        .hosts()
        .iter()
        .find(|h| h.platform.is_none())
        .map(|h| h.name.clone())
        .or_else(|| inv.map(|i| i.manager.name.clone()))
        .unwrap_or_else(|| "manager".to_owned());
    let r = |c, s, d: String| row(&manager, c, s, d);
    let client = match access {
        ManagerAccess::NotNeeded => {
            let why = "the plan does not talk to the Manager";
            return [
                Check::ManagerApi,
                Check::ManagerBuild,
                Check::DirectDownload,
            ]
            .into_iter()
            .map(|c| r(c, NotChecked, why.to_owned()))
            .collect();
        }
        ManagerAccess::Unavailable(m) => {
            return unanswered(
                r(Check::ManagerApi, Finding, m),
                "the API was not reached",
                r,
            );
        }
        ManagerAccess::Client(c) => c,
    };
    let mut rows = Vec::new();
    let live = match within(t, client.manager_version()).await {
        Result::Ok(Result::Ok(b)) => {
            rows.push(r(
                Check::ManagerApi,
                Ok,
                format!("{} answered with the API key", client.base_url()),
            ));
            b
        }
        Result::Ok(Err(e)) => {
            let first = r(Check::ManagerApi, Finding, e.to_string());
            return unanswered(first, "the API did not answer", r);
        }
        Err(m) => {
            let first = r(
                Check::ManagerApi,
                Finding,
                format!("{}: {m}", client.base_url()),
            );
            return unanswered(first, "the API did not answer", r);
        }
    };
    rows.push(manager_build_row(plan, inv, &manager, live));

    rows.push(
        match within(t, client.system_setting(DIRECT_DOWNLOAD_SETTING)).await {
            Result::Ok(Result::Ok(v)) => {
                // src: ds-domain.md §2.5: system settings are strings, this one `"true"`
                // in a real Manager's dump; inferred: `"false"` when off. Anything else
                // is unverified, hence a finding.
                let on = match v.trim().to_ascii_lowercase().as_str() {
                    "true" => Some(true),
                    "false" => Some(false),
                    _ => None,
                };
                match (on, inv) {
                    (None, _) => r(
                        Check::DirectDownload,
                        Finding,
                        format!("the Manager's {DIRECT_DOWNLOAD_SETTING} is `{v}`, neither true nor false: unverified"),
                    ),
                    (Some(on), None) => r(
                        Check::DirectDownload,
                        NotChecked,
                        format!("the Manager says {on}; no inventory to compare with"),
                    ),
                    (Some(on), Some(i))
                        if on == i.settings.direct_download_when_relays_unavailable =>
                    {
                        r(
                            Check::DirectDownload,
                            Ok,
                            format!("{on} as in the inventory"),
                        )
                    }
                    (Some(on), Some(i)) => r(
                        Check::DirectDownload,
                        Finding,
                        format!(
                            "the Manager's {DIRECT_DOWNLOAD_SETTING} is {on}, the inventory's settings.direct_download_when_relays_unavailable is {}: which Agents are affected depends on it; correct the inventory and plan again",
                            i.settings.direct_download_when_relays_unavailable
                        ),
                    ),
                }
            }
            Result::Ok(Err(e)) => r(Check::DirectDownload, Finding, e.to_string()),
            Err(m) => r(Check::DirectDownload, Finding, m),
        },
    );
    rows
}

/// The live build against `manager_min_build`. Below it is expected when the plan has the
/// manual Manager upgrade (the operator does it in the window); otherwise the plan would
/// upgrade Relays and Agents past what the Manager supports.
fn manager_build_row(
    plan: &Plan,
    inv: Option<&Inventory>,
    manager: &str,
    live: ManagerBuild,
) -> CheckRow {
    use CheckStatus::{Finding, NotChecked, Ok};
    let said = inv
        .map(|i| i.manager.version)
        .filter(|v| *v != live)
        .map(|v| format!(" (the inventory says {v})"))
        .unwrap_or_default();
    let Some(min) = plan
        .params()
        .get("manager_min_build")
        .and_then(|v| v.parse::<ManagerBuild>().ok())
    else {
        return row(
            manager,
            Check::ManagerBuild,
            NotChecked,
            format!("build {live}{said}; the playbook has no manager_min_build"),
        );
    };
    let upgrade = plan
        .steps()
        .iter()
        .find(|s| &*s.action == "manager-upgrade")
        .map(|s| s.id.clone());
    match upgrade {
        _ if live >= min => row(
            manager,
            Check::ManagerBuild,
            Ok,
            format!("build {live}{said}, at least manager_min_build {min}"),
        ),
        Some(step) => row(
            manager,
            Check::ManagerBuild,
            Ok,
            format!(
                "build {live}{said} is below manager_min_build {min}: the plan's manual step {step} upgrades it in the window"
            ),
        ),
        None => row(
            manager,
            Check::ManagerBuild,
            Finding,
            format!(
                "build {live}{said} is below manager_min_build {min} and the plan does not upgrade the Manager: correct the Manager's version in the inventory and plan again (the plan then has the manual upgrade), or upgrade the Manager first"
            ),
        ),
    }
}

/// Whether the plan talks to the Manager: a `dsm` step, or a `manual` step (whose check
/// reads the Manager's build).
pub fn plan_uses_manager(plan: &Plan) -> bool {
    plan.steps().iter().any(|s| {
        matches!(s.kind, StepKind::Action)
            && (&*s.driver == "dsm" || &*s.driver == medic_exec::MANUAL_DRIVER)
    })
}

/// Whether the plan has a step over SSH.
pub fn plan_uses_ssh(plan: &Plan) -> bool {
    plan.steps()
        .iter()
        .any(|s| matches!(s.kind, StepKind::Action) && &*s.driver == "ssh")
}

/// Runs every check (see the module docs). `progress(done, total, name)` is called as each
/// host (and the Manager) is done.
pub async fn run_preflight(
    plan: &Plan,
    inv: Option<&Inventory>,
    ssh: Option<Arc<SshDriver>>,
    manager: ManagerAccess,
    opts: PreflightOptions,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> PreflightReport {
    let jobs = jobs(plan, inv);
    let total = jobs.len() + 1;
    let names: Vec<String> = jobs.iter().map(|j| j.host.name.clone()).collect();
    let mut by_host: Vec<Vec<CheckRow>> = vec![Vec::new(); jobs.len()];
    let mut set = JoinSet::new();
    let permits = Arc::new(Semaphore::new(opts.parallel.max(1)));
    let hosts = jobs.len();
    match &ssh {
        Some(ssh) => {
            for (i, job) in jobs.into_iter().enumerate() {
                let (ssh, permits) = (ssh.clone(), permits.clone());
                set.spawn(async move {
                    let _p = permits.acquire_owned().await;
                    (i, check_host(ssh, job, opts.timeout).await)
                });
            }
        }
        None => {
            for (i, job) in jobs.iter().enumerate() {
                by_host[i] = [
                    Check::Reachable,
                    Check::HostKey,
                    Check::AgentBuild,
                    Check::RelayRole,
                    Check::Packages,
                    Check::Privilege,
                ]
                .into_iter()
                .map(|c| {
                    row(
                        &job.host.name,
                        c,
                        CheckStatus::Finding,
                        "no SSH driver is configured",
                    )
                })
                .collect();
            }
        }
    }
    let manager_rows = check_manager(plan, inv, manager, opts.timeout);
    let mut done = 0;
    let mut manager_rows = {
        // The Manager's checks run while the hosts' tasks do.
        let m = manager_rows.await;
        done += 1;
        progress(done, total, "the Manager");
        m
    };
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, rows)) => {
                done += 1;
                progress(done, total, &names[i]);
                by_host[i] = rows;
            }
            Err(e) => {
                tracing::warn!(error = %e, "a pre-flight task ended abnormally");
            }
        }
    }
    for (i, rows) in by_host.iter_mut().enumerate() {
        if rows.is_empty() {
            rows.push(row(
                &names[i],
                Check::Reachable,
                CheckStatus::Finding,
                "the check ended abnormally",
            ));
        }
    }
    let mut rows: Vec<CheckRow> = by_host.into_iter().flatten().collect();
    rows.append(&mut manager_rows);
    PreflightReport { rows, hosts }
}
