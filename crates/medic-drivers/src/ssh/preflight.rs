//! The host side of a pre-flight: small read-only checks, one host each, that a
//! `medic preflight` (and the start of a real `apply`) can run days before the window.
//! None of them changes anything on the host.

use medic_model::{AgentBuild, Become, Platform};
use medic_plan::PlanHost;

use super::commands::Op;
use super::driver::{OpError, SshDriver, msg};
use super::packages::Distro;
use super::transport::TransportError;

/// Can medic log in, and does it trust the host's key?
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reachability {
    /// Logged in and ran a command.
    Ok,
    /// The key is unknown or changed (the message names its fingerprint).
    HostKey(String),
    /// No TCP connection or no SSH handshake.
    Unreachable(String),
    /// Reached, key trusted, but the login was refused.
    Auth(String),
    /// Logged in, but the command failed.
    Failed(String),
}

/// What the host's own agent says, to compare with the inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveAgent {
    /// `0.0.0.0` when no agent is installed.
    pub build: AgentBuild,
    /// Whether the host listens on the Relay port; `None` where medic cannot tell
    /// (Windows).
    pub relay: Option<bool>,
}

/// The package an upgrade to a build would install on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageCheck {
    pub file: String,
    pub distro: Distro,
    /// Where the distribution came from: `os-release`, `inventory os`, or both.
    pub from: &'static str,
}

/// Whether privileged commands would run as root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivilegeCheck {
    pub r#become: Become,
    /// The effective user id a privileged command ran with.
    pub uid: u32,
}

fn reachability(e: OpError) -> Reachability {
    match e {
        OpError::Transport(t @ TransportError::HostKey(_)) => Reachability::HostKey(t.to_string()),
        OpError::Transport(t @ TransportError::Auth { .. }) => Reachability::Auth(t.to_string()),
        OpError::Transport(t) if t.nothing_done() => Reachability::Unreachable(t.to_string()),
        other => Reachability::Failed(msg(&other)),
    }
}

impl SshDriver {
    /// Connects (strict host key check, login) and runs the harmless boot-id probe.
    pub async fn check_reachable(&self, host: &PlanHost) -> Reachability {
        let h = match self.plan_host(host, "preflight") {
            Ok(h) => h,
            Err(e) => return Reachability::Failed(msg(&e)),
        };
        match self.probe(&h, Op::BootId, "").await {
            Ok(_) => Reachability::Ok,
            Err(e) => reachability(e),
        }
    }

    /// The live agent build (waiting, like every version read, for an install an earlier
    /// run left running) and, on Linux, the Relay role.
    pub async fn live_agent(&self, host: &PlanHost) -> Result<LiveAgent, String> {
        let h = self.plan_host(host, "preflight").map_err(|e| msg(&e))?;
        let build = self.agent_version(&h).await.map_err(|e| msg(&e))?;
        let relay = match h.platform {
            Platform::Windows => None,
            Platform::Linux => {
                let out = self
                    .probe(&h, Op::RelayRole, "")
                    .await
                    .map_err(|e| msg(&e))?;
                Some(super::commands::parse_yes_no(&out)?)
            }
        };
        Ok(LiveAgent { build, relay })
    }

    /// The package an upgrade of `host` to `to` would install, or why there is none (no
    /// file, two files, or a distribution that contradicts the inventory).
    pub async fn package_for(
        &self,
        host: &PlanHost,
        to: AgentBuild,
    ) -> Result<PackageCheck, String> {
        let h = self.plan_host(host, "preflight").map_err(|e| msg(&e))?;
        if h.platform == Platform::Windows {
            return Err(format!(
                "{}: the package check covers Linux hosts (a Windows host's install finds Agent-Core-Windows-{}.*.msi itself)",
                h.name,
                to.package_form()
            ));
        }
        let c = self.choose_package(&h, to).await.map_err(|e| msg(&e))?;
        Ok(PackageCheck {
            file: c.file,
            distro: c.distro,
            from: c.from,
        })
    }

    /// Runs `id -u` the way privileged commands run on `host` (its `become`, the sudo
    /// password on stdin) and wants 0.
    pub async fn check_privilege(&self, host: &PlanHost) -> Result<PrivilegeCheck, String> {
        let h = self.plan_host(host, "preflight").map_err(|e| msg(&e))?;
        if h.platform == Platform::Windows {
            return Err(format!(
                "{}: privilege escalation is checked on Linux hosts only",
                h.name
            ));
        }
        let out = self.probe(&h, Op::WhoAmI, "").await.map_err(|e| msg(&e))?;
        let uid: u32 = out
            .trim()
            .parse()
            .map_err(|_| format!("{}: `id -u` printed `{}`", h.name, out.trim()))?;
        if uid != 0 {
            return Err(format!(
                "{}: privileged commands would run as uid {uid}, not root (become: {}): set `become: sudo` in the inventory or pass --become sudo",
                h.name,
                h.r#become.as_str()
            ));
        }
        Ok(PrivilegeCheck {
            r#become: h.r#become,
            uid,
        })
    }
}
