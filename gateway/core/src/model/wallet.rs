//! A wallet transaction as stored: never a member barcode, only its last
//! 4 characters.

use chrono::{DateTime, NaiveDate, Utc};

use super::UnknownValue;
use super::card::CardRecord;
use super::link::CardLink;
use super::transaction::TransactionStatus;

/// What a wallet transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalletType {
    TopUp,
    Payment,
    Refund,
}

impl WalletType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TopUp => "top_up",
            Self::Payment => "payment",
            Self::Refund => "refund",
        }
    }

    pub fn parse(text: &str) -> Result<Self, UnknownValue> {
        match text {
            "top_up" => Ok(Self::TopUp),
            "payment" => Ok(Self::Payment),
            "refund" => Ok(Self::Refund),
            other => Err(UnknownValue::new("wallet transaction type", other)),
        }
    }
}

/// A wallet transaction as stored. A member barcode is never stored, only
/// its last 4 characters (in `wallet_ref`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletRecord {
    pub id: String,
    pub wallet_type: WalletType,
    pub status: TransactionStatus,
    pub store_id: String,
    pub terminal_id: String,
    /// The cashier.
    pub operator_id: String,
    pub client_request_id: String,
    /// The wallet operator (posgate's id, e.g. `ICASH`).
    pub wallet_operator_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub business_date: NaiveDate,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The card number as given, or `****1234` for a member barcode.
    pub wallet_ref: String,
    pub outcome: WalletOutcome,
    pub funding: String,
    pub refunded_minor: i64,
    pub refund_reserved_minor: i64,
    pub original_transaction_id: Option<String>,
    pub pos_reference: String,
}

/// What the operator said (empty until it answered).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalletOutcome {
    pub account_id: String,
    pub display_id: String,
    pub operator_name: String,
    pub decline_reason: String,
    pub operator_response_code: String,
    pub operator_reference: String,
    pub response_text: String,
    pub balance_after_minor: Option<i64>,
}

/// A wallet transaction as its answers show it: the record, its refunds
/// (a payment's, oldest first) and what its saga adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletTransaction {
    pub record: WalletRecord,
    pub refund_ids: Vec<String>,
    pub saga: Option<SagaPart>,
}

impl WalletTransaction {
    /// A transaction shown without refunds or saga.
    pub fn alone(record: WalletRecord) -> Self {
        Self {
            record,
            refund_ids: Vec::new(),
            saga: None,
        }
    }
}

/// What a wallet transaction's saga adds to it: the card SALE of a card
/// top-up or auto-reload; for a payment, its auto-reload (amount and
/// `TOP_UP`); for an auto-reload `TOP_UP`, the payment it was for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaPart {
    pub card: Option<CardRecord>,
    pub reload_minor: i64,
    pub currency: String,
    /// The auto-reload `TOP_UP` of a payment (empty until it was recorded).
    pub top_up_transaction_id: String,
    /// The payment an auto-reload `TOP_UP` was for (empty otherwise).
    pub parent_transaction_id: String,
}

/// A refund's answer: the refund and the payment it refunds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletRefund {
    pub refund: WalletTransaction,
    pub original: Option<WalletTransaction>,
}

/// The answer of a money-moving wallet call, by the type of its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalletAnswer {
    TopUp(WalletTransaction),
    Payment(WalletTransaction),
    Refund(Box<WalletRefund>),
}

/// `LinkCard`'s answer: the link (active, or declined by the issuer) and
/// the zero-amount verification at the card's issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedCard {
    pub link: CardLink,
    pub operator_name: String,
    pub verification: CardRecord,
    pub approved: bool,
}

/// `UnlinkCard`'s answer: the link as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnlinkedCard {
    pub link: CardLink,
    pub operator_name: String,
}
