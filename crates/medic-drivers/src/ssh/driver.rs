//! The `ssh` driver: the playbook's actions as Deep Security commands on the host, over a
//! [`Transport`]. It turns an action into one or more ops of the command table
//! ([`super::commands`]), quotes every argument, and turns what the host printed into the
//! facts guards and checks read. Errors keep the executor's distinction: `Unreachable`
//! when nothing was done on the host (no connection, untrusted key, refused login),
//! `Failed` otherwise.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use medic_exec::PlanHost;
use medic_exec::{ActionFuture, ActionReply, ActionRequest, ActionStatus, Driver};
use medic_model::{AgentBuild, Become, Platform, Value};
use secrecy::{ExposeSecret as _, SecretString};

use super::commands::{self, AgentStatus, Op, Source, UpdateState};
use super::config::{SshConfig, SshConfigError};
use super::libssh2::Ssh2Transport;
use super::quote::{powershell_command, ps_quote, sh_join, simple_command};
use super::transport::{Endpoint, ExecOutput, Exit, RemoteCommand, Transport, TransportError};

/// The transport's deadline is this much later than the remote `timeout` a Linux command
/// runs under, so that the remote side stops a slow command first: the step then fails
/// with exit 124 and the connection survives.
const REMOTE_GRACE: Duration = Duration::from_secs(5);

/// Runs `"$@"` as root through sudo with the sudo password as the first line of stdin;
/// the rest of stdin (the agent's self-protection password) reaches the command. `sudo -S`
/// reads exactly one line when it asks, so it must be known whether it asks: `sudo -k -n
/// true` succeeds only where no password is needed (then the line is dropped), and the
/// password is checked alone (`-v`) first, so a wrong one never makes sudo read the next
/// line as a second try. `printf` is a shell builtin: the password is in no argv.
const SUDO_WRAPPER: &str = r#"IFS= read -r sp || sp=
if sudo -k -n true 2>/dev/null; then exec sudo -n -- "$@"; fi
printf '%s\n' "$sp" | sudo -S -k -p '' -v 2>/dev/null || { echo 'sudo refused the password (MEDIC_SUDO_PASSWORD or --sudo-password-file), or this user may not use sudo' >&2; exit 126; }
{ printf '%s\n' "$sp"; exec cat; } | exec sudo -S -k -p '' -- "$@""#;

/// How long past the install's own remote `timeout` a later run waits for it.
const INSTALL_GRACE: Duration = Duration::from_secs(30);

/// See the module docs. Construct with [`SshDriver::new`] (libssh2) or
/// [`SshDriver::with_transport`].
pub struct SshDriver {
    cfg: Arc<SshConfig>,
    transport: Arc<dyn Transport>,
}

/// Why an op gave no usable answer.
#[derive(Debug)]
pub(super) enum OpError {
    Transport(TransportError),
    /// The command ran and failed.
    Exit(String),
    /// Not run: refused before anything was sent.
    Refused(String),
    /// Not run, and no retry can change it until the operator does something (no package
    /// for this host, two packages, a distribution that contradicts the inventory).
    Precondition(String),
}

impl From<TransportError> for OpError {
    fn from(e: TransportError) -> Self {
        OpError::Transport(e)
    }
}

impl OpError {
    fn reply(self) -> ActionReply {
        let status = match self {
            // A changed or unknown host key stays so: retrying only repeats the refusal.
            OpError::Transport(e @ TransportError::HostKey(_)) => {
                ActionStatus::Refused(e.to_string())
            }
            OpError::Transport(e) if e.nothing_done() => ActionStatus::Unreachable(e.to_string()),
            OpError::Transport(e) => ActionStatus::Failed(e.to_string()),
            OpError::Exit(m) | OpError::Refused(m) => ActionStatus::Failed(m),
            OpError::Precondition(m) => ActionStatus::Refused(m),
        };
        ActionReply {
            status,
            facts: BTreeMap::new(),
        }
    }
}

pub(super) struct Host {
    pub(super) name: String,
    pub(super) platform: Platform,
    pub(super) ep: Endpoint,
    pub(super) os: Option<String>,
    pub(super) r#become: Become,
}

#[derive(Default)]
struct Facts(BTreeMap<String, Value>);

impl Facts {
    fn set(mut self, k: &str, v: Value) -> Self {
        self.0.insert(k.to_owned(), v);
        self
    }

    fn ok(self) -> ActionReply {
        ActionReply {
            status: ActionStatus::Ok,
            facts: self.0,
        }
    }

    fn failed(self, msg: impl Into<String>) -> ActionReply {
        ActionReply {
            status: ActionStatus::Failed(msg.into()),
            facts: self.0,
        }
    }
}

fn arg<'a>(req: &'a ActionRequest, key: &str) -> Result<&'a str, OpError> {
    req.args
        .get(key)
        .map(String::as_str)
        .ok_or_else(|| OpError::Refused(format!("{}: missing argument `{key}`", req.action)))
}

fn build_arg(req: &ActionRequest, key: &str) -> Result<AgentBuild, OpError> {
    let v = arg(req, key)?;
    v.parse::<AgentBuild>()
        .map_err(|e| OpError::Refused(format!("{}: argument `{key}`: {e}", req.action)))
}

/// The last lines of what a failed command said, for the step's error.
fn said(out: &ExecOutput) -> String {
    last_lines(&out.stdout.text(), &out.stderr.text())
}

/// The last five non-empty lines of stderr (of stdout when stderr is empty), at most 1,500
/// characters: what a failed command said, for the step's error.
pub(crate) fn last_lines(stdout: &str, stderr: &str) -> String {
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
    let skip = tail.chars().count().saturating_sub(1500);
    let s: String = tail.chars().skip(skip).collect();
    if s.is_empty() {
        "no output".to_owned()
    } else {
        s
    }
}

impl SshDriver {
    /// The driver on libssh2.
    pub fn new(cfg: SshConfig) -> Result<SshDriver, SshConfigError> {
        let transport = Ssh2Transport::new(&cfg)?;
        Ok(SshDriver::with_transport(cfg, Arc::new(transport)))
    }

    pub fn with_transport(cfg: SshConfig, transport: Arc<dyn Transport>) -> SshDriver {
        SshDriver {
            cfg: Arc::new(cfg),
            transport,
        }
    }

    pub fn config(&self) -> &SshConfig {
        &self.cfg
    }

    fn host(&self, req: &ActionRequest) -> Result<Host, OpError> {
        let h = req.host.as_ref().ok_or_else(|| {
            OpError::Refused(format!(
                "`{}` has no host: the ssh driver acts on hosts",
                req.action
            ))
        })?;
        self.plan_host(h, &req.action)
    }

    pub(super) fn plan_host(&self, h: &PlanHost, action: &str) -> Result<Host, OpError> {
        let req_action = action;
        let platform = h.platform.ok_or_else(|| {
            OpError::Refused(format!(
                "`{}` is the manager: use the dsm or manual driver for `{req_action}`",
                h.name
            ))
        })?;
        let user = h
            .user
            .clone()
            .or_else(|| self.cfg.default_user.clone())
            .ok_or_else(|| {
                OpError::Refused(format!(
                    "no ssh user for `{}`: set `user` in the inventory, or $USER",
                    h.name
                ))
            })?;
        if let Some(ev) = &self.cfg.host_key_events {
            ev.name(&h.address, h.port, &h.name);
        }
        Ok(Host {
            name: h.name.clone(),
            platform,
            ep: Endpoint {
                address: h.address.clone(),
                port: h.port,
                user,
            },
            os: h.os.clone(),
            r#become: h.r#become.unwrap_or(self.cfg.r#become),
        })
    }

    /// The words that make a Linux command privileged for `h` (none when it runs as the
    /// SSH user), and whether the sudo password goes first on stdin.
    fn privilege_words(&self, b: Become) -> (&'static [&'static str], bool) {
        match (b, &self.cfg.sudo_password) {
            (Become::None, _) => (&[], false),
            (Become::Sudo, None) => (&["sudo", "-n", "--"], false),
            (Become::Sudo, Some(_)) => (&["sh", "-c", SUDO_WRAPPER, "medic-sudo"], true),
        }
    }

    /// The command's stdin: the sudo password line first when sudo reads it, then the
    /// op's own secret.
    fn stdin(&self, sudo_reads: bool, secret: Option<&SecretString>) -> Option<SecretString> {
        let sudo = self.cfg.sudo_password.as_ref().filter(|_| sudo_reads);
        match (sudo, secret) {
            (None, s) => s.cloned(),
            (Some(p), None) => Some(SecretString::from(format!("{}\n", p.expose_secret()))),
            (Some(p), Some(s)) => Some(SecretString::from(format!(
                "{}\n{}\n",
                p.expose_secret(),
                s.expose_secret()
            ))),
        }
    }

    /// The host's install marker. Named by the inventory name *and* address: hosts that
    /// share a filesystem (the loopback test fleets, which run side by side) never see
    /// each other's; both are in the plan's fingerprint, so a resume finds it again.
    fn marker(&self, h: &Host) -> String {
        format!(
            "{}/{}@{}.install",
            self.cfg.linux.run_dir.trim_end_matches('/'),
            h.name,
            h.ep.address
        )
    }

    /// The command line (and stdin) for `op` on `platform`.
    fn command(
        &self,
        h: &Host,
        op: Op,
        arg: &str,
        timeout: Duration,
    ) -> Result<(String, Option<SecretString>), OpError> {
        let platform = h.platform;
        let c = match platform {
            Platform::Linux => commands::linux(op),
            Platform::Windows => commands::windows(op),
        };
        if !c.available {
            return Err(OpError::Refused(format!(
                "{op} does not apply to {} hosts",
                platform.as_str()
            )));
        }
        if let Source::NotFound(why) = c.source
            && !self.cfg.allow_unverified_commands
        {
            return Err(OpError::Refused(format!(
                "{op}: the Deep Security command is not verified ({why}); confirm it and set allow_unverified_commands to run it"
            )));
        }
        let secret = if c.takes_password {
            self.cfg.agent_password.as_ref()
        } else {
            None
        };
        let mut stdin = secret.cloned();
        let quote_err = |e: super::quote::NulInArgument| OpError::Refused(format!("{op}: {e}"));
        let line = match platform {
            Platform::Linux => {
                let l = &self.cfg.linux;
                let secs = timeout.as_secs().max(1).to_string();
                let name = format!("medic-{op}");
                let marker = self.marker(h);
                let mut words: Vec<&str> = Vec::new();
                if c.privileged {
                    let (prefix, sudo_reads) = self.privilege_words(h.r#become);
                    words.extend(prefix);
                    stdin = self.stdin(sudo_reads, secret);
                }
                words.extend(["timeout", "-k", "10", &secs, "sh", "-c", c.script, &name]);
                words.extend([l.agent_dir.as_str(), l.package_dir.as_str(), arg, &marker]);
                sh_join(&words).map_err(quote_err)?
            }
            Platform::Windows => {
                let w = &self.cfg.windows;
                let mut assign = String::new();
                for (i, v) in [w.agent_dir.as_str(), w.package_dir.as_str(), arg]
                    .iter()
                    .enumerate()
                {
                    assign.push_str(&format!(
                        "$p{} = {}\n",
                        i + 1,
                        ps_quote(v).map_err(quote_err)?
                    ));
                }
                powershell_command(&commands::windows_script(c.script, &assign))
            }
        };
        Ok((line, stdin))
    }

    /// Linux lines are POSIX sh: they may share the connection's shell session.
    fn shared_shell(&self, h: &Host) -> bool {
        self.cfg.shared_shell && h.platform == Platform::Linux
    }

    /// Runs `op`; a non-zero exit is an [`ExecOutput`], not an error.
    async fn exec(
        &self,
        h: &Host,
        op: Op,
        arg: &str,
        timeout: Duration,
    ) -> Result<ExecOutput, OpError> {
        let (line, stdin) = self.command(h, op, arg, timeout)?;
        tracing::debug!(host = %h.name, %op, "ssh op");
        let cmd = RemoteCommand {
            shared_shell: self.shared_shell(h) && stdin.is_none(),
            line,
            stdin,
            deadline: Instant::now() + timeout + REMOTE_GRACE,
        };
        Ok(self.transport.exec(&h.ep, cmd).await?)
    }

    /// Runs `op` and wants exit 0; returns stdout.
    async fn run_op(
        &self,
        h: &Host,
        op: Op,
        arg: &str,
        timeout: Duration,
    ) -> Result<String, OpError> {
        let out = self.exec(h, op, arg, timeout).await?;
        if out.success() {
            Ok(out.stdout.text())
        } else {
            Err(OpError::Exit(format!(
                "{op} on {} ended with {}: {}",
                h.name,
                out.exit,
                said(&out)
            )))
        }
    }

    pub(super) async fn probe(&self, h: &Host, op: Op, arg: &str) -> Result<String, OpError> {
        self.run_op(h, op, arg, self.cfg.probe_timeout).await
    }

    /// The installed build. While an install that an earlier run started (a killed medic,
    /// or another operator) still runs on the host, the build it reports means nothing:
    /// wait for that install to end first (see `commands::INSTALL_MARKER`).
    pub(super) async fn agent_version(&self, h: &Host) -> Result<AgentBuild, OpError> {
        let mut waiting: Option<(Instant, String)> = None;
        loop {
            let out = self.probe(h, Op::AgentVersion, "").await?;
            let busy = out
                .lines()
                .find_map(|l| l.trim().strip_prefix("medic: busy "))
                .map(str::to_owned);
            let Some(pid) = busy else {
                if let Some((since, pid)) = &waiting {
                    tracing::info!(host = %h.name, %pid, waited = ?since.elapsed(), "the earlier install ended");
                }
                return commands::parse_agent_version(&out).map_err(OpError::Exit);
            };
            let since = match &waiting {
                Some((since, _)) => *since,
                None => {
                    tracing::info!(host = %h.name, %pid, "an agent install started earlier is still running: waiting for it to end before reading the build");
                    let now = Instant::now();
                    waiting = Some((now, pid.clone()));
                    now
                }
            };
            let limit = self.cfg.command_timeout + INSTALL_GRACE;
            if since.elapsed() >= limit {
                return Err(OpError::Exit(format!(
                    "{}: an agent install started earlier (pid {pid}) is still running after {limit:?}; look at it on the host (marker {})",
                    h.name,
                    self.marker(h)
                )));
            }
            tokio::time::sleep(self.cfg.poll_interval).await;
        }
    }

    /// The `$3` of an install on `h`: on Linux the package file chosen for its
    /// distribution (`super::packages`), on Windows the build (its script finds the MSI).
    pub(super) async fn package_arg(&self, h: &Host, to: AgentBuild) -> Result<String, OpError> {
        Ok(match h.platform {
            Platform::Windows => to.package_form(),
            Platform::Linux => self.choose_package(h, to).await?.file,
        })
    }

    pub(super) async fn choose_package(
        &self,
        h: &Host,
        to: AgentBuild,
    ) -> Result<super::packages::Choice, OpError> {
        let out = self.probe(h, Op::PackageFacts, "").await?;
        let found = super::packages::parse_package_probe(&out);
        super::packages::choose(
            &h.name,
            h.os.as_deref(),
            &found,
            &to.package_form(),
            &self.cfg.linux.package_dir,
        )
        .map_err(OpError::Precondition)
    }

    async fn pending_reboot(&self, h: &Host) -> Result<bool, OpError> {
        let out = self.probe(h, Op::PendingReboot, "").await?;
        commands::parse_yes_no(&out).map_err(OpError::Exit)
    }

    async fn status(&self, h: &Host) -> Result<AgentStatus, OpError> {
        let out = self.probe(h, Op::Status, "").await?;
        Ok(commands::parse_status(&out))
    }

    async fn boot_id(&self, h: &Host, timeout: Duration) -> Result<String, OpError> {
        let out = self.run_op(h, Op::BootId, "", timeout).await?;
        commands::parse_boot_id(&out).map_err(OpError::Exit)
    }

    async fn bundle_facts(&self, h: &Host, bundle: &str) -> Result<Facts, OpError> {
        let out = self.probe(h, Op::BundleStatus, bundle).await?;
        let (exported, imported) = commands::parse_bundle_status(&out).map_err(OpError::Exit)?;
        Ok(Facts::default()
            .set("bundle_exported", Value::Bool(exported))
            .set("bundle_imported", Value::Bool(imported)))
    }

    async fn act(&self, req: &ActionRequest) -> Result<ActionReply, OpError> {
        if req.action == "noop" {
            return Ok(ActionReply::ok());
        }
        if matches!(req.action.as_str(), "manager-version" | "manager-upgrade") {
            return Err(OpError::Refused(format!(
                "`{}` runs on the manager: use the dsm or manual driver",
                req.action
            )));
        }
        let h = self.host(req)?;
        let cmd_timeout = self.cfg.command_timeout;
        Ok(match req.action.as_str() {
            "agent-version" => {
                let b = self.agent_version(&h).await?;
                Facts::default().set("agent_version", Value::Agent(b)).ok()
            }
            "pending-reboot" => {
                let p = self.pending_reboot(&h).await?;
                Facts::default().set("pending_reboot", Value::Bool(p)).ok()
            }
            "agent-status" => {
                let st = self.status(&h).await?;
                Facts::default()
                    .set("antimalware", Value::Str(st.antimalware))
                    .set("agent_status", Value::Str(st.agent_status))
                    .ok()
            }
            "security-status" => {
                let st = self.status(&h).await?;
                Facts::default()
                    .set(
                        "security_update_current",
                        Value::Bool(st.update == UpdateState::Current),
                    )
                    .ok()
            }
            "windows-certs" => {
                let out = self.probe(&h, Op::WindowsCerts, "").await?;
                let (sha2, certs) = commands::parse_certs(&out).map_err(OpError::Exit)?;
                Facts::default()
                    .set("sha2_supported", Value::Bool(sha2))
                    .set("root_certs_present", Value::Bool(certs))
                    .ok()
            }
            "windows-prereq" => {
                self.run_op(&h, Op::WindowsPrereq, "", cmd_timeout).await?;
                let out = self.probe(&h, Op::WindowsCerts, "").await?;
                let (sha2, certs) = commands::parse_certs(&out).map_err(OpError::Exit)?;
                let facts = Facts::default()
                    .set("sha2_supported", Value::Bool(sha2))
                    .set("root_certs_present", Value::Bool(certs));
                if sha2 && certs {
                    facts.ok()
                } else {
                    facts.failed("windows-prereq ran but SHA-2 support or a certificate is still missing (a reboot may be needed for the SHA-2 update)")
                }
            }
            "bundle-status" => {
                let bundle = arg(req, "bundle")?;
                self.bundle_facts(&h, bundle).await?.ok()
            }
            "verify" => self.verify(req, &h).await?,
            "agent-upgrade" => self.upgrade(req, &h).await?,
            "reinstall" => {
                let to = if req.args.contains_key("to") {
                    build_arg(req, "to")?
                } else {
                    self.agent_version(&h).await?
                };
                let pkg = self.package_arg(&h, to).await?;
                self.run_op(&h, Op::Reinstall, &pkg, cmd_timeout).await?;
                let st = self.status(&h).await?;
                let facts = Facts::default()
                    .set("antimalware", Value::Str(st.antimalware.clone()))
                    .set("agent_status", Value::Str(st.agent_status));
                if st.antimalware == "online" {
                    facts.ok()
                } else {
                    facts.failed(format!(
                        "anti-malware is {} after the reinstall",
                        st.antimalware
                    ))
                }
            }
            "security-update" => self.security_update(req, &h).await?,
            "bundle-export" | "bundle-import" => {
                let bundle = arg(req, "bundle")?;
                let op = if req.action == "bundle-export" {
                    Op::BundleExport
                } else {
                    Op::BundleImport
                };
                self.run_op(&h, op, bundle, cmd_timeout).await?;
                self.bundle_facts(&h, bundle).await?.ok()
            }
            "cache-clear" => {
                self.run_op(&h, Op::CacheClear, "", cmd_timeout).await?;
                ActionReply::ok()
            }
            "reboot" => self.reboot(&h).await?,
            "command" => {
                self.shell(req, &h, "command", self.cfg.command_timeout)
                    .await?
            }
            "command-probe" => {
                self.shell(req, &h, "check_command", self.cfg.probe_timeout)
                    .await?
            }
            other => {
                return Err(OpError::Refused(format!(
                    "the ssh driver does not know the action `{other}`"
                )));
            }
        })
    }

    /// The host's own view (dsa_query, the pending-reboot probe), judged by
    /// `crate::verify` (which also reads it as the second view when the Manager is primary).
    async fn verify(&self, req: &ActionRequest, h: &Host) -> Result<ActionReply, OpError> {
        build_arg(req, "min_build")?;
        let build = self.agent_version(h).await?;
        let st = self.status(h).await?;
        let pending = self.pending_reboot(h).await?;
        let mut facts = Facts::default()
            .set("agent_version", Value::Agent(build))
            .set("agent_status", Value::Str(st.agent_status))
            .set("antimalware", Value::Str(st.antimalware))
            .set(
                "security_update_current",
                Value::Bool(st.update == UpdateState::Current),
            )
            .set("pending_reboot", Value::Bool(pending));
        if let UpdateState::Failed(m) = st.update {
            facts = facts.set(crate::verify::SECURITY_UPDATE_ERROR, Value::Str(m));
        }
        Ok(crate::verify::host_only(req, facts.0))
    }

    async fn upgrade(&self, req: &ActionRequest, h: &Host) -> Result<ActionReply, OpError> {
        let to = build_arg(req, "to")?;
        let before = self.agent_version(h).await?;
        if before > to {
            return Ok(Facts::default()
                .set("agent_version", Value::Agent(before))
                .failed(format!(
                    "refusing to downgrade the agent from {before} to {to}"
                )));
        }
        if before < to {
            let pkg = self.package_arg(h, to).await?;
            self.run_op(h, Op::Upgrade, &pkg, self.cfg.command_timeout)
                .await?;
        }
        let after = self.agent_version(h).await?;
        let facts = Facts::default().set("agent_version", Value::Agent(after));
        Ok(if after == to {
            facts.ok()
        } else {
            facts.failed(format!(
                "the upgrade to {to} ran but the agent reports build {after}"
            ))
        })
    }

    async fn security_update(&self, req: &ActionRequest, h: &Host) -> Result<ActionReply, OpError> {
        match req.args.get("source").map(String::as_str) {
            None | Some("bundle") => {}
            Some(other) => {
                return Err(OpError::Refused(format!(
                    "security-update: unknown source `{other}` (use `bundle`, or no source)"
                )));
            }
        }
        self.run_op(h, Op::Heartbeat, "", self.cfg.command_timeout)
            .await?;
        let deadline = Instant::now() + self.cfg.update_timeout;
        loop {
            let st = self.status(h).await?;
            match st.update {
                UpdateState::Current => {
                    return Ok(Facts::default()
                        .set("security_update_current", Value::Bool(true))
                        .ok());
                }
                UpdateState::Failed(m) => {
                    return Ok(Facts::default()
                        .set("security_update_current", Value::Bool(false))
                        .failed(format!("security update failed: {m}")));
                }
                UpdateState::NotCurrent(m) => {
                    if Instant::now() >= deadline {
                        return Ok(Facts::default()
                            .set("security_update_current", Value::Bool(false))
                            .failed(format!(
                                "security update not complete after {:?}: {m}",
                                self.cfg.update_timeout
                            )));
                    }
                }
            }
            tokio::time::sleep(self.cfg.poll_interval).await;
        }
    }

    /// A playbook's own shell command (`command`, or `check_command` for the
    /// `command-probe` check): `sh -c SCRIPT` under the remote `timeout`, with `arg1`,
    /// `arg2`... as its positional parameters. Values reach the script as quoted words,
    /// never pasted into its code (the playbook loader refuses templates in the script).
    /// Facts: `exit` and `output` (stdout, trimmed); a check compares `output` with a
    /// typed value by reading it as that type.
    async fn shell(
        &self,
        req: &ActionRequest,
        h: &Host,
        key: &str,
        timeout: Duration,
    ) -> Result<ActionReply, OpError> {
        if h.platform != Platform::Linux {
            return Err(OpError::Refused(format!(
                "`{}` runs POSIX sh commands: {} is not a Linux host",
                req.action, h.name
            )));
        }
        let script = arg(req, key)?;
        let secs = timeout.as_secs().max(1).to_string();
        let sudo = req.args.get("sudo").is_some_and(|v| v == "true");
        let mut words: Vec<&str> = Vec::new();
        let mut stdin = None;
        if sudo {
            let (prefix, sudo_reads) = self.privilege_words(Become::Sudo);
            words.extend(prefix);
            stdin = self.stdin(sudo_reads, None);
        }
        words.extend(["timeout", "-k", "10", &secs]);
        let positional: Vec<&str> = (1..)
            .map_while(|i| req.args.get(&format!("arg{i}")).map(String::as_str))
            .collect();
        match simple_command(script, &positional) {
            Some(direct) => words.extend(direct),
            None => {
                words.extend(["sh", "-c", script, "medic-command"]);
                words.extend(positional);
            }
        }
        let line = sh_join(&words).map_err(|e| OpError::Refused(format!("{}: {e}", req.action)))?;
        tracing::debug!(host = %h.name, action = %req.action, "ssh command");
        let cmd = RemoteCommand {
            line,
            shared_shell: self.shared_shell(h) && stdin.is_none(),
            stdin,
            deadline: Instant::now() + timeout + REMOTE_GRACE,
        };
        let out = self.transport.exec(&h.ep, cmd).await?;
        let code = match out.exit {
            Exit::Code(c) => i64::from(c),
            _ => -1,
        };
        let facts = Facts::default()
            .set("exit", Value::Int(code))
            .set("output", Value::Str(out.stdout.text().trim().to_owned()));
        Ok(if out.success() {
            facts.ok()
        } else {
            facts.failed(format!(
                "{key} on {} ended with {}: {}",
                h.name,
                out.exit,
                said(&out)
            ))
        })
    }

    /// Reboots, then waits until the host has a new boot id and its agent answers.
    async fn reboot(&self, h: &Host) -> Result<ActionReply, OpError> {
        let before = self.boot_id(h, self.cfg.probe_timeout).await?;
        match self.exec(h, Op::Reboot, "", self.cfg.probe_timeout).await {
            Ok(out) if !out.success() => {
                return Err(OpError::Exit(format!(
                    "reboot on {} ended with {}: {}",
                    h.name,
                    out.exit,
                    said(&out)
                )));
            }
            Ok(_) => {}
            // The reboot may cut the connection before the exit status arrives.
            Err(OpError::Transport(e)) if !e.nothing_done() => {
                tracing::debug!(host = %h.name, error = %e, "connection ended by the reboot");
            }
            Err(e) => return Err(e),
        }
        self.transport.disconnect(&h.ep).await;
        let deadline = Instant::now() + self.cfg.reboot_timeout;
        let mut last = "no answer yet".to_owned();
        loop {
            tokio::time::sleep(self.cfg.poll_interval).await;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Facts::default().failed(format!(
                    "{} did not come back within {:?} after the reboot (last: {last})",
                    h.name, self.cfg.reboot_timeout
                )));
            }
            let t = self.cfg.probe_timeout.min(left);
            match self.boot_id(h, t).await {
                Ok(id) if id == before => {
                    last = "same boot id: not rebooted yet".to_owned();
                }
                Ok(_) => match self.run_op(h, Op::Status, "", t).await {
                    Ok(_) => break,
                    Err(e) => last = format!("the agent does not answer yet: {}", msg(&e)),
                },
                Err(e) => last = msg(&e),
            }
        }
        let pending = self.pending_reboot(h).await?;
        Ok(Facts::default()
            .set("pending_reboot", Value::Bool(pending))
            .ok())
    }
}

pub(super) fn msg(e: &OpError) -> String {
    match e {
        OpError::Transport(t) => t.to_string(),
        OpError::Exit(m) | OpError::Refused(m) | OpError::Precondition(m) => m.clone(),
    }
}

impl Driver for SshDriver {
    fn run(&self, req: ActionRequest) -> ActionFuture<'_> {
        Box::pin(async move {
            match self.act(&req).await {
                Ok(reply) => reply,
                Err(e) => e.reply(),
            }
        })
    }

    fn idempotent(&self, action: &str) -> bool {
        crate::actions::idempotent(crate::SSH_ACTIONS, action)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use base64::Engine as _;
    use medic_exec::PlanHost;
    use secrecy::ExposeSecret as _;

    use super::*;
    use crate::ssh::capture::Captured;
    use crate::ssh::transport::{Exit, TransportFuture};

    /// Records what would be sent and answers every command with `stdout`.
    struct Recorder {
        stdout: &'static str,
        sent: Mutex<Vec<(String, Option<String>)>>,
    }

    impl Transport for Recorder {
        fn exec<'a>(
            &'a self,
            _endpoint: &'a Endpoint,
            cmd: RemoteCommand,
        ) -> TransportFuture<'a, Result<ExecOutput, TransportError>> {
            let stdin = cmd.stdin.as_ref().map(|s| s.expose_secret().to_owned());
            self.sent
                .lock()
                .expect("recorder lock")
                .push((cmd.line, stdin));
            // The package probe gets an EL9 host with its package staged.
            let out = if line_has(&self.sent, "'medic-package-facts'") {
                "[os-release]\nID=rhel\nVERSION_ID=9.3\n[arch]\nx86_64\n[packages]\nAgent-Core-RedHat_EL8-20.0.1-690.x86_64.rpm\nAgent-Core-RedHat_EL9-20.0.1-690.x86_64.rpm\n"
            } else {
                self.stdout
            };
            Box::pin(async move {
                Ok(ExecOutput {
                    exit: Exit::Code(0),
                    stdout: Captured::from_bytes(out.as_bytes()),
                    stderr: Captured::new(16),
                })
            })
        }

        fn disconnect<'a>(&'a self, _endpoint: &'a Endpoint) -> TransportFuture<'a, ()> {
            Box::pin(async {})
        }
    }

    /// Whether the last line sent contains `needle`.
    fn line_has(sent: &Mutex<Vec<(String, Option<String>)>>, needle: &str) -> bool {
        sent.lock()
            .expect("recorder lock")
            .last()
            .is_some_and(|(l, _)| l.contains(needle))
    }

    fn request(platform: Platform, action: &str, args: &[(&str, &str)]) -> ActionRequest {
        ActionRequest {
            step: "s".to_owned(),
            host: Some(PlanHost {
                name: "h".to_owned(),
                address: "192.0.2.7".to_owned(),
                port: 22,
                user: Some("ops".to_owned()),
                platform: Some(platform),
                role: medic_model::Role::Agent,
                relay_group: None,
                os: None,
                r#become: None,
                zone: None,
            }),
            action: action.to_owned(),
            args: args
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            attempt: 1,
            after_ms: None,
            fence: None,
        }
    }

    fn decode_powershell(line: &str) -> String {
        let b64 = line.rsplit(' ').next().expect("encoded command");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        let units: Vec<u16> = bytes
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16(&units).expect("utf-16")
    }

    #[tokio::test]
    async fn windows_commands_are_encoded_powershell_with_quoted_arguments() {
        let rec = Arc::new(Recorder {
            stdout: "PluginVersion.core: 20.0.1.690\r\n",
            sent: Mutex::new(Vec::new()),
        });
        let mut cfg = SshConfig::new();
        cfg.windows.agent_dir = r"C:\Agent's dir".to_owned();
        cfg.agent_password = Some(SecretString::from("pw-on-stdin-only".to_owned()));
        let d = SshDriver::with_transport(cfg, rec.clone());
        let r = d
            .run(request(Platform::Windows, "agent-version", &[]))
            .await;
        assert_eq!(r.status, ActionStatus::Ok);
        assert_eq!(
            r.facts.get("agent_version"),
            Some(&Value::Agent(AgentBuild::new(20, 0, 1, 690)))
        );
        // Same build again: the upgrade probes, finds it done and installs nothing.
        let r = d
            .run(request(
                Platform::Windows,
                "agent-upgrade",
                &[("to", "20.0.1.690")],
            ))
            .await;
        assert_eq!(r.status, ActionStatus::Ok);
        let sent = rec.sent.lock().expect("lock").clone();
        let (line, stdin) = &sent[0];
        assert!(line.starts_with("powershell.exe -NoProfile -NonInteractive"));
        assert!(stdin.is_none());
        let script = decode_powershell(line);
        assert!(script.contains("$p1 = 'C:\\Agent''s dir'"), "{script}");
        assert!(script.contains("GetPluginVersion"), "{script}");
        assert!(script.contains("$ErrorActionPreference = 'Stop'"));
        assert!(sent.iter().all(|(l, _)| !l.contains("pw-on-stdin-only")
            && !decode_powershell(l).contains("pw-on-stdin-only")));
    }

    #[tokio::test]
    async fn linux_upgrade_sends_the_password_on_stdin_and_uses_sudo() {
        let rec = Arc::new(Recorder {
            stdout: "20.0.0.100\n",
            sent: Mutex::new(Vec::new()),
        });
        let mut cfg = SshConfig::new();
        cfg.r#become = Become::Sudo;
        cfg.agent_password = Some(SecretString::from("pw-on-stdin-only".to_owned()));
        let d = SshDriver::with_transport(cfg, rec.clone());
        let r = d
            .run(request(
                Platform::Linux,
                "agent-upgrade",
                &[("to", "20.0.1-690")],
            ))
            .await;
        // The recorder keeps answering the old build, so the driver notices.
        assert!(
            matches!(&r.status, ActionStatus::Failed(m) if m.contains("reports build 20.0.0.100")),
            "{r:?}"
        );
        let sent = rec.sent.lock().expect("lock").clone();
        assert_eq!(sent.len(), 4, "{sent:?}");
        // Probes: unprivileged, no sudo, no stdin.
        for i in [0, 1] {
            assert!(
                sent[i]
                    .0
                    .starts_with("'timeout' '-k' '10' '120' 'sh' '-c' "),
                "{}",
                sent[i].0
            );
            assert!(sent[i].1.is_none());
        }
        // Upgrade: sudo, the host's own package file and the marker as quoted words, the
        // password only on stdin.
        let (line, stdin) = &sent[2];
        assert!(line.starts_with("'sudo' '-n' '--' 'timeout' '-k' '10' '3600' 'sh' '-c' "));
        assert!(
            line.ends_with(
                " 'medic-upgrade' '/opt/ds_agent' '/var/tmp/medic/packages' 'Agent-Core-RedHat_EL9-20.0.1-690.x86_64.rpm' '/run/medic/h@192.0.2.7.install'"
            ),
            "{line}"
        );
        assert!(!line.contains("pw-on-stdin-only"));
        assert_eq!(stdin.as_deref(), Some("pw-on-stdin-only"));

        // With a sudo password: sudo reads it as the first line of stdin, the agent's
        // password follows; neither is in the command line.
        let rec = Arc::new(Recorder {
            stdout: "20.0.0.100\n",
            sent: Mutex::new(Vec::new()),
        });
        let mut cfg = SshConfig::new();
        cfg.sudo_password = Some(SecretString::from("sudo-pw-on-stdin-only".to_owned()));
        cfg.agent_password = Some(SecretString::from("pw-on-stdin-only".to_owned()));
        let d = SshDriver::with_transport(cfg, rec.clone());
        let mut req = request(Platform::Linux, "agent-upgrade", &[("to", "20.0.1-690")]);
        if let Some(h) = req.host.as_mut() {
            h.r#become = Some(Become::Sudo);
        }
        let _ = d.run(req).await;
        let sent = rec.sent.lock().expect("lock").clone();
        let (line, stdin) = &sent[2];
        assert!(line.starts_with("'sh' '-c' 'IFS= read -r sp"), "{line}");
        assert!(line.contains("'medic-sudo' 'timeout' '-k' '10' '3600' 'sh' '-c' "));
        assert!(!line.contains("pw-on-stdin-only"));
        assert_eq!(
            stdin.as_deref(),
            Some("sudo-pw-on-stdin-only\npw-on-stdin-only\n")
        );
        // A probe that needs no root gets no password at all.
        assert!(sent[0].1.is_none() && sent[1].1.is_none());
    }

    #[tokio::test]
    async fn playbook_commands_pass_values_as_quoted_words() {
        let rec = Arc::new(Recorder {
            stdout: "20.0.1.690\n",
            sent: Mutex::new(Vec::new()),
        });
        let d = SshDriver::with_transport(SshConfig::new(), rec.clone());
        let hostile = "20.0.1.690; rm -rf / #";
        let args = [
            ("command", "dsa upgrade \"$1\""),
            ("check_command", "dsa version | head -n 1"),
            ("arg1", hostile),
        ];
        let r = d.run(request(Platform::Linux, "command", &args)).await;
        assert_eq!(r.status, ActionStatus::Ok);
        assert_eq!(r.facts.get("exit"), Some(&Value::Int(0)));
        let r = d
            .run(request(Platform::Linux, "command-probe", &args))
            .await;
        assert_eq!(
            r.facts.get("output"),
            Some(&Value::Str("20.0.1.690".to_owned()))
        );
        let sent = rec.sent.lock().expect("lock").clone();
        // A simple command runs without a shell; the value stays one word either way.
        assert_eq!(
            sent[0].0,
            "'timeout' '-k' '10' '3600' 'dsa' 'upgrade' '20.0.1.690; rm -rf / #'"
        );
        assert_eq!(
            sent[1].0,
            "'timeout' '-k' '10' '120' 'sh' '-c' 'dsa version | head -n 1' 'medic-command' '20.0.1.690; rm -rf / #'"
        );
        assert!(d.idempotent("command-probe") && !d.idempotent("command"));
        // POSIX sh only.
        let r = d.run(request(Platform::Windows, "command", &args)).await;
        assert!(matches!(&r.status, ActionStatus::Failed(m) if m.contains("not a Linux host")));
    }

    #[tokio::test]
    async fn hosts_without_platform_or_user_are_refused_before_sending() {
        let rec = Arc::new(Recorder {
            stdout: "",
            sent: Mutex::new(Vec::new()),
        });
        let mut cfg = SshConfig::new();
        cfg.default_user = None;
        let d = SshDriver::with_transport(cfg, rec.clone());
        let mut req = request(Platform::Linux, "agent-version", &[]);
        if let Some(h) = req.host.as_mut() {
            h.user = None;
        }
        let r = d.run(req).await;
        assert!(matches!(&r.status, ActionStatus::Failed(m) if m.contains("no ssh user")));
        let mut req = request(Platform::Linux, "agent-version", &[]);
        if let Some(h) = req.host.as_mut() {
            h.platform = None;
        }
        let r = d.run(req).await;
        assert!(matches!(&r.status, ActionStatus::Failed(m) if m.contains("manager")));
        assert!(rec.sent.lock().expect("lock").is_empty());
    }
}
