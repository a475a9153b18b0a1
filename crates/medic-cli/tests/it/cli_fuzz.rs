//! A fuzz-style property test of the whole command line (issue 10, acceptance): argument
//! vectors for every subcommand, built from a grammar of the real options (`src/args.rs`,
//! `medic CMD --help`) mixing valid and invalid values, each run through the real binary in
//! a fresh directory with stdin closed and a hard time limit. For every run:
//!
//! - no panic (exit 101 or `panicked at`), no hang (killed after [`LIMIT`]);
//! - the exit code is one of the documented 0, 1, 2, 3, 4;
//! - never 0 when the generator put in a value the help or the docs call invalid (it knows
//!   which: each value carries its verdict, and the rules of [`Case::invalid_reasons`] add
//!   those of the combination: a duplicate flag, an output that is an input, ...);
//! - a refusal (exit 2) wrote nothing: no journal, no `.medic`, no file added, changed or
//!   removed;
//! - a file given as an input is never written.
//!
//! `MEDIC_CLI_FUZZ_CASES=500 cargo test -p medic-cli --test it cli_fuzz -- --nocapture` runs
//! more cases (default [`DEFAULT_CASES`]) and prints the exit codes per subcommand.
//!
//! Nothing generated can reach a non-loopback address: every inventory has 127.0.x.y hosts
//! on port 9 (nothing listens there; checked at the start), every `--dsm` URL is on
//! 127.0.0.1 or `localhost` at a port bound and released at the start (or is malformed), no
//! other host name appears, and a real (non-simulated) `apply` is always stopped by its
//! pre-flight, which cannot connect (`--skip-preflight` is only generated with a value that
//! refuses the command first).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::Read as _;
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const DEFAULT_CASES: u32 = 64;
/// A run that takes longer is a hang: the slowest valid case (a simulated run with a hang
/// fault) takes about 5 s on a loaded machine.
const LIMIT: Duration = Duration::from_secs(20);
/// The documented exit codes (README, "Exit codes").
const EXIT_CODES: [i32; 5] = [0, 1, 2, 3, 4];
/// Where the generated inventories' hosts listen for SSH: nothing does.
const DEAD_SSH_PORT: u16 = 9;
/// One value in this many is an invalid one (where a flag has both).
const BAD_ONE_IN: u32 = 7;

/// What the help or the docs say of a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum V {
    /// Valid.
    Ok,
    /// Invalid: the command must not exit 0.
    Bad,
    /// Not said either way (the property only checks panics, hangs and exit codes).
    Any,
}

/// One value of a flag; `tag` names the fixture file it is (`inv.yaml` for `./inv.yaml`
/// too), or `new:NAME` for a file that does not exist yet, or "" for anything else.
#[derive(Clone, Debug)]
struct Val {
    os: OsString,
    v: V,
    tag: String,
}

fn val(s: &str, v: V) -> Val {
    Val {
        os: s.into(),
        v,
        tag: String::new(),
    }
}

fn file(path: impl Into<OsString>, v: V, tag: &str) -> Val {
    Val {
        os: path.into(),
        v,
        tag: tag.to_owned(),
    }
}

fn bytes(b: &[u8], v: V, tag: &str) -> Val {
    file(OsString::from_vec(b.to_vec()), v, tag)
}

/// One flag (`--x`), one flag with its value (`--x V` or `--x=V`), or a positional value
/// (`flag` empty).
#[derive(Clone, Debug)]
struct Arg {
    flag: &'static str,
    val: Option<Val>,
    eq: bool,
}

impl Arg {
    /// The long name the rules look at (`-i` is `--inventory`).
    fn name(&self) -> &'static str {
        match self.flag {
            "-i" => "--inventory",
            "-p" => "--playbook",
            f => f,
        }
    }

    fn tokens(&self) -> Vec<OsString> {
        match (&self.val, self.flag) {
            (None, f) => vec![f.into()],
            (Some(v), "") => vec![v.os.clone()],
            (Some(v), f) if self.eq && f.starts_with("--") => {
                let mut t = OsString::from(f);
                t.push("=");
                t.push(&v.os);
                vec![t]
            }
            (Some(v), f) => vec![f.into(), v.os.clone()],
        }
    }

    fn tag(&self) -> &str {
        self.val.as_ref().map(|v| v.tag.as_str()).unwrap_or("")
    }
}

#[derive(Clone)]
struct Case {
    sub: &'static [&'static str],
    args: Vec<Arg>,
    /// Whether `MEDIC_DSM_API_KEY` is set.
    api_key: bool,
}

/// Flags that may be given more than once.
const REPEATABLE: &[&str] = &["--set", "--sim-fault", "--ssh-key", "--relay-group", ""];
/// The connection settings: only a real run or a pre-flight reads them.
const CONN: &[&str] = &[
    "--known-hosts",
    "--accept-new-host-keys",
    "--ssh-key",
    "--ssh-passphrase-file",
    "--dsm",
    "--dsm-ca",
    "--dsm-api-key-file",
    "--linux-agent-dir",
    "--linux-package-dir",
    "--allow-unverified-commands",
    "--poll-interval",
    "--become",
    "--sudo-password-file",
    "--agent-password-file",
];
/// Flags whose file medic reads and must never write.
const INPUTS: &[&str] = &[
    "--ansible",
    "--inventory",
    "--playbook",
    "--plan",
    "--verify-key",
    "--sign",
    "--ssh-key",
    "--ssh-passphrase-file",
    "--dsm-ca",
    "--dsm-api-key-file",
    "--sudo-password-file",
    "--agent-password-file",
];
/// Flags whose file medic writes.
const OUTPUTS: &[&str] = &["--out", "--journal", "--events", "--dir"];
/// The values of `--set` that replace the playbook's example values, which a real run
/// needs.
const REAL_SETS: [&str; 3] = [
    "fixed_build.linux=12.0.0-9999,20.0.1-690",
    "fixed_build.windows=12.0.0-9999,20.0.1-690",
    "manager_min_build=20.0.463",
];

/// What a person would type, so that a shrunk case reads as a command.
impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = if self.api_key {
            "MEDIC_DSM_API_KEY=... "
        } else {
            ""
        };
        write!(
            f,
            "{key}medic {} (invalid: {:?})",
            shown(&self.tokens()),
            self.invalid_reasons()
        )
    }
}

impl Case {
    fn tokens(&self) -> Vec<OsString> {
        let mut t: Vec<OsString> = self.sub.iter().map(OsString::from).collect();
        for a in &self.args {
            t.extend(a.tokens());
        }
        t
    }

    fn has(&self, name: &str) -> bool {
        self.args.iter().any(|a| a.name() == name)
    }

    fn first(&self, name: &str) -> Option<&Arg> {
        self.args.iter().find(|a| a.name() == name)
    }

    fn is(&self, sub: &str) -> bool {
        self.sub.first() == Some(&sub)
    }

    /// A new run that builds drivers from the connection settings (not a rehearsal, not
    /// the retry of a rehearsal's journal).
    fn reads_conn(&self) -> bool {
        self.is("preflight") || (self.is("apply") && !self.has("--simulate") && !self.retries())
    }

    /// `apply --retry-failed --journal EXISTING`: a resume of that journal.
    fn retries(&self) -> bool {
        self.is("apply")
            && self.has("--retry-failed")
            && self.first("--journal").is_some_and(|j| {
                let t = j.tag();
                !t.is_empty() && !t.starts_with("new:") && t != "missing"
            })
    }

    /// Why the generated command is invalid, by the help and the docs; empty if it is not.
    fn invalid_reasons(&self) -> Vec<String> {
        let mut why = Vec::new();
        for a in &self.args {
            let Some(v) = &a.val else { continue };
            // A rehearsal builds no driver and reads none of the connection settings.
            if v.v == V::Bad && (!CONN.contains(&a.name()) || self.reads_conn()) {
                let flag = if a.flag.is_empty() {
                    "argument"
                } else {
                    a.flag
                };
                why.push(format!("{flag} {:?}", v.os));
            }
        }
        let mut seen = BTreeSet::new();
        for a in &self.args {
            if !REPEATABLE.contains(&a.name()) && !seen.insert(a.name()) {
                why.push(format!("{} given twice", a.name()));
            }
        }
        if self
            .args
            .iter()
            .any(|a| a.flag.is_empty() && !self.is("approve"))
        {
            why.push("an unexpected positional argument".to_owned());
        }
        if self.is("approve")
            && self
                .args
                .iter()
                .filter(|a| a.flag.is_empty())
                .count()
                .ne(&1)
        {
            why.push("approve takes one gate".to_owned());
        }
        let required: &[&str] = match self.sub {
            ["validate"] | ["plan"] | ["preflight"] => &["--inventory", "--playbook"],
            ["resume"] | ["status"] | ["approve"] => &["--journal"],
            ["inventory", "import"] => &["--dsm"],
            _ => &[],
        };
        for r in required {
            if !self.has(r) {
                why.push(format!("{r} is missing"));
            }
        }
        // An output that is one of the command's inputs, or another of its outputs.
        let inputs: Vec<&str> = self
            .args
            .iter()
            .filter(|a| {
                INPUTS.contains(&a.name())
                    || (self.is("resume") && a.name() == "--journal")
                    || self.retries() && a.name() == "--journal"
            })
            .map(Arg::tag)
            .filter(|t| !t.is_empty())
            .collect();
        let mut outs = BTreeSet::new();
        for a in self.args.iter().filter(|a| OUTPUTS.contains(&a.name())) {
            let t = a.tag();
            // `resume`, `status` and `approve` name an existing journal, read, not made.
            let existing_journal = a.name() == "--journal" && !self.is("apply");
            if t.is_empty() || existing_journal || (self.retries() && a.name() == "--journal") {
                continue;
            }
            if inputs.contains(&t) {
                why.push(format!("{} {t} is an input", a.name()));
            }
            if !outs.insert(t) {
                why.push(format!("{} {t} is also another output", a.name()));
            }
        }
        if self.is("plan")
            && self.has("--sign")
            && self
                .first("--format")
                .and_then(|a| a.val.as_ref())
                .is_none_or(|v| v.os != "json")
        {
            why.push("--sign without --format json".to_owned());
        }
        if self.is("apply") {
            self.apply_reasons(&mut why);
        }
        why
    }

    fn apply_reasons(&self, why: &mut Vec<String>) {
        let sim = self.has("--simulate");
        for f in ["--time-scale", "--sim-seed", "--sim-fault"] {
            if self.has(f) && !sim {
                why.push(format!("{f} without --simulate"));
            }
        }
        if self.has("--verify-key") && !self.has("--plan") {
            why.push("--verify-key without --plan".to_owned());
        }
        if self.has("--retry-failed") && !self.has("--journal") {
            why.push("--retry-failed without --journal".to_owned());
        }
        if self.has("--plan") && (self.has("--playbook") || self.has("--set")) {
            why.push("--plan with --playbook or --set".to_owned());
        }
        if self.retries() {
            for f in ["--plan", "--inventory", "--playbook", "--set", "--simulate"] {
                if self.has(f) {
                    why.push(format!("{f} in a retry, which runs the journal's plan"));
                }
            }
            return;
        }
        if let Some(j) = self.first("--journal")
            && !j.tag().starts_with("new:")
            && !j.tag().is_empty()
            && j.tag() != "missing"
        {
            why.push(format!(
                "--journal {}: a new run needs a new journal",
                j.tag()
            ));
        }
        let from_playbook = self.has("--inventory") && self.has("--playbook");
        if !(self.has("--plan") || from_playbook) {
            why.push("nothing to apply".to_owned());
        }
        if sim && !self.has("--inventory") {
            why.push("--simulate without --inventory".to_owned());
        }
        if !sim {
            let sets: Vec<&OsString> = self
                .args
                .iter()
                .filter(|a| a.name() == "--set")
                .filter_map(|a| a.val.as_ref().map(|v| &v.os))
                .collect();
            if self.has("--plan") || REAL_SETS.iter().any(|s| !sets.iter().any(|x| *x == s)) {
                why.push("a real run on the playbook's example values".to_owned());
            }
        }
        if let Some(k) = self.first("--verify-key")
            && k.tag() == "sign-key.pub"
            && self
                .first("--plan")
                .is_none_or(|p| p.tag() != "plan-signed.json")
        {
            why.push("--verify-key for a plan that key did not sign".to_owned());
        }
    }
}

/// The values of the grammar that depend on the moment and the machine.
struct Grammar {
    /// A loopback port where nothing listens (bound, then released).
    port: u16,
    now: jiff::Timestamp,
}

impl Grammar {
    fn new() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind a loopback port");
        let now = jiff::Timestamp::now();
        Grammar {
            port,
            now: jiff::Timestamp::from_second(now.as_second()).expect("a whole second"),
        }
    }

    fn at(&self, hours: i64, offset_h: i8) -> String {
        let t = self
            .now
            .checked_add(jiff::SignedDuration::from_hours(hours))
            .expect("a time near now");
        t.display_with_offset(jiff::tz::Offset::constant(offset_h))
            .to_string()
    }

    /// `--window` values; `future` adds valid windows that open later (a run would wait
    /// for them, so only `plan` gets them).
    fn windows(&self, future: bool) -> Vec<Val> {
        let w = |a: i64, b: i64, o: i8| format!("{}/{}", self.at(a, o), self.at(b, o));
        let mut out = vec![
            val(&w(-1, 6, 0), V::Ok),
            val(&w(-1, 6, 9), V::Ok),
            val(&format!("{}/{}", self.at(-1, -5), self.at(6, 9)), V::Ok),
            val(&w(-72, -48, 9), V::Bad),
            val(&w(-2, -1, 0), V::Bad),
            val(&w(6, -1, 0), V::Bad),
            val(&w(2, 2, 0), V::Bad),
            val("", V::Bad),
            val("tomorrow", V::Bad),
            val("/", V::Bad),
            val(&self.at(-1, 0), V::Bad),
            val("2026-12-01T22:00/2026-12-02T04:00", V::Bad),
            val("2026-13-01T22:00+09:00/2026-13-02T04:00+09:00", V::Bad),
            val(
                &format!("{}/{}/{}", self.at(-1, 0), self.at(2, 0), self.at(3, 0)),
                V::Bad,
            ),
            val(&"9".repeat(20_000), V::Bad),
        ];
        if future {
            out.push(val(&w(24, 30, 9), V::Ok));
            out.push(val(&w(1, 2, 0), V::Ok));
        }
        out
    }

    fn dsm_urls(&self, import: bool) -> Vec<Val> {
        let p = self.port;
        vec![
            val(&format!("https://127.0.0.1:{p}/api"), V::Ok),
            val(&format!("https://127.0.0.1:{p}"), V::Ok),
            val(&format!("https://localhost:{p}"), V::Ok),
            // A plain-HTTP Manager on loopback is allowed for an import (issue 10 #19).
            val(
                &format!("http://127.0.0.1:{p}"),
                if import { V::Ok } else { V::Any },
            ),
            val("", V::Bad),
            val("not a url", V::Bad),
            val(&format!("ftp://127.0.0.1:{p}/"), V::Bad),
            val("https://", V::Bad),
            val("https://127.0.0.1:99999/api", V::Bad),
            val("https://[::1", V::Bad),
        ]
    }
}

fn huge() -> String {
    "a".repeat(100_000)
}

/// Files a command reads, given where a `want` file (inventory, playbook, plan) is expected.
fn input_files(good: &[(&str, &str)], not_it: &[&str]) -> Vec<Val> {
    let mut out: Vec<Val> = good.iter().map(|(p, t)| file(*p, V::Ok, t)).collect();
    out.extend(not_it.iter().map(|t| file(*t, V::Bad, t)));
    out.extend([
        file("empty.yaml", V::Bad, "empty.yaml"),
        file("binary.bin", V::Bad, "binary.bin"),
        file("latin1.yaml", V::Bad, "latin1.yaml"),
        file("adir", V::Bad, "adir"),
        file("missing.yaml", V::Bad, "missing"),
        bytes(b"missing-\xff.yaml", V::Bad, "missing"),
        file("", V::Bad, ""),
        file("x".repeat(300), V::Bad, "missing"),
    ]);
    out
}

fn inventories() -> Vec<Val> {
    let mut v = input_files(
        &[
            ("inv.yaml", "inv.yaml"),
            ("./inv.yaml", "inv.yaml"),
            ("adir/../inv.yaml", "inv.yaml"),
        ],
        &["pb.yaml", "bad-inv.yaml", "plan.json"],
    );
    v.push(bytes(b"inv-\xff.yaml", V::Ok, "inv-nonutf8"));
    v
}

fn playbooks() -> Vec<Val> {
    input_files(
        &[("pb.yaml", "pb.yaml"), ("./pb.yaml", "pb.yaml")],
        &["inv.yaml"],
    )
}

fn plans() -> Vec<Val> {
    input_files(
        &[
            ("plan.json", "plan.json"),
            ("plan-signed.json", "plan-signed.json"),
        ],
        &["plan-tampered.json", "inv.yaml"],
    )
}

/// Existing journals and what is not one.
fn journals() -> Vec<Val> {
    vec![
        file("journal-done.sqlite", V::Ok, "journal-done.sqlite"),
        file("journal-failed.sqlite", V::Ok, "journal-failed.sqlite"),
        file("truncated.sqlite", V::Bad, "truncated.sqlite"),
        file("not-journal.sqlite", V::Bad, "not-journal.sqlite"),
        file("inv.yaml", V::Bad, "inv.yaml"),
        file("empty.yaml", V::Bad, "empty.yaml"),
        file("binary.bin", V::Bad, "binary.bin"),
        file("adir", V::Bad, "adir"),
        file("missing.sqlite", V::Bad, "missing"),
        file("", V::Bad, ""),
    ]
}

/// Files a command writes. Whether an existing fixture is a bad output depends on whether
/// it is also an input ([`Case::invalid_reasons`]).
fn outputs() -> Vec<Val> {
    vec![
        file("out.txt", V::Ok, "new:out.txt"),
        bytes(b"new-\xfe.out", V::Ok, "new:nonutf8"),
        file("sub/deeper/out.txt", V::Any, "new:nested"),
        file("empty.yaml", V::Any, "empty.yaml"),
        file("inv.yaml", V::Any, "inv.yaml"),
        file("./pb.yaml", V::Any, "pb.yaml"),
        file("plan.json", V::Any, "plan.json"),
        file("sign-key", V::Any, "sign-key"),
        file("secret.txt", V::Any, "secret.txt"),
        file("adir", V::Bad, "adir"),
        file("", V::Bad, ""),
    ]
}

/// `apply --journal`: new paths, and existing files (bad for a new run; the rules decide).
fn new_journals() -> Vec<Val> {
    vec![
        file("run.sqlite", V::Ok, "new:run.sqlite"),
        file("out.txt", V::Ok, "new:out.txt"),
        file("runs/a/b/journal.sqlite", V::Ok, "new:nested-journal"),
        bytes(b"j-\xfd.sqlite", V::Ok, "new:nonutf8-journal"),
        file("journal-done.sqlite", V::Any, "journal-done.sqlite"),
        file("journal-failed.sqlite", V::Any, "journal-failed.sqlite"),
        file("not-journal.sqlite", V::Bad, "not-journal.sqlite"),
        file("inv.yaml", V::Bad, "inv.yaml"),
        file("adir", V::Bad, "adir"),
        file("", V::Bad, ""),
    ]
}

fn events() -> Vec<Val> {
    vec![
        file("ev.jsonl", V::Ok, "new:ev.jsonl"),
        file("out.txt", V::Ok, "new:out.txt"),
        file("evs/x/e.jsonl", V::Any, "new:nested-events"),
        file("inv.yaml", V::Any, "inv.yaml"),
        file("journal-done.sqlite", V::Any, "journal-done.sqlite"),
        file("secret.txt", V::Any, "secret.txt"),
        file("plan.json", V::Any, "plan.json"),
        file("adir", V::Bad, "adir"),
        file("", V::Bad, ""),
    ]
}

/// Files holding a secret.
fn secrets() -> Vec<Val> {
    vec![
        file("secret.txt", V::Ok, "secret.txt"),
        file("missing.txt", V::Bad, "missing"),
        file("adir", V::Bad, "adir"),
        file("", V::Bad, ""),
        file("binary.bin", V::Any, "binary.bin"),
        file("empty.yaml", V::Any, "empty.yaml"),
    ]
}

fn time_scales(ok: &[&str]) -> Vec<Val> {
    let mut v: Vec<Val> = ok.iter().map(|s| val(s, V::Ok)).collect();
    for bad in [
        "0", "-5", "NaN", "nan", "inf", "-inf", "1e300", "1e-9", "", "fast", "1e6x", "0x10", "-0",
    ] {
        v.push(val(bad, V::Bad));
    }
    v
}

/// Seconds with a bound of 3600 (`--poll-interval`, `--timeout`, `--dsm-timeout`).
fn seconds(ok: &[&str]) -> Vec<Val> {
    let mut v: Vec<Val> = ok.iter().map(|s| val(s, V::Ok)).collect();
    for bad in ["0", "-1", "NaN", "inf", "3601", "1e400", "", "ten", "-0"] {
        v.push(val(bad, V::Bad));
    }
    v
}

fn counts(ok: &[&str], bad: &[&str]) -> Vec<Val> {
    let mut v: Vec<Val> = ok.iter().map(|s| val(s, V::Ok)).collect();
    v.extend(bad.iter().map(|s| val(s, V::Bad)));
    v
}

fn enum_vals(ok: &[&str], bad: &[&str]) -> Vec<Val> {
    counts(ok, bad)
}

fn sets() -> Vec<Val> {
    let mut v: Vec<Val> = REAL_SETS.iter().map(|s| val(s, V::Ok)).collect();
    for ok in [
        "manager_min_build=20.0.100",
        "relay_barrier=global",
        "relay_barrier=relay-group",
        "bundle_name=dsupdate_1234567890.zip",
        "target_build.linux=20.0.1-690",
    ] {
        v.push(val(ok, V::Ok));
    }
    for bad in [
        "",
        "=",
        "novalue",
        "=1",
        "nope=1",
        "fixed_build.linux=",
        "fixed_build.linux=garbage",
        "fixed_build.linux=12.0.0-9999,12.0.0-1",
        "fixed_build.solaris=12.0.0-1",
        "manager_min_build=abc",
        "manager_min_build=",
        "relay_barrier=sometimes",
        "bundle_name=",
        "target_build.linux=1.0.0-1",
    ] {
        v.push(val(bad, V::Bad));
    }
    // Surrounding white space is forgiven.
    v.push(val("fixed_build.linux=12.0.0-9999,20.0.1-690\n", V::Any));
    v.push(val(&format!("{}=1", huge()), V::Bad));
    v.push(bytes(b"\xff=1", V::Bad, ""));
    v
}

fn sim_faults() -> Vec<Val> {
    let mut v = vec![
        val("unreachable:app-01", V::Ok),
        val("fail:app-01:agent-upgrade:1", V::Ok),
        val("fail:relay-1:agent-upgrade:2", V::Ok),
        val("hang:web-01:windows-prereq", V::Ok),
    ];
    for bad in [
        "",
        "boom",
        "unreachable:",
        "unreachable:nohost",
        "unreachable:app-01:extra",
        "hang:app-01",
        "hang:nohost:agent-upgrade",
        "fail:app-01:agent-upgrade:x",
        "fail:app-01:agent-upgrade:-1",
        "fail:app-01:format-c-drive:1",
    ] {
        v.push(val(bad, V::Bad));
    }
    v
}

/// A strategy of one argument from a list of flag spellings and values.
/// Mostly a value that is not invalid: invalid values are one in [`BAD_ONE_IN`] (a few
/// arguments per command, so about half the commands are valid).
fn opt(flags: &'static [&'static str], vals: Vec<Val>) -> BoxedStrategy<Arg> {
    let (bad, good): (Vec<Val>, Vec<Val>) = vals.into_iter().partition(|v| v.v == V::Bad);
    let value = match (good.is_empty(), bad.is_empty()) {
        (false, false) => proptest::strategy::Union::new_weighted(vec![
            (BAD_ONE_IN - 1, prop::sample::select(good).boxed()),
            (1, prop::sample::select(bad).boxed()),
        ])
        .boxed(),
        (true, _) => prop::sample::select(bad).boxed(),
        (false, true) => prop::sample::select(good).boxed(),
    };
    (
        prop::sample::select(flags),
        value,
        prop::bool::weighted(0.2),
    )
        .prop_map(|(flag, v, eq)| Arg {
            flag,
            val: Some(v),
            eq,
        })
        .boxed()
}

fn flag(f: &'static str) -> BoxedStrategy<Arg> {
    Just(Arg {
        flag: f,
        val: None,
        eq: false,
    })
    .boxed()
}

/// Arguments nobody documented: an unknown flag, a stray word.
fn junk() -> BoxedStrategy<Arg> {
    opt(
        &[""],
        vec![
            val("--nope", V::Bad),
            val("stray", V::Bad),
            val("-", V::Bad),
            bytes(b"\xff\xfe", V::Bad, ""),
        ],
    )
}

/// Required arguments (each dropped now and then) and up to `extra` optional ones, shuffled.
fn command(
    sub: &'static [&'static str],
    required: Vec<BoxedStrategy<Arg>>,
    optional: Vec<BoxedStrategy<Arg>>,
    extra: usize,
) -> BoxedStrategy<Case> {
    let req: Vec<BoxedStrategy<Option<Arg>>> = required
        .into_iter()
        .map(|s| proptest::option::weighted(0.93, s).boxed())
        .collect();
    let mut optional = optional;
    optional.push(junk());
    (
        req,
        prop::collection::vec(
            proptest::strategy::Union::new_weighted({
                let n = optional.len();
                optional
                    .into_iter()
                    .enumerate()
                    // The last one is junk: rarer than the real options.
                    .map(|(i, s)| (if i + 1 == n { 1 } else { 4 }, s))
                    .collect()
            }),
            0..=extra,
        ),
        prop::bool::weighted(0.5),
    )
        .prop_flat_map(move |(req, opt, api_key)| {
            let args: Vec<Arg> = req.into_iter().flatten().chain(opt).collect();
            Just(args)
                .prop_shuffle()
                .prop_map(move |args| Case { sub, args, api_key })
        })
        .boxed()
}

fn conn_opts(g: &Grammar) -> Vec<BoxedStrategy<Arg>> {
    vec![
        opt(
            &["--known-hosts"],
            vec![
                file("known_hosts", V::Ok, "known_hosts"),
                file("missing", V::Any, "missing"),
                file("adir", V::Any, "adir"),
            ],
        ),
        flag("--accept-new-host-keys"),
        opt(
            &["--ssh-key"],
            vec![
                file("sign-key", V::Any, "sign-key"),
                file("secret.txt", V::Any, "secret.txt"),
                file("missing", V::Any, "missing"),
            ],
        ),
        opt(&["--ssh-passphrase-file"], secrets()),
        opt(&["--dsm"], g.dsm_urls(false)),
        opt(
            &["--dsm-ca"],
            vec![
                file("inv.yaml", V::Bad, "inv.yaml"),
                file("missing.pem", V::Bad, "missing"),
                file("adir", V::Bad, "adir"),
                file("empty.yaml", V::Any, "empty.yaml"),
            ],
        ),
        opt(&["--dsm-api-key-file"], secrets()),
        opt(
            &["--linux-agent-dir", "--linux-package-dir"],
            vec![
                val("/opt/ds_agent", V::Ok),
                val("/var/tmp/medic packages", V::Any),
                val("", V::Any),
                val("$(touch pwned)'\"", V::Any),
            ],
        ),
        flag("--allow-unverified-commands"),
        opt(&["--poll-interval"], seconds(&["0.5", "10", "3600"])),
        opt(
            &["--become"],
            enum_vals(&["sudo", "none"], &["", "su", "SUDO"]),
        ),
        opt(
            &["--sudo-password-file", "--agent-password-file"],
            secrets(),
        ),
    ]
}

fn progress() -> BoxedStrategy<Arg> {
    opt(
        &["--progress"],
        enum_vals(&["auto", "always", "never"], &["", "sometimes", "yes"]),
    )
}

fn inventory() -> BoxedStrategy<Arg> {
    opt(&["-i", "--inventory"], inventories())
}

fn playbook() -> BoxedStrategy<Arg> {
    opt(&["-p", "--playbook"], playbooks())
}

fn set() -> BoxedStrategy<Arg> {
    opt(&["--set"], sets())
}

fn validate() -> BoxedStrategy<Case> {
    command(&["validate"], vec![inventory(), playbook()], vec![set()], 4)
}

fn plan(g: &Grammar) -> BoxedStrategy<Case> {
    command(
        &["plan"],
        vec![inventory(), playbook()],
        vec![
            set(),
            opt(
                &["--format"],
                enum_vals(
                    &["text", "json", "dot", "mermaid", "markdown"],
                    &["", "yaml", "JSON"],
                ),
            ),
            opt(&["--out"], outputs()),
            opt(&["--window"], g.windows(true)),
            opt(
                &["--sign"],
                vec![
                    file("sign-key", V::Ok, "sign-key"),
                    file("sign-key.pub", V::Bad, "sign-key.pub"),
                    file("secret.txt", V::Bad, "secret.txt"),
                    file("missing-key", V::Bad, "missing"),
                    file("adir", V::Bad, "adir"),
                    file("empty.yaml", V::Bad, "empty.yaml"),
                ],
            ),
        ],
        5,
    )
}

fn preflight(g: &Grammar) -> BoxedStrategy<Case> {
    let mut optional = vec![
        set(),
        opt(
            &["--format"],
            enum_vals(&["text", "json", "markdown"], &["", "dot", "html"]),
        ),
        opt(&["--out"], outputs()),
        opt(
            &["--parallel"],
            counts(&["1", "4", "16", "100000"], &["0", "-1", "", "x", "1.5"]),
        ),
        opt(&["--timeout"], seconds(&["0.5", "2", "5"])),
        progress(),
    ];
    optional.extend(conn_opts(g));
    command(&["preflight"], vec![inventory(), playbook()], optional, 6)
}

/// The options every kind of `apply` may get besides its own.
fn apply_optional(g: &Grammar) -> Vec<BoxedStrategy<Arg>> {
    let mut v = vec![
        set(),
        opt(&["--journal"], new_journals()),
        opt(&["--events"], events()),
        opt(&["--window"], g.windows(false)),
        opt(
            &["--window-policy"],
            enum_vals(&["stop", "continue"], &["", "pause", "STOP"]),
        ),
        flag("--strict"),
        opt(
            &["--max-per-group"],
            counts(
                &["1", "3", "4294967295"],
                &["0", "-1", "", "x", "1.5", "4294967296"],
            ),
        ),
        progress(),
        opt(
            &["--sim-seed"],
            counts(
                &["0", "7", "18446744073709551615"],
                &["-1", "", "x", "1.5", "18446744073709551616"],
            ),
        ),
        opt(&["--sim-fault"], sim_faults()),
        opt(
            &["--verify-key"],
            vec![
                file("sign-key.pub", V::Any, "sign-key.pub"),
                file("inv.yaml", V::Bad, "inv.yaml"),
                file("missing.pub", V::Bad, "missing"),
                file("empty.yaml", V::Bad, "empty.yaml"),
            ],
        ),
        flag("--yes"),
        flag("--simulate"),
        opt(&["--time-scale"], time_scales(&["100000"])),
        opt(&["--plan"], plans()),
    ];
    v.extend(conn_opts(g));
    v
}

/// A rehearsal: always `--yes` (a gate would otherwise wait for `medic approve`, as
/// documented) and a large time scale (the default, 1, would take the plan's real hours).
fn apply_simulated(g: &Grammar) -> BoxedStrategy<Case> {
    command(
        &["apply"],
        vec![
            inventory(),
            playbook(),
            flag("--simulate"),
            opt(&["--time-scale"], time_scales(&["20000", "100000", "1e6"])),
        ],
        apply_optional(g),
        5,
    )
    .boxed()
}

/// A reviewed plan, rehearsed.
fn apply_plan(g: &Grammar) -> BoxedStrategy<Case> {
    command(
        &["apply"],
        vec![
            opt(&["--plan"], plans()),
            inventory(),
            flag("--simulate"),
            opt(&["--time-scale"], time_scales(&["100000"])),
        ],
        apply_optional(g),
        4,
    )
    .boxed()
}

/// A real run on the loopback inventory: stopped by its pre-flight (nothing listens).
fn apply_real(g: &Grammar) -> BoxedStrategy<Case> {
    let real_sets: Vec<BoxedStrategy<Arg>> = REAL_SETS
        .iter()
        .map(|s| {
            Just(Arg {
                flag: "--set",
                val: Some(val(s, V::Ok)),
                eq: false,
            })
            .boxed()
        })
        .collect();
    let mut required = vec![inventory(), playbook(), flag("--yes")];
    required.extend(real_sets);
    let mut optional = apply_optional(g);
    optional.push(flag("--skip-preflight"));
    command(&["apply"], required, optional, 5)
}

/// `apply --retry-failed --journal J`: the resume of a rehearsal's journal.
fn apply_retry(g: &Grammar) -> BoxedStrategy<Case> {
    command(
        &["apply"],
        vec![flag("--retry-failed"), opt(&["--journal"], journals())],
        apply_optional(g),
        3,
    )
}

fn resume() -> BoxedStrategy<Case> {
    command(
        &["resume"],
        vec![opt(&["--journal"], journals())],
        vec![opt(&["--events"], events()), flag("--yes"), progress()],
        3,
    )
}

fn status() -> BoxedStrategy<Case> {
    command(
        &["status"],
        vec![opt(&["--journal"], journals())],
        vec![opt(
            &["--format"],
            enum_vals(&["text", "json"], &["", "yaml", "markdown"]),
        )],
        2,
    )
}

fn approve() -> BoxedStrategy<Case> {
    command(
        &["approve"],
        vec![
            opt(&["--journal"], journals()),
            opt(
                &[""],
                vec![
                    val("gate/agent-upgrade/wave-1", V::Ok),
                    // A gate that asks for no approval, and names of nothing.
                    val("gate/relay-upgrade/wave-1", V::Bad),
                    val("gate/agent-upgrade/wave-9", V::Bad),
                    val("nope", V::Bad),
                    val("", V::Bad),
                    val(&huge(), V::Bad),
                    bytes(b"gate/\xff", V::Bad, ""),
                ],
            ),
        ],
        vec![opt(
            &["--by"],
            vec![
                val("alice", V::Ok),
                val("", V::Any),
                val(&huge(), V::Any),
                val("a\nb\x1b[31m", V::Any),
            ],
        )],
        2,
    )
}

fn import(g: &Grammar) -> BoxedStrategy<Case> {
    command(
        &["inventory", "import"],
        vec![opt(&["--dsm"], g.dsm_urls(true))],
        vec![
            opt(
                &["--dsm-ca"],
                vec![
                    file("inv.yaml", V::Bad, "inv.yaml"),
                    file("missing.pem", V::Bad, "missing"),
                    file("adir", V::Bad, "adir"),
                ],
            ),
            opt(&["--dsm-api-key-file"], secrets()),
            opt(
                &["--relay-group"],
                vec![
                    val("1=tokyo", V::Ok),
                    val("2=dmz,offline,bundle_source=relay-1", V::Ok),
                    val("", V::Bad),
                    val("x", V::Bad),
                    val("=name", V::Bad),
                    val("1=", V::Bad),
                    val("1=a,unknown", V::Bad),
                ],
            ),
            opt(
                &["--manager-name"],
                vec![val("dsm01", V::Ok), val("", V::Any), val(&huge(), V::Any)],
            ),
            // medic's own inventory is not an Ansible one (`manager` would be a group
            // with a key `name`); an empty directory holds none.
            opt(
                &["--ansible"],
                vec![
                    file("inv.yaml", V::Bad, "inv.yaml"),
                    file("missing.ini", V::Bad, "missing"),
                    file("adir", V::Bad, "adir"),
                    file("binary.bin", V::Bad, "binary.bin"),
                ],
            ),
            opt(&["--out"], outputs()),
            opt(&["--dsm-timeout"], seconds(&["0.5", "1", "2.5"])),
        ],
        4,
    )
}

fn demo() -> BoxedStrategy<Case> {
    command(
        &["demo"],
        // The default time scale (600) takes about a minute.
        vec![opt(&["--time-scale"], time_scales(&["1e6", "500000"]))],
        vec![
            opt(
                &["--dir"],
                vec![
                    file("demo-out", V::Ok, "new:demo"),
                    file("adir", V::Any, "adir"),
                    file("inv.yaml", V::Bad, "inv.yaml"),
                    file("", V::Bad, ""),
                ],
            ),
            progress(),
        ],
        2,
    )
}

fn any_case(g: &Grammar) -> BoxedStrategy<Case> {
    prop_oneof![
        2 => validate(),
        3 => plan(g),
        3 => preflight(g),
        5 => apply_simulated(g),
        2 => apply_plan(g),
        3 => apply_real(g),
        2 => apply_retry(g),
        2 => resume(),
        2 => status(),
        2 => approve(),
        2 => import(g),
        1 => demo(),
    ]
    .prop_map(bounded)
    .boxed()
}

/// Keeps out the waits the docs promise, which are not hangs of medic: a rehearsal or a
/// demo at the default time scale takes the plan's real hours (or a minute), a rehearsal
/// without `--yes` waits at its first gate for `medic approve`, and a real run that starts
/// (`--skip-preflight`) tries its dead hosts for minutes; so `--skip-preflight` is kept only
/// where something refuses the command first.
fn bounded(mut c: Case) -> Case {
    let arg = |flag: &'static str, v: Option<&str>| Arg {
        flag,
        val: v.map(|v| val(v, V::Ok)),
        eq: false,
    };
    if (c.is("demo") || (c.is("apply") && c.has("--simulate"))) && !c.has("--time-scale") {
        c.args.push(arg("--time-scale", Some("100000")));
    }
    if c.is("apply") && c.has("--simulate") && !c.has("--yes") {
        c.args.push(arg("--yes", None));
    }
    if c.is("apply") && c.has("--skip-preflight") && c.invalid_reasons().is_empty() {
        c.args.retain(|a| a.flag != "--skip-preflight");
    }
    c
}

/// The fixtures every case starts from, made once by running the real binary.
struct Template {
    dir: tempfile::TempDir,
}

const LOOPBACK_INVENTORY: &str = "\
# Every address is on loopback, every SSH port is 9, where nothing listens.
manager: { name: dsm01, address: 127.0.0.5, version: \"20.0.463\" }
settings:
  direct_download_when_relays_unavailable: true
relay_groups:
  - { name: tokyo }
  - { name: dmz, offline: true, bundle_source: relay-1 }
hosts:
  - { name: relay-1, address: 127.0.1.10, port: 9, user: fuzz, platform: linux, agent_version: \"20.0.0-3445\", relay: true, relay_group: tokyo, groups: [tokyo] }
  - { name: relay-dmz, address: 127.0.9.10, port: 9, user: fuzz, platform: linux, agent_version: \"12.0.0-1234\", relay: true, relay_group: dmz, groups: [dmz] }
  - { name: web-01, address: 127.0.1.21, port: 9, user: fuzz, platform: windows, agent_version: \"12.0.0-1234\", relay_group: tokyo, groups: [tokyo, canary] }
  - { name: app-01, address: 127.0.1.31, port: 9, user: fuzz, platform: linux, agent_version: \"20.0.0-3445\", relay_group: tokyo, groups: [tokyo, canary] }
  - { name: app-02, address: 127.0.1.32, port: 9, user: fuzz, platform: linux, agent_version: \"20.0.1-690\", relay_group: tokyo, groups: [tokyo] }
  - { name: dmz-01, address: 127.0.9.21, port: 9, user: fuzz, platform: linux, agent_version: \"20.0.0-3445\", relay_group: dmz, groups: [dmz] }
";

impl Template {
    fn build() -> Template {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let d = &dir.path().to_path_buf();
        let w = |name: &str, data: &[u8]| {
            std::fs::write(d.join(name), data).unwrap_or_else(|e| panic!("write {name}: {e}"))
        };
        assert!(
            !LOOPBACK_INVENTORY
                .lines()
                .filter(|l| l.contains("address:"))
                .any(|l| !l.contains("address: 127.")),
            "every address of the fuzz inventory is on loopback"
        );
        w("inv.yaml", LOOPBACK_INVENTORY.as_bytes());
        let inv_nonutf8 = d.join(std::ffi::OsStr::from_bytes(b"inv-\xff.yaml"));
        std::fs::write(inv_nonutf8, LOOPBACK_INVENTORY).expect("write the non-UTF-8 name");
        let pb = std::fs::read(crate::util::real_playbook()).expect("read the playbook");
        w("pb.yaml", &pb);
        w(
            "bad-inv.yaml",
            LOOPBACK_INVENTORY
                .replace("name: app-02", "name: app-01")
                .replace("relay: true, relay_group: dmz", "relay: true")
                .replace("port: 9, user: fuzz, platform: linux, agent_version: \"20.0.0-3445\", relay_group: dmz", "port: 9, colour: blue, platform: linux, agent_version: \"20.0.0-3445\", relay_group: dmz")
                .as_bytes(),
        );
        w("empty.yaml", b"");
        w(
            "binary.bin",
            b"\x7fELF\x02\x01\x01\x00\x00\x00\xff\xfe\x00\x00",
        );
        w(
            "latin1.yaml",
            b"manager: { name: caf\xe9, address: 127.0.0.5 }\n",
        );
        w("secret.txt", b"not-a-real-secret\n");
        w("known_hosts", b"");
        w("not-journal.sqlite", b"this is not a journal\n");
        std::fs::create_dir_all(d.join("adir")).expect("create adir");
        std::fs::create_dir_all(d.join("home")).expect("create home");

        let keygen = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "fuzz", "-f"])
            .arg(d.join("sign-key"))
            .stdin(Stdio::null())
            .status()
            .expect("run ssh-keygen (the sign tests need it too)");
        assert!(keygen.success(), "ssh-keygen failed");

        let t = Template { dir };
        let base = ["-i", "inv.yaml", "-p", "pb.yaml"];
        t.must(&[
            &["plan"],
            &base[..],
            &["--format", "json", "--out", "plan.json"],
        ]);
        t.must(&[
            &["plan"],
            &base[..],
            &[
                "--format",
                "json",
                "--sign",
                "sign-key",
                "--out",
                "plan-signed.json",
            ],
        ]);
        let plan = std::fs::read_to_string(d.join("plan.json")).expect("read plan.json");
        assert!(plan.contains("127.0.1.31"));
        w(
            "plan-tampered.json",
            plan.replace("127.0.1.31", "127.0.1.99").as_bytes(),
        );
        let rehearse = ["--simulate", "--time-scale", "100000", "--yes"];
        t.must(&[
            &["apply"],
            &base[..],
            &rehearse[..],
            &["--journal", "journal-done.sqlite", "--events", "done.jsonl"],
        ]);
        t.must(&[
            &["apply"],
            &base[..],
            &rehearse[..],
            &[
                "--sim-fault",
                "fail:app-01:agent-upgrade:99",
                "--journal",
                "journal-failed.sqlite",
                "--events",
                "failed.jsonl",
            ],
        ]);
        let journal = std::fs::read(d.join("journal-done.sqlite")).expect("read the journal");
        w("truncated.sqlite", &journal[..journal.len().min(6000)]);
        t
    }

    /// Runs medic in the template; it must not exit 2 or 4.
    fn must(&self, parts: &[&[&str]]) {
        let args: Vec<OsString> = parts.concat().into_iter().map(OsString::from).collect();
        let out = run_medic(self.dir.path(), &args, false);
        assert!(
            matches!(out.code, Some(0 | 1 | 3)),
            "making the fixtures: medic {args:?} exited {:?}\n{}",
            out.code,
            out.stderr
        );
    }

    /// A fresh copy of the fixtures.
    fn instance(&self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("a temporary directory");
        copy_tree(self.dir.path(), dir.path());
        dir
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).expect("read the template") {
        let e = e.expect("an entry");
        let target = to.join(e.file_name());
        let t = e.file_type().expect("a file type");
        if t.is_dir() {
            std::fs::create_dir_all(&target).expect("create a directory");
            copy_tree(&e.path(), &target);
        } else if t.is_file() {
            std::fs::copy(e.path(), &target).expect("copy a fixture");
        }
    }
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
    timed_out: bool,
}

/// Runs the real binary in `dir` with stdin closed (not /dev/null: fd 0 is free, as under
/// a careless service manager), a clean environment and a hard time limit.
fn run_medic(dir: &Path, args: &[OsString], api_key: bool) -> Outcome {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("exec \"$0\" \"$@\" <&-")
        .arg(env!("CARGO_BIN_EXE_medic"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.join("home"))
        .env("USER", "fuzz")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if api_key {
        cmd.env("MEDIC_DSM_API_KEY", "fuzz-not-a-key");
    }
    let start = Instant::now();
    let mut child = cmd.spawn().expect("start medic");
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            let _ = tx.send(buf);
        });
        rx
    };
    let out_rx = drain(child.stdout.take().map(|s| Box::new(s) as _));
    let err_rx = drain(child.stderr.take().map(|s| Box::new(s) as _));
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for medic") {
            break Some(st);
        }
        if start.elapsed() > LIMIT {
            timed_out = true;
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    let stdout = out_rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_default();
    let stderr = err_rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_default();
    Outcome {
        code: status.and_then(|s| s.code()),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        elapsed,
        timed_out,
    }
}

/// Every file and directory under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap_or(&p).to_path_buf();
            match e.file_type() {
                Ok(t) if t.is_dir() => {
                    out.insert(rel, None);
                    todo.push(p);
                }
                _ => {
                    out.insert(rel, Some(std::fs::read(&p).unwrap_or_default()));
                }
            }
        }
    }
    out
}

fn differences(
    before: &BTreeMap<PathBuf, Option<Vec<u8>>>,
    after: &BTreeMap<PathBuf, Option<Vec<u8>>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (p, b) in before {
        match after.get(p) {
            None => out.push(format!("removed {}", p.display())),
            Some(a) if a != b => out.push(format!("changed {}", p.display())),
            _ => {}
        }
    }
    for p in after.keys().filter(|p| !before.contains_key(*p)) {
        out.push(format!("added {}", p.display()));
    }
    out
}

/// At most `max` bytes of `s`, cut on a character boundary: the generated
/// arguments include non-ASCII names, and a byte cut inside one panics.
fn prefix(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn shown(args: &[OsString]) -> String {
    args.iter()
        .map(|a| {
            let s = a.to_string_lossy();
            let s = if s.len() > 80 {
                format!("{}...({} bytes)", prefix(&s, 40), s.len())
            } else {
                s.into_owned()
            };
            if !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,".contains(&b))
            {
                s
            } else {
                format!("{s:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Counts per subcommand and exit code, and the slowest runs, for `--nocapture`.
#[derive(Default)]
struct Stats {
    codes: BTreeMap<String, BTreeMap<String, u32>>,
    invalid: u32,
    slowest: Vec<(Duration, String)>,
    internal: Vec<String>,
}

/// Runs one case and checks the properties.
fn check(t: &Template, case: &Case, stats: &RefCell<Stats>) -> Result<(), TestCaseError> {
    let dir = t.instance();
    let args = case.tokens();
    let reasons = case.invalid_reasons();
    let before = snapshot(dir.path());
    let out = run_medic(dir.path(), &args, case.api_key);
    let after = snapshot(dir.path());
    let cmd = format!("{case:?}");
    let said = || {
        format!(
            "\n--- command: {cmd}\n--- exit code: {:?} after {:.1?}\n--- stderr (first 3000 bytes):\n{}",
            out.code,
            out.elapsed,
            &out.stderr[..out.stderr.len().min(3000)]
        )
    };
    {
        let mut s = stats.borrow_mut();
        let code = out.code.map_or("signal".to_owned(), |c| c.to_string());
        *s.codes
            .entry(
                case.sub.join(" ")
                    + if case.is("apply") && case.has("--simulate") {
                        " --simulate"
                    } else {
                        ""
                    },
            )
            .or_default()
            .entry(code)
            .or_default() += 1;
        s.invalid += u32::from(!reasons.is_empty());
        s.slowest.push((out.elapsed, cmd.clone()));
        s.slowest.sort_by_key(|b| std::cmp::Reverse(b.0));
        s.slowest.truncate(5);
        if out.code == Some(4) {
            let first = out
                .stderr
                .lines()
                .find(|l| l.starts_with("error"))
                .unwrap_or("");
            s.internal.push(format!("{cmd}\n    {first}"));
        }
    }
    prop_assert!(
        !out.timed_out,
        "medic did not end within {LIMIT:?}{}",
        said()
    );
    prop_assert!(
        out.code != Some(101) && !out.stderr.contains("panicked at"),
        "medic panicked{}",
        said()
    );
    prop_assert!(
        out.code.is_some_and(|c| EXIT_CODES.contains(&c)),
        "exit code outside the documented 0-4{}",
        said()
    );
    prop_assert!(
        reasons.is_empty() || out.code != Some(0),
        "an invalid command exited 0{}",
        said()
    );
    // In a fresh directory with room on its disk, nothing is an internal or IO error but a
    // Manager that cannot be reached (the import's only way to end here).
    prop_assert!(
        out.code != Some(4) || (case.is("inventory") && out.stderr.contains("the import from")),
        "exit 4 (an internal or IO error) for what the command line says{}",
        said()
    );
    // SQLite's own `-wal` and `-shm` files, which any reader of a journal in WAL mode
    // creates beside it, are not a write of medic's (the journal itself is compared).
    let changed: Vec<String> = differences(&before, &after)
        .into_iter()
        .filter(|d| {
            let sqlite_aside = |f: &str| {
                ["-wal", "-shm"].iter().any(|x| {
                    f.strip_suffix(x)
                        .is_some_and(|j| before.contains_key(Path::new(j)))
                })
            };
            !d.strip_prefix("added ").is_some_and(sqlite_aside)
        })
        .collect();
    if out.code == Some(2) {
        prop_assert!(
            changed.is_empty(),
            "a refused command (exit 2) wrote: {changed:?}{}",
            said()
        );
    }
    // An input is never written, whatever the exit code.
    for a in case.args.iter().filter(|a| INPUTS.contains(&a.name())) {
        let Some(v) = &a.val else { continue };
        let p = PathBuf::from(&v.os);
        let rel = p.strip_prefix("./").unwrap_or(&p).to_path_buf();
        if let (Some(b), Some(x)) = (before.get(&rel), after.get(&rel)) {
            prop_assert!(b == x, "the input {} was written{}", rel.display(), said());
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("MEDIC_CLI_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// Nothing listens where the generated inventory's hosts are (so no run gets far).
fn assert_dead_port() {
    let addr = std::net::SocketAddr::from(([127, 0, 1, 31], DEAD_SSH_PORT));
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(),
        "something listens on {addr}: the fuzz inventory expects nothing there"
    );
}

#[test]
fn cli_fuzz_random_commands_never_panic_hang_or_accept_invalid_input() {
    assert_dead_port();
    let template = Template::build();
    let g = Grammar::new();
    let stats = RefCell::new(Stats::default());
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        // Each case is a process or two; a shrink of a few dozen steps is enough to read.
        max_shrink_iters: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let started = Instant::now();
    let result = runner.run(&any_case(&g), |case| check(&template, &case, &stats));
    let s = stats.into_inner();
    eprintln!(
        "cli fuzz: {} cases ({} invalid) in {:.1?}",
        s.codes.values().flat_map(|m| m.values()).sum::<u32>(),
        s.invalid,
        started.elapsed()
    );
    for (sub, codes) in &s.codes {
        eprintln!("  {sub}: {codes:?}");
    }
    eprintln!("  slowest:");
    for (d, c) in &s.slowest {
        eprintln!("    {d:.1?} {}", prefix(c, 200));
    }
    eprintln!("  exit 4 (internal or IO error): {}", s.internal.len());
    for c in &s.internal {
        eprintln!("    {}", prefix(c, 400));
    }
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// One command the fuzz test found mishandled, with what it must do now.
struct Regression {
    args: Vec<OsString>,
    api_key: bool,
    code: i32,
    /// Part of what it prints (stderr, or stdout for a pre-flight's table).
    says: &'static str,
}

fn reg(args: &[&[u8]], code: i32, says: &'static str) -> Regression {
    Regression {
        args: args
            .iter()
            .map(|a| OsString::from_vec(a.to_vec()))
            .collect(),
        api_key: false,
        code,
        says,
    }
}

/// The bugs the fuzz test found, each as the command that showed it: the exit code, the
/// message, no file written on a refusal, no input ever written, and (the pre-flight)
/// the time it takes.
#[test]
fn cli_fuzz_regressions() {
    let t = Template::build();
    let rehearse: &[&[u8]] = &[
        b"apply",
        b"-i",
        b"inv.yaml",
        b"-p",
        b"pb.yaml",
        b"--simulate",
        b"--time-scale",
        b"100000",
        b"--yes",
    ];
    let with = |extra: &[&'static [u8]]| [rehearse, extra].concat();
    let non_utf8: &[&[u8]] = &[b"apply", b"-i", b"inv-\xff.yaml", b"-p", b"pb.yaml"];
    let plan: &[&[u8]] = &[b"plan", b"-i", b"inv.yaml", b"-p", b"pb.yaml"];
    let plan_with = |extra: &[&'static [u8]]| [plan, extra].concat();
    let preflight: &[&[u8]] = &[
        b"preflight",
        b"-i",
        b"inv.yaml",
        b"-p",
        b"pb.yaml",
        b"--progress",
        b"never",
    ];
    let preflight_with = |extra: &[&'static [u8]]| [preflight, extra].concat();
    let retry: &[&[u8]] = &[
        b"apply",
        b"--retry-failed",
        b"--journal",
        b"journal-done.sqlite",
    ];
    let retry_with = |extra: &[&'static [u8]]| [retry, extra].concat();
    let resume_events: &[&[u8]] = &[
        b"resume",
        b"--journal",
        b"journal-done.sqlite",
        b"--events",
        b"./journal-done.sqlite",
    ];
    // A 100 KB `--set` before a bad one: the second problem's column is past 65,535.
    let long_set: &'static [u8] = Box::leak(
        format!("--set={}=1", "a".repeat(100_000))
            .into_bytes()
            .into_boxed_slice(),
    );
    let cases = vec![
        // miette formats a snippet's underline with the column as a width: it panicked
        // ("Formatting argument out of range") past column 65,535.
        reg(
            &[
                b"validate".as_slice(),
                b"-i",
                b"inv.yaml",
                b"-p",
                b"pb.yaml",
                long_set,
                b"--set",
                b"fixed_build.linux=12.0.0-9999,12.0.0-1",
            ],
            2,
            "are both on line 12.0",
        ),
        // The Manager's client retried a refused connection for the whole 60 s check
        // timeout, then said "no answer within 60 s".
        Regression {
            api_key: true,
            ..reg(preflight, 1, "Connection refused")
        },
        // A valid inventory with a non-UTF-8 name: exit 4 "path contains invalid UTF-8
        // characters", after creating .medic/runs/ID.
        reg(
            &[non_utf8, &rehearse[5..]].concat(),
            2,
            "is not valid UTF-8",
        ),
        // Ignored (clap's `requires` gives way to --playbook): the run was not verified.
        reg(
            &with(&[b"--verify-key", b"sign-key.pub"]),
            2,
            "no --plan was given",
        ),
        // Output in a missing directory, or a directory: exit 4 after all the work.
        reg(
            &plan_with(&[b"--out", b"sub/deeper/out.txt"]),
            2,
            "does not exist",
        ),
        reg(&plan_with(&[b"--out", b"adir"]), 2, "is a directory"),
        // A demo directory that is an existing file: exit 4 "cannot create inv.yaml".
        reg(
            &[
                b"demo".as_slice(),
                b"--dir=inv.yaml",
                b"--time-scale",
                b"100000",
            ],
            2,
            "cannot use inv.yaml as the demo's directory",
        ),
        reg(
            &preflight_with(&[b"--out", b"sub/deeper/out.txt"]),
            2,
            "does not exist",
        ),
        // Outputs over inputs: the inventory, the signing key, a secret.
        reg(
            &preflight_with(&[b"--out", b"./inv.yaml"]),
            2,
            "never writes over its inputs",
        ),
        reg(
            &preflight_with(&[
                b"--dsm-api-key-file",
                b"secret.txt",
                b"--out",
                b"secret.txt",
            ]),
            2,
            "never writes over its inputs",
        ),
        reg(
            &plan_with(&[
                b"--format",
                b"json",
                b"--sign",
                b"sign-key",
                b"--out",
                b"sign-key",
            ]),
            2,
            "never writes over its inputs",
        ),
        reg(
            &with(&[
                b"--sudo-password-file",
                b"secret.txt",
                b"--events",
                b"secret.txt",
            ]),
            2,
            "never writes over its inputs",
        ),
        // A rehearsal accepted a poll interval the help calls invalid (it builds no driver
        // that polls), and a retry dropped run settings it cannot change, both with exit 0.
        reg(
            &with(&[b"--poll-interval", b"NaN"]),
            2,
            "is not a usable poll interval",
        ),
        reg(&retry_with(&[b"--strict"]), 2, "cannot change them"),
        reg(
            &retry_with(&[b"--max-per-group", b"3"]),
            2,
            "cannot change them",
        ),
        // Events into a directory or into the journal: the run went on without them.
        reg(&with(&[b"--events", b"adir"]), 2, "is a directory"),
        reg(
            &with(&[b"--journal", b"run.sqlite", b"--events", b"run.sqlite"]),
            2,
            "is the run's journal",
        ),
        reg(&[resume_events, &[]].concat(), 2, "is the run's journal"),
        // A retry ignored every other flag and exited 0.
        reg(
            &retry_with(&[b"--set", b"nope=1"]),
            2,
            "--set cannot change",
        ),
        reg(
            &retry_with(&[b"-i", b"missing.yaml"]),
            2,
            "--inventory cannot change",
        ),
        reg(&retry_with(&[b"--window", b"tomorrow"]), 2, "tomorrow"),
    ];
    let mut failures = Vec::new();
    for c in &cases {
        let dir = t.instance();
        let before = snapshot(dir.path());
        let out = run_medic(dir.path(), &c.args, c.api_key);
        let after = snapshot(dir.path());
        let mut why = Vec::new();
        if out.code != Some(c.code) {
            why.push(format!("exit code {:?}, expected {}", out.code, c.code));
        }
        if !out.stderr.contains(c.says) && !out.stdout.contains(c.says) {
            why.push(format!("does not say `{}`", c.says));
        }
        if out.elapsed > Duration::from_secs(10) {
            why.push(format!("took {:.1?}", out.elapsed));
        }
        if c.code == 2 {
            let changed = differences(&before, &after);
            if !changed.is_empty() {
                why.push(format!("wrote {changed:?}"));
            }
        }
        if !why.is_empty() {
            failures.push(format!(
                "medic {}: {}\n{}",
                shown(&c.args),
                why.join("; "),
                out.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
