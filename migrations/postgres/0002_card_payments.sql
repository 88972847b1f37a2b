-- posgate schema 2: card payments and the store-and-forward queue (PostgreSQL).

-- A key whose first request is still running (a card payment waiting for the
-- bank, or one whose outcome is unknown and being reversed) has no answer yet.
ALTER TABLE idempotency_keys ADD COLUMN pending BOOLEAN NOT NULL DEFAULT FALSE;

ALTER TABLE transactions DROP CONSTRAINT transactions_kind_check;
ALTER TABLE transactions ADD CONSTRAINT transactions_kind_check
    CHECK (kind IN ('bill_payment', 'card_payment'));

-- Card details of a card_payment transaction. Never a full PAN, track, PIN
-- block, security code or chip data: the masked PAN and a keyed fingerprint.
CREATE TABLE card_payments (
    transaction_id          TEXT        PRIMARY KEY REFERENCES transactions (id),
    card_type               TEXT        NOT NULL CHECK (card_type IN ('authorization', 'sale', 'refund')),
    route                   TEXT        NOT NULL CHECK (route IN ('acquirer', 'co_brand_issuer')),
    masked_pan              TEXT        NOT NULL,
    pan_fingerprint         TEXT        NOT NULL,
    card_brand              TEXT        NOT NULL,
    entry_mode              TEXT        NOT NULL,
    cardholder_verification TEXT        NOT NULL,
    merchant_id             TEXT        NOT NULL,
    bank_terminal_id        TEXT        NOT NULL,
    stan                    TEXT        NOT NULL,
    rrn                     TEXT        NOT NULL,
    transmitted_at          TIMESTAMPTZ NOT NULL,
    request_mti             TEXT        NOT NULL,
    response_code           TEXT        NOT NULL DEFAULT '',
    approval_code           TEXT        NOT NULL DEFAULT '',
    captured_minor          BIGINT      NOT NULL DEFAULT 0 CHECK (captured_minor >= 0),
    refunded_minor          BIGINT      NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
    refund_reserved_minor   BIGINT      NOT NULL DEFAULT 0 CHECK (refund_reserved_minor >= 0),
    loyalty_points          BIGINT,
    loyalty_balance         BIGINT,
    original_transaction_id TEXT        REFERENCES transactions (id),
    pos_reference           TEXT        NOT NULL,
    authorization_expires_at TIMESTAMPTZ,
    advice_pending          BOOLEAN     NOT NULL DEFAULT FALSE,
    CHECK (refunded_minor + refund_reserved_minor <= captured_minor)
);
CREATE UNIQUE INDEX card_payments_link_rrn ON card_payments (rrn);
CREATE INDEX card_payments_original ON card_payments (original_transaction_id);
CREATE INDEX card_payments_fingerprint ON card_payments (pan_fingerprint);

-- Messages owed to a bank: reversals (0400, repeated as 0401) after an
-- unknown outcome or a void, and capture advices (0220). A worker delivers
-- each until the bank acknowledges; the row then keeps acked_at.
CREATE TABLE saf_queue (
    id               BIGSERIAL   PRIMARY KEY,
    transaction_id   TEXT        NOT NULL REFERENCES transactions (id),
    link_id          TEXT        NOT NULL,
    kind             TEXT        NOT NULL CHECK (kind IN ('reversal', 'advice')),
    amount_minor     BIGINT      NOT NULL,
    currency         TEXT        NOT NULL,
    attempts         INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    acked_at         TIMESTAMPTZ,
    last_error       TEXT        NOT NULL DEFAULT ''
);
CREATE INDEX saf_queue_due ON saf_queue (next_attempt_at) WHERE acked_at IS NULL;
CREATE INDEX saf_queue_transaction ON saf_queue (transaction_id);
