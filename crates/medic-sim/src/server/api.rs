//! The routes of the simulator server and their handlers. Every handler answers a status
//! and an optional JSON body; `http.rs` adds the headers, faults and authentication.

use std::collections::BTreeMap;
use std::sync::Arc;

use medic_model::Value;
use serde_json::{Map, Value as J, json};

use super::computers::{self, Expand};
use super::search::{self, FieldValue, SearchFilter, Searchable};
use super::tasks::{self, Answer};
use super::{GroupRow, Shared, lock};
use crate::{SimFleet, SimResult};

/// The system setting of the advisory (the inventory's `settings.direct_download_when_relays_unavailable`).
pub const DIRECT_DOWNLOAD_SETTING: &str =
    "platformSettingUpdateAgentSecurityContactPrimarySourceOnMissingRelayEnabled";

/// The system settings the simulator knows, with their values at start.
pub(crate) fn default_settings(fleet: &SimFleet) -> BTreeMap<String, String> {
    let b = |x: bool| if x { "true" } else { "false" }.to_owned();
    [
        (
            DIRECT_DOWNLOAD_SETTING,
            b(fleet.direct_download_when_relays_unavailable()),
        ),
        (
            "platformSettingUpdateAgentSecurityOnMissingDeepSecurityManagerEnabled",
            b(true),
        ),
        (
            "platformSettingUpdateAgentSoftwareUseDownloadCenterOnMissingDeepSecurityManagerEnabled",
            b(true),
        ),
        (
            "platformSettingUpdateSecurityPrimarySourceMode",
            "Trend Micro ActiveUpdate Server".to_owned(),
        ),
        ("platformSettingAlertAgentUpdatePendingThreshold", "7 Days".to_owned()),
        ("platformSettingLinuxUpgradeOnActivationEnabled", b(false)),
        ("platformSettingWindowsUpgradeOnActivationEnabled", b(false)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn message(status: u16, m: impl Into<String>) -> Answer {
    (status, Some(json!({ "message": m.into() })))
}

fn ok(body: J) -> Answer {
    (200, Some(body))
}

/// The route pattern of a path, for request counting: IDs and names become `{id}`/`{name}`.
pub(crate) fn route_of(path: &str) -> String {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let pattern: Vec<&str> = match segs.as_slice() {
        ["api", coll, x] if *x != "search" => {
            vec![
                "api",
                coll,
                if *coll == "systemsettings" {
                    "{name}"
                } else {
                    "{id}"
                },
            ]
        }
        ["api", "computers", _, "settings", _] => {
            vec!["api", "computers", "{id}", "settings", "{name}"]
        }
        ["sim", "hosts", _] => vec!["sim", "hosts", "{name}"],
        ["sim", "hosts", _, "actions", _] => vec!["sim", "hosts", "{name}", "actions", "{action}"],
        _ => segs,
    };
    format!("/{}", pattern.join("/"))
}

/// A parsed request, ready for the handlers.
pub(crate) struct Call<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(String, String)],
    pub body: &'a [u8],
}

impl Call<'_> {
    fn expand(&self) -> Expand {
        let values: Vec<String> = self
            .query
            .iter()
            .filter(|(k, _)| k == "expand")
            .map(|(_, v)| v.clone())
            .collect();
        Expand::parse(&values)
    }

    /// The body as JSON; an empty body is `None`.
    fn json(&self) -> Result<Option<J>, Answer> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(self.body)
            .map(Some)
            .map_err(|e| message(400, format!("Invalid JSON in the request body: {e}.")))
    }

    fn search_filter(&self) -> Result<Option<SearchFilter>, Answer> {
        match self.json()? {
            None => Ok(None),
            Some(j) => serde_json::from_value(j)
                .map(Some)
                .map_err(|e| message(400, format!("Invalid search filter: {e}."))),
        }
    }
}

fn parse_id(s: &str) -> Option<i64> {
    s.parse::<i64>().ok().filter(|i| *i > 0)
}

/// Routes one authenticated call.
pub(crate) async fn dispatch(shared: &Arc<Shared>, call: &Call<'_>) -> Answer {
    let segs: Vec<&str> = call.path.trim_matches('/').split('/').collect();
    let m = call.method;
    match segs.as_slice() {
        ["api", "computers"] => match m {
            "GET" => list_computers(shared, call.expand(), None),
            _ => not_allowed(),
        },
        ["api", "computers", "search"] => match m {
            "POST" => match call.search_filter() {
                Ok(f) => list_computers(shared, call.expand(), Some(f)),
                Err(a) => a,
            },
            _ => not_allowed(),
        },
        ["api", "computers", id] => match (m, parse_id(id)) {
            ("GET", Some(id)) => match computers::view_of(shared, id.unsigned_abs()) {
                Some(v) => ok(computers::render(&v, call.expand())),
                None => message(404, "The computer does not exist."),
            },
            ("GET", None) => message(404, "The computer does not exist."),
            _ => not_allowed(),
        },
        ["api", "computers", id, "settings", name] => match (m, parse_id(id)) {
            ("GET", Some(id)) => match computers::view_of(shared, id.unsigned_abs()) {
                None => message(404, "The computer does not exist."),
                Some(v) if *name == "platformSettingRelayState" => {
                    ok(json!({ "value": computers::relay_state(&v.c) }))
                }
                Some(_) => message(404, "The setting does not exist."),
            },
            ("GET", None) => message(404, "The computer does not exist."),
            _ => not_allowed(),
        },
        ["api", "computergroups"] => match m {
            "GET" => list_groups(shared, None),
            _ => not_allowed(),
        },
        ["api", "computergroups", "search"] => match m {
            "POST" => match call.search_filter() {
                Ok(f) => list_groups(shared, Some(f)),
                Err(a) => a,
            },
            _ => not_allowed(),
        },
        ["api", "computergroups", id] => match (m, parse_id(id)) {
            ("GET", id) => {
                match id.and_then(|id| shared.groups.iter().find(|g| i64::from(g.id) == id)) {
                    Some(g) => ok(render_group(g)),
                    None => message(404, "The computer group does not exist."),
                }
            }
            _ => not_allowed(),
        },
        ["api", "systemsettings"] => match m {
            "GET" => ok(all_settings(shared)),
            "POST" => match call.json() {
                Ok(Some(J::Object(changes))) => modify_settings(shared, changes),
                Ok(_) => message(400, "The settings must be a JSON object."),
                Err(a) => a,
            },
            _ => not_allowed(),
        },
        ["api", "systemsettings", name] => setting(shared, m, name, call),
        ["api", "scheduledtasks"] => match m {
            "GET" => list_tasks(shared, None),
            "POST" => match call.json() {
                Ok(Some(body)) => tasks::create(shared, body),
                Ok(None) => message(400, "The scheduled task is missing."),
                Err(a) => a,
            },
            _ => not_allowed(),
        },
        ["api", "scheduledtasks", "search"] => match m {
            "POST" => match call.search_filter() {
                Ok(f) => list_tasks(shared, Some(f)),
                Err(a) => a,
            },
            _ => not_allowed(),
        },
        ["api", "scheduledtasks", id] => {
            let Some(id) = parse_id(id) else {
                return tasks::not_found();
            };
            match m {
                "GET" => match lock(&shared.tasks).get(id) {
                    Some(t) => ok(J::Object(t.clone())),
                    None => tasks::not_found(),
                },
                "POST" => match call.json() {
                    Ok(Some(body)) => tasks::modify(shared, id, body),
                    Ok(None) => message(400, "The scheduled task changes are missing."),
                    Err(a) => a,
                },
                "DELETE" => {
                    if lock(&shared.tasks).remove(id) {
                        (200, None)
                    } else {
                        tasks::not_found()
                    }
                }
                _ => not_allowed(),
            }
        }
        ["sim", "hosts", host] => match m {
            "GET" => host_view(shared, host),
            _ => not_allowed(),
        },
        ["sim", "hosts", host, "actions", action] => match m {
            "POST" => perform(shared, host, action, call).await,
            _ => not_allowed(),
        },
        _ => message(404, "The requested resource does not exist."),
    }
}

fn not_allowed() -> Answer {
    message(405, "The method is not allowed on this resource.")
}

fn list_computers(shared: &Shared, expand: Expand, filter: Option<Option<SearchFilter>>) -> Answer {
    let views = match filter {
        // A plain list returns every computer.
        None => computers::views(shared),
        Some(f) => match search_computers(shared, f) {
            Ok(v) => v,
            Err(m) => return message(400, m),
        },
    };
    let list: Vec<J> = views.iter().map(|v| computers::render(v, expand)).collect();
    ok(json!({ "computers": list }))
}

/// A computer search, as [`search::run`] answers it, without making every computer for each
/// page: computer IDs are positions + 1, so the search starts at the lowest ID the `idTest`
/// criteria allow, goes up in ID order a chunk at a time and stops at `maxItems` results (a
/// paged read of N computers costs O(N) in all, not O(N) per page).
fn search_computers(
    shared: &Shared,
    filter: Option<SearchFilter>,
) -> Result<Vec<computers::View>, String> {
    const CHUNK: usize = 1024;
    let c = search::Compiled::new(filter)?;
    if let Some(first) = computers::views_in(shared, 0..1).first() {
        c.check(first)?;
    }
    let (lo, hi) = c.id_bounds();
    let count = shared.fleet.computer_count();
    // Positions of the IDs in [lo, hi], clamped to the fleet.
    let start = usize::try_from(lo.max(1) - 1)
        .unwrap_or(usize::MAX)
        .min(count);
    let end = usize::try_from(hi.max(0)).unwrap_or(usize::MAX).min(count);
    let mut out = Vec::new();
    let mut at = start;
    while at < end && out.len() < c.max {
        let next = at.saturating_add(CHUNK).min(end);
        for v in computers::views_in(shared, at..next) {
            if out.len() < c.max && c.keeps(&v)? {
                out.push(v);
            }
        }
        at = next;
    }
    Ok(out)
}

impl Searchable for GroupRow {
    fn id(&self) -> i64 {
        i64::from(self.id)
    }

    fn field(&self, name: &str) -> Option<FieldValue<'_>> {
        Some(match name {
            "ID" => FieldValue::Num(f64::from(self.id)),
            "name" => FieldValue::Str(Some(&self.name)),
            "description" => FieldValue::Str(Some("")),
            "parentGroupID" => FieldValue::Num(f64::from(self.parent.unwrap_or(0))),
            "type" => FieldValue::Choice("folder"),
            _ => return None,
        })
    }
}

fn render_group(g: &GroupRow) -> J {
    let mut o = Map::new();
    o.insert("ID".into(), json!(g.id));
    o.insert("name".into(), json!(g.name));
    o.insert("description".into(), json!(""));
    o.insert("type".into(), json!("folder"));
    if let Some(p) = g.parent {
        o.insert("parentGroupID".into(), json!(p));
    }
    J::Object(o)
}

fn list_groups(shared: &Shared, filter: Option<Option<SearchFilter>>) -> Answer {
    let rows = shared.groups.clone();
    let rows = match filter {
        None => rows,
        Some(f) => match search::run(rows, f) {
            Ok(r) => r,
            Err(m) => return message(400, m),
        },
    };
    let list: Vec<J> = rows.iter().map(render_group).collect();
    ok(json!({ "computerGroups": list }))
}

fn all_settings(shared: &Shared) -> J {
    let settings = lock(&shared.settings);
    let o: Map<String, J> = settings
        .iter()
        .map(|(k, v)| (k.clone(), json!({ "value": v })))
        .collect();
    J::Object(o)
}

fn setting_value(v: &J) -> Option<String> {
    match v.get("value")? {
        J::String(s) => Some(s.clone()),
        J::Bool(b) => Some(b.to_string()),
        J::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn modify_settings(shared: &Shared, changes: Map<String, J>) -> Answer {
    let mut parsed = Vec::with_capacity(changes.len());
    for (k, v) in &changes {
        if !shared.setting_defaults.contains_key(k) {
            return message(400, format!("Invalid setting name: {k}."));
        }
        let Some(v) = setting_value(v) else {
            return message(
                400,
                format!("The setting {k} needs {{\"value\": \"...\"}}."),
            );
        };
        parsed.push((k.clone(), v));
    }
    lock(&shared.settings).extend(parsed);
    ok(all_settings(shared))
}

fn setting(shared: &Shared, method: &str, name: &str, call: &Call<'_>) -> Answer {
    let missing = || message(404, "The setting does not exist.");
    match method {
        "GET" => match lock(&shared.settings).get(name) {
            Some(v) => ok(json!({ "value": v })),
            None => missing(),
        },
        "POST" => {
            if !shared.setting_defaults.contains_key(name) {
                return missing();
            }
            let v = match call.json() {
                Ok(Some(j)) => match setting_value(&j) {
                    Some(v) => v,
                    None => return message(400, "The setting needs {\"value\": \"...\"}."),
                },
                Ok(None) => return message(400, "The setting needs {\"value\": \"...\"}."),
                Err(a) => return a,
            };
            lock(&shared.settings).insert(name.to_owned(), v.clone());
            ok(json!({ "value": v }))
        }
        "DELETE" => match shared.setting_defaults.get(name) {
            Some(d) => {
                lock(&shared.settings).insert(name.to_owned(), d.clone());
                ok(json!({ "value": d }))
            }
            None => missing(),
        },
        _ => not_allowed(),
    }
}

fn list_tasks(shared: &Shared, filter: Option<Option<SearchFilter>>) -> Answer {
    let rows = lock(&shared.tasks).all();
    let rows = match filter {
        None => rows,
        Some(f) => match search::run(rows, f) {
            Ok(r) => r,
            Err(m) => return message(400, m),
        },
    };
    let list: Vec<J> = rows.into_iter().map(|r| J::Object(r.0)).collect();
    ok(json!({ "scheduledTasks": list }))
}

fn fact_json(v: &Value) -> J {
    match v {
        Value::Null => J::Null,
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::Str(s) => json!(s),
        Value::Agent(b) => json!(b.to_string()),
        Value::Manager(b) => json!(b.to_string()),
        Value::Duration(d) => json!(d),
        Value::List(l) => json!(l),
    }
}

/// `GET /sim/hosts/{name}`: everything the fleet knows about one host (a fake agent's
/// probes read it), as one flat JSON object.
fn host_view(shared: &Shared, host: &str) -> Answer {
    let Some(h) = shared.fleet.host_state(host) else {
        return message(
            404,
            format!("There is no host named {host} in the simulated fleet."),
        );
    };
    let offline = h.relay_group.as_ref().is_some_and(|g| {
        shared
            .fleet
            .relay_groups()
            .iter()
            .any(|r| &r.name == g && r.offline)
    });
    ok(json!({
        "name": h.name,
        "platform": h.platform.as_str(),
        "relay": h.relay,
        "relay_group": h.relay_group,
        "relay_group_offline": offline,
        "protected_by_appliance": h.protected_by_appliance,
        "build": h.build.to_string(),
        "pending_reboot": h.pending_reboot,
        "antimalware_online": h.antimalware_online,
        "antimalware_off_by_policy": h.antimalware_off_by_policy,
        "security_update_current": h.security_update_current,
        "last_security_update_error": h.last_security_update_error,
        "sha2_supported": h.sha2_supported,
        "root_certs_present": h.root_certs_present,
        "boot_id": h.boot_id,
        "imported_bundle": h.imported_bundle,
        "relay_cache_clears": h.relay_cache_clears,
    }))
}

/// `POST /sim/hosts/{name}/actions/{action}`: the simulator-only way for fake agents to act
/// on the fleet, so that what the Manager reports follows what happened on the hosts.
async fn perform(shared: &Arc<Shared>, host: &str, action: &str, call: &Call<'_>) -> Answer {
    let args: BTreeMap<String, String> = match call.json() {
        Ok(None) => BTreeMap::new(),
        Ok(Some(j)) => match j.get("args").cloned().map(serde_json::from_value) {
            None => BTreeMap::new(),
            Some(Ok(a)) => a,
            Some(Err(e)) => {
                return message(400, format!("args must map names to strings: {e}."));
            }
        },
        Err(a) => return a,
    };
    let fleet = shared.fleet.clone();
    let (host, action) = (host.to_owned(), action.to_owned());
    let out = match tokio::task::spawn_blocking(move || fleet.perform(&host, &action, &args)).await
    {
        Ok(o) => o,
        Err(e) => return message(500, format!("The simulator task failed: {e}.")),
    };
    let (result, msg) = match &out.result {
        SimResult::Ok => ("ok", None),
        SimResult::Failed(m) => ("failed", Some(m.clone())),
        SimResult::Unreachable => ("unreachable", None),
        SimResult::Hang => ("hang", None),
        // Not sent by this endpoint, which carries no fencing token.
        SimResult::Refused(m) => ("refused", Some(m.clone())),
    };
    let facts: Map<String, J> = out
        .facts
        .iter()
        .map(|(k, v)| (k.clone(), fact_json(v)))
        .collect();
    ok(json!({ "result": result, "message": msg, "facts": facts }))
}

#[cfg(test)]
mod tests {
    use super::route_of;

    #[test]
    fn routes_hide_ids_and_names() {
        assert_eq!(route_of("/api/computers"), "/api/computers");
        assert_eq!(route_of("/api/computers/search"), "/api/computers/search");
        assert_eq!(route_of("/api/computers/42"), "/api/computers/{id}");
        assert_eq!(
            route_of("/api/systemsettings/platformSettingX"),
            "/api/systemsettings/{name}"
        );
        assert_eq!(
            route_of("/api/scheduledtasks/7"),
            "/api/scheduledtasks/{id}"
        );
        assert_eq!(
            route_of("/api/computers/3/settings/platformSettingRelayState"),
            "/api/computers/{id}/settings/{name}"
        );
        assert_eq!(route_of("/sim/hosts/web-01"), "/sim/hosts/{name}");
        assert_eq!(
            route_of("/sim/hosts/web-01/actions/agent-upgrade"),
            "/sim/hosts/{name}/actions/{action}"
        );
    }
}
