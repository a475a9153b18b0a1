//! Workers by zone on a real PostgreSQL (a throwaway server per test), as an operator runs
//! them: `medic apply --workers` starts the run in the database, `medic worker` processes
//! serve its zones. The crash proof: three workers in two zones (plus the Manager's
//! default zone) on the simulated fleet; one is SIGKILLed in the middle of a call, then
//! another is SIGSTOPped past its lease and SIGCONTed, then the coordinator is SIGKILLed;
//! a supervisor (this test) restarts what was killed. Every side effect happens exactly
//! once (from the simulator's effect log, compared with a single-process run), no step is
//! lost, the stale worker's writes are refused, and the run finishes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use medic_journal_pg::server::TestServer;

use crate::postgres::{medic, out};
use crate::util::{TestEnv, lab_with, real_playbook};

/// The lab with its Tokyo side (and the air-gapped group fed from it) in zone `east` and
/// Osaka in zone `west`.
fn zoned_lab() -> String {
    lab_with(&[
        ("  - { name: tokyo }", "  - { name: tokyo, zone: east }"),
        ("  - { name: osaka }", "  - { name: osaka, zone: west }"),
        (
            "  - { name: dmz, offline: true, bundle_source: relay-tky-1 }",
            "  - { name: dmz, offline: true, bundle_source: relay-tky-1, zone: east }",
        ),
        (
            "relay_groups:\n",
            "zones:\n  - { name: east }\n  - { name: west }\nrelay_groups:\n",
        ),
    ])
}

/// Slow enough that a run lasts tens of seconds: room for three disruptions.
const TIME_SCALE: &str = "100";
/// Short, so a stalled worker's calls are taken over within seconds.
const LEASE: &str = "2";

struct Fleet {
    env: TestEnv,
    server: TestServer,
    url: String,
}

/// A worker process and where its output goes.
struct Worker {
    name: String,
    /// Serves zone `east`.
    east: bool,
    child: Child,
    log: PathBuf,
}

impl Fleet {
    fn new() -> Fleet {
        let server = TestServer::start().expect("a throwaway PostgreSQL");
        let env = TestEnv::new();
        env.write("inventory.yaml", zoned_lab());
        env.write(
            "playbook.yaml",
            std::fs::read(real_playbook()).expect("read the playbook"),
        );
        let url = server.url();
        Fleet { env, server, url }
    }

    fn medic(&self) -> Command {
        medic(&self.env, &self.server)
    }

    fn apply(&self, time_scale: &str, extra: &[&str]) -> std::process::Output {
        let mut args = vec![
            "apply",
            "-i",
            "inventory.yaml",
            "-p",
            "playbook.yaml",
            "--simulate",
            "--yes",
            "--time-scale",
            time_scale,
            "--progress",
            "never",
        ];
        args.extend(extra);
        self.medic().args(args).output().expect("medic apply")
    }

    fn psql(&self, sql: &str) -> String {
        self.server.psql(sql).expect("psql").trim().to_owned()
    }

    fn worker(&self, run_url: &str, name: &str, zones: &[&str]) -> Worker {
        let log = self.env.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("worker log");
        let mut c = self.medic();
        c.args([
            "worker",
            "--journal",
            run_url,
            "--lease",
            LEASE,
            "--name",
            name,
        ]);
        for z in zones {
            c.args(["--zone", z]);
        }
        let child = c
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .expect("spawn medic worker");
        Worker {
            name: name.to_owned(),
            east: zones.contains(&"east"),
            child,
            log,
        }
    }

    /// The calls `worker` holds now (claimed, lease running), by id.
    fn held_by(&self, run: &str, worker: &str) -> Vec<i64> {
        self.held_where(run, worker, "TRUE")
    }

    /// The calls `worker` holds of steps whose deadline is far longer than the lease (20
    /// minutes and more, 12 s and more at this time scale): the coordinator does not give
    /// up on them (and cancel them) before another worker can take them over.
    fn held_long(&self, run: &str, worker: &str) -> Vec<i64> {
        self.held_where(
            run,
            worker,
            "split_part(step, '/', 1) IN ('windows-prereq', 'relay-upgrade', 'agent-upgrade',
                 'relay-security-update', 'agent-security-update')",
        )
    }

    fn held_where(&self, run: &str, worker: &str, cond: &str) -> Vec<i64> {
        self.psql(&format!(
            "SELECT string_agg(id::text, ',') FROM medic.work
             WHERE run_id = '{run}' AND lease_owner = '{worker}' AND state = 'claimed' AND {cond}"
        ))
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
    }

    fn coordinator(&self, run: &str) -> Option<String> {
        // A killed coordinator's row still says so: the live one is the one seen last.
        let c = self.psql(&format!(
            "SELECT worker FROM medic.workers
             WHERE run_id = '{run}' AND coordinating AND stopped_ms IS NULL
             ORDER BY seen_ms DESC LIMIT 1"
        ));
        (!c.is_empty()).then_some(c)
    }
}

/// Sends `sig` (`KILL`, `STOP`, `CONT`) to a worker, with kill(1).
fn signal(w: &Worker, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(w.child.id().to_string())
        .status()
        .expect("kill(1)")
        .success();
    assert!(ok, "kill -{sig} {}", w.name);
}

/// Waits until `f` holds, or fails the test naming `what` with the workers' logs.
fn wait_for(what: &str, within: Duration, logs: &[&Worker], mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while t.elapsed() < within {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}\n{}", logs_of(logs));
}

/// What the workers printed, for a failure's message.
fn logs_of(workers: &[&Worker]) -> String {
    workers
        .iter()
        .map(|w| {
            format!(
                "--- {}\n{}",
                w.name,
                std::fs::read_to_string(&w.log).unwrap_or_default()
            )
        })
        .collect()
}

fn sim_log(dir: &Path) -> PathBuf {
    walk(dir)
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".sim.log"))
        .unwrap_or_else(|| panic!("no simulator log under {}", dir.display()))
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

#[test]
fn three_workers_in_two_zones_survive_kills_and_a_stall_with_every_effect_once() {
    let fleet = Fleet::new();

    // The reference: the same run in one process with a file journal (durations do not
    // change what the seeded simulator decides: it runs fast).
    let reference = fleet.apply("3000", &["--journal", "reference/journal.sqlite"]);
    assert_eq!(reference.status.code(), Some(0), "{}", out(&reference));
    let expected = medic_sim::effect_counts(&sim_log(&fleet.env.path().join("reference")));
    assert!(expected.len() > 10, "{expected:?}");

    // The run in the database, left to its workers.
    let started = fleet.apply(TIME_SCALE, &["--journal", &fleet.url, "--workers"]);
    assert_eq!(started.status.code(), Some(0), "{}", out(&started));
    let text = out(&started);
    assert!(text.contains("nothing ran yet"), "{text}");
    let run_url = text
        .split('\'')
        .find(|s| s.starts_with("postgres://") && s.contains("?run="))
        .unwrap_or_else(|| panic!("no run URL in {text}"))
        .to_owned();
    let run = run_url.rsplit_once("run=").expect("run id").1.to_owned();
    for zone in ["default", "east", "west"] {
        assert!(text.contains(&format!("--zone {zone}")), "{text}");
    }
    // Nothing acted: the simulated world (made when the run's drivers were checked) has
    // no effect yet.
    for p in walk(&fleet.env.path().join(".medic")) {
        if p.to_string_lossy().ends_with(".sim.log") {
            assert!(
                medic_sim::effect_counts(&p).is_empty(),
                "apply --workers acted"
            );
        }
    }

    let east = ["east", "default"];
    let mut workers = vec![
        fleet.worker(&run_url, "w1", &east),
        fleet.worker(&run_url, "w2", &east),
        fleet.worker(&run_url, "w3", &["west"]),
    ];
    let long = Duration::from_secs(90);

    // 1. SIGKILL a worker in the middle of a call; the supervisor starts another.
    // (Not the coordinator: its death is the third disruption.)
    let mut victim = 0;
    wait_for(
        "an east worker that does not coordinate to hold a call",
        long,
        &[],
        || {
            let c = fleet.coordinator(&run);
            let found = (0..2).find(|&i| {
                Some(&workers[i].name) != c.as_ref()
                    && !fleet.held_by(&run, &workers[i].name).is_empty()
            });
            victim = found.unwrap_or(0);
            found.is_some()
        },
    );
    signal(&workers[victim], "KILL");
    let _ = workers[victim].child.wait();
    workers.push(fleet.worker(&run_url, "w1b", &east));

    // 2. SIGSTOP an east worker that is not coordinating while it holds a call, past its
    //    lease: the other east worker takes the call over; then SIGCONT.
    let killed = [victim];
    let east_live: Vec<usize> = (0..workers.len())
        .filter(|i| !killed.contains(i) && workers[*i].east)
        .collect();
    let mut stopped = None;
    let alive: Vec<&Worker> = workers.iter().collect();
    wait_for(
        "a non-coordinating east worker holding a call",
        long,
        &alive,
        || {
            let c = fleet.coordinator(&run);
            for &i in &east_live {
                let name = &workers[i].name;
                if Some(name) == c.as_ref() {
                    continue;
                }
                let held = fleet.held_long(&run, name);
                if !held.is_empty() {
                    signal(&workers[i], "STOP");
                    // Still held once stopped: the stall is inside the call.
                    let still: Vec<i64> = fleet
                        .held_by(&run, name)
                        .into_iter()
                        .filter(|id| held.contains(id))
                        .collect();
                    if still.is_empty() {
                        signal(&workers[i], "CONT");
                        continue;
                    }
                    stopped = Some((i, still));
                    return true;
                }
            }
            false
        },
    );
    let (si, calls) = stopped.expect("a stopped worker");
    let name = workers[si].name.clone();
    wait_for(
        "the stalled worker's call to be taken over",
        long,
        &alive,
        || {
            let ids: Vec<String> = calls.iter().map(ToString::to_string).collect();
            fleet.psql(&format!(
                "SELECT COUNT(*) FROM medic.work WHERE id IN ({}) AND claims > 1
                   AND lease_owner <> '{name}'",
                ids.join(",")
            )) != "0"
        },
    );
    signal(&workers[si], "CONT");

    // 3. SIGKILL the coordinator (whichever worker holds the run's lock); another worker
    //    takes the lock and resumes the run from the journal.
    let mut coord = None;
    wait_for("a coordinator", long, &[], || {
        coord = fleet.coordinator(&run);
        coord.is_some()
    });
    let coord = coord.expect("a coordinator");
    let ci = workers
        .iter()
        .position(|w| w.name == coord)
        .expect("the coordinator is one of ours");
    signal(&workers[ci], "KILL");
    let _ = workers[ci].child.wait();
    let zones: Vec<&str> = if coord == "w3" {
        vec!["west"]
    } else {
        east.to_vec()
    };
    workers.push(fleet.worker(&run_url, &format!("{coord}-again"), &zones));
    let alive: Vec<&Worker> = workers.iter().collect();
    wait_for("a new coordinator", long, &alive, || {
        fleet.coordinator(&run).is_some_and(|c| c != coord)
    });

    // The run finishes; every worker leaves on its own.
    let t = Instant::now();
    for w in &mut workers {
        loop {
            match w.child.try_wait().expect("wait") {
                Some(_) => break,
                None if t.elapsed() > Duration::from_secs(180) => {
                    let _ = w.child.kill();
                    panic!(
                        "worker {} did not leave\n{}",
                        w.name,
                        std::fs::read_to_string(&w.log).unwrap_or_default()
                    );
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    let logs = logs_of(&workers.iter().collect::<Vec<_>>());
    let status = fleet
        .medic()
        .args(["status", "--journal", &run_url, "--format", "json"])
        .output()
        .expect("status");
    let v: serde_json::Value = serde_json::from_slice(&status.stdout)
        .unwrap_or_else(|e| panic!("status json: {e}\n{}\n{logs}", out(&status)));
    assert_eq!(v["run_state"], "finished", "{v}\n{logs}");

    // Every side effect exactly once: the same as the single process's.
    let log = sim_log(&fleet.env.path().join(".medic"));
    let got: BTreeMap<(String, String), u32> = medic_sim::effect_counts(&log);
    assert_eq!(
        got, expected,
        "side effects differ from one process's\n{logs}"
    );
    // The stalled worker's writes were refused (a renewal or a reply with its old
    // token), and nothing it did after waking reached a host.
    let refused: i64 = fleet
        .psql(&format!(
            "SELECT COALESCE(SUM(refused), 0) FROM medic.workers WHERE run_id = '{run}' AND worker = '{name}'"
        ))
        .parse()
        .expect("a count");
    assert!(refused >= 1, "no write of {name} was refused\n{logs}");
    let taken_over: i64 = fleet
        .psql(&format!(
            "SELECT COUNT(*) FROM medic.work WHERE run_id = '{run}' AND claims > 1"
        ))
        .parse()
        .expect("a count");
    assert!(taken_over >= 1, "{logs}");
    eprintln!(
        "effects {} (host, action) pairs, {} in all; calls taken over {taken_over}; {name}'s writes refused {refused}; simulator refusals {}",
        got.len(),
        got.values().sum::<u32>(),
        medic_sim::stale_refusals(&log)
    );
}

#[test]
fn workers_refuse_what_cannot_work_and_write_nothing() {
    let fleet = Fleet::new();
    // --workers needs a database journal.
    let o = fleet.apply(TIME_SCALE, &["--workers", "--journal", "j.sqlite"]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).contains("--workers"), "{}", out(&o));
    assert!(!fleet.env.path().join("j.sqlite").exists());
    assert!(!fleet.env.path().join(".medic").exists());

    // A worker on a file journal, then on a zone the run does not have.
    let o = fleet
        .medic()
        .args(["worker", "--journal", "j.sqlite", "--zone", "east"])
        .output()
        .expect("worker");
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(
        out(&o).contains("is a file; workers share a run through PostgreSQL")
            && out(&o).contains("this worker served nothing"),
        "{}",
        out(&o)
    );
    let started = fleet.apply(TIME_SCALE, &["--journal", &fleet.url, "--workers"]);
    assert_eq!(started.status.code(), Some(0), "{}", out(&started));
    let o = fleet
        .medic()
        .args(["worker", "--journal", &fleet.url, "--zone", "north"])
        .output()
        .expect("worker");
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    let text = out(&o);
    assert!(
        text.contains("no zone north") && text.contains("east") && text.contains("west"),
        "{text}"
    );
    // Without any journal.
    let o = fleet
        .medic()
        .args(["worker", "--zone", "east"])
        .output()
        .expect("worker");
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).contains("MEDIC_JOURNAL_URL"), "{}", out(&o));
    // Nothing ran: no worker registered, nothing queued.
    assert_eq!(fleet.psql("SELECT COUNT(*) FROM medic.workers"), "0");
    assert_eq!(fleet.psql("SELECT COUNT(*) FROM medic.work"), "0");
}
