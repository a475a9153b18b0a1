use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use medic_exec::{
    ActionFuture, ActionReply, ActionRequest, ActionStatus, Control, Driver, Drivers, Reporter,
    RunEvent, RunOptions, RunReport,
};
use medic_journal::{JournalRead, MemJournal};
use medic_plan::Plan;

pub(crate) const INVENTORY_HEAD: &str = "manager: { name: dsm, address: 10.0.0.1, version: \"20.0.463\" }\nrelay_groups:\n  - { name: g1 }\n  - { name: g2 }\nhosts:\n";

/// An inventory of `n` Linux agents h00..h(n-1), alternating relay groups g1/g2.
pub(crate) fn inventory(n: usize) -> String {
    let mut s = INVENTORY_HEAD.to_owned();
    for i in 0..n {
        s.push_str(&format!(
            "  - {{ name: h{i:02}, address: 10.0.1.{}, platform: linux, agent_version: \"20.0.0-1\", relay_group: g{}, groups: [{}] }}\n",
            i + 1,
            i % 2 + 1,
            if i == 0 { "canary" } else { "fleet" }
        ));
    }
    s
}

pub(crate) fn plan(inventory: &str, playbook: &str) -> Plan {
    let inv = medic_config::load_inventory("inv.yaml", inventory)
        .unwrap_or_else(|p| panic!("inventory: {p}"));
    let pb = medic_config::load_playbook("pb.yaml", playbook, &[])
        .unwrap_or_else(|p| panic!("playbook: {p}"));
    medic_plan::build_plan(&inv, &pb, playbook, None).expect("plan")
}

/// How the scripted driver behaves for one (host, action).
#[derive(Clone, Debug, Default)]
pub(crate) struct Script {
    pub(crate) secs: f64,
    pub(crate) fail_times: u32,
    pub(crate) hang: bool,
    /// Answer `Refused` (e.g. a changed host key) instead of failing.
    pub(crate) refuse: bool,
}

#[derive(Default)]
pub(crate) struct Log {
    /// (host, action) -> times it acted (probes included).
    pub(crate) calls: HashMap<(String, String), u32>,
    pub(crate) running: HashMap<String, u32>,
    pub(crate) max_running: HashMap<String, u32>,
    /// (time ms since start, "start"|"end", step)
    pub(crate) timeline: Vec<(u128, &'static str, String)>,
}

/// A driver whose every action sleeps, fails or hangs as scripted, counting what it does
/// and the concurrency it sees per category: `all`, `host:NAME`, `action:NAME`.
pub(crate) struct Scripted {
    pub(crate) scripts: HashMap<(String, String), Script>,
    pub(crate) default_secs: f64,
    pub(crate) log: Arc<Mutex<Log>>,
    pub(crate) t0: tokio::time::Instant,
}

impl Scripted {
    pub(crate) fn new(default_secs: f64) -> Self {
        Scripted {
            scripts: HashMap::new(),
            default_secs,
            log: Arc::default(),
            t0: tokio::time::Instant::now(),
        }
    }

    pub(crate) fn script(mut self, host: &str, action: &str, s: Script) -> Self {
        self.scripts.insert((host.to_owned(), action.to_owned()), s);
        self
    }
}

fn bump(log: &mut Log, key: String, by: i32) {
    let r = log.running.entry(key.clone()).or_default();
    *r = (*r as i32 + by).max(0) as u32;
    let v = *r;
    let m = log.max_running.entry(key).or_default();
    *m = (*m).max(v);
}

impl Driver for Scripted {
    fn run(&self, req: ActionRequest) -> ActionFuture<'_> {
        Box::pin(async move {
            let host = req
                .host
                .as_ref()
                .map(|h| h.name.clone())
                .unwrap_or_default();
            let key = (host.clone(), req.action.clone());
            let script = self.scripts.get(&key).cloned().unwrap_or(Script {
                secs: self.default_secs,
                ..Script::default()
            });
            let n = {
                let mut log = self.log.lock().expect("log lock");
                let n = *log
                    .calls
                    .entry(key.clone())
                    .and_modify(|c| *c += 1)
                    .or_insert(1);
                for k in [
                    "all".to_owned(),
                    format!("host:{host}"),
                    format!("action:{}", req.action),
                ] {
                    bump(&mut log, k, 1);
                }
                let t = self.t0.elapsed().as_millis();
                log.timeline.push((t, "start", req.step.clone()));
                n
            };
            struct Done<'a>(&'a Scripted, String, String, String);
            impl Drop for Done<'_> {
                fn drop(&mut self) {
                    let mut log = self.0.log.lock().expect("log lock");
                    for k in [
                        "all".to_owned(),
                        format!("host:{}", self.1),
                        format!("action:{}", self.2),
                    ] {
                        bump(&mut log, k, -1);
                    }
                    let t = self.0.t0.elapsed().as_millis();
                    log.timeline.push((t, "end", self.3.clone()));
                }
            }
            let _done = Done(self, host.clone(), req.action.clone(), req.step.clone());
            if script.hang {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_secs_f64(script.secs)).await;
            if script.refuse {
                return ActionReply {
                    status: ActionStatus::Refused("host key changed (scripted)".to_owned()),
                    facts: Default::default(),
                };
            }
            if n <= script.fail_times {
                return ActionReply::failed(format!(
                    "scripted failure {n} of {}",
                    script.fail_times
                ));
            }
            ActionReply::ok()
        })
    }

    fn idempotent(&self, _action: &str) -> bool {
        true
    }
}

#[derive(Default, Clone)]
pub(crate) struct Events(pub(crate) Arc<Mutex<Vec<RunEvent>>>);

impl Reporter for Events {
    fn event(&mut self, ev: &RunEvent) {
        self.0.lock().expect("events lock").push(ev.clone());
    }
}

/// A plan, its drivers and one in-memory journal that every run of the harness shares, so a
/// second run resumes the first as `medic resume` does.
pub(crate) struct Harness {
    pub(crate) journal: MemJournal,
    pub(crate) plan: Arc<Plan>,
    pub(crate) log: Arc<Mutex<Log>>,
    pub(crate) events: Events,
    pub(crate) drivers: Drivers,
}

impl Harness {
    pub(crate) fn new(plan: Plan, driver: Scripted) -> Self {
        let log = driver.log.clone();
        Harness {
            journal: MemJournal::new(),
            plan: Arc::new(plan),
            log,
            events: Events::default(),
            drivers: Drivers::new().with("local", Arc::new(driver)),
        }
    }

    pub(crate) async fn run(&self, opts: RunOptions, control: Control) -> RunReport {
        let prior = medic_exec::read_prior(&self.journal).expect("prior");
        let mut ev = self.events.clone();
        medic_exec::execute(
            self.plan.clone(),
            &self.drivers,
            &self.journal,
            &prior,
            &opts,
            control,
            &mut ev,
        )
        .await
    }

    pub(crate) fn calls(&self, host: &str, action: &str) -> u32 {
        self.log
            .lock()
            .expect("log")
            .calls
            .get(&(host.to_owned(), action.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn max_running(&self, key: &str) -> u32 {
        self.log
            .lock()
            .expect("log")
            .max_running
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn events(&self) -> Vec<RunEvent> {
        self.events.0.lock().expect("events").clone()
    }

    pub(crate) fn states(&self) -> BTreeMap<String, String> {
        self.journal
            .steps()
            .expect("steps")
            .into_iter()
            .map(|r| (r.step, r.state.as_str().to_owned()))
            .collect()
    }
}

pub(crate) fn opts() -> RunOptions {
    RunOptions {
        yes: true,
        approval_poll: Duration::from_millis(100),
        clock: medic_exec::Clock::starting_at(1_800_000_000_000),
        ..RunOptions::default()
    }
}
