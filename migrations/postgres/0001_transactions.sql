-- posgate schema 1: idempotency keys, transactions, bill payments,
-- settlement lines and transaction events (PostgreSQL).

-- One row per (store, terminal, client_request_id): the first answer given,
-- replayed byte-for-byte to retries until expires_at.
CREATE TABLE idempotency_keys (
    store_id          TEXT        NOT NULL,
    terminal_id       TEXT        NOT NULL,
    client_request_id TEXT        NOT NULL,
    operation         TEXT        NOT NULL,
    request_digest    BYTEA       NOT NULL,
    field_digests     TEXT        NOT NULL,
    response          BYTEA       NOT NULL,
    transaction_id    TEXT        NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    expires_at        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (store_id, terminal_id, client_request_id)
);
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);

-- Every money movement, whatever its kind; kind-specific details live in
-- their own tables keyed by transaction_id.
CREATE TABLE transactions (
    id                TEXT        PRIMARY KEY,
    kind              TEXT        NOT NULL CHECK (kind IN ('bill_payment')),
    status            TEXT        NOT NULL,
    store_id          TEXT        NOT NULL,
    terminal_id       TEXT        NOT NULL,
    operator_id       TEXT        NOT NULL,
    client_request_id TEXT        NOT NULL,
    partner_id        TEXT        NOT NULL,
    amount_minor      BIGINT      NOT NULL CHECK (amount_minor > 0),
    currency          TEXT        NOT NULL CHECK (length(currency) = 3),
    fee_minor         BIGINT      NOT NULL CHECK (fee_minor >= 0 AND fee_minor <= amount_minor),
    business_date     DATE        NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL,
    cancelled_at      TIMESTAMPTZ,
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
    due_date       DATE,
    period         TEXT    NOT NULL,
    late           BOOLEAN NOT NULL
);

-- Who owes whom, per transaction and business date. Append-only: a
-- cancellation appends reversing lines. The lines of one transaction and
-- state change sum to zero per currency.
CREATE TABLE settlement_lines (
    id             BIGSERIAL   PRIMARY KEY,
    transaction_id TEXT        NOT NULL REFERENCES transactions (id),
    business_date  DATE        NOT NULL,
    party          TEXT        NOT NULL,
    kind           TEXT        NOT NULL,
    currency       TEXT        NOT NULL,
    amount_minor   BIGINT      NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX settlement_lines_business_date ON settlement_lines (business_date, party);
CREATE INDEX settlement_lines_transaction ON settlement_lines (transaction_id);

-- Every state change of every transaction, in order. Append-only.
CREATE TABLE transaction_events (
    id             BIGSERIAL   PRIMARY KEY,
    transaction_id TEXT        NOT NULL REFERENCES transactions (id),
    event_type     TEXT        NOT NULL,
    from_status    TEXT,
    to_status      TEXT        NOT NULL,
    actor          TEXT        NOT NULL,
    detail         TEXT        NOT NULL,
    at             TIMESTAMPTZ NOT NULL
);
CREATE INDEX transaction_events_transaction ON transaction_events (transaction_id, id);

CREATE FUNCTION posgate_refuse_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'posgate: % is append-only', TG_TABLE_NAME;
END;
$$;
CREATE TRIGGER settlement_lines_append_only BEFORE UPDATE OR DELETE ON settlement_lines
    FOR EACH ROW EXECUTE FUNCTION posgate_refuse_rewrite();
CREATE TRIGGER transaction_events_append_only BEFORE UPDATE OR DELETE ON transaction_events
    FOR EACH ROW EXECUTE FUNCTION posgate_refuse_rewrite();
