//! `medic-bench`: benchmarks that print their figures (run by hand; never timed in tests).
//!
//! - `medic-bench gen-inventory --hosts N [--seed S]` prints a generated inventory.
//! - `medic-bench plan --hosts N` generates, loads and plans N hosts and prints wall time
//!   per stage and the peak RSS of the process.
//! - `medic-bench import --hosts N [--page-size P] [--rate R]`: serves a generated N-computer fleet
//!   with the DSM simulator (in this process) and runs `medic inventory import`'s work
//!   against it in a child process (`import-client`): the import, then the check that the
//!   text loads. Prints the requests (as the simulator logged them), the wall time and the
//!   client's peak RSS, apart from the simulator's. `--rate 0` lifts the client's request
//!   rate limit (by default that of `medic inventory import`, 10 a second, burst 10).
//! - `medic-bench report --hosts N [--dir D] [--keep]`: the run report of a simulated
//!   N-host run: produced from the journal (target <= 3 s at 100,000 hosts) and opened in
//!   headless Chromium (target <= 5 s), printed.
//! - `medic-bench workers --steps N --workers W [--zones Z]`: N no-op steps in one process
//!   with SQLite, in one process with PostgreSQL, then over W `medic worker` processes in Z
//!   zones (the `medic` binary beside this one, or `--medic PATH`), printed side by side
//!   (`workers_bench`).
//! - `medic-bench screenshot --html FILE --out PNG [--width W] [--filter STATE]`: a page
//!   in headless Chromium as a PNG (`scripts/screenshot.sh`).

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

mod journal_bench;
mod workers_bench;

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
            Some("import") => bench_import(
                arg(&args, "--hosts", 100_000)? as usize,
                arg(&args, "--page-size", 5000)? as u32,
                args.iter()
                    .position(|a| a == "--rate")
                    .and_then(|i| args.get(i + 1))
                    .map(String::as_str),
            ),
            Some("import-client") => import_client(&args),
            Some("screenshot") => screenshot(&args),
            Some("report") => bench_report(
                arg(&args, "--hosts", 100_000)? as usize,
                args.iter()
                    .position(|a| a == "--dir")
                    .and_then(|i| args.get(i + 1))
                    .map(String::as_str),
            ),
            Some("journal") => journal_bench::run(
                arg(&args, "--steps", 100_000)? as usize,
                arg(&args, "--parallel", 64)? as usize,
            ),
            Some("workers") => workers_bench::run(&args),
            _ => Err(format!(
                "usage: {} | medic-bench journal --steps N [--parallel P] | medic-bench gen-inventory --hosts N [--seed S] | medic-bench plan --hosts N | medic-bench import --hosts N [--page-size P] [--rate R] | medic-bench report --hosts N [--dir D] [--keep]",
                workers_bench::USAGE
            )),
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

const BENCH_KEY: &str = "medic-bench-key-not-secret";

fn bench_import(n: usize, page_size: u32, rate: Option<&str>) -> Result<(), String> {
    use medic_sim::server::{ServerConfig, serve};
    let t = Instant::now();
    let inv_text = medic_sim::generate_inventory_yaml(n, 7);
    let inv = medic_config::load_inventory("gen.yaml", &inv_text).map_err(|p| p.to_string())?;
    let fleet = medic_sim::SimFleet::open(&inv, medic_sim::SimConfig::demo(1), None)
        .map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let config = ServerConfig::new(secrecy::SecretString::from(BENCH_KEY.to_owned()));
    let server = rt
        .block_on(serve(fleet, &inv, config))
        .map_err(|e| e.to_string())?;
    println!(
        "computers             {} (and the Manager)",
        inv.hosts.len()
    );
    println!(
        "setup (generate, simulator; not measured)  {:.2} s, peak RSS {:.0} MiB",
        t.elapsed().as_secs_f64(),
        peak_rss_mib().unwrap_or(0.0)
    );
    drop(inv);
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::process::Command::new(exe)
        .args(["import-client", "--url", &server.base_url(), "--page-size"])
        .arg(page_size.to_string())
        .args(rate.map(|r| ["--rate", r]).into_iter().flatten())
        .env(medic_drivers::dsm::API_KEY_ENV, BENCH_KEY)
        .output()
        .map_err(|e| e.to_string())?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        return Err(format!(
            "the import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let log = server.requests();
    let mut routes: Vec<(String, u32)> = Vec::new();
    for r in &log {
        let route = format!("{} {} ({})", r.method, r.route, r.status);
        match routes.last_mut() {
            Some((last, k)) if *last == route => *k += 1,
            _ => routes.push((route, 1)),
        }
    }
    let routes: Vec<String> = routes
        .into_iter()
        .map(|(r, k)| if k == 1 { r } else { format!("{r} x{k}") })
        .collect();
    println!(
        "requests (the simulator's log)  {}: {}",
        log.len(),
        routes.join(", ")
    );
    println!(
        "simulator peak RSS    {:.0} MiB (this process: fleet, generated inventory, server)",
        peak_rss_mib().unwrap_or(0.0)
    );
    server.shutdown();
    Ok(())
}

/// The client side of `medic-bench import`, in its own process so that its peak RSS is its
/// own: what `medic inventory import` does (the default client settings, rate limit
/// included), then the check that the text loads.
fn import_client(args: &[String]) -> Result<(), String> {
    use medic_drivers::dsm::{API_KEY_ENV, DsmClient, DsmConfig, ImportOptions, import_inventory};
    let url = args
        .iter()
        .position(|a| a == "--url")
        .and_then(|i| args.get(i + 1))
        .ok_or("--url URL is needed")?;
    let key = std::env::var(API_KEY_ENV).map_err(|_| format!("{API_KEY_ENV} is not set"))?;
    let mut config =
        DsmConfig::new(url, secrecy::SecretString::from(key)).map_err(|e| e.to_string())?;
    // `--rate 0` lifts the client's request rate limit (default 10/s, burst 10), to see
    // what the limit costs.
    if let Some(r) = args
        .iter()
        .position(|a| a == "--rate")
        .and_then(|i| args.get(i + 1)?.parse::<f64>().ok())
    {
        config.rate.per_second = r;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let _g = rt.enter();
    let client = DsmClient::new(config).map_err(|e| e.to_string())?;
    let mut opts = ImportOptions::for_client(&client);
    opts.page_size = arg(args, "--page-size", 5000)? as u32;
    let t = Instant::now();
    let imported = rt
        .block_on(import_inventory(&client, &opts))
        .map_err(|e| e.to_string())?;
    let text = medic_config::write_inventory(&imported.inventory, &imported.comments);
    let import_s = t.elapsed().as_secs_f64();
    let inv = medic_config::load_inventory("imported.yaml", &text).map_err(|p| p.to_string())?;
    let total = t.elapsed().as_secs_f64();
    println!("hosts imported        {}", inv.hosts.len());
    println!("inventory bytes       {}", text.len());
    println!("requests sent         {}", client.requests_sent());
    println!(
        "import, end to end    {total:.2} s (reading the Manager and writing the text: {import_s:.2} s, then the check that it loads: {:.2} s)",
        total - import_s
    );
    println!(
        "client peak RSS       {:.0} MiB",
        peak_rss_mib().unwrap_or(0.0)
    );
    Ok(())
}

/// `medic-bench report --hosts N`: a simulated run of the Deep Security playbook over N
/// generated hosts (journal on, the simulator at a time scale that makes every action
/// instant), then the report of its journal (read, rendered as HTML, written), then that
/// file opened in headless Chromium through the DevTools protocol (`medic-browser`, as
/// the report's browser test) until its script has drawn the host table.
fn bench_report(n: usize, dir: Option<&str>) -> Result<(), String> {
    use std::sync::Arc;

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../playbooks/ds-activeupdate-cert-2023.yaml");
    let pb_text = std::fs::read_to_string(&root)
        .map_err(|e| format!("cannot read {}: {e}", root.display()))?;
    let dir = dir
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("medic-bench-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;

    let t = Instant::now();
    let inv_text = medic_sim::generate_inventory_yaml(n, 1);
    let inv =
        medic_config::load_inventory("generated.yaml", &inv_text).map_err(|p| p.to_string())?;
    let pb = medic_config::load_playbook("ds.yaml", &pb_text, &[]).map_err(|p| p.to_string())?;
    let plan =
        Arc::new(medic_plan::build_plan(&inv, &pb, &pb_text, None).map_err(|e| e.to_string())?);
    let fleet = medic_sim::SimFleet::open(&inv, medic_sim::SimConfig::demo(1), None)
        .map_err(|e| e.to_string())?;
    let scale = 1e9;
    let drivers =
        medic_exec::Drivers::everything(Arc::new(medic_sim::driver::SimDriver::new(fleet, scale)));
    let path = dir.join("journal.sqlite");
    let journal = medic_exec::create_journal(&path, &plan, &[("run_id", "bench-report")])
        .map_err(|e| e.to_string())?;
    // The operator's steps are approved up front, as `medic demo` approves them.
    for s in plan.steps() {
        if &*s.driver == medic_exec::MANUAL_DRIVER {
            medic_journal::approve(&path, &s.id, "medic-bench").map_err(|e| e.to_string())?;
        }
    }
    let opts = medic_exec::RunOptions {
        run_id: "bench-report".to_owned(),
        yes: true,
        time_scale: scale,
        ..medic_exec::RunOptions::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let run = rt.block_on(medic_exec::execute(
        plan.clone(),
        &drivers,
        &journal,
        &medic_exec::Prior::default(),
        &opts,
        medic_exec::Control::default(),
        &mut medic_exec::Fanout::default(),
    ));
    journal.close().map_err(|e| e.to_string())?;
    drop((drivers, plan));
    println!("hosts                 {n}");
    println!(
        "simulated run (setup, not measured)  {:.2} s, exit {:?}, {} verified hosts",
        t.elapsed().as_secs_f64(),
        run.exit,
        run.summary.hosts_verified
    );

    let t = Instant::now();
    let report = medic_report::read(&path).map_err(|e| e.to_string())?;
    let read_s = t.elapsed().as_secs_f64();
    let html = medic_report::render(&report, medic_report::Format::Html);
    let out = dir.join("report.html");
    std::fs::write(&out, &html).map_err(|e| e.to_string())?;
    let total = t.elapsed().as_secs_f64();
    let steps: usize = report.hosts.iter().map(|h| h.steps.len()).sum();
    println!("steps in the report   {steps}");
    println!(
        "report produced (target <= 3 s)  {total:.2} s  (journal read {read_s:.2} s, HTML rendered and written {:.2} s; {} MiB)",
        total - read_s,
        html.len() >> 20
    );

    let t = Instant::now();
    let mut b = medic_browser::Browser::launch(&dir.join("chromium-profile"), 1300, 900)
        .map_err(|e| e.to_string())?;
    let launch = t.elapsed().as_secs_f64();
    let t = Instant::now();
    b.navigate(&format!("file://{}", out.display()))
        .map_err(|e| e.to_string())?;
    let ready = b
        .eval("document.body.dataset.ready === '1' && document.querySelectorAll('#host-table tbody tr').length")
        .map_err(|e| e.to_string())?;
    let open = t.elapsed().as_secs_f64();
    let errors = b.errors().map_err(|e| e.to_string())?.to_vec();
    println!(
        "HTML opened in Chromium (target <= 5 s)  {open:.2} s  (load event and the host table drawn: {ready} rows on its first page; browser start apart: {launch:.2} s; page errors: {})",
        if errors.is_empty() {
            "none".to_owned()
        } else {
            errors.join("; ")
        }
    );
    drop(b);
    if !std::env::args().any(|a| a == "--keep") {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("kept: {}", dir.display());
    }
    Ok(())
}

/// `medic-bench screenshot --html FILE --out PNG`: the page in headless Chromium, whole,
/// as a PNG (the README's picture of the report, `scripts/screenshot.sh`).
fn screenshot(args: &[String]) -> Result<(), String> {
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .ok_or_else(|| format!("screenshot needs {name}"))
    };
    let html = std::fs::canonicalize(get("--html")?).map_err(|e| e.to_string())?;
    let out = std::path::PathBuf::from(get("--out")?);
    let width = arg(args, "--width", 1200)? as u32;
    let profile = std::env::temp_dir().join(format!("medic-screenshot-{}", std::process::id()));
    let mut b = medic_browser::Browser::launch(&profile, width, 900).map_err(|e| e.to_string())?;
    b.navigate(&format!("file://{}", html.display()))
        .map_err(|e| e.to_string())?;
    if let Some(state) = args
        .iter()
        .position(|a| a == "--filter")
        .and_then(|i| args.get(i + 1))
    {
        let js = format!(
            "(() => {{ const s = document.getElementById('state-filter'); s.value = {}; s.dispatchEvent(new Event('change')); const d = document.querySelector('#host-table tbody details'); if (d) d.open = true; return 0; }})()",
            serde_json::to_string(state).map_err(|e| e.to_string())?
        );
        b.eval(&js).map_err(|e| e.to_string())?;
    }
    let errors = b.errors().map_err(|e| e.to_string())?.to_vec();
    if !errors.is_empty() {
        return Err(format!("the page reported errors: {errors:?}"));
    }
    b.screenshot(&out).map_err(|e| e.to_string())?;
    drop(b);
    let _ = std::fs::remove_dir_all(&profile);
    println!("{}", out.display());
    Ok(())
}
