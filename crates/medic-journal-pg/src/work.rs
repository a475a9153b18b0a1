//! The work queue of a run served by workers (`medic worker`, migration 2): the
//! coordinator queues each driver call as a row of `medic.work`; the workers of the row's
//! zone claim rows with `FOR UPDATE SKIP LOCKED`, hold a lease they renew, and write the
//! reply only while the row still carries the fencing token they claimed it with.
//!
//! Times are the database's (`clock_timestamp()`), never a worker's: leases compare
//! across machines whose clocks disagree.
//!
//! Every method is one statement (one round trip) over this queue's own connection, so
//! the coordinator's and a worker's queues never wait on each other or on the journal.

use std::path::Path;
use std::sync::Arc;

use medic_journal::JournalError;
use tokio_postgres::Client;

use crate::conn::{connect, describe, io_err, migrate};
use crate::target::PgTarget;

/// The database's clock in Unix milliseconds, in SQL.
const NOW: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// One driver call to queue.
#[derive(Clone, Debug)]
pub struct NewWork {
    pub zone: String,
    pub step: String,
    pub driver: String,
    pub action: String,
    /// The call's arguments, attempt and `after_ms`, as the caller encodes them.
    pub request: String,
}

/// A call a worker claimed.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub id: i64,
    pub step: String,
    pub driver: String,
    pub action: String,
    pub request: String,
    /// The token this claim holds: every write about the row carries it.
    pub fence: i64,
    /// How many times the row was claimed, this claim included: more than one means the
    /// lease of a worker that held it ran out, and that worker may have acted.
    pub claims: i32,
}

/// How a claimed call ended, as the worker writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finish {
    /// The driver's reply, encoded.
    Done(String),
    /// Not run: a worker whose lease ran out held it, and whether it acted is unknown.
    Lost(String),
}

/// A finished call the coordinator collects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collected {
    pub id: i64,
    pub finish: Finish,
}

/// The queue of one run, over its own connection.
pub struct WorkQueue {
    client: Client,
    run: String,
    location: Arc<Path>,
}

impl WorkQueue {
    /// Connects to the run `target` names (migrating the schema: a worker writes), on the
    /// caller's runtime. Refuses a run the database does not hold.
    pub async fn connect(target: &PgTarget) -> Result<WorkQueue, JournalError> {
        let location: Arc<Path> = Arc::from(Path::new(&target.location()));
        let run = target.run().unwrap_or_default().to_owned();
        let mut client = connect(target, &location).await?;
        migrate(&mut client, &location).await?;
        let q = WorkQueue {
            client,
            run,
            location,
        };
        let found = q
            .client
            .query("SELECT 1 FROM medic.runs WHERE run_id = $1", &[&q.run])
            .await
            .map_err(|e| q.err(&e))?;
        if found.is_empty() {
            return Err(JournalError::NotAJournal {
                path: q.location.to_path_buf(),
            });
        }
        Ok(q)
    }

    fn err(&self, e: &tokio_postgres::Error) -> JournalError {
        io_err(&self.location, describe(e))
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run
    }

    /// Queues `items`; their ids, in order.
    pub async fn submit(&self, items: &[NewWork]) -> Result<Vec<i64>, JournalError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let n = i64::try_from(items.len()).unwrap_or(i64::MAX);
        // Ids first, so that each row's id is known without relying on RETURNING's order.
        let ids: Vec<i64> = self
            .client
            .query(
                "SELECT nextval(pg_get_serial_sequence('medic.work', 'id'))
                 FROM generate_series(1::bigint, $1::bigint)",
                &[&n],
            )
            .await
            .map_err(|e| self.err(&e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let col = |f: fn(&NewWork) -> &str| items.iter().map(f).collect::<Vec<&str>>();
        let sql = format!(
            "INSERT INTO medic.work(id, run_id, zone, step, driver, action, request, state, created_ms)
             SELECT t.id, $1, t.zone, t.step, t.driver, t.action, t.request, 'queued', {NOW}
             FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
                  AS t(id, zone, step, driver, action, request)"
        );
        self.client
            .execute(
                &sql,
                &[
                    &self.run,
                    &ids,
                    &col(|w| &w.zone),
                    &col(|w| &w.step),
                    &col(|w| &w.driver),
                    &col(|w| &w.action),
                    &col(|w| &w.request),
                ],
            )
            .await
            .map_err(|e| self.err(&e))?;
        Ok(ids)
    }

    /// Cancels calls nobody waits for any more (a deadline passed, the run aborted): a
    /// queued one is never claimed, and a worker holding one loses it at its next
    /// heartbeat and stops it.
    pub async fn cancel(&self, ids: &[i64]) -> Result<(), JournalError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.client
            .execute(
                "UPDATE medic.work SET state = 'cancelled'
                 WHERE run_id = $1 AND id = ANY($2) AND state IN ('queued', 'claimed')",
                &[&self.run, &ids],
            )
            .await
            .map_err(|e| self.err(&e))?;
        Ok(())
    }

    /// A new coordinator's first act: every call its dead predecessor queued or had
    /// claimed is cancelled (it re-decides them from the journal, re-probing the steps
    /// that were running). A call being run stops at its worker's next heartbeat, and its
    /// token is older than any claim made from now on; left claimable, a lease running out
    /// would give it a newer token than the new coordinator's call of the same step.
    /// Returns how many were cancelled.
    pub async fn take_over(&self) -> Result<u64, JournalError> {
        self.client
            .execute(
                "UPDATE medic.work SET state = 'cancelled'
                 WHERE run_id = $1 AND state IN ('queued', 'claimed')",
                &[&self.run],
            )
            .await
            .map_err(|e| self.err(&e))
    }

    /// The finished calls not collected yet, marked collected.
    pub async fn collect(&self) -> Result<Vec<Collected>, JournalError> {
        let rows = self
            .client
            .query(
                "UPDATE medic.work SET collected = TRUE
                 WHERE run_id = $1 AND state IN ('done', 'lost') AND NOT collected
                 RETURNING id, state, COALESCE(reply, '')",
                &[&self.run],
            )
            .await
            .map_err(|e| self.err(&e))?;
        Ok(rows
            .iter()
            .map(|r| {
                let (id, state, reply): (i64, &str, String) = (r.get(0), r.get(1), r.get(2));
                let finish = if state == "done" {
                    Finish::Done(reply)
                } else {
                    Finish::Lost(reply)
                };
                Collected { id, finish }
            })
            .collect())
    }

    /// Registers (or re-registers, after a restart under the same name) a worker.
    pub async fn register(
        &self,
        worker: &str,
        zone: &str,
        lease_ms: i64,
    ) -> Result<(), JournalError> {
        let sql = format!(
            "INSERT INTO medic.workers(run_id, worker, zone, started_ms, seen_ms, lease_ms)
             VALUES ($1, $2, $3, {NOW}, {NOW}, $4)
             ON CONFLICT (run_id, worker) DO UPDATE SET zone = excluded.zone,
                 lease_ms = excluded.lease_ms,
                 started_ms = excluded.started_ms, seen_ms = excluded.seen_ms,
                 coordinating = FALSE, stopped_ms = NULL"
        );
        self.client
            .execute(&sql, &[&self.run, &worker, &zone, &lease_ms])
            .await
            .map_err(|e| self.err(&e))?;
        Ok(())
    }

    /// Claims up to `n` calls of `zones`: queued ones, and claimed ones whose lease ran out
    /// (their worker stopped or stalled). Each claim takes a new fencing token.
    pub async fn claim(
        &self,
        zones: &[String],
        worker: &str,
        n: i64,
        lease_ms: i64,
    ) -> Result<Vec<Claimed>, JournalError> {
        let mut out = Vec::new();
        // One zone per statement: `zone = ANY(...)` with `ORDER BY id LIMIT` leads the
        // planner to walk the whole table in id order (every call ever made) instead of
        // the index of the zone's open calls, which keeps them in that order.
        for zone in zones {
            let room = n - i64::try_from(out.len()).unwrap_or(i64::MAX);
            if room <= 0 {
                break;
            }
            out.extend(self.claim_zone(zone, worker, room, lease_ms).await?);
        }
        Ok(out)
    }

    async fn claim_zone(
        &self,
        zone: &str,
        worker: &str,
        n: i64,
        lease_ms: i64,
    ) -> Result<Vec<Claimed>, JournalError> {
        let sql = format!(
            "WITH c AS (
                 SELECT id FROM medic.work
                 WHERE run_id = $1 AND zone = $2
                   AND (state = 'queued' OR (state = 'claimed' AND lease_until_ms < {NOW}))
                 ORDER BY id LIMIT $3
                 FOR UPDATE SKIP LOCKED)
             UPDATE medic.work w SET state = 'claimed', lease_owner = $4,
                 lease_until_ms = {NOW} + $5, fence = nextval('medic.fence_seq'),
                 claims = w.claims + 1
             FROM c WHERE w.id = c.id
             RETURNING w.id, w.step, w.driver, w.action, w.request, w.fence, w.claims"
        );
        let rows = self
            .client
            .query(&sql, &[&self.run, &zone, &n, &worker, &lease_ms])
            .await
            .map_err(|e| self.err(&e))?;
        let mut out: Vec<Claimed> = rows
            .iter()
            .map(|r| Claimed {
                id: r.get(0),
                step: r.get(1),
                driver: r.get(2),
                action: r.get(3),
                request: r.get(4),
                fence: r.get(5),
                claims: r.get(6),
            })
            .collect();
        out.sort_by_key(|c| c.id);
        Ok(out)
    }

    /// Renews the leases of the calls `held` (id, token) that this worker still holds,
    /// and its own heartbeat. Returns the calls still held: any other one was taken over
    /// or cancelled, and its work must stop.
    pub async fn heartbeat(
        &self,
        worker: &str,
        coordinating: bool,
        held: &[(i64, i64)],
        lease_ms: i64,
    ) -> Result<Vec<i64>, JournalError> {
        let ids: Vec<i64> = held.iter().map(|h| h.0).collect();
        let fences: Vec<i64> = held.iter().map(|h| h.1).collect();
        let renew = format!(
            "UPDATE medic.work w SET lease_until_ms = {NOW} + $3
             FROM unnest($4::bigint[], $5::bigint[]) AS h(id, fence)
             WHERE w.run_id = $1 AND w.id = h.id AND w.fence = h.fence
               AND w.state = 'claimed' AND w.lease_owner = $2
             RETURNING w.id"
        );
        let rows = self
            .client
            .query(&renew, &[&self.run, &worker, &lease_ms, &ids, &fences])
            .await
            .map_err(|e| self.err(&e))?;
        let kept: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        let lost: Vec<i64> = ids.iter().copied().filter(|i| !kept.contains(i)).collect();
        if !lost.is_empty() {
            // A renewal refused because another worker holds the call now (a newer token)
            // is a stale write refused; one refused because nobody waits any more is not.
            self.client
                .execute(
                    "UPDATE medic.workers SET refused = refused + (
                         SELECT COUNT(*) FROM medic.work
                         WHERE run_id = $1 AND id = ANY($3) AND state <> 'cancelled'
                           AND lease_owner IS DISTINCT FROM $2)
                     WHERE run_id = $1 AND worker = $2",
                    &[&self.run, &worker, &lost],
                )
                .await
                .map_err(|e| self.err(&e))?;
        }
        let beat = format!(
            "UPDATE medic.workers SET seen_ms = {NOW}, coordinating = $3
             WHERE run_id = $1 AND worker = $2"
        );
        self.client
            .execute(&beat, &[&self.run, &worker, &coordinating])
            .await
            .map_err(|e| self.err(&e))?;
        Ok(kept)
    }

    /// Writes how claimed calls ended, each only if the row still carries the token it
    /// was claimed with (fencing: a worker whose lease ran out and whose call another
    /// worker took over cannot overwrite that worker's result). Returns the ids refused
    /// as stale; they are counted against the worker.
    pub async fn finish(
        &self,
        worker: &str,
        done: &[(i64, i64, Finish)],
    ) -> Result<Vec<i64>, JournalError> {
        if done.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = done.iter().map(|d| d.0).collect();
        let fences: Vec<i64> = done.iter().map(|d| d.1).collect();
        let states: Vec<&str> = done
            .iter()
            .map(|d| match d.2 {
                Finish::Done(_) => "done",
                Finish::Lost(_) => "lost",
            })
            .collect();
        let replies: Vec<&str> = done
            .iter()
            .map(|d| match &d.2 {
                Finish::Done(r) | Finish::Lost(r) => r.as_str(),
            })
            .collect();
        let sql = format!(
            "UPDATE medic.work w SET state = f.state, reply = f.reply, done_ms = {NOW},
                 lease_until_ms = NULL
             FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[])
                  AS f(id, fence, state, reply)
             WHERE w.run_id = $1 AND w.id = f.id AND w.fence = f.fence AND w.state = 'claimed'
             RETURNING w.id"
        );
        let accepted: Vec<i64> = self
            .client
            .query(&sql, &[&self.run, &ids, &fences, &states, &replies])
            .await
            .map_err(|e| self.err(&e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let refused: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !accepted.contains(id))
            .collect();
        let (calls, n_refused) = (
            i64::try_from(accepted.len()).unwrap_or(i64::MAX),
            i64::try_from(refused.len()).unwrap_or(i64::MAX),
        );
        self.client
            .execute(
                "UPDATE medic.workers SET calls = calls + $3, refused = refused + $4
                 WHERE run_id = $1 AND worker = $2",
                &[&self.run, &worker, &calls, &n_refused],
            )
            .await
            .map_err(|e| self.err(&e))?;
        Ok(refused)
    }

    /// A text value of the run's meta (how the run ended, for a worker deciding to stop).
    pub async fn meta(&self, key: &str) -> Result<Option<String>, JournalError> {
        let rows = self
            .client
            .query(
                "SELECT value FROM medic.meta WHERE run_id = $1 AND key = $2",
                &[&self.run, &key],
            )
            .await
            .map_err(|e| self.err(&e))?;
        Ok(rows.first().and_then(|r| r.get(0)))
    }

    /// Records that a worker stopped (it left; its claims, if any, run out).
    pub async fn stopped(&self, worker: &str) -> Result<(), JournalError> {
        let sql = format!(
            "UPDATE medic.workers SET stopped_ms = {NOW}, coordinating = FALSE
             WHERE run_id = $1 AND worker = $2"
        );
        self.client
            .execute(&sql, &[&self.run, &worker])
            .await
            .map_err(|e| self.err(&e))?;
        Ok(())
    }
}

impl WorkQueue {
    /// Whether the run's writer lock is free: nobody coordinates it (a journal writer
    /// holds it for as long as its connection lives). Takes the lock and gives it back at
    /// once, on this queue's connection.
    pub async fn writer_lock_free(&self) -> Result<bool, JournalError> {
        writer_lock_free_on(&self.client, &self.run, &self.location).await
    }
}

async fn writer_lock_free_on(c: &Client, run: &str, location: &Path) -> Result<bool, JournalError> {
    let e = |e: tokio_postgres::Error| io_err(location, describe(&e));
    let free: bool = c
        .query_one(crate::journal::RUN_LOCK_SQL, &[&run])
        .await
        .map_err(e)?
        .get(0);
    if free {
        c.execute(
            "SELECT pg_advisory_unlock(hashtextextended('medic.run:' || $1, 0))",
            &[&run],
        )
        .await
        .map_err(e)?;
    }
    Ok(free)
}
