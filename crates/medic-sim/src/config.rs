//! How a simulated fleet is configured (the numbers the advisory lost, and the faults a
//! test wants to inject) and why opening one can fail.

use std::path::PathBuf;

use medic_model::{AgentBuild, BuildLines};

/// The knobs of a simulated fleet. The inventory gives the hosts; this gives the world's
/// rules and the faults.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Seeds every random draw (durations, pending reboots): same seed, same fleet.
    pub seed: u64,
    /// First unaffected agent build per platform and version line: a Relay below its own
    /// line's fixed build (the highest one when its line has none) fails security updates
    /// (the advisory's Problem 1). The fixes exist per line (12.0, 20.0 LTS, ...), so a
    /// 12.0 host at its line's fix is not affected although it is below the 20.0 fix.
    pub fixed_build_linux: BuildLines,
    pub fixed_build_windows: BuildLines,
    /// Probability (0..=1) that a Windows agent upgrade leaves a pending reboot (advisory:
    /// "very likely").
    pub windows_reboot_probability: f64,
    pub faults: Vec<Fault>,
}

impl SimConfig {
    /// The demo's world: fixed builds `12.0.0-5000` (line 12.0) and `20.0.1-690` (line
    /// 20.0 and every other line) on both platforms, as the playbook's example values;
    /// Windows reboots after 80% of upgrades, no faults.
    pub fn demo(seed: u64) -> SimConfig {
        let fixed = BuildLines::from_builds([
            AgentBuild::new(12, 0, 0, 5000),
            AgentBuild::new(20, 0, 1, 690),
        ]);
        SimConfig {
            seed,
            fixed_build_linux: fixed.clone(),
            fixed_build_windows: fixed,
            windows_reboot_probability: 0.8,
            faults: Vec::new(),
        }
    }
}

/// A fault injected into the simulated fleet. Faults apply before an action's semantics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Every action on the host answers [`crate::SimResult::Unreachable`].
    Unreachable { host: String },
    /// The action never finishes: it answers [`crate::SimResult::Hang`] every time.
    Hang { host: String, action: String },
    /// The first `times` performs of the action fail, then it behaves normally. The count
    /// survives a restart of a durable fleet.
    FailTimes {
        host: String,
        action: String,
        times: u32,
    },
}

impl Fault {
    pub(crate) fn host(&self) -> &str {
        match self {
            Fault::Unreachable { host }
            | Fault::Hang { host, .. }
            | Fault::FailTimes { host, .. } => host,
        }
    }
}

/// Why a simulated fleet could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot use the simulator state file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("simulator state file {path}, line {line}: {message}")]
    CorruptLog {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "simulator state file {path} was written for another fleet ({message}): delete it or use the same inventory and seed"
    )]
    Mismatch { path: PathBuf, message: String },
    #[error("fault names `{0}`, which is neither a host of the inventory nor its manager")]
    UnknownFaultHost(String),
    #[error("windows_reboot_probability must be between 0 and 1, got {0}")]
    BadProbability(f64),
    #[error("the inventory names `{0}` twice (the manager and the hosts share one namespace)")]
    DuplicateName(String),
    #[error("host `{host}` names relay group `{group}`, which the inventory does not define")]
    UnknownRelayGroup { host: String, group: String },
}
