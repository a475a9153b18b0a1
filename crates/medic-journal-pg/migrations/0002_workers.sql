-- Workers by zone (`medic worker`): the coordinator of a run (whoever holds the run's
-- writer lock) queues each driver call of a step as a row of `medic.work`; the workers of
-- the row's zone claim rows with FOR UPDATE SKIP LOCKED, hold a lease they renew, and
-- write the reply only while the row still carries the fencing token they claimed it with.
--
-- Every claim takes a new token from one sequence, so tokens only grow, across rows,
-- steps and coordinators: whatever a driver saw last for a step is the newest claim.
CREATE SEQUENCE medic.fence_seq;
CREATE TABLE medic.work(
    id              BIGSERIAL PRIMARY KEY,
    run_id          TEXT NOT NULL REFERENCES medic.runs ON DELETE CASCADE,
    zone            TEXT NOT NULL,
    step            TEXT NOT NULL,
    driver          TEXT NOT NULL,
    action          TEXT NOT NULL,
    -- JSON: the call's arguments, attempt and `after_ms`.
    request         TEXT NOT NULL,
    -- queued | claimed | done | lost | cancelled
    state           TEXT NOT NULL,
    lease_owner     TEXT,
    lease_until_ms  BIGINT,
    fence           BIGINT NOT NULL DEFAULT 0,
    -- How many times the row was claimed (more than once: a lease ran out).
    claims          INT NOT NULL DEFAULT 0,
    -- JSON: the driver's reply (`done`), or why the outcome is unknown (`lost`).
    reply           TEXT,
    collected       BOOLEAN NOT NULL DEFAULT FALSE,
    created_ms      BIGINT NOT NULL,
    done_ms         BIGINT
)
-- Every row is updated three or four times in seconds (claimed, finished, collected):
-- vacuum it often, or the indexes of open calls fill with dead entries.
WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
CREATE INDEX work_ready ON medic.work(run_id, zone, id) WHERE state IN ('queued', 'claimed');
CREATE INDEX work_replies ON medic.work(run_id, id)
    WHERE state IN ('done', 'lost') AND NOT collected;
-- Who serves a run: one row per worker process, its heartbeat, and its counts.
CREATE TABLE medic.workers(
    run_id        TEXT NOT NULL REFERENCES medic.runs ON DELETE CASCADE,
    worker        TEXT NOT NULL,
    zone          TEXT NOT NULL,
    started_ms    BIGINT NOT NULL,
    seen_ms       BIGINT NOT NULL,
    calls         BIGINT NOT NULL DEFAULT 0,
    refused       BIGINT NOT NULL DEFAULT 0,
    coordinating  BOOLEAN NOT NULL DEFAULT FALSE,
    -- The lease the worker claims with: silent for longer than that, its claims are
    -- someone else's to take.
    lease_ms      BIGINT NOT NULL DEFAULT 30000,
    stopped_ms    BIGINT,
    PRIMARY KEY (run_id, worker)
);
