//! `medic-bench`: benchmarks that print their figures (run by hand; never timed in tests).
//!
//! - `medic-bench gen-inventory --hosts N [--seed S]` prints a generated inventory.
//! - `medic-bench plan --hosts N` generates, loads and plans N hosts and prints wall time
//!   per stage and the peak RSS of the process.

use std::process::ExitCode;
use std::time::Instant;

fn arg(args: &[String], name: &str, default: u64) -> Result<u64, String> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name} needs a number")),
        None => Ok(default),
    }
}

fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let run = || -> Result<(), String> {
        match args.first().map(String::as_str) {
            Some("gen-inventory") => {
                let n = arg(&args, "--hosts", 1000)? as usize;
                let seed = arg(&args, "--seed", 1)?;
                print!("{}", medic_sim::generate_inventory_yaml(n, seed));
                Ok(())
            }
            Some("plan") => bench_plan(arg(&args, "--hosts", 100_000)? as usize),
            _ => Err("usage: medic-bench gen-inventory --hosts N [--seed S] | medic-bench plan --hosts N".to_owned()),
        }
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn bench_plan(n: usize) -> Result<(), String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../playbooks/ds-activeupdate-cert-2023.yaml");
    let pb_text = std::fs::read_to_string(&root)
        .map_err(|e| format!("cannot read {}: {e}", root.display()))?;
    let inv_text = medic_sim::generate_inventory_yaml(n, 1);
    let tp = Instant::now();
    let tree = medic_config::yaml::parse(&inv_text).map_err(|e| e.message)?;
    let parse_s = tp.elapsed().as_secs_f64();
    drop(tree);
    let t0 = Instant::now();
    let inv =
        medic_config::load_inventory("generated.yaml", &inv_text).map_err(|p| p.to_string())?;
    let t1 = Instant::now();
    let rss_load = peak_rss_mib().unwrap_or(0.0);
    let pb = medic_config::load_playbook("ds.yaml", &pb_text, &[]).map_err(|p| p.to_string())?;
    let plan = medic_plan::build_plan(&inv, &pb, &pb_text, None).map_err(|e| e.to_string())?;
    let t2 = Instant::now();
    let rss_plan = peak_rss_mib().unwrap_or(0.0);
    let json = medic_plan::plan_to_json(&plan);
    let t3 = Instant::now();
    println!("hosts                 {n}");
    println!("inventory bytes       {}", inv_text.len());
    println!("steps                 {}", plan.steps().len());
    println!("skipped               {}", plan.skipped().len());
    println!(
        "load inventory        {:.3} s (of which the YAML parse alone: {parse_s:.3} s, measured apart)",
        (t1 - t0).as_secs_f64()
    );
    println!("load playbook + plan  {:.3} s", (t2 - t1).as_secs_f64());
    println!(
        "load + plan (target <= 1 s)  {:.3} s",
        (t2 - t0).as_secs_f64()
    );
    println!(
        "render json           {:.3} s ({} MiB)",
        (t3 - t2).as_secs_f64(),
        json.len() / (1 << 20)
    );
    println!("estimated makespan    {} s", plan.estimate().makespan_s);
    println!("peak RSS after load   {rss_load:.0} MiB");
    println!("peak RSS after plan (target <= 500 MiB)  {rss_plan:.0} MiB");
    if let Some(m) = peak_rss_mib() {
        println!("peak RSS after JSON   {m:.0} MiB");
    }
    Ok(())
}
