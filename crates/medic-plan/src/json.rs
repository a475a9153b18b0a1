//! The plan JSON contract (`medic.plan/v1`): what `medic plan --format json` prints and what
//! `medic apply --plan` reads back. The contract's fields come first and keep their meaning;
//! the fields after them are extensions that let a plan be applied without its inputs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use medic_model::{CmpOp, Cond, Operand, Path, Platform, Retry, Value};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as J, json};

use crate::plan::{
    Estimate, GateSpec, Need, PhaseInfo, Plan, PlanHost, Skipped, Step, StepCheck, StepGuard,
    StepKind, WaveInfo,
};
use crate::window::Window;

pub const PLAN_FORMAT: &str = "medic.plan/v1";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanJson {
    format: String,
    playbook: String,
    fingerprint: String,
    steps: Vec<StepJson>,
    skipped: Vec<SkippedJson>,
    estimate: EstimateJson,
    params: BTreeMap<String, String>,
    example_params: Vec<String>,
    limits: LimitsJson,
    phases: Vec<PhaseJson>,
    hosts: Vec<HostJson>,
    host_digests: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepJson {
    id: String,
    phase: String,
    host: Option<String>,
    action: String,
    needs: Vec<String>,
    wave: Option<u32>,
    guard: Option<String>,
    estimate_s: u64,
    kind: String,
    driver: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    args: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    needs_finished: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    guard_spec: Option<GuardJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    check: Option<CheckJson>,
    timeout_s: u64,
    retries: u32,
    backoff_s: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    soft_fail: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    verifies: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gate: Option<GateJson>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GuardJson {
    probe: Option<String>,
    when: J,
    describe: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckJson {
    probe: String,
    when: J,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GateJson {
    approval: bool,
    pause_s: u64,
    opens_wave: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SkippedJson {
    host: String,
    phase: String,
    reason: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EstimateJson {
    makespan_s: u64,
    fits_window: Option<bool>,
    serial_s: u64,
    window: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsJson {
    max_parallel: u32,
    endpoints: BTreeMap<String, u32>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaveJson {
    index: u32,
    hosts: u32,
    max_failures: Option<u32>,
    gate: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PhaseJson {
    name: String,
    description: Option<String>,
    hosts: u32,
    steps: u32,
    skipped: u32,
    waves: Vec<WaveJson>,
    max_failures_total: Option<u32>,
    strict: bool,
    approval: bool,
    pause_s: u64,
    max_parallel: Option<u32>,
    point_of_no_return: bool,
    backout: Option<String>,
    guard: Option<String>,
    estimate_s: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostJson {
    name: String,
    address: String,
    port: u16,
    user: Option<String>,
    platform: Option<String>,
    role: String,
    relay_group: Option<String>,
}

/// Renders the plan as pretty JSON; the same plan always gives the same bytes.
pub fn plan_to_json(plan: &Plan) -> String {
    let hosts = &plan.hosts;
    let ids = |needs: &[Need], finished: bool| -> Vec<String> {
        needs
            .iter()
            .filter(|n| !finished || n.on_finish)
            .map(|n| plan.steps[n.step as usize].id.clone())
            .collect()
    };
    let steps = plan
        .steps
        .iter()
        .map(|s| StepJson {
            id: s.id.clone(),
            phase: s.phase.to_string(),
            host: s.host.map(|h| hosts[h as usize].name.clone()),
            action: s.action.to_string(),
            needs: ids(&s.needs, false),
            wave: s.wave,
            guard: s.guard.as_ref().map(|g| match &g.probe {
                Some(p) => format!("{} (probe {p})", g.when),
                None => g.when.to_string(),
            }),
            estimate_s: s.estimate_s,
            kind: match s.kind {
                StepKind::Action => "action",
                StepKind::Barrier => "barrier",
                StepKind::Gate(_) => "gate",
            }
            .to_owned(),
            driver: s.driver.to_string(),
            args: s.args.iter().cloned().collect(),
            needs_finished: ids(&s.needs, true),
            guard_spec: s.guard.as_ref().map(|g| GuardJson {
                probe: g.probe.clone(),
                when: cond_to_json(&g.when),
                describe: g.describe.clone(),
            }),
            check: s.check.as_ref().map(|c| CheckJson {
                probe: c.probe.clone(),
                when: cond_to_json(&c.when),
            }),
            timeout_s: s.timeout_s,
            retries: s.retry.max,
            backoff_s: s.retry.backoff_s,
            endpoint: s.endpoint.as_deref().map(str::to_owned),
            soft_fail: s.soft_fail,
            verifies: s.verifies,
            gate: match s.kind {
                StepKind::Gate(g) => Some(GateJson {
                    approval: g.approval,
                    pause_s: g.pause_s,
                    opens_wave: g.opens_wave,
                }),
                _ => None,
            },
        })
        .collect();
    let j = PlanJson {
        format: PLAN_FORMAT.to_owned(),
        playbook: plan.playbook.clone(),
        fingerprint: plan.fingerprint.clone(),
        steps,
        skipped: plan
            .skipped
            .iter()
            .map(|s| SkippedJson {
                host: s.host.clone(),
                phase: s.phase.clone(),
                reason: s.reason.clone(),
            })
            .collect(),
        estimate: EstimateJson {
            makespan_s: plan.estimate.makespan_s,
            fits_window: plan.estimate.fits_window,
            serial_s: plan.estimate.serial_s,
            window: plan
                .estimate
                .window
                .map(|w| format!("{}/{}", w.start, w.end)),
        },
        params: plan.params.clone(),
        example_params: plan.example_params.clone(),
        limits: LimitsJson {
            max_parallel: plan.max_parallel,
            endpoints: plan.endpoint_limits.clone(),
        },
        phases: plan
            .phases
            .iter()
            .map(|p| PhaseJson {
                name: p.name.clone(),
                description: p.description.clone(),
                hosts: p.hosts,
                steps: p.steps,
                skipped: p.skipped,
                waves: p
                    .waves
                    .iter()
                    .map(|w| WaveJson {
                        index: w.index,
                        hosts: w.hosts,
                        max_failures: w.max_failures,
                        gate: w.gate.map(|g| plan.steps[g as usize].id.clone()),
                    })
                    .collect(),
                max_failures_total: p.max_failures_total,
                strict: p.strict,
                approval: p.approval,
                pause_s: p.pause_s,
                max_parallel: p.max_parallel,
                point_of_no_return: p.point_of_no_return,
                backout: p.backout.clone(),
                guard: p.guard.clone(),
                estimate_s: p.estimate_s,
            })
            .collect(),
        hosts: hosts
            .iter()
            .map(|h| HostJson {
                name: h.name.clone(),
                address: h.address.clone(),
                port: h.port,
                user: h.user.clone(),
                platform: h.platform.map(|p| p.as_str().to_owned()),
                role: h.role.to_owned(),
                relay_group: h.relay_group.clone(),
            })
            .collect(),
        host_digests: plan.host_digests.clone(),
    };
    let mut out =
        serde_json::to_string_pretty(&j).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    out.push('\n');
    out
}

/// Reads a plan written by [`plan_to_json`]. The plan is taken as sealed: its fingerprint
/// is kept, not recomputed.
pub fn plan_from_json(text: &str) -> Result<Plan, String> {
    let j: PlanJson = serde_json::from_str(text).map_err(|e| format!("not a medic plan: {e}"))?;
    if j.format != PLAN_FORMAT {
        return Err(format!(
            "unsupported plan format `{}` (this medic reads {PLAN_FORMAT})",
            j.format
        ));
    }
    let hosts: Vec<PlanHost> = j
        .hosts
        .into_iter()
        .map(|h| {
            Ok(PlanHost {
                name: h.name,
                address: h.address,
                port: h.port,
                user: h.user,
                platform: match h.platform.as_deref() {
                    None => None,
                    Some(p) => {
                        Some(Platform::parse(p).ok_or_else(|| format!("unknown platform `{p}`"))?)
                    }
                },
                role: match h.role.as_str() {
                    "manager" => "manager",
                    "relay" => "relay",
                    _ => "agent",
                },
                relay_group: h.relay_group,
            })
        })
        .collect::<Result<_, String>>()?;
    let host_ix: HashMap<&str, u32> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.name.as_str(), i as u32))
        .collect();
    let index: HashMap<String, u32> = j
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.clone(), i as u32))
        .collect();
    let mut steps = Vec::with_capacity(j.steps.len());
    let mut interned: HashMap<String, Arc<str>> = HashMap::new();
    let mut intern = |s: &str| {
        interned
            .entry(s.to_owned())
            .or_insert_with(|| Arc::from(s))
            .clone()
    };
    for (pos, s) in j.steps.iter().enumerate() {
        let mut needs = Vec::with_capacity(s.needs.len());
        for n in &s.needs {
            let &step = index
                .get(n)
                .ok_or_else(|| format!("step `{}` needs unknown step `{n}`", s.id))?;
            if step as usize >= pos {
                return Err(format!(
                    "step `{}` comes before `{n}`, which it needs",
                    s.id
                ));
            }
            needs.push(Need {
                step,
                on_finish: s.needs_finished.contains(n),
            });
        }
        let kind = match (s.kind.as_str(), &s.gate) {
            ("action", _) => StepKind::Action,
            ("barrier", _) => StepKind::Barrier,
            ("gate", Some(g)) => StepKind::Gate(GateSpec {
                approval: g.approval,
                pause_s: g.pause_s,
                opens_wave: g.opens_wave,
            }),
            (k, _) => return Err(format!("step `{}` has unknown kind `{k}`", s.id)),
        };
        let host = match &s.host {
            None => None,
            Some(h) => Some(
                *host_ix
                    .get(h.as_str())
                    .ok_or_else(|| format!("step `{}` names unknown host `{h}`", s.id))?,
            ),
        };
        steps.push(Step {
            id: s.id.clone(),
            phase: intern(&s.phase),
            host,
            action: intern(&s.action),
            kind,
            driver: intern(&s.driver),
            args: s.args.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            needs,
            wave: s.wave,
            guard: match &s.guard_spec {
                Some(g) => Some(StepGuard {
                    probe: g.probe.clone(),
                    when: cond_from_json(&g.when)?,
                    describe: g.describe.clone(),
                }),
                None => None,
            },
            check: match &s.check {
                Some(c) => Some(StepCheck {
                    probe: c.probe.clone(),
                    when: cond_from_json(&c.when)?,
                }),
                None => None,
            },
            estimate_s: s.estimate_s,
            timeout_s: s.timeout_s,
            retry: Retry {
                max: s.retries,
                backoff_s: s.backoff_s,
            },
            endpoint: s.endpoint.as_deref().map(&mut intern),
            soft_fail: s.soft_fail,
            verifies: s.verifies,
        });
    }
    let phases = j
        .phases
        .into_iter()
        .map(|p| PhaseInfo {
            name: p.name,
            description: p.description,
            hosts: p.hosts,
            steps: p.steps,
            skipped: p.skipped,
            waves: p
                .waves
                .into_iter()
                .map(|w| WaveInfo {
                    index: w.index,
                    hosts: w.hosts,
                    max_failures: w.max_failures,
                    gate: w.gate.and_then(|g| index.get(&g).copied()),
                })
                .collect(),
            max_failures_total: p.max_failures_total,
            strict: p.strict,
            approval: p.approval,
            pause_s: p.pause_s,
            max_parallel: p.max_parallel,
            point_of_no_return: p.point_of_no_return,
            backout: p.backout,
            guard: p.guard,
            estimate_s: p.estimate_s,
        })
        .collect();
    let window = match &j.estimate.window {
        Some(w) => Some(Window::parse(w).map_err(|e| e.to_string())?),
        None => None,
    };
    Ok(Plan {
        playbook: j.playbook,
        fingerprint: j.fingerprint,
        host_digests: j.host_digests,
        params: j.params,
        example_params: j.example_params,
        max_parallel: j.limits.max_parallel,
        endpoint_limits: j.limits.endpoints,
        hosts,
        steps,
        skipped: j
            .skipped
            .into_iter()
            .map(|s| Skipped {
                host: s.host,
                phase: s.phase,
                reason: s.reason,
            })
            .collect(),
        phases,
        estimate: Estimate {
            makespan_s: j.estimate.makespan_s,
            fits_window: j.estimate.fits_window,
            window,
            serial_s: j.estimate.serial_s,
        },
        index,
    })
}

fn value_to_json(v: &Value) -> J {
    match v {
        Value::Null => json!({ "null": null }),
        Value::Bool(b) => json!({ "bool": b }),
        Value::Int(i) => json!({ "int": i }),
        Value::Str(s) => json!({ "string": s }),
        Value::Agent(b) => json!({ "agent_build": b.to_string() }),
        Value::Manager(b) => json!({ "manager_build": b.to_string() }),
        Value::Duration(d) => json!({ "duration_s": d }),
        Value::List(l) => json!({ "list": l }),
    }
}

fn value_from_json(j: &J) -> Result<Value, String> {
    let bad = || format!("not a typed value: {j}");
    let obj = j.as_object().filter(|o| o.len() == 1).ok_or_else(bad)?;
    let (k, v) = obj.iter().next().ok_or_else(bad)?;
    Ok(match k.as_str() {
        "null" => Value::Null,
        "bool" => Value::Bool(v.as_bool().ok_or_else(bad)?),
        "int" => Value::Int(v.as_i64().ok_or_else(bad)?),
        "string" => Value::Str(v.as_str().ok_or_else(bad)?.to_owned()),
        "agent_build" => Value::Agent(
            v.as_str()
                .ok_or_else(bad)?
                .parse()
                .map_err(|e| format!("{e}"))?,
        ),
        "manager_build" => Value::Manager(
            v.as_str()
                .ok_or_else(bad)?
                .parse()
                .map_err(|e| format!("{e}"))?,
        ),
        "duration_s" => Value::Duration(v.as_u64().ok_or_else(bad)?),
        "list" => Value::List(
            v.as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|x| x.as_str().map(str::to_owned).ok_or_else(bad))
                .collect::<Result<_, _>>()?,
        ),
        _ => return Err(bad()),
    })
}

fn cond_to_json(c: &Cond) -> J {
    match c {
        Cond::Is(p) => json!({ "is": p.to_string() }),
        Cond::IsNot(p) => json!({ "is_not": p.to_string() }),
        Cond::Compare { left, op, right } => {
            let mut m = Map::new();
            m.insert("left".into(), J::String(left.to_string()));
            m.insert("op".into(), serde_json::to_value(op).unwrap_or(J::Null));
            match right {
                Operand::Path(p) => m.insert("right".into(), J::String(p.to_string())),
                Operand::Lit(v) => m.insert("value".into(), value_to_json(v)),
            };
            json!({ "compare": m })
        }
        Cond::In { path, values } => {
            json!({ "in": { "path": path.to_string(), "values": values.iter().map(value_to_json).collect::<Vec<_>>() } })
        }
        Cond::Contains { path, value } => {
            json!({ "contains": { "path": path.to_string(), "value": value } })
        }
        Cond::All(cs) => json!({ "all": cs.iter().map(cond_to_json).collect::<Vec<_>>() }),
        Cond::Any(cs) => json!({ "any": cs.iter().map(cond_to_json).collect::<Vec<_>>() }),
        Cond::Not(c) => json!({ "not": cond_to_json(c) }),
        Cond::Const(b) => json!({ "const": b }),
    }
}

fn cond_from_json(j: &J) -> Result<Cond, String> {
    let bad = || format!("not a condition: {j}");
    let obj = j.as_object().filter(|o| o.len() == 1).ok_or_else(bad)?;
    let (k, v) = obj.iter().next().ok_or_else(bad)?;
    let path = |v: &J| -> Result<Path, String> {
        v.as_str()
            .and_then(Path::parse)
            .ok_or_else(|| format!("not a path: {v}"))
    };
    let list = |v: &J| -> Result<Vec<Cond>, String> {
        v.as_array()
            .ok_or_else(bad)?
            .iter()
            .map(cond_from_json)
            .collect()
    };
    Ok(match k.as_str() {
        "is" => Cond::Is(path(v)?),
        "is_not" => Cond::IsNot(path(v)?),
        "compare" => {
            let op: CmpOp = serde_json::from_value(v.get("op").cloned().unwrap_or(J::Null))
                .map_err(|e| e.to_string())?;
            let right = match (v.get("right"), v.get("value")) {
                (Some(r), None) => Operand::Path(path(r)?),
                (None, Some(l)) => Operand::Lit(value_from_json(l)?),
                _ => return Err(bad()),
            };
            Cond::Compare {
                left: path(v.get("left").ok_or_else(bad)?)?,
                op,
                right,
            }
        }
        "in" => Cond::In {
            path: path(v.get("path").ok_or_else(bad)?)?,
            values: v
                .get("values")
                .and_then(|x| x.as_array())
                .ok_or_else(bad)?
                .iter()
                .map(value_from_json)
                .collect::<Result<_, _>>()?,
        },
        "contains" => Cond::Contains {
            path: path(v.get("path").ok_or_else(bad)?)?,
            value: v
                .get("value")
                .and_then(|x| x.as_str())
                .ok_or_else(bad)?
                .to_owned(),
        },
        "all" => Cond::All(list(v)?),
        "any" => Cond::Any(list(v)?),
        "not" => Cond::Not(Box::new(cond_from_json(v)?)),
        "const" => Cond::Const(v.as_bool().ok_or_else(bad)?),
        _ => return Err(bad()),
    })
}
