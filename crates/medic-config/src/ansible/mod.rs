//! Reading Ansible inventories: INI, YAML, the JSON of `ansible-inventory --list`, and the
//! `group_vars/` and `host_vars/` files beside them, into hosts with their groups and their
//! connection details (`ansible_host`, `ansible_port`, `ansible_user`).
//!
//! The rules are Ansible's own (ansible-core's `ini` and `yaml` inventory plugins and its
//! variable precedence), so that `ansible-inventory --list` on the same files gives the
//! same hosts and groups (tested against the real program in medic-cli's tests):
//! - every group is a child of `all`; a host is in its groups and in all their ancestors;
//! - a variable is taken from, lowest first: the inventory's group vars (groups ordered
//!   by depth under `all`, then name), `group_vars/all`, the other `group_vars/` files
//!   (same order), the inventory's host vars, `host_vars/` files.
//!
//! Where medic is stricter than Ansible, and says so with the file, line and column: a key
//! a group cannot have (Ansible warns and drops it, and with it the hosts under it), a
//! value medic cannot use for a connection (a template, a bad address or port), the legacy
//! `ansible_ssh_host`/`_port`/`_user` (not read, so refused rather than ignored), a vault
//! and an inventory plugin's configuration (run `ansible-inventory --list` and import its
//! JSON instead). Dynamic inventory scripts are never run.

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::{Problem, Problems, SourceFile};
use crate::yaml::{self, Loc, Node, NodeKind};
use medic_model::names::{is_address, is_user};

mod ini;
mod merge;
mod pattern;

pub use merge::{Merged, merge};

/// How an inventory file is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnsibleFormat {
    Ini,
    Yaml,
    Json,
}

impl AnsibleFormat {
    /// By extension (`.yml`, `.yaml`, `.json`, `.ini`), else by content: `{` first is JSON,
    /// a `[section]` line is INI, a top-level `key:` line is YAML, anything else INI.
    pub fn detect(name: &str, text: &str) -> AnsibleFormat {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".yml") || lower.ends_with(".yaml") {
            return AnsibleFormat::Yaml;
        }
        if lower.ends_with(".json") {
            return AnsibleFormat::Json;
        }
        if lower.ends_with(".ini") {
            return AnsibleFormat::Ini;
        }
        let lines = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with(['#', ';']));
        for l in lines {
            let t = l.trim();
            if t.starts_with('{') {
                return AnsibleFormat::Json;
            }
            if t.starts_with('[') && t.contains(']') {
                return AnsibleFormat::Ini;
            }
            if t == "---" || (!l.starts_with([' ', '\t']) && t.ends_with(':')) {
                return AnsibleFormat::Yaml;
            }
        }
        AnsibleFormat::Ini
    }
}

/// The files of an Ansible inventory, read by the caller.
#[derive(Clone, Debug, Default)]
pub struct AnsibleSources {
    /// Inventory files, in the order Ansible reads them (a directory's files sorted).
    pub inventories: Vec<SourceFile>,
    /// `group_vars/GROUP[.yml]` or `group_vars/GROUP/*`: (group, file).
    pub group_vars: Vec<(String, SourceFile)>,
    /// `host_vars/HOST[.yml]` or `host_vars/HOST/*`: (host, file).
    pub host_vars: Vec<(String, SourceFile)>,
}

/// One host as Ansible sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnsibleHost {
    /// The inventory name (`inventory_hostname`).
    pub name: String,
    /// Every group the host is in, ancestors included, without `all` and `ungrouped`;
    /// sorted.
    pub groups: Vec<String>,
    /// `ansible_host`.
    pub address: Option<String>,
    /// `ansible_port` (or a `host:PORT` pattern).
    pub port: Option<u16>,
    /// `ansible_user`.
    pub user: Option<String>,
    /// `ansible_connection` when it is not SSH (`winrm`, `psrp`, `local`, ...).
    pub connection: Option<String>,
    /// `file:line:col` of the host's first definition.
    pub defined_at: String,
}

/// Hosts sorted by name; group names sorted (without `all` and `ungrouped`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnsibleInventory {
    pub hosts: Vec<AnsibleHost>,
    pub groups: Vec<String>,
}

/// Reads every file; all problems of all files are returned together.
pub fn read_ansible(src: &AnsibleSources) -> Result<AnsibleInventory, Problems> {
    let mut problems = Problems::default();
    let mut b = Builder::new(&mut problems);
    for f in &src.inventories {
        match AnsibleFormat::detect(&f.name, &f.text) {
            AnsibleFormat::Ini => ini::read(&mut b, f),
            AnsibleFormat::Yaml => read_yaml(&mut b, f),
            AnsibleFormat::Json => read_json(&mut b, f),
        }
    }
    let mut group_files = Vec::new();
    for (g, f) in &src.group_vars {
        if let Some(vars) = read_vars_file(&mut b, f) {
            group_files.push((g.clone(), vars));
        }
    }
    let mut host_files = Vec::new();
    for (h, f) in &src.host_vars {
        if let Some(vars) = read_vars_file(&mut b, f) {
            host_files.push((h.clone(), vars));
        }
    }
    let inv = b.resolve(group_files, host_files);
    if problems.is_empty() {
        Ok(inv)
    } else {
        Err(problems.sorted())
    }
}

/// A variable's value, as far as medic reads it.
#[derive(Clone, Debug)]
pub(crate) enum Val {
    Str(String),
    Int(i64),
    Other(&'static str),
}

#[derive(Clone, Debug)]
pub(crate) struct Var {
    pub(crate) val: Val,
    pub(crate) file: SourceFile,
    pub(crate) loc: Loc,
}

type Vars = BTreeMap<String, Var>;

#[derive(Default)]
struct Group {
    vars: Vars,
    children: BTreeSet<String>,
    hosts: BTreeSet<String>,
}

struct HostDef {
    vars: Vars,
    at: String,
}

pub(crate) struct Builder<'p> {
    groups: BTreeMap<String, Group>,
    hosts: BTreeMap<String, HostDef>,
    problems: &'p mut Problems,
}

const DOC_HELP: &str = "the Ansible import is described in docs/inventory.md";

impl<'p> Builder<'p> {
    fn new(problems: &'p mut Problems) -> Self {
        let mut groups = BTreeMap::new();
        groups.insert("all".to_owned(), Group::default());
        groups.insert("ungrouped".to_owned(), Group::default());
        Builder {
            groups,
            hosts: BTreeMap::new(),
            problems,
        }
    }

    pub(crate) fn problem(
        &mut self,
        file: &SourceFile,
        loc: Loc,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.problems
            .push(Problem::new(file, Some(loc), "medic::ansible::inventory", message).help(help));
    }

    pub(crate) fn has_group(&self, g: &str) -> bool {
        self.groups.contains_key(g)
    }

    pub(crate) fn add_group(&mut self, g: &str) {
        self.groups.entry(g.to_owned()).or_default();
    }

    pub(crate) fn add_child(&mut self, parent: &str, child: &str) {
        self.add_group(child);
        if let Some(p) = self.groups.get_mut(parent) {
            p.children.insert(child.to_owned());
        }
    }

    pub(crate) fn set_group_var(&mut self, g: &str, k: String, v: Var) {
        self.add_group(g);
        if let Some(grp) = self.groups.get_mut(g) {
            grp.vars.insert(k, v);
        }
    }

    /// A host pattern in a group, with its vars (set on every host it names).
    pub(crate) fn add_hosts(
        &mut self,
        group: &str,
        pattern: &str,
        file: &SourceFile,
        loc: Loc,
        vars: Vec<(String, Var)>,
    ) {
        let (names, port) = match pattern::expand(pattern) {
            Ok(x) => x,
            Err(e) => {
                self.problem(
                    file,
                    loc,
                    format!("bad host pattern {e}"),
                    "write NAME, NAME:PORT or a range such as web[01:20].example.com",
                );
                return;
            }
        };
        let mut vars = vars;
        if let Some(p) = port {
            // Set first, so that an `ansible_port=` on the same line wins, as in Ansible.
            vars.insert(
                0,
                (
                    "ansible_port".to_owned(),
                    Var {
                        val: Val::Int(i64::from(p)),
                        file: file.clone(),
                        loc,
                    },
                ),
            );
        }
        for n in names {
            self.add_host(Some(group), n, file, loc, &vars);
        }
    }

    /// One host by its exact name, in `group` (or in none but `all`), with vars.
    fn add_host(
        &mut self,
        group: Option<&str>,
        name: String,
        file: &SourceFile,
        loc: Loc,
        vars: &[(String, Var)],
    ) {
        let h = self.hosts.entry(name.clone()).or_insert_with(|| HostDef {
            vars: Vars::new(),
            at: format!("{}:{}:{}", file.name, loc.line, loc.col),
        });
        for (k, v) in vars {
            h.vars.insert(k.clone(), v.clone());
        }
        if let Some(group) = group {
            self.add_group(group);
            if let Some(g) = self.groups.get_mut(group) {
                g.hosts.insert(name);
            }
        }
    }

    /// Ancestors of each group, depth under `all`, host groups, then the variables.
    fn resolve(
        mut self,
        group_files: Vec<(String, Vars)>,
        host_files: Vec<(String, Vars)>,
    ) -> AnsibleInventory {
        // Every group without a parent is a child of `all` (Ansible's reconcile step).
        let names: Vec<String> = self.groups.keys().cloned().collect();
        let mut has_parent: BTreeSet<String> = BTreeSet::new();
        for g in self.groups.values() {
            has_parent.extend(g.children.iter().cloned());
        }
        for n in &names {
            if n != "all" && !has_parent.contains(n) {
                self.add_child("all", n);
            }
        }
        let mut parents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (p, g) in &self.groups {
            for c in &g.children {
                parents.entry(c.as_str()).or_default().push(p.as_str());
            }
        }
        // Depth: the longest path from `all`; a cycle is refused.
        let mut depth: BTreeMap<&str, usize> = BTreeMap::new();
        let mut cycle = None;
        for n in self.groups.keys() {
            let mut stack = Vec::new();
            if let Err(c) = depth_of(n, &parents, &mut depth, &mut stack) {
                cycle = Some(c);
                break;
            }
        }
        if let Some(c) = cycle {
            self.problems.push(
                Problem::new(
                    &SourceFile::new("ansible inventory", ""),
                    None,
                    "medic::ansible::cycle",
                    format!("the groups' children form a loop: {}", c.join(" -> ")),
                )
                .help("a group cannot be its own ancestor: remove one of these children"),
            );
            return AnsibleInventory::default();
        }
        let mut direct: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (g, grp) in &self.groups {
            for h in &grp.hosts {
                direct.entry(h.as_str()).or_default().insert(g.as_str());
            }
        }
        let group_files: BTreeMap<&str, Vec<&Vars>> =
            group_files.iter().fold(BTreeMap::new(), |mut m, (g, v)| {
                m.entry(g.as_str()).or_insert_with(Vec::new).push(v);
                m
            });
        let mut out = AnsibleInventory {
            hosts: Vec::with_capacity(self.hosts.len()),
            groups: self
                .groups
                .keys()
                .filter(|g| *g != "all" && *g != "ungrouped")
                .cloned()
                .collect(),
        };
        let mut found: Vec<(Var, String)> = Vec::new();
        for (name, def) in &self.hosts {
            let mut all: BTreeSet<&str> = BTreeSet::new();
            let mut todo: Vec<&str> = direct
                .get(name.as_str())
                .into_iter()
                .flatten()
                .copied()
                .collect();
            todo.push("all");
            while let Some(g) = todo.pop() {
                if all.insert(g) {
                    todo.extend(parents.get(g).into_iter().flatten().copied());
                }
            }
            let mut ordered: Vec<&str> = all.iter().copied().collect();
            ordered.sort_by_key(|g| (depth.get(g).copied().unwrap_or(0), *g));
            let mut vars: BTreeMap<&str, &Var> = BTreeMap::new();
            for g in &ordered {
                vars.extend(self.groups[*g].vars.iter().map(|(k, v)| (k.as_str(), v)));
            }
            for f in group_files.get("all").into_iter().flatten() {
                vars.extend(f.iter().map(|(k, v)| (k.as_str(), v)));
            }
            for g in ordered.iter().filter(|g| **g != "all") {
                for f in group_files.get(*g).into_iter().flatten() {
                    vars.extend(f.iter().map(|(k, v)| (k.as_str(), v)));
                }
            }
            vars.extend(def.vars.iter().map(|(k, v)| (k.as_str(), v)));
            for (h, f) in &host_files {
                if h == name {
                    vars.extend(f.iter().map(|(k, v)| (k.as_str(), v)));
                }
            }
            let mut host = AnsibleHost {
                name: name.clone(),
                groups: all
                    .iter()
                    .filter(|g| **g != "all" && **g != "ungrouped")
                    .map(|g| (*g).to_owned())
                    .collect(),
                address: None,
                port: None,
                user: None,
                connection: None,
                defined_at: def.at.clone(),
            };
            for legacy in ["ansible_ssh_host", "ansible_ssh_port", "ansible_ssh_user"] {
                if let Some(v) = vars.get(legacy) {
                    found.push((
                        (*v).clone(),
                        format!(
                            "host `{name}`: `{legacy}` is not read by medic; rename it `{}`",
                            legacy.replace("_ssh", "")
                        ),
                    ));
                }
            }
            if let Some(v) = vars.get("ansible_host") {
                match &v.val {
                    Val::Str(s) if is_address(s) => host.address = Some(s.clone()),
                    other => found.push((
                        (*v).clone(),
                        format!(
                            "host `{name}`: ansible_host {} is not an IP address or a DNS name",
                            shown(other)
                        ),
                    )),
                }
            }
            if let Some(v) = vars.get("ansible_connection") {
                match &v.val {
                    Val::Str(s)
                        if matches!(
                            s.as_str(),
                            "ssh"
                                | "smart"
                                | "paramiko"
                                | "paramiko_ssh"
                                | "ansible.builtin.ssh"
                                | "ansible.builtin.paramiko_ssh"
                        ) => {}
                    Val::Str(s) => host.connection = Some(s.clone()),
                    other => host.connection = Some(shown(other)),
                }
            }
            if let Some(v) = vars.get("ansible_port") {
                let p = match &v.val {
                    Val::Int(i) => u16::try_from(*i).ok().filter(|p| *p > 0),
                    Val::Str(s) => s.trim().parse::<u16>().ok().filter(|p| *p > 0),
                    Val::Other(_) => None,
                };
                match p {
                    Some(p) => host.port = Some(p),
                    None => found.push((
                        (*v).clone(),
                        format!(
                            "host `{name}`: ansible_port {} is not a port from 1 to 65535",
                            shown(&v.val)
                        ),
                    )),
                }
            }
            if let Some(v) = vars.get("ansible_user") {
                match &v.val {
                    Val::Str(s) if is_user(s) => host.user = Some(s.clone()),
                    other => found.push((
                        (*v).clone(),
                        format!(
                            "host `{name}`: ansible_user {} is not a login name (letters, digits, `.`, `_`, `-`)",
                            shown(other)
                        ),
                    )),
                }
            }
            out.hosts.push(host);
        }
        for (v, msg) in found {
            let help = if msg.contains("{{") {
                "medic does not evaluate templates: run `ansible-inventory -i INVENTORY --list > inventory.json` and import that file"
            } else {
                "fix the value where it is set (the place named here wins for this host)"
            };
            self.problem(&v.file, v.loc, msg, help);
        }
        out
    }
}

fn depth_of<'a>(
    g: &'a str,
    parents: &BTreeMap<&'a str, Vec<&'a str>>,
    depth: &mut BTreeMap<&'a str, usize>,
    stack: &mut Vec<&'a str>,
) -> Result<usize, Vec<String>> {
    if let Some(d) = depth.get(g) {
        return Ok(*d);
    }
    if let Some(i) = stack.iter().position(|s| *s == g) {
        let mut c: Vec<String> = stack[i..].iter().rev().map(|s| (*s).to_owned()).collect();
        c.push(g.to_owned());
        return Err(c);
    }
    stack.push(g);
    let mut d = 0;
    for p in parents.get(g).into_iter().flatten() {
        d = d.max(depth_of(p, parents, depth, stack)? + 1);
    }
    stack.pop();
    depth.insert(g, d);
    Ok(d)
}

fn shown(v: &Val) -> String {
    match v {
        Val::Str(s) => format!("`{s}`"),
        Val::Int(i) => format!("`{i}`"),
        Val::Other(k) => (*k).to_owned(),
    }
}

fn val_of(n: &Node) -> Val {
    match &n.kind {
        NodeKind::Str(s) => Val::Str(s.to_string()),
        NodeKind::Int(i) => Val::Int(*i),
        _ => Val::Other(n.kind_name()),
    }
}

fn key_str(k: &Node) -> Option<String> {
    k.scalar_text()
}

/// YAML parse with medic's wording; vaults named.
fn parse_tree<'t>(b: &mut Builder, f: &'t SourceFile, what: &str) -> Option<Node<'t>> {
    if f.text.trim_start().starts_with("$ANSIBLE_VAULT") {
        b.problem(
            f,
            Loc {
                line: 1,
                col: 1,
                ..Loc::default()
            },
            format!("{what} is encrypted with ansible-vault"),
            "medic does not read vaults: run `ansible-inventory -i INVENTORY --list > inventory.json` (it asks for the vault password) and import that file",
        );
        return None;
    }
    match yaml::parse(&f.text) {
        Ok(n) => Some(n),
        Err(e) => {
            b.problems.push(
                Problem::new(
                    f,
                    e.loc,
                    "medic::ansible::syntax",
                    format!("invalid {what}: {}", e.message),
                )
                .help(DOC_HELP),
            );
            None
        }
    }
}

fn vars_of(b: &mut Builder, f: &SourceFile, n: &Node, whose: &str) -> Vec<(String, Var)> {
    match &n.kind {
        NodeKind::Null => Vec::new(),
        NodeKind::Map(entries) => entries
            .iter()
            .filter_map(|(k, v)| {
                key_str(k).map(|k| {
                    (
                        k,
                        Var {
                            val: val_of(v),
                            file: f.clone(),
                            loc: v.loc,
                        },
                    )
                })
            })
            .collect(),
        _ => {
            b.problem(
                f,
                n.loc,
                format!("the vars of {whose} are {}, not a map", n.kind_name()),
                "write `NAME: VALUE` lines under it",
            );
            Vec::new()
        }
    }
}

fn read_vars_file(b: &mut Builder, f: &SourceFile) -> Option<Vars> {
    let root = parse_tree(b, f, "vars file")?;
    match &root.kind {
        NodeKind::Null => Some(Vars::new()),
        NodeKind::Map(_) => Some(vars_of(b, f, &root, "this file").into_iter().collect()),
        _ => {
            b.problem(
                f,
                root.loc,
                format!("a vars file is a map, not {}", root.kind_name()),
                "write `NAME: VALUE` lines",
            );
            None
        }
    }
}

fn read_yaml(b: &mut Builder, f: &SourceFile) {
    let Some(root) = parse_tree(b, f, "YAML inventory") else {
        return;
    };
    let NodeKind::Map(entries) = &root.kind else {
        b.problem(
            f,
            root.loc,
            format!(
                "a YAML inventory is a map of groups, not {}",
                root.kind_name()
            ),
            "start with `all:` and put `hosts:`, `children:` and `vars:` under it",
        );
        return;
    };
    if let Some(p) = root.get("plugin") {
        b.problem(
            f,
            p.loc,
            "this is the configuration of an inventory plugin, which medic does not run",
            "run `ansible-inventory -i THIS-FILE --list > inventory.json` and import that file",
        );
        return;
    }
    for (k, v) in entries {
        let Some(name) = key_str(k) else { continue };
        yaml_group(b, f, &name, k.loc, v);
    }
}

fn yaml_group(b: &mut Builder, f: &SourceFile, name: &str, at: Loc, n: &Node) {
    match &n.kind {
        NodeKind::Null => {
            b.add_group(name);
        }
        NodeKind::Map(entries) => {
            b.add_group(name);
            for (k, v) in entries {
                let key = key_str(k).unwrap_or_default();
                let single;
                // Ansible reads `hosts: web1` as `hosts: { web1: }`.
                let v = match (&v.kind, key.as_str()) {
                    (NodeKind::Str(s), "hosts" | "children" | "vars") => {
                        single = Node {
                            kind: NodeKind::Map(vec![(
                                Node {
                                    kind: NodeKind::Str(s.clone()),
                                    loc: v.loc,
                                },
                                Node {
                                    kind: NodeKind::Null,
                                    loc: v.loc,
                                },
                            )]),
                            loc: v.loc,
                        };
                        &single
                    }
                    _ => v,
                };
                match key.as_str() {
                    "vars" => {
                        for (vk, vv) in vars_of(b, f, v, &format!("group `{name}`")) {
                            b.set_group_var(name, vk, vv);
                        }
                    }
                    "children" | "hosts" => {
                        let entries = match &v.kind {
                            NodeKind::Null => &[][..],
                            NodeKind::Map(e) => e.as_slice(),
                            _ => {
                                b.problem(
                                    f,
                                    v.loc,
                                    format!(
                                        "the {key} of group `{name}` are {}, not a map",
                                        v.kind_name()
                                    ),
                                    format!("write one `NAME:` per line under `{key}:`"),
                                );
                                continue;
                            }
                        };
                        for (ck, cv) in entries {
                            let Some(cn) = key_str(ck) else { continue };
                            if key == "children" {
                                yaml_group(b, f, &cn, ck.loc, cv);
                                b.add_child(name, &cn);
                            } else {
                                let vars = vars_of(b, f, cv, &format!("host `{cn}`"));
                                b.add_hosts(name, &cn, f, ck.loc, vars);
                            }
                        }
                    }
                    _ => b.problem(
                        f,
                        k.loc,
                        format!(
                            "group `{name}` has a key `{key}`: a group has only `hosts`, `children` and `vars`"
                        ),
                        "Ansible warns and drops it, with any host under it: put hosts under `hosts:`, groups under `children:`",
                    ),
                }
            }
        }
        _ => b.problem(
            f,
            at,
            format!("group `{name}` is {}, not a map", n.kind_name()),
            "a group is a map with `hosts:`, `children:` and `vars:`",
        ),
    }
}

/// The JSON of `ansible-inventory --list` (also a dynamic inventory script's output).
fn read_json(b: &mut Builder, f: &SourceFile) {
    let Some(root) = parse_tree(b, f, "JSON inventory") else {
        return;
    };
    let NodeKind::Map(entries) = &root.kind else {
        b.problem(
            f,
            root.loc,
            format!(
                "an inventory in JSON is an object of groups, not {}",
                root.kind_name()
            ),
            "pass the output of `ansible-inventory -i INVENTORY --list`",
        );
        return;
    };
    let list = |n: Option<&Node>| -> Vec<(String, Loc)> {
        match n.map(|n| &n.kind) {
            Some(NodeKind::Seq(items)) => items
                .iter()
                .filter_map(|i| i.scalar_text().map(|s| (s, i.loc)))
                .collect(),
            _ => Vec::new(),
        }
    };
    for (k, v) in entries {
        let Some(name) = key_str(k) else { continue };
        if name == "_meta" {
            continue;
        }
        b.add_group(&name);
        let (hosts, children) = match &v.kind {
            NodeKind::Seq(_) => (list(Some(v)), Vec::new()),
            NodeKind::Map(_) => {
                if let Some(vars) = v.get("vars") {
                    for (vk, vv) in vars_of(b, f, vars, &format!("group `{name}`")) {
                        b.set_group_var(&name, vk, vv);
                    }
                }
                (list(v.get("hosts")), list(v.get("children")))
            }
            NodeKind::Null => (Vec::new(), Vec::new()),
            _ => {
                b.problem(
                    f,
                    v.loc,
                    format!("group `{name}` is {}, not an object", v.kind_name()),
                    "pass the output of `ansible-inventory -i INVENTORY --list`",
                );
                continue;
            }
        };
        // The JSON names hosts one by one: no patterns, no ports.
        for (h, loc) in hosts {
            b.add_host(Some(&name), h, f, loc, &[]);
        }
        for (c, _) in children {
            b.add_child(&name, &c);
        }
    }
    let hostvars = root.get("_meta").and_then(|m| m.get("hostvars"));
    if let Some(NodeKind::Map(hv)) = hostvars.map(|n| &n.kind) {
        for (hk, hvars) in hv {
            let Some(h) = key_str(hk) else { continue };
            let vars = vars_of(b, f, hvars, &format!("host `{h}`"));
            b.add_host(None, h, f, hk.loc, &vars);
        }
    }
}
