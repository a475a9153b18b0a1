//! The validated inventory: a Manager, relay groups and hosts with their facts.
//!
//! Values of these types are only built by `medic-config` after validation, so code that
//! reads them may rely on the invariants stated on each field.

use std::collections::BTreeMap;

use crate::build::{AgentBuild, ManagerBuild};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Platform {
    Linux,
    Windows,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Linux => "linux",
            Platform::Windows => "windows",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "linux" => Some(Platform::Linux),
            "windows" => Some(Platform::Windows),
            _ => None,
        }
    }
}

/// How privileged commands (package installs, `dsa_control`, `dsa_query`) gain root on a
/// Linux host: inventory `become:` (top level or per host) or the CLI's `--become`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Become {
    /// Run them as the SSH user (a root login, or a host where that is enough).
    None,
    /// Through `sudo` (its password, if one is needed, from the environment or a file).
    Sudo,
}

impl Become {
    pub fn as_str(self) -> &'static str {
        match self {
            Become::None => "none",
            Become::Sudo => "sudo",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Become::None),
            "sudo" => Some(Become::Sudo),
            _ => None,
        }
    }
}

/// What a selector can ask for: the Manager, a Relay or a plain Agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Manager,
    Relay,
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Relay => "relay",
            Role::Agent => "agent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "manager" => Some(Role::Manager),
            "relay" => Some(Role::Relay),
            "agent" => Some(Role::Agent),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manager {
    /// Unique among the Manager and the hosts; `[A-Za-z0-9._-]+`.
    pub name: String,
    pub address: String,
    pub version: ManagerBuild,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// DSM `platformSettingUpdateAgentSecurityContactPrimarySourceOnMissingRelayEnabled`.
    pub direct_download_when_relays_unavailable: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayGroup {
    pub name: String,
    pub offline: bool,
    /// For an offline group: a Relay of an online group that makes the update bundle.
    pub bundle_source: Option<String>,
    /// The group's `zone:` as written; `None`: the default zone.
    pub zone: Option<String>,
}

/// The zone every host is in unless it or its relay group says otherwise.
pub const DEFAULT_ZONE: &str = "default";

/// A declared network zone (`zones:`): where a controller can reach the hosts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    /// `[A-Za-z0-9._-]+`, unique; never [`DEFAULT_ZONE`] when `air_gapped`.
    pub name: String,
    /// Nothing reaches it: its steps run from a sliced plan (`medic plan --slice`), never
    /// from the main run.
    pub air_gapped: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// Unique; `[A-Za-z0-9._-]+`.
    pub name: String,
    /// An IP address or a DNS name: never contains shell metacharacters.
    pub address: String,
    pub port: u16,
    pub user: Option<String>,
    pub platform: Platform,
    pub os: Option<String>,
    pub agent_version: AgentBuild,
    pub relay: bool,
    /// Names a group of `Inventory::relay_groups`.
    pub relay_group: Option<String>,
    pub groups: Vec<String>,
    pub protected_by_appliance: bool,
    /// The host's own `become:`, else the inventory's top-level one; `None` when neither
    /// says (the CLI's `--become` then decides).
    pub r#become: Option<Become>,
    /// Free-form facts; rendered as JSON text, never interpreted by the planner.
    pub vars: BTreeMap<String, String>,
    /// The host's zone, resolved: its own `zone:`, else its relay group's; `None`: the
    /// default zone. Names a declared zone of `Inventory::zones`.
    pub zone: Option<String>,
}

impl Host {
    pub fn role(&self) -> Role {
        if self.relay { Role::Relay } else { Role::Agent }
    }

    pub fn has_agent(&self) -> bool {
        !self.agent_version.is_none()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inventory {
    pub manager: Manager,
    pub settings: Settings,
    pub relay_groups: Vec<RelayGroup>,
    /// In file order; names are unique.
    pub hosts: Vec<Host>,
    /// The declared zones (`zones:`), in file order; empty: every host is in the default
    /// zone.
    pub zones: Vec<Zone>,
}

impl Inventory {
    pub fn relay_group(&self, name: &str) -> Option<&RelayGroup> {
        self.relay_groups.iter().find(|g| g.name == name)
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The zones marked `air_gapped: true`, in file order.
    pub fn air_gapped_zones(&self) -> impl Iterator<Item = &str> {
        self.zones
            .iter()
            .filter(|z| z.air_gapped)
            .map(|z| z.name.as_str())
    }
}
