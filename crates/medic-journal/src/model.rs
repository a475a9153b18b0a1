//! What the journal stores: step states, the records a run appends and the rows readers get.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The state of one step. `Running` means "started": it is made durable before the driver
/// acts, so a step found `Running` after a crash has an unknown outcome and must be probed,
/// never blindly repeated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    Pending,
    Running,
    Succeeded,
    Failed,
    /// The step's guard was false.
    Skipped,
    Cancelled,
    /// Started, outcome not recorded (set on resume or on abort).
    Unknown,
}

impl StepState {
    pub const ALL: [StepState; 7] = [
        StepState::Pending,
        StepState::Running,
        StepState::Succeeded,
        StepState::Failed,
        StepState::Skipped,
        StepState::Cancelled,
        StepState::Unknown,
    ];

    /// The spelling stored in the journal and shown to users.
    pub const fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::Succeeded => "succeeded",
            StepState::Failed => "failed",
            StepState::Skipped => "skipped",
            StepState::Cancelled => "cancelled",
            StepState::Unknown => "unknown",
        }
    }

    /// The inverse of [`StepState::as_str`].
    pub fn parse(s: &str) -> Option<StepState> {
        StepState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// True when the step will not change again in this run without an operator.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            StepState::Succeeded | StepState::Failed | StepState::Skipped | StepState::Cancelled
        )
    }

    /// The `events.kind` of a transition into this state; static so the writer does not
    /// format a string per record.
    pub(crate) const fn event_kind(self) -> &'static str {
        match self {
            StepState::Pending => "step.pending",
            StepState::Running => "step.running",
            StepState::Succeeded => "step.succeeded",
            StepState::Failed => "step.failed",
            StepState::Skipped => "step.skipped",
            StepState::Cancelled => "step.cancelled",
            StepState::Unknown => "step.unknown",
        }
    }
}

impl fmt::Display for StepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a history-only entry ([`Record::Event`]) says. Stored (and serialized) as its
/// [`EventKind::as_str`] spelling (the SQLite journal's `events.kind`), read back with
/// [`EventKind::parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A gate waits for an operator's approval.
    GateWaiting,
    /// An approval was recorded (by [`Record::Approve`] or [`crate::approve`]).
    GateApproved,
    /// A manual step waits for the operator; the detail is the instruction.
    ManualWaiting,
    /// The operator approved a manual step; the detail is who.
    ManualApproved,
    /// The run's change window was replaced (`resume --window`).
    WindowChanged,
    /// What an attempt's probes and action answered (JSON): the run report's evidence.
    StepObserved,
    /// How a process's part of the run ended (or that it began).
    Run(RunState),
}

impl EventKind {
    const ALL: [EventKind; 10] = [
        EventKind::GateWaiting,
        EventKind::GateApproved,
        EventKind::ManualWaiting,
        EventKind::ManualApproved,
        EventKind::WindowChanged,
        EventKind::StepObserved,
        EventKind::Run(RunState::Running),
        EventKind::Run(RunState::Finished),
        EventKind::Run(RunState::Failed),
        EventKind::Run(RunState::Stopped),
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::GateWaiting => "gate.waiting",
            EventKind::GateApproved => "gate.approved",
            EventKind::ManualWaiting => "manual.waiting",
            EventKind::ManualApproved => "manual.approved",
            EventKind::WindowChanged => "window.changed",
            EventKind::StepObserved => "step.observed",
            EventKind::Run(RunState::Running) => "run.running",
            EventKind::Run(RunState::Finished) => "run.finished",
            EventKind::Run(RunState::Failed) => "run.failed",
            EventKind::Run(RunState::Stopped) => "run.stopped",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// How the last process of a run ended, or that one is under way. Serialized lowercase
/// (`"running"`), as the CLI's `run_outcome` meta value has always held it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    #[default]
    Running,
    /// Every step finished and was verified.
    Finished,
    /// Finished with failed steps.
    Failed,
    /// Stopped early; resumable.
    Stopped,
}

impl RunState {
    pub const fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Finished => "finished",
            RunState::Failed => "failed",
            RunState::Stopped => "stopped",
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a history row records: a step's transition or a history-only [`EventKind`];
/// serialized as its stored spelling (`step.running`, `gate.waiting`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RowKind {
    Step(StepState),
    Event(EventKind),
}

impl RowKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            RowKind::Step(s) => s.event_kind(),
            RowKind::Event(k) => k.as_str(),
        }
    }

    pub fn parse(s: &str) -> Option<RowKind> {
        // `step.observed` is an event kind, not a step state.
        match s.strip_prefix("step.").and_then(StepState::parse) {
            Some(st) => Some(RowKind::Step(st)),
            None => EventKind::parse(s).map(RowKind::Event),
        }
    }
}

impl Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Serialize for RowKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for RowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a durable wait ([`Record::TimerSet`]) exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TimerKind {
    /// A failed step waits for its next attempt.
    Retry,
    /// A gate's soak pause.
    Soak,
}

impl TimerKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            TimerKind::Retry => "retry",
            TimerKind::Soak => "soak",
        }
    }

    pub fn parse(s: &str) -> Option<TimerKind> {
        [TimerKind::Retry, TimerKind::Soak]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// One thing a run appends. The writer stamps it with the time it was appended.
///
/// `detail` (text) and `Event` details (JSON by convention) **must not contain secrets**:
/// they are stored in clear and shown by `medic status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// Sets a run-level value (see [`crate::meta_keys`]).
    Meta {
        key: String,
        value: String,
    },
    /// A step transition: appended to the history and made the step's current state in the
    /// same transaction. A `None` detail clears the step's previous detail.
    Step {
        step: String,
        state: StepState,
        attempt: u32,
        /// What happened, in words.
        detail: Option<String>,
        /// A success whose check held before acting: nothing was done.
        already_done: bool,
        /// What the driver noted about a success (not a failure: e.g. a feature off by
        /// policy), so that a resumed run's summary still lists it.
        note: Option<String>,
    },
    /// History only: gates, manual steps, the change window, the run's outcome.
    Event {
        step: Option<String>,
        kind: EventKind,
        detail: Option<String>,
    },
    /// A retry wait or soak pause that must survive a restart; replaces one with the same key.
    TimerSet {
        key: String,
        kind: TimerKind,
        due_ms: i64,
    },
    TimerClear {
        key: String,
    },
    /// An operator approved a gate or manual step (the run's own terminal prompt); the
    /// first approval of an id stands, as with [`crate::approve`] from another process.
    Approve {
        gate: String,
        by: String,
    },
}

impl Record {
    /// A step transition without detail.
    pub fn step(step: impl Into<String>, state: StepState, attempt: u32) -> Record {
        Record::Step {
            step: step.into(),
            state,
            attempt,
            detail: None,
            already_done: false,
            note: None,
        }
    }

    /// A step transition with a detail in words.
    pub fn step_detail(
        step: impl Into<String>,
        state: StepState,
        attempt: u32,
        detail: impl Into<String>,
    ) -> Record {
        Record::Step {
            step: step.into(),
            state,
            attempt,
            detail: Some(detail.into()),
            already_done: false,
            note: None,
        }
    }
}

const ALREADY: &str = "already done:";
const NOTE: &str = "note: ";
const AND_NOTE: &str = "; note: ";

/// A step's detail as one line of text: the free text, after `already done: ` when the
/// work was found done, and its note after `; note: `. This is what the SQLite journal's
/// `steps.detail` column holds (its format since the first release) and what people see.
pub fn detail_text(detail: Option<&str>, already_done: bool, note: Option<&str>) -> Option<String> {
    if !already_done && note.is_none() {
        return detail.map(str::to_owned);
    }
    let mut s = String::new();
    if already_done {
        s.push_str(ALREADY);
        if let Some(d) = detail {
            s.push(' ');
            s.push_str(d);
        }
    } else if let Some(d) = detail {
        s.push_str(d);
    }
    if let Some(n) = note {
        s.push_str(if s.is_empty() { NOTE } else { AND_NOTE });
        s.push_str(n);
    }
    Some(s)
}

/// The inverse of [`detail_text`] for a succeeded step (only a success carries the two
/// fields; any other detail is free text as it is). Reuses `text`'s buffer: a resume reads
/// a million of them.
pub(crate) fn split_detail(
    state: StepState,
    text: Option<String>,
) -> (Option<String>, bool, Option<String>) {
    let mut text = match text {
        Some(t) if state == StepState::Succeeded => t,
        other => return (other, false, None),
    };
    let already_done = text.starts_with(ALREADY);
    if already_done {
        let cut = ALREADY.len() + usize::from(text[ALREADY.len()..].starts_with(' '));
        text.drain(..cut);
    }
    let note = if let Some(n) = text.strip_prefix(NOTE) {
        let n = n.to_owned();
        text.clear();
        Some(n)
    } else if let Some(k) = text.find(AND_NOTE) {
        let n = text[k + AND_NOTE.len()..].to_owned();
        text.truncate(k);
        Some(n)
    } else {
        None
    };
    let detail = (!text.is_empty()).then_some(text);
    (detail, already_done, note)
}

/// The current state of one step (a row of `steps`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepRow {
    pub step: String,
    pub state: StepState,
    pub attempt: u32,
    pub updated_ms: i64,
    pub detail: Option<String>,
    /// A success whose check held before acting (see [`Record::Step`]).
    pub already_done: bool,
    /// A success's note (see [`Record::Step`]).
    pub note: Option<String>,
}

impl StepRow {
    /// The detail as one line, as [`detail_text`] words it.
    pub fn detail_text(&self) -> Option<String> {
        detail_text(
            self.detail.as_deref(),
            self.already_done,
            self.note.as_deref(),
        )
    }
}

/// One history entry (a row of `events`), in commit order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EventRow {
    pub seq: i64,
    pub ts_ms: i64,
    pub step: Option<String>,
    pub kind: RowKind,
    pub attempt: Option<u32>,
    pub detail: Option<String>,
}

/// A pending wait that must survive a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Timer {
    pub key: String,
    pub kind: TimerKind,
    pub due_ms: i64,
}

/// An operator's approval of a gate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Approval {
    pub gate: String,
    pub approved_ms: i64,
    pub by: String,
}

/// Milliseconds since the Unix epoch; a clock before 1970 reads as 0 rather than failing a
/// write.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_spelling_round_trips() {
        for st in StepState::ALL {
            assert_eq!(StepState::parse(st.as_str()), Some(st));
            assert_eq!(st.event_kind(), format!("step.{st}"));
        }
        assert_eq!(StepState::parse("Running"), None);
    }

    #[test]
    fn kinds_round_trip_through_their_stored_spelling() {
        for k in EventKind::ALL {
            assert_eq!(RowKind::parse(k.as_str()), Some(RowKind::Event(k)));
        }
        for st in StepState::ALL {
            assert_eq!(RowKind::parse(st.event_kind()), Some(RowKind::Step(st)));
        }
        assert_eq!(RowKind::parse("soak"), None);
        for k in [TimerKind::Retry, TimerKind::Soak] {
            assert_eq!(TimerKind::parse(k.as_str()), Some(k));
        }
    }

    #[test]
    fn a_success_detail_splits_into_its_fields_and_back_into_the_same_text() {
        let cases: [(Option<&str>, bool, Option<&str>); 7] = [
            (None, false, None),
            (Some("post-condition observed"), false, None),
            (Some("check held before acting: x"), true, None),
            (None, true, None),
            (
                Some("post-condition observed"),
                false,
                Some("anti-malware off"),
            ),
            (None, false, Some("n")),
            (Some("check held"), true, Some("n; two")),
        ];
        for (d, already, note) in cases {
            let text = detail_text(d, already, note);
            let back = split_detail(StepState::Succeeded, text.clone());
            assert_eq!(
                back,
                (d.map(str::to_owned), already, note.map(str::to_owned)),
                "{text:?}"
            );
        }
        // Journals before this build wrote exactly these texts.
        assert_eq!(
            detail_text(Some("check held"), true, Some("n")).as_deref(),
            Some("already done: check held; note: n")
        );
        // Only a success has the fields: a failure's text is free text.
        let failed = Some("already done: no; note: x".to_owned());
        assert_eq!(
            split_detail(StepState::Failed, failed.clone()),
            (failed, false, None)
        );
    }
}
