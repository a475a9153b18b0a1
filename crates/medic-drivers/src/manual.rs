//! The `manual` driver: an action a person performs (e.g. the Manager upgrade). Until the
//! interactive confirmation lands, it reports that the step needs a person, so the step
//! fails visibly instead of being claimed done; its `check` still lets a resumed run see
//! that the operator did it.

use medic_exec::{ActionFuture, ActionReply, ActionRequest, Driver};

#[derive(Default)]
pub struct ManualDriver;

impl Driver for ManualDriver {
    fn run(&self, req: ActionRequest) -> ActionFuture<'_> {
        Box::pin(async move {
            let args: Vec<String> = req.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
            ActionReply::failed(format!(
                "`{}` is a manual step ({}): do it by hand, then `medic resume` re-checks it",
                req.action,
                args.join(", ")
            ))
        })
    }

    fn idempotent(&self, _action: &str) -> bool {
        false
    }
}
