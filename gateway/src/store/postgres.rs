//! The PostgreSQL backend, for production and for several gateway instances
//! sharing one database. Each write is one short transaction on a pooled
//! connection; concurrent duplicates meet at the idempotency key's primary
//! key, where PostgreSQL makes the second insert wait for the first to
//! commit. Concurrent commits share WAL flushes, so throughput grows with
//! the number of connections rather than being capped by one fsync per write.

use std::str::FromStr;
use std::time::Duration;

use chrono::Utc;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};

use super::clearing::{
    ClearingLock, SCHEDULE_LOCK_KEY, define_clearing_store, define_open_business_date,
};
use super::recon::{define_exceptions_read, define_recon};
use super::write::{define_apply_card_write, define_apply_write, define_reads};
use super::{CardWrite, Store, StoreError, WriteOutcome, WriteRequest, migrate};

/// How long a request waits for a pooled connection before failing; beyond
/// it the database is overloaded and the POS is better told to retry.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Arbitrary but fixed key of the advisory lock that serializes migrations
/// across gateway instances starting together ("pmig" in ASCII).
const MIGRATION_LOCK_KEY: i32 = 0x706d_6967;
/// The second half of every advisory lock key: the schema the connection
/// works in. Advisory locks are per database, so without it two deployments
/// (or two test schemas) in one database would contend for each other's locks.
macro_rules! schema_scoped_lock {
    ($function:literal) => {
        concat!(
            "SELECT ",
            $function,
            "($1, hashtext(COALESCE(current_schema(), '')))"
        )
    };
}

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

// Writes take the close lock shared, a close takes it exclusive: a close
// waits for the writes in flight, and every write after it sees the day closed.
define_open_business_date!(
    sqlx::PgConnection,
    Some(schema_scoped_lock!("pg_advisory_xact_lock_shared"))
);
define_clearing_store!(
    PostgresStore,
    pool,
    "BEGIN",
    Some(schema_scoped_lock!("pg_advisory_xact_lock")),
    postgres_clearing_lock
);

/// A session advisory lock on a connection taken out of the pool: dropping
/// the lock closes the connection, which releases the lock.
async fn postgres_clearing_lock(store: &PostgresStore) -> Result<Option<ClearingLock>, StoreError> {
    let mut conn = store.pool.acquire().await?.detach();
    let locked: bool = sqlx::query_scalar(schema_scoped_lock!("pg_try_advisory_lock"))
        .bind(SCHEDULE_LOCK_KEY)
        .fetch_one(&mut conn)
        .await?;
    Ok(locked.then(|| Box::new(conn) as ClearingLock))
}

define_apply_write!(sqlx::PgConnection);
define_apply_card_write!(sqlx::PgConnection);
super::wallet::define_wallet_store!(sqlx::PgConnection, PostgresStore, pool);
define_reads!(PostgresStore, pool);
define_recon!(sqlx::PgConnection);

#[async_trait::async_trait]
impl super::ReconStore for PostgresStore {
    async fn store_ack(&self, ack: super::NewAck<'_>) -> Result<super::AckOutcome, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let outcome = apply_ack(&mut tx, &ack).await?;
        if matches!(outcome, super::AckOutcome::Stored(_)) {
            tx.commit().await?;
        }
        Ok(outcome)
    }

    async fn exceptions(
        &self,
        business_date: Option<chrono::NaiveDate>,
        partner: Option<&str>,
    ) -> Result<Vec<super::StoredException>, StoreError> {
        read_exceptions(&self.pool, business_date, partner).await
    }
}
define_exceptions_read!(PgPool);

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        // A transaction-scoped advisory lock: instances starting together migrate one at a time.
        sqlx::query(schema_scoped_lock!("pg_advisory_xact_lock"))
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

    async fn write_card(&self, write: CardWrite) -> Result<WriteOutcome, StoreError> {
        write.check()?;
        let mut tx = self.pool.begin().await?;
        let outcome = apply_card_write(&mut tx, &write).await?;
        if outcome == WriteOutcome::Written {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(outcome)
    }

    async fn write_wallet(&self, write: super::WalletWrite) -> Result<WriteOutcome, StoreError> {
        write.check()?;
        let mut tx = self.pool.begin().await?;
        let outcome = apply_wallet_write(&mut tx, &write).await?;
        if outcome == WriteOutcome::Written {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(outcome)
    }
}
