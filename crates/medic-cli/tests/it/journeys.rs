//! The operator's journeys from the outside (issue 10): each a command a person types, its
//! exit code, the first line it prints, and what it wrote or did not write.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Run, TestEnv, lab_inventory, real_playbook, repo_root};

fn medic_bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("medic")
}

/// The first line of stderr.
fn first(r: &Run) -> &str {
    r.stderr.lines().next().unwrap_or("")
}

#[track_caller]
fn assert_first(r: &Run, code: i32, part: &str) {
    r.assert_code(code);
    if !first(r).contains(part) {
        r.fail(format_args!("the first line should contain `{part}`"));
    }
}

/// Every file under `dir` with its bytes, to show that nothing was written or lost.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read a directory") {
            let e = e.expect("an entry");
            let p = e.path();
            let t = e.file_type().expect("a file type");
            if t.is_dir() {
                todo.push(p);
            } else if t.is_file() {
                out.insert(p.clone(), std::fs::read(&p).expect("read a file"));
            } else {
                out.insert(p.clone(), Vec::new());
            }
        }
    }
    out
}

#[track_caller]
fn assert_unchanged(before: &BTreeMap<PathBuf, Vec<u8>>, dir: &Path, what: &str) {
    let after = snapshot(dir);
    let names = |m: &BTreeMap<PathBuf, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(before),
        names(&after),
        "{what}: files were added or removed"
    );
    for (p, bytes) in before {
        assert!(after[p] == *bytes, "{what}: {} was changed", p.display());
    }
}

/// A quick rehearsal of the lab fleet into `journal`.
fn rehearse(env: &TestEnv, journal: &str) -> Run {
    let (inv, pb) = (lab_inventory(), real_playbook());
    env.run([
        "apply".as_ref(),
        "-i".as_ref(),
        inv.as_os_str(),
        "-p".as_ref(),
        pb.as_os_str(),
        "--simulate".as_ref(),
        "--time-scale".as_ref(),
        "6000".as_ref(),
        "--yes".as_ref(),
        "--progress".as_ref(),
        "never".as_ref(),
        "--journal".as_ref(),
        journal.as_ref(),
    ])
}

fn inputs() -> [String; 4] {
    [
        "-i".to_owned(),
        lab_inventory().display().to_string(),
        "-p".to_owned(),
        real_playbook().display().to_string(),
    ]
}

// Item 1.
#[test]
fn a_rehearsal_without_a_journal_flag_keeps_its_run_under_dot_medic() {
    let env = TestEnv::new();
    let mut args: Vec<String> = vec!["apply".into()];
    args.extend(inputs());
    args.extend(
        [
            "--simulate",
            "--time-scale",
            "6000",
            "--yes",
            "--progress",
            "never",
        ]
        .map(String::from),
    );
    let r = env.run(&args);
    r.assert_code(0);
    let runs: Vec<PathBuf> = std::fs::read_dir(env.path().join(".medic/runs"))
        .expect("the run's directory")
        .map(|e| e.expect("an entry").path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let id = runs[0]
        .file_name()
        .and_then(|n| n.to_str())
        .expect("the run's id")
        .to_owned();
    for f in [
        "journal.sqlite".to_owned(),
        "journal.sqlite.sim.log".to_owned(),
        format!("{id}.events.jsonl"),
    ] {
        assert!(runs[0].join(&f).is_file(), "{f} is missing\n{r}");
    }
    let status = env.run([
        "status".as_ref(),
        "--journal".as_ref(),
        runs[0].join("journal.sqlite").as_os_str(),
    ]);
    status.assert_code(0);
    assert!(status.stdout.contains("succeeded"), "{status}");
}

// Item 12.
#[test]
fn a_window_that_has_ended_is_refused_before_anything_is_written() {
    let env = TestEnv::new();
    let past = "2020-01-01T22:00+09:00/2020-01-02T04:00+09:00";
    let mut plan: Vec<String> = vec!["plan".into()];
    plan.extend(inputs());
    plan.extend(["--window".into(), past.into()]);
    let r = env.run(&plan);
    assert_first(
        &r,
        2,
        "the window 2020-01-01T22:00:00+09:00/2020-01-02T04:00:00+09:00 ended before now",
    );
    assert!(r.stdout.is_empty(), "{r}");
    let mut apply: Vec<String> = vec!["apply".into()];
    apply.extend(inputs());
    apply.extend(["--simulate", "--yes", "--window", past].map(String::from));
    let r = env.run(&apply);
    assert_first(&r, 2, "ended before now");
    assert!(
        snapshot(env.path()).is_empty(),
        "apply wrote something\n{r}"
    );
}

#[test]
fn a_window_is_shown_in_the_offset_it_was_given_in() {
    let env = TestEnv::new();
    let mut plan: Vec<String> = vec!["plan".into()];
    plan.extend(inputs());
    plan.extend([
        "--window".into(),
        "2099-12-01T22:00+09:00/2099-12-02T04:00+09:00".into(),
    ]);
    let r = env.run(&plan);
    r.assert_code(0);
    assert!(
        r.stdout
            .contains("window: 2099-12-01T22:00:00+09:00 to 2099-12-02T04:00:00+09:00 (6h)"),
        "{r}"
    );
}

// Item 13.
#[test]
fn flag_values_that_would_hang_are_refused_with_what_is_accepted() {
    let env = TestEnv::new();
    let cases: [(&[&str], &str); 6] = [
        (
            &["--simulate", "--time-scale", "0"],
            "invalid value '0' for '--time-scale <X>'",
        ),
        (
            &["--simulate", "--time-scale", "NaN"],
            "invalid value 'NaN' for '--time-scale <X>'",
        ),
        (
            &["--simulate", "--time-scale", "-5"],
            "invalid value '-5' for '--time-scale <X>'",
        ),
        (
            &["--simulate", "--time-scale", "inf"],
            "invalid value 'inf' for '--time-scale <X>'",
        ),
        (
            &["--simulate", "--max-per-group", "0"],
            "invalid value '0' for '--max-per-group <N>'",
        ),
        (
            &["--simulate", "--max-per-group", "-1"],
            "'--max-per-group <N>'",
        ),
    ];
    for (extra, expected) in cases {
        let mut args: Vec<String> = vec!["apply".into()];
        args.extend(inputs());
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let r = env.run(&args);
        assert_first(&r, 2, expected);
        assert!(!first(&r).contains("unexpected argument"), "{r}");
    }
    let r = env.run(["demo", "--time-scale", "0"]);
    assert_first(&r, 2, "invalid value '0' for '--time-scale <X>'");
    assert!(snapshot(env.path()).is_empty(), "something was written");
}

// Item 14.
#[test]
fn a_huge_inventory_of_one_repeated_host_is_checked_and_its_problems_capped() {
    let env = TestEnv::new();
    const N: usize = 200_000;
    let line = "  - { name: web-01, address: 10.0.2.11, platform: linux, agent_version: \"12.0.0-1234\" }\n";
    let mut text = String::from(
        "manager: { name: dsm01, address: 10.0.0.5, version: \"20.0.463\" }\nhosts:\n",
    );
    text.push_str(&line.repeat(N));
    env.write("inv.yaml", &text);
    let pb = real_playbook().display().to_string();
    let started = Instant::now();
    let r = env.run(["validate", "-i", "inv.yaml", "-p", &pb]);
    println!(
        "validate of {N} repeated host lines ({} MB): {:.2} s",
        text.len() / 1_000_000,
        started.elapsed().as_secs_f64()
    );
    assert_first(
        &r,
        2,
        "inv.yaml:4:13: duplicate host name `web-01` (first defined on line 3)",
    );
    // Two kinds: the repeated name and the repeated address (and port).
    assert_eq!(
        r.headers().len(),
        40,
        "at most 20 problems of one kind are shown"
    );
    let dups = N - 1;
    assert!(
        r.stderr.contains(&format!(
            "... and {} more problems of the same kind as `duplicate host name `web-01`",
            dups - 20
        )),
        "{}",
        &r.stderr[r.stderr.len().saturating_sub(500)..]
    );
    assert!(
        r.stderr.trim_end().ends_with(&format!(
            "{} problems found; nothing was planned or run",
            2 * dups
        )),
        "{}",
        &r.stderr[r.stderr.len().saturating_sub(500)..]
    );
}

// Item 15.
/// Starts a rehearsal, reads its first line of stderr, closes the pipe and waits.
fn close_after_first_line(env: &TestEnv, args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(medic_bin())
        .args(args)
        .current_dir(env.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start medic");
    let mut err = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    err.read_line(&mut line).expect("read the first line");
    drop(err);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return (status.code(), line);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("medic did not stop after its output closed");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[track_caller]
fn assert_consistent_and_resumable(env: &TestEnv, journal: &str) {
    let s = env.run(["status", "--journal", journal, "--format", "json"]);
    s.assert_code(0);
    let v: serde_json::Value = serde_json::from_str(&s.stdout).expect("status json");
    assert_eq!(
        v["running"],
        serde_json::json!([]),
        "a step was left running\n{s}"
    );
    assert_eq!(v["unknown"], serde_json::json!([]), "{s}");
    let r = env.run([
        "resume",
        "--journal",
        journal,
        "--yes",
        "--progress",
        "never",
    ]);
    r.assert_code(0);
}

#[test]
fn a_closed_stderr_stops_the_run_like_ctrl_c_and_resume_finishes_it() {
    let env = TestEnv::new();
    let (inv, pb) = (lab_inventory(), real_playbook());
    let (inv, pb) = (inv.display().to_string(), pb.display().to_string());
    let (code, line) = close_after_first_line(
        &env,
        &[
            "apply",
            "-i",
            &inv,
            "-p",
            &pb,
            "--simulate",
            "--time-scale",
            "600",
            "--yes",
            "--progress",
            "never",
            "--journal",
            "j.sqlite",
        ],
    );
    assert!(line.contains("run "), "first line: {line}");
    assert_eq!(code, Some(3), "stopped and resumable, not a panic (101)");
    assert_consistent_and_resumable(&env, "j.sqlite");
}

#[test]
fn a_closed_stdout_stops_the_run_too() {
    let env = TestEnv::new();
    let (inv, pb) = (lab_inventory(), real_playbook());
    let mut child = Command::new(medic_bin())
        .args(["apply", "-i"])
        .arg(&inv)
        .arg("-p")
        .arg(&pb)
        .args([
            "--simulate",
            "--time-scale",
            "600",
            "--yes",
            "--progress",
            "never",
            "--journal",
            "j.sqlite",
        ])
        .current_dir(env.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start medic");
    // The reader goes away at once, as `| head -0` or a closed viewer does.
    drop(child.stdout.take());
    let deadline = Instant::now() + Duration::from_secs(120);
    let code = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s.code();
        }
        assert!(Instant::now() < deadline, "medic did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(3));
    assert_consistent_and_resumable(&env, "j.sqlite");
}

#[test]
fn a_demo_piped_into_head_stops_cleanly_and_resumes() {
    let env = TestEnv::new();
    let (code, line) = close_after_first_line(
        &env,
        &[
            "demo",
            "--dir",
            "d",
            "--time-scale",
            "3000",
            "--progress",
            "never",
        ],
    );
    assert!(line.starts_with("medic demo:"), "first line: {line}");
    assert_eq!(code, Some(3), "stopped and resumable, not a panic (101)");
    assert_consistent_and_resumable(&env, "d/journal.sqlite");
}

// Item 16.
#[test]
fn an_existing_journal_is_refused_before_anything_is_written() {
    let env = TestEnv::new();
    rehearse(&env, "j.sqlite").assert_code(0);
    let before = snapshot(env.path());
    let multi = repo_root().join("examples/multi-site/inventory.yaml");
    let pb = real_playbook();
    let r = env.run([
        "apply".as_ref(),
        "-i".as_ref(),
        multi.as_os_str(),
        "-p".as_ref(),
        pb.as_os_str(),
        "--simulate".as_ref(),
        "--yes".as_ref(),
        "--journal".as_ref(),
        "j.sqlite".as_ref(),
    ]);
    assert_first(
        &r,
        2,
        "j.sqlite already exists; a new run needs a new journal",
    );
    assert_unchanged(&before, env.path(), "apply over an existing journal");
    let r = env.run(["resume", "--journal", "j.sqlite", "--progress", "never"]);
    r.assert_code(0);
}

#[test]
fn a_simulator_state_file_without_its_journal_is_refused() {
    let env = TestEnv::new();
    env.write("j.sqlite.sim.log", "left over\n");
    let before = snapshot(env.path());
    let r = rehearse(&env, "j.sqlite");
    assert_first(
        &r,
        2,
        "the simulator state file j.sqlite.sim.log exists without its journal",
    );
    assert_unchanged(&before, env.path(), "a stale simulator state");
}

// Item 17.
#[test]
fn plan_never_writes_over_its_inputs() {
    let env = TestEnv::new();
    let inv = env.write("inv.yaml", std::fs::read(lab_inventory()).expect("lab"));
    let pb = env.write("pb.yaml", std::fs::read(real_playbook()).expect("playbook"));
    std::os::unix::fs::symlink(&inv, env.path().join("link.yaml")).expect("symlink");
    std::fs::hard_link(&pb, env.path().join("hard.yaml")).expect("hard link");
    std::fs::create_dir(env.path().join("sub")).expect("mkdir");
    let before = snapshot(env.path());
    for (out, input) in [
        ("inv.yaml", "--inventory inv.yaml"),
        ("./sub/../inv.yaml", "--inventory inv.yaml"),
        ("link.yaml", "--inventory inv.yaml"),
        ("pb.yaml", "--playbook pb.yaml"),
        ("hard.yaml", "--playbook pb.yaml"),
    ] {
        let r = env.run(["plan", "-i", "inv.yaml", "-p", "pb.yaml", "--out", out]);
        assert_first(
            &r,
            2,
            &format!(
                "--out {out} is the same file as the input {input}; medic never writes over its inputs"
            ),
        );
    }
    let r = env.run([
        "apply",
        "-i",
        "inv.yaml",
        "-p",
        "pb.yaml",
        "--simulate",
        "--yes",
        "--events",
        "link.yaml",
    ]);
    assert_first(
        &r,
        2,
        "--events link.yaml is the same file as the input --inventory inv.yaml",
    );
    assert_unchanged(&before, env.path(), "outputs over inputs");
    // A new file is fine.
    env.run([
        "plan", "-i", "inv.yaml", "-p", "pb.yaml", "--out", "plan.txt",
    ])
    .assert_code(0);
}

// Item 18.
#[test]
fn journal_paths_that_are_not_journals_are_named_for_what_they_are() {
    let env = TestEnv::new();
    rehearse(&env, "j.sqlite").assert_code(0);
    let mut bytes = std::fs::read(env.path().join("j.sqlite")).expect("journal");
    bytes.truncate(8192);
    env.write("cut/j.sqlite", &bytes);
    env.write("empty.sqlite", "");
    env.write("notes.txt", "not a journal at all, but long enough to have a header of a hundred bytes..........................\n");
    std::fs::create_dir(env.path().join("dir")).expect("mkdir");
    let before = snapshot(env.path());
    for (cmd, after) in [
        (&["status", "--journal"][..], &[][..]),
        (&["resume", "--journal"][..], &[][..]),
        (&["approve", "--journal"][..], &["gate/x"][..]),
    ] {
        let with = |j: &str| {
            let mut a: Vec<&str> = cmd.to_vec();
            a.push(j);
            a.extend_from_slice(after);
            env.run(&a)
        };
        assert_first(
            &with("cut/j.sqlite"),
            2,
            "the journal cut/j.sqlite is damaged (truncated or overwritten)",
        );
        assert_first(&with("dir"), 2, "dir is a directory, not a journal");
        assert_first(
            &with("empty.sqlite"),
            2,
            "empty.sqlite is empty: it is not a journal",
        );
        assert_first(
            &with("notes.txt"),
            2,
            "notes.txt is not a journal (it is not an SQLite database)",
        );
        assert_first(
            &with("absent.sqlite"),
            2,
            "there is no journal at absent.sqlite",
        );
    }
    let r = rehearse(&env, "dir");
    assert_first(&r, 2, "dir is a directory, not a journal file");
    assert_unchanged(&before, env.path(), "journals that are not journals");
}

/// Runs medic as an unprivileged user when the test runs as root (root writes anywhere).
fn run_unprivileged(env: &TestEnv, args: &[&str]) -> (Option<i32>, String) {
    let root = {
        use std::os::unix::fs::MetadataExt as _;
        let probe = env.write(".whoami", "");
        let uid = std::fs::metadata(&probe).expect("probe").uid();
        std::fs::remove_file(probe).expect("remove the probe");
        uid == 0
    };
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(medic_bin());
        c
    } else {
        Command::new(medic_bin())
    };
    let out = cmd
        .args(args)
        .current_dir(env.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run medic (setpriv when root)");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_journal_in_a_read_only_directory_is_refused_as_not_writable() {
    use std::os::unix::fs::PermissionsExt as _;
    let env = TestEnv::new();
    let inv = env.write("inv.yaml", std::fs::read(lab_inventory()).expect("lab"));
    let pb = env.write("pb.yaml", std::fs::read(real_playbook()).expect("playbook"));
    std::fs::create_dir(env.path().join("ro")).expect("mkdir");
    let set = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    set(env.path(), 0o755);
    set(&inv, 0o644);
    set(&pb, 0o644);
    set(&env.path().join("ro"), 0o555);
    let (code, err) = run_unprivileged(
        &env,
        &[
            "apply",
            "-i",
            "inv.yaml",
            "-p",
            "pb.yaml",
            "--simulate",
            "--yes",
            "--journal",
            "ro/j.sqlite",
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.lines().next().unwrap_or("").contains(
            "the journal ro/j.sqlite cannot be created: the directory ro is not writable"
        ),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(env.path().join("ro"))
            .expect("ro")
            .count(),
        0
    );
    // A finished journal (of the same user) whose directory became read-only cannot be
    // resumed: SQLite would need its -wal and -shm files there.
    set(&env.path().join("ro"), 0o777);
    let (code, err) = run_unprivileged(
        &env,
        &[
            "apply",
            "-i",
            "inv.yaml",
            "-p",
            "pb.yaml",
            "--simulate",
            "--time-scale",
            "6000",
            "--yes",
            "--progress",
            "never",
            "--journal",
            "ro/j.sqlite",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    set(&env.path().join("ro"), 0o555);
    let before = snapshot(env.path());
    let (code, err) = run_unprivileged(&env, &["resume", "--journal", "ro/j.sqlite"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.lines().next().unwrap_or("").contains(
            "the journal ro/j.sqlite cannot be written: its directory ro is not writable"
        ),
        "{err}"
    );
    assert_unchanged(&before, env.path(), "a read-only journal directory");
    set(&env.path().join("ro"), 0o755);
}

// Item 19.
/// A socket on loopback that accepts connections and reads, but never answers (a Manager
/// that hangs, or a TLS port that waits for a handshake that never comes).
fn silent_server() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind on loopback");
    let addr = l.local_addr().expect("address");
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 4096];
                while std::io::Read::read(&mut s, &mut buf).is_ok_and(|n| n > 0) {}
            });
        }
    });
    addr
}

#[test]
fn an_import_from_a_manager_that_never_answers_times_out_naming_the_url() {
    let env = TestEnv::new();
    let addr = silent_server();
    let url = format!("http://{addr}");
    let started = Instant::now();
    let out = assert_cmd::Command::cargo_bin("medic")
        .expect("medic")
        .args([
            "inventory",
            "import",
            "--dsm",
            &url,
            "--dsm-timeout",
            "1",
            "--out",
            "inv.yaml",
        ])
        .current_dir(env.path())
        .env("MEDIC_DSM_API_KEY", "test-key-never-sent-anywhere-else")
        .env("NO_COLOR", "1")
        .timeout(Duration::from_secs(60))
        .output()
        .expect("run medic");
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    println!(
        "import from a silent Manager with --dsm-timeout 1 failed after {:.1} s",
        took.as_secs_f64()
    );
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert_eq!(
        err.lines().next().unwrap_or(""),
        format!("importing from {url}/api (each request times out after 1 s)")
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with(&format!("error: the import from {url}/api failed"))),
        "{err}"
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(!env.path().join("inv.yaml").exists());
}

#[test]
fn a_plain_http_manager_off_loopback_is_refused_and_bad_timeouts_too() {
    let env = TestEnv::new();
    // Refused before any connection: nothing reaches that name.
    let out = assert_cmd::Command::cargo_bin("medic")
        .expect("medic")
        .args([
            "inventory",
            "import",
            "--dsm",
            "http://dsm.example.invalid:4119",
            "--out",
            "inv.yaml",
        ])
        .current_dir(env.path())
        .env("MEDIC_DSM_API_KEY", "k")
        .env("NO_COLOR", "1")
        .timeout(Duration::from_secs(60))
        .output()
        .expect("run medic");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.lines()
            .next()
            .unwrap_or("")
            .contains("use https: the API key must not cross the network in clear text"),
        "{err}"
    );
    let r = env.run([
        "inventory",
        "import",
        "--dsm",
        "https://127.0.0.1:1",
        "--dsm-timeout",
        "0",
    ]);
    assert_first(&r, 2, "invalid value '0' for '--dsm-timeout <SECS>'");
    assert!(snapshot(env.path()).is_empty());
}
