//! The audit side of the database port: the chain's storage, searches over
//! transactions as of a chain position, and checkpoints.

use chrono::{DateTime, NaiveDate, Utc};

use super::StoreError;
use super::clearing::ClearingLock;
use crate::model::chain::{ChainEntry, Checkpoint, EntryContent};

/// A transaction kind (and card type) a search may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindMatch {
    pub kind: &'static str,
    pub card_type: Option<&'static str>,
}

/// A search over transactions, in store terms (validated by the caller).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchFilter {
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    pub business_date_from: Option<NaiveDate>,
    pub business_date_to: Option<NaiveDate>,
    pub store_ids: Vec<String>,
    pub terminal_ids: Vec<String>,
    pub partner_ids: Vec<String>,
    /// Empty: any kind. See `match_nothing` for kinds posgate never records.
    pub kinds: Vec<KindMatch>,
    /// Store statuses (as of the search's chain position). Empty: any.
    pub statuses: Vec<&'static str>,
    /// Inclusive bounds; the currency is the same for both.
    pub amount_min: Option<(i64, String)>,
    pub amount_max: Option<(i64, String)>,
    pub client_request_id: Option<String>,
    /// Card transactions whose PAN fingerprint is one of these.
    pub pan_fingerprints: Option<Vec<String>>,
    /// The filter asks only for types or statuses posgate never records.
    pub match_nothing: bool,
}

/// One transaction as of a chain position, for search and export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionRow {
    pub id: String,
    pub kind: String,
    pub store_id: String,
    pub terminal_id: String,
    pub operator_id: String,
    pub client_request_id: String,
    pub partner_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub fee_minor: i64,
    pub business_date: NaiveDate,
    pub created_at: DateTime<Utc>,
    pub card_type: Option<String>,
    pub masked_pan: Option<String>,
    pub card_brand: Option<String>,
    pub original_transaction_id: Option<String>,
    pub first_sequence: i64,
    pub last_sequence: i64,
    /// Store status as of the position.
    pub status: String,
    /// `occurred_at` of the latest entry as of the position (canonical text).
    pub updated_at: String,
}

/// The audit side of the store.
#[async_trait::async_trait]
pub trait AuditStore: Send + Sync {
    /// The chain head: its sequence (0 when empty) and hash.
    async fn chain_head(&self) -> Result<(i64, Vec<u8>), StoreError>;

    /// Entries `from..=to`, at most `limit`, by ascending sequence.
    async fn chain_entries(
        &self,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<ChainEntry>, StoreError>;

    /// The sequence of the entry whose stored hash is `hash`, if any (a
    /// scan: only used to explain a broken chain).
    async fn sequence_of_hash(&self, hash: &[u8]) -> Result<Option<i64>, StoreError>;

    /// Every entry of one transaction, by ascending sequence.
    async fn transaction_entries(
        &self,
        transaction_id: &str,
    ) -> Result<Vec<ChainEntry>, StoreError>;

    /// Appends an audit-read entry in its own transaction; returns its sequence.
    async fn append_audit_read(&self, content: EntryContent) -> Result<i64, StoreError>;

    /// Stores a checkpoint; false when one exists at that sequence already.
    async fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> Result<bool, StoreError>;

    /// Checkpoints with `from <= sequence <= to`, ascending, at most `limit`.
    async fn checkpoints(
        &self,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<Checkpoint>, StoreError>;

    /// The latest checkpoint at or before `sequence`.
    async fn latest_checkpoint(&self, sequence: i64) -> Result<Option<Checkpoint>, StoreError>;

    /// Transactions matching `filter` whose first entry is in
    /// `(after, as_of]`, by ascending first entry, at most `limit`.
    async fn search_transactions(
        &self,
        filter: &SearchFilter,
        as_of: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<TransactionRow>, StoreError>;

    /// One transaction as of `as_of` (any store).
    async fn transaction_row(
        &self,
        id: &str,
        as_of: i64,
    ) -> Result<Option<TransactionRow>, StoreError>;

    /// The sealer's lock: on PostgreSQL a schema-scoped advisory lock, so
    /// one instance seals at a time; `None` when another instance holds it.
    async fn seal_lock(&self) -> Result<Option<ClearingLock>, StoreError>;

    /// Chains every stored event that has no entry yet, in event id order
    /// (events written before the chain existed, or by a bulk seed); only
    /// while the chain is empty. Returns how many were chained.
    async fn backfill_chain(&self) -> Result<i64, StoreError>;
}
