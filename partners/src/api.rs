//! The primitives every endpoint of Partner API v1 shares, wallet and bill
//! alike, exactly as the OpenAPI document describes them: money, the
//! channel, transaction status look-ups, RFC 9457 problems and the field
//! checks a receiver applies.

use std::fmt;

use serde::{Deserialize, Serialize};

pub const TRANSACTIONS_PATH: &str = "/v1/transactions/";

/// Largest amount any field carries (1e12 - 1 minor units), as in the POS API.
pub const MAX_AMOUNT_MINOR: i64 = 999_999_999_999;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Money {
    #[serde(deserialize_with = "integral")]
    pub amount_minor: i64,
    pub currency: String,
}

/// An integer amount. JSON Schema's `integer` admits integral numbers
/// written with a fraction (`100.0`); they are accepted when exactly
/// integral and within ±2^53 (so the conversion is exact). Anything else
/// (`100.5`, `1e300`) is refused: money is never rounded.
fn integral<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer number of minor units")
        }
        fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<i64, E> {
            Ok(value)
        }
        fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<i64, E> {
            i64::try_from(value).map_err(|_| E::custom("amount_minor out of range"))
        }
        #[allow(clippy::cast_possible_truncation, clippy::float_cmp)] // Exactness checked just before the cast.
        fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<i64, E> {
            const EXACT_LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53
            if value.fract() == 0.0 && value.abs() <= EXACT_LIMIT {
                Ok(value as i64)
            } else {
                Err(E::custom("amount_minor is not an integer"))
            }
        }
    }
    deserializer.deserialize_any(Visitor)
}

impl Money {
    pub fn new(amount_minor: i64, currency: &str) -> Self {
        Self {
            amount_minor,
            currency: currency.to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    pub store_id: String,
    pub terminal_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TransactionKind {
    BillPayment,
    BillCancel,
    WalletTopUp,
    WalletPayment,
    WalletRefund,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TransactionState {
    Completed,
    Declined,
    Reversed,
    Accepted,
    Rejected,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionStatus {
    pub transaction_id: String,
    pub kind: TransactionKind,
    pub status: TransactionState,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub amount: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub processed_at: Option<String>,
}

/// RFC 9457 problem details, the body of every 4xx.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub field: Option<String>,
}

/// A field that fails its schema: the JSON path and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub(crate) fn new(field: &str, reason: &str) -> Self {
        Self {
            field: field.to_owned(),
            reason: reason.to_owned(),
        }
    }
}

/// `^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`.
pub fn is_transaction_id(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(index, byte)| match index {
            8 | 13 | 18 | 23 => *byte == b'-',
            _ => byte.is_ascii_digit() || (b'a'..=b'f').contains(byte),
        })
}

/// `^[A-Za-z0-9_-]{1,32}$`.
pub fn is_code(text: &str) -> bool {
    (1..=32).contains(&text.len())
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

/// Printable ASCII without space (0x21-0x7E), `min..=max` characters.
pub fn is_visible_ascii(text: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&text.len()) && text.bytes().all(|byte| (0x21..=0x7E).contains(&byte))
}

pub(crate) fn check_transaction_id(field: &str, value: &str) -> Result<(), FieldError> {
    if is_transaction_id(value) {
        Ok(())
    } else {
        Err(FieldError::new(field, "not a lower-case UUID"))
    }
}

pub(crate) fn check_positive_money(field: &str, money: &Money) -> Result<(), FieldError> {
    if !(1..=MAX_AMOUNT_MINOR).contains(&money.amount_minor) {
        return Err(FieldError::new(
            &format!("{field}.amount_minor"),
            "must be 1..=999999999999 minor units",
        ));
    }
    if money.currency.len() != 3 || !money.currency.bytes().all(|byte| byte.is_ascii_uppercase()) {
        return Err(FieldError::new(
            &format!("{field}.currency"),
            "must be an ISO 4217 alphabetic code",
        ));
    }
    Ok(())
}

pub(crate) fn check_channel(channel: &Channel) -> Result<(), FieldError> {
    if !is_code(&channel.store_id) {
        return Err(FieldError::new(
            "channel.store_id",
            "must be 1-32 of [A-Za-z0-9_-]",
        ));
    }
    if !is_code(&channel.terminal_id) {
        return Err(FieldError::new(
            "channel.terminal_id",
            "must be 1-32 of [A-Za-z0-9_-]",
        ));
    }
    Ok(())
}

/// Parses a JSON body into `T`, naming the field serde complained about.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, FieldError> {
    serde_json::from_slice(body).map_err(|error| {
        let message = error.to_string();
        let field = message
            .split('`')
            .nth(1)
            .filter(|_| {
                message.starts_with("missing field") || message.starts_with("unknown field")
            })
            .unwrap_or("body");
        FieldError {
            field: field.to_owned(),
            reason: message,
        }
    })
}
