-- posgate schema 13: leases on the work several gateway instances share (postgres).

-- Store-and-forward entries and open wallet sagas are taken by one instance
-- at a time: a pass claims the rows it will work on by writing its
-- instance id and a lease expiry, skipping rows another instance holds
-- (PostgreSQL: FOR UPDATE SKIP LOCKED, then the lease outlives the
-- transaction). The holder renews its leases while it runs and clears them
-- when it records the outcome or drains; an instance that dies leaves its
-- leases to run out, and another instance then takes the rows over.
ALTER TABLE saf_queue ADD COLUMN lease_owner TEXT;
ALTER TABLE saf_queue ADD COLUMN lease_until TIMESTAMPTZ;
ALTER TABLE wallet_reload_sagas ADD COLUMN lease_owner TEXT;
ALTER TABLE wallet_reload_sagas ADD COLUMN lease_until TIMESTAMPTZ;
