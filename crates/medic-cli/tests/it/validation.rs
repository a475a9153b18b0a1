//! Validation errors, tested as data.
//!
//! Each directory `tests/fixtures/invalid/<case>/` holds:
//! - `inventory.yaml`;
//! - `playbook.yaml` when the case is about the playbook (otherwise the real
//!   `playbooks/ds-activeupdate-cert-2023.yaml` is used);
//! - `args.txt` (optional): more arguments for `medic validate`, one per line;
//! - `expect.txt`: one expected problem header per line, `FILE:LINE:COL: MESSAGE` where FILE
//!   is a base name and MESSAGE a part of the printed message; a line `!TEXT` says that TEXT
//!   must not appear anywhere on stderr; `#` starts a comment.
//!
//! `medic validate` must exit 2 without panicking, print every expected header (file, line
//! and column exactly), and report exactly as many problems as there are expected headers.

use std::path::{Path, PathBuf};

use crate::util::{Header, Run, TestEnv, fixtures, lab_inventory, real_playbook};

/// The files of a case directory that are not inputs.
const NOT_INPUTS: &[&str] = &["expect.txt", "args.txt"];

struct Expect {
    headers: Vec<Header>,
    absent: Vec<String>,
}

fn case_dir(case: &str) -> PathBuf {
    fixtures().join("invalid").join(case)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn expectations(case: &str) -> Expect {
    let text = read(&case_dir(case).join("expect.txt"));
    let mut headers = Vec::new();
    let mut absent = Vec::new();
    for line in text.lines().map(str::trim_end) {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        match line.strip_prefix('!') {
            Some(text) => absent.push(text.to_owned()),
            None => headers.push(Header::parse(line)),
        }
    }
    assert!(
        !headers.is_empty(),
        "case `{case}`: expect.txt names no problem"
    );
    Expect { headers, absent }
}

/// Runs `medic SUBCOMMAND` on the inputs of a case, in a fresh directory.
fn run_case(case: &str, subcommand: &[&str]) -> Run {
    let dir = case_dir(case);
    let env = TestEnv::new();
    env.copy_from(&dir, NOT_INPUTS);
    let playbook = if dir.join("playbook.yaml").is_file() {
        PathBuf::from("playbook.yaml")
    } else {
        real_playbook()
    };
    let mut args: Vec<String> = subcommand.iter().map(|s| (*s).to_owned()).collect();
    args.extend([
        "--inventory".to_owned(),
        "inventory.yaml".to_owned(),
        "--playbook".to_owned(),
    ]);
    args.push(playbook.display().to_string());
    if dir.join("args.txt").is_file() {
        args.extend(
            read(&dir.join("args.txt"))
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned),
        );
    }
    env.run(&args)
}

/// Checks one case of `tests/fixtures/invalid/` (see the module documentation).
fn check(case: &str) -> Run {
    let expect = expectations(case);
    let run = run_case(case, &["validate"]);
    let mut failures = Vec::new();
    if run.code != Some(2) {
        failures.push(format!(
            "expected exit code 2 (bad input), got {:?}",
            run.code
        ));
    }
    if run.stderr.contains("panicked") {
        failures.push("medic panicked".to_owned());
    }
    if !run.stdout.is_empty() {
        failures.push("expected nothing on stdout".to_owned());
    }
    let printed = run.headers();
    for e in &expect.headers {
        if !printed.iter().any(|h| h.matches(e)) {
            failures.push(format!("missing problem: {e}"));
        }
    }
    for h in &printed {
        if !expect.headers.iter().any(|e| h.matches(e)) {
            failures.push(format!("unexpected problem: {h}"));
        }
    }
    let n = expect.headers.len();
    if printed.len() != n {
        failures.push(format!(
            "expected {n} problem(s), {} were printed",
            printed.len()
        ));
    }
    let summary = format!(
        "{n} problem{} found; nothing was planned or run",
        if n == 1 { "" } else { "s" }
    );
    if !run.stderr.lines().any(|l| l == summary) {
        failures.push(format!("missing summary line `{summary}`"));
    }
    for a in &expect.absent {
        if run.stderr.contains(a.as_str()) {
            failures.push(format!("stderr must not contain `{a}`"));
        }
    }
    if !failures.is_empty() {
        run.fail(format_args!("case `{case}`:\n  {}", failures.join("\n  ")));
    }
    run
}

macro_rules! cases {
    ($($(#[$attr:meta])* $name:ident,)*) => {
        /// Every case, in the order written here.
        const CASES: &[&str] = &[$(stringify!($name)),*];
        $(
            #[test]
            $(#[$attr])*
            fn $name() {
                check(stringify!($name));
            }
        )*
    };
}

cases! {
    // --- inventory: YAML and shape --------------------------------------------------
    yaml_syntax,
    unknown_host_key,
    unknown_top_key,
    yaml_duplicate_key,
    manager_not_a_map,
    become_unknown,
    // --- inventory: names and addresses ---------------------------------------------
    duplicate_host,
    bad_host_name,
    address_shell_metachars,
    address_not_ip_nor_dns,
    duplicate_address,
    host_bad_key_no_false_missing,
    wrong_types_in_words,
    // --- inventory: relay groups ----------------------------------------------------
    unknown_relay_group,
    bundle_source_not_relay,
    bundle_source_offline_relay,
    bundle_source_unknown_host,
    bundle_source_missing,
    bundle_source_on_online_group,
    relay_without_agent,
    // --- inventory: builds ----------------------------------------------------------
    agent_build_three_part,
    agent_build_unparseable,
    manager_build_two_part,
    manager_build_agent_form,
    manager_build_unquoted,
    // --- --set ----------------------------------------------------------------------
    set_unknown_param,
    set_per_platform_without_platform,
    set_ill_typed,
    set_build_lines_bad,
    set_empty_value,
    // --- plan: what the playbook refuses ----------------------------------------------
    offline_relay_above_source,
    // --- playbook -------------------------------------------------------------------
    playbook_cycle,
    playbook_cycle_misnamed,
    planned_in_unknown_phase,
    compare_type_mismatch,
    unknown_join,
    guard_facts_without_probe,
    rollout_waves_empty,
    shell_command_template,
    unknown_action,
    template_value_missing,
    max_parallel_zero,
    // --- several problems at once ---------------------------------------------------
    many_problems,
}

/// Every directory under `fixtures/invalid/` is a case above, and every case has its files.
#[test]
fn every_fixture_is_a_case() {
    let mut dirs: Vec<String> = std::fs::read_dir(fixtures().join("invalid"))
        .expect("read fixtures/invalid")
        .map(|e| e.expect("read a fixture entry"))
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut cases: Vec<String> = CASES.iter().map(|c| (*c).to_owned()).collect();
    cases.sort();
    assert_eq!(dirs, cases, "fixture directories and test cases differ");
    for case in CASES {
        assert!(
            case_dir(case).join("inventory.yaml").is_file(),
            "case `{case}` has no inventory.yaml"
        );
        let _ = expectations(case);
    }
}

/// `medic plan` refuses the same inputs with the same report as `medic validate`.
#[test]
fn plan_reports_what_validate_reports() {
    let mut failures = Vec::new();
    for case in CASES {
        let v = run_case(case, &["validate"]);
        let p = run_case(case, &["plan", "--format", "json"]);
        if p.code != v.code || p.stderr != v.stderr || !p.stdout.is_empty() {
            failures.push(format!("case `{case}`:\nvalidate:\n{v}\nplan:\n{p}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Cases whose snippet is known to point elsewhere than the header (see the ignored test).
const SNIPPET_KNOWN_BAD: &[&str] = &["yaml_syntax"];

/// For each problem with a position, miette's snippet (`╭─[FILE:LINE:COL]`) shows the same
/// position as the `error:` header: the byte offset agrees with the line and column.
fn snippet_mismatches(run: &Run) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<Header> = None;
    let mut seen_snippet = true;
    for line in run.stderr.lines() {
        if let Some(h) = line.strip_prefix("error: ") {
            if let Some(prev) = current.take()
                && !seen_snippet
            {
                out.push(format!("no snippet for `{prev}`"));
            }
            let h = Header::parse(h);
            seen_snippet = h.pos.is_none();
            current = Some(h);
        } else if let (Some(h), Some(start)) = (&current, line.find("╭─["))
            && !seen_snippet
        {
            seen_snippet = true;
            let inner = line[start + "╭─[".len()..].trim_end().trim_end_matches(']');
            let shown = Header::parse(&format!("{inner}: "));
            if shown.basename() != h.basename() || shown.pos != h.pos {
                out.push(format!("header `{h}` but the snippet shows [{inner}]"));
            }
        }
    }
    if let Some(h) = current
        && !seen_snippet
    {
        out.push(format!("no snippet for `{h}`"));
    }
    out
}

#[test]
fn snippets_point_where_headers_do() {
    let mut failures = Vec::new();
    for case in CASES.iter().filter(|c| !SNIPPET_KNOWN_BAD.contains(c)) {
        let run = run_case(case, &["validate"]);
        let bad = snippet_mismatches(&run);
        if !bad.is_empty() {
            failures.push(format!("case `{case}`: {}\n{run}", bad.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn yaml_syntax_snippet_points_at_the_error() {
    let run = run_case("yaml_syntax", &["validate"]);
    let bad = snippet_mismatches(&run);
    if !bad.is_empty() {
        run.fail(bad.join("; "));
    }
}

// --- the valid inputs ---------------------------------------------------------------

#[test]
fn lab_inventory_validates() {
    let env = TestEnv::new();
    let run = env.run([
        "validate".as_ref(),
        "--inventory".as_ref(),
        lab_inventory().as_os_str(),
        "--playbook".as_ref(),
        real_playbook().as_os_str(),
    ]);
    run.assert_code(0);
    if !run.stdout.starts_with("ok: ") || !run.stderr.is_empty() {
        run.fail("expected `ok: ...` on stdout and nothing on stderr");
    }
}

#[test]
fn lab_plan_is_json_v1() {
    let env = TestEnv::new();
    let run = env.run([
        "plan".as_ref(),
        "--format".as_ref(),
        "json".as_ref(),
        "--inventory".as_ref(),
        lab_inventory().as_os_str(),
        "--playbook".as_ref(),
        real_playbook().as_os_str(),
    ]);
    run.assert_code(0);
    let plan: serde_json::Value = match serde_json::from_str(&run.stdout) {
        Ok(v) => v,
        Err(e) => run.fail(format_args!("stdout is not JSON: {e}")),
    };
    if plan["format"] != "medic.plan/v1" {
        run.fail(format_args!(
            "expected format medic.plan/v1, got {}",
            plan["format"]
        ));
    }
    if plan["steps"].as_array().is_none_or(|s| s.is_empty()) {
        run.fail("expected a non-empty `steps` list");
    }
}

#[test]
fn help_exits_zero() {
    let env = TestEnv::new();
    for args in [
        &["--help"][..],
        &["plan", "--help"],
        &["validate", "--help"],
    ] {
        let run = env.run(args);
        run.assert_code(0);
        if !run.stdout.contains("Usage: medic") {
            run.fail("expected a usage text on stdout");
        }
    }
}
