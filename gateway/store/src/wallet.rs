//! The SQL side of [`posgate_core::ports::db::wallet`].

pub(crate) use posgate_core::model::wallet::*;
pub(crate) use posgate_core::ports::db::wallet::*;

pub(super) mod sql {
    use std::sync::LazyLock;

    pub const WALLET_COLUMNS: &str = "t.id, t.status, t.store_id, t.terminal_id, t.operator_id, t.client_request_id, \
             t.amount_minor, t.currency, t.business_date, t.created_at, t.updated_at, \
             w.wallet_type, w.wallet_operator_id, w.wallet_ref, w.account_id, w.display_id, \
             w.operator_name, w.funding, w.decline_reason, w.operator_response_code, \
             w.operator_reference, w.response_text, w.balance_after_minor, w.refunded_minor, \
             w.refund_reserved_minor, w.original_transaction_id, w.pos_reference";

    pub const INSERT_WALLET: &str = "INSERT INTO wallet_payments (transaction_id, wallet_type, \
         wallet_operator_id, wallet_ref, account_id, display_id, operator_name, funding, decline_reason, \
         operator_response_code, operator_reference, response_text, balance_after_minor, refunded_minor, \
         refund_reserved_minor, original_transaction_id, pos_reference) VALUES ($1, $2, $3, $4, $5, $6, \
         $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)";
    pub const UPDATE_OUTCOME: &str = "UPDATE wallet_payments SET account_id = $1, display_id = $2, \
         operator_name = $3, decline_reason = $4, operator_response_code = $5, operator_reference = $6, \
         response_text = $7, balance_after_minor = $8 WHERE transaction_id = $9";
    pub const ADJUST_REFUND: &str = "UPDATE wallet_payments SET \
         refund_reserved_minor = refund_reserved_minor + $1, refunded_minor = refunded_minor + $2 \
         WHERE transaction_id = $3 AND refunded_minor + refund_reserved_minor + $1 + $2 <= \
         (SELECT amount_minor FROM transactions WHERE id = $3)";
    pub const SELECT_REMAINING: &str = "SELECT t.amount_minor - w.refunded_minor - w.refund_reserved_minor \
         FROM wallet_payments w JOIN transactions t ON t.id = w.transaction_id WHERE w.transaction_id = $1";
    pub static SELECT_WALLET: LazyLock<String> = LazyLock::new(|| {
        ["SELECT ",
        WALLET_COLUMNS,
        " FROM transactions t JOIN wallet_payments w ON w.transaction_id = t.id WHERE t.id = $1"].concat()
    });
    pub static SELECT_BY_REQUEST: LazyLock<String> = LazyLock::new(|| {
        [
            "SELECT ",
            WALLET_COLUMNS,
            " FROM transactions t JOIN wallet_payments w ON w.transaction_id = t.id \
         WHERE t.store_id = $1 AND t.terminal_id = $2 AND t.client_request_id = $3 \
         AND t.kind = 'wallet_payment' AND w.funding <> 'auto_reload' \
         ORDER BY t.created_at DESC, t.id DESC LIMIT 1",
        ]
        .concat()
    });
    pub const SELECT_REFUND_IDS: &str = "SELECT transaction_id FROM wallet_payments \
         WHERE original_transaction_id = $1 ORDER BY transaction_id";
    pub static SELECT_STALE: LazyLock<String> = LazyLock::new(|| {
        [
            "SELECT ",
            WALLET_COLUMNS,
            " FROM transactions t JOIN wallet_payments w ON w.transaction_id = t.id \
         WHERE t.kind = 'wallet_payment' AND t.status = 'in_progress' AND t.updated_at < $1 \
         AND NOT EXISTS (SELECT 1 FROM wallet_reload_sagas s WHERE s.saga_id = t.id \
         AND s.step NOT IN ('done', 'compensated')) \
         ORDER BY t.updated_at LIMIT $2",
        ]
        .concat()
    });
    pub static SELECT_SAF_DUE: LazyLock<String> = LazyLock::new(|| {
        [
            "SELECT q.id, q.link_id, q.attempts, ",
            WALLET_COLUMNS,
            " FROM saf_queue q JOIN transactions t ON t.id = q.transaction_id \
         JOIN wallet_payments w ON w.transaction_id = t.id \
         WHERE q.acked_at IS NULL AND q.lease_owner = $1 AND q.next_attempt_at <= $2 \
         ORDER BY q.next_attempt_at, q.id LIMIT $3",
        ]
        .concat()
    });
    pub const COUNT_SAF_OPEN: &str = "SELECT count(*) FROM saf_queue q \
         JOIN wallet_payments w ON w.transaction_id = q.transaction_id WHERE q.acked_at IS NULL";
}

pub(super) mod rows {
    use sqlx::{ColumnIndex, Decode, Row, Type};

    use crate::SqlxResultExt as _;

    use super::{WalletOutcome, WalletRecord, WalletSafItem, WalletType};
    use crate::{StoreError, TransactionStatus};

    /// Decodes the wallet columns starting at column `at`.
    pub fn wallet<'r, R>(row: &'r R, at: usize) -> Result<WalletRecord, StoreError>
    where
        R: Row,
        usize: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        Option<String>: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
        Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
        chrono::NaiveDate: Decode<'r, R::Database> + Type<R::Database>,
        chrono::DateTime<chrono::Utc>: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(WalletRecord {
            id: row.try_get(at).db()?,
            status: TransactionStatus::parse(&row.try_get::<String, _>(at + 1).db()?)?,
            store_id: row.try_get(at + 2).db()?,
            terminal_id: row.try_get(at + 3).db()?,
            operator_id: row.try_get(at + 4).db()?,
            client_request_id: row.try_get(at + 5).db()?,
            amount_minor: row.try_get(at + 6).db()?,
            currency: row.try_get(at + 7).db()?,
            business_date: row.try_get(at + 8).db()?,
            created_at: row.try_get(at + 9).db()?,
            updated_at: row.try_get(at + 10).db()?,
            wallet_type: WalletType::parse(&row.try_get::<String, _>(at + 11).db()?)?,
            wallet_operator_id: row.try_get(at + 12).db()?,
            wallet_ref: row.try_get(at + 13).db()?,
            outcome: WalletOutcome {
                account_id: row.try_get(at + 14).db()?,
                display_id: row.try_get(at + 15).db()?,
                operator_name: row.try_get(at + 16).db()?,
                decline_reason: row.try_get(at + 18).db()?,
                operator_response_code: row.try_get(at + 19).db()?,
                operator_reference: row.try_get(at + 20).db()?,
                response_text: row.try_get(at + 21).db()?,
                balance_after_minor: row.try_get(at + 22).db()?,
            },
            funding: row.try_get(at + 17).db()?,
            refunded_minor: row.try_get(at + 23).db()?,
            refund_reserved_minor: row.try_get(at + 24).db()?,
            original_transaction_id: row.try_get(at + 25).db()?,
            pos_reference: row.try_get(at + 26).db()?,
        })
    }

    /// Decodes a queue row: three queue columns, then the wallet columns.
    pub fn saf_item<'r, R>(row: &'r R) -> Result<WalletSafItem, StoreError>
    where
        R: Row,
        usize: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        Option<String>: Decode<'r, R::Database> + Type<R::Database>,
        i32: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
        Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
        chrono::NaiveDate: Decode<'r, R::Database> + Type<R::Database>,
        chrono::DateTime<chrono::Utc>: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(WalletSafItem {
            id: row.try_get(0).db()?,
            wallet_operator_id: row.try_get(1).db()?,
            attempts: row.try_get(2).db()?,
            transaction: wallet(row, 3)?,
        })
    }
}

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Type};

use crate::SqlxResultExt as _;
use crate::backend::{Backend, Statements};

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
    /// [`WalletReads::wallet_transaction`](crate::WalletReads::wallet_transaction).
    pub(crate) async fn wallet_transaction(
        pool: &sqlx::Pool<DB>,
        id: &str,
    ) -> Result<Option<crate::WalletRecord>, crate::StoreError> {
        let row = sqlx::query(&crate::wallet::sql::SELECT_WALLET)
            .bind(id)
            .fetch_optional(pool)
            .await
            .db()?;
        row.map(|row| crate::wallet::rows::wallet(&row, 0))
            .transpose()
    }

    /// [`WalletReads::wallet_by_request`](crate::WalletReads::wallet_by_request).
    pub(crate) async fn wallet_by_request(
        pool: &sqlx::Pool<DB>,
        key: &posgate_core::model::IdempotencyKey,
    ) -> Result<Option<crate::WalletRecord>, crate::StoreError> {
        let row = sqlx::query(&crate::wallet::sql::SELECT_BY_REQUEST)
            .bind(&key.store_id)
            .bind(&key.terminal_id)
            .bind(&key.client_request_id)
            .fetch_optional(pool)
            .await
            .db()?;
        row.map(|row| crate::wallet::rows::wallet(&row, 0))
            .transpose()
    }

    /// [`WalletReads::wallet_refund_ids`](crate::WalletReads::wallet_refund_ids).
    pub(crate) async fn wallet_refund_ids(
        pool: &sqlx::Pool<DB>,
        original_id: &str,
    ) -> Result<Vec<String>, crate::StoreError> {
        sqlx::query_scalar(crate::wallet::sql::SELECT_REFUND_IDS)
            .bind(original_id)
            .fetch_all(pool)
            .await
            .db()
    }

    /// [`WalletReads::stale_wallet_in_progress`](crate::WalletReads::stale_wallet_in_progress).
    pub(crate) async fn stale_wallet_in_progress(
        pool: &sqlx::Pool<DB>,
        before: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<crate::WalletRecord>, crate::StoreError> {
        let rows = sqlx::query(&crate::wallet::sql::SELECT_STALE)
            .bind(before)
            .bind(limit)
            .fetch_all(pool)
            .await
            .db()?;
        rows.iter()
            .map(|row| crate::wallet::rows::wallet(row, 0))
            .collect()
    }

    /// [`WalletReads::wallet_saf_claim`](crate::WalletReads::wallet_saf_claim).
    pub(crate) async fn wallet_saf_claim(
        pool: &sqlx::Pool<DB>,
        lease: &crate::lease::Lease,
        limit: i64,
    ) -> Result<Vec<crate::WalletSafItem>, crate::StoreError> {
        Self::claim_saf(pool, crate::lease::SafQueue::Wallet, lease, limit).await?;
        let rows = sqlx::query(&crate::wallet::sql::SELECT_SAF_DUE)
            .bind(lease.holder.as_str())
            .bind(lease.now)
            .bind(limit)
            .fetch_all(pool)
            .await
            .db()?;
        rows.iter().map(crate::wallet::rows::saf_item).collect()
    }

    /// [`WalletReads::wallet_saf_open`](crate::WalletReads::wallet_saf_open).
    pub(crate) async fn wallet_saf_open(pool: &sqlx::Pool<DB>) -> Result<i64, crate::StoreError> {
        sqlx::query_scalar(crate::wallet::sql::COUNT_SAF_OPEN)
            .fetch_one(pool)
            .await
            .db()
    }
}
