-- posgate schema 6 (PostgreSQL): each settlement line carries the store and
-- the partner reference (bill reference or card RRN) of its transaction, so
-- the clearing run reads a day's items from settlement_lines alone, in index
-- order, instead of joining three tables for every one of a million items.
-- Same meaning as migrations/sqlite/0006_settlement_line_facts.sql.
ALTER TABLE settlement_lines ADD COLUMN store_id TEXT NOT NULL DEFAULT '';
ALTER TABLE settlement_lines ADD COLUMN reference TEXT NOT NULL DEFAULT '';

-- Lines written before this schema get their facts once; the append-only
-- trigger is off only inside this migration's transaction.
ALTER TABLE settlement_lines DISABLE TRIGGER settlement_lines_append_only;
UPDATE settlement_lines AS l
   SET store_id = t.store_id,
       reference = COALESCE(b.bill_reference, c.rrn, '')
  FROM transactions AS t
  LEFT JOIN bill_payments AS b ON b.transaction_id = t.id
  LEFT JOIN card_payments AS c ON c.transaction_id = t.id
 WHERE t.id = l.transaction_id;
ALTER TABLE settlement_lines ENABLE TRIGGER settlement_lines_append_only;

-- Every new line states its facts.
ALTER TABLE settlement_lines ALTER COLUMN store_id DROP DEFAULT;
ALTER TABLE settlement_lines ALTER COLUMN reference DROP DEFAULT;

-- The clearing run's cursor and the day's totals read this index alone
-- (a covering index: no table look-up per line), both in its order: the
-- cursor by party, currency and transaction, the totals grouped by party and
-- currency without a sort.
-- (business_date, party) was a prefix of it: one index less per write.
DROP INDEX settlement_lines_business_date;
DROP INDEX settlement_lines_clearing;
CREATE INDEX settlement_lines_clearing ON settlement_lines (business_date, party, currency, transaction_id, id)
    INCLUDE (kind, amount_minor, store_id, reference);

-- Index-only scans need the visibility map: vacuum this insert-only table
-- after every 1% of new rows (the default 20% would leave a large table's
-- newest days, the ones clearing reads, unvacuumed for weeks).
ALTER TABLE settlement_lines SET (autovacuum_vacuum_insert_scale_factor = 0.01);
