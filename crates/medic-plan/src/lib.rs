//! The planner: from a validated inventory and playbook to a sealed [`Plan`], plus its
//! estimates and renderings. This crate does no IO; the CLI reads files and writes output.
//!
//! The planner is generic: it knows selectors, joins, waves and budgets, not Deep Security.
//! The Deep Security knowledge is in the playbook and in `medic-model`'s build type.

mod bin;
mod build;
mod estimate;
mod facts;
mod fingerprint;
mod json;
mod plan;
pub mod render;
mod seal;
mod slice;
mod window;

pub use bin::{PLAN_BIN_MAGIC, PlanBinError, plan_from_bytes, plan_to_bytes};
pub use build::{PlanError, Refusal, build_plan};
pub use fingerprint::fingerprint_inputs;
pub use json::{
    BadCondition, InvalidPlan, PLAN_FORMAT, PlanFile, PlanReadError, plan_digest, plan_from_json,
    plan_to_json, read_plan_json, write_plan_json, write_plan_json_signed,
};
pub use plan::{
    Estimate, Evidence, GateSpec, Need, PhaseInfo, Plan, PlanHost, PlanSize, Skipped, SliceInfo,
    Step, StepCheck, StepGuard, StepKind, WaveInfo,
};
pub use slice::{Done, SliceError, held_steps, make_slice, zone_members};
pub use window::{Window, WindowError};
