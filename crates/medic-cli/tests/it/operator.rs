//! The operator's journeys (issue 10), tried from the outside: a run stopped by its window
//! or its failure budget is moved on by the command medic names, `status` says what waits
//! and why, counts agree, messages are said once in the user's words, and input that makes
//! no sense is refused before anything is written.

use crate::util::{Run, TestEnv, lab_inventory, real_playbook, repo_root};

fn lab_args(journal: &str) -> Vec<String> {
    vec![
        "apply".into(),
        "-i".into(),
        lab_inventory().display().to_string(),
        "-p".into(),
        real_playbook().display().to_string(),
        "--simulate".into(),
        "--journal".into(),
        journal.into(),
        "--yes".into(),
        "--progress".into(),
        "never".into(),
    ]
}

fn status_json(env: &TestEnv, journal: &str) -> serde_json::Value {
    let run = env.run(["status", "--journal", journal, "--format", "json"]);
    run.assert_code(0);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| run.fail(format!("not JSON: {e}")))
}

/// The first line of stderr that starts with `prefix`, without it.
fn line_after<'a>(run: &'a Run, prefix: &str) -> &'a str {
    run.stderr
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(prefix))
        .unwrap_or_else(|| run.fail(format!("no line starting with `{prefix}`")))
}

fn rfc3339(offset_s: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let t = now + offset_s;
    // A UTC timestamp by hand: days from the epoch to a civil date (Howard Hinnant).
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

// --- 2: a run stopped by its window goes on in a new one ------------------------------

/// A window that ends in a few seconds stops the run (exit 3); its advice names
/// `resume --window`, which takes a new window, records it (status shows it; the plan's
/// fingerprint is unchanged) and finishes the run. `apply --retry-failed --window` does too.
#[test]
fn a_run_stopped_by_its_window_goes_on_in_a_new_window() {
    for retry in [false, true] {
        let env = TestEnv::new();
        let short = format!("{}/{}", rfc3339(-60), rfc3339(2));
        let mut args = lab_args("j.sqlite");
        args.extend([
            "--time-scale".into(),
            "600".into(),
            "--window".into(),
            short,
        ]);
        let first = env.run(&args);
        first.assert_code(3);
        let next = line_after(&first, "next: ");
        if !next.contains("medic resume --journal j.sqlite --window START/END") {
            first.fail("the advice does not name `resume --window`");
        }
        let before = status_json(&env, "j.sqlite");
        assert_eq!(before["run_state"], "stopped", "{before}");

        // The same command again does not move it on...
        let again = env.run(["resume", "--journal", "j.sqlite", "--progress", "never"]);
        again.assert_code(3);
        // ...a new window does.
        let wide = format!("{}/{}", rfc3339(-60), rfc3339(7200));
        let on = if retry {
            env.run([
                "apply",
                "--retry-failed",
                "--journal",
                "j.sqlite",
                "--window",
                &wide,
                "--progress",
                "never",
            ])
        } else {
            env.run([
                "resume",
                "--journal",
                "j.sqlite",
                "--window",
                &wide,
                "--progress",
                "never",
            ])
        };
        on.assert_code(0);
        if !on
            .stderr
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("change window: "))
        {
            on.fail("the first line does not say the new window");
        }
        let after = status_json(&env, "j.sqlite");
        assert_eq!(after["run_state"], "finished", "{after}");
        assert_eq!(after["window"], wide.as_str(), "{after}");
        assert_eq!(
            after["fingerprint"], before["fingerprint"],
            "the plan changed"
        );
    }
}

/// A bad new window is refused before the journal is touched.
#[test]
fn a_bad_new_window_is_refused_and_nothing_is_written() {
    let env = TestEnv::new();
    let mut args = lab_args("j.sqlite");
    args.extend([
        "--time-scale".into(),
        "600".into(),
        "--window".into(),
        format!("{}/{}", rfc3339(-60), rfc3339(2)),
    ]);
    env.run(&args).assert_code(3);
    let before = status_json(&env, "j.sqlite");
    let run = env.run(["resume", "--journal", "j.sqlite", "--window", "tomorrow"]);
    run.assert_code(2);
    let first = run.stderr.lines().next().unwrap_or_default();
    if !first.starts_with("error: --window: ") {
        run.fail("the first line does not name --window");
    }
    assert_eq!(status_json(&env, "j.sqlite"), before, "the journal changed");
}

// --- 3 and 5: a budget stop names its way out; status says what waits and why ---------

#[test]
fn a_budget_stop_names_retry_failed_and_status_shows_what_waits_on_which_host() {
    let env = TestEnv::new();
    let mut args = lab_args("j.sqlite");
    args.extend([
        "--time-scale".into(),
        "2000".into(),
        "--sim-fault".into(),
        "fail:web-01:agent-upgrade:2".into(),
    ]);
    let run = env.run(&args);
    run.assert_code(3);
    let stopped = line_after(&run, "stopped: ");
    assert!(
        stopped.starts_with("failure budget exceeded in agent-upgrade wave 0"),
        "{run}"
    );
    let next = line_after(&run, "next: ").to_owned();
    if !next.contains("medic apply --retry-failed --journal j.sqlite") {
        run.fail("the advice does not name --retry-failed");
    }

    // `resume` alone stops on the same budget, and says so rather than looping silently.
    let resume = env.run(["resume", "--journal", "j.sqlite", "--progress", "never"]);
    resume.assert_code(3);
    assert_eq!(line_after(&resume, "next: "), next, "{resume}");

    let text = env.run(["status", "--journal", "j.sqlite"]);
    text.assert_code(0);
    let first = text.stdout.lines().next().unwrap_or_default();
    if !first.contains("stopped: failure budget exceeded in agent-upgrade wave 0") {
        text.fail("the first line does not say why the run stopped");
    }
    for want in [
        "next: the failed steps count against the failure budget",
        "failed: agent-upgrade/web-01 on web-01: injected failure",
        "agent-security-update/web-01 on web-01 (by agent-upgrade/web-01)",
        "agent-upgrade/web-02 on web-02",
        "steps and gates: ",
    ] {
        if !text.stdout.contains(want) {
            text.fail(format!("status does not show `{want}`"));
        }
    }
    let json = status_json(&env, "j.sqlite");
    assert_eq!(json["run_state"], "stopped");
    assert_eq!(json["failed"], serde_json::json!(["agent-upgrade/web-01"]));
    let blocked = json["blocked"].as_array().cloned().unwrap_or_default();
    assert!(
        blocked.iter().any(|b| b["step"] == "verify/web-01"
            && b["host"] == "web-01"
            && b["blocked_by"] == "agent-upgrade/web-01"),
        "{json}"
    );
    let pending = json["pending"].as_array().cloned().unwrap_or_default();
    assert!(
        pending
            .iter()
            .any(|p| p["step"] == "agent-upgrade/db-01" && p["host"] == "db-01"),
        "{json}"
    );
    // Counted as `medic plan` counts: 51 steps and 3 gates.
    let total: u64 = json["steps"]
        .as_object()
        .map(|m| m.values().filter_map(serde_json::Value::as_u64).sum())
        .unwrap_or(0);
    assert_eq!(total, 54, "{json}");

    // The named command moves it on (the fault fails twice: the retry's attempts succeed).
    let retry = env.run([
        "apply",
        "--retry-failed",
        "--journal",
        "j.sqlite",
        "--progress",
        "never",
    ]);
    retry.assert_code(0);
    assert_eq!(status_json(&env, "j.sqlite")["run_state"], "finished");
}

// --- 4: the journal is named when the run starts ---------------------------------------

#[test]
fn the_journal_and_the_commands_to_follow_it_are_printed_when_the_run_starts() {
    let env = TestEnv::new();
    let mut args = lab_args("my j.sqlite");
    args.extend(["--time-scale".into(), "2000".into()]);
    let run = env.run(&args);
    run.assert_code(0);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(
        lines[0].ends_with("51 steps and 3 gates"),
        "first line: {}\n{run}",
        lines[0]
    );
    assert_eq!(lines[1], "journal: 'my j.sqlite'", "{run}");
    assert_eq!(
        lines[2].trim(),
        "progress from another shell: medic status --journal 'my j.sqlite'"
    );
    assert_eq!(
        lines[3].trim(),
        "approve a gate or a manual step: medic approve --journal 'my j.sqlite' ID"
    );
    assert!(lines[4].starts_with("phase "), "{run}");
}

// --- 6: one way of counting -----------------------------------------------------------

#[test]
fn validate_plan_and_markdown_count_steps_the_same_way() {
    let env = TestEnv::new();
    let inputs = [
        "-i".to_owned(),
        lab_inventory().display().to_string(),
        "-p".to_owned(),
        real_playbook().display().to_string(),
    ];
    let v = env.run(
        ["validate"]
            .into_iter()
            .map(str::to_owned)
            .chain(inputs.clone()),
    );
    v.assert_code(0);
    assert!(
        v.stdout
            .trim_end()
            .ends_with("the plan has 51 steps and 3 gates"),
        "{v}"
    );
    let p = env.run(
        ["plan"]
            .into_iter()
            .map(str::to_owned)
            .chain(inputs.clone()),
    );
    p.assert_code(0);
    assert!(
        p.stdout.contains("9 get steps; 51 steps and 3 gates"),
        "{p}"
    );
    let md = env.run(
        ["plan", "--format", "markdown"]
            .into_iter()
            .map(str::to_owned)
            .chain(inputs),
    );
    md.assert_code(0);
    assert!(
        md.stdout.contains("| steps | 51 steps and 3 gates |"),
        "{md}"
    );

    // The runbook's tasks come in dependency order: every predecessor is listed before.
    let tasks = md
        .stdout
        .split("## Tasks")
        .nth(1)
        .and_then(|t| t.split("\n## ").next())
        .unwrap_or_else(|| md.fail("no task table"));
    let mut rows = 0;
    for row in tasks
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| #"))
    {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let Ok(n) = cells[1].parse::<usize>() else {
            continue;
        };
        rows += 1;
        for pred in cells[4].split(", ").filter(|p| *p != "-") {
            let pred: usize = pred.parse().unwrap_or_else(|_| md.fail(row));
            assert!(
                pred < n,
                "task {n} waits for task {pred}, listed after it: {row}"
            );
        }
    }
    assert!(rows > 10, "{tasks}");
    // The offline Relay's update comes from the bundle: it is a part of its own, after
    // the import.
    let import = tasks
        .find("| bundle-import |")
        .unwrap_or_else(|| md.fail("no import"));
    let part2 = tasks
        .find("| relay-security-update, part 2 |")
        .unwrap_or_else(|| md.fail("no second part of relay-security-update"));
    assert!(import < part2, "{tasks}");
}

// --- 7: the inventory format is documented in the project -----------------------------

/// Every key an error lists as allowed, in every place of the inventory, is documented in
/// docs/inventory.md; errors point there, never to a file the project does not have.
#[test]
fn every_inventory_key_is_documented_and_errors_point_to_the_doc() {
    let doc = std::fs::read_to_string(repo_root().join("docs/inventory.md"))
        .expect("docs/inventory.md exists");
    let env = TestEnv::new();
    env.write(
        "inventory.yaml",
        "manager: { name: dsm01, address: 10.0.0.5, version: \"20.0.463\", x1: 1 }\n\
         settings: { x2: 1 }\n\
         relay_groups:\n  - { name: tokyo, x3: 1 }\n\
         hosts:\n  - { name: a, address: 10.0.0.1, platform: linux, agent_version: \"20.0.0-1\", x4: 1 }\n\
         x5: 1\n",
    );
    let run = env.run([
        "validate".as_ref(),
        "-i".as_ref(),
        "inventory.yaml".as_ref(),
        "-p".as_ref(),
        real_playbook().as_os_str(),
    ]);
    run.assert_code(2);
    let mut keys = 0;
    for h in run.headers() {
        let Some(list) = h.message.split("expected one of ").nth(1) else {
            run.fail(format!("not an unknown-key message: {h}"));
        };
        for key in list.split(", ") {
            keys += 1;
            assert!(
                doc.contains(&format!("| {key} |")),
                "{key} is not documented"
            );
        }
    }
    assert!(keys >= 20, "{run}");
    assert!(run.stderr.contains("see docs/inventory.md"), "{run}");

    env.write("broken.yaml", "hosts: [\n");
    let run = env.run([
        "validate".as_ref(),
        "-i".as_ref(),
        "broken.yaml".as_ref(),
        "-p".as_ref(),
        real_playbook().as_os_str(),
    ]);
    run.assert_code(2);
    assert!(run.stderr.contains("docs/inventory.md"), "{run}");
    assert!(!run.stderr.contains("DESIGN.md"), "{run}");
}

// --- 8: the local driver runs ----------------------------------------------------------

/// A real `apply` (no simulation) of a `driver: local` step runs the command on the
/// controller with the host's values as words: a value with shell metacharacters arrives
/// whole, and nothing else ran.
#[test]
fn a_local_command_runs_on_the_controller_with_values_as_words() {
    let env = TestEnv::new();
    env.write(
        "inventory.yaml",
        "manager: { name: dsm01, address: 10.0.0.5, version: \"20.0.463\" }\n\
         hosts:\n  - { name: web-01, address: 10.0.1.21, platform: linux, agent_version: \"20.0.0-1\", vars: { note: \"a; touch pwned $(id)\" } }\n",
    );
    env.write(
        "playbook.yaml",
        "format: medic.playbook/v1\nname: local-note\nphases:\n  - name: note\n    select: { roles: [agent] }\n    actions:\n      - action: command\n        driver: local\n        args:\n          command: 'printf \"%s|%s\" \"$1\" \"$2\" > \"notes-$1.txt\"'\n          arg1: \"{host.name}\"\n          arg2: \"{host.vars.note}\"\n",
    );
    let run = env.run([
        "apply",
        "-i",
        "inventory.yaml",
        "-p",
        "playbook.yaml",
        "--journal",
        "j.sqlite",
        "--progress",
        "never",
    ]);
    run.assert_code(0);
    let note = std::fs::read_to_string(env.path().join("notes-web-01.txt"))
        .unwrap_or_else(|e| run.fail(format!("the command did not run: {e}")));
    assert_eq!(note, "web-01|a; touch pwned $(id)");
    assert!(!env.path().join("pwned").exists(), "a value ran as code");
}

// --- 11: nonsense is refused before anything is written --------------------------------

#[test]
fn a_sim_fault_on_an_action_that_does_not_exist_is_refused_before_the_journal() {
    let env = TestEnv::new();
    for (fault, first) in [
        (
            "fail:web-01:format-c-drive:1",
            "error: --sim-fault: `fail:web-01:format-c-drive:1`: no step of the plan runs `format-c-drive` on web-01",
        ),
        (
            "hang:web-99:agent-upgrade",
            "error: --sim-fault: `hang:web-99:agent-upgrade`: no host of the inventory is named `web-99`",
        ),
        (
            "fail:web-01:agent-upgrade:0",
            "error: --sim-fault: `fail:web-01:agent-upgrade:0`: failing 0 times injects nothing",
        ),
    ] {
        let mut args = lab_args("j.sqlite");
        args.extend(["--sim-fault".into(), fault.into()]);
        let run = env.run(&args);
        run.assert_code(2);
        assert_eq!(run.stderr.lines().next(), Some(first), "{run}");
        assert!(
            !env.path().join("j.sqlite").exists(),
            "a journal was written"
        );
        assert!(
            !env.path().join("j.sqlite.sim.log").exists(),
            "the fleet was written"
        );
    }
}

#[test]
fn approving_what_the_run_does_not_wait_for_is_refused_and_records_nothing() {
    let env = TestEnv::new();
    let mut args = lab_args("j.sqlite");
    args.extend(["--time-scale".into(), "2000".into()]);
    env.run(&args).assert_code(0);
    let run = env.run(["approve", "--journal", "j.sqlite", "gate/nope"]);
    run.assert_code(2);
    let first = run.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error: approve: `gate/nope` is neither a gate nor a manual step"),
        "{run}"
    );
    assert_eq!(
        run.stderr.lines().last(),
        Some("1 problem found; nothing was approved")
    );
    assert_eq!(
        status_json(&env, "j.sqlite")["approvals"],
        serde_json::json!([])
    );
}

/// An inventory that loads but is probably not meant: warnings at their place, the plan
/// still made.
#[test]
fn relays_without_groups_and_groups_without_relays_are_warned_about() {
    let env = TestEnv::new();
    env.write(
        "inventory.yaml",
        "manager: { name: dsm01, address: 10.0.0.5, version: \"20.0.463\" }\n\
         relay_groups:\n  - { name: tokyo }\n  - { name: empty }\n\
         hosts:\n  - { name: relay-1, address: 10.0.1.10, platform: linux, agent_version: \"20.0.0-3445\", relay: true, relay_group: tokyo }\n\
         \x20 - { name: relay-2, address: 10.0.1.11, platform: linux, agent_version: \"20.0.0-3445\", relay: true }\n",
    );
    let run = env.run([
        "validate".as_ref(),
        "-i".as_ref(),
        "inventory.yaml".as_ref(),
        "-p".as_ref(),
        real_playbook().as_os_str(),
    ]);
    run.assert_code(0);
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    assert_eq!(
        warnings,
        [
            "warning: inventory.yaml:7:96: Relay `relay-2` has no `relay_group`: no Agent's relay-group barrier waits for it",
            "warning: inventory.yaml:4:13: relay group `empty` has no Relay (no host with `relay: true` and `relay_group: empty`): its Agents download from no Relay of theirs",
        ],
        "{run}"
    );
}

// --- 20: one message, once, in the user's words ------------------------------------------

#[test]
fn an_error_is_said_once_without_internal_codes() {
    let env = TestEnv::new();
    let run = env.run(["approve", "--journal", "nope.sqlite", "gate/x"]);
    run.assert_code(2);
    assert_eq!(
        run.stderr,
        "error: nope.sqlite: there is no journal at nope.sqlite: no run was started there\n  \
         help: pass the journal of a run started by `medic apply` (its path is printed when \
         the run starts and in its summary)\n\n\
         1 problem found; nothing was approved\n"
    );
    assert!(!env.path().join("nope.sqlite").exists());

    let run = env.run(["status", "--journal", "nope.sqlite"]);
    run.assert_code(2);
    assert!(!run.stderr.contains("medic::"), "{run}");
    assert!(!run.stderr.contains("nothing was planned or run"), "{run}");
}

#[test]
fn files_that_are_not_text_say_what_they_are() {
    let env = TestEnv::new();
    env.write("empty.yaml", "\n  \n");
    env.write("binary.yaml", b"manager:\0\x01\x02");
    env.write("latin1.yaml", b"manager: { name: caf\xe9 }\n");
    for (inv, message) in [
        ("empty.yaml", "error: empty.yaml: the file is empty"),
        (
            "binary.yaml",
            "error: binary.yaml: a binary file, not YAML text",
        ),
        (
            "latin1.yaml",
            "error: latin1.yaml: not UTF-8 text (line 1, byte 20 is not UTF-8)",
        ),
        (
            "missing.yaml",
            "error: missing.yaml: cannot read the file: no such file",
        ),
    ] {
        let run = env.run([
            "validate".as_ref(),
            "-i".as_ref(),
            inv.as_ref(),
            "-p".as_ref(),
            real_playbook().as_os_str(),
        ]);
        run.assert_code(2);
        assert_eq!(run.stderr.lines().next(), Some(message), "{run}");
    }
    // Both files are checked: two problems at once.
    let run = env.run(["validate", "-i", "empty.yaml", "-p", "binary.yaml"]);
    run.assert_code(2);
    assert_eq!(run.headers().len(), 2, "{run}");
}

/// Values from the inputs reach the text and the runbook escaped: no new line, no
/// terminal escape, no markdown or HTML.
#[test]
fn inventory_values_cannot_inject_into_the_plan_or_the_runbook() {
    let env = TestEnv::new();
    env.write(
        "inventory.yaml",
        "manager: { name: dsm01, address: 10.0.0.5, version: \"20.0.463\" }\n\
         hosts:\n  - { name: web-01, address: 10.0.1.21, platform: linux, agent_version: \"20.0.0-1\", vars: { note: \"x\\n## Approved | <script>alert(1)</script> \\e[2J\" } }\n",
    );
    env.write(
        "playbook.yaml",
        "format: medic.playbook/v1\nname: notes\nphases:\n  - name: note\n    select: { roles: [agent] }\n    warn:\n      - when: { compare: { left: host.name, op: eq, value: web-01 } }\n        message: \"note {host.vars.note}\"\n    actions: [{ action: noop, driver: sim }]\n",
    );
    let plan = |format: &str| {
        let run = env.run([
            "plan",
            "-i",
            "inventory.yaml",
            "-p",
            "playbook.yaml",
            "--format",
            format,
        ]);
        run.assert_code(0);
        run
    };
    let text = plan("text");
    assert!(
        text.stdout
            .contains("warning: note x\\u{a}## Approved | <script>alert(1)</script> \\u{1b}[2J"),
        "{text}"
    );
    assert!(!text.stdout.contains('\u{1b}'), "{text}");
    let md = plan("markdown");
    assert!(!md.stdout.contains("<script>"), "{md}");
    assert!(
        !md.stdout.lines().any(|l| l.starts_with("## Approved")),
        "{md}"
    );
    assert!(
        md.stdout
            .contains(r"> **Warning:** note x\\u{a}## Approved \| &lt;script&gt;"),
        "{md}"
    );
}
