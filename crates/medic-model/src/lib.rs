//! Pure types shared by every medic crate: the Deep Security build numbers, the validated
//! inventory and the validated playbook. This crate does no IO and knows nothing of YAML,
//! terminals or drivers; `medic-config` builds these values and `medic-plan` reads them.

mod build;
mod cond;
pub mod graph;
mod inventory;
pub mod names;
mod playbook;

pub use build::{AgentBuild, BuildError, BuildLines, ManagerBuild};
pub use cond::{
    CmpOp, Cond, FactType, Operand, Path, PathRoot, Scalar, Value, format_duration, parse_duration,
};
pub use inventory::{
    Become, DEFAULT_ZONE, Host, Inventory, Manager, Platform, RelayGroup, Role, Settings, Zone,
};
pub use playbook::{
    ActionSpec, After, AfterOn, Budget, Check, Guard, Join, Notice, ParamSpec, ParamType, Params,
    Phase, Playbook, RequiresPlanned, Retry, Rollout, Selector, SkipRule, Template, TemplatePart,
    WaveSpec,
};
