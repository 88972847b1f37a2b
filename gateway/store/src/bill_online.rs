//! The SQL side of [`posgate_core::ports::db::bill_online`]: online bill
//! payments' writes and their stale and store-and-forward reads.

pub(super) mod sql {
    use std::sync::LazyLock;

    pub const BILL_COLUMNS: &str = "t.id, t.kind, t.status, t.store_id, t.terminal_id, t.operator_id, t.client_request_id, \
             t.partner_id, t.amount_minor, t.currency, t.fee_minor, t.business_date, t.created_at, \
             t.updated_at, t.cancelled_at, t.cancel_reason, b.biller_id, b.agency_code, \
             b.bill_reference, b.due_date, b.period, b.late";

    pub static SELECT_STALE: LazyLock<String> = LazyLock::new(|| {
        ["SELECT ",
        BILL_COLUMNS,
        " FROM transactions t JOIN bill_payments b ON b.transaction_id = t.id \
         WHERE t.kind = 'bill_payment' AND t.status = 'in_progress' AND t.updated_at < $1 \
         AND NOT EXISTS (SELECT 1 FROM saf_queue q WHERE q.transaction_id = t.id AND q.acked_at IS NULL) \
         ORDER BY t.updated_at LIMIT $2"].concat()
    });
    pub static SELECT_SAF_DUE: LazyLock<String> =
        LazyLock::new(|| {
            ["SELECT ",
        BILL_COLUMNS,
        ", q.id, q.attempts FROM saf_queue q JOIN transactions t ON t.id = q.transaction_id \
         JOIN bill_payments b ON b.transaction_id = t.id \
         WHERE q.acked_at IS NULL AND q.lease_owner = $1 AND q.next_attempt_at <= $2 \
         ORDER BY q.next_attempt_at, q.id LIMIT $3"].concat()
        });
    pub const COUNT_SAF_OPEN: &str = "SELECT count(*) FROM saf_queue q \
         JOIN bill_payments b ON b.transaction_id = q.transaction_id WHERE q.acked_at IS NULL";
}

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Type};

use crate::SqlxResultExt as _;
use crate::backend::{Backend, Statements};
use crate::{BillSafItem, StoreError, TransactionRecord};

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
    /// [`BillReads::stale_bill_in_progress`](crate::BillReads::stale_bill_in_progress).
    pub(crate) async fn stale_bill_in_progress(
        pool: &sqlx::Pool<DB>,
        before: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<TransactionRecord>, StoreError> {
        let rows = sqlx::query(&sql::SELECT_STALE)
            .bind(before)
            .bind(limit)
            .fetch_all(pool)
            .await
            .db()?;
        rows.iter().map(crate::rows::transaction).collect()
    }

    /// [`BillReads::bill_saf_claim`](crate::BillReads::bill_saf_claim).
    pub(crate) async fn bill_saf_claim(
        pool: &sqlx::Pool<DB>,
        lease: &crate::lease::Lease,
        limit: i64,
    ) -> Result<Vec<BillSafItem>, StoreError> {
        use sqlx::Row as _;
        Self::claim_saf(pool, crate::lease::SafQueue::Bill, lease, limit).await?;
        let rows = sqlx::query(&sql::SELECT_SAF_DUE)
            .bind(lease.holder.as_str())
            .bind(lease.now)
            .bind(limit)
            .fetch_all(pool)
            .await
            .db()?;
        rows.iter()
            .map(|row| {
                Ok(BillSafItem {
                    transaction: crate::rows::transaction(row)?,
                    id: row.try_get(22).db()?,
                    attempts: row.try_get(23).db()?,
                })
            })
            .collect()
    }

    /// [`BillReads::bill_saf_open`](crate::BillReads::bill_saf_open).
    pub(crate) async fn bill_saf_open(pool: &sqlx::Pool<DB>) -> Result<i64, StoreError> {
        sqlx::query_scalar(sql::COUNT_SAF_OPEN)
            .fetch_one(pool)
            .await
            .db()
    }
}
