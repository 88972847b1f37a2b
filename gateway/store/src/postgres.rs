//! The PostgreSQL backend, for production and for several gateway instances
//! sharing one database. Writes go to a few writer tasks that commit the
//! writes waiting at that moment together in one transaction, a few
//! set-based statements per batch whatever its size (group commit, see
//! [`pg_batch`]), with the audit-chain entries of the whole
//! batch appended last under one lock of the chain head: the head's lock is
//! held through each COMMIT's WAL flush, so one flush per batch rather than
//! per write is what keeps the chain from capping throughput. Concurrent
//! duplicates meet at the idempotency key's primary key: in one batch the
//! second sees the first's row; across batches PostgreSQL makes the second
//! insert wait for the first batch to commit.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};
use tokio::sync::{mpsc, oneshot};

use super::SqlxResultExt as _;
use super::audit::{
    AuditStore, ChainEntry, Checkpoint, EntryContent, SearchFilter, TransactionRow,
};
use super::backend::XACT_LOCK;
use super::clearing::{ClearingLock, HeldLock, SCHEDULE_LOCK_KEY};
use super::pg_batch::{self, Job};
use posgate_core::ports::db::{WriteCounters, WriteStats};

/// The store's statements on this backend.
type Sql = super::backend::Statements<sqlx::Postgres>;
use super::{CardWrite, Database, StoreError, WriteOutcome, WriteRequest, migrate};

/// How long a request waits for a pooled connection before failing; beyond
/// it the database is overloaded and the POS is better told to retry.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Arbitrary but fixed key of the advisory lock that serializes migrations
/// across gateway instances starting together ("pmig" in ASCII).
const MIGRATION_LOCK_KEY: i32 = 0x706d_6967;
/// Key of the advisory lock of the audit sealer: one instance signs
/// checkpoints at a time ("seal" in ASCII).
const SEAL_LOCK_KEY: i32 = 0x7365_616c;
/// Key of the leader's advisory lock, held for as long as it leads ("lead").
const LEADER_LOCK_KEY: i32 = 0x6c65_6164;
/// Key of the lock a recovery pass of cut-off requests holds ("rcvr").
const RECOVERY_LOCK_KEY: i32 = 0x7263_7672;
// The second half of every advisory lock key is the schema the connection
// works in. Advisory locks are per database, so without it two deployments
// (or two test schemas) in one database would contend for each other's locks.
// `$1` is the first half, one of the `*_LOCK_KEY` constants.

/// Tries a session advisory lock; `true` when taken.
const TRY_SESSION_LOCK: &str =
    "SELECT pg_try_advisory_lock($1, hashtext(COALESCE(current_schema(), '')))";
/// Releases a session advisory lock.
const SESSION_UNLOCK: &str =
    "SELECT pg_advisory_unlock($1, hashtext(COALESCE(current_schema(), '')))";

/// Writer tasks by default (`database.writers`), each committing one batch
/// at a time on its own pooled connection: enough to overlap one batch's
/// statements with another's commit on a small machine, few enough to leave
/// the pool to reads.
pub const DEFAULT_WRITERS: usize = 4;
/// Most writes committed in one transaction (group commit). Bounds the
/// latency one batch adds and the work redone when a batch fails.
const MAX_BATCH: usize = 64;
/// Writes waiting for a writer. Callers wait (backpressure) beyond it; the
/// server's in-flight limit keeps it from being reached in practice.
const QUEUE_CAPACITY: usize = 4096;

type Reply = oneshot::Sender<Result<WriteOutcome, StoreError>>;
type Queue = Arc<tokio::sync::Mutex<mpsc::Receiver<(Job, Reply)>>>;

/// PostgreSQL store over a connection pool, with writer tasks that group
/// concurrent writes into one transaction (group commit).
#[derive(Debug, Clone)]
pub struct PostgresDatabase {
    pool: PgPool,
    writes: mpsc::Sender<(Job, Reply)>,
    counters: Arc<WriteCounters>,
}

impl PostgresDatabase {
    /// Connects a pool to a `postgres:` URL.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        Self::connect_with(
            PgConnectOptions::from_str(url).db()?,
            max_connections,
            DEFAULT_WRITERS,
        )
        .await
    }

    /// Connects with explicit options and `writer_tasks` writer tasks.
    pub async fn connect_with(
        options: PgConnectOptions,
        max_connections: u32,
        writer_tasks: usize,
    ) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .db()?;
        let (writes, queue) = mpsc::channel(QUEUE_CAPACITY);
        let queue: Queue = Arc::new(tokio::sync::Mutex::new(queue));
        let counters = Arc::new(WriteCounters::default());
        for _ in 0..writer_tasks.max(1) {
            tokio::spawn(run_writer(
                pool.clone(),
                Arc::clone(&queue),
                Arc::clone(&counters),
            ));
        }
        Ok(Self {
            pool,
            writes,
            counters,
        })
    }

    /// Hands a write to the writers and waits for its outcome.
    async fn submit(&self, job: Job) -> Result<WriteOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.counters.submitted();
        self.writes
            .send((job, reply))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }
}

async fn postgres_clearing_lock(
    store: &PostgresDatabase,
) -> Result<Option<ClearingLock>, StoreError> {
    try_session_lock(&store.pool, SCHEDULE_LOCK_KEY).await
}

/// A session advisory lock (schema-scoped `key`) on a connection taken out
/// of the pool, or `None` when another instance holds it (the connection
/// then goes back to the pool: followers poll without opening connections).
async fn try_session_lock(pool: &PgPool, key: i32) -> Result<Option<ClearingLock>, StoreError> {
    let mut conn = pool.acquire().await.db()?;
    let locked: bool = sqlx::query_scalar(TRY_SESSION_LOCK)
        .bind(key)
        .fetch_one(&mut *conn)
        .await
        .db()?;
    Ok(locked.then(|| {
        Box::new(SessionLock {
            conn: conn.detach(),
            key,
        }) as ClearingLock
    }))
}

/// How long the check that a held lock's connection is alive may take
/// before the lock is given up (a stuck connection is as good as lost).
const LOCK_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// A held session advisory lock and the connection that holds it.
struct SessionLock {
    conn: sqlx::PgConnection,
    key: i32,
}

#[async_trait::async_trait]
impl HeldLock for SessionLock {
    /// Unlocks, so the next holder need not wait for the server to notice
    /// the closed connection, then closes the connection.
    async fn release(self: Box<Self>) {
        let SessionLock { mut conn, key } = *self;
        if let Err(error) = sqlx::query(SESSION_UNLOCK)
            .bind(key)
            .execute(&mut conn)
            .await
        {
            tracing::warn!(%error, "advisory unlock failed; closing the connection frees the lock");
        }
        let _ = conn.close().await;
    }

    /// A session lock lives as long as its connection: held while the
    /// connection answers. A connection that does not answer in time is
    /// dropped (closing it frees the lock at the server, if the server is
    /// still there).
    async fn held(&mut self) -> bool {
        let ping = sqlx::query("SELECT 1").execute(&mut self.conn);
        matches!(
            tokio::time::timeout(LOCK_CHECK_TIMEOUT, ping).await,
            Ok(Ok(_))
        )
    }
}

#[async_trait::async_trait]
impl super::lease::InstanceStore for PostgresDatabase {
    async fn renew_leases(&self, lease: &super::lease::Lease) -> Result<u64, StoreError> {
        Sql::renew_leases(&self.pool, lease).await
    }

    async fn release_leases(&self, holder: &str) -> Result<u64, StoreError> {
        Sql::release_leases(&self.pool, holder).await
    }

    /// The leader's session advisory lock, on a connection of its own for
    /// as long as it leads.
    async fn try_lead(&self) -> Result<Option<ClearingLock>, StoreError> {
        try_session_lock(&self.pool, LEADER_LOCK_KEY).await
    }

    async fn try_recovery_lock(&self) -> Result<Option<ClearingLock>, StoreError> {
        try_session_lock(&self.pool, RECOVERY_LOCK_KEY).await
    }
}

#[async_trait::async_trait]
impl super::ReconStore for PostgresDatabase {
    async fn store_ack(&self, ack: super::NewAck<'_>) -> Result<super::AckOutcome, StoreError> {
        let mut conn = self.pool.acquire().await.db()?;
        let mut tx = conn.begin().await.db()?;
        let outcome = Sql::apply_ack(&mut tx, &ack).await?;
        if matches!(outcome, super::AckOutcome::Stored(_)) {
            tx.commit().await.db()?;
        }
        Ok(outcome)
    }

    async fn exceptions(
        &self,
        business_date: Option<chrono::NaiveDate>,
        partner: Option<&str>,
    ) -> Result<Vec<super::StoredException>, StoreError> {
        Sql::read_exceptions(&self.pool, business_date, partner).await
    }
}

#[async_trait::async_trait]
impl Database for PostgresDatabase {
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.db()?;
        let mut tx = conn.begin().await.db()?;
        // A transaction-scoped advisory lock: instances starting together migrate one at a time.
        sqlx::query(XACT_LOCK)
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut *tx)
            .await
            .db()?;
        sqlx::query(migrate::CREATE_LEDGER)
            .execute(&mut *tx)
            .await
            .db()?;
        let applied: Vec<i64> = sqlx::query_scalar(migrate::SELECT_APPLIED)
            .fetch_all(&mut *tx)
            .await
            .db()?;
        for migration in migrate::pending(migrate::POSTGRES, &applied)? {
            sqlx::Executor::execute(&mut *tx, migration.sql)
                .await
                .db()?;
            sqlx::query(migrate::RECORD)
                .bind(migration.version)
                .bind(migration.name)
                .bind(Utc::now().to_rfc3339())
                .execute(&mut *tx)
                .await
                .db()?;
            tracing::info!(
                version = migration.version,
                name = migration.name,
                "applied postgres migration"
            );
        }
        let chained = Sql::backfill_events(&mut tx).await?;
        if chained > 0 {
            tracing::info!(
                chained,
                "chained events written before the audit chain existed"
            );
        }
        tx.commit().await.db()?;
        Ok(())
    }

    async fn write(&self, request: WriteRequest) -> Result<WriteOutcome, StoreError> {
        self.submit(Job::Write(request)).await
    }

    async fn write_card(&self, write: CardWrite) -> Result<WriteOutcome, StoreError> {
        self.submit(Job::Card(write)).await
    }

    async fn write_wallet(&self, write: super::WalletWrite) -> Result<WriteOutcome, StoreError> {
        self.submit(Job::Wallet(write)).await
    }

    async fn write_bill(&self, write: super::BillWrite) -> Result<WriteOutcome, StoreError> {
        self.submit(Job::Bill(write)).await
    }

    fn write_stats(&self) -> WriteStats {
        self.counters.stats()
    }
}

/// A writer task: takes every write waiting (up to `MAX_BATCH`; while one
/// writer commits, the next gathers) and commits them together.
async fn run_writer(pool: PgPool, queue: Queue, counters: Arc<WriteCounters>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let received = queue.lock().await.recv_many(&mut batch, MAX_BATCH).await;
        if received == 0 {
            return;
        }
        counters.batch(received);
        let started = std::time::Instant::now();
        write_batch(&pool, &mut batch).await;
        crate::metrics::record_batch(
            crate::metrics::Backend::Postgres,
            received,
            started.elapsed(),
        );
    }
}

/// Commits a batch set-based ([`pg_batch`]) and answers every write in it.
/// When the batch's transaction fails (e.g. a deadlock between two batches
/// waiting for each other's rows), nothing of it was committed and each
/// write runs again in a transaction of its own, so one bad write cannot
/// fail the others.
async fn write_batch(pool: &PgPool, batch: &mut Vec<(Job, Reply)>) {
    let outcomes = {
        let jobs: Vec<&Job> = batch.iter().map(|(job, _)| job).collect();
        match commit_batch(pool, &jobs).await {
            Ok(outcomes) => outcomes,
            Err(error) if jobs.len() > 1 => {
                tracing::warn!(%error, writes = jobs.len(), "postgres batch failed; writing each alone");
                let mut outcomes = Vec::with_capacity(jobs.len());
                for job in jobs {
                    outcomes.push(match commit_batch(pool, &[job]).await {
                        Ok(mut alone) => alone.pop().unwrap_or(Err(StoreError::WriterGone)),
                        Err(error) => Err(error),
                    });
                }
                outcomes
            }
            Err(error) => vec![Err(error)],
        }
    };
    for ((_, reply), outcome) in batch.drain(..).zip(outcomes) {
        // A caller that went away (cancelled request) needs no answer.
        let _ = reply.send(outcome);
    }
}

/// A batch in one transaction on a pooled connection.
async fn commit_batch(
    pool: &PgPool,
    jobs: &[&Job],
) -> Result<Vec<Result<WriteOutcome, StoreError>>, StoreError> {
    let mut conn = pool.acquire().await.db()?;
    pg_batch::commit(&mut conn, jobs).await
}

#[async_trait::async_trait]
impl AuditStore for PostgresDatabase {
    async fn chain_head(&self) -> Result<(i64, Vec<u8>), StoreError> {
        Sql::audit_chain_head(&self.pool).await
    }

    async fn chain_entries(
        &self,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<ChainEntry>, StoreError> {
        Sql::audit_chain_entries(&self.pool, from, to, limit).await
    }

    async fn sequence_of_hash(&self, hash: &[u8]) -> Result<Option<i64>, StoreError> {
        Sql::audit_sequence_of_hash(&self.pool, hash).await
    }

    async fn transaction_entries(
        &self,
        transaction_id: &str,
    ) -> Result<Vec<ChainEntry>, StoreError> {
        Sql::audit_transaction_entries(&self.pool, transaction_id).await
    }

    async fn append_audit_read(&self, content: EntryContent) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await.db()?;
        let sequence = Sql::append_chain_entry(&mut tx, &content).await?;
        tx.commit().await.db()?;
        Ok(sequence)
    }

    async fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> Result<bool, StoreError> {
        Sql::audit_insert_checkpoint(&self.pool, checkpoint).await
    }

    async fn checkpoints(
        &self,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<Checkpoint>, StoreError> {
        Sql::audit_checkpoints(&self.pool, from, to, limit).await
    }

    async fn latest_checkpoint(&self, sequence: i64) -> Result<Option<Checkpoint>, StoreError> {
        Sql::audit_latest_checkpoint(&self.pool, sequence).await
    }

    async fn search_transactions(
        &self,
        filter: &SearchFilter,
        as_of: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<TransactionRow>, StoreError> {
        Sql::audit_search(&self.pool, filter, as_of, after, limit).await
    }

    async fn transaction_row(
        &self,
        id: &str,
        as_of: i64,
    ) -> Result<Option<TransactionRow>, StoreError> {
        Sql::audit_transaction_row(&self.pool, id, as_of).await
    }

    /// The sealer's session advisory lock, as for the clearing schedule.
    async fn seal_lock(&self) -> Result<Option<ClearingLock>, StoreError> {
        try_session_lock(&self.pool, SEAL_LOCK_KEY).await
    }

    async fn backfill_chain(&self) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await.db()?;
        let chained = Sql::backfill_events(&mut tx).await?;
        tx.commit().await.db()?;
        Ok(chained)
    }
}

#[async_trait::async_trait]
impl super::stan::StanStore for PostgresDatabase {
    async fn allocate_stans(
        &self,
        institution_id: &str,
        day: chrono::NaiveDate,
        count: u32,
    ) -> Result<std::ops::Range<u32>, StoreError> {
        Sql::allocate_stans(&self.pool, institution_id, day, count).await
    }

    async fn saf_set_stan(&self, id: i64, stan: &str) -> Result<String, StoreError> {
        Sql::saf_set_stan(&self.pool, id, stan).await
    }
}

#[async_trait::async_trait]
impl super::BillReads for PostgresDatabase {
    async fn stale_bill_in_progress(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<super::TransactionRecord>, StoreError> {
        Sql::stale_bill_in_progress(&self.pool, before, limit).await
    }

    async fn bill_saf_claim(
        &self,
        lease: &super::lease::Lease,
        limit: i64,
    ) -> Result<Vec<super::BillSafItem>, StoreError> {
        Sql::bill_saf_claim(&self.pool, lease, limit).await
    }

    async fn bill_saf_open(&self) -> Result<i64, StoreError> {
        Sql::bill_saf_open(&self.pool).await
    }
}

#[async_trait::async_trait]
impl super::WalletReads for PostgresDatabase {
    async fn wallet_transaction(
        &self,
        id: &str,
    ) -> Result<Option<super::WalletRecord>, super::StoreError> {
        Sql::wallet_transaction(&self.pool, id).await
    }

    async fn wallet_by_request(
        &self,
        key: &posgate_core::model::IdempotencyKey,
    ) -> Result<Option<super::WalletRecord>, super::StoreError> {
        Sql::wallet_by_request(&self.pool, key).await
    }

    async fn wallet_refund_ids(&self, original_id: &str) -> Result<Vec<String>, super::StoreError> {
        Sql::wallet_refund_ids(&self.pool, original_id).await
    }

    async fn stale_wallet_in_progress(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<super::WalletRecord>, super::StoreError> {
        Sql::stale_wallet_in_progress(&self.pool, before, limit).await
    }

    async fn wallet_saf_claim(
        &self,
        lease: &super::lease::Lease,
        limit: i64,
    ) -> Result<Vec<super::WalletSafItem>, super::StoreError> {
        Sql::wallet_saf_claim(&self.pool, lease, limit).await
    }

    async fn wallet_saf_open(&self) -> Result<i64, super::StoreError> {
        Sql::wallet_saf_open(&self.pool).await
    }
}

#[async_trait::async_trait]
impl super::Reads for PostgresDatabase {
    async fn answer(
        &self,
        key: &posgate_core::model::IdempotencyKey,
    ) -> Result<Option<posgate_core::model::StoredAnswer>, super::StoreError> {
        Sql::answer(&self.pool, key).await
    }

    async fn transaction(
        &self,
        store_id: &str,
        id: &str,
    ) -> Result<Option<super::TransactionRecord>, super::StoreError> {
        Sql::transaction(&self.pool, store_id, id).await
    }

    async fn settlement_lines(
        &self,
        transaction_id: &str,
    ) -> Result<Vec<super::SettlementLine>, super::StoreError> {
        Sql::settlement_lines(&self.pool, transaction_id).await
    }

    async fn events(&self, transaction_id: &str) -> Result<Vec<super::Event>, super::StoreError> {
        Sql::events(&self.pool, transaction_id).await
    }

    async fn purge_expired_keys(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, super::StoreError> {
        Sql::purge_expired_keys(&self.pool, now).await
    }

    async fn row_counts(&self) -> Result<super::RowCounts, super::StoreError> {
        Sql::row_counts(&self.pool).await
    }

    async fn card_transaction(
        &self,
        id: &str,
    ) -> Result<Option<super::CardRecord>, super::StoreError> {
        Sql::card_transaction(&self.pool, id).await
    }

    async fn card_by_request(
        &self,
        key: &posgate_core::model::IdempotencyKey,
    ) -> Result<Option<super::CardRecord>, super::StoreError> {
        Sql::card_by_request(&self.pool, key).await
    }

    async fn refund_ids(&self, original_id: &str) -> Result<Vec<String>, super::StoreError> {
        Sql::refund_ids(&self.pool, original_id).await
    }

    async fn stale_in_progress(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<super::CardRecord>, super::StoreError> {
        Sql::stale_in_progress(&self.pool, before, limit).await
    }

    async fn expired_authorizations(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<super::CardRecord>, super::StoreError> {
        Sql::expired_authorizations(&self.pool, now, limit).await
    }

    async fn saf_claim(
        &self,
        lease: &super::lease::Lease,
        limit: i64,
    ) -> Result<Vec<super::SafItem>, super::StoreError> {
        Sql::saf_claim(&self.pool, lease, limit).await
    }

    async fn saf_retry(
        &self,
        id: i64,
        next_attempt_at: chrono::DateTime<chrono::Utc>,
        error: &str,
    ) -> Result<(), super::StoreError> {
        Sql::saf_retry(&self.pool, id, next_attempt_at, error).await
    }

    async fn saf_ack_moot(
        &self,
        id: i64,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), super::StoreError> {
        Sql::saf_ack_moot(&self.pool, id, at).await
    }

    async fn saf_open(&self) -> Result<i64, super::StoreError> {
        Sql::saf_open(&self.pool).await
    }

    async fn saf_backlog(
        &self,
    ) -> Result<Vec<posgate_core::ports::db::SafBacklog>, super::StoreError> {
        Sql::saf_backlog(&self.pool).await
    }
}

#[async_trait::async_trait]
impl super::ReloadStore for PostgresDatabase {
    async fn insert_link(
        &self,
        link: &super::CardLink,
        answer: &super::AnsweredKey,
    ) -> Result<super::LinkWrite, super::StoreError> {
        Sql::insert_link(&self.pool, link, answer).await
    }

    async fn unlink(
        &self,
        link_id: &str,
        reason: &str,
        answer: &super::AnsweredKey,
    ) -> Result<super::LinkWrite, super::StoreError> {
        Sql::unlink(&self.pool, link_id, reason, answer).await
    }

    async fn active_link(
        &self,
        wallet_operator_id: &str,
        wallet_ref: &str,
    ) -> Result<Option<super::CardLink>, super::StoreError> {
        Sql::active_link(&self.pool, wallet_operator_id, wallet_ref).await
    }

    async fn card_link(&self, link_id: &str) -> Result<Option<super::CardLink>, super::StoreError> {
        Sql::card_link(&self.pool, link_id).await
    }

    async fn put_saga(&self, saga: &super::Saga) -> Result<(), super::StoreError> {
        Sql::put_saga(&self.pool, saga).await
    }

    async fn saga(&self, saga_id: &str) -> Result<Option<super::Saga>, super::StoreError> {
        Sql::saga(&self.pool, saga_id).await
    }

    async fn saga_of_step(
        &self,
        transaction_id: &str,
    ) -> Result<Option<super::Saga>, super::StoreError> {
        Sql::saga_of_step(&self.pool, transaction_id).await
    }

    async fn open_sagas(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<super::Saga>, super::StoreError> {
        Sql::open_sagas(&self.pool, before, limit).await
    }

    async fn claim_sagas(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        lease: &super::lease::Lease,
        limit: i64,
    ) -> Result<Vec<super::Saga>, super::StoreError> {
        Sql::claim_sagas(&self.pool, before, lease, limit).await
    }
}

#[async_trait::async_trait]
impl super::clearing::ClearingStore for PostgresDatabase {
    async fn close_day(
        &self,
        date: chrono::NaiveDate,
        files_created_at: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<super::clearing::ClosedDay, StoreError> {
        Sql::close_day(&self.pool, date, files_created_at, now).await
    }

    async fn reopen_day(&self, date: chrono::NaiveDate) -> Result<(), StoreError> {
        Sql::reopen_day(&self.pool, date).await
    }

    async fn closed_day(
        &self,
        date: chrono::NaiveDate,
    ) -> Result<Option<super::clearing::ClosedDay>, StoreError> {
        Sql::closed_day(&self.pool, date).await
    }

    async fn day_totals(
        &self,
        date: chrono::NaiveDate,
    ) -> Result<Vec<super::clearing::PartyTotal>, StoreError> {
        Sql::day_totals(&self.pool, date).await
    }

    fn day_lines(
        &self,
        date: chrono::NaiveDate,
    ) -> futures::stream::BoxStream<'_, Result<super::clearing::DayLine, StoreError>> {
        Sql::sqlx_day_lines(&self.pool, date)
    }

    async fn day_files(
        &self,
        date: chrono::NaiveDate,
    ) -> Result<Vec<super::clearing::FileRecord>, StoreError> {
        Sql::day_files(&self.pool, date).await
    }

    async fn register_files(
        &self,
        date: chrono::NaiveDate,
        files: &[super::clearing::FileRecord],
    ) -> Result<(), StoreError> {
        Sql::register_files(&self.pool, date, files).await
    }

    async fn try_clearing_lock(&self) -> Result<Option<ClearingLock>, StoreError> {
        postgres_clearing_lock(self).await
    }
}
