-- posgate schema 6 (SQLite): each settlement line carries the store and the
-- partner reference (bill reference or card RRN) of its transaction, so the
-- clearing run reads a day's items from settlement_lines alone, in index
-- order, instead of joining three tables for every one of a million items.
-- Same meaning as migrations/postgres/0006_settlement_line_facts.sql.
-- (SQLite cannot drop a column default; the write path always sets both.)
ALTER TABLE settlement_lines ADD COLUMN store_id TEXT NOT NULL DEFAULT '';
ALTER TABLE settlement_lines ADD COLUMN reference TEXT NOT NULL DEFAULT '';

-- Lines written before this schema get their facts once; the append-only
-- trigger is dropped and re-created inside this migration's transaction.
DROP TRIGGER settlement_lines_no_update;
UPDATE settlement_lines
   SET store_id = (SELECT t.store_id FROM transactions AS t WHERE t.id = settlement_lines.transaction_id),
       reference = COALESCE(
           (SELECT b.bill_reference FROM bill_payments AS b WHERE b.transaction_id = settlement_lines.transaction_id),
           (SELECT c.rrn FROM card_payments AS c WHERE c.transaction_id = settlement_lines.transaction_id),
           '');
CREATE TRIGGER settlement_lines_no_update BEFORE UPDATE ON settlement_lines
    BEGIN SELECT RAISE(ABORT, 'posgate: settlement_lines is append-only'); END;

-- The clearing run's cursor and the day's totals read this index alone
-- (a covering index: no table look-up per line), both in its order: the
-- cursor by party, currency and transaction, the totals grouped by party and
-- currency without a sort.
-- (business_date, party) was a prefix of it: one index less per write.
DROP INDEX settlement_lines_business_date;
DROP INDEX settlement_lines_clearing;
CREATE INDEX settlement_lines_clearing ON settlement_lines
    (business_date, party, currency, transaction_id, id, kind, amount_minor, store_id, reference);
