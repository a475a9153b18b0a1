//! Properties over generated fleets: the order respects every edge, every affected host is
//! planned (against its own version line's fixed build), every unaffected host is skipped
//! with a reason, waves partition their phase, Agents wait for every Relay they depend on to
//! be verified, offline Relays go to their bundle source's final build.

use std::collections::{BTreeMap, BTreeSet};

use medic_model::{AgentBuild, Become, Host, Inventory, Manager, Platform, RelayGroup, Settings};
use medic_plan::StepKind;
use proptest::prelude::*;

use crate::util::*;

#[derive(Debug, Clone)]
struct H {
    relay: bool,
    windows: bool,
    build: u32,
    group: usize,
    appliance: bool,
    canary: bool,
}

fn host_strategy() -> impl Strategy<Value = H> {
    (
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(0u32), 100u32..2500],
        0usize..4,
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(relay, windows, build, group, appliance, canary)| H {
            relay,
            windows,
            build,
            group,
            appliance,
            canary,
        })
}

fn fleet(hosts: &[H], setting: bool, offline: bool, manager_build: u32) -> Inventory {
    let mut inv_hosts = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let agent_version = match h.build {
            0 => AgentBuild::NONE,
            b if b < 1000 => AgentBuild::new(20, 0, 0, b),
            b if b < 2000 => AgentBuild::new(20, 0, 1, b - 1000),
            // A second version line, around its fixed build 12.0.0-5000.
            b => AgentBuild::new(12, 0, 0, (b - 2000) * 20),
        };
        inv_hosts.push(Host {
            name: format!("h{i}"),
            address: format!("10.0.{}.{}", i / 250, i % 250 + 1),
            port: 22,
            user: None,
            platform: if h.windows {
                Platform::Windows
            } else {
                Platform::Linux
            },
            // Both round-trip through the plan's JSON and binary forms (below).
            os: h.canary.then(|| "Ubuntu 22.04".to_owned()),
            agent_version,
            relay: h.relay,
            relay_group: Some(format!("g{}", h.group)),
            groups: if h.canary {
                vec!["canary".to_owned()]
            } else {
                Vec::new()
            },
            protected_by_appliance: h.appliance,
            r#become: [None, Some(Become::Sudo), Some(Become::None)][i % 3],
            vars: BTreeMap::new(),
            zone: None,
        });
    }
    // The bundle source must be a Relay of an online group: make h0 one.
    inv_hosts[0].relay = true;
    inv_hosts[0].relay_group = Some("g0".to_owned());
    let mut groups: Vec<RelayGroup> = (0..4)
        .map(|g| RelayGroup {
            name: format!("g{g}"),
            offline: false,
            bundle_source: None,
            zone: None,
        })
        .collect();
    if offline {
        groups[3].offline = true;
        groups[3].bundle_source = Some("h0".to_owned());
    }
    Inventory {
        manager: Manager {
            name: "dsm".to_owned(),
            address: "10.9.9.9".to_owned(),
            version: format!("20.0.{manager_build}").parse().expect("valid"),
        },
        settings: Settings {
            direct_download_when_relays_unavailable: setting,
        },
        relay_groups: groups,
        hosts: inv_hosts,
        zones: Vec::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn plan_invariants(
        hosts in prop::collection::vec(host_strategy(), 1..40),
        setting in any::<bool>(),
        offline in any::<bool>(),
        manager_build in 100u32..600,
        barrier in prop_oneof![Just("global"), Just("relay-group")],
    ) {
        let inv = fleet(&hosts, setting, offline, manager_build);
        let pb = playbook(&[&format!("relay_barrier={barrier}")]);
        // The playbook's example fixed builds: one per line.
        let fixed_for = |b: AgentBuild| -> AgentBuild {
            if b.line() == (12, 0) { "12.0.0-5000" } else { "20.0.1-690" }.parse().expect("valid")
        };
        let source = &inv.hosts[0];
        let source_final = if source.agent_version < fixed_for(source.agent_version) {
            fixed_for(source.agent_version)
        } else {
            source.agent_version
        };
        let offline_relays: Vec<&Host> = inv.hosts.iter().filter(|h| offline && h.relay && h.relay_group.as_deref() == Some("g3")).collect();
        let plan = match medic_plan::build_plan(&inv, &pb, &playbook_text(), None) {
            Ok(p) => p,
            Err(medic_plan::PlanError::Refused(r)) => {
                // Only an offline Relay above its bundle source's final build is refused, and
                // the message names both hosts.
                let above: BTreeSet<&str> = offline_relays.iter()
                    .filter(|h| h.platform == source.platform && h.agent_version > source_final)
                    .map(|h| h.name.as_str()).collect();
                prop_assert!(!above.is_empty());
                for x in &r {
                    prop_assert!(above.contains(x.host.as_str()), "{:?}", x);
                    prop_assert!(x.message.contains(&x.host) && x.message.contains("h0"), "{:?}", x);
                }
                return Ok(());
            }
            Err(e) => panic!("{e}"),
        };

        // Topological order.
        for (i, s) in plan.steps().iter().enumerate() {
            for n in &s.needs {
                prop_assert!((n.step as usize) < i, "{} needs a later step", s.id);
            }
        }
        // Every affected host planned; every in-scope host without a step skipped with a reason.
        let phases = by_phase(&plan);
        for h in &inv.hosts {
            // A Relay is a Relay, on an appliance-protected VM too.
            let affected = h.has_agent() && h.agent_version < fixed_for(h.agent_version) && (h.relay || (setting && !h.protected_by_appliance));
            let phase = if h.relay { "relay-upgrade" } else { "agent-upgrade" };
            let planned = phases.get(phase).is_some_and(|s| s.contains(&h.name));
            prop_assert_eq!(planned, affected, "{} in {}", &h.name, phase);
            if !planned {
                let skip = plan.skipped().iter().find(|s| s.host == h.name && s.phase == phase);
                prop_assert!(skip.is_some_and(|s| s.reason.len() > 10), "{} has a readable skip reason", &h.name);
            }
        }
        // Each upgrade goes to its line's fixed build; an offline Relay of the source's
        // platform to exactly the source's final build.
        for s in plan.steps().iter().filter(|s| &*s.phase == "relay-upgrade" || &*s.phase == "agent-upgrade") {
            let Some(h) = plan.host_name(s).and_then(|n| inv.host(n)) else { continue };
            let to: AgentBuild = s.args.iter().find(|(k, _)| k == "to").expect("args.to").1.parse().expect("a build");
            let want = if offline_relays.iter().any(|o| o.name == h.name) && h.platform == source.platform {
                source_final
            } else {
                fixed_for(h.agent_version)
            };
            prop_assert_eq!(to, want, "{}", &h.name);
        }
        // Every Agent upgrade waits for the final verification of every planned Relay it
        // depends on (all of them under the global barrier, its group's otherwise).
        let relays: Vec<&Host> = inv.hosts.iter().filter(|h| phases.get("relay-upgrade").is_some_and(|s| s.contains(&h.name))).collect();
        for s in plan.steps().iter().filter(|s| &*s.phase == "agent-upgrade" && s.kind == StepKind::Action) {
            let anc = ancestors(&plan, &s.id);
            let me = plan.host_name(s).and_then(|n| inv.host(n)).expect("host");
            for r in &relays {
                if barrier == "relay-group" && me.relay_group.is_some() && r.relay_group != me.relay_group {
                    continue;
                }
                let last = if r.platform == Platform::Windows { format!("reverify/{}", r.name) } else { format!("verify/{}", r.name) };
                prop_assert!(anc.contains(&last), "{} waits for {}", s.id, last);
            }
        }
        // The Manager is upgraded only when it is old and something else is upgraded.
        let upgrades = phases.contains_key("relay-upgrade") || phases.contains_key("agent-upgrade");
        prop_assert_eq!(phases.contains_key("manager-upgrade"), manager_build < 463 && upgrades);
        // Waves partition their phase: each action step of a rolled-out phase has exactly one
        // wave, and the wave sizes add up to the phase's hosts.
        for p in plan.phases() {
            if p.waves.is_empty() { continue; }
            let hosts: BTreeSet<&str> = plan.steps().iter().filter(|s| &*s.phase == p.name.as_str() && s.kind == StepKind::Action).filter_map(|s| plan.host_name(s)).collect();
            let total: u32 = p.waves.iter().map(|w| w.hosts).sum();
            prop_assert_eq!(total as usize, hosts.len());
            prop_assert!(plan.steps().iter().filter(|s| &*s.phase == p.name.as_str() && s.kind == StepKind::Action).all(|s| s.wave.is_some()));
        }
        // Every step is reachable in the JSON and the JSON reads back identically.
        let json = medic_plan::plan_to_json(&plan);
        prop_assert_eq!(medic_plan::plan_to_json(&medic_plan::plan_from_json(&json).expect("reads")), json);
        // And through the journal's binary form: the very same plan.
        let back = medic_plan::plan_from_bytes(&medic_plan::plan_to_bytes(&plan)).expect("reads");
        prop_assert!(back == plan, "the binary round trip changed the plan");
    }
}
