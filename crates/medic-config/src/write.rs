//! The one writer of inventory YAML: what `medic inventory import` writes, in the shape of
//! docs/inventory.md (one flow map per host, every string double-quoted), read back by
//! [`crate::load_inventory`] to the same [`Inventory`].

use std::fmt::Write as _;

use medic_model::Inventory;

/// A double-quoted YAML scalar: `\` and `"` escaped, control characters as escapes.
pub fn yaml_quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(o, "\\x{:02x}", c as u32);
            }
            c if matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The inventory as YAML, after `comments` (each line written as `# LINE`).
pub fn write_inventory(inv: &Inventory, comments: &[String]) -> String {
    let q = yaml_quote;
    let mut o = String::with_capacity(512 + inv.hosts.len() * 200);
    for c in comments {
        for l in c.lines() {
            let _ = writeln!(o, "# {l}");
        }
    }
    let _ = writeln!(
        o,
        "manager: {{ name: {}, address: {}, version: {} }}",
        q(&inv.manager.name),
        q(&inv.manager.address),
        q(&inv.manager.version.to_string())
    );
    o.push_str("settings:\n");
    let _ = writeln!(
        o,
        "  direct_download_when_relays_unavailable: {}",
        inv.settings.direct_download_when_relays_unavailable
    );
    if inv.relay_groups.is_empty() {
        o.push_str("relay_groups: []\n");
    } else {
        o.push_str("relay_groups:\n");
        for g in &inv.relay_groups {
            let _ = write!(o, "  - {{ name: {}", q(&g.name));
            if g.offline {
                o.push_str(", offline: true");
            }
            if let Some(b) = &g.bundle_source {
                let _ = write!(o, ", bundle_source: {}", q(b));
            }
            if let Some(z) = &g.zone {
                let _ = write!(o, ", zone: {}", q(z));
            }
            o.push_str(" }\n");
        }
    }
    if !inv.zones.is_empty() {
        o.push_str("zones:\n");
        for z in &inv.zones {
            let _ = write!(o, "  - {{ name: {}", q(&z.name));
            if z.air_gapped {
                o.push_str(", air_gapped: true");
            }
            o.push_str(" }\n");
        }
    }
    if inv.hosts.is_empty() {
        o.push_str("hosts: []\n");
        return o;
    }
    o.push_str("hosts:\n");
    for h in &inv.hosts {
        let _ = write!(o, "  - {{ name: {}, address: {}", q(&h.name), q(&h.address));
        if h.port != 22 {
            let _ = write!(o, ", port: {}", h.port);
        }
        if let Some(u) = &h.user {
            let _ = write!(o, ", user: {}", q(u));
        }
        let _ = write!(o, ", platform: {}", h.platform.as_str());
        if let Some(os) = &h.os {
            let _ = write!(o, ", os: {}", q(os));
        }
        let _ = write!(o, ", agent_version: {}", q(&h.agent_version.to_string()));
        if h.relay {
            o.push_str(", relay: true");
        }
        if let Some(g) = &h.relay_group {
            let _ = write!(o, ", relay_group: {}", q(g));
        }
        if !h.groups.is_empty() {
            let items: Vec<String> = h.groups.iter().map(|g| q(g)).collect();
            let _ = write!(o, ", groups: [{}]", items.join(", "));
        }
        if h.protected_by_appliance {
            o.push_str(", protected_by_appliance: true");
        }
        if let Some(b) = h.r#become {
            let _ = write!(o, ", become: {}", b.as_str());
        }
        // The zone is written where it differs from the one the host inherits.
        let inherited = h
            .relay_group
            .as_deref()
            .and_then(|g| inv.relay_group(g))
            .and_then(|g| g.zone.as_deref())
            .filter(|z| *z != medic_model::DEFAULT_ZONE);
        if h.zone.as_deref() != inherited {
            let z = h.zone.as_deref().unwrap_or(medic_model::DEFAULT_ZONE);
            let _ = write!(o, ", zone: {}", q(z));
        }
        if !h.vars.is_empty() {
            let items: Vec<String> = h
                .vars
                .iter()
                .map(|(k, v)| format!("{}: {}", q(k), q(v)))
                .collect();
            let _ = write!(o, ", vars: {{ {} }}", items.join(", "));
        }
        o.push_str(" }\n");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inventory_reads_back_the_same() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/multi-site/inventory.yaml"
        ))
        .expect("example inventory");
        let inv = crate::load_inventory("inventory.yaml", &text).expect("loads");
        let written = write_inventory(&inv, &["a note\nover two lines".to_owned()]);
        assert!(
            written.starts_with("# a note\n# over two lines\n"),
            "{written}"
        );
        let again = crate::load_inventory("written.yaml", &written).expect("reloads");
        assert_eq!(again, inv);
    }

    #[test]
    fn odd_strings_are_quoted() {
        for s in [
            "a\"b",
            "back\\slash",
            "tab\there",
            "nl\nx",
            "\u{1}",
            "ü: #x",
            "\u{2028}",
        ] {
            let y = format!("k: {}\n", yaml_quote(s));
            let n = crate::yaml::parse(&y).expect("parses");
            assert_eq!(
                n.get("k").and_then(|v| v.scalar_text()).as_deref(),
                Some(s),
                "{y}"
            );
        }
    }
}
