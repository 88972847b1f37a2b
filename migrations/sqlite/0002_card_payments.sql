-- posgate schema 2: card payments and the store-and-forward queue (SQLite).
-- Same tables and meaning as migrations/postgres/0002_card_payments.sql.
-- SQLite cannot change a CHECK constraint in place, so `transactions` is
-- rebuilt the documented way (new table, copy, drop, rename); the migration
-- runner turns foreign-key enforcement off around it and runs
-- foreign_key_check before committing.

ALTER TABLE idempotency_keys ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;

CREATE TABLE transactions_v2 (
    id                TEXT    PRIMARY KEY,
    kind              TEXT    NOT NULL CHECK (kind IN ('bill_payment', 'card_payment')),
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
INSERT INTO transactions_v2 SELECT id, kind, status, store_id, terminal_id, operator_id,
    client_request_id, partner_id, amount_minor, currency, fee_minor, business_date,
    created_at, updated_at, cancelled_at, cancel_reason FROM transactions;
DROP TABLE transactions;
ALTER TABLE transactions_v2 RENAME TO transactions;
CREATE INDEX transactions_store_business_date ON transactions (store_id, business_date);
CREATE INDEX transactions_partner_business_date ON transactions (partner_id, business_date);
CREATE INDEX transactions_request ON transactions (store_id, terminal_id, client_request_id);

CREATE TABLE card_payments (
    transaction_id          TEXT    PRIMARY KEY REFERENCES transactions (id),
    card_type               TEXT    NOT NULL CHECK (card_type IN ('authorization', 'sale', 'refund')),
    route                   TEXT    NOT NULL CHECK (route IN ('acquirer', 'co_brand_issuer')),
    masked_pan              TEXT    NOT NULL,
    pan_fingerprint         TEXT    NOT NULL,
    card_brand              TEXT    NOT NULL,
    entry_mode              TEXT    NOT NULL,
    cardholder_verification TEXT    NOT NULL,
    merchant_id             TEXT    NOT NULL,
    bank_terminal_id        TEXT    NOT NULL,
    stan                    TEXT    NOT NULL,
    rrn                     TEXT    NOT NULL,
    transmitted_at          TEXT    NOT NULL,
    request_mti             TEXT    NOT NULL,
    response_code           TEXT    NOT NULL DEFAULT '',
    approval_code           TEXT    NOT NULL DEFAULT '',
    captured_minor          INTEGER NOT NULL DEFAULT 0 CHECK (captured_minor >= 0),
    refunded_minor          INTEGER NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
    refund_reserved_minor   INTEGER NOT NULL DEFAULT 0 CHECK (refund_reserved_minor >= 0),
    loyalty_points          INTEGER,
    loyalty_balance         INTEGER,
    original_transaction_id TEXT    REFERENCES transactions (id),
    pos_reference           TEXT    NOT NULL,
    authorization_expires_at TEXT,
    advice_pending          INTEGER NOT NULL DEFAULT 0,
    CHECK (refunded_minor + refund_reserved_minor <= captured_minor)
);
CREATE UNIQUE INDEX card_payments_link_rrn ON card_payments (rrn);
CREATE INDEX card_payments_original ON card_payments (original_transaction_id);
CREATE INDEX card_payments_fingerprint ON card_payments (pan_fingerprint);

CREATE TABLE saf_queue (
    id               INTEGER PRIMARY KEY,
    transaction_id   TEXT    NOT NULL REFERENCES transactions (id),
    link_id          TEXT    NOT NULL,
    kind             TEXT    NOT NULL CHECK (kind IN ('reversal', 'advice')),
    amount_minor     INTEGER NOT NULL,
    currency         TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT    NOT NULL,
    created_at       TEXT    NOT NULL,
    acked_at         TEXT,
    last_error       TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX saf_queue_due ON saf_queue (next_attempt_at) WHERE acked_at IS NULL;
CREATE INDEX saf_queue_transaction ON saf_queue (transaction_id);
