//! Plan-time facts: what a path such as `host.agent_version` or `params.fixed_build` means
//! for one target (a host, or the Manager).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use medic_model::{Host, Inventory, Params, Path, PathRoot, Platform, Value};

/// What a phase can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Target {
    Manager,
    Host(u32),
}

/// What the plan-time parameters of a target depend on: its platform slot (Manager, Linux,
/// Windows) and, when the playbook has builds per version line, its line `(MAJOR, MINOR)`.
pub(crate) type Class = (u8, u32, u32);

/// Values computed once per [`Class`]; a fleet has a handful of classes, so a short list.
pub(crate) struct ByClass<T>(Vec<(Class, T)>);

impl<T> ByClass<T> {
    pub(crate) fn new() -> Self {
        ByClass(Vec::new())
    }

    pub(crate) fn get_or_insert_with(&mut self, k: Class, f: impl FnOnce() -> T) -> &mut T {
        let i = match self.0.iter().position(|(c, _)| *c == k) {
            Some(i) => i,
            None => {
                self.0.push((k, f()));
                self.0.len() - 1
            }
        };
        &mut self.0[i].1
    }
}

pub(crate) struct Facts<'a> {
    pub(crate) inv: &'a Inventory,
    pub(crate) params: &'a Params,
    offline_groups: HashMap<&'a str, Option<u32>>,
    bundle_sources: HashSet<&'a str>,
    /// `params.*` only depends on the target's class: looked up once per class.
    param_cache: RefCell<Vec<(String, ByClass<Option<Value>>)>>,
    /// Whether any parameter holds builds per line (then a class includes the line).
    by_line: bool,
}

/// Where a target's platform goes in a per-platform cache.
fn platform_slot(p: Option<Platform>) -> u8 {
    match p {
        None => 0,
        Some(Platform::Linux) => 1,
        Some(Platform::Windows) => 2,
    }
}

impl<'a> Facts<'a> {
    pub(crate) fn new(inv: &'a Inventory, params: &'a Params) -> Self {
        // Only bundle sources are looked up by name: find them in one pass over the hosts
        // (the last host of a name wins, as in a map built over all hosts).
        let mut by_name: HashMap<&str, u32> = inv
            .relay_groups
            .iter()
            .filter_map(|g| g.bundle_source.as_deref())
            .map(|s| (s, u32::MAX))
            .collect();
        if !by_name.is_empty() {
            for (i, h) in inv.hosts.iter().enumerate() {
                if let Some(slot) = by_name.get_mut(h.name.as_str()) {
                    *slot = i as u32;
                }
            }
        }
        let offline_groups = inv
            .relay_groups
            .iter()
            .filter(|g| g.offline)
            .map(|g| {
                (
                    g.name.as_str(),
                    g.bundle_source
                        .as_deref()
                        .and_then(|s| by_name.get(s).copied())
                        .filter(|&i| i != u32::MAX),
                )
            })
            .collect();
        let bundle_sources = inv
            .relay_groups
            .iter()
            .filter_map(|g| g.bundle_source.as_deref())
            .collect();
        Facts {
            inv,
            params,
            offline_groups,
            bundle_sources,
            param_cache: RefCell::new(Vec::new()),
            by_line: !params.lines.is_empty(),
        }
    }

    pub(crate) fn host(&self, i: u32) -> &'a Host {
        &self.inv.hosts[i as usize]
    }

    pub(crate) fn platform(&self, t: Target) -> Option<Platform> {
        match t {
            Target::Manager => None,
            Target::Host(i) => Some(self.host(i).platform),
        }
    }

    /// The bundle source of the offline relay group the host belongs to.
    pub(crate) fn bundle_source(&self, t: Target) -> Option<u32> {
        let Target::Host(i) = t else { return None };
        let g = self.host(i).relay_group.as_deref()?;
        self.offline_groups.get(g).copied().flatten()
    }

    /// The class of a target: everything its `params.*` values depend on.
    pub(crate) fn class(&self, t: Target) -> Class {
        match t {
            Target::Manager => (0, 0, 0),
            Target::Host(i) => {
                let h = self.host(i);
                let slot = platform_slot(Some(h.platform));
                if self.by_line {
                    (slot, h.agent_version.major, h.agent_version.minor)
                } else {
                    (slot, 0, 0)
                }
            }
        }
    }

    fn param(&self, field: &str, t: Target) -> Option<Value> {
        let class = self.class(t);
        let mut cache = self.param_cache.borrow_mut();
        let i = match cache.iter().position(|(f, _)| f == field) {
            Some(i) => i,
            None => {
                cache.push((field.to_owned(), ByClass::new()));
                cache.len() - 1
            }
        };
        cache[i]
            .1
            .get_or_insert_with(class, || {
                let build = match t {
                    Target::Manager => None,
                    Target::Host(i) => Some(self.host(i).agent_version),
                };
                self.params.resolve(field, self.platform(t), build)
            })
            .clone()
    }

    pub(crate) fn get(&self, t: Target, p: &Path) -> Option<Value> {
        match p.root {
            PathRoot::Params => self.param(&p.field, t),
            PathRoot::BundleSource if p.field.starts_with("params.") => self
                .bundle_source(t)
                .and_then(|b| self.param(&p.field["params.".len()..], Target::Host(b))),
            PathRoot::Settings => match p.field.as_str() {
                "direct_download_when_relays_unavailable" => Some(Value::Bool(
                    self.inv.settings.direct_download_when_relays_unavailable,
                )),
                _ => None,
            },
            PathRoot::Manager => match p.field.as_str() {
                "name" => Some(Value::Str(self.inv.manager.name.clone())),
                "address" => Some(Value::Str(self.inv.manager.address.clone())),
                "version" => Some(Value::Manager(self.inv.manager.version)),
                _ => None,
            },
            PathRoot::Host => self.target_fact(t, &p.field),
            PathRoot::BundleSource => self
                .bundle_source(t)
                .and_then(|b| self.target_fact(Target::Host(b), &p.field)),
            PathRoot::Facts | PathRoot::Needs => None,
        }
    }

    fn target_fact(&self, t: Target, field: &str) -> Option<Value> {
        let h = match t {
            Target::Manager => {
                let m = &self.inv.manager;
                return match field {
                    "name" => Some(Value::Str(m.name.clone())),
                    "address" => Some(Value::Str(m.address.clone())),
                    "role" => Some(Value::Str("manager".to_owned())),
                    "relay"
                    | "relay_group_offline"
                    | "protected_by_appliance"
                    | "has_agent"
                    | "is_bundle_source" => Some(Value::Bool(false)),
                    "groups" => Some(Value::List(Vec::new())),
                    _ => None,
                };
            }
            Target::Host(i) => self.host(i),
        };
        Some(match field {
            "name" => Value::Str(h.name.clone()),
            "address" => Value::Str(h.address.clone()),
            "platform" => Value::Str(h.platform.as_str().to_owned()),
            "os" => Value::Str(h.os.clone()?),
            "role" => Value::Str(h.role().as_str().to_owned()),
            "relay_group" => Value::Str(h.relay_group.clone()?),
            "agent_version" => Value::Agent(h.agent_version),
            "relay" => Value::Bool(h.relay),
            "relay_group_offline" => Value::Bool(
                h.relay_group
                    .as_deref()
                    .is_some_and(|g| self.offline_groups.contains_key(g)),
            ),
            "protected_by_appliance" => Value::Bool(h.protected_by_appliance),
            "has_agent" => Value::Bool(h.has_agent()),
            "is_bundle_source" => {
                Value::Bool(h.relay && self.bundle_sources.contains(h.name.as_str()))
            }
            "groups" => Value::List(h.groups.clone()),
            "port" => Value::Int(i64::from(h.port)),
            f => match f.strip_prefix("vars.") {
                Some(k) => Value::Str(h.vars.get(k)?.clone()),
                None => return None,
            },
        })
    }
}

/// Whether a path means the same for every target of one [`Class`]: parameters (resolved by
/// platform and version line), settings, the Manager, and the run-time roots the planner
/// leaves alone.
pub(crate) fn platform_only(p: &Path) -> bool {
    !matches!(p.root, PathRoot::Host | PathRoot::BundleSource)
}
