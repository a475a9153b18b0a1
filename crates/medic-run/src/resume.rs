//! Opening an existing run's journal to go on with it (`medic resume`, `medic apply
//! --retry-failed`): the file checked, its plan, inputs and the state of every step read
//! back, today's inputs compared with the plan's fingerprint (drift refused, naming the
//! hosts), the drivers built, and a new change window recorded.

use std::path::PathBuf;

use medic_config::Problems;
use medic_journal::{Journal, JournalRead, JournalStore, meta_keys};

use crate::journal::{JournalTarget, RunJournal};

use crate::load::parse_window;
use crate::run::{INPUTS, Inputs, Ready, options, run_id};
use crate::{Error, bad, internal, runtime};

/// What `resume` is asked to do.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// The run's journal (`--journal`, else `MEDIC_JOURNAL_URL`: see
    /// [`JournalTarget::existing`]).
    pub journal: &'a JournalTarget,
    /// `--events`: another events file than the recorded one.
    pub events: Option<PathBuf>,
    /// `--yes`: gates that ask for an approval open without one from now on.
    pub yes: bool,
    /// `apply --retry-failed`: the failed steps run again.
    pub retry_failed: bool,
    /// `--window`: replaces the recorded change window (a run stopped at the end of its
    /// window goes on in the next one; the plan stays the same).
    pub window: Option<&'a str>,
}

/// Opens the run of `req.journal` to go on with it. `warn` is given the warnings of the
/// inputs reloaded for the drift check.
pub fn open(req: &Request<'_>, warn: &(dyn Fn(&Problems) + Sync)) -> Result<Ready, Error> {
    let Request {
        journal: path,
        events,
        yes,
        retry_failed,
        window: new_window,
    } = req.clone();
    let target = path.clone();
    let path = &target.location();
    let name = path.display().to_string();
    // Checked before anything is read or written.
    let new = parse_window(new_window)?;
    if let JournalTarget::Sqlite(p) = &target {
        crate::files::check_existing_journal(p, true)?;
    }
    if let Some(ev) = &events {
        crate::files::check_events(ev, path)?;
    }
    let reader = target.reader(true)?;
    // A database named without its run: the one it holds, named from here on (the same
    // target, so that a password and `sslrootcert` from the environment stay with it).
    let path = &reader_location(&target, &reader);
    let target = match &reader {
        crate::journal::AnyReader::Postgres(r) => target.with_run(r.run_id()),
        crate::journal::AnyReader::Sqlite(_) => target,
    };
    let get = |k: &str| reader.meta(k).map_err(|e| internal(e.to_string()));
    let inputs: Result<Inputs, _> = serde_json::from_str(&get(INPUTS)?.unwrap_or_default());
    // The inputs of the drift check, when they are still on disk.
    let on_disk = inputs
        .as_ref()
        .ok()
        .and_then(|i| match (&i.inventory, &i.playbook) {
            (Some(inv), Some(pb)) if inv.exists() && pb.exists() => {
                Some((inv.clone(), pb.clone(), i.sets.clone()))
            }
            _ => None,
        });
    // Three independent reads at the same time: the plan, the state of every step, and
    // today's inputs with the fingerprint a plan of them would have (no planning).
    let (read, today) = std::thread::scope(|s| {
        let read = s.spawn(|| read_for_resume(&target));
        let today = on_disk.map(|(inv, pb, sets)| {
            let l = crate::load::files(&inv, &pb, &sets)?;
            warn(&l.warnings);
            let (i, p, pb_text, inv_text) =
                (l.inventory, l.playbook, l.playbook_text, l.inventory_text);
            let (fingerprint, digests) = medic_plan::fingerprint_inputs(&i, &p, &pb_text);
            Ok::<_, Error>((inv, fingerprint, digests, i, inv_text))
        });
        (
            read.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            today,
        )
    });
    let (plan, prior) = read.map_err(|e| match e {
        medic_exec::ReadError::NoPlan => bad(
            &name,
            "the journal holds no plan",
            "was it written by `medic apply`?",
        ),
        medic_exec::ReadError::Journal(e) => crate::files::journal_failure(path, &e),
        e => bad(
            &name,
            format!("the journal {name} is damaged: {e}"),
            "restore it from a backup or a copy; medic changed nothing",
        ),
    })?;
    let mut inputs = inputs.map_err(|e| {
        bad(
            &name,
            format!("the journal's inputs cannot be read: {e}"),
            "resume it with the medic that started it",
        )
    })?;
    let id = get(meta_keys::RUN_ID)?.unwrap_or_else(run_id);
    let old_window = inputs.window.clone();
    if let Some(w) = new_window {
        inputs.window = Some(w.to_owned());
    }
    let window = match new {
        Some(w) => Some(w),
        None => parse_window(inputs.window.as_deref())?,
    };

    // Refuse a plan whose inputs changed since the run started, naming the hosts.
    let mut loaded = None;
    if let Some(today) = today {
        let (inv, now, digests, i, inv_text) = today?;
        if now != plan.fingerprint() {
            let drifted = plan.drifted_hosts_from(&digests);
            let hosts = if drifted.is_empty() {
                "none (the playbook or parameters changed)".to_owned()
            } else {
                drifted.join(", ")
            };
            return Err(bad(
                &inv.display().to_string(),
                format!(
                    "the inputs changed since this run started (plan fingerprint differs); hosts that drifted: {hosts}"
                ),
                "restore the inputs, or start a new run with `medic apply` for the changed fleet",
            ));
        }
        // A rehearsal's fleet is built from the inventory it recorded: when that is the text
        // just loaded, it is not loaded twice.
        if inputs.sim_inventory.as_deref() == Some(inv_text.as_str()) {
            loaded = Some(i);
        }
    }
    drop(reader);
    if yes {
        inputs.yes = true;
    }
    let events = events.unwrap_or_else(|| inputs.events.clone());
    let local = target.local_base(&id, Some(&inputs.events));
    let drivers = crate::drivers::build(&plan, &inputs, Some(&local), loaded)?;
    let journal = match &target {
        JournalTarget::Sqlite(p) => Journal::open_existing(p)
            .map(RunJournal::Sqlite)
            .map_err(|e| crate::files::journal_failure(p, &e))?,
        JournalTarget::Postgres(t) => medic_journal_pg::PgJournal::open_existing(t)
            .map(RunJournal::Postgres)
            .map_err(|e| crate::journal::db_failure(path, &e))?,
    };
    let mut window_changed = None;
    if new_window.is_some() && inputs.window != old_window {
        record_window(&journal, &inputs, old_window.as_deref())?;
        window_changed = Some((
            old_window.unwrap_or_else(|| "none".to_owned()),
            inputs.window.clone().unwrap_or_else(|| "none".to_owned()),
        ));
    }
    let opts = options(&inputs, id, window, retry_failed);
    Ok(Ready {
        plan,
        drivers,
        journal,
        prior,
        opts,
        inputs,
        events,
        window_changed,
    })
}

/// A new change window goes into the journal's inputs (so a later `resume` keeps it) and
/// its history, durably, before the run goes on in it.
fn record_window(journal: &RunJournal, inputs: &Inputs, old: Option<&str>) -> Result<(), Error> {
    let json = serde_json::to_string(inputs).map_err(|e| internal(e.to_string()))?;
    let new = inputs.window.as_deref().unwrap_or("none");
    let recorded = journal
        .append(medic_journal::Record::Event {
            step: None,
            kind: medic_journal::EventKind::WindowChanged,
            detail: Some(format!("from {} to {new}", old.unwrap_or("none"))),
        })
        .and_then(|()| {
            journal.append(medic_journal::Record::Meta {
                key: INPUTS.to_owned(),
                value: json,
            })
        });
    let rt = runtime()?;
    recorded
        .and_then(|()| rt.block_on(journal.flush()))
        .map_err(|e| internal(format!("cannot record the new window in the journal: {e}")))?;
    Ok(())
}

/// The journal's name as commands give it: a database's URL with its run.
fn reader_location(target: &JournalTarget, reader: &crate::journal::AnyReader) -> PathBuf {
    match reader {
        crate::journal::AnyReader::Sqlite(_) => target.location(),
        crate::journal::AnyReader::Postgres(r) => PathBuf::from(r.location()),
    }
}

/// The plan and the state of every step: a file read over two connections at once, a
/// database over the reader's.
fn read_for_resume(
    target: &JournalTarget,
) -> Result<(medic_plan::Plan, medic_exec::Prior), medic_exec::ReadError> {
    match target {
        JournalTarget::Sqlite(p) => medic_exec::read_for_resume(p),
        JournalTarget::Postgres(t) => {
            let r = medic_journal_pg::PgReader::open(t)?;
            Ok((medic_exec::read_plan(&r)?, medic_exec::read_prior(&r)?))
        }
    }
}
