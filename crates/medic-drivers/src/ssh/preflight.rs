//! The host side of a pre-flight: small read-only checks, one host each, that a
//! `medic preflight` (and the start of a real `apply`) can run days before the window.
//! None of them changes anything on the host.

use medic_exec::PlanHost;
use medic_model::{AgentBuild, Become, Platform};

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

/// The files a Windows host's steps will look for in its package directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowsFilesCheck {
    /// The MSI each build's install would take.
    pub packages: Vec<String>,
    /// The certificates the prerequisites would import (empty when not asked for).
    pub certificates: Vec<String>,
    /// The SHA-2 update the prerequisites would install (`None` when SHA-2 is supported
    /// or the prerequisites were not asked for).
    pub sha2_update: Option<String>,
}

/// Whether a file name matches a PowerShell `-Filter` of the form `PREFIX*SUFFIX` (the
/// file system's filters are case-insensitive).
fn matches_filter(name: &str, prefix: &str, suffix: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.len() >= prefix.len() + suffix.len()
        && n.starts_with(&prefix.to_ascii_lowercase())
        && n.ends_with(&suffix.to_ascii_lowercase())
}

/// Checks the staged Windows files against what the install (`Agent-Core-Windows-<build>.*.msi`,
/// first match) and the prerequisites (`*.cer`, and `*kb4474419*.msu` where SHA-2 is
/// missing) look for (see `commands::windows`).
pub(super) fn check_windows_files(
    host: &str,
    dir: &str,
    sha2: bool,
    files: &[String],
    builds: &[AgentBuild],
    prereq: bool,
) -> Result<WindowsFilesCheck, String> {
    let mut problems = Vec::new();
    let mut packages = Vec::new();
    for b in builds {
        let prefix = format!("Agent-Core-Windows-{}.", b.package_form());
        let found: Vec<&String> = files
            .iter()
            .filter(|f| matches_filter(f, &prefix, ".msi"))
            .collect();
        match found.as_slice() {
            [one] => packages.push((*one).clone()),
            [] => problems.push(format!(
                "no agent package {prefix}*.msi for build {b} in {dir}"
            )),
            more => problems.push(format!(
                "{} packages for build {b} in {dir} ({}): the install takes the first one it lists; keep one",
                more.len(),
                more.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            )),
        }
    }
    let mut certificates = Vec::new();
    let mut sha2_update = None;
    if prereq {
        certificates = files
            .iter()
            .filter(|f| matches_filter(f, "", ".cer"))
            .cloned()
            .collect();
        if certificates.is_empty() {
            problems.push(format!(
                "no certificate files (*.cer) in {dir}: windows-prereq imports the root and intermediate certificates from there"
            ));
        }
        if !sha2 {
            match files
                .iter()
                .find(|f| f.to_ascii_lowercase().contains("kb4474419") && matches_filter(f, "", ".msu"))
            {
                Some(f) => sha2_update = Some(f.clone()),
                None => problems.push(format!(
                    "SHA-2 code signing support is missing and no *kb4474419*.msu is staged in {dir}"
                )),
            }
        }
    }
    if problems.is_empty() {
        Ok(WindowsFilesCheck {
            packages,
            certificates,
            sha2_update,
        })
    } else {
        Err(format!("{host}: {}", problems.join("; ")))
    }
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

    /// The files a Windows host's install of each of `builds` (and, with `prereq`, its
    /// `windows-prereq`) will look for in the package directory.
    pub async fn windows_files(
        &self,
        host: &PlanHost,
        builds: &[AgentBuild],
        prereq: bool,
    ) -> Result<WindowsFilesCheck, String> {
        let h = self.plan_host(host, "preflight").map_err(|e| msg(&e))?;
        if h.platform != Platform::Windows {
            return Err(format!("{}: not a Windows host", h.name));
        }
        let out = self
            .probe(&h, Op::WindowsFiles, "")
            .await
            .map_err(|e| msg(&e))?;
        let (sha2, files) = super::commands::parse_windows_files(&out)?;
        check_windows_files(
            &h.name,
            &self.config().windows.package_dir,
            sha2,
            &files,
            builds,
            prereq,
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> AgentBuild {
        s.parse().expect("build")
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    // Windows hosts cannot run here (no PowerShell behind the loopback sshd), so the
    // matching of what the Windows probe lists is tested on its own.
    #[test]
    fn windows_files_are_matched_as_the_install_and_the_prerequisites_look_for_them() {
        let files = names(&[
            "Agent-Core-Windows-20.0.1-690.x86_64.msi",
            "Agent-Core-Windows-20.0.1-700.x86_64.msi",
            "Agent-Core-Windows-20.0.1-700.i386.msi",
            "root-ca.CER",
            "windows6.1-kb4474419-v3-x64.msu",
        ]);
        let ok = check_windows_files("w", "D", false, &files, &[b("20.0.1-690")], true)
            .expect("all staged");
        assert_eq!(
            ok.packages,
            names(&["Agent-Core-Windows-20.0.1-690.x86_64.msi"])
        );
        assert_eq!(ok.certificates, names(&["root-ca.CER"]));
        assert_eq!(
            ok.sha2_update.as_deref(),
            Some("windows6.1-kb4474419-v3-x64.msu")
        );
        // Two MSIs of one build, a build with none.
        let e = check_windows_files(
            "w",
            "D",
            true,
            &files,
            &[b("20.0.1-700"), b("20.0.1-1")],
            false,
        )
        .expect_err("ambiguous and missing");
        assert!(e.contains("2 packages for build 20.0.1.700"), "{e}");
        assert!(
            e.contains("no agent package Agent-Core-Windows-20.0.1-1.*.msi"),
            "{e}"
        );
        // The prerequisites' files.
        let e = check_windows_files("w", "D", false, &names(&["x.txt"]), &[], true)
            .expect_err("no certificates, no SHA-2 update");
        assert!(e.contains("no certificate files (*.cer) in D"), "{e}");
        assert!(e.contains("no *kb4474419*.msu"), "{e}");
        // SHA-2 present: no update needed.
        let ok = check_windows_files("w", "D", true, &names(&["a.cer"]), &[], true).expect("ok");
        assert_eq!(ok.sha2_update, None);
        assert_eq!(
            crate::ssh::commands::parse_windows_files("sha2_supported: True\r\nfile: a.cer\r\n"),
            Ok((true, names(&["a.cer"])))
        );
        assert!(crate::ssh::commands::parse_windows_files("file: a.cer").is_err());
    }
}
