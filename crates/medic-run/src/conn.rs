//! The connection settings of a run (where the keys, secrets and Manager are; never the
//! secrets themselves) and the clients and driver configurations built from them. Secrets
//! are read from their files or the environment, never from arguments.

use std::path::{Path, PathBuf};
use std::time::Duration;

use medic_model::Role;
use medic_plan::Plan;
use serde::{Deserialize, Serialize};

use crate::{Error, bad};

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
    pub fn poll_interval(&self) -> Result<Option<Duration>, Error> {
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

pub fn dsm_client_with(
    url: &str,
    ca: Option<&Path>,
    key_file: Option<&Path>,
    adjust: impl FnOnce(&mut medic_drivers::DsmConfig),
) -> Result<medic_drivers::DsmClient, Error> {
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

/// The `ssh` driver as the connection settings say (secrets from their files or the
/// environment).
/// Host keys accepted or refused are sent to `events` (the run's `RunEvent`s).
pub fn ssh_driver(
    c: &Conn,
    poll: Option<Duration>,
    events: medic_exec::DriverEvents,
) -> Result<medic_drivers::SshDriver, Error> {
    let mut cfg = ssh_config(c, poll)?;
    cfg.host_key_events = Some(medic_drivers::ssh::HostKeyEvents::new(events));
    medic_drivers::SshDriver::new(cfg)
        .map_err(|e| bad("ssh", e.to_string(), "check the SSH settings"))
}

/// The `ssh` driver's configuration from the connection settings.
pub fn ssh_config(c: &Conn, poll: Option<Duration>) -> Result<medic_drivers::SshConfig, Error> {
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
                .find(|h| h.role == Role::Manager)
                .map(|h| h.address.clone())
                .unwrap_or_default();
            format!("https://{m}:4119/api")
        }
    }
}

/// The Manager API client as the connection settings say.
pub fn manager_client(plan: &Plan, c: &Conn) -> Result<medic_drivers::DsmClient, Error> {
    manager_client_with(plan, c, |_| {})
}

/// [`manager_client`], with its configuration adjusted (timeouts, retries).
pub fn manager_client_with(
    plan: &Plan,
    c: &Conn,
    adjust: impl FnOnce(&mut medic_drivers::DsmConfig),
) -> Result<medic_drivers::DsmClient, Error> {
    dsm_client_with(
        &manager_url(plan, c),
        c.dsm_ca.as_deref(),
        c.dsm_api_key_file.as_deref(),
        adjust,
    )
}

/// `--become`, and the sudo and agent passwords: each from its file when one was given,
/// else from its environment variable; never from the command line.
fn ssh_privileges(cfg: &mut medic_drivers::SshConfig, c: &Conn) -> Result<(), Error> {
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
