//! `medic worker` and `medic apply --workers`: the lines a worker prints, and the
//! coordinator's turn (the run executed here, as `resume` would, its calls sent to the
//! workers through the queue). The work itself is `medic_run::worker`'s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use medic_run::journal::JournalTarget;
use medic_run::resume::Request;
use medic_run::run::Ready;
use medic_run::worker::{Hub, Spec};
use medic_run::{bad, runtime};

use crate::Failure;
use crate::args::{Progress, WorkerArgs};
use crate::exit_codes;

/// `medic apply --workers`: the run exists in its database with its plan and inputs;
/// nothing ran. Says how to start its workers.
pub(crate) fn leave_to_workers(ready: Ready) -> u8 {
    let Ready {
        plan,
        journal,
        opts,
        ..
    } = ready;
    let location = journal.path().display().to_string();
    let zones = medic_run::worker::zones(&plan);
    if let Err(e) = journal.close() {
        eprintln!("error: the journal could not be closed cleanly: {e}");
        return exit_codes::INTERNAL;
    }
    eprintln!(
        "run {} is in the database; nothing ran yet: it waits for its workers",
        opts.run_id
    );
    eprintln!(
        "  start at least one worker per zone, where it reaches the zone's hosts ({} zones: {}):",
        zones.len(),
        zones.iter().copied().collect::<Vec<_>>().join(", ")
    );
    for z in &zones {
        eprintln!(
            "    medic worker --journal {} --zone {}",
            medic_run::text::shell_word(&location),
            medic_run::text::shell_word(z)
        );
    }
    eprintln!(
        "  watch it: medic status --journal {}",
        medic_run::text::shell_word(&location)
    );
    exit_codes::OK
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}", std::process::id())
}

pub(crate) fn worker(a: &WorkerArgs) -> Result<u8, Failure> {
    let target = match &a.journal {
        Some(p) => JournalTarget::from_arg(p)?,
        None => JournalTarget::from_env()?.ok_or_else(|| {
            bad(
                "--journal",
                "a worker needs the run's journal, and none was given",
                "pass --journal postgres://USER@HOST/DB?run=RUN-ID (or set MEDIC_JOURNAL_URL)",
            )
        })?,
    };
    let spec = Spec {
        zones: a.zone.clone(),
        max_parallel: a.max_parallel as usize,
        lease: Duration::from_secs_f64(a.lease),
        name: a.name.clone().unwrap_or_else(default_name),
    };
    let rt = runtime()?;
    let w = Arc::new(medic_run::worker::open(spec, target)?);
    let name = w.spec.name.clone();
    eprintln!(
        "worker {name}: serving zone {} of run {} (at most {} calls at once, lease {}s)",
        w.spec.zones.join(", "),
        w.run_id,
        w.spec.max_parallel,
        w.spec.lease.as_secs_f64()
    );
    let coordinating = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let say: medic_run::worker::Say = Arc::new(|line| eprintln!("{line}"));
    let serving = rt.spawn(medic_run::worker::serve(
        w.clone(),
        coordinating.clone(),
        stop.clone(),
        say,
    ));
    // Meanwhile, this thread waits for its turn to coordinate: the run's writer lock.
    let mut ran: Option<u8> = None;
    let q = rt.block_on(medic_run::worker::queue(&w))?;
    while !serving.is_finished() {
        if rt.block_on(medic_run::worker::should_coordinate(&w, &q))? {
            let target = JournalTarget::Postgres(Box::new(w.target.clone()));
            let req = Request {
                journal: &target,
                events: None,
                yes: false,
                retry_failed: false,
                window: None,
            };
            match medic_run::resume::open(&req, &crate::report::warnings) {
                Ok(mut ready) => {
                    let (hub, cancelled) = rt.block_on(Hub::start(&w.target))?;
                    coordinating.store(true, Ordering::Relaxed);
                    eprintln!(
                        "worker {name}: coordinating run {}{}",
                        w.run_id,
                        if cancelled > 0 {
                            format!(
                                " (took over: {cancelled} calls the last coordinator queued are decided again)"
                            )
                        } else {
                            String::new()
                        }
                    );
                    ready.drivers = hub.drivers(ready.drivers);
                    let code = crate::apply::execute(ready, Progress::Never)?;
                    coordinating.store(false, Ordering::Relaxed);
                    ran = Some(code);
                    break;
                }
                // Another worker took the lock between the two looks: its turn.
                Err(_) if !rt.block_on(medic_run::worker::should_coordinate(&w, &q))? => {}
                Err(e) => return Err(e),
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // The run ended here, or elsewhere: finish what this worker holds, then leave.
    stop.store(true, Ordering::Relaxed);
    let served = rt
        .block_on(serving)
        .map_err(|e| medic_run::internal(format!("the worker stopped: {e}")))??;
    let state = served.run_state.as_deref().unwrap_or("ended");
    eprintln!(
        "worker {name}: leaving; {} calls served, {} stale writes refused; run {} {state}",
        served.calls, served.refused, w.run_id
    );
    Ok(ran.unwrap_or(match served.run_state.as_deref() {
        Some("failed") => exit_codes::RUN_FAILED,
        Some("stopped") => exit_codes::STOPPED,
        _ => exit_codes::OK,
    }))
}
