//! Who serves a run and how far its queue has come, as `medic status` shows it: per zone
//! the driver calls queued, claimed (in flight) and done, and the calls whose lease ran
//! out (claimed more than once); per worker process its heartbeat, counts and role
//! (`migrations/0002_workers.sql`). Read-only, from any machine that reaches the database.
//!
//! How long ago a worker was seen is measured by the database's clock: the heartbeats
//! come from many machines, and the one clock they all reached is the server's.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use medic_journal::JournalError;
use tokio_postgres::{Client, Row};

use crate::conn::{check_version, connect, describe, io_err};
use crate::journal::{Bg, resolve_run};
use crate::target::PgTarget;

/// How many of a zone's calls whose lease ran out are listed (all are counted).
const RECLAIMED_LISTED: i64 = 20;

/// The queue and the workers of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkStatus {
    /// Every zone with work rows or workers, by name.
    pub zones: Vec<ZoneWork>,
    /// Every worker process that served the run, by zone then name.
    pub workers: Vec<WorkerState>,
}

/// The driver calls of one zone, per state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ZoneWork {
    pub zone: String,
    pub queued: u64,
    /// Claimed by a worker and not answered yet: in flight.
    pub claimed: u64,
    pub done: u64,
    /// The worker's outcome is unknown (the step is re-probed).
    pub lost: u64,
    pub cancelled: u64,
    /// Calls claimed more than once: a lease ran out and another claim took them over.
    pub reclaimed: u64,
    /// The first of them (at most 20), oldest first.
    pub reclaimed_calls: Vec<ReclaimedCall>,
}

/// A call whose lease ran out at least once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReclaimedCall {
    pub step: String,
    pub driver: String,
    pub action: String,
    /// queued | claimed | done | lost | cancelled
    pub state: String,
    pub claims: i64,
    /// The worker that holds (or last held) it.
    pub lease_owner: Option<String>,
}

/// One worker process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerState {
    pub worker: String,
    pub zone: String,
    pub started_ms: i64,
    /// Its last heartbeat (Unix ms, as it wrote it).
    pub seen_ms: i64,
    /// How long ago that was, by the database's clock (never negative).
    pub seen_ago_ms: i64,
    /// Driver calls it answered.
    pub calls: i64,
    /// Writes refused because another claim had taken the call over (fencing).
    pub refused: i64,
    /// Whether it holds the run's coordinator role.
    pub coordinating: bool,
    /// When it stopped (Unix ms), if it said so.
    pub stopped_ms: Option<i64>,
    /// Not stopped, and no heartbeat for more than its lease (renewed every third of it).
    pub silent: bool,
    /// The lease the worker claims with.
    pub lease_ms: i64,
}

/// The queue and the workers of the run `target` names (or the database's only run);
/// `None` when the run has neither (a single-process run, or a database whose schema
/// predates workers).
pub fn work_status(target: &PgTarget) -> Result<Option<WorkStatus>, JournalError> {
    let target = resolve_run(target)?;
    let location: Arc<Path> = Arc::from(Path::new(&target.location()));
    let bg = Bg::new(&location)?;
    let loc = Arc::clone(&location);
    bg.call(&location, async move {
        let c = connect(&target, &loc).await?;
        check_version(&c, &loc).await?;
        read(&c, target.run().unwrap_or_default(), &loc).await
    })
}

async fn query(
    c: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    loc: &Path,
) -> Result<Vec<Row>, JournalError> {
    c.query(sql, params)
        .await
        .map_err(|e| io_err(loc, describe(&e)))
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    r: &'a Row,
    i: usize,
    loc: &Path,
) -> Result<T, JournalError> {
    r.try_get(i).map_err(|e| io_err(loc, describe(&e)))
}

fn count(r: &Row, i: usize, loc: &Path) -> Result<u64, JournalError> {
    get::<i64>(r, i, loc).map(|n| u64::try_from(n).unwrap_or(0))
}

async fn read(c: &Client, run: &str, loc: &Path) -> Result<Option<WorkStatus>, JournalError> {
    // A database of schema 1 (read as it is) has no queue: nothing to show.
    let has_tables: bool = get(
        &query(
            c,
            "SELECT to_regclass('medic.work') IS NOT NULL AND to_regclass('medic.workers') IS NOT NULL",
            &[],
            loc,
        )
        .await?[0],
        0,
        loc,
    )?;
    if !has_tables {
        return Ok(None);
    }
    let mut zones: BTreeMap<String, ZoneWork> = BTreeMap::new();
    for r in query(
        c,
        "SELECT zone,
                COUNT(*) FILTER (WHERE state = 'queued'),
                COUNT(*) FILTER (WHERE state = 'claimed'),
                COUNT(*) FILTER (WHERE state = 'done'),
                COUNT(*) FILTER (WHERE state = 'lost'),
                COUNT(*) FILTER (WHERE state = 'cancelled'),
                COUNT(*) FILTER (WHERE claims > 1)
         FROM medic.work WHERE run_id = $1 GROUP BY zone",
        &[&run],
        loc,
    )
    .await?
    {
        let zone: String = get(&r, 0, loc)?;
        zones.insert(
            zone.clone(),
            ZoneWork {
                zone,
                queued: count(&r, 1, loc)?,
                claimed: count(&r, 2, loc)?,
                done: count(&r, 3, loc)?,
                lost: count(&r, 4, loc)?,
                cancelled: count(&r, 5, loc)?,
                reclaimed: count(&r, 6, loc)?,
                reclaimed_calls: Vec::new(),
            },
        );
    }
    for r in query(
        c,
        "SELECT zone, step, driver, action, state, claims, lease_owner FROM (
             SELECT *, row_number() OVER (PARTITION BY zone ORDER BY id) AS n
             FROM medic.work WHERE run_id = $1 AND claims > 1) w
         WHERE n <= $2 ORDER BY zone, id",
        &[&run, &RECLAIMED_LISTED],
        loc,
    )
    .await?
    {
        let zone: String = get(&r, 0, loc)?;
        let call = ReclaimedCall {
            step: get(&r, 1, loc)?,
            driver: get(&r, 2, loc)?,
            action: get(&r, 3, loc)?,
            state: get(&r, 4, loc)?,
            claims: i64::from(get::<i32>(&r, 5, loc)?),
            lease_owner: get(&r, 6, loc)?,
        };
        if let Some(z) = zones.get_mut(&zone) {
            z.reclaimed_calls.push(call);
        }
    }
    let mut workers = Vec::new();
    for r in query(
        c,
        "SELECT worker, zone, started_ms, seen_ms, calls, refused, coordinating, stopped_ms,
                (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT, lease_ms
         FROM medic.workers WHERE run_id = $1 ORDER BY zone, worker",
        &[&run],
        loc,
    )
    .await?
    {
        let seen_ms: i64 = get(&r, 3, loc)?;
        let now: i64 = get(&r, 8, loc)?;
        let stopped_ms: Option<i64> = get(&r, 7, loc)?;
        let seen_ago_ms = now.saturating_sub(seen_ms).max(0);
        let lease_ms: i64 = get(&r, 9, loc)?;
        let w = WorkerState {
            worker: get(&r, 0, loc)?,
            zone: get(&r, 1, loc)?,
            started_ms: get(&r, 2, loc)?,
            seen_ms,
            seen_ago_ms,
            calls: get(&r, 4, loc)?,
            refused: get(&r, 5, loc)?,
            coordinating: get(&r, 6, loc)?,
            stopped_ms,
            // A worker renews every third of its lease: silent for a whole lease, its
            // claims are another worker's to take.
            silent: stopped_ms.is_none() && seen_ago_ms > lease_ms,
            lease_ms,
        };
        // A zone whose workers have nothing queued yet is shown too (all counts zero); a
        // worker serving several zones lists them with commas.
        for zone in w.zone.split(',') {
            zones.entry(zone.to_owned()).or_insert_with(|| ZoneWork {
                zone: zone.to_owned(),
                ..ZoneWork::default()
            });
        }
        workers.push(w);
    }
    if zones.is_empty() && workers.is_empty() {
        return Ok(None);
    }
    Ok(Some(WorkStatus {
        zones: zones.into_values().collect(),
        workers,
    }))
}
