//! Writes N steps x (Running, Succeeded) through the journal, then reopens it and reads the
//! final state of every step, printing records/s and the reopen time.
//!
//! `cargo run --release -p medic-journal --example journal_bench -- [STEPS] [DIR]`
//! (defaults: 1000000 steps, a temporary directory).

use std::path::PathBuf;
use std::time::Instant;

use medic_journal::{Journal, JournalReader, Record, StepState};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let steps: usize = match args.next() {
        Some(n) => n.parse()?,
        None => 1_000_000,
    };
    let tmp = match args.next() {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let path: PathBuf = tmp.path().join("run.journal");

    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let start = Instant::now();
    let journal = Journal::create(&path)?;
    journal.append(Record::Meta {
        key: medic_journal::meta_keys::RUN_ID.to_owned(),
        value: "bench".to_owned(),
    })?;
    for i in 0..steps {
        let step = format!("host-{i:07}/upgrade-agent");
        journal.append(Record::step(step.clone(), StepState::Running, 1))?;
        journal.append(Record::step(step, StepState::Succeeded, 1))?;
    }
    let queued = start.elapsed();
    rt.block_on(journal.flush())?;
    let committed = start.elapsed();
    journal.close()?;
    let closed = start.elapsed();
    let records = steps * 2;
    println!(
        "wrote {records} records for {steps} steps: queued in {:.2} s, committed in {:.2} s ({:.0} records/s), closed in {:.2} s",
        queued.as_secs_f64(),
        committed.as_secs_f64(),
        records as f64 / committed.as_secs_f64(),
        closed.as_secs_f64(),
    );

    let start = Instant::now();
    let reader = JournalReader::open(&path)?;
    let rows = reader.steps()?;
    let reopen = start.elapsed();
    let succeeded = rows
        .iter()
        .filter(|r| r.state == StepState::Succeeded)
        .count();
    assert_eq!(succeeded, steps, "every step reads back as succeeded");
    println!(
        "reopened and read {} steps in {:.3} s",
        rows.len(),
        reopen.as_secs_f64()
    );
    let start = Instant::now();
    let counts = reader.counts()?;
    println!(
        "counts {counts:?} in {:.3} s",
        start.elapsed().as_secs_f64()
    );
    let size = std::fs::metadata(&path)?.len();
    println!("journal size {:.1} MiB", size as f64 / 1_048_576.0);
    Ok(())
}
