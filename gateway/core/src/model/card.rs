//! A card transaction as stored: never a full PAN, track, PIN block,
//! security code or chip data.

use chrono::{DateTime, NaiveDate, Utc};

use super::UnknownValue;
use super::transaction::TransactionStatus;

/// What a card transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardType {
    Authorization,
    Sale,
    Refund,
}

impl CardType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorization => "authorization",
            Self::Sale => "sale",
            Self::Refund => "refund",
        }
    }

    pub fn parse(text: &str) -> Result<Self, UnknownValue> {
        match text {
            "authorization" => Ok(Self::Authorization),
            "sale" => Ok(Self::Sale),
            "refund" => Ok(Self::Refund),
            other => Err(UnknownValue::new("card transaction type", other)),
        }
    }
}

/// Which partner handled a card transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardRouteKind {
    Acquirer,
    CoBrandIssuer,
}

impl CardRouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Acquirer => "acquirer",
            Self::CoBrandIssuer => "co_brand_issuer",
        }
    }

    pub fn parse(text: &str) -> Result<Self, UnknownValue> {
        match text {
            "acquirer" => Ok(Self::Acquirer),
            "co_brand_issuer" => Ok(Self::CoBrandIssuer),
            other => Err(UnknownValue::new("card route", other)),
        }
    }
}

/// A card transaction as stored: never a full PAN, track, PIN block, security
/// code or chip data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRecord {
    pub id: String,
    pub card_type: CardType,
    pub status: TransactionStatus,
    pub store_id: String,
    pub terminal_id: String,
    pub operator_id: String,
    pub client_request_id: String,
    /// The bank link that carried it.
    pub link_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub business_date: NaiveDate,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub route: CardRouteKind,
    pub masked_pan: String,
    /// Hex of the keyed PAN fingerprint (HMAC in the HSM).
    pub pan_fingerprint: String,
    pub card_brand: String,
    pub entry_mode: String,
    pub cardholder_verification: String,
    pub merchant_id: String,
    pub bank_terminal_id: String,
    pub stan: String,
    pub rrn: String,
    /// ISO 8583 field 7 of the request, needed by its reversal (field 90).
    pub transmitted_at: DateTime<Utc>,
    /// The request's MTI (0100, 0200), needed by its reversal (field 90).
    pub request_mti: String,
    pub response_code: String,
    pub approval_code: String,
    pub captured_minor: i64,
    pub refunded_minor: i64,
    /// Refunds sent to the bank and not yet answered.
    pub refund_reserved_minor: i64,
    pub loyalty_points: Option<i64>,
    pub loyalty_balance: Option<i64>,
    pub original_transaction_id: Option<String>,
    pub pos_reference: String,
    pub authorization_expires_at: Option<DateTime<Utc>>,
    pub advice_pending: bool,
}

/// A card record as the POS sees it: with its refunds, oldest first.
#[derive(Debug, Clone)]
pub struct CardTransaction {
    pub record: CardRecord,
    pub refund_ids: Vec<String>,
}

impl CardTransaction {
    /// A transaction without refunds (a new one, or a refund itself).
    pub fn alone(record: CardRecord) -> Self {
        Self {
            record,
            refund_ids: Vec::new(),
        }
    }
}

/// A refund and the payment it refunds, after the refund.
#[derive(Debug, Clone)]
pub struct RefundResult {
    pub refund: CardTransaction,
    /// The refunded payment (absent only if it vanished from the database).
    pub original: Option<CardTransaction>,
}
