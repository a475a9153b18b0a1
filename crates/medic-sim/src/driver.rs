//! The `sim` driver: every action goes to the simulated fleet, taking the simulated
//! duration divided by the time scale. Used by `medic demo`, `medic apply --simulate` and
//! the tests. `verify` is judged as a real run judges it (`medic_drivers::verify_reply`):
//! the fleet's Manager view of the computer first, the host's own view second.

use std::time::Duration;

use medic_drivers::ManagerFields;
use medic_exec::{ActionFuture, ActionReply, ActionRequest, ActionStatus, Driver, ManualAsk};

use crate::{Fence, SimFleet, SimOutcome, SimResult};

pub struct SimDriver {
    fleet: SimFleet,
    time_scale: f64,
}

impl SimDriver {
    /// `time_scale` divides the simulated durations (e.g. 300: five simulated minutes in one second).
    pub fn new(fleet: SimFleet, time_scale: f64) -> Self {
        SimDriver {
            fleet,
            time_scale: time_scale.max(1e-9),
        }
    }

    pub fn fleet(&self) -> &SimFleet {
        &self.fleet
    }
}

impl SimDriver {
    fn verify(&self, req: &ActionRequest, host: &str, out: SimOutcome) -> ActionReply {
        let host_view = match out.result {
            SimResult::Unreachable => Err("host does not answer (simulated)".to_owned()),
            // The fleet's own verdict is replaced by the judgement; its facts are the host's
            // view.
            _ => Ok(out.facts),
        };
        let Some(c) = self.fleet.computer(host) else {
            return ActionReply::failed(format!("unknown host `{host}`"));
        };
        let fields = ManagerFields {
            agent_version: Some(&c.agent_version),
            agent_status: Some(c.agent_status),
            agent_messages: vec![c.agent_status_message],
            am_state: Some(c.anti_malware_state),
            am_status: Some(c.anti_malware_status),
            am_message: Some(c.anti_malware_status_message),
            update_status: Some(c.security_update_status),
            update_message: Some(&c.security_update_message),
        };
        medic_drivers::verify_reply(req, &fields, host_view)
    }
}

/// Whether `action` only reads: run again freely after a crash, and no side effect.
fn read_only(action: &str) -> bool {
    medic_drivers::idempotent(&crate::ACTION_NAMES, action)
}

impl Driver for SimDriver {
    fn run(&self, req: ActionRequest) -> ActionFuture<'_> {
        Box::pin(async move {
            let host = req
                .host
                .as_ref()
                .map(|h| h.name.clone())
                .unwrap_or_default();
            let secs = self.fleet.duration_s(&host, &req.action, req.attempt) / self.time_scale;
            if secs > 0.0 {
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            }
            let out = if read_only(&req.action) && req.fence.is_none() {
                self.fleet.perform(&host, &req.action, &req.args)
            } else {
                // Side effects, and the fencing token a probe may raise, are written ahead
                // (with fsync) to the fleet's log, whose lock other processes may hold for
                // as long: keep that off the async workers.
                let fleet = self.fleet.clone();
                let (h, action, args) = (host.clone(), req.action.clone(), req.args.clone());
                let (step, fence) = (req.step.clone(), req.fence);
                let perform = move || {
                    let fence = fence.map(|token| Fence { step: &step, token });
                    fleet.perform_fenced(&h, &action, &args, fence)
                };
                match tokio::task::spawn_blocking(perform).await {
                    Ok(o) => o,
                    Err(e) => return ActionReply::failed(format!("simulator task failed: {e}")),
                }
            };
            // A stale worker's call is refused before anything, verify included.
            if let SimResult::Refused(m) = out.result {
                return ActionReply {
                    status: ActionStatus::Refused(m),
                    facts: out.facts,
                };
            }
            if req.action == "verify" {
                return self.verify(&req, &host, out);
            }
            let status = match out.result {
                SimResult::Ok => ActionStatus::Ok,
                SimResult::Failed(m) => ActionStatus::Failed(m),
                SimResult::Unreachable => {
                    ActionStatus::Unreachable("host does not answer (simulated)".to_owned())
                }
                // A hung action never answers; the executor's deadline ends it.
                SimResult::Hang => std::future::pending::<ActionStatus>().await,
                SimResult::Refused(m) => ActionStatus::Refused(m),
            };
            ActionReply {
                status,
                facts: out.facts,
            }
        })
    }

    fn idempotent(&self, action: &str) -> bool {
        read_only(action)
    }

    /// A rehearsal asks as a real run does; once approved, the fleet performs the manual
    /// action itself (the rehearsal plays the operator, e.g. upgrades the simulated Manager,
    /// whose build its `manager-version` probe then reads).
    fn manual_ask(&self, req: &ActionRequest) -> ManualAsk {
        medic_drivers::manual_ask(req)
    }
}

/// The actions a playbook may give `driver` (`medic_drivers::driver_actions`, with this
/// driver's: the simulator's [`crate::ACTION_NAMES`]), for `medic_config::load_playbook_for`.
pub fn driver_actions(driver: &str) -> Option<&'static [&'static str]> {
    match driver {
        "sim" => Some(&crate::ACTION_NAMES),
        _ => medic_drivers::driver_actions(driver),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// medic-drivers declares what every action does; the simulator's actions are part of
    /// that table, and the table holds nothing no driver runs.
    #[test]
    fn every_simulated_action_declares_its_effect_and_every_declared_one_is_run() {
        let mut run: BTreeSet<&str> = crate::ACTION_NAMES.into_iter().collect();
        for n in &run {
            assert!(medic_drivers::effect(n).is_some(), "`{n}` has no effect");
        }
        run.extend(medic_drivers::SSH_ACTIONS);
        run.extend(medic_drivers::DSM_ACTIONS);
        run.extend(medic_drivers::LOCAL_ACTIONS);
        run.extend(medic_drivers::MANAGER_PROBES);
        let table: BTreeSet<&str> = medic_drivers::ACTIONS.iter().map(|(n, _)| *n).collect();
        assert_eq!(run, table);
        assert!(super::read_only("manager-version"));
        assert!(!super::read_only("agent-upgrade"));
    }
}
