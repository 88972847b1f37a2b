-- posgate schema 8: e-wallet transactions (PostgreSQL). Same tables and
-- meaning as migrations/sqlite/0008_wallet.sql. (Schema 7 belongs to another
-- feature branch; versions need not be contiguous.)

ALTER TABLE transactions DROP CONSTRAINT transactions_kind_check;
ALTER TABLE transactions ADD CONSTRAINT transactions_kind_check
    CHECK (kind IN ('bill_payment', 'card_payment', 'wallet_payment'));
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
    balance_after_minor     BIGINT,
    refunded_minor          BIGINT  NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
    refund_reserved_minor   BIGINT  NOT NULL DEFAULT 0 CHECK (refund_reserved_minor >= 0),
    original_transaction_id TEXT    REFERENCES transactions (id),
    pos_reference           TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX wallet_payments_original ON wallet_payments (original_transaction_id);
