//! End-to-end: the real `medic` binary runs the Deep Security playbook over real SSH (a
//! loopback `sshd` per 16 hosts, fake agents) and real HTTPS (the DSM simulator, TLS with
//! a self-signed CA), in one world: the fake agents act on the simulated fleet that the
//! simulator serves, so what the `ssh` driver does on a host is what the Manager reports,
//! and the security updates the `dsm` driver starts through scheduled tasks are what the
//! agents then report. See `world.rs` for the set-up and `tests/fleet/fakeds/fakeds-sim`
//! for the fake agent.
//!
//! The playbook is the real one with its soak pauses and retry backoffs cut to 1 s
//! ([`world::e2e_playbook`]); every host is Linux. Needs `/usr/sbin/sshd` (Debian's
//! `openssh-server`, which `.ci/run` installs).

#[expect(
    dead_code,
    reason = "shared with the SSH driver's tests; not every helper is used here"
)]
#[path = "../../../medic-drivers/tests/ssh/fleet.rs"]
mod fleet;
mod install_race;
mod preflight;
mod realrun;
mod torture;
mod world;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use medic_sim::server::HttpFault;
use world::{FIXED, Opts, Ran, Spec, World};

/// `medic` against the sudo fleet of the SSH driver's tests (`fleet::Fleet`): a clean
/// environment in `dir`, the fleet's user, the sudo password on the environment.
fn fleet_medic(dir: &Path, f: &fleet::Fleet, sudo_password: &str) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_medic"));
    c.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("USER", &f.user)
        .env("NO_COLOR", "1")
        .env("MEDIC_SUDO_PASSWORD", sudo_password)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// The inputs and connection options of a run over that fleet: `inventory.yaml` and
/// `playbook.yaml` in `dir`, the fleet's known_hosts, key, fake agent and packages.
fn fleet_args(dir: &Path, f: &fleet::Fleet) -> Vec<String> {
    let p = |name: &str| dir.join(name).display().to_string();
    [
        "--inventory".to_owned(),
        p("inventory.yaml"),
        "--playbook".to_owned(),
        p("playbook.yaml"),
        "--known-hosts".to_owned(),
        f.known_hosts.display().to_string(),
        "--ssh-key".to_owned(),
        f.client_key.display().to_string(),
        "--linux-agent-dir".to_owned(),
        f.bin.display().to_string(),
        "--linux-package-dir".to_owned(),
        f.packages.display().to_string(),
        "--progress".to_owned(),
        "never".to_owned(),
    ]
    .into()
}

/// Polls `cond` every 10 ms for at most `limit`; whether it became true.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// `medic ARGS` in the background, its output in `NAME.stdout` and `NAME.stderr`.
fn spawn(w: &World, args: &[String], name: &str) -> Child {
    let file = |ext: &str| {
        std::fs::File::create(w.path(&format!("{name}.{ext}"))).expect("an output file")
    };
    w.medic()
        .args(args)
        .stdout(Stdio::from(file("stdout")))
        .stderr(Stdio::from(file("stderr")))
        .spawn()
        .expect("start medic")
}

/// SIGKILL (what `Child::kill` sends), then reap.
fn sigkill(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

fn count(effects: &BTreeMap<(String, String), u32>, action: &str, prefix: &str) -> u32 {
    effects
        .iter()
        .filter(|((h, a), _)| a == action && h.starts_with(prefix))
        .map(|(_, n)| *n)
        .sum()
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// No secret appears in any file of the run directory (journals and their WAL and SHM
/// files, events, the simulator's effect log, captured outputs) nor in `extra` texts; the
/// journals and event files are private (0600). Returns the files checked.
fn assert_no_secrets(w: &World, secrets: &[&str], extra: &[&str]) -> usize {
    let checked = files(w.dir.path());
    for p in &checked {
        let bytes = std::fs::read(p).unwrap_or_default();
        for s in secrets {
            assert!(
                !bytes.windows(s.len()).any(|x| x == s.as_bytes()),
                "a secret is in {}",
                p.display()
            );
        }
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.contains(".journal.sqlite") || name.ends_with(".events.jsonl") {
            let mode = std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} has mode {mode:o}", p.display());
        }
    }
    for t in extra {
        for s in secrets {
            assert!(!t.contains(s), "a secret was printed");
        }
    }
    checked.len()
}

fn requests(w: &World) -> String {
    let log = w.server.requests();
    let mut by: BTreeMap<(String, String, u16), u32> = BTreeMap::new();
    for r in &log {
        *by.entry((r.method.clone(), r.route.clone(), r.status))
            .or_default() += 1;
    }
    by.iter()
        .map(|((m, r, s), n)| format!("{n} x {m} {r} -> {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Steps' `step_finished` events of one host and action: (attempt, elapsed ms, detail).
fn finished(w: &World, run: &str, step: &str) -> Vec<(u64, u64, String)> {
    w.events(run)
        .iter()
        .filter(|e| e["event"] == "step_finished" && e["step"] == step)
        .map(|e| {
            (
                e["attempt"].as_u64().unwrap_or(0),
                e["elapsed_ms"].as_u64().unwrap_or(0),
                e["detail"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// Wall time from the first start of `step` to its last finish, from the events.
fn step_span(w: &World, run: &str, step: &str) -> Duration {
    let ev = w.events(run);
    let ts = |kind: &str| -> Vec<i64> {
        ev.iter()
            .filter(|e| e["event"] == kind && e["step"] == step)
            .filter_map(|e| e["ts_ms"].as_i64())
            .collect()
    };
    let (s, f) = (ts("step_started"), ts("step_finished"));
    let (Some(a), Some(b)) = (s.iter().min(), f.iter().max()) else {
        panic!("{step} did not run: {s:?} {f:?}");
    };
    Duration::from_millis(u64::try_from(b - a).unwrap_or(0))
}

/// (1) + secrets: the whole playbook on 50 hosts (4 Relays, one of them in an offline
/// relay group fed by a bundle; 3 canaries; 3 hosts the plan skips), with a
/// passphrase-protected SSH key and a known API key.
#[test]
fn the_playbook_remediates_fifty_hosts_and_no_secret_reaches_a_file() {
    let api_key = "e2e-known-api-key-7f3a9c1d55";
    let w = World::new(
        Spec::fifty(),
        Opts {
            encrypted_key: true,
            api_key: Some(api_key.to_owned()),
            ..Opts::default()
        },
    );
    let r = w.apply("run");
    eprintln!(
        "(1) apply on 50 hosts: exit {:?} in {:.1?}; requests: {}",
        r.code,
        r.elapsed,
        requests(&w)
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);

    // The summary counts hosts by verified state: every affected host, nothing else.
    let (verified, failed, incomplete, without) = r.hosts_line();
    assert_eq!(
        (verified, failed, incomplete),
        (w.spec.affected() as u32, 0, 0),
        "{}",
        r.stderr
    );
    assert_eq!(without, 4, "3 skipped hosts and the Manager: {}", r.stderr);
    // The simulator agrees: target build, a current security update, exactly one upgrade
    // and one security update per host (and one bundle made and imported).
    w.assert_remediated();
    assert_eq!(w.effects(), w.spec.expected_effects());
    assert_eq!(
        w.sim
            .bundles()
            .get("dsupdate_0000000000.zip")
            .map(ToString::to_string),
        Some(FIXED.to_owned())
    );
    // The Manager did the connected hosts' updates: one run-now task per computer, and
    // completion was polled with one search per poll interval for all of them.
    let tasks = w.server.request_count("POST", "/api/scheduledtasks");
    assert_eq!(tasks, w.spec.affected() - 1, "all but the offline Relay");
    let searches = w.server.request_count("POST", "/api/computers/search");
    let polls_max = (r.elapsed.as_secs_f64() / 0.5).ceil() as usize + 5;
    assert!(
        searches <= polls_max,
        "{searches} searches in {:?}: more than one per poll interval",
        r.elapsed
    );

    let n = assert_no_secrets(&w, &[api_key, fleet::PASSPHRASE], &[&r.stdout, &r.stderr]);
    assert!(n >= 4, "journal, events, simulator log at least: {n}");
    assert!(w.sim_log.exists());
}

/// (2): SIGKILL while the Manager runs the Relays' security updates, resume, SIGKILL again
/// in the middle of the last Agent wave, resume: the run ends verified and the simulator
/// counts every side effect exactly once.
#[test]
fn sigkill_twice_then_resume_performs_every_side_effect_exactly_once() {
    let api_key = "e2e-resume-api-key-41c0e2";
    let w = World::new(
        Spec::fifty(),
        Opts {
            api_key: Some(api_key.to_owned()),
            ..Opts::default()
        },
    );
    let t = Instant::now();
    let child = spawn(&w, &w.apply_args("run"), "apply");
    let hit = wait_until(Duration::from_secs(60), || w.server.updates_in_flight() > 0);
    sigkill(child);
    assert!(hit, "no security update was ever in flight");
    let first = w.effects();
    w.settle();
    eprintln!(
        "(2) first kill after {:.1?}, with {} Relay update(s) in flight: {first:?}",
        t.elapsed(),
        count(&w.effects(), "security-update", "relay-")
            - count(&first, "security-update", "relay-")
    );
    assert_eq!(count(&first, "agent-upgrade", "agent-"), 0, "{first:?}");
    // What a killed run leaves behind (its journal's WAL among it) holds no secret.
    assert!(
        w.path("run.journal.sqlite-wal").exists(),
        "the killed run left no WAL"
    );
    assert_no_secrets(&w, &[api_key], &[]);

    let child = spawn(&w, &w.resume_args("run"), "resume1");
    let hit = wait_until(Duration::from_secs(90), || {
        count(&w.effects(), "agent-upgrade", "agent-") >= 20
    });
    sigkill(child);
    assert!(hit, "the resumed run never reached the last Agent wave");
    w.settle();
    let second = w.effects();
    let upgraded = count(&second, "agent-upgrade", "agent-");
    eprintln!(
        "(2) second kill after {:.1?}: {upgraded} Agents upgraded, {} updated",
        t.elapsed(),
        count(&second, "security-update", "agent-")
    );
    // The last wave's upgrades were in flight (they end on the hosts even though medic
    // is gone); its security updates, at the Manager, had not all run.
    let updated = count(&second, "security-update", "agent-");
    assert!(
        updated < upgraded,
        "killed too late: {upgraded} upgraded, {updated} updated"
    );

    let r = w.resume("run");
    eprintln!(
        "(2) final resume: exit {:?} in {:.1?} (whole: {:.1?})",
        r.code,
        r.elapsed,
        t.elapsed()
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let (verified, failed, incomplete, _) = r.hosts_line();
    assert_eq!(
        (verified, failed, incomplete),
        (w.spec.affected() as u32, 0, 0)
    );
    w.assert_remediated();
    assert_eq!(
        w.effects(),
        w.spec.expected_effects(),
        "a side effect was lost or repeated"
    );
    // The resumed runs re-probed what the kills left running, and found work done.
    let reprobed: Vec<_> = w
        .events("run")
        .into_iter()
        .filter(|e| e["event"] == "step_reprobed")
        .collect();
    assert!(!reprobed.is_empty(), "nothing was re-probed");
    eprintln!(
        "(2) {} step(s) re-probed after the kills, {} found done",
        reprobed.len(),
        reprobed.iter().filter(|e| e["done"] == true).count()
    );
    // The killed processes' outputs are files of the run directory (`apply.stderr`, ...).
    assert_no_secrets(&w, &[api_key], &[&r.stdout, &r.stderr]);
}

/// (3a): a Relay of the second relay-upgrade wave (budget 0) presents another host key
/// than known_hosts lists: refused naming the SHA256 fingerprint it presented, retried
/// once (the playbook's retries), counted against the wave: 1 > 0 stops the run, exit 3
/// (stopped, resumable), and no Agent is touched.
#[test]
fn a_relay_with_a_changed_host_key_is_refused_and_its_wave_budget_stops_the_run() {
    let w = World::new(Spec::sized(6), Opts::default());
    let plan = w.plan_json();
    let victim = "relay-w1";
    let wave = plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["id"] == format!("relay-upgrade/{victim}"))
        .and_then(|s| s["wave"].as_u64())
        .expect("the relay's wave");
    let phase = plan["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .find(|p| p["name"] == "relay-upgrade")
        .expect("relay-upgrade");
    let tolerated = phase["waves"][wave as usize]["max_failures"]
        .as_u64()
        .expect("a budget");
    assert_eq!((wave, tolerated), (1, 0), "{phase}");

    let fp = w.change_host_key(w.spec.index(victim));
    // The pre-flight would refuse the run for that key: this test is about the run.
    let mut args = w.apply_args("run");
    args.push("--skip-preflight".to_owned());
    let r = w.run(&args);
    eprintln!(
        "(3a) changed host key on {victim} (wave {wave}, tolerates {tolerated}): exit {:?} in {:.1?}",
        r.code, r.elapsed
    );
    // 1 failure > 0 tolerated: the budget stops the run (exit 3, resumable).
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(r.stderr.contains("HOST KEY CHANGED"), "{}", r.stderr);
    assert!(r.stderr.contains(&fp), "{fp} not named:\n{}", r.stderr);
    assert!(r.stderr.contains("stopped:"), "{}", r.stderr);
    let tries = finished(&w, "run", &format!("relay-upgrade/{victim}"));
    assert_eq!(tries.len(), 1, "{tries:?}");
    assert!(tries[0].2.contains(&fp), "{tries:?}");
    let effects = w.effects();
    assert_eq!(count(&effects, "agent-upgrade", victim), 0);
    assert_eq!(count(&effects, "agent-upgrade", "agent-"), 0, "{effects:?}");
    assert_eq!(w.state(victim).build.to_string(), world::OLD);
    assert!(
        w.events("run")
            .iter()
            .any(|e| e["event"] == "budget_exceeded" && e["phase"] == "relay-upgrade"),
        "no budget_exceeded event"
    );
    // The refusal is a run event (named host, reason, the key it presented) and a line of
    // the run summary.
    let refused: Vec<serde_json::Value> = w
        .events("run")
        .into_iter()
        .filter(|e| e["event"] == "host_key_refused")
        .collect();
    assert!(!refused.is_empty(), "no host_key_refused event");
    assert!(
        refused.iter().all(|e| e["host"] == victim
            && e["reason"] == "changed"
            && e["key_type"] == "ssh-ed25519"
            && e["fingerprint"] == fp.as_str()
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("HOST KEY CHANGED"))),
        "{refused:?}"
    );
    let summary_line = format!("{victim} (");
    assert!(
        r.stderr
            .lines()
            .any(|l| l.trim_start().starts_with(&summary_line)
                && l.contains(&format!("host key ssh-ed25519 {fp} refused (changed)"))),
        "no host-key line in the summary:\n{}",
        r.stderr
    );
    // The report (from the journal) lists each refusal on the relay's row.
    let report = report_json(&w, "run");
    let keys = report["host_keys"].as_array().expect("host_keys");
    assert_eq!(keys.len(), refused.len(), "{keys:?}");
    assert!(
        keys.iter().all(|k| k["event"] == "refused"
            && k["host"] == victim
            && k["reason"] == "changed"
            && k["line"].as_str().is_some_and(|l| l.contains(&fp))),
        "{keys:?}"
    );
    let row = report["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .find(|h| h["name"] == victim)
        .expect("the relay's row");
    assert_eq!(row["host_keys"].as_array().map(Vec::len), Some(keys.len()));
}

/// A host that known_hosts does not list, with `--accept-new-host-keys`: its key is
/// accepted and appended to the file, the run goes on (exit 0), and the acceptance is a
/// `host_key_accepted` event and a line of the run summary; the other hosts' keys, all
/// listed, give no event.
#[test]
fn an_accepted_new_host_key_is_a_run_event_and_in_the_summary() {
    let w = World::new(Spec::sized(6), Opts::default());
    let newcomer = "agent-01";
    let i = w.spec.index(newcomer);
    let known = std::fs::read_to_string(&w.fleet.known_hosts).expect("known_hosts");
    let prefix = format!("[{}]:{} ", w.fleet.hosts[i], w.fleet.port);
    let without: String = known
        .lines()
        .filter(|l| !l.starts_with(&prefix))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(known, without, "{prefix} listed");
    w.fleet.write_known_hosts(&without);
    let fp = crate::fleet::fingerprint(&w.fleet.host_key_pub("ed25519"));

    // The pre-flight never accepts a key: this test is about the run.
    let mut args = w.apply_args("run");
    args.push("--skip-preflight".to_owned());
    args.push("--accept-new-host-keys".to_owned());
    let r = w.run(&args);
    eprintln!(
        "accept-new on {newcomer}: exit {:?} in {:.1?}",
        r.code, r.elapsed
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let accepted: Vec<serde_json::Value> = w
        .events("run")
        .into_iter()
        .filter(|e| e["event"] == "host_key_accepted")
        .collect();
    assert_eq!(
        accepted.len(),
        1,
        "one new key, accepted once: {accepted:?}"
    );
    let e = &accepted[0];
    assert_eq!(e["host"], newcomer, "{e}");
    assert_eq!(e["fingerprint"], fp.as_str(), "{e}");
    assert_eq!(e["key_type"], "ssh-ed25519", "{e}");
    assert_eq!(
        e["file"],
        w.fleet.known_hosts.display().to_string().as_str(),
        "{e}"
    );
    assert!(
        !w.events("run")
            .iter()
            .any(|e| e["event"] == "host_key_refused"),
        "nothing refused"
    );
    assert!(
        r.stderr
            .lines()
            .any(|l| l.trim_start().starts_with(&format!("{newcomer} ("))
                && l.contains(&format!(
                    "new host key ssh-ed25519 {fp} accepted, recorded in"
                ))),
        "no host-key line in the summary:\n{}",
        r.stderr
    );
    let now = std::fs::read_to_string(&w.fleet.known_hosts).expect("known_hosts");
    assert!(
        now.lines().any(|l| l.starts_with(&prefix)),
        "recorded:\n{now}"
    );
    // The run report reads only the journal: the key is there too, listed and on its
    // host's row.
    let report = report_json(&w, "run");
    let keys = report["host_keys"].as_array().expect("host_keys");
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0]["event"], "accepted", "{keys:?}");
    assert_eq!(keys[0]["host"], newcomer, "{keys:?}");
    let line = keys[0]["line"].as_str().expect("line");
    assert!(
        line.starts_with(&format!("{newcomer} ("))
            && line.contains(&format!("new host key ssh-ed25519 {fp} accepted")),
        "{line}"
    );
    let rows: Vec<&serde_json::Value> = report["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .filter(|h| !h["host_keys"].as_array().expect("host_keys").is_empty())
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["name"], newcomer);
    assert_eq!(rows[0]["host_keys"][0], line);
}

/// `medic report --format json` of the run journaled at `run`.
fn report_json(w: &World, run: &str) -> serde_json::Value {
    let journal = w.path(&format!("{run}.journal.sqlite"));
    let out = w
        .medic()
        .args(["report", "--journal"])
        .arg(&journal)
        .args(["--format", "json"])
        .output()
        .expect("medic report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("report JSON")
}

/// (3b) and (4): on 50 hosts, an Agent of the 25% wave whose host key changed, and an
/// Agent of the last wave whose address nothing listens on. Each fails, is counted
/// against its wave's budget (both tolerate at least one failure, and the phase tolerates
/// two), so the run goes on and ends with exit 1 (finished with failed steps), every
/// other host verified. The unreachable host fails fast: connection refused, two
/// attempts, far below its step timeout (45 min) x attempts.
#[test]
fn a_changed_host_key_and_an_unreachable_host_fail_within_their_budgets() {
    let mut spec = Spec::fifty();
    let (keyed, gone) = ("agent-05", "agent-20");
    let gi = spec.index(gone);
    spec.hosts[gi].unreachable = true;
    let w = World::new(spec, Opts::default());

    // The budget math, from the plan itself.
    let plan = w.plan_json();
    let phase = plan["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .find(|p| p["name"] == "agent-upgrade")
        .expect("agent-upgrade")
        .clone();
    let step = |h: &str| {
        plan["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .find(|s| s["id"] == format!("agent-upgrade/{h}"))
            .cloned()
            .expect("a step")
    };
    let (sk, sg) = (step(keyed), step(gone));
    let (wk, wg) = (
        sk["wave"].as_u64().expect("wave"),
        sg["wave"].as_u64().expect("wave"),
    );
    assert_ne!(wk, wg);
    let tol = |wave: u64| {
        phase["waves"][wave as usize]["max_failures"]
            .as_u64()
            .unwrap_or(0)
    };
    let total = phase["max_failures_total"].as_u64().unwrap_or(0);
    eprintln!(
        "(3b/4) {keyed}: wave {wk} tolerates {}; {gone}: wave {wg} tolerates {}; phase tolerates {total}",
        tol(wk),
        tol(wg)
    );
    // One failure in each wave, two in the phase: within every budget, so exit 1.
    assert!(tol(wk) >= 1 && tol(wg) >= 1 && total >= 2, "{phase}");
    let timeout_s = sg["timeout_s"].as_u64().expect("timeout");
    let attempts = 1 + sg["retries"].as_u64().expect("retries");

    let fp = w.change_host_key(w.spec.index(keyed));
    // The pre-flight would refuse the run for both hosts: this test is about the run.
    let mut args = w.apply_args("run");
    args.push("--skip-preflight".to_owned());
    let r = w.run(&args);
    eprintln!(
        "(3b/4) apply: exit {:?} in {:.1?}; requests: {}",
        r.code,
        r.elapsed,
        requests(&w)
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let (verified, failed, incomplete, _) = r.hosts_line();
    assert_eq!(
        (verified, failed + incomplete),
        (w.spec.affected() as u32 - 2, 2),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains(&fp), "{fp} not named:\n{}", r.stderr);
    assert!(!r.stderr.contains("stopped:"), "{}", r.stderr);

    // Refused, never reached: the fake agent never ran there.
    let tries = finished(&w, "run", &format!("agent-upgrade/{keyed}"));
    assert!(
        tries.iter().all(|t| t.2.contains("HOST KEY CHANGED")),
        "{tries:?}"
    );
    // Unreachable: both attempts failed at once, far within the deadline.
    let tries = finished(&w, "run", &format!("agent-upgrade/{gone}"));
    let span = step_span(&w, "run", &format!("agent-upgrade/{gone}"));
    let started = w
        .events("run")
        .iter()
        .filter(|e| e["event"] == "step_started" && e["step"] == format!("agent-upgrade/{gone}"))
        .count();
    eprintln!(
        "(4) {gone}: {started} attempt(s), the last one {:?} ms, {:.2?} from the first start to the failure (timeout {timeout_s} s x {attempts} attempts)",
        tries.iter().map(|t| t.1).collect::<Vec<_>>(),
        span
    );
    assert_eq!(started as u64, attempts, "every attempt was made");
    assert!(
        tries.iter().all(|t| t.2.contains("cannot connect")),
        "{tries:?}"
    );
    assert!(tries.iter().all(|t| t.1 < 5_000), "{tries:?}");
    assert!(span < Duration::from_secs(15), "{span:?}");
    assert!(span.as_secs() * 100 < timeout_s * attempts, "{span:?}");

    // Everyone else is remediated, exactly once; the two are untouched.
    let effects = w.effects();
    for h in [keyed, gone] {
        assert_eq!(count(&effects, "agent-upgrade", h), 0);
        assert_eq!(w.state(h).build.to_string(), world::OLD);
    }
    let mut expected = w.spec.expected_effects();
    for h in [keyed, gone] {
        expected.retain(|(host, _), _| host != h);
    }
    assert_eq!(effects, expected);
}

/// (5): the same 50-host fleet twice at once, calm and under a storm of 429s from the
/// Manager (every API request for 8 s, from its 31st: a Manager over its rate limit):
/// the storm slows the run down, loses nothing, and both end in the same state with the
/// same side effects.
#[test]
fn a_429_storm_slows_the_run_but_it_ends_as_a_calm_run() {
    let storm = HttpFault::TooManyRequestsFor {
        duration: Duration::from_secs(8),
        after: 30,
    };
    let (calm, stormy) = std::thread::scope(|s| {
        let calm = s.spawn(|| {
            let w = World::new(Spec::fifty(), Opts::default());
            let r = w.apply("run");
            (w, r)
        });
        let stormy = s.spawn(|| {
            let w = World::new(
                Spec::fifty(),
                Opts {
                    faults: vec![storm],
                    ..Opts::default()
                },
            );
            let r = w.apply("run");
            (w, r)
        });
        (
            calm.join().expect("calm run"),
            stormy.join().expect("storm run"),
        )
    });
    let ((cw, cr), (sw, sr)): ((World, Ran), (World, Ran)) = (calm, stormy);
    let throttled = sw
        .server
        .requests()
        .iter()
        .filter(|r| r.status == 429)
        .count();
    eprintln!(
        "(5) calm: exit {:?} in {:.1?}, {} API requests; storm: exit {:?} in {:.1?}, {} API requests ({throttled} answered 429)",
        cr.code,
        cr.elapsed,
        cw.server
            .requests()
            .iter()
            .filter(|r| r.route.starts_with("/api"))
            .count(),
        sr.code,
        sr.elapsed,
        sw.server
            .requests()
            .iter()
            .filter(|r| r.route.starts_with("/api"))
            .count(),
    );
    assert_eq!(cr.code, Some(0), "{}", cr.stderr);
    assert_eq!(sr.code, Some(0), "{}", sr.stderr);
    assert!(throttled > 0, "the storm missed the run");
    // The storm is the Manager API's: the fake agents' simulator calls never met it.
    assert!(
        sw.server
            .requests()
            .iter()
            .all(|r| !r.route.starts_with("/sim") || r.status == 200),
        "a /sim call failed"
    );
    assert_eq!(sr.hosts_line(), cr.hosts_line());
    sw.assert_remediated();
    assert_eq!(sw.final_states(), cw.final_states());
    assert_eq!(sw.effects(), cw.effects());
    assert_eq!(sw.effects(), sw.spec.expected_effects());
}

/// `--poll-interval` is checked before anything runs (exit 2, bad input).
#[test]
fn a_bad_poll_interval_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = world::repo_root();
    for bad in ["0", "-1", "NaN", "7200"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_medic"))
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .env("MEDIC_DSM_API_KEY", "k")
            .args(["apply", "--inventory"])
            .arg(root.join("examples/lab/inventory.yaml"))
            .arg("--playbook")
            .arg(root.join("playbooks/ds-activeupdate-cert-2023.yaml"))
            .args(["--yes", "--progress", "never"])
            // Confirmed values, so the example-value refusal does not answer first.
            .args(["--set", "fixed_build.linux=12.0.0-5000,20.0.1-690"])
            .args(["--set", "fixed_build.windows=12.0.0-5000,20.0.1-690"])
            .args(["--set", "manager_min_build=20.0.463"])
            .arg(format!("--poll-interval={bad}"))
            .output()
            .expect("medic");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("poll interval"), "{bad}: {err}");
        assert!(
            !dir.path().join(".medic").exists(),
            "{bad}: a run was started"
        );
    }
}
