//! The SQL side of [`posgate_core::ports::db::instance`]: leases on the
//! store-and-forward queue and on open wallet sagas, so that several
//! gateway instances on one database never work on one row at once.
//!
//! A claim is one `UPDATE` of the rows a pass will work on: free rows,
//! rows whose lease ran out, and rows the claimant already holds. On
//! PostgreSQL the rows are picked `FOR UPDATE ... SKIP LOCKED`, so two
//! instances claiming at the same moment take different rows instead of
//! waiting for each other; the lease then outlives the statement. SQLite
//! has one writer at a time, which serializes claims by itself.

pub(crate) use posgate_core::ports::db::instance::*;

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Type};

use crate::SqlxResultExt as _;
use crate::StoreError;
use crate::backend::{Backend, RowsAffected as _, Statements};

pub(crate) use posgate_core::ports::db::SafQueue;

/// The table that names a queue's entries: those whose transaction has a
/// row in it.
fn kind_table(queue: SafQueue) -> &'static str {
    match queue {
        SafQueue::Card => "card_payments",
        SafQueue::Wallet => "wallet_payments",
        SafQueue::Bill => "bill_payments",
    }
}

pub(super) mod sql {
    /// Leases up to `$4` due queue entries of one worker's table to `$1`
    /// until `$2`; `$3` is now. The `{lock}` placeholder is the backend's
    /// row lock clause.
    pub fn claim_saf(table: &str, lock: &str) -> String {
        format!(
            "UPDATE saf_queue SET lease_owner = $1, lease_until = $2 WHERE id IN (\
             SELECT q.id FROM saf_queue q JOIN {table} k ON k.transaction_id = q.transaction_id \
             WHERE q.acked_at IS NULL AND q.next_attempt_at <= $3 \
             AND (q.lease_owner IS NULL OR q.lease_until <= $3 OR q.lease_owner = $1) \
             ORDER BY q.next_attempt_at, q.id LIMIT $4{lock})"
        )
    }
    /// Leases up to `$5` sagas open and unchanged since `$3` to `$1` until
    /// `$2`; `$4` is now.
    pub fn claim_sagas(lock: &str) -> String {
        format!(
            "UPDATE wallet_reload_sagas SET lease_owner = $1, lease_until = $2 WHERE saga_id IN (\
             SELECT q.saga_id FROM wallet_reload_sagas q \
             WHERE q.step NOT IN ('done', 'compensated') AND q.updated_at < $3 \
             AND (q.lease_owner IS NULL OR q.lease_until <= $4 OR q.lease_owner = $1) \
             ORDER BY q.updated_at LIMIT $5{lock})"
        )
    }
    pub const RENEW_SAF: &str = "UPDATE saf_queue SET lease_until = $2 \
         WHERE lease_owner = $1 AND acked_at IS NULL";
    pub const RENEW_SAGAS: &str = "UPDATE wallet_reload_sagas SET lease_until = $2 \
         WHERE lease_owner = $1 AND step NOT IN ('done', 'compensated')";
    pub const RELEASE_SAF: &str =
        "UPDATE saf_queue SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1";
    pub const RELEASE_SAGAS: &str = "UPDATE wallet_reload_sagas SET lease_owner = NULL, \
         lease_until = NULL WHERE lease_owner = $1";
}

impl<DB> Statements<DB>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q, 'r> String: Encode<'q, DB> + Decode<'r, DB> + Type<DB>,
    for<'q, 'r> Vec<u8>: Encode<'q, DB> + Decode<'r, DB> + Type<DB>,
    for<'q, 'r> i64: Encode<'q, DB> + Decode<'r, DB> + Type<DB>,
    for<'q, 'r> i32: Encode<'q, DB> + Decode<'r, DB> + Type<DB>,
    for<'q, 'r> bool: Encode<'q, DB> + Decode<'r, DB> + Type<DB>,
    for<'q, 'r> chrono::NaiveDate: Encode<'q, DB> + Decode<'r, DB> + Type<DB>,
    for<'q, 'r> chrono::DateTime<chrono::Utc>: Encode<'q, DB> + Decode<'r, DB> + Type<DB>,
    for<'q, 'r> Option<String>: Encode<'q, DB> + Decode<'r, DB> + Type<DB>,
    for<'q, 'r> Option<Vec<u8>>: Encode<'q, DB> + Decode<'r, DB> + Type<DB>,
    for<'q, 'r> Option<i64>: Encode<'q, DB> + Decode<'r, DB> + Type<DB>,
    for<'q, 'r> Option<bool>: Encode<'q, DB> + Decode<'r, DB> + Type<DB>,
    for<'q, 'r> Option<chrono::NaiveDate>: Encode<'q, DB> + Decode<'r, DB> + Type<DB>,
    for<'q, 'r> Option<chrono::DateTime<chrono::Utc>>: Encode<'q, DB> + Decode<'r, DB> + Type<DB>,
{
    /// Leases the due entries of `queue` to `lease.holder` (the first half
    /// of every `*_saf_claim`; the second reads what the holder holds).
    pub(crate) async fn claim_saf(
        pool: &sqlx::Pool<DB>,
        queue: SafQueue,
        lease: &Lease,
        limit: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(&sql::claim_saf(kind_table(queue), DB::SKIP_LOCKED))
            .bind(lease.holder.as_str())
            .bind(lease.until)
            .bind(lease.now)
            .bind(limit)
            .execute(pool)
            .await
            .db()?;
        Ok(())
    }

    /// [`ReloadStore::claim_sagas`](crate::ReloadStore::claim_sagas).
    pub(crate) async fn claim_sagas(
        pool: &sqlx::Pool<DB>,
        before: chrono::DateTime<chrono::Utc>,
        lease: &Lease,
        limit: i64,
    ) -> Result<Vec<crate::Saga>, StoreError> {
        sqlx::query(&sql::claim_sagas(DB::SKIP_LOCKED))
            .bind(lease.holder.as_str())
            .bind(lease.until)
            .bind(before)
            .bind(lease.now)
            .bind(limit)
            .execute(pool)
            .await
            .db()?;
        Self::held_sagas(pool, before, &lease.holder, limit).await
    }

    /// [`InstanceStore::renew_leases`].
    pub(crate) async fn renew_leases(
        pool: &sqlx::Pool<DB>,
        lease: &Lease,
    ) -> Result<u64, StoreError> {
        let mut held = 0;
        for statement in [sql::RENEW_SAF, sql::RENEW_SAGAS] {
            held += sqlx::query(statement)
                .bind(lease.holder.as_str())
                .bind(lease.until)
                .execute(pool)
                .await
                .db()?
                .rows_affected();
        }
        Ok(held)
    }

    /// [`InstanceStore::release_leases`].
    pub(crate) async fn release_leases(
        pool: &sqlx::Pool<DB>,
        holder: &str,
    ) -> Result<u64, StoreError> {
        let mut freed = 0;
        for statement in [sql::RELEASE_SAF, sql::RELEASE_SAGAS] {
            freed += sqlx::query(statement)
                .bind(holder)
                .execute(pool)
                .await
                .db()?
                .rows_affected();
        }
        Ok(freed)
    }
}
