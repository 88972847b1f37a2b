//! The PostgreSQL backend, for production and for several gateway instances
//! sharing one database. Each write is one short transaction on a pooled
//! connection; concurrent duplicates meet at the idempotency key's primary
//! key, where PostgreSQL makes the second insert wait for the first to
//! commit. Concurrent commits share WAL flushes, so throughput grows with
//! the number of connections rather than being capped by one fsync per write.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};

use super::write::define_apply_write;
use super::{
    Event, IdempotencyKey, RowCounts, SettlementLine, Store, StoreError, StoredAnswer,
    TransactionRecord, WriteOutcome, WriteRequest, migrate, rows, sql,
};

/// How long a request waits for a pooled connection before failing; beyond
/// it the database is overloaded and the POS is better told to retry.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Arbitrary but fixed key of the advisory lock that serializes migrations
/// across gateway instances starting together ("posgate" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x0070_6f73_6761_7465;

/// PostgreSQL store over a connection pool.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects a pool to a `postgres:` URL.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        Self::connect_with(PgConnectOptions::from_str(url)?, max_connections).await
    }

    /// Connects with explicit options (tests use this to pin a schema).
    pub async fn connect_with(
        options: PgConnectOptions,
        max_connections: u32,
    ) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }
}

define_apply_write!(sqlx::PgConnection);

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        // A transaction-scoped advisory lock: instances starting together migrate one at a time.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        sqlx::query(migrate::CREATE_LEDGER)
            .execute(&mut *tx)
            .await?;
        let applied: Vec<i64> = sqlx::query_scalar(migrate::SELECT_APPLIED)
            .fetch_all(&mut *tx)
            .await?;
        for migration in migrate::pending(migrate::POSTGRES, &applied)? {
            sqlx::Executor::execute(&mut *tx, migration.sql).await?;
            sqlx::query(migrate::RECORD)
                .bind(migration.version)
                .bind(migration.name)
                .bind(Utc::now().to_rfc3339())
                .execute(&mut *tx)
                .await?;
            tracing::info!(
                version = migration.version,
                name = migration.name,
                "applied postgres migration"
            );
        }
        tx.commit().await?;
        Ok(())
    }

    async fn write(&self, request: WriteRequest) -> Result<WriteOutcome, StoreError> {
        request.check()?;
        let mut tx = self.pool.begin().await?;
        let outcome = apply_write(&mut tx, &request).await?;
        if outcome == WriteOutcome::Written {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(outcome)
    }

    async fn answer(&self, key: &IdempotencyKey) -> Result<Option<StoredAnswer>, StoreError> {
        let row = sqlx::query(sql::SELECT_KEY)
            .bind(&key.store_id)
            .bind(&key.terminal_id)
            .bind(&key.client_request_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::answer).transpose()
    }

    async fn transaction(
        &self,
        store_id: &str,
        id: &str,
    ) -> Result<Option<TransactionRecord>, StoreError> {
        let row = sqlx::query(sql::SELECT_TRANSACTION)
            .bind(id)
            .bind(store_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::transaction).transpose()
    }

    async fn settlement_lines(
        &self,
        transaction_id: &str,
    ) -> Result<Vec<SettlementLine>, StoreError> {
        let rows = sqlx::query(sql::SELECT_LINES)
            .bind(transaction_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::line).collect()
    }

    async fn events(&self, transaction_id: &str) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(sql::SELECT_EVENTS)
            .bind(transaction_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::event).collect()
    }

    async fn purge_expired_keys(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(sqlx::query(sql::PURGE_KEYS)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn row_counts(&self) -> Result<RowCounts, StoreError> {
        let (idempotency_keys, transactions, bill_payments, settlement_lines, events) =
            sqlx::query_as(sql::ROW_COUNTS)
                .fetch_one(&self.pool)
                .await?;
        Ok(RowCounts {
            idempotency_keys,
            transactions,
            bill_payments,
            settlement_lines,
            events,
        })
    }
}
