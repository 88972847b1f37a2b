-- posgate schema 10: wallet card links and the durable auto-reload saga
-- (SQLite). Same tables and meaning as migrations/postgres/0010_wallet_reload.sql.

-- A wallet's link to a co-brand card (LinkCard). The PAN is never stored:
-- the masked PAN (6+4), a keyed fingerprint (HMAC in the HSM) and the
-- card-on-file token, i.e. the PAN and expiry enciphered in the HSM
-- (AES-256-GCM under `token_key` at `token_key_version`, bound to link_id).
-- At most one active link per wallet.
CREATE TABLE wallet_card_links (
    link_id             TEXT        PRIMARY KEY,
    status              TEXT        NOT NULL CHECK (status IN ('active', 'declined', 'unlinked')),
    wallet_operator_id  TEXT        NOT NULL,
    wallet_ref          TEXT        NOT NULL,
    account_id          TEXT        NOT NULL DEFAULT '',
    display_id          TEXT        NOT NULL DEFAULT '',
    masked_pan          TEXT        NOT NULL,
    pan_fingerprint     TEXT        NOT NULL,
    card_brand          TEXT        NOT NULL,
    card_link           TEXT        NOT NULL,
    token               BLOB        NOT NULL,
    token_key           TEXT        NOT NULL,
    token_key_version   INTEGER     NOT NULL,
    auto_reload         INTEGER     NOT NULL,
    step_minor          INTEGER     NOT NULL CHECK (step_minor >= 0),
    currency            TEXT        NOT NULL CHECK (length(currency) = 3),
    store_id            TEXT        NOT NULL,
    terminal_id         TEXT        NOT NULL,
    operator_id         TEXT        NOT NULL,
    client_request_id   TEXT        NOT NULL,
    linked_at           TEXT        NOT NULL,
    unlinked_at         TEXT       ,
    unlink_reason       TEXT
);
CREATE UNIQUE INDEX wallet_card_links_active ON wallet_card_links (wallet_operator_id, wallet_ref)
    WHERE status = 'active';

-- One row per card-funded top-up or auto-reload payment: the saga's step,
-- written BEFORE each external call, and the ids of its steps' transactions
-- (chosen before they exist). saga_id is the parent wallet transaction (the
-- PAYMENT of an auto-reload, the TOP_UP of a card top-up). The recovery
-- worker finishes or compensates every saga not yet 'done' or 'compensated'.
CREATE TABLE wallet_reload_sagas (
    saga_id               TEXT        PRIMARY KEY,
    kind                  TEXT        NOT NULL CHECK (kind IN ('auto_reload', 'card_top_up')),
    step                  TEXT        NOT NULL CHECK (step IN ('card', 'top_up', 'pay', 'done', 'compensated')),
    link_id               TEXT,
    card_transaction_id   TEXT        NOT NULL,
    top_up_transaction_id TEXT,
    reload_minor          INTEGER     NOT NULL CHECK (reload_minor > 0),
    currency              TEXT        NOT NULL CHECK (length(currency) = 3),
    failure               TEXT        NOT NULL DEFAULT '',
    created_at            TEXT        NOT NULL,
    updated_at            TEXT        NOT NULL
);
CREATE INDEX wallet_reload_sagas_open ON wallet_reload_sagas (updated_at)
    WHERE step NOT IN ('done', 'compensated');
CREATE INDEX wallet_reload_sagas_card ON wallet_reload_sagas (card_transaction_id);
CREATE INDEX wallet_reload_sagas_top_up ON wallet_reload_sagas (top_up_transaction_id);
