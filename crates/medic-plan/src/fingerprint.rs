//! The plan's fingerprint (SHA-256 of every input) and one digest per host, so that a
//! resume against changed inputs can name the hosts that drifted.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use medic_model::{Host, Inventory, Playbook};
use sha2::{Digest, Sha256};

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn host_line(h: &Host, offline: bool) -> String {
    format!(
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
    )
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
    for h in &inv.hosts {
        let offline = h
            .relay_group
            .as_deref()
            .and_then(|g| inv.relay_group(g))
            .is_some_and(|g| g.offline);
        per_host.insert(
            h.name.clone(),
            hex(&Sha256::digest(host_line(h, offline).as_bytes()))[..16].to_owned(),
        );
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
        all.update(format!("\nhost {h}={d}").as_bytes());
    }
    (hex(&all.finalize()), per_host)
}
