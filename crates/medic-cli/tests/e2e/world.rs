//! One world for a real run: a loopback sshd fleet (`Fleet`, from the SSH driver's tests)
//! whose fake agents (`tests/fleet/fakeds/fakeds-sim`) read and change their hosts in the
//! DSM simulator, and the simulator itself, served over HTTPS (self-signed CA) from this
//! test process. The simulated fleet is the single source of truth: the `ssh` driver acts
//! on it through sshd and the fakes, the `dsm` driver through the Manager API's scheduled
//! tasks, and the tests read its final state and its side-effect counts directly.
//!
//! The API key reaches the fakes in a 0600 header file (`curl -H @file`) and medic in
//! `MEDIC_DSM_API_KEY`: never on a command line.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use medic_model::AgentBuild;
use medic_sim::server::{DsmServer, HttpFault, ServerConfig, TlsSetup, serve};
use medic_sim::{SimConfig, SimFleet, SimHostState};
use secrecy::SecretString;

use crate::fleet::Fleet;

/// The fixed (and target) build of the playbook, as the simulator's rule.
pub const FIXED: &str = "20.0.1.690";
/// The affected hosts' starting build.
pub const OLD: &str = "20.0.0.877";
/// Seconds between polls, for the `ssh` and `dsm` drivers (`--poll-interval`).
const POLL: &str = "0.5";
/// Simulated seconds per real second of the security updates run by scheduled tasks.
const TIME_SCALE: f64 = 1000.0;

/// The names of the fake agent's commands (linked to `fakeds-sim` in the fleet's `bin`).
const FAKE_NAMES: [&str; 10] = [
    "rpm",
    "dpkg-query",
    "dpkg",
    "dsa_query",
    "dsa_control",
    "needs-restarting",
    "shutdown",
    "sudo",
    "cat",
    "ss",
];

/// The uid of the sudo fleet's SSH user.
fn sudo_uid() -> u32 {
    let out = Command::new("id")
        .args(["-u", crate::fleet::SUDO_USER])
        .output()
        .expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a uid")
}

pub fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// One host of a test fleet.
#[derive(Clone, Debug)]
pub struct HostSpec {
    pub name: String,
    pub relay: bool,
    pub relay_group: Option<&'static str>,
    /// Inventory host groups (`canary` puts an agent in the first wave).
    pub groups: Vec<&'static str>,
    pub build: &'static str,
    /// Nothing listens at its address (an unused address of the fleet's range).
    pub unreachable: bool,
    /// The inventory's `os`; its distribution is also what the host's fake agent answers
    /// (`/etc/os-release`, rpm or dpkg).
    pub os: &'static str,
    /// Inventory host vars (the simulator's `antimalware: off`, ...).
    pub vars: Vec<(&'static str, &'static str)>,
}

pub const OS_EL8: &str = "Red Hat Enterprise 8 (64 bit)";
pub const OS_EL9: &str = "Red Hat Enterprise 9 (64 bit)";
pub const OS_UBUNTU: &str = "Ubuntu Linux 22.04 (64 bit)";

impl HostSpec {
    pub fn new(name: &str, relay: bool, group: &'static str) -> HostSpec {
        HostSpec {
            name: name.to_owned(),
            relay,
            relay_group: Some(group),
            groups: vec![group],
            build: OLD,
            unreachable: false,
            os: OS_EL8,
            vars: Vec::new(),
        }
    }

    /// Below the fixed build with an agent installed: the playbook upgrades it.
    pub fn affected(&self) -> bool {
        let b: AgentBuild = self.build.parse().expect("spec build");
        b != AgentBuild::NONE && b < FIXED.parse().expect("fixed build")
    }
}

/// A fleet: relay groups `east` and `west` (connected) and `vault` (offline, fed by a
/// bundle made on `relay-e1`), and the hosts.
#[derive(Clone, Debug)]
pub struct Spec {
    pub hosts: Vec<HostSpec>,
    /// The Manager's build, in the inventory and in the simulator.
    pub manager_version: &'static str,
}

impl Spec {
    /// 50 hosts: 4 Relays (one in the offline group `vault`) and 46 Agents, 3 of them
    /// canaries, 2 already at the fixed build and 1 without an agent (both skipped by the
    /// plan): 47 hosts to remediate.
    pub fn fifty() -> Spec {
        Spec::sized(46)
    }

    /// 4 Relays and `agents` Agents (at least 6), laid out as in [`Spec::fifty`].
    pub fn sized(agents: usize) -> Spec {
        assert!(agents >= 6);
        let mut hosts = vec![
            HostSpec::new("relay-e1", true, "east"),
            HostSpec::new("relay-e2", true, "east"),
            HostSpec::new("relay-w1", true, "west"),
            HostSpec::new("relay-v1", true, "vault"),
        ];
        let sites = ["east", "west", "vault"];
        for i in 1..=agents {
            let mut h = HostSpec::new(&format!("agent-{i:02}"), false, sites[i % 3]);
            if i <= 3 {
                h.groups.push("canary");
            }
            if i == agents - 1 || i == agents - 2 {
                h.build = FIXED;
            }
            if i == agents {
                h.build = "0.0.0.0";
            }
            hosts.push(h);
        }
        Spec {
            hosts,
            manager_version: "20.0.463",
        }
    }

    pub fn index(&self, name: &str) -> usize {
        self.hosts
            .iter()
            .position(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name}"))
    }

    pub fn affected(&self) -> usize {
        self.hosts.iter().filter(|h| h.affected()).count()
    }

    /// The side effects an uninterrupted, fault-free run performs, each exactly once.
    pub fn expected_effects(&self) -> BTreeMap<(String, String), u32> {
        let mut out = BTreeMap::new();
        for h in self.hosts.iter().filter(|h| h.affected()) {
            for a in ["agent-upgrade", "security-update"] {
                out.insert((h.name.clone(), a.to_owned()), 1);
            }
        }
        out.insert(("relay-e1".to_owned(), "bundle-export".to_owned()), 1);
        out.insert(("relay-v1".to_owned(), "bundle-import".to_owned()), 1);
        out
    }

    fn inventory(&self, fleet: &Fleet, unused: &[String], sudo: bool) -> String {
        let mut y = format!(
            "# Generated by the e2e tests: every host is a loopback address of the test sshd.\n\
             manager: {{ name: dsm01, address: 127.0.0.1, version: \"{}\" }}\n{}\
             settings:\n  direct_download_when_relays_unavailable: true\n\
             relay_groups:\n  - {{ name: east }}\n  - {{ name: west }}\n\
             \x20 - {{ name: vault, offline: true, bundle_source: relay-e1 }}\nhosts:\n",
            self.manager_version,
            if sudo { "become: sudo\n" } else { "" },
        );
        let mut next_unused = unused.iter();
        for (i, h) in self.hosts.iter().enumerate() {
            let address = if h.unreachable {
                next_unused.next().expect("an unused address").clone()
            } else {
                fleet.hosts[i].clone()
            };
            let vars = if h.vars.is_empty() {
                String::new()
            } else {
                let v: Vec<String> = h
                    .vars
                    .iter()
                    .map(|(k, v)| format!("{k}: \"{v}\""))
                    .collect();
                format!(", vars: {{ {} }}", v.join(", "))
            };
            let _ = writeln!(
                y,
                "  - {{ name: {}, address: {address}, port: {}, user: {}, platform: linux, os: \"{}\", agent_version: \"{}\", relay: {}, relay_group: {}, groups: [{}]{vars} }}",
                h.name,
                fleet.port,
                fleet.user,
                h.os,
                h.build,
                h.relay,
                h.relay_group.unwrap_or("null"),
                h.groups.join(", "),
            );
        }
        y
    }
}

/// The real playbook with its waiting times cut for a test: soak pauses and retry
/// backoffs become 1 s (the executor's smallest); nothing else changes. Each kind of edit
/// must apply at least once, so that a changed playbook fails here instead of silently
/// testing something else.
pub fn e2e_playbook() -> String {
    let path = repo_root().join("playbooks/ds-activeupdate-cert-2023.yaml");
    let text = std::fs::read_to_string(&path).expect("the real playbook");
    let mut out = String::with_capacity(text.len());
    let (mut pauses, mut backoffs) = (0, 0);
    for line in text.lines() {
        let mut l = line.to_owned();
        if let Some(i) = l.find("pause: ") {
            let rest = &l[i + 7..];
            let end = rest
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(rest.len());
            l = format!("{}pause: 1s{}", &l[..i], &rest[end..]);
            pauses += 1;
        }
        if let Some(i) = l.find("backoff: ") {
            let rest = &l[i + 9..];
            let end = rest
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(rest.len());
            l = format!("{}backoff: 1s{}", &l[..i], &rest[end..]);
            backoffs += 1;
        }
        out.push_str(&l);
        out.push('\n');
    }
    assert!(pauses >= 1, "the playbook has no soak pause any more");
    assert!(backoffs >= 1, "the playbook has no retry backoff any more");
    out
}

/// What a `medic` process did.
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Ran {
    fn from(out: Output, elapsed: Duration) -> Ran {
        Ran {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed,
        }
    }

    /// The summary's `hosts:` counts: (verified, failed, incomplete, without steps).
    pub fn hosts_line(&self) -> (u32, u32, u32, u32) {
        let line = self
            .stderr
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with("hosts: "))
            .unwrap_or_else(|| panic!("no summary in:\n{}", self.stderr));
        let n: Vec<u32> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("a count"))
            .collect();
        assert_eq!(n.len(), 4, "{line}");
        (n[0], n[1], n[2], n[3])
    }
}

/// Options of a world.
#[derive(Default)]
pub struct Opts {
    pub faults: Vec<HttpFault>,
    /// Log in with the passphrase-protected client key (passphrase in
    /// `MEDIC_SSH_PASSPHRASE`).
    pub encrypted_key: bool,
    /// The API key (a fixed test value if `None`).
    pub api_key: Option<String>,
    /// Simulated seconds per real second of the Manager's security updates
    /// ([`TIME_SCALE`] if `None`); lower keeps each update in flight longer.
    pub time_scale: Option<f64>,
    /// Log in as the fleet's non-root user ([`crate::fleet::SUDO_USER`]) with the real
    /// sudo (`become: sudo`, the password in `MEDIC_SUDO_PASSWORD`).
    pub sudo: bool,
}

pub struct World {
    /// Declared first: dropped (and its tasks aborted) before the runtime.
    pub server: DsmServer,
    _rt: tokio::runtime::Runtime,
    pub fleet: Fleet,
    pub sim: SimFleet,
    pub spec: Spec,
    /// Where the run's inputs and outputs go (also medic's working directory and HOME).
    pub dir: tempfile::TempDir,
    pub inventory: PathBuf,
    pub playbook: PathBuf,
    pub ca: PathBuf,
    pub sim_log: PathBuf,
    pub api_key: String,
    pub encrypted_key: bool,
    pub sudo: bool,
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

impl World {
    pub fn new(spec: Spec, opts: Opts) -> World {
        let curl = Command::new("curl").arg("--version").output();
        assert!(
            curl.is_ok_and(|o| o.status.success()),
            "the fake agents reach the DSM simulator with curl, which is missing: apt-get install curl"
        );
        // Fails, when /usr/sbin/sshd is missing, saying that .ci/run installs openssh-server.
        let fleet = if opts.sudo {
            Fleet::start_sudo(spec.hosts.len())
        } else {
            Fleet::start(spec.hosts.len())
        };
        // The fake agent whose world is the simulator, under every command name.
        let fake = fleet.bin.join("fakeds-sim");
        std::fs::copy(repo_root().join("tests/fleet/fakeds/fakeds-sim"), &fake)
            .expect("copy the fake agent");
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for name in FAKE_NAMES {
            // A sudo fleet runs the real sudo.
            if opts.sudo && name == "sudo" {
                continue;
            }
            let link = fleet.bin.join(name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink("fakeds-sim", &link).expect("link the fake agent");
        }

        let mut dir = tempfile::Builder::new()
            .prefix("medic-e2e-")
            .tempdir()
            .expect("a run directory");
        // MEDIC_E2E_KEEP=1 keeps the run directories (journals, events, logs) to look at.
        if std::env::var_os("MEDIC_E2E_KEEP").is_some() {
            dir.disable_cleanup(true);
            eprintln!("e2e: keeping {}", dir.path().display());
        }
        let unused: Vec<String> = (0..spec.hosts.iter().filter(|h| h.unreachable).count())
            .map(|k| fleet.unused_addr(250 - k as u8))
            .collect();
        let inv_text = spec.inventory(&fleet, &unused, opts.sudo);
        let inventory = dir.path().join("inventory.yaml");
        std::fs::write(&inventory, &inv_text).expect("write the inventory");
        let playbook = dir.path().join("playbook.yaml");
        std::fs::write(&playbook, e2e_playbook()).expect("write the playbook");

        let inv = medic_config::load_inventory("inventory.yaml", &inv_text)
            .unwrap_or_else(|p| panic!("the generated inventory is invalid: {p:?}"));
        let sim_log = dir.path().join("sim.log");
        let sim = SimFleet::open(&inv, SimConfig::demo(7), Some(&sim_log)).expect("sim fleet");

        let api_key = opts
            .api_key
            .unwrap_or_else(|| "e2e-api-key-0123456789".to_owned());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut cfg = ServerConfig::new(SecretString::from(api_key.clone()));
        cfg.tls = TlsSetup::SelfSigned;
        cfg.faults = opts.faults;
        cfg.time_scale = opts.time_scale.unwrap_or(TIME_SCALE);
        let server = rt
            .block_on(serve(sim.clone(), &inv, cfg))
            .expect("the DSM simulator starts");
        let ca_pem = server.ca_pem().expect("a generated CA").to_owned();
        let ca = dir.path().join("dsm-ca.pem");
        std::fs::write(&ca, &ca_pem).expect("write the CA");

        // What the fakes need to reach the simulator.
        let simdir = fleet.state.join("sim");
        std::fs::create_dir_all(&simdir).expect("sim dir");
        std::fs::write(simdir.join("url"), format!("https://{}\n", server.addr())).expect("url");
        std::fs::write(simdir.join("ca.pem"), &ca_pem).expect("ca");
        let headers = simdir.join("headers");
        write_private(&headers, &format!("api-secret-key: {api_key}\n"));
        if opts.sudo {
            // The SSH user's unprivileged probes (rpm -q, ss, ...) read the host too.
            std::os::unix::fs::chown(&headers, Some(sudo_uid()), None).expect("chown headers");
        }
        for (i, h) in spec.hosts.iter().enumerate() {
            let d = fleet.state.join("hosts").join(&fleet.hosts[i]);
            std::fs::create_dir_all(&d).expect("host dir");
            // Written by the SSH user and by root (sudo).
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
            std::fs::write(d.join("name"), format!("{}\n", h.name)).expect("host name");
            let (os_release, family) = if h.os.starts_with("Ubuntu") {
                (crate::fleet::OS_UBUNTU, "deb")
            } else if h.os.contains(" 9 ") {
                (crate::fleet::OS_EL9, "rpm")
            } else {
                ("", "rpm")
            };
            if !os_release.is_empty() {
                std::fs::write(d.join("os_release"), os_release).expect("os_release");
            }
            std::fs::write(d.join("family"), format!("{family}\n")).expect("family");
        }
        std::fs::create_dir_all(dir.path().join("home")).expect("home");

        World {
            server,
            _rt: rt,
            fleet,
            sim,
            spec,
            dir,
            inventory,
            playbook,
            ca,
            sim_log,
            api_key,
            encrypted_key: opts.encrypted_key,
            sudo: opts.sudo,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `medic` with a clean environment for this world: HOME inside the run directory (no
    /// operator known_hosts or keys), no ssh-agent, the API key (and the passphrase) in the
    /// environment.
    pub fn medic(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_medic"));
        c.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path("home"))
            .env("USER", &self.fleet.user)
            .env("NO_COLOR", "1")
            .env("MEDIC_DSM_API_KEY", &self.api_key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if self.encrypted_key {
            c.env("MEDIC_SSH_PASSPHRASE", crate::fleet::PASSPHRASE);
        }
        if self.sudo {
            c.env("MEDIC_SUDO_PASSWORD", crate::fleet::SUDO_PASSWORD);
        }
        c
    }

    /// `medic apply` of the playbook on this world, journaled at `run`.journal.sqlite.
    pub fn apply_args(&self, run: &str) -> Vec<String> {
        let key = if self.encrypted_key {
            &self.fleet.encrypted_key
        } else {
            &self.fleet.client_key
        };
        let p = |p: &Path| p.display().to_string();
        vec![
            "apply".into(),
            "--inventory".into(),
            p(&self.inventory),
            "--playbook".into(),
            p(&self.playbook),
            "--set".into(),
            format!("fixed_build.linux={FIXED}"),
            "--set".into(),
            format!("fixed_build.windows={FIXED}"),
            // A real run refuses the playbook's example values: this is the test's Manager.
            "--set".into(),
            "manager_min_build=20.0.463".into(),
            "--known-hosts".into(),
            p(&self.fleet.known_hosts),
            "--ssh-key".into(),
            p(key),
            "--dsm".into(),
            self.server.base_url(),
            "--dsm-ca".into(),
            p(&self.ca),
            "--linux-agent-dir".into(),
            p(&self.fleet.bin),
            "--linux-package-dir".into(),
            p(&self.fleet.packages),
            "--allow-unverified-commands".into(),
            "--poll-interval".into(),
            POLL.into(),
            "--yes".into(),
            "--progress".into(),
            "never".into(),
            "--journal".into(),
            p(&self.path(&format!("{run}.journal.sqlite"))),
            "--events".into(),
            p(&self.path(&format!("{run}.events.jsonl"))),
        ]
    }

    pub fn run(&self, args: &[String]) -> Ran {
        let t = Instant::now();
        let out = self.medic().args(args).output().expect("run medic");
        Ran::from(out, t.elapsed())
    }

    pub fn apply(&self, run: &str) -> Ran {
        self.run(&self.apply_args(run))
    }

    pub fn resume(&self, run: &str) -> Ran {
        self.run(&self.resume_args(run))
    }

    pub fn resume_args(&self, run: &str) -> Vec<String> {
        vec![
            "resume".into(),
            "--journal".into(),
            self.path(&format!("{run}.journal.sqlite"))
                .display()
                .to_string(),
            "--yes".into(),
            "--progress".into(),
            "never".into(),
        ]
    }

    /// The plan of this world, as `medic plan --format json` writes it.
    pub fn plan_json(&self) -> serde_json::Value {
        let p = |p: &Path| p.display().to_string();
        let out = self
            .medic()
            .args([
                "plan",
                "--inventory",
                &p(&self.inventory),
                "--playbook",
                &p(&self.playbook),
                "--set",
                &format!("fixed_build.linux={FIXED}"),
                "--set",
                &format!("fixed_build.windows={FIXED}"),
                "--set",
                "manager_min_build=20.0.463",
                "--format",
                "json",
            ])
            .output()
            .expect("medic plan");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("plan JSON")
    }

    /// Every event the run wrote.
    pub fn events(&self, run: &str) -> Vec<serde_json::Value> {
        let text =
            std::fs::read_to_string(self.path(&format!("{run}.events.jsonl"))).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn state(&self, name: &str) -> SimHostState {
        self.sim
            .host_state(name)
            .unwrap_or_else(|| panic!("no simulated host {name}"))
    }

    /// Successful side effects per (host, action), as the simulator counted them.
    pub fn effects(&self) -> BTreeMap<(String, String), u32> {
        self.sim.effect_counts()
    }

    /// Every affected host is remediated (target build, a current security update,
    /// Anti-Malware online, no reboot pending) and every other host is as it started.
    pub fn assert_remediated(&self) {
        let fixed: AgentBuild = FIXED.parse().expect("fixed");
        let mut wrong = Vec::new();
        for h in &self.spec.hosts {
            let s = self.state(&h.name);
            if h.affected() {
                if !(s.build == fixed
                    && s.security_update_current
                    && s.antimalware_online
                    && !s.pending_reboot)
                {
                    wrong.push(format!("{}: {s:?}", h.name));
                }
            } else if s.build != h.build.parse().expect("build") || s.last_changed != 0 {
                wrong.push(format!("{} should be untouched: {s:?}", h.name));
            }
        }
        assert!(wrong.is_empty(), "not remediated:\n{}", wrong.join("\n"));
    }

    /// The final state of every host, without the simulator's change clock (which depends
    /// on the order in which hosts were done) and the wall-clock time of its last update.
    pub fn final_states(&self) -> Vec<SimHostState> {
        self.spec
            .hosts
            .iter()
            .map(|h| {
                let mut s = self.state(&h.name);
                s.last_changed = 0;
                s.update_ms = 0;
                s
            })
            .collect()
    }

    /// Waits until the security updates started by scheduled tasks have all finished.
    pub fn settle(&self) {
        let t = Instant::now();
        while self.server.updates_in_flight() > 0 && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        // A command an sshd was running for a killed client finishes on its own: wait until
        // no fake-agent command runs on any host.
        while !host_commands(self).is_empty() && t.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Replaces the known_hosts line of host `i` with a key the host does not have;
    /// returns the SHA256 fingerprint of the key the host really presents.
    pub fn change_host_key(&self, i: usize) -> String {
        let other = self.path(&format!("other-key-{i}"));
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&other)
            .output()
            .expect("ssh-keygen");
        assert!(out.status.success());
        let other_pub = crate::fleet::pub_key(&self.path(&format!("other-key-{i}.pub")));
        let text = std::fs::read_to_string(&self.fleet.known_hosts).expect("known_hosts");
        let prefix = format!("[{}]:{} ", self.fleet.hosts[i], self.fleet.port);
        let mut changed = 0;
        let new: String = text
            .lines()
            .map(|l| {
                if l.starts_with(&prefix) {
                    changed += 1;
                    format!("{prefix}{other_pub}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        assert_eq!(changed, 1, "{prefix} in {text}");
        self.fleet.write_known_hosts(&new);
        crate::fleet::fingerprint(&self.fleet.host_key_pub("ed25519"))
    }
}

/// A command of the fake agent running on one of the world's hosts.
#[derive(Clone, Debug)]
pub(crate) struct HostCommand {
    pub(crate) pid: u32,
    /// Its argv from the fake agent's path on: `BIN/rpm -Uvh PKG`.
    pub(crate) argv: Vec<String>,
}

impl HostCommand {
    /// Whether it changes the host: what a kill must neither lose nor repeat.
    pub(crate) fn acts(&self) -> bool {
        let name = Path::new(&self.argv[0])
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        let first = self.argv.get(1).map(String::as_str).unwrap_or("");
        match name {
            "rpm" => first.starts_with("-U"),
            "dsa_control" => matches!(first, "-m" | "-b" | "--import-bundle"),
            _ => false,
        }
    }

    pub(crate) fn show(&self) -> String {
        let mut a = self.argv.clone();
        if let Some(p) = Path::new(&a[0]).file_name() {
            a[0] = p.to_string_lossy().into_owned();
        }
        a.truncate(2);
        a.join(" ")
    }
}

/// The fake agent's processes: the commands running on the world's hosts now. The fake
/// is a shell script linked under several names in the fleet's `bin`, so each process is
/// `/bin/sh BIN/NAME ARGS...`.
pub(crate) fn host_commands(w: &World) -> Vec<HostCommand> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if let Some(i) = args
            .iter()
            .position(|a| Path::new(a).parent() == Some(w.fleet.bin.as_path()))
        {
            out.push(HostCommand {
                pid,
                argv: args[i..].to_vec(),
            });
        }
    }
    out
}
