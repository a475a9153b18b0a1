//! Workers by zone (`medic worker`): the processes that serve one run whose journal is in
//! PostgreSQL, each in its network zone.
//!
//! Two roles share a process. **Serving**: claim the driver calls of this zone from the
//! run's queue (`medic_journal_pg::work`), run them with the run's own drivers (built from
//! its recorded inputs, as `resume` builds them), renew the leases by heartbeat, and write
//! each reply only while the call still carries the fencing token it was claimed with.
//! **Coordinating**: one process at a time (whoever holds the run's writer lock, a
//! PostgreSQL advisory lock that dies with its connection) runs the executor itself, as
//! `medic resume` would, with every driver replaced by a [`Hub`] driver that queues the
//! call in the zone of its host and waits for the reply. Gates, waves, budgets and the
//! window are the executor's, so they are decided in that one place; when the coordinator
//! dies, another worker takes the lock and resumes the run from the journal.
//!
//! A call whose worker was lost (its lease ran out) is run again by the next claimant
//! only if the action is idempotent; otherwise it is answered
//! [`ActionStatus::Lost`](medic_exec::ActionStatus::Lost) and the attempt asks the step's
//! check whether the work is done.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use medic_exec::{ActionReply, ActionRequest, ActionStatus, Driver, Drivers, ManualAsk, Plan};
use medic_journal::{JournalRead, meta_keys};
use medic_journal_pg::PgTarget;
use medic_journal_pg::work::{Claimed, Finish, NewWork, WorkQueue};
use medic_model::Value;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::journal::JournalTarget;
use crate::run::{INPUTS, Inputs};
use crate::{Error, bad, internal};

/// What a worker is asked to do (its journal is given apart: a URL from the environment
/// carries a password).
#[derive(Clone, Debug)]
pub struct Spec {
    /// The zones whose calls this worker runs (hosts' zones; `default` for the hosts
    /// without one and the calls without a host, the Manager's).
    pub zones: Vec<String>,
    /// At most this many calls at once in this process.
    pub max_parallel: usize,
    /// How long a claim holds without a heartbeat; renewed every third of it.
    pub lease: Duration,
    /// How the worker is named in the database (unique per run).
    pub name: String,
}

/// A worker ready to serve: the run, its plan and drivers.
pub struct Worker {
    pub spec: Spec,
    /// The run's database, naming the run (with the password it was given, if any).
    pub target: PgTarget,
    pub run_id: String,
    pub plan: Arc<Plan>,
    pub drivers: Drivers,
    /// How the run stood when the worker started (its recorded outcome): a run that
    /// ends (stops) after that is left alone, never resumed by a worker on its own.
    initial: Option<String>,
}

/// What a worker says as it goes: the CLI prints these lines.
pub type Say = Arc<dyn Fn(String) + Send + Sync>;

/// Opens the run of `target` (a `postgres://` journal naming the run, or a database of
/// one run) to serve it: its plan and recorded inputs read back, the drivers built from
/// them (a rehearsal's simulated fleet shared through its effect log by every worker on
/// this machine).
pub fn open(spec: Spec, target: JournalTarget) -> Result<Worker, Error> {
    let JournalTarget::Postgres(pg) = &target else {
        return Err(bad(
            "--journal",
            format!(
                "{} is a file; workers share a run through PostgreSQL",
                target.location().display()
            ),
            "pass the run's postgres:// journal URL (`medic apply --workers` prints it)",
        ));
    };
    if spec.zones.is_empty() || spec.zones.iter().any(String::is_empty) {
        return Err(bad(
            "--zone",
            "a zone is empty",
            "name zones of the inventory",
        ));
    }
    let reader = target.reader(false)?;
    let run_id = reader
        .meta(meta_keys::RUN_ID)
        .map_err(|e| internal(e.to_string()))?
        .unwrap_or_default();
    let pg = pg.with_run(&run_id);
    let inputs: Inputs = serde_json::from_str(
        &reader
            .meta(INPUTS)
            .map_err(|e| internal(e.to_string()))?
            .unwrap_or_default(),
    )
    .map_err(|e| internal(format!("the run's recorded inputs cannot be read: {e}")))?;
    let plan = match &reader {
        crate::journal::AnyReader::Postgres(r) => medic_exec::read_plan(r),
        crate::journal::AnyReader::Sqlite(r) => medic_exec::read_plan(r),
    }
    .map_err(|e| internal(e.to_string()))?;
    let initial = reader
        .meta(crate::status::OUTCOME)
        .map_err(|e| internal(e.to_string()))?;
    drop(reader);
    let zones = zones(&plan);
    let unknown: Vec<&str> = spec
        .zones
        .iter()
        .map(String::as_str)
        .filter(|z| *z != medic_model::DEFAULT_ZONE && !zones.contains(z))
        .collect();
    if !unknown.is_empty() {
        return Err(bad(
            "--zone",
            format!(
                "the run has no zone {} (its zones: {})",
                unknown.join(", "),
                zones.iter().copied().collect::<Vec<_>>().join(", ")
            ),
            "name zones of the run",
        ));
    }
    let base =
        JournalTarget::Postgres(Box::new(pg.clone())).local_base(&run_id, Some(&inputs.events));
    let drivers = crate::drivers::build(&plan, &inputs, Some(&base), None)?;
    Ok(Worker {
        spec,
        target: pg,
        run_id,
        plan: Arc::new(plan),
        drivers,
        initial,
    })
}

/// The zones of the plan's steps (a step's host's zone; `default` for a step without a
/// host): the zones the run needs workers in.
pub fn zones(plan: &Plan) -> std::collections::BTreeSet<&str> {
    plan.steps()
        .iter()
        .map(|s| {
            s.host
                .map_or(medic_model::DEFAULT_ZONE, |h| plan.host(h).zone_name())
        })
        .collect()
}

/// The zone a call runs in: its host's; a call without a host (the Manager's) runs in the
/// default zone.
fn zone_of(req: &ActionRequest) -> String {
    req.host
        .as_ref()
        .map_or(medic_model::DEFAULT_ZONE, |h| h.zone_name())
        .to_owned()
}

/// A call as queued: what the request carries besides its step, host and action.
#[derive(Serialize, Deserialize)]
struct Call {
    args: BTreeMap<String, String>,
    attempt: u32,
    after_ms: Option<i64>,
}

/// A reply as written back.
#[derive(Serialize, Deserialize)]
struct Reply {
    status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    facts: BTreeMap<String, Fact>,
}

/// A fact with its type, so that a build compares as a build on the coordinator.
#[derive(Serialize, Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "lowercase")]
enum Fact {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    Agent(String),
    Manager(String),
    Duration(u64),
    List(Vec<String>),
}

fn encode_reply(r: &ActionReply) -> String {
    let (status, message) = match &r.status {
        ActionStatus::Ok => ("ok", None),
        ActionStatus::Failed(m) => ("failed", Some(m.clone())),
        ActionStatus::Unreachable(m) => ("unreachable", Some(m.clone())),
        ActionStatus::Refused(m) => ("refused", Some(m.clone())),
        ActionStatus::Lost(m) => ("lost", Some(m.clone())),
    };
    let facts = r
        .facts
        .iter()
        .map(|(k, v)| {
            let f = match v {
                Value::Null => Fact::Null,
                Value::Bool(b) => Fact::Bool(*b),
                Value::Int(i) => Fact::Int(*i),
                Value::Str(s) => Fact::Str(s.clone()),
                Value::Agent(b) => Fact::Agent(b.to_string()),
                Value::Manager(b) => Fact::Manager(b.to_string()),
                Value::Duration(s) => Fact::Duration(*s),
                Value::List(l) => Fact::List(l.clone()),
            };
            (k.clone(), f)
        })
        .collect();
    serde_json::to_string(&Reply {
        status: status.to_owned(),
        message,
        facts,
    })
    .unwrap_or_default()
}

fn decode_reply(text: &str) -> ActionReply {
    let Ok(r) = serde_json::from_str::<Reply>(text) else {
        return ActionReply::failed(format!("a worker's reply cannot be read: {text:.200}"));
    };
    let m = r.message.unwrap_or_default();
    let status = match r.status.as_str() {
        "ok" => ActionStatus::Ok,
        "unreachable" => ActionStatus::Unreachable(m),
        "refused" => ActionStatus::Refused(m),
        "lost" => ActionStatus::Lost(m),
        _ => ActionStatus::Failed(m),
    };
    let mut facts = BTreeMap::new();
    for (k, f) in r.facts {
        let v = match f {
            Fact::Null => Value::Null,
            Fact::Bool(b) => Value::Bool(b),
            Fact::Int(i) => Value::Int(i),
            Fact::Str(s) => Value::Str(s),
            // A build that does not parse back is unknown, never a guess.
            Fact::Agent(s) => s.parse().map_or(Value::Null, Value::Agent),
            Fact::Manager(s) => s.parse().map_or(Value::Null, Value::Manager),
            Fact::Duration(s) => Value::Duration(s),
            Fact::List(l) => Value::List(l),
        };
        facts.insert(k, v);
    }
    ActionReply { status, facts }
}

// ---------------------------------------------------------------------------------------
// Coordinating: the hub that queues calls and hands the replies back.

enum HubMsg {
    Call {
        token: u64,
        work: NewWork,
        reply: oneshot::Sender<Finish>,
    },
    /// The caller stopped waiting (a deadline, an abort): the call is cancelled.
    Cancel(u64),
}

/// The coordinator's end of the queue: one task that submits calls in batches, collects
/// the replies and cancels what nobody waits for. One task, so a reply is never collected
/// before its caller is known.
#[derive(Clone)]
pub struct Hub {
    tx: mpsc::UnboundedSender<HubMsg>,
    next: Arc<AtomicU64>,
}

impl Hub {
    /// Starts the hub on the current runtime over its own connection to the run's queue.
    /// The calls of a coordinator that died are cancelled first: this coordinator decides
    /// them again from the journal.
    pub async fn start(target: &PgTarget) -> Result<(Hub, u64), Error> {
        let q = WorkQueue::connect(target)
            .await
            .map_err(|e| internal(e.to_string()))?;
        let cancelled = q.take_over().await.map_err(|e| internal(e.to_string()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(hub_loop(q, rx));
        Ok((
            Hub {
                tx,
                next: Arc::new(AtomicU64::new(1)),
            },
            cancelled,
        ))
    }

    async fn call(&self, driver: &str, req: ActionRequest) -> ActionReply {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let call = Call {
            args: req.args.clone(),
            attempt: req.attempt,
            after_ms: req.after_ms,
        };
        let work = NewWork {
            zone: zone_of(&req),
            step: req.step.clone(),
            driver: driver.to_owned(),
            action: req.action.clone(),
            request: serde_json::to_string(&call).unwrap_or_default(),
        };
        let (reply, rx) = oneshot::channel();
        if self.tx.send(HubMsg::Call { token, work, reply }).is_err() {
            return ActionReply::failed("the coordinator's queue stopped");
        }
        // Dropped before the reply (a deadline, an abort): the call is cancelled.
        struct Waiting<'a> {
            tx: &'a mpsc::UnboundedSender<HubMsg>,
            token: u64,
            done: bool,
        }
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                if !self.done {
                    let _ = self.tx.send(HubMsg::Cancel(self.token));
                }
            }
        }
        let mut waiting = Waiting {
            tx: &self.tx,
            token,
            done: false,
        };
        let finish = rx.await;
        waiting.done = true;
        match finish {
            Ok(Finish::Done(r)) => decode_reply(&r),
            Ok(Finish::Lost(m)) => ActionReply {
                status: ActionStatus::Lost(m),
                facts: BTreeMap::new(),
            },
            Err(_) => ActionReply::failed("the coordinator's queue stopped"),
        }
    }

    /// The run's drivers, each call sent through this hub (manual questions and
    /// idempotence still answered by the local driver).
    pub fn drivers(&self, local: Drivers) -> Drivers {
        let hub = self.clone();
        local.wrap(move |name, d| {
            Arc::new(Queued {
                name: name.to_owned(),
                local: d,
                hub: hub.clone(),
            })
        })
    }
}

async fn hub_loop(q: WorkQueue, mut rx: mpsc::UnboundedReceiver<HubMsg>) {
    let mut waiting: HashMap<i64, oneshot::Sender<Finish>> = HashMap::new();
    let mut ids: HashMap<u64, i64> = HashMap::new();
    let mut idle = Duration::from_millis(2);
    loop {
        // Everything asked since the last round, in order.
        let mut calls: Vec<(u64, NewWork, oneshot::Sender<Finish>)> = Vec::new();
        let mut cancels: Vec<i64> = Vec::new();
        let first = if waiting.is_empty() {
            // Nothing to collect: wait for the next call.
            match rx.recv().await {
                Some(m) => Some(m),
                None => return,
            }
        } else {
            match tokio::time::timeout(idle, rx.recv()).await {
                Ok(Some(m)) => Some(m),
                Ok(None) => return,
                Err(_) => None,
            }
        };
        let mut next = first;
        while let Some(m) = next {
            match m {
                HubMsg::Call { token, work, reply } => calls.push((token, work, reply)),
                HubMsg::Cancel(token) => {
                    if let Some(pos) = calls.iter().position(|c| c.0 == token) {
                        calls.remove(pos);
                    } else if let Some(id) = ids.remove(&token) {
                        waiting.remove(&id);
                        cancels.push(id);
                    }
                }
            }
            next = if calls.len() >= 2000 {
                None
            } else {
                rx.try_recv().ok()
            };
        }
        if !calls.is_empty() {
            let work: Vec<NewWork> = calls.iter().map(|c| c.1.clone()).collect();
            match q.submit(&work).await {
                Ok(new) => {
                    for ((token, _, reply), id) in calls.into_iter().zip(new) {
                        ids.insert(token, id);
                        waiting.insert(id, reply);
                    }
                }
                Err(e) => {
                    let m = format!("the work queue cannot be written: {e}");
                    for (_, _, reply) in calls {
                        let _ =
                            reply.send(Finish::Done(encode_reply(&ActionReply::failed(m.clone()))));
                    }
                }
            }
        }
        if !cancels.is_empty() {
            // A cancel that fails leaves the call to run; nobody waits for its reply.
            let _ = q.cancel(&cancels).await;
        }
        if waiting.is_empty() {
            continue;
        }
        match q.collect().await {
            Ok(done) if !done.is_empty() => {
                idle = Duration::from_millis(2);
                for c in done {
                    if let Some(reply) = waiting.remove(&c.id) {
                        let _ = reply.send(c.finish);
                    }
                }
                ids.retain(|_, id| waiting.contains_key(id));
            }
            // Nothing yet: poll less often while nothing comes back, up to 50 ms.
            Ok(_) => idle = (idle * 2).min(Duration::from_millis(50)),
            Err(_) => idle = Duration::from_millis(200),
        }
    }
}

/// A driver whose calls go to the queue.
struct Queued {
    name: String,
    local: Arc<dyn Driver>,
    hub: Hub,
}

impl Driver for Queued {
    fn run(&self, req: ActionRequest) -> medic_exec::ActionFuture<'_> {
        Box::pin(self.hub.call(&self.name, req))
    }

    fn idempotent(&self, action: &str) -> bool {
        self.local.idempotent(action)
    }

    fn manual_ask(&self, req: &ActionRequest) -> ManualAsk {
        self.local.manual_ask(req)
    }
}

// ---------------------------------------------------------------------------------------
// Serving.

/// What a worker did.
#[derive(Clone, Debug, Default)]
pub struct Served {
    /// Calls run (or answered lost) and written back.
    pub calls: u64,
    /// Writes refused because another worker had taken the call over.
    pub refused: u64,
    /// How the run stood when the worker left.
    pub run_state: Option<String>,
}

/// Serves the worker's zone until the run ends or `stop` is set. `coordinating` is shown
/// in the worker's heartbeat. Lines about takeovers and refusals go to `say`.
pub async fn serve(
    w: Arc<Worker>,
    coordinating: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    say: Say,
) -> Result<Served, Error> {
    let spec = &w.spec;
    let q = WorkQueue::connect(&w.target)
        .await
        .map_err(|e| internal(e.to_string()))?;
    let lease_ms = i64::try_from(spec.lease.as_millis()).unwrap_or(i64::MAX);
    q.register(&spec.name, &spec.zones.join(","), lease_ms)
        .await
        .map_err(|e| internal(e.to_string()))?;
    let beat_every = spec.lease / 3;
    let initial = w.initial.clone();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(i64, i64, Finish)>();
    // id -> (token, step, the task running it)
    let mut held: HashMap<i64, (i64, String, tokio::task::AbortHandle)> = HashMap::new();
    let mut finished: Vec<(i64, i64, Finish)> = Vec::new();
    // The steps of `finished`, for messages.
    let mut finished_steps: HashMap<i64, String> = HashMap::new();
    let mut served = Served::default();
    let mut last_beat = tokio::time::Instant::now();
    let mut last_look = tokio::time::Instant::now();
    let mut idle = Duration::from_millis(5);
    let mut saw_running = false;
    loop {
        while let Ok(d) = done_rx.try_recv() {
            if let Some((_, step, _)) = held.remove(&d.0) {
                finished_steps.insert(d.0, step);
                finished.push(d);
            }
        }
        if !finished.is_empty() {
            let batch = std::mem::take(&mut finished);
            let refused = q
                .finish(&spec.name, &batch)
                .await
                .map_err(|e| internal(e.to_string()))?;
            served.calls += (batch.len() - refused.len()) as u64;
            for id in &refused {
                served.refused += 1;
                let fence = batch.iter().find(|b| b.0 == *id).map_or(0, |b| b.1);
                let step = finished_steps.get(id).map_or("?", String::as_str);
                say(format!(
                    "worker {}: my write of call {id} of step {step} (token {fence}) was refused: another worker took the call over after my lease ran out",
                    spec.name
                ));
            }
            finished_steps.clear();
        }
        if last_beat.elapsed() >= beat_every {
            let mine: Vec<(i64, i64)> = held.iter().map(|(id, h)| (*id, h.0)).collect();
            let kept = q
                .heartbeat(
                    &spec.name,
                    coordinating.load(Ordering::Relaxed),
                    &mine,
                    lease_ms,
                )
                .await
                .map_err(|e| internal(e.to_string()))?;
            for (id, (fence, step, task)) in &held {
                if !kept.contains(id) {
                    // Taken over (this worker was too slow to renew) or cancelled: stop
                    // it; its reply would be refused anyway.
                    task.abort();
                    say(format!(
                        "worker {}: lost call {id} of step {step} (token {fence}); stopped it",
                        spec.name
                    ));
                }
            }
            held.retain(|id, _| kept.contains(id));
            last_beat = tokio::time::Instant::now();
            // Host keys this worker's SSH driver accepted or refused: the coordinator's
            // journal never sees them, so the worker says them.
            for ev in w.drivers.events().take() {
                if let Some(line) = host_key_line(&ev) {
                    say(format!("worker {}: {line}", spec.name));
                }
            }
        }
        // How the run stands, every second (a worker leaves soon after the run ends).
        if last_look.elapsed() >= Duration::from_secs(1) {
            last_look = tokio::time::Instant::now();
            let outcome = q
                .meta(crate::status::OUTCOME)
                .await
                .map_err(|e| internal(e.to_string()))?;
            let state = state_of(outcome.as_deref());
            saw_running |= state.as_deref() == Some("running");
            let ended = matches!(state.as_deref(), Some("finished" | "failed" | "stopped"))
                && (saw_running || outcome != initial);
            if ended && held.is_empty() && !coordinating.load(Ordering::Relaxed) {
                served.run_state = state;
                break;
            }
        }
        if stop.load(Ordering::Relaxed) && held.is_empty() {
            break;
        }
        let room = spec.max_parallel.saturating_sub(held.len());
        let claimed = if room > 0 && !stop.load(Ordering::Relaxed) {
            q.claim(
                &spec.zones,
                &spec.name,
                i64::try_from(room).unwrap_or(0),
                lease_ms,
            )
            .await
            .map_err(|e| internal(e.to_string()))?
        } else {
            Vec::new()
        };
        let got = !claimed.is_empty();
        for c in claimed {
            start_call(&w, c, &done_tx, &mut held, &say);
        }
        if got {
            idle = Duration::from_millis(5);
            continue;
        }
        // Wait for a call to end, or poll again (less often while nothing comes).
        let wait = idle.min(beat_every).min(Duration::from_secs(1));
        if let Ok(Some(d)) = tokio::time::timeout(wait, done_rx.recv()).await
            && let Some((_, step, _)) = held.remove(&d.0)
        {
            finished_steps.insert(d.0, step);
            finished.push(d);
        }
        idle = (idle * 2).min(Duration::from_millis(100));
    }
    let _ = q.stopped(&spec.name).await;
    Ok(served)
}

fn host_key_line(ev: &medic_exec::RunEvent) -> Option<String> {
    match ev {
        medic_exec::RunEvent::HostKeyAccepted {
            endpoint,
            key_type,
            fingerprint,
            file,
            ..
        } => Some(format!(
            "accepted the new host key of {endpoint} ({key_type} {fingerprint}), added to {file}"
        )),
        medic_exec::RunEvent::HostKeyRefused {
            endpoint,
            reason,
            message,
            ..
        } => Some(format!(
            "refused the host key of {endpoint} ({reason}): {message}"
        )),
        _ => None,
    }
}

fn start_call(
    w: &Arc<Worker>,
    c: Claimed,
    done: &mpsc::UnboundedSender<(i64, i64, Finish)>,
    held: &mut HashMap<i64, (i64, String, tokio::task::AbortHandle)>,
    say: &Say,
) {
    let failed = |m: String| Finish::Done(encode_reply(&ActionReply::failed(m)));
    let ready = match (
        w.drivers.get(&c.driver),
        serde_json::from_str::<Call>(&c.request),
    ) {
        (None, _) => Err(failed(format!("this worker has no `{}` driver", c.driver))),
        (Some(d), _) if c.claims > 1 && !d.idempotent(&c.action) => {
            // The worker that held it may have acted: running it again could repeat the
            // effect. The coordinator's attempt asks the step's check instead.
            say(format!(
                "worker {}: took over call {} of step {} after its worker's lease ran out; `{}` may have run, so the step's check decides",
                w.spec.name, c.id, c.step, c.action
            ));
            Err(Finish::Lost(format!(
                "the worker running `{}` was lost (its lease ran out)",
                c.action
            )))
        }
        (Some(_), Err(e)) => Err(failed(format!("the queued call cannot be read: {e}"))),
        (Some(d), Ok(call)) => Ok((d, call)),
    };
    let (driver, call) = match ready {
        Ok(r) => r,
        // Answered without running: held until the answer is written, as any call.
        Err(answer) => {
            let _ = done.send((c.id, c.fence, answer));
            held.insert(
                c.id,
                (c.fence, c.step, tokio::spawn(async {}).abort_handle()),
            );
            return;
        }
    };
    let host = w
        .plan
        .step_index(&c.step)
        .and_then(|i| w.plan.step(i).host)
        .map(|h| w.plan.host(h).clone());
    let req = ActionRequest {
        step: c.step.clone(),
        host,
        action: c.action.clone(),
        args: call.args,
        attempt: call.attempt,
        after_ms: call.after_ms,
        fence: u64::try_from(c.fence).ok(),
    };
    let done = done.clone();
    let (id, fence) = (c.id, c.fence);
    let task = tokio::spawn(async move {
        let reply = driver.run(req).await;
        let _ = done.send((id, fence, Finish::Done(encode_reply(&reply))));
    });
    held.insert(c.id, (c.fence, c.step, task.abort_handle()));
}

/// The state word of a recorded run outcome (`running`, `finished`, ...).
fn state_of(outcome: Option<&str>) -> Option<String> {
    outcome
        .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
        .and_then(|v| v.get("state")?.as_str().map(str::to_owned))
}

/// A connection to the run's queue, for [`should_coordinate`].
pub async fn queue(w: &Worker) -> Result<WorkQueue, Error> {
    WorkQueue::connect(&w.target)
        .await
        .map_err(|e| internal(e.to_string()))
}

/// Whether this worker should take the coordinator's turn now: nobody coordinates (the
/// run's writer lock is free) and the run is still to be run: not started, left running
/// by a coordinator that died, or as it was when this worker started (a worker started
/// on a stopped run resumes it; a run that stopped since is the operator's to resume).
pub async fn should_coordinate(w: &Worker, q: &WorkQueue) -> Result<bool, Error> {
    let outcome = q
        .meta(crate::status::OUTCOME)
        .await
        .map_err(|e| internal(e.to_string()))?;
    let open = outcome == w.initial
        || matches!(
            state_of(outcome.as_deref()).as_deref(),
            None | Some("running")
        );
    if !open {
        return Ok(false);
    }
    q.writer_lock_free()
        .await
        .map_err(|e| internal(e.to_string()))
}
