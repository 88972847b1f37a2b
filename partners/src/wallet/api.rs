//! Wire models of the wallet endpoints of Partner API v1, exactly as the
//! OpenAPI document describes them, with the checks a receiver applies.
//! Money is integer minor units plus an ISO 4217 alphabetic code.

use posgate_hsm::Secret;
use serde::{Deserialize, Serialize};

pub use crate::api::{
    Channel, FieldError, MAX_AMOUNT_MINOR, Money, Problem, TRANSACTIONS_PATH, TransactionKind,
    TransactionState, TransactionStatus, is_code, is_transaction_id, is_visible_ascii, parse_body,
};
use crate::api::{check_channel, check_positive_money, check_transaction_id};
use crate::metrics::Refusal;

pub const TOP_UPS_PATH: &str = "/v1/wallet/top-ups";
pub const PAYMENTS_PATH: &str = "/v1/wallet/payments";
pub const REFUNDS_PATH: &str = "/v1/wallet/refunds";
pub const REVERSALS_PATH: &str = "/v1/wallet/reversals";
pub const BALANCE_PATH: &str = "/v1/wallet/balance-inquiries";

/// A wallet by account id (the number on the card) or member barcode (a
/// credential, held as a [`Secret`]: `Debug` prints `***`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletRef {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub account_id: Option<String>,
    #[serde(
        with = "secret_string",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub member_barcode: Option<Secret<String>>,
}

/// The wire form of an optional secret string: the clear value, as a plain
/// `Option<String>` would be. `Secret` has no serde impls of its own, so
/// each field that must cross the wire says so here.
mod secret_string {
    use posgate_hsm::Secret;
    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::ref_option, reason = "the signature serde's `with` expects")]
    pub fn serialize<S: Serializer>(
        value: &Option<Secret<String>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(secret) => serializer.serialize_some(secret.expose()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Secret<String>>, D::Error> {
        Ok(Option::<String>::deserialize(deserializer)?.map(Secret::new))
    }
}

/// `****1234`: a credential's last 4 characters, for logs and receipts.
pub fn last4(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let keep = chars.len().min(4);
    let mut out = "*".repeat(chars.len() - keep);
    out.extend(&chars[chars.len() - keep..]);
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Funding {
    Cash,
    Card,
    AutoReload,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopUpRequest {
    pub transaction_id: String,
    pub wallet: WalletRef,
    pub amount: Money,
    pub funding: Funding,
    pub channel: Channel,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    pub transaction_id: String,
    pub wallet: WalletRef,
    pub amount: Money,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pos_reference: Option<String>,
    pub channel: Channel,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    pub transaction_id: String,
    pub original_transaction_id: String,
    pub amount: Money,
    pub channel: Channel,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReversalRequest {
    pub original_transaction_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalanceRequest {
    pub wallet: WalletRef,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ResultStatus {
    Completed,
    Declined,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeclineCode {
    InsufficientBalance,
    BalanceLimitExceeded,
    TransactionLimitExceeded,
    WalletBlocked,
    WalletNotFound,
    CodeExpired,
    CurrencyMismatch,
    RefundExceedsPayment,
    NotRefundable,
    AlreadyReversed,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletIdentity {
    pub account_id: String,
    pub display_id: String,
    pub operator_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletResult {
    pub transaction_id: String,
    pub status: ResultStatus,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub decline_code: Option<DeclineCode>,
    pub operator_response_code: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub operator_reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub wallet: Option<WalletIdentity>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub balance_after: Option<Money>,
    pub processed_at: String,
}

impl Refusal for WalletResult {
    fn refused(&self) -> bool {
        self.status == ResultStatus::Declined
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReversalStatus {
    Reversed,
    NotApplied,
    /// The original stands: undoing it would take the wallet below zero
    /// (the credit was already spent). Final: a repeat gets the same answer.
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReversalResult {
    pub original_transaction_id: String,
    pub status: ReversalStatus,
    /// Why a reversal was `REFUSED` (`INSUFFICIENT_BALANCE`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub decline_code: Option<DeclineCode>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub balance_after: Option<Money>,
    pub processed_at: String,
}

impl Refusal for ReversalResult {
    fn refused(&self) -> bool {
        self.status == ReversalStatus::Refused
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletLimits {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub max_balance: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub max_top_up: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub max_payment: Option<Money>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletBalance {
    pub wallet: WalletIdentity,
    pub balance: Money,
    pub limits: WalletLimits,
    pub blocked: bool,
    pub as_of: String,
}

impl Refusal for WalletBalance {}

impl WalletRef {
    pub fn account(account_id: &str) -> Self {
        Self {
            account_id: Some(account_id.to_owned()),
            member_barcode: None,
        }
    }

    pub fn barcode(member_barcode: &str) -> Self {
        Self {
            account_id: None,
            member_barcode: Some(Secret::new(member_barcode.to_owned())),
        }
    }

    pub fn check(&self) -> Result<(), FieldError> {
        match (&self.account_id, &self.member_barcode) {
            (Some(account), None) if is_visible_ascii(account, 1, 64) => Ok(()),
            (Some(_), None) => Err(FieldError::new(
                "wallet.account_id",
                "must be 1-64 printable ASCII",
            )),
            (None, Some(barcode)) if is_visible_ascii(barcode.expose(), 6, 64) => Ok(()),
            (None, Some(_)) => Err(FieldError::new(
                "wallet.member_barcode",
                "must be 6-64 printable ASCII",
            )),
            _ => Err(FieldError::new(
                "wallet",
                "exactly one of account_id or member_barcode",
            )),
        }
    }
}

impl TopUpRequest {
    pub fn check(&self) -> Result<(), FieldError> {
        check_transaction_id("transaction_id", &self.transaction_id)?;
        self.wallet.check()?;
        check_positive_money("amount", &self.amount)?;
        check_channel(&self.channel)
    }
}

impl PaymentRequest {
    pub fn check(&self) -> Result<(), FieldError> {
        check_transaction_id("transaction_id", &self.transaction_id)?;
        self.wallet.check()?;
        check_positive_money("amount", &self.amount)?;
        if let Some(reference) = &self.pos_reference
            && (reference.len() > 40
                || !reference.bytes().all(|byte| (0x20..=0x7E).contains(&byte)))
        {
            return Err(FieldError::new(
                "pos_reference",
                "at most 40 printable ASCII",
            ));
        }
        check_channel(&self.channel)
    }
}

impl RefundRequest {
    pub fn check(&self) -> Result<(), FieldError> {
        check_transaction_id("transaction_id", &self.transaction_id)?;
        check_transaction_id("original_transaction_id", &self.original_transaction_id)?;
        check_positive_money("amount", &self.amount)?;
        check_channel(&self.channel)
    }
}

impl ReversalRequest {
    pub fn check(&self) -> Result<(), FieldError> {
        check_transaction_id("original_transaction_id", &self.original_transaction_id)
    }
}

impl BalanceRequest {
    pub fn check(&self) -> Result<(), FieldError> {
        self.wallet.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Field checks name the field; good requests pass.
    #[test]
    fn checks_name_fields() {
        let good = TopUpRequest {
            transaction_id: "01890a5d-ac96-774b-bcce-b302099a8057".into(),
            wallet: WalletRef::account("1234567890123456"),
            amount: Money::new(50_000, "TWD"),
            funding: Funding::Cash,
            channel: Channel {
                store_id: "S001".into(),
                terminal_id: "T01".into(),
            },
        };
        assert_eq!(good.check(), Ok(()));
        let mut bad = good.clone();
        bad.amount.amount_minor = 0;
        assert_eq!(bad.check().unwrap_err().field, "amount.amount_minor");
        let mut bad = good.clone();
        bad.amount.currency = "twd".into();
        assert_eq!(bad.check().unwrap_err().field, "amount.currency");
        let mut bad = good.clone();
        bad.wallet.member_barcode = Some(Secret::new("ABCDEF".to_owned()));
        assert_eq!(bad.check().unwrap_err().field, "wallet");
        let mut bad = good;
        bad.transaction_id = "01890A5D-AC96-774B-BCCE-B302099A8057".into();
        assert_eq!(bad.check().unwrap_err().field, "transaction_id");
        let error = parse_body::<TopUpRequest>(br#"{"transaction_id":"x"}"#).unwrap_err();
        assert_eq!(error.field, "wallet");
        let money: Money =
            serde_json::from_str(r#"{"amount_minor":100.0,"currency":"TWD"}"#).unwrap();
        assert_eq!(money.amount_minor, 100);
        for bad in ["100.5", "1e300", "\"100\""] {
            let text = format!(r#"{{"amount_minor":{bad},"currency":"TWD"}}"#);
            assert!(serde_json::from_str::<Money>(&text).is_err(), "{bad}");
        }
        let error = parse_body::<ReversalRequest>(br#"{"original_transaction_id":"x","extra":1}"#)
            .unwrap_err();
        assert_eq!(error.field, "extra");
    }

    /// A member barcode never shows in `Debug` (plain or pretty) or
    /// `Display`, yet goes on the wire in the clear, as before.
    #[test]
    fn barcode_masked() {
        let wallet = WalletRef::barcode("SECRETCODE9876");
        let barcode = wallet.member_barcode.as_ref().unwrap();
        for text in [
            format!("{wallet:?}"),
            format!("{wallet:#?}"),
            format!("{barcode}"),
        ] {
            assert!(
                !text.contains("SECRETCODE") && !text.contains("9876"),
                "{text}"
            );
        }
        let json = serde_json::to_string(&wallet).unwrap();
        assert_eq!(json, r#"{"member_barcode":"SECRETCODE9876"}"#);
        assert_eq!(serde_json::from_str::<WalletRef>(&json).unwrap(), wallet);
    }
}
