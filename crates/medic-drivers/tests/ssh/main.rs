//! The SSH driver against a real OpenSSH server on loopback addresses and the fake Deep
//! Security agent (`tests/fleet/fakeds`): every Linux action and its facts, strict host
//! keys, deadlines that unblock, capped output, quoting, secrets and reconnection.

mod distros;
mod fleet;

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleet::{FIXED, Fleet, PASSPHRASE, fingerprint, pub_key};
use medic_drivers::ssh::{
    Endpoint, RemoteCommand, Ssh2Transport, SshConfig, SshDriver, Transport, TransportError,
    quote::sh_join, secret_from_env,
};
use medic_exec::{ActionReply, ActionStatus, Driver};
use medic_model::{AgentBuild, Value};
use secrecy::SecretString;

fn driver(cfg: SshConfig) -> (SshDriver, Arc<Ssh2Transport>) {
    let t = Arc::new(Ssh2Transport::new(&cfg).expect("transport"));
    (SshDriver::with_transport(cfg, t.clone()), t)
}

async fn act(
    d: &SshDriver,
    f: &Fleet,
    i: usize,
    action: &str,
    args: &[(&str, &str)],
) -> ActionReply {
    d.run(f.request(i, action, args)).await
}

fn ok(r: &ActionReply) {
    assert_eq!(r.status, ActionStatus::Ok, "{r:?}");
}

fn failed_with(r: &ActionReply, needle: &str) {
    match &r.status {
        ActionStatus::Failed(m) => assert!(m.contains(needle), "`{needle}` not in: {m}"),
        other => panic!("expected a failure with `{needle}`, got {other:?}"),
    }
}

fn unreachable_with(r: &ActionReply, needle: &str) -> String {
    match &r.status {
        ActionStatus::Unreachable(m) => {
            assert!(m.contains(needle), "`{needle}` not in: {m}");
            m.clone()
        }
        other => panic!("expected unreachable with `{needle}`, got {other:?}"),
    }
}

/// A refusal that no retry can change (an untrusted host key).
fn refused_with(r: &ActionReply, needle: &str) -> String {
    match &r.status {
        ActionStatus::Refused(m) => {
            assert!(m.contains(needle), "`{needle}` not in: {m}");
            m.clone()
        }
        other => panic!("expected a refusal with `{needle}`, got {other:?}"),
    }
}

fn fact<'a>(r: &'a ActionReply, k: &str) -> &'a Value {
    r.facts
        .get(k)
        .unwrap_or_else(|| panic!("no fact `{k}` in {r:?}"))
}

fn build(s: &str) -> Value {
    Value::Agent(s.parse::<AgentBuild>().expect("build"))
}

fn endpoint(f: &Fleet, i: usize) -> Endpoint {
    Endpoint {
        address: f.hosts[i].clone(),
        port: f.port,
        user: f.user.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linux_probes_upgrade_update_and_verify() {
    let f = Fleet::start(1);
    f.set(0, "relay", "yes");
    let (d, t) = driver(f.config());

    let r = act(&d, &f, 0, "agent-version", &[]).await;
    ok(&r);
    assert_eq!(fact(&r, "agent_version"), &build("20.0.0.877"));

    let r = act(&d, &f, 0, "pending-reboot", &[]).await;
    ok(&r);
    assert_eq!(fact(&r, "pending_reboot"), &Value::Bool(false));
    f.set(0, "pending_reboot", "yes");
    let r = act(&d, &f, 0, "pending-reboot", &[]).await;
    assert_eq!(fact(&r, "pending_reboot"), &Value::Bool(true));
    f.set(0, "pending_reboot", "no");

    let r = act(&d, &f, 0, "agent-status", &[]).await;
    ok(&r);
    assert_eq!(fact(&r, "antimalware"), &Value::Str("online".into()));
    assert_eq!(fact(&r, "agent_status"), &Value::Str("active".into()));

    let r = act(&d, &f, 0, "security-status", &[]).await;
    assert_eq!(fact(&r, "security_update_current"), &Value::Bool(false));

    // Below the fixed build the update fails with the advisory's error.
    let r = act(&d, &f, 0, "security-update", &[]).await;
    failed_with(&r, "IAURELAY_STATUS_DIGITAL_SIGNATURE_CERT_EXPIRE");
    assert_eq!(fact(&r, "security_update_current"), &Value::Bool(false));

    let r = act(&d, &f, 0, "verify", &[("min_build", FIXED)]).await;
    failed_with(&r, "is below 20.0.1.690");

    // Upgrade (rpm -Uvh of the staged package), then the update succeeds.
    let r = act(&d, &f, 0, "agent-upgrade", &[("to", "20.0.1-690")]).await;
    ok(&r);
    assert_eq!(fact(&r, "agent_version"), &build(FIXED));
    assert_eq!(f.get(0, "installs").as_deref(), Some("1"));
    // Already there: nothing is installed again.
    let r = act(&d, &f, 0, "agent-upgrade", &[("to", "20.0.1-690")]).await;
    ok(&r);
    assert_eq!(f.get(0, "installs").as_deref(), Some("1"));

    // The update completes 2 s (of `date +%s`, so at least 1 s) after the heartbeat.
    std::fs::write(f.state.join("update_delay"), "2\n").expect("delay");
    let started = Instant::now();
    let r = act(&d, &f, 0, "security-update", &[]).await;
    ok(&r);
    assert!(started.elapsed() >= Duration::from_secs(1), "did not poll");
    assert_eq!(fact(&r, "security_update_current"), &Value::Bool(true));

    let r = act(&d, &f, 0, "verify", &[("min_build", FIXED)]).await;
    ok(&r);
    assert_eq!(fact(&r, "agent_version"), &build(FIXED));
    assert_eq!(fact(&r, "antimalware"), &Value::Str("online".into()));
    assert_eq!(fact(&r, "pending_reboot"), &Value::Bool(false));

    // A pending reboot on Linux is a note, not a failure (nothing here reboots Linux).
    f.set(0, "pending_reboot", "yes");
    let r = act(&d, &f, 0, "verify", &[("min_build", FIXED)]).await;
    ok(&r);
    assert!(
        r.note().is_some_and(|n| n.contains("a reboot is pending")),
        "{r:?}"
    );
    f.set(0, "pending_reboot", "no");

    // Downgrades and missing packages are refused.
    let r = act(&d, &f, 0, "agent-upgrade", &[("to", "20.0.0-100")]).await;
    failed_with(&r, "refusing to downgrade");
    // A missing package is known before anything runs: refused, not retried.
    let r = act(&d, &f, 0, "agent-upgrade", &[("to", "20.0.1-999")]).await;
    refused_with(
        &r,
        "host host-0 (Red Hat Enterprise Linux (or a rebuild) 8, from os-release): no agent package Agent-Core-RedHat_EL8-20.0.1-999.x86_64.rpm",
    );
    let r = act(&d, &f, 0, "agent-upgrade", &[("to", "20.0.1")]).await;
    failed_with(&r, "argument `to`");

    // Anti-Malware offline is repaired by a reinstall of the same build.
    f.set(0, "am", "offline");
    let r = act(&d, &f, 0, "agent-status", &[]).await;
    assert_eq!(fact(&r, "antimalware"), &Value::Str("offline".into()));
    let r = act(&d, &f, 0, "reinstall", &[]).await;
    ok(&r);
    assert_eq!(fact(&r, "antimalware"), &Value::Str("online".into()));
    assert_eq!(f.get(0, "build").as_deref(), Some(FIXED));

    // Windows-only and manager actions say so.
    failed_with(
        &act(&d, &f, 0, "windows-certs", &[]).await,
        "does not apply to linux",
    );
    failed_with(
        &act(&d, &f, 0, "windows-prereq", &[]).await,
        "does not apply to linux",
    );
    failed_with(&act(&d, &f, 0, "manager-upgrade", &[]).await, "manager");
    failed_with(&act(&d, &f, 0, "frobnicate", &[]).await, "does not know");

    // Every step above went over one connection.
    assert_eq!(t.stats().connects, 1, "{:?}", t.stats());
    assert!(d.idempotent("verify") && !d.idempotent("agent-upgrade"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_agent_uses_dpkg() {
    let f = Fleet::start(1);
    f.set(0, "family", "deb");
    f.set(0, "build", "20.0.0.877");
    let (d, _t) = driver(f.config());
    let r = act(&d, &f, 0, "agent-version", &[]).await;
    assert_eq!(fact(&r, "agent_version"), &build("20.0.0-877"));
    let r = act(&d, &f, 0, "agent-upgrade", &[("to", "20.0.1-800")]).await;
    ok(&r);
    assert_eq!(fact(&r, "agent_version"), &build("20.0.1-800"));
    assert_eq!(f.get(0, "build").as_deref(), Some("20.0.1.800"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_relay_bundle_export_import_and_cache_clear() {
    let f = Fleet::start(2);
    // Host 0: the connected bundle source, already fixed and updated; host 1: an offline
    // relay.
    f.set(0, "relay", "yes");
    f.set(0, "build", FIXED);
    f.set(1, "relay", "yes");
    f.set(1, "offline", "yes");
    let (d, _t) = driver(f.config());
    let bundle = [("bundle", "dsupdate-medic")];

    let r = act(&d, &f, 0, "bundle-export", &bundle).await;
    failed_with(&r, "nothing current to bundle");
    ok(&act(&d, &f, 0, "security-update", &[]).await);
    let r = act(&d, &f, 0, "bundle-export", &bundle).await;
    ok(&r);
    assert_eq!(fact(&r, "bundle_exported"), &Value::Bool(true));

    // The offline relay must be on the same build first.
    let r = act(&d, &f, 1, "bundle-import", &bundle).await;
    failed_with(&r, "cannot be imported on build 20.0.0.877");
    failed_with(
        &act(&d, &f, 1, "security-update", &[("source", "bundle")]).await,
        "no update bundle imported",
    );
    ok(&act(&d, &f, 1, "agent-upgrade", &[("to", "20.0.1-690")]).await);
    let r = act(&d, &f, 1, "bundle-import", &bundle).await;
    ok(&r);
    assert_eq!(fact(&r, "bundle_imported"), &Value::Bool(true));
    let r = act(&d, &f, 1, "bundle-status", &bundle).await;
    assert_eq!(fact(&r, "bundle_exported"), &Value::Bool(true));
    assert_eq!(fact(&r, "bundle_imported"), &Value::Bool(true));
    ok(&act(&d, &f, 1, "security-update", &[("source", "bundle")]).await);
    failed_with(
        &act(&d, &f, 1, "security-update", &[("source", "usb")]).await,
        "unknown source",
    );

    ok(&act(&d, &f, 0, "cache-clear", &[]).await);
    assert_eq!(f.get(0, "cache_clears").as_deref(), Some("1"));

    // The unverified placeholders are refused unless allowed.
    let mut cfg = f.config();
    cfg.allow_unverified_commands = false;
    let (strict, _t) = driver(cfg);
    failed_with(
        &act(&strict, &f, 0, "bundle-export", &bundle).await,
        "not verified",
    );
    failed_with(
        &act(&strict, &f, 0, "cache-clear", &[]).await,
        "not verified",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_waits_for_a_new_boot_id_and_reconnects() {
    let f = Fleet::start(1);
    f.set(0, "pending_reboot", "yes");
    let (d, t) = driver(f.config());
    let r = act(&d, &f, 0, "pending-reboot", &[]).await;
    assert_eq!(fact(&r, "pending_reboot"), &Value::Bool(true));
    let boot_before = f.get(0, "boot_id");
    let connects = t.stats().connects;

    let started = Instant::now();
    let r = act(&d, &f, 0, "reboot", &[]).await;
    ok(&r);
    assert_eq!(fact(&r, "pending_reboot"), &Value::Bool(false));
    // The fake agent stays silent for a second after the reboot; the step waited.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(f.get(0, "reboots").as_deref(), Some("1"));
    assert_ne!(f.get(0, "boot_id"), boot_before);
    assert!(t.stats().connects > connects, "{:?}", t.stats());

    // The new connection serves the next steps.
    ok(&act(&d, &f, 0, "agent-version", &[]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_key_is_refused_unless_new_keys_are_accepted() {
    let f = Fleet::start(1);
    f.write_known_hosts("");
    let (d, _t) = driver(f.config());
    let r = act(&d, &f, 0, "agent-version", &[]).await;
    let m = refused_with(&r, "unknown");
    let fps = [
        fingerprint(&f.host_key_pub("ed25519")),
        fingerprint(&f.host_key_pub("ecdsa")),
    ];
    assert!(
        fps.iter().any(|fp| m.contains(fp.as_str())),
        "{m} lacks {fps:?}"
    );
    assert_eq!(f.get(0, "build"), None, "the fake agent was reached");

    let mut cfg = f.config();
    cfg.accept_new_host_keys = true;
    let (learner, _t) = driver(cfg);
    ok(&act(&learner, &f, 0, "agent-version", &[]).await);
    let text = std::fs::read_to_string(&f.known_hosts).expect("known_hosts");
    assert!(
        text.starts_with(&format!("[{}]:{} ", f.hosts[0], f.port)),
        "{text}"
    );

    // Now known: a strict driver connects.
    let (strict, _t) = driver(f.config());
    ok(&act(&strict, &f, 0, "agent-version", &[]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_host_key_is_refused_naming_the_fingerprint() {
    let f = Fleet::start(1);
    let other = f.root().join("other");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success());
    let other_pub = f.root().join("other.pub");
    f.write_known_hosts(&format!(
        "[{}]:{} {}\n",
        f.hosts[0],
        f.port,
        pub_key(&other_pub)
    ));
    let server_fp = fingerprint(&f.host_key_pub("ed25519"));

    for accept_new in [false, true] {
        let mut cfg = f.config();
        cfg.accept_new_host_keys = accept_new;
        let (d, _t) = driver(cfg);
        let r = act(&d, &f, 0, "agent-version", &[]).await;
        let m = refused_with(&r, "HOST KEY CHANGED");
        assert!(m.contains(&server_fp), "{m} lacks {server_fp}");
        assert!(m.contains("known_hosts:1"), "{m}");
    }
    assert_eq!(f.get(0, "build"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_listed_with_another_key_type_is_not_falsely_refused() {
    let f = Fleet::start(1);
    let (ed, ec) = (
        pub_key(&f.host_key_pub("ed25519")),
        pub_key(&f.host_key_pub("ecdsa")),
    );
    let h = format!("[{}]:{}", f.hosts[0], f.port);
    // The server offers ed25519 and ecdsa; whichever one the file lists is negotiated.
    for text in [
        format!("{h} {ec}\n"),
        format!("{h} {ed}\n"),
        format!("{h} {ec}\n{h} {ed}\n"),
    ] {
        f.write_known_hosts(&text);
        let (d, _t) = driver(f.config());
        ok(&act(&d, &f, 0, "agent-version", &[]).await);
    }
    // Hashed entries (OpenSSH's HashKnownHosts) work too.
    f.write_known_hosts(&format!("{h} {ec}\n"));
    let out = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&f.known_hosts)
        .output()
        .expect("ssh-keygen -H");
    assert!(out.status.success());
    let text = std::fs::read_to_string(&f.known_hosts).expect("known_hosts");
    assert!(text.starts_with("|1|"), "{text}");
    let (d, _t) = driver(f.config());
    ok(&act(&d, &f, 0, "agent-version", &[]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_hosts_fail_within_their_deadline() {
    let f = Fleet::start(1);
    let mut cfg = f.config();
    cfg.connect_timeout = Duration::from_secs(1);
    let (d, _t) = driver(cfg);

    // Nothing listens there.
    let mut req = f.request(0, "agent-version", &[]);
    if let Some(h) = req.host.as_mut() {
        h.address = f.unused_addr(250);
    }
    let started = Instant::now();
    let r = d.run(req).await;
    unreachable_with(&r, "cannot connect");
    assert!(started.elapsed() < Duration::from_secs(4));

    // A listener that never says a word: the handshake hangs until the deadline.
    let silent_addr = f.unused_addr(251);
    let silent = std::net::TcpListener::bind(format!("{silent_addr}:{}", f.port)).expect("bind");
    let mut req = f.request(0, "agent-version", &[]);
    if let Some(h) = req.host.as_mut() {
        h.address = silent_addr;
    }
    let started = Instant::now();
    let r = d.run(req).await;
    let elapsed = started.elapsed();
    unreachable_with(&r, "cannot connect");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(6),
        "{elapsed:?}"
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_commands_are_unblocked_at_their_deadline() {
    let f = Fleet::start(1);
    let cfg = f.config();
    let t = Ssh2Transport::new(&cfg).expect("transport");
    let ep = endpoint(&f, 0);

    // The remote `timeout` only cleans up after the test; the deadline is 1.5 s.
    let started = Instant::now();
    let cmd = RemoteCommand::new("timeout -k 1 8 sleep 1000", Duration::from_millis(1500));
    let r = t.exec(&ep, cmd).await;
    let elapsed = started.elapsed();
    assert!(matches!(r, Err(TransportError::Timeout { .. })), "{r:?}");
    assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");

    // Dropping the future (the executor's step timeout) also ends the command.
    let cmd = RemoteCommand::new("timeout -k 1 8 sleep 1000", Duration::from_secs(60));
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_millis(800), t.exec(&ep, cmd)).await;
    assert!(r.is_err());
    assert!(started.elapsed() < Duration::from_secs(5));

    // The host is still usable: a new connection replaces the killed one.
    let out = t
        .exec(
            &ep,
            RemoteCommand::new("echo back", Duration::from_secs(10)),
        )
        .await
        .expect("echo");
    assert_eq!(out.stdout.text(), "back\n");
    assert_eq!(t.stats().connects, 3, "{:?}", t.stats());

    // Through the driver the remote `timeout` stops a hung agent command first, so the
    // step fails with its exit code and the connection survives.
    let mut cfg = f.config();
    cfg.command_timeout = Duration::from_secs(1);
    f.set(0, "build", FIXED);
    std::fs::write(f.state.join("update_delay"), "0\n").expect("delay");
    let dsa = f.bin.join("dsa_control");
    std::fs::remove_file(&dsa).expect("rm");
    std::fs::write(&dsa, "#!/bin/sh\nexec sleep 1000\n").expect("write");
    std::fs::set_permissions(&dsa, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (d, _t) = driver(cfg);
    let started = Instant::now();
    let r = act(&d, &f, 0, "security-update", &[]).await;
    failed_with(&r, "exit code 124");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_stdout_and_stderr_do_not_deadlock_and_are_capped() {
    let f = Fleet::start(1);
    let cfg = f.config();
    let t = Ssh2Transport::new(&cfg).expect("transport");
    let ep = endpoint(&f, 0);
    const N: u64 = 4 * 1024 * 1024;
    for line in [
        // Both at once.
        format!(
            "head -c {N} /dev/zero | tr '\\0' o & head -c {N} /dev/zero | tr '\\0' e >&2; wait"
        ),
        // All of stderr before any stdout: a reader blocked on stdout would hang here.
        format!(
            "head -c {N} /dev/zero | tr '\\0' e >&2; head -c {N} /dev/zero | tr '\\0' o; echo END"
        ),
    ] {
        let started = Instant::now();
        let out = t
            .exec(
                &ep,
                RemoteCommand::new(line.clone(), Duration::from_secs(30)),
            )
            .await
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(out.success());
        assert!(out.stderr.total() == N, "{}", out.stderr.total());
        assert!(out.stdout.total() >= N);
        assert!(out.stdout.truncated() && out.stderr.truncated());
        assert_eq!(out.stdout.kept(), 2 * 64 * 1024);
        assert_eq!(out.stderr.kept(), 2 * 64 * 1024);
        assert!(out.stdout.head().iter().all(|b| *b == b'o'));
        assert!(out.stderr.tail().iter().all(|b| *b == b'e'));
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_arguments_reach_the_remote_program_literally() {
    let f = Fleet::start(1);
    let pwned = f.root().join("pwned");
    let p = pwned.display();
    let hostile =
        format!("$(touch {p}); `touch {p}`; touch {p} && echo \"x\" 'y' \\ $HOME\nnext line; * ?");

    // Through the transport: printf gets each word unchanged.
    let cfg = f.config();
    let t = Ssh2Transport::new(&cfg).expect("transport");
    let words = ["printf", "%s\\0", hostile.as_str(), "it's", "", ";", "a\nb"];
    let line = sh_join(&words).expect("quote");
    let out = t
        .exec(
            &endpoint(&f, 0),
            RemoteCommand::new(line, Duration::from_secs(10)),
        )
        .await
        .expect("printf");
    let got: Vec<&[u8]> = out.stdout.head().split(|b| *b == 0).collect();
    assert_eq!(got[0], hostile.as_bytes());
    assert_eq!(got[1], b"it's");
    assert_eq!(got[2], b"");
    assert_eq!(got[3], b";");
    assert_eq!(got[4], b"a\nb");

    // Through the driver: the bundle name reaches dsa_control as one argument.
    f.set(0, "relay", "yes");
    let (d, _t) = driver(f.config());
    let r = act(&d, &f, 0, "bundle-export", &[("bundle", hostile.as_str())]).await;
    failed_with(&r, "nothing current to bundle");
    assert_eq!(
        f.get(0, "last_bundle_arg").as_deref(),
        Some(hostile.as_str())
    );
    assert!(!pwned.exists(), "a hostile argument was executed");
    // A NUL cannot be carried: refused before anything is sent.
    failed_with(
        &act(&d, &f, 0, "bundle-export", &[("bundle", "a\0b")]).await,
        "NUL",
    );
}

/// Every line gives the same exit code, stdout and stderr in the shared shell as in a
/// session of its own, including output that imitates the shell's end-of-command marker,
/// output without a final newline, `exit` (which must not end the shared shell), a
/// command that reads stdin (which must not eat the next request) and capped output;
/// and the whole table runs on one connection, in one shell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_shell_answers_exactly_like_a_session_of_its_own() {
    let f = Fleet::start(1);
    let cfg = f.config();
    let t = Ssh2Transport::new(&cfg).expect("transport");
    let ep = endpoint(&f, 0);
    let quoted = |w: &[&str]| sh_join(w).expect("quote");
    let lines = [
        "echo hello".to_owned(),
        "printf 'no newline'".to_owned(),
        "printf 'x\\n'; printf 'to stderr' >&2; exit 3".to_owned(),
        "exit 7".to_owned(),
        "printf '\\nmedic-0000000000000000-1 0\\n'; printf '\\nmedic-0000000000000000-1\\n' >&2"
            .to_owned(),
        "cat; echo read-nothing".to_owned(),
        quoted(&["printf", "%s|", "a\nb", "it's", "", "$(touch /tmp/pwned)"]),
        quoted(&[
            "sh",
            "-c",
            "echo \"$1\"\necho \"$2\" >&2\nexit 4",
            "name",
            "one two",
            "three",
        ]),
        "head -c 300000 /dev/zero | tr '\\0' o; head -c 200000 /dev/zero | tr '\\0' e >&2"
            .to_owned(),
        "false".to_owned(),
        "true".to_owned(),
    ];
    for line in &lines {
        let own = t
            .exec(
                &ep,
                RemoteCommand::new(line.clone(), Duration::from_secs(20)),
            )
            .await
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        let shared = t
            .exec(
                &ep,
                RemoteCommand::new(line.clone(), Duration::from_secs(20)).in_shared_shell(),
            )
            .await
            .unwrap_or_else(|e| panic!("{line} (shared): {e}"));
        assert_eq!(shared.exit, own.exit, "{line}");
        assert_eq!(shared.stdout, own.stdout, "{line}");
        assert_eq!(shared.stderr, own.stderr, "{line}");
    }
    assert!(!std::path::Path::new("/tmp/pwned").exists());
    assert_eq!(t.stats().connects, 1, "{:?}", t.stats());
    assert_eq!(t.stats().signed_here, 1, "{:?}", t.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_command_in_the_shared_shell_ends_at_its_deadline() {
    let f = Fleet::start(1);
    let cfg = f.config();
    let t = Ssh2Transport::new(&cfg).expect("transport");
    let ep = endpoint(&f, 0);
    let started = Instant::now();
    let cmd = RemoteCommand::new("timeout -k 1 8 sleep 1000", Duration::from_millis(1500))
        .in_shared_shell();
    let r = t.exec(&ep, cmd).await;
    assert!(matches!(r, Err(TransportError::Timeout { .. })), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(6));
    // The killed connection (and its shell) is replaced.
    let out = t
        .exec(
            &ep,
            RemoteCommand::new("echo back", Duration::from_secs(10)).in_shared_shell(),
        )
        .await
        .expect("echo");
    assert_eq!(out.stdout.text(), "back\n");
    assert_eq!(t.stats().connects, 2, "{:?}", t.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_travel_on_stdin() {
    let f = Fleet::start(1);
    let cfg = f.config();
    let t = Ssh2Transport::new(&cfg).expect("transport");
    let mut cmd = RemoteCommand::new("cat", Duration::from_secs(10));
    cmd.stdin = Some(SecretString::from("s3cret on stdin\n".to_owned()));
    let out = t.exec(&endpoint(&f, 0), cmd).await.expect("cat");
    assert_eq!(out.stdout.text(), "s3cret on stdin\n");

    // The self-protection password: dsa_control gets it, the command line never has it.
    f.set(0, "selfprotect_password", "Pa$$ 'w0rd'");
    let mut cfg = f.config();
    cfg.agent_password = Some(SecretString::from("Pa$$ 'w0rd'".to_owned()));
    let (d, _t) = driver(cfg);
    ok(&act(&d, &f, 0, "agent-upgrade", &[("to", "20.0.1-690")]).await);
    assert_eq!(f.get(0, "selfprotect").as_deref(), Some("off"));

    let mut cfg = f.config();
    cfg.agent_password = Some(SecretString::from("n0t-the-pw-5521".to_owned()));
    let (d, _t) = driver(cfg);
    let r = act(&d, &f, 0, "agent-upgrade", &[("to", "20.0.1-800")]).await;
    failed_with(&r, "self-protection");
    assert!(!format!("{r:?}").contains("n0t-the-pw-5521"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_bounded_and_reused() {
    // 20 hosts: two sshd instances; each address keeps its own agent state.
    let f = Fleet::start(20);
    for i in 0..20 {
        f.set(i, "build", &format!("20.0.0.{}", 100 + i));
    }
    let mut cfg = f.config();
    cfg.max_connections = 4;
    let (d, t) = driver(cfg);
    let d = Arc::new(d);
    for _round in 0..2 {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..20 {
            let d = d.clone();
            let req = f.request(i, "agent-version", &[]);
            tasks.spawn(async move { (i, d.run(req).await) });
        }
        while let Some(r) = tasks.join_next().await {
            let (i, r) = r.expect("task");
            ok(&r);
            assert_eq!(
                fact(&r, "agent_version"),
                &build(&format!("20.0.0.{}", 100 + i))
            );
        }
    }
    let s = t.stats();
    assert!(s.max_live <= 4, "{s:?}");
    assert!(s.live <= 4, "{s:?}");
    assert!(s.connects >= 20, "{s:?}");

    // One host's steps share one connection.
    let (d, t) = driver(f.config());
    for _ in 0..3 {
        ok(&act(&d, &f, 7, "agent-version", &[]).await);
    }
    assert_eq!(t.stats().connects, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passphrase_fails_without_showing_it() {
    let f = Fleet::start(1);
    let mut cfg = f.config();
    cfg.identity_files = vec![f.encrypted_key.clone()];
    cfg.passphrase = Some(SecretString::from("not-the-passphrase-7781".to_owned()));
    assert!(!format!("{cfg:?}").contains("not-the-passphrase-7781"));
    let (d, _t) = driver(cfg);
    let r = act(&d, &f, 0, "agent-version", &[]).await;
    let m = unreachable_with(&r, "authentication");
    assert!(!m.contains("not-the-passphrase-7781"), "{m}");
    assert!(!format!("{r:?}").contains("not-the-passphrase-7781"));
}

const CHILD: &str = "MEDIC_SSH_TEST_CHILD";
const PASSPHRASE_ENV: &str = "MEDIC_TEST_SSH_PASSPHRASE";

/// Sets the passphrase's environment variable in a child process (setting it in this
/// multi-threaded one would race other tests), which runs [`passphrase_env_child`].
#[test]
fn passphrase_protected_key_with_the_passphrase_from_the_environment() {
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(exe)
        .args([
            "passphrase_env_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env(PASSPHRASE_ENV, PASSPHRASE)
        .output()
        .expect("child");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("passphrase child: ok"), "{text}");
    assert!(
        !text.contains(PASSPHRASE),
        "the passphrase was printed: {text}"
    );
}

/// Runs only as the child of the test above (returns at once otherwise).
#[test]
fn passphrase_env_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let f = Fleet::start(1);
        let mut cfg = f.config();
        cfg.identity_files = vec![f.encrypted_key.clone()];
        cfg.passphrase = Some(secret_from_env(PASSPHRASE_ENV).expect("env"));
        let (d, t) = driver(cfg);
        ok(&act(&d, &f, 0, "agent-version", &[]).await);
        // Decrypted once, at start-up, and signed here: not by libssh2 per connection.
        assert_eq!(t.stats().signed_here, 1, "{:?}", t.stats());
        println!("passphrase child: ok");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_agent_is_tried_first() {
    let f = Fleet::start(1);
    let sock = f.root().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent");
    let started = Instant::now();
    while !sock.exists() && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let added = Command::new("ssh-add")
        .arg(&f.client_key)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .expect("ssh-add");
    assert!(added.status.success(), "{added:?}");
    let mut cfg = f.config();
    cfg.use_agent = true;
    cfg.agent_socket = Some(sock.clone());
    cfg.identity_files = Vec::new();
    let (d, _t) = driver(cfg);
    let r = act(&d, &f, 0, "agent-version", &[]).await;
    let _ = agent.kill();
    let _ = agent.wait();
    ok(&r);
}
