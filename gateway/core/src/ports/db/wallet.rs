//! Wallet rows: the record of a wallet transaction (top-up, payment or
//! refund at a wallet operator), its atomic writes, and the reads the wallet
//! service and its store-and-forward worker need.
//!
//! Like a card payment, a wallet transaction is written before the request
//! goes to the operator (`in_progress`, key claimed and `pending`) and again
//! when the answer is known. A crash in between leaves an `in_progress` row
//! the wallet worker turns into `pending_reversal` with a queued reversal
//! (in `saf_queue`, `link_id` = the operator id), so no wallet movement is
//! ever left unknown to posgate.

use chrono::{DateTime, NaiveDate, Utc};

use super::{
    Event, KeyOp, NewSafItem, RefundAdjust, SettlementLine, StoreError, TransactionStatus,
};

use crate::model::IdempotencyKey;

use crate::model::wallet::{WalletOutcome, WalletRecord};

/// A guarded change of a wallet transaction: applied only if its status is
/// still `from`; `outcome`, when set, replaces the operator's answer.
#[derive(Debug, Clone, Default)]
pub struct WalletUpdate {
    pub transaction_id: String,
    pub from: Option<TransactionStatus>,
    pub to: Option<TransactionStatus>,
    pub outcome: Option<WalletOutcome>,
}

#[derive(Debug, Clone)]
pub enum WalletChange {
    Create(Box<WalletRecord>),
    Update(Box<WalletUpdate>),
}

/// One atomic change of a wallet transaction with everything that goes with it.
#[derive(Debug, Clone)]
pub struct WalletWrite {
    pub transaction_id: String,
    pub at: DateTime<Utc>,
    pub key: Option<KeyOp>,
    pub change: WalletChange,
    /// Refund amounts on the refunded payment.
    pub refund: Option<RefundAdjust>,
    pub lines: Vec<SettlementLine>,
    pub business_date: NaiveDate,
    pub event: Event,
    pub enqueue: Vec<NewSafItem>,
    pub acked: Vec<i64>,
}

impl WalletWrite {
    /// The invariants every wallet write must hold before it reaches SQL.
    pub fn check(&self) -> Result<(), StoreError> {
        super::check_balanced(&self.transaction_id, &self.lines)?;
        if let WalletChange::Create(record) = &self.change
            && record.id != self.transaction_id
        {
            return Err(StoreError::Invariant(
                "wallet write names another transaction".to_owned(),
            ));
        }
        if let Some(KeyOp::ClaimAnswered { answer, .. }) = &self.key
            && answer.transaction_id != self.transaction_id
        {
            return Err(StoreError::Invariant(
                "stored answer names another transaction".to_owned(),
            ));
        }
        Ok(())
    }
}

/// A queued wallet reversal with the transaction it undoes.
#[derive(Debug, Clone)]
pub struct WalletSafItem {
    pub id: i64,
    pub wallet_operator_id: String,
    pub attempts: i32,
    pub transaction: WalletRecord,
}

/// The wallet reads, the same SQL on both backends (`define_wallet_reads!`).
#[async_trait::async_trait]
pub trait WalletReads: Send + Sync {
    async fn wallet_transaction(&self, id: &str) -> Result<Option<WalletRecord>, StoreError>;
    /// The wallet transaction a key created: the newest under the key that
    /// is not a saga step (an auto-reload `TOP_UP` shares its payment's key).
    async fn wallet_by_request(
        &self,
        key: &IdempotencyKey,
    ) -> Result<Option<WalletRecord>, StoreError>;
    /// Refund ids of a payment, oldest first.
    async fn wallet_refund_ids(&self, original_id: &str) -> Result<Vec<String>, StoreError>;
    /// Wallet transactions `in_progress` since before `before`.
    async fn stale_wallet_in_progress(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<WalletRecord>, StoreError>;
    /// Claims queued wallet reversals due at `lease.now` that no other
    /// instance holds (as [`super::Reads::saf_claim`] does for the banks').
    async fn wallet_saf_claim(
        &self,
        lease: &super::Lease,
        limit: i64,
    ) -> Result<Vec<WalletSafItem>, StoreError>;
    /// Queued wallet reversals not yet acknowledged.
    async fn wallet_saf_open(&self) -> Result<i64, StoreError>;
}
