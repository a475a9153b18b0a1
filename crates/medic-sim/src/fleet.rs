//! The simulated fleet: its state, the advisory's rules as state transitions, fault
//! injection and the Manager's view of the computers.
//!
//! Every call of [`SimFleet::perform`] runs in three steps under one lock: decide the
//! outcome from the current state without touching it, write the effect ahead to the log
//! (durable fleets only), then apply it. Replay on open runs only the last step, from the
//! log, so live runs and replays share one mutation function and cannot drift apart.
//!
//! A durable fleet may share its log with other processes: the lock is then also the log's
//! `flock`, and before deciding, a call replays what the others appended since it last
//! read. Requests carrying a fencing token ([`Fence`]) are checked against the highest
//! token seen for their step, as a resource guarding itself against a stale lease holder.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use medic_model::{AgentBuild, BuildLines, Inventory, ManagerBuild, Platform, Value};

use crate::action::{Action, EFFECT_SLOTS, SIDE_EFFECTS};
use crate::config::{Fault, SimConfig, SimError};
use crate::log::{Effect, EffectLog, Entry, EntryRef, LogLock, Logged};
use crate::rng;

/// The ActiveUpdate error a Relay below the fixed build reports after the certificate
/// change (the advisory's Problem 1).
pub const CERT_EXPIRE_ERROR: &str = "IAURELAY_STATUS_DIGITAL_SIGNATURE_CERT_EXPIRE (-24)";

/// When the Manager last saw a security update of each agent before the run (2023-03-01
/// 00:00 UTC): the "up to date" that an upgrade does not change and that must never count
/// as the update after it (issue 9, item 7). A constant, so that every process of a run
/// (and every replay of its log) sees the same world.
pub const PRE_RUN_UPDATE_MS: i64 = 1_677_628_800_000;

/// Spread of the simulated durations around their median (log-normal sigma).
const DURATION_SIGMA: f64 = 0.3;

/// How an action ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimResult {
    Ok,
    Failed(String),
    /// The host did not answer; nothing happened on it.
    Unreachable,
    /// The action never finishes; a driver must time it out. Nothing happened.
    Hang,
    /// Refused for a stale fencing token: nothing happened, and trying again with the same
    /// token cannot help.
    Refused(String),
}

/// The fencing token a request carries: the claim of the worker that sends it. Tokens only
/// grow; the simulator refuses a request whose token is below the highest it has seen for
/// the same step (Kleppmann's fencing: the resource, not the lock service, stops a worker
/// that stalled past its lease and woke up after another one took the step over).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fence<'a> {
    pub step: &'a str,
    pub token: u64,
}

/// The result of one action and the facts it reported (probes report facts; side
/// effects report none).
#[derive(Clone, Debug, PartialEq)]
pub struct SimOutcome {
    pub result: SimResult,
    pub facts: BTreeMap<String, Value>,
}

impl SimOutcome {
    fn of(result: SimResult) -> SimOutcome {
        SimOutcome {
            result,
            facts: BTreeMap::new(),
        }
    }

    fn ok() -> SimOutcome {
        SimOutcome::of(SimResult::Ok)
    }

    fn failed(message: String) -> SimOutcome {
        SimOutcome::of(SimResult::Failed(message))
    }

    fn fact(mut self, key: &str, value: Value) -> SimOutcome {
        self.facts.insert(key.to_owned(), value);
        self
    }

    pub fn is_ok(&self) -> bool {
        self.result == SimResult::Ok
    }
}

/// Everything the simulator knows about one host, for tests and reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimHostState {
    pub name: String,
    pub platform: Platform,
    pub relay: bool,
    pub relay_group: Option<String>,
    pub protected_by_appliance: bool,
    pub build: AgentBuild,
    pub pending_reboot: bool,
    pub antimalware_online: bool,
    /// Anti-Malware is switched off by policy (host var `antimalware: off`): the engine is
    /// not running, and that is not a failure.
    pub antimalware_off_by_policy: bool,
    /// A security update succeeded since the last upgrade (or reinstall to another build).
    pub security_update_current: bool,
    /// The message of the last security update, if it failed.
    pub last_security_update_error: Option<String>,
    pub sha2_supported: bool,
    pub root_certs_present: bool,
    /// Increases by one on every reboot, so that "the host came back" is observable.
    pub boot_id: u64,
    /// The bundle imported on this (offline) Relay, if any.
    pub imported_bundle: Option<String>,
    pub relay_cache_clears: u32,
    /// The fleet-wide change counter when this host last changed.
    pub last_changed: u64,
    /// When its last security update ended (wall clock, Unix ms): [`PRE_RUN_UPDATE_MS`]
    /// before any in this world.
    pub update_ms: i64,
}

/// One computer as the Manager sees it: the fields a DSM REST simulator serves. Status
/// values use the API's vocabulary (`inactive|active|warning|error|not-supported`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimComputer {
    /// 1-based, stable: the host's position in the inventory.
    pub id: u64,
    pub host_name: String,
    /// Four dotted parts (`20.0.1.690`); `0.0.0.0` without an agent.
    pub agent_version: String,
    pub relay: bool,
    /// 1-based index of the relay group in the inventory; 0 = none.
    pub relay_list_id: u32,
    /// E.g. "Red Hat Enterprise 8 (64 bit)".
    pub platform: String,
    pub appliance_protected: bool,
    /// `computerStatus.agentStatus`.
    pub agent_status: &'static str,
    /// `computerStatus.agentStatusMessages[0]`.
    pub agent_status_message: &'static str,
    /// `antiMalware.state` (`on`, or `off` when switched off by policy).
    pub anti_malware_state: &'static str,
    /// `antiMalware.moduleStatus.agentStatus`.
    pub anti_malware_status: &'static str,
    pub anti_malware_status_message: &'static str,
    /// `securityUpdates.updateStatus.status`: the last update's result, which an upgrade
    /// does not change (the Manager's "up to date" from before it stays).
    pub security_update_status: &'static str,
    pub security_update_message: String,
    /// The fleet-wide change counter when this computer last changed.
    pub last_changed: u64,
    /// `securityUpdates.lastChanged`: when the last security update ended (Unix ms).
    pub update_ms: i64,
}

/// A relay group as the Manager's configuration knows it (there is no REST endpoint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimRelayGroup {
    /// The `relayListID` of its members: 1-based, in inventory order.
    pub id: u32,
    pub name: String,
    pub offline: bool,
    pub bundle_source: Option<String>,
    pub relays: Vec<String>,
}

/// An in-process simulated Deep Security fleet. Cheap to clone (shared state), `Send` and
/// `Sync`: one fleet serves every worker of an executor.
#[derive(Clone)]
pub struct SimFleet {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SimFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimFleet")
            .field("seed", &self.shared.rules.seed)
            .finish_non_exhaustive()
    }
}

struct Shared {
    rules: Rules,
    state: Mutex<State>,
}

/// What does not change while the fleet runs, so it is read without the lock.
struct Rules {
    seed: u64,
    fixed_linux: BuildLines,
    fixed_windows: BuildLines,
    reboot_probability: f64,
    direct_download: bool,
}

impl Rules {
    fn fixed(&self, platform: Platform) -> &BuildLines {
        match platform {
            Platform::Linux => &self.fixed_linux,
            Platform::Windows => &self.fixed_windows,
        }
    }

    /// Below the fixed build of its own version line (the highest one if its line has
    /// none): the advisory's affected builds.
    fn affected(&self, platform: Platform, build: AgentBuild) -> bool {
        self.fixed(platform).affects(build)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Manager,
    Host(usize),
}

#[derive(Debug, Default)]
struct Faults {
    unreachable: bool,
    rules: Vec<FaultRule>,
}

#[derive(Debug)]
struct FaultRule {
    action: String,
    kind: FaultKind,
}

#[derive(Debug)]
enum FaultKind {
    Hang,
    FailTimes { times: u32, consumed: u32 },
}

enum FaultHit {
    None,
    Unreachable,
    Hang,
    Fail { rule: usize, n: u32, times: u32 },
}

impl Faults {
    fn hit(&self, action: &str) -> FaultHit {
        if self.unreachable {
            return FaultHit::Unreachable;
        }
        for (i, r) in self.rules.iter().enumerate() {
            if r.action != action {
                continue;
            }
            match r.kind {
                FaultKind::Hang => return FaultHit::Hang,
                FaultKind::FailTimes { times, consumed } if consumed < times => {
                    return FaultHit::Fail {
                        rule: i,
                        n: consumed + 1,
                        times,
                    };
                }
                FaultKind::FailTimes { .. } => {}
            }
        }
        FaultHit::None
    }

    /// Replays one injected failure: the first rule that still had failures left took it.
    fn consume_first(&mut self, action: &str) {
        for r in &mut self.rules {
            if let FaultKind::FailTimes { times, consumed } = &mut r.kind
                && r.action == action
                && *consumed < *times
            {
                *consumed += 1;
                return;
            }
        }
    }

    fn consume(&mut self, rule: usize) {
        if let Some(FaultRule {
            kind: FaultKind::FailTimes { consumed, .. },
            ..
        }) = self.rules.get_mut(rule)
        {
            *consumed += 1;
        }
    }
}

struct ManagerSim {
    name: String,
    version: ManagerBuild,
    counts: [u32; EFFECT_SLOTS],
    faults: Faults,
}

struct HostSim {
    name: String,
    platform: Platform,
    os_text: String,
    relay: bool,
    group: Option<usize>,
    appliance: bool,
    build: AgentBuild,
    pending_reboot: bool,
    antimalware_online: bool,
    am_off: bool,
    /// Var `antimalware: offline-after-upgrade`: a Windows upgrade takes the engine offline
    /// even with the certificates in place (the advisory's step 7 says it can appear; a
    /// reinstall repairs it), so a rehearsal can show the reinstall.
    am_drop: bool,
    security_update_current: bool,
    last_update: Option<Result<(), String>>,
    update_ms: i64,
    sha2: bool,
    root_certs: bool,
    boot_id: u64,
    /// Successful upgrades so far: keys the seeded reboot draw, so that each upgrade of a
    /// host gets its own, reproducible coin.
    upgrades: u32,
    imported_bundle: Option<String>,
    cache_clears: u32,
    last_changed: u64,
    counts: [u32; EFFECT_SLOTS],
    faults: Faults,
}

impl HostSim {
    fn certs_ok(&self) -> bool {
        self.sha2 && self.root_certs
    }
}

struct GroupSim {
    name: String,
    offline: bool,
    bundle_source: Option<String>,
    relays: Vec<usize>,
}

struct State {
    names: HashMap<String, Target>,
    manager: ManagerSim,
    hosts: Vec<HostSim>,
    groups: Vec<GroupSim>,
    bundles: BTreeMap<String, AgentBuild>,
    /// Fleet-wide change counter, the simulator's `lastChanged` clock.
    changes: u64,
    /// The highest fencing token seen per step id.
    fences: HashMap<String, u64>,
    log: Option<EffectLog>,
    /// Set when the lines another process appended could not be replayed: this process's
    /// world is no longer the log's, so it refuses every request from then on.
    damaged: Option<(usize, String)>,
}

/// What an action would do, decided before anything changes.
enum Decision {
    /// No side effect: answer directly (probes, and refusals of malformed requests).
    Answer(SimOutcome),
    /// A side-effect attempt that reached the host: logged, then applied.
    Attempt {
        result: Result<(), String>,
        effect: Option<Effect>,
    },
}

impl Decision {
    /// An attempt that has `effect` only if it succeeds.
    fn attempt(result: Result<(), String>, effect: Effect) -> Decision {
        let effect = result.is_ok().then_some(effect);
        Decision::Attempt { result, effect }
    }
}

impl State {
    fn faults_mut(&mut self, t: Target) -> &mut Faults {
        match t {
            Target::Manager => &mut self.manager.faults,
            Target::Host(i) => &mut self.hosts[i].faults,
        }
    }

    fn faults(&self, t: Target) -> &Faults {
        match t {
            Target::Manager => &self.manager.faults,
            Target::Host(i) => &self.hosts[i].faults,
        }
    }

    /// The one place state changes, live and on replay.
    fn apply(&mut self, target: Target, action: Action, ok: bool, effect: Option<&Effect>) {
        if let Some(effect) = effect {
            match target {
                Target::Manager => {
                    if let Effect::ManagerVersion { to } = effect {
                        self.manager.version = *to;
                    }
                }
                Target::Host(i) => {
                    self.changes += 1;
                    let h = &mut self.hosts[i];
                    h.last_changed = self.changes;
                    match effect {
                        Effect::ManagerVersion { .. } => {}
                        Effect::Certificates => {
                            h.sha2 = true;
                            h.root_certs = true;
                        }
                        Effect::Upgraded {
                            to,
                            pending_reboot,
                            antimalware_online,
                        } => {
                            h.build = *to;
                            h.pending_reboot = *pending_reboot;
                            h.antimalware_online = *antimalware_online;
                            h.security_update_current = false;
                            h.upgrades += 1;
                        }
                        Effect::UpdateSucceeded { at_ms } => {
                            h.security_update_current = true;
                            h.last_update = Some(Ok(()));
                            // Strictly later than the one before, even within a millisecond.
                            h.update_ms = (*at_ms).max(h.update_ms + 1);
                        }
                        Effect::UpdateFailed { message, at_ms } => {
                            h.last_update = Some(Err(message.clone()));
                            h.update_ms = (*at_ms).max(h.update_ms + 1);
                        }
                        Effect::BundleMade { bundle, build } => {
                            self.bundles.insert(bundle.clone(), *build);
                        }
                        Effect::BundleImported { bundle, .. } => {
                            h.imported_bundle = Some(bundle.clone());
                        }
                        Effect::Rebooted => {
                            h.pending_reboot = false;
                            h.boot_id += 1;
                        }
                        Effect::Reinstalled { to } => {
                            // inferred: the reinstall medic runs is a repair over the
                            // installed build (MSI REINSTALL=ALL, rpm --replacepkgs), which
                            // keeps the agent's data and its updated components; only a
                            // reinstall to another build is an upgrade that needs a new
                            // security update. (Clearing the update here made the host
                            // disagree with the Manager, which keeps showing it.)
                            if *to != h.build {
                                h.security_update_current = false;
                            }
                            h.build = *to;
                            h.antimalware_online = true;
                        }
                        Effect::CacheCleared => h.cache_clears += 1,
                    }
                }
            }
        }
        if ok && let Some(slot) = action.effect_slot() {
            let counts = match target {
                Target::Manager => &mut self.manager.counts,
                Target::Host(i) => &mut self.hosts[i].counts,
            };
            counts[slot] += 1;
        }
    }

    /// Applies logged entries (numbered by their line, for errors), in order.
    fn replay(
        &mut self,
        entries: impl IntoIterator<Item = (usize, Entry)>,
    ) -> Result<(), (usize, String)> {
        for (line, e) in entries {
            let Some(&target) = self.names.get(&e.host) else {
                return Err((line, format!("unknown host `{}`", e.host)));
            };
            if let (Some(step), Some(token), false) =
                (e.step, e.fence, matches!(e.result, Logged::Refused(_)))
            {
                let seen = self.fences.entry(step).or_default();
                *seen = (*seen).max(token);
            }
            if matches!(e.result, Logged::Seen | Logged::Refused(_)) {
                continue;
            }
            if e.injected {
                self.faults_mut(target).consume_first(&e.action);
                continue;
            }
            let Some(action) = Action::parse(&e.action) else {
                return Err((line, format!("unknown action `{}`", e.action)));
            };
            self.apply(target, action, e.result == Logged::Ok, e.effect.as_ref());
        }
        Ok(())
    }

    /// Durable fleets: takes the log's lock and replays what other processes appended since
    /// this one last read. The lock is held until the caller's decision is written.
    fn sync(&mut self) -> Result<Option<LogLock>, SimError> {
        let Some(log) = self.log.as_mut() else {
            return Ok(None);
        };
        let damaged = |log: &EffectLog, (line, message): (usize, String)| SimError::CorruptLog {
            path: log.path().to_owned(),
            line,
            message,
        };
        if let Some(d) = &self.damaged {
            return Err(damaged(log, d.clone()));
        }
        let held = log.lock()?;
        let entries = match log.catch_up(&held) {
            Ok(entries) => entries,
            Err(e) => {
                // Part of what was read may be lost to this process: never decide on it.
                self.damaged = Some(match &e {
                    SimError::CorruptLog { line, message, .. } => (*line, message.clone()),
                    other => (0, other.to_string()),
                });
                return Err(e);
            }
        };
        if entries.is_empty() {
            return Ok(Some(held));
        }
        if let Err(d) = self.replay(entries) {
            self.damaged = Some(d.clone());
            let log = self.log.as_ref().expect("the log was just read");
            return Err(damaged(log, d));
        }
        Ok(Some(held))
    }

    /// Writes one entry ahead (durable fleets).
    fn write(&mut self, held: Option<&LogLock>, entry: &EntryRef<'_>) -> std::io::Result<()> {
        match (self.log.as_mut(), held) {
            (Some(log), Some(held)) => log.append(held, entry),
            _ => Ok(()),
        }
    }

    /// Makes a new highest token durable before the answer, with a line of its own when
    /// nothing else is written for the request. `None` on success, else the answer.
    fn note_seen(
        &mut self,
        held: Option<&LogLock>,
        raise: Option<Fence<'_>>,
        host: &str,
        action: &str,
        args: &BTreeMap<String, String>,
    ) -> Option<SimOutcome> {
        let f = raise?;
        let entry = EntryRef {
            host,
            action,
            args,
            result: &Logged::Seen,
            effect: None,
            injected: false,
            step: Some(f.step),
            fence: Some(f.token),
        };
        if let Err(e) = self.write(held, &entry) {
            return Some(log_failure(&e));
        }
        self.raise(f);
        None
    }

    fn raise(&mut self, f: Fence<'_>) {
        match self.fences.get_mut(f.step) {
            Some(seen) => *seen = (*seen).max(f.token),
            None => {
                self.fences.insert(f.step.to_owned(), f.token);
            }
        }
    }
}

impl SimFleet {
    /// Builds the fleet from a validated inventory. With `state_path`, the fleet's state
    /// is durable: if the file exists its effect log is replayed (a torn last line is
    /// ignored and truncated away), so a second process (after the first one was
    /// SIGKILLed) sees the same world. The log refuses to be replayed onto another
    /// inventory or seed.
    pub fn open(
        inventory: &Inventory,
        config: SimConfig,
        state_path: Option<&Path>,
    ) -> Result<SimFleet, SimError> {
        let p = config.windows_reboot_probability;
        if !(0.0..=1.0).contains(&p) {
            return Err(SimError::BadProbability(p));
        }
        let mut names = HashMap::with_capacity(inventory.hosts.len() + 1);
        names.insert(inventory.manager.name.clone(), Target::Manager);
        let mut groups: Vec<GroupSim> = inventory
            .relay_groups
            .iter()
            .map(|g| GroupSim {
                name: g.name.clone(),
                offline: g.offline,
                bundle_source: g.bundle_source.clone(),
                relays: Vec::new(),
            })
            .collect();
        let group_index: HashMap<&str, usize> = inventory
            .relay_groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.name.as_str(), i))
            .collect();
        let mut hosts = Vec::with_capacity(inventory.hosts.len());
        for (i, h) in inventory.hosts.iter().enumerate() {
            if names.insert(h.name.clone(), Target::Host(i)).is_some() {
                return Err(SimError::DuplicateName(h.name.clone()));
            }
            let group = match &h.relay_group {
                None => None,
                Some(g) => match group_index.get(g.as_str()) {
                    Some(&gi) => Some(gi),
                    None => {
                        return Err(SimError::UnknownRelayGroup {
                            host: h.name.clone(),
                            group: g.clone(),
                        });
                    }
                },
            };
            if h.relay
                && let Some(gi) = group
            {
                groups[gi].relays.push(i);
            }
            // Linux has no such prerequisite; Windows has it only where the operator
            // says so (the advisory: "even hosts that imported certificates before may
            // need more").
            let certs = match h.platform {
                Platform::Linux => true,
                Platform::Windows => h.vars.get("certs").is_some_and(|v| v == "present"),
            };
            // Simulator-only host vars: Anti-Malware switched off by policy, and a reboot
            // the OS already wants (on Linux it stays: nothing in the playbook reboots Linux).
            let am_off = h.vars.get("antimalware").is_some_and(|v| v == "off");
            let am_drop = h
                .vars
                .get("antimalware")
                .is_some_and(|v| v == "offline-after-upgrade");
            let reboot = h.vars.get("reboot").is_some_and(|v| v == "pending");
            hosts.push(HostSim {
                name: h.name.clone(),
                platform: h.platform,
                os_text: h.os.clone().unwrap_or_else(|| {
                    match h.platform {
                        Platform::Linux => "Red Hat Enterprise 8 (64 bit)",
                        Platform::Windows => "Microsoft Windows Server 2019 (64 bit)",
                    }
                    .to_owned()
                }),
                relay: h.relay,
                group,
                appliance: h.protected_by_appliance,
                build: h.agent_version,
                pending_reboot: reboot && h.has_agent(),
                antimalware_online: h.has_agent(),
                am_off,
                am_drop,
                security_update_current: false,
                last_update: None,
                update_ms: PRE_RUN_UPDATE_MS,
                sha2: certs,
                root_certs: certs,
                boot_id: 0,
                upgrades: 0,
                imported_bundle: None,
                cache_clears: 0,
                last_changed: 0,
                counts: [0; EFFECT_SLOTS],
                faults: Faults::default(),
            });
        }
        let mut state = State {
            names,
            manager: ManagerSim {
                name: inventory.manager.name.clone(),
                version: inventory.manager.version,
                counts: [0; EFFECT_SLOTS],
                faults: Faults::default(),
            },
            hosts,
            groups,
            bundles: BTreeMap::new(),
            changes: 0,
            fences: HashMap::new(),
            log: None,
            damaged: None,
        };
        for f in &config.faults {
            let Some(&target) = state.names.get(f.host()) else {
                return Err(SimError::UnknownFaultHost(f.host().to_owned()));
            };
            let faults = state.faults_mut(target);
            match f {
                Fault::Unreachable { .. } => faults.unreachable = true,
                Fault::Hang { action, .. } => faults.rules.push(FaultRule {
                    action: action.clone(),
                    kind: FaultKind::Hang,
                }),
                Fault::FailTimes { action, times, .. } => faults.rules.push(FaultRule {
                    action: action.clone(),
                    kind: FaultKind::FailTimes {
                        times: *times,
                        consumed: 0,
                    },
                }),
            }
        }
        if let Some(path) = state_path {
            let (log, entries) = EffectLog::open(path, config.seed, &fingerprint(inventory))?;
            // Line 1 is the header.
            let numbered = entries.into_iter().enumerate().map(|(i, e)| (i + 2, e));
            state
                .replay(numbered)
                .map_err(|(line, message)| SimError::CorruptLog {
                    path: path.to_owned(),
                    line,
                    message,
                })?;
            state.log = Some(log);
        }
        Ok(SimFleet {
            shared: Arc::new(Shared {
                rules: Rules {
                    seed: config.seed,
                    fixed_linux: config.fixed_build_linux.clone(),
                    fixed_windows: config.fixed_build_windows.clone(),
                    reboot_probability: p,
                    direct_download: inventory.settings.direct_download_when_relays_unavailable,
                },
                state: Mutex::new(state),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // State is only mutated by `apply`, which cannot panic half-way, so a poisoned
        // lock still guards a consistent state.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Performs one action on one host (`host` is a host name, or the Manager's name for
    /// manager actions). Faults apply first; a side effect is logged (durable fleets)
    /// before it changes anything. Only successful side effects are counted.
    pub fn perform(&self, host: &str, action: &str, args: &BTreeMap<String, String>) -> SimOutcome {
        self.perform_fenced(host, action, args, None)
    }

    /// [`SimFleet::perform`] for a request that carries a fencing token (`None`: a single
    /// process, never refused, nothing more written). A token below the highest seen for
    /// its step is refused ([`SimResult::Refused`]) with no effect, and the refusal logged;
    /// a token above it is written to the log before the answer, even for a probe, so that
    /// every process (and every restart) refuses the older ones from then on. A host that
    /// does not answer never saw the token.
    pub fn perform_fenced(
        &self,
        host: &str,
        action: &str,
        args: &BTreeMap<String, String>,
        fence: Option<Fence<'_>>,
    ) -> SimOutcome {
        let mut guard = self.lock();
        let st = &mut *guard;
        let held = match st.sync() {
            Ok(held) => held,
            Err(e) => {
                return SimOutcome::failed(format!(
                    "cannot read the simulator state file, nothing was done: {e}"
                ));
            }
        };
        let held = held.as_ref();
        let Some(&target) = st.names.get(host) else {
            return SimOutcome::failed(format!("unknown host `{host}`"));
        };
        if st.faults(target).unreachable {
            return SimOutcome::of(SimResult::Unreachable);
        }
        let mut raise = None;
        if let Some(f) = fence {
            match st.fences.get(f.step) {
                Some(&seen) if f.token < seen => {
                    let message = format!(
                        "stale fencing token {} for step {}: {seen} was seen",
                        f.token, f.step
                    );
                    let entry = EntryRef {
                        host,
                        action,
                        args,
                        result: &Logged::Refused(message.clone()),
                        effect: None,
                        injected: false,
                        step: Some(f.step),
                        fence: Some(f.token),
                    };
                    // The refusal stands even if its line cannot be written: nothing was
                    // done either way, only the count of refusals would miss it.
                    let _ = st.write(held, &entry);
                    return SimOutcome::of(SimResult::Refused(message));
                }
                Some(&seen) if f.token == seen => {}
                _ => raise = Some(f),
            }
        }
        match st.faults(target).hit(action) {
            FaultHit::None => {}
            FaultHit::Unreachable => return SimOutcome::of(SimResult::Unreachable),
            FaultHit::Hang => {
                if let Some(failed) = st.note_seen(held, raise, host, action, args) {
                    return failed;
                }
                return SimOutcome::of(SimResult::Hang);
            }
            FaultHit::Fail { rule, n, times } => {
                let message = format!("injected failure {n} of {times}");
                let entry = EntryRef {
                    host,
                    action,
                    args,
                    result: &Logged::Failed(message.clone()),
                    effect: None,
                    injected: true,
                    step: fence.map(|f| f.step),
                    fence: fence.map(|f| f.token),
                };
                if let Err(e) = st.write(held, &entry) {
                    return log_failure(&e);
                }
                st.faults_mut(target).consume(rule);
                if let Some(f) = raise {
                    st.raise(f);
                }
                return SimOutcome::failed(message);
            }
        }
        let Some(act) = Action::parse(action) else {
            if let Some(failed) = st.note_seen(held, raise, host, action, args) {
                return failed;
            }
            return SimOutcome::failed(format!("unknown action `{action}`"));
        };
        let (result, effect) = match decide(&self.shared.rules, st, target, act, args) {
            Decision::Answer(outcome) => {
                if let Some(failed) = st.note_seen(held, raise, host, action, args) {
                    return failed;
                }
                return outcome;
            }
            Decision::Attempt { result, effect } => (result, effect),
        };
        let (logged, answer) = match result {
            Ok(()) => (Logged::Ok, SimOutcome::ok()),
            Err(m) => (Logged::Failed(m.clone()), SimOutcome::failed(m)),
        };
        let entry = EntryRef {
            host,
            action,
            args,
            result: &logged,
            effect: effect.as_ref(),
            injected: false,
            step: fence.map(|f| f.step),
            fence: fence.map(|f| f.token),
        };
        if let Err(e) = st.write(held, &entry) {
            return log_failure(&e);
        }
        st.apply(target, act, logged == Logged::Ok, effect.as_ref());
        if let Some(f) = raise {
            st.raise(f);
        }
        answer
    }

    /// Replays what other processes sharing this fleet's log appended since this one last
    /// read, so that the read-only views ([`SimFleet::host_state`], [`SimFleet::computers`],
    /// ...) show their effects too; [`SimFleet::perform`] does it by itself. Nothing to do
    /// for a fleet without a log.
    pub fn refresh(&self) -> Result<(), SimError> {
        self.lock().sync().map(drop)
    }

    /// A seeded, deterministic duration for (host, action, attempt), in *simulated*
    /// seconds: log-normal around the action's base estimate (the median), sigma 0.3,
    /// within three sigmas. Unknown actions take no time.
    pub fn duration_s(&self, host: &str, action: &str, attempt: u32) -> f64 {
        let Some(act) = Action::parse(action) else {
            return 0.0;
        };
        let mut r = rng::draw(
            self.shared.rules.seed,
            &[b"duration", host.as_bytes(), action.as_bytes()],
            u64::from(attempt),
        );
        rng::log_normal(act.base_duration_s(), DURATION_SIGMA, &mut r)
    }

    /// Successful side effects performed so far, per (host, action). Probes are not side
    /// effects; failed attempts change little and are not counted. Only non-zero counts
    /// appear.
    pub fn effect_counts(&self) -> BTreeMap<(String, String), u32> {
        let st = self.lock();
        let mut out = BTreeMap::new();
        let all = std::iter::once((&st.manager.name, &st.manager.counts))
            .chain(st.hosts.iter().map(|h| (&h.name, &h.counts)));
        for (name, counts) in all {
            for (slot, n) in counts.iter().enumerate() {
                if *n > 0 {
                    out.insert((name.clone(), SIDE_EFFECTS[slot].as_str().to_owned()), *n);
                }
            }
        }
        out
    }

    /// The state of one host; `None` for the Manager and unknown names.
    pub fn host_state(&self, host: &str) -> Option<SimHostState> {
        let st = self.lock();
        let Some(&Target::Host(i)) = st.names.get(host) else {
            return None;
        };
        let h = &st.hosts[i];
        Some(SimHostState {
            name: h.name.clone(),
            platform: h.platform,
            relay: h.relay,
            relay_group: h.group.map(|g| st.groups[g].name.clone()),
            protected_by_appliance: h.appliance,
            build: h.build,
            pending_reboot: h.pending_reboot,
            antimalware_online: h.antimalware_online,
            antimalware_off_by_policy: h.am_off,
            security_update_current: h.security_update_current,
            last_security_update_error: match &h.last_update {
                Some(Err(m)) => Some(m.clone()),
                _ => None,
            },
            sha2_supported: h.sha2,
            root_certs_present: h.root_certs,
            boot_id: h.boot_id,
            imported_bundle: h.imported_bundle.clone(),
            relay_cache_clears: h.cache_clears,
            last_changed: h.last_changed,
            update_ms: h.update_ms,
        })
    }

    /// The Manager's view of every computer, in inventory order.
    pub fn computers(&self) -> Vec<SimComputer> {
        let st = self.lock();
        st.hosts
            .iter()
            .enumerate()
            .map(|(i, h)| computer(i, h))
            .collect()
    }

    /// The Manager's view of the computers at positions `range` (IDs `start + 1 ..`), in
    /// inventory order; positions past the end are left out. Paged readers use this rather
    /// than [`SimFleet::computers`], which copies every computer.
    pub fn computers_in(&self, range: std::ops::Range<usize>) -> Vec<SimComputer> {
        let st = self.lock();
        let end = range.end.min(st.hosts.len());
        let start = range.start.min(end);
        st.hosts[start..end]
            .iter()
            .enumerate()
            .map(|(i, h)| computer(start + i, h))
            .collect()
    }

    /// The Manager's view of one host's computer; `None` for the Manager and unknown names.
    pub fn computer(&self, host: &str) -> Option<SimComputer> {
        let st = self.lock();
        match st.names.get(host) {
            Some(&Target::Host(i)) => Some(computer(i, &st.hosts[i])),
            _ => None,
        }
    }

    /// How many computers there are.
    pub fn computer_count(&self) -> usize {
        self.lock().hosts.len()
    }

    pub fn manager_version(&self) -> ManagerBuild {
        self.lock().manager.version
    }

    pub fn manager_name(&self) -> String {
        self.lock().manager.name.clone()
    }

    /// The relay groups with their Relays, in inventory order.
    pub fn relay_groups(&self) -> Vec<SimRelayGroup> {
        let st = self.lock();
        st.groups
            .iter()
            .enumerate()
            .map(|(i, g)| SimRelayGroup {
                id: u32::try_from(i + 1).unwrap_or(u32::MAX),
                name: g.name.clone(),
                offline: g.offline,
                bundle_source: g.bundle_source.clone(),
                relays: g.relays.iter().map(|r| st.hosts[*r].name.clone()).collect(),
            })
            .collect()
    }

    /// Update bundles made so far: name -> build of the Relay that made it.
    pub fn bundles(&self) -> BTreeMap<String, AgentBuild> {
        self.lock().bundles.clone()
    }

    /// A bundle made outside this simulated world and carried in (an air-gapped site's
    /// slice: its bundle source is in the main run's world). Not an effect of this world,
    /// so it is not logged: whoever opens the world again carries it in again.
    pub fn carry_bundle(&self, bundle: &str, build: AgentBuild) {
        self.lock()
            .bundles
            .entry(bundle.to_owned())
            .or_insert(build);
    }

    /// The DSM system setting that lets Agents download directly when no Relay answers.
    pub fn direct_download_when_relays_unavailable(&self) -> bool {
        self.shared.rules.direct_download
    }

    /// The first unaffected builds of a platform, one per version line, as configured.
    pub fn fixed_builds(&self, platform: Platform) -> &BuildLines {
        self.shared.rules.fixed(platform)
    }
}

fn log_failure(e: &std::io::Error) -> SimOutcome {
    SimOutcome::failed(format!(
        "cannot write the simulator state file, nothing was done: {e}"
    ))
}

/// The agent's overall status and its message, in the API's words: what the Manager shows
/// as `computerStatus`, and what the host's own agent state says (a real agent's state
/// light follows the same module errors and reboot requests), so the two views of one
/// simulated host never disagree.
// inferred: an agent whose Anti-Malware engine is offline is in error, one that waits for
// a reboot in warning, on both sides (ds-domain.md §2.2 documents the status values only).
fn agent_status(h: &HostSim) -> (&'static str, &'static str) {
    if h.build == AgentBuild::NONE {
        ("inactive", "Unmanaged (No Agent)")
    } else if !h.antimalware_online && !h.am_off {
        ("error", "Anti-Malware Engine Offline")
    } else if h.pending_reboot {
        ("warning", "Reboot Required")
    } else {
        ("active", "Managed (Online)")
    }
}

fn computer(i: usize, h: &HostSim) -> SimComputer {
    let has_agent = h.build != AgentBuild::NONE;
    let (agent_status, agent_status_message) = agent_status(h);
    let (anti_malware_status, anti_malware_status_message) = if !has_agent {
        ("inactive", "Not Activated")
    } else if h.am_off {
        ("inactive", "Off")
    } else if h.antimalware_online {
        ("active", "Anti-Malware: On, Real Time")
    } else {
        ("error", "Anti-Malware Engine Offline")
    };
    // The Manager shows the last update's result: an upgrade does not reset it, so the
    // "up to date" from before the run (or before the upgrade) stays until the next update.
    let (security_update_status, security_update_message) = match &h.last_update {
        _ if !has_agent => ("inactive", String::new()),
        Some(Err(m)) => ("error", m.clone()),
        Some(Ok(())) => ("active", "Security Update: Succeeded".to_owned()),
        None => ("active", "Up-to-date".to_owned()),
    };
    SimComputer {
        id: i as u64 + 1,
        host_name: h.name.clone(),
        agent_version: h.build.to_string(),
        relay: h.relay,
        relay_list_id: h
            .group
            .map_or(0, |g| u32::try_from(g + 1).unwrap_or(u32::MAX)),
        platform: h.os_text.clone(),
        appliance_protected: h.appliance,
        agent_status,
        agent_status_message,
        anti_malware_state: if h.am_off || !has_agent { "off" } else { "on" },
        anti_malware_status,
        anti_malware_status_message,
        security_update_status,
        security_update_message,
        last_changed: h.last_changed,
        update_ms: h.update_ms,
    }
}

/// Identifies the inventory's initial world (names, roles, builds, groups, certificates)
/// in the log header, so a log is never replayed onto a different fleet.
fn fingerprint(inv: &Inventory) -> String {
    let mut h = rng::mix(
        0,
        &[
            inv.manager.name.as_bytes(),
            inv.manager.version.to_string().as_bytes(),
        ],
        inv.hosts.len() as u64,
    );
    for host in &inv.hosts {
        let build = host.agent_version.to_string();
        let certs = host.vars.get("certs").map_or("", String::as_str);
        h = rng::mix(
            h,
            &[
                host.name.as_bytes(),
                host.platform.as_str().as_bytes(),
                build.as_bytes(),
                host.relay_group.as_deref().unwrap_or("").as_bytes(),
                certs.as_bytes(),
            ],
            u64::from(host.relay),
        );
        let am = host.vars.get("antimalware").map_or("", String::as_str);
        let reboot = host.vars.get("reboot").map_or("", String::as_str);
        if !am.is_empty() || !reboot.is_empty() {
            h = rng::mix(h, &[am.as_bytes(), reboot.as_bytes()], 1);
        }
    }
    for g in &inv.relay_groups {
        h = rng::mix(
            h,
            &[
                g.name.as_bytes(),
                g.bundle_source.as_deref().unwrap_or("").as_bytes(),
            ],
            u64::from(g.offline),
        );
    }
    format!("{h:016x}")
}

fn arg<'a>(
    args: &'a BTreeMap<String, String>,
    key: &str,
    action: Action,
) -> Result<&'a str, String> {
    args.get(key)
        .map(String::as_str)
        .ok_or_else(|| format!("{} needs the argument `{key}`", action.as_str()))
}

fn parse_arg<T: std::str::FromStr>(
    args: &BTreeMap<String, String>,
    key: &str,
    action: Action,
) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    let raw = arg(args, key, action)?;
    raw.parse()
        .map_err(|e| format!("{}: bad argument `{key}`: {e}", action.as_str()))
}

/// The host's own word for Anti-Malware (what dsa_query's `Component.AM.mode` and
/// `driverOffline` say): `off` when switched off by policy (or there is no agent, as the
/// Manager's `antiMalware.state` says), else `online` or `offline`.
fn antimalware_text(h: &HostSim) -> Value {
    Value::Str(
        if h.am_off || h.build == AgentBuild::NONE {
            "off"
        } else if h.antimalware_online {
            "online"
        } else {
            "offline"
        }
        .to_owned(),
    )
}

/// Now, Unix milliseconds: when a security update ends (logged with it, so replay agrees).
fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Decides what an action does, without changing anything.
fn decide(
    rules: &Rules,
    st: &State,
    target: Target,
    act: Action,
    args: &BTreeMap<String, String>,
) -> Decision {
    use Decision::{Answer, Attempt};
    let refuse = |m: String| Answer(SimOutcome::failed(m));
    if act == Action::Noop {
        return Answer(SimOutcome::ok());
    }
    let i = match target {
        Target::Manager => return decide_manager(st, act, args),
        Target::Host(i) => i,
    };
    let h = &st.hosts[i];
    if act.on_manager() {
        return refuse(format!(
            "{} runs on the manager `{}`, not on host `{}`",
            act.as_str(),
            st.manager.name,
            h.name
        ));
    }
    let group = h.group.map(|g| &st.groups[g]);
    match act {
        // Handled above; listed so that the match stays exhaustive.
        Action::Noop | Action::ManagerVersion | Action::ManagerUpgrade => Answer(SimOutcome::ok()),
        Action::AgentVersion => {
            Answer(SimOutcome::ok().fact("agent_version", Value::Agent(h.build)))
        }
        Action::PendingReboot => {
            Answer(SimOutcome::ok().fact("pending_reboot", Value::Bool(h.pending_reboot)))
        }
        Action::AgentStatus => {
            let (status, _) = agent_status(h);
            Answer(
                SimOutcome::ok()
                    .fact("antimalware", antimalware_text(h))
                    .fact("agent_status", Value::Str(status.to_owned())),
            )
        }
        Action::WindowsCerts => Answer(
            SimOutcome::ok()
                .fact("sha2_supported", Value::Bool(h.sha2))
                .fact("root_certs_present", Value::Bool(h.root_certs)),
        ),
        Action::SecurityStatus => Answer(SimOutcome::ok().fact(
            "security_update_current",
            Value::Bool(h.security_update_current),
        )),
        // Tells a resumed run whether an export or import already happened.
        Action::BundleStatus => {
            let bundle = match arg(args, "bundle", act) {
                Ok(b) => b.to_owned(),
                Err(m) => return refuse(m),
            };
            Answer(
                SimOutcome::ok()
                    .fact(
                        "bundle_exported",
                        Value::Bool(st.bundles.contains_key(&bundle)),
                    )
                    .fact(
                        "bundle_imported",
                        Value::Bool(h.imported_bundle.as_deref() == Some(bundle.as_str())),
                    ),
            )
        }
        Action::Verify => {
            let min: AgentBuild = match parse_arg(args, "min_build", act) {
                Ok(b) => b,
                Err(m) => return refuse(m),
            };
            // The host's own view. Anti-Malware off by policy and a pending reboot on Linux
            // are not failures (DESIGN rule 7); the `sim` driver judges this view together
            // with the Manager's, as a real run does.
            let mut problems = Vec::new();
            if h.build < min {
                problems.push(format!("build {} is below {min}", h.build));
            }
            if !h.antimalware_online && !h.am_off {
                problems.push("anti-malware engine offline".to_owned());
            }
            if !h.security_update_current {
                problems.push("no successful security update since the last upgrade".to_owned());
            }
            if h.pending_reboot && h.platform == Platform::Windows {
                problems.push("a reboot is pending".to_owned());
            }
            let mut out = if problems.is_empty() {
                SimOutcome::ok()
            } else {
                SimOutcome::failed(problems.join("; "))
            };
            let (agent_status, _) = agent_status(h);
            out = out
                .fact("agent_version", Value::Agent(h.build))
                .fact("agent_status", Value::Str(agent_status.to_owned()))
                .fact("antimalware", antimalware_text(h))
                .fact(
                    "security_update_current",
                    Value::Bool(h.security_update_current),
                )
                .fact("pending_reboot", Value::Bool(h.pending_reboot));
            if let Some(Err(m)) = &h.last_update
                && !h.security_update_current
            {
                out = out.fact("security_update_error", Value::Str(m.clone()));
            }
            Answer(out)
        }
        Action::WindowsPrereq => {
            if h.platform != Platform::Windows {
                return refuse("not a windows host".to_owned());
            }
            Attempt {
                result: Ok(()),
                effect: Some(Effect::Certificates),
            }
        }
        Action::AgentUpgrade => {
            let to: AgentBuild = match parse_arg(args, "to", act) {
                Ok(b) => b,
                Err(m) => return refuse(m),
            };
            let manager_min: Option<ManagerBuild> = match args.get("manager_min") {
                None => None,
                Some(_) => match parse_arg(args, "manager_min", act) {
                    Ok(b) => Some(b),
                    Err(m) => return refuse(m),
                },
            };
            if to < h.build {
                return Attempt {
                    result: Err(format!(
                        "refusing to downgrade the agent from {} to {to}",
                        h.build
                    )),
                    effect: None,
                };
            }
            if let Some(min) = manager_min
                && st.manager.version < min
            {
                return Attempt {
                    result: Err(format!(
                        "the manager runs {} but build {to} needs manager {min} or later: upgrade the manager first",
                        st.manager.version
                    )),
                    effect: None,
                };
            }
            let fresh = h.build == AgentBuild::NONE;
            let (pending_reboot, antimalware_online) = match h.platform {
                Platform::Linux => (h.pending_reboot, h.antimalware_online || fresh),
                Platform::Windows => {
                    let coin = rng::unit(&mut rng::draw(
                        rules.seed,
                        &[b"reboot", h.name.as_bytes()],
                        u64::from(h.upgrades),
                    ));
                    let reboot = h.pending_reboot || coin < rules.reboot_probability;
                    // The advisory: without SHA-2 support and the root certificates the
                    // upgraded engine cannot load, "Anti-Malware offline". ds-domain.md §1.3:
                    // it appears on an upgrade with Anti-Malware on, so not when a policy
                    // switches it off.
                    let am = if h.am_off {
                        h.antimalware_online
                    } else if h.am_drop {
                        false
                    } else {
                        h.certs_ok() && (h.antimalware_online || fresh)
                    };
                    (reboot, am)
                }
            };
            Attempt {
                result: Ok(()),
                effect: Some(Effect::Upgraded {
                    to,
                    pending_reboot,
                    antimalware_online,
                }),
            }
        }
        Action::SecurityUpdate => {
            let at_ms = wall_ms();
            let failed = |message: String| Attempt {
                result: Err(message.clone()),
                effect: Some(Effect::UpdateFailed { message, at_ms }),
            };
            let succeeded = Attempt {
                result: Ok(()),
                effect: Some(Effect::UpdateSucceeded { at_ms }),
            };
            if h.build == AgentBuild::NONE {
                return refuse("no agent installed".to_owned());
            }
            match args.get("source").map(String::as_str) {
                Some("bundle") => {
                    if h.imported_bundle.is_some() {
                        succeeded
                    } else {
                        failed("no bundle imported".to_owned())
                    }
                }
                Some(other) => refuse(format!(
                    "security-update: unknown source `{other}` (use `bundle`, or no source for the relays/ActiveUpdate)"
                )),
                None if h.relay => {
                    if let Some(g) = group.filter(|g| g.offline) {
                        failed(format!(
                            "relay group `{}` is offline: import an update bundle and update with source=bundle",
                            g.name
                        ))
                    } else if rules.affected(h.platform, h.build) {
                        failed(CERT_EXPIRE_ERROR.to_owned())
                    } else {
                        succeeded
                    }
                }
                None => {
                    // An Agent downloads through the Relays of its group; each one below
                    // the fixed build breaks the chain.
                    let bad_relay = group.and_then(|g| {
                        g.relays
                            .iter()
                            .map(|r| &st.hosts[*r])
                            .find(|r| rules.affected(r.platform, r.build))
                    });
                    if let Some(r) = bad_relay {
                        failed(format!(
                            "{CERT_EXPIRE_ERROR} (through relay `{}`, build {})",
                            r.name, r.build
                        ))
                    } else if rules.direct_download && rules.affected(h.platform, h.build) {
                        failed(format!(
                            "{CERT_EXPIRE_ERROR} (direct download from the primary update source, own build {})",
                            h.build
                        ))
                    } else {
                        succeeded
                    }
                }
            }
        }
        Action::BundleExport => {
            let bundle = match arg(args, "bundle", act) {
                Ok(b) => b.to_owned(),
                Err(m) => return refuse(m),
            };
            let result = if !h.relay {
                Err(format!("`{}` is not a relay", h.name))
            } else if let Some(g) = group.filter(|g| g.offline) {
                Err(format!(
                    "relay group `{}` is offline: a bundle is made on a connected relay",
                    g.name
                ))
            } else if !h.security_update_current {
                Err("no successful security update since the last upgrade: nothing current to bundle".to_owned())
            } else {
                Ok(())
            };
            Decision::attempt(
                result,
                Effect::BundleMade {
                    bundle,
                    build: h.build,
                },
            )
        }
        Action::BundleImport => {
            let bundle = match arg(args, "bundle", act) {
                Ok(b) => b.to_owned(),
                Err(m) => return refuse(m),
            };
            let result = if !h.relay || !group.is_some_and(|g| g.offline) {
                Err(format!("`{}` is not a relay of an offline group", h.name))
            } else {
                match st.bundles.get(&bundle) {
                    None => Err(format!("bundle `{bundle}` does not exist")),
                    Some(b) if *b != h.build => Err(format!(
                        "bundle made by build {b} cannot be imported on build {}",
                        h.build
                    )),
                    Some(_) => Ok(()),
                }
            };
            Decision::attempt(
                result,
                Effect::BundleImported {
                    bundle,
                    build: h.build,
                },
            )
        }
        Action::Reboot => Attempt {
            result: Ok(()),
            effect: Some(Effect::Rebooted),
        },
        Action::Reinstall => {
            let to: AgentBuild = if args.contains_key("to") {
                match parse_arg(args, "to", act) {
                    Ok(b) => b,
                    Err(m) => return refuse(m),
                }
            } else {
                h.build
            };
            if h.certs_ok() {
                Attempt {
                    result: Ok(()),
                    effect: Some(Effect::Reinstalled { to }),
                }
            } else {
                Attempt {
                    result: Err("anti-malware engine still offline after the reinstall: SHA-2 support or the root certificates are missing (run windows-prereq)".to_owned()),
                    effect: None,
                }
            }
        }
        Action::CacheClear => {
            if !h.relay {
                return refuse(format!(
                    "`{}` is not a relay: it has no relay cache",
                    h.name
                ));
            }
            Attempt {
                result: Ok(()),
                effect: Some(Effect::CacheCleared),
            }
        }
    }
}

fn decide_manager(st: &State, act: Action, args: &BTreeMap<String, String>) -> Decision {
    match act {
        Action::Noop => Decision::Answer(SimOutcome::ok()),
        Action::ManagerVersion => Decision::Answer(
            SimOutcome::ok().fact("manager_version", Value::Manager(st.manager.version)),
        ),
        Action::ManagerUpgrade => {
            let to: ManagerBuild = match parse_arg(args, "to", act) {
                Ok(b) => b,
                Err(m) => return Decision::Answer(SimOutcome::failed(m)),
            };
            if to < st.manager.version {
                Decision::Attempt {
                    result: Err(format!(
                        "refusing to downgrade the manager from {} to {to}",
                        st.manager.version
                    )),
                    effect: None,
                }
            } else {
                Decision::Attempt {
                    result: Ok(()),
                    effect: Some(Effect::ManagerVersion { to }),
                }
            }
        }
        _ => Decision::Answer(SimOutcome::failed(format!(
            "{} runs on agent hosts, and `{}` is the manager",
            act.as_str(),
            st.manager.name
        ))),
    }
}
