//! A wallet's link to a co-brand card, as stored: the card only as an
//! HSM-enciphered token.

use chrono::{DateTime, Utc};

use super::UnknownValue;

/// The state of a card link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStatus {
    Active,
    Declined,
    Unlinked,
}

impl LinkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Declined => "declined",
            Self::Unlinked => "unlinked",
        }
    }

    pub fn parse(text: &str) -> Result<Self, UnknownValue> {
        match text {
            "active" => Ok(Self::Active),
            "declined" => Ok(Self::Declined),
            "unlinked" => Ok(Self::Unlinked),
            other => Err(UnknownValue::new("card link status", other)),
        }
    }
}

/// A wallet's link to a co-brand card. `token` is the PAN and expiry
/// enciphered in the HSM; no clear card data is ever stored, and the token
/// itself prints as `***`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardLink {
    pub link_id: String,
    pub status: LinkStatus,
    pub wallet_operator_id: String,
    pub wallet_ref: String,
    pub account_id: String,
    pub display_id: String,
    pub masked_pan: String,
    pub pan_fingerprint: String,
    pub card_brand: String,
    /// The bank link of the card's co-brand route.
    pub card_link: String,
    pub token: posgate_hsm::Secret<Vec<u8>>,
    pub token_key: String,
    pub token_key_version: i64,
    pub auto_reload: bool,
    pub step_minor: i64,
    pub currency: String,
    pub store_id: String,
    pub terminal_id: String,
    pub operator_id: String,
    pub client_request_id: String,
    pub linked_at: DateTime<Utc>,
    pub unlinked_at: Option<DateTime<Utc>>,
    pub unlink_reason: Option<String>,
}
