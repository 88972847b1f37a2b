//! The database port: what the core needs from the transaction database.
//! One trait ([`Database`], so that "store" can mean a shop) with one
//! implementation per backend in posgate-store. The database knows rows and
//! atomic writes, never gRPC types: answers to replay are opaque bytes to it.
//!
//! Every state change is one [`WriteRequest`]: the idempotency key with the
//! answer to replay, the transaction row (new, or a guarded status change),
//! its settlement lines, its event and the event's audit-chain entry,
//! committed together or not at all.

pub mod audit;
pub mod bill_online;
pub mod card;
pub mod clearing;
pub mod instance;
pub mod recon;
pub mod reload;
pub mod saf_backlog;
pub mod stan;
pub mod wallet;

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};

use crate::model::{IdempotencyKey, StoredAnswer};

pub use bill_online::{BillReads, BillSafItem, BillWrite};
pub use card::{
    CardChange, CardUpdate, CardWrite, KeyOp, NewSafItem, RefundAdjust, SafItem, SafKind,
};
pub use instance::{InstanceStore, Lease};
pub use recon::{AckOutcome, NewAck, ReconStore, StoredException};
pub use reload::{AnsweredKey, LinkWrite, ReloadStore, Saga, SagaKind, SagaStep};
pub use saf_backlog::{SafBacklog, SafQueue};
pub use wallet::{WalletChange, WalletReads, WalletSafItem, WalletUpdate, WalletWrite};

use crate::model::card::CardRecord;
use crate::model::transaction::{Event, SettlementLine, TransactionRecord, TransactionStatus};

impl From<crate::model::UnknownValue> for StoreError {
    fn from(error: crate::model::UnknownValue) -> Self {
        StoreError::Corrupt(error.to_string())
    }
}

/// A guarded state change of an existing transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub transaction_id: String,
    pub store_id: String,
    pub from: TransactionStatus,
    pub to: TransactionStatus,
    pub at: DateTime<Utc>,
    pub reason: String,
    /// Business date of the lines this change appends.
    pub business_date: NaiveDate,
}

/// What a write does to the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Create(Box<TransactionRecord>),
    Transition(StatusChange),
}

/// One atomic state change with its idempotency record.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub key: IdempotencyKey,
    pub answer: StoredAnswer,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub change: Change,
    pub lines: Vec<SettlementLine>,
    pub event: Event,
    /// A new batch-biller payment claims its slip (biller, bill reference,
    /// period, amount): the write is refused with
    /// [`StoreError::SlipAlreadyPaid`] while another live payment holds it.
    /// A cancellation always frees its payment's claim.
    pub claims_slip: bool,
}

impl WriteRequest {
    /// The transaction the write is about.
    pub fn transaction_id(&self) -> &str {
        match &self.change {
            Change::Create(record) => &record.id,
            Change::Transition(change) => &change.transaction_id,
        }
    }

    /// Checks the invariants every write must hold before it reaches SQL:
    /// the lines balance per currency and the answer names this transaction.
    pub fn check(&self) -> Result<(), StoreError> {
        check_balanced(self.transaction_id(), &self.lines)?;
        if self.answer.transaction_id != self.transaction_id() {
            return Err(StoreError::Invariant(
                "stored answer names another transaction".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Refuses settlement lines that do not sum to zero per currency.
pub(crate) fn check_balanced(
    transaction_id: &str,
    lines: &[SettlementLine],
) -> Result<(), StoreError> {
    let mut sums: Vec<(&str, i128)> = Vec::new();
    for line in lines {
        match sums
            .iter_mut()
            .find(|(currency, _)| *currency == line.currency)
        {
            Some((_, sum)) => *sum += i128::from(line.amount_minor),
            None => sums.push((&line.currency, i128::from(line.amount_minor))),
        }
    }
    if let Some((currency, sum)) = sums.iter().find(|(_, sum)| *sum != 0) {
        return Err(StoreError::Invariant(format!(
            "settlement lines of {transaction_id} sum to {sum} {currency}, not zero"
        )));
    }
    Ok(())
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Everything was committed.
    Written,
    /// The key was already used; nothing was written. The first answer is attached.
    KeyTaken(StoredAnswer),
    /// A transition found the transaction in another state (or missing); nothing was written.
    StatusMismatch { current: Option<TransactionStatus> },
    /// A refund reservation would take refunds beyond the captured amount;
    /// nothing was written. `remaining` is what is still refundable.
    RefundExceeds { remaining: i64 },
}

/// How a store's writer has grouped writes since it started: for
/// operators (batch sizes) and for tests that must know their writes met
/// in more than one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Writes handed to the writer.
    pub submitted: u64,
    /// Batches the writer took off its queue.
    pub batches: u64,
    /// Writes in those batches.
    pub batched: u64,
}

/// The counters behind [`WriteStats`], shared by a store's writers.
#[derive(Debug, Default)]
pub struct WriteCounters {
    submitted: std::sync::atomic::AtomicU64,
    batches: std::sync::atomic::AtomicU64,
    batched: std::sync::atomic::AtomicU64,
}

impl WriteCounters {
    /// A write was handed to the writer.
    pub fn submitted(&self) {
        self.submitted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The writer took a batch of `writes` off its queue.
    pub fn batch(&self, writes: usize) {
        self.batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.batched.fetch_add(
            u64::try_from(writes).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// The counts so far.
    pub fn stats(&self) -> WriteStats {
        use std::sync::atomic::Ordering::Relaxed;
        WriteStats {
            submitted: self.submitted.load(Relaxed),
            batches: self.batches.load(Relaxed),
            batched: self.batched.load(Relaxed),
        }
    }
}

/// Row counts, for operators and for tests that prove nothing was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowCounts {
    pub idempotency_keys: i64,
    pub transactions: i64,
    pub bill_payments: i64,
    pub settlement_lines: i64,
    pub events: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or was busy (pool timed out or
    /// closed, I/O failure, locked): a retry with the same key may succeed.
    #[error("database error: {0}")]
    Unavailable(#[source] BoxError),
    /// Any other database failure.
    #[error("database error: {0}")]
    Database(#[source] BoxError),
    /// The schema could not be brought up to date.
    #[error("migration failed: {0}")]
    Migration(#[source] BoxError),
    #[error("stored data is not as expected: {0}")]
    Corrupt(String),
    #[error("write refused, invariant broken: {0}")]
    Invariant(String),
    #[error("database url {0:?} is neither sqlite: nor postgres:")]
    UnknownUrl(String),
    #[error("the store's writer has stopped")]
    WriterGone,
    /// A payment's slip is held by another live payment; nothing was written.
    #[error("slip {bill_reference} (period {period:?}) of biller {biller_id} is already paid")]
    SlipAlreadyPaid {
        biller_id: String,
        bill_reference: String,
        period: String,
    },
}

/// The error a database driver reports, without naming the driver's type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The transaction store. Implementations must make each [`WriteRequest`]
/// atomic and must serialize writes under one key so that concurrent
/// duplicates produce one write and `KeyTaken` for the rest.
#[async_trait::async_trait]
pub trait Database:
    Reads
    + WalletReads
    + ReloadStore
    + BillReads
    + clearing::ClearingStore
    + ReconStore
    + audit::AuditStore
    + stan::StanStore
    + InstanceStore
    + fmt::Debug
{
    /// Applies pending schema migrations; safe to run concurrently.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Commits a state change with its key, lines and event, or reports why not.
    async fn write(&self, request: WriteRequest) -> Result<WriteOutcome, StoreError>;

    /// Commits a card-payment state change with its key, lines, event and
    /// queue entries, or reports why not.
    async fn write_card(&self, write: CardWrite) -> Result<WriteOutcome, StoreError>;

    /// Commits a wallet state change with its key, lines, event and queue
    /// entries, or reports why not.
    async fn write_wallet(&self, write: WalletWrite) -> Result<WriteOutcome, StoreError>;

    /// Commits an online bill payment's state change with its key, lines,
    /// event and queue entries, or reports why not.
    async fn write_bill(&self, write: BillWrite) -> Result<WriteOutcome, StoreError>;

    /// How the writer has grouped writes so far.
    fn write_stats(&self) -> WriteStats {
        WriteStats::default()
    }
}

/// Every read of the store: the same SQL on both backends, implemented once
/// by `write::define_reads!`.
#[async_trait::async_trait]
pub trait Reads: Send + Sync {
    /// The answer stored under a key, if the key was used.
    async fn answer(&self, key: &IdempotencyKey) -> Result<Option<StoredAnswer>, StoreError>;

    /// A transaction of a store by id.
    async fn transaction(
        &self,
        store_id: &str,
        id: &str,
    ) -> Result<Option<TransactionRecord>, StoreError>;

    /// The settlement lines of a transaction, in order.
    async fn settlement_lines(
        &self,
        transaction_id: &str,
    ) -> Result<Vec<SettlementLine>, StoreError>;

    /// The events of a transaction, in order.
    async fn events(&self, transaction_id: &str) -> Result<Vec<Event>, StoreError>;

    /// Deletes idempotency keys that expired before `now`; returns how many.
    async fn purge_expired_keys(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Counts rows of every table.
    async fn row_counts(&self) -> Result<RowCounts, StoreError>;

    /// A card transaction by id (any store: callers check the store).
    async fn card_transaction(&self, id: &str) -> Result<Option<CardRecord>, StoreError>;

    /// The card transaction a request (Authorize or Refund) created.
    async fn card_by_request(&self, key: &IdempotencyKey)
    -> Result<Option<CardRecord>, StoreError>;

    /// The refunds of a card transaction, oldest first.
    async fn refund_ids(&self, original_id: &str) -> Result<Vec<String>, StoreError>;

    /// Card transactions still `in_progress` and untouched since `before`:
    /// their request was cut off (crash, lost task) and their outcome is unknown.
    async fn stale_in_progress(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<CardRecord>, StoreError>;

    /// Authorizations still `authorized` whose hold expired before `now`.
    async fn expired_authorizations(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<CardRecord>, StoreError>;

    /// Claims up to `limit` unacknowledged bank queue entries due by
    /// `lease.now`, oldest first, that no other instance holds: leased to
    /// `lease.holder` until `lease.until` (see [`Lease`]). Returns every due
    /// entry the holder now holds.
    async fn saf_claim(&self, lease: &Lease, limit: i64) -> Result<Vec<SafItem>, StoreError>;

    /// Records a failed delivery attempt and when to try again, and frees
    /// the entry's lease.
    async fn saf_retry(
        &self,
        id: i64,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError>;

    /// Acknowledges an entry with nothing left to deliver: its transaction
    /// was settled another way (another entry, a cancellation) while the
    /// entry waited.
    async fn saf_ack_moot(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// How many queue entries wait for the bank's acknowledgement.
    async fn saf_open(&self) -> Result<i64, StoreError>;

    /// Every store-and-forward queue's unacknowledged entries (card, wallet,
    /// bill: one each, in [`SafQueue::ALL`] order, empty ones included).
    async fn saf_backlog(&self) -> Result<Vec<SafBacklog>, StoreError>;
}
