//! `medic inventory import`: an inventory v1 text from what a Manager knows, in a fixed
//! handful of requests whatever the fleet size.
//!
//! The requests (a 10,000-computer fleet takes 5):
//! 1. `GET /systemsettings/platformSettingUpdateAgentSecurityContactPrimarySourceOnMissingRelayEnabled`:
//!    `settings.direct_download_when_relays_unavailable`; its `X-DSM-Version` gives the
//!    Manager's build;
//! 2. `GET /computergroups`: the computer tree, for the hosts' `groups`;
//! 3. `POST /computers/search?expand=computerSettings` with `maxItems` = page size (5000)
//!    and `idTest greater-than` the last ID, until a page is shorter than the page size.
//!
//! Where each field comes from, and the choices made:
//! - `name` = `hostName` (characters outside `[A-Za-z0-9._-]` become `-`; a repeated
//!   name gets `-<ID>`); `address` = `lastIPUsed`, else the host name;
//! - `platform`: `linux` or `windows` from the `platform` text; a computer with an agent on
//!   another platform (AIX, Solaris, ...) is left out, with a comment, since the inventory
//!   has no place for it;
//! - `os` = the `platform` text; `agent_version` = `agentVersion` (`0.0.0.0` without agent);
//! - `protected_by_appliance` = `applianceFingerPrint` is set;
//! - **`relay`** = the computer setting `platformSettingRelayState`, read for every computer
//!   at once with `expand=computerSettings` on the same paged search: per-computer
//!   `GET /computers/{id}/settings/platformSettingRelayState` would cost one request per
//!   computer. (A real Manager then returns all of each computer's settings, a larger
//!   answer but no more requests.)
//! - **`relay_group`** = the group of `relayListID`. The API has no relay group endpoint, so
//!   group names, `offline` and `bundle_source` cannot be read: they come from
//!   [`RelayGroupHint`]s (what the operator sees under Administration > Updates > Relays),
//!   and a group without a hint is named `relay-list-<ID>`, online;
//! - **`groups`** = the path of the computer's group in the computer tree, root first
//!   (`Computers > tokyo > canary` gives `[tokyo, canary]`), names made valid as above.
//!
//! Every choice that loses or changes something is a comment line of [`Imported`], written
//! at the top of the file (by `medic_config::write_inventory`, the one inventory writer),
//! so the operator sees it where they edit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use medic_model::{
    AgentBuild, Host, Inventory, Manager, ManagerBuild, Platform, RelayGroup, Settings,
};

use super::client::{DIRECT_DOWNLOAD_SETTING, DsmClient, DsmError};
use super::model::{Computer, ComputerGroup};
use medic_model::names::{is_address, is_name, sanitize};

/// What the API cannot tell about a relay group (`relayListID` = `id`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayGroupHint {
    pub id: i64,
    pub name: String,
    pub offline: bool,
    pub bundle_source: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "bad relay group `{0}`: use ID=NAME[,offline][,bundle_source=HOST], e.g. 3=dmz,offline,bundle_source=relay-tky-1"
)]
pub struct RelayGroupHintError(String);

impl FromStr for RelayGroupHint {
    type Err = RelayGroupHintError;

    /// `ID=NAME[,offline][,bundle_source=HOST]`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || RelayGroupHintError(s.to_owned());
        let (id, rest) = s.split_once('=').ok_or_else(bad)?;
        let id: i64 = id.trim().parse().map_err(|_| bad())?;
        let mut parts = rest.split(',');
        let name = parts
            .next()
            .map(str::trim)
            .filter(|n| is_name(n))
            .ok_or_else(bad)?;
        let mut hint = RelayGroupHint {
            id,
            name: name.to_owned(),
            offline: false,
            bundle_source: None,
        };
        for p in parts {
            match p.trim().split_once('=') {
                None if p.trim() == "offline" => hint.offline = true,
                Some(("bundle_source", h)) if is_name(h.trim()) => {
                    hint.bundle_source = Some(h.trim().to_owned());
                }
                _ => return Err(bad()),
            }
        }
        Ok(hint)
    }
}

/// What the import cannot read from the Manager.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// The inventory's `manager.name` (default: the URL's host, made a valid name).
    pub manager_name: String,
    /// The inventory's `manager.address` (default: the URL's host).
    pub manager_address: String,
    /// `maxItems` per search page; must not exceed what the Manager returns per page (5000).
    pub page_size: u32,
    pub relay_groups: Vec<RelayGroupHint>,
}

impl ImportOptions {
    /// Defaults taken from the client's URL.
    pub fn for_client(client: &DsmClient) -> ImportOptions {
        let host = reqwest::Url::parse(client.base_url())
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| "dsm".to_owned());
        let address = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        ImportOptions {
            manager_name: sanitize(&address),
            manager_address: address,
            page_size: 5000,
            relay_groups: Vec::new(),
        }
    }
}

/// `linux` or `windows` from the Manager's platform text, e.g. "Red Hat Enterprise 8 (64
/// bit)" or "Microsoft Windows Server 2019 (64 bit)".
fn platform_of(text: &str) -> Option<Platform> {
    let t = text.to_ascii_lowercase();
    if t.contains("windows") {
        return Some(Platform::Windows);
    }
    const LINUX: [&str; 14] = [
        "linux",
        "red hat",
        "redhat",
        "centos",
        "ubuntu",
        "debian",
        "suse",
        "sles",
        "amazon",
        "oracle",
        "cloudlinux",
        "rocky",
        "alma",
        "miracle",
    ];
    LINUX
        .iter()
        .any(|l| t.contains(l))
        .then_some(Platform::Linux)
}

/// A name as written in a comment line.
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// What the import read: the inventory, and the comment lines that say what it left out
/// or changed (for the top of the file).
#[derive(Clone, Debug)]
pub struct Imported {
    pub inventory: Inventory,
    pub comments: Vec<String>,
}

/// Reads the Manager into an inventory (see the module doc for the requests and where each
/// field comes from). Written out, it loads with `medic_config::load_inventory` unless a
/// [`RelayGroupHint`] names a `bundle_source` that is not a Relay of the fleet.
pub async fn import_inventory(
    client: &DsmClient,
    options: &ImportOptions,
) -> Result<Imported, DsmError> {
    let direct = client.system_setting(DIRECT_DOWNLOAD_SETTING).await?;
    let version = client
        .last_manager_version()
        .ok_or(DsmError::NoVersion(None))?;
    let direct = match direct.trim().to_ascii_lowercase().as_str() {
        "true" => true,
        "false" => false,
        _ => {
            return Err(DsmError::Decode {
                method: "GET".to_owned(),
                url: format!(
                    "{}/systemsettings/{DIRECT_DOWNLOAD_SETTING}",
                    client.base_url()
                ),
                detail: format!("the value `{direct}` is neither true nor false"),
            });
        }
    };
    let groups = client.computer_groups().await?;
    let computers = client
        .list_computers(options.page_size, &["computerSettings"])
        .await?;
    Ok(render(options, version, direct, &groups, &computers))
}

fn group_paths(groups: &[ComputerGroup], notes: &mut Vec<String>) -> HashMap<i64, Vec<String>> {
    let by_id: HashMap<i64, &ComputerGroup> = groups.iter().map(|g| (g.id, g)).collect();
    let mut renamed: BTreeMap<String, String> = BTreeMap::new();
    let mut out = HashMap::new();
    for g in groups {
        let mut path = Vec::new();
        let mut cur = Some(g);
        let mut seen = HashSet::new();
        while let Some(x) = cur {
            if !seen.insert(x.id) {
                break; // a cycle in a broken tree: stop rather than loop
            }
            let raw = x.name.clone().unwrap_or_else(|| format!("group-{}", x.id));
            let name = sanitize(&raw);
            if name != raw {
                renamed.insert(raw, name.clone());
            }
            path.push(name);
            cur = x
                .parent_group_id
                .filter(|p| *p > 0)
                .and_then(|p| by_id.get(&p).copied());
        }
        path.reverse();
        out.insert(g.id, path);
    }
    for (from, to) in renamed {
        notes.push(format!(
            "computer group {} is written as group `{to}`",
            q(&from)
        ));
    }
    out
}

fn render(
    options: &ImportOptions,
    version: ManagerBuild,
    direct: bool,
    groups: &[ComputerGroup],
    computers: &[Computer],
) -> Imported {
    let mut notes: Vec<String> = Vec::new();
    let paths = group_paths(groups, &mut notes);
    let hints: BTreeMap<i64, &RelayGroupHint> =
        options.relay_groups.iter().map(|h| (h.id, h)).collect();

    let mut used_lists: BTreeMap<i64, ()> = BTreeMap::new();
    let mut names: HashSet<String> = HashSet::new();
    let mut hosts: Vec<Host> = Vec::with_capacity(computers.len());
    let mut left_out = 0usize;
    let mut sorted: Vec<&Computer> = computers.iter().collect();
    sorted.sort_by_key(|c| c.id);
    for c in sorted {
        let raw_name = c.host_name.clone().unwrap_or_default();
        let mut name = if raw_name.trim().is_empty() {
            format!("computer-{}", c.id)
        } else {
            sanitize(&raw_name)
        };
        if !raw_name.is_empty() && name != raw_name {
            notes.push(format!(
                "computer {} {}: written as `{name}`",
                c.id,
                q(&raw_name)
            ));
        }
        let raw_version = c
            .agent_version
            .clone()
            .unwrap_or_else(|| "0.0.0.0".to_owned());
        let build: AgentBuild = match raw_version.parse() {
            Ok(b) => b,
            Err(e) => {
                notes.push(format!(
                    "left out: computer {} `{name}`: agentVersion {}: {e}",
                    c.id,
                    q(&raw_version)
                ));
                left_out += 1;
                continue;
            }
        };
        let os = c.platform.clone().unwrap_or_default();
        let platform = match platform_of(&os) {
            Some(p) => p,
            None if build.is_none() => {
                notes.push(format!(
                    "computer {} `{name}`: platform {} unknown and no agent: written as linux (hosts without an agent are skipped by the plan)",
                    c.id,
                    q(&os)
                ));
                Platform::Linux
            }
            None => {
                notes.push(format!(
                    "left out: computer {} `{name}`: platform {} is neither Linux nor Windows",
                    c.id,
                    q(&os)
                ));
                left_out += 1;
                continue;
            }
        };
        let address = [c.last_ip_used.as_deref(), c.host_name.as_deref()]
            .into_iter()
            .flatten()
            .map(str::trim)
            .find(|a| is_address(a));
        let Some(address) = address else {
            notes.push(format!(
                "left out: computer {} `{name}`: neither lastIPUsed nor hostName is an address",
                c.id
            ));
            left_out += 1;
            continue;
        };
        // Only names that are written count, so a left-out computer reserves none.
        if !names.insert(name.clone()) {
            let unique = format!("{name}-{}", c.id);
            notes.push(format!(
                "computer {}: hostName `{name}` is used twice, written as `{unique}`",
                c.id
            ));
            name = unique;
            names.insert(name.clone());
        }
        let relay_group = c.relay_list_id.filter(|l| *l > 0).map(|list| {
            used_lists.insert(list, ());
            hints
                .get(&list)
                .map_or_else(|| format!("relay-list-{list}"), |h| h.name.clone())
        });
        hosts.push(Host {
            name,
            address: address.to_owned(),
            port: 22,
            user: None,
            platform,
            os: (!os.is_empty()).then_some(os),
            agent_version: build,
            relay: c.is_relay(),
            relay_group,
            groups: c
                .group_id
                .and_then(|g| paths.get(&g))
                .cloned()
                .unwrap_or_default(),
            protected_by_appliance: c
                .appliance_finger_print
                .as_deref()
                .is_some_and(|f| !f.trim().is_empty()),
            r#become: None,
            vars: BTreeMap::new(),
            zone: None,
        });
    }

    let mut manager_name = options.manager_name.clone();
    if names.contains(&manager_name) {
        let unique = format!("{manager_name}-manager");
        notes.push(format!(
            "the manager's name `{manager_name}` is also a computer's: written as `{unique}`"
        ));
        manager_name = unique;
    }

    let mut lists: Vec<i64> = used_lists.keys().copied().collect();
    lists.extend(
        hints
            .keys()
            .copied()
            .filter(|k| !used_lists.contains_key(k)),
    );
    lists.sort_unstable();
    let mut relay_groups = Vec::with_capacity(lists.len());
    let mut list_names = Vec::with_capacity(lists.len());
    for id in lists {
        let g = match hints.get(&id) {
            Some(h) => RelayGroup {
                name: h.name.clone(),
                offline: h.offline,
                bundle_source: h.bundle_source.clone(),
                zone: None,
            },
            None => RelayGroup {
                name: format!("relay-list-{id}"),
                offline: false,
                bundle_source: None,
                zone: None,
            },
        };
        list_names.push(format!("{} = relayListID {id}", g.name));
        relay_groups.push(g);
    }

    let mut comments = vec![
        "inventory v1 imported by medic from the Deep Security Manager".to_owned(),
        format!(
            "{} computers read, {} written, {left_out} left out",
            computers.len(),
            hosts.len()
        ),
        "relay groups: the API cannot read their names or offline state; groups without".to_owned(),
        "a hint are named relay-list-<relayListID> and taken as online: check them.".to_owned(),
    ];
    if !list_names.is_empty() {
        comments.push(format!("relay groups: {}", list_names.join(", ")));
    }
    comments.extend(notes.into_iter().map(|n| format!("note: {n}")));
    Imported {
        inventory: Inventory {
            manager: Manager {
                name: manager_name,
                address: options.manager_address.clone(),
                version,
            },
            settings: Settings {
                direct_download_when_relays_unavailable: direct,
            },
            relay_groups,
            hosts,
            zones: Vec::new(),
        },
        comments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_parse() {
        assert_eq!(
            "3=dmz,offline,bundle_source=relay-tky-1"
                .parse::<RelayGroupHint>()
                .ok(),
            Some(RelayGroupHint {
                id: 3,
                name: "dmz".to_owned(),
                offline: true,
                bundle_source: Some("relay-tky-1".to_owned())
            })
        );
        assert_eq!(
            "1=tokyo"
                .parse::<RelayGroupHint>()
                .ok()
                .map(|h| (h.name, h.offline)),
            Some(("tokyo".to_owned(), false))
        );
        for bad in [
            "tokyo",
            "x=tokyo",
            "1=",
            "1=to kyo",
            "1=a,online",
            "1=a,bundle_source=",
        ] {
            assert!(bad.parse::<RelayGroupHint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn platforms() {
        assert_eq!(
            platform_of("Red Hat Enterprise 9 (64 bit) (5.14.0-284.30.1.el9_2.x86_64)"),
            Some(Platform::Linux)
        );
        assert_eq!(
            platform_of("Microsoft Windows Server 2012 R2"),
            Some(Platform::Windows)
        );
        assert_eq!(
            platform_of("Ubuntu Linux 22 (64 bit)"),
            Some(Platform::Linux)
        );
        assert_eq!(platform_of("AIX 7.2"), None);
        assert_eq!(platform_of(""), None);
    }

    #[test]
    fn odd_computers_are_noted_not_lost_silently() {
        let opts = ImportOptions {
            manager_name: "dsm".to_owned(),
            manager_address: "dsm.example.com".to_owned(),
            page_size: 10,
            relay_groups: vec![],
        };
        let groups = vec![
            ComputerGroup {
                id: 1,
                name: Some("Linux Servers".to_owned()),
                parent_group_id: None,
            },
            ComputerGroup {
                id: 2,
                name: Some("canary".to_owned()),
                parent_group_id: Some(1),
            },
        ];
        let c = |id: i64, name: &str, platform: &str, version: &str| Computer {
            id,
            host_name: Some(name.to_owned()),
            platform: Some(platform.to_owned()),
            agent_version: Some(version.to_owned()),
            group_id: Some(2),
            relay_list_id: Some(7),
            ..Computer::default()
        };
        let computers = vec![
            Computer {
                last_ip_used: Some("10.0.0.1".to_owned()),
                ..c(1, "web 01", "Red Hat Enterprise 8 (64 bit)", "20.0.1.690")
            },
            c(2, "aix-01", "AIX 7.2", "20.0.0.100"),
            c(
                3,
                "web-01",
                "Microsoft Windows Server 2019 (64 bit)",
                "12.0.0.1234",
            ),
            c(4, "dsm", "", "0.0.0.0"),
        ];
        let imp = render(
            &opts,
            "20.0.463".parse().expect("a build"),
            true,
            &groups,
            &computers,
        );
        let y = imp.comments.join("\n");
        assert!(y.contains("left out: computer 2 `aix-01`"), "{y}");
        assert!(
            y.contains(r#"hostName `web-01` is used twice, written as `web-01-3`"#),
            "{y}"
        );
        assert!(y.contains("3 written, 1 left out"), "{y}");
        let inv = &imp.inventory;
        let names: Vec<&str> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["web-01", "web-01-3", "dsm"]);
        assert_eq!(inv.hosts[0].groups, ["Linux-Servers", "canary"]);
        assert_eq!(inv.hosts[0].relay_group.as_deref(), Some("relay-list-7"));
        assert_eq!(inv.manager.name, "dsm-manager");
    }
}
