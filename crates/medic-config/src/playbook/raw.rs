//! The playbook as written: the shapes serde reads from the YAML tree, before any check.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawParam {
    #[serde(rename = "type")]
    pub(super) ty: At<String>,
    pub(super) values: Option<Vec<String>>,
    pub(super) per_platform: Option<bool>,
    pub(super) default: Option<Raw>,
    pub(super) default_from: Option<At<String>>,
    pub(super) example: Option<bool>,
    pub(super) doc: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    pub(super) driver: Option<At<String>>,
    pub(super) timeout: Option<At<String>>,
    pub(super) estimate: Option<At<String>>,
    pub(super) retries: Option<RawRetry>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetry {
    pub(super) max: u32,
    pub(super) backoff: Option<At<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPhase {
    pub(super) name: At<String>,
    pub(super) description: Option<String>,
    pub(super) select: Option<RawSelect>,
    #[serde(default)]
    pub(super) skip: Vec<RawSkip>,
    #[serde(default)]
    pub(super) refuse: Vec<RawNotice>,
    #[serde(default)]
    pub(super) warn: Vec<RawNotice>,
    pub(super) requires_planned: Option<RawRequiresPlanned>,
    pub(super) actions: Vec<RawAction>,
    #[serde(default)]
    pub(super) after: Vec<RawAfter>,
    pub(super) guard: Option<RawGuard>,
    pub(super) rollout: Option<RawRollout>,
    pub(super) max_parallel: Option<At<u32>>,
    pub(super) soft_fail: Option<RawCond>,
    pub(super) verifies: Option<bool>,
    pub(super) point_of_no_return: Option<bool>,
    pub(super) backout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSelect {
    #[serde(default)]
    pub(super) roles: Vec<At<String>>,
    #[serde(default)]
    pub(super) platforms: Vec<At<String>>,
    #[serde(default)]
    pub(super) groups: Vec<At<String>>,
    #[serde(default)]
    pub(super) relay_groups: Vec<At<String>>,
    #[serde(default)]
    pub(super) planned_in: Vec<At<String>>,
    pub(super) when: Option<RawCond>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSkip {
    pub(super) when: RawCond,
    pub(super) reason: At<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotice {
    pub(super) when: RawCond,
    pub(super) message: At<String>,
    pub(super) help: Option<At<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRequiresPlanned {
    pub(super) phases: Vec<At<String>>,
    pub(super) reason: At<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAction {
    pub(super) action: At<String>,
    pub(super) driver: Option<At<String>>,
    #[serde(default)]
    pub(super) args: BTreeMap<String, At<String>>,
    pub(super) timeout: Option<At<String>>,
    pub(super) retries: Option<RawRetry>,
    pub(super) estimate: Option<At<String>>,
    pub(super) check: Option<RawCheck>,
    pub(super) only: Option<RawCond>,
    pub(super) endpoint: Option<At<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    pub(super) probe: At<String>,
    pub(super) when: RawCond,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGuard {
    pub(super) probe: Option<At<String>>,
    pub(super) when: RawCond,
    pub(super) describe: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAfter {
    pub(super) phase: At<String>,
    pub(super) join: Option<At<String>>,
    pub(super) outcome: Option<At<String>>,
    pub(super) when: Option<RawCond>,
    #[serde(default)]
    pub(super) roles: Vec<At<String>>,
    #[serde(default)]
    pub(super) platforms: Vec<At<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRollout {
    pub(super) waves: At<Vec<Raw>>,
    pub(super) max_failures: Option<Raw>,
    pub(super) max_failures_total: Option<Raw>,
    pub(super) strict: Option<bool>,
    pub(super) pause: Option<At<String>>,
    pub(super) approval: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCompare {
    pub(super) left: At<String>,
    pub(super) op: At<CmpOp>,
    pub(super) right: Option<At<String>>,
    pub(super) value: Option<Raw>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEquals {
    pub(super) path: At<String>,
    pub(super) value: Raw,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIn {
    pub(super) path: At<String>,
    pub(super) values: Vec<Raw>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContains {
    pub(super) path: At<String>,
    pub(super) value: At<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawCond {
    Is(At<String>),
    IsNot(At<String>),
    Compare(RawCompare),
    Equals(RawEquals),
    In(RawIn),
    Contains(RawContains),
    All(Vec<RawCond>),
    Any(Vec<RawCond>),
    Not(Box<RawCond>),
}

impl RawCond {
    /// Where the first path starting with `prefix` is written.
    pub(super) fn first_path(&self, prefix: &str) -> Option<Loc> {
        let hit = |p: &At<String>| p.value.trim().starts_with(prefix).then_some(p.loc);
        match self {
            RawCond::Is(p) | RawCond::IsNot(p) => hit(p),
            RawCond::Compare(c) => hit(&c.left).or_else(|| c.right.as_ref().and_then(hit)),
            RawCond::Equals(e) => hit(&e.path),
            RawCond::In(i) => hit(&i.path),
            RawCond::Contains(c) => hit(&c.path),
            RawCond::All(cs) | RawCond::Any(cs) => cs.iter().find_map(|c| c.first_path(prefix)),
            RawCond::Not(c) => c.first_path(prefix),
        }
    }
}
