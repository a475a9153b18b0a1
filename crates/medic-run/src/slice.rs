//! Air-gapped zones: a slice cut from the main run's journal (`medic plan --slice`), and
//! a slice's journal merged back into it (`medic journal merge`).
//!
//! A slice is `medic_plan::make_slice` of the plan the main journal holds, with the
//! evidence of every step outside the zone that the zone waits for, as that journal
//! recorded it. A merge trusts nothing the slice's journal says about itself: the plan it
//! holds must be the slice the main journal's plan gives (same seal), every row must be a
//! step of that slice, and no step may have ended before a step it needs. A journal is not
//! signed, so a merge checks that a slice's journal is consistent, not who wrote it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use medic_journal::{
    EventKind, Journal, JournalReader, Record, RowKind, RunState, StepRow, StepState,
};
use medic_plan::{Done, Plan, Step, StepKind};

use crate::status::{OUTCOME, Outcome};
use crate::text::shell_word;
use crate::{Error, bad, internal};

/// The `meta` key under which a merge of zone `zone` is recorded in the main journal.
fn merged_key(zone: &str) -> String {
    format!("slice_merged.{zone}")
}

fn reader(path: &Path, write: bool) -> Result<JournalReader, Error> {
    crate::files::check_existing_journal(path, write)?;
    JournalReader::open(path).map_err(|e| crate::files::journal_failure(path, &e))
}

fn plan_of(r: &JournalReader, path: &Path) -> Result<Plan, Error> {
    medic_exec::read_plan(r).map_err(|e| {
        bad(
            &path.display().to_string(),
            format!("{}: cannot read its plan: {e}", path.display()),
            "pass the journal of a run started by `medic apply`",
        )
    })
}

/// The facts of the last `step.observed` entry of each step.
fn observed(r: &JournalReader) -> Result<HashMap<String, String>, Error> {
    let mut out = HashMap::new();
    let mut after = 0;
    loop {
        let rows = r
            .events_since(after, 10_000)
            .map_err(|e| internal(e.to_string()))?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        for row in rows {
            if row.kind == RowKind::Event(EventKind::StepObserved)
                && let (Some(step), Some(d)) = (row.step, row.detail)
            {
                out.insert(step, d);
            }
        }
    }
    Ok(out)
}

/// Cuts the slice of `zone` from the run whose journal is `main`: what `medic plan --slice`
/// writes. Every step outside the zone that the zone waits for must have ended in that run,
/// and those the zone needs to succeed must have succeeded (or been skipped).
pub fn cut(main: &Path, zone: &str) -> Result<Plan, Error> {
    let name = main.display().to_string();
    let r = reader(main, false)?;
    let plan = plan_of(&r, main)?;
    let digest = medic_plan::plan_digest(&plan);
    let (member, up) = medic_plan::zone_members(&plan, zone).map_err(|e| slice_error(&e, zone))?;
    let rows: HashMap<String, StepRow> = r
        .steps()
        .map_err(|e| internal(e.to_string()))?
        .into_iter()
        .map(|s| (s.step.clone(), s))
        .collect();
    let seen = observed(&r)?;
    // Which outside steps a member needs to succeed (not merely to end).
    let mut must_succeed = vec![false; plan.steps().len()];
    for (i, s) in plan.steps().iter().enumerate() {
        if member[i] {
            for n in &s.needs {
                if !member[n.step as usize] && !n.on_finish {
                    must_succeed[n.step as usize] = true;
                }
            }
        }
    }
    let j = shell_word(&name).into_owned();
    let mut problems = Vec::new();
    for &i in &up {
        let s = plan.step(i);
        let state = rows.get(&s.id).map(|r| r.state);
        let ok = match state {
            Some(StepState::Succeeded | StepState::Skipped) => true,
            Some(StepState::Failed) => !must_succeed[i as usize],
            _ => false,
        };
        if !ok {
            let on = plan
                .host_name(s)
                .map(|h| format!(" on {h}"))
                .unwrap_or_default();
            problems.push(format!(
                "`{}`{on} is {}",
                s.id,
                state.map_or("not started", StepState::as_str)
            ));
        }
    }
    if !problems.is_empty() {
        let n = problems.len();
        let shown: Vec<String> = problems.into_iter().take(5).collect();
        return Err(bad(
            &name,
            format!(
                "zone `{zone}` waits for {n} step(s) outside it that have not succeeded in {name}: {}{}",
                shown.join(", "),
                if n > 5 { ", ..." } else { "" }
            ),
            &format!(
                "run the main plan until it stops waiting for the slice merge (`medic resume --journal {j}`; `medic apply --retry-failed --journal {j}` for failed steps), then cut the slice"
            ),
        ));
    }
    let done = |s: &Step| {
        let row = rows.get(&s.id);
        Done {
            state: row.map_or("", |r| r.state.as_str()).to_owned(),
            detail: row.and_then(StepRow::detail_text).unwrap_or_default(),
            observed: seen.get(&s.id).cloned().unwrap_or_default(),
        }
    };
    medic_plan::make_slice(&plan, &digest, zone, &done).map_err(|e| slice_error(&e, zone))
}

fn slice_error(e: &medic_plan::SliceError, zone: &str) -> Error {
    use medic_plan::SliceError as E;
    let help = match e {
        E::NotAirGapped { .. } => format!(
            "mark the zone in the inventory (`zones: [{{ name: {zone}, air_gapped: true }}]`) and start the main run with it: the main run holds only the steps of air-gapped zones"
        ),
        E::Empty { .. } => "name a zone that has hosts with steps in the plan".to_owned(),
        E::Entangled { .. } => "the zone must be able to run alone: change the joins (e.g. `relay_barrier: relay-group`) so that no step outside the zone waits for the zone and is waited for by it".to_owned(),
        E::AlreadySlice { .. } => "cut slices from the main run's journal".to_owned(),
    };
    bad("--slice", e.to_string(), &help)
}

/// What a merge did.
#[derive(Clone, Debug)]
pub struct Merged {
    pub zone: String,
    /// Steps whose state the main journal took from the slice's.
    pub steps: usize,
    /// How the slice's steps ended, by state.
    pub states: BTreeMap<String, usize>,
}

/// Merges the journal of a slice's run into the main run's journal: the slice's step
/// states become the main journal's for those steps. Refused, with nothing written: a
/// slice of another plan, a slice journal that does not hold exactly the slice the main
/// plan gives, or whose rows do not fit it, a slice run that has not ended. A second merge
/// of the same journal finds nothing new and writes nothing (`steps: 0`); a merge after
/// the site went on (a `--retry-failed` there) brings what changed.
pub fn merge(slice: &Path, main: &Path) -> Result<Merged, Error> {
    let sname = slice.display().to_string();
    let mname = main.display().to_string();
    if crate::files::same_file(slice, main) {
        return Err(bad(
            &sname,
            "the slice's journal and the main journal are the same file",
            "pass the journal the slice's run wrote at the site, then --journal the main run's",
        ));
    }
    let sr = reader(slice, false)?;
    let mr = reader(main, true)?;
    let splan = plan_of(&sr, slice)?;
    let mplan = plan_of(&mr, main)?;
    let tampered = |what: String| {
        bad(
            &sname,
            format!("{sname} does not hold a run of the slice it claims: {what}"),
            "merge the journal exactly as the slice's run wrote it; if it was damaged, run the slice again at the site",
        )
    };
    let Some(info) = splan.slice_info() else {
        return Err(bad(
            &sname,
            format!("{sname} is not the journal of a slice (its plan is a whole plan)"),
            "pass the journal of `medic apply --plan ZONE.slice.json` run at the site",
        ));
    };
    if mplan.slice_info().is_some() {
        return Err(bad(
            &mname,
            format!("{mname} is the journal of a slice, not of a main run"),
            "pass the main run's journal with --journal",
        ));
    }
    let mdigest = medic_plan::plan_digest(&mplan);
    if info.parent_seal != mdigest || info.parent_fingerprint != mplan.fingerprint() {
        return Err(bad(
            &sname,
            format!(
                "{sname} is a slice of another plan: it was cut from plan {} (fingerprint {}), and {mname} runs plan {mdigest} (fingerprint {})",
                info.parent_seal,
                short(&info.parent_fingerprint),
                short(mplan.fingerprint())
            ),
            "merge it into the journal of the run it was cut from",
        ));
    }
    let zone = info.zone.clone();
    // The slice the main plan gives, with the evidence the slice carries: equal seals, or
    // the slice's plan was changed.
    let ev: HashMap<&str, &medic_plan::Evidence> =
        info.evidence.iter().map(|e| (e.id.as_str(), e)).collect();
    let done = |s: &Step| match ev.get(s.id.as_str()) {
        Some(e) => Done {
            state: e.state.clone(),
            detail: e.detail.clone(),
            observed: e.observed.clone(),
        },
        None => Done {
            state: "missing".to_owned(),
            detail: String::new(),
            observed: String::new(),
        },
    };
    let expected = medic_plan::make_slice(&mplan, &mdigest, &zone, &done).map_err(|e| {
        tampered(format!(
            "the main plan gives no slice of zone `{zone}`: {e}"
        ))
    })?;
    let (want, got) = (
        medic_plan::plan_digest(&expected),
        medic_plan::plan_digest(&splan),
    );
    if want != got {
        return Err(tampered(format!(
            "its plan (seal {got}) is not the slice of zone `{zone}` that {mname}'s plan gives (seal {want})"
        )));
    }
    // The evidence must still be what the main journal says.
    let mrows: HashMap<String, StepRow> = mr
        .steps()
        .map_err(|e| internal(e.to_string()))?
        .into_iter()
        .map(|s| (s.step.clone(), s))
        .collect();
    for e in &info.evidence {
        let now = mrows.get(&e.id).map_or("not started", |r| r.state.as_str());
        if now != e.state {
            return Err(tampered(format!(
                "its evidence says `{}` {}, and {mname} says {now}",
                e.id, e.state
            )));
        }
    }
    // The slice run must have ended.
    let outcome: Option<Outcome> = sr
        .meta(OUTCOME)
        .map_err(|e| internal(e.to_string()))?
        .and_then(|v| serde_json::from_str(&v).ok());
    if outcome
        .as_ref()
        .is_none_or(|o| o.state == RunState::Running)
    {
        let j = shell_word(&sname).into_owned();
        return Err(bad(
            &sname,
            format!("the slice's run in {sname} has not ended (it runs, or was killed)"),
            &format!(
                "let it end at the site, or finish it there with `medic resume --journal {j}`, then merge"
            ),
        ));
    }
    // Every row a step of the slice, and no step ended before what it needs.
    let srows = sr.steps().map_err(|e| internal(e.to_string()))?;
    let state: HashMap<&str, StepState> =
        srows.iter().map(|r| (r.step.as_str(), r.state)).collect();
    for row in &srows {
        let Some(i) = splan.step_index(&row.step) else {
            return Err(tampered(format!(
                "step `{}` is not a step of the slice",
                row.step
            )));
        };
        let ended = matches!(row.state, StepState::Succeeded | StepState::Failed);
        if !ended {
            continue;
        }
        let s = splan.step(i);
        for n in &s.needs {
            let need = splan.step(n.step);
            let ok = match state.get(need.id.as_str()) {
                Some(StepState::Succeeded | StepState::Skipped) => true,
                Some(StepState::Failed) => n.on_finish,
                // A barrier or gate that no row records: ended if what it needs did.
                None => need.kind != StepKind::Action,
                _ => false,
            };
            if !ok {
                return Err(tampered(format!(
                    "step `{}` is {} but `{}`, which it needs, is {}",
                    row.step,
                    row.state.as_str(),
                    need.id,
                    state
                        .get(need.id.as_str())
                        .map_or("not started", |s| s.as_str())
                )));
            }
        }
    }
    // What the main journal does not have yet.
    let seen = observed(&sr)?;
    let mut records = Vec::new();
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    for row in &srows {
        if !row.state.is_terminal() || row.state == StepState::Cancelled {
            continue;
        }
        *states.entry(row.state.as_str().to_owned()).or_default() += 1;
        let same = mrows.get(&row.step).is_some_and(|m| {
            m.state == row.state
                && m.attempt == row.attempt
                && m.detail == row.detail
                && m.already_done == row.already_done
                && m.note == row.note
        });
        if same {
            continue;
        }
        if let Some(o) = seen.get(&row.step) {
            records.push(Record::Event {
                step: Some(row.step.clone()),
                kind: EventKind::StepObserved,
                detail: Some(o.clone()),
            });
        }
        records.push(Record::Step {
            step: row.step.clone(),
            state: row.state,
            attempt: row.attempt,
            detail: row.detail.clone(),
            already_done: row.already_done,
            note: row.note.clone(),
        });
    }
    let steps = records
        .iter()
        .filter(|r| matches!(r, Record::Step { .. }))
        .count();
    if steps == 0 {
        return Ok(Merged {
            zone,
            steps,
            states,
        });
    }
    drop(mr);
    let j = Journal::open_existing(main).map_err(|e| crate::files::journal_failure(main, &e))?;
    for r in records {
        j.append(r).map_err(|e| internal(e.to_string()))?;
    }
    let note = serde_json::json!({ "slice_seal": got, "steps": steps }).to_string();
    j.append(Record::Meta {
        key: merged_key(&zone),
        value: note,
    })
    .map_err(|e| internal(e.to_string()))?;
    j.close()
        .map_err(|e| crate::files::journal_failure(main, &e))?;
    Ok(Merged {
        zone,
        steps,
        states,
    })
}

fn short(f: &str) -> &str {
    &f[..f.len().min(16)]
}
