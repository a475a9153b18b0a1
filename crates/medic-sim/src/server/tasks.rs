//! Scheduled tasks: the store behind `/api/scheduledtasks`, and what running a
//! `check-for-security-updates` task does: one `security-update` on the fleet per targeted
//! computer, finishing after the fleet's simulated duration (divided by the time scale), as
//! the Manager's jobs do in the background while the API has long answered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value as J, json};

use super::search::{FieldValue, Searchable};
use super::{Shared, lock};
use crate::SimResult;

/// The `type` enum of the vendor spec (identical in the DSM 20.0.463 SDK).
const TYPES: [&str; 16] = [
    "scan-for-open-ports",
    "send-alert-summary",
    "discover-computers",
    "run-script",
    "send-policy",
    "generate-report",
    "synchronize-directory",
    "synchronize-users",
    "scan-for-recommendations",
    "synchronize-vcenter",
    "scan-for-integrity-changes",
    "scan-for-malware",
    "check-for-security-updates",
    "synchronize-cloud-account",
    "check-for-software-updates",
    "update-suspicious-objects-list",
];

/// What the status of a security update shows when the agent never answered.
const NO_ANSWER: &str = "Communications problem: the agent did not answer (simulated)";

#[derive(Debug, Default)]
pub(crate) struct TaskStore {
    last_id: i64,
    tasks: BTreeMap<i64, Map<String, J>>,
}

/// A stored task, for searches.
pub(crate) struct Row(pub Map<String, J>);

impl Searchable for Row {
    fn id(&self) -> i64 {
        self.0.get("ID").and_then(J::as_i64).unwrap_or(0)
    }

    fn field(&self, name: &str) -> Option<FieldValue<'_>> {
        Some(match name {
            "ID" => FieldValue::Num(self.id() as f64),
            "name" => FieldValue::Str(self.0.get("name").and_then(J::as_str)),
            "type" => FieldValue::Choice(self.0.get("type").and_then(J::as_str).unwrap_or("")),
            "enabled" => {
                FieldValue::Bool(self.0.get("enabled").and_then(J::as_bool).unwrap_or(true))
            }
            "lastRunTime" | "nextRunTime" => FieldValue::Date(self.0.get(name).and_then(J::as_i64)),
            _ => return None,
        })
    }
}

impl TaskStore {
    pub(crate) fn all(&self) -> Vec<Row> {
        self.tasks.values().cloned().map(Row).collect()
    }

    pub(crate) fn get(&self, id: i64) -> Option<&Map<String, J>> {
        self.tasks.get(&id)
    }

    pub(crate) fn remove(&mut self, id: i64) -> bool {
        self.tasks.remove(&id).is_some()
    }
}

pub(crate) type Answer = (u16, Option<J>);

fn bad(message: impl Into<String>) -> Answer {
    (400, Some(json!({ "message": message.into() })))
}

fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A one-shot task is deleted after it ran (`recurrenceType: none`, or no schedule).
fn one_shot(task: &Map<String, J>) -> bool {
    task.get("scheduleDetails")
        .and_then(|d| d.get("recurrenceType"))
        .and_then(J::as_str)
        .is_none_or(|r| r == "none")
}

/// `POST /api/scheduledtasks`.
pub(crate) fn create(shared: &Arc<Shared>, body: J) -> Answer {
    let J::Object(mut task) = body else {
        return bad("The scheduled task must be a JSON object.");
    };
    if let Err(m) = validate(&task) {
        return bad(m);
    }
    let run_now = task.get("runNow").and_then(J::as_bool).unwrap_or(false);
    let targets = if run_now {
        match targets(shared, &task) {
            Ok(t) => t,
            Err(m) => return bad(m),
        }
    } else {
        Vec::new()
    };
    task.entry("enabled").or_insert(json!(true));
    task.insert("runNow".into(), json!(false));
    let id = {
        let mut store = lock(&shared.tasks);
        store.last_id += 1;
        store.last_id
    };
    task.insert("ID".into(), json!(id));
    if run_now {
        task.insert("lastRunTime".into(), json!(now_ms()));
        run(shared, targets);
    }
    if !(run_now && one_shot(&task)) {
        lock(&shared.tasks).tasks.insert(id, task.clone());
    }
    (200, Some(J::Object(task)))
}

/// `POST /api/scheduledtasks/{id}`: changes the given fields; `runNow: true` runs it again.
pub(crate) fn modify(shared: &Arc<Shared>, id: i64, body: J) -> Answer {
    let J::Object(changes) = body else {
        return bad("The scheduled task must be a JSON object.");
    };
    let Some(mut task) = lock(&shared.tasks).get(id).cloned() else {
        return not_found();
    };
    for (k, v) in changes {
        if k != "ID" {
            task.insert(k, v);
        }
    }
    if let Err(m) = validate(&task) {
        return bad(m);
    }
    let run_now = task.get("runNow").and_then(J::as_bool).unwrap_or(false);
    task.insert("runNow".into(), json!(false));
    if run_now {
        let t = match targets(shared, &task) {
            Ok(t) => t,
            Err(m) => return bad(m),
        };
        task.insert("lastRunTime".into(), json!(now_ms()));
        run(shared, t);
    }
    let mut store = lock(&shared.tasks);
    if run_now && one_shot(&task) {
        store.tasks.remove(&id);
    } else {
        store.tasks.insert(id, task.clone());
    }
    (200, Some(J::Object(task)))
}

pub(crate) fn not_found() -> Answer {
    (
        404,
        Some(json!({ "message": "The scheduled task does not exist." })),
    )
}

fn validate(task: &Map<String, J>) -> Result<(), String> {
    match task.get("name").and_then(J::as_str) {
        Some(n) if !n.trim().is_empty() => {}
        _ => return Err("The scheduled task needs a name.".into()),
    }
    let ty = task
        .get("type")
        .and_then(J::as_str)
        .ok_or("The scheduled task needs a type.")?;
    if !TYPES.contains(&ty) {
        return Err(format!("Invalid scheduled task type: {ty}."));
    }
    if ty == "check-for-security-updates" {
        task.get("checkForSecurityUpdatesTaskParameters")
            .and_then(|p| p.get("computerFilter"))
            .and_then(|f| f.get("type"))
            .and_then(J::as_str)
            .ok_or("A check-for-security-updates task needs checkForSecurityUpdatesTaskParameters.computerFilter.type.")?;
    }
    Ok(())
}

/// The computers (ID, host name) a task acts on; empty for types the simulator does not run.
fn targets(shared: &Shared, task: &Map<String, J>) -> Result<Vec<(u64, String)>, String> {
    if task.get("type").and_then(J::as_str) != Some("check-for-security-updates") {
        return Ok(Vec::new());
    }
    let filter = task
        .get("checkForSecurityUpdatesTaskParameters")
        .and_then(|p| p.get("computerFilter"))
        .ok_or("missing computerFilter")?;
    let ty = filter.get("type").and_then(J::as_str).unwrap_or("");
    let computers = shared.fleet.computers();
    let all = || computers.iter().map(|c| (c.id, c.host_name.clone()));
    let in_groups = |groups: &[u32]| -> Vec<(u64, String)> {
        all()
            .filter(|(id, _)| {
                usize::try_from(*id)
                    .ok()
                    .and_then(|i| i.checked_sub(1))
                    .and_then(|i| shared.hosts.get(i))
                    .is_some_and(|h| groups.contains(&h.group_id))
            })
            .collect()
    };
    let group_id = || -> Result<u32, String> {
        let g = filter
            .get("computerGroupID")
            .and_then(J::as_u64)
            .and_then(|g| u32::try_from(g).ok())
            .ok_or("computerFilter needs computerGroupID.")?;
        if shared.groups.iter().any(|r| r.id == g) {
            Ok(g)
        } else {
            Err(format!("Invalid computer group ID: {g}."))
        }
    };
    match ty {
        "all-computers" => Ok(all().collect()),
        "computer" => {
            let id = filter
                .get("computerID")
                .and_then(J::as_u64)
                .ok_or("computerFilter of type computer needs computerID.")?;
            all()
                .find(|(cid, _)| *cid == id)
                .map(|t| vec![t])
                .ok_or_else(|| format!("Invalid computer ID: {id}."))
        }
        "computers-in-group" => Ok(in_groups(&[group_id()?])),
        "computers-in-group-or-subgroup" => {
            let root = group_id()?;
            let mut set = vec![root];
            // Groups are created parents first, so one pass in ID order finds every descendant.
            for g in &shared.groups {
                if g.parent.is_some_and(|p| set.contains(&p)) {
                    set.push(g.id);
                }
            }
            Ok(in_groups(&set))
        }
        other => Err(format!(
            "The simulator does not run computer filters of type {other}."
        )),
    }
}

/// Starts one security update per target, in the background.
fn run(shared: &Arc<Shared>, targets: Vec<(u64, String)>) {
    let mut jobs = lock(&shared.jobs);
    while jobs.try_join_next().is_some() {}
    for (id, host) in targets {
        let attempt = {
            let mut live = lock(&shared.live);
            *live.in_flight.entry(id).or_default() += 1;
            let n = live.started.entry(id).or_default();
            *n += 1;
            *n
        };
        let s = shared.clone();
        jobs.spawn(async move {
            let secs = s.fleet.duration_s(&host, "security-update", attempt) / s.time_scale;
            if secs > 0.0 {
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            }
            let fleet = s.fleet.clone();
            // Side effects are written ahead (with fsync) by durable fleets: not on a worker.
            let out = tokio::task::spawn_blocking(move || {
                fleet.perform(&host, "security-update", &BTreeMap::new())
            })
            .await;
            let mut live = lock(&s.live);
            let overlay = match out.map(|o| o.result) {
                // A hung update never finishes: it stays in flight.
                Ok(SimResult::Hang) => return,
                Ok(SimResult::Unreachable) => Some(NO_ANSWER.to_owned()),
                Ok(_) => None,
                Err(e) => Some(format!("Internal error of the simulator: {e}")),
            };
            if let Some(n) = live.in_flight.get_mut(&id) {
                *n = n.saturating_sub(1);
            }
            match overlay {
                Some(m) => live.overlay.insert(id, m),
                None => live.overlay.remove(&id),
            };
            let last = live.finished_ms.entry(id).or_default();
            *last = now_ms().max(*last + 1);
        });
    }
}
