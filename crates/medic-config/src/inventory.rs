//! Inventory v1: load, check, and build a [`medic_model::Inventory`].

use std::collections::{BTreeMap, HashMap};

use medic_model::{
    AgentBuild, Become, DEFAULT_ZONE, Host, Inventory, Manager, ManagerBuild, Platform, RelayGroup,
    Settings, Zone,
};
use serde::Deserialize;

use crate::diag::{Problem, Problems, SourceFile};
use crate::yaml::{self, At, Loc, Node, NodeKind, from_node, from_node_owned};
use medic_model::names::{is_address, is_name, is_user};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManager {
    name: At<String>,
    address: At<String>,
    version: At<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    direct_download_when_relays_unavailable: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelayGroup {
    name: At<String>,
    offline: Option<bool>,
    bundle_source: Option<At<String>>,
    zone: Option<At<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZone {
    name: At<String>,
    air_gapped: Option<At<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: At<String>,
    address: At<String>,
    port: Option<At<i64>>,
    user: Option<At<String>>,
    platform: At<String>,
    os: Option<String>,
    agent_version: At<String>,
    relay: Option<bool>,
    relay_group: Option<At<String>>,
    groups: Option<Vec<At<String>>>,
    protected_by_appliance: Option<bool>,
    r#become: Option<At<String>>,
    vars: Option<BTreeMap<String, String>>,
    zone: Option<At<String>>,
}

/// A host's checked values: port, platform, build, and its resolved `become`.
type Checked = (u16, Platform, AgentBuild, Option<Become>);

const TOP_KEYS: &[&str] = &[
    "manager",
    "settings",
    "relay_groups",
    "hosts",
    "become",
    "zones",
];

/// Loads an inventory from its text. `name` is how the file is named in messages.
pub fn load_inventory(name: &str, text: &str) -> Result<Inventory, Problems> {
    let file = SourceFile::new(name, text);
    let mut problems = Problems::default();
    let root = match yaml::parse(text) {
        Ok(r) => r,
        Err(e) => {
            problems.push(e.problem(&file, "inventory format is described in docs/inventory.md"));
            return Err(problems);
        }
    };
    let mut ctx = Ctx {
        file: &file,
        problems: &mut problems,
    };
    let inv = ctx.inventory(root);
    match inv {
        Some(inv) if problems.is_empty() => Ok(inv),
        _ => Err(problems.sorted()),
    }
}

/// Where the format of a file kind is documented, for the help of its problems.
fn format_doc(what: &str) -> &'static str {
    match what {
        "playbook" => "docs/playbook.md",
        _ => "docs/inventory.md",
    }
}

pub(crate) struct Ctx<'a> {
    pub(crate) file: &'a SourceFile,
    pub(crate) problems: &'a mut Problems,
}

impl Ctx<'_> {
    pub(crate) fn err(
        &mut self,
        loc: Loc,
        code: &'static str,
        msg: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.problems
            .push(Problem::new(self.file, Some(loc), code, msg).help(help));
    }

    /// A scalar as written in the file: YAML reads an unquoted `20.0` as the number 20,
    /// and a build must be checked (and named in messages) as the operator wrote it.
    pub(crate) fn written(&self, v: &At<String>) -> String {
        let end = v.loc.offset + v.loc.len;
        match self.file.text.get(v.loc.offset..end).map(str::trim) {
            Some(t) if t != v.value && t.parse::<f64>().is_ok() => t.to_owned(),
            _ => v.value.clone(),
        }
    }

    pub(crate) fn node_err(&mut self, e: yaml::NodeError, what: &str) {
        let help = if e.message.starts_with("unknown key") {
            format!("remove or rename the key; see {}", format_doc(what))
        } else if e.message.starts_with("missing key") {
            format!("add the key; see {}", format_doc(what))
        } else {
            format!("give the value the type {} asks for", format_doc(what))
        };
        self.problems
            .push(Problem::new(self.file, Some(e.loc), "medic::yaml::shape", e.message).help(help));
    }

    /// Checks that `node` is a map whose keys are all in `allowed`; returns its entries.
    pub(crate) fn top_map<'n, 'a>(
        &mut self,
        node: &'n Node<'a>,
        allowed: &[&str],
        what: &str,
    ) -> Option<&'n [(Node<'a>, Node<'a>)]> {
        let NodeKind::Map(entries) = &node.kind else {
            self.err(
                node.loc,
                "medic::yaml::shape",
                format!("the {what} must be a map, found {}", node.kind_name()),
                format!(
                    "start the file with the {what} keys: {}",
                    allowed.join(", ")
                ),
            );
            return None;
        };
        for (k, _) in entries {
            let key = k.scalar_text().unwrap_or_default();
            if !allowed.contains(&key.as_str()) {
                self.err(
                    k.loc,
                    "medic::yaml::shape",
                    format!(
                        "unknown key `{key}`: expected one of {}",
                        allowed
                            .iter()
                            .map(|a| format!("`{a}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    format!("remove or rename the key; see {}", format_doc(what)),
                );
            }
        }
        Some(entries)
    }

    /// `key` holds something other than a list.
    fn not_a_list(&mut self, node: &Node, key: &str) {
        self.err(
            node.loc,
            "medic::yaml::shape",
            format!("`{key}` must be a list, found {}", node.kind_name()),
            format!("write `{key}:` followed by `- ...` items"),
        );
    }

    /// Deserializes every item of a list on its own, so one bad item does not hide others.
    pub(crate) fn items<T: serde::de::DeserializeOwned>(
        &mut self,
        node: Option<&Node>,
        key: &str,
        what: &str,
    ) -> Vec<(T, Loc)> {
        let Some(node) = node else { return Vec::new() };
        match &node.kind {
            NodeKind::Null => Vec::new(),
            NodeKind::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for it in items {
                    match from_node::<T>(it) {
                        Ok(v) => out.push((v, it.loc)),
                        Err(e) => self.node_err(e, what),
                    }
                }
                out
            }
            _ => {
                self.not_a_list(node, key);
                Vec::new()
            }
        }
    }

    /// Like [`Ctx::items`], consuming the list so that strings move instead of being copied.
    /// A long list is deserialized in two halves on two threads; problems keep their order.
    pub(crate) fn items_owned<T: serde::de::DeserializeOwned + Send>(
        &mut self,
        node: Option<Node<'_>>,
        key: &str,
        what: &str,
    ) -> Vec<(T, Loc)> {
        let Some(node) = node else { return Vec::new() };
        match node.kind {
            NodeKind::Null => Vec::new(),
            NodeKind::Seq(mut items) => {
                let total = items.len();
                let half = |items: Vec<Node<'_>>, out: &mut Vec<(T, Loc)>| {
                    let mut errs = Vec::new();
                    for it in items {
                        let loc = it.loc;
                        match from_node_owned::<T>(it) {
                            Ok(v) => out.push((v, loc)),
                            Err(e) => errs.push(e),
                        }
                    }
                    errs
                };
                let tail = items.split_off(if total >= 8192 { total / 2 } else { total });
                let mut out = Vec::with_capacity(total);
                let (tail, head_errs) = std::thread::scope(|s| {
                    let tail = s.spawn(|| {
                        let mut out = Vec::with_capacity(tail.len());
                        let errs = half(tail, &mut out);
                        (out, errs)
                    });
                    let head_errs = half(items, &mut out);
                    (
                        tail.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                        head_errs,
                    )
                });
                for e in head_errs {
                    self.node_err(e, what);
                }
                let (mut more, tail_errs) = tail;
                out.append(&mut more);
                for e in tail_errs {
                    self.node_err(e, what);
                }
                out
            }
            _ => {
                self.not_a_list(&node, key);
                Vec::new()
            }
        }
    }

    pub(crate) fn one_owned<T: serde::de::DeserializeOwned>(
        &mut self,
        node: Node,
        what: &str,
    ) -> Option<T> {
        match from_node_owned::<T>(node) {
            Ok(v) => Some(v),
            Err(e) => {
                self.node_err(e, what);
                None
            }
        }
    }

    pub(crate) fn one<T: serde::de::DeserializeOwned>(
        &mut self,
        node: &Node,
        what: &str,
    ) -> Option<T> {
        match from_node::<T>(node) {
            Ok(v) => Some(v),
            Err(e) => {
                self.node_err(e, what);
                None
            }
        }
    }

    fn name(&mut self, n: &At<String>, what: &str) -> bool {
        if is_name(n) {
            return true;
        }
        self.err(
            n.loc,
            "medic::inventory::bad_name",
            format!(
                "{what} name `{}` is not allowed: names use only letters, digits, `.`, `_` and `-`",
                n.value
            ),
            "rename it with [A-Za-z0-9._-]+ (names end up in file names and remote commands)",
        );
        false
    }

    fn address(&mut self, a: &At<String>, owner: &str) {
        if !is_address(a) {
            self.err(
                a.loc,
                "medic::inventory::bad_address",
                format!(
                    "`{owner}`: address `{}` is neither an IP address nor a DNS name",
                    a.value
                ),
                "write an IPv4/IPv6 address or a host name (letters, digits, `-` and `.` only)",
            );
        }
    }

    /// A `become:` value (top level or host): `sudo` or `none`.
    fn become_value(&mut self, v: &At<String>, owner: &str) -> Option<Become> {
        let b = Become::parse(&v.value);
        if b.is_none() {
            self.err(
                v.loc,
                "medic::inventory::bad_become",
                format!("{owner}: unknown `become` value `{}`", v.value),
                "use `sudo` (privileged commands run through sudo) or `none` (run them as the SSH user)",
            );
        }
        b
    }

    fn inventory(&mut self, root: Node) -> Option<Inventory> {
        let root_loc = root.loc;
        self.top_map(&root, TOP_KEYS, "inventory")?;
        let NodeKind::Map(entries) = root.kind else {
            return None;
        };
        // The first entry of each top-level key, taken out of the tree.
        let mut top: [Option<Node>; 6] = [None, None, None, None, None, None];
        for (k, v) in entries {
            let key = k.scalar_text();
            if let Some(i) = TOP_KEYS.iter().position(|t| key.as_deref() == Some(*t))
                && top[i].is_none()
            {
                top[i] = Some(v);
            }
        }
        let [
            manager_node,
            settings_node,
            groups_node,
            hosts_node,
            become_node,
            zones_node,
        ] = top;
        let zones: Vec<(RawZone, Loc)> = self.items_owned(zones_node, "zones", "inventory");
        let out_zones = self.zones(&zones);
        let top_become: Option<Become> = become_node
            .and_then(|n| self.one_owned::<At<String>>(n, "inventory"))
            .and_then(|v| self.become_value(&v, "inventory"));

        let manager = match manager_node {
            Some(n) => self.one_owned::<RawManager>(n, "inventory"),
            None => {
                self.err(
                    root_loc,
                    "medic::inventory::no_manager",
                    "missing key `manager`",
                    "add `manager: { name: dsm01, address: 10.0.0.5, version: \"20.0.463\" }`",
                );
                None
            }
        };
        let settings = settings_node
            .filter(|n| n.kind != NodeKind::Null)
            .and_then(|n| self.one_owned::<RawSettings>(n, "inventory"));
        // The names written in each list, read before the items: an item that does not load
        // has its own problem, and must not also be reported as missing where it is named.
        let written_group_names = written_names(groups_node.as_ref());
        let groups: Vec<(RawRelayGroup, Loc)> =
            self.items_owned(groups_node, "relay_groups", "inventory");
        let written_host_names = if groups.iter().any(|(g, _)| g.bundle_source.is_some()) {
            written_names(hosts_node.as_ref())
        } else {
            std::collections::HashSet::new()
        };
        let has_hosts = hosts_node.is_some();
        let hosts: Vec<(RawHost, Loc)> = self.items_owned(hosts_node, "hosts", "inventory");
        if !has_hosts {
            self.err(
                root_loc,
                "medic::inventory::no_hosts",
                "missing key `hosts`",
                "add `hosts:` with one item per computer",
            );
        }

        let mut manager_name: Option<(String, Loc)> = None;
        let manager = manager.and_then(|m| {
            let ok_name = self.name(&m.name, "manager");
            self.address(&m.address, &m.name);
            let version = match m.version.parse::<ManagerBuild>() {
                Ok(v) => Some(v),
                Err(e) => {
                    let e = self.written(&m.version).parse::<ManagerBuild>().err().unwrap_or(e);
                    self.err(
                        m.version.loc,
                        "medic::inventory::bad_manager_build",
                        format!("manager `{}`: {e}", m.name.value),
                        "write the Manager build as shown in the console's About box, e.g. \"20.0.463\"",
                    );
                    None
                }
            };
            if ok_name {
                manager_name = Some((m.name.value.clone(), m.name.loc));
            }
            Some(Manager { name: m.name.value, address: m.address.value, version: version? })
        });

        let mut group_index: HashMap<&str, usize> = HashMap::new();
        for (i, (g, _)) in groups.iter().enumerate() {
            if self.name(&g.name, "relay group") {
                if group_index.contains_key(g.name.value.as_str()) {
                    self.err(
                        g.name.loc,
                        "medic::inventory::duplicate_group",
                        format!("duplicate relay group `{}`", g.name.value),
                        "give each relay group a unique name",
                    );
                } else {
                    group_index.insert(g.name.value.as_str(), i);
                }
            }
        }
        let known_groups = || {
            let mut v: Vec<&str> = groups.iter().map(|(g, _)| g.name.value.as_str()).collect();
            v.sort_unstable();
            v.join(", ")
        };

        // Checks first (borrowing the raw hosts), then the hosts are built by moving their
        // strings out of the raw ones.
        let mut names: HashMap<&str, Loc> = HashMap::with_capacity(hosts.len());
        // (address as compared, port) -> the line of the first host there.
        let mut endpoints: HashMap<(String, u16), u32> = HashMap::with_capacity(hosts.len());
        let mut parsed: Vec<Option<Checked>> = Vec::with_capacity(hosts.len());
        for (h, _) in &hosts {
            let ok_name = self.name(&h.name, "host");
            if ok_name {
                let first = names.get(h.name.value.as_str()).copied().or_else(|| {
                    manager_name
                        .as_ref()
                        .filter(|(n, _)| *n == h.name.value)
                        .map(|(_, l)| *l)
                });
                if let Some(first) = first {
                    let first_line = first.line;
                    self.err(
                        h.name.loc,
                        "medic::inventory::duplicate_host",
                        format!(
                            "duplicate host name `{}` (first defined on line {first_line})",
                            h.name.value
                        ),
                        "give every host, and the Manager, a unique name",
                    );
                } else {
                    names.insert(h.name.value.as_str(), h.name.loc);
                }
            }
            self.address(&h.address, &h.name);
            let port = match &h.port {
                None => Some(22),
                Some(p) => match u16::try_from(p.value) {
                    Ok(v) if v > 0 => Some(v),
                    _ => {
                        self.err(
                            p.loc,
                            "medic::inventory::bad_port",
                            format!("host `{}`: port {} is out of range", h.name.value, p.value),
                            "use a TCP port between 1 and 65535",
                        );
                        None
                    }
                },
            };
            if let Some(u) = &h.user
                && !is_user(u)
            {
                self.err(
                    u.loc,
                    "medic::inventory::bad_user",
                    format!(
                        "host `{}`: user `{}` is not a login name",
                        h.name.value, u.value
                    ),
                    "use letters, digits, `.`, `_` and `-` only",
                );
            }
            // Two entries for one SSH endpoint are one machine planned twice: its steps would
            // run side by side, past the one-step-per-host limit. One address on two ports
            // (port forwarding, a NAT) is two machines.
            if let Some(port) = port
                && is_address(&h.address)
            {
                let key = (
                    h.address.value.trim_end_matches('.').to_ascii_lowercase(),
                    port,
                );
                match endpoints.get(&key) {
                    Some(first) => self.err(
                        h.address.loc,
                        "medic::inventory::duplicate_address",
                        format!(
                            "host `{}`: address {} port {port} is already host of line {first}: one machine would be planned twice",
                            h.name.value, h.address.value
                        ),
                        "keep one entry per machine; hosts that share an address need different `port:`s",
                    ),
                    None => {
                        endpoints.insert(key, h.address.loc.line);
                    }
                }
            }
            let platform = Platform::parse(&h.platform);
            if platform.is_none() {
                self.err(
                    h.platform.loc,
                    "medic::inventory::bad_platform",
                    format!(
                        "host `{}`: unknown platform `{}`",
                        h.name.value, h.platform.value
                    ),
                    "use `linux` or `windows`",
                );
            }
            let build = match h.agent_version.parse::<AgentBuild>() {
                Ok(b) => Some(b),
                Err(e) => {
                    let e = self
                        .written(&h.agent_version)
                        .parse::<AgentBuild>()
                        .err()
                        .unwrap_or(e);
                    self.err(
                        h.agent_version.loc,
                        "medic::inventory::bad_agent_build",
                        format!("host `{}`: {e}", h.name.value),
                        "copy the build from the console or `dsa_query`, e.g. \"20.0.0-3445\" or \"20.0.0.3445\"; use \"0.0.0.0\" for a computer without an agent",
                    );
                    None
                }
            };
            if h.relay.unwrap_or(false) && build.is_some_and(|b| b.is_none()) {
                self.err(
                    h.agent_version.loc,
                    "medic::inventory::relay_without_agent",
                    format!(
                        "host `{}`: `relay: true` with agent_version \"0.0.0.0\" (no agent): a Relay is an Agent with the Relay role",
                        h.name.value
                    ),
                    "write the Relay's agent build, or remove `relay: true` if the computer has no agent",
                );
            }
            if let Some(rg) = &h.relay_group
                && !group_index.contains_key(rg.value.as_str())
                && !written_group_names.contains(rg.value.as_str())
            {
                self.err(
                    rg.loc,
                    "medic::inventory::unknown_relay_group",
                    format!(
                        "host `{}`: unknown relay group `{}`",
                        h.name.value, rg.value
                    ),
                    format!(
                        "declare it under `relay_groups:` or use one of: {}",
                        known_groups()
                    ),
                );
            }
            for g in h.groups.iter().flatten() {
                self.name(g, "host group");
            }
            if let Some(z) = &h.zone {
                self.zone_ref(z, &format!("host `{}`", h.name.value), &out_zones);
            }
            let become_ok = match &h.r#become {
                None => Some(top_become),
                Some(v) => self
                    .become_value(v, &format!("host `{}`", h.name.value))
                    .map(Some),
            };
            parsed.push(match (port, platform, build, become_ok) {
                (Some(port), Some(platform), Some(build), Some(b)) => {
                    Some((port, platform, build, b))
                }
                _ => None,
            });
        }
        drop(names);
        drop(endpoints);

        // Only an offline group's bundle source is looked up by name.
        let by_name: HashMap<&str, &RawHost> = if groups
            .iter()
            .any(|(g, _)| g.offline.unwrap_or(false) && g.bundle_source.is_some())
        {
            hosts
                .iter()
                .map(|(h, _)| (h.name.value.as_str(), h))
                .collect()
        } else {
            HashMap::new()
        };
        let mut out_groups = Vec::with_capacity(groups.len());
        for (g, gloc) in &groups {
            let offline = g.offline.unwrap_or(false);
            match (&g.bundle_source, offline) {
                (None, true) => self.err(
                    *gloc,
                    "medic::inventory::no_bundle_source",
                    format!("offline relay group `{}` has no `bundle_source`", g.name.value),
                    "name the Relay of a connected group that makes the update bundle: `bundle_source: relay-x`",
                ),
                (Some(src), false) => self.err(
                    src.loc,
                    "medic::inventory::bundle_source_online",
                    format!("relay group `{}` is online, so it takes no `bundle_source`", g.name.value),
                    "remove `bundle_source`, or set `offline: true` if the group is air-gapped",
                ),
                (Some(src), true) => {
                    let why = match by_name.get(src.value.as_str()) {
                        None if written_host_names.contains(src.value.as_str()) => None,
                        None => Some(format!("no host is named `{}`", src.value)),
                        Some(h) if !h.relay.unwrap_or(false) => Some(format!("host `{}` is not a Relay", src.value)),
                        Some(h) => match h.relay_group.as_ref().and_then(|rg| group_index.get(rg.value.as_str())) {
                            None => Some(format!("Relay `{}` serves no relay group", src.value)),
                            Some(&i) if groups[i].0.offline.unwrap_or(false) => {
                                Some(format!("Relay `{}` is in offline group `{}`", src.value, groups[i].0.name.value))
                            }
                            Some(_) => None,
                        },
                    };
                    if let Some(why) = why {
                        self.err(
                            src.loc,
                            "medic::inventory::bad_bundle_source",
                            format!("bundle source of offline group `{}` must be a Relay of an online group: {why}", g.name.value),
                            "name a Relay (`relay: true`) whose `relay_group` is a connected (not offline) group",
                        );
                    }
                }
                (None, false) => {}
            }
            if let Some(z) = &g.zone {
                self.zone_ref(z, &format!("relay group `{}`", g.name.value), &out_zones);
            }
            out_groups.push(RelayGroup {
                name: g.name.value.clone(),
                offline,
                bundle_source: g.bundle_source.as_ref().map(|s| s.value.clone()),
                zone: g.zone.as_ref().map(|z| z.value.clone()),
            });
        }
        drop(by_name);
        drop(group_index);

        let manager = manager?;
        if !self.problems.is_empty() {
            return None;
        }
        let group_zone: HashMap<&str, &str> = out_groups
            .iter()
            .filter_map(|g| Some((g.name.as_str(), g.zone.as_deref()?)))
            .collect();
        let mut out_hosts = Vec::with_capacity(hosts.len());
        for ((h, _), p) in hosts.into_iter().zip(parsed) {
            let Some((port, platform, agent_version, r#become)) = p else {
                continue;
            };
            // A host's own zone, else its relay group's; the default zone is `None`, so
            // that an inventory without zones gives the plan it always gave.
            let zone = h
                .zone
                .map(|z| z.value)
                .or_else(|| {
                    let g = h.relay_group.as_ref()?;
                    group_zone.get(g.value.as_str()).map(|z| (*z).to_owned())
                })
                .filter(|z| z != DEFAULT_ZONE);
            out_hosts.push(Host {
                name: h.name.value,
                address: h.address.value,
                port,
                user: h.user.map(|u| u.value),
                platform,
                os: h.os,
                agent_version,
                relay: h.relay.unwrap_or(false),
                relay_group: h.relay_group.map(|g| g.value),
                groups: h.groups.into_iter().flatten().map(|g| g.value).collect(),
                protected_by_appliance: h.protected_by_appliance.unwrap_or(false),
                r#become,
                vars: h.vars.unwrap_or_default(),
                zone,
            });
        }
        drop(group_zone);

        Some(Inventory {
            manager,
            settings: Settings {
                direct_download_when_relays_unavailable: settings
                    .and_then(|s| s.direct_download_when_relays_unavailable)
                    .unwrap_or(false),
            },
            relay_groups: out_groups,
            hosts: out_hosts,
            zones: out_zones,
        })
    }

    /// The declared zones: names checked, unique, `default` never air-gapped (the main
    /// run is where it runs).
    fn zones(&mut self, raw: &[(RawZone, Loc)]) -> Vec<Zone> {
        let mut out: Vec<Zone> = Vec::with_capacity(raw.len());
        for (z, _) in raw {
            if !self.name(&z.name, "zone") {
                continue;
            }
            if out.iter().any(|o| o.name == z.name.value) {
                self.err(
                    z.name.loc,
                    "medic::inventory::duplicate_zone",
                    format!("duplicate zone `{}`", z.name.value),
                    "declare each zone once",
                );
                continue;
            }
            let air_gapped = z.air_gapped.as_ref().is_some_and(|a| a.value);
            if air_gapped && z.name.value == DEFAULT_ZONE {
                let loc = z.air_gapped.as_ref().map_or(z.name.loc, |a| a.loc);
                self.err(
                    loc,
                    "medic::inventory::default_air_gapped",
                    format!("zone `{DEFAULT_ZONE}` cannot be air-gapped: it is where the main run runs"),
                    "put the air-gapped hosts in a zone of their own (`zone: NAME` on the hosts or their relay group)",
                );
                continue;
            }
            out.push(Zone {
                name: z.name.value.clone(),
                air_gapped,
            });
        }
        out
    }

    /// A `zone:` on a host or relay group: `default` or a declared zone.
    fn zone_ref(&mut self, z: &At<String>, owner: &str, zones: &[Zone]) {
        if z.value == DEFAULT_ZONE || zones.iter().any(|d| d.name == z.value) {
            return;
        }
        if !is_name(z) {
            self.name(z, "zone");
            return;
        }
        let mut known: Vec<&str> = zones.iter().map(|d| d.name.as_str()).collect();
        known.push(DEFAULT_ZONE);
        self.err(
            z.loc,
            "medic::inventory::unknown_zone",
            format!("{owner}: unknown zone `{}`", z.value),
            format!(
                "declare it under `zones:` (e.g. `zones: [{{ name: {}, air_gapped: true }}]`) or use one of: {}",
                z.value,
                known.join(", ")
            ),
        );
    }
}

/// What loads but is probably not what the operator meant, each a warning at its place
/// (the inventory still loads):
/// - a Relay without `relay_group`: the Manager's API cannot tell which group a Relay
///   serves (ds-domain.md §2.4), so an imported inventory may have some; no Agent's
///   `relay-group` barrier waits for such a Relay;
/// - a relay group without a Relay: its Agents download from no Relay of theirs (an imported
///   inventory names the groups Agents use, not those Relays serve, so this is not refused).
pub fn inventory_warnings(name: &str, text: &str, inv: &Inventory) -> Problems {
    let mut found: Vec<(Option<String>, Option<String>, String, String)> = Vec::new();
    for h in &inv.hosts {
        if h.relay && h.relay_group.is_none() {
            found.push((
                Some(h.name.clone()),
                None,
                format!(
                    "Relay `{}` has no `relay_group`: no Agent's relay-group barrier waits for it",
                    h.name
                ),
                "add `relay_group: GROUP` naming the group the Relay serves".to_owned(),
            ));
        }
    }
    let served: std::collections::HashSet<&str> = inv
        .hosts
        .iter()
        .filter(|h| h.relay)
        .filter_map(|h| h.relay_group.as_deref())
        .collect();
    for g in &inv.relay_groups {
        if !served.contains(g.name.as_str()) {
            let what = if g.offline {
                "offline relay group `{}` has no Relay: the update bundle has nowhere to be imported"
            } else {
                "relay group `{}` has no Relay (no host with `relay: true` and `relay_group: {}`): its Agents download from no Relay of theirs"
            };
            found.push((
                None,
                Some(g.name.clone()),
                what.replace("{}", &g.name),
                "add the group's Relays to the inventory, or remove the group".to_owned(),
            ));
        }
    }
    let mut out = Problems::default();
    if found.is_empty() {
        return out;
    }
    // Only now is the text parsed again, for the places.
    let file = SourceFile::new(name, text);
    let root = yaml::parse(text).ok();
    let item = |list: &str, wanted: &str, field: &str| -> Option<Loc> {
        let NodeKind::Seq(items) = &root.as_ref()?.get(list)?.kind else {
            return None;
        };
        let entry = items
            .iter()
            .find(|h| h.get("name").and_then(|n| n.scalar_text()).as_deref() == Some(wanted))?;
        Some(entry.get(field).map_or(entry.loc, |v| v.loc))
    };
    for (host, group, msg, help) in found {
        let loc = match (host, group) {
            (Some(h), _) => item("hosts", &h, "relay"),
            (_, Some(g)) => item("relay_groups", &g, "name"),
            _ => None,
        };
        out.push(Problem::new(&file, loc, "medic::inventory::warning", msg).help(help));
    }
    out
}

/// The `name:` of every item of a list node, as written (whether the item loads or not).
fn written_names(list: Option<&Node>) -> std::collections::HashSet<String> {
    match list.map(|n| &n.kind) {
        Some(NodeKind::Seq(items)) => items
            .iter()
            .filter_map(|it| it.get("name").and_then(|n| n.scalar_text()))
            .collect(),
        _ => std::collections::HashSet::new(),
    }
}

/// Where host `host`'s `field` (or, without it, the host's entry) is written in an inventory
/// text that loaded: for problems found after loading (a plan the playbook refuses).
pub fn host_location(text: &str, host: &str, field: &str) -> Option<Loc> {
    let root = yaml::parse(text).ok()?;
    let NodeKind::Seq(hosts) = &root.get("hosts")?.kind else {
        return None;
    };
    let entry = hosts
        .iter()
        .find(|h| h.get("name").and_then(|n| n.scalar_text()).as_deref() == Some(host))?;
    Some(entry.get(field).map_or(entry.loc, |v| v.loc))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host's own `become` wins over the top-level one; a host without either has none.
    #[test]
    fn become_is_per_host_then_top_level() {
        let head = "manager: { name: dsm01, address: 10.0.0.5, version: \"20.0.463\" }\n";
        let hosts = "hosts:\n  - { name: a, address: 10.0.0.1, platform: linux, agent_version: \"20.0.0-1\" }\n  - { name: b, address: 10.0.0.2, platform: linux, agent_version: \"20.0.0-1\", become: none }\n";
        let inv = load_inventory("i.yaml", &format!("{head}become: sudo\n{hosts}")).expect("loads");
        let got: Vec<Option<Become>> = inv.hosts.iter().map(|h| h.r#become).collect();
        assert_eq!(got, vec![Some(Become::Sudo), Some(Become::None)]);
        let inv = load_inventory("i.yaml", &format!("{head}{hosts}")).expect("loads");
        let got: Vec<Option<Become>> = inv.hosts.iter().map(|h| h.r#become).collect();
        assert_eq!(got, vec![None, Some(Become::None)]);
    }

    /// A host's own zone wins over its relay group's; `default` (written or not) is `None`;
    /// the declared air-gapped zones are listed.
    #[test]
    fn a_host_inherits_its_relay_groups_zone() {
        let text = "manager: { name: dsm01, address: 10.0.0.5, version: \"20.0.463\" }
zones:
  - { name: site-b, air_gapped: true }
  - { name: site-c }
relay_groups:
  - { name: b, zone: site-b }
  - { name: a }
hosts:
  - { name: r1, address: 10.0.0.1, platform: linux, agent_version: \"20.0.0-1\", relay: true, relay_group: b }
  - { name: h2, address: 10.0.0.2, platform: linux, agent_version: \"20.0.0-1\", relay_group: b, zone: site-c }
  - { name: h3, address: 10.0.0.3, platform: linux, agent_version: \"20.0.0-1\", relay_group: b, zone: default }
  - { name: h4, address: 10.0.0.4, platform: linux, agent_version: \"20.0.0-1\", relay_group: a }
";
        let inv = load_inventory("i.yaml", text).expect("loads");
        let got: Vec<Option<&str>> = inv.hosts.iter().map(|h| h.zone.as_deref()).collect();
        assert_eq!(got, vec![Some("site-b"), Some("site-c"), None, None]);
        assert_eq!(inv.air_gapped_zones().collect::<Vec<_>>(), vec!["site-b"]);
        // The writer keeps what each host inherits and what it overrides.
        let back =
            load_inventory("w.yaml", &crate::write_inventory(&inv, &[])).expect("reads back");
        assert_eq!(back, inv);
    }

    /// Every zone problem at once, each at its place: an unknown zone (host and group), a
    /// bad name, a duplicate, an air-gapped `default`, an unknown key.
    #[test]
    fn zone_problems_are_placed() {
        let text = "manager: { name: dsm01, address: 10.0.0.5, version: \"20.0.463\" }
zones:
  - { name: site-b, air_gapped: true }
  - { name: site-b }
  - { name: default, air_gapped: true }
  - { name: \"bad zone\" }
  - { name: site-d, airgapped: true }
relay_groups:
  - { name: a, zone: nowhere }
hosts:
  - { name: h1, address: 10.0.0.1, platform: linux, agent_version: \"20.0.0-1\", zone: site-x }
";
        let problems = load_inventory("i.yaml", text).expect_err("refused");
        let got: Vec<(u32, u32, &str)> = problems
            .0
            .iter()
            .map(|p| {
                let l = p.loc.expect("placed");
                (l.line, l.col, p.message.as_str())
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (4, 13, "duplicate zone `site-b`"),
                (
                    5,
                    34,
                    "zone `default` cannot be air-gapped: it is where the main run runs"
                ),
                (
                    6,
                    13,
                    "zone name `bad zone` is not allowed: names use only letters, digits, `.`, `_` and `-`"
                ),
                (
                    7,
                    21,
                    "unknown key `airgapped`: expected one of `name`, `air_gapped`"
                ),
                (9, 22, "relay group `a`: unknown zone `nowhere`"),
                (11, 86, "host `h1`: unknown zone `site-x`"),
            ],
            "{problems}"
        );
    }

    /// A list long enough to be read on two threads reports the problems of both halves, in
    /// file order, and loads the same hosts as a short one would.
    #[test]
    fn a_long_host_list_reports_every_problem_in_order() {
        let n = 15_000;
        // Over 1 MiB, so that the parse is split too.
        let mut text = String::from(
            "manager: { name: dsm01, address: 10.0.0.5, version: \"20.0.463\" }\nhosts:\n",
        );
        let bad = [3usize, 4_000, 9_000, 14_999];
        for i in 0..n {
            if i == bad[0] || i == bad[2] {
                text.push_str(&format!(
                    "  - {{ name: h{i}, address: 10.1.0.1, platform: linux, agent_version: \"20.0.0-1\", prot: 22 }}\n"
                ));
            } else if i == bad[1] || i == bad[3] {
                text.push_str(&format!(
                    "  - {{ name: h{i}, address: 10.1.0.1, platform: linux, agent_version: \"20.0.0-1\", port: [22] }}\n"
                ));
            } else {
                text.push_str(&format!(
                    "  - {{ name: h{i}, address: 10.1.{}.{}, platform: linux, agent_version: \"20.0.0-1\" }}\n",
                    i / 250,
                    i % 250
                ));
            }
        }
        let problems = load_inventory("inv.yaml", &text).expect_err("bad hosts");
        let lines: Vec<u32> = problems
            .0
            .iter()
            .map(|p| p.loc.map(|l| l.line).unwrap_or(0))
            .collect();
        assert_eq!(
            lines,
            bad.iter().map(|&i| i as u32 + 3).collect::<Vec<_>>(),
            "{problems}"
        );
        assert!(
            problems.0[0].message.contains("unknown key `prot`"),
            "{problems}"
        );
        let line = text.lines().nth(bad[0] + 2).unwrap_or_default();
        let col = line.find("prot").map(|c| c as u32 + 1);
        assert_eq!(problems.0[0].loc.map(|l| l.col), col);

        // Without the bad ones, every host loads, in file order.
        let good: String = text
            .lines()
            .filter(|l| !l.contains("prot") && !l.contains("[22]"))
            .map(|l| format!("{l}\n"))
            .collect();
        let inv = load_inventory("inv.yaml", &good).expect("loads");
        assert_eq!(inv.hosts.len(), n - bad.len());
        assert_eq!(inv.hosts[3].name, "h4");
        assert_eq!(inv.hosts.last().map(|h| h.name.as_str()), Some("h14998"));
    }
}
