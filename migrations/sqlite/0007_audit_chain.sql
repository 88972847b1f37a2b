-- posgate schema 7: the audit chain (SQLite). Same tables and meaning as
-- migrations/postgres/0007_audit_chain.sql; see there for the why.
CREATE TABLE audit_chain (
    sequence       INTEGER PRIMARY KEY CHECK (sequence >= 1),
    entry_type     TEXT    NOT NULL CHECK (entry_type IN ('event', 'audit_read')),
    transaction_id TEXT,
    event_type     TEXT    NOT NULL,
    from_status    TEXT,
    to_status      TEXT,
    actor          TEXT    NOT NULL,
    detail         TEXT    NOT NULL,
    occurred_at    TEXT    NOT NULL,
    prev_hash      BLOB    NOT NULL,
    entry_hash     BLOB    NOT NULL
);
CREATE INDEX audit_chain_transaction ON audit_chain (transaction_id, sequence)
    WHERE transaction_id IS NOT NULL;
CREATE INDEX audit_chain_opening ON audit_chain (sequence, transaction_id)
    WHERE entry_type = 'event' AND from_status IS NULL;

CREATE TABLE audit_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    sequence  INTEGER NOT NULL CHECK (sequence >= 0),
    head_hash BLOB    NOT NULL
);
INSERT INTO audit_head (id, sequence, head_hash) VALUES (1, 0, zeroblob(32));

CREATE TABLE audit_checkpoints (
    sequence    INTEGER PRIMARY KEY CHECK (sequence >= 1),
    head_hash   BLOB    NOT NULL,
    signature   BLOB    NOT NULL,
    key_label   TEXT    NOT NULL,
    key_version INTEGER NOT NULL,
    signed_at   TEXT    NOT NULL
);

CREATE TRIGGER audit_chain_no_update BEFORE UPDATE ON audit_chain
    BEGIN SELECT RAISE(ABORT, 'posgate: audit_chain is append-only'); END;
CREATE TRIGGER audit_chain_no_delete BEFORE DELETE ON audit_chain
    BEGIN SELECT RAISE(ABORT, 'posgate: audit_chain is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, 'posgate: audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, 'posgate: audit_checkpoints is append-only'); END;
