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
