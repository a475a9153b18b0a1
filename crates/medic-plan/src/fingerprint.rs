//! The plan's fingerprint (SHA-256 of every input) and one digest per host, so that a
//! resume against changed inputs can name the hosts that drifted.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use medic_model::{Host, Inventory, Playbook};
use sha2::{Digest, Sha256};

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Writes the line a host's digest is made of into `out` (cleared first).
fn host_line(out: &mut String, h: &Host, offline: bool) {
    out.clear();
    let _ = write!(
        out,
        "{}|{}|{}|{}|{}|{}|{}|{}|{}|{:?}|{}|{}|{:?}",
        h.name,
        h.address,
        h.port,
        h.user.as_deref().unwrap_or(""),
        h.platform.as_str(),
        h.os.as_deref().unwrap_or(""),
        h.agent_version,
        h.relay,
        h.relay_group.as_deref().unwrap_or(""),
        h.groups,
        h.protected_by_appliance,
        offline,
        h.vars,
    );
    // Appended only when set, so that the digests of inventories without it are unchanged.
    if let Some(b) = h.r#become {
        let _ = write!(out, "|become={}", b.as_str());
    }
}

/// The fingerprint and per-host digests [`crate::build_plan`] would seal into a plan of these
/// inputs, without building the plan: what a resume compares with the plan it recorded.
pub fn fingerprint_inputs(
    inv: &Inventory,
    pb: &Playbook,
    playbook_text: &str,
) -> (String, BTreeMap<String, String>) {
    digests(inv, pb, playbook_text)
}

pub(crate) fn digests(
    inv: &Inventory,
    pb: &Playbook,
    playbook_text: &str,
) -> (String, BTreeMap<String, String>) {
    let mut per_host = BTreeMap::new();
    let m = &inv.manager;
    let mline = format!(
        "manager|{}|{}|{}|{}",
        m.name, m.address, m.version, inv.settings.direct_download_when_relays_unavailable
    );
    per_host.insert(
        m.name.clone(),
        hex(&Sha256::digest(mline.as_bytes()))[..16].to_owned(),
    );
    // Whether a relay group is offline, as `Inventory::relay_group` finds it (the first group
    // of that name).
    let mut offline: HashMap<&str, bool> = HashMap::with_capacity(inv.relay_groups.len());
    for g in &inv.relay_groups {
        offline.entry(g.name.as_str()).or_insert(g.offline);
    }
    let mut line = String::new();
    for h in &inv.hosts {
        let off = h
            .relay_group
            .as_deref()
            .and_then(|g| offline.get(g).copied())
            .unwrap_or(false);
        host_line(&mut line, h, off);
        // Appended only when set, so that the digests of inventories without zones are
        // unchanged; whether the zone is air-gapped decides who runs the host's steps.
        if let Some(z) = &h.zone {
            let gapped = inv.zones.iter().any(|d| d.name == *z && d.air_gapped);
            let _ = write!(line, "|zone={z}|air_gapped={gapped}");
        }
        let digest = Sha256::digest(line.as_bytes());
        per_host.insert(h.name.clone(), hex(&digest[..8]));
    }
    let mut all = Sha256::new();
    all.update(b"medic.plan/v1\n");
    all.update(playbook_text.as_bytes());
    for (k, v) in &pb.params.values {
        all.update(format!("\nparam {k}={v}").as_bytes());
    }
    for g in &inv.relay_groups {
        all.update(format!("\ngroup {}|{}|{:?}", g.name, g.offline, g.bundle_source).as_bytes());
    }
    for (h, d) in &per_host {
        all.update(b"\nhost ");
        all.update(h.as_bytes());
        all.update(b"=");
        all.update(d.as_bytes());
    }
    (hex(&all.finalize()), per_host)
}
