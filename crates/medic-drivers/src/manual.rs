//! The `manual` driver: an action a person performs (e.g. the Manager upgrade).
//!
//! The executor pauses at a manual step (`medic_exec::MANUAL_DRIVER`): it runs the step's
//! check first (the work may be done already), otherwise asks the operator with
//! [`ask`]'s wording and waits for their approval (`medic approve`, or the prompt on a
//! terminal; `--yes` never gives it). Only then does it call this driver's action, which
//! has nothing left to do, and observe the result through the check's probe, which this
//! driver hands to the `observer`: the `dsm` driver for the Manager's build
//! (`manager-version`). The approval is never the evidence: the check is.

use std::sync::Arc;

use medic_exec::{ActionFuture, ActionReply, ActionRequest, ActionStatus, Driver, ManualAsk};

/// The probes a manual step's check may use, answered through the Manager's API.
pub const MANAGER_PROBES: &[&str] = &["manager-version"];

/// The driver. `observer` answers the checks' probes ([`MANAGER_PROBES`]).
pub struct ManualDriver {
    observer: Option<Arc<dyn Driver>>,
}

impl ManualDriver {
    /// `observer` is the `dsm` driver of the run (or a rehearsal's simulated fleet), `None`
    /// when no Manager API is configured: a check then fails, saying how to configure one.
    pub fn new(observer: Option<Arc<dyn Driver>>) -> Self {
        ManualDriver { observer }
    }
}

/// What the operator is told and asked at a manual step. The Manager upgrade is spelled
/// out (the advisory's step 1, "Manager first when needed"; ds-domain.md §5: an agent's
/// release must not be newer than the Manager's; no REST operation upgrades a Manager, so a
/// person runs its installer: inferred from §2.7, which finds no such operation for agents
/// either); any other action is named with its host and arguments.
pub fn ask(req: &ActionRequest) -> ManualAsk {
    let host = req.host.as_ref().map(|h| h.name.as_str());
    ask_for(req, host)
}

fn ask_for(req: &ActionRequest, host: Option<&str>) -> ManualAsk {
    match (req.action.as_str(), host, req.args.get("to")) {
        ("manager-upgrade", Some(host), Some(to)) => ManualAsk {
            instruction: format!(
                "upgrade the Deep Security Manager {host} to build {to} or later (its installer, on the Manager's server); medic then reads the Manager's build from its API"
            ),
            question: format!("did you upgrade the Manager {host} to {to}?"),
        },
        _ => ManualAsk::generic(req),
    }
}

impl Driver for ManualDriver {
    fn run(&self, req: ActionRequest) -> ActionFuture<'_> {
        Box::pin(async move {
            if !MANAGER_PROBES.contains(&req.action.as_str()) {
                // The executor calls the action itself only after the operator's approval:
                // the person did the work, and the check that follows observes it.
                return ActionReply::ok();
            }
            let Some(observer) = &self.observer else {
                return ActionReply {
                    status: ActionStatus::Refused(format!(
                        "no Manager API is configured, so `{}` cannot read the Manager's build: pass --dsm URL (with its API key in $MEDIC_DSM_API_KEY or --dsm-api-key-file)",
                        req.action
                    )),
                    facts: Default::default(),
                };
            };
            let mut reply = observer.run(req).await;
            if let ActionStatus::Failed(m) | ActionStatus::Unreachable(m) = &mut reply.status {
                // A Manager that is restarting after its upgrade answers nothing for a
                // while; a wrong address never answers: say where medic looks.
                m.push_str(" (medic reads the Manager's build from its API: check --dsm URL, --dsm-ca and the API key)");
            }
            reply
        })
    }

    fn idempotent(&self, action: &str) -> bool {
        crate::actions::idempotent(MANAGER_PROBES, action)
    }

    fn manual_ask(&self, req: &ActionRequest) -> ManualAsk {
        ask(req)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use medic_exec::{ActionFuture, ActionReply, ActionRequest, ActionStatus, Driver};
    use medic_model::Value;

    use super::*;

    struct Build(&'static str);

    impl Driver for Build {
        fn run(&self, req: ActionRequest) -> ActionFuture<'_> {
            Box::pin(async move {
                assert_eq!(req.action, "manager-version");
                let mut r = ActionReply::ok();
                r.facts.insert(
                    "manager_version".to_owned(),
                    Value::Manager(self.0.parse().expect("build")),
                );
                r
            })
        }
        fn idempotent(&self, _: &str) -> bool {
            true
        }
    }

    fn req(action: &str) -> ActionRequest {
        ActionRequest {
            step: "manager-upgrade/dsm01".to_owned(),
            host: None,
            action: action.to_owned(),
            args: BTreeMap::from([("to".to_owned(), "20.0.463".to_owned())]),
            attempt: 1,
            after_ms: None,
            fence: None,
        }
    }

    #[tokio::test]
    async fn probes_go_to_the_observer_and_without_one_say_to_pass_dsm() {
        let d = ManualDriver::new(Some(Arc::new(Build("20.0.463"))));
        let r = d.run(req("manager-version")).await;
        assert_eq!(r.status, ActionStatus::Ok);
        assert_eq!(
            r.facts.get("manager_version").map(ToString::to_string),
            Some("20.0.463".to_owned())
        );
        let none = ManualDriver::new(None).run(req("manager-version")).await;
        assert!(
            matches!(&none.status, ActionStatus::Refused(m) if m.contains("pass --dsm URL")),
            "{none:?}"
        );
        // The action itself (after the approval) does nothing and reports no fact.
        let act = ManualDriver::new(None).run(req("manager-upgrade")).await;
        assert_eq!(act, ActionReply::ok());
    }

    #[test]
    fn the_manager_upgrade_is_asked_in_words() {
        let a = ask_for(&req("manager-upgrade"), Some("dsm01"));
        assert_eq!(a.question, "did you upgrade the Manager dsm01 to 20.0.463?");
        assert!(
            a.instruction
                .starts_with("upgrade the Deep Security Manager dsm01 to build 20.0.463"),
            "{}",
            a.instruction
        );
        let other = ask(&req("format-disk"));
        assert_eq!(other.question, "did you do `format-disk` (to=20.0.463)?");
    }
}
