//! `medic-exec-bench [--steps N] [--dir DIR] [--resumes R] [--json] [--keep]`: the executor's
//! overhead. A generated plan of N no-op steps (N/10 hosts x 10 chained `noop` actions)
//! runs on the simulated fleet at zero latency with the journal on (made as `medic apply`
//! makes it, plan included); then the finished journal is resumed R times (default 3), each
//! in a fresh process doing what `medic resume` does: read the plan back from the journal
//! and the state of every step, open the journal for writing, decide there is nothing to
//! do. Prints wall times, per-step cost, peak RSS, and the median end-to-end resume.
//!
//! `medic-exec-bench --resume JOURNAL` is that child: one resume of an existing journal.
//! `--json` also times reading the plan back from `medic.plan/v1` JSON, as journals made
//! before the binary plan stored it.

use std::sync::Arc;
use std::time::Instant;

use medic_exec::{Control, Drivers, Fanout, RunOptions};
use medic_journal::{Journal, JournalReader};

use medic_bench::noop::{NoopPlan, peak_rss_mib};

/// CPU seconds (user + system) this process used so far: steadier than wall time on a
/// machine shared with other work. Assumes the usual 100 clock ticks per second.
fn cpu_s() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the `(comm)`; utime and stime are the 14th and 15th fields.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let u: f64 = f.get(11)?.parse().ok()?;
            let k: f64 = f.get(12)?.parse().ok()?;
            Some((u + k) / 100.0)
        })
        .unwrap_or(f64::NAN)
}

/// One resume of the finished journal at `path`, as `medic resume` does it (without the
/// drift check, which needs the inputs on disk, timed by the parent): prints one line of
/// figures, `key=value`, for the parent to collect.
fn resume_child(path: &std::path::Path) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let cpu0 = cpu_s();
    let t = Instant::now();
    let (plan, prior) = medic_exec::read_for_resume(path).map_err(|e| e.to_string())?;
    let read = t.elapsed().as_secs_f64();
    let plan = Arc::new(plan);
    // A finished journal runs no step, so no driver is asked for: with none registered, a
    // step that did run would fail and the exit would say so.
    let drivers = Drivers::new();
    let journal = Journal::open_existing(path).map_err(|e| e.to_string())?;
    let report = rt.block_on(medic_exec::execute(
        plan.clone(),
        &drivers,
        &journal,
        &prior,
        &RunOptions::default(),
        Control::default(),
        &mut Fanout::default(),
    ));
    journal.close().map_err(|e| e.to_string())?;
    let total = t.elapsed().as_secs_f64();
    let cpu = cpu_s() - cpu0;
    let rss = peak_rss_mib();
    // The parts, measured apart afterwards (warm, one thread each).
    let t = Instant::now();
    let reader = JournalReader::open(path).map_err(|e| e.to_string())?;
    let plan2 = medic_exec::read_plan(&reader).map_err(|e| e.to_string())?;
    let plan_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let prior2 = medic_exec::read_prior(&reader).map_err(|e| e.to_string())?;
    let prior_s = t.elapsed().as_secs_f64();
    let same = plan2 == *plan && prior2.steps.len() == prior.steps.len();
    println!(
        "resume total={total:.3} cpu={cpu:.2} read={read:.3} decide={:.3} plan_alone={plan_s:.3} steps_alone={prior_s:.3} rss={rss:.0} exit={:?} steps={} same={same}",
        total - read,
        report.exit,
        prior.steps.len()
    );
    Ok(())
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(journal) = get("--resume") {
        return resume_child(std::path::Path::new(&journal));
    }
    let steps: usize = get("--steps")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let resumes: usize = get("--resumes").and_then(|v| v.parse().ok()).unwrap_or(3);
    let dir = get("--dir")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("medic-exec-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let noop = NoopPlan::new(steps, 0)?;
    let plan = noop.plan.clone();
    let drivers = noop.drivers()?;
    let (inv_text, pb_text) = (&noop.inventory, &noop.playbook);
    println!("steps                      {}", plan.steps().len());
    println!(
        "setup (generate, load, plan, fleet; not measured)  {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let path = dir.join("journal.sqlite");
    let medic_bench::noop::Timed {
        report,
        create_s,
        run_s: run,
        close_s: close,
    } = noop.run_sqlite(&rt, &drivers, &path)?;
    println!(
        "journal created with the plan  {create_s:.2} s ({} MiB of plan)",
        medic_plan::plan_to_bytes(&plan).len() >> 20
    );
    println!(
        "run exit                   {:?} ({} verified hosts)",
        report.exit, report.summary.hosts_verified
    );
    println!(
        "run, journal on (target <= 10 s)  {run:.2} s  = {:.2} us/step (+{close:.2} s journal close)",
        run * 1e6 / plan.steps().len() as f64
    );

    drop(drivers);
    let rss_run = peak_rss_mib();

    // The drift check `medic resume` makes when the inputs are still on disk: load them
    // and compute the fingerprint a plan of them would have (no planning).
    let t = Instant::now();
    let inv = medic_config::load_inventory("gen.yaml", inv_text).map_err(|p| p.to_string())?;
    let pb = medic_config::load_playbook("noop.yaml", pb_text, &[]).map_err(|p| p.to_string())?;
    let (now, _) = medic_plan::fingerprint_inputs(&inv, &pb, pb_text);
    let drift = t.elapsed().as_secs_f64();
    assert_eq!(now, plan.fingerprint());
    let t = Instant::now();
    let again = medic_plan::build_plan(&inv, &pb, pb_text, None).map_err(|e| e.to_string())?;
    let replan = t.elapsed().as_secs_f64();
    assert_eq!(again.fingerprint(), plan.fingerprint());
    drop((inv, pb, again));

    // Each resume in a fresh process, so that its time and peak RSS are its own.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut totals = Vec::new();
    let mut lines = Vec::new();
    for _ in 0..resumes {
        let out = std::process::Command::new(&exe)
            .arg("--resume")
            .arg(&path)
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(format!(
                "resume failed: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let line = text.trim().to_owned();
        println!("  {line}");
        let total: f64 = line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("total="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN);
        totals.push((total, lines.len()));
        lines.push(line);
    }
    totals.sort_by(|a, b| a.0.total_cmp(&b.0));
    if let Some(&(_, m)) = totals.get(totals.len() / 2) {
        let field = |k: &str| {
            lines[m]
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(k).map(str::to_owned))
                .unwrap_or_default()
        };
        println!(
            "resume of the finished journal, end to end (target <= 2 s), median of {resumes}: {} s, {} CPU s  (plan + step state read together: {} s, then open, decide nothing to do, close: {} s; apart: plan {} s, step state {} s; peak RSS {} MiB; exit {})",
            field("total="),
            field("cpu="),
            field("read="),
            field("decide="),
            field("plan_alone="),
            field("steps_alone="),
            field("rss="),
            field("exit=")
        );
    }
    println!(
        "drift check, when the inputs are still on disk (load them, fingerprint): {drift:.2} s (planning them again as well, as resume did before: +{replan:.2} s)"
    );
    if args.iter().any(|a| a == "--json") {
        let json = medic_plan::plan_to_json(&plan);
        let t = Instant::now();
        let back = medic_plan::plan_from_json(&json).map_err(|e| e.to_string())?;
        println!(
            "for comparison, reading the plan back from its JSON ({} MiB): {:.2} s ({} steps)",
            json.len() >> 20,
            t.elapsed().as_secs_f64(),
            back.steps().len()
        );
    }
    println!("peak RSS of the bench process (setup and run)  {rss_run:.0} MiB");
    if args.iter().any(|a| a == "--keep") {
        println!("journal kept: {}", path.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
