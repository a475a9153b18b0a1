-- medic's run journal, version 1. Every table is keyed by run: one database holds many
-- runs, each one what a SQLite journal file holds. Append only: a released file is never
-- edited; a change is a new numbered file.
CREATE TABLE medic.runs(
    run_id      TEXT PRIMARY KEY,
    created_ms  BIGINT NOT NULL
);
-- Text values in `value`, binary ones (the plan) in `blob`.
CREATE TABLE medic.meta(
    run_id  TEXT NOT NULL REFERENCES medic.runs ON DELETE CASCADE,
    key     TEXT NOT NULL,
    value   TEXT,
    blob    BYTEA,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE medic.events(
    seq      BIGSERIAL PRIMARY KEY,
    run_id   TEXT NOT NULL REFERENCES medic.runs ON DELETE CASCADE,
    ts_ms    BIGINT NOT NULL,
    step     TEXT,
    kind     TEXT NOT NULL,
    attempt  BIGINT,
    detail   TEXT
);
CREATE INDEX events_by_run ON medic.events(run_id, seq);
CREATE INDEX events_by_kind ON medic.events(run_id, kind, step);
-- The current state of every step. `zone`, `lease_owner`, `lease_until_ms` and `fence`
-- are for workers that claim steps (`FOR UPDATE SKIP LOCKED`): a single-process run leaves
-- them as they are.
CREATE TABLE medic.steps(
    run_id          TEXT NOT NULL REFERENCES medic.runs ON DELETE CASCADE,
    step            TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempt         BIGINT NOT NULL,
    updated_ms      BIGINT NOT NULL,
    detail          TEXT,
    already_done    BOOLEAN NOT NULL DEFAULT FALSE,
    note            TEXT,
    zone            TEXT,
    lease_owner     TEXT,
    lease_until_ms  BIGINT,
    fence           BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE medic.timers(
    run_id  TEXT NOT NULL REFERENCES medic.runs ON DELETE CASCADE,
    key     TEXT NOT NULL,
    kind    TEXT NOT NULL,
    due_ms  BIGINT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE medic.approvals(
    run_id       TEXT NOT NULL REFERENCES medic.runs ON DELETE CASCADE,
    gate         TEXT NOT NULL,
    approved_ms  BIGINT NOT NULL,
    by           TEXT NOT NULL,
    PRIMARY KEY (run_id, gate)
);
