//! An Ansible inventory merged into the Manager's import: the Manager says what each
//! computer is (platform, build, Relay role, relay group, settings), Ansible how to reach
//! it (address, port, user) and how the operator groups it.

use std::collections::{BTreeMap, HashMap, HashSet};

use medic_model::Inventory;

use super::{AnsibleHost, AnsibleInventory};
use medic_model::names::{is_address, is_name, sanitize};

/// The merged inventory and what the merge decided (for comments and standard error).
#[derive(Clone, Debug)]
pub struct Merged {
    pub inventory: Inventory,
    /// Hosts matched, Ansible hosts not in the Manager, computers not in Ansible.
    pub counts: (usize, usize, usize),
    pub notes: Vec<String>,
}

fn key(s: &str) -> String {
    s.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Matches each Ansible host with one computer of `dsm` by host name or address (the
/// inventory name or `ansible_host` against the computer's name or address; no case, no
/// trailing dot). An Ansible host that matches none, or several, is left out; a computer
/// no Ansible host matches is kept as the Manager gave it. Every such case is a note.
pub fn merge(dsm: &Inventory, ans: &AnsibleInventory) -> Merged {
    let mut notes = Vec::new();
    let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, h) in dsm.hosts.iter().enumerate() {
        for k in [key(&h.name), key(&h.address)] {
            let v = by_key.entry(k).or_default();
            if !v.contains(&i) {
                v.push(i);
            }
        }
    }
    let mut claimed: BTreeMap<usize, &AnsibleHost> = BTreeMap::new();
    let mut unmatched = 0;
    for a in &ans.hosts {
        let mut cands: Vec<usize> = Vec::new();
        for k in std::iter::once(&a.name).chain(a.address.as_ref()) {
            for i in by_key.get(&key(k)).into_iter().flatten() {
                if !cands.contains(i) {
                    cands.push(*i);
                }
            }
        }
        match cands.as_slice() {
            [] => {
                unmatched += 1;
                notes.push(format!(
                    "unmatched: Ansible host `{}` ({}{}) is not a computer of the Manager: left out",
                    a.name,
                    a.defined_at,
                    a.address
                        .as_ref()
                        .map(|x| format!(", ansible_host {x}"))
                        .unwrap_or_default()
                ));
            }
            [i] => {
                if let Some(first) = claimed.get(i) {
                    notes.push(format!(
                        "conflict: Ansible hosts `{}` and `{}` are both computer `{}`: `{}` left out",
                        first.name, a.name, dsm.hosts[*i].name, a.name
                    ));
                    unmatched += 1;
                } else {
                    claimed.insert(*i, a);
                }
            }
            many => {
                let names: Vec<String> = many
                    .iter()
                    .map(|i| format!("`{}`", dsm.hosts[*i].name))
                    .collect();
                notes.push(format!(
                    "conflict: Ansible host `{}` matches computers {} (by name and by address): left out",
                    a.name,
                    names.join(" and ")
                ));
                unmatched += 1;
            }
        }
    }

    // Names: the Ansible name where it is a valid name no other host or the Manager has.
    let kept: HashSet<&str> = dsm
        .hosts
        .iter()
        .enumerate()
        .filter(|(i, _)| !claimed.contains_key(i))
        .map(|(_, h)| h.name.as_str())
        .collect();
    let mut used: HashSet<String> = HashSet::new();
    let mut renamed: HashMap<String, String> = HashMap::new();
    let mut inventory = dsm.clone();
    let mut dsm_only = 0;
    let mut regrouped = 0;
    for (i, h) in inventory.hosts.iter_mut().enumerate() {
        let Some(a) = claimed.get(&i) else {
            dsm_only += 1;
            notes.push(format!(
                "unmatched: computer `{}` ({}) is not in the Ansible inventory: written as the Manager knows it",
                h.name, h.address
            ));
            continue;
        };
        let want = if is_name(&a.name) {
            a.name.clone()
        } else {
            let s = sanitize(&a.name);
            notes.push(format!("Ansible host `{}` is written as `{s}`", a.name));
            s
        };
        if want != h.name {
            if (kept.contains(want.as_str()) && want != h.name)
                || want == inventory.manager.name
                || used.contains(&want)
            {
                notes.push(format!(
                    "conflict: Ansible host `{}` keeps the Manager's name `{}`: `{want}` is another host's or the Manager's",
                    a.name, h.name
                ));
            } else {
                notes.push(format!(
                    "computer `{}` is Ansible host `{want}` (same address): written as `{want}`",
                    h.name
                ));
                renamed.insert(h.name.clone(), want.clone());
                h.name = want;
            }
        }
        used.insert(h.name.clone());
        // Ansible connects to the inventory name when no ansible_host is set.
        let address = a
            .address
            .clone()
            .or_else(|| is_address(&a.name).then(|| a.name.clone()));
        match address {
            Some(addr) => {
                if a.address.is_some()
                    && key(&addr) != key(&h.address)
                    && key(&addr) != key(&a.name)
                {
                    notes.push(format!(
                        "conflict: host `{}`: ansible_host {addr}, the Manager last saw {}: {addr} written",
                        h.name, h.address
                    ));
                }
                h.address = addr;
            }
            None => notes.push(format!(
                "host `{}`: the Ansible name is not an address and there is no ansible_host: the Manager's address {} written",
                h.name, h.address
            )),
        }
        match (&a.connection, a.port) {
            (Some(c), Some(p)) => notes.push(format!(
                "host `{}`: ansible_connection {c}: its ansible_port {p} is not the SSH port, not written",
                h.name
            )),
            (_, Some(p)) => h.port = p,
            _ => {}
        }
        if a.user.is_some() {
            h.user.clone_from(&a.user);
        }
        let dsm_groups = std::mem::take(&mut h.groups);
        for g in &a.groups {
            let s = if is_name(g) { g.clone() } else { sanitize(g) };
            if !h.groups.contains(&s) {
                h.groups.push(s);
            }
        }
        if !dsm_groups.is_empty() && dsm_groups != h.groups {
            regrouped += 1;
        }
    }
    if regrouped > 0 {
        notes.push(format!(
            "{regrouped} host(s) have the groups of the Ansible inventory, not the Manager's computer groups"
        ));
    }
    for g in &mut inventory.relay_groups {
        if let Some(b) = &g.bundle_source
            && let Some(n) = renamed.get(b)
        {
            g.bundle_source = Some(n.clone());
        }
    }
    Merged {
        inventory,
        counts: (claimed.len(), unmatched, dsm_only),
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ansible::{AnsibleSources, read_ansible};
    use crate::diag::SourceFile;

    const DSM: &str = r#"
manager: { name: dsm01, address: 127.0.0.5, version: "20.0.463" }
relay_groups:
  - { name: tokyo }
  - { name: dmz, offline: true, bundle_source: relay-1 }
hosts:
  - { name: relay-1, address: 127.0.1.1, platform: linux, agent_version: "20.0.0-1", relay: true, relay_group: tokyo }
  - { name: a, address: 127.0.1.2, platform: linux, agent_version: "20.0.0-1", groups: [from-dsm] }
  - { name: b, address: 127.0.1.3, platform: windows, agent_version: "20.0.0-1" }
  - { name: c, address: 127.0.1.4, platform: linux, agent_version: "20.0.0-1" }
"#;

    fn merged(ini: &str) -> Merged {
        let dsm = crate::load_inventory("dsm.yaml", DSM).expect("dsm.yaml");
        let src = AnsibleSources {
            inventories: vec![SourceFile::new("hosts", ini)],
            ..AnsibleSources::default()
        };
        merge(&dsm, &read_ansible(&src).expect("reads"))
    }

    #[test]
    fn conflicts_and_unmatched_hosts_are_settled_and_said() {
        let m = merged(
            "[site]\n\
             relay-one ansible_host=127.0.1.1\n\
             a ansible_host=127.0.9.9\n\
             twice ansible_host=127.0.1.3\n\
             b ansible_host=127.0.1.4\n\
             win ansible_host=127.0.1.3 ansible_connection=winrm ansible_port=5986\n\
             nowhere\n",
        );
        let notes = m.notes.join("\n");
        let host = |n: &str| m.inventory.hosts.iter().find(|h| h.name == n);
        // Matched by address: the Relay takes the Ansible name, and stays the bundle source.
        assert!(host("relay-one").is_some_and(|h| h.relay), "{notes}");
        assert_eq!(
            m.inventory.relay_groups[1].bundle_source.as_deref(),
            Some("relay-one")
        );
        // Matched by name, another address: Ansible's is written, and said.
        let a = host("a").expect("a");
        assert_eq!(
            (a.address.as_str(), a.groups.clone()),
            ("127.0.9.9", vec!["site".to_owned()])
        );
        assert!(
            notes.contains(
                "conflict: host `a`: ansible_host 127.0.9.9, the Manager last saw 127.0.1.2"
            ),
            "{notes}"
        );
        // `b` matches computer b by name and computer c by address: left out.
        assert!(
            notes.contains("conflict: Ansible host `b` matches computers `b` and `c`"),
            "{notes}"
        );
        // `twice` and `win` are both computer b (by address): the first by name order keeps it.
        assert!(
            notes.contains("conflict: Ansible hosts `twice` and `win` are both computer `b`"),
            "{notes}"
        );
        assert!(host("twice").is_some());
        // Not a computer: left out; computer c (b's address match was refused) kept as is.
        assert!(
            notes.contains("unmatched: Ansible host `nowhere` (hosts:7:1)"),
            "{notes}"
        );
        assert!(
            notes.contains("unmatched: computer `c` (127.0.1.4)"),
            "{notes}"
        );
        assert_eq!(m.counts, (3, 3, 1));
        let text = crate::write_inventory(&m.inventory, &m.notes);
        crate::load_inventory("out.yaml", &text).expect("the merged inventory loads");
    }

    #[test]
    fn a_winrm_port_is_not_an_ssh_port() {
        let m = merged("b ansible_connection=winrm ansible_port=5986 ansible_user=admin\n");
        let b = m.inventory.hosts.iter().find(|h| h.name == "b").expect("b");
        assert_eq!((b.port, b.user.as_deref()), (22, Some("admin")));
        assert!(
            m.notes.iter().any(|n| n
                .contains("ansible_connection winrm: its ansible_port 5986 is not the SSH port")),
            "{:?}",
            m.notes
        );
    }
}
