//! The transaction store: one database trait ([`Database`], so that "store"
//! can mean a shop), two sqlx backends (SQLite, the embedded
//! default, and PostgreSQL). The store knows rows and atomic writes, never
//! gRPC types: answers to replay are opaque bytes to it.
//!
//! Every state change is one [`WriteRequest`]: the idempotency key with the
//! answer to replay, the transaction row (new, or a guarded status change),
//! its settlement lines, its event and the event's audit-chain entry,
//! committed together or not at all.

pub mod audit;
pub mod bill_online;
pub(crate) mod card;
pub mod clearing;
mod migrate;
mod postgres;
pub mod recon;
pub mod reload;
mod sqlite;
pub mod stan;
pub mod wallet;
mod write;

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use posgate_core::model::{IdempotencyKey, StoredAnswer};

pub use bill_online::{BillReads, BillSafItem, BillWrite};
pub use card::{
    CardChange, CardRecord, CardRouteKind, CardType, CardUpdate, CardWrite, KeyOp, NewSafItem,
    RefundAdjust, SafItem, SafKind,
};
pub use migrate::MigrationError;
pub use postgres::PostgresStore;
pub use recon::{AckOutcome, NewAck, ReconStore, StoredException};
pub use reload::{
    AnsweredKey, CardLink, LinkStatus, LinkWrite, ReloadStore, Saga, SagaKind, SagaStep,
};
pub use sqlite::SqliteStore;
pub use wallet::{
    WalletChange, WalletOutcome, WalletReads, WalletRecord, WalletSafItem, WalletType,
    WalletUpdate, WalletWrite,
};

/// Transaction kinds. Each later service adds its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionKind {
    BillPayment,
    CardPayment,
    WalletPayment,
}

impl TransactionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BillPayment => "bill_payment",
            Self::CardPayment => "card_payment",
            Self::WalletPayment => "wallet_payment",
        }
    }
}

/// Transaction states. States only move forward; the store refuses a change
/// whose `from` is not the current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStatus {
    /// Bill payments.
    Paid,
    Cancelled,
    /// Card payments (see `posgate.v1.CardTransactionStatus`).
    InProgress,
    Authorized,
    Captured,
    Declined,
    PendingReversal,
    Reversed,
    Voided,
    Expired,
    /// A capture whose advice the bank refused.
    CaptureRefused,
    /// Wallet transactions: the operator debited or credited the wallet.
    Completed,
}

impl TransactionStatus {
    const ALL: [Self; 12] = [
        Self::Paid,
        Self::Cancelled,
        Self::InProgress,
        Self::Authorized,
        Self::Captured,
        Self::Declined,
        Self::PendingReversal,
        Self::Reversed,
        Self::Voided,
        Self::Expired,
        Self::CaptureRefused,
        Self::Completed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Paid => "paid",
            Self::Cancelled => "cancelled",
            Self::InProgress => "in_progress",
            Self::Authorized => "authorized",
            Self::Captured => "captured",
            Self::Declined => "declined",
            Self::PendingReversal => "pending_reversal",
            Self::Reversed => "reversed",
            Self::Voided => "voided",
            Self::Expired => "expired",
            Self::CaptureRefused => "capture_refused",
            Self::Completed => "completed",
        }
    }

    pub fn parse(text: &str) -> Result<Self, StoreError> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown transaction status {text:?}")))
    }
}

/// Bill details of a bill-payment transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillDetail {
    pub biller_id: String,
    pub agency_code: String,
    pub bill_reference: String,
    /// None for slips printed without a payment deadline.
    pub due_date: Option<NaiveDate>,
    pub period: String,
    pub late: bool,
}

/// One obligation: `party` is owed (positive) or owes (negative) the amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementLine {
    pub party: String,
    pub kind: String,
    pub currency: String,
    pub amount_minor: i64,
}

/// A state change for the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event_type: String,
    pub from_status: Option<TransactionStatus>,
    pub to_status: TransactionStatus,
    pub actor: String,
    pub detail: String,
}

/// A transaction as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionRecord {
    pub id: String,
    pub kind: TransactionKind,
    pub status: TransactionStatus,
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
    pub updated_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
    pub bill: BillDetail,
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
fn check_balanced(transaction_id: &str, lines: &[SettlementLine]) -> Result<(), StoreError> {
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
    #[error(transparent)]
    Migration(#[from] MigrationError),
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

/// A sqlx failure as a [`StoreError`], classified here (the only place that
/// knows sqlx) so callers match on [`StoreError::Unavailable`] rather than on
/// driver errors.
pub(crate) fn db_error(error: sqlx::Error) -> StoreError {
    let unavailable = match &error {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => db.message().contains("locked"),
        _ => false,
    };
    if unavailable {
        StoreError::Unavailable(Box::new(error))
    } else {
        StoreError::Database(Box::new(error))
    }
}

/// `.db()` on a sqlx result: its error as a [`StoreError`] (see [`db_error`]).
pub(crate) trait SqlxResultExt<T> {
    fn db(self) -> Result<T, StoreError>;
}

impl<T> SqlxResultExt<T> for Result<T, sqlx::Error> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(db_error)
    }
}

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

    /// Unacknowledged queue entries due by `now`, oldest first.
    async fn saf_due(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<SafItem>, StoreError>;

    /// Records a failed delivery attempt and when to try again.
    async fn saf_retry(
        &self,
        id: i64,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError>;

    /// How many queue entries wait for the bank's acknowledgement.
    async fn saf_open(&self) -> Result<i64, StoreError>;
}

/// Opens the store a database URL names: `sqlite:` (file created if
/// missing) or `postgres:`/`postgresql:`.
pub async fn open(url: &str, max_connections: u32) -> Result<Arc<dyn Database>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(
            PostgresStore::connect(url, max_connections).await?,
        ))
    } else {
        Err(StoreError::UnknownUrl(url.to_owned()))
    }
}

/// Maps a `kind` column back to the enum.
fn parse_kind(text: &str) -> Result<TransactionKind, StoreError> {
    match text {
        "bill_payment" => Ok(TransactionKind::BillPayment),
        "card_payment" => Ok(TransactionKind::CardPayment),
        "wallet_payment" => Ok(TransactionKind::WalletPayment),
        other => Err(StoreError::Corrupt(format!(
            "unknown transaction kind {other:?}"
        ))),
    }
}

/// SQL shared by both backends: both accept `$N` placeholders, `ON CONFLICT`
/// and `RETURNING`, and sqlx maps the chrono types to each one's columns.
mod sql {
    pub const INSERT_KEY: &str = "INSERT INTO idempotency_keys (store_id, terminal_id, client_request_id, \
         operation, request_digest, field_digests, response, transaction_id, created_at, expires_at, pending) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING";
    pub const SELECT_KEY: &str = "SELECT operation, request_digest, field_digests, transaction_id, response, pending \
         FROM idempotency_keys WHERE store_id = $1 AND terminal_id = $2 AND client_request_id = $3";
    pub const INSERT_TRANSACTION: &str = "INSERT INTO transactions (id, kind, status, store_id, terminal_id, \
         operator_id, client_request_id, partner_id, amount_minor, currency, fee_minor, business_date, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)";
    pub const INSERT_BILL: &str = "INSERT INTO bill_payments (transaction_id, biller_id, agency_code, \
         bill_reference, due_date, period, late) VALUES ($1, $2, $3, $4, $5, $6, $7)";
    pub const TRANSITION: &str = "UPDATE transactions SET status = $1, updated_at = $2, \
         cancelled_at = CASE WHEN $1 = 'cancelled' THEN $2 ELSE cancelled_at END, \
         cancel_reason = CASE WHEN $1 = 'cancelled' THEN $3 ELSE cancel_reason END \
         WHERE id = $4 AND store_id = $5 AND status = $6";
    /// A payment's claim on its slip; no row inserted when another payment holds it.
    pub const CLAIM_SLIP: &str = "INSERT INTO bill_slip_claims (biller_id, bill_reference, period, \
         amount_minor, transaction_id) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";
    pub const FREE_SLIP: &str = "DELETE FROM bill_slip_claims WHERE transaction_id = $1";
    pub const SELECT_STATUS: &str =
        "SELECT status FROM transactions WHERE id = $1 AND store_id = $2";
    /// Inserts `count` settlement lines of one transaction in one statement.
    /// Parameters: `$1` transaction id, `$2` business date, `$3` created at,
    /// then per line (order, party, kind, currency, `amount_minor`). Each line
    /// takes its store and partner reference (bill reference or card RRN)
    /// from the transaction, so clearing never joins back to them.
    pub fn insert_lines(count: usize) -> std::borrow::Cow<'static, str> {
        /// Writes make at most a handful of lines; their statements are built once.
        const PREBUILT: usize = 8;
        static BUILT: std::sync::LazyLock<Vec<String>> =
            std::sync::LazyLock::new(|| (0..=PREBUILT).map(build_insert_lines).collect());
        match BUILT.get(count) {
            Some(sql) => std::borrow::Cow::Borrowed(sql.as_str()),
            None => std::borrow::Cow::Owned(build_insert_lines(count)),
        }
    }

    fn build_insert_lines(count: usize) -> String {
        let rows: Vec<String> = (0..count)
            .map(|line| {
                let first = 4 + line * 5;
                format!(
                    "(${}, ${}, ${}, ${}, ${})",
                    first,
                    first + 1,
                    first + 2,
                    first + 3,
                    first + 4
                )
            })
            .collect();
        format!(
            "WITH l (ord, party, kind, currency, amount_minor) AS (VALUES {}) \
             INSERT INTO settlement_lines (transaction_id, business_date, party, kind, currency, \
             amount_minor, created_at, store_id, reference) \
             SELECT t.id, $2, l.party, l.kind, l.currency, l.amount_minor, $3, t.store_id, \
             COALESCE(b.bill_reference, c.rrn, w.operator_reference, '') \
             FROM l JOIN transactions t ON t.id = $1 \
             LEFT JOIN bill_payments b ON b.transaction_id = t.id \
             LEFT JOIN card_payments c ON c.transaction_id = t.id \
             LEFT JOIN wallet_payments w ON w.transaction_id = t.id \
             ORDER BY l.ord",
            rows.join(", ")
        )
    }
    pub const INSERT_EVENT: &str = "INSERT INTO transaction_events (transaction_id, event_type, from_status, \
         to_status, actor, detail, at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
    /// A transaction's creation: its RECEIVED event and its first state's
    /// event, in that order, in one statement.
    pub const INSERT_RECEIVED_AND_EVENT: &str = "INSERT INTO transaction_events (transaction_id, \
         event_type, from_status, to_status, actor, detail, at) VALUES \
         ($1, 'received', NULL, $8, $5, 'request accepted', $7), ($1, $2, $3, $4, $5, $6, $7)";
    pub const SELECT_TRANSACTION: &str = "SELECT t.id, t.kind, t.status, t.store_id, t.terminal_id, \
         t.operator_id, t.client_request_id, t.partner_id, t.amount_minor, t.currency, t.fee_minor, \
         t.business_date, t.created_at, t.updated_at, t.cancelled_at, t.cancel_reason, b.biller_id, \
         b.agency_code, b.bill_reference, b.due_date, b.period, b.late \
         FROM transactions t JOIN bill_payments b ON b.transaction_id = t.id \
         WHERE t.id = $1 AND t.store_id = $2";
    pub const SELECT_LINES: &str = "SELECT party, kind, currency, amount_minor FROM settlement_lines \
         WHERE transaction_id = $1 ORDER BY id";
    pub const SELECT_EVENTS: &str = "SELECT event_type, from_status, to_status, actor, detail \
         FROM transaction_events WHERE transaction_id = $1 ORDER BY id";
    pub const PURGE_KEYS: &str = "DELETE FROM idempotency_keys WHERE expires_at < $1";
    pub const ROW_COUNTS: &str = "SELECT (SELECT count(*) FROM idempotency_keys), \
         (SELECT count(*) FROM transactions), (SELECT count(*) FROM bill_payments), \
         (SELECT count(*) FROM settlement_lines), (SELECT count(*) FROM transaction_events)";
}

/// Row decoding shared by both backends, generic over the row type.
mod rows {
    use sqlx::{ColumnIndex, Decode, Row, Type};

    use crate::store::SqlxResultExt as _;

    use super::{
        BillDetail, Event, SettlementLine, StoreError, TransactionRecord, TransactionStatus,
        parse_kind,
    };

    use posgate_core::model::{RequestFingerprint, StoredAnswer};

    pub fn answer<'r, R>(row: &'r R) -> Result<StoredAnswer, StoreError>
    where
        R: Row,
        usize: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
        bool: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(StoredAnswer {
            fingerprint: RequestFingerprint {
                operation: row.try_get(0).db()?,
                digest: row.try_get(1).db()?,
                field_digests: row.try_get(2).db()?,
            },
            transaction_id: row.try_get(3).db()?,
            response: row.try_get(4).db()?,
            pending: row.try_get(5).db()?,
        })
    }

    pub fn line<'r, R>(row: &'r R) -> Result<SettlementLine, StoreError>
    where
        R: Row,
        usize: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(SettlementLine {
            party: row.try_get(0).db()?,
            kind: row.try_get(1).db()?,
            currency: row.try_get(2).db()?,
            amount_minor: row.try_get(3).db()?,
        })
    }

    pub fn event<'r, R>(row: &'r R) -> Result<Event, StoreError>
    where
        R: Row,
        usize: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    {
        let from_status: Option<String> = row.try_get(1).db()?;
        Ok(Event {
            event_type: row.try_get(0).db()?,
            from_status: from_status
                .as_deref()
                .map(TransactionStatus::parse)
                .transpose()?,
            to_status: TransactionStatus::parse(&row.try_get::<String, _>(2).db()?)?,
            actor: row.try_get(3).db()?,
            detail: row.try_get(4).db()?,
        })
    }

    pub fn transaction<'r, R>(row: &'r R) -> Result<TransactionRecord, StoreError>
    where
        R: Row,
        usize: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        Option<String>: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
        bool: Decode<'r, R::Database> + Type<R::Database>,
        chrono::NaiveDate: Decode<'r, R::Database> + Type<R::Database>,
        Option<chrono::NaiveDate>: Decode<'r, R::Database> + Type<R::Database>,
        chrono::DateTime<chrono::Utc>: Decode<'r, R::Database> + Type<R::Database>,
        Option<chrono::DateTime<chrono::Utc>>: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(TransactionRecord {
            id: row.try_get(0).db()?,
            kind: parse_kind(&row.try_get::<String, _>(1).db()?)?,
            status: TransactionStatus::parse(&row.try_get::<String, _>(2).db()?)?,
            store_id: row.try_get(3).db()?,
            terminal_id: row.try_get(4).db()?,
            operator_id: row.try_get(5).db()?,
            client_request_id: row.try_get(6).db()?,
            partner_id: row.try_get(7).db()?,
            amount_minor: row.try_get(8).db()?,
            currency: row.try_get(9).db()?,
            fee_minor: row.try_get(10).db()?,
            business_date: row.try_get(11).db()?,
            created_at: row.try_get(12).db()?,
            updated_at: row.try_get(13).db()?,
            cancelled_at: row.try_get(14).db()?,
            cancel_reason: row.try_get(15).db()?,
            bill: BillDetail {
                biller_id: row.try_get(16).db()?,
                agency_code: row.try_get(17).db()?,
                bill_reference: row.try_get(18).db()?,
                due_date: row.try_get(19).db()?,
                period: row.try_get(20).db()?,
                late: row.try_get(21).db()?,
            },
        })
    }
}
