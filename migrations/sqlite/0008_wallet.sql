-- posgate schema 8: e-wallet transactions (SQLite). Same tables and meaning
-- as migrations/postgres/0008_wallet.sql. (Schema 7 belongs to another
-- feature branch; versions need not be contiguous.)
-- `transactions` gains the kind 'wallet_payment'; SQLite cannot change a CHECK
-- in place, so the table is rebuilt as in schema 2, with its indexes.

CREATE TABLE transactions_v8 (
    id                TEXT    PRIMARY KEY,
    kind              TEXT    NOT NULL CHECK (kind IN ('bill_payment', 'card_payment', 'wallet_payment')),
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
INSERT INTO transactions_v8 SELECT id, kind, status, store_id, terminal_id, operator_id,
    client_request_id, partner_id, amount_minor, currency, fee_minor, business_date,
    created_at, updated_at, cancelled_at, cancel_reason FROM transactions;
DROP TABLE transactions;
ALTER TABLE transactions_v8 RENAME TO transactions;
CREATE INDEX transactions_store_business_date ON transactions (store_id, business_date);
CREATE INDEX transactions_partner_business_date ON transactions (partner_id, business_date);
CREATE INDEX transactions_request ON transactions (store_id, terminal_id, client_request_id);
CREATE INDEX transactions_card_status ON transactions (status, updated_at)
    WHERE kind = 'card_payment';
-- The wallet store-and-forward worker's look-up of stuck requests.
CREATE INDEX transactions_wallet_status ON transactions (status, updated_at)
    WHERE kind = 'wallet_payment';

-- Wallet details of a wallet_payment transaction (top-up, payment or refund
-- at a wallet operator). A member barcode is a credential: only its last 4
-- characters are kept (wallet_ref); the operator's account id once known.
CREATE TABLE wallet_payments (
    transaction_id          TEXT    PRIMARY KEY REFERENCES transactions (id),
    wallet_type             TEXT    NOT NULL CHECK (wallet_type IN ('top_up', 'payment', 'refund')),
    wallet_operator_id      TEXT    NOT NULL,
    wallet_ref              TEXT    NOT NULL,
    account_id              TEXT    NOT NULL DEFAULT '',
    display_id              TEXT    NOT NULL DEFAULT '',
    operator_name           TEXT    NOT NULL DEFAULT '',
    funding                 TEXT    NOT NULL DEFAULT '',
    decline_reason          TEXT    NOT NULL DEFAULT '',
    operator_response_code  TEXT    NOT NULL DEFAULT '',
    operator_reference      TEXT    NOT NULL DEFAULT '',
    response_text           TEXT    NOT NULL DEFAULT '',
    balance_after_minor     INTEGER,
    refunded_minor          INTEGER NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
    refund_reserved_minor   INTEGER NOT NULL DEFAULT 0 CHECK (refund_reserved_minor >= 0),
    original_transaction_id TEXT    REFERENCES transactions (id),
    pos_reference           TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX wallet_payments_original ON wallet_payments (original_transaction_id);

-- Wallet reversals go through saf_queue (kind 'reversal', link_id = the
-- wallet operator id); the card worker's queries join card_payments, the
-- wallet worker's join wallet_payments, so each sees only its own.
