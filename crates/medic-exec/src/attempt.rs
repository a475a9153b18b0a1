//! One attempt of one step, as a small state machine: guard (probe, then decide), check
//! (is the work already done?), act within the deadline, then observe the post-condition.
//! The dispatcher decides everything around it: retries, budgets, what runs next.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use medic_model::{Cond, Path, PathRoot, Value};
use medic_plan::{Plan, StepCheck};

use crate::driver::{ActionReply, ActionRequest, ActionStatus, Driver, ManualAsk};
use crate::event::Outcome;

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum AttemptResult {
    /// The step ended without failing: acted and observed, found done, skipped by its
    /// guard, or (after a crash, with nothing to re-probe it) unknown.
    Ended {
        outcome: Outcome,
        detail: Option<String>,
        /// What the driver noted about a success (see [`crate::NOTE_FACT`]).
        note: Option<String>,
    },
    Failed(AttemptError),
    /// A manual step whose work is not done yet: the operator must do this and approve
    /// it. The attempt did not act.
    AskOperator(ManualAsk),
}

/// An attempt's result with what its probes and action answered (the run report's
/// evidence).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Attempted {
    pub(crate) result: AttemptResult,
    pub(crate) observed: Observed,
}

/// The facts one attempt saw: `before` its action (guard probe, the check before acting),
/// `after` it (the action's reply, the check after acting). A later answer of a fact
/// replaces an earlier one.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Observed {
    pub(crate) before: BTreeMap<String, Value>,
    pub(crate) after: BTreeMap<String, Value>,
}

impl Observed {
    pub(crate) fn is_empty(&self) -> bool {
        self.before.is_empty() && self.after.is_empty()
    }

    /// The journal detail of a `step.observed` event: JSON, builds and other typed values
    /// as their text, a long text (a command's output) cut to its last
    /// [`OBSERVED_TEXT_MAX`] bytes.
    pub(crate) fn to_json(&self, attempt: u32) -> String {
        fn map(m: &BTreeMap<String, Value>) -> serde_json::Value {
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::Null => serde_json::Value::Null,
                        Value::Bool(b) => serde_json::Value::Bool(*b),
                        Value::Int(i) => serde_json::Value::from(*i),
                        Value::Str(s) => serde_json::Value::String(tail(s).to_owned()),
                        other => serde_json::Value::String(tail(&other.to_string()).to_owned()),
                    };
                    (k.clone(), v)
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        }
        serde_json::json!({
            "attempt": attempt,
            "before": map(&self.before),
            "after": map(&self.after),
        })
        .to_string()
    }
}

/// How much of one observed text the journal keeps: the end of a command's output says why
/// it failed; the whole of it could be megabytes per host.
const OBSERVED_TEXT_MAX: usize = 2048;

fn tail(s: &str) -> &str {
    if s.len() <= OBSERVED_TEXT_MAX {
        return s;
    }
    let mut at = s.len() - OBSERVED_TEXT_MAX;
    while !s.is_char_boundary(at) {
        at += 1;
    }
    &s[at..]
}

/// How many times an attempt acts again after its call was lost and its check says the
/// work is not done: a worker lost each time means something else is wrong.
const LOST_REDOS: u32 = 3;

/// The driver of one attempt, keeping what every reply answered (see [`Observed`]).
struct Recorder<'a> {
    inner: &'a dyn Driver,
    action: &'a str,
    /// The action has answered: later facts are "after" it.
    acted: std::sync::atomic::AtomicBool,
    seen: std::sync::Mutex<Observed>,
}

impl Driver for Recorder<'_> {
    fn run(&self, req: ActionRequest) -> crate::driver::ActionFuture<'_> {
        Box::pin(async move {
            use std::sync::atomic::Ordering::Relaxed;
            let acting = req.action == self.action;
            let reply = self.inner.run(req).await;
            if acting {
                self.acted.store(true, Relaxed);
            }
            // A reply without facts (every no-op step) costs no lock.
            if !reply.facts.is_empty() {
                let mut seen = self
                    .seen
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let into = if self.acted.load(Relaxed) {
                    &mut seen.after
                } else {
                    &mut seen.before
                };
                into.extend(reply.facts.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            reply
        })
    }

    fn idempotent(&self, action: &str) -> bool {
        self.inner.idempotent(action)
    }

    fn manual_ask(&self, req: &ActionRequest) -> ManualAsk {
        self.inner.manual_ask(req)
    }
}

impl AttemptResult {
    fn ended(outcome: Outcome, detail: impl Into<Option<String>>) -> Self {
        AttemptResult::Ended {
            outcome,
            detail: detail.into(),
            note: None,
        }
    }

    fn noting(mut self, n: Option<String>) -> Self {
        if let AttemptResult::Ended { note, .. } = &mut self {
            *note = n;
        }
        self
    }

    /// The outcome as the step's events and journal record it.
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            AttemptResult::Ended { outcome, .. } => *outcome,
            AttemptResult::Failed(_) => Outcome::Failed,
            AttemptResult::AskOperator(_) => Outcome::Unknown,
        }
    }
}

/// Why a probe gave no answer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ProbeError {
    probe: String,
    message: String,
    /// The driver refused (a changed host key): another attempt cannot help.
    refused: bool,
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.refused { "refused" } else { "failed" };
        write!(f, "probe {} {verb}: {}", self.probe, self.message)
    }
}

/// Why an attempt failed. The text is the step's failure detail, shown and journaled.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub(crate) enum AttemptError {
    #[error("guard {0}")]
    Guard(ProbeError),
    /// The check before acting could not be asked.
    #[error("{0}")]
    Check(ProbeError),
    /// The action ran and failed (or timed out).
    #[error("{0}")]
    Action(String),
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("refused (not retried): {0}")]
    Refused(String),
    #[error("the action reported success but its post-condition does not hold: {0}")]
    PostConditionFalse(String),
    #[error("could not observe the post-condition: {0}")]
    PostConditionUnobserved(ProbeError),
    /// A manual step's own action failed after the approval.
    #[error("{0}")]
    OperatorAction(String),
    #[error(
        "approved, but the check did not hold within {within}: it saw {seen}, it needs {needs}; once that is done, run `{retry}`"
    )]
    OperatorWorkNotSeen {
        within: String,
        seen: String,
        needs: String,
        retry: String,
    },
}

impl AttemptError {
    /// Whether another attempt may succeed (the step's retries apply).
    pub(crate) fn retryable(&self) -> bool {
        match self {
            AttemptError::Guard(p)
            | AttemptError::Check(p)
            | AttemptError::PostConditionUnobserved(p) => !p.refused,
            AttemptError::Action(_)
            | AttemptError::Unreachable(_)
            | AttemptError::PostConditionFalse(_) => true,
            AttemptError::Refused(_)
            | AttemptError::OperatorAction(_)
            | AttemptError::OperatorWorkNotSeen { .. } => false,
        }
    }
}

/// How an attempt treats a step a person performs (`driver: manual`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Manual {
    /// Not a manual step.
    No,
    /// Guard, then the check: done already, or the operator is asked (nothing is acted on).
    Ask,
    /// The operator approved: the driver's action (nothing on a real run; the simulated
    /// fleet plays the operator in a rehearsal), then the check, polled every `poll` until
    /// the step's deadline, because the work may still be finishing. `retry` is the command
    /// that moves the run on once the work is done, for the failure message.
    Approved { poll: Duration, retry: String },
}

pub(crate) struct AttemptInput {
    pub(crate) req: ActionRequest,
    pub(crate) plan: Arc<Plan>,
    pub(crate) index: u32,
    pub(crate) driver: Arc<dyn Driver>,
    /// Outcomes of this host's predecessor steps, by phase, for `needs.` paths.
    pub(crate) needs: BTreeMap<String, String>,
    pub(crate) timeout: Duration,
    /// The step started before a crash and its outcome is unknown.
    pub(crate) reprobe: bool,
    pub(crate) manual: Manual,
}

fn resolver<'a>(
    facts: &'a BTreeMap<String, Value>,
    needs: &'a BTreeMap<String, String>,
) -> impl FnMut(&Path) -> Option<Value> + 'a {
    move |p: &Path| match p.root {
        PathRoot::Facts => facts.get(&p.field).cloned(),
        PathRoot::Needs => needs.get(&p.field).map(|s| Value::Str(s.clone())),
        _ => None,
    }
}

async fn call(
    driver: &dyn Driver,
    req: &ActionRequest,
    action: &str,
    deadline: Duration,
) -> ActionReply {
    let mut r = req.clone();
    r.action = action.to_owned();
    match tokio::time::timeout(deadline, driver.run(r)).await {
        Ok(reply) => reply,
        Err(_) => ActionReply::failed(format!(
            "{action} timed out after {}s",
            deadline.as_secs_f64().round()
        )),
    }
}

/// Runs the check's probe; `Ok((true, note))` when the work is observed done.
async fn observe(
    driver: &dyn Driver,
    req: &ActionRequest,
    check: &StepCheck,
    deadline: Duration,
    needs: &BTreeMap<String, String>,
) -> Result<(bool, Option<String>), ProbeError> {
    observe_facts(driver, req, check, deadline, needs)
        .await
        .map(|(held, _, note)| (held, note))
}

/// [`observe`], also giving the facts the probe answered.
async fn observe_facts(
    driver: &dyn Driver,
    req: &ActionRequest,
    check: &StepCheck,
    deadline: Duration,
    needs: &BTreeMap<String, String>,
) -> Result<(bool, BTreeMap<String, Value>, Option<String>), ProbeError> {
    let reply = call(driver, req, &check.probe, deadline).await;
    match reply.status {
        ActionStatus::Ok => {
            let held = check.when.eval(&mut resolver(&reply.facts, needs));
            let note = reply.note().map(str::to_owned);
            Ok((held, reply.facts, note))
        }
        ActionStatus::Failed(m) | ActionStatus::Unreachable(m) | ActionStatus::Lost(m) => {
            Err(ProbeError {
                probe: check.probe.clone(),
                message: m,
                refused: false,
            })
        }
        ActionStatus::Refused(m) => Err(ProbeError {
            probe: check.probe.clone(),
            message: m,
            refused: true,
        }),
    }
}

fn holds(cond: &Cond, facts: &BTreeMap<String, Value>, needs: &BTreeMap<String, String>) -> bool {
    cond.eval(&mut resolver(facts, needs))
}

pub(crate) async fn run_attempt(input: AttemptInput) -> Attempted {
    let plan = input.plan.clone();
    let driver = input.driver.clone();
    let recorder = Recorder {
        inner: driver.as_ref(),
        action: &plan.step(input.index).action,
        acted: std::sync::atomic::AtomicBool::new(false),
        seen: std::sync::Mutex::new(Observed::default()),
    };
    let result = attempt(input, &recorder).await;
    let observed = recorder
        .seen
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Attempted { result, observed }
}

async fn attempt(input: AttemptInput, d: &dyn Driver) -> AttemptResult {
    let AttemptInput {
        req,
        plan,
        index,
        driver: _,
        needs,
        timeout,
        reprobe,
        manual,
    } = input;
    let step = plan.step(index);

    if let Manual::Approved { poll, retry } = &manual {
        return run_approved(d, &req, step, &needs, timeout, *poll, retry).await;
    }

    if let Some(g) = &step.guard {
        let facts = match &g.probe {
            Some(p) => {
                let reply = call(d, &req, p, timeout).await;
                let refused = match reply.status {
                    ActionStatus::Ok => None,
                    ActionStatus::Failed(m)
                    | ActionStatus::Unreachable(m)
                    | ActionStatus::Lost(m) => Some((m, false)),
                    ActionStatus::Refused(m) => Some((m, true)),
                };
                if let Some((message, refused)) = refused {
                    return AttemptResult::Failed(AttemptError::Guard(ProbeError {
                        probe: p.clone(),
                        message,
                        refused,
                    }));
                }
                reply.facts
            }
            None => BTreeMap::new(),
        };
        if !holds(&g.when, &facts, &needs) {
            return AttemptResult::ended(Outcome::Skipped, format!("guard false: {}", g.describe));
        }
    }

    if let Some(check) = &step.check {
        match observe(d, &req, check, timeout, &needs).await {
            Ok((true, note)) => {
                return AttemptResult::ended(
                    Outcome::AlreadyDone,
                    format!("check held before acting: {}", check.when),
                )
                .noting(note);
            }
            Ok((false, _)) => {}
            Err(e) => return AttemptResult::Failed(AttemptError::Check(e)),
        }
    }
    if manual == Manual::Ask {
        // Only a person can do it: whether it is done is the check's to say (above), and
        // the rest waits for the operator's approval.
        return AttemptResult::AskOperator(d.manual_ask(&req));
    }
    if step.check.is_none() && reprobe && !d.idempotent(&step.action) {
        return AttemptResult::ended(
            Outcome::Unknown,
            "outcome unknown after a crash and the action has no check to re-probe it".to_owned(),
        );
    }

    let mut reply = call(d, &req, &step.action, timeout).await;
    // The worker running the action was lost: whether it acted is the check's to say,
    // never a guess. Done: the effect happened once, whoever made it. Not done: act again
    // (a later claim; the lost worker's call is refused wherever its token is checked).
    let mut lost = 0;
    while let ActionStatus::Lost(m) = &reply.status {
        lost += 1;
        match &step.check {
            Some(check) => match observe(d, &req, check, timeout, &needs).await {
                Ok((true, note)) => {
                    return AttemptResult::ended(
                        Outcome::Succeeded,
                        format!("post-condition observed after the call was lost ({m})"),
                    )
                    .noting(note);
                }
                Ok((false, _)) if lost < LOST_REDOS => {}
                Ok((false, _)) => return AttemptResult::Failed(AttemptError::Action(m.clone())),
                Err(e) => return AttemptResult::Failed(AttemptError::PostConditionUnobserved(e)),
            },
            None if d.idempotent(&step.action) && lost < LOST_REDOS => {}
            None => {
                return AttemptResult::ended(
                    Outcome::Unknown,
                    format!("outcome unknown: {m}; the action has no check to re-probe it"),
                );
            }
        }
        reply = call(d, &req, &step.action, timeout).await;
    }
    let note = reply.note().map(str::to_owned);
    match reply.status {
        ActionStatus::Ok => {}
        ActionStatus::Failed(m) => return AttemptResult::Failed(AttemptError::Action(m)),
        ActionStatus::Lost(m) => return AttemptResult::Failed(AttemptError::Action(m)),
        ActionStatus::Unreachable(m) => {
            return AttemptResult::Failed(AttemptError::Unreachable(m));
        }
        ActionStatus::Refused(m) => return AttemptResult::Failed(AttemptError::Refused(m)),
    }

    // Never claim a success that was not observed: run the check again after acting.
    if let Some(check) = &step.check {
        match observe(d, &req, check, timeout, &needs).await {
            Ok((true, check_note)) => {
                AttemptResult::ended(Outcome::Succeeded, "post-condition observed".to_owned())
                    .noting(note.or(check_note))
            }
            Ok((false, _)) => {
                AttemptResult::Failed(AttemptError::PostConditionFalse(check.when.to_string()))
            }
            Err(e) => AttemptResult::Failed(AttemptError::PostConditionUnobserved(e)),
        }
    } else {
        AttemptResult::ended(Outcome::Succeeded, None).noting(note)
    }
}

/// A manual step after the operator's approval: the driver's action (a real run has nothing
/// to do; a rehearsal's simulated fleet plays the operator), then the check, polled until
/// the deadline: the operator may approve while the work is still finishing (a Manager
/// restarting after its upgrade answers nothing for a while), so an unanswered probe or an
/// old value is "not yet", never a failure before the deadline.
async fn run_approved(
    d: &dyn Driver,
    req: &ActionRequest,
    step: &medic_plan::Step,
    needs: &BTreeMap<String, String>,
    timeout: Duration,
    poll: Duration,
    retry: &str,
) -> AttemptResult {
    let deadline = tokio::time::Instant::now() + timeout;
    let reply = call(d, req, &step.action, timeout).await;
    match reply.status {
        ActionStatus::Ok => {}
        ActionStatus::Failed(m)
        | ActionStatus::Unreachable(m)
        | ActionStatus::Refused(m)
        | ActionStatus::Lost(m) => {
            return AttemptResult::Failed(AttemptError::OperatorAction(m));
        }
    }
    let Some(check) = &step.check else {
        // Nothing can observe it: the approval is all the evidence there is.
        return AttemptResult::ended(
            Outcome::Succeeded,
            "approved by the operator (the step has no check to observe it)".to_owned(),
        );
    };
    // What the probe last answered; a probe cut short by the deadline does not hide it.
    let mut seen_last: Option<String> = None;
    let mut error_last = String::from("no answer");
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        match observe_facts(d, req, check, left, needs).await {
            Ok((true, _, _)) => {
                return AttemptResult::ended(
                    Outcome::Succeeded,
                    format!("the operator's work was observed: {}", check.when),
                );
            }
            Ok((false, facts, _)) => seen_last = Some(seen(&check.when, &facts)),
            Err(e) => error_last = e.to_string(),
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        tokio::time::sleep(poll.min(left)).await;
    }
    AttemptResult::Failed(AttemptError::OperatorWorkNotSeen {
        within: medic_model::format_duration(timeout.as_secs().max(1)),
        seen: seen_last.unwrap_or_else(|| format!("no answer ({error_last})")),
        needs: check.when.to_string(),
        retry: retry.to_owned(),
    })
}

/// The facts a condition reads, as the probe answered them: `facts.manager_version =
/// 20.0.400` (or "no value" for a fact the probe did not give).
fn seen(cond: &Cond, facts: &BTreeMap<String, Value>) -> String {
    let mut paths = Vec::new();
    cond.paths(&mut paths);
    let mut parts: Vec<String> = Vec::new();
    for p in paths {
        if p.root != PathRoot::Facts {
            continue;
        }
        let part = match facts.get(&p.field) {
            Some(v) => format!("{p} = {v}"),
            None => format!("no value for {p}"),
        };
        if !parts.contains(&part) {
            parts.push(part);
        }
    }
    if parts.is_empty() {
        "the condition false".to_owned()
    } else {
        parts.join(", ")
    }
}
