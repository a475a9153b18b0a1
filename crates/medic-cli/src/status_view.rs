//! `medic status`: the run's status (`medic_run::status::read`) shown as text or JSON.

use medic_journal::RunState;
use medic_run::status::{Status, StepAt};

use crate::args::{StatusArgs, StatusFormat};
use crate::{Failure, exit_codes};

pub(crate) fn status(a: &StatusArgs) -> Result<u8, Failure> {
    let s = medic_run::status::read(&a.journal)?;
    let out = match a.format {
        StatusFormat::Json => {
            serde_json::to_string_pretty(&s).map_err(|x| Failure::Internal(x.to_string()))? + "\n"
        }
        StatusFormat::Text => text(&s),
    };
    crate::write_out(None, &out)?;
    Ok(exit_codes::OK)
}

fn text(s: &Status) -> String {
    use std::fmt::Write as _;
    let esc = medic_plan::render::escape_text;
    let mut o = String::new();
    let fp = s
        .fingerprint
        .as_deref()
        .map(|f| &f[..f.len().min(16)])
        .unwrap_or("?");
    let state = match (s.run_state, &s.stop_reason) {
        (Some(RunState::Stopped), Some(r)) => format!("stopped: {}", esc(r)),
        (Some(RunState::Failed), _) => "finished with failed steps".to_owned(),
        (None, _) => "state not recorded".to_owned(),
        (Some(other), _) => other.as_str().to_owned(),
    };
    let _ = writeln!(
        o,
        "run {} (plan {fp}): {state}",
        esc(s.run_id.as_deref().unwrap_or("?"))
    );
    if let Some(n) = &s.next {
        let _ = writeln!(o, "next: {}", esc(n));
    }
    if let Some(w) = &s.window {
        let _ = writeln!(o, "window: {}", esc(w));
    }
    if let Some(p) = &s.preflight {
        let _ = writeln!(o, "pre-flight: {}", esc(p));
    }
    let counts: Vec<String> = s.steps.iter().map(|(k, v)| format!("{v} {k}")).collect();
    let _ = writeln!(o, "steps and gates: {}", counts.join(", "));
    let on = |x: &StepAt| match &x.host {
        Some(h) => format!("{} on {h}", x.step),
        None => x.step.clone(),
    };
    let list = |o: &mut String, label: &str, items: Vec<String>| {
        if items.is_empty() {
            return;
        }
        let n = items.len();
        let shown = items.into_iter().take(20).collect::<Vec<_>>().join(", ");
        let more = if n > 20 {
            format!(" and {} more", n - 20)
        } else {
            String::new()
        };
        let _ = writeln!(o, "{label} ({n}): {shown}{more}");
    };
    list(&mut o, "running", s.running_on.iter().map(on).collect());
    for f in s.failed_on.iter().take(20) {
        let why = f
            .detail
            .as_deref()
            .map(|d| format!(": {}", esc(d)))
            .unwrap_or_default();
        let _ = writeln!(o, "failed: {}{why}", on(f));
    }
    if s.failed_on.len() > 20 {
        let _ = writeln!(o, "failed: and {} more", s.failed_on.len() - 20);
    }
    list(&mut o, "unknown", s.unknown.clone());
    list(
        &mut o,
        "blocked",
        s.blocked
            .iter()
            .map(|b| {
                let at = on(&StepAt {
                    step: b.step.clone(),
                    host: b.host.clone(),
                    detail: None,
                });
                format!("{at} (by {})", b.blocked_by)
            })
            .collect(),
    );
    list(&mut o, "pending", s.pending.iter().map(on).collect());
    for w in &s.gates_waiting {
        let _ = writeln!(o, "gate waiting for approval: {}: {}", w.id, w.approve);
    }
    for w in &s.manual_waiting {
        let on = w
            .host
            .as_deref()
            .map(|h| format!(" on {h}"))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "manual step waiting for the operator: {}{on}: once the work is done, {}",
            w.id, w.approve
        );
    }
    for z in &s.slices_waiting {
        let _ = writeln!(
            o,
            "zone {} waiting for slice merge ({} steps and gates): cut its slice with `{}`, run it there, then `{}`",
            esc(&z.zone),
            z.steps,
            esc(&z.slice),
            esc(&z.merge)
        );
    }
    list(
        &mut o,
        "approved",
        s.approvals.iter().map(|a| esc(a).into_owned()).collect(),
    );
    o
}
