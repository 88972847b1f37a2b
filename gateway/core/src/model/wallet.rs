//! A wallet transaction as stored: never a member barcode, only its last
//! 4 characters.

use chrono::{DateTime, NaiveDate, Utc};

use super::UnknownValue;
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
