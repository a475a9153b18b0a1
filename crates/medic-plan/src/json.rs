//! The plan JSON contract (`medic.plan/v1`): what `medic plan --format json` prints and what
//! `medic apply --plan` reads back. The contract's fields come first and keep their meaning;
//! the fields after them are extensions that let a plan be applied without its inputs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use medic_model::{CmpOp, Cond, Operand, Path, Platform, Retry, Role, Value};
use serde::{Deserialize, Serialize};
use serde_json::Value as J;

use crate::plan::{
    Estimate, GateSpec, Need, PhaseInfo, Plan, PlanHost, Skipped, Step, StepCheck, StepGuard,
    StepIndex, StepKind, WaveInfo,
};
use crate::window::{Window, WindowError};

pub const PLAN_FORMAT: &str = "medic.plan/v1";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanJson {
    format: String,
    playbook: String,
    fingerprint: String,
    steps: Vec<StepJson>,
    skipped: Vec<SkippedJson>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    estimate: EstimateJson,
    params: BTreeMap<String, String>,
    example_params: Vec<String>,
    limits: LimitsJson,
    phases: Vec<PhaseJson>,
    hosts: Vec<HostJson>,
    host_digests: BTreeMap<String, String>,
    /// The zones the main run leaves to slices; absent: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    air_gapped_zones: Vec<String>,
    /// Set on a slice (`medic plan --slice`); absent on a whole plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    slice: Option<SliceJson>,
    /// The content digest and its locators (`seal.rs`); absent in plans written before
    /// plans were sealed, which are refused.
    #[serde(default)]
    seal: Option<SealJson>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SliceJson {
    zone: String,
    parent_fingerprint: String,
    parent_seal: String,
    evidence: Vec<EvidenceJson>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvidenceJson {
    id: String,
    phase: String,
    host: Option<String>,
    action: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    args: Vec<(String, String)>,
    state: String,
    detail: String,
    /// The `step.observed` facts of its last attempt, as recorded (JSON text).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    observed: String,
}

impl SliceJson {
    fn of(s: &crate::plan::SliceInfo) -> Self {
        SliceJson {
            zone: s.zone.clone(),
            parent_fingerprint: s.parent_fingerprint.clone(),
            parent_seal: s.parent_seal.clone(),
            evidence: s
                .evidence
                .iter()
                .map(|e| EvidenceJson {
                    id: e.id.clone(),
                    phase: e.phase.clone(),
                    host: e.host.clone(),
                    action: e.action.clone(),
                    args: e.args.clone(),
                    state: e.state.clone(),
                    detail: e.detail.clone(),
                    observed: e.observed.clone(),
                })
                .collect(),
        }
    }

    fn into_info(self) -> crate::plan::SliceInfo {
        crate::plan::SliceInfo {
            zone: self.zone,
            parent_fingerprint: self.parent_fingerprint,
            parent_seal: self.parent_seal,
            evidence: self
                .evidence
                .into_iter()
                .map(|e| crate::plan::Evidence {
                    id: e.id,
                    phase: e.phase,
                    host: e.host,
                    action: e.action,
                    args: e.args,
                    state: e.state,
                    detail: e.detail,
                    observed: e.observed,
                })
                .collect(),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealJson {
    digest: String,
    parts: BTreeMap<String, String>,
    /// An SSH signature (`ssh-keygen -Y sign` format, namespace `medic-plan`) of `digest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
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
    #[serde(default)]
    seal: Option<String>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    r#become: Option<String>,
    /// Absent: the default zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    zone: Option<String>,
    #[serde(default)]
    seal: Option<String>,
}

/// Renders the plan as pretty JSON; the same plan always gives the same bytes.
///
/// The plan is serialized straight into the output, through borrowing mirrors of the
/// contract's structs above (same fields, same order, same skipping rules), with conditions
/// written as they are read back by [`plan_from_json`] without building JSON trees.
pub fn plan_to_json(plan: &Plan) -> String {
    let mut out: Vec<u8> =
        Vec::with_capacity(plan.steps.len() * 760 + plan.hosts.len() * 200 + 4096);
    if let Err(e) = write_plan_json(plan, &mut out) {
        return format!("{{\"error\": \"{e}\"}}\n");
    }
    String::from_utf8(out).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}\n"))
}

/// Writes the bytes of [`plan_to_json`] to `out` as they are made, without holding the whole
/// text (give it a buffered writer).
pub fn write_plan_json<W: std::io::Write>(plan: &Plan, out: W) -> std::io::Result<()> {
    write_plan_json_signed(plan, None, out)
}

/// [`write_plan_json`] with a signature of the plan's digest ([`plan_digest`]) in its seal.
pub fn write_plan_json_signed<W: std::io::Write>(
    plan: &Plan,
    signature: Option<&str>,
    mut out: W,
) -> std::io::Result<()> {
    let seal = crate::seal::seal(plan);
    let view = ser::PlanView::new(plan, &seal, signature);
    let mut w = serde_json::Serializer::pretty(&mut out);
    view.serialize(&mut w).map_err(std::io::Error::from)?;
    out.write_all(b"\n")
}

/// The plan's content digest (`sha256:` and 64 hex digits), as its seal holds it: what a
/// signature signs.
pub fn plan_digest(plan: &Plan) -> String {
    crate::seal::seal(plan).digest
}

/// Borrowing mirrors of the contract's structs, for [`plan_to_json`].
pub(crate) mod ser {
    use std::collections::BTreeMap;

    use medic_model::{Cond, Operand, Value};
    use serde::ser::{SerializeMap, SerializeSeq};
    use serde::{Serialize, Serializer};

    use super::PLAN_FORMAT;
    use crate::plan::{Need, Plan, Step, StepKind};
    use crate::seal::{PARTS, Seal};

    #[derive(Serialize)]
    pub(super) struct PlanView<'a> {
        format: &'static str,
        playbook: &'a str,
        fingerprint: &'a str,
        steps: Steps<'a>,
        skipped: Vec<SkippedView<'a>>,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        warnings: &'a [String],
        estimate: EstimateView,
        params: &'a BTreeMap<String, String>,
        example_params: &'a [String],
        limits: LimitsView<'a>,
        phases: Vec<PhaseView<'a>>,
        hosts: Vec<HostView<'a>>,
        host_digests: &'a BTreeMap<String, String>,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        air_gapped_zones: &'a [String],
        #[serde(skip_serializing_if = "Option::is_none")]
        slice: Option<super::SliceJson>,
        seal: SealView<'a>,
    }

    #[derive(Serialize)]
    struct SealView<'a> {
        digest: &'a str,
        parts: BTreeMap<&'static str, String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        signature: Option<&'a str>,
    }

    impl<'a> PlanView<'a> {
        pub(super) fn new(plan: &'a Plan, seal: &'a Seal, signature: Option<&'a str>) -> Self {
            PlanView {
                format: PLAN_FORMAT,
                playbook: &plan.playbook,
                fingerprint: &plan.fingerprint,
                steps: Steps(plan, seal),
                skipped: plan
                    .skipped
                    .iter()
                    .map(|s| SkippedView {
                        host: &s.host,
                        phase: &s.phase,
                        reason: &s.reason,
                    })
                    .collect(),
                warnings: &plan.warnings,
                estimate: EstimateView {
                    makespan_s: plan.estimate.makespan_s,
                    fits_window: plan.estimate.fits_window,
                    serial_s: plan.estimate.serial_s,
                    window: plan.estimate.window.map(|w| w.text()),
                },
                params: &plan.params,
                example_params: &plan.example_params,
                limits: LimitsView {
                    max_parallel: plan.max_parallel,
                    endpoints: &plan.endpoint_limits,
                },
                phases: plan
                    .phases
                    .iter()
                    .map(|p| PhaseView {
                        name: &p.name,
                        description: p.description.as_deref(),
                        hosts: p.hosts,
                        steps: p.steps,
                        skipped: p.skipped,
                        waves: p
                            .waves
                            .iter()
                            .map(|w| WaveView {
                                index: w.index,
                                hosts: w.hosts,
                                max_failures: w.max_failures,
                                gate: w.gate.map(|g| plan.steps[g as usize].id.as_str()),
                            })
                            .collect(),
                        max_failures_total: p.max_failures_total,
                        strict: p.strict,
                        approval: p.approval,
                        pause_s: p.pause_s,
                        max_parallel: p.max_parallel,
                        point_of_no_return: p.point_of_no_return,
                        backout: p.backout.as_deref(),
                        guard: p.guard.as_deref(),
                        estimate_s: p.estimate_s,
                    })
                    .collect(),
                hosts: plan
                    .hosts
                    .iter()
                    .enumerate()
                    .map(|(i, h)| HostView {
                        name: &h.name,
                        address: &h.address,
                        port: h.port,
                        user: h.user.as_deref(),
                        platform: h.platform.map(|p| p.as_str()),
                        role: h.role.as_str(),
                        relay_group: h.relay_group.as_deref(),
                        os: h.os.as_deref(),
                        r#become: h.r#become.map(|b| b.as_str()),
                        zone: h.zone.as_deref(),
                        seal: seal.host_text(i),
                    })
                    .collect(),
                host_digests: &plan.host_digests,
                air_gapped_zones: &plan.air_gapped,
                slice: plan.slice.as_ref().map(super::SliceJson::of),
                seal: SealView {
                    digest: &seal.digest,
                    parts: PARTS
                        .iter()
                        .enumerate()
                        .map(|(i, p)| (*p, seal.part_text(i)))
                        .collect(),
                    signature,
                },
            }
        }
    }

    /// The steps, each made into its view only while it is written.
    struct Steps<'a>(&'a Plan, &'a Seal);

    impl Serialize for Steps<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let plan = self.0;
            let mut seq = s.serialize_seq(Some(plan.steps.len()))?;
            for (i, step) in plan.steps.iter().enumerate() {
                seq.serialize_element(&StepView::new(plan, step, self.1.step_text(i)))?;
            }
            seq.end()
        }
    }

    #[derive(Serialize)]
    struct StepView<'a> {
        id: &'a str,
        phase: &'a str,
        host: Option<&'a str>,
        action: &'a str,
        needs: Ids<'a>,
        wave: Option<u32>,
        guard: Option<GuardText<'a>>,
        estimate_s: u64,
        kind: &'static str,
        driver: &'a str,
        #[serde(skip_serializing_if = "Args::is_empty")]
        args: Args<'a>,
        #[serde(skip_serializing_if = "Ids::is_empty")]
        needs_finished: Ids<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        guard_spec: Option<GuardView<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        check: Option<CheckView<'a>>,
        timeout_s: u64,
        retries: u32,
        backoff_s: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        endpoint: Option<&'a str>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        soft_fail: bool,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        verifies: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        gate: Option<GateView>,
        seal: String,
    }

    impl<'a> StepView<'a> {
        fn new(plan: &'a Plan, s: &'a Step, seal: String) -> Self {
            StepView {
                id: &s.id,
                phase: &s.phase,
                host: s.host.map(|h| plan.hosts[h as usize].name.as_str()),
                action: &s.action,
                needs: Ids {
                    plan,
                    needs: &s.needs,
                    finished_only: false,
                },
                wave: s.wave,
                guard: s.guard.as_ref().map(|g| GuardText {
                    when: &g.when,
                    probe: g.probe.as_deref(),
                }),
                estimate_s: s.estimate_s,
                kind: match s.kind {
                    StepKind::Action => "action",
                    StepKind::Barrier => "barrier",
                    StepKind::Gate(_) => "gate",
                },
                driver: &s.driver,
                args: Args(&s.args),
                needs_finished: Ids {
                    plan,
                    needs: &s.needs,
                    finished_only: true,
                },
                guard_spec: s.guard.as_ref().map(|g| GuardView {
                    probe: g.probe.as_deref(),
                    when: CondView(&g.when),
                    describe: &g.describe,
                }),
                check: s.check.as_ref().map(|c| CheckView {
                    probe: &c.probe,
                    when: CondView(&c.when),
                }),
                timeout_s: s.timeout_s,
                retries: s.retry.max,
                backoff_s: s.retry.backoff_s,
                endpoint: s.endpoint.as_deref(),
                soft_fail: s.soft_fail,
                verifies: s.verifies,
                gate: match s.kind {
                    StepKind::Gate(g) => Some(GateView {
                        approval: g.approval,
                        pause_s: g.pause_s,
                        opens_wave: g.opens_wave,
                    }),
                    _ => None,
                },
                seal,
            }
        }
    }

    /// The ids of the steps needed (all of them, or those needed to have finished only).
    struct Ids<'a> {
        plan: &'a Plan,
        needs: &'a [Need],
        finished_only: bool,
    }

    impl Ids<'_> {
        fn iter(&self) -> impl Iterator<Item = &str> {
            let finished_only = self.finished_only;
            self.needs
                .iter()
                .filter(move |n| !finished_only || n.on_finish)
                .map(|n| self.plan.steps[n.step as usize].id.as_str())
        }

        fn is_empty(&self) -> bool {
            self.iter().next().is_none()
        }
    }

    impl Serialize for Ids<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.iter())
        }
    }

    /// A step's arguments, as a map ordered by key (the last of equal keys wins).
    struct Args<'a>(&'a [(String, String)]);

    impl Args<'_> {
        fn is_empty(&self) -> bool {
            self.0.is_empty()
        }
    }

    impl Serialize for Args<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let sorted = self.0.windows(2).all(|w| w[0].0 < w[1].0);
            if sorted {
                s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
            } else {
                let m: BTreeMap<&str, &str> = self
                    .0
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                m.serialize(s)
            }
        }
    }

    /// `when` as a person reads it, with its probe: `facts.x (probe p)`.
    struct GuardText<'a> {
        when: &'a Cond,
        probe: Option<&'a str>,
    }

    impl Serialize for GuardText<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self.probe {
                Some(p) => s.collect_str(&format_args!("{} (probe {p})", self.when)),
                None => s.collect_str(self.when),
            }
        }
    }

    #[derive(Serialize)]
    struct GuardView<'a> {
        probe: Option<&'a str>,
        when: CondView<'a>,
        describe: &'a str,
    }

    #[derive(Serialize)]
    struct CheckView<'a> {
        probe: &'a str,
        when: CondView<'a>,
    }

    #[derive(Serialize)]
    struct GateView {
        approval: bool,
        pause_s: u64,
        opens_wave: u32,
    }

    #[derive(Serialize)]
    struct SkippedView<'a> {
        host: &'a str,
        phase: &'a str,
        reason: &'a str,
    }

    #[derive(Serialize)]
    struct EstimateView {
        makespan_s: u64,
        fits_window: Option<bool>,
        serial_s: u64,
        window: Option<String>,
    }

    #[derive(Serialize)]
    struct LimitsView<'a> {
        max_parallel: u32,
        endpoints: &'a BTreeMap<String, u32>,
    }

    #[derive(Serialize)]
    struct WaveView<'a> {
        index: u32,
        hosts: u32,
        max_failures: Option<u32>,
        gate: Option<&'a str>,
    }

    #[derive(Serialize)]
    struct PhaseView<'a> {
        name: &'a str,
        description: Option<&'a str>,
        hosts: u32,
        steps: u32,
        skipped: u32,
        waves: Vec<WaveView<'a>>,
        max_failures_total: Option<u32>,
        strict: bool,
        approval: bool,
        pause_s: u64,
        max_parallel: Option<u32>,
        point_of_no_return: bool,
        backout: Option<&'a str>,
        guard: Option<&'a str>,
        estimate_s: u64,
    }

    #[derive(Serialize)]
    struct HostView<'a> {
        name: &'a str,
        address: &'a str,
        port: u16,
        user: Option<&'a str>,
        platform: Option<&'static str>,
        role: &'static str,
        relay_group: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        os: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        r#become: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        zone: Option<&'a str>,
        seal: String,
    }

    /// A condition in the contract's form (what `cond_from_json` reads): one-key maps.
    pub(crate) struct CondView<'a>(pub(crate) &'a Cond);

    /// A map with a single entry.
    fn one<S: Serializer, V: Serialize + ?Sized>(
        s: S,
        key: &str,
        value: &V,
    ) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(key, value)?;
        m.end()
    }

    /// A path, written as text.
    struct PathText<'a>(&'a medic_model::Path);

    impl Serialize for PathText<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(self.0)
        }
    }

    impl Serialize for CondView<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self.0 {
                Cond::Is(p) => one(s, "is", &PathText(p)),
                Cond::IsNot(p) => one(s, "is_not", &PathText(p)),
                Cond::Compare { left, op, right } => one(
                    s,
                    "compare",
                    &Compare {
                        left,
                        op: *op,
                        right,
                    },
                ),
                Cond::In { path, values } => one(s, "in", &In { path, values }),
                Cond::Contains { path, value } => one(s, "contains", &Contains { path, value }),
                Cond::All(cs) => one(s, "all", &Conds(cs)),
                Cond::Any(cs) => one(s, "any", &Conds(cs)),
                Cond::Not(c) => one(s, "not", &CondView(c)),
                Cond::Const(b) => one(s, "const", b),
            }
        }
    }

    struct Conds<'a>(&'a [Cond]);

    impl Serialize for Conds<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.iter().map(CondView))
        }
    }

    /// Keys in the order a JSON map sorts them: `left`, `op`, then `right` or `value`.
    struct Compare<'a> {
        left: &'a medic_model::Path,
        op: medic_model::CmpOp,
        right: &'a Operand,
    }

    impl Serialize for Compare<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(3))?;
            m.serialize_entry("left", &PathText(self.left))?;
            m.serialize_entry("op", &self.op)?;
            match self.right {
                Operand::Path(p) => m.serialize_entry("right", &PathText(p))?,
                Operand::Lit(v) => m.serialize_entry("value", &ValueView(v))?,
            }
            m.end()
        }
    }

    struct In<'a> {
        path: &'a medic_model::Path,
        values: &'a [Value],
    }

    impl Serialize for In<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(2))?;
            m.serialize_entry("path", &PathText(self.path))?;
            m.serialize_entry("values", &Values(self.values))?;
            m.end()
        }
    }

    struct Values<'a>(&'a [Value]);

    impl Serialize for Values<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(self.0.len()))?;
            for v in self.0 {
                seq.serialize_element(&ValueView(v))?;
            }
            seq.end()
        }
    }

    struct Contains<'a> {
        path: &'a medic_model::Path,
        value: &'a str,
    }

    impl Serialize for Contains<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(2))?;
            m.serialize_entry("path", &PathText(self.path))?;
            m.serialize_entry("value", self.value)?;
            m.end()
        }
    }

    /// A typed value: `{ "agent_build": "20.0.1.690" }` and the like.
    struct ValueView<'a>(&'a Value);

    impl Serialize for ValueView<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self.0 {
                Value::Null => one(s, "null", &()),
                Value::Bool(b) => one(s, "bool", b),
                Value::Int(i) => one(s, "int", i),
                Value::Str(v) => one(s, "string", v),
                Value::Agent(b) => one(s, "agent_build", &Text(b)),
                Value::Manager(b) => one(s, "manager_build", &Text(b)),
                Value::Duration(d) => one(s, "duration_s", d),
                Value::List(l) => one(s, "list", l),
            }
        }
    }

    /// Anything written with its `Display`.
    struct Text<'a, T: std::fmt::Display>(&'a T);

    impl<T: std::fmt::Display> Serialize for Text<'_, T> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(self.0)
        }
    }
}

/// Why a plan file was not read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanReadError {
    /// Not a plan this medic can read.
    #[error(transparent)]
    Invalid(#[from] InvalidPlan),
    /// No seal: written before plans were sealed, or the seal was removed.
    #[error(
        "the plan has no seal (written by an older medic, or the seal was removed): it cannot be checked for edits"
    )]
    Unsealed,
    /// The content differs from its seal: each difference in words.
    #[error("{}", .0.join("; "))]
    Tampered(Vec<String>),
}

/// What makes a text not a `medic.plan/v1` plan this medic reads: the field, step or host,
/// and what was found there.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPlan {
    /// Not JSON of the plan's shape; `detail` is serde_json's, which names the line and
    /// column.
    #[error("not a medic plan: {detail}")]
    NotAPlan {
        detail: String,
        line: usize,
        column: usize,
    },
    /// `format` is not [`PLAN_FORMAT`].
    #[error("unsupported plan format `{found}` (this medic reads {PLAN_FORMAT})")]
    Format { found: String },
    #[error("unknown platform `{found}`")]
    UnknownPlatform { host: String, found: String },
    #[error("unknown become `{found}`")]
    UnknownBecome { host: String, found: String },
    #[error("host `{0}` appears twice")]
    RepeatedHost(String),
    #[error("step `{0}` appears twice")]
    RepeatedStep(String),
    #[error("step `{step}` needs unknown step `{need}`")]
    UnknownNeed { step: String, need: String },
    /// Steps are listed in dependency order: a need names an earlier step.
    #[error("step `{step}` comes before `{need}`, which it needs")]
    NeedsLater { step: String, need: String },
    #[error("step `{step}` needs the same step twice")]
    NeedTwice { step: String },
    /// `kind` is not `action`, `barrier`, or `gate` with its `gate` object.
    #[error("step `{step}` has unknown kind `{found}`")]
    UnknownKind { step: String, found: String },
    #[error("step `{step}` names unknown host `{host}`")]
    UnknownHost { step: String, host: String },
    /// A step's guard or check condition.
    #[error("{error}")]
    Condition { step: String, error: BadCondition },
    /// The estimate's change window.
    #[error(transparent)]
    Window(#[from] WindowError),
}

/// A guard's or check's condition (or a typed value in it) that does not read; `found` is
/// the JSON as written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadCondition {
    #[error("not a condition: {found}")]
    NotACondition { found: String },
    #[error("not a path: {found}")]
    NotAPath { found: String },
    /// A `compare` whose `op` is not one of the operators; `detail` is serde_json's.
    #[error("{detail}")]
    Operator { detail: String },
    #[error("not a typed value: {found}")]
    NotATypedValue { found: String },
    #[error(transparent)]
    Build(#[from] medic_model::BuildError),
}

/// A plan read back from its JSON, with its seal checked.
#[derive(Debug)]
pub struct PlanFile {
    pub plan: Plan,
    /// The content digest the plan was sealed with (and matches).
    pub digest: String,
    /// The signature of that digest, if the plan was signed (not checked here).
    pub signature: Option<String>,
}

/// Reads a plan written by [`plan_to_json`] and checks its seal: a plan edited after it was
/// written is refused with every difference named. Its fingerprint (of the inputs) is kept,
/// not recomputed.
pub fn read_plan_json(text: &str) -> Result<PlanFile, PlanReadError> {
    let (plan, seal, steps, hosts) = plan_unchecked(text).map_err(PlanReadError::Invalid)?;
    let seal = seal.ok_or(PlanReadError::Unsealed)?;
    let computed = crate::seal::seal(&plan);
    let stored = crate::seal::StoredSeal {
        digest: &seal.digest,
        parts: &seal.parts,
        steps,
        hosts,
    };
    let diff = crate::seal::differences(&plan, &computed, &stored);
    if !diff.is_empty() {
        return Err(PlanReadError::Tampered(diff));
    }
    Ok(PlanFile {
        plan,
        digest: seal.digest,
        signature: seal.signature,
    })
}

/// [`read_plan_json`], the plan only.
pub fn plan_from_json(text: &str) -> Result<Plan, PlanReadError> {
    read_plan_json(text).map(|f| f.plan)
}

type Unchecked = (
    Plan,
    Option<SealJson>,
    Vec<Option<String>>,
    Vec<Option<String>>,
);

/// The plan as written, and its seal as written (steps' and hosts' in their order).
fn plan_unchecked(text: &str) -> Result<Unchecked, InvalidPlan> {
    let mut j: PlanJson = serde_json::from_str(text).map_err(|e| InvalidPlan::NotAPlan {
        detail: e.to_string(),
        line: e.line(),
        column: e.column(),
    })?;
    let step_seals: Vec<Option<String>> = j.steps.iter_mut().map(|s| s.seal.take()).collect();
    let host_seals: Vec<Option<String>> = j.hosts.iter_mut().map(|h| h.seal.take()).collect();
    if j.format != PLAN_FORMAT {
        return Err(InvalidPlan::Format { found: j.format });
    }
    let hosts: Vec<PlanHost> =
        j.hosts
            .into_iter()
            .map(|h| {
                let platform =
                    match h.platform.as_deref() {
                        None => None,
                        Some(p) => Some(Platform::parse(p).ok_or_else(|| {
                            InvalidPlan::UnknownPlatform {
                                host: h.name.clone(),
                                found: p.to_owned(),
                            }
                        })?),
                    };
                let r#become = match h.r#become.as_deref() {
                    None => None,
                    Some(b) => Some(medic_model::Become::parse(b).ok_or_else(|| {
                        InvalidPlan::UnknownBecome {
                            host: h.name.clone(),
                            found: b.to_owned(),
                        }
                    })?),
                };
                Ok(PlanHost {
                    name: h.name,
                    address: h.address,
                    port: h.port,
                    user: h.user,
                    platform,
                    role: Role::parse(&h.role).unwrap_or(Role::Agent),
                    relay_group: h.relay_group,
                    os: h.os,
                    r#become,
                    // `default` written out is the default zone, as an absent one.
                    zone: h.zone.filter(|z| z != medic_model::DEFAULT_ZONE),
                })
            })
            .collect::<Result<_, InvalidPlan>>()?;
    let host_ix: HashMap<&str, u32> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.name.as_str(), i as u32))
        .collect();
    if let Some(h) = first_repeat(hosts.iter().map(|h| h.name.as_str())) {
        return Err(InvalidPlan::RepeatedHost(h.to_owned()));
    }
    let index: HashMap<String, u32> = j
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.clone(), i as u32))
        .collect();
    if let Some(id) = first_repeat(j.steps.iter().map(|s| s.id.as_str())) {
        return Err(InvalidPlan::RepeatedStep(id.to_owned()));
    }
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
            let &step = index.get(n).ok_or_else(|| InvalidPlan::UnknownNeed {
                step: s.id.clone(),
                need: n.clone(),
            })?;
            if step as usize >= pos {
                return Err(InvalidPlan::NeedsLater {
                    step: s.id.clone(),
                    need: n.clone(),
                });
            }

            needs.push(Need {
                step,
                on_finish: s.needs_finished.contains(n),
            });
        }
        if needs_repeat(&needs) {
            return Err(InvalidPlan::NeedTwice { step: s.id.clone() });
        }
        let kind = match (s.kind.as_str(), &s.gate) {
            ("action", _) => StepKind::Action,
            ("barrier", _) => StepKind::Barrier,
            ("gate", Some(g)) => StepKind::Gate(GateSpec {
                approval: g.approval,
                pause_s: g.pause_s,
                opens_wave: g.opens_wave,
            }),
            (k, _) => {
                return Err(InvalidPlan::UnknownKind {
                    step: s.id.clone(),
                    found: k.to_owned(),
                });
            }
        };
        let condition = |error| InvalidPlan::Condition {
            step: s.id.clone(),
            error,
        };
        let host = match &s.host {
            None => None,
            Some(h) => Some(
                *host_ix
                    .get(h.as_str())
                    .ok_or_else(|| InvalidPlan::UnknownHost {
                        step: s.id.clone(),
                        host: h.clone(),
                    })?,
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
                    when: cond_from_json(&g.when).map_err(condition)?,
                    describe: g.describe.clone(),
                }),
                None => None,
            },
            check: match &s.check {
                Some(c) => Some(StepCheck {
                    probe: c.probe.clone(),
                    when: cond_from_json(&c.when).map_err(condition)?,
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
        Some(w) => Some(Window::parse(w)?),
        None => None,
    };
    let step_index = StepIndex::build(&steps);
    let plan = Plan {
        playbook: j.playbook,
        fingerprint: j.fingerprint,
        host_digests: j.host_digests,
        params: j.params,
        example_params: j.example_params,
        warnings: j.warnings,
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
        index: step_index,
        air_gapped: j.air_gapped_zones,
        slice: j.slice.map(SliceJson::into_info),
    };
    Ok((plan, j.seal, step_seals, host_seals))
}

fn value_from_json(j: &J) -> Result<Value, BadCondition> {
    let bad = || BadCondition::NotATypedValue {
        found: j.to_string(),
    };
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
                .map_err(BadCondition::Build)?,
        ),
        "manager_build" => Value::Manager(
            v.as_str()
                .ok_or_else(bad)?
                .parse()
                .map_err(BadCondition::Build)?,
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

fn cond_from_json(j: &J) -> Result<Cond, BadCondition> {
    let bad = || BadCondition::NotACondition {
        found: j.to_string(),
    };
    let obj = j.as_object().filter(|o| o.len() == 1).ok_or_else(bad)?;
    let (k, v) = obj.iter().next().ok_or_else(bad)?;
    let path = |v: &J| -> Result<Path, BadCondition> {
        v.as_str()
            .and_then(Path::parse)
            .ok_or_else(|| BadCondition::NotAPath {
                found: v.to_string(),
            })
    };
    let list = |v: &J| -> Result<Vec<Cond>, BadCondition> {
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
                .map_err(|e| BadCondition::Operator {
                    detail: e.to_string(),
                })?;
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

/// The first name that appears a second time (step ids and host names are keys: the
/// journal records step states by id).
pub(crate) fn first_repeat<'a>(mut names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut seen = std::collections::HashSet::new();
    names.find(|n| !seen.insert(*n))
}

/// A step that lists the same step twice among its needs (the planner never writes one;
/// its two copies could disagree about waiting for success or only for the end).
pub(crate) fn needs_repeat(needs: &[Need]) -> bool {
    match needs.len() {
        0 | 1 => false,
        2 => needs[0].step == needs[1].step,
        _ => {
            let mut ids: Vec<u32> = needs.iter().map(|n| n.step).collect();
            ids.sort_unstable();
            ids.windows(2).any(|w| w[0] == w[1])
        }
    }
}

#[cfg(test)]
mod tests {
    use medic_model::{AgentBuild, CmpOp, Cond, ManagerBuild, Operand, Path, Value};
    use serde_json::{Map, Value as J, json};

    use super::ser::CondView;

    // How conditions were written before `plan_to_json` streamed them: through JSON trees.
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

    fn p(s: &str) -> Path {
        Path::parse(s).expect("a path")
    }

    #[test]
    fn streamed_conditions_match_json_trees() {
        let agent: AgentBuild = "20.0.1-690".parse().expect("a build");
        let manager: ManagerBuild = "20.0.463".parse().expect("a build");
        let values = vec![
            Value::Null,
            Value::Bool(true),
            Value::Int(-3),
            Value::Str("we\"ird\n\u{1}é".to_owned()),
            Value::Agent(agent),
            Value::Manager(manager),
            Value::Duration(90),
            Value::List(vec!["a".to_owned(), "b\"".to_owned()]),
        ];
        let mut conds = vec![
            Cond::Is(p("facts.pending_reboot")),
            Cond::IsNot(p("host.relay")),
            Cond::Compare {
                left: p("facts.agent_version"),
                op: CmpOp::Ge,
                right: Operand::Path(p("params.target_build")),
            },
            Cond::In {
                path: p("host.platform"),
                values: values.clone(),
            },
            Cond::In {
                path: p("host.platform"),
                values: Vec::new(),
            },
            Cond::Contains {
                path: p("host.groups"),
                value: "can\"ary".to_owned(),
            },
            Cond::Const(false),
            Cond::All(Vec::new()),
            Cond::Any(Vec::new()),
        ];
        for (i, v) in values.into_iter().enumerate() {
            conds.push(Cond::Compare {
                left: p("facts.x"),
                op: crate::bin::OPS[i % crate::bin::OPS.len()],
                right: Operand::Lit(v),
            });
        }
        let nested = Cond::Not(Box::new(Cond::All(vec![
            Cond::Any(conds.clone()),
            Cond::Not(Box::new(Cond::Const(true))),
        ])));
        conds.push(nested);
        for c in &conds {
            let tree = serde_json::to_string_pretty(&cond_to_json(c)).expect("json");
            let streamed = serde_json::to_string_pretty(&CondView(c)).expect("json");
            assert_eq!(tree, streamed);
            assert_eq!(
                serde_json::to_string(&cond_to_json(c)).expect("json"),
                serde_json::to_string(&CondView(c)).expect("json")
            );
            let back: J = serde_json::from_str(&streamed).expect("json");
            assert_eq!(&super::cond_from_json(&back).expect("a condition"), c);
        }
    }

    #[test]
    fn the_writer_writes_the_same_bytes() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let read = |p: &str| std::fs::read_to_string(root.join(p)).expect("readable");
        let pb_text = read("playbooks/ds-activeupdate-cert-2023.yaml");
        let pb = medic_config::load_playbook("pb.yaml", &pb_text, &[]).expect("a playbook");
        for inv in [
            "examples/lab/inventory.yaml",
            "examples/multi-site/inventory.yaml",
        ] {
            let inv = medic_config::load_inventory("inv.yaml", &read(inv)).expect("an inventory");
            let plan = crate::build_plan(&inv, &pb, &pb_text, None).expect("a plan");
            let mut out = Vec::new();
            super::write_plan_json(&plan, &mut out).expect("written");
            assert_eq!(
                String::from_utf8(out).expect("utf-8"),
                super::plan_to_json(&plan)
            );
        }
    }
}
