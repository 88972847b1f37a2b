-- posgate schema 7: the audit chain (PostgreSQL).
--
-- Every transaction event, and every read made through AuditService, is one
-- entry of a hash chain: a gapless sequence number and
-- entry_hash = SHA-256(prev_hash || canonical entry), entry 1 chaining from
-- 32 zero bytes. The canonical form is computed by posgate (see
-- gateway/src/store/audit.rs and the README's "Audit" section); the columns
-- below hold exactly the values it hashes, so occurred_at is the canonical
-- text (RFC 3339, UTC, 6 fractional digits) rather than a TIMESTAMPTZ whose
-- rounding could change the bytes.
CREATE TABLE audit_chain (
    sequence       BIGINT PRIMARY KEY CHECK (sequence >= 1),
    entry_type     TEXT   NOT NULL CHECK (entry_type IN ('event', 'audit_read')),
    transaction_id TEXT,
    event_type     TEXT   NOT NULL,
    from_status    TEXT,
    to_status      TEXT,
    actor          TEXT   NOT NULL,
    detail         TEXT   NOT NULL,
    occurred_at    TEXT   NOT NULL,
    prev_hash      BYTEA  NOT NULL,
    entry_hash     BYTEA  NOT NULL
);
-- GetTransactionHistory: the entries of one transaction in chain order.
CREATE INDEX audit_chain_transaction ON audit_chain (transaction_id, sequence)
    WHERE transaction_id IS NOT NULL;
-- Search and export walk transactions in the order of their first event.
CREATE INDEX audit_chain_opening ON audit_chain (sequence, transaction_id)
    WHERE entry_type = 'event' AND from_status IS NULL;

-- The chain head: one row, locked FOR UPDATE by each append as the last
-- statement before COMMIT, which is what makes the sequence gapless under
-- concurrent writers while holding the lock as briefly as possible.
CREATE TABLE audit_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    sequence  BIGINT  NOT NULL CHECK (sequence >= 0),
    head_hash BYTEA   NOT NULL
);
INSERT INTO audit_head (id, sequence, head_hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

-- Signed chain positions: the HSM's Ed25519 signature over
-- "posgate/v1 checkpoint {sequence} {head_hash_hex}".
CREATE TABLE audit_checkpoints (
    sequence    BIGINT      PRIMARY KEY CHECK (sequence >= 1),
    head_hash   BYTEA       NOT NULL,
    signature   BYTEA       NOT NULL,
    key_label   TEXT        NOT NULL,
    key_version INTEGER     NOT NULL,
    signed_at   TIMESTAMPTZ NOT NULL
);

CREATE TRIGGER audit_chain_append_only BEFORE UPDATE OR DELETE ON audit_chain
    FOR EACH ROW EXECUTE FUNCTION posgate_refuse_rewrite();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION posgate_refuse_rewrite();
