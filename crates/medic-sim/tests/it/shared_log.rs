//! One simulated world shared by several processes through its effect log (`medic worker`
//! runs several on one machine), and the fencing tokens the simulator enforces per step.
//! Two opens of one path are two file descriptions, so their `flock`s exclude each other as
//! two processes' do; `processes_share_one_world` also runs real child processes.

use std::collections::BTreeMap;
use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use medic_exec::{ActionRequest, ActionStatus, Driver as _};
use medic_model::{Host, Inventory, Value};
use medic_sim::driver::SimDriver;
use medic_sim::{Fence, SimConfig, SimFleet, SimResult, effect_counts, stale_refusals};

use super::{LAB, inventory, request};

const FIXED: &str = "20.0.1-690";

fn lab() -> Inventory {
    inventory(LAB)
}

fn open(inv: &Inventory, path: &Path) -> SimFleet {
    SimFleet::open(inv, SimConfig::demo(1), Some(path)).expect("fleet opens")
}

fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn count(log: &Path, host: &str, action: &str) -> u32 {
    effect_counts(log)
        .get(&(host.to_owned(), action.to_owned()))
        .copied()
        .unwrap_or(0)
}

fn lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .expect("log readable")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn log_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("sim.log")
}

#[test]
fn two_fleets_on_one_log_see_and_build_on_each_others_effects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_path(&dir);
    let inv = lab();
    let a = open(&inv, &path);
    let b = open(&inv, &path);
    assert_eq!(
        lines(&path).len(),
        1,
        "one header, written by the first open"
    );

    let up = a.perform("relay-tky-1", "agent-upgrade", &args(&[("to", FIXED)]));
    assert_eq!(up.result, SimResult::Ok);
    // B's probe sees A's upgrade.
    let v = b.perform("relay-tky-1", "agent-version", &BTreeMap::new());
    assert_eq!(
        v.facts.get("agent_version"),
        Some(&Value::Agent(FIXED.parse().expect("build")))
    );
    // B decides on A's world: the Relay is fixed, so its update succeeds (below the fix it
    // fails with the certificate error), and going back below it is a downgrade.
    let update = b.perform("relay-tky-1", "security-update", &BTreeMap::new());
    assert_eq!(update.result, SimResult::Ok);
    let down = b.perform(
        "relay-tky-1",
        "agent-upgrade",
        &args(&[("to", "20.0.0-3445")]),
    );
    assert!(
        matches!(&down.result, SimResult::Failed(m) if m.contains("refusing to downgrade")),
        "{down:?}"
    );

    // A's views show B's update once it caught up (a perform does it by itself).
    assert!(
        !a.host_state("relay-tky-1")
            .expect("host")
            .security_update_current
    );
    a.refresh().expect("refresh");
    let s = a.host_state("relay-tky-1").expect("host");
    assert!(s.security_update_current);
    assert_eq!(s.build, FIXED.parse().expect("build"));

    assert_eq!(count(&path, "relay-tky-1", "agent-upgrade"), 1);
    assert_eq!(count(&path, "relay-tky-1", "security-update"), 1);
    assert_eq!(a.effect_counts(), b.effect_counts());
    // A third process started later rebuilds the same world from the log.
    let c = open(&inv, &path);
    assert_eq!(c.effect_counts(), a.effect_counts());
    assert_eq!(c.host_state("relay-tky-1"), a.host_state("relay-tky-1"));
}

#[test]
fn a_torn_line_left_by_a_dead_process_is_cut_at_the_next_perform() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_path(&dir);
    let inv = lab();
    let a = open(&inv, &path);
    let b = open(&inv, &path);
    assert!(a.perform("web-01", "reboot", &BTreeMap::new()).is_ok());
    // Another process died half-way through writing its line (it held the lock; dying
    // released it).
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("log opens")
        .write_all(br#"{"host":"web-01","action":"reb"#)
        .expect("half a line");

    assert!(b.perform("web-01", "reboot", &BTreeMap::new()).is_ok());
    // The header and the two reboots, each line whole: the torn one is gone.
    let text = std::fs::read_to_string(&path).expect("log");
    assert!(text.ends_with('\n'));
    assert_eq!(text.lines().count(), 3, "{text}");
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("every line is whole");
    }
    // Both reboots happened once each, in both processes and after a restart.
    assert_eq!(count(&path, "web-01", "reboot"), 2);
    a.refresh().expect("refresh");
    assert_eq!(a.host_state("web-01").expect("host").boot_id, 2);
    assert_eq!(
        open(&inv, &path)
            .host_state("web-01")
            .expect("host")
            .boot_id,
        2
    );
}

fn fenced(step: &str, host: &Host, action: &str, token: Option<u64>) -> ActionRequest {
    ActionRequest {
        step: step.to_owned(),
        fence: token,
        ..request(host, action)
    }
}

/// The takeover the fencing exists for: worker 1 claims the step (token 10) and freezes
/// past its lease; worker 2 takes over (token 15) and probes first; worker 1 wakes and
/// acts with its old token: refused, with no effect. Worker 2 acts once. Each worker has
/// its own fleet over the shared log, as separate processes do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_worker_is_refused_after_a_newer_one_probed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_path(&dir);
    let inv = lab();
    let w1 = SimDriver::new(open(&inv, &path), 1e9);
    let w2 = SimDriver::new(open(&inv, &path), 1e9);
    let host = inv
        .hosts
        .iter()
        .find(|h| h.name == "web-01")
        .expect("web-01")
        .clone();
    let step = "upgrade/web-01";

    let probe = w1.run(fenced(step, &host, "agent-version", Some(10))).await;
    assert_eq!(probe.status, ActionStatus::Ok);
    let probe = w2.run(fenced(step, &host, "agent-version", Some(15))).await;
    assert_eq!(probe.status, ActionStatus::Ok);

    let mut stale = fenced(step, &host, "agent-upgrade", Some(10));
    stale.args = args(&[("to", FIXED)]);
    let reply = w1.run(stale.clone()).await;
    assert_eq!(
        reply.status,
        ActionStatus::Refused(format!(
            "stale fencing token 10 for step {step}: 15 was seen"
        ))
    );
    assert_eq!(count(&path, "web-01", "agent-upgrade"), 0, "no effect");
    assert_eq!(stale_refusals(&path), 1);

    let mut fresh = stale.clone();
    fresh.fence = Some(15);
    assert_eq!(w2.run(fresh).await.status, ActionStatus::Ok);
    assert_eq!(count(&path, "web-01", "agent-upgrade"), 1);

    // The highest token is durable: a restarted process still refuses the old one, a
    // probe included, and the refusal changes nothing.
    let w3 = SimDriver::new(open(&inv, &path), 1e9);
    let before = w3.fleet().host_state("web-01");
    let reply = w3.run(fenced(step, &host, "agent-version", Some(10))).await;
    assert!(
        matches!(reply.status, ActionStatus::Refused(_)),
        "{reply:?}"
    );
    assert!(reply.facts.is_empty(), "a refused probe reports nothing");
    assert_eq!(w3.fleet().host_state("web-01"), before);
    assert_eq!(stale_refusals(&path), 2);
    // Tokens are per step: another step's lower token is not stale.
    let other = w3
        .run(fenced("verify/web-01", &host, "agent-version", Some(3)))
        .await;
    assert_eq!(other.status, ActionStatus::Ok);
    assert_eq!(count(&path, "web-01", "agent-upgrade"), 1);
}

#[test]
fn a_higher_token_is_durable_before_the_answer_and_an_equal_one_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_path(&dir);
    let inv = lab();
    let a = open(&inv, &path);
    let b = open(&inv, &path);
    let none = BTreeMap::new();
    let fence = |token| Some(Fence { step: "s", token });

    let n = lines(&path).len();
    assert!(
        a.perform_fenced("app-01", "agent-version", &none, fence(7))
            .is_ok()
    );
    let after_probe = lines(&path);
    assert_eq!(
        after_probe.len(),
        n + 1,
        "the probe raised the token: one line"
    );
    let seen: serde_json::Value =
        serde_json::from_str(after_probe.last().expect("line")).expect("json");
    assert_eq!(seen["result"], "seen");
    assert_eq!(seen["step"], "s");
    assert_eq!(seen["fence"], 7);
    // The same token again: nothing new to make durable.
    assert!(
        a.perform_fenced("app-01", "agent-version", &none, fence(7))
            .is_ok()
    );
    assert_eq!(lines(&path).len(), n + 1);

    // The other process learns the token from the log.
    let r = b.perform_fenced("app-01", "reboot", &none, fence(6));
    assert!(
        matches!(&r.result, SimResult::Refused(m) if m == "stale fencing token 6 for step s: 7 was seen"),
        "{r:?}"
    );
    assert_eq!(count(&path, "app-01", "reboot"), 0);
    // A side effect that raises the token carries it on its own line.
    assert!(
        b.perform_fenced("app-01", "reboot", &none, fence(8))
            .is_ok()
    );
    let last: serde_json::Value =
        serde_json::from_str(lines(&path).last().expect("line")).expect("json");
    assert_eq!(
        (last["action"].as_str(), last["fence"].as_u64()),
        (Some("reboot"), Some(8))
    );
    assert!(matches!(
        a.perform_fenced("app-01", "agent-version", &none, fence(7))
            .result,
        SimResult::Refused(_)
    ));
    assert_eq!(stale_refusals(&path), 2);
    assert_eq!(count(&path, "app-01", "reboot"), 1);
}

#[test]
fn without_a_token_nothing_is_refused_and_nothing_more_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_path(&dir);
    let inv = lab();
    let a = open(&inv, &path);
    let none = BTreeMap::new();
    assert!(
        a.perform_fenced(
            "app-01",
            "reboot",
            &none,
            Some(Fence {
                step: "s",
                token: 50
            })
        )
        .is_ok()
    );
    let n = lines(&path).len();
    // A single process sends no token: neither refused nor recorded, probes write nothing.
    for _ in 0..3 {
        assert!(a.perform("app-01", "agent-version", &none).is_ok());
        assert!(
            a.perform_fenced("app-01", "pending-reboot", &none, None)
                .is_ok()
        );
    }
    assert_eq!(lines(&path).len(), n);
    assert!(a.perform("app-01", "reboot", &none).is_ok());
    let last = lines(&path).pop().expect("line");
    assert!(!last.contains("fence") && !last.contains("step"), "{last}");
    assert_eq!(count(&path, "app-01", "reboot"), 2);
    assert_eq!(stale_refusals(&path), 0);
}

const CHILD_ENV: &str = "MEDIC_SIM_SHARED_LOG_CHILD";
const PER_CHILD: u32 = 25;

/// The child half of `processes_share_one_world`: opens the shared log and performs
/// `PER_CHILD` reboots of web-01 and cache clears of relay-tky-1, fenced probes between.
#[test]
fn shared_log_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let path = PathBuf::from(path);
    let fleet = open(&lab(), &path);
    let none = BTreeMap::new();
    let id = std::process::id();
    for i in 0..PER_CHILD {
        let step = format!("child-{id}");
        let fence = Some(Fence {
            step: &step,
            token: u64::from(i),
        });
        assert!(
            fleet
                .perform_fenced("web-01", "agent-version", &none, fence)
                .is_ok()
        );
        assert!(fleet.perform("web-01", "reboot", &none).is_ok());
        assert!(fleet.perform("relay-tky-1", "cache-clear", &none).is_ok());
    }
    println!("done {}", fleet.host_state("web-01").expect("host").boot_id);
}

#[test]
fn processes_share_one_world() {
    const CHILDREN: u32 = 3;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_path(&dir);
    let children: Vec<_> = (0..CHILDREN)
        .map(|_| {
            Command::new(std::env::current_exe().expect("test binary"))
                .args([
                    "--exact",
                    "shared_log::shared_log_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, &path)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    let mut last_seen = Vec::new();
    for mut child in children {
        let out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        for line in out.lines() {
            // libtest prints the test's name on the same line, before it.
            if let Some((_, n)) = line.expect("line").rsplit_once("done ") {
                last_seen.push(n.parse::<u32>().expect("boot id"));
            }
        }
        assert!(child.wait().expect("wait").success(), "a child failed");
    }
    assert_eq!(last_seen.len(), CHILDREN as usize, "every child finished");
    let total = CHILDREN * PER_CHILD;
    // Each child saw at least its own reboots on top of whatever the others had done.
    assert!(
        last_seen.iter().all(|n| *n >= PER_CHILD && *n <= total),
        "{last_seen:?}"
    );
    assert!(
        last_seen.contains(&total),
        "the last one saw every reboot: {last_seen:?}"
    );
    assert_eq!(count(&path, "web-01", "reboot"), total);
    assert_eq!(count(&path, "relay-tky-1", "cache-clear"), total);
    let world = open(&lab(), &path);
    let s = world.host_state("web-01").expect("host");
    assert_eq!(s.boot_id, u64::from(total));
    assert_eq!(
        world
            .host_state("relay-tky-1")
            .expect("host")
            .relay_cache_clears,
        total
    );
    assert_eq!(stale_refusals(&path), 0);
    // Every line is whole: no two processes' writes interleaved.
    for line in lines(&path) {
        serde_json::from_str::<serde_json::Value>(&line).expect("whole line");
    }
}
