//! The DSM simulator server: the Deep Security Manager REST API ("Deep Security API", v1) as
//! a real HTTP(S) server on loopback, backed by the same [`SimFleet`] as the `sim` driver.
//!
//! Why a real server: the `dsm` driver and `medic inventory import` must be tested through a
//! real socket (TLS verification, timeouts, 429 storms, retries, request counts), and the
//! official Python SDK must be able to parse what a Manager answers. Backing it with the
//! in-process fleet model means a security update started through the API changes the very
//! state that the `sim` driver, the fake agents and the tests observe.
//!
//! # What it serves
//!
//! The shapes of the vendor spec (`shared/vendor-spec/`), under `/api`:
//! - `GET /api/computers`, `POST /api/computers/search`, `GET /api/computers/{id}`, with
//!   `expand` (`none`, `computerStatus`, `securityUpdates`, `antiMalware`, `tasks`,
//!   `computerSettings`, `all`; no `expand` means `all`, unknown module names are ignored),
//!   and `GET /api/computers/{id}/settings/{name}` for `platformSettingRelayState`;
//! - searches (`searchFilter`: `maxItems` (default 5000), `searchCriteria` ANDed: `idTest` +
//!   `idValue`; `numericTest` on `ID`/`groupID`/`policyID`/`relayListID`/...; `stringTest`
//!   with `%`/`_` wildcards on `hostName`/`agentVersion`/`platform`/...; `versionTest` on
//!   `agentVersion`; `nullTest` on the fingerprints), results always sorted by `ID`;
//! - `GET /api/computergroups` (+ `/search`, `/{id}`);
//! - `GET|POST /api/systemsettings`, `GET|POST|DELETE /api/systemsettings/{name}`, values as
//!   strings in `{"value": "..."}`;
//! - `GET|POST /api/scheduledtasks`, `POST /api/scheduledtasks/search`,
//!   `GET|POST|DELETE /api/scheduledtasks/{id}`: a `check-for-security-updates` task with
//!   `runNow` runs `security-update` on the fleet for the computers of its `computerFilter`
//!   (`computer`, `all-computers`, `computers-in-group[-or-subgroup]`), each finishing after
//!   the fleet's simulated duration divided by the time scale; a one-shot task
//!   (`recurrenceType: none`) is deleted as soon as it has been started, as DSM does.
//!
//! Every answer carries `X-DSM-Version: DSM/<manager build>` (the fleet's Manager, so it
//! follows a Manager upgrade). Requests need `api-version: v1` (else 400) and the
//! `api-secret-key` (else 403); errors are `{"message": "..."}`.
//!
//! # Where the simulator has to choose (documented, relied on by the importer)
//!
//! - **Computer groups are the inventory's host groups**, as a folder tree: a host with
//!   `groups: [tokyo, canary]` sits in group `canary` whose parent is `tokyo`; a host with no
//!   groups has `groupID: 0`. So the group path of a computer gives back its `groups` list.
//! - **The relay flag** is the computer setting `platformSettingRelayState`, served inside
//!   `computerSettings` when that expansion is asked for, so a list or search returns it for
//!   every computer at once. The simulator's `computerSettings` holds only that setting
//!   (a real Manager returns all of them).
//! - **Relay groups are not readable**, exactly as on a real Manager: only `relayListID`
//!   (the 1-based position of the relay group in the inventory; 0 = none).
//! - `lastIPUsed` is the inventory's `address`; `platform` is its `os` (or a default per
//!   platform); `lastChanged` of `securityUpdates` is when the last security update ended
//!   (Unix milliseconds, the fleet's record, or the end of a task run that changed nothing
//!   in the fleet); an upgrade does not move it, and `updateStatus` keeps the last update's
//!   result across an upgrade: before any update in this world every agent shows `active`
//!   ("Up-to-date") as of 2023-03-01, the state that must not count as the update after an
//!   upgrade.
//! - `antiMalware.state` is `off` for a host whose Anti-Malware is switched off by policy
//!   (inventory var `antimalware: off`), with the module `inactive` ("Off"); the engine
//!   offline after a Windows upgrade without certificates is `error` "Anti-Malware Engine
//!   Offline", in the module status and the agent status; a pending reboot (var `reboot:
//!   pending`, or a Windows upgrade) is agent status `warning` "Reboot Required".
//! - Changing a system setting through the API stores the value but does not change the
//!   fleet's rules, which are fixed when the fleet is opened.
//!
//! # Simulator-only extension
//!
//! `POST /sim/hosts/{name}/actions/{action}` with `{"args": {...}}` performs an action on the
//! fleet (for fake agents that must change what the Manager reports) and answers
//! `{"result": "ok"|"failed"|"unreachable"|"hang", "message": ..., "facts": {...}}`;
//! `GET /sim/hosts/{name}` answers everything the fleet knows about the host (build, relay
//! and whether its relay group is offline, pending reboot, Anti-Malware, security update
//! and its last error, boot id, imported bundle, ...) as one flat object, which the fake
//! agents of the SSH test fleet (`tests/fleet/fakeds/fakeds-sim`) read for their probes.
//! Both need the same API key and lie outside `/api`, so they never collide with a vendor
//! path; the HTTP faults below neither delay nor count them.
//!
//! The same route plays the operator of a manual step: `POST
//! /sim/hosts/<manager name>/actions/manager-upgrade` with `{"args": {"to": "20.0.463"}}`
//! upgrades the simulated Manager (a downgrade is refused), so the `X-DSM-Version` of every
//! later answer reports the new build, as a Manager does once an operator has run its
//! installer. A real (non-simulated) `medic apply` against this server pauses at its
//! `manager-upgrade` step; a test bumps the build this way, then approves the step.
//!
//! # Faults
//!
//! See [`HttpFault`]: 429 storms, 5xx bursts, latency, and a TLS certificate that does not
//! match the host name. They apply to `/api` only: the request numbers of a burst count
//! the Manager API's requests, not the fake agents' `/sim` calls.

mod api;
mod computers;
mod faults;
mod http;
mod search;
mod tasks;
mod tls;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use medic_model::Inventory;
use secrecy::SecretString;
use tokio::task::{JoinHandle, JoinSet};

pub use api::DIRECT_DOWNLOAD_SETTING;
pub use faults::{HttpFault, ParseFaultError};
pub use tls::TlsSetup;

use crate::SimFleet;

/// How to run a simulator server. [`ServerConfig::new`] gives loopback on a free port, plain
/// HTTP, no faults and a time scale of 300 (a five-minute security update takes one second).
#[derive(Debug)]
pub struct ServerConfig {
    /// Must be a loopback address (127.0.0.0/8 or ::1): the simulator never listens elsewhere.
    pub listen: SocketAddr,
    /// The only key accepted in `api-secret-key`.
    pub api_key: SecretString,
    pub tls: TlsSetup,
    pub faults: Vec<HttpFault>,
    /// Divides the fleet's simulated durations (security updates run by scheduled tasks).
    pub time_scale: f64,
}

impl ServerConfig {
    pub fn new(api_key: SecretString) -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_key,
            tls: TlsSetup::Plain,
            faults: Vec::new(),
            time_scale: 300.0,
        }
    }
}

/// Why a simulator server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "refusing to listen on {0}: the DSM simulator only listens on loopback addresses (127.0.0.0/8, ::1)"
    )]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    #[error("fault `wrong-cert` needs TLS with a generated certificate (--tls-self-signed)")]
    WrongCertNeedsSelfSigned,
    #[error("the time scale must be a positive number, got {0}")]
    BadTimeScale(f64),
    #[error(
        "the inventory does not describe the fleet: {0} (open the fleet from the same inventory)"
    )]
    InventoryMismatch(String),
}

/// One request as the server saw it, for tests that count calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    /// The route pattern, e.g. `/api/computers/{id}`; the raw path when no route matched.
    pub route: String,
    pub status: u16,
}

/// A running simulator server. Dropping it stops it (and every security update in flight).
pub struct DsmServer {
    addr: SocketAddr,
    tls: bool,
    ca_pem: Option<String>,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for DsmServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DsmServer")
            .field("addr", &self.addr)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl DsmServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API's base URL, e.g. `https://127.0.0.1:41234/api`.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/api", self.addr)
    }

    /// The PEM of the CA that issued the server's certificate, for [`TlsSetup::SelfSigned`].
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    pub fn fleet(&self) -> &SimFleet {
        &self.shared.fleet
    }

    /// Every request received so far, in arrival order (faulted ones included).
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.log).clone()
    }

    /// How many requests matched `method` and `route` (e.g. `"POST"`,
    /// `"/api/computers/search"`), whatever their status.
    pub fn request_count(&self, method: &str, route: &str) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.method == method && r.route == route)
            .count()
    }

    /// Forgets the recorded requests (not the faults' counters).
    pub fn clear_requests(&self) {
        lock(&self.shared.log).clear();
    }

    /// Security updates started by scheduled tasks that have not finished yet.
    pub fn updates_in_flight(&self) -> usize {
        lock(&self.shared.live)
            .in_flight
            .values()
            .map(|n| *n as usize)
            .sum()
    }

    /// Stops accepting, closes connections and cancels the security updates in flight.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for DsmServer {
    fn drop(&mut self) {
        self.accept.abort();
        lock(&self.shared.jobs).abort_all();
    }
}

/// Starts a simulator server over `fleet`. `inventory` must be the one the fleet was opened
/// from: it gives what the fleet model does not keep (addresses and host groups).
pub async fn serve(
    fleet: SimFleet,
    inventory: &Inventory,
    config: ServerConfig,
) -> Result<DsmServer, ServerError> {
    if !config.listen.ip().is_loopback() {
        return Err(ServerError::NotLoopback(config.listen));
    }
    if !(config.time_scale.is_finite() && config.time_scale > 0.0) {
        return Err(ServerError::BadTimeScale(config.time_scale));
    }
    let wrong_cert = config
        .faults
        .iter()
        .any(|f| matches!(f, HttpFault::WrongCertificate));
    let material = tls::material(&config.tls, wrong_cert)?;
    let shared = Arc::new(Shared::new(fleet, inventory, &config)?);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServerError::Listen {
            addr: config.listen,
            source,
        })?;
    let (acceptor, ca_pem) = match material {
        Some(m) => (Some(m.acceptor), m.ca_pem),
        None => (None, None),
    };
    let tls = acceptor.is_some();
    let accept = tokio::spawn(http::accept_loop(listener, acceptor, shared.clone()));
    Ok(DsmServer {
        addr,
        tls,
        ca_pem,
        shared,
        accept,
    })
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section here leaves its data consistent, so a poisoned lock is usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A folder of the computer tree, made from the inventory's host groups.
#[derive(Clone, Debug)]
pub(crate) struct GroupRow {
    pub id: u32,
    pub name: String,
    pub parent: Option<u32>,
}

/// What the server adds to the fleet model, per computer (index = `ID - 1`).
#[derive(Clone, Debug)]
pub(crate) struct HostExtra {
    pub address: String,
    pub group_id: u32,
}

/// What changes while the server runs, besides the fleet.
#[derive(Debug, Default)]
pub(crate) struct Live {
    /// Security updates in flight per computer ID (shown in `tasks.agentTasks`).
    pub in_flight: HashMap<u64, u32>,
    /// When the last task run per computer ID finished (Unix ms): `lastChanged` moves
    /// even when the run changed nothing in the fleet (the agent did not answer).
    pub finished_ms: HashMap<u64, i64>,
    /// Runs started per computer ID: the attempt number of the simulated duration.
    pub started: HashMap<u64, u32>,
    /// A status a run left that the fleet cannot express (the agent did not answer).
    pub overlay: HashMap<u64, String>,
}

pub(crate) struct Shared {
    pub fleet: SimFleet,
    pub key: SecretString,
    pub faults: faults::FaultState,
    pub log: Mutex<Vec<RequestRecord>>,
    pub settings: Mutex<BTreeMap<String, String>>,
    pub setting_defaults: BTreeMap<String, String>,
    pub tasks: Mutex<tasks::TaskStore>,
    pub hosts: Vec<HostExtra>,
    pub groups: Vec<GroupRow>,
    pub live: Mutex<Live>,
    /// Milliseconds since the epoch when the server started: the base of every timestamp.
    pub start_ms: u64,
    pub time_scale: f64,
    pub jobs: Mutex<JoinSet<()>>,
}

impl Shared {
    fn new(
        fleet: SimFleet,
        inventory: &Inventory,
        config: &ServerConfig,
    ) -> Result<Shared, ServerError> {
        let computers = fleet.computers();
        if computers.len() != inventory.hosts.len() {
            return Err(ServerError::InventoryMismatch(format!(
                "the fleet has {} hosts and the inventory {}",
                computers.len(),
                inventory.hosts.len()
            )));
        }
        if let Some((c, h)) = computers
            .iter()
            .zip(&inventory.hosts)
            .find(|(c, h)| c.host_name != h.name)
        {
            return Err(ServerError::InventoryMismatch(format!(
                "host `{}` of the fleet is `{}` in the inventory",
                c.host_name, h.name
            )));
        }
        // The computer tree: one folder per distinct prefix of a host's group list.
        let mut groups: Vec<GroupRow> = Vec::new();
        let mut by_path: HashMap<Vec<String>, u32> = HashMap::new();
        let mut hosts = Vec::with_capacity(inventory.hosts.len());
        for h in &inventory.hosts {
            let mut parent: Option<u32> = None;
            for depth in 1..=h.groups.len() {
                let path = h.groups[..depth].to_vec();
                let id = match by_path.get(&path) {
                    Some(id) => *id,
                    None => {
                        let id = u32::try_from(groups.len() + 1).unwrap_or(u32::MAX);
                        groups.push(GroupRow {
                            id,
                            name: h.groups[depth - 1].clone(),
                            parent,
                        });
                        by_path.insert(path, id);
                        id
                    }
                };
                parent = Some(id);
            }
            hosts.push(HostExtra {
                address: h.address.clone(),
                group_id: parent.unwrap_or(0),
            });
        }
        let setting_defaults = api::default_settings(&fleet);
        let start_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis();
        Ok(Shared {
            key: config.api_key.clone(),
            faults: faults::FaultState::new(&config.faults),
            log: Mutex::new(Vec::new()),
            settings: Mutex::new(setting_defaults.clone()),
            setting_defaults,
            tasks: Mutex::new(tasks::TaskStore::default()),
            hosts,
            groups,
            live: Mutex::new(Live::default()),
            start_ms: u64::try_from(start_ms).unwrap_or(u64::MAX),
            time_scale: config.time_scale,
            jobs: Mutex::new(JoinSet::new()),
            fleet,
        })
    }

    /// `X-DSM-Version`, from the fleet's Manager so that it follows an upgrade.
    pub fn version_header(&self) -> String {
        format!("DSM/{}", self.fleet.manager_version())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> (SimFleet, Inventory) {
        let inv = medic_config::load_inventory("demo.yaml", crate::demo_inventory_yaml())
            .expect("the demo inventory is valid");
        let fleet = SimFleet::open(&inv, crate::SimConfig::demo(1), None).expect("fleet opens");
        (fleet, inv)
    }

    fn config() -> ServerConfig {
        ServerConfig::new(SecretString::from("k".to_owned()))
    }

    #[tokio::test]
    async fn only_loopback_and_sane_settings() {
        let (fleet, inv) = lab();
        let mut c = config();
        c.listen = SocketAddr::from(([0, 0, 0, 0], 0));
        let e = serve(fleet.clone(), &inv, c)
            .await
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("only listens on loopback")));
        let mut c = config();
        c.faults = vec![HttpFault::WrongCertificate];
        let e = serve(fleet.clone(), &inv, c).await.err();
        assert!(matches!(e, Some(ServerError::WrongCertNeedsSelfSigned)));
        let mut c = config();
        c.time_scale = 0.0;
        let e = serve(fleet.clone(), &inv, c).await.err();
        assert!(matches!(e, Some(ServerError::BadTimeScale(_))));
        let mut other = inv.clone();
        other.hosts.pop();
        let e = serve(fleet, &other, config()).await.err();
        assert!(matches!(e, Some(ServerError::InventoryMismatch(_))));
    }

    /// The simulator-only routes the fake agents use: read a host, act on it, read again.
    #[tokio::test]
    async fn sim_routes_read_and_change_a_host() {
        let (fleet, inv) = lab();
        let shared = Arc::new(Shared::new(fleet, &inv, &config()).expect("the lab"));
        let call = |method: &'static str, path: &'static str, body: &'static [u8]| api::Call {
            method,
            path,
            query: &[],
            body,
        };
        let (status, body) =
            api::dispatch(&shared, &call("GET", "/sim/hosts/relay-dmz-1", b"")).await;
        let body = body.expect("a body");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["relay"], true);
        assert_eq!(body["relay_group_offline"], true);
        assert_eq!(body["build"], "20.0.0.3445");
        assert_eq!(body["security_update_current"], false);
        assert!(body["last_security_update_error"].is_null());

        let up = br#"{"args": {"to": "20.0.1-690"}}"#;
        let (status, body) = api::dispatch(
            &shared,
            &call("POST", "/sim/hosts/relay-dmz-1/actions/agent-upgrade", up),
        )
        .await;
        assert_eq!(
            (status, body.map(|b| b["result"].clone())),
            (200, Some("ok".into()))
        );
        let (_, body) = api::dispatch(
            &shared,
            &call(
                "POST",
                "/sim/hosts/relay-dmz-1/actions/security-update",
                b"",
            ),
        )
        .await;
        assert_eq!(body.map(|b| b["result"].clone()), Some("failed".into()));
        let (_, body) = api::dispatch(&shared, &call("GET", "/sim/hosts/relay-dmz-1", b"")).await;
        let body = body.expect("a body");
        assert_eq!(body["build"], "20.0.1.690");
        assert!(
            body["last_security_update_error"]
                .as_str()
                .is_some_and(|m| m.contains("offline")),
            "{body}"
        );

        let (status, _) = api::dispatch(&shared, &call("GET", "/sim/hosts/nobody", b"")).await;
        assert_eq!(status, 404);
        let (status, _) =
            api::dispatch(&shared, &call("DELETE", "/sim/hosts/relay-dmz-1", b"")).await;
        assert_eq!(status, 405);
    }

    /// A test plays the operator of the Manager upgrade through the simulator-only route;
    /// the vendor API's version header follows.
    #[tokio::test]
    async fn the_operator_upgrades_the_manager_through_the_sim_route() {
        let (fleet, inv) = lab();
        let shared = Arc::new(Shared::new(fleet, &inv, &config()).expect("the lab"));
        let before = shared.version_header();
        let call = |body: &'static [u8]| api::Call {
            method: "POST",
            path: "/sim/hosts/dsm01/actions/manager-upgrade",
            query: &[],
            body,
        };
        let (status, body) =
            api::dispatch(&shared, &call(br#"{"args": {"to": "20.0.900"}}"#)).await;
        assert_eq!(
            (status, body.map(|b| b["result"].clone())),
            (200, Some("ok".into()))
        );
        assert_ne!(shared.version_header(), before);
        assert_eq!(shared.version_header(), "DSM/20.0.900");
        let (_, body) = api::dispatch(&shared, &call(br#"{"args": {"to": "20.0.100"}}"#)).await;
        assert_eq!(
            body.map(|b| b["result"].clone()),
            Some("failed".into()),
            "no downgrade"
        );
        assert_eq!(shared.version_header(), "DSM/20.0.900");
    }

    #[tokio::test]
    async fn starts_on_a_free_port_with_a_generated_ca() {
        let (fleet, inv) = lab();
        let mut c = config();
        c.tls = TlsSetup::SelfSigned;
        let s = serve(fleet, &inv, c).await.expect("starts");
        assert!(s.base_url().starts_with("https://127.0.0.1:"));
        assert!(s.ca_pem().is_some_and(|p| p.contains("BEGIN CERTIFICATE")));
        assert_ne!(s.addr().port(), 0);
        assert!(s.requests().is_empty());
        // Computer groups follow the inventory's group lists as folder paths.
        let nested = s
            .shared
            .groups
            .iter()
            .filter(|g| g.parent.is_some())
            .count();
        assert!(nested > 0, "the demo has nested host groups");
        s.shutdown();
    }
}
