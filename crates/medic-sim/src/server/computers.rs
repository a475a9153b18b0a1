//! Computers as the Manager serves them: the fleet's [`SimComputer`] plus the server's own
//! state (addresses, groups, tasks in flight, `lastChanged`), rendered in the vendor's
//! `computer` shape with the requested expansions, and searchable by the vendor's fields.

use rand::RngExt as _;
use serde_json::{Map, Value as J, json};

use super::search::{FieldValue, Searchable};
use super::{Live, Shared, lock};
use crate::SimComputer;
use crate::rng;

/// Which parts of a computer to include (`expand`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Expand {
    pub status: bool,
    pub updates: bool,
    pub anti_malware: bool,
    pub settings: bool,
    pub tasks: bool,
}

impl Expand {
    pub(crate) const ALL: Expand = Expand {
        status: true,
        updates: true,
        anti_malware: true,
        settings: true,
        tasks: true,
    };

    /// From the `expand` query values (repeated and/or comma-separated). No value means
    /// `all`; `none` adds nothing; module names the simulator does not model are ignored.
    pub(crate) fn parse(values: &[String]) -> Expand {
        if values.is_empty() {
            return Expand::ALL;
        }
        let mut e = Expand::default();
        for v in values.iter().flat_map(|v| v.split(',')) {
            match v.trim() {
                "all" => return Expand::ALL,
                "computerStatus" => e.status = true,
                "securityUpdates" => e.updates = true,
                "antiMalware" | "allSecurityModules" => e.anti_malware = true,
                "computerSettings" => e.settings = true,
                "tasks" => e.tasks = true,
                _ => {}
            }
        }
        e
    }
}

/// One computer with everything the server knows about it.
pub(crate) struct View {
    pub c: SimComputer,
    pub address: String,
    pub group_id: u32,
    pub last_changed_ms: i64,
    pub in_flight: bool,
    pub overlay: Option<String>,
    pub agent_fingerprint: Option<String>,
    pub appliance_fingerprint: Option<String>,
    pub host_guid: String,
    pub last_agent_communication: Option<i64>,
}

impl View {
    fn has_agent(&self) -> bool {
        self.c.agent_version != "0.0.0.0"
    }
}

fn fingerprint(seed: u64, id: u64) -> String {
    let bytes: [u8; 20] = rng::draw(seed, &[b"fingerprint"], id).random();
    let parts: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
    parts.join(":")
}

fn guid(id: u64) -> String {
    let mut r = rng::draw(0, &[b"guid"], id);
    let (a, b): (u64, u64) = (r.random(), r.random());
    format!(
        "{:08X}-{:04X}-{:04X}-{:04X}-{:012X}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

fn ms(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

/// Every computer, in ID order, with the server's state joined in.
pub(crate) fn views(shared: &Shared) -> Vec<View> {
    let computers = shared.fleet.computers();
    let live = lock(&shared.live);
    computers
        .into_iter()
        .map(|c| view(shared, &live, c))
        .collect()
}

/// The computers at positions `range` (IDs `range.start + 1 ..`), in ID order.
pub(crate) fn views_in(shared: &Shared, range: std::ops::Range<usize>) -> Vec<View> {
    let computers = shared.fleet.computers_in(range);
    let live = lock(&shared.live);
    computers
        .into_iter()
        .map(|c| view(shared, &live, c))
        .collect()
}

/// One computer by ID.
pub(crate) fn view_of(shared: &Shared, id: u64) -> Option<View> {
    let i = usize::try_from(id).ok()?.checked_sub(1)?;
    views_in(shared, i..i.saturating_add(1)).pop()
}

fn view(shared: &Shared, live: &Live, c: SimComputer) -> View {
    let extra = usize::try_from(c.id)
        .ok()
        .and_then(|i| i.checked_sub(1))
        .and_then(|i| shared.hosts.get(i));
    let finished = live.finished_ms.get(&c.id).copied().unwrap_or(0);
    let has_agent = c.agent_version != "0.0.0.0";
    View {
        address: extra.map(|e| e.address.clone()).unwrap_or_default(),
        group_id: extra.map_or(0, |e| e.group_id),
        last_changed_ms: c.update_ms.max(finished),
        in_flight: live.in_flight.get(&c.id).is_some_and(|n| *n > 0),
        overlay: live.overlay.get(&c.id).cloned(),
        agent_fingerprint: has_agent.then(|| fingerprint(0x0061_6765_6e74, c.id)),
        appliance_fingerprint: c
            .appliance_protected
            .then(|| fingerprint(0x6170_706c, c.id)),
        host_guid: guid(c.id),
        last_agent_communication: has_agent.then(|| ms(shared.start_ms)),
        c,
    }
}

impl Searchable for View {
    fn id(&self) -> i64 {
        ms(self.c.id)
    }

    fn field(&self, name: &str) -> Option<FieldValue<'_>> {
        Some(match name {
            "ID" => FieldValue::Num(self.c.id as f64),
            "hostName" => FieldValue::Str(Some(&self.c.host_name)),
            "displayName" | "description" => FieldValue::Str(Some("")),
            "lastIPUsed" => FieldValue::Str(Some(&self.address)),
            "platform" => FieldValue::Str(Some(&self.c.platform)),
            "agentVersion" => FieldValue::Str(Some(&self.c.agent_version)),
            "hostGUID" => FieldValue::Str(Some(&self.host_guid)),
            "agentFingerPrint" => FieldValue::Str(self.agent_fingerprint.as_deref()),
            "applianceFingerPrint" => FieldValue::Str(self.appliance_fingerprint.as_deref()),
            "groupID" => FieldValue::Num(f64::from(self.group_id)),
            "relayListID" => FieldValue::Num(f64::from(self.c.relay_list_id)),
            "policyID" | "assetImportanceID" => FieldValue::Num(0.0),
            "lastAgentCommunication" | "lastSendPolicyRequest" | "lastSendPolicySuccess" => {
                FieldValue::Date(self.last_agent_communication)
            }
            _ => return None,
        })
    }
}

/// The vendor `computer` object with the expansions asked for. Absent values are left out,
/// as a Manager does.
pub(crate) fn render(v: &View, e: Expand) -> J {
    let c = &v.c;
    let mut o = Map::new();
    o.insert("ID".into(), json!(c.id));
    o.insert("hostName".into(), json!(c.host_name));
    o.insert("displayName".into(), json!(""));
    o.insert("description".into(), json!(""));
    o.insert("lastIPUsed".into(), json!(v.address));
    o.insert("platform".into(), json!(c.platform));
    o.insert("groupID".into(), json!(v.group_id));
    o.insert("policyID".into(), json!(0));
    o.insert("assetImportanceID".into(), json!(0));
    o.insert("relayListID".into(), json!(c.relay_list_id));
    if let Some(fp) = &v.agent_fingerprint {
        o.insert("agentFingerPrint".into(), json!(fp));
    }
    if let Some(fp) = &v.appliance_fingerprint {
        o.insert("applianceFingerPrint".into(), json!(fp));
        o.insert(
            "lastApplianceCommunication".into(),
            json!(v.last_agent_communication.unwrap_or(0)),
        );
    }
    if let Some(t) = v.last_agent_communication {
        o.insert("lastAgentCommunication".into(), json!(t));
        o.insert("lastSendPolicyRequest".into(), json!(t));
        o.insert("lastSendPolicySuccess".into(), json!(t));
    }
    o.insert("agentVersion".into(), json!(c.agent_version));
    o.insert("hostGUID".into(), json!(v.host_guid));
    if e.status {
        let mut s = Map::new();
        s.insert("agentStatus".into(), json!(c.agent_status));
        s.insert(
            "agentStatusMessages".into(),
            json!([c.agent_status_message]),
        );
        if c.appliance_protected {
            s.insert("applianceStatus".into(), json!("active"));
            s.insert(
                "applianceStatusMessages".into(),
                json!(["Managed (Online)"]),
            );
        }
        o.insert("computerStatus".into(), J::Object(s));
    }
    if e.tasks {
        let tasks: Vec<&str> = if v.in_flight {
            vec!["Security Update in Progress"]
        } else {
            Vec::new()
        };
        o.insert(
            "tasks".into(),
            json!({ "agentTasks": tasks, "applianceTasks": [] }),
        );
    }
    if e.updates {
        let (status, message) = match &v.overlay {
            Some(m) => ("error", m.as_str()),
            None => (c.security_update_status, c.security_update_message.as_str()),
        };
        let mut u = Map::new();
        u.insert(
            "updateStatus".into(),
            json!({ "status": status, "statusMessage": message }),
        );
        u.insert("lastChanged".into(), json!(v.last_changed_ms));
        if v.has_agent() {
            let latest = status == "active";
            let platform = &c.platform;
            u.insert(
                "rules".into(),
                json!([{ "name": "Deep Security Rule Update", "forUseBy": "Agent", "platform": platform, "version": "23-031", "latest": latest }]),
            );
            u.insert(
                "antiMalware".into(),
                json!([{ "name": "Virus Pattern", "forUseBy": "Agent", "platform": platform, "version": "18.331.00", "latest": latest }]),
            );
        }
        o.insert("securityUpdates".into(), J::Object(u));
    }
    if e.anti_malware {
        let state = c.anti_malware_state;
        o.insert(
            "antiMalware".into(),
            json!({
                "state": state,
                "moduleStatus": {
                    "agentStatus": c.anti_malware_status,
                    "agentStatusMessage": c.anti_malware_status_message,
                },
            }),
        );
    }
    if e.settings {
        o.insert(
            "computerSettings".into(),
            json!({ "platformSettingRelayState": { "value": relay_state(c) } }),
        );
    }
    J::Object(o)
}

/// `platformSettingRelayState` as the Manager writes it.
pub(crate) fn relay_state(c: &SimComputer) -> &'static str {
    if c.relay { "true" } else { "false" }
}
