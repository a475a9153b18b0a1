//! Every run writes its own events file, beside its journal and named after the run, and
//! every line of it carries the run id.

use std::path::Path;

use crate::util::{TestEnv, lab_inventory, real_playbook};

/// The names of the `*.events.jsonl` files in `dir`, sorted.
pub fn files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".events.jsonl"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn two_runs_beside_each_other_write_two_events_files_each_line_naming_its_run() {
    let env = TestEnv::new();
    let inv = lab_inventory().display().to_string();
    let pb = real_playbook().display().to_string();
    for journal in ["runs/a.sqlite", "runs/b.sqlite"] {
        std::fs::create_dir_all(env.path().join("runs")).expect("runs/");
        env.run([
            "apply",
            "-i",
            &inv,
            "-p",
            &pb,
            "--simulate",
            "--time-scale",
            "6000",
            "--yes",
            "--progress",
            "never",
            "--journal",
            journal,
        ])
        .assert_code(0);
        // Run ids are made of the start second and the process id: let the next run start
        // in another second, as two runs of one operator do.
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let names = files(&env.path().join("runs"));
    assert_eq!(names.len(), 2, "{names:?}");
    let mut ids = Vec::new();
    for name in &names {
        let text = std::fs::read_to_string(env.path().join("runs").join(name)).expect("events");
        let run_id = name.trim_end_matches(".events.jsonl");
        let mut lines = 0;
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            assert_eq!(v["run_id"], run_id, "{name}: {line}");
            lines += 1;
        }
        assert!(lines > 10, "{name} holds the run's events");
        assert!(text.contains("\"event\":\"run_started\""), "{name}");
        ids.push(run_id.to_owned());
    }
    assert_ne!(ids[0], ids[1]);
}
