//! The SQL side of [`posgate_core::ports::db::clearing`].

pub(crate) use posgate_core::ports::db::clearing::*;

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Type};

use crate::SqlxResultExt as _;
use crate::StoreError;
use crate::backend::{Backend, Statements};

/// SQL shared by both backends.
pub(crate) mod sql {
    /// Bounded: more closed days ahead of a line's date than this is not a
    /// calendar anyone runs (a year of closed days).
    pub const SELECT_CLOSED_FROM: &str = "SELECT business_date FROM clearing_days \
         WHERE business_date >= $1 ORDER BY business_date LIMIT 400";
    pub const INSERT_DAY: &str = "INSERT INTO clearing_days (business_date, files_created_at, closed_at) \
         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
    pub const REOPEN_DAY: &str = "DELETE FROM clearing_days WHERE business_date = $1";
    pub const SELECT_DAY: &str =
        "SELECT business_date, files_created_at FROM clearing_days WHERE business_date = $1";
    pub const DAY_TOTALS: &str = "SELECT party, currency, CAST(SUM(amount_minor) AS BIGINT), \
         CAST(COUNT(*) AS BIGINT) FROM settlement_lines WHERE business_date = $1 \
         GROUP BY party, currency ORDER BY party, currency";
    /// One index walk: the lines carry their store and reference (schema 6).
    /// A partner settles in one currency, so its items are in transaction
    /// order; currency comes first only for a partner with lines in several.
    pub const DAY_LINES: &str = "SELECT party, transaction_id, kind, currency, amount_minor, \
         store_id, reference FROM settlement_lines \
         WHERE business_date = $1 AND party <> 'chain' AND party NOT LIKE 'store:%' \
         ORDER BY party, currency, transaction_id, id";
    pub const SELECT_FILES: &str = "SELECT name, size_bytes, sha256 FROM clearing_files \
         WHERE business_date = $1 ORDER BY name";
    pub const INSERT_FILE: &str = "INSERT INTO clearing_files (business_date, name, size_bytes, sha256) \
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
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
    /// [`ClearingStore::close_day`](crate::clearing::ClearingStore::close_day):
    /// records the day closed in a transaction of its own. The backend's
    /// [`CLOSE_GUARD`](Backend::CLOSE_GUARD) runs inside it before the insert.
    pub(crate) async fn close_day(
        pool: &sqlx::Pool<DB>,
        date: chrono::NaiveDate,
        files_created_at: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<ClosedDay, StoreError> {
        let mut conn = pool.acquire().await.db()?;
        sqlx::query(DB::CLOSE_BEGIN)
            .execute(&mut *conn)
            .await
            .db()?;
        let result: Result<(), StoreError> = async {
            if let Some(guard) = DB::CLOSE_GUARD {
                sqlx::query(guard)
                    .bind(CLOSE_LOCK_KEY)
                    .execute(&mut *conn)
                    .await
                    .db()?;
            }
            sqlx::query(sql::INSERT_DAY)
                .bind(date)
                .bind(files_created_at)
                .bind(now)
                .execute(&mut *conn)
                .await
                .db()?;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                sqlx::query("COMMIT").execute(&mut *conn).await.db()?;
            }
            Err(error) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                return Err(error);
            }
        }
        drop(conn);
        Self::closed_day(pool, date).await?.ok_or_else(|| {
            StoreError::Invariant(format!("business date {date} not recorded as closed"))
        })
    }

    /// [`ClearingStore::reopen_day`](crate::clearing::ClearingStore::reopen_day).
    pub(crate) async fn reopen_day(
        pool: &sqlx::Pool<DB>,
        date: chrono::NaiveDate,
    ) -> Result<(), StoreError> {
        sqlx::query(sql::REOPEN_DAY)
            .bind(date)
            .execute(pool)
            .await
            .db()?;
        Ok(())
    }

    /// [`ClearingStore::closed_day`](crate::clearing::ClearingStore::closed_day).
    pub(crate) async fn closed_day(
        pool: &sqlx::Pool<DB>,
        date: chrono::NaiveDate,
    ) -> Result<Option<ClosedDay>, StoreError> {
        let row: Option<(chrono::NaiveDate, chrono::DateTime<chrono::Utc>)> =
            sqlx::query_as(sql::SELECT_DAY)
                .bind(date)
                .fetch_optional(pool)
                .await
                .db()?;
        Ok(row.map(|(business_date, files_created_at)| ClosedDay {
            business_date,
            files_created_at,
        }))
    }

    /// [`ClearingStore::day_totals`](crate::clearing::ClearingStore::day_totals).
    pub(crate) async fn day_totals(
        pool: &sqlx::Pool<DB>,
        date: chrono::NaiveDate,
    ) -> Result<Vec<PartyTotal>, StoreError> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(sql::DAY_TOTALS)
            .bind(date)
            .fetch_all(pool)
            .await
            .db()?;
        Ok(rows
            .into_iter()
            .map(|(party, currency, amount_minor, lines)| PartyTotal {
                party,
                currency,
                amount_minor,
                lines,
            })
            .collect())
    }

    /// [`ClearingStore::day_files`](crate::clearing::ClearingStore::day_files).
    pub(crate) async fn day_files(
        pool: &sqlx::Pool<DB>,
        date: chrono::NaiveDate,
    ) -> Result<Vec<FileRecord>, StoreError> {
        let rows: Vec<(String, i64, String)> = sqlx::query_as(sql::SELECT_FILES)
            .bind(date)
            .fetch_all(pool)
            .await
            .db()?;
        Ok(rows
            .into_iter()
            .map(|(name, size_bytes, sha256)| FileRecord {
                name,
                size_bytes,
                sha256,
            })
            .collect())
    }

    /// [`ClearingStore::register_files`](crate::clearing::ClearingStore::register_files).
    pub(crate) async fn register_files(
        pool: &sqlx::Pool<DB>,
        date: chrono::NaiveDate,
        files: &[FileRecord],
    ) -> Result<(), StoreError> {
        let mut tx = pool.begin().await.db()?;
        for file in files {
            sqlx::query(sql::INSERT_FILE)
                .bind(date)
                .bind(&file.name)
                .bind(file.size_bytes)
                .bind(&file.sha256)
                .execute(&mut *tx)
                .await
                .db()?;
        }
        tx.commit().await.db()?;
        Ok(())
    }

    /// The day's partner lines as a cursor on a sqlx pool.
    pub(crate) fn sqlx_day_lines(
        pool: &sqlx::Pool<DB>,
        date: chrono::NaiveDate,
    ) -> futures::stream::BoxStream<'_, Result<DayLine, StoreError>> {
        use futures::StreamExt as _;
        use sqlx::Row as _;
        sqlx::query(sql::DAY_LINES)
            .bind(date)
            .fetch(pool)
            .map(|row| {
                let row = row.db()?;
                Ok(DayLine {
                    party: row.try_get(0).db()?,
                    transaction_id: row.try_get(1).db()?,
                    kind: row.try_get(2).db()?,
                    currency: row.try_get(3).db()?,
                    amount_minor: row.try_get(4).db()?,
                    store_id: row.try_get(5).db()?,
                    reference: row.try_get(6).db()?,
                })
            })
            .boxed()
    }
}
