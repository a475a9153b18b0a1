//! Air-gapped zones, as an operator does it: the main run on the simulator holds the zone's
//! steps, `medic plan --slice` cuts them from its journal, the slice runs on its own
//! simulator in another directory (the site), `medic journal merge` brings its journal
//! back and `medic resume` finishes the main run. Every side effect exactly once, counted
//! from the two simulators' effect logs; and the refusals, with nothing written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::util::{TestEnv, lab_with, real_playbook};

/// The lab inventory with its offline relay group in an air-gapped zone `dmz`.
fn zoned_lab() -> String {
    lab_with(&[
        (
            "  - { name: dmz, offline: true, bundle_source: relay-tky-1 }",
            "  - { name: dmz, offline: true, bundle_source: relay-tky-1, zone: dmz }",
        ),
        (
            "relay_groups:\n",
            "zones:\n  - { name: dmz, air_gapped: true }\nrelay_groups:\n",
        ),
    ])
}

const ZONE_HOSTS: [&str; 2] = ["relay-dmz-1", "dmz-web-01"];

/// The relay-group barrier: with the advisory's global one, every Agent waits for the
/// air-gapped Relay too, and the zone's Agents for gates that wait for them (refused
/// below).
const SETS: [&str; 2] = ["--set", "relay_barrier=relay-group"];

struct Site {
    main: TestEnv,
    site: TestEnv,
}

impl Site {
    fn new() -> Self {
        let main = TestEnv::new();
        main.write("inventory.yaml", zoned_lab());
        main.write(
            "playbook.yaml",
            std::fs::read(real_playbook()).expect("read the playbook"),
        );
        let site = TestEnv::new();
        site.write("inventory.yaml", zoned_lab());
        Site { main, site }
    }

    fn apply_main(&self, journal: &str, extra: &[&str]) -> crate::util::Run {
        let mut args = vec![
            "apply",
            "-i",
            "inventory.yaml",
            "-p",
            "playbook.yaml",
            "--simulate",
            "--yes",
            "--time-scale",
            "100000",
            "--journal",
            journal,
        ];
        args.extend(SETS);
        args.extend(extra);
        self.main.run(args)
    }

    fn cut(&self, journal: &str, out: &str) -> crate::util::Run {
        let mut args = vec!["plan", "-i", "inventory.yaml", "-p", "playbook.yaml"];
        args.extend(SETS);
        args.extend(["--slice", "dmz", "--journal", journal, "--out", out]);
        self.main.run(args)
    }

    /// Runs the slice at the site, on its own simulator and journal.
    fn run_slice(&self, slice: &str) -> PathBuf {
        let plan = self.main.path().join(slice);
        self.site.write(
            "dmz.slice.json",
            std::fs::read(&plan).expect("read the slice"),
        );
        self.site
            .run([
                "apply",
                "--plan",
                "dmz.slice.json",
                "-i",
                "inventory.yaml",
                "--simulate",
                "--yes",
                "--time-scale",
                "100000",
                "--journal",
                "site.db",
            ])
            .assert_code(0);
        self.site.path().join("site.db")
    }

    fn status(&self, journal: &str) -> String {
        let r = self
            .main
            .run(["status", "--journal", journal, "--format", "json"]);
        r.assert_code(0);
        r.stdout
    }
}

fn effects(journal: &Path) -> BTreeMap<(String, String), u32> {
    medic_sim::effect_counts(Path::new(&format!("{}.sim.log", journal.display())))
}

#[test]
fn an_air_gapped_zone_runs_from_its_slice_and_merges_back() {
    let s = Site::new();
    // The main run does everything but the zone, and stops there (resumable, exit 3).
    let r = s.apply_main("main.db", &[]);
    r.assert_code(3);
    assert!(
        r.stdout.contains("wait for their slice") || r.stderr.contains("wait for their slice"),
        "{}",
        r.stdout
    );
    let status = s.main.run(["status", "--journal", "main.db"]);
    status.assert_code(0);
    assert!(
        status.stdout.contains(
            "zone dmz waiting for slice merge (9 steps and gates): cut its slice with `medic plan --slice dmz --journal main.db --out dmz.slice.json`"
        ),
        "{}",
        status.stdout
    );
    let main_log = s.main.path().join("main.db");
    assert!(
        effects(&main_log)
            .keys()
            .all(|(h, _)| !ZONE_HOSTS.contains(&h.as_str())),
        "the main run acted in the air-gapped zone: {:?}",
        effects(&main_log)
    );

    // The slice: the zone's steps, the main run's evidence.
    s.cut("main.db", "dmz.slice.json").assert_code(0);
    let slice: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.main.path().join("dmz.slice.json")).expect("slice written"),
    )
    .expect("the slice is plan JSON");
    let hosts: Vec<&str> = slice["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .filter_map(|h| h["name"].as_str())
        .collect();
    assert_eq!(hosts, ZONE_HOSTS);
    let evidence = slice["slice"]["evidence"].as_array().expect("evidence");
    assert!(
        evidence
            .iter()
            .any(|e| e["id"] == "bundle-export/relay-tky-1"
                && e["state"] == "succeeded"
                && e["observed"]
                    .as_str()
                    .is_some_and(|o| o.contains("bundle_exported"))),
        "{evidence:?}"
    );

    // At the site: its own journal and simulator.
    let site_db = s.run_slice("dmz.slice.json");
    let site_effects = effects(&site_db);
    assert!(
        site_effects
            .keys()
            .all(|(h, _)| ZONE_HOSTS.contains(&h.as_str())),
        "{site_effects:?}"
    );
    assert!(
        site_effects.contains_key(&("relay-dmz-1".to_owned(), "bundle-import".to_owned())),
        "{site_effects:?}"
    );

    // Back home: merged once; a second merge writes nothing.
    let site_arg = site_db.display().to_string();
    let m = s
        .main
        .run(["journal", "merge", &site_arg, "--journal", "main.db"]);
    m.assert_code(0);
    assert!(
        m.stdout
            .starts_with("zone dmz: merged 9 step(s) into main.db"),
        "{}",
        m.stdout
    );
    let before = s.status("main.db");
    let again = s
        .main
        .run(["journal", "merge", &site_arg, "--journal", "main.db"]);
    again.assert_code(0);
    assert!(
        again.stdout.starts_with("zone dmz: nothing new to merge"),
        "{}",
        again.stdout
    );
    assert_eq!(
        s.status("main.db"),
        before,
        "a second merge wrote something"
    );

    // The main run goes on with the zone's results and finishes.
    s.main
        .run(["resume", "--journal", "main.db"])
        .assert_code(0);
    let done = s.main.run(["status", "--journal", "main.db"]);
    assert!(
        done.stdout
            .lines()
            .next()
            .is_some_and(|l| l.ends_with(": finished"))
            && !done.stdout.contains("waiting for slice merge"),
        "{}",
        done.stdout
    );

    // Every side effect exactly once, each in the world of the controller that ran it.
    let main_effects = effects(&main_log);
    for (k, n) in main_effects.iter().chain(&site_effects) {
        assert_eq!(*n, 1, "{k:?} happened {n} times");
    }
    assert!(
        main_effects.keys().all(|k| !site_effects.contains_key(k)),
        "{main_effects:?} / {site_effects:?}"
    );
    assert_eq!(site_effects.len(), 5, "{site_effects:?}");
}

/// A merge of a slice of another plan, of a tampered slice journal, or of a slice whose
/// run has not ended is refused (exit 2, naming both sides), and the main journal is left
/// as it was.
#[test]
fn merges_refuse_another_plan_and_tampered_journals() {
    let s = Site::new();
    s.apply_main("main.db", &[]).assert_code(3);
    s.cut("main.db", "dmz.slice.json").assert_code(0);
    let site_db = s.run_slice("dmz.slice.json");
    // Another main run of another plan (another bundle name).
    s.apply_main(
        "other.db",
        &["--set", "bundle_name=dsupdate_1111111111.zip"],
    )
    .assert_code(3);
    let other_before = s.status("other.db");
    let main_before = s.status("main.db");

    let merge = |slice: &Path, journal: &str| {
        s.main.run([
            "journal",
            "merge",
            &slice.display().to_string(),
            "--journal",
            journal,
        ])
    };

    // Another plan's slice.
    let r = merge(&site_db, "other.db");
    r.assert_code(2);
    let first = r.stderr.lines().next().unwrap_or_default().to_owned();
    assert!(
        first.contains("is a slice of another plan: it was cut from plan sha256:")
            && first.contains("and other.db runs plan sha256:"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("nothing was merged"), "{}", r.stderr);
    assert_eq!(s.status("other.db"), other_before);

    let tampered = |name: &str, sql: &str| {
        let p = s.site.path().join(name);
        std::fs::copy(&site_db, &p).expect("copy the slice journal");
        let c = rusqlite::Connection::open(&p).expect("open the copy");
        c.execute_batch(sql).expect("tamper");
        drop(c);
        p
    };
    // Each a copy of the slice journal changed one way: (name, SQL, what the refusal says).
    let cases = [
        // A row for a step that is not the zone's.
        (
            "extra.db",
            "INSERT INTO steps VALUES ('agent-upgrade/web-01', 'succeeded', 1, 0, NULL);",
            "step `agent-upgrade/web-01` is not a step of the slice",
        ),
        // A step that succeeded before what it needs.
        (
            "order.db",
            "UPDATE steps SET state = 'failed' WHERE step = 'relay-upgrade/relay-dmz-1';",
            "but `relay-upgrade/relay-dmz-1`, which it needs, is failed",
        ),
        // Its plan changed (another bundle to import).
        (
            "plan.db",
            "UPDATE meta SET value = CAST(replace(CAST(value AS TEXT), 'dsupdate_0000000000', 'dsupdate_0000000001') AS BLOB) WHERE key = 'plan_bin';",
            "is not the slice of zone `dmz` that main.db's plan gives",
        ),
        // A slice run that has not ended (killed at the site).
        (
            "running.db",
            "UPDATE meta SET value = '{\"state\":\"running\",\"reason\":null,\"next\":null}' WHERE key = 'run_outcome';",
            "has not ended",
        ),
    ];
    for (name, sql, says) in cases {
        let r = merge(&tampered(name, sql), "main.db");
        r.assert_code(2);
        assert!(r.stderr.contains(says), "{name}: {}", r.stderr);
    }
    assert_eq!(s.status("main.db"), main_before, "a refused merge wrote");
}

/// Cutting is refused where the zone cannot run alone or is not air-gapped, and before
/// the main run has done what the zone waits for.
#[test]
fn slices_are_cut_only_where_the_zone_can_run_alone() {
    let s = Site::new();
    // The advisory's global relay barrier: the zone's Agents wait for gates that wait for
    // Agents that wait for the zone's Relay.
    s.main
        .run([
            "apply",
            "-i",
            "inventory.yaml",
            "-p",
            "playbook.yaml",
            "--simulate",
            "--yes",
            "--time-scale",
            "100000",
            "--journal",
            "global.db",
        ])
        .assert_code(3);
    let r = s.main.run([
        "plan",
        "-i",
        "inventory.yaml",
        "-p",
        "playbook.yaml",
        "--slice",
        "dmz",
        "--journal",
        "global.db",
        "--out",
        "x.json",
    ]);
    r.assert_code(2);
    assert!(
        r.stderr.starts_with("error: --slice: step `")
            && r.stderr.contains("the zone cannot run alone"),
        "{}",
        r.stderr
    );
    assert!(!s.main.path().join("x.json").exists());

    s.apply_main("main.db", &[]).assert_code(3);
    let r = s.main.run([
        "plan",
        "-i",
        "inventory.yaml",
        "-p",
        "playbook.yaml",
        "--set",
        "relay_barrier=relay-group",
        "--slice",
        "default",
        "--journal",
        "main.db",
        "--out",
        "x.json",
    ]);
    r.assert_code(2);
    assert!(
        r.stderr
            .starts_with("error: --slice: zone `default` is not air-gapped in this plan"),
        "{}",
        r.stderr
    );
    // The inputs must still give the main run's plan.
    let r = s.main.run([
        "plan",
        "-i",
        "inventory.yaml",
        "-p",
        "playbook.yaml",
        "--slice",
        "dmz",
        "--journal",
        "main.db",
        "--out",
        "x.json",
    ]);
    r.assert_code(2);
    assert!(
        r.stderr
            .contains("the inventory and playbook no longer give the plan main.db runs"),
        "{}",
        r.stderr
    );
    assert!(!s.main.path().join("x.json").exists());
}
