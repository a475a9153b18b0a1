//! `medic inventory import --ansible`: Ansible inventories (INI, YAML, a directory, the
//! JSON of `ansible-inventory --list`) merged with the DSM simulator's import, and checked
//! against the real `ansible-inventory` (ansible-core from PyPI, installed by `.ci/run`).
//!
//! `ansible-inventory` is found through `$MEDIC_ANSIBLE_INVENTORY`, then `PATH`, then
//! `.ci/.venv-ansible/bin/`. Without it the comparison fails; outside CI (`$CI` unset),
//! `MEDIC_SKIP_ANSIBLE=1` skips it and says so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::util::{TestEnv, fixtures, repo_root};

const KEY: &str = "ansible-import-test-key";

fn ansible_fixtures() -> PathBuf {
    fixtures().join("ansible")
}

/// The DSM simulator serving `dsm.yaml`'s computers, on its own runtime.
struct Manager {
    _rt: tokio::runtime::Runtime,
    server: medic_sim::server::DsmServer,
}

fn manager() -> Manager {
    let text = std::fs::read_to_string(ansible_fixtures().join("dsm.yaml")).expect("dsm.yaml");
    let inv = medic_config::load_inventory("dsm.yaml", &text).expect("dsm.yaml loads");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let server = rt.block_on(async {
        let fleet =
            medic_sim::SimFleet::open(&inv, medic_sim::SimConfig::demo(1), None).expect("fleet");
        medic_sim::server::serve(
            fleet,
            &inv,
            medic_sim::server::ServerConfig::new(secrecy::SecretString::from(KEY.to_owned())),
        )
        .await
        .expect("the simulator starts")
    });
    Manager { _rt: rt, server }
}

fn import(env: &TestEnv, m: &Manager, ansible: &Path, out: &str) -> crate::util::Run {
    let mut cmd = assert_cmd::Command::cargo_bin("medic").expect("medic");
    let o = cmd
        .current_dir(env.path())
        .env("MEDIC_DSM_API_KEY", KEY)
        .env("NO_COLOR", "1")
        .args([
            "inventory",
            "import",
            "--dsm",
            &m.server.base_url(),
            "--ansible",
        ])
        .arg(ansible)
        .args(["--out", out])
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .expect("run medic");
    crate::util::Run {
        cmd: format!(
            "medic inventory import --ansible {} --out {out}",
            ansible.display()
        ),
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// What a host is for this comparison: groups (with ancestors), address, port, user.
type Seen = BTreeMap<String, (BTreeSet<String>, String, u16, Option<String>)>;

/// Ansible's own answer, from the JSON of `ansible-inventory --list`.
fn seen_by_ansible(list: &serde_json::Value) -> Seen {
    let groups = list.as_object().expect("an object");
    let mut parents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (g, v) in groups {
        for c in v["children"].as_array().into_iter().flatten() {
            parents
                .entry(c.as_str().expect("a name"))
                .or_default()
                .push(g);
        }
    }
    let mut out = Seen::new();
    let hostvars = list["_meta"]["hostvars"].as_object().expect("hostvars");
    for (h, vars) in hostvars {
        let mut todo: Vec<&str> = groups
            .iter()
            .filter(|(_, v)| {
                v["hosts"]
                    .as_array()
                    .is_some_and(|hs| hs.iter().any(|x| x == h.as_str()))
            })
            .map(|(g, _)| g.as_str())
            .collect();
        let mut all = BTreeSet::new();
        while let Some(g) = todo.pop() {
            if all.insert(g.to_owned()) {
                todo.extend(parents.get(g).into_iter().flatten());
            }
        }
        all.remove("all");
        all.remove("ungrouped");
        let port = match &vars["ansible_port"] {
            serde_json::Value::Number(n) => n.as_u64().expect("a port") as u16,
            serde_json::Value::String(s) => s.parse().expect("a port"),
            _ => 22,
        };
        out.insert(
            h.clone(),
            (
                all,
                vars["ansible_host"].as_str().unwrap_or(h).to_owned(),
                port,
                vars["ansible_user"].as_str().map(str::to_owned),
            ),
        );
    }
    out
}

/// medic's answer: the merged inventory's hosts, plus the Ansible hosts it left out.
fn seen_by_medic(text: &str) -> (Seen, Vec<String>) {
    let inv = medic_config::load_inventory("out.yaml", text).expect("the output loads");
    let mut seen = Seen::new();
    for h in inv.hosts {
        if h.name == "kiosk-01" {
            continue; // the computer Ansible does not know
        }
        seen.insert(
            h.name,
            (h.groups.into_iter().collect(), h.address, h.port, h.user),
        );
    }
    let left_out = text
        .lines()
        .filter_map(|l| l.strip_prefix("# note: unmatched: Ansible host `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect();
    (seen, left_out)
}

fn ansible_inventory() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MEDIC_ANSIBLE_INVENTORY") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("ansible-inventory"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let p = repo_root().join(".ci/.venv-ansible/bin/ansible-inventory");
        p.is_file().then_some(p)
    })
}

/// `ansible-inventory -i SOURCE --list`, isolated from any user configuration.
fn ansible_list(bin: &Path, source: &Path, home: &Path) -> serde_json::Value {
    let out = std::process::Command::new(bin)
        .args(["-i"])
        .arg(source)
        .arg("--list")
        .env("ANSIBLE_HOME", home)
        .env("ANSIBLE_LOCAL_TEMP", home.join("tmp"))
        .env("ANSIBLE_CONFIG", home.join("none.cfg"))
        .env("ANSIBLE_INVENTORY_UNPARSED_FAILED", "true")
        .env("ANSIBLE_NOCOLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
    assert!(
        out.status.success(),
        "ansible-inventory -i {} --list failed:\n{}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ansible-inventory prints JSON")
}

#[test]
fn medic_reads_ansible_inventories_as_ansible_inventory_does() {
    let Some(bin) = ansible_inventory() else {
        let skip = std::env::var("MEDIC_SKIP_ANSIBLE").is_ok_and(|v| v == "1");
        if skip && std::env::var_os("CI").is_none() {
            eprintln!(
                "SKIPPED: ansible-inventory not found and MEDIC_SKIP_ANSIBLE=1 (never skipped in CI)"
            );
            return;
        }
        panic!(
            "ansible-inventory not found: this test compares medic's reading of Ansible inventories \
             with the real Ansible. Install ansible-core (`python3 -m venv .ci/.venv-ansible && \
             .ci/.venv-ansible/bin/pip install ansible-core`, as .ci/run does), put it on PATH or \
             set MEDIC_ANSIBLE_INVENTORY=/path/to/ansible-inventory; outside CI, \
             MEDIC_SKIP_ANSIBLE=1 skips this test"
        );
    };
    let m = manager();
    let env = TestEnv::new();
    for (case, source) in [
        ("ini", "ini/hosts"),
        ("yaml", "yaml/inventory.yml"),
        ("dir", "dir"),
    ] {
        let source = ansible_fixtures().join(source);
        let list = ansible_list(&bin, &source, env.path());
        let expected = seen_by_ansible(&list);
        assert_eq!(expected.len(), 8, "{case}: the fixture's hosts");

        let r = import(&env, &m, &source, &format!("{case}.yaml"));
        r.assert_code(0);
        let text = std::fs::read_to_string(env.path().join(format!("{case}.yaml"))).expect("out");
        let (seen, left_out) = seen_by_medic(&text);
        assert_eq!(
            left_out,
            ["laptop-9"],
            "{case}: only laptop-9 is not a computer"
        );
        let mut expected_matched = expected.clone();
        expected_matched.remove("laptop-9");
        assert_eq!(
            seen, expected_matched,
            "{case}: medic and ansible-inventory disagree\n{text}"
        );
        for part in [
            "note: unmatched: Ansible host `laptop-9`",
            "note: unmatched: computer `kiosk-01` (127.0.3.12) is not in the Ansible inventory",
        ] {
            assert!(
                text.contains(part),
                "{case}: `{part}` in the output\n{text}"
            );
            assert!(
                r.stderr.contains(part.trim_start_matches("note: ")),
                "{case}: on stderr\n{r}"
            );
        }
        // The Manager's facts are kept: the computer the Manager calls osaka-web-1 is
        // Ansible's web-osa-1 (same address), a Windows agent on the 12.0 line.
        let inv = medic_config::load_inventory("out.yaml", &text).expect("loads");
        let osaka = inv
            .hosts
            .iter()
            .find(|h| h.name == "web-osa-1")
            .expect("web-osa-1");
        assert_eq!(osaka.platform, medic_model::Platform::Windows);
        assert_eq!(
            osaka.agent_version,
            "12.0.0-1234"
                .parse::<medic_model::AgentBuild>()
                .expect("a build")
        );
        assert!(inv.hosts.iter().any(|h| h.name == "relay-tky-1" && h.relay));

        // Ansible's own JSON of the same inventory gives medic the same inventory.
        let json = env.write(
            &format!("{case}.json"),
            serde_json::to_vec_pretty(&list).expect("json"),
        );
        let r2 = import(&env, &m, &json, &format!("{case}-from-json.yaml"));
        r2.assert_code(0);
        let text2 = std::fs::read_to_string(env.path().join(format!("{case}-from-json.yaml")))
            .expect("out");
        let body = |t: &str| {
            t.lines()
                .filter(|l| {
                    !l.starts_with("# connection details")
                        && !l.starts_with("# note: unmatched: Ansible host")
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(
            body(&text2),
            body(&text),
            "{case}: from the INI/YAML and from its JSON"
        );
    }
}

#[test]
fn bad_ansible_inventories_name_file_line_and_column_and_nothing_is_asked_or_written() {
    let env = TestEnv::new();
    env.write(
        "inv/hosts",
        "[web]\nweb-1 ansible_port=70000\nweb-2 ansible_user\n[db:vars]\nansible_user=ops\n",
    );
    env.write(
        "inv/site.yml",
        "all:\n  hosts:\n    app-1: { ansible_host: 'a b' }\n  childern:\n    x:\n",
    );
    // No Manager listens there: the input is refused before any request.
    let r = env.run([
        "inventory",
        "import",
        "--ansible",
        "inv",
        "--dsm",
        "https://127.0.0.1:9",
        "--out",
        "out.yaml",
    ]);
    r.assert_code(2);
    let first = r.stderr.lines().next().unwrap_or("");
    for part in [
        "inv/hosts:2:7: host `web-1`: ansible_port `70000` is not a port from 1 to 65535",
        "inv/hosts:3:7: expected key=value after the host, found `ansible_user`",
        "inv/hosts:4:1: section [db:vars] is for the group `db`, which is declared nowhere",
        "inv/site.yml:3:28: host `app-1`: ansible_host `a b` is not an IP address or a DNS name",
        "inv/site.yml:4:3: group `all` has a key `childern`",
    ] {
        assert!(r.stderr.contains(part), "`{part}` expected\n{r}");
    }
    assert!(
        first.starts_with("error: inv/hosts:2:7: "),
        "problems in file order\n{r}"
    );
    assert!(!env.path().join("out.yaml").exists());
    assert!(
        !r.stderr.contains("importing from"),
        "the Manager was not asked\n{r}"
    );

    let r = env.run([
        "inventory",
        "import",
        "--ansible",
        "missing.ini",
        "--dsm",
        "https://127.0.0.1:9",
    ]);
    r.assert_code(2);
    assert!(
        r.stderr
            .starts_with("error: missing.ini: cannot read the Ansible inventory"),
        "{r}"
    );
}
