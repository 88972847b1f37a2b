//! The SQLite backend: the embedded default. WAL mode with full fsync on
//! commit. All writes of payments go through one writer thread owning a
//! rusqlite connection (`sqlite_writer`), which groups concurrent writes
//! into one transaction (group commit): SQLite has one writer at a time
//! anyway, and one fsync per batch instead of per write is what makes a
//! busy gateway fast. The reads a request makes run on rusqlite read
//! connections (`sqlite_reads`), a whole read per hand-off; the other reads
//! and the rare writes (acknowledgements, checkpoints, STANs, clearing)
//! use a sqlx pool, beside the writer (WAL readers do not block it; a
//! writer waits for the lock up to the busy timeout).

use std::str::FromStr;
use std::time::Duration;

use chrono::Utc;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::sqlite_conn::Target;
use super::sqlite_reads::ReadPool;
use super::sqlite_writer::{Done, Job, Reply};

use super::SqlxResultExt as _;
use super::audit::{
    AuditStore, ChainEntry, Checkpoint, EntryContent, SearchFilter, TransactionRow,
};
use super::clearing::ClearingLock;
use posgate_core::ports::db::{WriteCounters, WriteStats};

/// The store's statements on this backend.
type Sql = super::backend::Statements<sqlx::Sqlite>;
use super::{
    BillWrite, CardWrite, Database, StoreError, WalletWrite, WriteOutcome, WriteRequest, migrate,
};

/// Writes waiting for the writer. Callers wait (backpressure) beyond it; the
/// server's in-flight limit keeps it from being reached in practice.
const QUEUE_CAPACITY: usize = 4096;
/// How long a connection waits for a lock held by another process (e.g. a
/// `posgate migrate` run beside a server) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Read connections. WAL readers do not block each other or the writer.
const READ_CONNECTIONS: u32 = 4;
/// Rows a read connection's worker thread runs ahead of its reader. sqlx's
/// default (50) wakes the reader for every few rows; audit verification and
/// export stream millions, and the thread hand-offs cost more than SQLite
/// itself. 4096 rows of a few hundred bytes each bound the buffer to about a
/// megabyte per read. (The clearing cursor reads on a thread of its own:
/// [`sqlite_day_lines`].)
const READ_ROW_BUFFER: usize = 4096;

/// SQLite store: a channel to the writer thread, the hot reads' rusqlite
/// connections and a sqlx pool for the other reads and rare writes.
#[derive(Debug, Clone)]
pub struct SqliteDatabase {
    reads: SqlitePool,
    hot: std::sync::Arc<ReadPool>,
    writes: mpsc::Sender<(Job, Reply)>,
    counters: std::sync::Arc<WriteCounters>,
    options: SqliteConnectOptions,
}

impl SqliteDatabase {
    /// Opens (creating if missing) the database at a `sqlite:` URL.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .db()?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before the POS hears "paid".
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        // The pool's first connection creates the file and sets WAL.
        let reads = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .connect_with(options.clone().row_buffer_size(READ_ROW_BUFFER))
            .await
            .db()?;
        let target = Target::of(&options);
        let write_conn = target.open(BUSY_TIMEOUT)?;
        let counters = std::sync::Arc::new(WriteCounters::default());
        let writes = super::sqlite_writer::spawn(
            write_conn,
            QUEUE_CAPACITY,
            std::sync::Arc::clone(&counters),
        )?;
        Ok(Self {
            reads,
            hot: ReadPool::new(target, BUSY_TIMEOUT),
            writes,
            counters,
            options,
        })
    }
}

/// One process owns a SQLite file, so the scheduled run needs no lock.
#[allow(clippy::unused_async)]
async fn sqlite_clearing_lock(_store: &SqliteDatabase) -> Result<Option<ClearingLock>, StoreError> {
    Ok(Some(Box::new(super::clearing::NoLock)))
}

/// Lines the day cursor's thread hands over at a time.
const DAY_LINE_BATCH: usize = 4096;
/// Batches the thread may run ahead of the clearing run (with
/// [`DAY_LINE_BATCH`], about 16k lines, a few megabytes).
const DAY_LINE_BATCHES_AHEAD: usize = 4;

/// The day's partner lines. A database file is read on a blocking thread of
/// its own (a read-only connection; a closed day no longer changes), which
/// hands over [`DAY_LINE_BATCH`] lines at a time: sqlx-sqlite would hand each
/// row from its worker thread to the reader, and at a million lines those
/// hand-offs cost several times what SQLite itself does. An in-memory
/// database is visible only to the pool's connections, so it uses the pool.
fn sqlite_day_lines(
    store: &SqliteDatabase,
    date: chrono::NaiveDate,
) -> futures::stream::BoxStream<'_, Result<super::clearing::DayLine, StoreError>> {
    use futures::StreamExt as _;
    let path = store.options.get_filename().to_path_buf();
    if !path.is_file() {
        return Sql::sqlx_day_lines(&store.reads, date);
    }
    let (batches, received) = mpsc::channel(DAY_LINE_BATCHES_AHEAD);
    tokio::task::spawn_blocking(move || {
        if let Err(error) = read_day_lines(&path, date, &batches) {
            let _ = batches.blocking_send(Err(StoreError::Corrupt(format!(
                "reading the lines of {date}: {error}"
            ))));
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(received)
        .flat_map(|batch: Result<Vec<_>, StoreError>| match batch {
            Ok(lines) => futures::stream::iter(lines).map(Ok).left_stream(),
            Err(error) => futures::stream::once(async { Err(error) }).right_stream(),
        })
        .boxed()
}

/// Runs [`DAY_LINES`](super::clearing::sql::DAY_LINES) on its own read-only
/// connection and sends the lines in batches until done or until the
/// receiver is gone (the clearing run stopped).
fn read_day_lines(
    path: &std::path::Path,
    date: chrono::NaiveDate,
    batches: &mpsc::Sender<Result<Vec<super::clearing::DayLine>, StoreError>>,
) -> Result<(), rusqlite::Error> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mut statement = conn.prepare(super::clearing::sql::DAY_LINES)?;
    // sqlx stores a NaiveDate as ISO 8601 text.
    let mut rows = statement.query([date.format("%Y-%m-%d").to_string()])?;
    let mut batch = Vec::with_capacity(DAY_LINE_BATCH);
    while let Some(row) = rows.next()? {
        batch.push(super::clearing::DayLine {
            party: row.get(0)?,
            transaction_id: row.get(1)?,
            kind: row.get(2)?,
            currency: row.get(3)?,
            amount_minor: row.get(4)?,
            store_id: row.get(5)?,
            reference: row.get(6)?,
        });
        if batch.len() == DAY_LINE_BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(DAY_LINE_BATCH));
            if batches.blocking_send(Ok(full)).is_err() {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        let _ = batches.blocking_send(Ok(batch));
    }
    Ok(())
}

#[async_trait::async_trait]
impl super::lease::InstanceStore for SqliteDatabase {
    async fn renew_leases(&self, lease: &super::lease::Lease) -> Result<u64, StoreError> {
        Sql::renew_leases(&self.reads, lease).await
    }

    async fn release_leases(&self, holder: &str) -> Result<u64, StoreError> {
        Sql::release_leases(&self.reads, holder).await
    }

    /// One process owns a SQLite file: it always leads.
    async fn try_lead(&self) -> Result<Option<ClearingLock>, StoreError> {
        Ok(Some(Box::new(super::clearing::NoLock)))
    }

    /// One process owns a SQLite file: nobody else recovers.
    async fn try_recovery_lock(&self) -> Result<Option<ClearingLock>, StoreError> {
        Ok(Some(Box::new(super::clearing::NoLock)))
    }
}

#[async_trait::async_trait]
impl super::ReconStore for SqliteDatabase {
    /// On its own connection, beside the writer thread: an acknowledgement is
    /// a rare, possibly large write that should not sit in a group commit.
    async fn store_ack(&self, ack: super::NewAck<'_>) -> Result<super::AckOutcome, StoreError> {
        let mut conn = SqliteConnection::connect_with(&self.options).await.db()?;
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .db()?;
        let outcome = Sql::apply_ack(&mut conn, &ack).await;
        let end = if matches!(outcome, Ok(super::AckOutcome::Stored(_))) {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        sqlx::query(end).execute(&mut conn).await.db()?;
        outcome
    }

    async fn exceptions(
        &self,
        business_date: Option<chrono::NaiveDate>,
        partner: Option<&str>,
    ) -> Result<Vec<super::StoredException>, StoreError> {
        Sql::read_exceptions(&self.reads, business_date, partner).await
    }
}

impl SqliteDatabase {
    /// Hands a job to the writer thread and waits for its outcome.
    async fn submit(&self, job: Job) -> Result<Done, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.counters.submitted();
        self.writes
            .send((job, reply))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Hands a state change to the writer thread.
    async fn submit_write(&self, job: Job) -> Result<WriteOutcome, StoreError> {
        match self.submit(job).await? {
            Done::Write(outcome) => Ok(outcome),
            Done::Appended(_) => Err(StoreError::Invariant(
                "the writer answered a write with an append".to_owned(),
            )),
        }
    }
}

#[async_trait::async_trait]
impl Database for SqliteDatabase {
    fn write_stats(&self) -> WriteStats {
        self.counters.stats()
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = SqliteConnection::connect_with(&self.options).await.db()?;
        // Some migrations rebuild a table that others reference, which SQLite
        // allows only with enforcement off (it is a no-op inside a
        // transaction, so it goes first); foreign_key_check below proves the
        // rebuilt schema still holds every reference before the commit.
        sqlx::query("PRAGMA foreign_keys = OFF")
            .execute(&mut conn)
            .await
            .db()?;
        // IMMEDIATE takes the write lock first, so two processes migrating at
        // once run one after the other.
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .db()?;
        let result = async {
            sqlx::query(migrate::CREATE_LEDGER)
                .execute(&mut conn)
                .await
                .db()?;
            let applied: Vec<i64> = sqlx::query_scalar(migrate::SELECT_APPLIED)
                .fetch_all(&mut conn)
                .await
                .db()?;
            let pending = migrate::pending(migrate::SQLITE, &applied)?;
            if pending.is_empty() {
                // Nothing changed: no need to re-check every reference of a
                // possibly large database on each start.
                return Ok(());
            }
            for migration in pending {
                sqlx::Executor::execute(&mut conn, migration.sql)
                    .await
                    .db()?;
                sqlx::query(migrate::RECORD)
                    .bind(migration.version)
                    .bind(migration.name)
                    .bind(Utc::now().to_rfc3339())
                    .execute(&mut conn)
                    .await
                    .db()?;
                tracing::info!(
                    version = migration.version,
                    name = migration.name,
                    "applied sqlite migration"
                );
            }
            let chained = Sql::backfill_events(&mut conn).await?;
            if chained > 0 {
                tracing::info!(
                    chained,
                    "chained events written before the audit chain existed"
                );
            }
            let broken: Vec<(String,)> =
                sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
                    .fetch_all(&mut conn)
                    .await
                    .db()?;
            if let Some((table,)) = broken.first() {
                return Err(StoreError::Invariant(format!(
                    "migration left rows of {table} without their referenced row"
                )));
            }
            Ok::<(), StoreError>(())
        }
        .await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        sqlx::query(end).execute(&mut conn).await.db()?;
        result
    }

    async fn write(&self, request: WriteRequest) -> Result<WriteOutcome, StoreError> {
        self.submit_write(Job::Write(request)).await
    }

    async fn write_card(&self, write: CardWrite) -> Result<WriteOutcome, StoreError> {
        self.submit_write(Job::Card(write)).await
    }

    async fn write_wallet(&self, write: WalletWrite) -> Result<WriteOutcome, StoreError> {
        self.submit_write(Job::Wallet(write)).await
    }

    async fn write_bill(&self, write: BillWrite) -> Result<WriteOutcome, StoreError> {
        self.submit_write(Job::Bill(write)).await
    }
}

#[async_trait::async_trait]
impl AuditStore for SqliteDatabase {
    async fn chain_head(&self) -> Result<(i64, Vec<u8>), StoreError> {
        Sql::audit_chain_head(&self.reads).await
    }

    async fn chain_entries(
        &self,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<ChainEntry>, StoreError> {
        Sql::audit_chain_entries(&self.reads, from, to, limit).await
    }

    async fn sequence_of_hash(&self, hash: &[u8]) -> Result<Option<i64>, StoreError> {
        Sql::audit_sequence_of_hash(&self.reads, hash).await
    }

    async fn transaction_entries(
        &self,
        transaction_id: &str,
    ) -> Result<Vec<ChainEntry>, StoreError> {
        Sql::audit_transaction_entries(&self.reads, transaction_id).await
    }

    async fn append_audit_read(&self, content: EntryContent) -> Result<i64, StoreError> {
        match self.submit(Job::AuditRead(content)).await? {
            Done::Appended(sequence) => Ok(sequence),
            Done::Write(_) => Err(StoreError::Invariant(
                "the writer answered an append with a write".to_owned(),
            )),
        }
    }

    async fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> Result<bool, StoreError> {
        Sql::audit_insert_checkpoint(&self.reads, checkpoint).await
    }

    async fn checkpoints(
        &self,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<Checkpoint>, StoreError> {
        Sql::audit_checkpoints(&self.reads, from, to, limit).await
    }

    async fn latest_checkpoint(&self, sequence: i64) -> Result<Option<Checkpoint>, StoreError> {
        Sql::audit_latest_checkpoint(&self.reads, sequence).await
    }

    async fn search_transactions(
        &self,
        filter: &SearchFilter,
        as_of: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<TransactionRow>, StoreError> {
        Sql::audit_search(&self.reads, filter, as_of, after, limit).await
    }

    async fn transaction_row(
        &self,
        id: &str,
        as_of: i64,
    ) -> Result<Option<TransactionRow>, StoreError> {
        Sql::audit_transaction_row(&self.reads, id, as_of).await
    }

    /// One process owns a SQLite file: the sealer needs no lock.
    async fn seal_lock(&self) -> Result<Option<ClearingLock>, StoreError> {
        Ok(Some(Box::new(super::clearing::NoLock)))
    }

    async fn backfill_chain(&self) -> Result<i64, StoreError> {
        let mut conn = SqliteConnection::connect_with(&self.options).await.db()?;
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .db()?;
        let outcome = Sql::backfill_events(&mut conn).await;
        let end = if outcome.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        sqlx::query(end).execute(&mut conn).await.db()?;
        outcome
    }
}

#[async_trait::async_trait]
impl super::stan::StanStore for SqliteDatabase {
    async fn allocate_stans(
        &self,
        institution_id: &str,
        day: chrono::NaiveDate,
        count: u32,
    ) -> Result<std::ops::Range<u32>, StoreError> {
        Sql::allocate_stans(&self.reads, institution_id, day, count).await
    }

    async fn saf_set_stan(&self, id: i64, stan: &str) -> Result<String, StoreError> {
        Sql::saf_set_stan(&self.reads, id, stan).await
    }
}

#[async_trait::async_trait]
impl super::BillReads for SqliteDatabase {
    async fn stale_bill_in_progress(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<super::TransactionRecord>, StoreError> {
        Sql::stale_bill_in_progress(&self.reads, before, limit).await
    }

    async fn bill_saf_claim(
        &self,
        lease: &super::lease::Lease,
        limit: i64,
    ) -> Result<Vec<super::BillSafItem>, StoreError> {
        Sql::bill_saf_claim(&self.reads, lease, limit).await
    }

    async fn bill_saf_open(&self) -> Result<i64, StoreError> {
        Sql::bill_saf_open(&self.reads).await
    }
}

#[async_trait::async_trait]
impl super::WalletReads for SqliteDatabase {
    async fn wallet_transaction(
        &self,
        id: &str,
    ) -> Result<Option<super::WalletRecord>, super::StoreError> {
        self.hot.wallet_transaction(id).await
    }

    async fn wallet_by_request(
        &self,
        key: &posgate_core::model::IdempotencyKey,
    ) -> Result<Option<super::WalletRecord>, super::StoreError> {
        self.hot.wallet_by_request(key).await
    }

    async fn wallet_refund_ids(&self, original_id: &str) -> Result<Vec<String>, super::StoreError> {
        Sql::wallet_refund_ids(&self.reads, original_id).await
    }

    async fn stale_wallet_in_progress(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<super::WalletRecord>, super::StoreError> {
        Sql::stale_wallet_in_progress(&self.reads, before, limit).await
    }

    async fn wallet_saf_claim(
        &self,
        lease: &super::lease::Lease,
        limit: i64,
    ) -> Result<Vec<super::WalletSafItem>, super::StoreError> {
        Sql::wallet_saf_claim(&self.reads, lease, limit).await
    }

    async fn wallet_saf_open(&self) -> Result<i64, super::StoreError> {
        Sql::wallet_saf_open(&self.reads).await
    }
}

#[async_trait::async_trait]
impl super::Reads for SqliteDatabase {
    async fn answer(
        &self,
        key: &posgate_core::model::IdempotencyKey,
    ) -> Result<Option<posgate_core::model::StoredAnswer>, super::StoreError> {
        self.hot.answer(key).await
    }

    async fn transaction(
        &self,
        store_id: &str,
        id: &str,
    ) -> Result<Option<super::TransactionRecord>, super::StoreError> {
        self.hot.transaction(store_id, id).await
    }

    async fn settlement_lines(
        &self,
        transaction_id: &str,
    ) -> Result<Vec<super::SettlementLine>, super::StoreError> {
        Sql::settlement_lines(&self.reads, transaction_id).await
    }

    async fn events(&self, transaction_id: &str) -> Result<Vec<super::Event>, super::StoreError> {
        Sql::events(&self.reads, transaction_id).await
    }

    async fn purge_expired_keys(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, super::StoreError> {
        Sql::purge_expired_keys(&self.reads, now).await
    }

    async fn row_counts(&self) -> Result<super::RowCounts, super::StoreError> {
        Sql::row_counts(&self.reads).await
    }

    async fn card_transaction(
        &self,
        id: &str,
    ) -> Result<Option<super::CardRecord>, super::StoreError> {
        self.hot.card_transaction(id).await
    }

    async fn card_by_request(
        &self,
        key: &posgate_core::model::IdempotencyKey,
    ) -> Result<Option<super::CardRecord>, super::StoreError> {
        self.hot.card_by_request(key).await
    }

    async fn refund_ids(&self, original_id: &str) -> Result<Vec<String>, super::StoreError> {
        Sql::refund_ids(&self.reads, original_id).await
    }

    async fn stale_in_progress(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<super::CardRecord>, super::StoreError> {
        Sql::stale_in_progress(&self.reads, before, limit).await
    }

    async fn expired_authorizations(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<super::CardRecord>, super::StoreError> {
        Sql::expired_authorizations(&self.reads, now, limit).await
    }

    async fn saf_claim(
        &self,
        lease: &super::lease::Lease,
        limit: i64,
    ) -> Result<Vec<super::SafItem>, super::StoreError> {
        Sql::saf_claim(&self.reads, lease, limit).await
    }

    async fn saf_retry(
        &self,
        id: i64,
        next_attempt_at: chrono::DateTime<chrono::Utc>,
        error: &str,
    ) -> Result<(), super::StoreError> {
        Sql::saf_retry(&self.reads, id, next_attempt_at, error).await
    }

    async fn saf_ack_moot(
        &self,
        id: i64,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), super::StoreError> {
        Sql::saf_ack_moot(&self.reads, id, at).await
    }

    async fn saf_open(&self) -> Result<i64, super::StoreError> {
        Sql::saf_open(&self.reads).await
    }

    async fn saf_backlog(
        &self,
    ) -> Result<Vec<posgate_core::ports::db::SafBacklog>, super::StoreError> {
        Sql::saf_backlog(&self.reads).await
    }
}

#[async_trait::async_trait]
impl super::ReloadStore for SqliteDatabase {
    async fn insert_link(
        &self,
        link: &super::CardLink,
        answer: &super::AnsweredKey,
    ) -> Result<super::LinkWrite, super::StoreError> {
        Sql::insert_link(&self.reads, link, answer).await
    }

    async fn unlink(
        &self,
        link_id: &str,
        reason: &str,
        answer: &super::AnsweredKey,
    ) -> Result<super::LinkWrite, super::StoreError> {
        Sql::unlink(&self.reads, link_id, reason, answer).await
    }

    async fn active_link(
        &self,
        wallet_operator_id: &str,
        wallet_ref: &str,
    ) -> Result<Option<super::CardLink>, super::StoreError> {
        Sql::active_link(&self.reads, wallet_operator_id, wallet_ref).await
    }

    async fn card_link(&self, link_id: &str) -> Result<Option<super::CardLink>, super::StoreError> {
        Sql::card_link(&self.reads, link_id).await
    }

    async fn put_saga(&self, saga: &super::Saga) -> Result<(), super::StoreError> {
        Sql::put_saga(&self.reads, saga).await
    }

    async fn saga(&self, saga_id: &str) -> Result<Option<super::Saga>, super::StoreError> {
        Sql::saga(&self.reads, saga_id).await
    }

    async fn saga_of_step(
        &self,
        transaction_id: &str,
    ) -> Result<Option<super::Saga>, super::StoreError> {
        Sql::saga_of_step(&self.reads, transaction_id).await
    }

    async fn open_sagas(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<super::Saga>, super::StoreError> {
        Sql::open_sagas(&self.reads, before, limit).await
    }

    async fn claim_sagas(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        lease: &super::lease::Lease,
        limit: i64,
    ) -> Result<Vec<super::Saga>, super::StoreError> {
        Sql::claim_sagas(&self.reads, before, lease, limit).await
    }
}

#[async_trait::async_trait]
impl super::clearing::ClearingStore for SqliteDatabase {
    async fn close_day(
        &self,
        date: chrono::NaiveDate,
        files_created_at: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<super::clearing::ClosedDay, StoreError> {
        Sql::close_day(&self.reads, date, files_created_at, now).await
    }

    async fn reopen_day(&self, date: chrono::NaiveDate) -> Result<(), StoreError> {
        Sql::reopen_day(&self.reads, date).await
    }

    async fn closed_day(
        &self,
        date: chrono::NaiveDate,
    ) -> Result<Option<super::clearing::ClosedDay>, StoreError> {
        Sql::closed_day(&self.reads, date).await
    }

    async fn day_totals(
        &self,
        date: chrono::NaiveDate,
    ) -> Result<Vec<super::clearing::PartyTotal>, StoreError> {
        Sql::day_totals(&self.reads, date).await
    }

    fn day_lines(
        &self,
        date: chrono::NaiveDate,
    ) -> futures::stream::BoxStream<'_, Result<super::clearing::DayLine, StoreError>> {
        sqlite_day_lines(self, date)
    }

    async fn day_files(
        &self,
        date: chrono::NaiveDate,
    ) -> Result<Vec<super::clearing::FileRecord>, StoreError> {
        Sql::day_files(&self.reads, date).await
    }

    async fn register_files(
        &self,
        date: chrono::NaiveDate,
        files: &[super::clearing::FileRecord],
    ) -> Result<(), StoreError> {
        Sql::register_files(&self.reads, date, files).await
    }

    async fn try_clearing_lock(&self) -> Result<Option<ClearingLock>, StoreError> {
        sqlite_clearing_lock(self).await
    }
}
