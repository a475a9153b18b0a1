//! How an action reaches the world. The executor knows only this trait; drivers (ssh, dsm,
//! sim, manual) never see the graph.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use medic_model::Value;
use medic_plan::PlanHost;

/// One call of one action on one host.
#[derive(Clone, Debug)]
pub struct ActionRequest {
    pub step: String,
    /// `None` for steps that target no host.
    pub host: Option<PlanHost>,
    pub action: String,
    pub args: BTreeMap<String, String>,
    /// 1-based.
    pub attempt: u32,
    /// When this host's previous step finished (wall clock, Unix milliseconds, as the
    /// journal recorded it; `None` when none has). A check that must observe work newer
    /// than what came before it on the host compares with this: a security update after an
    /// upgrade must have ended after the upgrade, never be the status from before it.
    pub after_ms: Option<i64>,
    /// The fencing token of the worker that claimed this call (`medic worker`), `None` in a
    /// single process. Tokens only grow: a driver that can (the simulated fleet) refuses a
    /// call of a step older than the newest it has seen for that step, so a worker that
    /// stalled past its lease and woke up cannot act after another one took over.
    pub fence: Option<u64>,
}

/// The fact under which a driver reports a note: something the operator should know about
/// a step that succeeded, which is not a failure (Anti-Malware switched off by policy, a
/// pending reboot on Linux, the Manager and the host disagreeing). A `Value::Str`; the
/// executor puts it in the step's event, the journal and the run summary.
pub const NOTE_FACT: &str = "note";

/// What the action did, as the driver observed it.
#[derive(Clone, Debug, PartialEq)]
pub enum ActionStatus {
    Ok,
    /// The action ran and failed; retrying may help.
    Failed(String),
    /// The host could not be reached; nothing was done.
    Unreachable(String),
    /// Nothing was done and trying again cannot help (the host's key changed or is
    /// unknown): the step fails at once, without retries.
    Refused(String),
    /// Whether the action ran is unknown: the worker that held the call (`medic worker`)
    /// was lost (its lease ran out) and the call was not run again, because running it
    /// again could repeat its effect. The attempt asks the step's check.
    Lost(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ActionReply {
    pub status: ActionStatus,
    /// What the action learned, e.g. `agent_version` or `pending_reboot`, for guards and checks.
    pub facts: BTreeMap<String, Value>,
}

impl ActionReply {
    pub fn ok() -> Self {
        ActionReply {
            status: ActionStatus::Ok,
            facts: BTreeMap::new(),
        }
    }

    pub fn failed(msg: impl Into<String>) -> Self {
        ActionReply {
            status: ActionStatus::Failed(msg.into()),
            facts: BTreeMap::new(),
        }
    }

    /// The note the driver reported ([`NOTE_FACT`]), if any.
    pub fn note(&self) -> Option<&str> {
        match self.facts.get(NOTE_FACT) {
            Some(Value::Str(s)) if !s.is_empty() => Some(s),
            _ => None,
        }
    }
}

pub type ActionFuture<'a> = Pin<Box<dyn Future<Output = ActionReply> + Send + 'a>>;

/// The driver name of the steps a person performs (`driver: manual` in a playbook). The
/// executor pauses at them for the operator's approval, whichever driver serves them (a
/// rehearsal's simulated fleet included); `--yes` never gives that approval.
pub const MANUAL_DRIVER: &str = "manual";

/// What the operator is asked for at a manual step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManualAsk {
    /// What to do, e.g. "upgrade the Deep Security Manager dsm01 to build 20.0.463 or later".
    pub instruction: String,
    /// The yes/no question a terminal prompt puts, e.g. "did you upgrade the Manager dsm01
    /// to 20.0.463?".
    pub question: String,
}

impl ManualAsk {
    /// The wording for an action no driver knows better: its name, host and arguments.
    pub fn generic(req: &ActionRequest) -> ManualAsk {
        let on = req
            .host
            .as_ref()
            .map(|h| format!(" on {}", h.name))
            .unwrap_or_default();
        let args: Vec<String> = req.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let with = if args.is_empty() {
            String::new()
        } else {
            format!(" ({})", args.join(", "))
        };
        ManualAsk {
            instruction: format!("do `{}`{on}{with} by hand", req.action),
            question: format!("did you do `{}`{on}{with}?", req.action),
        }
    }
}

/// A way to act on hosts. Futures must be cancel-safe: the executor drops them on timeout
/// or abort, and the driver must then stop (or make the remote side stop) the action.
pub trait Driver: Send + Sync {
    fn run(&self, req: ActionRequest) -> ActionFuture<'_>;

    /// Whether running the action again is harmless (probes, verifications). A step whose
    /// outcome is unknown after a crash and which has no `check` is re-run only if this is
    /// true; otherwise it is left for the operator.
    fn idempotent(&self, action: &str) -> bool;

    /// What the operator is asked at a manual step ([`MANUAL_DRIVER`]) served by this driver.
    fn manual_ask(&self, req: &ActionRequest) -> ManualAsk {
        ManualAsk::generic(req)
    }
}

/// The drivers of a run, by the names the playbook uses (`ssh`, `dsm`, `manual`, `sim`).
#[derive(Clone, Default)]
pub struct Drivers {
    by_name: HashMap<String, Arc<dyn Driver>>,
    /// Serves every driver name (a rehearsal on the simulated fleet).
    all: Option<Arc<dyn Driver>>,
    /// What the drivers report between replies; the executor sends it to the reporters.
    events: crate::DriverEvents,
}

impl Drivers {
    pub fn new() -> Self {
        Drivers::default()
    }

    pub fn with(mut self, name: &str, d: Arc<dyn Driver>) -> Self {
        self.by_name.insert(name.to_owned(), d);
        self
    }

    /// One driver for every step, whatever the playbook says (`--simulate`).
    pub fn everything(d: Arc<dyn Driver>) -> Self {
        Drivers {
            by_name: HashMap::new(),
            all: Some(d),
            events: crate::DriverEvents::default(),
        }
    }

    /// The queue this set's drivers report events to (give it to a driver when building it).
    pub fn events(&self) -> crate::DriverEvents {
        self.events.clone()
    }

    /// What the drivers reported since the last call.
    pub(crate) fn take_events(&self) -> Vec<crate::RunEvent> {
        self.events.take()
    }

    /// The same set with every driver wrapped by `f` (given its name, `*` for the one that
    /// serves every name): a worker's coordinator sends each call to a queue.
    pub fn wrap(self, f: impl Fn(&str, Arc<dyn Driver>) -> Arc<dyn Driver>) -> Drivers {
        Drivers {
            by_name: self
                .by_name
                .into_iter()
                .map(|(n, d)| {
                    let w = f(&n, d);
                    (n, w)
                })
                .collect(),
            all: self.all.map(|d| f("*", d)),
            events: self.events,
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Driver>> {
        self.all.clone().or_else(|| self.by_name.get(name).cloned())
    }
}
