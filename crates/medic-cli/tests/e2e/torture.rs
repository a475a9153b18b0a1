//! Crash torture on the real SSH fleet: ten SIGKILLs at seeded random points of one run of
//! the Deep Security playbook over the e2e world (50 hosts, real sshd, the DSM simulator
//! over HTTPS), each followed at once by `medic resume` (which the next kill may hit), until
//! a resume finishes. No settling between a kill and its resume: what the killed process
//! left running on the hosts and at the Manager is still running when the resume re-probes
//! it, as when an operator resumes straight away.
//!
//! How a kill is known to have landed with SSH commands in flight: just before each
//! SIGKILL the test lists the fake agent's processes under the fleet's `bin` in
//! `/proc/*/cmdline` (a command on a host is a process of the fleet's sshd), and after it
//! `medic status --journal` lists the steps the journal holds `running` (durable before
//! any driver acts), split by driver with the plan.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use crate::world::{HostCommand, Ran, Spec, World, host_commands};
use crate::{count, sigkill, spawn, wait_until};

/// When a kill is delivered, once the journal exists.
#[derive(Clone, Copy, Debug)]
enum Trigger {
    /// After a random delay in `[lo, hi)` ms: start-up, the resume's re-probes, or whatever
    /// the run is doing then.
    Delay { lo: u64, hi: u64 },
    /// While a state-changing command of this process runs on a host (`rpm -Uvh`,
    /// `dsa_control -m|-b|--import-bundle`), after a random `[0, jitter)` ms.
    Act { jitter: u64 },
    /// While any command of this process (probes too) runs on a host.
    Command { jitter: u64 },
    /// While the Manager runs a security update from a task this process created.
    DsmUpdate { jitter: u64 },
}

/// The ten kills, shuffled by the seed. Most wait for work in flight (that is where a
/// kill can lose or repeat a side effect); the delays hit start-up and re-probing.
const KILLS: [Trigger; 10] = [
    Trigger::Delay { lo: 0, hi: 700 },
    Trigger::Delay { lo: 300, hi: 2_500 },
    Trigger::Act { jitter: 1 },
    Trigger::Act { jitter: 40 },
    Trigger::Act { jitter: 120 },
    Trigger::Act { jitter: 250 },
    Trigger::Command { jitter: 1 },
    Trigger::Command { jitter: 60 },
    Trigger::DsmUpdate { jitter: 50 },
    Trigger::DsmUpdate { jitter: 600 },
];

/// A waiting trigger arms once the simulator has counted this share of the run's side
/// effects at most (a seeded target per kill, rising with the kills): without it every
/// kill would hit the first work of its process and the kills would bunch up in the
/// Relay phases. Below 1 with room to spare, so the run cannot end before the last kill.
const ARM_UP_TO: f64 = 0.7;
/// An armed trigger that does not come kills anyway after this long (reported so): the
/// work it waits for may be over for the run.
const ARMED_LIMIT: Duration = Duration::from_millis(1_500);
/// Longest a process may run before its kill: longer is a hang.
const PROCESS_LIMIT: Duration = Duration::from_secs(120);
/// Longest a resume may take to finish the run once the kills are over.
const FINISH_LIMIT: Duration = Duration::from_secs(300);
/// Simulated seconds per real second of the Manager's security updates: about 1.5 s
/// each, long enough that a resume re-probes some while the Manager still runs them.
const MANAGER_TIME_SCALE: f64 = 200.0;

/// The schedule's generator (ChaCha8, whose output for a seed `rand` never changes): it
/// replays from its printed seed.
struct Rng(rand::rngs::ChaCha8Rng);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(rand::SeedableRng::seed_from_u64(seed))
    }

    /// Uniform in `[lo, hi)` (`lo` when the range is empty).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            rand::RngExt::random_range(&mut self.0, lo..hi)
        }
    }
}

/// `rpm -Uvh x3, rpm -q x1`.
fn tally(commands: &[HostCommand]) -> String {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for c in commands {
        *by.entry(c.show()).or_default() += 1;
    }
    by.iter()
        .map(|(c, n)| format!("{c} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `ssh: agent-upgrade x11; dsm: agent-security-update x3`: steps by driver and phase.
fn tally_steps(by_driver: &BTreeMap<String, Vec<String>>) -> String {
    by_driver
        .iter()
        .map(|(d, steps)| {
            let mut by: BTreeMap<&str, usize> = BTreeMap::new();
            for s in steps {
                *by.entry(s.split('/').next().unwrap_or("")).or_default() += 1;
            }
            let phases: Vec<String> = by.iter().map(|(p, n)| format!("{p} x{n}")).collect();
            format!("{d}: {}", phases.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// What one kill hit.
struct Kill {
    process: String,
    trigger: Trigger,
    /// From the start of the killed process.
    after: Duration,
    /// The armed trigger never came: killed at [`ARMED_LIMIT`].
    fallback: bool,
    /// Commands running on the hosts just before the SIGKILL (a killed process's leftovers
    /// among them).
    commands: Vec<HostCommand>,
    /// Security updates the Manager was running at the kill.
    dsm_updates: usize,
    /// Steps the journal holds `running` after the kill, by driver.
    running: BTreeMap<String, Vec<String>>,
    /// Steps the journal holds `unknown` after the kill.
    unknown: Vec<String>,
}

impl Kill {
    fn in_flight(&self) -> usize {
        self.running.values().map(Vec::len).sum()
    }

    fn ssh_running(&self) -> usize {
        self.running.get("ssh").map_or(0, Vec::len)
    }
}

/// How the wait for a kill ended.
enum Waited {
    /// `true` when the armed trigger never came.
    Kill {
        fallback: bool,
    },
    /// The process ended on its own.
    Ended(ExitStatus),
    Hung,
}

/// Waits for `trigger` in `child` (waiting triggers only once `arm_at` side effects are
/// done), or for the process to end.
fn await_trigger(
    w: &World,
    child: &mut Child,
    (trigger, arm_at): (Trigger, usize),
    journal: &Path,
    rng: &mut Rng,
) -> Waited {
    let t0 = Instant::now();
    // Commands a killed process left on the hosts are not this process's.
    let orphans: BTreeSet<u32> = host_commands(w).iter().map(|c| c.pid).collect();
    let tasks_before = w.server.request_count("POST", "/api/scheduledtasks");
    // Drawn once, so that a seed replays the same schedule whatever the timing.
    let jitter = match trigger {
        Trigger::Delay { lo, hi } => rng.range(lo, hi),
        Trigger::Act { jitter: j }
        | Trigger::Command { jitter: j }
        | Trigger::DsmUpdate { jitter: j } => rng.range(0, j),
    };
    let mut armed: Option<Instant> = None;
    let fired = loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Waited::Ended(st);
        }
        if t0.elapsed() > PROCESS_LIMIT {
            return Waited::Hung;
        }
        // Nothing arms before the journal exists: a kill then leaves nothing to resume or
        // to show (crash.rs covers that on the simulated fleet).
        if armed.is_none() && journal.exists() {
            let done: u32 = w.effects().values().sum();
            if matches!(trigger, Trigger::Delay { .. }) || done as usize >= arm_at {
                armed = Some(Instant::now());
            }
        }
        if let Some(a) = armed {
            let hit = match trigger {
                Trigger::Delay { .. } => true,
                Trigger::Act { .. } => host_commands(w)
                    .iter()
                    .any(|c| c.acts() && !orphans.contains(&c.pid)),
                Trigger::Command { .. } => {
                    host_commands(w).iter().any(|c| !orphans.contains(&c.pid))
                }
                Trigger::DsmUpdate { .. } => {
                    w.server.request_count("POST", "/api/scheduledtasks") > tasks_before
                        && w.server.updates_in_flight() > 0
                }
            };
            if hit {
                break true;
            }
            if a.elapsed() >= ARMED_LIMIT {
                break false;
            }
        }
        std::thread::sleep(Duration::from_millis(3));
    };
    std::thread::sleep(Duration::from_millis(jitter));
    if let Ok(Some(st)) = child.try_wait() {
        return Waited::Ended(st);
    }
    Waited::Kill { fallback: !fired }
}

/// `medic status --journal J --format json` after a kill: it must open the journal.
fn status_after_kill(w: &World, journal: &Path) -> serde_json::Value {
    let r = w.run(&[
        "status".into(),
        "--journal".into(),
        journal.display().to_string(),
        "--format".into(),
        "json".into(),
    ]);
    assert_eq!(
        r.code,
        Some(0),
        "status cannot open the journal: {}",
        r.stderr
    );
    let v: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("status printed no JSON ({e}): {}", r.stdout));
    assert!(
        v["run_id"].is_string(),
        "status found no run in the journal: {v}"
    );
    v
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The seed: `MEDIC_TORTURE_SEED` to replay a schedule, else from the clock.
fn seed() -> u64 {
    if let Some(s) = std::env::var_os("MEDIC_TORTURE_SEED") {
        let s = s.to_string_lossy().into_owned();
        return s
            .parse()
            .unwrap_or_else(|_| panic!("MEDIC_TORTURE_SEED must be a number: {s}"));
    }
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    (ns as u64) ^ u64::from(std::process::id())
}

/// Ten SIGKILLs at seeded random points of a real SSH run on 50 hosts, each followed by
/// `medic resume`; the last resume exits 0, every host is verified remediated, the
/// simulator counts every side effect exactly once, and `medic status` opened the
/// journal after every kill.
///
/// About 35 s alone and 45 s beside the other e2e tests on 2 busy cores: under a minute,
/// so it runs with the suite, a new seed each time. Alone:
/// `cargo test -p medic-cli --test e2e ssh_crash_torture -- --nocapture` (or
/// `cargo nextest run -p medic-cli --test e2e ssh_crash_torture --no-capture`);
/// `MEDIC_TORTURE_SEED=N` replays the kill schedule of a printed seed (the kills land
/// where that schedule's triggers find the run, so timings still vary).
#[test]
fn ssh_crash_torture_ten_sigkills_each_followed_by_resume() {
    let seed = seed();
    eprintln!("ssh crash torture: seed {seed} (MEDIC_TORTURE_SEED={seed} replays the schedule)");
    let mut rng = Rng::new(seed);
    let mut schedule = KILLS;
    for i in (1..schedule.len()).rev() {
        let j = rng.range(0, i as u64 + 1) as usize;
        schedule.swap(i, j);
    }

    let w = World::new(
        Spec::fifty(),
        crate::world::Opts {
            time_scale: Some(MANAGER_TIME_SCALE),
            ..crate::world::Opts::default()
        },
    );
    let total: u32 = w.spec.expected_effects().values().sum();
    let top = (f64::from(total) * ARM_UP_TO) as u64;
    let mut arm: Vec<usize> = (0..schedule.len())
        .map(|_| rng.range(0, top) as usize)
        .collect();
    arm.sort_unstable();
    let drivers: BTreeMap<String, String> = w.plan_json()["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap_or("").to_owned(),
                s["driver"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let journal = w.path("run.journal.sqlite");
    let t = Instant::now();
    let mut kills: Vec<Kill> = Vec::new();

    for (k, (trigger, arm_at)) in schedule.into_iter().zip(arm).enumerate() {
        let (process, args) = if k == 0 {
            ("apply".to_owned(), w.apply_args("run"))
        } else {
            (format!("resume{k}"), w.resume_args("run"))
        };
        let t0 = Instant::now();
        let mut child = spawn(&w, &args, &process);
        let fallback = match await_trigger(&w, &mut child, (trigger, arm_at), &journal, &mut rng) {
            Waited::Kill { fallback } => fallback,
            Waited::Ended(st) => {
                let err = std::fs::read_to_string(w.path(&format!("{process}.stderr")))
                    .unwrap_or_default();
                panic!(
                    "kill {}: {process} ended on its own ({st}) before its kill ({trigger:?} armed at {arm_at} side effects); after a kill a resume must carry the run on:\n{err}",
                    k + 1
                );
            }
            Waited::Hung => {
                sigkill(child);
                panic!(
                    "kill {}: {process} ran {PROCESS_LIMIT:?} without reaching its kill ({trigger:?} armed at {arm_at} side effects): hung?",
                    k + 1
                );
            }
        };
        let commands = host_commands(&w);
        let dsm_updates = w.server.updates_in_flight();
        let after = t0.elapsed();
        sigkill(child);
        let done: u32 = w.effects().values().sum();

        let st = status_after_kill(&w, &journal);
        let mut running: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in names(&st["running"]) {
            let d = drivers.get(&s).cloned().unwrap_or_else(|| "?".to_owned());
            running.entry(d).or_default().push(s);
        }
        let kill = Kill {
            process,
            trigger,
            after,
            fallback,
            commands,
            dsm_updates,
            running,
            unknown: names(&st["unknown"]),
        };
        eprintln!(
            "kill {:>2}: {:<8} {:>6.2?} {:<36} {done:>2}/{total} effects; running [{}]{}; on the hosts [{}]; manager updates {}{}",
            k + 1,
            kill.process,
            kill.after,
            format!("{:?}", kill.trigger),
            tally_steps(&kill.running),
            if kill.unknown.is_empty() {
                String::new()
            } else {
                format!(", unknown {:?}", kill.unknown)
            },
            tally(&kill.commands),
            kill.dsm_updates,
            if kill.fallback {
                " (trigger never came: killed anyway)"
            } else {
                ""
            },
        );
        kills.push(kill);
    }

    // The run to its end.
    let t0 = Instant::now();
    let mut child = spawn(&w, &w.resume_args("run"), "final");
    let ended = wait_until(FINISH_LIMIT, || matches!(child.try_wait(), Ok(Some(_))));
    if !ended {
        sigkill(child);
        panic!("the final resume did not finish within {FINISH_LIMIT:?}");
    }
    let code = child.wait().expect("wait").code();
    let read =
        |ext: &str| std::fs::read_to_string(w.path(&format!("final.{ext}"))).unwrap_or_default();
    let r = Ran {
        code,
        stdout: read("stdout"),
        stderr: read("stderr"),
        elapsed: t0.elapsed(),
    };
    // Updates an earlier process started at the Manager may still be running: a repeat
    // among them would only show once they end.
    w.settle();
    let wall = t.elapsed();

    let reprobed_events: Vec<serde_json::Value> = w
        .events("run")
        .into_iter()
        .filter(|e| e["event"] == "step_reprobed")
        .collect();
    let effects = w.effects();
    let expected = w.spec.expected_effects();
    let repeated: Vec<_> = effects
        .iter()
        .filter(|(k, n)| **n > 1 && expected.contains_key(*k))
        .collect();
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| effects.get(*k).copied().unwrap_or(0) == 0)
        .collect();
    let with_steps = kills.iter().filter(|k| k.in_flight() > 0).count();
    let with_ssh = kills.iter().filter(|k| k.ssh_running() > 0).count();
    let with_commands = kills.iter().filter(|k| !k.commands.is_empty()).count();
    let with_acts = kills
        .iter()
        .filter(|k| k.commands.iter().any(HostCommand::acts))
        .count();
    let with_dsm = kills.iter().filter(|k| k.dsm_updates > 0).count();
    // Each is re-probed by the next resume (the same step may be left running by several).
    let left_running: usize = kills.iter().map(Kill::in_flight).sum();
    let distinct: BTreeSet<&String> = kills
        .iter()
        .flat_map(|k| k.running.values().flatten())
        .collect();
    eprintln!(
        "ssh crash torture (seed {seed}): {} kills, {with_steps} with steps running in the journal ({with_ssh} with ssh steps), {with_commands} with commands on the hosts ({with_acts} changing a host), {with_dsm} with Manager updates in flight; {left_running} running steps left for the resumes to re-probe ({} distinct; {} re-probe events kept, {} found done), {} fallback kill(s); final resume exit {:?} in {:.1?}; duplicates {}, missing {}; agent upgrades {}, security updates {}; wall {wall:.1?}",
        kills.len(),
        distinct.len(),
        reprobed_events.len(),
        reprobed_events.iter().filter(|e| e["done"] == true).count(),
        kills.iter().filter(|k| k.fallback).count(),
        r.code,
        r.elapsed,
        repeated.len(),
        missing.len(),
        count(&effects, "agent-upgrade", ""),
        count(&effects, "security-update", ""),
    );

    assert_eq!(kills.len(), 10);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let (verified, failed, incomplete, _) = r.hosts_line();
    assert_eq!(
        (verified, failed, incomplete),
        (w.spec.affected() as u32, 0, 0),
        "{}",
        r.stderr
    );
    w.assert_remediated();
    assert!(
        repeated.is_empty() && missing.is_empty(),
        "repeated: {repeated:?}; missing: {missing:?}"
    );
    assert_eq!(effects, expected, "a side effect was lost or repeated");
    // The torture tortured: kills landed with SSH work in flight, and something was left
    // for a resume to re-probe.
    assert!(with_ssh >= 1, "no kill landed with an ssh step running");
    assert!(
        with_acts >= 1,
        "no kill landed with a command changing a host"
    );
    assert!(left_running >= 1, "no kill left a step running");
}
