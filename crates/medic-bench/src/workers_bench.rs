//! `medic-bench workers --steps N --workers W [--zones Z] [--max-parallel P] [--lease S]
//! [--medic PATH] [--dir D] [--fleet-dir F] [--keep]`: N no-op steps (N/10 generated hosts x 10 `noop`
//! actions of the simulated fleet, which cost nothing) run three ways, one after another
//! in the same run on a throwaway local PostgreSQL (fsync on):
//!
//! - (a) one process, journal in SQLite: what `medic-exec-bench` measures;
//! - (b) one process, journal in PostgreSQL (the same plan, no workers);
//! - (c) the run left to W `medic worker` processes: `medic apply --workers` creates it in
//!   the database, then W workers (the real `medic` binary) serve it, the hosts' relay
//!   groups spread over Z zones (`zone-a`, `zone-b`, ...), worker i serving zone i mod Z
//!   and `default`; one of them coordinates. Timed from the workers' start to the last
//!   one's exit.
//!
//! Each prints its wall seconds, steps per second and peak RSS (for (c) each worker's,
//! sampled from /proc while it runs), and whether every step succeeded: a run that did
//! not is an error, never a figure. (c) also prints the calls each worker served and the
//! database's size.
//!
//! The workers share one simulated fleet through its effect log, which every fenced call
//! appends to and fsyncs under an exclusive `flock`: the simulator's stand-in for the hosts'
//! own state, serialized across the workers, which real hosts are not. So (c)'s working
//! directory (that log, the coordinator's events file) is on tmpfs (`/dev/shm`) unless
//! `--fleet-dir F` says otherwise; the journals stay where the database and `--dir` are.
//!
//! The `medic` binary is the one next to this executable (`target/release/medic` beside
//! `target/release/medic-bench`: build both), or `--medic PATH`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use medic_bench::noop::{NoopPlan, peak_rss_mib, proc_peak_rss_mib, reset_peak_rss};
use medic_journal::meta_keys;
use medic_journal_pg::server::TestServer;
use medic_journal_pg::{PgJournal, PgTarget, Source};

pub(crate) const USAGE: &str = "medic-bench workers --steps N --workers W [--zones Z] [--max-parallel P] [--lease SECS] [--medic PATH] [--dir D] [--fleet-dir F (default /dev/shm: the simulated fleet's log)] [--keep]  (the medic binary: next to medic-bench, e.g. target/release/medic after `cargo build --release -p medic-cli -p medic-bench`, or --medic PATH)";

struct Opts {
    steps: usize,
    workers: usize,
    zones: usize,
    max_parallel: u64,
    lease: u64,
    fleet_dir: PathBuf,
    medic: PathBuf,
    dir: PathBuf,
    keep: bool,
}

fn opts(args: &[String]) -> Result<Opts, String> {
    let num = |name: &str, default: u64| crate::arg(args, name, default);
    let text = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .map(|i| {
                args.get(i + 1)
                    .cloned()
                    .ok_or(format!("{name} needs a value"))
            })
            .transpose()
    };
    let steps = num("--steps", 1_000_000)? as usize;
    let workers = num("--workers", 4)? as usize;
    let zones = num("--zones", 2)? as usize;
    if workers == 0 || zones == 0 || zones > 26 * 9 {
        return Err("--workers and --zones need at least 1 (and at most 234 zones)".to_owned());
    }
    if workers < zones {
        return Err(format!(
            "--workers {workers} cannot serve --zones {zones}: every zone needs a worker"
        ));
    }
    let medic = match text("--medic")? {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("medic"),
    };
    if !medic.is_file() {
        return Err(format!(
            "no medic binary at {}: build it beside medic-bench (`cargo build --release -p medic-cli -p medic-bench`) or pass --medic PATH",
            medic.display()
        ));
    }
    let dir = text("--dir")?
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("medic-bench-workers-{}", std::process::id()));
    Ok(Opts {
        steps,
        workers,
        zones,
        max_parallel: num("--max-parallel", 32)?,
        fleet_dir: match text("--fleet-dir")? {
            Some(d) => PathBuf::from(d),
            None if Path::new("/dev/shm").is_dir() => PathBuf::from("/dev/shm"),
            None => std::env::temp_dir(),
        },
        lease: num("--lease", 30)?,
        medic: std::fs::canonicalize(&medic).map_err(|e| format!("{}: {e}", medic.display()))?,
        dir,
        keep: args.iter().any(|a| a == "--keep"),
    })
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let o = opts(args)?;
    std::fs::create_dir_all(&o.dir).map_err(|e| format!("{}: {e}", o.dir.display()))?;
    let result = bench(&o);
    if o.keep {
        println!("kept: {}", o.dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&o.dir);
    }
    result
}

fn line(name: &str, n: usize, secs: f64, rss: &str, rest: &str) {
    println!(
        "{name:<34} {secs:>8.2} s  {:>8.0} steps/s  peak RSS {rss}{rest}",
        n as f64 / secs
    );
}

fn bench(o: &Opts) -> Result<(), String> {
    let t = Instant::now();
    let noop = NoopPlan::new(o.steps, o.zones)?;
    let n = noop.actions();
    println!(
        "steps                              {n} ({} hosts x 10 noop), {} zones, {} workers (at most {} calls each at once, lease {} s)",
        noop.inv.hosts.len(),
        o.zones,
        o.workers,
        o.max_parallel,
        o.lease
    );
    let server = TestServer::start()?;
    println!(
        "setup (generate, plan, start PostgreSQL; not measured)  {:.2} s; medic: {}",
        t.elapsed().as_secs_f64(),
        o.medic.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;

    // (a) One process, SQLite.
    let exact = reset_peak_rss();
    let rss_note = if exact { "" } else { " (since start)" };
    let drivers = noop.drivers()?;
    let a = noop.run_sqlite(&rt, &drivers, &o.dir.join("journal.sqlite"))?;
    drop(drivers);
    let ok = noop.check(&a.report)?;
    line(
        "(a) one process, SQLite",
        n,
        a.run_s,
        &format!("{:.0} MiB{rss_note}", peak_rss_mib()),
        &format!(
            "  (journal made {:.2} s, closed {:.2} s); {ok}",
            a.create_s, a.close_s
        ),
    );

    // (b) One process, PostgreSQL.
    reset_peak_rss();
    let target = PgTarget::parse(&server.url_with_password(), Source::Environment)
        .map_err(|e| e.to_string())?;
    let drivers = noop.drivers()?;
    let t = Instant::now();
    let bytes = medic_plan::plan_to_bytes(&noop.plan);
    let journal = PgJournal::create(
        &target,
        "bench-pg",
        &[
            (meta_keys::PLAN_FINGERPRINT, noop.plan.fingerprint()),
            ("run_id", "bench-pg"),
        ],
        &[(meta_keys::PLAN_BIN, &bytes)],
    )
    .map_err(|e| e.to_string())?;
    let create_s = t.elapsed().as_secs_f64();
    let (report, run_s) = noop.run(&rt, &drivers, &journal);
    let t = Instant::now();
    journal.close().map_err(|e| e.to_string())?;
    let close_s = t.elapsed().as_secs_f64();
    drop(drivers);
    let ok = noop.check(&report)?;
    line(
        "(b) one process, PostgreSQL",
        n,
        run_s,
        &format!("{:.0} MiB{rss_note}", peak_rss_mib()),
        &format!("  (journal made {create_s:.2} s, closed {close_s:.2} s); {ok}"),
    );
    drop(rt);

    // (c) W worker processes, in a database of their own (so that its size is theirs).
    let db = "medic_workers";
    server.psql(&format!("CREATE DATABASE {db}"))?;
    let url = server
        .url()
        .rsplit_once('/')
        .map(|(base, _)| format!("{base}/{db}"))
        .ok_or("the server's URL has no database")?;
    let work = o
        .fleet_dir
        .join(format!("medic-bench-workers-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    std::fs::write(work.join("inventory.yaml"), &noop.inventory).map_err(|e| e.to_string())?;
    std::fs::write(work.join("playbook.yaml"), &noop.playbook).map_err(|e| e.to_string())?;
    let medic = |args: &[&str]| {
        let mut c = Command::new(&o.medic);
        c.args(args)
            .current_dir(&work)
            .env("NO_COLOR", "1")
            .env("PGPASSWORD", server.password())
            .env_remove("MEDIC_JOURNAL_URL")
            .stdin(Stdio::null());
        c
    };
    let t = Instant::now();
    let out = medic(&[
        "apply",
        "-i",
        "inventory.yaml",
        "-p",
        "playbook.yaml",
        "--simulate",
        "--yes",
        // Real time, as (a) and (b): a `noop` takes no time at any scale, but the step's
        // timeout (1m) is scaled too, and at a high scale it would be shorter than the
        // queue's round trip.
        "--time-scale",
        "1",
        "--progress",
        "never",
        "--journal",
        &url,
        "--workers",
    ])
    .output()
    .map_err(|e| format!("{}: {e}", o.medic.display()))?;
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(format!("medic apply --workers failed: {said}"));
    }
    let apply_s = t.elapsed().as_secs_f64();
    let run_url = said
        .split(['\'', ' ', '\n'])
        .find(|s| s.starts_with("postgres://") && s.contains("?run="))
        .ok_or_else(|| format!("no run URL in what medic apply --workers said: {said}"))?
        .to_owned();
    let mut children: Vec<(String, Child, PathBuf)> = Vec::new();
    let result = workers(
        o,
        &server,
        db,
        &run_url,
        &work,
        n,
        apply_s,
        &medic,
        &mut children,
    );
    for (_, child, _) in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    if !o.keep {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

/// (c)'s workers, started into `children` (killed by the caller whatever happens), timed,
/// their run checked, their figures printed.
#[expect(clippy::too_many_arguments, reason = "the parts of one benchmark")]
fn workers(
    o: &Opts,
    server: &TestServer,
    db: &str,
    run_url: &str,
    work: &Path,
    n: usize,
    apply_s: f64,
    medic: &dyn Fn(&[&str]) -> Command,
    children: &mut Vec<(String, Child, PathBuf)>,
) -> Result<(), String> {
    let run_id = run_url
        .rsplit_once("run=")
        .map_or("", |(_, r)| r)
        .to_owned();
    let t = Instant::now();
    for i in 0..o.workers {
        let name = format!("w{}", i + 1);
        let zone = medic_bench::noop::zone_name(i % o.zones);
        let log = work.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let (mp, lease) = (o.max_parallel.to_string(), o.lease.to_string());
        let child = medic(&[
            "worker",
            "--journal",
            run_url,
            "--zone",
            &zone,
            "--zone",
            "default",
            "--max-parallel",
            &mp,
            "--lease",
            &lease,
            "--name",
            &name,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::from(file))
        .spawn()
        .map_err(|e| format!("{}: {e}", o.medic.display()))?;
        children.push((name, child, log));
    }
    let pids: Vec<u32> = children.iter().map(|c| c.1.id()).collect();
    let peaks = Arc::new(Mutex::new(vec![0.0f64; pids.len()]));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peaks, done) = (peaks.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                for (i, pid) in pids.iter().enumerate() {
                    if let Some(m) = proc_peak_rss_mib(&pid.to_string())
                        && let Ok(mut p) = peaks.lock()
                    {
                        p[i] = p[i].max(m);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // A worker that never leaves fails the benchmark rather than hanging it.
    let limit = Duration::from_secs(300 + (o.steps / 200) as u64);
    let mut codes: Vec<Option<i32>> = vec![None; children.len()];
    let mut ended = 0;
    while ended < children.len() {
        for (i, (_, child, _)) in children.iter_mut().enumerate() {
            if codes[i].is_none()
                && let Some(s) = child.try_wait().map_err(|e| e.to_string())?
            {
                codes[i] = Some(s.code().unwrap_or(-1));
                ended += 1;
            }
        }
        if ended < children.len() && t.elapsed() > limit {
            done.store(true, Ordering::Relaxed);
            return Err(format!(
                "the workers did not finish within {} s\n{}",
                limit.as_secs(),
                logs(children)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let wall = t.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    if codes.iter().any(|c| *c != Some(0)) {
        return Err(format!(
            "a worker failed (exit codes {codes:?})\n{}",
            logs(children)
        ));
    }

    // Every step succeeded, as `medic status` reads the journal.
    let out = medic(&["status", "--journal", run_url, "--format", "json"])
        .output()
        .map_err(|e| e.to_string())?;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "medic status: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let steps: BTreeMap<String, u64> = status["steps"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                .filter(|(_, v)| *v > 0)
                .collect()
        })
        .unwrap_or_default();
    let succeeded = steps.get("succeeded").copied().unwrap_or(0);
    if status["run_state"] != "finished" || steps.len() != 1 || succeeded != n as u64 {
        return Err(format!(
            "the workers' run did not succeed: run_state {}, steps {steps:?}\n{}",
            status["run_state"],
            logs(children)
        ));
    }
    let peaks = peaks.lock().map_err(|e| e.to_string())?.clone();
    let coordinator = children
        .iter()
        .find(|c| {
            std::fs::read_to_string(&c.2)
                .unwrap_or_default()
                .contains(": coordinating run")
        })
        .map_or("?", |c| c.0.as_str());
    let max = peaks.iter().copied().fold(0.0, f64::max);
    line(
        &format!("(c) {} workers, PostgreSQL", o.workers),
        n,
        wall,
        &format!("{max:.0} MiB (the largest worker, sampled)"),
        &format!("; all {n} steps succeeded (medic status: run finished)"),
    );
    println!(
        "    workers' directory (the simulated fleet's effect log, events)  {}",
        work.display()
    );
    println!(
        "    run created by medic apply --workers (not measured)  {apply_s:.2} s; coordinator {coordinator}"
    );
    let rows = psql_in(
        server,
        db,
        &format!(
            "SELECT worker, zone, calls, refused FROM medic.workers WHERE run_id = '{run_id}' ORDER BY worker"
        ),
    )?;
    for (i, r) in rows.lines().enumerate() {
        let f: Vec<&str> = r.split('|').collect();
        if let [worker, zone, calls, refused] = f.as_slice() {
            let rss = children
                .iter()
                .position(|c| c.0 == *worker)
                .map_or(0.0, |k| peaks[k]);
            println!(
                "    worker {worker:<4} zones {zone:<16} {calls:>9} calls  {refused} refused  peak RSS {rss:.0} MiB{}",
                if *worker == coordinator {
                    " (coordinator: the executor and the hub too)"
                } else {
                    ""
                }
            );
        } else if i == 0 {
            println!("    workers: {r}");
        }
    }
    let size = psql_in(
        server,
        db,
        &format!(
            "SELECT pg_size_pretty(pg_database_size('{db}')), (SELECT COUNT(*) FROM medic.work WHERE run_id = '{run_id}'), (SELECT COALESCE(SUM(claims), 0) FROM medic.work WHERE run_id = '{run_id}')"
        ),
    )?;
    let f: Vec<&str> = size.split('|').collect();
    if let [size, calls, claims] = f.as_slice() {
        println!(
            "    database after the run: {size} ({calls} queued calls, claimed {claims} times)"
        );
    }
    let sim: u64 = walk(&work.join(".medic"))
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(".sim.log"))
        .filter_map(|p| p.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "    the simulated fleet's shared effect log (fencing tokens, flock): {} MiB",
        sim >> 20
    );
    Ok(())
}

/// `psql` in database `db` of the server (its Unix socket, no password).
fn psql_in(server: &TestServer, db: &str, sql: &str) -> Result<String, String> {
    let bin = medic_journal_pg::server::bindir().ok_or("no psql")?;
    let out = Command::new(bin.join("psql"))
        .arg("-h")
        .arg(server.socket_dir())
        .args(["-p", &server.port().to_string(), "-U"])
        .arg(medic_journal_pg::server::USER)
        .args(["-d", db, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "psql: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn logs(children: &[(String, Child, PathBuf)]) -> String {
    children
        .iter()
        .map(|(name, _, log)| {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            format!(
                "--- {name}\n{}\n",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
