//! The SQL side of [`posgate_core::ports::db::clearing`].

pub(crate) use posgate_core::ports::db::clearing::*;

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

/// Implements [`ClearingStore`] for a backend whose read pool is `$pool`.
/// `$close_guard` is run inside the close's transaction before the insert
/// (PostgreSQL: the exclusive advisory lock; SQLite: a no-op). `$try_lock`
/// takes the scheduling lock and `$day_lines` opens the day's cursor, given
/// the store (the macro defines `sqlx_day_lines`, a cursor on `$pool`).
macro_rules! define_clearing_store {
    (
        $store:ty,
        $pool:ident,
        $close_begin:literal,
        $close_guard:expr,
        $try_lock:expr,
        $day_lines:expr
    ) => {
        #[async_trait::async_trait]
        impl $crate::clearing::ClearingStore for $store {
            async fn close_day(
                &self,
                date: chrono::NaiveDate,
                files_created_at: chrono::DateTime<chrono::Utc>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::clearing::ClosedDay, $crate::StoreError> {
                use $crate::clearing::sql;
                let mut conn = self.$pool.acquire().await.db()?;
                sqlx::query($close_begin).execute(&mut *conn).await.db()?;
                let result: Result<(), $crate::StoreError> = async {
                    if let Some(guard) = $close_guard {
                        sqlx::query(guard)
                            .bind($crate::clearing::CLOSE_LOCK_KEY)
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
                self.closed_day(date).await?.ok_or_else(|| {
                    $crate::StoreError::Invariant(format!(
                        "business date {date} not recorded as closed"
                    ))
                })
            }

            async fn reopen_day(
                &self,
                date: chrono::NaiveDate,
            ) -> Result<(), $crate::StoreError> {
                sqlx::query($crate::clearing::sql::REOPEN_DAY)
                    .bind(date)
                    .execute(&self.$pool)
                    .await
                    .db()?;
                Ok(())
            }

            async fn closed_day(
                &self,
                date: chrono::NaiveDate,
            ) -> Result<Option<$crate::clearing::ClosedDay>, $crate::StoreError> {
                let row: Option<(chrono::NaiveDate, chrono::DateTime<chrono::Utc>)> =
                    sqlx::query_as($crate::clearing::sql::SELECT_DAY)
                        .bind(date)
                        .fetch_optional(&self.$pool)
                        .await
                        .db()?;
                Ok(row.map(|(business_date, files_created_at)| {
                    $crate::clearing::ClosedDay {
                        business_date,
                        files_created_at,
                    }
                }))
            }

            async fn day_totals(
                &self,
                date: chrono::NaiveDate,
            ) -> Result<Vec<$crate::clearing::PartyTotal>, $crate::StoreError> {
                let rows: Vec<(String, String, i64, i64)> =
                    sqlx::query_as($crate::clearing::sql::DAY_TOTALS)
                        .bind(date)
                        .fetch_all(&self.$pool)
                        .await
                        .db()?;
                Ok(rows
                    .into_iter()
                    .map(|(party, currency, amount_minor, lines)| {
                        $crate::clearing::PartyTotal {
                            party,
                            currency,
                            amount_minor,
                            lines,
                        }
                    })
                    .collect())
            }

            fn day_lines(
                &self,
                date: chrono::NaiveDate,
            ) -> futures::stream::BoxStream<
                '_,
                Result<$crate::clearing::DayLine, $crate::StoreError>,
            > {
                $day_lines(self, date)
            }

            async fn day_files(
                &self,
                date: chrono::NaiveDate,
            ) -> Result<Vec<$crate::clearing::FileRecord>, $crate::StoreError> {
                let rows: Vec<(String, i64, String)> =
                    sqlx::query_as($crate::clearing::sql::SELECT_FILES)
                        .bind(date)
                        .fetch_all(&self.$pool)
                        .await
                        .db()?;
                Ok(rows
                    .into_iter()
                    .map(
                        |(name, size_bytes, sha256)| $crate::clearing::FileRecord {
                            name,
                            size_bytes,
                            sha256,
                        },
                    )
                    .collect())
            }

            async fn register_files(
                &self,
                date: chrono::NaiveDate,
                files: &[$crate::clearing::FileRecord],
            ) -> Result<(), $crate::StoreError> {
                let mut tx = self.$pool.begin().await.db()?;
                for file in files {
                    sqlx::query($crate::clearing::sql::INSERT_FILE)
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

            async fn try_clearing_lock(
                &self,
            ) -> Result<Option<$crate::clearing::ClearingLock>, $crate::StoreError>
            {
                $try_lock(self).await
            }
        }

        impl $store {
            /// The day's partner lines as a cursor on the sqlx read pool.
            fn sqlx_day_lines(
                &self,
                date: chrono::NaiveDate,
            ) -> futures::stream::BoxStream<
                '_,
                Result<$crate::clearing::DayLine, $crate::StoreError>,
            > {
                use futures::StreamExt as _;
                use sqlx::Row as _;
                sqlx::query($crate::clearing::sql::DAY_LINES)
                    .bind(date)
                    .fetch(&self.$pool)
                    .map(|row| {
                        let row = row.db()?;
                        Ok($crate::clearing::DayLine {
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
    };
}

pub(crate) use define_clearing_store;
