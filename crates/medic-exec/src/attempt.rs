//! One attempt of one step, as a small state machine: guard (probe, then decide), check
//! (is the work already done?), act within the deadline, then observe the post-condition.
//! The dispatcher decides everything around it: retries, budgets, what runs next.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use medic_model::{Cond, Path, PathRoot, Value};
use medic_plan::{Plan, StepCheck};

use crate::driver::{ActionReply, ActionRequest, ActionStatus, Driver};
use crate::event::Outcome;

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AttemptResult {
    pub(crate) outcome: Outcome,
    /// Worth another attempt (the action failed or timed out).
    pub(crate) retryable: bool,
    pub(crate) detail: Option<String>,
    /// What the driver noted about a step that succeeded (see [`crate::NOTE_FACT`]).
    pub(crate) note: Option<String>,
}

impl AttemptResult {
    fn done(outcome: Outcome, detail: impl Into<Option<String>>) -> Self {
        AttemptResult {
            outcome,
            retryable: false,
            detail: detail.into(),
            note: None,
        }
    }
    fn failed(detail: String, retryable: bool) -> Self {
        AttemptResult {
            outcome: Outcome::Failed,
            retryable,
            detail: Some(detail),
            note: None,
        }
    }
    fn noting(mut self, note: Option<String>) -> Self {
        self.note = note;
        self
    }
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

/// Why a probe gave no answer, and whether another attempt may get one.
struct ProbeError {
    message: String,
    retryable: bool,
}

/// Runs the check's probe; `Ok((true, note))` when the work is observed done.
async fn observe(
    driver: &dyn Driver,
    req: &ActionRequest,
    check: &StepCheck,
    deadline: Duration,
    needs: &BTreeMap<String, String>,
) -> Result<(bool, Option<String>), ProbeError> {
    let reply = call(driver, req, &check.probe, deadline).await;
    match reply.status {
        ActionStatus::Ok => Ok((
            check.when.eval(&mut resolver(&reply.facts, needs)),
            reply.note().map(str::to_owned),
        )),
        ActionStatus::Failed(m) | ActionStatus::Unreachable(m) => Err(ProbeError {
            message: format!("probe {} failed: {m}", check.probe),
            retryable: true,
        }),
        ActionStatus::Refused(m) => Err(ProbeError {
            message: format!("probe {} refused: {m}", check.probe),
            retryable: false,
        }),
    }
}

fn holds(cond: &Cond, facts: &BTreeMap<String, Value>, needs: &BTreeMap<String, String>) -> bool {
    cond.eval(&mut resolver(facts, needs))
}

pub(crate) async fn run_attempt(input: AttemptInput) -> AttemptResult {
    let AttemptInput {
        req,
        plan,
        index,
        driver,
        needs,
        timeout,
        reprobe,
    } = input;
    let step = plan.step(index);
    let d = driver.as_ref();

    if let Some(g) = &step.guard {
        let facts = match &g.probe {
            Some(p) => {
                let reply = call(d, &req, p, timeout).await;
                match reply.status {
                    ActionStatus::Ok => reply.facts,
                    ActionStatus::Failed(m) | ActionStatus::Unreachable(m) => {
                        return AttemptResult::failed(format!("guard probe {p} failed: {m}"), true);
                    }
                    ActionStatus::Refused(m) => {
                        return AttemptResult::failed(
                            format!("guard probe {p} refused: {m}"),
                            false,
                        );
                    }
                }
            }
            None => BTreeMap::new(),
        };
        if !holds(&g.when, &facts, &needs) {
            return AttemptResult::done(Outcome::Skipped, format!("guard false: {}", g.describe));
        }
    }

    if let Some(check) = &step.check {
        match observe(d, &req, check, timeout, &needs).await {
            Ok((true, note)) => {
                return AttemptResult::done(
                    Outcome::AlreadyDone,
                    format!("check held before acting: {}", check.when),
                )
                .noting(note);
            }
            Ok((false, _)) => {}
            Err(e) => return AttemptResult::failed(e.message, e.retryable),
        }
    } else if reprobe && !d.idempotent(&step.action) {
        return AttemptResult::done(
            Outcome::Unknown,
            "outcome unknown after a crash and the action has no check to re-probe it".to_owned(),
        );
    }

    let reply = call(d, &req, &step.action, timeout).await;
    let note = reply.note().map(str::to_owned);
    match reply.status {
        ActionStatus::Ok => {}
        ActionStatus::Failed(m) => return AttemptResult::failed(m, true),
        ActionStatus::Unreachable(m) => {
            return AttemptResult::failed(format!("unreachable: {m}"), true);
        }
        ActionStatus::Refused(m) => {
            return AttemptResult::failed(format!("refused (not retried): {m}"), false);
        }
    }

    // Never claim a success that was not observed: run the check again after acting.
    if let Some(check) = &step.check {
        match observe(d, &req, check, timeout, &needs).await {
            Ok((true, check_note)) => {
                AttemptResult::done(Outcome::Succeeded, "post-condition observed".to_owned())
                    .noting(note.or(check_note))
            }
            Ok((false, _)) => AttemptResult::failed(
                format!(
                    "the action reported success but its post-condition does not hold: {}",
                    check.when
                ),
                true,
            ),
            Err(e) => AttemptResult::failed(
                format!("could not observe the post-condition: {}", e.message),
                e.retryable,
            ),
        }
    } else {
        AttemptResult::done(Outcome::Succeeded, None).noting(note)
    }
}
