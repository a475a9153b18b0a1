//! How the SSH driver is set up: who to log in as, which keys to trust, the time limits,
//! and where Deep Security lives on the hosts. Secrets (the key passphrase, the agent's
//! self-protection password) are `SecretString`s read from an environment variable or a
//! file, never from the command line; `Debug` shows them redacted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use medic_model::Become;
use secrecy::SecretString;

/// Why the SSH driver could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SshConfigError {
    #[error("the environment variable {0} is not set (or not valid UTF-8)")]
    MissingEnv(String),
    #[error("cannot read the secret file {path}: {source}")]
    SecretFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("max_connections must be at least 1")]
    NoConnections,
}

/// Reads a secret from the environment variable `name`.
pub fn secret_from_env(name: &str) -> Result<SecretString, SshConfigError> {
    std::env::var(name)
        .map(SecretString::from)
        .map_err(|_| SshConfigError::MissingEnv(name.to_owned()))
}

/// Reads a secret from a file: its first line, without the line end.
pub fn secret_from_file(path: &Path) -> Result<SecretString, SshConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| SshConfigError::SecretFile {
        path: path.to_path_buf(),
        source,
    })?;
    let line = text.lines().next().unwrap_or("");
    Ok(SecretString::from(line.to_owned()))
}

/// Where Deep Security is on Linux hosts (ds-domain.md §3).
#[derive(Clone, Debug)]
pub struct LinuxLayout {
    /// `dsa_control` and `dsa_query` live here (`/opt/ds_agent`).
    pub agent_dir: String,
    /// Where the operator staged the agent packages
    /// (`Agent-Core-<platform>-<MAJOR.MINOR.PATCH-BUILD>.<arch>.rpm|.deb`); every
    /// distribution's packages may share it (see `ssh::packages`).
    pub package_dir: String,
    /// Where an install leaves its marker (`<run_dir>/<host>@<address>.install`, see
    /// `commands::INSTALL_MARKER`): root-owned and cleared by a reboot.
    pub run_dir: String,
}

impl Default for LinuxLayout {
    fn default() -> Self {
        LinuxLayout {
            agent_dir: "/opt/ds_agent".to_owned(),
            package_dir: "/var/tmp/medic/packages".to_owned(),
            run_dir: "/run/medic".to_owned(),
        }
    }
}

/// Where Deep Security is on Windows hosts (ds-domain.md §3).
#[derive(Clone, Debug)]
pub struct WindowsLayout {
    /// `dsa_control.cmd` and `dsa_query.cmd` live here.
    pub agent_dir: String,
    /// Where the operator staged `Agent-Core-Windows-<build>.x86_64.msi`, the
    /// root/intermediate certificates (`*.cer`) and the SHA-2 update (`*kb4474419*.msu`).
    pub package_dir: String,
}

impl Default for WindowsLayout {
    fn default() -> Self {
        WindowsLayout {
            agent_dir: r"C:\Program Files\Trend Micro\Deep Security Agent".to_owned(),
            package_dir: r"C:\ProgramData\medic\packages".to_owned(),
        }
    }
}

/// Everything the SSH driver and its transport need. Build it with [`SshConfig::new`]
/// (the defaults) and set the fields that differ.
#[derive(Clone, Debug)]
pub struct SshConfig {
    /// The user for hosts whose inventory entry names none. `new()` takes `$USER` (then
    /// `$LOGNAME`).
    pub default_user: Option<String>,
    /// The operator's own file; `new()` takes `~/.ssh/known_hosts`. `None`: not read.
    pub user_known_hosts: Option<PathBuf>,
    /// The inventory-provided file. New keys (with `accept_new_host_keys`) are appended
    /// here, or to `user_known_hosts` when this is `None`.
    pub known_hosts: Option<PathBuf>,
    /// Trust a host that no file lists and record its key (OpenSSH's `accept-new`). A
    /// changed key is refused whatever this says.
    pub accept_new_host_keys: bool,
    /// Try the ssh-agent first.
    pub use_agent: bool,
    /// The agent's socket; `None`: `$SSH_AUTH_SOCK`.
    pub agent_socket: Option<PathBuf>,
    /// Private keys tried after the agent, in order; `new()` lists the usual
    /// `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa` (missing ones are skipped).
    pub identity_files: Vec<PathBuf>,
    /// The passphrase of the identity files, if they have one.
    pub passphrase: Option<SecretString>,
    /// TCP connect, SSH handshake and authentication together.
    pub connect_timeout: Duration,
    /// Deadline of a probe (a read-only command).
    pub probe_timeout: Duration,
    /// Deadline of an action's command (upgrade, reinstall, ...). The executor's step
    /// timeout may end it sooner.
    pub command_timeout: Duration,
    /// How often an idle or busy connection sends an SSH keepalive.
    pub keepalive_interval: Duration,
    /// Live connections at most (each is one OS thread).
    pub max_connections: usize,
    /// Bytes kept from the head and from the tail of each output stream.
    pub output_cap: usize,
    /// Run a Linux host's commands one after another in one long-lived `sh` per
    /// connection rather than one SSH session each: a session costs the host a login
    /// shell (~3 ms of its CPU), a command in the shared shell a fork. Commands that read
    /// stdin (secrets) always get their own session.
    pub shared_shell: bool,
    /// How privileged commands (`rpm`, `dpkg`, `dsa_control`, `dsa_query`) gain root on
    /// Linux hosts whose plan entry does not say (inventory `become:` wins).
    pub r#become: Become,
    /// The sudo password, for `become: sudo` where sudo asks for one. It travels on the
    /// command's stdin, never in its arguments; without it sudo runs with `-n`.
    pub sudo_password: Option<SecretString>,
    /// How long a rebooted host may take to come back with its agent answering.
    pub reboot_timeout: Duration,
    /// How long a security update may take to complete.
    pub update_timeout: Duration,
    /// Pause between polls (reboot, security update).
    pub poll_interval: Duration,
    /// Run the commands whose Deep Security form is not verified (bundle export/import,
    /// relay cache clear: "NOT FOUND" in ds-domain.md §3). Off by default: on a real fleet
    /// confirm them first.
    pub allow_unverified_commands: bool,
    /// The agent's self-protection password ("Local override requires password"), given
    /// to `dsa_control --selfprotect=0 -p` over stdin before an upgrade or reinstall.
    pub agent_password: Option<SecretString>,
    pub linux: LinuxLayout,
    pub windows: WindowsLayout,
    /// Where host keys accepted as new or refused are reported as run events; `None`:
    /// only logged.
    pub host_key_events: Option<super::known_hosts::HostKeyEvents>,
}

impl SshConfig {
    pub fn new() -> Self {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let ssh_dir = home.map(|h| h.join(".ssh"));
        SshConfig {
            default_user: std::env::var("USER")
                .ok()
                .or_else(|| std::env::var("LOGNAME").ok())
                .filter(|u| !u.is_empty()),
            user_known_hosts: ssh_dir.as_ref().map(|d| d.join("known_hosts")),
            known_hosts: None,
            accept_new_host_keys: false,
            use_agent: true,
            agent_socket: None,
            identity_files: ssh_dir
                .map(|d| {
                    ["id_ed25519", "id_ecdsa", "id_rsa"]
                        .iter()
                        .map(|f| d.join(f))
                        .collect()
                })
                .unwrap_or_default(),
            passphrase: None,
            connect_timeout: Duration::from_secs(20),
            probe_timeout: Duration::from_secs(120),
            command_timeout: Duration::from_secs(3600),
            keepalive_interval: Duration::from_secs(15),
            max_connections: 64,
            output_cap: 64 * 1024,
            shared_shell: true,
            r#become: Become::None,
            sudo_password: None,
            reboot_timeout: Duration::from_secs(15 * 60),
            update_timeout: Duration::from_secs(30 * 60),
            poll_interval: Duration::from_secs(10),
            allow_unverified_commands: false,
            agent_password: None,
            linux: LinuxLayout::default(),
            windows: WindowsLayout::default(),
            host_key_events: None,
        }
    }

    /// The known_hosts files read, in order.
    pub fn known_hosts_files(&self) -> Vec<PathBuf> {
        self.user_known_hosts
            .iter()
            .chain(self.known_hosts.iter())
            .cloned()
            .collect()
    }

    /// The file new host keys are appended to.
    pub fn learn_file(&self) -> Option<&Path> {
        self.known_hosts
            .as_deref()
            .or(self.user_known_hosts.as_deref())
    }
}

impl Default for SshConfig {
    fn default() -> Self {
        SshConfig::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;

    #[test]
    fn secrets_are_redacted_and_read_from_files() {
        let dir = tempfile::tempdir().expect("test value");
        let p = dir.path().join("pass");
        std::fs::write(&p, "hunter2\nignored\n").expect("test value");
        let mut cfg = SshConfig::new();
        cfg.passphrase = Some(secret_from_file(&p).expect("test value"));
        assert_eq!(
            cfg.passphrase.as_ref().expect("test value").expose_secret(),
            "hunter2"
        );
        assert!(!format!("{cfg:?}").contains("hunter2"));
        assert!(secret_from_env("MEDIC_SURELY_UNSET_VARIABLE_42").is_err());
    }
}
