-- posgate schema 3: clearing (SQLite). Same tables and meaning as
-- migrations/postgres/0003_clearing.sql.
--
-- clearing_days: a business date is closed once its row exists; a closed day
-- never changes (writes re-date late lines to the next open date as
-- adjustments). files_created_at is the creation time printed in the day's
-- files, fixed at the first close so regenerating the day gives identical bytes.
-- clearing_files: the registry of the files of a closed day with their sizes
-- and SHA-256 sums; a regeneration must reproduce them exactly.

CREATE TABLE clearing_days (
    business_date    TEXT    PRIMARY KEY,
    files_created_at TEXT    NOT NULL,
    closed_at        TEXT    NOT NULL
);

CREATE TABLE clearing_files (
    business_date TEXT    NOT NULL REFERENCES clearing_days (business_date),
    name          TEXT    NOT NULL,
    size_bytes    INTEGER NOT NULL,
    sha256        TEXT    NOT NULL,
    PRIMARY KEY (business_date, name)
);

-- The clearing run reads a day's lines party by party, in transaction order.
CREATE INDEX settlement_lines_clearing ON settlement_lines (business_date, party, transaction_id, id);

CREATE TRIGGER clearing_days_no_update BEFORE UPDATE ON clearing_days
    BEGIN SELECT RAISE(ABORT, 'posgate: a closed business day never changes'); END;
-- A close found unbalanced is undone; a day with published files never reopens.
CREATE TRIGGER clearing_days_no_delete BEFORE DELETE ON clearing_days
    WHEN EXISTS (SELECT 1 FROM clearing_files WHERE business_date = OLD.business_date)
    BEGIN SELECT RAISE(ABORT, 'posgate: a closed business day never changes'); END;
