//! Card-payment rows: the record of a card transaction, the atomic writes
//! that move it through its states, and the store-and-forward queue of
//! messages owed to a bank.
//!
//! A card payment is written twice: once before the request goes to the bank
//! (status `in_progress`, idempotency key claimed but `pending`), and once
//! when the answer is known (the key gets its answer for replay). A crash
//! between the two leaves an `in_progress` row that the reversal worker turns
//! into `pending_reversal` with a queued reversal, so no charge is ever left
//! behind unknown to posgate.

use chrono::{DateTime, NaiveDate, Utc};

use super::{Event, SettlementLine, TransactionStatus};

use crate::model::{IdempotencyKey, RequestFingerprint, StoredAnswer};

use crate::model::card::CardRecord;

/// What a card write does to the idempotency key.
#[derive(Debug, Clone)]
pub enum KeyOp {
    /// Claims the key for a request whose answer is not known yet (the key
    /// is `pending`: retries get "in progress" until it is answered).
    Claim {
        key: IdempotencyKey,
        fingerprint: RequestFingerprint,
        expires_at: DateTime<Utc>,
    },
    /// Records the answer under a key claimed earlier.
    Answer {
        key: IdempotencyKey,
        response: Vec<u8>,
    },
    /// Frees a key claimed earlier whose request was never sent, so a retry
    /// starts afresh.
    Release { key: IdempotencyKey },
    /// Claims a key and answers it at once (calls that never wait for the bank).
    ClaimAnswered {
        key: IdempotencyKey,
        answer: StoredAnswer,
        expires_at: DateTime<Utc>,
    },
}

/// A guarded change of a card transaction: applied only if its status is
/// still `from`. `None` fields keep their value.
#[derive(Debug, Clone, Default)]
pub struct CardUpdate {
    pub transaction_id: String,
    pub from: Option<TransactionStatus>,
    pub to: Option<TransactionStatus>,
    pub response_code: Option<String>,
    pub approval_code: Option<String>,
    pub captured_minor: Option<i64>,
    pub loyalty: Option<(i64, Option<i64>)>,
    pub authorization_expires_at: Option<Option<DateTime<Utc>>>,
    pub advice_pending: Option<bool>,
}

/// What a card write does to the transaction.
#[derive(Debug, Clone)]
pub enum CardChange {
    Create(Box<CardRecord>),
    Update(CardUpdate),
}

/// Moves refund amounts on the refunded transaction: `reserve_delta` while a
/// refund is with the bank, `refunded_delta` once approved. A reservation is
/// refused when it would take refunds beyond the captured amount.
#[derive(Debug, Clone)]
pub struct RefundAdjust {
    pub original_id: String,
    pub reserve_delta: i64,
    pub refunded_delta: i64,
}

/// A message owed to a bank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SafKind {
    /// 0400 (repeated as 0401): undo the transaction at the bank.
    Reversal,
    /// 0220: a capture of an earlier authorization.
    Advice,
}

impl SafKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reversal => "reversal",
            Self::Advice => "advice",
        }
    }

    pub fn parse(text: &str) -> Result<Self, super::StoreError> {
        match text {
            "reversal" => Ok(Self::Reversal),
            "advice" => Ok(Self::Advice),
            other => Err(super::StoreError::Corrupt(format!(
                "unknown queue item kind {other:?}"
            ))),
        }
    }
}

/// A queue entry to add.
#[derive(Debug, Clone)]
pub struct NewSafItem {
    pub link_id: String,
    pub kind: SafKind,
    pub amount_minor: i64,
    pub currency: String,
    pub next_attempt_at: DateTime<Utc>,
}

/// A queue entry with the transaction it concerns.
#[derive(Debug, Clone)]
pub struct SafItem {
    pub id: i64,
    pub kind: SafKind,
    pub link_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub attempts: i32,
    /// The STAN of the first transmission, once there was one: repeats reuse it.
    pub stan: Option<String>,
    pub transaction: CardRecord,
}

/// One atomic change of a card transaction with everything that goes with it.
#[derive(Debug, Clone)]
pub struct CardWrite {
    pub transaction_id: String,
    pub at: DateTime<Utc>,
    pub key: Option<KeyOp>,
    pub change: CardChange,
    pub refund: Option<RefundAdjust>,
    pub lines: Vec<SettlementLine>,
    /// Business date of the lines.
    pub business_date: NaiveDate,
    pub event: Event,
    pub enqueue: Vec<NewSafItem>,
    /// Queue entries this write acknowledges.
    pub acked: Vec<i64>,
}

impl CardWrite {
    /// The invariants every card write must hold before it reaches SQL.
    pub fn check(&self) -> Result<(), super::StoreError> {
        super::check_balanced(&self.transaction_id, &self.lines)?;
        if let CardChange::Create(record) = &self.change
            && record.id != self.transaction_id
        {
            return Err(super::StoreError::Invariant(
                "card write names another transaction".to_owned(),
            ));
        }
        if let Some(KeyOp::ClaimAnswered { answer, .. }) = &self.key
            && answer.transaction_id != self.transaction_id
        {
            return Err(super::StoreError::Invariant(
                "stored answer names another transaction".to_owned(),
            ));
        }
        Ok(())
    }
}
