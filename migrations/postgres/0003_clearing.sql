-- posgate schema 3: clearing (PostgreSQL). Same tables and meaning as
-- migrations/sqlite/0003_clearing.sql.
--
-- clearing_days: a business date is closed once its row exists; a closed day
-- never changes (writes re-date late lines to the next open date as
-- adjustments). files_created_at is the creation time printed in the day's
-- files, fixed at the first close so regenerating the day gives identical bytes.
-- clearing_files: the registry of the files of a closed day with their sizes
-- and SHA-256 sums; a regeneration must reproduce them exactly.

CREATE TABLE clearing_days (
    business_date    DATE        PRIMARY KEY,
    files_created_at TIMESTAMPTZ NOT NULL,
    closed_at        TIMESTAMPTZ NOT NULL
);

CREATE TABLE clearing_files (
    business_date DATE   NOT NULL REFERENCES clearing_days (business_date),
    name          TEXT   NOT NULL,
    size_bytes    BIGINT NOT NULL,
    sha256        TEXT   NOT NULL,
    PRIMARY KEY (business_date, name)
);

-- The clearing run reads a day's lines party by party, in transaction order.
CREATE INDEX settlement_lines_clearing ON settlement_lines (business_date, party, transaction_id, id);

CREATE FUNCTION posgate_closed_day_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A close found unbalanced is undone; a day with published files never reopens.
    IF TG_OP = 'DELETE' AND NOT EXISTS (
        SELECT 1 FROM clearing_files WHERE business_date = OLD.business_date) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'posgate: a closed business day never changes';
END;
$$;
CREATE TRIGGER clearing_days_immutable BEFORE UPDATE OR DELETE ON clearing_days
    FOR EACH ROW EXECUTE FUNCTION posgate_closed_day_immutable();
