//! The reads both backends share: functions of [`Statements`], generic over
//! the [`Backend`]. Writes are each backend's own: PostgreSQL commits a
//! batch set-based (`pg_batch`), SQLite's writer thread runs each write's
//! statements on rusqlite (`sqlite_writer`), with the same SQL text where a
//! statement is one row (see `crate::sql`). Also the row shapes the SQLite
//! writer binds ([`TransactionRow`], [`WriteTail`]).

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Type};

use crate::SqlxResultExt as _;
use crate::backend::{Backend, RowsAffected as _, Statements};
use crate::{BillWrite, CardWrite, NewSafItem, WalletWrite};

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
    /// Card records a query selects by one instant (`$1`) and a limit (`$2`).
    async fn cards_by_time(
        pool: &sqlx::Pool<DB>,
        sql: &'static str,
        at: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<crate::CardRecord>, crate::StoreError> {
        let rows = sqlx::query(sql)
            .bind(at)
            .bind(limit)
            .fetch_all(pool)
            .await
            .db()?;
        rows.iter()
            .map(|row| crate::card::rows::card(row, 0))
            .collect()
    }

    /// [`Reads::answer`](crate::Reads::answer).
    pub(crate) async fn answer(
        pool: &sqlx::Pool<DB>,
        key: &posgate_core::model::IdempotencyKey,
    ) -> Result<Option<posgate_core::model::StoredAnswer>, crate::StoreError> {
        let row = sqlx::query(crate::sql::SELECT_KEY)
            .bind(&key.store_id)
            .bind(&key.terminal_id)
            .bind(&key.client_request_id)
            .fetch_optional(pool)
            .await
            .db()?;
        row.as_ref().map(crate::rows::answer).transpose()
    }

    /// [`Reads::transaction`](crate::Reads::transaction).
    pub(crate) async fn transaction(
        pool: &sqlx::Pool<DB>,
        store_id: &str,
        id: &str,
    ) -> Result<Option<crate::TransactionRecord>, crate::StoreError> {
        let row = sqlx::query(crate::sql::SELECT_TRANSACTION)
            .bind(id)
            .bind(store_id)
            .fetch_optional(pool)
            .await
            .db()?;
        row.as_ref().map(crate::rows::transaction).transpose()
    }

    /// [`Reads::settlement_lines`](crate::Reads::settlement_lines).
    pub(crate) async fn settlement_lines(
        pool: &sqlx::Pool<DB>,
        transaction_id: &str,
    ) -> Result<Vec<crate::SettlementLine>, crate::StoreError> {
        let rows = sqlx::query(crate::sql::SELECT_LINES)
            .bind(transaction_id)
            .fetch_all(pool)
            .await
            .db()?;
        rows.iter().map(crate::rows::line).collect()
    }

    /// [`Reads::events`](crate::Reads::events).
    pub(crate) async fn events(
        pool: &sqlx::Pool<DB>,
        transaction_id: &str,
    ) -> Result<Vec<crate::Event>, crate::StoreError> {
        let rows = sqlx::query(crate::sql::SELECT_EVENTS)
            .bind(transaction_id)
            .fetch_all(pool)
            .await
            .db()?;
        rows.iter().map(crate::rows::event).collect()
    }

    /// [`Reads::purge_expired_keys`](crate::Reads::purge_expired_keys).
    pub(crate) async fn purge_expired_keys(
        pool: &sqlx::Pool<DB>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, crate::StoreError> {
        Ok(sqlx::query(crate::sql::PURGE_KEYS)
            .bind(now)
            .execute(pool)
            .await
            .db()?
            .rows_affected())
    }

    /// [`Reads::row_counts`](crate::Reads::row_counts).
    pub(crate) async fn row_counts(
        pool: &sqlx::Pool<DB>,
    ) -> Result<crate::RowCounts, crate::StoreError> {
        let (idempotency_keys, transactions, bill_payments, settlement_lines, events) =
            sqlx::query_as(crate::sql::ROW_COUNTS)
                .fetch_one(pool)
                .await
                .db()?;
        Ok(crate::RowCounts {
            idempotency_keys,
            transactions,
            bill_payments,
            settlement_lines,
            events,
        })
    }

    /// [`Reads::card_transaction`](crate::Reads::card_transaction).
    pub(crate) async fn card_transaction(
        pool: &sqlx::Pool<DB>,
        id: &str,
    ) -> Result<Option<crate::CardRecord>, crate::StoreError> {
        let row = sqlx::query(&crate::card::sql::SELECT_CARD)
            .bind(id)
            .fetch_optional(pool)
            .await
            .db()?;
        row.as_ref()
            .map(|row| crate::card::rows::card(row, 0))
            .transpose()
    }

    /// [`Reads::card_by_request`](crate::Reads::card_by_request).
    pub(crate) async fn card_by_request(
        pool: &sqlx::Pool<DB>,
        key: &posgate_core::model::IdempotencyKey,
    ) -> Result<Option<crate::CardRecord>, crate::StoreError> {
        let row = sqlx::query(&crate::card::sql::SELECT_CARD_BY_REQUEST)
            .bind(&key.store_id)
            .bind(&key.terminal_id)
            .bind(&key.client_request_id)
            .fetch_optional(pool)
            .await
            .db()?;
        row.as_ref()
            .map(|row| crate::card::rows::card(row, 0))
            .transpose()
    }

    /// [`Reads::refund_ids`](crate::Reads::refund_ids).
    pub(crate) async fn refund_ids(
        pool: &sqlx::Pool<DB>,
        original_id: &str,
    ) -> Result<Vec<String>, crate::StoreError> {
        sqlx::query_scalar(crate::card::sql::SELECT_REFUND_IDS)
            .bind(original_id)
            .fetch_all(pool)
            .await
            .db()
    }

    /// [`Reads::stale_in_progress`](crate::Reads::stale_in_progress).
    pub(crate) async fn stale_in_progress(
        pool: &sqlx::Pool<DB>,
        before: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<crate::CardRecord>, crate::StoreError> {
        Self::cards_by_time(pool, &crate::card::sql::SELECT_STALE, before, limit).await
    }

    /// [`Reads::expired_authorizations`](crate::Reads::expired_authorizations).
    pub(crate) async fn expired_authorizations(
        pool: &sqlx::Pool<DB>,
        now: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<crate::CardRecord>, crate::StoreError> {
        Self::cards_by_time(
            pool,
            &crate::card::sql::SELECT_EXPIRED_AUTHORIZATIONS,
            now,
            limit,
        )
        .await
    }

    /// [`Reads::saf_claim`](crate::Reads::saf_claim).
    pub(crate) async fn saf_claim(
        pool: &sqlx::Pool<DB>,
        lease: &crate::lease::Lease,
        limit: i64,
    ) -> Result<Vec<crate::SafItem>, crate::StoreError> {
        Self::claim_saf(pool, crate::lease::SafQueue::Card, lease, limit).await?;
        let rows = sqlx::query(&crate::card::sql::SELECT_SAF_DUE)
            .bind(lease.holder.as_str())
            .bind(lease.now)
            .bind(limit)
            .fetch_all(pool)
            .await
            .db()?;
        rows.iter().map(crate::card::rows::saf_item).collect()
    }

    /// [`Reads::saf_retry`](crate::Reads::saf_retry).
    pub(crate) async fn saf_retry(
        pool: &sqlx::Pool<DB>,
        id: i64,
        next_attempt_at: chrono::DateTime<chrono::Utc>,
        error: &str,
    ) -> Result<(), crate::StoreError> {
        sqlx::query(crate::card::sql::RETRY_SAF)
            .bind(next_attempt_at)
            .bind(error)
            .bind(id)
            .execute(pool)
            .await
            .db()?;
        Ok(())
    }

    /// [`Reads::saf_ack_moot`](crate::Reads::saf_ack_moot).
    pub(crate) async fn saf_ack_moot(
        pool: &sqlx::Pool<DB>,
        id: i64,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), crate::StoreError> {
        sqlx::query(crate::card::sql::ACK_SAF)
            .bind(at)
            .bind(id)
            .execute(pool)
            .await
            .db()?;
        Ok(())
    }

    /// [`Reads::saf_open`](crate::Reads::saf_open).
    pub(crate) async fn saf_open(pool: &sqlx::Pool<DB>) -> Result<i64, crate::StoreError> {
        sqlx::query_scalar(crate::card::sql::COUNT_SAF_OPEN)
            .fetch_one(pool)
            .await
            .db()
    }

    /// [`Reads::saf_backlog`](crate::Reads::saf_backlog).
    pub(crate) async fn saf_backlog(
        pool: &sqlx::Pool<DB>,
    ) -> Result<Vec<posgate_core::ports::db::SafBacklog>, crate::StoreError> {
        use sqlx::Row as _;
        let rows = sqlx::query(crate::card::sql::SELECT_SAF_BACKLOG)
            .fetch_all(pool)
            .await
            .db()?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get(0).db()?;
                let queue = posgate_core::ports::db::SafQueue::parse(&name).ok_or_else(|| {
                    crate::StoreError::Corrupt(format!("unknown store-and-forward queue {name:?}"))
                })?;
                Ok(posgate_core::ports::db::SafBacklog {
                    queue,
                    depth: row.try_get(1).db()?,
                    oldest_created_at: row.try_get(2).db()?,
                })
            })
            .collect()
    }
}

/// The `transactions` row of a new payment, whatever its kind.
pub(crate) struct TransactionRow<'a> {
    pub id: &'a str,
    pub kind: crate::TransactionKind,
    pub status: crate::TransactionStatus,
    pub store_id: &'a str,
    pub terminal_id: &'a str,
    pub operator_id: &'a str,
    pub client_request_id: &'a str,
    /// The partner reference: biller id, bank link id, or the wallet operator's party.
    pub partner_id: &'a str,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub fee_minor: i64,
    pub business_date: chrono::NaiveDate,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The parts every card, wallet or bill write has: its transaction, queue
/// entries and acknowledgements, lines and event (what the SQLite writer's
/// `queue_and_append` writes last, and the base of a PostgreSQL batch plan).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriteTail<'a> {
    pub transaction_id: &'a str,
    pub enqueue: &'a [NewSafItem],
    pub acked: &'a [i64],
    pub at: chrono::DateTime<chrono::Utc>,
    pub business_date: chrono::NaiveDate,
    pub lines: &'a [crate::SettlementLine],
    pub event: &'a crate::Event,
}

impl<'a> From<&'a CardWrite> for WriteTail<'a> {
    fn from(write: &'a CardWrite) -> Self {
        Self {
            transaction_id: &write.transaction_id,
            enqueue: &write.enqueue,
            acked: &write.acked,
            at: write.at,
            business_date: write.business_date,
            lines: &write.lines,
            event: &write.event,
        }
    }
}

impl<'a> From<&'a WalletWrite> for WriteTail<'a> {
    fn from(write: &'a WalletWrite) -> Self {
        Self {
            transaction_id: &write.transaction_id,
            enqueue: &write.enqueue,
            acked: &write.acked,
            at: write.at,
            business_date: write.business_date,
            lines: &write.lines,
            event: &write.event,
        }
    }
}

impl<'a> From<&'a BillWrite> for WriteTail<'a> {
    fn from(write: &'a BillWrite) -> Self {
        Self {
            transaction_id: &write.transaction_id,
            enqueue: &write.enqueue,
            acked: &write.acked,
            at: write.at,
            business_date: write.business_date,
            lines: &write.lines,
            event: &write.event,
        }
    }
}
