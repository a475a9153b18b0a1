//! Which staged agent package belongs to which Linux host.
//!
//! Every `Agent-Core-*` package of a fleet may sit in one directory, so the package is
//! chosen from the host's distribution and version, never by the first file a glob
//! matches (an EL9 host once got the EL8 rpm that way). The distribution comes from the
//! host's `/etc/os-release` (read live) and from the inventory's `os`; when both are known
//! they must agree, else the upgrade is refused naming both (the inventory is stale or the
//! address points at another machine).
//!
//! The name mapping (`Agent-Core-<platform>-<MAJOR.MINOR.PATCH-BUILD>.<arch>.<rpm|deb>`):
//!
//! | distribution (os-release `ID`, or `os` text)          | `<platform>`      | kind | source |
//! |-------------------------------------------------------|-------------------|------|--------|
//! | `rhel`, `centos`, `rocky`, `almalinux` (Red Hat, ...) | `RedHat_EL<major>` | rpm | ds-domain.md §2.8 (`/software/agent/RedHat_EL7/x86_64/`); the same token in file names: inferred |
//! | `ubuntu`                                              | `Ubuntu_<X.Y>`    | deb  | ds-domain.md §3 (`Agent-Core-Ubuntu_22.04-20.0.1-19250.x86_64.deb`) |
//! | `debian`                                              | `Debian_<major>`  | deb  | inferred |
//! | `ol` (Oracle Linux)                                   | `Oracle_OL<major>` | rpm | inferred |
//! | `amzn` (Amazon Linux 2, 2023)                         | `amzn<version>`   | rpm  | inferred |
//! | `sles`, `opensuse-leap` (SUSE)                        | `SuSE_<major>`    | rpm  | inferred |
//!
//! `<arch>` is the host's `uname -m` (`x86_64` in every §3 example; others inferred).
//! No file, or more than one, is an error naming the host and the files.

use std::fmt;

/// A distribution family with its own agent packages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    RedHat,
    Ubuntu,
    Debian,
    Oracle,
    Amazon,
    Suse,
}

/// A host's distribution as far as packages care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Distro {
    pub family: Family,
    /// The part of the version the package name carries: the major version, or `X.Y` on
    /// Ubuntu, `2`/`2023` on Amazon Linux.
    pub version: String,
}

impl Distro {
    /// The `<platform>` part of the package name (see the module table).
    pub fn package_platform(&self) -> String {
        let v = &self.version;
        match self.family {
            // src: ds-domain.md §2.8 names the platform `RedHat_EL7`; inferred: file names
            // use the same token.
            Family::RedHat => format!("RedHat_EL{v}"),
            // src: ds-domain.md §3 `Agent-Core-Ubuntu_22.04-...deb`.
            Family::Ubuntu => format!("Ubuntu_{v}"),
            // inferred: the vendor's naming for these families.
            Family::Debian => format!("Debian_{v}"),
            Family::Oracle => format!("Oracle_OL{v}"),
            Family::Amazon => format!("amzn{v}"),
            Family::Suse => format!("SuSE_{v}"),
        }
    }

    /// `rpm` or `deb`.
    pub fn package_kind(&self) -> &'static str {
        match self.family {
            Family::Ubuntu | Family::Debian => "deb",
            _ => "rpm",
        }
    }
}

impl fmt::Display for Distro {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.family {
            Family::RedHat => "Red Hat Enterprise Linux (or a rebuild)",
            Family::Ubuntu => "Ubuntu",
            Family::Debian => "Debian",
            Family::Oracle => "Oracle Linux",
            Family::Amazon => "Amazon Linux",
            Family::Suse => "SUSE Linux",
        };
        write!(f, "{name} {}", self.version)
    }
}

fn major(v: &str) -> Option<String> {
    let m = v.split('.').next()?;
    (!m.is_empty() && m.chars().all(|c| c.is_ascii_digit())).then(|| m.to_owned())
}

fn from_id(id: &str, version: &str) -> Option<Distro> {
    let (family, version) = match id {
        "rhel" | "centos" | "rocky" | "almalinux" => (Family::RedHat, major(version)?),
        "ubuntu" => {
            let mut parts = version.split('.');
            let (a, b) = (parts.next()?, parts.next()?);
            if a.is_empty()
                || b.is_empty()
                || !(a.to_owned() + b).chars().all(|c| c.is_ascii_digit())
            {
                return None;
            }
            (Family::Ubuntu, format!("{a}.{b}"))
        }
        "debian" => (Family::Debian, major(version)?),
        "ol" => (Family::Oracle, major(version)?),
        "amzn" => (Family::Amazon, major(version)?),
        "sles" | "sled" | "opensuse-leap" => (Family::Suse, major(version)?),
        _ => return None,
    };
    Some(Distro { family, version })
}

/// The distribution from `/etc/os-release` text: `ID` and `VERSION_ID`, then each `ID_LIKE`
/// word with the same `VERSION_ID` (a RHEL rebuild this table does not name still uses
/// the RHEL packages).
pub fn from_os_release(text: &str) -> Option<Distro> {
    let mut id = String::new();
    let mut like = String::new();
    let mut version = String::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches(|c| c == '"' || c == '\'').to_owned();
        match k.trim() {
            "ID" => id = v.to_ascii_lowercase(),
            "ID_LIKE" => like = v.to_ascii_lowercase(),
            "VERSION_ID" => version = v,
            _ => {}
        }
    }
    from_id(&id, &version).or_else(|| {
        like.split_whitespace()
            .find_map(|l| from_id(l, &version).filter(|d| d.family == Family::RedHat))
    })
}

/// The distribution from the inventory's free-text `os`, written as the Manager shows a
/// computer's platform (ds-domain.md §2.2: "Red Hat Enterprise 9 (64 bit) (...)") or as
/// people write it ("Ubuntu 22.04", "Rocky Linux 9.3").
pub fn from_inventory_os(os: &str) -> Option<Distro> {
    let lower = os.to_ascii_lowercase();
    let names: [(&str, &str); 11] = [
        ("red hat", "rhel"),
        ("rhel", "rhel"),
        ("centos", "centos"),
        ("rocky", "rocky"),
        ("alma", "almalinux"),
        ("oracle", "ol"),
        ("ubuntu", "ubuntu"),
        ("debian", "debian"),
        ("amazon", "amzn"),
        ("suse", "sles"),
        ("sles", "sles"),
    ];
    let (at, id) = names
        .iter()
        .filter_map(|(needle, id)| lower.find(needle).map(|at| (at, *id)))
        .min_by_key(|(at, _)| *at)?;
    // The first number after the name is its version; "(64 bit)" comes after it.
    let rest = &lower[at..];
    let start = rest.find(|c: char| c.is_ascii_digit())?;
    let version: String = rest[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    from_id(id, version.trim_end_matches('.'))
}

/// What the package probe found on the host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostPackages {
    pub os_release: String,
    pub arch: String,
    /// The `Agent-Core-*` file names in the package directory.
    pub files: Vec<String>,
}

/// Reads the output of the package probe (`commands::Op::PackageFacts`).
pub fn parse_package_probe(text: &str) -> HostPackages {
    let mut out = HostPackages::default();
    let mut section = "";
    for line in text.lines() {
        match line.trim_end() {
            "[os-release]" | "[arch]" | "[packages]" => {
                section = line.trim_end();
                continue;
            }
            _ => {}
        }
        match section {
            "[os-release]" => {
                out.os_release.push_str(line);
                out.os_release.push('\n');
            }
            "[arch]" if !line.trim().is_empty() => out.arch = line.trim().to_owned(),
            "[packages]" if !line.trim().is_empty() => out.files.push(line.trim().to_owned()),
            _ => {}
        }
    }
    out
}

/// The package chosen for a host, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub file: String,
    pub distro: Distro,
    /// `os-release`, `inventory os`, or both.
    pub from: &'static str,
}

fn list(files: &[&String]) -> String {
    if files.is_empty() {
        return "none".to_owned();
    }
    let shown: Vec<&str> = files.iter().take(12).map(|s| s.as_str()).collect();
    let more = files.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Chooses the package of build `build` (package form, `20.0.1-690`) for `host`.
/// `inventory_os` is the inventory's `os`; `dir` only names the directory in messages.
pub fn choose(
    host: &str,
    inventory_os: Option<&str>,
    probe: &HostPackages,
    build: &str,
    dir: &str,
) -> Result<Choice, String> {
    let live = from_os_release(&probe.os_release);
    let declared = inventory_os.and_then(from_inventory_os);
    let (distro, from) = match (live, declared) {
        (Some(l), Some(d)) if l.package_platform() != d.package_platform() => {
            return Err(format!(
                "host {host}: the inventory says `{}` ({d}) but its /etc/os-release says {l}: correct `os` in the inventory (or check that the address is the right machine)",
                inventory_os.unwrap_or_default()
            ));
        }
        (Some(l), Some(_)) => (l, "os-release and inventory os"),
        (Some(l), None) => (l, "os-release"),
        (None, Some(d)) => (d, "inventory os"),
        (None, None) => {
            return Err(format!(
                "host {host}: cannot tell its distribution (no usable /etc/os-release{}): set `os` in the inventory, e.g. \"Red Hat Enterprise 9 (64 bit)\" or \"Ubuntu 22.04\"",
                match inventory_os {
                    Some(os) =>
                        format!(", and the inventory's os `{os}` names no known distribution"),
                    None => String::new(),
                }
            ));
        }
    };
    let prefix = format!("Agent-Core-{}-{build}.", distro.package_platform());
    let suffix = format!(".{}", distro.package_kind());
    let fits: Vec<&String> = probe
        .files
        .iter()
        .filter(|f| {
            f.strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(&suffix))
                .is_some_and(|arch| {
                    !arch.is_empty()
                        && !arch.contains(['.', '/'])
                        && (probe.arch.is_empty() || arch == probe.arch)
                })
        })
        .collect();
    let wanted = format!(
        "{prefix}{}{suffix}",
        if probe.arch.is_empty() {
            "<arch>"
        } else {
            &probe.arch
        }
    );
    match fits.as_slice() {
        [one] => Ok(Choice {
            file: (*one).clone(),
            distro,
            from,
        }),
        [] => {
            let all: Vec<&String> = probe.files.iter().collect();
            Err(format!(
                "host {host} ({distro}, from {from}): no agent package {wanted} in {dir} (found: {}); stage it there",
                list(&all)
            ))
        }
        many => Err(format!(
            "host {host} ({distro}, from {from}): {} packages fit ({}) in {dir}: keep exactly one",
            many.len(),
            list(many)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EL9: &str = "NAME=\"Red Hat Enterprise Linux\"\nVERSION=\"9.3 (Plow)\"\nID=\"rhel\"\nID_LIKE=\"fedora\"\nVERSION_ID=\"9.3\"\n";
    const ROCKY8: &str =
        "NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"8.9\"\n";
    const UBUNTU: &str = "NAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nID=ubuntu\nID_LIKE=debian\n";
    const CLONE: &str = "ID=\"navy\"\nID_LIKE=\"rhel fedora\"\nVERSION_ID=\"9.2\"\n";

    fn d(family: Family, v: &str) -> Distro {
        Distro {
            family,
            version: v.to_owned(),
        }
    }

    #[test]
    fn os_release_and_inventory_text() {
        assert_eq!(from_os_release(EL9), Some(d(Family::RedHat, "9")));
        assert_eq!(from_os_release(ROCKY8), Some(d(Family::RedHat, "8")));
        assert_eq!(from_os_release(UBUNTU), Some(d(Family::Ubuntu, "22.04")));
        assert_eq!(from_os_release(CLONE), Some(d(Family::RedHat, "9")));
        assert_eq!(from_os_release("ID=gentoo\n"), None);
        assert_eq!(from_os_release(""), None);
        for (os, want) in [
            (
                "Red Hat Enterprise 9 (64 bit)",
                Some(d(Family::RedHat, "9")),
            ),
            (
                "Red Hat Enterprise 9 (64 bit) (5.14.0-284.30.1.el9_2.x86_64)",
                Some(d(Family::RedHat, "9")),
            ),
            (
                "Red Hat Enterprise 8 (64 bit)",
                Some(d(Family::RedHat, "8")),
            ),
            ("CentOS 7 (64 bit)", Some(d(Family::RedHat, "7"))),
            (
                "Ubuntu Linux 22.04 (64 bit)",
                Some(d(Family::Ubuntu, "22.04")),
            ),
            ("Ubuntu 20.04", Some(d(Family::Ubuntu, "20.04"))),
            ("Amazon Linux 2 (64 bit)", Some(d(Family::Amazon, "2"))),
            ("Debian 12", Some(d(Family::Debian, "12"))),
            ("Ubuntu", None),
            ("Microsoft Windows Server 2019 (64 bit)", None),
        ] {
            assert_eq!(from_inventory_os(os), want, "{os}");
        }
        assert_eq!(d(Family::RedHat, "9").package_platform(), "RedHat_EL9");
        assert_eq!(
            d(Family::Ubuntu, "22.04").package_platform(),
            "Ubuntu_22.04"
        );
    }

    fn probe(os: &str, files: &[&str]) -> HostPackages {
        HostPackages {
            os_release: os.to_owned(),
            arch: "x86_64".to_owned(),
            files: files.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    const DIR: [&str; 6] = [
        "Agent-Core-RedHat_EL8-20.0.1-690.x86_64.rpm",
        "Agent-Core-RedHat_EL9-20.0.1-690.x86_64.rpm",
        "Agent-Core-RedHat_EL9-20.0.1-690.aarch64.rpm",
        "Agent-Core-Ubuntu_22.04-20.0.1-690.x86_64.deb",
        "Agent-Core-Ubuntu_20.04-20.0.1-690.x86_64.deb",
        "Agent-Core-RedHat_EL9-20.0.1-6900.x86_64.rpm",
    ];

    #[test]
    fn each_host_gets_its_own_package() {
        let c = choose("web-9", None, &probe(EL9, &DIR), "20.0.1-690", "/p").expect("el9");
        assert_eq!(c.file, "Agent-Core-RedHat_EL9-20.0.1-690.x86_64.rpm");
        assert_eq!(c.from, "os-release");
        let c = choose(
            "r8",
            Some("Red Hat Enterprise 8 (64 bit)"),
            &probe(ROCKY8, &DIR),
            "20.0.1-690",
            "/p",
        )
        .expect("el8");
        assert_eq!(c.file, "Agent-Core-RedHat_EL8-20.0.1-690.x86_64.rpm");
        let c = choose("u", None, &probe(UBUNTU, &DIR), "20.0.1-690", "/p").expect("ubuntu");
        assert_eq!(c.file, "Agent-Core-Ubuntu_22.04-20.0.1-690.x86_64.deb");
        // No os-release: the inventory decides.
        let c = choose(
            "x",
            Some("Ubuntu 20.04"),
            &probe("", &DIR),
            "20.0.1-690",
            "/p",
        )
        .expect("inv");
        assert_eq!(c.file, "Agent-Core-Ubuntu_20.04-20.0.1-690.x86_64.deb");
        assert_eq!(c.from, "inventory os");
    }

    #[test]
    fn no_match_two_matches_and_disagreement_are_errors_naming_host_and_files() {
        let e =
            choose("web-9", None, &probe(EL9, &DIR[..1]), "20.0.1-690", "/p").expect_err("none");
        assert!(e.contains("host web-9"), "{e}");
        assert!(
            e.contains("Agent-Core-RedHat_EL9-20.0.1-690.x86_64.rpm"),
            "{e}"
        );
        assert!(
            e.contains("found: Agent-Core-RedHat_EL8-20.0.1-690.x86_64.rpm"),
            "{e}"
        );
        let mut p = probe(EL9, &DIR);
        p.arch.clear();
        let e = choose("web-9", None, &p, "20.0.1-690", "/p").expect_err("two");
        assert!(e.contains("2 packages fit"), "{e}");
        assert!(e.contains("aarch64.rpm") && e.contains("x86_64.rpm"), "{e}");
        let e = choose(
            "web-9",
            Some("Red Hat Enterprise 8 (64 bit)"),
            &probe(EL9, &DIR),
            "20.0.1-690",
            "/p",
        )
        .expect_err("drift");
        assert!(
            e.contains("the inventory says")
                && e.contains("Red Hat Enterprise Linux (or a rebuild) 9"),
            "{e}"
        );
        let e = choose(
            "g",
            Some("Gentoo"),
            &probe("ID=gentoo\n", &DIR),
            "20.0.1-690",
            "/p",
        )
        .expect_err("unknown");
        assert!(
            e.contains("cannot tell its distribution") && e.contains("Gentoo"),
            "{e}"
        );
    }

    #[test]
    fn probe_output_is_read_by_section() {
        let p = parse_package_probe(&format!(
            "[os-release]\n{EL9}[arch]\nx86_64\n[packages]\n{}\n{}\n",
            DIR[0], DIR[1]
        ));
        assert_eq!(p.os_release, EL9);
        assert_eq!(p.arch, "x86_64");
        assert_eq!(p.files, vec![DIR[0].to_owned(), DIR[1].to_owned()]);
    }
}
