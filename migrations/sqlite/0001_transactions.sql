-- posgate schema 1: idempotency keys, transactions, bill payments,
-- settlement lines and transaction events (SQLite). Same tables and meaning
-- as migrations/postgres/0001_transactions.sql; times are RFC 3339 text in
-- UTC and dates are YYYY-MM-DD text.

CREATE TABLE idempotency_keys (
    store_id          TEXT    NOT NULL,
    terminal_id       TEXT    NOT NULL,
    client_request_id TEXT    NOT NULL,
    operation         TEXT    NOT NULL,
    request_digest    BLOB    NOT NULL,
    field_digests     TEXT    NOT NULL,
    response          BLOB    NOT NULL,
    transaction_id    TEXT    NOT NULL,
    created_at        TEXT    NOT NULL,
    expires_at        TEXT    NOT NULL,
    PRIMARY KEY (store_id, terminal_id, client_request_id)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);

CREATE TABLE transactions (
    id                TEXT    PRIMARY KEY,
    kind              TEXT    NOT NULL CHECK (kind IN ('bill_payment')),
    status            TEXT    NOT NULL,
    store_id          TEXT    NOT NULL,
    terminal_id       TEXT    NOT NULL,
    operator_id       TEXT    NOT NULL,
    client_request_id TEXT    NOT NULL,
    partner_id        TEXT    NOT NULL,
    amount_minor      INTEGER NOT NULL CHECK (amount_minor > 0),
    currency          TEXT    NOT NULL CHECK (length(currency) = 3),
    fee_minor         INTEGER NOT NULL CHECK (fee_minor >= 0 AND fee_minor <= amount_minor),
    business_date     TEXT    NOT NULL,
    created_at        TEXT    NOT NULL,
    updated_at        TEXT    NOT NULL,
    cancelled_at      TEXT,
    cancel_reason     TEXT
);
CREATE INDEX transactions_store_business_date ON transactions (store_id, business_date);
CREATE INDEX transactions_partner_business_date ON transactions (partner_id, business_date);
CREATE INDEX transactions_request ON transactions (store_id, terminal_id, client_request_id);

CREATE TABLE bill_payments (
    transaction_id TEXT    PRIMARY KEY REFERENCES transactions (id),
    biller_id      TEXT    NOT NULL,
    agency_code    TEXT    NOT NULL,
    bill_reference TEXT    NOT NULL,
    due_date       TEXT,
    period         TEXT    NOT NULL,
    late           INTEGER NOT NULL
);

CREATE TABLE settlement_lines (
    id             INTEGER PRIMARY KEY,
    transaction_id TEXT    NOT NULL REFERENCES transactions (id),
    business_date  TEXT    NOT NULL,
    party          TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    currency       TEXT    NOT NULL,
    amount_minor   INTEGER NOT NULL,
    created_at     TEXT    NOT NULL
);
CREATE INDEX settlement_lines_business_date ON settlement_lines (business_date, party);
CREATE INDEX settlement_lines_transaction ON settlement_lines (transaction_id);

CREATE TABLE transaction_events (
    id             INTEGER PRIMARY KEY,
    transaction_id TEXT    NOT NULL REFERENCES transactions (id),
    event_type     TEXT    NOT NULL,
    from_status    TEXT,
    to_status      TEXT    NOT NULL,
    actor          TEXT    NOT NULL,
    detail         TEXT    NOT NULL,
    at             TEXT    NOT NULL
);
CREATE INDEX transaction_events_transaction ON transaction_events (transaction_id, id);

CREATE TRIGGER settlement_lines_no_update BEFORE UPDATE ON settlement_lines
    BEGIN SELECT RAISE(ABORT, 'posgate: settlement_lines is append-only'); END;
CREATE TRIGGER settlement_lines_no_delete BEFORE DELETE ON settlement_lines
    BEGIN SELECT RAISE(ABORT, 'posgate: settlement_lines is append-only'); END;
CREATE TRIGGER transaction_events_no_update BEFORE UPDATE ON transaction_events
    BEGIN SELECT RAISE(ABORT, 'posgate: transaction_events is append-only'); END;
CREATE TRIGGER transaction_events_no_delete BEFORE DELETE ON transaction_events
    BEGIN SELECT RAISE(ABORT, 'posgate: transaction_events is append-only'); END;
