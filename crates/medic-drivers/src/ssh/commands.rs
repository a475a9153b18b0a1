//! Every Deep Security command medic runs over SSH, in one table per platform, each with
//! where it comes from in `ds-domain.md` (§ numbers below), and the
//! parsers of their output. Nothing else in the driver knows a command line.
//!
//! Sources: **[src]** the command is stated by the cited section; **[inf]** inferred
//! (stated tools, assumed flags or values): confirm on a real agent; **NOT FOUND** the
//! vendor procedure is not public: the command is a placeholder that a real agent rejects
//! harmlessly, and the driver runs it only with `allow_unverified_commands`.
//!
//! Arguments never enter a script's text. Linux scripts are run as
//! `timeout -k 10 SECS sh -c SCRIPT medic-OP "$1" "$2" "$3"` with every word POSIX-quoted;
//! Windows scripts get `$p1 $p2 $p3` assigned from PowerShell-quoted literals, and the
//! whole script travels as `-EncodedCommand`. The arguments are always:
//! `$1`/`$p1` the agent directory, `$2`/`$p2` the package directory, `$3`/`$p3` the op's
//! own argument (on Linux the package file chosen for the host (`super::packages`) for an
//! install, on Windows the build in package form `20.0.1-690`; or a bundle name), and on
//! Linux `$4` the host's install marker (see [`INSTALL_MARKER`]).
//! Scripts that take the self-protection password read it as one line of stdin.

/// How an install survives the death of the medic that started it, and how a later run
/// waits for it instead of racing it (issue: a resume that re-checked the version while a
/// killed run's `rpm -Uvh` still ran saw the old build, installed again, and the package
/// lock refused). The install script writes `PID STARTTIME` of its own shell (alive until
/// the package manager returns) to the marker `$4` before it starts the package manager,
/// runs the package manager with its output in `$4.log` and SIGHUP/SIGPIPE ignored (so a
/// closed SSH channel neither kills nor interrupts it), and removes the marker when it
/// returns. The version probe prints `medic: busy PID` while a marker names a live
/// process (the start time guards against a reused PID), and the driver waits. The marker
/// lives in a root-owned directory (`/run/medic` by default: cleared by a reboot, which
/// also ends any install).
pub const INSTALL_MARKER: &str = "<run_dir>/<host>@<address>.install";

use std::collections::BTreeMap;
use std::fmt;

use medic_model::AgentBuild;

/// One thing the driver asks a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    BootId,
    AgentVersion,
    PendingReboot,
    /// `GetAgentStatus` then `GetComponentInfo`: agent state, Anti-Malware, security update.
    Status,
    /// `dsa_control -m`: heartbeat now, which makes the agent update its components.
    Heartbeat,
    Upgrade,
    Reinstall,
    WindowsCerts,
    WindowsPrereq,
    Reboot,
    BundleExport,
    BundleImport,
    BundleStatus,
    CacheClear,
    /// `/etc/os-release`, `uname -m` and the `Agent-Core-*` files staged for the host.
    PackageFacts,
    /// Whether the host listens on the Relay port (pre-flight).
    RelayRole,
    /// `id -u` run the way privileged commands run (pre-flight).
    WhoAmI,
    /// Windows: SHA-2 support and the names of the files staged in the package directory
    /// (pre-flight: the MSI, the certificates and the SHA-2 update the driver will look for).
    WindowsFiles,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::BootId => "boot-id",
            Op::AgentVersion => "agent-version",
            Op::PendingReboot => "pending-reboot",
            Op::Status => "status",
            Op::Heartbeat => "heartbeat",
            Op::Upgrade => "upgrade",
            Op::Reinstall => "reinstall",
            Op::WindowsCerts => "windows-certs",
            Op::WindowsPrereq => "windows-prereq",
            Op::Reboot => "reboot",
            Op::BundleExport => "bundle-export",
            Op::BundleImport => "bundle-import",
            Op::BundleStatus => "bundle-status",
            Op::CacheClear => "cache-clear",
            Op::PackageFacts => "package-facts",
            Op::RelayRole => "relay-role",
            Op::WhoAmI => "whoami",
            Op::WindowsFiles => "windows-files",
        })
    }
}

/// Where a command comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Src(&'static str),
    Inferred(&'static str),
    NotFound(&'static str),
}

#[derive(Clone, Copy, Debug)]
pub struct Command {
    pub script: &'static str,
    pub source: Source,
    /// Needs root (run through `sudo -n` when the driver is configured so).
    pub privileged: bool,
    /// Reads the self-protection password from stdin.
    pub takes_password: bool,
    /// Reachable on this platform at all.
    pub available: bool,
}

const fn cmd(script: &'static str, source: Source, privileged: bool) -> Command {
    Command {
        script,
        source,
        privileged,
        takes_password: false,
        available: true,
    }
}

const NOT_ON_LINUX: Command = Command {
    script: "",
    source: Source::Inferred("windows only"),
    privileged: false,
    takes_password: false,
    available: false,
};

/// `busy MARKER`: true while the marker names a live process (same PID *and* start time,
/// field 22 of `/proc/PID/stat`); `starttime PID` prints that field.
macro_rules! marker_functions {
    () => {
        r#"starttime() {
  s=
  read -r s < "/proc/$1/stat" 2>/dev/null || return 1
  s=${s##*) }
  set -f; set -- $s; set +f
  printf '%s\n' "${20:-}"
}
busy() {
  [ -r "$1" ] || return 1
  pid= start=
  read -r pid start < "$1" 2>/dev/null || return 1
  [ -n "$pid" ] && [ -n "$start" ] || return 1
  now=$(starttime "$pid") || return 1
  [ "$now" = "$start" ]
}
"#
    };
}

/// The install of the package file `$3` (chosen by the driver for this host) from `$2`,
/// with the install marker `$4` (see [`INSTALL_MARKER`]): self-protection off when a
/// password came on stdin, then `$install` (`rpm -Uvh` or `dpkg -i` words set by the op).
macro_rules! linux_install {
    ($rpm:literal, $deb:literal) => {
        concat!(
            marker_functions!(),
            r#"pw=
IFS= read -r pw || true
case $3 in ''|*/*|.*) echo "bad package file name: $3" >&2; exit 3 ;; esac
case $3 in *.rpm) kind=rpm ;; *.deb) kind=deb ;; *) echo "not an rpm or deb package: $3" >&2; exit 3 ;; esac
pkg=$2/$3
[ -f "$pkg" ] || { echo "no agent package $pkg" >&2; exit 3; }
if busy "$4"; then read -r other _ < "$4"; echo "an agent install started earlier (pid $other) is still running" >&2; exit 4; fi
if [ -n "$pw" ]; then
  "$1/dsa_control" --selfprotect=0 -p "$pw" >/dev/null || { echo 'cannot turn agent self-protection off (dsa_control --selfprotect=0)' >&2; exit 3; }
fi
mkdir -p "${4%/*}" && printf '%s %s\n' "$$" "$(starttime "$$")" > "$4" || { echo "cannot write the install marker $4" >&2; exit 3; }
trap '' HUP PIPE
case $kind in rpm) "#,
            $rpm,
            r#" "$pkg" ;; *) "#,
            $deb,
            r#" "$pkg" ;; esac > "$4.log" 2>&1
rc=$?
rm -f "$4"
cat "$4.log"
exit $rc"#
        )
    };
}

/// Self-protection off when a password came on stdin, then the staged MSI for build `$p3`
/// in `$msi` and a log path in `$log`.
macro_rules! windows_package_prelude {
    () => {
        r#"$pw = [Console]::In.ReadLine()
if ($pw) {
  & (Join-Path $p1 'dsa_control.cmd') --selfprotect=0 -p $pw | Out-Null
  if ($LASTEXITCODE -ne 0) { throw 'cannot turn agent self-protection off (dsa_control --selfprotect=0)' }
}
$msi = Get-ChildItem -LiteralPath $p2 -Filter ('Agent-Core-Windows-' + $p3 + '.*.msi') | Select-Object -First 1
if (-not $msi) { throw ('no agent package for build ' + $p3 + ' in ' + $p2) }
$log = Join-Path $env:TEMP ('medic-agent-' + $p3 + '.log')
"#
    };
}

/// `$sha2`, the staged certificates `$certs` and the names of those not yet trusted in
/// `$missing`.
macro_rules! windows_certs_prelude {
    () => {
        r#"$sha2 = ([Environment]::OSVersion.Version -ge [Version]'6.2') -or ($null -ne (Get-HotFix -Id KB4474419 -ErrorAction SilentlyContinue))
$certs = @(Get-ChildItem -LiteralPath $p2 -Filter *.cer)
if ($certs.Count -eq 0) { throw ('no certificate files (*.cer) staged in ' + $p2) }
$missing = @()
foreach ($c in $certs) {
  $x = New-Object System.Security.Cryptography.X509Certificates.X509Certificate2($c.FullName)
  if (-not (Test-Path ('Cert:\LocalMachine\Root\' + $x.Thumbprint)) -and -not (Test-Path ('Cert:\LocalMachine\CA\' + $x.Thumbprint))) { $missing += $c.Name }
}
"#
    };
}

/// The Linux table.
pub fn linux(op: Op) -> Command {
    match op {
        // [inf] the kernel's id of the current boot; not a Deep Security command.
        Op::BootId => cmd(
            "cat /proc/sys/kernel/random/boot_id",
            Source::Inferred("Linux kernel interface"),
            false,
        ),
        // [src] §3 "Agent version, Linux": rpm -q --qf '%{VERSION}' / '%{RELEASE}' ds_agent,
        // dpkg-query -W -f='${Version}' ds-agent.
        Op::AgentVersion => cmd(
            concat!(
                marker_functions!(),
                r#"if busy "$4"; then read -r pid _ < "$4"; echo "medic: busy $pid"; exit 0; fi
if command -v rpm >/dev/null 2>&1 && rpm -q ds_agent >/dev/null 2>&1; then
  rpm -q --qf '%{VERSION}.%{RELEASE}\n' ds_agent
elif command -v dpkg-query >/dev/null 2>&1 && dpkg-query -W ds-agent >/dev/null 2>&1; then
  dpkg-query -W -f='${Version}\n' ds-agent
else
  echo none
fi"#
            ),
            Source::Src("§3 Agent version, Linux"),
            false,
        ),
        // [inf] Debian's /run/reboot-required, RHEL's `needs-restarting -r` (exit 1 = reboot
        // needed); ds-domain.md covers only the Windows reboot (§5 "Windows reboot required").
        Op::PendingReboot => cmd(
            r#"if [ -e /run/reboot-required ] || [ -e /var/run/reboot-required ]; then echo yes
elif command -v needs-restarting >/dev/null 2>&1; then
  if needs-restarting -r >/dev/null 2>&1; then echo no; else echo yes; fi
else echo no
fi"#,
            Source::Inferred("distribution reboot flags"),
            false,
        ),
        // [src] §3 dsa_query: -c GetAgentStatus (agentState, auStatus), -c GetComponentInfo
        // (Component.AM.mode, Component.AM.driverOffline). [inf] the values of auStatus.
        Op::Status => cmd(
            r#"if [ ! -x "$1/dsa_query" ]; then echo 'medic: no agent'; exit 0; fi
"$1/dsa_query" -c GetAgentStatus && exec "$1/dsa_query" -c GetComponentInfo"#,
            Source::Src("§3 dsa_query"),
            true,
        ),
        // [src] §3 dsa_control: "-m sends a heartbeat now"; §5 "Security update run
        // (scheduled task or -m)".
        Op::Heartbeat => cmd(
            r#"exec "$1/dsa_control" -m"#,
            Source::Src("§3 dsa_control -m"),
            true,
        ),
        // [src] §3 "Install/upgrade commands": rpm -ihv (seen), dpkg -i; [inf] rpm -Uvh
        // for an upgrade; §3 self-protection must be off to upgrade (--selfprotect=0, -p).
        Op::Upgrade => Command {
            takes_password: true,
            ..cmd(
                linux_install!("rpm -Uvh", "dpkg -i"),
                Source::Src("§3 Install/upgrade commands"),
                true,
            )
        },
        // [inf] the same packages installed again over themselves (the advisory's "reinstall
        // the Relay", §1.3 KA-0012761).
        Op::Reinstall => Command {
            takes_password: true,
            ..cmd(
                linux_install!("rpm -Uvh --replacepkgs", "dpkg -i"),
                Source::Inferred("§1.3 reinstall workaround; package commands of §3"),
                true,
            )
        },
        Op::WindowsCerts | Op::WindowsPrereq | Op::WindowsFiles => NOT_ON_LINUX,
        // [inf] a plain reboot; the driver then waits for a new boot id and the agent.
        Op::Reboot => cmd(
            "exec shutdown -r now",
            Source::Inferred("coreutils/systemd"),
            true,
        ),
        // NOT FOUND §3 "Offline bundle ... NOT FOUND; the purpose of dsa_control -b is
        // unverified": placeholder.
        Op::BundleExport => cmd(
            r#"exec "$1/dsa_control" -b "$3""#,
            Source::NotFound("§3 offline bundle procedure NOT FOUND"),
            true,
        ),
        // NOT FOUND §3 (see above): placeholder.
        Op::BundleImport => cmd(
            r#"exec "$1/dsa_control" --import-bundle "$3""#,
            Source::NotFound("§3 offline bundle procedure NOT FOUND"),
            true,
        ),
        // NOT FOUND §3 (see above): placeholder.
        Op::BundleStatus => cmd(
            r#"exec "$1/dsa_query" -c GetBundleStatus "$3""#,
            Source::NotFound("§3 offline bundle procedure NOT FOUND"),
            true,
        ),
        // NOT FOUND §3 "Relay cache clearing ... NOT FOUND": placeholder.
        Op::CacheClear => cmd(
            r#"exec "$1/dsa_control" --clear-relay-cache"#,
            Source::NotFound("§3 relay cache clearing NOT FOUND"),
            true,
        ),
        // [inf] the os-release file (freedesktop.org), `uname -m`, and the staged files;
        // the name mapping is in `super::packages`.
        Op::PackageFacts => cmd(
            r#"echo '[os-release]'
cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null || true
echo '[arch]'
uname -m
echo '[packages]'
for f in "$2"/Agent-Core-*; do
  [ -f "$f" ] && printf '%s\n' "${f##*/}"
done
true"#,
            Source::Inferred("os-release(5), uname; package names of §2.8/§3"),
            false,
        ),
        // [inf] §3 Ports: 4122 is the Relay's port ("partly from a third-party table"): a
        // host listening on it is taken as a Relay.
        Op::RelayRole => cmd(
            r#"if command -v ss >/dev/null 2>&1; then l=$(ss -Hltn 2>/dev/null)
else l=$(netstat -ltn 2>/dev/null)
fi
case $l in *:4122\ *) echo yes ;; *) echo no ;; esac"#,
            Source::Inferred("§3 Ports (4122 relay)"),
            false,
        ),
        // [inf] not a Deep Security command: proves privileged commands get root.
        Op::WhoAmI => cmd("id -u", Source::Inferred("coreutils id"), true),
    }
}

/// Windows: PowerShell over Windows OpenSSH. `$ErrorActionPreference = 'Stop'` and a
/// catch-all that prints the message on stderr and exits 1 are added around each script.
pub fn windows(op: Op) -> Command {
    match op {
        // [inf] WMI's last boot time stands in for Linux's boot id.
        Op::BootId => cmd(
            "(Get-CimInstance -ClassName Win32_OperatingSystem).LastBootUpTime.ToUniversalTime().ToString('o')",
            Source::Inferred("WMI Win32_OperatingSystem"),
            false,
        ),
        // [src] §3 "Agent version, Windows": "Use dsa_query.cmd -c GetPluginVersion"
        // (PluginVersion.core).
        Op::AgentVersion => cmd(
            r#"$q = Join-Path $p1 'dsa_query.cmd'
if (-not (Test-Path -LiteralPath $q)) { 'none'; exit 0 }
& $q -c GetPluginVersion
exit $LASTEXITCODE"#,
            Source::Src("§3 Agent version, Windows"),
            false,
        ),
        // [inf] the three places Windows records a pending reboot; §5 "Windows reboot required".
        Op::PendingReboot => cmd(
            r#"$p = (Test-Path 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending') -or (Test-Path 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired') -or ($null -ne (Get-ItemProperty -Path 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager' -Name PendingFileRenameOperations -ErrorAction SilentlyContinue))
if ($p) { 'yes' } else { 'no' }"#,
            Source::Inferred("§5 Windows reboot required"),
            false,
        ),
        // [src] §3 dsa_query.cmd -c GetAgentStatus / -c GetComponentInfo.
        Op::Status => cmd(
            r#"$q = Join-Path $p1 'dsa_query.cmd'
if (-not (Test-Path -LiteralPath $q)) { 'medic: no agent'; exit 0 }
& $q -c GetAgentStatus
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
& $q -c GetComponentInfo
exit $LASTEXITCODE"#,
            Source::Src("§3 dsa_query"),
            false,
        ),
        // [src] §3 dsa_control -m.
        Op::Heartbeat => cmd(
            r#"& (Join-Path $p1 'dsa_control.cmd') -m
exit $LASTEXITCODE"#,
            Source::Src("§3 dsa_control -m"),
            false,
        ),
        // [src] §3 msiexec /i Agent-Core-Windows-<build>.x86_64.msi /qn ADDLOCAL=ALL /l*v <log>;
        // self-protection off first (§3); [inf] 3010 = success, reboot required.
        Op::Upgrade => Command {
            takes_password: true,
            ..cmd(
                concat!(
                    windows_package_prelude!(),
                    r#"$r = Start-Process -FilePath msiexec.exe -ArgumentList @('/i', ('"' + $msi.FullName + '"'), '/qn', 'ADDLOCAL=ALL', '/l*v', ('"' + $log + '"')) -Wait -PassThru
if ($r.ExitCode -ne 0 -and $r.ExitCode -ne 3010) { throw ('msiexec exit code ' + $r.ExitCode + ' (log: ' + $log + ')') }"#
                ),
                Source::Src("§3 Install/upgrade commands (msiexec)"),
                false,
            )
        },
        // [inf] an MSI reinstall over the installed product (REINSTALL=ALL), which keeps the
        // agent's activation; §1.3 KA-0006984: the fix for "Anti-malware engine offline".
        Op::Reinstall => Command {
            takes_password: true,
            ..cmd(
                concat!(
                    windows_package_prelude!(),
                    r#"$r = Start-Process -FilePath msiexec.exe -ArgumentList @('/i', ('"' + $msi.FullName + '"'), '/qn', 'ADDLOCAL=ALL', 'REINSTALL=ALL', 'REINSTALLMODE=vamus', '/l*v', ('"' + $log + '"')) -Wait -PassThru
if ($r.ExitCode -ne 0 -and $r.ExitCode -ne 3010) { throw ('msiexec exit code ' + $r.ExitCode + ' (log: ' + $log + ')') }"#
                ),
                Source::Inferred("§1.3 KA-0006984 reinstall; msiexec of §3"),
                false,
            )
        },
        // [src] §1.3 KA-0006984: the root/intermediate certificates of the code-signing
        // chain must be in the Local Computer store; §3 "Windows needs SHA-2 code-signing
        // support". [inf] SHA-2 support = Windows 8 / 2012 or later, or KB4474419; the
        // certificates are the *.cer files the operator staged.
        Op::WindowsCerts => cmd(
            concat!(
                windows_certs_prelude!(),
                r#"'sha2_supported: ' + $sha2
'root_certs_present: ' + ($missing.Count -eq 0)
if ($missing.Count) { 'missing: ' + ($missing -join ', ') }"#
            ),
            Source::Src("§1.3 KA-0006984, §3 SHA-2"),
            false,
        ),
        // [src] §1.3 KA-0006984: import the certificates into the Local Computer store.
        // [inf] Import-Certificate, self-signed ones to Root and the others to CA; the SHA-2
        // update installed with wusa from the staged .msu.
        Op::WindowsPrereq => cmd(
            concat!(
                windows_certs_prelude!(),
                r#"foreach ($c in $certs) {
  $x = New-Object System.Security.Cryptography.X509Certificates.X509Certificate2($c.FullName)
  $store = if ($x.Subject -eq $x.Issuer) { 'Root' } else { 'CA' }
  Import-Certificate -FilePath $c.FullName -CertStoreLocation ('Cert:\LocalMachine\' + $store) | Out-Null
}
if (-not $sha2) {
  $msu = Get-ChildItem -LiteralPath $p2 -Filter '*kb4474419*.msu' | Select-Object -First 1
  if (-not $msu) { throw ('SHA-2 code signing support is missing and no *kb4474419*.msu is staged in ' + $p2) }
  $r = Start-Process -FilePath wusa.exe -ArgumentList @($msu.FullName, '/quiet', '/norestart') -Wait -PassThru
  if ($r.ExitCode -ne 0 -and $r.ExitCode -ne 3010 -and $r.ExitCode -ne 2359302) { throw ('wusa exit code ' + $r.ExitCode) }
}"#
            ),
            Source::Src("§1.3 KA-0006984"),
            false,
        ),
        // [inf] read-only: the SHA-2 test of `windows_certs_prelude!` and the staged file
        // names, which the pre-flight matches with the filters the install and the
        // prerequisites use (`Agent-Core-Windows-<build>.*.msi`, `*.cer`, `*kb4474419*.msu`).
        Op::WindowsFiles => cmd(
            r#"$sha2 = ([Environment]::OSVersion.Version -ge [Version]'6.2') -or ($null -ne (Get-HotFix -Id KB4474419 -ErrorAction SilentlyContinue))
'sha2_supported: ' + $sha2
if (Test-Path -LiteralPath $p2) { foreach ($f in @(Get-ChildItem -LiteralPath $p2 -File)) { 'file: ' + $f.Name } }"#,
            Source::Inferred("§1.3 KA-0006984, §3 SHA-2 and msiexec package names"),
            false,
        ),
        // [inf] §5 "Windows reboot required".
        Op::Reboot => cmd(
            "Restart-Computer -Force",
            Source::Inferred("§5 Windows reboot required"),
            false,
        ),
        // NOT FOUND §3: placeholders, as on Linux.
        Op::BundleExport => cmd(
            r#"& (Join-Path $p1 'dsa_control.cmd') -b $p3
exit $LASTEXITCODE"#,
            Source::NotFound("§3 offline bundle procedure NOT FOUND"),
            false,
        ),
        Op::BundleImport => cmd(
            r#"& (Join-Path $p1 'dsa_control.cmd') --import-bundle $p3
exit $LASTEXITCODE"#,
            Source::NotFound("§3 offline bundle procedure NOT FOUND"),
            false,
        ),
        Op::BundleStatus => cmd(
            r#"& (Join-Path $p1 'dsa_query.cmd') -c GetBundleStatus $p3
exit $LASTEXITCODE"#,
            Source::NotFound("§3 offline bundle procedure NOT FOUND"),
            false,
        ),
        Op::CacheClear => cmd(
            r#"& (Join-Path $p1 'dsa_control.cmd') --clear-relay-cache
exit $LASTEXITCODE"#,
            Source::NotFound("§3 relay cache clearing NOT FOUND"),
            false,
        ),
        // Windows has one package per build (`Agent-Core-Windows-<build>.<arch>.msi`, §3):
        // the install script finds it itself.
        Op::PackageFacts | Op::RelayRole | Op::WhoAmI => Command {
            available: false,
            ..NOT_ON_LINUX
        },
    }
}

/// Wraps a Windows script: strict errors, the arguments, a catch-all.
pub fn windows_script(body: &str, assignments: &str) -> String {
    format!(
        "$ErrorActionPreference = 'Stop'\n$ProgressPreference = 'SilentlyContinue'\n{assignments}try {{\n{body}\n}} catch {{\n[Console]::Error.WriteLine($_.Exception.Message)\nexit 1\n}}\n"
    )
}

// ---------------------------------------------------------------------------------------
// Parsers.

/// `Key: value` lines (dsa_query's form), last one wins.
fn fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The agent build from [`Op::AgentVersion`]: `none`, `20.0.1.7380`, `20.0.1-19250`,
/// `1:20.0.1-19250` (a dpkg epoch) or `PluginVersion.core: 20.0.1.7380`.
pub fn parse_agent_version(text: &str) -> Result<AgentBuild, String> {
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .ok_or_else(|| "the version command printed nothing".to_owned())?;
    if line == "none" {
        return Ok(AgentBuild::NONE);
    }
    let v = line
        .strip_prefix("PluginVersion.core:")
        .unwrap_or(line)
        .trim();
    let v = match v.split_once(':') {
        Some((epoch, rest)) if epoch.chars().all(|c| c.is_ascii_digit()) => rest,
        _ => v,
    };
    v.parse::<AgentBuild>()
        .map_err(|e| format!("cannot read the agent build from `{line}`: {e}"))
}

pub fn parse_yes_no(text: &str) -> Result<bool, String> {
    match text.trim() {
        "yes" => Ok(true),
        "no" => Ok(false),
        other => Err(format!("expected yes or no, got `{other}`")),
    }
}

pub fn parse_boot_id(text: &str) -> Result<String, String> {
    let id = text.trim();
    if id.is_empty() {
        Err("the boot id command printed nothing".to_owned())
    } else {
        Ok(id.to_owned())
    }
}

/// The last security update as the agent reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdateState {
    Current,
    Failed(String),
    /// Running, not started since the last upgrade, or unknown.
    NotCurrent(String),
}

/// What [`Op::Status`] tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentStatus {
    pub installed: bool,
    /// `active`, `warning`, `error`, `inactive`, or the agent's own word.
    pub agent_status: String,
    /// `online`, `offline` or `off` (the module is not turned on).
    pub antimalware: String,
    pub update: UpdateState,
}

pub fn parse_status(text: &str) -> AgentStatus {
    if text.lines().any(|l| l.trim() == "medic: no agent") {
        return AgentStatus {
            installed: false,
            agent_status: "inactive".to_owned(),
            antimalware: "offline".to_owned(),
            update: UpdateState::NotCurrent("no agent installed".to_owned()),
        };
    }
    let f = fields(text);
    let get = |k: &str| f.get(k).map(|v| v.to_ascii_lowercase());
    let agent_status = match get("AgentStatus.agentState").as_deref() {
        Some("green") => "active".to_owned(),
        Some("yellow" | "orange") => "warning".to_owned(),
        Some("red") => "error".to_owned(),
        Some(other) => other.to_owned(),
        None => "unknown".to_owned(),
    };
    let offline = matches!(
        get("Component.AM.driverOffline").as_deref(),
        Some("true" | "1" | "yes")
    );
    let antimalware = match get("Component.AM.mode").as_deref() {
        Some("on") if !offline => "online",
        Some("on") => "offline",
        Some(_) | None if offline => "offline",
        _ => "off",
    }
    .to_owned();
    let raw = f.get("AgentStatus.auStatus").cloned().unwrap_or_default();
    let lower = raw.to_ascii_lowercase();
    // ds-domain.md §3 names the field, not its values. Real agents print a number; public
    // scripts take `2` as a healthy agent.
    let update = match raw.parse::<i64>() {
        // inferred: 2 = the last ActiveUpdate succeeded (public scripts; not in ds-domain.md).
        Ok(2) => UpdateState::Current,
        // inferred: no other number is documented anywhere medic could check.
        Ok(n) => UpdateState::NotCurrent(format!(
            "auStatus {n} is not a value medic can verify (unverified; the Manager's view decides)"
        )),
        // A failure reported in words is believed: reading it as a failure is never unsafe.
        Err(_) if lower.starts_with("fail") || lower.starts_with("error") => {
            let msg = raw
                .split_once(':')
                .map(|(_, m)| m.trim().to_owned())
                .filter(|m| !m.is_empty())
                .unwrap_or(raw.clone());
            UpdateState::Failed(msg)
        }
        Err(_) if raw.is_empty() => {
            UpdateState::NotCurrent("the agent reports no security update status".to_owned())
        }
        // Any other word (including "success") is no documented output of a real agent.
        Err(_) => UpdateState::NotCurrent(format!(
            "auStatus `{raw}` is not a value medic can verify (unverified)"
        )),
    };
    AgentStatus {
        installed: true,
        agent_status,
        antimalware,
        update,
    }
}

/// `sha2_supported` and `root_certs_present` from [`Op::WindowsCerts`].
pub fn parse_certs(text: &str) -> Result<(bool, bool), String> {
    let f = fields(text);
    let b = |k: &str| match f.get(k).map(|v| v.to_ascii_lowercase()).as_deref() {
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        _ => Err(format!("the certificate check printed no `{k}`")),
    };
    Ok((b("sha2_supported")?, b("root_certs_present")?))
}

/// What [`Op::WindowsFiles`] saw: SHA-2 support and the staged file names.
pub fn parse_windows_files(text: &str) -> Result<(bool, Vec<String>), String> {
    let mut sha2 = None;
    let mut files = Vec::new();
    for l in text.lines() {
        let l = l.trim_end_matches('\r');
        if let Some(v) = l.strip_prefix("sha2_supported: ") {
            sha2 = match v.trim().to_ascii_lowercase().as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            };
        } else if let Some(f) = l.strip_prefix("file: ") {
            files.push(f.to_owned());
        }
    }
    let sha2 = sha2.ok_or_else(|| "the file check printed no `sha2_supported`".to_owned())?;
    Ok((sha2, files))
}

/// `bundle_exported` and `bundle_imported` from [`Op::BundleStatus`].
pub fn parse_bundle_status(text: &str) -> Result<(bool, bool), String> {
    let f = fields(text);
    let b = |k: &str| match f.get(k).map(String::as_str) {
        Some("yes") => Ok(true),
        Some("no") => Ok(false),
        _ => Err(format!("the bundle status printed no `{k}`")),
    };
    Ok((b("Bundle.exported")?, b("Bundle.imported")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Op; 18] = [
        Op::BootId,
        Op::AgentVersion,
        Op::PendingReboot,
        Op::Status,
        Op::Heartbeat,
        Op::Upgrade,
        Op::Reinstall,
        Op::WindowsCerts,
        Op::WindowsPrereq,
        Op::Reboot,
        Op::BundleExport,
        Op::BundleImport,
        Op::BundleStatus,
        Op::CacheClear,
        Op::PackageFacts,
        Op::RelayRole,
        Op::WhoAmI,
        Op::WindowsFiles,
    ];

    #[test]
    fn every_linux_script_parses_as_posix_sh() {
        for op in ALL {
            let c = linux(op);
            if !c.available {
                continue;
            }
            let out = std::process::Command::new("/bin/sh")
                .arg("-n")
                .arg("-c")
                .arg(c.script)
                .output()
                .expect("test value");
            assert!(
                out.status.success(),
                "{op}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn windows_has_every_op_and_unverified_ones_are_marked() {
        for op in ALL {
            assert_eq!(
                windows(op).available,
                !matches!(op, Op::PackageFacts | Op::RelayRole | Op::WhoAmI),
                "{op}"
            );
            let unverified = matches!(
                op,
                Op::BundleExport | Op::BundleImport | Op::BundleStatus | Op::CacheClear
            );
            assert_eq!(
                matches!(linux(op).source, Source::NotFound(_)),
                unverified,
                "{op}"
            );
            assert_eq!(
                matches!(windows(op).source, Source::NotFound(_)),
                unverified,
                "{op}"
            );
        }
    }

    #[test]
    fn versions() {
        let b = AgentBuild::new(20, 0, 1, 690);
        assert_eq!(parse_agent_version("20.0.1.690\n"), Ok(b));
        assert_eq!(parse_agent_version("20.0.1-690"), Ok(b));
        assert_eq!(parse_agent_version("1:20.0.1-690"), Ok(b));
        assert_eq!(
            parse_agent_version("PluginVersion.core: 20.0.1.690\r\n"),
            Ok(b)
        );
        assert_eq!(parse_agent_version("none"), Ok(AgentBuild::NONE));
        assert!(parse_agent_version("").is_err());
        assert!(parse_agent_version("11.0.1617").is_err());
    }

    #[test]
    fn status() {
        let s = parse_status(
            "AgentStatus.13: agentState\nAgentStatus.agentState: green\nAgentStatus.auStatus: failed: IAURELAY_STATUS_DIGITAL_SIGNATURE_CERT_EXPIRE (-24)\nComponent.AM.mode: on\nComponent.AM.driverOffline: false\n",
        );
        assert_eq!(s.agent_status, "active");
        assert_eq!(s.antimalware, "online");
        assert_eq!(
            s.update,
            UpdateState::Failed("IAURELAY_STATUS_DIGITAL_SIGNATURE_CERT_EXPIRE (-24)".to_owned())
        );
        let s = parse_status(
            "AgentStatus.auStatus: 2\nComponent.AM.mode: on\nComponent.AM.driverOffline: true\n",
        );
        assert_eq!(s.antimalware, "offline");
        assert_eq!(s.update, UpdateState::Current);
        // Values no source documents are unverified, never success.
        for raw in ["0", "1", "3", "-1", "success", "ok", "in progress"] {
            let s = parse_status(&format!("AgentStatus.auStatus: {raw}\n"));
            assert!(
                matches!(&s.update, UpdateState::NotCurrent(m) if m.contains("unverified")),
                "{raw}: {:?}",
                s.update
            );
        }
        assert_eq!(parse_status("Component.AM.mode: off").antimalware, "off");
        assert!(!parse_status("medic: no agent\n").installed);
    }

    #[test]
    fn certs_and_bundles() {
        assert_eq!(
            parse_certs("sha2_supported: True\r\nroot_certs_present: False\r\nmissing: a.cer"),
            Ok((true, false))
        );
        assert!(parse_certs("").is_err());
        assert_eq!(
            parse_bundle_status("Bundle.exported: yes\nBundle.imported: no\n"),
            Ok((true, false))
        );
    }
}
