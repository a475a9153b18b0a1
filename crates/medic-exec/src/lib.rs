//! The executor: walks a sealed [`medic_plan::Plan`] with drivers, staged waves, failure
//! budgets, gates and a change window, recording every transition in the journal before
//! acting and reporting through one closed event enum ([`RunEvent`]).
//!
//! Split as in nextest: the dispatcher (`dispatcher.rs`) owns the run state and reacts to
//! internal events; each step attempt is a small state machine (`attempt.rs`) run on its
//! own task. The plan is never mutated.

mod attempt;
mod clock;
mod dispatcher;
mod driver;
mod event;
mod journal_plan;

use std::sync::Arc;

use medic_journal::JournalStore;
/// The plan's types in the executor's API (`execute` walks a `Plan`, an `ActionRequest`
/// names its `PlanHost`): a driver implements [`Driver`], or reads the plan it serves (the
/// pre-flight), through this crate alone.
pub use medic_plan::{Plan, PlanHost, StepKind};

pub use clock::Clock;
pub use dispatcher::{Control, Prior, RunExit, RunOptions, RunReport, WindowPolicy};
pub use driver::{
    ActionFuture, ActionReply, ActionRequest, ActionStatus, Driver, Drivers, MANUAL_DRIVER,
    ManualAsk, NOTE_FACT,
};
pub use event::{
    ActionCounts, DriverEvents, Fanout, Outcome, Reporter, RunEvent, StopReason, Summary,
};
pub use journal_plan::{
    BadPlan, ReadError, create_journal, read_for_resume, read_plan, read_prior,
};

/// Runs (or resumes, given the journal's `prior` view) a plan to its end or to a stop.
/// Generic over the journal's backend: the SQLite [`medic_journal::Journal`] is called
/// without dynamic dispatch, and a `&dyn JournalStore` works too.
pub async fn execute<J: JournalStore + ?Sized>(
    plan: Arc<Plan>,
    drivers: &Drivers,
    journal: &J,
    prior: &Prior,
    opts: &RunOptions,
    control: Control,
    reporter: &mut dyn Reporter,
) -> RunReport {
    dispatcher::Dispatcher::new(plan, drivers, journal, opts, reporter, prior)
        .run(control)
        .await
}
