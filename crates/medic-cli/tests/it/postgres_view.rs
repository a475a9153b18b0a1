//! A run in PostgreSQL seen from anywhere (issue 13, item 2): `medic status`, `approve`,
//! `resume` and `report` with only `MEDIC_JOURNAL_URL` set (no `--journal`), the report
//! of a database run equal to the report of the same run journaled in a file, neither
//! given (exit 2), and the workers view of `medic status`.

use std::process::Command;

use medic_journal_pg::server::TestServer;

use crate::postgres::{apply_args, medic, out};
use crate::util::TestEnv;

/// `medic` with the database only in `MEDIC_JOURNAL_URL` (password included, as an
/// operator's environment holds it) and no other password source.
fn from_env(env: &TestEnv, server: &TestServer) -> Command {
    let mut c = medic(env, server);
    c.env("MEDIC_JOURNAL_URL", server.url_with_password())
        .env_remove("PGPASSWORD")
        .env("PGPASSFILE", env.path().join("no-passfile"));
    c
}

/// A finished rehearsal of the lab fleet journaled in the database; its run id.
fn finished_run(env: &TestEnv, server: &TestServer) -> String {
    let dir = env.path().join("db-run");
    std::fs::create_dir_all(&dir).expect("dir");
    let mut args = apply_args("unused", &dir.join("ev.jsonl"), true);
    let at = args
        .iter()
        .position(|a| a == "--journal")
        .expect("--journal");
    args.drain(at..at + 2);
    let o = from_env(env, server).args(&args).output().expect("apply");
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let text = out(&o);
    assert!(!text.contains(server.password()), "{text}");
    // The summary says how to make the report from the database.
    assert!(
        text.contains("report:  `medic report --journal 'postgres://"),
        "{text}"
    );
    let url = format!("{}?run=", server.url());
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("journal: "))
        .expect("the run names its journal")
        .trim_matches('\'');
    line.strip_prefix(&url)
        .unwrap_or_else(|| panic!("journal {line} is not in {url}"))
        .to_owned()
}

#[test]
fn status_approve_report_and_resume_need_only_medic_journal_url() {
    let server = TestServer::start().expect("a throwaway PostgreSQL");
    let env = TestEnv::new();
    let run_id = finished_run(&env, &server);
    let secret = server.password();

    // The database's only run, found without naming it.
    let st = from_env(&env, &server)
        .args(["status", "--format", "json"])
        .output()
        .expect("status");
    assert_eq!(st.status.code(), Some(0), "{}", out(&st));
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).expect("status json");
    assert_eq!(v["run_id"], run_id.as_str(), "{v}");
    assert_eq!(v["run_state"], "finished", "{v}");
    // No worker served it: no workers section.
    assert!(v.get("workers").is_none(), "{v}");
    assert!(!out(&st).contains(secret));

    let a = from_env(&env, &server)
        .args(["approve", "gate/agent-upgrade/wave-1", "--by", "carol"])
        .output()
        .expect("approve");
    assert_eq!(a.status.code(), Some(0), "{}", out(&a));
    assert!(!out(&a).contains(secret));
    let st = from_env(&env, &server)
        .args(["status"])
        .output()
        .expect("status");
    assert_eq!(st.status.code(), Some(0), "{}", out(&st));
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(text.starts_with(&format!("run {run_id} (plan ")), "{text}");
    assert!(
        text.contains("approved (1): gate/agent-upgrade/wave-1 by carol"),
        "{text}"
    );
    assert!(!out(&st).contains(secret));

    let r = from_env(&env, &server)
        .args(["report", "--format", "json"])
        .output()
        .expect("report");
    assert_eq!(r.status.code(), Some(0), "{}", out(&r));
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("report json");
    assert_eq!(v["run"]["run_id"], run_id.as_str());
    assert_eq!(
        v["run"]["journal"],
        format!("{}?run={run_id}", server.url()),
        "the report names the run by its URL, without the password"
    );
    assert!(!out(&r).contains(secret));
    // HTML to a file, as a file journal's report.
    let r = from_env(&env, &server)
        .args(["report", "--out", "r.html"])
        .output()
        .expect("report");
    assert_eq!(r.status.code(), Some(0), "{}", out(&r));
    let html = std::fs::read_to_string(env.path().join("r.html")).expect("the html report");
    assert!(html.starts_with("<!DOCTYPE html>"), "{}", &html[..100]);
    assert!(html.contains(&run_id) && !html.contains(secret));

    // A finished run resumed: nothing left to do, from the database alone.
    let o = from_env(&env, &server)
        .args(["resume", "--progress", "never"])
        .output()
        .expect("resume");
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(!out(&o).contains(secret));
}

#[test]
fn without_journal_or_medic_journal_url_each_command_says_both_ways() {
    let env = TestEnv::new();
    for args in [
        vec!["status"],
        vec!["status", "--format", "json"],
        vec!["approve", "gate/agent-upgrade/wave-1"],
        vec!["resume"],
        vec!["report", "--format", "markdown"],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_medic"))
            .current_dir(env.path())
            .env("NO_COLOR", "1")
            .env_remove("MEDIC_JOURNAL_URL")
            .args(&args)
            .output()
            .expect("medic");
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", out(&o));
        let stderr = String::from_utf8_lossy(&o.stderr);
        let first = stderr.lines().next().unwrap_or_default();
        assert_eq!(
            first, "error: --journal: no journal named: this command reads a run's journal",
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains("pass --journal FILE") && stderr.contains("set MEDIC_JOURNAL_URL"),
            "{args:?}: {stderr}"
        );
        assert!(o.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(
        std::fs::read_dir(env.path()).expect("dir").count(),
        0,
        "nothing written"
    );
}

/// What differs between two reports of the same rehearsal: the run's id, its journal's
/// name, and the times (real milliseconds of a replayed run).
fn without_ids_and_times(v: &mut serde_json::Value, id: &str) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                // A time present in one and absent in the other is a difference.
                if (k.ends_with("_ms") || k == "journal") && !x.is_null() {
                    *x = serde_json::Value::from("TIME");
                } else {
                    without_ids_and_times(x, id);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| without_ids_and_times(x, id)),
        serde_json::Value::String(s) if s.contains(id) => *s = s.replace(id, "RUN-ID"),
        _ => {}
    }
}

#[test]
fn the_report_of_a_database_run_is_the_report_of_the_same_run_in_a_file() {
    let server = TestServer::start().expect("a throwaway PostgreSQL");
    let env = TestEnv::new();
    let db_id = finished_run(&env, &server);
    let file_dir = env.path().join("file-run");
    std::fs::create_dir_all(&file_dir).expect("dir");
    let o = medic(&env, &server)
        .args(apply_args(
            "file-run/j.sqlite",
            &file_dir.join("ev.jsonl"),
            true,
        ))
        .output()
        .expect("apply");
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));

    let report = |mut cmd: Command, journal: Option<&str>, format: &str| -> String {
        cmd.args(["report", "--format", format]);
        if let Some(j) = journal {
            cmd.args(["--journal", j]);
        }
        let o = cmd.output().expect("report");
        assert_eq!(o.status.code(), Some(0), "{}", out(&o));
        String::from_utf8(o.stdout).expect("utf-8")
    };
    let file = Some("file-run/j.sqlite");
    let file_json = report(medic(&env, &server), file, "json");
    let db_json = report(from_env(&env, &server), None, "json");
    let mut file_v: serde_json::Value = serde_json::from_str(&file_json).expect("json");
    let mut db_v: serde_json::Value = serde_json::from_str(&db_json).expect("json");
    let file_id = file_v["run"]["run_id"].as_str().expect("run id").to_owned();
    without_ids_and_times(&mut file_v, &file_id);
    without_ids_and_times(&mut db_v, &db_id);
    assert!(file_v["hosts"].as_array().is_some_and(|h| h.len() > 5));
    assert_eq!(
        db_v, file_v,
        "the database's report differs from the file's"
    );

    let file_md = report(medic(&env, &server), file, "markdown");
    let db_md = report(from_env(&env, &server), None, "markdown");
    assert_eq!(
        markdown_without_ids_and_times(&db_md, &db_id),
        markdown_without_ids_and_times(&file_md, &file_id)
    );
}

/// The markdown report with the run id, the journal's name and the times masked: table
/// cells that hold a date and time, or a measured duration (`0.3s`, `+1.2s`; the plan's
/// estimates, whole units, stay).
fn markdown_without_ids_and_times(md: &str, id: &str) -> String {
    let time = |cell: &str| {
        let t = cell.trim();
        let dated = t.len() >= 19 && t.as_bytes()[4] == b'-' && t.contains(':');
        let measured = t
            .trim_start_matches('+')
            .strip_suffix('s')
            .is_some_and(|n| n.contains('.') && n.parse::<f64>().is_ok());
        dated || measured
    };
    md.replace(id, "RUN-ID")
        .lines()
        .map(|l| {
            if l.starts_with("| journal |") {
                return "| journal | JOURNAL |".to_owned();
            }
            l.split('|')
                .map(|c| if time(c) { " TIME " } else { c })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The workers view of `medic status`, from rows written straight into `medic.workers`
/// and `medic.work` with psql: `medic worker` (which writes them) is not on this branch
/// yet, so the rows are what migration 0002 says a worker writes. Heartbeats are set by
/// the database's clock, as the view measures them.
#[test]
fn status_shows_the_workers_of_a_database_run_and_flags_a_silent_one() {
    let server = TestServer::start().expect("a throwaway PostgreSQL");
    let env = TestEnv::new();
    let run_id = finished_run(&env, &server);
    let now = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";
    let sql = format!(
        "INSERT INTO medic.workers(run_id, worker, zone, started_ms, seen_ms, calls, refused, coordinating, stopped_ms) VALUES
           ('{run_id}', 'w-east-1', 'east', {now} - 600000, {now} - 2000, 41, 0, TRUE, NULL),
           ('{run_id}', 'w-east-2', 'east', {now} - 600000, {now} - 95000, 7, 2, FALSE, NULL),
           ('{run_id}', 'w-west-1', 'west', {now} - 600000, {now} - 60000, 12, 0, FALSE, {now} - 60000);
         INSERT INTO medic.work(run_id, zone, step, driver, action, request, state, lease_owner, lease_until_ms, fence, claims, created_ms)
         SELECT '{run_id}', zone, step, 'sim', 'agent-upgrade', '{{}}', state, owner, NULL, fence, claims, {now}
         FROM (VALUES
           ('east', 'agent-upgrade/web-01', 'done', 'w-east-1', 1, 1),
           ('east', 'agent-upgrade/web-02', 'done', 'w-east-1', 4, 2),
           ('east', 'agent-upgrade/app-01', 'claimed', 'w-east-1', 5, 3),
           ('east', 'verify/web-01', 'queued', NULL, 0, 0),
           ('east', 'verify/web-02', 'queued', NULL, 0, 0),
           ('east', 'verify/app-01', 'lost', 'w-east-2', 2, 1),
           ('west', 'agent-upgrade/db-01', 'done', 'w-west-1', 3, 1),
           ('west', 'verify/db-01', 'cancelled', NULL, 0, 0)
         ) AS r(zone, step, state, owner, fence, claims);"
    );
    server.psql(&sql).expect("the workers' rows");

    let st = from_env(&env, &server)
        .args(["status"])
        .output()
        .expect("status");
    assert_eq!(st.status.code(), Some(0), "{}", out(&st));
    let text = String::from_utf8(st.stdout).expect("utf-8");
    let at = text.find("workers: ").unwrap_or_else(|| panic!("{text}"));
    // After what status showed before: the run's own lines come first.
    assert!(text.starts_with(&format!("run {run_id} ")), "{text}");
    insta::with_settings!({filters => vec![(r"\b\d+ s ago", "[N] s ago"), (r"heartbeat for \d+ s,", "heartbeat for [N] s,")]}, {
        insta::assert_snapshot!("workers_view", &text[at..]);
    });

    let st = from_env(&env, &server)
        .args(["status", "--format", "json"])
        .output()
        .expect("status");
    assert_eq!(st.status.code(), Some(0), "{}", out(&st));
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).expect("status json");
    let w = &v["workers"];
    assert_eq!(w["workers"][0]["lease_s"], 30, "{w}");
    let silent: Vec<&str> = w["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .filter(|x| x["silent"] == true)
        .filter_map(|x| x["name"].as_str())
        .collect();
    // Seen 95 s ago and not stopped; the stopped one is not silent, whatever its age.
    assert_eq!(silent, ["w-east-2"], "{w}");
    let seen = w["workers"][1]["seen_s_ago"].as_u64().expect("seen");
    assert!((95..150).contains(&seen), "{w}");
    let east = &w["zones"][0];
    assert_eq!(
        (
            &east["zone"],
            &east["queued"],
            &east["in_flight"],
            &east["done"],
            &east["lost"],
            &east["lease_ran_out"]
        ),
        (
            &"east".into(),
            &2.into(),
            &1.into(),
            &2.into(),
            &1.into(),
            &2.into()
        ),
        "{w}"
    );
    let reclaimed: Vec<&str> = east["lease_ran_out_on"]
        .as_array()
        .expect("calls")
        .iter()
        .filter_map(|c| c["step"].as_str())
        .collect();
    assert_eq!(
        reclaimed,
        ["agent-upgrade/web-02", "agent-upgrade/app-01"],
        "{w}"
    );
    assert_eq!(w["zones"][1]["cancelled"], 1, "{w}");
    assert!(!out(&st).contains(server.password()));
}
