//! The `dsm` driver: actions that go through the Manager's REST API.
//!
//! - `security-update`: create a run-now `check-for-security-updates` task for the host's
//!   computer, then wait until its `securityUpdates.lastChanged` moves past the value read
//!   before the task was created; `updateStatus` then says how it ended (`active`: ok,
//!   `error`: failed with the Manager's message). Fact `security_update_current`. When the
//!   computer's `tasks.agentTasks` already shows a security update (one a killed run
//!   started), no task is created: that update is awaited the same way.
//! - `security-status`: fact `security_update_current`, read once no security update is in
//!   progress on the computer: `updateStatus.status == active` **and** the update is newer
//!   than the work before it on the host: `lastChanged` after the request's `after_ms` (when
//!   the host's previous step, e.g. the upgrade, finished), or the end of the update this
//!   driver ran for the same step. The Manager keeps showing the "up to date" from before
//!   an upgrade, which must never count as the update after it.
//! - `agent-status`: facts `antimalware` (`online`, `off` by policy, `offline` or
//!   `unverified`, mapped by `crate::verify`) and `agent_status` (`computerStatus.agentStatus`).
//! - `agent-version`: fact `agent_version` (`agentVersion`).
//! - `manager-version`: fact `manager_version`, from `X-DSM-Version`.
//!
//! Why a shared poller: a Manager is one endpoint for the whole fleet and rate-limits per
//! key, so polling per host would grow with the fleet. Every reading of a computer's state
//! (the baseline before a task, completion, and the status probes) registers with one
//! poller task, which sends **one** `POST /computers/search` per poll interval covering the
//! ID range of every computer waiting, with the expansions all readers need, and answers
//! them all. Hosts are mapped to computers by `hostName`, through one paged listing cached
//! for the run (reloaded at most once per poll interval when a name is missing).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use medic_exec::{ActionFuture, ActionReply, ActionRequest, ActionStatus, Driver};
use medic_model::{AgentBuild, Value};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::client::{DsmClient, DsmError};
use super::model::Computer;

/// How the `dsm` driver polls.
#[derive(Clone, Copy, Debug)]
pub struct DsmDriverConfig {
    /// At most one search per interval, whatever the number of computers waiting.
    pub poll_interval: Duration,
    /// `maxItems` of the searches (Managers default to and cap at 5000).
    pub page_size: u32,
}

impl Default for DsmDriverConfig {
    fn default() -> Self {
        DsmDriverConfig {
            poll_interval: Duration::from_secs(10),
            page_size: 5000,
        }
    }
}

/// The driver. Cheap to clone; clones share the client, the host map and the poller.
#[derive(Clone)]
pub struct DsmDriver {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DsmDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DsmDriver")
            .field("client", &self.inner.client)
            .finish_non_exhaustive()
    }
}

struct Inner {
    client: DsmClient,
    config: DsmDriverConfig,
    ids: tokio::sync::Mutex<IdCache>,
    poller: Arc<Poller>,
    /// Step -> the `lastChanged` at which the security update this driver ran for it was
    /// seen ending: the step's own update, whatever the clocks say.
    own_updates: Mutex<HashMap<String, i64>>,
}

#[derive(Default)]
struct IdCache {
    by_name: HashMap<String, Vec<i64>>,
    loaded_at: Option<Instant>,
}

type Reply = Result<Computer, String>;

/// The shared poller: readers register (computer ID, reply channel); one task answers them
/// in batches.
struct Poller {
    client: DsmClient,
    config: DsmDriverConfig,
    state: Mutex<PollState>,
}

#[derive(Default)]
struct PollState {
    waiting: Vec<(i64, oneshot::Sender<Reply>)>,
    running: bool,
    searches: u64,
    /// When the last search was sent: kept here, not in the task, so that a poller that
    /// stopped (nobody waiting) and restarts still keeps the interval.
    last: Option<Instant>,
}

impl Poller {
    fn lock(&self) -> std::sync::MutexGuard<'_, PollState> {
        // Pushes and takes of a Vec: always consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The computer's state as of the next batched search.
    async fn read(self: &Arc<Self>, id: i64) -> Reply {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut st = self.lock();
            st.waiting.push((id, tx));
            !std::mem::replace(&mut st.running, true)
        };
        if start {
            tokio::spawn(self.clone().run());
        }
        rx.await
            .unwrap_or_else(|_| Err("the dsm poller stopped".to_owned()))
    }

    async fn run(self: Arc<Self>) {
        loop {
            let last = {
                let mut st = self.lock();
                st.waiting.retain(|(_, tx)| !tx.is_closed());
                if st.waiting.is_empty() {
                    st.running = false;
                    return;
                }
                st.last
            };
            if let Some(l) = last {
                tokio::time::sleep_until(l + self.config.poll_interval).await;
            }
            let batch: Vec<(i64, oneshot::Sender<Reply>)> = {
                let mut st = self.lock();
                std::mem::take(&mut st.waiting)
                    .into_iter()
                    .filter(|(_, tx)| !tx.is_closed())
                    .collect()
            };
            if batch.is_empty() {
                continue;
            }
            {
                let mut st = self.lock();
                st.last = Some(Instant::now());
                st.searches += 1;
            }
            let (min, max) = batch
                .iter()
                .fold((i64::MAX, i64::MIN), |(lo, hi), (id, _)| {
                    (lo.min(*id), hi.max(*id))
                });
            let found = self
                .client
                .poll_computers(min, max, self.config.page_size)
                .await;
            match found {
                Ok(list) => {
                    let by_id: HashMap<i64, &Computer> = list.iter().map(|c| (c.id, c)).collect();
                    for (id, tx) in batch {
                        let r = by_id
                            .get(&id)
                            .map(|c| (*c).clone())
                            .ok_or_else(|| format!("computer {id} is no longer on the manager"));
                        let _ = tx.send(r);
                    }
                }
                Err(e) => {
                    let m = e.to_string();
                    for (_, tx) in batch {
                        let _ = tx.send(Err(m.clone()));
                    }
                }
            }
        }
    }
}

/// How an action failed before it could say anything better.
enum Fail {
    Unreachable(String),
    Failed(String),
}

impl From<DsmError> for Fail {
    fn from(e: DsmError) -> Fail {
        if e.is_unreachable() {
            Fail::Unreachable(e.to_string())
        } else {
            Fail::Failed(e.to_string())
        }
    }
}

impl Fail {
    fn reply(self) -> ActionReply {
        match self {
            Fail::Unreachable(m) => ActionReply {
                status: ActionStatus::Unreachable(m),
                facts: BTreeMap::new(),
            },
            Fail::Failed(m) => ActionReply::failed(m),
        }
    }
}

fn update_status(c: &Computer) -> (String, String) {
    let u = c
        .security_updates
        .as_ref()
        .and_then(|s| s.update_status.as_ref());
    (
        u.and_then(|u| u.status.clone()).unwrap_or_default(),
        u.and_then(|u| u.status_message.clone()).unwrap_or_default(),
    )
}

fn last_changed(c: &Computer) -> i64 {
    c.security_updates
        .as_ref()
        .and_then(|s| s.last_changed)
        .unwrap_or(0)
}

fn reply_with(status: ActionStatus, facts: &[(&str, Value)]) -> ActionReply {
    ActionReply {
        status,
        facts: facts
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    }
}

impl DsmDriver {
    pub fn new(client: DsmClient, config: DsmDriverConfig) -> DsmDriver {
        DsmDriver {
            inner: Arc::new(Inner {
                poller: Arc::new(Poller {
                    client: client.clone(),
                    config,
                    state: Mutex::new(PollState::default()),
                }),
                client,
                config,
                ids: tokio::sync::Mutex::new(IdCache::default()),
                own_updates: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn client(&self) -> &DsmClient {
        &self.inner.client
    }

    /// Batched searches sent by the poller so far.
    pub fn poll_searches(&self) -> u64 {
        self.inner.poller.lock().searches
    }

    /// The computer ID of a host, by `hostName`.
    async fn computer_id(&self, host: &str) -> Result<i64, DsmError> {
        let mut cache = self.inner.ids.lock().await;
        let stale = cache
            .loaded_at
            .is_none_or(|t| t.elapsed() >= self.inner.config.poll_interval);
        if !cache.by_name.contains_key(host) && stale {
            let list = self
                .inner
                .client
                .list_computers(self.inner.config.page_size, &["none"])
                .await?;
            let mut by_name: HashMap<String, Vec<i64>> = HashMap::new();
            for c in list {
                if let Some(n) = c.host_name {
                    by_name.entry(n).or_default().push(c.id);
                }
            }
            cache.by_name = by_name;
            cache.loaded_at = Some(Instant::now());
        }
        match cache.by_name.get(host).map(Vec::as_slice) {
            Some([id]) => Ok(*id),
            Some(ids) if !ids.is_empty() => Err(DsmError::AmbiguousComputer {
                name: host.to_owned(),
                count: ids.len(),
                ids: ids
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
            _ => Err(DsmError::UnknownComputer(host.to_owned())),
        }
    }

    async fn read(&self, host: &str) -> Result<(i64, Computer), Fail> {
        let id = self.computer_id(host).await?;
        let c = self.inner.poller.read(id).await.map_err(Fail::Failed)?;
        Ok((id, c))
    }

    /// The Manager's view of a host's computer, from the next batched search (one search
    /// per poll interval for every host being read).
    pub(crate) async fn computer(&self, host: &str) -> Result<Computer, String> {
        match self.read(host).await {
            Ok((_, c)) => Ok(c),
            Err(Fail::Unreachable(m) | Fail::Failed(m)) => Err(m),
        }
    }

    fn own_updates(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        // Inserts and reads of a map: always consistent.
        self.inner
            .own_updates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the computer's security update status is one that ended after the work
    /// before it on the host (see the module's `security-status`).
    fn fresh(&self, req: &ActionRequest, c: &Computer) -> bool {
        let changed = last_changed(c);
        // inferred: `lastChanged` is Unix milliseconds on the Manager's clock, which agrees
        // with medic's (NTP); ds-domain.md §2.2 gives the field and its unit only. The
        // step's own update does not depend on that.
        let after_previous = req.after_ms.is_some_and(|after| changed > after);
        let own = self
            .own_updates()
            .get(&req.step)
            .is_some_and(|seen| changed >= *seen);
        after_previous || own
    }

    async fn security_update(&self, req: &ActionRequest, host: &str) -> Result<ActionReply, Fail> {
        if let Some(source) = req.args.get("source") {
            return Err(Fail::Failed(format!(
                "the dsm driver updates through the manager; a security update from source `{source}` runs on the host (driver ssh)"
            )));
        }
        let (id, before) = self.read(host).await?;
        let baseline = last_changed(&before);
        // An update already running is awaited, not started again: a run killed while the
        // Manager ran one leaves its step `running`, the resume's re-probe finds the update
        // not yet current, and a second task would update the computer twice. The same
        // holds for an attempt that timed out while the Manager went on.
        if !before.security_update_in_progress() {
            let name = format!(
                "medic security update {host} ({}, attempt {})",
                req.step, req.attempt
            );
            self.inner.client.run_security_update(id, &name).await?;
        }
        loop {
            let (_, now) = self.read(host).await?;
            if last_changed(&now) <= baseline {
                continue;
            }
            let (status, message) = update_status(&now);
            let current = status == "active";
            self.own_updates()
                .insert(req.step.clone(), last_changed(&now));
            let st = match status.as_str() {
                "active" => ActionStatus::Ok,
                "error" => ActionStatus::Failed(if message.is_empty() {
                    "the security update failed (no message from the manager)".to_owned()
                } else {
                    message
                }),
                other => ActionStatus::Failed(format!(
                    "the security update ended with status `{other}`: {message}"
                )),
            };
            return Ok(reply_with(
                st,
                &[("security_update_current", Value::Bool(current))],
            ));
        }
    }

    async fn act(&self, req: &ActionRequest) -> Result<ActionReply, Fail> {
        let host = req.host.as_ref().map(|h| h.name.as_str());
        let need_host = || {
            host.ok_or_else(|| {
                Fail::Failed(format!(
                    "{} needs a host (a computer of the manager)",
                    req.action
                ))
            })
        };
        match req.action.as_str() {
            "noop" => Ok(ActionReply::ok()),
            "manager-version" => {
                let v = self.inner.client.manager_version().await?;
                Ok(reply_with(
                    ActionStatus::Ok,
                    &[("manager_version", Value::Manager(v))],
                ))
            }
            "security-update" => self.security_update(req, need_host()?).await,
            "security-status" => {
                let host = need_host()?;
                // While the Manager runs an update, the status is about to change: answer
                // once it has ended. Otherwise a resume re-probing the update of a killed run
                // reads "not current", and by the time it acts that update may be over, so
                // nothing shows in progress and a second one starts.
                let c = loop {
                    let (_, c) = self.read(host).await?;
                    if !c.security_update_in_progress() {
                        break c;
                    }
                };
                let (status, _) = update_status(&c);
                let current = status == "active" && self.fresh(req, &c);
                Ok(reply_with(
                    ActionStatus::Ok,
                    &[("security_update_current", Value::Bool(current))],
                ))
            }
            "agent-status" => {
                let (_, c) = self.read(need_host()?).await?;
                let f = crate::verify::ManagerFields::of_computer(&c);
                // Only the advisory's "Anti-Malware offline" reads `offline` (the reinstall
                // guard's word); off by policy reads `off`, anything unknown `unverified`.
                let am = crate::verify::manager_am(f.am_state, f.am_status, f.am_message);
                let agent = c
                    .computer_status
                    .as_ref()
                    .and_then(|s| s.agent_status.clone())
                    .unwrap_or_default();
                Ok(reply_with(
                    ActionStatus::Ok,
                    &[
                        ("antimalware", Value::Str(am.word().to_owned())),
                        ("agent_status", Value::Str(agent)),
                    ],
                ))
            }
            "agent-version" => {
                let (_, c) = self.read(need_host()?).await?;
                let raw = c.agent_version.unwrap_or_default();
                let build: AgentBuild = raw.parse().map_err(|e| {
                    Fail::Failed(format!("the manager reports agentVersion `{raw}`: {e}"))
                })?;
                Ok(reply_with(
                    ActionStatus::Ok,
                    &[("agent_version", Value::Agent(build))],
                ))
            }
            other => Err(Fail::Failed(format!(
                "the dsm driver cannot run `{other}`: it runs security-update, security-status, agent-status, agent-version and manager-version"
            ))),
        }
    }
}

impl Driver for DsmDriver {
    fn run(&self, req: ActionRequest) -> ActionFuture<'_> {
        Box::pin(async move {
            match self.act(&req).await {
                Ok(r) => r,
                Err(f) => f.reply(),
            }
        })
    }

    fn idempotent(&self, action: &str) -> bool {
        crate::actions::idempotent(crate::DSM_ACTIONS, action)
    }
}
