//! Verification of an upgraded host (DESIGN rule 7, the advisory's step 7): build at or
//! above the target, the security update succeeded, Anti-Malware not offline.
//!
//! Two sources of evidence, judged by one function ([`judge`]) whichever driver runs the
//! step: the **Manager's view** of the computer (agent status, Anti-Malware module status,
//! security update status, ds-domain.md §2.2), which is primary, and the **host's own view**
//! (`dsa_query` and the pending-reboot probe of the host's driver), which is second. Where
//! both are known and differ, the step says so for that host.
//!
//! What is not a failure: Anti-Malware switched off by policy, a pending reboot on Linux,
//! an agent status `warning`. These become the step's note ([`medic_exec::NOTE_FACT`]).
//! What is never a success: a value this module does not know. Every mapping below names
//! its source; values ds-domain.md does not document are marked `// inferred:`, and anything
//! else reads as "unverified", which fails the step.
//!
//! [`Verifier`] is the driver that runs `verify` (and the reinstall guard's `agent-status`)
//! with both views: it wraps the host's driver (ssh) and reads the Manager through the `dsm`
//! driver's batched poller (one search per poll interval for every host being verified).

use std::collections::BTreeMap;
use std::sync::Arc;

use medic_exec::{ActionFuture, ActionReply, ActionRequest, ActionStatus, Driver, NOTE_FACT};
use medic_model::{AgentBuild, Platform, Value};

use crate::dsm::{Computer, DsmDriver};

/// Anti-Malware, as one view reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Am {
    Online,
    /// Switched off by policy (or on the computer): nothing to verify, not a failure.
    OffByPolicy,
    /// The advisory's "Anti-Malware offline": the only state a reinstall repairs.
    Offline,
    Unverified(String),
}

impl Am {
    /// The `antimalware` fact: `online`, `off`, `offline` or `unverified`.
    pub(crate) fn word(&self) -> &'static str {
        match self {
            Am::Online => "online",
            Am::OffByPolicy => "off",
            Am::Offline => "offline",
            Am::Unverified(_) => "unverified",
        }
    }
}

/// The last security update, as one view reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Update {
    Current,
    Failed(String),
    /// Pending, running or never run.
    NotCurrent(String),
    Unverified(String),
}

impl Update {
    fn word(&self) -> &'static str {
        match self {
            Update::Current => "succeeded",
            Update::Failed(_) => "failed",
            Update::NotCurrent(_) => "not current",
            Update::Unverified(_) => "unverified",
        }
    }
}

/// The agent's overall status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Agent {
    Active,
    Warning(String),
    Error(String),
    /// No managed agent (`inactive`, `not-supported`).
    Unmanaged(String),
    Unverified(String),
}

impl Agent {
    fn word(&self) -> &'static str {
        match self {
            Agent::Active => "active",
            Agent::Warning(_) => "warning",
            Agent::Error(_) => "error",
            Agent::Unmanaged(_) => "unmanaged",
            Agent::Unverified(_) => "unverified",
        }
    }
}

/// Everything one source says about a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct View {
    pub(crate) build: Result<AgentBuild, String>,
    pub(crate) agent: Agent,
    pub(crate) am: Am,
    pub(crate) update: Update,
    /// `None`: this source does not say.
    pub(crate) pending_reboot: Option<bool>,
}

/// The vendor fields of one computer that verification reads (ds-domain.md §2.2), from the
/// `dsm` client's model or from the simulator's view of the same computer.
#[derive(Clone, Debug, Default)]
pub struct ManagerFields<'a> {
    /// `agentVersion`.
    pub agent_version: Option<&'a str>,
    /// `computerStatus.agentStatus` and `.agentStatusMessages`.
    pub agent_status: Option<&'a str>,
    pub agent_messages: Vec<&'a str>,
    /// `antiMalware.state`, `.moduleStatus.agentStatus`, `.moduleStatus.agentStatusMessage`.
    pub am_state: Option<&'a str>,
    pub am_status: Option<&'a str>,
    pub am_message: Option<&'a str>,
    /// `securityUpdates.updateStatus.status` and `.statusMessage`.
    pub update_status: Option<&'a str>,
    pub update_message: Option<&'a str>,
}

impl<'a> ManagerFields<'a> {
    pub fn of_computer(c: &'a Computer) -> ManagerFields<'a> {
        let st = c.computer_status.as_ref();
        let am = c.anti_malware.as_ref();
        let am_mod = am.and_then(|a| a.module_status.as_ref());
        let upd = c
            .security_updates
            .as_ref()
            .and_then(|s| s.update_status.as_ref());
        ManagerFields {
            agent_version: c.agent_version.as_deref(),
            agent_status: st.and_then(|s| s.agent_status.as_deref()),
            agent_messages: st
                .map(|s| s.agent_status_messages.iter().map(String::as_str).collect())
                .unwrap_or_default(),
            am_state: am.and_then(|a| a.state.as_deref()),
            am_status: am_mod.and_then(|m| m.agent_status.as_deref()),
            am_message: am_mod.and_then(|m| m.agent_status_message.as_deref()),
            update_status: upd.and_then(|u| u.status.as_deref()),
            update_message: upd.and_then(|u| u.status_message.as_deref()),
        }
    }
}

fn unverified(what: &str, value: Option<&str>) -> String {
    match value {
        Some(v) => format!("the manager reports {what} `{v}`, which medic does not know"),
        None => format!("the manager reports no {what}"),
    }
}

fn joined(messages: &[&str]) -> String {
    messages.join(", ")
}

/// `computerStatus.agentStatus` (ds-domain.md §2.2: `inactive|active|warning|error|
/// not-supported`).
pub(crate) fn manager_agent(status: Option<&str>, messages: &[&str]) -> Agent {
    match status {
        Some("active") => Agent::Active,
        Some("warning") => Agent::Warning(joined(messages)),
        Some("error") => Agent::Error(joined(messages)),
        Some(s @ ("inactive" | "not-supported")) => {
            Agent::Unmanaged(format!("agent status `{s}` ({})", joined(messages)))
        }
        other => Agent::Unverified(unverified("agent status", other)),
    }
}

/// Whether the agent's status messages announce a pending reboot.
// inferred: the wording of a pending reboot in `agentStatusMessages` is not documented
// (free, localized text, ds-domain.md §2.2); "reboot" (or the Japanese 再起動) in a message
// is read as one. No such message says nothing either way.
pub(crate) fn manager_pending_reboot(messages: &[&str]) -> Option<bool> {
    messages
        .iter()
        .any(|m| m.to_ascii_lowercase().contains("reboot") || m.contains("再起動"))
        .then_some(true)
}

/// `antiMalware.state` (`inherited|on|off`) and its `moduleStatus` (ds-domain.md §2.2).
pub(crate) fn manager_am(state: Option<&str>, status: Option<&str>, message: Option<&str>) -> Am {
    let msg = message.unwrap_or("");
    let lower = msg.to_ascii_lowercase();
    // inferred: "offline" in the module's status message is the advisory's "Anti-Malware
    // offline" (the vendor's Windows KB calls it "Anti-malware engine offline"); the message
    // is localized, so the Japanese オフライン counts too.
    let says_offline = lower.contains("offline") || msg.contains("オフライン");
    match (state, status) {
        // inferred: `state: off` is Anti-Malware switched off for the computer (by its
        // policy or its own setting); the enum is documented, its meaning is not.
        (Some("off"), _) => Am::OffByPolicy,
        // inferred: a module status `active` is a running engine.
        (Some("on" | "inherited"), Some("active")) => Am::Online,
        (Some("on" | "inherited"), Some("error")) if says_offline => Am::Offline,
        // inferred: a policy that turns the module off, inherited, shows the module
        // `inactive` with a message saying "Off" (and not "offline").
        (Some("inherited"), Some("inactive"))
            if !says_offline
                && lower
                    .split(|c: char| !c.is_alphanumeric())
                    .any(|w| w == "off") =>
        {
            Am::OffByPolicy
        }
        (Some("on" | "inherited"), Some(s)) => Am::Unverified(format!(
            "the manager reports the anti-malware module `{s}` ({msg})"
        )),
        (Some("on" | "inherited"), None) => {
            Am::Unverified("the manager reports no anti-malware module status".to_owned())
        }
        (other, _) => Am::Unverified(unverified("anti-malware state", other)),
    }
}

/// `securityUpdates.updateStatus` (ds-domain.md §2.2, the same five values as the agent
/// status).
pub(crate) fn manager_update(status: Option<&str>, message: Option<&str>) -> Update {
    let msg = message.unwrap_or("").to_owned();
    match status {
        // inferred: `active` is "the last security update succeeded"; the vendor documents
        // the enum only.
        Some("active") => Update::Current,
        Some("error") => Update::Failed(if msg.is_empty() {
            "the manager reports a failed security update (no message)".to_owned()
        } else {
            msg
        }),
        Some(s @ ("warning" | "inactive" | "not-supported")) => Update::NotCurrent(format!(
            "the manager reports security updates `{s}` ({msg})"
        )),
        other => Update::Unverified(unverified("security update status", other)),
    }
}

/// The Manager's view of one computer.
pub(crate) fn manager_view(f: &ManagerFields<'_>) -> View {
    let build = match f.agent_version {
        Some(v) => v
            .parse::<AgentBuild>()
            .map_err(|e| format!("the manager reports agentVersion `{v}`: {e}")),
        None => Err("the manager reports no agentVersion".to_owned()),
    };
    View {
        build,
        agent: manager_agent(f.agent_status, &f.agent_messages),
        am: manager_am(f.am_state, f.am_status, f.am_message),
        update: manager_update(f.update_status, f.update_message),
        pending_reboot: manager_pending_reboot(&f.agent_messages),
    }
}

/// The facts a host driver's `verify` reports about the host's own view, and the note
/// (see [`host_reply`]).
pub(crate) const SECURITY_UPDATE_ERROR: &str = "security_update_error";

/// The host's own view, from the facts of its driver's `verify` (`agent_version`,
/// `agent_status`, `antimalware`, `security_update_current`, `security_update_error`,
/// `pending_reboot`). A missing or unknown fact is unverified.
pub(crate) fn host_view(facts: &BTreeMap<String, Value>) -> View {
    let s = |k: &str| match facts.get(k) {
        Some(Value::Str(v)) => Some(v.as_str()),
        _ => None,
    };
    let b = |k: &str| match facts.get(k) {
        Some(Value::Bool(v)) => Some(*v),
        _ => None,
    };
    let build = match facts.get("agent_version") {
        Some(Value::Agent(v)) => Ok(*v),
        _ => Err("the host reports no agent build".to_owned()),
    };
    // The host driver maps dsa_query's `AgentStatus.agentState` to the API's words.
    let agent = match s("agent_status") {
        Some("active") => Agent::Active,
        Some("warning") => Agent::Warning("dsa_query".to_owned()),
        Some("error") => Agent::Error("dsa_query".to_owned()),
        Some("inactive") => Agent::Unmanaged("dsa_query: no agent".to_owned()),
        other => Agent::Unverified(format!(
            "the host reports agent state {}",
            other.map_or("nothing".to_owned(), |o| format!("`{o}`"))
        )),
    };
    // ds-domain.md §3: `Component.AM.mode: on` and `Component.AM.driverOffline`, which the
    // host driver reads as `online`, `offline` or `off`.
    // inferred: a mode other than `on` is Anti-Malware switched off by policy.
    let am = match s("antimalware") {
        Some("online") => Am::Online,
        Some("off") => Am::OffByPolicy,
        Some("offline") => Am::Offline,
        other => Am::Unverified(format!(
            "the host reports anti-malware {}",
            other.map_or("nothing".to_owned(), |o| format!("`{o}`"))
        )),
    };
    let update = match (b("security_update_current"), s(SECURITY_UPDATE_ERROR)) {
        (Some(true), _) => Update::Current,
        (Some(false), Some(m)) => Update::Failed(m.to_owned()),
        (Some(false), None) => Update::NotCurrent(
            "the host reports no successful security update since the last upgrade".to_owned(),
        ),
        (None, _) => Update::Unverified("the host reports no security update status".to_owned()),
    };
    View {
        build,
        agent,
        am,
        update,
        pending_reboot: b("pending_reboot"),
    }
}

/// What [`judge`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) problems: Vec<String>,
    pub(crate) notes: Vec<String>,
    pub(crate) facts: BTreeMap<String, Value>,
}

impl Verdict {
    pub(crate) fn reply(mut self) -> ActionReply {
        if !self.notes.is_empty() {
            self.facts
                .insert(NOTE_FACT.to_owned(), Value::Str(self.notes.join("; ")));
        }
        let status = if self.problems.is_empty() {
            ActionStatus::Ok
        } else if self.notes.is_empty() {
            ActionStatus::Failed(self.problems.join("; "))
        } else {
            ActionStatus::Failed(format!(
                "{} (note: {})",
                self.problems.join("; "),
                self.notes.join("; ")
            ))
        };
        ActionReply {
            status,
            facts: self.facts,
        }
    }
}

/// Judges a host from the Manager's view (`manager`, primary; `None` when no Manager is
/// configured, `Some(Err)` when it could not be read) and the host's own (`host`).
pub(crate) fn judge(
    platform: Option<Platform>,
    min: AgentBuild,
    manager: Option<Result<View, String>>,
    host: Option<Result<View, String>>,
) -> Verdict {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut facts = BTreeMap::new();
    let (m, h) = match (manager, host) {
        (Some(Ok(m)), Some(Ok(h))) => (Some(m), Some(h)),
        (Some(Ok(m)), Some(Err(e))) => {
            notes.push(format!("the host's own view could not be read ({e})"));
            (Some(m), None)
        }
        (Some(Ok(m)), None) => (Some(m), None),
        (Some(Err(e)), Some(Ok(h))) => {
            notes.push(format!(
                "the manager's view could not be read ({e}): verified from the host's own view"
            ));
            (None, Some(h))
        }
        (None, Some(Ok(h))) => (None, Some(h)),
        (m, h) => {
            let why: Vec<String> = [m, h]
                .into_iter()
                .flatten()
                .filter_map(Result::err)
                .collect();
            return Verdict {
                problems: vec![format!(
                    "unverified: neither the manager nor the host could be read ({})",
                    why.join("; ")
                )],
                notes,
                facts,
            };
        }
    };
    let (primary, second, by) = match (&m, &h) {
        (Some(m), h) => (m, h.as_ref(), "manager"),
        (None, Some(h)) => (h, None, "host"),
        (None, None) => unreachable!("handled above"),
    };
    facts.insert("verified_by".to_owned(), Value::Str(by.to_owned()));

    match &primary.build {
        Ok(b) => {
            facts.insert("agent_version".to_owned(), Value::Agent(*b));
            if *b < min {
                problems.push(format!("build {b} is below {min}"));
            }
        }
        Err(e) => problems.push(format!("build unverified: {e}")),
    }
    match &primary.agent {
        Agent::Active => {}
        Agent::Warning(m) => notes.push(format!("agent status warning ({m})")),
        Agent::Error(m) => problems.push(format!("the agent is in error ({m})")),
        Agent::Unmanaged(m) | Agent::Unverified(m) => problems.push(m.clone()),
    }
    facts.insert(
        "antimalware".to_owned(),
        Value::Str(primary.am.word().to_owned()),
    );
    match &primary.am {
        Am::Online => {}
        Am::OffByPolicy => notes.push(
            "anti-malware is switched off by policy: nothing to verify there, not a failure"
                .to_owned(),
        ),
        Am::Offline => problems.push("anti-malware is offline".to_owned()),
        Am::Unverified(m) => problems.push(format!("anti-malware unverified: {m}")),
    }
    facts.insert(
        "security_update_current".to_owned(),
        Value::Bool(primary.update == Update::Current),
    );
    match &primary.update {
        Update::Current => {}
        Update::Failed(m) => problems.push(format!("the last security update failed: {m}")),
        Update::NotCurrent(m) => problems.push(m.clone()),
        Update::Unverified(m) => problems.push(format!("security update unverified: {m}")),
    }
    // The Manager does not document a pending reboot; the host's probe usually knows.
    let pending = primary
        .pending_reboot
        .or_else(|| second.and_then(|s| s.pending_reboot));
    if let Some(p) = pending {
        facts.insert("pending_reboot".to_owned(), Value::Bool(p));
    }
    if pending == Some(true) {
        match platform {
            // Nothing in the playbook reboots Linux for this advisory: the operator does,
            // in a window of their choice.
            Some(Platform::Linux) => notes.push(
                "a reboot is pending (Linux): reboot the host in a maintenance window".to_owned(),
            ),
            _ => problems.push("a reboot is still pending".to_owned()),
        }
    }
    if let Some(s) = second {
        let mut differ = Vec::new();
        if let (Ok(a), Ok(b)) = (&primary.build, &s.build)
            && a != b
        {
            differ.push(format!("build (manager {a}, host {b})"));
        }
        let known_am = |a: &Am| !matches!(a, Am::Unverified(_));
        if known_am(&primary.am) && known_am(&s.am) && primary.am != s.am {
            differ.push(format!(
                "anti-malware (manager {}, host {})",
                primary.am.word(),
                s.am.word()
            ));
        }
        let known_up = |u: &Update| !matches!(u, Update::Unverified(_));
        if known_up(&primary.update)
            && known_up(&s.update)
            && primary.update.word() != s.update.word()
        {
            differ.push(format!(
                "security update (manager {}, host {})",
                primary.update.word(),
                s.update.word()
            ));
        }
        let known_ag = |a: &Agent| !matches!(a, Agent::Unverified(_));
        if known_ag(&primary.agent) && known_ag(&s.agent) && primary.agent.word() != s.agent.word()
        {
            differ.push(format!(
                "agent status (manager {}, host {})",
                primary.agent.word(),
                s.agent.word()
            ));
        }
        if let (Some(a), Some(b)) = (primary.pending_reboot, s.pending_reboot)
            && a != b
        {
            differ.push(format!("pending reboot (manager {a}, host {b})"));
        }
        if !differ.is_empty() {
            notes.push(format!(
                "the manager and the host disagree on {}; the manager's view decides",
                differ.join(", ")
            ));
        }
    }
    Verdict {
        problems,
        notes,
        facts,
    }
}

fn min_build(req: &ActionRequest) -> Result<AgentBuild, String> {
    let raw = req
        .args
        .get("min_build")
        .ok_or_else(|| "verify needs the argument `min_build`".to_owned())?;
    raw.parse()
        .map_err(|e| format!("verify: bad argument `min_build`: {e}"))
}

/// Prefixes the facts of the host's own view in a `verify` reply: the reply's plain facts
/// are the verdict's (the primary view's), these stay the host's for a [`Verifier`].
const HOST_PREFIX: &str = "host_";

/// Adds the host's own view (`facts`, as [`host_view`] reads them) to a verdict's reply.
pub(crate) fn with_host_facts(
    mut reply: ActionReply,
    facts: BTreeMap<String, Value>,
) -> ActionReply {
    for (k, v) in facts {
        reply.facts.insert(format!("{HOST_PREFIX}{k}"), v);
    }
    reply
}

/// The host's own view inside a host driver's `verify` reply.
fn host_facts_of(reply: &ActionReply) -> BTreeMap<String, Value> {
    reply
        .facts
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(HOST_PREFIX)?.to_owned(), v.clone())))
        .collect()
}

/// The reply of a host driver's own `verify`: the host's view judged alone (no Manager).
pub(crate) fn host_only(req: &ActionRequest, facts: BTreeMap<String, Value>) -> ActionReply {
    let min = match min_build(req) {
        Ok(m) => m,
        Err(e) => return ActionReply::failed(e),
    };
    let platform = req.host.as_ref().and_then(|h| h.platform);
    let view = host_view(&facts);
    with_host_facts(judge(platform, min, None, Some(Ok(view))).reply(), facts)
}

/// A `verify` judged from both views read by the caller: the Manager's (`manager`) and the
/// host's own (`host`: the facts of its `verify`, as [`host_view`] reads them, or why the host
/// did not answer), for a driver that sees both at once (the simulated fleet's). The reply
/// keeps the host's facts beside the verdict's, as [`Verifier`]'s does.
pub fn verify_reply(
    req: &ActionRequest,
    manager: &ManagerFields<'_>,
    host: Result<BTreeMap<String, Value>, String>,
) -> ActionReply {
    let min = match min_build(req) {
        Ok(m) => m,
        Err(e) => return ActionReply::failed(e),
    };
    let platform = req.host.as_ref().and_then(|h| h.platform);
    let (view, facts) = match host {
        Ok(facts) => (Ok(host_view(&facts)), facts),
        Err(e) => (Err(e), BTreeMap::new()),
    };
    let verdict = judge(platform, min, Some(Ok(manager_view(manager))), Some(view));
    with_host_facts(verdict.reply(), facts)
}

/// The driver that verifies with both views: `verify` and `agent-status` read the Manager
/// (primary) and the host (second); every other action goes to the host's driver.
pub struct Verifier {
    host: Arc<dyn Driver>,
    manager: DsmDriver,
}

impl Verifier {
    pub fn new(host: Arc<dyn Driver>, manager: DsmDriver) -> Verifier {
        Verifier { host, manager }
    }

    async fn verify(&self, req: ActionRequest) -> ActionReply {
        let min = match min_build(&req) {
            Ok(m) => m,
            Err(e) => return ActionReply::failed(e),
        };
        let Some(name) = req.host.as_ref().map(|h| h.name.clone()) else {
            return ActionReply::failed("verify needs a host");
        };
        let platform = req.host.as_ref().and_then(|h| h.platform);
        let (m, h) = tokio::join!(self.manager.computer(&name), self.host.run(req));
        let manager = Some(m.map(|c| manager_view(&ManagerFields::of_computer(&c))));
        let host = match h.status {
            ActionStatus::Unreachable(e) | ActionStatus::Refused(e) | ActionStatus::Lost(e) => {
                Some(Err(e))
            }
            // A failed verify of the host still carries what it saw.
            ActionStatus::Ok | ActionStatus::Failed(_) => Some(Ok(host_view(&host_facts_of(&h)))),
        };
        judge(platform, min, manager, host).reply()
    }

    async fn agent_status(&self, req: ActionRequest) -> ActionReply {
        let Some(name) = req.host.as_ref().map(|h| h.name.clone()) else {
            return ActionReply::failed("agent-status needs a host");
        };
        match self.manager.computer(&name).await {
            Ok(c) => {
                let f = ManagerFields::of_computer(&c);
                let view = manager_view(&f);
                let mut facts = BTreeMap::new();
                facts.insert(
                    "antimalware".to_owned(),
                    Value::Str(view.am.word().to_owned()),
                );
                facts.insert(
                    "agent_status".to_owned(),
                    Value::Str(view.agent.word().to_owned()),
                );
                ActionReply {
                    status: ActionStatus::Ok,
                    facts,
                }
            }
            // The Manager is primary; without it, the host's dsa_query answers.
            Err(_) => self.host.run(req).await,
        }
    }
}

impl Driver for Verifier {
    fn run(&self, req: ActionRequest) -> ActionFuture<'_> {
        Box::pin(async move {
            match req.action.as_str() {
                "verify" => self.verify(req).await,
                "agent-status" => self.agent_status(req).await,
                _ => self.host.run(req).await,
            }
        })
    }

    fn idempotent(&self, action: &str) -> bool {
        self.host.idempotent(action)
    }
}

#[cfg(test)]
mod tests;
