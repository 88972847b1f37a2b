-- posgate schema 4: partners' acknowledgement files and the reconciliation
-- exceptions found against them (SQLite). Same tables and meaning as
-- migrations/postgres/0004_reconciliation.sql. One acknowledgement per
-- partner and business date; a file is stored whole with its report, in one
-- transaction, or not at all. All three tables are append-only.

CREATE TABLE ack_files (
    id            INTEGER PRIMARY KEY,
    partner       TEXT    NOT NULL,
    business_date TEXT    NOT NULL,
    file_id       TEXT    NOT NULL,
    sha256        TEXT    NOT NULL,
    items         INTEGER NOT NULL CHECK (items >= 0),
    matched       INTEGER NOT NULL CHECK (matched >= 0),
    exceptions    INTEGER NOT NULL CHECK (exceptions >= 0),
    ingested_at   TEXT    NOT NULL,
    UNIQUE (partner, business_date)
);

CREATE TABLE ack_items (
    id             INTEGER PRIMARY KEY,
    ack_file_id    INTEGER NOT NULL REFERENCES ack_files (id),
    line           INTEGER NOT NULL,
    transaction_id TEXT    NOT NULL,
    reference      TEXT    NOT NULL,
    currency       TEXT    NOT NULL CHECK (length(currency) = 3),
    amount_minor   INTEGER NOT NULL,
    status         TEXT    NOT NULL CHECK (status IN ('accepted', 'rejected')),
    reason         TEXT    NOT NULL
);
CREATE INDEX ack_items_file ON ack_items (ack_file_id);

CREATE TABLE recon_exceptions (
    id             INTEGER PRIMARY KEY,
    ack_file_id    INTEGER NOT NULL REFERENCES ack_files (id),
    partner        TEXT    NOT NULL,
    business_date  TEXT    NOT NULL,
    kind           TEXT    NOT NULL CHECK (kind IN
                       ('missing_at_partner', 'missing_at_posgate', 'amount_mismatch', 'rejected')),
    transaction_id TEXT    NOT NULL,
    reference      TEXT    NOT NULL,
    currency       TEXT    NOT NULL CHECK (length(currency) = 3),
    ours_minor     INTEGER,
    theirs_minor   INTEGER,
    reason         TEXT    NOT NULL
);
CREATE INDEX recon_exceptions_date ON recon_exceptions (business_date, partner);

CREATE TRIGGER ack_files_no_update BEFORE UPDATE ON ack_files
    BEGIN SELECT RAISE(ABORT, 'posgate: ack_files is append-only'); END;
CREATE TRIGGER ack_files_no_delete BEFORE DELETE ON ack_files
    BEGIN SELECT RAISE(ABORT, 'posgate: ack_files is append-only'); END;
CREATE TRIGGER ack_items_no_update BEFORE UPDATE ON ack_items
    BEGIN SELECT RAISE(ABORT, 'posgate: ack_items is append-only'); END;
CREATE TRIGGER ack_items_no_delete BEFORE DELETE ON ack_items
    BEGIN SELECT RAISE(ABORT, 'posgate: ack_items is append-only'); END;
CREATE TRIGGER recon_exceptions_no_update BEFORE UPDATE ON recon_exceptions
    BEGIN SELECT RAISE(ABORT, 'posgate: recon_exceptions is append-only'); END;
CREATE TRIGGER recon_exceptions_no_delete BEFORE DELETE ON recon_exceptions
    BEGIN SELECT RAISE(ABORT, 'posgate: recon_exceptions is append-only'); END;
