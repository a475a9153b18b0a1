//! A saved plan is applied exactly as it was written, or not at all: any edit is refused
//! naming what differs, and a signed plan is checked against the change board's key
//! (real `ssh-keygen` keys; OpenSSH's own `ssh-keygen -Y verify` checks medic's signature).

use std::path::Path;
use std::process::Command;

use serde_json::Value as J;

use crate::util::{Run, TestEnv, lab_inventory, real_playbook};

/// Real values for the playbook's example parameters, so that a real apply would start.
const SETS: [&str; 6] = [
    "--set",
    "fixed_build.linux=12.0.0-5000,20.0.1-690",
    "--set",
    "fixed_build.windows=12.0.0-5000,20.0.1-690",
    "--set",
    "manager_min_build=20.0.463",
];

fn keygen(env: &TestEnv, name: &str) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(env.path().join(name))
        .status()
        .expect("ssh-keygen (openssh-client) runs");
    assert!(st.success(), "ssh-keygen failed");
}

/// `medic plan --format json --out plan.json` of the lab, signed with `sign` if given.
fn plan(env: &TestEnv, out: &str, sign: Option<&str>) -> J {
    plan_with(env, out, sign, &[])
}

fn plan_with(env: &TestEnv, out: &str, sign: Option<&str>, extra: &[&str]) -> J {
    let inv = lab_inventory();
    let pb = real_playbook();
    let mut args: Vec<String> = ["plan", "-i"]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([
            inv.display().to_string(),
            "-p".into(),
            pb.display().to_string(),
        ])
        .chain(SETS.iter().chain(extra).map(|s| (*s).to_owned()))
        .chain(["--format", "json", "--out", out].map(str::to_owned))
        .collect();
    if let Some(k) = sign {
        args.extend(["--sign".to_owned(), k.to_owned()]);
    }
    env.run(&args).assert_code(0);
    read_json(&env.path().join(out))
}

fn read_json(p: &Path) -> J {
    serde_json::from_str(&std::fs::read_to_string(p).expect("the plan")).expect("json")
}

/// A rehearsal of a saved plan on the simulated lab fleet (no host is reached):
/// `medic apply --plan FILE [--verify-key KEY] -i LAB --simulate ... --journal journal.sqlite`.
fn apply(env: &TestEnv, file: &str, key: Option<&str>) -> Run {
    let inv = lab_inventory().display().to_string();
    let mut args = vec!["apply", "--plan", file];
    if let Some(k) = key {
        args.extend(["--verify-key", k]);
    }
    args.extend([
        "-i",
        &inv,
        "--simulate",
        "--time-scale",
        "6000",
        "--journal",
        "journal.sqlite",
        "--yes",
        "--progress",
        "never",
    ]);
    env.run(args)
}

fn step<'a>(j: &'a mut J, id: &str) -> &'a mut J {
    j["steps"]
        .as_array_mut()
        .expect("steps")
        .iter_mut()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id}"))
}

fn host<'a>(j: &'a mut J, name: &str) -> &'a mut J {
    j["hosts"]
        .as_array_mut()
        .expect("hosts")
        .iter_mut()
        .find(|h| h["name"] == name)
        .unwrap_or_else(|| panic!("no host {name}"))
}

/// Refused with exit 2, the first problem naming `first`, and nothing written.
#[track_caller]
fn refused(env: &TestEnv, run: &Run, first: &str) {
    run.assert_code(2);
    let headers = run.headers();
    let Some(h) = headers.first() else {
        run.fail("no problem reported")
    };
    if !h.message.contains(first) {
        run.fail(format_args!("the first problem should say `{first}`"));
    }
    for f in ["journal.sqlite", "journal.sqlite.sim.log"] {
        if env.path().join(f).exists() {
            run.fail(format_args!("{f} was written"));
        }
    }
    if !crate::events::files(env.path()).is_empty() {
        run.fail("an events file was written");
    }
}

#[test]
fn every_edit_of_a_saved_plan_is_refused_naming_what_differs() {
    let env = TestEnv::new();
    let clean = plan(&env, "plan.json", None);
    type Edit = fn(&mut J);
    let cases: [(&str, Edit, &str); 6] = [
        (
            "address",
            |j| host(j, "relay-tky-1")["address"] = "198.51.100.7".into(),
            "host relay-tky-1: address differs",
        ),
        (
            "target",
            |j| step(j, "relay-upgrade/relay-tky-1")["args"]["to"] = "20.0.1.9999".into(),
            "step relay-upgrade/relay-tky-1: args.to differs",
        ),
        (
            "needs",
            |j| step(j, "relay-upgrade/relay-osk-1")["needs"] = J::Array(Vec::new()),
            "step relay-upgrade/relay-osk-1: needs differs",
        ),
        (
            "fingerprint",
            |j| j["fingerprint"] = "0".repeat(64).into(),
            "the plan's fingerprint does not match its content; it was edited after `medic plan`",
        ),
        (
            "budget",
            |j| j["phases"][8]["max_failures_total"] = 50.into(),
            "the plan's phases (waves, budgets, gates) were edited after `medic plan`",
        ),
        (
            "unsealed",
            |j| {
                j.as_object_mut().expect("an object").remove("seal");
            },
            "the plan has no seal",
        ),
    ];
    for (name, edit, first) in cases {
        let mut j = clean.clone();
        edit(&mut j);
        let file = format!("{name}.json");
        env.write(&file, serde_json::to_string_pretty(&j).expect("json"));
        let run = apply(&env, &file, None);
        refused(&env, &run, first);
        assert!(
            run.headers()[0].file == file,
            "the problem names the plan file\n{run}"
        );
    }
    // The untouched plan runs.
    apply(&env, "plan.json", None).assert_code(0);
}

#[test]
fn a_signed_plan_runs_only_with_the_boards_key_and_unchanged() {
    let env = TestEnv::new();
    keygen(&env, "board");
    keygen(&env, "other");
    let signed = plan(&env, "signed.json", Some("board"));
    let unsigned = plan(&env, "unsigned.json", None);
    assert!(signed["seal"]["signature"].is_string());
    assert!(unsigned["seal"].get("signature").is_none());

    // OpenSSH itself accepts the signature: the board can check it without medic.
    let digest = signed["seal"]["digest"].as_str().expect("digest");
    env.write("digest.txt", digest);
    env.write(
        "sig.txt",
        signed["seal"]["signature"].as_str().expect("signature"),
    );
    let pubkey = std::fs::read_to_string(env.path().join("board.pub")).expect("board.pub");
    env.write("allowed_signers", format!("board {pubkey}"));
    let out = Command::new("ssh-keygen")
        .current_dir(env.path())
        .args([
            "-Y",
            "verify",
            "-f",
            "allowed_signers",
            "-I",
            "board",
            "-n",
            "medic-plan",
            "-s",
            "sig.txt",
        ])
        .stdin(std::fs::File::open(env.path().join("digest.txt")).expect("digest"))
        .output()
        .expect("ssh-keygen runs");
    assert!(
        out.status.success(),
        "ssh-keygen -Y verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Refusals first, while nothing has been written.

    // Another key.
    let run = apply(&env, "signed.json", Some("other.pub"));
    refused(&env, &run, "the plan is signed by another key (SHA256:");
    // No signature.
    let run = apply(&env, "unsigned.json", Some("board.pub"));
    refused(
        &env,
        &run,
        "the plan is not signed, and --verify-key board.pub asks for a signature",
    );
    // A signed plan edited: the seal names the edit.
    let mut edited = signed.clone();
    host(&mut edited, "web-01")["address"] = "192.0.2.66".into();
    env.write("edited.json", edited.to_string());
    let run = apply(&env, "edited.json", Some("board.pub"));
    refused(&env, &run, "host web-01: address differs");
    // Another plan (other parameters), correctly sealed, carrying the board's signature of
    // the first one: the seal holds, the signature does not.
    let mut grafted = plan_with(
        &env,
        "other-plan.json",
        None,
        &["--set", "relay_barrier=relay-group"],
    );
    assert_ne!(grafted["seal"]["digest"], signed["seal"]["digest"]);
    grafted["seal"]["signature"] = signed["seal"]["signature"].clone();
    env.write("grafted.json", grafted.to_string());
    let run = apply(&env, "grafted.json", Some("board.pub"));
    refused(
        &env,
        &run,
        "does not verify: the plan was changed after it was signed",
    );
    // A key file with no key in it.
    env.write("empty.pub", "# nobody\n");
    let run = apply(&env, "signed.json", Some("empty.pub"));
    run.assert_code(2);
    assert!(
        run.headers()[0]
            .message
            .contains("empty.pub holds no ssh-ed25519 public key"),
        "{run}"
    );
    // The secret key is a file, and a wrong one is refused before anything is written.
    let run = env.run([
        "plan",
        "-i",
        &lab_inventory().display().to_string(),
        "-p",
        &real_playbook().display().to_string(),
        "--format",
        "json",
        "--sign",
        "board.pub",
        "--out",
        "never.json",
    ]);
    run.assert_code(2);
    assert!(
        run.headers()[0]
            .message
            .contains("board.pub is not an OpenSSH Ed25519 secret key"),
        "{run}"
    );
    assert!(!env.path().join("never.json").exists());

    // The board's key verifies it, and the plan runs.
    let ok = apply(&env, "signed.json", Some("board.pub"));
    ok.assert_code(0);
    let first = ok.stderr.lines().next().unwrap_or("");
    assert!(
        first.starts_with("plan signed.json: signature by SHA256:") && first.ends_with("verified"),
        "{ok}"
    );
    // So does an allowed_signers file that holds it (a new run, its own journal).
    std::fs::remove_file(env.path().join("journal.sqlite")).expect("remove");
    std::fs::remove_file(env.path().join("journal.sqlite.sim.log")).expect("remove");
    apply(&env, "signed.json", Some("allowed_signers")).assert_code(0);
}
