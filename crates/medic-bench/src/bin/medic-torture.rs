//! `medic-torture`: crash torture of the real `medic` binary (run by hand, not in CI).
//!
//! ```sh
//! cargo build --release -p medic-cli -p medic-bench
//! target/release/medic-torture --kills 100 --hosts 1000 [--seed S]
//! ```
//!
//! A generated fleet of `--hosts` hosts runs the Deep Security playbook with
//! `medic apply --simulate`. One uninterrupted reference run gives the exit code and the
//! side effects per (host, action) that every run must end with. Then runs are started and
//! killed with SIGKILL at random points; each kill is followed by `medic status` (the
//! journal must open) and by `medic resume`, which may be killed again, up to
//! `--per-run` kills per run, until `--kills` kills have been delivered. A kill point is a
//! count, not a time: a process is killed once the run's simulator log holds a seeded
//! number of side-effect attempts (drawn below the reference run's count), so the kills
//! spread over the run the same way on a fast machine and a slow one. Every run must end
//! with the reference's exit code and exactly the reference's side effects (no duplicate,
//! none missing), counted from the simulator's write-ahead log.
//!
//! Kills inside a journal write: before the kill the process is frozen with SIGSTOP, and
//! while every thread is stopped `/proc/locks` is read. SQLite's WAL keeps its writer lock
//! as a POSIX lock on byte 120 of the `-shm` file from `BEGIN IMMEDIATE` to the end of
//! `COMMIT`, so a WRITE lock held by the frozen process on that byte, once its journal writer
//! thread (`medic-journal`) runs, proves a write transaction was open; SIGKILL then ends the
//! process without it running another instruction. (Before that thread exists, a resume
//! holds the same lock while it recovers the WAL the previous kill left; those kills are
//! counted apart.) The writer thread's current syscall and the uncommitted frames left at
//! the end of the WAL are reported as well. `--hunt F` makes a fraction F of the kills wait (thawing and freezing again
//! every few milliseconds, up to a second) for such a moment; the others kill as soon as
//! their count is reached, and are classified the same way.
//!
//! The schedule (counts, hunting, which process is killed) comes from `--seed`, printed at
//! the start; the instruction a process is stopped at still depends on the machine, so a
//! replay repeats the schedule, not necessarily the exact instruction a kill lands on.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use rustix::process::{Pid, Signal, kill_process};

/// How long a thread may take to stop (one in an fsync stops when the fsync returns). The
/// runtime's timers run on while the process is frozen, so a long freeze would make step
/// deadlines (2 s at least in a rehearsal) expire: a failure the kill did not cause.
const MAX_FREEZE_WAIT: Duration = Duration::from_millis(100);

/// SQLite's `WAL_WRITE_LOCK` byte in the `-shm` file (unix VFS: `UNIX_SHM_BASE + 0`).
const WAL_WRITE_LOCK_BYTE: u64 = 120;

/// Crash torture of the real `medic` binary: SIGKILL at seeded points of simulated runs,
/// each followed by `medic status` and `medic resume`; every run must end with the
/// reference run's exit code and side effects.
#[derive(Parser)]
#[command(name = "medic-torture")]
struct Args {
    /// Kills to deliver in all.
    #[arg(long, default_value_t = 100)]
    kills: u32,
    /// Hosts in the generated fleet.
    #[arg(long, default_value_t = 1000, value_parser = at_least_one)]
    hosts: usize,
    /// Most kills in one run before it is left to finish.
    #[arg(long, default_value_t = 5, value_parser = at_least_one)]
    per_run: usize,
    /// Fraction of the kills that hunt for a moment inside a journal write.
    #[arg(long, default_value_t = 0.5, value_parser = fraction)]
    hunt: f64,
    /// Seed of the kill schedule (default: from the clock; printed at the start).
    #[arg(long)]
    seed: Option<u64>,
    /// Seed of the simulated fleet (`medic apply --sim-seed`).
    #[arg(long, default_value_t = 1)]
    sim_seed: u64,
    /// `medic apply --time-scale`.
    #[arg(long, default_value_t = 20_000.0)]
    time_scale: f64,
    /// The medic binary (default: `medic` beside this one).
    #[arg(long, value_name = "PATH")]
    medic: Option<PathBuf>,
    /// Work directory (default: a new one under the temporary directory).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Keep the work directory when every run passed.
    #[arg(long)]
    keep: bool,
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("needs a whole number of at least 1, got `{s}`")),
    }
}

fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("needs a number from 0 to 1, got `{s}`")),
    }
}

struct Opts {
    kills: u32,
    hosts: usize,
    per_run: usize,
    hunt: f64,
    seed: u64,
    sim_seed: u64,
    time_scale: f64,
    medic: PathBuf,
    dir: PathBuf,
    keep: bool,
}

/// The options, with the defaults that need the clock or this binary's path filled in.
fn opts(a: Args) -> Result<Opts, String> {
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let medic = match a.medic {
        Some(p) => p,
        // `cargo build --release -p medic-cli -p medic-bench` puts both binaries side by side.
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find this binary: {e}"))?
            .with_file_name("medic"),
    };
    if !medic.exists() {
        return Err(format!(
            "no medic binary at {}; build it (cargo build --release -p medic-cli) or pass --medic PATH",
            medic.display()
        ));
    }
    let dir = a
        .dir
        .unwrap_or_else(|| std::env::temp_dir().join(format!("medic-torture-{seed}")));
    Ok(Opts {
        kills: a.kills,
        hosts: a.hosts,
        per_run: a.per_run,
        hunt: a.hunt,
        seed,
        sim_seed: a.sim_seed,
        time_scale: a.time_scale,
        medic,
        dir,
        keep: a.keep,
    })
}

/// The schedule's generator: ChaCha8, whose output for a seed `rand` never changes, so a
/// printed seed replays the schedule.
struct Rng(rand::rngs::ChaCha8Rng);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(rand::SeedableRng::seed_from_u64(seed))
    }

    fn next(&mut self) -> u64 {
        rand::RngExt::random(&mut self.0)
    }

    fn unit(&mut self) -> f64 {
        rand::RngExt::random(&mut self.0)
    }

    /// Uniform in `[0, n)` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            rand::RngExt::random_range(&mut self.0, 0..n)
        }
    }
}

type Effects = BTreeMap<(String, String), u32>;

/// Side effects per (host, action) from the simulator's write-ahead log (the same count as
/// `crates/medic-cli/tests/it/crash.rs`).
fn effects(journal: &Path) -> Effects {
    medic_sim::effect_counts(Path::new(&format!("{}.sim.log", journal.display())))
}

/// The side-effect attempts in a run's simulator log so far (its complete lines after the
/// header), read incrementally: the torture's clock, the same on any machine.
struct LogProgress {
    path: PathBuf,
    read: u64,
    lines: u64,
}

impl LogProgress {
    fn new(journal: &Path) -> LogProgress {
        LogProgress {
            path: PathBuf::from(format!("{}.sim.log", journal.display())),
            read: 0,
            lines: 0,
        }
    }

    /// Attempts logged so far (the header line is not one).
    fn attempts(&mut self) -> u64 {
        use std::io::{Read as _, Seek as _, SeekFrom};
        if let Ok(mut f) = std::fs::File::open(&self.path)
            && f.seek(SeekFrom::Start(self.read)).is_ok()
        {
            let mut buf = Vec::new();
            if f.read_to_end(&mut buf).is_ok() {
                // Only complete lines: a torn last one is read again once whole.
                let upto = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                self.lines += buf[..upto].iter().filter(|&&b| b == b'\n').count() as u64;
                self.read += upto as u64;
            }
        }
        self.lines.saturating_sub(1)
    }
}

struct Files {
    inventory: PathBuf,
    playbook: PathBuf,
}

fn medic(o: &Opts) -> Command {
    let mut c = Command::new(&o.medic);
    c.env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn apply(o: &Opts, f: &Files, journal: &Path) -> Command {
    let mut c = medic(o);
    c.arg("apply")
        .arg("--inventory")
        .arg(&f.inventory)
        .arg("--playbook")
        .arg(&f.playbook)
        .args(["--simulate", "--time-scale", &o.time_scale.to_string()])
        .args(["--sim-seed", &o.sim_seed.to_string()])
        .args(["--yes", "--progress", "never", "--journal"])
        .arg(journal);
    c
}

fn resume(o: &Opts, journal: &Path) -> Command {
    let mut c = medic(o);
    c.args(["resume", "--yes", "--progress", "never", "--journal"])
        .arg(journal);
    c
}

/// Where a kill landed.
enum Landed {
    /// SIGKILL was delivered; `mid_write` if the frozen process held the WAL writer lock in
    /// its journal writer's transaction.
    /// `journal_syscall`: the syscall the frozen journal writer thread was stopped in or
    /// returning from (`/proc/PID/task/TID/syscall`), for the mid-write kills.
    /// `recovering`: the lock was held before the writer thread existed (WAL recovery).
    Killed {
        mid_write: bool,
        recovering: bool,
        journal_syscall: Option<String>,
    },
    /// The process ended before the kill.
    Exited(ExitStatus),
}

fn pid_of(child: &Child) -> Result<Pid, String> {
    Pid::from_raw(child.id() as i32).ok_or_else(|| "child has no pid".to_owned())
}

/// Every thread of `pid` is stopped (or gone); false if that does not happen within
/// [`MAX_FREEZE_WAIT`].
fn all_stopped(pid: u32) -> bool {
    let until = Instant::now() + MAX_FREEZE_WAIT;
    let dir = format!("/proc/{pid}/task");
    loop {
        let Ok(tasks) = std::fs::read_dir(&dir) else {
            return true;
        };
        let mut all = true;
        for t in tasks.flatten() {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            // The state follows the command name, which is in parentheses and may hold spaces.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or("");
            if !matches!(state, "T" | "Z" | "X" | "") {
                all = false;
                break;
            }
        }
        if all {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Whether `pid` holds SQLite's WAL writer lock on `shm` right now (see the module docs).
fn holds_wal_write_lock(pid: u32, shm: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(ino) = std::fs::metadata(shm).map(|m| m.ino()) else {
        return false;
    };
    let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
        return false;
    };
    locks.lines().any(|line| {
        // `1: POSIX  ADVISORY  WRITE 4242 fe:00:1234 120 120`; waiters have a `->` field.
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 || f[1] != "POSIX" || f[3] != "WRITE" || f[4] != pid.to_string() {
            return false;
        }
        let inode_matches = f[5].rsplit(':').next() == Some(ino.to_string().as_str());
        let start: u64 = f[6].parse().unwrap_or(u64::MAX);
        let end: u64 = if f[7] == "EOF" {
            u64::MAX
        } else {
            f[7].parse().unwrap_or(0)
        };
        inode_matches && start <= WAL_WRITE_LOCK_BYTE && WAL_WRITE_LOCK_BYTE <= end
    })
}

/// Frames at the end of the journal's WAL that belong to no committed transaction: what a
/// kill halfway through a COMMIT leaves behind (recovery discards them). A frame belongs to
/// the current WAL generation when its salts match the header's; a commit frame has a
/// non-zero "database size" field (SQLite's WAL format, `wal.c`).
fn uncommitted_wal_frames(journal: &Path) -> u32 {
    let Ok(b) = std::fs::read(format!("{}-wal", journal.display())) else {
        return 0;
    };
    let be = |at: usize| {
        b.get(at..at + 4)
            .map(|x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
    };
    let (Some(page_size), Some(salt1), Some(salt2)) = (be(8), be(16), be(20)) else {
        return 0;
    };
    let frame = 24 + page_size as usize;
    let (mut at, mut since_commit) = (32usize, 0u32);
    while at + frame <= b.len() {
        if be(at + 8) != Some(salt1) || be(at + 12) != Some(salt2) {
            break;
        }
        if be(at + 4).unwrap_or(0) != 0 {
            since_commit = 0;
        } else {
            since_commit += 1;
        }
        at += frame;
    }
    since_commit
}

/// The syscall of the thread named `medic-journal` (the journal's writer), by name where
/// it is one SQLite's commit makes.
fn journal_thread_syscall(pid: u32) -> Option<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() != "medic-journal" {
            continue;
        }
        let sc = std::fs::read_to_string(t.path().join("syscall")).ok()?;
        let nr = sc.split_whitespace().next()?.to_owned();
        // x86_64 numbers; elsewhere the number is shown as is.
        let name = match (std::env::consts::ARCH, nr.as_str()) {
            ("x86_64", "1") => "write",
            ("x86_64", "18") => "pwrite64",
            ("x86_64", "74") => "fsync",
            ("x86_64", "75") => "fdatasync",
            ("x86_64", "3") => "close",
            ("x86_64", "72") => "fcntl",
            ("x86_64", "202") => "futex",
            _ => return Some(format!("syscall {nr}")),
        };
        return Some(name.to_owned());
    }
    None
}

/// Waits until the run's simulator log holds `target` side-effect attempts, then freezes
/// the process, classifies the moment and kills it. When `hunt`, thaws and retries every
/// few milliseconds (for up to a second) until the frozen process is inside a journal
/// write transaction.
fn kill_at(
    child: &mut Child,
    journal: &Path,
    (log, target): (&mut LogProgress, u64),
    hunt: bool,
    rng: &mut Rng,
) -> Result<Landed, String> {
    while log.attempts() < target {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(Landed::Exited(st));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let pid = pid_of(child)?;
    let raw = child.id();
    let shm = PathBuf::from(format!("{}-shm", journal.display()));
    let hunt_until = Instant::now() + Duration::from_secs(1);
    loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(Landed::Exited(st));
        }
        if kill_process(pid, Signal::STOP).is_err() {
            // Gone between the check and the signal: reap it.
            let st = child.wait().map_err(|e| e.to_string())?;
            return Ok(Landed::Exited(st));
        }
        let froze_at = Instant::now();
        let frozen = all_stopped(raw);
        let locked = frozen && holds_wal_write_lock(raw, &shm);
        // The lock is per process: it is the journal writer's transaction only once that
        // thread exists. Before, at a resume's start, the main thread holds it to rebuild
        // the WAL index after the previous kill (recovery), which is counted apart.
        let journal_syscall = locked.then(|| journal_thread_syscall(raw)).flatten();
        let mid_write = journal_syscall.is_some();
        let recovering = locked && !mid_write;
        if mid_write || !hunt || Instant::now() > hunt_until {
            // SIGKILL ends a stopped process without letting it run again, so the state
            // just observed is the state it dies in.
            if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
                return Ok(Landed::Exited(st));
            }
            child
                .kill()
                .map_err(|e| format!("cannot kill medic: {e}"))?;
            let st = child.wait().map_err(|e| e.to_string())?;
            // A process that exited on its own while being frozen reports its own status.
            use std::os::unix::process::ExitStatusExt as _;
            if st.signal() == Some(Signal::KILL.as_raw()) {
                return Ok(Landed::Killed {
                    mid_write,
                    recovering,
                    journal_syscall,
                });
            }
            return Ok(Landed::Exited(st));
        }
        let _ = kill_process(pid, Signal::CONT);
        // Let it run at least as long as it was frozen, so hunting never starves it.
        let pause = Duration::from_micros(200 + rng.next() % 3000).max(froze_at.elapsed());
        std::thread::sleep(pause);
    }
}

/// `medic status --journal J --format json` must work after every kill; returns the count
/// of succeeded steps.
fn status(o: &Opts, journal: &Path) -> Result<u64, String> {
    let out = medic(o)
        .args(["status", "--format", "json", "--journal"])
        .arg(journal)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run medic status: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "medic status exited {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("medic status printed no JSON: {e}"))?;
    Ok(v["steps"]["succeeded"].as_u64().unwrap_or(0))
}

/// The simulated fleet's log lives beside the journal and is opened before medic creates
/// the journal's directory.
fn mkdir_for(journal: &Path) -> Result<(), String> {
    let dir = journal.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

#[derive(Default)]
struct Totals {
    kills: u32,
    /// Kills by the run's side-effect attempts when they landed, in fifths of the
    /// reference run's (the last bucket: past the reference's count, repeats included).
    by_fifth: [u32; 6],
    mid_write: u32,
    /// Kills after which the WAL ended with frames of an unfinished COMMIT.
    torn_commits: u32,
    /// Kills while a resume recovered the WAL (writer lock held, no writer thread yet).
    recovering: u32,
    /// For the mid-write kills: where the journal writer thread was stopped.
    writer_syscalls: BTreeMap<String, u32>,
    hunted: u32,
    before_journal: u32,
    status_ok: u32,
    processes: u32,
    runs: u32,
    finished: u32,
    effects_checked: u64,
    duplicates: u64,
    missing: u64,
    failures: Vec<String>,
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn real_main() -> Result<bool, String> {
    let o = opts(Args::parse())?;
    let t0 = Instant::now();
    println!(
        "medic-torture --seed {} --kills {} --hosts {} --per-run {} --hunt {} --sim-seed {} --time-scale {}",
        o.seed, o.kills, o.hosts, o.per_run, o.hunt, o.sim_seed, o.time_scale
    );
    let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
    let _ = std::fs::remove_dir_all(&o.dir);
    std::fs::create_dir_all(&o.dir).map_err(|e| io("cannot create the work directory", e))?;
    let files = Files {
        inventory: o.dir.join("inventory.yaml"),
        playbook: Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../playbooks/ds-activeupdate-cert-2023.yaml"),
    };
    std::fs::write(
        &files.inventory,
        medic_sim::generate_inventory_yaml(o.hosts, 1),
    )
    .map_err(|e| io("cannot write the inventory", e))?;

    // The reference: the same seed, never interrupted.
    let ref_journal = o.dir.join("reference").join("journal.sqlite");
    mkdir_for(&ref_journal)?;
    let tr = Instant::now();
    let out = apply(&o, &files, &ref_journal)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| io("cannot run medic", e))?;
    let st = out.status;
    let full = tr.elapsed();
    let reference = effects(&ref_journal);
    let ref_attempts = LogProgress::new(&ref_journal).attempts();
    let ref_code = st.code();
    println!(
        "reference run: exit {ref_code:?}, {} side effects on {} (host, action) pairs ({ref_attempts} attempts), {:.1} s",
        reference.values().sum::<u32>(),
        reference.len(),
        full.as_secs_f64()
    );
    if reference.is_empty() || reference.values().any(|&n| n != 1) {
        return Err(format!(
            "the reference run has no side effects, or repeats one:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }

    let mut rng = Rng::new(o.seed);
    let mut t = Totals::default();
    while t.kills < o.kills {
        t.runs += 1;
        let r = t.runs;
        let rt = Instant::now();
        let journal = o.dir.join(format!("run-{r:03}")).join("journal.sqlite");
        mkdir_for(&journal)?;
        let mut run_kills = 0u32;
        let mut run_mid = 0u32;
        let mut log = LogProgress::new(&journal);
        // This run's kill points: seeded counts of side-effect attempts, in order, below
        // the reference's count so that the run cannot end before its last kill is due.
        let mut points: Vec<u64> = (0..o.per_run).map(|_| rng.below(ref_attempts)).collect();
        points.sort_unstable();
        let mut succeeded_seen = 0u64;
        let last: Option<ExitStatus>;
        loop {
            let mut cmd = if journal.exists() {
                resume(&o, &journal)
            } else {
                apply(&o, &files, &journal)
            };
            let mut child = cmd.spawn().map_err(|e| io("cannot run medic", e))?;
            t.processes += 1;
            if run_kills as usize >= o.per_run || t.kills >= o.kills {
                last = Some(child.wait().map_err(|e| io("wait", e))?);
                break;
            }
            let target = points[run_kills as usize];
            let hunt = rng.unit() < o.hunt;
            match kill_at(&mut child, &journal, (&mut log, target), hunt, &mut rng)? {
                Landed::Exited(st) => {
                    last = Some(st);
                    break;
                }
                Landed::Killed {
                    mid_write,
                    recovering,
                    journal_syscall,
                } => {
                    t.recovering += u32::from(recovering);
                    if let Some(sc) = journal_syscall {
                        *t.writer_syscalls.entry(sc).or_default() += 1;
                    }
                    t.kills += 1;
                    run_kills += 1;
                    let fifth = (log.attempts() * 5 / ref_attempts.max(1)) as usize;
                    t.by_fifth[fifth.min(5)] += 1;
                    t.hunted += u32::from(hunt);
                    t.mid_write += u32::from(mid_write);
                    run_mid += u32::from(mid_write);
                    if !journal.exists() {
                        // Killed before the journal was linked into place: nothing to
                        // open, and the next process starts the run again.
                        t.before_journal += 1;
                        continue;
                    }
                    if uncommitted_wal_frames(&journal) > 0 {
                        t.torn_commits += 1;
                    }
                    match status(&o, &journal) {
                        Ok(n) => {
                            t.status_ok += 1;
                            if n < succeeded_seen {
                                t.failures.push(format!(
                                    "run {r}: succeeded steps went back from {succeeded_seen} to {n} after a kill"
                                ));
                            }
                            succeeded_seen = n;
                        }
                        Err(e) => t.failures.push(format!(
                            "run {r}: the journal did not open after a kill: {e}"
                        )),
                    }
                }
            }
        }
        let code = last.and_then(|s| s.code());
        let got = effects(&journal);
        let mut dup = 0u64;
        let mut missing = 0u64;
        let keys: std::collections::BTreeSet<_> = reference.keys().chain(got.keys()).collect();
        for key in keys {
            let want = reference.get(key).copied().unwrap_or(0);
            let have = got.get(key).copied().unwrap_or(0);
            dup += u64::from(have.saturating_sub(want));
            missing += u64::from(want.saturating_sub(have));
        }
        t.effects_checked += u64::from(got.values().sum::<u32>());
        t.duplicates += dup;
        t.missing += missing;
        if code == ref_code {
            t.finished += 1;
        } else {
            t.failures.push(format!(
                "run {r}: exit {code:?}, the reference exited {ref_code:?}"
            ));
        }
        if dup > 0 || missing > 0 {
            t.failures.push(format!(
                "run {r}: {dup} duplicate and {missing} missing side effects ({})",
                journal.display()
            ));
        }
        println!(
            "run {r:3}: {run_kills} kills ({run_mid} mid-write), exit {code:?}, {} effects, {dup} duplicates, {missing} missing, {:.1} s",
            got.values().sum::<u32>(),
            rt.elapsed().as_secs_f64()
        );
    }

    let ok = t.failures.is_empty();
    let mut s = String::new();
    let _ = writeln!(s, "\nsummary (seed {}):", o.seed);
    let _ = writeln!(
        s,
        "  fleet                {} hosts, reference {:.1} s, {} side effects",
        o.hosts,
        full.as_secs_f64(),
        reference.len()
    );
    let _ = writeln!(
        s,
        "  kills delivered      {} (SIGKILL) over {} runs, {} medic processes",
        t.kills, t.runs, t.processes
    );
    let _ = writeln!(
        s,
        "  kills by moment      {:?} (fifths of the reference run's side-effect attempts, then past it)",
        t.by_fifth
    );
    let _ = writeln!(
        s,
        "  mid-write kills      {} (WAL writer lock held by the frozen process, journal writer thread running; {} kills hunted for one)",
        t.mid_write, t.hunted
    );
    let _ = writeln!(
        s,
        "  recovery kills       {} (WAL writer lock held while a resume recovered the WAL, before its writer thread)",
        t.recovering
    );
    let _ = writeln!(
        s,
        "  writer thread at     {:?} (mid-write kills, by the syscall the frozen journal thread was in)",
        t.writer_syscalls
    );
    let _ = writeln!(
        s,
        "  torn commits         {} (kills that left frames of an unfinished COMMIT at the end of the WAL)",
        t.torn_commits
    );
    let _ = writeln!(
        s,
        "  before the journal   {} (killed before the journal was linked into place)",
        t.before_journal
    );
    let _ = writeln!(
        s,
        "  journal opened       {}/{} after a kill (`medic status --format json`)",
        t.status_ok,
        t.kills - t.before_journal
    );
    let _ = writeln!(
        s,
        "  runs finished        {}/{} with the reference's exit code {:?}",
        t.finished, t.runs, ref_code
    );
    let _ = writeln!(
        s,
        "  side effects checked {} ({} per run), duplicates {}, missing {}",
        t.effects_checked,
        reference.len(),
        t.duplicates,
        t.missing
    );
    let _ = writeln!(
        s,
        "  wall time            {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    print!("{s}");
    if ok {
        println!("ok");
        if !o.keep {
            let _ = std::fs::remove_dir_all(&o.dir);
        }
    } else {
        for f in &t.failures {
            println!("FAILED {f}");
        }
        println!(
            "files kept in {}; replay the schedule with --seed {}",
            o.dir.display(),
            o.seed
        );
    }
    Ok(ok)
}
