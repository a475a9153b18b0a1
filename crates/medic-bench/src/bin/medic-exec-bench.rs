//! `medic-exec-bench [--steps N] [--dir DIR]`: the executor's overhead. A generated plan of
//! N no-op steps (N/10 hosts x 10 chained `noop` actions) runs on the simulated fleet at
//! zero latency with the journal on; then the same journal is resumed (every step already
//! succeeded). Prints wall time, per-step cost and peak RSS.

use std::sync::Arc;
use std::time::Instant;

use medic_exec::{Control, Drivers, Fanout, Prior, RunOptions};
use medic_journal::{Journal, JournalReader, Record, meta_keys};

fn playbook() -> String {
    let mut s = String::from(
        "name: noop-bench\nmax_parallel: 2000\ndefaults: { driver: sim, timeout: 1m, estimate: 0s, retries: { max: 0 } }\nphases:\n  - name: noop\n    select: { roles: [agent, relay] }\n    actions:\n",
    );
    for _ in 0..10 {
        s.push_str("      - { action: noop }\n");
    }
    s
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let steps: usize = get("--steps")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = get("--dir")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("medic-exec-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let hosts = (steps / 10).max(1);

    let t = Instant::now();
    let inv_text = medic_sim::generate_inventory_yaml(hosts, 1);
    let inv = medic_config::load_inventory("gen.yaml", &inv_text).map_err(|p| p.to_string())?;
    let pb_text = playbook();
    let pb = medic_config::load_playbook("noop.yaml", &pb_text, &[]).map_err(|p| p.to_string())?;
    let plan =
        Arc::new(medic_plan::build_plan(&inv, &pb, &pb_text, None).map_err(|e| e.to_string())?);
    let fleet = medic_sim::SimFleet::open(&inv, medic_sim::SimConfig::demo(1), None)
        .map_err(|e| e.to_string())?;
    let drivers = Drivers::everything(Arc::new(medic_drivers::SimDriver::new(fleet, 1.0)));
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
    let journal = Journal::create(&path).map_err(|e| e.to_string())?;
    journal
        .append(Record::Meta {
            key: meta_keys::PLAN_FINGERPRINT.to_owned(),
            value: plan.fingerprint().to_owned(),
        })
        .map_err(|e| e.to_string())?;
    let opts = RunOptions::default();
    let t = Instant::now();
    let report = rt.block_on(medic_exec::execute(
        plan.clone(),
        &drivers,
        &journal,
        &Prior::default(),
        &opts,
        Control::default(),
        &mut Fanout::default(),
    ));
    let run = t.elapsed().as_secs_f64();
    journal.close().map_err(|e| e.to_string())?;
    let close = t.elapsed().as_secs_f64() - run;
    println!(
        "run exit                   {:?} ({} verified hosts)",
        report.exit, report.summary.hosts_verified
    );
    println!(
        "run, journal on (target <= 10 s)  {run:.2} s  = {:.2} us/step (+{close:.2} s journal close)",
        run * 1e6 / plan.steps().len() as f64
    );

    let t = Instant::now();
    let reader = JournalReader::open(&path).map_err(|e| e.to_string())?;
    let mut prior = Prior::default();
    for row in reader.steps().map_err(|e| e.to_string())? {
        prior
            .steps
            .insert(row.step, (row.state, row.attempt, row.detail));
    }
    drop(reader);
    let read = t.elapsed().as_secs_f64();
    let journal = Journal::open_existing(&path).map_err(|e| e.to_string())?;
    let report = rt.block_on(medic_exec::execute(
        plan.clone(),
        &drivers,
        &journal,
        &prior,
        &opts,
        Control::default(),
        &mut Fanout::default(),
    ));
    let resume = t.elapsed().as_secs_f64();
    journal.close().map_err(|e| e.to_string())?;
    println!(
        "resume of a finished journal (target <= 2 s)  {resume:.2} s (reading the journal: {read:.2} s), exit {:?}",
        report.exit
    );
    // `medic resume` also reads the plan back from the journal's meta.
    let json = medic_plan::plan_to_json(&plan);
    let t = Instant::now();
    let back = medic_plan::plan_from_json(&json)?;
    println!(
        "reading the plan back from its JSON ({} MiB): {:.2} s ({} steps)",
        json.len() >> 20,
        t.elapsed().as_secs_f64(),
        back.steps().len()
    );
    println!("peak RSS                   {:.0} MiB", peak_rss_mib());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
