//! A transaction as stored: its kind and state, its bill details, its
//! settlement lines and the events of its history.

use chrono::{DateTime, NaiveDate, Utc};

use super::UnknownValue;

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

    pub fn parse(text: &str) -> Result<Self, UnknownValue> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| UnknownValue::new("transaction status", text))
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

impl Event {
    /// The one constructor of a history event: `kind` moved the transaction
    /// `from` → `to`, done by `actor`.
    pub fn new(
        kind: &str,
        from: Option<TransactionStatus>,
        to: TransactionStatus,
        actor: &str,
        detail: String,
    ) -> Self {
        Self {
            event_type: kind.to_owned(),
            from_status: from,
            to_status: to,
            actor: actor.to_owned(),
            detail,
        }
    }
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

impl TransactionRecord {
    /// The idempotency key the transaction was made under.
    pub fn idempotency_key(&self) -> super::IdempotencyKey {
        super::IdempotencyKey {
            store_id: self.store_id.clone(),
            terminal_id: self.terminal_id.clone(),
            client_request_id: self.client_request_id.clone(),
        }
    }
}

/// Maps a `kind` column back to the enum.
pub fn parse_kind(text: &str) -> Result<TransactionKind, UnknownValue> {
    match text {
        "bill_payment" => Ok(TransactionKind::BillPayment),
        "card_payment" => Ok(TransactionKind::CardPayment),
        "wallet_payment" => Ok(TransactionKind::WalletPayment),
        other => Err(UnknownValue::new("transaction kind", other)),
    }
}
