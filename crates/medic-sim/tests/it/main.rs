//! medic-drivers' `dsm` driver, its client and the inventory import against the DSM
//! simulator served over real HTTP(S) on loopback: batched polling (counted on the server),
//! a 429 storm, 5xx retries, a bad API key, TLS refusals and a custom CA, and the import
//! (request count and a plan identical to the simulator's own fleet). They live here, not in
//! medic-drivers, so that medic-drivers does not depend on the simulator, even for tests.
//!
//! `prism_accepts_every_client_request` is the contract test against the vendor spec; it is
//! ignored here and run by `tests/contract/prism.sh`, which starts the validating mock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use medic_drivers::Verifier;
use medic_drivers::dsm::{
    DIRECT_DOWNLOAD_SETTING, DsmClient, DsmConfig, DsmDriver, DsmDriverConfig, DsmError,
    ImportOptions, RateLimit, RelayGroupHint, RetryPolicy, import_inventory,
};
use medic_exec::{ActionReply, ActionRequest, ActionStatus, Driver};
use medic_model::{Host, Inventory, Value};
use medic_plan::PlanHost;
use medic_sim::driver::SimDriver;
use medic_sim::server::{DsmServer, HttpFault, ServerConfig, TlsSetup, serve};
use medic_sim::{CERT_EXPIRE_ERROR, SimConfig, SimFleet, generate_inventory_yaml};
use secrecy::SecretString;
use serde_json::Value as J;

mod shared_log;

const KEY: &str = "medic-test-key-7f3a9c";
const LAB: &str = include_str!("../../../../examples/lab/inventory.yaml");
const PLAYBOOK: &str = include_str!("../../../../playbooks/ds-activeupdate-cert-2023.yaml");

struct Lab {
    server: DsmServer,
    inventory: Inventory,
    fleet: SimFleet,
}

fn inventory(yaml: &str) -> Inventory {
    match medic_config::load_inventory("test.yaml", yaml) {
        Ok(i) => i,
        Err(p) => panic!("test inventory invalid:\n{p}"),
    }
}

async fn lab_with(yaml: &str, tls: TlsSetup, faults: Vec<HttpFault>, time_scale: f64) -> Lab {
    let inventory = inventory(yaml);
    let fleet = SimFleet::open(&inventory, SimConfig::demo(1), None).expect("fleet opens");
    let mut config = ServerConfig::new(SecretString::from(KEY.to_owned()));
    config.tls = tls;
    config.faults = faults;
    config.time_scale = time_scale;
    let server = serve(fleet.clone(), &inventory, config)
        .await
        .expect("server starts");
    Lab {
        server,
        inventory,
        fleet,
    }
}

async fn lab(yaml: &str) -> Lab {
    lab_with(yaml, TlsSetup::Plain, Vec::new(), 3000.0).await
}

/// Fast retries so that fault tests take milliseconds, and no rate limit unless asked.
fn config_for(lab: &Lab, key: &str) -> DsmConfig {
    let mut c = DsmConfig::new(&lab.server.base_url(), SecretString::from(key.to_owned()))
        .expect("url is valid");
    c.retry = RetryPolicy {
        max_retries: 10,
        initial: Duration::from_millis(5),
        max: Duration::from_millis(80),
        throttled_budget: Duration::from_secs(20),
    };
    c.rate = RateLimit {
        per_second: 0.0,
        burst: 1,
    };
    c.connect_timeout = Duration::from_secs(5);
    c.read_timeout = Duration::from_secs(10);
    if let Some(pem) = lab.server.ca_pem() {
        c.ca_pem = Some(pem.as_bytes().to_vec());
    }
    c
}

fn client(lab: &Lab) -> DsmClient {
    DsmClient::new(config_for(lab, KEY)).expect("client builds")
}

fn plan_host(h: &Host) -> PlanHost {
    PlanHost {
        name: h.name.clone(),
        address: h.address.clone(),
        port: h.port,
        user: h.user.clone(),
        platform: Some(h.platform),
        role: h.role(),
        relay_group: h.relay_group.clone(),
        os: None,
        r#become: None,
        zone: None,
    }
}

fn request(h: &Host, action: &str) -> ActionRequest {
    ActionRequest {
        step: format!("test/{}", h.name),
        host: Some(plan_host(h)),
        action: action.to_owned(),
        args: BTreeMap::new(),
        attempt: 1,
        after_ms: None,
        fence: None,
    }
}

/// A request of a step whose host's previous step (the upgrade) finished at `after_ms`.
fn request_after(h: &Host, action: &str, after_ms: i64) -> ActionRequest {
    ActionRequest {
        after_ms: Some(after_ms),
        ..request(h, action)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .expect("clock after 1970")
}

fn driver(lab: &Lab, poll_ms: u64) -> DsmDriver {
    DsmDriver::new(
        client(lab),
        DsmDriverConfig {
            poll_interval: Duration::from_millis(poll_ms),
            page_size: 5000,
        },
    )
}

/// Runs `action` on every host at once through the driver.
async fn run_all(d: &DsmDriver, hosts: &[Host], action: &str) -> Vec<(String, ActionReply)> {
    run_all_on(Arc::new(d.clone()), hosts, action, None).await
}

/// Runs `action` on every host at once through `d`, as steps whose hosts' previous steps
/// finished at `after_ms`.
async fn run_all_on(
    d: Arc<dyn Driver>,
    hosts: &[Host],
    action: &str,
    after_ms: Option<i64>,
) -> Vec<(String, ActionReply)> {
    let mut set = tokio::task::JoinSet::new();
    for h in hosts {
        let d = d.clone();
        let req = ActionRequest {
            after_ms,
            ..request(h, action)
        };
        let name = h.name.clone();
        set.spawn(async move { (name, d.run(req).await) });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.expect("task completes"));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn fact_bool(r: &ActionReply, k: &str) -> Option<bool> {
    match r.facts.get(k) {
        Some(Value::Bool(b)) => Some(*b),
        _ => None,
    }
}

/// Every reply agrees with what the fleet says happened.
fn assert_matches_fleet(fleet: &SimFleet, replies: &[(String, ActionReply)]) {
    for (name, r) in replies {
        let st = fleet.host_state(name).expect("host exists");
        match &r.status {
            ActionStatus::Ok => assert!(st.security_update_current, "{name}: ok but not current"),
            ActionStatus::Failed(m) => {
                assert!(!st.security_update_current, "{name}: failed but current");
                let fleet_error = st.last_security_update_error.unwrap_or_default();
                assert_eq!(m, &fleet_error, "{name}");
                assert!(m.contains(CERT_EXPIRE_ERROR), "{name}: {m}");
            }
            ActionStatus::Unreachable(m) | ActionStatus::Refused(m) | ActionStatus::Lost(m) => {
                panic!("{name}: not reached: {m}")
            }
        }
        assert_eq!(
            fact_bool(r, "security_update_current"),
            Some(st.security_update_current),
            "{name}"
        );
    }
}

fn upgrade_relays(lab: &Lab) {
    let args: BTreeMap<String, String> = [("to".to_owned(), "20.0.1-690".to_owned())].into();
    let fixed: medic_model::AgentBuild = "20.0.1-690".parse().expect("build");
    for h in lab
        .inventory
        .hosts
        .iter()
        .filter(|h| h.relay && h.agent_version < fixed)
    {
        let out = lab.fleet.perform(&h.name, "agent-upgrade", &args);
        assert!(out.is_ok(), "{}: {out:?}", h.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_updates_are_polled_with_one_search_per_interval_for_all_hosts() {
    let lab = lab_with(
        &generate_inventory_yaml(200, 11),
        TlsSetup::Plain,
        Vec::new(),
        1500.0,
    )
    .await;
    upgrade_relays(&lab);
    let d = driver(&lab, 50);
    // The 4 Relays (now fixed) and 40 Agents, some on fixed builds, most affected.
    let hosts: Vec<Host> = lab
        .inventory
        .hosts
        .iter()
        .filter(|h| h.relay)
        .chain(lab.inventory.hosts.iter().filter(|h| !h.relay).take(40))
        .cloned()
        .collect();
    let start = Instant::now();
    let replies = run_all(&d, &hosts, "security-update").await;
    let elapsed = start.elapsed();
    assert_eq!(replies.len(), 44);
    assert_matches_fleet(&lab.fleet, &replies);
    let ok = replies
        .iter()
        .filter(|(_, r)| r.status == ActionStatus::Ok)
        .count();
    assert!((4..44).contains(&ok), "a mix of outcomes: {ok} ok");

    let tasks = lab.server.request_count("POST", "/api/scheduledtasks");
    let searches = lab.server.request_count("POST", "/api/computers/search");
    let polls = d.poll_searches();
    eprintln!(
        "44 security updates in {elapsed:?}: {tasks} task creations, {searches} searches ({polls} polls + 1 host map), {} requests in all",
        lab.server.requests().len()
    );
    assert_eq!(tasks, 44, "one run-now task per computer");
    assert_eq!(searches as u64, polls + 1, "the host map is read once");
    // Never one call per host: no per-computer reads, and far fewer polls than the 88
    // (baseline + completion per host) that per-host polling would need at the very least.
    assert_eq!(lab.server.request_count("GET", "/api/computers/{id}"), 0);
    assert!(polls < 44, "{polls} polls");
    // At most one search per 50 ms interval: the poller sleeps until the last search plus
    // the interval, so a slow machine only sends fewer (this bound cannot fail for being
    // slow, only for polling too often).
    let bound = elapsed.as_millis() / 50 + 2;
    assert!(u128::from(polls) <= bound, "{polls} polls in {elapsed:?}");
    assert_eq!(lab.server.requests().len(), tasks + searches);
    // The one-shot tasks deleted themselves.
    assert_eq!(lab.server.updates_in_flight(), 0);
}

/// Starts a security update of `host` through a driver that is then dropped, as a killed
/// run is: the Manager goes on with the update. Returns once it is in flight.
async fn start_then_kill(lab: &Lab, host: &Host, attempt: u32) {
    let killed = driver(lab, 20);
    let mut req = request(host, "security-update");
    req.attempt = attempt;
    let run = tokio::spawn(async move { killed.run(req).await });
    let deadline = Instant::now() + Duration::from_secs(10);
    while lab.server.updates_in_flight() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    run.abort();
    assert_eq!(lab.server.updates_in_flight(), 1, "no update in flight");
}

/// A run killed while the Manager runs a host's security update leaves its step running,
/// and the resume runs the step again (check, then act unless done). Neither may start a
/// second update: the check answers once the update has ended, and the action awaits an
/// update in progress instead of creating a task (the e2e crash torture found hosts
/// updated twice: 10 of 47 in one run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_security_update_in_progress_is_awaited_not_started_again() {
    // About a second per update (300 s / 300): long enough to be caught in flight.
    let lab = lab_with(LAB, TlsSetup::Plain, Vec::new(), 300.0).await;
    upgrade_relays(&lab);
    let host = lab
        .inventory
        .hosts
        .iter()
        .find(|h| h.name == "relay-tky-1")
        .cloned()
        .expect("relay-tky-1");
    let updates = || {
        lab.fleet
            .effect_counts()
            .get(&(host.name.clone(), "security-update".to_owned()))
            .copied()
            .unwrap_or(0)
    };
    let resumed = driver(&lab, 20);
    let upgraded_ms = now_ms();

    // The resume's check waits for the killed run's update and finds it done: it ended
    // after the upgrade.
    start_then_kill(&lab, &host, 1).await;
    let probe = resumed
        .run(request_after(&host, "security-status", upgraded_ms))
        .await;
    assert_eq!(probe.status, ActionStatus::Ok, "{probe:?}");
    assert_eq!(fact_bool(&probe, "security_update_current"), Some(true));
    assert_eq!(lab.server.updates_in_flight(), 0);
    assert_eq!(updates(), 1);

    // An action started while an update runs (the update began between check and act, or
    // an attempt timed out while the Manager went on) awaits it.
    start_then_kill(&lab, &host, 2).await;
    let mut req = request(&host, "security-update");
    req.attempt = 3;
    let reply = resumed.run(req).await;
    assert_eq!(reply.status, ActionStatus::Ok, "{reply:?}");
    assert_matches_fleet(&lab.fleet, &[(host.name.clone(), reply)]);
    assert_eq!(
        updates(),
        2,
        "one update per killed run, none from the resume"
    );
    assert_eq!(lab.server.request_count("POST", "/api/scheduledtasks"), 2);
    assert_eq!(lab.server.updates_in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_slows_the_updates_but_loses_nothing() {
    let lab = lab_with(
        LAB,
        TlsSetup::Plain,
        vec![HttpFault::TooManyRequests {
            count: 40,
            after: 3,
        }],
        3000.0,
    )
    .await;
    upgrade_relays(&lab);
    let mut cfg = config_for(&lab, KEY);
    cfg.rate = RateLimit {
        per_second: 200.0,
        burst: 4,
    };
    let d = DsmDriver::new(
        DsmClient::new(cfg).expect("client"),
        DsmDriverConfig {
            poll_interval: Duration::from_millis(30),
            page_size: 5000,
        },
    );
    let hosts: Vec<Host> = lab
        .inventory
        .hosts
        .iter()
        .filter(|h| h.has_agent() && h.relay_group.as_deref() != Some("dmz"))
        .cloned()
        .collect();
    let start = Instant::now();
    let replies = run_all(&d, &hosts, "security-update").await;
    let elapsed = start.elapsed();
    assert_matches_fleet(&lab.fleet, &replies);
    let log = lab.server.requests();
    let throttled = log.iter().filter(|r| r.status == 429).count();
    let created = log
        .iter()
        .filter(|r| r.route == "/api/scheduledtasks" && r.status == 200)
        .count();
    eprintln!(
        "{} updates through a storm of {throttled} x 429 in {elapsed:?}, {} requests in all",
        hosts.len(),
        log.len()
    );
    assert_eq!(throttled, 40, "the whole storm was met and retried");
    assert_eq!(
        created,
        hosts.len(),
        "exactly one task per host, none lost, none doubled"
    );
    assert!(log.iter().all(|r| r.status == 200 || r.status == 429));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_with_backoff() {
    let lab = lab_with(
        LAB,
        TlsSetup::Plain,
        vec![HttpFault::ServerError { count: 3, after: 0 }],
        3000.0,
    )
    .await;
    let c = client(&lab);
    let v = c.system_setting(DIRECT_DOWNLOAD_SETTING).await;
    assert_eq!(v.ok().as_deref(), Some("true"));
    let statuses: Vec<u16> = lab.server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 500, 500, 200]);
    assert_eq!(c.requests_sent(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_end_with_a_clear_error() {
    let lab = lab_with(
        LAB,
        TlsSetup::Plain,
        vec![HttpFault::ServerError {
            count: 100,
            after: 0,
        }],
        3000.0,
    )
    .await;
    let mut cfg = config_for(&lab, KEY);
    cfg.retry.max_retries = 2;
    let c = DsmClient::new(cfg).expect("client");
    let e = c.system_setting(DIRECT_DOWNLOAD_SETTING).await.err();
    let m = e.map(|e| e.to_string()).unwrap_or_default();
    assert!(m.contains("still HTTP 500 after 3 attempts"), "{m}");
    assert_eq!(lab.server.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_api_key_is_a_clear_error_that_never_shows_the_key() {
    let lab = lab(LAB).await;
    let wrong = "wrong-key-SECRET-42";
    let cfg = config_for(&lab, wrong);
    let c = DsmClient::new(cfg.clone()).expect("client");
    let e = import_inventory(&c, &ImportOptions::for_client(&c))
        .await
        .expect_err("refused");
    let text = e.to_string();
    let debug = format!("{e:?} {cfg:?} {c:?}");
    eprintln!("bad key: {text}");
    assert!(
        matches!(e, DsmError::Forbidden { status: 403, .. }),
        "{debug}"
    );
    assert!(text.contains("refused the API key"), "{text}");
    assert!(text.contains("MEDIC_DSM_API_KEY"), "{text}");
    assert!(
        !text.contains(wrong) && !debug.contains(wrong),
        "{text} {debug}"
    );
    assert!(!text.contains("SECRET"), "{text}");
    // Not retried: a refusal is final.
    assert_eq!(lab.server.requests().len(), 1);
    // And through the driver, as a failed step.
    let d = DsmDriver::new(c, DsmDriverConfig::default());
    let r = d
        .run(request(&lab.inventory.hosts[0], "security-status"))
        .await;
    match r.status {
        ActionStatus::Failed(m) => assert!(
            m.contains("refused the API key") && !m.contains(wrong),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_is_refused() {
    let lab = lab_with(
        LAB,
        TlsSetup::SelfSigned,
        vec![HttpFault::WrongCertificate],
        3000.0,
    )
    .await;
    // The CA is trusted: only the name is wrong.
    let c = client(&lab);
    let e = c.manager_version().await.expect_err("refused");
    let text = e.to_string();
    eprintln!("wrong certificate: {text}");
    assert!(matches!(e, DsmError::Tls { .. }), "{e:?}");
    assert!(
        text.contains("TLS certificate") && text.contains("verification stays on"),
        "{text}"
    );
    assert!(
        text.to_lowercase().contains("name"),
        "names the cause: {text}"
    );
    assert_eq!(lab.server.requests().len(), 0, "no request was ever sent");
    assert_eq!(c.requests_sent(), 1, "a refused certificate is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_ca_is_refused_and_a_custom_ca_bundle_works() {
    let lab = lab_with(LAB, TlsSetup::SelfSigned, Vec::new(), 3000.0).await;
    assert!(lab.server.base_url().starts_with("https://127.0.0.1:"));
    let mut cfg = config_for(&lab, KEY);
    cfg.ca_pem = None;
    let e = DsmClient::new(cfg)
        .expect("client")
        .manager_version()
        .await
        .expect_err("an unknown CA is refused");
    eprintln!("unknown CA: {e}");
    assert!(matches!(e, DsmError::Tls { .. }), "{e:?}");

    let c = client(&lab);
    let v = c.manager_version().await.expect("the custom CA is trusted");
    assert_eq!(v.to_string(), "20.0.463");

    let mut cfg = config_for(&lab, KEY);
    cfg.ca_pem = Some(b"not a certificate".to_vec());
    let e = DsmClient::new(cfg)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("CA bundle"), "{e}");
}

/// The plan JSON without what only the hosts know, not the Manager: the digests of the
/// inputs (they hash `vars` such as `certs: present`) and the SSH `user`.
fn comparable_plan(inv: &Inventory) -> J {
    let pb = medic_config::load_playbook("ds.yaml", PLAYBOOK, &[]).expect("playbook loads");
    let plan = medic_plan::build_plan(inv, &pb, PLAYBOOK, None).expect("plan builds");
    let mut j: J = serde_json::from_str(&medic_plan::plan_to_json(&plan)).expect("json");
    if let J::Object(o) = &mut j {
        o.remove("fingerprint");
        o.remove("host_digests");
        // The seal covers `user` and `os` too, which differ as said below.
        o.remove("seal");
        if let Some(J::Array(hosts)) = o.get_mut("hosts") {
            for h in hosts {
                if let J::Object(h) = h {
                    h.remove("seal");
                    h.remove("user");
                    // The import fills `os` from the Manager's platform text, which the
                    // simulated fleet's own inventory leaves out.
                    h.remove("os");
                }
            }
        }
    }
    j
}

fn hints(fleet: &SimFleet) -> Vec<RelayGroupHint> {
    fleet
        .relay_groups()
        .into_iter()
        .map(|g| RelayGroupHint {
            id: i64::from(g.id),
            name: g.name,
            offline: g.offline,
            bundle_source: g.bundle_source,
        })
        .collect()
}

fn first_diff(a: &str, b: &str) -> String {
    let i = a
        .bytes()
        .zip(b.bytes())
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let lo = i.saturating_sub(200);
    format!(
        "imported: ...{}...\nfleet:    ...{}...",
        a.get(lo..(i + 200).min(a.len())).unwrap_or(""),
        b.get(lo..(i + 200).min(b.len())).unwrap_or("")
    )
}

async fn import_and_compare(lab: &Lab) -> (String, u64) {
    let c = client(lab);
    let mut opts = ImportOptions::for_client(&c);
    opts.manager_name = lab.inventory.manager.name.clone();
    opts.manager_address = lab.inventory.manager.address.clone();
    opts.relay_groups = hints(&lab.fleet);
    let imp = import_inventory(&c, &opts).await.expect("import works");
    let yaml = medic_config::write_inventory(&imp.inventory, &imp.comments);
    let imported = inventory(&yaml);
    assert_eq!(imported.hosts.len(), lab.inventory.hosts.len());
    let a = comparable_plan(&imported).to_string();
    let b = comparable_plan(&lab.inventory).to_string();
    assert!(a == b, "the plans differ:\n{}", first_diff(&a, &b));
    (yaml, c.requests_sent())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_of_10000_computers_takes_5_requests_and_plans_like_the_fleet() {
    let lab = lab(&generate_inventory_yaml(10_000, 7)).await;
    let start = Instant::now();
    let (yaml, sent) = import_and_compare(&lab).await;
    let log = lab.server.requests();
    eprintln!(
        "import of 10,000 computers: {sent} requests ({:?}), {} bytes of YAML, {:?} with both plans",
        log.iter()
            .map(|r| format!("{} {}", r.method, r.route))
            .collect::<Vec<_>>(),
        yaml.len(),
        start.elapsed()
    );
    assert!(sent <= 5, "{sent} requests");
    assert_eq!(log.len() as u64, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_of_the_lab_keeps_offline_groups_appliances_and_nested_groups() {
    let lab = lab(LAB).await;
    let (yaml, sent) = import_and_compare(&lab).await;
    assert_eq!(sent, 3);
    assert!(yaml.contains(r#"groups: ["tokyo", "canary"]"#), "{yaml}");
    assert!(yaml.contains("protected_by_appliance: true"), "{yaml}");
    assert!(
        yaml.contains(r#"{ name: "dmz", offline: true, bundle_source: "relay-tky-1" }"#),
        "{yaml}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_of_the_demo_fleet_plans_like_the_fleet() {
    let lab = lab(medic_sim::demo_inventory_yaml()).await;
    let (_, sent) = import_and_compare(&lab).await;
    assert_eq!(sent, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_without_hints_names_relay_groups_by_relay_list() {
    let lab = lab(LAB).await;
    let c = client(&lab);
    let imp = import_inventory(&c, &ImportOptions::for_client(&c))
        .await
        .expect("import works");
    let yaml = medic_config::write_inventory(&imp.inventory, &imp.comments);
    let inv = inventory(&yaml);
    assert_eq!(inv.manager.name, "127.0.0.1");
    assert_eq!(inv.manager.version.to_string(), "20.0.463");
    let names: Vec<&str> = inv.relay_groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["relay-list-1", "relay-list-2", "relay-list-3"]);
    assert!(inv.relay_groups.iter().all(|g| !g.offline));
    let relays: Vec<&str> = inv
        .hosts
        .iter()
        .filter(|h| h.relay)
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(relays, ["relay-tky-1", "relay-osk-1", "relay-dmz-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_agree_with_the_sim_driver_and_follow_the_manager() {
    let lab = lab(LAB).await;
    // Some history: a Windows agent upgraded without certificates (Anti-Malware offline),
    // a Relay upgraded and updated.
    let to: BTreeMap<String, String> = [("to".to_owned(), "20.0.1-690".to_owned())].into();
    assert!(lab.fleet.perform("web-01", "agent-upgrade", &to).is_ok());
    assert!(
        lab.fleet
            .perform("relay-tky-1", "agent-upgrade", &to)
            .is_ok()
    );
    // The steps below come after the upgrades; the Relay's update after them.
    let upgraded_ms = now_ms();
    tokio::time::sleep(Duration::from_millis(3)).await;
    assert!(
        lab.fleet
            .perform("relay-tky-1", "security-update", &BTreeMap::new())
            .is_ok()
    );
    let d = driver(&lab, 20);
    let sim = SimDriver::new(lab.fleet.clone(), 1e9);
    let hosts: Vec<Host> = lab.inventory.hosts.clone();
    for action in ["security-status", "agent-status", "agent-version"] {
        let replies = run_all_on(Arc::new(d.clone()), &hosts, action, Some(upgraded_ms)).await;
        for (name, r) in &replies {
            let h = lab.inventory.host(name).expect("host");
            let s = sim.run(request_after(h, action, upgraded_ms)).await;
            assert_eq!(r.status, ActionStatus::Ok, "{name} {action}");
            for k in ["security_update_current", "antimalware", "agent_version"] {
                assert_eq!(r.facts.get(k), s.facts.get(k), "{name} {action} {k}");
            }
        }
    }
    // 3 probes x 12 hosts, batched.
    let searches = lab.server.request_count("POST", "/api/computers/search");
    eprintln!("36 probes: {searches} searches");
    assert!(searches <= 1 + 3 * 2, "{searches}");
    let mgr = ActionRequest {
        step: "manager".to_owned(),
        host: None,
        action: "manager-version".to_owned(),
        args: BTreeMap::new(),
        attempt: 1,
        after_ms: None,
        fence: None,
    };
    let r = d.run(mgr.clone()).await;
    assert_eq!(
        r.facts.get("manager_version").map(ToString::to_string),
        Some("20.0.463".to_owned())
    );
    let up: BTreeMap<String, String> = [("to".to_owned(), "20.0.500".to_owned())].into();
    assert!(lab.fleet.perform("dsm01", "manager-upgrade", &up).is_ok());
    let r = d.run(mgr).await;
    assert_eq!(
        r.facts.get("manager_version").map(ToString::to_string),
        Some("20.0.500".to_owned()),
        "X-DSM-Version follows the upgrade"
    );
    let r = d.run(request(&hosts[0], "agent-upgrade")).await;
    assert!(
        matches!(r.status, ActionStatus::Failed(m) if m.contains("cannot run `agent-upgrade`"))
    );
    assert!(d.idempotent("security-status") && !d.idempotent("security-update"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_host_fails_the_step_with_its_name() {
    let lab = lab(LAB).await;
    let d = driver(&lab, 20);
    let mut h = lab.inventory.hosts[0].clone();
    h.name = "not-on-the-manager".to_owned();
    let r = d.run(request(&h, "security-update")).await;
    match r.status {
        ActionStatus::Failed(m) => assert!(m.contains("not-on-the-manager"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_manager_makes_the_step_unreachable() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let mut cfg = DsmConfig::new(
        &format!("http://127.0.0.1:{port}"),
        SecretString::from(KEY.to_owned()),
    )
    .expect("url");
    cfg.retry = RetryPolicy {
        max_retries: 2,
        initial: Duration::from_millis(1),
        max: Duration::from_millis(5),
        throttled_budget: Duration::ZERO,
    };
    let d = DsmDriver::new(
        DsmClient::new(cfg).expect("client"),
        DsmDriverConfig::default(),
    );
    let inv = inventory(LAB);
    let r = d.run(request(&inv.hosts[0], "security-status")).await;
    assert!(
        matches!(r.status, ActionStatus::Unreachable(_)),
        "{:?}",
        r.status
    );
    assert_eq!(d.client().requests_sent(), 3);
}

/// Hosts for the verification rules: a Relay at the fixed build (so Agents' updates
/// succeed), Anti-Malware off by policy on Windows without certificates, a Linux host with a
/// pending reboot, Windows without certificates (Anti-Malware offline after its upgrade),
/// and a Linux host whose Manager view still says "up to date" from before its upgrade.
const VERIFY_FLEET: &str = r#"
manager: { name: dsm01, address: 10.0.0.5, version: "20.0.463" }
settings: { direct_download_when_relays_unavailable: true }
relay_groups: [ { name: tokyo } ]
hosts:
  - { name: relay-1, address: 10.0.1.10, platform: linux, agent_version: "20.0.1-690", relay: true, relay_group: tokyo }
  - { name: am-off, address: 10.0.1.21, platform: windows, agent_version: "20.0.0-5995", relay_group: tokyo, vars: { antimalware: "off" } }
  - { name: reboot-linux, address: 10.0.1.22, platform: linux, agent_version: "20.0.0-3445", relay_group: tokyo, vars: { reboot: pending } }
  - { name: win-nocerts, address: 10.0.1.23, platform: windows, agent_version: "20.0.0-5995", relay_group: tokyo }
  - { name: stale, address: 10.0.1.24, platform: linux, agent_version: "20.0.0-3445", relay_group: tokyo }
"#;

fn host_named(lab: &Lab, name: &str) -> Host {
    lab.inventory.host(name).cloned().expect("host")
}

fn upgrade(lab: &Lab, name: &str) {
    let to: BTreeMap<String, String> = [("to".to_owned(), "20.0.1-690".to_owned())].into();
    let out = lab.fleet.perform(name, "agent-upgrade", &to);
    assert!(out.is_ok(), "{name}: {out:?}");
}

/// The Manager's `updateStatus.status` and `lastChanged` of one host, read directly.
async fn manager_update(lab: &Lab, name: &str) -> (String, i64) {
    let id = lab
        .fleet
        .computers()
        .iter()
        .find(|c| c.host_name == name)
        .map(|c| c.id as i64)
        .expect("computer");
    let c = client(lab)
        .poll_computers(id, id, 10)
        .await
        .expect("search")
        .pop()
        .expect("found");
    let u = c.security_updates.expect("securityUpdates");
    (
        u.update_status.and_then(|s| s.status).unwrap_or_default(),
        u.last_changed.unwrap_or(0),
    )
}

/// Issue 9 item 7: the Manager's "up to date" from before an upgrade never satisfies the
/// security update's check; the update the step ran does, and a resumed run sees it
/// without running another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_security_update_from_before_the_upgrade_never_satisfies_the_check() {
    let lab = lab(VERIFY_FLEET).await;
    let host = host_named(&lab, "stale");
    let updates = || {
        lab.fleet
            .effect_counts()
            .get(&("stale".to_owned(), "security-update".to_owned()))
            .copied()
            .unwrap_or(0)
    };
    upgrade(&lab, "stale");
    let upgraded_ms = now_ms();
    tokio::time::sleep(Duration::from_millis(3)).await;
    // The stale state is there: the Manager still says "active", from before the upgrade.
    let (status, before) = manager_update(&lab, "stale").await;
    assert_eq!(status, "active");
    assert!(before < upgraded_ms, "{before} {upgraded_ms}");

    let d = driver(&lab, 20);
    for req in [
        request_after(&host, "security-status", upgraded_ms),
        request(&host, "security-status"),
    ] {
        let r = d.run(req).await;
        assert_eq!(r.status, ActionStatus::Ok, "{r:?}");
        assert_eq!(
            fact_bool(&r, "security_update_current"),
            Some(false),
            "{r:?}"
        );
    }
    assert_eq!(updates(), 0);

    // The step acts: one update, which its own check then observes.
    let r = d
        .run(request_after(&host, "security-update", upgraded_ms))
        .await;
    assert_eq!(r.status, ActionStatus::Ok, "{r:?}");
    let r = d
        .run(request_after(&host, "security-status", upgraded_ms))
        .await;
    assert_eq!(
        fact_bool(&r, "security_update_current"),
        Some(true),
        "{r:?}"
    );
    assert_eq!(updates(), 1);
    let (status, after) = manager_update(&lab, "stale").await;
    assert_eq!(status, "active");
    assert!(after > upgraded_ms, "lastChanged moved past the upgrade");

    // A resumed run (a new driver, no memory) re-probes the step: the update ended after
    // the upgrade, so the work is done and no second update starts.
    let resumed = driver(&lab, 20);
    let r = resumed
        .run(request_after(&host, "security-status", upgraded_ms))
        .await;
    assert_eq!(
        fact_bool(&r, "security_update_current"),
        Some(true),
        "{r:?}"
    );
    // The same update does not satisfy a step that came after it.
    let r = resumed
        .run(request_after(&host, "security-status", after))
        .await;
    assert_eq!(
        fact_bool(&r, "security_update_current"),
        Some(false),
        "{r:?}"
    );
    assert_eq!(updates(), 1);
    assert_eq!(lab.server.request_count("POST", "/api/scheduledtasks"), 1);
}

/// Issue 9 item 6: `verify` reads the Manager's view (one search per poll for every host
/// being verified) and the host's own; Anti-Malware off by policy and a pending Linux
/// reboot are notes, Anti-Malware offline fails (and is what the reinstall guard sees),
/// and a disagreement is named for its host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reads_the_manager_first_and_notes_what_is_not_a_failure() {
    let lab = lab(VERIFY_FLEET).await;
    let names = ["am-off", "reboot-linux", "win-nocerts", "stale"];
    for n in names {
        upgrade(&lab, n);
    }
    for n in ["am-off", "reboot-linux", "win-nocerts"] {
        let out = lab.fleet.perform(n, "security-update", &BTreeMap::new());
        assert!(out.is_ok(), "{n}: {out:?}");
    }
    // The playbook's reboot step, for the Windows hosts that want one after the upgrade.
    for n in ["am-off", "win-nocerts"] {
        let out = lab.fleet.perform(n, "reboot", &BTreeMap::new());
        assert!(out.is_ok(), "{n}: {out:?}");
    }
    let dsm = driver(&lab, 50);
    let verifier: Arc<dyn Driver> = Arc::new(Verifier::new(
        Arc::new(SimDriver::new(lab.fleet.clone(), 1e9)),
        dsm.clone(),
    ));
    lab.server.clear_requests();
    let mut set = tokio::task::JoinSet::new();
    for n in names {
        let v = verifier.clone();
        let mut req = request(&host_named(&lab, n), "verify");
        req.args
            .insert("min_build".to_owned(), "20.0.1-690".to_owned());
        set.spawn(async move { (n, v.run(req).await) });
    }
    let mut replies = BTreeMap::new();
    while let Some(r) = set.join_next().await {
        let (n, r) = r.expect("task");
        replies.insert(n, r);
    }
    let note = |n: &str| replies[n].note().unwrap_or("").to_owned();

    assert_eq!(
        replies["am-off"].status,
        ActionStatus::Ok,
        "{:?}",
        replies["am-off"]
    );
    assert!(
        note("am-off").contains("switched off by policy"),
        "{}",
        note("am-off")
    );
    assert_eq!(
        replies["reboot-linux"].status,
        ActionStatus::Ok,
        "{:?}",
        replies["reboot-linux"]
    );
    assert!(
        note("reboot-linux").contains("reboot is pending"),
        "{}",
        note("reboot-linux")
    );
    match &replies["win-nocerts"].status {
        ActionStatus::Failed(m) => assert!(m.contains("anti-malware is offline"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        replies["win-nocerts"].facts.get("antimalware"),
        Some(&Value::Str("offline".to_owned()))
    );
    // The Manager still shows the "up to date" from before the upgrade, the host's
    // dsa_query does not: the Manager decides, and the note names the disagreement.
    assert_eq!(
        replies["stale"].status,
        ActionStatus::Ok,
        "{:?}",
        replies["stale"]
    );
    assert!(
        note("stale").contains("disagree on security update (manager succeeded, host not current)"),
        "{}",
        note("stale")
    );
    for r in replies.values() {
        assert_eq!(
            r.facts.get("verified_by"),
            Some(&Value::Str("manager".to_owned()))
        );
    }
    // Four hosts, batched: the first reader's search goes at once, the others wait for the
    // next interval and share it (plus the one listing that maps names to IDs).
    let polls = dsm.poll_searches();
    assert!(polls <= 2, "{polls} polls for 4 hosts");
    assert_eq!(
        lab.server.request_count("POST", "/api/computers/search") as u64,
        polls + 1
    );
    assert_eq!(lab.server.request_count("GET", "/api/computers/{id}"), 0);

    // The reinstall guard's probe: only "offline" is offline.
    for (n, word) in [
        ("am-off", "off"),
        ("win-nocerts", "offline"),
        ("stale", "online"),
    ] {
        let r = verifier
            .run(request(&host_named(&lab, n), "agent-status"))
            .await;
        assert_eq!(
            r.facts.get("antimalware"),
            Some(&Value::Str(word.to_owned())),
            "{n}: {r:?}"
        );
    }
}

/// Raw calls, to check the server's own rules.
async fn raw(
    lab: &Lab,
    method: &str,
    path: &str,
    body: Option<J>,
    headers: &[(&str, &str)],
) -> (u16, J, Option<String>) {
    let url = format!("{}{}", lab.server.base_url(), path);
    let http = reqwest::Client::new();
    let mut rb = http.request(method.parse().expect("method"), &url);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.expect("sent");
    let status = resp.status().as_u16();
    let version = resp
        .headers()
        .get("x-dsm-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = resp.text().await.unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(J::Null);
    (status, json, version)
}

const AUTH: [(&str, &str); 2] = [("api-version", "v1"), ("api-secret-key", KEY)];

/// Host names found by a computer search, in the order of the answer.
async fn search_names(lab: &Lab, criteria: J) -> Vec<String> {
    let body = serde_json::json!({ "searchCriteria": criteria });
    let (s, j, _) = raw(
        lab,
        "POST",
        "/computers/search?expand=none",
        Some(body),
        &AUTH,
    )
    .await;
    assert_eq!(s, 200, "{j}");
    j["computers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["hostName"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_follows_the_vendor_rules() {
    let lab = lab(LAB).await;
    let (s, j, v) = raw(&lab, "GET", "/computers", None, &[("api-secret-key", KEY)]).await;
    assert_eq!(s, 400, "api-version is required");
    assert!(
        j["message"]
            .as_str()
            .is_some_and(|m| m.contains("api-version"))
    );
    assert_eq!(v.as_deref(), Some("DSM/20.0.463"));
    let (s, j, _) = raw(&lab, "GET", "/computers/99", None, &AUTH).await;
    assert_eq!(
        (s, j["message"].as_str()),
        (404, Some("The computer does not exist."))
    );
    let (s, j, _) = raw(&lab, "GET", "/computers/4?expand=none", None, &AUTH).await;
    assert_eq!(s, 200);
    assert_eq!(j["hostName"], "web-01");
    assert!(j.get("computerStatus").is_none() && j.get("securityUpdates").is_none());
    let (_, j, _) = raw(&lab, "GET", "/computers/4", None, &AUTH).await;
    assert!(
        j.get("computerStatus").is_some() && j.get("computerSettings").is_some(),
        "no expand = all"
    );
    // Searches: wildcards, numeric tests, versions, null tests; sorted by ID.
    assert_eq!(
        search_names(&lab, serde_json::json!([{ "fieldName": "hostName", "stringTest": "equal", "stringValue": "web-%" }])).await,
        ["web-01", "web-02"]
    );
    assert_eq!(
        search_names(&lab, serde_json::json!([{ "fieldName": "relayListID", "numericTest": "equal", "numericValue": 2 }])).await,
        ["relay-osk-1", "db-01", "file-01", "kiosk-01"]
    );
    assert_eq!(
        search_names(&lab, serde_json::json!([{ "fieldName": "agentVersion", "versionTest": "greater-than-or-equal", "versionValue": "20.0.1.0" }])).await,
        ["app-02"]
    );
    assert_eq!(
        search_names(
            &lab,
            serde_json::json!([{ "fieldName": "agentFingerPrint", "nullTest": true }])
        )
        .await,
        ["vm-9", "kiosk-01"]
    );
    assert_eq!(
        search_names(
            &lab,
            serde_json::json!([{ "idTest": "greater-than", "idValue": 10 }])
        )
        .await,
        ["vm-9", "kiosk-01"]
    );
    let (s, j, _) = raw(
        &lab,
        "POST",
        "/computers/search",
        Some(serde_json::json!({ "searchCriteria": [{ "fieldName": "hostName", "numericTest": "equal", "numericValue": 1 }] })),
        &AUTH,
    )
    .await;
    assert_eq!(s, 400, "{j}");
    // System settings as strings.
    let path = format!("/systemsettings/{DIRECT_DOWNLOAD_SETTING}");
    let (s, j, _) = raw(
        &lab,
        "POST",
        &path,
        Some(serde_json::json!({ "value": "false" })),
        &AUTH,
    )
    .await;
    assert_eq!((s, j["value"].as_str()), (200, Some("false")));
    let (_, j, _) = raw(&lab, "GET", "/systemsettings", None, &AUTH).await;
    assert_eq!(j[DIRECT_DOWNLOAD_SETTING]["value"], "false");
    let (_, j, _) = raw(&lab, "DELETE", &path, None, &AUTH).await;
    assert_eq!(j["value"], "true", "delete restores the default");
    let (s, _, _) = raw(&lab, "GET", "/systemsettings/noSuchSetting", None, &AUTH).await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_tasks_run_now_and_one_shots_delete_themselves() {
    let lab = lab(LAB).await;
    let task = |name: &str, recurrence: &str, run_now: bool, filter: J| {
        serde_json::json!({
            "name": name, "type": "check-for-security-updates", "runNow": run_now,
            "scheduleDetails": { "recurrenceType": recurrence, "recurrenceCount": 1,
                "onceOnlyScheduleParameters": { "startTime": 0 } },
            "checkForSecurityUpdatesTaskParameters": { "computerFilter": filter, "timeout": "never" }
        })
    };
    let (s, j, _) = raw(
        &lab,
        "POST",
        "/scheduledtasks",
        Some(task(
            "once",
            "none",
            true,
            serde_json::json!({ "type": "computer", "computerID": 1 }),
        )),
        &AUTH,
    )
    .await;
    assert_eq!(s, 200, "{j}");
    let once = j["ID"].as_i64().expect("an ID");
    let (s, _, _) = raw(&lab, "GET", &format!("/scheduledtasks/{once}"), None, &AUTH).await;
    assert_eq!(s, 404, "a one-shot task is gone once started");
    let (s, j, _) = raw(
        &lab,
        "POST",
        "/scheduledtasks",
        Some(task(
            "daily",
            "daily",
            false,
            serde_json::json!({ "type": "computers-in-group", "computerGroupID": 2 }),
        )),
        &AUTH,
    )
    .await;
    assert_eq!(s, 200, "{j}");
    let daily = j["ID"].as_i64().expect("an ID");
    let (_, j, _) = raw(&lab, "POST", "/scheduledtasks/search", Some(serde_json::json!({ "searchCriteria": [{ "fieldName": "name", "stringValue": "dai%" }] })), &AUTH).await;
    assert_eq!(j["scheduledTasks"].as_array().map(Vec::len), Some(1));
    // Run the recurring one now: it stays.
    let (s, _, _) = raw(
        &lab,
        "POST",
        &format!("/scheduledtasks/{daily}"),
        Some(serde_json::json!({ "runNow": true })),
        &AUTH,
    )
    .await;
    assert_eq!(s, 200);
    let (s, j, _) = raw(
        &lab,
        "GET",
        &format!("/scheduledtasks/{daily}"),
        None,
        &AUTH,
    )
    .await;
    assert_eq!(s, 200);
    assert!(j["lastRunTime"].as_i64().is_some());
    // Both runs finish on the fleet (relay-tky-1, then the 3 hosts of group osaka).
    let deadline = Instant::now() + Duration::from_secs(10);
    while lab.server.updates_in_flight() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(lab.server.updates_in_flight(), 0);
    let st = lab.fleet.host_state("relay-tky-1").expect("host");
    assert_eq!(
        st.last_security_update_error.as_deref(),
        Some(CERT_EXPIRE_ERROR)
    );
    let (s, _, _) = raw(
        &lab,
        "DELETE",
        &format!("/scheduledtasks/{daily}"),
        None,
        &AUTH,
    )
    .await;
    assert_eq!(s, 200);
    let (_, j, _) = raw(&lab, "GET", "/scheduledtasks", None, &AUTH).await;
    assert_eq!(j["scheduledTasks"], serde_json::json!([]));
    let (s, j, _) = raw(
        &lab,
        "POST",
        "/scheduledtasks",
        Some(task(
            "bad",
            "none",
            true,
            serde_json::json!({ "type": "computer", "computerID": 999 }),
        )),
        &AUTH,
    )
    .await;
    assert_eq!(s, 400, "{j}");
}

/// Prints every failed step with its reason, for the assertions' messages.
struct Failures;

impl medic_exec::Reporter for Failures {
    fn event(&mut self, ev: &medic_exec::RunEvent) {
        if let medic_exec::RunEvent::StepFinished {
            step,
            outcome: medic_exec::Outcome::Failed,
            detail,
            elapsed_ms,
            ..
        } = ev
        {
            eprintln!(
                "failed {step} after {elapsed_ms} ms: {}",
                detail.as_deref().unwrap_or("")
            );
        }
    }
}

/// Runs the Deep Security playbook on the lab fleet: `dsm` steps through the simulator
/// server (over HTTP, with `faults`), every other step through the `sim` driver on the same
/// fleet. Returns the report, the fleet and the server's request log.
async fn run_playbook(
    faults: Vec<HttpFault>,
) -> (
    medic_exec::RunReport,
    SimFleet,
    Vec<medic_sim::server::RequestRecord>,
    Duration,
) {
    let lab = lab_with(LAB, TlsSetup::Plain, faults, 3000.0).await;
    // `verify` reads the Manager, which the storm throttles for seconds at a time: at this
    // time scale the playbook's 5 minutes would leave it 2 s (a real run has the 5 minutes).
    let playbook = PLAYBOOK.replace("timeout: 5m", "timeout: 10h");
    let pb = medic_config::load_playbook("ds.yaml", &playbook, &[]).expect("playbook loads");
    let plan = Arc::new(
        medic_plan::build_plan(&lab.inventory, &pb, &playbook, None).expect("plan builds"),
    );
    let mut cfg = config_for(&lab, KEY);
    cfg.rate = RateLimit {
        per_second: 500.0,
        burst: 8,
    };
    let dsm = DsmDriver::new(
        DsmClient::new(cfg).expect("client"),
        DsmDriverConfig {
            poll_interval: Duration::from_millis(25),
            page_size: 5000,
        },
    );
    let sim = Arc::new(SimDriver::new(lab.fleet.clone(), 1e5));
    // As `medic apply` wires them when it talks to the Manager: `verify` and the reinstall
    // guard read the Manager's view first.
    let drivers = medic_exec::Drivers::new()
        .with("dsm", Arc::new(dsm.clone()))
        .with("ssh", Arc::new(Verifier::new(sim.clone(), dsm)))
        .with("manual", sim);
    let dir = tempfile::tempdir().expect("tempdir");
    let journal =
        medic_journal::Journal::create(&dir.path().join("journal.sqlite")).expect("journal");
    journal
        .append(medic_journal::Record::Meta {
            key: medic_journal::meta_keys::PLAN_FINGERPRINT.to_owned(),
            value: plan.fingerprint().to_owned(),
        })
        .expect("meta");
    let opts = medic_exec::RunOptions {
        yes: true,
        time_scale: 1000.0,
        ..medic_exec::RunOptions::default()
    };
    let start = Instant::now();
    let report = medic_exec::execute(
        plan,
        &drivers,
        &journal,
        &medic_exec::Prior::default(),
        &opts,
        medic_exec::Control::default(),
        &mut medic_exec::Fanout(vec![Box::new(Failures)]),
    )
    .await;
    let elapsed = start.elapsed();
    journal.close().expect("journal closes");
    let log = lab.server.requests();
    (report, lab.fleet.clone(), log, elapsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playbook_through_a_429_storm_slows_down_but_loses_nothing() {
    let (calm, calm_fleet, calm_log, calm_time) = run_playbook(Vec::new()).await;
    let (storm, storm_fleet, storm_log, storm_time) =
        run_playbook(vec![HttpFault::TooManyRequests {
            count: 60,
            after: 10,
        }])
        .await;
    let throttled = storm_log.iter().filter(|r| r.status == 429).count();
    eprintln!(
        "playbook on the lab: calm {calm_time:?} ({} requests), storm {storm_time:?} ({} requests, {throttled} x 429)",
        calm_log.len(),
        storm_log.len()
    );
    assert_eq!(
        calm.exit,
        medic_exec::RunExit::Ok,
        "{:?}",
        calm.summary.failures
    );
    assert_eq!(storm.exit, calm.exit, "{:?}", storm.summary.failures);
    assert_eq!(storm.summary.hosts_verified, calm.summary.hosts_verified);
    assert_eq!(storm.summary.steps, calm.summary.steps);
    assert_eq!(throttled, 60, "the storm hit the run");
    // Exactly the same side effects, each exactly as often: nothing lost, nothing doubled.
    assert_eq!(storm_fleet.effect_counts(), calm_fleet.effect_counts());
    let tasks = |log: &[medic_sim::server::RequestRecord]| {
        log.iter()
            .filter(|r| r.route == "/api/scheduledtasks" && r.status == 200)
            .count()
    };
    assert_eq!(tasks(&storm_log), tasks(&calm_log));
    assert!(
        tasks(&calm_log) > 0,
        "security updates went through the manager"
    );
    for h in ["relay-tky-1", "relay-osk-1", "web-01", "app-01", "db-01"] {
        let st = storm_fleet.host_state(h).expect("host");
        assert!(st.security_update_current, "{h}: {st:?}");
    }
}

/// The contract test: every kind of request the client sends must be accepted by Prism
/// serving the vendor spec (run by `tests/contract/prism.sh`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Prism mock: run tests/contract/prism.sh"]
async fn prism_accepts_every_client_request() {
    let url = std::env::var("MEDIC_CONTRACT_DSM_URL").expect("MEDIC_CONTRACT_DSM_URL");
    let mut cfg =
        DsmConfig::new(&url, SecretString::from("contract-test-key".to_owned())).expect("url");
    // Prism serves the spec's paths at its root, not under the cloud server's `/api/`.
    cfg.base_url = reqwest::Url::parse(&url).expect("url");
    cfg.retry.max_retries = 0;
    cfg.retry.throttled_budget = Duration::ZERO;
    let c = Arc::new(DsmClient::new(cfg).expect("client"));
    let mut failures = Vec::new();
    let mut check = |what: &str, r: Result<(), DsmError>| match r {
        Ok(()) => eprintln!("PASS {what}"),
        Err(e) => {
            eprintln!("FAIL {what}: {e}");
            failures.push(what.to_owned());
        }
    };
    check(
        "GET /systemsettings/{name}",
        c.system_setting(DIRECT_DOWNLOAD_SETTING).await.map(drop),
    );
    check("GET /computergroups", c.computer_groups().await.map(drop));
    check(
        "POST /computers/search?expand=computerSettings (import, paged)",
        c.list_computers(5000, &["computerSettings"])
            .await
            .map(drop),
    );
    check(
        "POST /computers/search?expand=none (driver host map)",
        c.list_computers(5000, &["none"]).await.map(drop),
    );
    check(
        "POST /computers/search?expand=computerStatus,securityUpdates,antiMalware,tasks (driver poll)",
        c.poll_computers(1, 42, 5000).await.map(drop),
    );
    check(
        "POST /scheduledtasks (run-now check-for-security-updates)",
        c.run_security_update(42, "medic security update web-01 (step, attempt 1)")
            .await
            .map(drop),
    );
    assert!(failures.is_empty(), "refused by the spec: {failures:?}");
    // The control: the mock does validate (a request without `api-version`, or with a
    // maxItems that is not an integer, is refused), so the passes above mean something.
    let http = reqwest::Client::new();
    let refused = http
        .post(format!("{}/computers/search", url.trim_end_matches('/')))
        .header("api-version", "v1")
        .header("api-secret-key", "contract-test-key")
        .json(&serde_json::json!({ "maxItems": "lots" }))
        .send()
        .await
        .map(|r| r.status().as_u16());
    assert_eq!(refused.ok(), Some(422), "prism does not validate requests");
    let refused = http
        .get(format!("{}/computergroups", url.trim_end_matches('/')))
        .header("api-secret-key", "contract-test-key")
        .send()
        .await
        .map(|r| r.status().as_u16());
    assert_eq!(refused.ok(), Some(422), "prism does not check api-version");
    eprintln!("PASS control: prism refuses invalid requests (422)");
}
