//! `medic status`: the run's status (`medic_run::status::read`) shown as text or JSON; a
//! run in PostgreSQL served by `medic worker` processes also shows its workers.

use medic_journal::RunState;
use medic_run::status::{Status, StepAt, Workers};

use crate::args::{StatusArgs, StatusFormat};
use crate::{Failure, exit_codes};

pub(crate) fn status(a: &StatusArgs) -> Result<u8, Failure> {
    let target = medic_run::journal::JournalTarget::existing(a.journal.as_deref())?;
    let s = medic_run::status::read(&target)?;
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
    if let Some(w) = &s.workers {
        workers(&mut o, w);
    }
    o
}

/// The workers section: each worker (a silent one flagged), then each zone's calls and
/// the calls whose lease ran out.
fn workers(o: &mut String, w: &Workers) {
    use std::fmt::Write as _;
    let esc = medic_plan::render::escape_text;
    let silent = w.workers.iter().filter(|x| x.silent).count();
    let stopped = w.workers.iter().filter(|x| x.stopped).count();
    let mut notes = Vec::new();
    if silent > 0 {
        notes.push(format!("{silent} silent"));
    }
    if stopped > 0 {
        notes.push(format!("{stopped} stopped"));
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join(", "))
    };
    let _ = writeln!(o, "workers: {}{notes}", w.workers.len());
    for x in &w.workers {
        let state = if x.stopped {
            format!("stopped, last seen {} s ago", x.seen_s_ago)
        } else if x.silent {
            format!(
                "silent (no heartbeat for {} s, longer than its {} s lease)",
                x.seen_s_ago, x.lease_s
            )
        } else {
            format!("seen {} s ago", x.seen_s_ago)
        };
        let role = if x.coordinating { ", coordinating" } else { "" };
        let _ = writeln!(
            o,
            "worker {} (zone {}): {state}, {} calls, {} refused{role}",
            esc(&x.name),
            esc(&x.zone),
            x.calls,
            x.refused
        );
    }
    for z in &w.zones {
        let mut counts = vec![
            format!("{} queued", z.queued),
            format!("{} in flight", z.in_flight),
            format!("{} done", z.done),
        ];
        if z.lost > 0 {
            counts.push(format!("{} lost", z.lost));
        }
        if z.cancelled > 0 {
            counts.push(format!("{} cancelled", z.cancelled));
        }
        let _ = writeln!(o, "calls in zone {}: {}", esc(&z.zone), counts.join(", "));
        if z.lease_ran_out > 0 {
            let shown: Vec<String> = z
                .lease_ran_out_on
                .iter()
                .map(|c| {
                    let by = c
                        .lease_owner
                        .as_deref()
                        .map(|w| format!(", {} by {}", c.state, esc(w)))
                        .unwrap_or_else(|| format!(", {}", c.state));
                    format!("{} ({} claims{by})", esc(&c.step), c.claims)
                })
                .collect();
            let more = z.lease_ran_out.saturating_sub(shown.len() as u64);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            let _ = writeln!(
                o,
                "lease ran out in zone {} ({}): {}{more}",
                esc(&z.zone),
                z.lease_ran_out,
                shown.join(", ")
            );
        }
    }
}
