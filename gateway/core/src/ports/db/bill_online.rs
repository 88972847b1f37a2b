//! Online bill payments: the atomic writes and reads of a payment notice to
//! an online biller, and of its store-and-forward resolution.
//!
//! A notice is written before it goes to the biller (`in_progress`, key
//! claimed and `pending`) and again when the answer is known. An unknown
//! outcome queues an `advice` entry in `saf_queue` (`link_id` = the biller
//! id) in the same commit; a crash in between leaves an `in_progress` row
//! the bill worker queues itself. The worker joins `bill_payments`, so the
//! card and wallet workers never see these entries, nor it theirs.

use chrono::{DateTime, NaiveDate, Utc};

use super::{Change, Event, KeyOp, NewSafItem, SettlementLine, StoreError, TransactionRecord};

/// One atomic change of an online bill payment with everything that goes with it.
#[derive(Debug, Clone)]
pub struct BillWrite {
    pub transaction_id: String,
    pub at: DateTime<Utc>,
    pub key: Option<KeyOp>,
    pub change: Change,
    pub lines: Vec<SettlementLine>,
    pub business_date: NaiveDate,
    pub event: Event,
    pub enqueue: Vec<NewSafItem>,
    pub acked: Vec<i64>,
}

impl BillWrite {
    /// The invariants every bill write must hold before it reaches SQL.
    pub fn check(&self) -> Result<(), StoreError> {
        super::check_balanced(&self.transaction_id, &self.lines)?;
        let names = match &self.change {
            Change::Create(record) => &record.id,
            Change::Transition(change) => &change.transaction_id,
        };
        if *names != self.transaction_id {
            return Err(StoreError::Invariant(
                "bill write names another transaction".to_owned(),
            ));
        }
        Ok(())
    }
}

/// A queued payment notice to resolve, with its payment.
#[derive(Debug, Clone)]
pub struct BillSafItem {
    pub id: i64,
    pub attempts: i32,
    pub transaction: TransactionRecord,
}

/// The online-bill reads, the same SQL on both backends.
#[async_trait::async_trait]
pub trait BillReads: Send + Sync {
    /// Online bill payments `in_progress` since before `before` with no
    /// queued notice: their request was cut off (crash, lost task).
    async fn stale_bill_in_progress(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<TransactionRecord>, StoreError>;
    /// Claims queued payment notices due at `lease.now` that no other
    /// instance holds (as [`super::Reads::saf_claim`] does for the banks').
    async fn bill_saf_claim(
        &self,
        lease: &super::Lease,
        limit: i64,
    ) -> Result<Vec<BillSafItem>, StoreError>;
    /// Queued payment notices not yet resolved.
    async fn bill_saf_open(&self) -> Result<i64, StoreError>;
}
