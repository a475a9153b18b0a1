//! A real `medic apply` on the simulated fleet, killed with SIGKILL at 20 points of its run,
//! then `medic resume`: every run ends verified and every side effect happened exactly
//! once (counted from the simulator's write-ahead log, persisted beside the journal).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::util::{TestEnv, lab_inventory, real_playbook};

const SCALE: &str = "3000";

fn medic() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_medic"));
    c.env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn apply_args(journal: &Path) -> Vec<String> {
    vec![
        "apply".into(),
        "--inventory".into(),
        lab_inventory().display().to_string(),
        "--playbook".into(),
        real_playbook().display().to_string(),
        "--simulate".into(),
        "--time-scale".into(),
        SCALE.into(),
        "--yes".into(),
        "--progress".into(),
        "never".into(),
        "--journal".into(),
        journal.display().to_string(),
    ]
}

/// Side effects per (host, action) from the simulator's log.
fn effects(journal: &Path) -> BTreeMap<(String, String), u32> {
    let log = format!("{}.sim.log", journal.display());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text.lines().skip(1) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v.get("result").and_then(|r| r.as_str()) == Some("ok") && v.get("effect").is_some() {
            let key = (
                v["host"].as_str().unwrap_or("").to_owned(),
                v["action"].as_str().unwrap_or("").to_owned(),
            );
            *out.entry(key).or_default() += 1;
        }
    }
    out
}

fn run_to_end(journal: &Path) -> std::process::Output {
    medic()
        .args(apply_args(journal))
        .output()
        .expect("run medic apply")
}

#[test]
fn sigkill_at_twenty_points_then_resume_performs_every_side_effect_exactly_once() {
    let env = TestEnv::new();
    let reference_journal = env.path().join("reference.sqlite");
    let t0 = Instant::now();
    let out = run_to_end(&reference_journal);
    let full = t0.elapsed();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference = effects(&reference_journal);
    assert!(reference.values().all(|&n| n == 1), "{reference:?}");
    assert!(
        reference.len() > 20,
        "the lab run has side effects: {}",
        reference.len()
    );

    for point in 0..20u32 {
        let journal = env.path().join(format!("run{point}.sqlite"));
        // Spread the kills over the whole run, with a deterministic jitter.
        let frac = (f64::from(point) + 0.5 + f64::from((point * 7919) % 10) / 20.0 - 0.25) / 20.0;
        let delay = full.mul_f64(frac.clamp(0.0, 0.98));
        let mut child = medic()
            .args(apply_args(&journal))
            .spawn()
            .expect("spawn medic apply");
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        let out = medic()
            .args([
                "resume",
                "--journal",
                &journal.display().to_string(),
                "--yes",
                "--progress",
                "never",
            ])
            .output()
            .expect("run medic resume");
        match out.status.code() {
            Some(0) => {}
            // A kill before the journal held the plan leaves nothing to resume: start again.
            Some(2) | Some(4)
                if !journal.exists()
                    || String::from_utf8_lossy(&out.stderr).contains("holds no plan") =>
            {
                let _ = std::fs::remove_file(&journal);
                let out = run_to_end(&journal);
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            code => panic!(
                "point {point} ({delay:?}): resume exited {code:?}\n{}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
        let got = effects(&journal);
        assert_eq!(
            got, reference,
            "point {point} (killed after {delay:?}): side effects differ from an uninterrupted run"
        );
    }
}
