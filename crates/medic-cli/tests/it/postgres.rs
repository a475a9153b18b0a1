//! Runs journaled in a real PostgreSQL (a throwaway server per test): SIGKILL in the middle
//! of a run and `medic resume` from the database, every side effect exactly once (from the
//! simulator's log); `medic status` and `medic approve` against the database URL; a
//! password on the command line refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use medic_journal_pg::server::TestServer;

use crate::util::{TestEnv, lab_inventory, real_playbook};

pub(crate) fn medic(env: &TestEnv, server: &TestServer) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_medic"));
    c.current_dir(env.path())
        .env("NO_COLOR", "1")
        .env("PGPASSWORD", server.password())
        .env_remove("MEDIC_JOURNAL_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

pub(crate) fn apply_args(journal: &str, events: &Path, yes: bool) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "apply".into(),
        "--inventory".into(),
        lab_inventory().display().to_string(),
        "--playbook".into(),
        real_playbook().display().to_string(),
        "--simulate".into(),
        "--time-scale".into(),
        "3000".into(),
        "--progress".into(),
        "never".into(),
        "--journal".into(),
        journal.into(),
        "--events".into(),
        events.display().to_string(),
    ];
    if yes {
        a.push("--yes".into());
    }
    a
}

/// The run's simulator log in `dir` (a database run keeps it beside its events file, named
/// after the run), once it exists.
fn sim_log(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".sim.log"))
}

fn attempts(log: &Path) -> u64 {
    let text = std::fs::read(log).unwrap_or_default();
    (text.iter().filter(|&&b| b == b'\n').count() as u64).saturating_sub(1)
}

fn effects(log: &Path) -> BTreeMap<(String, String), u32> {
    medic_sim::effect_counts(log)
}

pub(crate) fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn sigkill_mid_run_then_resume_from_the_database_repeats_no_side_effect() {
    let server = TestServer::start().expect("a throwaway PostgreSQL");
    let env = TestEnv::new();
    let url = server.url();

    // An uninterrupted run: the reference counts.
    let ref_dir = env.path().join("ref");
    std::fs::create_dir(&ref_dir).expect("dir");
    let o = medic(&env, &server)
        .args(apply_args(&url, &ref_dir.join("ev.jsonl"), true))
        .output()
        .expect("apply");
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains(&format!("journal: {url}?run=")), "{stderr}");
    assert!(!out(&o).contains(server.password()));
    let ref_log = sim_log(&ref_dir).expect("the reference run's simulator log");
    let reference = effects(&ref_log);
    let total = attempts(&ref_log);
    assert!(
        reference.len() > 20 && reference.values().all(|&n| n == 1),
        "{reference:?}"
    );

    // The same run killed halfway through its side effects, then resumed.
    let dir = env.path().join("killed");
    std::fs::create_dir(&dir).expect("dir");
    let mut child = medic(&env, &server)
        .args(apply_args(&url, &dir.join("ev.jsonl"), true))
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn apply");
    let t0 = Instant::now();
    let log = loop {
        if let Some(log) = sim_log(&dir).filter(|l| attempts(l) >= total / 2) {
            break log;
        }
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the run ended before its kill point"
        );
        assert!(t0.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(1));
    };
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let run_id = log
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".sim.log"))
        .expect("run id")
        .to_owned();
    let journal = format!("{url}?run={run_id}");

    // What the database says of the killed run, from another process.
    let st = medic(&env, &server)
        .args(["status", "--journal", &journal, "--format", "json"])
        .output()
        .expect("status");
    assert_eq!(st.status.code(), Some(0), "{}", out(&st));
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).expect("status json");
    assert_eq!(v["run_id"], run_id.as_str(), "{v}");
    assert_eq!(v["run_state"], "running", "{v}");

    let o = medic(&env, &server)
        .args([
            "resume",
            "--journal",
            &journal,
            "--yes",
            "--progress",
            "never",
        ])
        .output()
        .expect("resume");
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert_eq!(
        effects(&log),
        reference,
        "side effects differ from an uninterrupted run"
    );

    let st = medic(&env, &server)
        .args(["status", "--journal", &journal, "--format", "json"])
        .output()
        .expect("status");
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).expect("status json");
    assert_eq!(v["run_state"], "finished", "{v}");
    assert!(v["failed"].as_array().is_some_and(Vec::is_empty), "{v}");
}

#[test]
fn gates_are_approved_from_another_process_through_the_database() {
    let server = TestServer::start().expect("a throwaway PostgreSQL");
    let env = TestEnv::new();
    // The new run's journal from the environment, password included.
    let child = medic(&env, &server)
        .env("MEDIC_JOURNAL_URL", server.url_with_password())
        .env_remove("PGPASSWORD")
        .args([
            "apply",
            "-i",
            &lab_inventory().display().to_string(),
            "-p",
            &real_playbook().display().to_string(),
            "--simulate",
            "--time-scale",
            "6000",
            "--progress",
            "never",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    // The database's only run, named without its id; the password from the same
    // variable, which names the same server.
    let url = server.url();
    let medic = |env: &TestEnv, server: &TestServer| {
        let mut c = medic(env, server);
        c.env("MEDIC_JOURNAL_URL", server.url_with_password())
            .env_remove("PGPASSWORD");
        c
    };
    let mut approved = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while approved.len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let st = medic(&env, &server)
            .args(["status", "--journal", &url, "--format", "json"])
            .output()
            .expect("status");
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&st.stdout) else {
            continue;
        };
        for g in v["waiting_for_approval"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g.as_str())
        {
            if !approved.contains(&g.to_owned()) {
                let a = medic(&env, &server)
                    .args(["approve", "--journal", &url, g, "--by", "carol"])
                    .output()
                    .expect("approve");
                assert_eq!(a.status.code(), Some(0), "{}", out(&a));
                approved.push(g.to_owned());
            }
        }
    }
    let o = child.wait_with_output().expect("wait");
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert_eq!(
        approved,
        ["gate/agent-upgrade/wave-1", "gate/agent-upgrade/wave-2"]
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("approved by carol"), "{stderr}");
    assert!(!stderr.contains(server.password()), "{stderr}");
    // Its events went to the working directory, named after the run.
    let runs: Vec<_> = std::fs::read_dir(env.path().join(".medic/runs"))
        .expect("local run directory")
        .flatten()
        .collect();
    assert_eq!(runs.len(), 1);
    let id = runs[0].file_name().to_string_lossy().into_owned();
    assert!(runs[0].path().join(format!("{id}.events.jsonl")).is_file());

    // A gate that is not one is refused by the database's plan.
    let bad = medic(&env, &server)
        .args(["approve", "--journal", &url, "gate/nope"])
        .output()
        .expect("approve");
    assert_eq!(bad.status.code(), Some(2), "{}", out(&bad));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("neither a gate nor a manual step"));
}

#[test]
fn a_password_on_the_command_line_is_refused_before_anything_is_written() {
    let server = TestServer::start().expect("a throwaway PostgreSQL");
    let env = TestEnv::new();
    let with_password = server.url_with_password();
    for args in [
        apply_args(&with_password, &env.path().join("ev.jsonl"), true),
        vec!["status".into(), "--journal".into(), with_password.clone()],
    ] {
        let o = medic(&env, &server).args(&args).output().expect("medic");
        assert_eq!(o.status.code(), Some(2), "{}", out(&o));
        let stderr = String::from_utf8_lossy(&o.stderr);
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error: --journal: the journal URL holds a password"),
            "{stderr}"
        );
        assert!(stderr.contains("MEDIC_JOURNAL_URL"), "{stderr}");
        assert!(!stderr.contains(server.password()), "{stderr}");
    }
    assert!(!env.path().join(".medic").exists());
    assert_eq!(
        server
            .psql("SELECT to_regclass('medic.runs') IS NULL")
            .expect("psql"),
        "t",
        "nothing was written to the database"
    );
}

/// A database that does not answer: the run cannot start, and the working directory is as
/// it was (no empty `.medic/runs/ID` made for the run's events and simulator state).
#[test]
fn a_database_that_does_not_answer_leaves_no_run_directory() {
    let env = TestEnv::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("postgres://medic@127.0.0.1:{port}/medic");
    let mut args = apply_args(&url, Path::new("unused"), true);
    // The default events place, under `.medic/runs/ID/`.
    let at = args.iter().position(|a| a == "--events").expect("--events");
    args.drain(at..at + 2);
    let o = Command::new(env!("CARGO_BIN_EXE_medic"))
        .current_dir(env.path())
        .env("NO_COLOR", "1")
        .env_remove("MEDIC_JOURNAL_URL")
        .env_remove("PGPASSWORD")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .expect("medic");
    assert_eq!(o.status.code(), Some(4), "{}", out(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("cannot open journal postgres://"),
        "{stderr}"
    );
    assert!(!env.path().join(".medic").exists(), "{stderr}");
}
