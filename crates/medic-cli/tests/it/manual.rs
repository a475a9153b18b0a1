//! Manual steps from the outside: a run with an old Manager pauses at `manager-upgrade`
//! until `medic approve` (never `--yes`), a rehearsal then plays the operator, a resume
//! honours an approval, `approve` refuses what the run cannot wait for, and a real run
//! (no `--simulate`) reads the Manager's build from the DSM simulator over HTTP.

use std::io::{Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{TestEnv, lab_inventory, real_playbook};

const STEP: &str = "manager-upgrade/dsm01";

/// The lab inventory with its Manager below the playbook's `manager_min_build` (20.0.463).
fn old_manager_lab(env: &TestEnv) -> String {
    let text = std::fs::read_to_string(lab_inventory()).expect("lab");
    let old = text.replace(
        "manager: { name: dsm01, address: 10.0.0.5, version: \"20.0.463\" }",
        "manager: { name: dsm01, address: 10.0.0.5, version: \"20.0.400\" }",
    );
    assert_ne!(old, text, "the lab's Manager line moved: update this test");
    env.write("inventory.yaml", &old);
    "inventory.yaml".to_owned()
}

fn spawn_medic(env: &TestEnv, args: &[&str], envs: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_medic"))
        .current_dir(env.path())
        .args(args)
        .envs(envs.iter().copied())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn medic")
}

/// What `medic status --format json` says the run waits for (empty until the journal exists).
fn waiting_for(env: &TestEnv, journal: &str) -> Vec<String> {
    let st = env.run(["status", "--journal", journal, "--format", "json"]);
    serde_json::from_str::<serde_json::Value>(&st.stdout)
        .ok()
        .and_then(|v| {
            v["waiting_for_approval"].as_array().map(|a| {
                a.iter()
                    .filter_map(|g| g.as_str().map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// Waits until the run waits for `step`, failing the test (with the run's output) if it
/// ends or takes a minute.
fn wait_until_waiting(env: &TestEnv, journal: &str, step: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if waiting_for(env, journal).iter().any(|s| s == step) {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("the run ended ({status}) without waiting for {step}:\n{err}");
        }
        assert!(Instant::now() < deadline, "{step} never waited");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Waits for the run to end (killing it after two minutes, so a run that never moves on
/// fails the test instead of hanging it).
fn finish(mut child: Child) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("poll medic").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("wait for medic");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn effects(env: &TestEnv, journal: &str, host: &str, action: &str) -> u32 {
    let log = env.path().join(format!("{journal}.sim.log"));
    medic_sim::effect_counts(&log)
        .get(&(host.to_owned(), action.to_owned()))
        .copied()
        .unwrap_or(0)
}

fn step_state(env: &TestEnv, journal: &str, step: &str) -> Option<String> {
    medic_journal::JournalReader::open(&env.path().join(journal))
        .and_then(|r| r.steps())
        .ok()?
        .into_iter()
        .find(|r| r.step == step)
        .map(|r| r.state.as_str().to_owned())
}

#[test]
fn a_rehearsal_with_an_old_manager_pauses_until_approve_then_plays_the_operator() {
    let env = TestEnv::new();
    let inv = old_manager_lab(&env);
    let pb = real_playbook().display().to_string();
    let mut child = spawn_medic(
        &env,
        &[
            "apply",
            "-i",
            &inv,
            "-p",
            &pb,
            "--simulate",
            "--time-scale",
            "6000",
            "--yes",
            "--journal",
            "j.sqlite",
            "--progress",
            "never",
        ],
        &[],
    );
    wait_until_waiting(&env, "j.sqlite", STEP, &mut child);
    // --yes is given and the run has had time: still nothing on the Relays, no upgrade.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(child.try_wait().expect("poll").is_none(), "still waiting");
    assert_eq!(effects(&env, "j.sqlite", "dsm01", "manager-upgrade"), 0);
    assert_eq!(effects(&env, "j.sqlite", "relay-tky-1", "agent-upgrade"), 0);
    assert_eq!(
        step_state(&env, "j.sqlite", STEP).as_deref(),
        Some("pending")
    );
    env.run(["approve", "--journal", "j.sqlite", STEP, "--by", "dana"])
        .assert_code(0);
    let (code, stderr) = finish(child);
    assert_eq!(code, Some(0), "{stderr}");
    for line in [
        "manual step manager-upgrade/dsm01: waiting for the operator: upgrade the Deep Security Manager dsm01 to build 20.0.463",
        "manual step manager-upgrade/dsm01: when it is done, approve it: medic approve --journal j.sqlite manager-upgrade/dsm01",
        "manual step manager-upgrade/dsm01: approved by dana",
        "rehearsal: medic plays the operator: the simulated fleet performs manager-upgrade on dsm01",
    ] {
        assert!(stderr.contains(line), "{line}\n{stderr}");
    }
    assert_eq!(effects(&env, "j.sqlite", "dsm01", "manager-upgrade"), 1);
    assert_eq!(effects(&env, "j.sqlite", "relay-tky-1", "agent-upgrade"), 1);
    assert_eq!(
        step_state(&env, "j.sqlite", STEP).as_deref(),
        Some("succeeded")
    );
}

#[test]
fn approve_refuses_what_the_run_cannot_wait_for_and_writes_nothing() {
    let env = TestEnv::new();
    let inv = old_manager_lab(&env);
    let pb = real_playbook().display().to_string();
    // A run killed while it waits leaves a journal with a plan.
    let mut child = spawn_medic(
        &env,
        &[
            "apply",
            "-i",
            &inv,
            "-p",
            &pb,
            "--simulate",
            "--time-scale",
            "6000",
            "--journal",
            "j.sqlite",
            "--progress",
            "never",
        ],
        &[],
    );
    wait_until_waiting(&env, "j.sqlite", STEP, &mut child);
    child.kill().expect("kill");
    let _ = child.wait();
    assert!(env.path().join("j.sqlite").exists());
    let approvals = |env: &TestEnv| {
        medic_journal::JournalReader::open(&env.path().join("j.sqlite"))
            .expect("journal")
            .approvals()
            .expect("approvals")
            .len()
    };
    for id in [
        "gate/agent-upgrade/wave-9",
        "relay-upgrade/relay-tky-1",
        "manager-upgrade/dsm02",
    ] {
        let r = env.run(["approve", "--journal", "j.sqlite", id]);
        r.assert_code(2);
        let first = r.stderr.lines().next().unwrap_or_default();
        assert!(
            first.contains(&format!(
                "`{id}` is neither a gate nor a manual step of this run"
            )),
            "{r}"
        );
        assert!(
            r.stderr.contains(
                "what can be approved: manager-upgrade/dsm01, gate/agent-upgrade/wave-1, gate/agent-upgrade/wave-2"
            ),
            "{r}"
        );
        assert_eq!(approvals(&env), 0, "nothing recorded for {id}");
    }
    let none = env.run(["approve", "--journal", "nowhere.sqlite", STEP]);
    none.assert_code(2);
    assert!(!env.path().join("nowhere.sqlite").exists());
    env.run(["approve", "--journal", "j.sqlite", STEP])
        .assert_code(0);
    assert_eq!(approvals(&env), 1);
}

#[test]
fn a_resume_after_the_approval_honours_it_and_finishes() {
    let env = TestEnv::new();
    let inv = old_manager_lab(&env);
    let pb = real_playbook().display().to_string();
    let mut child = spawn_medic(
        &env,
        &[
            "apply",
            "-i",
            &inv,
            "-p",
            &pb,
            "--simulate",
            "--time-scale",
            "6000",
            "--yes",
            "--journal",
            "j.sqlite",
            "--progress",
            "never",
        ],
        &[],
    );
    wait_until_waiting(&env, "j.sqlite", STEP, &mut child);
    // The run dies while it waits; the operator approves before anything runs again.
    child.kill().expect("kill");
    let _ = child.wait();
    env.run(["approve", "--journal", "j.sqlite", STEP, "--by", "erin"])
        .assert_code(0);
    let r = env.run(["resume", "--journal", "j.sqlite", "--progress", "never"]);
    r.assert_code(0);
    assert!(
        r.stderr
            .contains("manual step manager-upgrade/dsm01: approved by erin"),
        "{r}"
    );
    assert!(!r.stderr.contains("waiting for the operator"), "{r}");
    assert_eq!(effects(&env, "j.sqlite", "dsm01", "manager-upgrade"), 1);
}

/// The Manager-upgrade phase of the Deep Security playbook alone, with a short deadline for
/// the failing case.
fn manager_only_playbook(timeout: &str) -> String {
    format!(
        r#"format: medic.playbook/v1
name: manager-only
params:
  manager_min_build: {{ type: manager_build, default: "20.0.463" }}
defaults: {{ driver: ssh, timeout: 30m, estimate: 1m, retries: {{ max: 0 }} }}
phases:
  - name: manager-upgrade
    select: {{ roles: [manager] }}
    actions:
      - action: manager-upgrade
        driver: manual
        args: {{ to: "{{params.manager_min_build}}" }}
        timeout: {timeout}
        check:
          probe: manager-version
          when: {{ compare: {{ left: facts.manager_version, op: ge, right: params.manager_min_build }} }}
"#
    )
}

const INVENTORY: &str = "manager: { name: dsm01, address: 127.0.0.1, version: \"20.0.400\" }\nhosts:\n  - { name: web-01, address: 127.0.0.2, platform: linux, agent_version: \"20.0.0-877\" }\n";

/// `POST /sim/hosts/dsm01/actions/manager-upgrade` on the simulator, as the operator's
/// upgrade: plain HTTP/1.1 over loopback.
fn bump_manager(addr: std::net::SocketAddr, key: &str, to: &str) {
    let body = format!(r#"{{"args": {{"to": "{to}"}}}}"#);
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the simulator");
    write!(
        s,
        "POST /sim/hosts/dsm01/actions/manager-upgrade HTTP/1.1\r\nHost: {addr}\r\napi-version: v1\r\napi-secret-key: {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read");
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains(r#""result":"ok""#),
        "{answer}"
    );
}

/// A real run (no `--simulate`) of the Manager upgrade against the DSM simulator over HTTP:
/// it pauses, the test upgrades the simulated Manager and approves, the check reads the new
/// build from `X-DSM-Version`. Then the failing case: approved without the upgrade, the
/// step fails at its deadline naming both builds and the command that moves the run on,
/// which works once the Manager is upgraded.
#[tokio::test(flavor = "multi_thread")]
async fn a_real_run_reads_the_managers_build_from_the_dsm_simulator() {
    let inv_text = INVENTORY.to_owned();
    let inv = medic_config::load_inventory("inventory.yaml", &inv_text).expect("inventory");
    let fleet =
        medic_sim::SimFleet::open(&inv, medic_sim::SimConfig::demo(1), None).expect("fleet");
    let key = "manual-test-key-0123";
    let server = medic_sim::server::serve(
        fleet.clone(),
        &inv,
        medic_sim::server::ServerConfig::new(secrecy::SecretString::from(key.to_owned())),
    )
    .await
    .expect("server starts");
    let (url, addr) = (server.base_url(), server.addr());
    let env = TestEnv::new();
    env.write("inventory.yaml", &inv_text);
    env.write("ok.yaml", manager_only_playbook("4h"));
    env.write("short.yaml", manager_only_playbook("3s"));
    let (env, stderr_ok, stderr_short, retry, no_key) = tokio::task::spawn_blocking(move || {
        let apply = |pb: &str, journal: &str| {
            vec![
                "apply".to_owned(),
                "-i".to_owned(),
                "inventory.yaml".to_owned(),
                "-p".to_owned(),
                pb.to_owned(),
                "--dsm".to_owned(),
                url.clone(),
                "--journal".to_owned(),
                journal.to_owned(),
                "--progress".to_owned(),
                "never".to_owned(),
            ]
        };
        // Without the API key nothing can read the Manager's build: refused up front.
        let no_key = env.run(apply("ok.yaml", "none.sqlite"));
        // The failing case first, while the Manager is old.
        let a = apply("short.yaml", "short.sqlite");
        let mut child = spawn_medic(&env, &strs(&a), &[("MEDIC_DSM_API_KEY", key)]);
        wait_until_waiting(&env, "short.sqlite", STEP, &mut child);
        env.run(["approve", "--journal", "short.sqlite", STEP])
            .assert_code(0);
        let (code, stderr_short) = finish(child);
        assert_eq!(code, Some(1), "{stderr_short}");
        // The operator's upgrade, then the run that waits for it.
        let a = apply("ok.yaml", "ok.sqlite");
        let mut child = spawn_medic(&env, &strs(&a), &[("MEDIC_DSM_API_KEY", key)]);
        wait_until_waiting(&env, "ok.sqlite", STEP, &mut child);
        bump_manager(addr, key, "20.0.463");
        env.run(["approve", "--journal", "ok.sqlite", STEP])
            .assert_code(0);
        let (code, stderr_ok) = finish(child);
        assert_eq!(code, Some(0), "{stderr_ok}");
        // The failed run moves on with the command its message gave.
        let retry = Command::new(env!("CARGO_BIN_EXE_medic"))
            .current_dir(env.path())
            .env("MEDIC_DSM_API_KEY", key)
            .args([
                "apply",
                "--retry-failed",
                "--journal",
                "short.sqlite",
                "--progress",
                "never",
            ])
            .output()
            .expect("run medic");
        (env, stderr_ok, stderr_short, retry, no_key)
    })
    .await
    .expect("join");
    no_key.assert_code(2);
    assert!(
        no_key.stderr.contains("MEDIC_DSM_API_KEY"),
        "says where the key goes: {no_key}"
    );
    assert!(!env.path().join("none.sqlite").exists(), "nothing started");

    assert!(
        stderr_short.contains("it saw facts.manager_version = 20.0.400, it needs facts.manager_version >= 20.0.463; once that is done, run `medic apply --retry-failed --journal short.sqlite`"),
        "{stderr_short}"
    );
    assert!(
        stderr_ok.contains("manual step manager-upgrade/dsm01: approved by"),
        "{stderr_ok}"
    );
    assert!(
        !stderr_ok.contains("rehearsal"),
        "a real run plays no operator: {stderr_ok}"
    );
    assert!(
        stderr_ok.contains("manager-upgrade       1"),
        "acted once: {stderr_ok}"
    );
    let retry_err = String::from_utf8_lossy(&retry.stderr);
    assert_eq!(retry.status.code(), Some(0), "{retry_err}");
    assert!(
        retry_err.contains("manager-upgrade       0             1"),
        "the retry saw the upgrade done: {retry_err}"
    );
    assert_eq!(fleet.manager_version().to_string(), "20.0.463");
    // Only the test upgraded the Manager: medic read it, through the vendor API.
    assert_eq!(
        fleet
            .effect_counts()
            .get(&("dsm01".to_owned(), "manager-upgrade".to_owned())),
        Some(&1)
    );
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.route.starts_with("/api/") && r.status == 200),
        "the Manager's build came from its API"
    );
}

/// On a terminal (a pty made by util-linux `script`), the run asks the question itself; a
/// `n` leaves the step waiting, a `y` approves it, even with `--yes`.
#[test]
fn on_a_terminal_the_prompt_asks_what_it_means_and_y_approves() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: util-linux `script` (to make a terminal) is not installed");
        return;
    }
    let env = TestEnv::new();
    let inv = old_manager_lab(&env);
    let pb = real_playbook().display().to_string();
    let medic = format!(
        "{} apply -i {inv} -p {pb} --simulate --time-scale 6000 --yes --journal j.sqlite --progress never",
        env!("CARGO_BIN_EXE_medic")
    );
    let mut child = Command::new("script")
        .current_dir(env.path())
        .args(["-qec", &medic, "/dev/null"])
        .env("NO_COLOR", "1")
        .env("USER", "frank")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn script");
    wait_until_waiting(&env, "j.sqlite", STEP, &mut child);
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(b"n\n").expect("answer n");
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        child.try_wait().expect("poll").is_none(),
        "n approves nothing"
    );
    assert_eq!(effects(&env, "j.sqlite", "dsm01", "manager-upgrade"), 0);
    input.write_all(b"y\n").expect("answer y");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("poll").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("wait");
    drop(input);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for line in [
        "did you upgrade the Manager dsm01 to 20.0.463? type y and Enter when it is done (or run `medic approve --journal j.sqlite manager-upgrade/dsm01` from another shell)",
        "manager-upgrade/dsm01 is not approved: it still waits",
        "manual step manager-upgrade/dsm01: approved by frank",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
    assert_eq!(effects(&env, "j.sqlite", "dsm01", "manager-upgrade"), 1);
}
