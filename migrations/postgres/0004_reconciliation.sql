-- posgate schema 4: partners' acknowledgement files and the reconciliation
-- exceptions found against them (PostgreSQL). Same tables and meaning as
-- migrations/sqlite/0004_reconciliation.sql. One acknowledgement per
-- partner and business date; a file is stored whole with its report, in one
-- transaction, or not at all. All three tables are append-only.

CREATE TABLE ack_files (
    id            BIGSERIAL   PRIMARY KEY,
    partner       TEXT        NOT NULL,
    business_date DATE        NOT NULL,
    file_id       TEXT        NOT NULL,
    sha256        TEXT        NOT NULL,
    items         BIGINT      NOT NULL CHECK (items >= 0),
    matched       BIGINT      NOT NULL CHECK (matched >= 0),
    exceptions    BIGINT      NOT NULL CHECK (exceptions >= 0),
    ingested_at   TIMESTAMPTZ NOT NULL,
    UNIQUE (partner, business_date)
);

CREATE TABLE ack_items (
    id             BIGSERIAL PRIMARY KEY,
    ack_file_id    BIGINT    NOT NULL REFERENCES ack_files (id),
    line           BIGINT    NOT NULL,
    transaction_id TEXT      NOT NULL,
    reference      TEXT      NOT NULL,
    currency       TEXT      NOT NULL CHECK (length(currency) = 3),
    amount_minor   BIGINT    NOT NULL,
    status         TEXT      NOT NULL CHECK (status IN ('accepted', 'rejected')),
    reason         TEXT      NOT NULL
);
CREATE INDEX ack_items_file ON ack_items (ack_file_id);

CREATE TABLE recon_exceptions (
    id             BIGSERIAL PRIMARY KEY,
    ack_file_id    BIGINT    NOT NULL REFERENCES ack_files (id),
    partner        TEXT      NOT NULL,
    business_date  DATE      NOT NULL,
    kind           TEXT      NOT NULL CHECK (kind IN
                       ('missing_at_partner', 'missing_at_posgate', 'amount_mismatch', 'rejected')),
    transaction_id TEXT      NOT NULL,
    reference      TEXT      NOT NULL,
    currency       TEXT      NOT NULL CHECK (length(currency) = 3),
    ours_minor     BIGINT,
    theirs_minor   BIGINT,
    reason         TEXT      NOT NULL
);
CREATE INDEX recon_exceptions_date ON recon_exceptions (business_date, partner);

CREATE TRIGGER ack_files_append_only BEFORE UPDATE OR DELETE ON ack_files
    FOR EACH ROW EXECUTE FUNCTION posgate_refuse_rewrite();
CREATE TRIGGER ack_items_append_only BEFORE UPDATE OR DELETE ON ack_items
    FOR EACH ROW EXECUTE FUNCTION posgate_refuse_rewrite();
CREATE TRIGGER recon_exceptions_append_only BEFORE UPDATE OR DELETE ON recon_exceptions
    FOR EACH ROW EXECUTE FUNCTION posgate_refuse_rewrite();
