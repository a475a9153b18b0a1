//! The plan's seal: what makes an edited plan file detectable when `medic apply --plan`
//! reads it back.
//!
//! The plan's `fingerprint` is a hash of the *inputs* (so that a resume can name the hosts
//! that drifted); it says nothing about the plan file itself. The seal is a SHA-256 digest
//! of the plan's whole *content*: every step (phase, host, action, driver, args, needs,
//! wave, guard, check, timings, gate), every host (address, port, user, platform, role,
//! relay group and zone, os, become), the air-gapped zones, a slice's origin and evidence,
//! the parameters, limits, phases with their waves and budgets, the skipped
//! list, the warnings, the estimate, the fingerprint and the host digests. The reader
//! recomputes it from what it read and refuses the plan when it differs.
//!
//! To say *what* was edited, the seal also carries short locators (16 bits each, not a
//! security measure: the SHA-256 digest is): one per top-level part, and per step and per
//! host one per field group. A changed group is named; when every locator still matches
//! (a 1 in 65536 chance per group, or the locators were edited too) the digest alone
//! refuses the plan. Anyone can recompute a seal: a plan whose origin matters is signed
//! (`medic plan --sign`), and the signature covers the digest.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::json::ser::CondView;
use crate::plan::{Plan, Step, StepKind};

/// Bumped when the encoding below changes: a plan sealed by another encoding is refused
/// with a message saying so, never silently accepted.
const SEAL_VERSION: &[u8] = b"medic.plan.seal/1\n";

/// The top-level parts, in the order they are hashed.
pub(crate) const PARTS: [&str; 12] = [
    "playbook",
    "fingerprint",
    "host_digests",
    "params",
    "example_params",
    "limits",
    "phases",
    "skipped",
    "warnings",
    "estimate",
    "steps",
    "hosts",
];

/// A step's field groups, each with its own locator; the arguments follow, one locator per
/// key (in key order).
pub(crate) const STEP_GROUPS: [&str; 9] = [
    "id or phase",
    "host",
    "action, kind, driver or gate",
    "needs",
    "wave",
    "guard",
    "check",
    "estimate, timeout or retries",
    "endpoint, soft_fail or verifies",
];

pub(crate) const HOST_GROUPS: [&str; 8] = [
    "address",
    "port",
    "user",
    "platform",
    "role",
    "relay_group",
    "os",
    "become",
];

/// Hex digits of one locator.
const LOC_HEX: usize = 4;

/// A computed seal.
pub(crate) struct Seal {
    /// `sha256:` and 64 hex digits.
    pub(crate) digest: String,
    /// One locator per entry of [`PARTS`].
    pub(crate) parts: [u16; PARTS.len()],
    /// Every step's locators, one after another; `step_ends[i]` is where step `i`'s end.
    step_locs: Vec<u16>,
    step_ends: Vec<u32>,
    host_locs: Vec<[u16; HOST_GROUPS.len()]>,
}

impl Seal {
    fn step(&self, i: usize) -> &[u16] {
        let start = if i == 0 {
            0
        } else {
            self.step_ends[i - 1] as usize
        };
        &self.step_locs[start..self.step_ends[i] as usize]
    }

    /// Step `i`'s locators as written in the plan JSON.
    pub(crate) fn step_text(&self, i: usize) -> String {
        hex_locs(self.step(i))
    }

    pub(crate) fn host_text(&self, i: usize) -> String {
        hex_locs(&self.host_locs[i])
    }

    pub(crate) fn part_text(&self, i: usize) -> String {
        hex_locs(&self.parts[i..=i])
    }
}

fn hex_locs(locs: &[u16]) -> String {
    let mut s = String::with_capacity(locs.len() * LOC_HEX);
    for l in locs {
        let _ = write!(s, "{l:04x}");
    }
    s
}

fn parse_locs(s: &str) -> Option<Vec<u16>> {
    if !s.len().is_multiple_of(LOC_HEX) || !s.is_ascii() {
        return None;
    }
    (0..s.len() / LOC_HEX)
        .map(|i| u16::from_str_radix(&s[i * LOC_HEX..(i + 1) * LOC_HEX], 16).ok())
        .collect()
}

/// An unambiguous byte encoding (every string carries its length).
#[derive(Default)]
struct Enc(Vec<u8>);

impl Enc {
    fn str(&mut self, s: &str) -> &mut Self {
        self.0.extend_from_slice(&(s.len() as u64).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn opt(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            None => self.0.push(0),
            Some(s) => {
                self.0.push(1);
                self.str(s);
            }
        }
        self
    }
    fn num(&mut self, n: u64) -> &mut Self {
        self.0.extend_from_slice(&n.to_le_bytes());
        self
    }
    fn opt_num(&mut self, n: Option<u64>) -> &mut Self {
        match n {
            None => self.0.push(0),
            Some(n) => {
                self.0.push(1);
                self.num(n);
            }
        }
        self
    }
    fn flag(&mut self, b: bool) -> &mut Self {
        self.0.push(u8::from(b));
        self
    }
    /// A condition in the plan contract's own JSON form (stable across medic versions).
    fn cond(&mut self, c: &medic_model::Cond) -> &mut Self {
        let start = self.0.len();
        self.num(0);
        let _ = serde_json::to_writer(&mut self.0, &CondView(c));
        let len = (self.0.len() - start - 8) as u64;
        self.0[start..start + 8].copy_from_slice(&len.to_le_bytes());
        self
    }
}

/// A 16-bit locator of `bytes` (FNV-1a, then a finalizer so that every bit depends on every
/// byte): fast, because a plan may have millions of steps, and not meant to resist anyone.
fn locator(bytes: &[u8]) -> u16 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    (h >> 48) as u16
}

/// Hashes one labelled group into the digest and returns its locator.
fn feed(sha: &mut Sha256, label: &str, e: &mut Enc) -> u16 {
    sha.update((label.len() as u64).to_le_bytes());
    sha.update(label.as_bytes());
    sha.update((e.0.len() as u64).to_le_bytes());
    sha.update(&e.0);
    let l = locator(&e.0);
    e.0.clear();
    l
}

/// A step's arguments as the plan JSON holds them: ordered by key, the last of equal keys.
fn args_in_order(step: &Step) -> Vec<(&str, &str)> {
    let mut m = std::collections::BTreeMap::new();
    for (k, v) in &step.args {
        m.insert(k.as_str(), v.as_str());
    }
    m.into_iter().collect()
}

pub(crate) fn seal(plan: &Plan) -> Seal {
    let mut sha = Sha256::new();
    sha.update(SEAL_VERSION);
    let mut e = Enc::default();
    let mut parts = [0u16; PARTS.len()];
    for (i, part) in PARTS.iter().enumerate() {
        match *part {
            "playbook" => {
                e.str(crate::json::PLAN_FORMAT).str(&plan.playbook);
            }
            "fingerprint" => {
                e.str(&plan.fingerprint);
            }
            "host_digests" => {
                e.num(plan.host_digests.len() as u64);
                for (k, v) in &plan.host_digests {
                    e.str(k).str(v);
                }
            }
            "params" => {
                e.num(plan.params.len() as u64);
                for (k, v) in &plan.params {
                    e.str(k).str(v);
                }
            }
            "example_params" => {
                e.num(plan.example_params.len() as u64);
                for k in &plan.example_params {
                    e.str(k);
                }
            }
            "limits" => {
                e.num(u64::from(plan.max_parallel))
                    .num(plan.endpoint_limits.len() as u64);
                for (k, v) in &plan.endpoint_limits {
                    e.str(k).num(u64::from(*v));
                }
            }
            "phases" => {
                e.num(plan.phases.len() as u64);
                for p in &plan.phases {
                    e.str(&p.name)
                        .opt(p.description.as_deref())
                        .num(u64::from(p.hosts))
                        .num(u64::from(p.steps))
                        .num(u64::from(p.skipped))
                        .num(p.waves.len() as u64);
                    for w in &p.waves {
                        e.num(u64::from(w.index))
                            .num(u64::from(w.hosts))
                            .opt_num(w.max_failures.map(u64::from))
                            .opt(w.gate.map(|g| plan.steps[g as usize].id.as_str()));
                    }
                    e.opt_num(p.max_failures_total.map(u64::from))
                        .flag(p.strict)
                        .flag(p.approval)
                        .num(p.pause_s)
                        .opt_num(p.max_parallel.map(u64::from))
                        .flag(p.point_of_no_return)
                        .opt(p.backout.as_deref())
                        .opt(p.guard.as_deref())
                        .num(p.estimate_s);
                }
            }
            "skipped" => {
                e.num(plan.skipped.len() as u64);
                for s in &plan.skipped {
                    e.str(&s.host).str(&s.phase).str(&s.reason);
                }
            }
            "warnings" => {
                e.num(plan.warnings.len() as u64);
                for w in &plan.warnings {
                    e.str(w);
                }
            }
            "estimate" => {
                let est = &plan.estimate;
                let window = est.window.map(|w| format!("{}/{}", w.start, w.end));
                e.num(est.makespan_s)
                    .opt_num(est.fits_window.map(u64::from))
                    .num(est.serial_s)
                    .opt(window.as_deref());
            }
            "steps" => {
                e.num(plan.steps.len() as u64);
                for s in &plan.steps {
                    e.str(&s.id);
                }
                // A slice's origin and evidence; absent from whole plans, whose seal is
                // then what it always was.
                if let Some(sl) = &plan.slice {
                    e.str("slice")
                        .str(&sl.zone)
                        .str(&sl.parent_fingerprint)
                        .str(&sl.parent_seal)
                        .num(sl.evidence.len() as u64);
                    for ev in &sl.evidence {
                        e.str(&ev.id)
                            .str(&ev.phase)
                            .opt(ev.host.as_deref())
                            .str(&ev.action)
                            .num(ev.args.len() as u64);
                        for (k, v) in &ev.args {
                            e.str(k).str(v);
                        }
                        e.str(&ev.state).str(&ev.detail).str(&ev.observed);
                    }
                }
            }
            "hosts" => {
                e.num(plan.hosts.len() as u64);
                for h in &plan.hosts {
                    e.str(&h.name);
                }
                if !plan.air_gapped.is_empty() {
                    e.str("air_gapped").num(plan.air_gapped.len() as u64);
                    for z in &plan.air_gapped {
                        e.str(z);
                    }
                }
            }
            _ => {}
        }
        parts[i] = feed(&mut sha, part, &mut e);
    }

    let mut step_locs = Vec::with_capacity(plan.steps.len() * (STEP_GROUPS.len() + 1));
    let mut step_ends = Vec::with_capacity(plan.steps.len());
    for s in &plan.steps {
        for (g, group) in STEP_GROUPS.iter().enumerate() {
            match g {
                0 => {
                    e.str(&s.id).str(&s.phase);
                }
                1 => {
                    e.opt(plan.host_name(s));
                }
                2 => {
                    e.str(&s.action).str(&s.driver);
                    match s.kind {
                        StepKind::Action => e.str("action"),
                        StepKind::Barrier => e.str("barrier"),
                        StepKind::Gate(gs) => e
                            .str("gate")
                            .flag(gs.approval)
                            .num(gs.pause_s)
                            .num(u64::from(gs.opens_wave)),
                    };
                }
                3 => {
                    e.num(s.needs.len() as u64);
                    for n in &s.needs {
                        e.str(&plan.steps[n.step as usize].id).flag(n.on_finish);
                    }
                }
                4 => {
                    e.opt_num(s.wave.map(u64::from));
                }
                5 => match &s.guard {
                    None => {
                        e.flag(false);
                    }
                    Some(g) => {
                        e.flag(true)
                            .opt(g.probe.as_deref())
                            .cond(&g.when)
                            .str(&g.describe);
                    }
                },
                6 => match &s.check {
                    None => {
                        e.flag(false);
                    }
                    Some(c) => {
                        e.flag(true).str(&c.probe).cond(&c.when);
                    }
                },
                7 => {
                    e.num(s.estimate_s)
                        .num(s.timeout_s)
                        .num(u64::from(s.retry.max))
                        .num(s.retry.backoff_s);
                }
                _ => {
                    e.opt(s.endpoint.as_deref())
                        .flag(s.soft_fail)
                        .flag(s.verifies);
                }
            }
            step_locs.push(feed(&mut sha, group, &mut e));
        }
        let args = args_in_order(s);
        e.num(args.len() as u64);
        let _ = feed(&mut sha, "args", &mut e);
        for (k, v) in args {
            e.str(k).str(v);
            step_locs.push(feed(&mut sha, "arg", &mut e));
        }
        step_ends.push(step_locs.len() as u32);
    }

    let mut host_locs = Vec::with_capacity(plan.hosts.len());
    for h in &plan.hosts {
        let mut locs = [0u16; HOST_GROUPS.len()];
        for (g, group) in HOST_GROUPS.iter().enumerate() {
            match g {
                0 => e.str(&h.address),
                1 => e.num(u64::from(h.port)),
                2 => e.opt(h.user.as_deref()),
                3 => e.opt(h.platform.map(|p| p.as_str())),
                4 => e.str(h.role.as_str()),
                5 => {
                    e.opt(h.relay_group.as_deref());
                    // Appended only when set, so that plans without zones keep their seal.
                    if let Some(z) = &h.zone {
                        e.str("zone").str(z);
                    }
                    &mut e
                }
                // The package the driver installs and how it gains root follow from these.
                6 => e.opt(h.os.as_deref()),
                _ => e.opt(h.r#become.map(|b| b.as_str())),
            };
            locs[g] = feed(&mut sha, group, &mut e);
        }
        host_locs.push(locs);
    }

    let mut digest = String::with_capacity(7 + 64);
    digest.push_str("sha256:");
    for b in sha.finalize() {
        let _ = write!(digest, "{b:02x}");
    }
    Seal {
        digest,
        parts,
        step_locs,
        step_ends,
        host_locs,
    }
}

/// What a plan file said about its seal, as read.
pub(crate) struct StoredSeal<'a> {
    pub(crate) digest: &'a str,
    pub(crate) parts: &'a std::collections::BTreeMap<String, String>,
    pub(crate) steps: Vec<Option<String>>,
    pub(crate) hosts: Vec<Option<String>>,
}

/// At most this many differences are named; the rest are counted.
const MAX_NAMED: usize = 20;

/// Every difference between the plan as read and its stored seal, in words; empty when the
/// digest matches.
pub(crate) fn differences(plan: &Plan, computed: &Seal, stored: &StoredSeal<'_>) -> Vec<String> {
    if computed.digest == stored.digest {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, part) in PARTS.iter().enumerate() {
        let now = computed.part_text(i);
        if stored.parts.get(*part).map(String::as_str) == Some(now.as_str()) {
            continue;
        }
        out.push(match *part {
            "fingerprint" => "the plan's fingerprint does not match its content; it was edited after `medic plan`".to_owned(),
            "steps" => format!(
                "steps were added, removed, renamed or reordered after `medic plan` (the plan now has {} steps)",
                plan.steps.len()
            ),
            "hosts" => format!(
                "hosts were added, removed or renamed after `medic plan` (the plan now has {} hosts)",
                plan.hosts.len()
            ),
            "playbook" => "the plan's playbook name was edited after `medic plan`".to_owned(),
            "host_digests" => "the plan's host digests were edited after `medic plan`".to_owned(),
            "params" => "the plan's parameters were edited after `medic plan`".to_owned(),
            "example_params" => "the plan's list of example values was edited after `medic plan`".to_owned(),
            "limits" => "the plan's concurrency limits were edited after `medic plan`".to_owned(),
            "phases" => "the plan's phases (waves, budgets, gates) were edited after `medic plan`".to_owned(),
            "skipped" => "the plan's skipped list was edited after `medic plan`".to_owned(),
            "warnings" => "the plan's warnings were edited after `medic plan`".to_owned(),
            _ => "the plan's estimate was edited after `medic plan`".to_owned(),
        });
    }
    for (i, s) in plan.steps.iter().enumerate() {
        let now = computed.step(i);
        let Some(was) = stored.steps.get(i).and_then(|s| s.as_deref()) else {
            out.push(format!(
                "step {}: it has no seal; it was added after `medic plan`",
                s.id
            ));
            continue;
        };
        let Some(was) = parse_locs(was) else {
            out.push(format!("step {}: its seal was edited", s.id));
            continue;
        };
        let fixed = STEP_GROUPS.len();
        for (g, group) in STEP_GROUPS.iter().enumerate() {
            if was.get(g) != now.get(g) {
                out.push(format!("step {}: {group} differs", s.id));
            }
        }
        let args = args_in_order(s);
        if was.len() != now.len() {
            out.push(format!(
                "step {}: args were added or removed (now: {})",
                s.id,
                if args.is_empty() {
                    "none".to_owned()
                } else {
                    args.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
                }
            ));
        } else {
            for (a, (k, _)) in args.iter().enumerate() {
                if was.get(fixed + a) != now.get(fixed + a) {
                    out.push(format!("step {}: args.{k} differs", s.id));
                }
            }
        }
    }
    for (i, h) in plan.hosts.iter().enumerate() {
        let Some(was) = stored.hosts.get(i).and_then(|s| s.as_deref()) else {
            out.push(format!(
                "host {}: it has no seal; it was added after `medic plan`",
                h.name
            ));
            continue;
        };
        let was = parse_locs(was).unwrap_or_default();
        for (g, group) in HOST_GROUPS.iter().enumerate() {
            if was.get(g) != computed.host_locs[i].get(g) {
                out.push(format!("host {}: {group} differs", h.name));
            }
        }
    }
    if out.is_empty() {
        out.push(
            "the plan's digest does not match its content; it was edited after `medic plan`"
                .to_owned(),
        );
    }
    if out.len() > MAX_NAMED {
        let more = out.len() - MAX_NAMED;
        out.truncate(MAX_NAMED);
        out.push(format!("and {more} more differences"));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::Value as J;

    use crate::{PlanReadError, plan_to_json, read_plan_json};

    fn lab_json() -> J {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let read = |p: &str| std::fs::read_to_string(root.join(p)).expect("readable");
        let pb_text = read("playbooks/ds-activeupdate-cert-2023.yaml");
        let pb = medic_config::load_playbook("pb.yaml", &pb_text, &[]).expect("a playbook");
        let inv = medic_config::load_inventory("inv.yaml", &read("examples/lab/inventory.yaml"))
            .expect("an inventory");
        let plan = crate::build_plan(&inv, &pb, &pb_text, None).expect("a plan");
        serde_json::from_str(&plan_to_json(&plan)).expect("json")
    }

    fn step_mut<'a>(j: &'a mut J, action: &str) -> &'a mut J {
        j["steps"]
            .as_array_mut()
            .expect("steps")
            .iter_mut()
            .find(|s| s["action"] == action && s["args"].get("to").is_some())
            .expect("such a step")
    }

    /// Each edit, and the first difference the reader names for it.
    #[test]
    fn every_part_of_the_plan_is_sealed_and_named() {
        type Edit = fn(&mut J);
        let edits: Vec<(&str, Edit, &str)> = vec![
            (
                "an upgrade's target",
                |j| step_mut(j, "agent-upgrade")["args"]["to"] = "20.0.1-9999".into(),
                ": args.to differs",
            ),
            (
                "a host's address",
                |j| j["hosts"][1]["address"] = "203.0.113.9".into(),
                ": address differs",
            ),
            (
                "a host's port",
                |j| j["hosts"][1]["port"] = 2222.into(),
                ": port differs",
            ),
            (
                "a step's needs",
                |j| {
                    let s = j["steps"]
                        .as_array_mut()
                        .expect("steps")
                        .iter_mut()
                        .find(|s| s["needs"].as_array().is_some_and(|n| n.len() == 1))
                        .expect("a step with one need");
                    s["needs"] = J::Array(Vec::new());
                },
                ": needs differs",
            ),
            (
                "the fingerprint",
                |j| j["fingerprint"] = "0".repeat(64).into(),
                "the plan's fingerprint does not match its content",
            ),
            (
                "a parameter",
                |j| j["params"]["manager_min_build"] = "20.0.1".into(),
                "the plan's parameters were edited",
            ),
            (
                "a wave's budget",
                |j| {
                    for p in j["phases"].as_array_mut().expect("phases") {
                        for w in p["waves"].as_array_mut().expect("waves") {
                            w["max_failures"] = 99.into();
                        }
                    }
                },
                "the plan's phases (waves, budgets, gates) were edited",
            ),
            (
                "the skipped list",
                |j| {
                    j["skipped"].as_array_mut().expect("skipped").pop();
                },
                "the plan's skipped list was edited",
            ),
            (
                "the limits",
                |j| j["limits"]["max_parallel"] = 10_000.into(),
                "the plan's concurrency limits were edited",
            ),
            (
                "a step's timeout",
                |j| step_mut(j, "agent-upgrade")["timeout_s"] = 1.into(),
                ": estimate, timeout or retries differs",
            ),
            (
                "the digest alone",
                |j| j["seal"]["digest"] = format!("sha256:{}", "0".repeat(64)).into(),
                "the plan's digest does not match its content",
            ),
        ];
        let clean = lab_json();
        read_plan_json(&clean.to_string()).expect("an untouched plan reads");
        for (what, edit, expect) in edits {
            let mut j = clean.clone();
            edit(&mut j);
            match read_plan_json(&j.to_string()) {
                Err(PlanReadError::Tampered(d)) => assert!(
                    d[0].contains(expect),
                    "{what}: expected `{expect}` first, got {d:?}"
                ),
                Err(e) => panic!("{what}: expected a refusal naming the edit, got {e:?}"),
                Ok(_) => panic!("{what}: the edited plan was read"),
            }
        }
        let mut j = clean;
        j.as_object_mut().expect("object").remove("seal");
        assert_eq!(
            read_plan_json(&j.to_string()).expect_err("unsealed"),
            PlanReadError::Unsealed
        );
    }

    #[test]
    fn locators_read_back_as_written() {
        let locs = [0u16, 0xbeef, 0xffff, 1];
        assert_eq!(
            super::parse_locs(&super::hex_locs(&locs)),
            Some(locs.to_vec())
        );
        assert_eq!(super::parse_locs("abc"), None);
        assert_eq!(super::parse_locs("zzzz"), None);
    }
}
