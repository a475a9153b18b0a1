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
        detail: Option<String>,
    },
    /// History only: gates, waves, budgets, the change window.
    Event {
        step: Option<String>,
        kind: String,
        detail: Option<String>,
    },
    /// A retry wait or soak pause that must survive a restart; replaces one with the same key.
    TimerSet {
        key: String,
        kind: String,
        due_ms: i64,
    },
    TimerClear {
        key: String,
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
        }
    }
}

/// The current state of one step (a row of `steps`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepRow {
    pub step: String,
    pub state: StepState,
    pub attempt: u32,
    pub updated_ms: i64,
    pub detail: Option<String>,
}

/// One history entry (a row of `events`), in commit order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EventRow {
    pub seq: i64,
    pub ts_ms: i64,
    pub step: Option<String>,
    pub kind: String,
    pub attempt: Option<u32>,
    pub detail: Option<String>,
}

/// A pending wait that must survive a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Timer {
    pub key: String,
    pub kind: String,
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
}
