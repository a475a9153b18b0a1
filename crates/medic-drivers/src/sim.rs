//! The `sim` driver: every action goes to the simulated fleet, taking the simulated
//! duration divided by the time scale. Used by `medic demo`, `medic apply --simulate` and
//! the tests. `verify` is judged as a real run judges it (`crate::verify`): the fleet's
//! Manager view of the computer first, the host's own view second.

use std::time::Duration;

use medic_exec::{ActionFuture, ActionReply, ActionRequest, ActionStatus, Driver, ManualAsk};
use medic_sim::{SimFleet, SimResult};

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
    fn verify(&self, req: &ActionRequest, host: &str, out: medic_sim::SimOutcome) -> ActionReply {
        let host_view = match out.result {
            SimResult::Unreachable => Err("host does not answer (simulated)".to_owned()),
            // The fleet's own verdict is replaced by the judgement below; its facts are the
            // host's view.
            _ => Ok(crate::verify::host_view(&out.facts)),
        };
        let host_facts = out.facts;
        let Some(c) = self.fleet.computer(host) else {
            return ActionReply::failed(format!("unknown host `{host}`"));
        };
        let fields = crate::verify::ManagerFields {
            agent_version: Some(&c.agent_version),
            agent_status: Some(c.agent_status),
            agent_messages: vec![c.agent_status_message],
            am_state: Some(c.anti_malware_state),
            am_status: Some(c.anti_malware_status),
            am_message: Some(c.anti_malware_status_message),
            update_status: Some(c.security_update_status),
            update_message: Some(&c.security_update_message),
        };
        let min = match req.args.get("min_build").map(|b| b.parse()) {
            Some(Ok(b)) => b,
            _ => return ActionReply::failed("verify needs a valid `min_build`"),
        };
        let verdict = crate::verify::judge(
            req.host.as_ref().and_then(|h| h.platform),
            min,
            Some(Ok(crate::verify::manager_view(&fields))),
            Some(host_view),
        );
        crate::verify::with_host_facts(verdict.reply(), host_facts)
    }
}

/// Whether `action` only reads: run again freely after a crash, and no side effect.
fn read_only(action: &str) -> bool {
    crate::actions::idempotent(&medic_sim::ACTION_NAMES, action)
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
            let out = if read_only(&req.action) {
                self.fleet.perform(&host, &req.action, &req.args)
            } else {
                // Side effects are written ahead (with fsync) to the fleet's log: keep that
                // off the async workers.
                let fleet = self.fleet.clone();
                let (h, action, args) = (host.clone(), req.action.clone(), req.args.clone());
                match tokio::task::spawn_blocking(move || fleet.perform(&h, &action, &args)).await {
                    Ok(o) => o,
                    Err(e) => return ActionReply::failed(format!("simulator task failed: {e}")),
                }
            };
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
        crate::manual::ask(req)
    }
}
