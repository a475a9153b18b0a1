//! The sealed plan in a compact binary form, for the journal only: `medic resume` reads a
//! million-step plan back from it in a fraction of the time its JSON takes (no text to
//! scan, no map keys, step references as positions, repeated strings written once).
//!
//! This is not a contract: it is written and read by the same medic, and only ever stored
//! inside a journal. The `medic.plan/v1` JSON stays the exchange format (`medic plan
//! --format json`, `medic apply --plan`). A plan read back from its bytes is equal to the
//! plan that was written (tested, with [`crate::plan_to_json`] giving the same text).
//!
//! Layout: the magic, then a table of the strings that repeat (phase, action and driver
//! names, endpoints, probes, guard descriptions, argument keys, relay groups, skip
//! reasons), then the plan's fields in a fixed order. Integers are LEB128 varints; a
//! string is its length then its UTF-8 bytes; a table string is its position in the table;
//! an option is a 0/1 tag; a step's needs are written as distances back from the step (so
//! every need points at an earlier step by construction). Reading checks every length,
//! position and tag against what is left and never panics on bad bytes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use medic_model::{
    AgentBuild, CmpOp, Cond, ManagerBuild, Operand, Path, PathRoot, Platform, Retry, Value,
};

use crate::json::{first_repeat, needs_repeat};
use crate::plan::{
    Estimate, GateSpec, Need, PhaseInfo, Plan, PlanHost, Skipped, Step, StepCheck, StepGuard,
    StepIndex, StepKind, WaveInfo,
};
use crate::window::Window;

/// The first bytes of every encoded plan; the last byte is the layout's version.
/// Version 2 added each host's `os` and `become`; version 1 plans are still read.
pub const PLAN_BIN_MAGIC: &[u8; 16] = b"medic.plan.bin\x00\x02";

/// Conditions nest at most this deep in the bytes (as serde_json limits the JSON reader).
const MAX_DEPTH: u32 = 128;

// ----------------------------------------------------------------------------------------
// Writing

struct Syms<'a> {
    ix: HashMap<&'a str, u32>,
    list: Vec<&'a str>,
}

impl<'a> Syms<'a> {
    fn get(&mut self, s: &'a str) -> u32 {
        if let Some(&i) = self.ix.get(s) {
            return i;
        }
        let i = self.list.len() as u32;
        self.ix.insert(s, i);
        self.list.push(s);
        i
    }
}

struct Out<'a> {
    buf: Vec<u8>,
    syms: Syms<'a>,
}

impl<'a> Out<'a> {
    fn u(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }
    fn i(&mut self, v: i64) {
        // Zigzag, so small negative numbers stay short.
        self.u(((v << 1) ^ (v >> 63)) as u64);
    }
    fn b(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }
    fn s(&mut self, s: &str) {
        self.u(s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
    }
    fn sym(&mut self, s: &'a str) {
        let i = self.syms.get(s);
        self.u(u64::from(i));
    }
    fn opt_s(&mut self, s: Option<&str>) {
        match s {
            None => self.buf.push(0),
            Some(s) => {
                self.buf.push(1);
                self.s(s);
            }
        }
    }
    fn opt_sym(&mut self, s: Option<&'a str>) {
        match s {
            None => self.buf.push(0),
            Some(s) => {
                self.buf.push(1);
                self.sym(s);
            }
        }
    }
    fn opt_u(&mut self, v: Option<u64>) {
        match v {
            None => self.buf.push(0),
            Some(v) => {
                self.buf.push(1);
                self.u(v);
            }
        }
    }

    fn path(&mut self, p: &'a Path) {
        let root = PathRoot::ALL.iter().position(|r| *r == p.root).unwrap_or(0);
        self.buf.push(root as u8);
        self.sym(&p.field);
    }

    fn value(&mut self, v: &'a Value) {
        match v {
            Value::Null => self.buf.push(0),
            Value::Bool(b) => {
                self.buf.push(1);
                self.b(*b);
            }
            Value::Int(i) => {
                self.buf.push(2);
                self.i(*i);
            }
            Value::Str(s) => {
                self.buf.push(3);
                self.sym(s);
            }
            Value::Agent(a) => {
                self.buf.push(4);
                for part in [a.major, a.minor, a.patch, a.build] {
                    self.u(u64::from(part));
                }
            }
            Value::Manager(m) => {
                self.buf.push(5);
                for part in [m.major, m.minor, m.build] {
                    self.u(u64::from(part));
                }
            }
            Value::Duration(d) => {
                self.buf.push(6);
                self.u(*d);
            }
            Value::List(l) => {
                self.buf.push(7);
                self.u(l.len() as u64);
                for s in l {
                    self.sym(s);
                }
            }
        }
    }

    fn cond(&mut self, c: &'a Cond) {
        match c {
            Cond::Is(p) => {
                self.buf.push(0);
                self.path(p);
            }
            Cond::IsNot(p) => {
                self.buf.push(1);
                self.path(p);
            }
            Cond::Compare { left, op, right } => {
                self.buf.push(2);
                self.path(left);
                self.buf.push(op_tag(*op));
                match right {
                    Operand::Path(p) => {
                        self.buf.push(0);
                        self.path(p);
                    }
                    Operand::Lit(v) => {
                        self.buf.push(1);
                        self.value(v);
                    }
                }
            }
            Cond::In { path, values } => {
                self.buf.push(3);
                self.path(path);
                self.u(values.len() as u64);
                for v in values {
                    self.value(v);
                }
            }
            Cond::Contains { path, value } => {
                self.buf.push(4);
                self.path(path);
                self.sym(value);
            }
            Cond::All(cs) | Cond::Any(cs) => {
                self.buf.push(if matches!(c, Cond::All(_)) { 5 } else { 6 });
                self.u(cs.len() as u64);
                for c in cs {
                    self.cond(c);
                }
            }
            Cond::Not(c) => {
                self.buf.push(7);
                self.cond(c);
            }
            Cond::Const(b) => {
                self.buf.push(8);
                self.b(*b);
            }
        }
    }
}

/// Every comparison, in the order of its tag in the binary form.
pub(crate) const OPS: [CmpOp; 6] = [
    CmpOp::Lt,
    CmpOp::Le,
    CmpOp::Gt,
    CmpOp::Ge,
    CmpOp::Eq,
    CmpOp::Ne,
];

fn op_tag(op: CmpOp) -> u8 {
    OPS.iter().position(|o| *o == op).unwrap_or(0) as u8
}

const ROLES: [medic_model::Role; 3] = [
    medic_model::Role::Manager,
    medic_model::Role::Relay,
    medic_model::Role::Agent,
];

/// Encodes a sealed plan; [`plan_from_bytes`] reads it back equal.
pub fn plan_to_bytes(plan: &Plan) -> Vec<u8> {
    let mut o = Out {
        buf: Vec::with_capacity(plan.steps.len() * 48 + plan.hosts.len() * 64 + 4096),
        syms: Syms {
            ix: HashMap::new(),
            list: Vec::new(),
        },
    };
    o.s(&plan.playbook);
    o.s(&plan.fingerprint);
    o.u(plan.host_digests.len() as u64);
    for (k, v) in &plan.host_digests {
        o.s(k);
        o.s(v);
    }
    o.u(plan.params.len() as u64);
    for (k, v) in &plan.params {
        o.s(k);
        o.s(v);
    }
    o.u(plan.example_params.len() as u64);
    for p in &plan.example_params {
        o.s(p);
    }
    o.u(u64::from(plan.max_parallel));
    o.u(plan.endpoint_limits.len() as u64);
    for (k, v) in &plan.endpoint_limits {
        o.s(k);
        o.u(u64::from(*v));
    }
    o.u(plan.hosts.len() as u64);
    for h in &plan.hosts {
        o.s(&h.name);
        o.s(&h.address);
        o.u(u64::from(h.port));
        o.opt_s(h.user.as_deref());
        o.buf.push(match h.platform {
            None => 0,
            Some(Platform::Linux) => 1,
            Some(Platform::Windows) => 2,
        });
        o.buf
            .push(ROLES.iter().position(|r| *r == h.role).unwrap_or(2) as u8);
        o.opt_sym(h.relay_group.as_deref());
        o.opt_sym(h.os.as_deref());
        o.buf.push(match h.r#become {
            None => 0,
            Some(medic_model::Become::None) => 1,
            Some(medic_model::Become::Sudo) => 2,
        });
    }
    o.u(plan.steps.len() as u64);
    for (pos, s) in plan.steps.iter().enumerate() {
        o.s(&s.id);
        o.sym(&s.phase);
        o.opt_u(s.host.map(u64::from));
        o.sym(&s.action);
        match s.kind {
            StepKind::Action => o.buf.push(0),
            StepKind::Barrier => o.buf.push(1),
            StepKind::Gate(g) => {
                o.buf.push(2);
                o.b(g.approval);
                o.u(g.pause_s);
                o.u(u64::from(g.opens_wave));
            }
        }
        o.sym(&s.driver);
        o.u(s.args.len() as u64);
        for (k, v) in &s.args {
            o.sym(k);
            o.s(v);
        }
        o.u(s.needs.len() as u64);
        for n in &s.needs {
            // A sealed plan's needs point backwards; a need that does not (impossible) is
            // written as distance 0 and refused when read.
            let back = (pos as u64).saturating_sub(u64::from(n.step));
            o.u(back << 1 | u64::from(n.on_finish));
        }
        o.opt_u(s.wave.map(u64::from));
        match &s.guard {
            None => o.buf.push(0),
            Some(g) => {
                o.buf.push(1);
                o.opt_sym(g.probe.as_deref());
                o.cond(&g.when);
                o.sym(&g.describe);
            }
        }
        match &s.check {
            None => o.buf.push(0),
            Some(c) => {
                o.buf.push(1);
                o.sym(&c.probe);
                o.cond(&c.when);
            }
        }
        o.u(s.estimate_s);
        o.u(s.timeout_s);
        o.u(u64::from(s.retry.max));
        o.u(s.retry.backoff_s);
        o.opt_sym(s.endpoint.as_deref());
        o.buf
            .push(u8::from(s.soft_fail) | u8::from(s.verifies) << 1);
    }
    o.u(plan.skipped.len() as u64);
    for s in &plan.skipped {
        o.s(&s.host);
        o.sym(&s.phase);
        o.sym(&s.reason);
    }
    o.u(plan.phases.len() as u64);
    for p in &plan.phases {
        o.s(&p.name);
        o.opt_s(p.description.as_deref());
        o.u(u64::from(p.hosts));
        o.u(u64::from(p.steps));
        o.u(u64::from(p.skipped));
        o.u(p.waves.len() as u64);
        for w in &p.waves {
            o.u(u64::from(w.index));
            o.u(u64::from(w.hosts));
            o.opt_u(w.max_failures.map(u64::from));
            o.opt_u(w.gate.map(u64::from));
        }
        o.opt_u(p.max_failures_total.map(u64::from));
        o.b(p.strict);
        o.b(p.approval);
        o.u(p.pause_s);
        o.opt_u(p.max_parallel.map(u64::from));
        o.b(p.point_of_no_return);
        o.opt_s(p.backout.as_deref());
        o.opt_s(p.guard.as_deref());
        o.u(p.estimate_s);
    }
    let e = &plan.estimate;
    o.u(e.makespan_s);
    o.buf.push(match e.fits_window {
        None => 0,
        Some(false) => 1,
        Some(true) => 2,
    });
    o.u(e.serial_s);
    let window = e.window.map(|w| w.text());
    o.opt_s(window.as_deref());
    // Optional last sections (older plans end before them): the warnings, then the
    // zones (which need the warnings' count written, zero included, before them).
    let zoned = plan.hosts.iter().any(|h| h.zone.is_some())
        || !plan.air_gapped.is_empty()
        || plan.slice.is_some();
    if !plan.warnings.is_empty() || zoned {
        o.u(plan.warnings.len() as u64);
        for w in &plan.warnings {
            o.s(w);
        }
    }
    if zoned {
        for h in &plan.hosts {
            o.opt_s(h.zone.as_deref());
        }
        o.u(plan.air_gapped.len() as u64);
        for z in &plan.air_gapped {
            o.s(z);
        }
        match &plan.slice {
            None => o.b(false),
            Some(sl) => {
                o.b(true);
                o.s(&sl.zone);
                o.s(&sl.parent_fingerprint);
                o.s(&sl.parent_seal);
                o.u(sl.evidence.len() as u64);
                for e in &sl.evidence {
                    o.s(&e.id);
                    o.s(&e.phase);
                    o.opt_s(e.host.as_deref());
                    o.s(&e.action);
                    o.u(e.args.len() as u64);
                    for (k, v) in &e.args {
                        o.s(k);
                        o.s(v);
                    }
                    o.s(&e.state);
                    o.s(&e.detail);
                    o.s(&e.observed);
                }
            }
        }
    }

    // The table goes first, so that the reader has it before the references.
    let Out { buf: body, syms } = o;
    let mut head = Out {
        buf: Vec::with_capacity(
            body.len() + syms.list.iter().map(|s| s.len() + 2).sum::<usize>() + 32,
        ),
        syms: Syms {
            ix: HashMap::new(),
            list: Vec::new(),
        },
    };
    head.buf.extend_from_slice(PLAN_BIN_MAGIC);
    head.u(syms.list.len() as u64);
    for s in &syms.list {
        head.s(s);
    }
    head.buf.extend_from_slice(&body);
    head.buf
}

// ----------------------------------------------------------------------------------------
// Reading

struct In<'a> {
    b: &'a [u8],
    at: usize,
    syms: Vec<&'a str>,
    arcs: Vec<Option<Arc<str>>>,
}

/// Why the binary form of a plan was not read.
#[derive(Debug, thiserror::Error)]
pub enum PlanBinError {
    /// Another layout (a newer medic's, or not a plan at all).
    #[error("not a plan written by this medic (unknown binary plan layout)")]
    UnknownLayout,
    /// The bytes break the layout at `at`.
    #[error("the journal's plan is damaged: {what} at byte {at}")]
    Damaged { what: &'static str, at: usize },
    /// Two steps or two hosts with one name (`kind` is `step` or `host`).
    #[error("{kind} `{name}` appears twice")]
    Repeated { kind: &'static str, name: String },
    /// The plan's change window does not parse.
    #[error(transparent)]
    Window(#[from] crate::window::WindowError),
}

type R<T> = Result<T, PlanBinError>;

impl<'a> In<'a> {
    fn err(&self, what: &'static str) -> PlanBinError {
        PlanBinError::Damaged { what, at: self.at }
    }
    fn byte(&mut self) -> R<u8> {
        let v = *self
            .b
            .get(self.at)
            .ok_or_else(|| self.err("unexpected end"))?;
        self.at += 1;
        Ok(v)
    }
    fn u(&mut self) -> R<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            let part = u64::from(byte & 0x7f);
            if shift == 63 && part > 1 {
                return Err(self.err("integer too large"));
            }
            v |= part << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("integer too long"))
    }
    fn u32(&mut self) -> R<u32> {
        let v = self.u()?;
        u32::try_from(v).map_err(|_| self.err("integer too large"))
    }
    fn i(&mut self) -> R<i64> {
        let v = self.u()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }
    fn b(&mut self) -> R<bool> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.err("bad boolean")),
        }
    }
    fn tag(&mut self, max: u8) -> R<u8> {
        let t = self.byte()?;
        if t > max {
            return Err(self.err("bad tag"));
        }
        Ok(t)
    }
    /// A count of items each at least `min` bytes long, checked against what is left, so a
    /// damaged count cannot ask for a huge allocation.
    fn count(&mut self, min: usize) -> R<usize> {
        let n = self.u()?;
        let left = (self.b.len() - self.at) as u64;
        if n.saturating_mul(min.max(1) as u64) > left {
            return Err(self.err("count beyond the end"));
        }
        Ok(n as usize)
    }
    fn str(&mut self) -> R<&'a str> {
        let n = self.count(1)?;
        let bytes = &self.b[self.at..self.at + n];
        let s = std::str::from_utf8(bytes).map_err(|_| self.err("bad UTF-8"))?;
        self.at += n;
        Ok(s)
    }
    fn s(&mut self) -> R<String> {
        self.str().map(str::to_owned)
    }
    fn sym_ix(&mut self) -> R<usize> {
        let i = self.u()?;
        if i >= self.syms.len() as u64 {
            return Err(self.err("bad string reference"));
        }
        Ok(i as usize)
    }
    fn sym_str(&mut self) -> R<&'a str> {
        let i = self.sym_ix()?;
        Ok(self.syms[i])
    }
    fn sym(&mut self) -> R<String> {
        self.sym_str().map(str::to_owned)
    }
    fn arc(&mut self) -> R<Arc<str>> {
        let i = self.sym_ix()?;
        let s = self.syms[i];
        Ok(self.arcs[i].get_or_insert_with(|| Arc::from(s)).clone())
    }
    fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> R<T>) -> R<Option<T>> {
        match self.tag(1)? {
            0 => Ok(None),
            _ => f(self).map(Some),
        }
    }

    fn path(&mut self) -> R<Path> {
        let root = self.tag(PathRoot::ALL.len() as u8 - 1)?;
        let field = self.sym_str()?;
        let text = format!("{}.{field}", PathRoot::ALL[root as usize].as_str());
        Path::parse(&text).ok_or_else(|| self.err("bad path"))
    }

    fn value(&mut self) -> R<Value> {
        Ok(match self.tag(7)? {
            0 => Value::Null,
            1 => Value::Bool(self.b()?),
            2 => Value::Int(self.i()?),
            3 => Value::Str(self.sym()?),
            4 => Value::Agent(AgentBuild::new(
                self.u32()?,
                self.u32()?,
                self.u32()?,
                self.u32()?,
            )),
            5 => Value::Manager(ManagerBuild {
                major: self.u32()?,
                minor: self.u32()?,
                build: self.u32()?,
            }),
            6 => Value::Duration(self.u()?),
            _ => {
                let n = self.count(1)?;
                let mut l = Vec::with_capacity(n);
                for _ in 0..n {
                    l.push(self.sym()?);
                }
                Value::List(l)
            }
        })
    }

    fn cond(&mut self, depth: u32) -> R<Cond> {
        if depth > MAX_DEPTH {
            return Err(self.err("conditions nested too deep"));
        }
        Ok(match self.tag(8)? {
            0 => Cond::Is(self.path()?),
            1 => Cond::IsNot(self.path()?),
            2 => {
                let left = self.path()?;
                let op = OPS[usize::from(self.tag(5)?)];
                let right = match self.tag(1)? {
                    0 => Operand::Path(self.path()?),
                    _ => Operand::Lit(self.value()?),
                };
                Cond::Compare { left, op, right }
            }
            3 => {
                let path = self.path()?;
                let n = self.count(1)?;
                let mut values = Vec::with_capacity(n);
                for _ in 0..n {
                    values.push(self.value()?);
                }
                Cond::In { path, values }
            }
            4 => Cond::Contains {
                path: self.path()?,
                value: self.sym()?,
            },
            t @ (5 | 6) => {
                let n = self.count(1)?;
                let mut cs = Vec::with_capacity(n);
                for _ in 0..n {
                    cs.push(self.cond(depth + 1)?);
                }
                if t == 5 { Cond::All(cs) } else { Cond::Any(cs) }
            }
            7 => Cond::Not(Box::new(self.cond(depth + 1)?)),
            _ => Cond::Const(self.b()?),
        })
    }
}

/// Reads a plan written by [`plan_to_bytes`]. Like [`crate::plan_from_json`], the plan is
/// taken as sealed: its fingerprint is kept, not recomputed.
pub fn plan_from_bytes(bytes: &[u8]) -> Result<Plan, PlanBinError> {
    let head = &PLAN_BIN_MAGIC[..PLAN_BIN_MAGIC.len() - 1];
    let version = match bytes.get(head.len()) {
        Some(&v @ (1 | 2)) if bytes.starts_with(head) => v,
        _ => {
            return Err(PlanBinError::UnknownLayout);
        }
    };
    let mut r = In {
        b: bytes,
        at: PLAN_BIN_MAGIC.len(),
        syms: Vec::new(),
        arcs: Vec::new(),
    };
    let n = r.count(1)?;
    let mut syms = Vec::with_capacity(n);
    for _ in 0..n {
        syms.push(r.str()?);
    }
    r.arcs = vec![None; syms.len()];
    r.syms = syms;

    let playbook = r.s()?;
    let fingerprint = r.s()?;
    let n = r.count(2)?;
    let mut digests = Vec::with_capacity(n);
    for _ in 0..n {
        digests.push((r.s()?, r.s()?));
    }
    let host_digests: BTreeMap<String, String> = digests.into_iter().collect();
    let n = r.count(2)?;
    let mut params = BTreeMap::new();
    for _ in 0..n {
        let k = r.s()?;
        params.insert(k, r.s()?);
    }
    let n = r.count(1)?;
    let mut example_params = Vec::with_capacity(n);
    for _ in 0..n {
        example_params.push(r.s()?);
    }
    let max_parallel = r.u32()?;
    let n = r.count(2)?;
    let mut endpoint_limits = BTreeMap::new();
    for _ in 0..n {
        let k = r.s()?;
        endpoint_limits.insert(k, r.u32()?);
    }
    let n = r.count(7)?;
    let mut hosts = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.s()?;
        let address = r.s()?;
        let port = u16::try_from(r.u()?).map_err(|_| r.err("bad port"))?;
        let user = r.opt(In::s)?;
        let platform = match r.tag(2)? {
            0 => None,
            1 => Some(Platform::Linux),
            _ => Some(Platform::Windows),
        };
        let role = ROLES[usize::from(r.tag(2)?)];
        let relay_group = r.opt(In::sym)?;
        let (os, r#become) = if version >= 2 {
            let os = r.opt(In::sym)?;
            let b = match r.tag(2)? {
                0 => None,
                1 => Some(medic_model::Become::None),
                _ => Some(medic_model::Become::Sudo),
            };
            (os, b)
        } else {
            (None, None)
        };
        hosts.push(PlanHost {
            name,
            address,
            port,
            user,
            platform,
            role,
            relay_group,
            os,
            r#become,
            zone: None,
        });
    }
    let n = r.count(16)?;
    let mut steps: Vec<Step> = Vec::with_capacity(n);
    for pos in 0..n {
        let id = r.s()?;
        let phase = r.arc()?;
        let host = r.opt(In::u32)?;
        if host.is_some_and(|h| h as usize >= hosts.len()) {
            return Err(r.err("step names an unknown host"));
        }
        let action = r.arc()?;
        let kind = match r.tag(2)? {
            0 => StepKind::Action,
            1 => StepKind::Barrier,
            _ => StepKind::Gate(GateSpec {
                approval: r.b()?,
                pause_s: r.u()?,
                opens_wave: r.u32()?,
            }),
        };
        let driver = r.arc()?;
        let k = r.count(2)?;
        let mut args = Vec::with_capacity(k);
        for _ in 0..k {
            let key = r.sym()?;
            args.push((key, r.s()?));
        }
        let k = r.count(1)?;
        let mut needs = Vec::with_capacity(k);
        for _ in 0..k {
            let v = r.u()?;
            let back = v >> 1;
            if back == 0 || back > pos as u64 {
                return Err(r.err("step needs a step that does not come before it"));
            }
            needs.push(Need {
                step: (pos as u64 - back) as u32,
                on_finish: v & 1 == 1,
            });
        }
        if needs_repeat(&needs) {
            return Err(r.err("step needs the same step twice"));
        }
        let wave = r.opt(In::u32)?;
        let guard = match r.tag(1)? {
            0 => None,
            _ => Some(StepGuard {
                probe: r.opt(In::sym)?,
                when: r.cond(0)?,
                describe: r.sym()?,
            }),
        };
        let check = match r.tag(1)? {
            0 => None,
            _ => Some(StepCheck {
                probe: r.sym()?,
                when: r.cond(0)?,
            }),
        };
        let estimate_s = r.u()?;
        let timeout_s = r.u()?;
        let retry = Retry {
            max: r.u32()?,
            backoff_s: r.u()?,
        };
        let endpoint = r.opt(In::arc)?;
        let flags = r.tag(3)?;
        steps.push(Step {
            id,
            phase,
            host,
            action,
            kind,
            driver,
            args,
            needs,
            wave,
            guard,
            check,
            estimate_s,
            timeout_s,
            retry,
            endpoint,
            soft_fail: flags & 1 != 0,
            verifies: flags & 2 != 0,
        });
    }
    if let Some(id) = first_repeat(steps.iter().map(|s| s.id.as_str())) {
        return Err(PlanBinError::Repeated {
            kind: "step",
            name: id.to_owned(),
        });
    }
    if let Some(h) = first_repeat(hosts.iter().map(|h| h.name.as_str())) {
        return Err(PlanBinError::Repeated {
            kind: "host",
            name: h.to_owned(),
        });
    }
    let n = r.count(3)?;
    let mut skipped = Vec::with_capacity(n);
    for _ in 0..n {
        skipped.push(Skipped {
            host: r.s()?,
            phase: r.sym()?,
            reason: r.sym()?,
        });
    }
    let n = r.count(8)?;
    let mut phases = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.s()?;
        let description = r.opt(In::s)?;
        let p_hosts = r.u32()?;
        let p_steps = r.u32()?;
        let p_skipped = r.u32()?;
        let k = r.count(4)?;
        let mut waves = Vec::with_capacity(k);
        for _ in 0..k {
            let index = r.u32()?;
            let w_hosts = r.u32()?;
            let max_failures = r.opt(In::u32)?;
            let gate = r.opt(In::u32)?;
            if gate.is_some_and(|g| g as usize >= steps.len()) {
                return Err(r.err("wave opened by an unknown gate"));
            }
            waves.push(WaveInfo {
                index,
                hosts: w_hosts,
                max_failures,
                gate,
            });
        }
        phases.push(PhaseInfo {
            name,
            description,
            hosts: p_hosts,
            steps: p_steps,
            skipped: p_skipped,
            waves,
            max_failures_total: r.opt(In::u32)?,
            strict: r.b()?,
            approval: r.b()?,
            pause_s: r.u()?,
            max_parallel: r.opt(In::u32)?,
            point_of_no_return: r.b()?,
            backout: r.opt(In::s)?,
            guard: r.opt(In::s)?,
            estimate_s: r.u()?,
        });
    }
    let makespan_s = r.u()?;
    let fits_window = match r.tag(2)? {
        0 => None,
        1 => Some(false),
        _ => Some(true),
    };
    let serial_s = r.u()?;
    let window = match r.opt(In::str)? {
        Some(w) => Some(Window::parse(w)?),
        None => None,
    };
    let mut warnings = Vec::new();
    if r.at != bytes.len() {
        let n = r.count(1)?;
        if n == 0 && r.at == bytes.len() {
            return Err(r.err("an empty warnings section"));
        }
        for _ in 0..n {
            warnings.push(r.s()?);
        }
    }
    let mut air_gapped = Vec::new();
    let mut slice = None;
    if r.at != bytes.len() {
        for h in &mut hosts {
            h.zone = r.opt(In::s)?;
        }
        for _ in 0..r.count(1)? {
            air_gapped.push(r.s()?);
        }
        if r.b()? {
            let zone = r.s()?;
            let parent_fingerprint = r.s()?;
            let parent_seal = r.s()?;
            let n = r.count(6)?;
            let mut evidence = Vec::with_capacity(n);
            for _ in 0..n {
                let id = r.s()?;
                let phase = r.s()?;
                let host = r.opt(In::s)?;
                let action = r.s()?;
                let mut args = Vec::new();
                for _ in 0..r.count(2)? {
                    args.push((r.s()?, r.s()?));
                }
                evidence.push(crate::plan::Evidence {
                    id,
                    phase,
                    host,
                    action,
                    args,
                    state: r.s()?,
                    detail: r.s()?,
                    observed: r.s()?,
                });
            }
            slice = Some(crate::plan::SliceInfo {
                zone,
                parent_fingerprint,
                parent_seal,
                evidence,
            });
        }
    }
    if r.at != bytes.len() {
        return Err(r.err("trailing bytes"));
    }
    let index = StepIndex::build(&steps);
    Ok(Plan {
        playbook,
        fingerprint,
        host_digests,
        params,
        example_params,
        warnings,
        max_parallel,
        endpoint_limits,
        hosts,
        steps,
        skipped,
        phases,
        estimate: Estimate {
            makespan_s,
            fits_window,
            window,
            serial_s,
        },
        index,
        air_gapped,
        slice,
    })
}
