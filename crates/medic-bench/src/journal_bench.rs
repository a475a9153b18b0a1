//! `medic-bench journal --steps N [--parallel P]`: N no-op steps through the SQLite journal
//! and through PostgreSQL (a throwaway local server, fsync on) in the same run, each step
//! as the executor journals it: "running" appended durably (awaited before the step
//! would act), then "succeeded"; P steps in flight at once. Prints steps per second.

use std::sync::Arc;
use std::time::Instant;

use medic_journal::{Journal, JournalStore, Record, StepState};
use medic_journal_pg::server::TestServer;
use medic_journal_pg::{PgJournal, PgTarget, Source};

async fn drive<J: JournalStore + 'static>(
    j: Arc<J>,
    steps: usize,
    parallel: usize,
) -> Result<(), String> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(parallel);
    for _ in 0..parallel {
        let (j, next) = (Arc::clone(&j), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= steps {
                    return Ok::<(), String>(());
                }
                let id = format!("host-{i:07}/noop");
                j.append_durable(Record::step(id.clone(), StepState::Running, 1))
                    .await
                    .map_err(|e| e.to_string())?;
                j.append(Record::step(id, StepState::Succeeded, 1))
                    .map_err(|e| e.to_string())?;
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    j.flush().await.map_err(|e| e.to_string())
}

fn time<J: JournalStore + 'static>(
    rt: &tokio::runtime::Runtime,
    name: &str,
    j: J,
    steps: usize,
    parallel: usize,
) -> Result<(), String> {
    let t0 = Instant::now();
    rt.block_on(drive(Arc::new(j), steps, parallel))?;
    let s = t0.elapsed().as_secs_f64();
    println!(
        "{name:<10} {steps} steps, {parallel} in flight: {s:.2} s, {:.0} steps/s",
        steps as f64 / s
    );
    Ok(())
}

pub(crate) fn run(steps: usize, parallel: usize) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let dir = tempfile_dir()?;
    let sqlite = Journal::create(&dir.join("bench.sqlite")).map_err(|e| e.to_string())?;
    time(&rt, "sqlite", sqlite, steps, parallel)?;
    let server = TestServer::start()?;
    let target = PgTarget::parse(&server.url_with_password(), Source::Environment)
        .map_err(|e| e.to_string())?;
    let pg = PgJournal::create(&target, "bench", &[], &[]).map_err(|e| e.to_string())?;
    time(&rt, "postgresql", pg, steps, parallel)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf, String> {
    let d = std::env::temp_dir().join(format!("medic-journal-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
    Ok(d)
}
