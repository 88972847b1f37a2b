-- posgate schema 11: durable STANs (SQLite). Same tables and meaning as
-- migrations/postgres/0011_stan_counters.sql.

-- ISO 8583 field 11 is unique per acquiring institution id (field 32, as
-- padded into field 90) and UTC day, across every link that shares the
-- institution id, every restart and every gateway instance on the database.
-- Gateways take STANs from here in blocks; a block a crash leaves unused is
-- skipped, never handed out again.
CREATE TABLE stan_counters (
    institution_id  TEXT    NOT NULL,
    stan_day        TEXT    NOT NULL,
    -- The first STAN not handed out yet (1 on a fresh day).
    next_stan       INTEGER NOT NULL CHECK (next_stan >= 1),
    PRIMARY KEY (institution_id, stan_day)
);

-- A reversal or advice keeps the STAN of its first transmission: its
-- repeats (0401) carry the same one so the bank can match them.
ALTER TABLE saf_queue ADD COLUMN stan TEXT;
