//! `[[wallet_operator]]`: the e-wallet operators posgate reaches over the
//! signed partner API, each with its URL, keys, TLS files and limits.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::model::Party;
use crate::model::config_error::ConfigError;
use crate::model::ids::is_valid_id;
use crate::model::money::Currency;

/// One wallet operator, checked.
#[derive(Debug, Clone)]
pub struct WalletOperatorConfig {
    /// posgate's id of the operator (`WalletRef.wallet_operator_id`), e.g. `ICASH`.
    pub id: String,
    /// Display name for receipts, at most 40 characters.
    pub name: String,
    /// Base URL of its partner API, `https://host:port`.
    pub url: String,
    pub currency: Currency,
    /// The `keyid` posgate signs under at this operator.
    pub key_id: String,
    /// HSM label of posgate's Ed25519 signing key.
    pub signing_key: String,
    /// The operator's answer-signing key id and Ed25519 public key.
    pub operator_key_id: String,
    pub operator_public_key: [u8; 32],
    /// The CA of the operator's server certificate, and posgate's client certificate and key.
    pub ca_cert: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub request_timeout: Duration,
    pub max_attempts: u32,
    /// Top-ups are multiples of this (e.g. NT$100 = 10000).
    pub top_up_unit_minor: i64,
    pub max_top_up_minor: i64,
    pub max_payment_minor: i64,
    /// Digits of a wallet card number (i-Cash: 16).
    pub card_number_length: usize,
    /// Refunds of payments older than this many days are refused.
    pub refund_window_days: i64,
    /// Stores the operator is enabled for (empty: all).
    pub stores: Vec<String>,
    /// Store-and-forward backoff of reversals.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// HSM label of the HMAC key that digests member barcodes for
    /// idempotency comparison (a barcode is a credential: never kept, not
    /// even as a plain hash).
    pub fingerprint_key: String,
    /// Whether top-ups may be paid by card at the counter.
    pub card_top_up: bool,
    /// The auto-reload steps the operator allows (e.g. NT$500 and NT$1,000);
    /// empty: no auto-reload.
    pub reload_steps_minor: Vec<i64>,
    /// HSM label of the AES key that enciphers card-on-file tokens of links.
    pub card_token_key: String,
}

impl WalletOperatorConfig {
    /// The settlement party of the operator.
    pub fn party(&self) -> String {
        Party::Wallet(self.id.clone()).to_string()
    }

    pub fn enabled_for(&self, store_id: &str) -> bool {
        self.stores.is_empty() || self.stores.iter().any(|store| store == store_id)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWalletOperator {
    id: String,
    name: String,
    url: String,
    currency: String,
    key_id: String,
    signing_key: String,
    operator_key_id: String,
    operator_public_key_hex: String,
    ca_cert: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    #[serde(default = "default_timeout_ms")]
    request_timeout_ms: u64,
    #[serde(default = "default_attempts")]
    max_attempts: u32,
    top_up_unit_minor: i64,
    max_top_up_minor: i64,
    max_payment_minor: i64,
    #[serde(default = "default_card_number_length")]
    card_number_length: usize,
    #[serde(default = "default_refund_window_days")]
    refund_window_days: i64,
    #[serde(default)]
    stores: Vec<String>,
    #[serde(default = "default_retry_min_ms")]
    retry_min_ms: u64,
    #[serde(default = "default_retry_max_ms")]
    retry_max_ms: u64,
    #[serde(default = "default_fingerprint_key")]
    fingerprint_key: String,
    #[serde(default)]
    card_top_up: bool,
    #[serde(default)]
    reload_steps_minor: Vec<i64>,
    #[serde(default = "default_card_token_key")]
    card_token_key: String,
}

fn default_card_token_key() -> String {
    "card-token".to_owned()
}

fn default_fingerprint_key() -> String {
    "pan-fingerprint".to_owned()
}

fn default_timeout_ms() -> u64 {
    // A wallet debit is one database write at the operator; 5 s is generous.
    5_000
}

fn default_attempts() -> u32 {
    3
}

fn default_card_number_length() -> usize {
    16
}

fn default_refund_window_days() -> i64 {
    30
}

fn default_retry_min_ms() -> u64 {
    1_000
}

fn default_retry_max_ms() -> u64 {
    300_000
}

fn invalid(index: usize, field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: format!("wallet_operator[{index}].{field}"),
        reason: reason.into(),
    }
}

/// Checks the card settings: reload steps are multiples of the top-up unit
/// within the top-up maximum; the token key label is sane.
fn check_reload(index: usize, raw: &RawWalletOperator) -> Result<(), ConfigError> {
    if raw.reload_steps_minor.iter().any(|step| {
        *step <= 0 || *step % raw.top_up_unit_minor != 0 || *step > raw.max_top_up_minor
    }) {
        return Err(invalid(
            index,
            "reload_steps_minor",
            "each step must be a positive multiple of top_up_unit_minor, at most max_top_up_minor",
        ));
    }
    if raw.card_token_key.is_empty() || raw.card_token_key.len() > 64 {
        return Err(invalid(index, "card_token_key", "must be 1-64 characters"));
    }
    Ok(())
}

/// Checks the `[[wallet_operator]]` sections against the configured stores.
// One check per field, in the file's order.
#[allow(clippy::too_many_lines)]
pub(crate) fn check(
    raw: Vec<RawWalletOperator>,
    store_ids: &[String],
) -> Result<Vec<WalletOperatorConfig>, ConfigError> {
    let mut operators: Vec<WalletOperatorConfig> = Vec::new();
    for (index, raw) in raw.into_iter().enumerate() {
        if !is_valid_id(&raw.id) || operators.iter().any(|op| op.id == raw.id) {
            return Err(invalid(
                index,
                "id",
                "must be a unique id of 1-32 of [A-Za-z0-9_-]",
            ));
        }
        if raw.name.is_empty() || raw.name.chars().count() > 40 {
            return Err(invalid(index, "name", "must be 1-40 characters"));
        }
        if !raw.url.starts_with("https://") {
            return Err(invalid(index, "url", "must be an https:// URL"));
        }
        let currency = Currency::from_code(&raw.currency)
            .ok_or_else(|| invalid(index, "currency", "not an ISO 4217 code posgate knows"))?;
        let public = hex::decode(&raw.operator_public_key_hex)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| {
                invalid(
                    index,
                    "operator_public_key_hex",
                    "must be 64 hex digits (Ed25519)",
                )
            })?;
        for (field, value) in [
            ("key_id", &raw.key_id),
            ("operator_key_id", &raw.operator_key_id),
            ("signing_key", &raw.signing_key),
        ] {
            if value.is_empty() || value.len() > 64 {
                return Err(invalid(index, field, "must be 1-64 characters"));
            }
        }
        if raw.request_timeout_ms == 0 || !(1..=10).contains(&raw.max_attempts) {
            return Err(invalid(
                index,
                "request_timeout_ms",
                "timeout must be positive and max_attempts 1-10",
            ));
        }
        let amounts = [
            ("top_up_unit_minor", raw.top_up_unit_minor),
            ("max_top_up_minor", raw.max_top_up_minor),
            ("max_payment_minor", raw.max_payment_minor),
        ];
        if let Some((field, _)) = amounts.iter().find(|(_, value)| *value <= 0) {
            return Err(invalid(index, field, "must be positive"));
        }
        if !(1..=64).contains(&raw.card_number_length) {
            return Err(invalid(index, "card_number_length", "must be 1-64"));
        }
        if raw.refund_window_days <= 0 {
            return Err(invalid(index, "refund_window_days", "must be positive"));
        }
        if let Some(store) = raw.stores.iter().find(|store| !store_ids.contains(store)) {
            return Err(invalid(
                index,
                "stores",
                format!("{store:?} is not a configured store"),
            ));
        }
        if raw.retry_min_ms == 0 || raw.retry_max_ms < raw.retry_min_ms {
            return Err(invalid(
                index,
                "retry_min_ms",
                "0 < retry_min_ms <= retry_max_ms",
            ));
        }
        check_reload(index, &raw)?;
        operators.push(WalletOperatorConfig {
            id: raw.id,
            name: raw.name,
            url: raw.url,
            currency,
            key_id: raw.key_id,
            signing_key: raw.signing_key,
            operator_key_id: raw.operator_key_id,
            operator_public_key: public,
            ca_cert: raw.ca_cert,
            client_cert: raw.client_cert,
            client_key: raw.client_key,
            request_timeout: Duration::from_millis(raw.request_timeout_ms),
            max_attempts: raw.max_attempts,
            top_up_unit_minor: raw.top_up_unit_minor,
            max_top_up_minor: raw.max_top_up_minor,
            max_payment_minor: raw.max_payment_minor,
            card_number_length: raw.card_number_length,
            refund_window_days: raw.refund_window_days,
            stores: raw.stores,
            retry_min: Duration::from_millis(raw.retry_min_ms),
            retry_max: Duration::from_millis(raw.retry_max_ms),
            fingerprint_key: raw.fingerprint_key,
            card_top_up: raw.card_top_up,
            reload_steps_minor: raw.reload_steps_minor,
            card_token_key: raw.card_token_key,
        });
    }
    Ok(operators)
}
