-- posgate schema 12: one live payment per batch-biller slip (PostgreSQL).

-- A batch-only biller learns of a payment only from the daily file, so the
-- gateway is the last place a slip paid twice (scanned twice, or paid at two
-- stores) can be caught. A payment claims its slip here in the transaction
-- that records it; the primary key refuses a second live claim from any
-- store, terminal, gateway instance or concurrent writer (a concurrent
-- insert waits for the first to commit or roll back); a cancellation
-- deletes the claim, which frees the slip. Billers whose contract allows
-- repeated payments (`allow_repeat_payment`) make no claim.
CREATE TABLE bill_slip_claims (
    biller_id      TEXT   NOT NULL,
    bill_reference TEXT   NOT NULL,
    period         TEXT   NOT NULL,
    amount_minor   BIGINT NOT NULL,
    transaction_id TEXT   NOT NULL UNIQUE REFERENCES transactions (id),
    PRIMARY KEY (biller_id, bill_reference, period, amount_minor)
);

-- Payments made before this schema claim their slips too (the first one
-- recorded wins when a slip was already paid twice).
INSERT INTO bill_slip_claims (biller_id, bill_reference, period, amount_minor, transaction_id)
SELECT b.biller_id, b.bill_reference, b.period, t.amount_minor, t.id
FROM transactions t JOIN bill_payments b ON b.transaction_id = t.id
WHERE t.kind = 'bill_payment' AND t.status = 'paid'
ORDER BY t.created_at, t.id
ON CONFLICT DO NOTHING;
