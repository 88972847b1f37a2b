//! The SQL side of [`posgate_core::ports::db::bill_online`].

pub(super) mod sql {
    macro_rules! bill_columns {
        () => {
            "t.id, t.kind, t.status, t.store_id, t.terminal_id, t.operator_id, t.client_request_id, \
             t.partner_id, t.amount_minor, t.currency, t.fee_minor, t.business_date, t.created_at, \
             t.updated_at, t.cancelled_at, t.cancel_reason, b.biller_id, b.agency_code, \
             b.bill_reference, b.due_date, b.period, b.late"
        };
    }

    pub const SELECT_STALE: &str = concat!(
        "SELECT ",
        bill_columns!(),
        " FROM transactions t JOIN bill_payments b ON b.transaction_id = t.id \
         WHERE t.kind = 'bill_payment' AND t.status = 'in_progress' AND t.updated_at < $1 \
         AND NOT EXISTS (SELECT 1 FROM saf_queue q WHERE q.transaction_id = t.id AND q.acked_at IS NULL) \
         ORDER BY t.updated_at LIMIT $2"
    );
    pub const SELECT_SAF_DUE: &str = concat!(
        "SELECT ",
        bill_columns!(),
        ", q.id, q.attempts FROM saf_queue q JOIN transactions t ON t.id = q.transaction_id \
         JOIN bill_payments b ON b.transaction_id = t.id \
         WHERE q.acked_at IS NULL AND q.next_attempt_at <= $1 ORDER BY q.next_attempt_at, q.id LIMIT $2"
    );
    pub const COUNT_SAF_OPEN: &str = "SELECT count(*) FROM saf_queue q \
         JOIN bill_payments b ON b.transaction_id = q.transaction_id WHERE q.acked_at IS NULL";
}

/// Defines `async fn apply_bill_write(conn, write, chain)` inside a backend
/// (after `define_apply_write!` and `define_apply_card_write!`, whose
/// helpers it shares) and implements [`BillReads`] for `$store`, whose read
/// pool is the field `$pool`.
macro_rules! define_bill_store {
    ($connection:ty, $store:ty, $pool:ident) => {
        async fn apply_bill_write(
            conn: &mut $connection,
            write: &$crate::BillWrite,
            chain: &mut Vec<$crate::audit::EntryContent>,
        ) -> Result<$crate::WriteOutcome, $crate::StoreError> {
            use $crate::{Change, WriteOutcome};
            if let Some(taken) =
                Writes::apply_key_op(conn, write.key.as_ref(), &write.transaction_id, write.at)
                    .await?
            {
                return Ok(taken);
            }
            match &write.change {
                Change::Create(record) => Writes::insert_bill_transaction(conn, record).await?,
                Change::Transition(change) => {
                    if let Some(mismatch) = Writes::transition(conn, change).await? {
                        return Ok(mismatch);
                    }
                }
            }
            Writes::queue_and_append(conn, $crate::write::WriteTail::from(write), chain).await?;
            Ok(WriteOutcome::Written)
        }

        #[async_trait::async_trait]
        impl $crate::BillReads for $store {
            async fn stale_bill_in_progress(
                &self,
                before: chrono::DateTime<chrono::Utc>,
                limit: i64,
            ) -> Result<Vec<$crate::TransactionRecord>, $crate::StoreError> {
                let rows = sqlx::query($crate::bill_online::sql::SELECT_STALE)
                    .bind(before)
                    .bind(limit)
                    .fetch_all(&self.$pool)
                    .await
                    .db()?;
                rows.iter().map($crate::rows::transaction).collect()
            }

            async fn bill_saf_due(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                limit: i64,
            ) -> Result<Vec<$crate::BillSafItem>, $crate::StoreError> {
                use sqlx::Row as _;
                let rows = sqlx::query($crate::bill_online::sql::SELECT_SAF_DUE)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&self.$pool)
                    .await
                    .db()?;
                rows.iter()
                    .map(|row| {
                        Ok($crate::BillSafItem {
                            transaction: $crate::rows::transaction(row)?,
                            id: row.try_get(22).db()?,
                            attempts: row.try_get(23).db()?,
                        })
                    })
                    .collect()
            }

            async fn bill_saf_open(&self) -> Result<i64, $crate::StoreError> {
                Ok(sqlx::query_scalar($crate::bill_online::sql::COUNT_SAF_OPEN)
                    .fetch_one(&self.$pool)
                    .await
                    .db()?)
            }
        }
    };
}

pub(crate) use define_bill_store;
