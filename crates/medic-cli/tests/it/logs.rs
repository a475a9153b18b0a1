//! The diagnostic log: `--log-level`, `--log-format`, `--log-file`, $MEDIC_LOG and
//! $RUST_LOG, on a simulated run. Each step attempt's lines carry the attempt's span (run,
//! step, host, action, attempt), which must match the run's own events.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::util::{TestEnv, lab_inventory, real_playbook};

/// Secrets the run is given the way an operator gives them; none may reach the log.
const SECRETS: [(&str, &str); 4] = [
    ("MEDIC_DSM_API_KEY", "api-key-3f9c1e7a-never-logged"),
    ("MEDIC_SUDO_PASSWORD", "sudo-pw-b82d44-never-logged"),
    ("MEDIC_AGENT_PASSWORD", "agent-pw-91aa0c-never-logged"),
    ("MEDIC_SSH_PASSPHRASE", "ssh-pp-5e6f12-never-logged"),
];

struct Out {
    code: Option<i32>,
    stderr: String,
}

/// A fast simulated run of the lab fleet with `extra` arguments and `env` variables.
fn simulate(env: &TestEnv, extra: &[&str], vars: &[(&str, &str)]) -> Out {
    let inv = lab_inventory().display().to_string();
    let pb = real_playbook().display().to_string();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_medic"));
    cmd.current_dir(env.path())
        .args(["apply", "-i", &inv, "-p", &pb, "--simulate"])
        .args(["--time-scale", "6000", "--yes", "--progress", "never"])
        .args(["--journal", "j.sqlite", "--events", "events.jsonl"])
        .args(extra)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env_remove("MEDIC_LOG")
        .stdin(std::process::Stdio::null());
    for (k, v) in SECRETS.iter().chain(vars) {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run medic");
    Out {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn json_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path:?}: {e}"));
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("line {} of {path:?} is not JSON ({e}): {l}", i + 1))
        })
        .collect()
}

fn assert_no_secret(what: &str, text: &str) {
    for (var, secret) in SECRETS {
        assert!(!text.contains(secret), "{what} holds ${var}'s value");
    }
}

#[test]
fn debug_json_log_file_has_a_span_per_step_attempt() {
    let env = TestEnv::new();
    let r = simulate(
        &env,
        &[
            "--log-level",
            "debug",
            "--log-format",
            "json",
            "--log-file",
            "medic.log",
        ],
        &[],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // The log went to the file only.
    assert!(!r.stderr.contains("attempt started"), "{}", r.stderr);

    let log = env.path().join("medic.log");
    assert_no_secret(
        "the log",
        &std::fs::read_to_string(&log).expect("read the log"),
    );
    let lines = json_lines(&log);
    let events = json_lines(&env.path().join("events.jsonl"));
    let run_id = events[0]["run_id"]
        .as_str()
        .expect("run_started has run_id");

    // Every attempt the run reports, as (step, host, action, attempt).
    let key = |v: &Value| {
        (
            v["step"].as_str().unwrap_or_default().to_owned(),
            v["host"].as_str().unwrap_or("-").to_owned(),
            v["action"].as_str().unwrap_or_default().to_owned(),
            v["attempt"].as_u64().unwrap_or_default(),
        )
    };
    let started: BTreeSet<_> = events
        .iter()
        .filter(|e| e["event"] == "step_started")
        .map(key)
        .collect();
    assert!(started.len() > 20, "too few steps ran: {}", started.len());

    let mut logged = BTreeSet::new();
    let mut ended = BTreeSet::new();
    for l in &lines {
        assert_eq!(l["level"], "DEBUG", "an unexpected line: {l}");
        let span = &l["span"];
        assert_eq!(span["name"], "step", "{l}");
        assert_eq!(span["run"], run_id, "{l}");
        match l["fields"]["message"].as_str() {
            Some("attempt started") => {
                logged.insert(key(span));
            }
            Some("attempt ended") => {
                assert!(l["fields"]["outcome"].is_string(), "{l}");
                ended.insert(key(span));
            }
            _ => {}
        }
    }
    assert_eq!(logged, started, "the log's attempts are not the run's");
    assert_eq!(ended, started, "an attempt's end was not logged");
}

#[test]
fn default_level_writes_no_debug_lines_and_medic_log_turns_them_on() {
    let env = TestEnv::new();
    let r = simulate(&env, &["--log-file", "default.log"], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let default = std::fs::read_to_string(env.path().join("default.log")).expect("read");
    assert!(!default.contains("DEBUG"), "{default}");
    assert!(!r.stderr.contains("DEBUG"), "{}", r.stderr);

    // The same run with $MEDIC_LOG=debug, as text on standard error: each line names its
    // attempt.
    let env = TestEnv::new();
    let r = simulate(&env, &[], &[("MEDIC_LOG", "debug")]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_no_secret("standard error", &r.stderr);
    let debug: Vec<&str> = r.stderr.lines().filter(|l| l.contains("DEBUG")).collect();
    assert!(debug.len() > 20, "{}", r.stderr);
    for l in &debug {
        assert!(
            l.contains("step{run=") && l.contains(" host=") && l.contains(" attempt="),
            "a debug line without its attempt: {l}"
        );
    }

    // --log-level wins over the environment.
    let env = TestEnv::new();
    let r = simulate(
        &env,
        &["--log-level", "warn"],
        &[("MEDIC_LOG", "debug"), ("RUST_LOG", "trace")],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(!r.stderr.contains("DEBUG"), "{}", r.stderr);
}

#[test]
fn a_bad_log_filter_or_log_file_is_refused_before_anything_runs() {
    let env = TestEnv::new();
    let r = simulate(&env, &[], &[("MEDIC_LOG", "medic=[")]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    let first = r.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error: $MEDIC_LOG: not a log filter"),
        "first line: {first}\n{}",
        r.stderr
    );
    assert!(
        !env.path().join("j.sqlite").exists(),
        "a journal was created"
    );

    let r = simulate(&env, &["--log-file", "no/such/dir/medic.log"], &[]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    let first = r.stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains(
            "cannot open the log file no/such/dir/medic.log: its directory does not exist"
        ),
        "first line: {first}\n{}",
        r.stderr
    );
    assert!(
        !env.path().join("j.sqlite").exists(),
        "a journal was created"
    );
}

/// On a terminal (a pseudo-terminal from util-linux `script`), each log line is written on
/// a line the bars have just cleared, whole, and the bars are drawn again only after its
/// end: no bar text shares a line with a log line.
#[test]
fn log_lines_and_progress_bars_never_share_a_terminal_line() {
    let have_script = std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_script {
        println!("skipped: util-linux `script` is not installed, so no terminal was available");
        return;
    }
    let env = TestEnv::new();
    let inv = lab_inventory().display().to_string();
    let pb = real_playbook().display().to_string();
    let line = format!(
        "stty cols 300 rows 60; {} apply -i {inv} -p {pb} --simulate --time-scale 6000 --yes \
         --journal j.sqlite --progress always --log-level debug 2>&1 >/dev/null",
        env!("CARGO_BIN_EXE_medic")
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(env.path())
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env_remove("MEDIC_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script");
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    // The bars were drawn (or this test would prove nothing).
    assert!(
        tty.contains("] 0/"),
        "no progress bar on the terminal: {tty}"
    );

    let mut seen = 0;
    for (at, _) in tty.match_indices(" DEBUG step{") {
        seen += 1;
        // `2026-12-04T20:41:17.770048Z`: the timestamp before the level.
        let start = tty[..at]
            .rfind(|c: char| !(c.is_ascii_digit() || "-:.TZ".contains(c)))
            .map_or(0, |i| i + 1);
        let before = &tty[..start];
        let end = tty[at..].find('\n').map_or(tty.len(), |i| at + i);
        let log_line = &tty[start..end];
        assert!(
            !log_line.trim_end_matches('\r').contains(['\x1b', '\r']),
            "a bar was drawn inside a log line: {log_line:?}"
        );
        // What precedes the line: a newline, or the bars' clearing of the line.
        let mut rest = before;
        let mut cleared = false;
        loop {
            if rest.ends_with('\r') {
                rest = &rest[..rest.len() - 1];
            } else if let Some(i) = rest.rfind('\x1b')
                && rest[i..].len() <= 6
                && rest[i..].starts_with("\x1b[")
                && rest[i..].ends_with(|c: char| c.is_ascii_alphabetic())
            {
                cleared |= rest[i..].ends_with('K');
                rest = &rest[..i];
            } else {
                break;
            }
        }
        assert!(
            cleared || rest.is_empty() || rest.ends_with('\n'),
            "a log line starts after bar text: {:?}",
            &before[before.len().saturating_sub(120)..]
        );
    }
    assert!(seen > 20, "too few debug lines on the terminal: {seen}");
}
