//! Deep Security build numbers and their ordering.
//!
//! Agent builds have four parts (`MAJOR.MINOR.PATCH-BUILD` in package names,
//! `MAJOR.MINOR.PATCH.BUILD` in the console and the API); `-` and `.` are equivalent. A
//! three-part agent build such as `11.0.1617` is ambiguous (patch or build?) and refused.
//! Manager builds are a separate number sequence (`MAJOR.MINOR.BUILD`, e.g. `20.0.463`), so
//! the two types cannot be compared with each other by construction.

use std::fmt;
use std::str::FromStr;

/// Why a build string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("build `{0}` is empty")]
    Empty(String),
    #[error(
        "agent build `{0}` has 3 parts and is ambiguous (patch or build?): write all 4 parts, e.g. `20.0.1-690` or `20.0.1.690`"
    )]
    ThreePart(String),
    #[error(
        "agent build `{0}` must have 4 parts: MAJOR.MINOR.PATCH-BUILD or MAJOR.MINOR.PATCH.BUILD"
    )]
    AgentParts(String),
    #[error("manager build `{0}` must have 3 parts: MAJOR.MINOR.BUILD, e.g. `20.0.463`")]
    ManagerParts(String),
    #[error("build `{0}` has a part that is not a number below 4294967296")]
    NotNumber(String),
}

/// The numbers of a build, at most six (more are not looked at: the build is refused).
struct Parts {
    n: usize,
    v: [u32; 6],
}

impl std::ops::Deref for Parts {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        &self.v[..self.n]
    }
}

fn split_parts(s: &str, manager: bool) -> Result<Parts, BuildError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(BuildError::Empty(s.to_owned()));
    }
    let mut parts = Parts { n: 0, v: [0; 6] };
    for (i, p) in t.split(['.', '-']).enumerate() {
        // A manager build uses dots only; a dash there is a typo for an agent build.
        if manager && t.contains('-') {
            return Err(BuildError::ManagerParts(s.to_owned()));
        }
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 10 {
            return Err(BuildError::NotNumber(s.to_owned()));
        }
        let n: u32 = p.parse().map_err(|_| BuildError::NotNumber(s.to_owned()))?;
        parts.v[parts.n] = n;
        parts.n += 1;
        if i > 4 {
            break;
        }
    }
    Ok(parts)
}

/// A Deep Security Agent/Relay build: `(major, minor, patch, build)`, compared
/// lexicographically. `0.0.0.0` means "no agent installed".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgentBuild {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    pub build: u32,
}

impl AgentBuild {
    /// The build the API reports for a computer without an agent.
    pub const NONE: AgentBuild = AgentBuild {
        major: 0,
        minor: 0,
        patch: 0,
        build: 0,
    };

    pub fn new(major: u32, minor: u32, patch: u32, build: u32) -> Self {
        Self {
            major,
            minor,
            patch,
            build,
        }
    }

    pub fn is_none(&self) -> bool {
        *self == Self::NONE
    }

    /// The version line, `(MAJOR, MINOR)`: fixes are released per line (12.0, 20.0 LTS...).
    pub fn line(&self) -> (u32, u32) {
        (self.major, self.minor)
    }

    /// The form `rpm`/package names use: `20.0.1-690`.
    pub fn package_form(&self) -> String {
        format!(
            "{}.{}.{}-{}",
            self.major, self.minor, self.patch, self.build
        )
    }
}

impl FromStr for AgentBuild {
    type Err = BuildError;
    fn from_str(s: &str) -> Result<Self, BuildError> {
        let p = split_parts(s, false)?;
        match p.len() {
            4 => Ok(Self::new(p[0], p[1], p[2], p[3])),
            3 => Err(BuildError::ThreePart(s.to_owned())),
            _ => Err(BuildError::AgentParts(s.to_owned())),
        }
    }
}

/// Displays in the console/API form `20.0.1.690`.
impl fmt::Display for AgentBuild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}.{}",
            self.major, self.minor, self.patch, self.build
        )
    }
}

/// A Deep Security Manager build, `MAJOR.MINOR.BUILD` (e.g. `20.0.463`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ManagerBuild {
    pub major: u32,
    pub minor: u32,
    pub build: u32,
}

impl FromStr for ManagerBuild {
    type Err = BuildError;
    fn from_str(s: &str) -> Result<Self, BuildError> {
        // `X-DSM-Version` carries a prefix before a `/`; callers strip it, we do not guess.
        let p = split_parts(s, true)?;
        match p.len() {
            3 => Ok(Self {
                major: p[0],
                minor: p[1],
                build: p[2],
            }),
            _ => Err(BuildError::ManagerParts(s.to_owned())),
        }
    }
}

impl fmt::Display for ManagerBuild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.build)
    }
}

/// Fixed builds per version line: at most one build per `MAJOR.MINOR` line, sorted. Written
/// as a comma-separated list (`12.0.0-9999,20.0.0-5137`); a build is compared with the
/// fixed build of its own line, and a build whose line has none with the highest one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BuildLines(Vec<AgentBuild>);

impl BuildLines {
    /// Reads a comma-separated list; every problem of the list is reported.
    pub fn parse(s: &str) -> Result<BuildLines, Vec<String>> {
        let mut errors = Vec::new();
        let mut builds: Vec<AgentBuild> = Vec::new();
        let items: Vec<&str> = s.split(',').collect();
        for (i, item) in items.iter().enumerate() {
            let t = item.trim();
            if t.is_empty() {
                errors.push(if items.len() == 1 {
                    "the list of builds is empty: write e.g. `12.0.0-9999,20.0.0-5137`".to_owned()
                } else {
                    format!(
                        "item {} of `{s}` is empty: separate the builds with single commas",
                        i + 1
                    )
                });
                continue;
            }
            match t.parse::<AgentBuild>() {
                Ok(b) => {
                    if let Some(o) = builds.iter().find(|o| o.line() == b.line()) {
                        errors.push(format!(
                            "`{}` and `{}` are both on line {}.{}: give at most one fixed build per MAJOR.MINOR line",
                            o.package_form(),
                            b.package_form(),
                            b.major,
                            b.minor
                        ));
                    } else {
                        builds.push(b);
                    }
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        builds.sort();
        Ok(BuildLines(builds))
    }

    /// Builds known to be one per line (a simulator's or a test's world); a later build of
    /// a line already given replaces the earlier one.
    pub fn from_builds(builds: impl IntoIterator<Item = AgentBuild>) -> BuildLines {
        let mut v: Vec<AgentBuild> = Vec::new();
        for b in builds {
            v.retain(|o| o.line() != b.line());
            v.push(b);
        }
        v.sort();
        BuildLines(v)
    }

    /// Whether `b` is below the fixed build that applies to it.
    pub fn affects(&self, b: AgentBuild) -> bool {
        self.for_build(b).is_some_and(|f| b < f)
    }

    /// One build for every line.
    pub fn single(b: AgentBuild) -> BuildLines {
        BuildLines(vec![b])
    }

    /// In ascending order, one per line.
    pub fn builds(&self) -> &[AgentBuild] {
        &self.0
    }

    /// The build that applies to `b`: its own line's, or the highest one when its line has
    /// none.
    pub fn for_build(&self, b: AgentBuild) -> Option<AgentBuild> {
        self.0
            .iter()
            .find(|x| x.line() == b.line())
            .or_else(|| self.0.last())
            .copied()
    }

    /// The list as the operator writes it: `12.0.0-9999,20.0.0-5137`.
    pub fn text(&self) -> String {
        let v: Vec<String> = self.0.iter().map(AgentBuild::package_form).collect();
        v.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dash_and_dot_are_equivalent() {
        let a: AgentBuild = "20.0.1-7380".parse().expect("valid");
        let b: AgentBuild = "20.0.1.7380".parse().expect("valid");
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "20.0.1.7380");
        assert_eq!(a.package_form(), "20.0.1-7380");
    }

    #[test]
    fn ordering_is_numeric_not_lexical() {
        let a: AgentBuild = "20.0.0-877".parse().expect("valid");
        let b: AgentBuild = "20.0.0-3445".parse().expect("valid");
        let c: AgentBuild = "20.0.1-690".parse().expect("valid");
        assert!(a < b && b < c);
        let m1: ManagerBuild = "20.0.463".parse().expect("valid");
        let m2: ManagerBuild = "20.0.1000".parse().expect("valid");
        assert!(m1 < m2);
    }

    #[test]
    fn refusals() {
        assert_eq!(
            "11.0.1617".parse::<AgentBuild>(),
            Err(BuildError::ThreePart("11.0.1617".into()))
        );
        assert!("20.0.x.1".parse::<AgentBuild>().is_err());
        assert!("".parse::<AgentBuild>().is_err());
        assert!("20.0.0.1.2".parse::<AgentBuild>().is_err());
        assert!("20.0.0-1".parse::<ManagerBuild>().is_err());
        assert!("20.0".parse::<ManagerBuild>().is_err());
        assert!("99999999999.0.0.0".parse::<AgentBuild>().is_err());
        assert!("20.0.0.1; rm -rf /".parse::<AgentBuild>().is_err());
    }

    #[test]
    fn build_lines() {
        let l = BuildLines::parse("20.0.0-5137, 12.0.0-9999").expect("valid");
        assert_eq!(l.text(), "12.0.0-9999,20.0.0-5137");
        let b = |s: &str| s.parse::<AgentBuild>().expect("valid");
        assert_eq!(l.for_build(b("12.0.0-1")), Some(b("12.0.0-9999")));
        assert_eq!(l.for_build(b("20.0.0-1")), Some(b("20.0.0-5137")));
        // A line without a fixed build is compared with the highest one.
        assert_eq!(l.for_build(b("11.0.0-1")), Some(b("20.0.0-5137")));
        assert_eq!(l.for_build(b("20.0.1-1")), Some(b("20.0.0-5137")));
        let e = BuildLines::parse("20.0.0-1,,20.0.0-2,12.0.1617").expect_err("bad");
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].contains("item 2"), "{e:?}");
        assert!(e[1].contains("both on line 20.0"), "{e:?}");
        assert!(e[2].contains("3 parts"), "{e:?}");
        assert!(BuildLines::parse("").is_err());
    }

    proptest! {
        #[test]
        fn parse_display_round_trip(a in 0u32..100, b in 0u32..10, c in 0u32..10, d in 0u32..100_000) {
            let x = AgentBuild::new(a, b, c, d);
            prop_assert_eq!(x.to_string().parse::<AgentBuild>(), Ok(x));
            prop_assert_eq!(x.package_form().parse::<AgentBuild>(), Ok(x));
        }

        #[test]
        fn never_panics(s in "\\PC{0,30}") {
            let _ = s.parse::<AgentBuild>();
            let _ = s.parse::<ManagerBuild>();
        }
    }
}
