//! The report's model, built from a journal: its plan, the current state of every step,
//! the history of transitions (start and end times), what each attempt observed
//! (`step.observed` events) and the approvals.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use medic_journal::{
    EventKind, EventRow, JournalRead, JournalReader, RowKind, StepRow, StepState, meta_keys,
};
use medic_plan::{Plan, StepKind};
use serde::Serialize;

use crate::ReportError;

/// The format tag of the JSON report.
pub const FORMAT: &str = "medic.report/v1";

/// A run, host by host.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub format: &'static str,
    pub run: RunInfo,
    /// Hosts per host state (`failed`, `unknown`, `running`, `pending`, `cancelled`,
    /// `succeeded`, `skipped`).
    pub hosts_by_state: BTreeMap<String, u64>,
    /// Steps (actions, not gates) per journal state; `pending` for a step never started.
    pub steps_by_state: BTreeMap<String, u64>,
    pub phases: Vec<PhaseReport>,
    pub gates: Vec<GateReport>,
    /// Every host key the SSH driver accepted as new or refused, in the order it happened.
    pub host_keys: Vec<HostKeyReport>,
    /// Failures first: failed, unknown, running, pending, cancelled, succeeded, skipped;
    /// then by name.
    pub hosts: Vec<HostReport>,
    /// Steps that target no host.
    pub run_steps: Vec<StepReport>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RunInfo {
    pub run_id: Option<String>,
    pub journal: String,
    pub playbook: String,
    pub fingerprint: String,
    /// `running`, `finished`, `failed`, `stopped` or `unknown`.
    pub state: String,
    pub stop_reason: Option<String>,
    pub next: Option<String>,
    pub window: Option<String>,
    pub simulated: bool,
    /// Simulated seconds per real second in a rehearsal: the plan's estimates are in
    /// simulated time, the durations here in real time.
    pub time_scale: Option<f64>,
    pub preflight: Option<String>,
    /// Unix milliseconds: the first step's start (else the journal's creation) and the last
    /// recorded transition.
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    /// The plan's estimated makespan, seconds (simulated seconds in a rehearsal).
    pub estimate_s: u64,
    pub warnings: Vec<String>,
    /// The run's own history: `run.running`, `run.finished`, `window.changed`, ...
    pub history: Vec<HistoryEntry>,
}

#[derive(Clone, Debug, Serialize)]
pub struct HistoryEntry {
    pub ts_ms: i64,
    pub kind: String,
    pub detail: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PhaseReport {
    pub name: String,
    pub description: Option<String>,
    pub hosts: u32,
    pub steps: u32,
    pub skipped: u32,
    pub estimate_s: u64,
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub counts: BTreeMap<String, u64>,
    pub waves: Vec<WaveReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WaveReport {
    pub index: u32,
    pub hosts: u32,
    pub max_failures: Option<u32>,
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub counts: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct GateReport {
    pub id: String,
    pub phase: String,
    pub opens_wave: u32,
    pub approval: bool,
    pub pause_s: u64,
    /// The gate's journal state (`pending` when it was never reached).
    pub state: String,
    /// When the gate started waiting for an approval, if it did.
    pub waiting_since_ms: Option<i64>,
    pub opened_ms: Option<i64>,
    /// Who or what opened it, in words.
    pub opened_by: String,
}

/// A host key accepted as new or refused on a connection (journal kinds
/// `host_key.accepted`, `host_key.refused`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HostKeyReport {
    pub ts_ms: i64,
    /// `accepted` or `refused`.
    pub event: &'static str,
    /// The inventory host, when the driver knew it.
    pub host: Option<String>,
    /// `user@address:port`.
    pub endpoint: String,
    /// Why a key was refused: `unknown`, `changed`, `revoked`, `other_type`.
    pub reason: Option<String>,
    /// In words, as the run summary says it: host, key type, SHA256 fingerprint, what
    /// happened.
    pub line: String,
}

impl HostKeyReport {
    /// Reads a host-key journal event; `None` for any other row or an unreadable detail.
    pub(crate) fn from_row(ev: &EventRow) -> Option<HostKeyReport> {
        let event = match ev.kind {
            RowKind::Event(EventKind::HostKeyAccepted) => "accepted",
            RowKind::Event(EventKind::HostKeyRefused) => "refused",
            _ => return None,
        };
        let v: serde_json::Value = serde_json::from_str(ev.detail.as_deref()?).ok()?;
        let text = |k: &str| v.get(k)?.as_str().map(str::to_owned);
        Some(HostKeyReport {
            ts_ms: ev.ts_ms,
            event,
            host: text("host"),
            endpoint: text("endpoint").unwrap_or_default(),
            reason: text("reason"),
            line: text("line")?,
        })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SkipReason {
    pub phase: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct HostReport {
    pub name: String,
    pub address: String,
    pub role: String,
    pub platform: Option<String>,
    pub relay_group: Option<String>,
    pub state: String,
    /// The agent build a probe saw before the host's first action, if one did.
    pub build_before: Option<String>,
    /// The last agent build observed after an action (the verification's, when there was
    /// one).
    pub build_after: Option<String>,
    /// `manager` or `host`: whose view the verification judged from.
    pub verified_by: Option<String>,
    /// The phases the host has steps in or was skipped from, in plan order.
    pub phases: Vec<String>,
    /// The first failed (or unknown) step and why.
    pub failure: Option<String>,
    pub skipped: Vec<SkipReason>,
    /// The host's keys accepted as new or refused (the run summary's lines).
    pub host_keys: Vec<String>,
    pub steps: Vec<StepReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub id: String,
    pub phase: String,
    pub action: String,
    pub wave: Option<u32>,
    pub state: String,
    pub attempts: u32,
    /// Unix milliseconds of the first attempt's start and of the final transition.
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub estimate_s: u64,
    /// The journal's detail of the step (why it failed, was skipped or what it noted).
    pub detail: Option<String>,
    /// The end of the command output the step's action answered, if it gave one.
    pub output: Option<String>,
    pub evidence: Option<Evidence>,
}

impl StepReport {
    /// Real seconds from the first start to the end.
    pub fn duration_s(&self) -> Option<f64> {
        Some((self.end_ms? - self.start_ms?).max(0) as f64 / 1000.0)
    }
}

/// What the step's probes and action answered: before acting (guard, check) and after
/// (the action's reply, the check again). A verification's `after` holds the Manager's
/// view (plain keys) and the host's own (`host_` keys).
#[derive(Clone, Debug, Serialize)]
pub struct Evidence {
    pub before: serde_json::Map<String, serde_json::Value>,
    pub after: serde_json::Map<String, serde_json::Value>,
}

impl Evidence {
    fn parse(json: &str) -> Option<Evidence> {
        let v: serde_json::Value = serde_json::from_str(json).ok()?;
        let obj = |k: &str| v.get(k).and_then(|x| x.as_object()).cloned();
        Some(Evidence {
            before: obj("before").unwrap_or_default(),
            after: obj("after").unwrap_or_default(),
        })
    }

    /// The facts in words, for one line: the verification's two views apart.
    pub fn summary(&self) -> String {
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let show = |m: &serde_json::Map<String, serde_json::Value>, host: bool| -> String {
            m.iter()
                .filter(|(k, _)| *k != "output" && *k != "verified_by")
                .filter(|(k, _)| k.starts_with("host_") == host)
                .map(|(k, v)| {
                    let k = if host { &k[5..] } else { k.as_str() };
                    format!("{k}={}", text(v))
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        if let Some(by) = self.after.get("verified_by") {
            let primary = show(&self.after, false);
            parts.push(format!("{} view: {primary}", text(by)));
            let host = show(&self.after, true);
            if !host.is_empty() {
                parts.push(format!("host's own view: {host}"));
            }
        } else {
            let after = show(&self.after, false);
            if !after.is_empty() {
                parts.push(format!("after: {after}"));
            }
        }
        let before = show(&self.before, false);
        if !before.is_empty() {
            parts.push(format!("before: {before}"));
        }
        parts.join("; ")
    }
}

/// What one step's history says.
#[derive(Default)]
struct Seen {
    start: Option<i64>,
    end: Option<i64>,
    first_observed: Option<String>,
    last_observed: Option<String>,
    waiting_since: Option<i64>,
    manual_by: Option<(i64, String)>,
}

/// The order of host states in the report: failures first.
const HOST_STATES: [&str; 7] = [
    "failed",
    "unknown",
    "running",
    "pending",
    "cancelled",
    "succeeded",
    "skipped",
];

fn rank(state: &str) -> usize {
    HOST_STATES
        .iter()
        .position(|s| *s == state)
        .unwrap_or(HOST_STATES.len())
}

/// Everything read from the journal apart from the plan.
struct Rows {
    steps: Vec<StepRow>,
    events: Vec<EventRow>,
    approvals: Vec<medic_journal::Approval>,
    run_id: Option<String>,
    outcome: Option<serde_json::Value>,
    inputs: Option<serde_json::Value>,
    preflight: Option<String>,
    created_ms: Option<i64>,
}

fn read_rows<R: JournalRead + ?Sized>(r: &R) -> Result<Rows, ReportError> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let batch = r.events_since(after, 100_000)?;
        let Some(last) = batch.last() else { break };
        after = last.seq;
        events.extend(batch);
    }
    let json = |k: &str| -> Result<Option<serde_json::Value>, ReportError> {
        Ok(r.meta(k)?.and_then(|v| serde_json::from_str(&v).ok()))
    };
    Ok(Rows {
        steps: r.steps()?,
        events,
        approvals: r.approvals()?,
        run_id: r.meta(meta_keys::RUN_ID)?,
        // inferred from medic-cli's status module: the keys the CLI writes.
        outcome: json("run_outcome")?,
        inputs: json("inputs")?,
        preflight: r.meta("preflight")?,
        created_ms: r.meta(meta_keys::CREATED_MS)?.and_then(|v| v.parse().ok()),
    })
}

pub(crate) fn read(path: &Path) -> Result<Report, ReportError> {
    // The plan's decoding and the rows' reading are independent: one thread each, over two
    // read-only connections (a million-step journal takes a good part of a second for each).
    let (plan, rows) = std::thread::scope(|s| {
        let plan = s.spawn(|| read_plan(&JournalReader::open(path)?));
        let rows = read_rows(&JournalReader::open(path)?);
        let plan = plan
            .join()
            .unwrap_or_else(|_| Err(ReportError::Plan("the plan reader panicked".to_owned())));
        Ok::<_, ReportError>((plan?, rows?))
    })?;
    Ok(build(&plan, rows, &path.display().to_string()))
}

/// The same report from any journal backend, read over one handle; `journal` is how the
/// report names it (a database's URL, never with its password).
pub(crate) fn read_from<R: JournalRead + ?Sized>(
    r: &R,
    journal: &str,
) -> Result<Report, ReportError> {
    let plan = read_plan(r)?;
    Ok(build(&plan, read_rows(r)?, journal))
}

fn read_plan<R: JournalRead + ?Sized>(r: &R) -> Result<Plan, ReportError> {
    medic_exec::read_plan(r).map_err(|e| match e {
        medic_exec::ReadError::Journal(j) => ReportError::Journal(j),
        other => ReportError::Plan(other.to_string()),
    })
}

fn state_word(row: Option<&StepRow>) -> &'static str {
    row.map_or("pending", |r| r.state.as_str())
}

fn build(plan: &Plan, rows: Rows, journal: &str) -> Report {
    let n = plan.steps().len();
    let mut row_of: Vec<Option<usize>> = vec![None; n];
    for (k, r) in rows.steps.iter().enumerate() {
        if let Some(i) = plan.step_index(&r.step) {
            row_of[i as usize] = Some(k);
        }
    }
    let row = |i: usize| row_of[i].map(|k| &rows.steps[k]);

    let mut seen: Vec<Seen> = (0..n).map(|_| Seen::default()).collect();
    let mut history = Vec::new();
    let mut host_keys = Vec::new();
    let mut last_ts = None;
    for ev in &rows.events {
        last_ts = Some(ev.ts_ms);
        let Some(id) = &ev.step else {
            if let Some(k) = HostKeyReport::from_row(ev) {
                host_keys.push(k);
            } else if matches!(
                ev.kind,
                RowKind::Event(EventKind::Run(_) | EventKind::WindowChanged)
            ) {
                history.push(HistoryEntry {
                    ts_ms: ev.ts_ms,
                    kind: ev.kind.as_str().to_owned(),
                    detail: ev.detail.clone(),
                });
            }
            continue;
        };
        let Some(i) = plan.step_index(id) else {
            continue;
        };
        let s = &mut seen[i as usize];
        match ev.kind {
            RowKind::Step(StepState::Running) => {
                s.start.get_or_insert(ev.ts_ms);
            }
            RowKind::Event(EventKind::StepObserved) => {
                if s.first_observed.is_none() {
                    s.first_observed = ev.detail.clone();
                } else {
                    s.last_observed = ev.detail.clone();
                }
            }
            RowKind::Event(EventKind::GateWaiting | EventKind::ManualWaiting) => {
                s.waiting_since.get_or_insert(ev.ts_ms);
            }
            RowKind::Event(EventKind::ManualApproved) => {
                s.manual_by = Some((ev.ts_ms, ev.detail.clone().unwrap_or_default()));
            }
            RowKind::Step(st) if st != StepState::Pending => {
                s.end = Some(ev.ts_ms);
            }
            RowKind::Step(_) | RowKind::Event(_) => {}
        }
    }

    let inputs = rows.inputs.as_ref();
    let simulated = inputs
        .and_then(|v| v.get("simulate")?.as_bool())
        .unwrap_or(false);
    let yes = inputs
        .and_then(|v| v.get("yes")?.as_bool())
        .unwrap_or(false);
    let outcome = rows.outcome.as_ref();
    let text_of = |v: Option<&serde_json::Value>, k: &str| -> Option<String> {
        v.and_then(|v| v.get(k)?.as_str().map(str::to_owned))
    };

    let step_report = |i: usize| -> StepReport {
        let step = &plan.steps()[i];
        let r = row(i);
        let sn = &seen[i];
        // The first attempt's "before" is the host before anything acted; the last
        // attempt's "after" is what the step ended with.
        let first = sn.first_observed.as_deref().and_then(Evidence::parse);
        let last = sn.last_observed.as_deref().and_then(Evidence::parse);
        let evidence = match (first, last) {
            (Some(f), Some(l)) => Some(Evidence {
                before: f.before,
                after: l.after,
            }),
            (f, None) => f,
            (None, l) => l,
        };
        let output = evidence
            .as_ref()
            .and_then(|e| e.after.get("output").or_else(|| e.before.get("output")))
            .and_then(|v| v.as_str())
            .filter(|s| !s.trim().is_empty())
            .map(excerpt);
        StepReport {
            id: step.id.clone(),
            phase: step.phase.to_string(),
            action: step.action.to_string(),
            wave: step.wave,
            state: state_word(r).to_owned(),
            attempts: r.map_or(0, |r| r.attempt),
            start_ms: sn.start,
            end_ms: sn.end.filter(|_| {
                r.is_some_and(|r| r.state.is_terminal() || r.state == StepState::Unknown)
            }),
            estimate_s: step.estimate_s,
            detail: r.and_then(|r| r.detail.clone()),
            output,
            evidence,
        }
    };

    // Hosts: the plan's, then names only the skipped list knows.
    let mut hosts: Vec<HostReport> = plan
        .hosts()
        .iter()
        .map(|h| HostReport {
            name: h.name.clone(),
            address: h.address.clone(),
            role: h.role.as_str().to_owned(),
            platform: h.platform.map(|p| p.as_str().to_owned()),
            relay_group: h.relay_group.clone(),
            ..HostReport::default()
        })
        .collect();
    let mut by_name: HashMap<String, usize> = hosts
        .iter()
        .enumerate()
        .map(|(k, h)| (h.name.clone(), k))
        .collect();
    for sk in plan.skipped() {
        let k = *by_name.entry(sk.host.clone()).or_insert_with(|| {
            // Known only by name: the plan has no address, role or platform for it.
            hosts.push(HostReport {
                name: sk.host.clone(),
                ..HostReport::default()
            });
            hosts.len() - 1
        });
        hosts[k].skipped.push(SkipReason {
            phase: sk.phase.clone(),
            reason: sk.reason.clone(),
        });
    }

    let phase_names: Vec<&str> = plan.phases().iter().map(|p| p.name.as_str()).collect();
    let phase_index: HashMap<&str, usize> = phase_names
        .iter()
        .enumerate()
        .map(|(k, p)| (*p, k))
        .collect();
    let mut phases: Vec<PhaseReport> = plan
        .phases()
        .iter()
        .map(|p| PhaseReport {
            name: p.name.clone(),
            description: p.description.clone(),
            hosts: p.hosts,
            steps: p.steps,
            skipped: p.skipped,
            estimate_s: p.estimate_s,
            started_ms: None,
            ended_ms: None,
            counts: BTreeMap::new(),
            waves: p
                .waves
                .iter()
                .map(|w| WaveReport {
                    index: w.index,
                    hosts: w.hosts,
                    max_failures: w.max_failures,
                    started_ms: None,
                    ended_ms: None,
                    counts: BTreeMap::new(),
                })
                .collect(),
        })
        .collect();

    let mut run_steps = Vec::new();
    let mut gates = Vec::new();
    let mut steps_by_state: BTreeMap<String, u64> = BTreeMap::new();
    let approvals: HashMap<&str, &medic_journal::Approval> = rows
        .approvals
        .iter()
        .map(|a| (a.gate.as_str(), a))
        .collect();
    let span = |a: &mut Option<i64>, b: &mut Option<i64>, s: &StepReport| {
        if let Some(t) = s.start_ms {
            *a = Some(a.map_or(t, |x| x.min(t)));
        }
        if let Some(t) = s.end_ms {
            *b = Some(b.map_or(t, |x| x.max(t)));
        }
    };
    for (i, step) in plan.steps().iter().enumerate() {
        match step.kind {
            StepKind::Barrier => continue,
            StepKind::Gate(g) => {
                let r = row(i);
                let sn = &seen[i];
                let state = state_word(r).to_owned();
                let opened = r.filter(|r| r.state == StepState::Succeeded);
                let mut how = Vec::new();
                if g.pause_s > 0 {
                    how.push(format!(
                        "a soak of {}",
                        medic_model::format_duration(g.pause_s)
                    ));
                }
                if g.approval {
                    match approvals.get(step.id.as_str()) {
                        Some(a) => how.push(format!("approved by {}", a.by)),
                        None if yes => how.push("an approval by --yes".to_owned()),
                        None => how.push("an approval (none given)".to_owned()),
                    }
                }
                let opened_by = match (&opened, how.is_empty()) {
                    (Some(_), true) => {
                        "medic: the waves before it were within their failure budget".to_owned()
                    }
                    (Some(_), false) => format!("medic after {}", how.join(", then ")),
                    (None, true) => "not opened".to_owned(),
                    (None, false) => format!("not opened: waits for {}", how.join(", then ")),
                };
                gates.push(GateReport {
                    id: step.id.clone(),
                    phase: step.phase.to_string(),
                    opens_wave: g.opens_wave,
                    approval: g.approval,
                    pause_s: g.pause_s,
                    state,
                    waiting_since_ms: sn.waiting_since,
                    opened_ms: opened.map(|r| r.updated_ms),
                    opened_by,
                });
                continue;
            }
            StepKind::Action => {}
        }
        let mut sr = step_report(i);
        if let Some((_, by)) = &seen[i].manual_by {
            let by = format!("the operator's work approved by {by}");
            sr.detail = Some(match sr.detail.take() {
                Some(d) => format!("{d} ({by})"),
                None => by,
            });
        }
        *steps_by_state.entry(sr.state.clone()).or_default() += 1;
        if let Some(&p) = phase_index.get(&*step.phase) {
            let ph = &mut phases[p];
            *ph.counts.entry(sr.state.clone()).or_default() += 1;
            span(&mut ph.started_ms, &mut ph.ended_ms, &sr);
            if let Some(w) = step.wave
                && let Some(wr) = ph.waves.iter_mut().find(|x| x.index == w)
            {
                *wr.counts.entry(sr.state.clone()).or_default() += 1;
                span(&mut wr.started_ms, &mut wr.ended_ms, &sr);
            }
        }
        match step.host {
            Some(h) => hosts[h as usize].steps.push(sr),
            None => run_steps.push(sr),
        }
    }

    for k in &host_keys {
        if let Some(&h) = k.host.as_ref().and_then(|n| by_name.get(n)) {
            hosts[h].host_keys.push(k.line.clone());
        }
    }
    let mut hosts_by_state: BTreeMap<String, u64> = BTreeMap::new();
    for h in &mut hosts {
        finish_host(h, &phase_index);
        *hosts_by_state.entry(h.state.clone()).or_default() += 1;
    }
    hosts.sort_by(|a, b| {
        rank(&a.state)
            .cmp(&rank(&b.state))
            .then_with(|| a.name.cmp(&b.name))
    });

    let first_start = hosts
        .iter()
        .flat_map(|h| h.steps.iter())
        .chain(run_steps.iter())
        .filter_map(|s| s.start_ms)
        .min();
    Report {
        format: FORMAT,
        run: RunInfo {
            run_id: rows.run_id,
            journal: journal.to_owned(),
            playbook: plan.playbook().to_owned(),
            fingerprint: plan.fingerprint().to_owned(),
            state: text_of(outcome, "state").unwrap_or_else(|| "unknown".to_owned()),
            stop_reason: text_of(outcome, "reason"),
            next: text_of(outcome, "next"),
            window: text_of(inputs, "window"),
            simulated,
            time_scale: inputs
                .filter(|_| simulated)
                .and_then(|v| v.get("time_scale")?.as_f64()),
            preflight: rows.preflight,
            started_ms: first_start.or(rows.created_ms),
            ended_ms: last_ts,
            estimate_s: plan.estimate().makespan_s,
            warnings: plan.warnings().to_vec(),
            history,
        },
        hosts_by_state,
        steps_by_state,
        phases,
        gates,
        host_keys,
        hosts,
        run_steps,
    }
}

/// A host's state, builds, phases and first failure, from its steps.
fn finish_host(h: &mut HostReport, phase_index: &HashMap<&str, usize>) {
    let has = |w: &str| h.steps.iter().any(|s| s.state == w);
    h.state = if has("failed") {
        "failed"
    } else if has("unknown") {
        "unknown"
    } else if has("running") {
        "running"
    } else if has("pending") {
        "pending"
    } else if has("cancelled") {
        "cancelled"
    } else if h.steps.iter().all(|s| s.state == "skipped") {
        "skipped"
    } else {
        "succeeded"
    }
    .to_owned();
    h.steps.sort_by_key(|s| (s.start_ms.is_none(), s.start_ms));
    let build = |m: &serde_json::Map<String, serde_json::Value>| {
        m.get("agent_version")
            .or_else(|| m.get("host_agent_version"))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    h.build_before = h
        .steps
        .iter()
        .filter_map(|s| s.evidence.as_ref())
        .find_map(|e| build(&e.before));
    let verified = h
        .steps
        .iter()
        .rev()
        .filter_map(|s| s.evidence.as_ref())
        .find(|e| e.after.contains_key("verified_by"));
    h.verified_by = verified
        .and_then(|e| e.after.get("verified_by")?.as_str())
        .map(str::to_owned);
    h.build_after = verified.and_then(|e| build(&e.after)).or_else(|| {
        h.steps
            .iter()
            .rev()
            .filter_map(|s| s.evidence.as_ref())
            .find_map(|e| build(&e.after))
    });
    h.failure = h
        .steps
        .iter()
        .find(|s| s.state == "failed" || s.state == "unknown")
        .map(|s| match &s.detail {
            Some(d) => format!("{}: {d}", s.id),
            None => s.id.clone(),
        });
    let mut phases: Vec<&str> = h
        .steps
        .iter()
        .map(|s| s.phase.as_str())
        .chain(h.skipped.iter().map(|s| s.phase.as_str()))
        .collect();
    phases.sort_by_key(|p| phase_index.get(p).copied().unwrap_or(usize::MAX));
    phases.dedup();
    h.phases = phases.into_iter().map(str::to_owned).collect();
}

/// The last lines of a command's output, at most 20 lines and 2,000 bytes.
fn excerpt(s: &str) -> String {
    let lines: Vec<&str> = s.trim_end().lines().collect();
    let mut out = lines[lines.len().saturating_sub(20)..].join("\n");
    if out.len() > 2000 {
        let mut at = out.len() - 2000;
        while !out.is_char_boundary(at) {
            at += 1;
        }
        out = out[at..].to_owned();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVENTORY: &str = "manager: { name: dsm, address: 10.0.0.1, version: \"20.0.463\" }\nhosts:\n  - { name: h1, address: 10.0.1.1, platform: linux, agent_version: \"20.0.0-1\" }\n  - { name: h2, address: 10.0.1.2, platform: linux, agent_version: \"20.0.0-1\" }\n";
    const PLAYBOOK: &str = "name: keys\ndefaults: { driver: ssh, timeout: 10m, estimate: 1m }\nphases:\n  - name: upgrade\n    select: { roles: [agent] }\n    actions: [{ action: agent-upgrade }]\n";

    fn plan() -> Plan {
        let inv = medic_config::load_inventory("inventory.yaml", INVENTORY)
            .unwrap_or_else(|p| panic!("inventory: {p}"));
        let pb = medic_config::load_playbook("playbook.yaml", PLAYBOOK, &[])
            .unwrap_or_else(|p| panic!("playbook: {p}"));
        medic_plan::build_plan(&inv, &pb, PLAYBOOK, None).expect("plan")
    }

    fn row(seq: i64, kind: EventKind, detail: serde_json::Value) -> EventRow {
        EventRow {
            seq,
            ts_ms: 1_800_000_000_000 + seq,
            step: None,
            kind: RowKind::Event(kind),
            attempt: None,
            detail: Some(detail.to_string()),
        }
    }

    /// The journal's host-key events (no step) become the report's host-key list, in
    /// order, and a line on their host's row; one for an endpoint no host is named for is
    /// listed but on no row; markup in a line reaches no format unescaped.
    #[test]
    fn host_keys_are_listed_and_on_their_hosts_rows() {
        let refused =
            "h2 (root@10.0.1.2:22): host key ssh-ed25519 SHA256:<b>x</b> refused (changed)";
        let events = vec![
            row(
                1,
                EventKind::HostKeyAccepted,
                serde_json::json!({"host": "h1", "endpoint": "root@10.0.1.1:22",
                    "key_type": "ssh-ed25519", "fingerprint": "SHA256:a",
                    "line": "h1 (root@10.0.1.1:22): new host key ssh-ed25519 SHA256:a accepted, recorded in kh"}),
            ),
            row(
                2,
                EventKind::HostKeyRefused,
                serde_json::json!({"host": "h2", "endpoint": "root@10.0.1.2:22",
                    "key_type": "ssh-ed25519", "fingerprint": "SHA256:<b>x</b>",
                    "reason": "changed", "line": refused}),
            ),
            row(
                3,
                EventKind::HostKeyRefused,
                serde_json::json!({"host": null, "endpoint": "root@10.0.9.9:22",
                    "reason": "unknown", "line": "root@10.0.9.9:22: host key ssh-rsa SHA256:z refused (unknown)"}),
            ),
            // Not a host-key event: the run's history, as before.
            EventRow {
                detail: None,
                ..row(
                    4,
                    EventKind::Run(medic_journal::RunState::Finished),
                    serde_json::json!({}),
                )
            },
        ];
        let rows = Rows {
            steps: Vec::new(),
            events,
            approvals: Vec::new(),
            run_id: Some("r1".to_owned()),
            outcome: None,
            inputs: None,
            preflight: None,
            created_ms: None,
        };
        let r = build(&plan(), rows, "j.sqlite");

        let got: Vec<_> = r
            .host_keys
            .iter()
            .map(|k| (k.event, k.host.as_deref(), k.reason.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("accepted", Some("h1"), None),
                ("refused", Some("h2"), Some("changed")),
                ("refused", None, Some("unknown")),
            ]
        );
        assert_eq!(r.run.history.len(), 1, "{:?}", r.run.history);
        let host = |n: &str| r.hosts.iter().find(|h| h.name == n).expect("host");
        assert_eq!(host("h2").host_keys, [refused]);
        assert_eq!(host("h1").host_keys.len(), 1);
        assert!(host("h1").host_keys[0].contains("accepted"));

        let json: serde_json::Value =
            serde_json::from_str(&crate::render(&r, crate::Format::Json)).expect("JSON");
        assert_eq!(json["host_keys"][1]["line"], refused);
        assert_eq!(json["host_keys"][1]["event"], "refused");
        let html = crate::render(&r, crate::Format::Html);
        assert!(html.contains(r#"<section id="host-keys"><h2>Host keys (3)</h2>"#));
        assert!(html.contains("SHA256:&lt;b&gt;x&lt;/b&gt; refused (changed)"));
        assert!(!html.contains("<b>x"), "unescaped markup in the page");
        let md = crate::render(&r, crate::Format::Markdown);
        assert!(md.contains("## Host keys"), "{md}");
        assert!(md.contains("root@10.0.9.9:22 | refused |"), "{md}");
        assert!(!md.contains("<b>x"), "{md}");
    }

    #[test]
    fn a_row_of_another_kind_or_without_a_line_is_no_host_key() {
        let ok = row(
            1,
            EventKind::HostKeyAccepted,
            serde_json::json!({"line": "l"}),
        );
        assert_eq!(
            HostKeyReport::from_row(&ok).map(|k| k.line),
            Some("l".to_owned())
        );
        assert!(
            HostKeyReport::from_row(&row(1, EventKind::HostKeyAccepted, serde_json::json!({})))
                .is_none()
        );
        assert!(
            HostKeyReport::from_row(&row(
                1,
                EventKind::WindowChanged,
                serde_json::json!({"line": "l"})
            ))
            .is_none()
        );
    }
}
