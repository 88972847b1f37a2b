//! The `online` table of a biller: how posgate reaches an online biller's
//! partner API (URL, keys, certificates, timeouts, retry backoff).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::barcode::BarcodeProfile;
use crate::model::money::{Currency, FeeContract};

/// How posgate reaches one online biller, checked.
#[derive(Debug, Clone)]
pub struct OnlineBillerConfig {
    /// Base URL of its partner API, `https://host:port`.
    pub url: String,
    /// The `keyid` posgate signs under at this biller.
    pub key_id: String,
    /// HSM label of posgate's Ed25519 signing key.
    pub signing_key: String,
    /// The biller's answer-signing key id and Ed25519 public key.
    pub biller_key_id: String,
    pub biller_public_key: [u8; 32],
    /// The CA of the biller's server certificate, and posgate's client certificate and key.
    pub ca_cert: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub request_timeout: Duration,
    pub max_attempts: u32,
    /// Store-and-forward backoff of unresolved payment notices.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOnlineBiller {
    url: String,
    key_id: String,
    signing_key: String,
    biller_key_id: String,
    biller_public_key_hex: String,
    ca_cert: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    #[serde(default = "default_timeout_ms")]
    request_timeout_ms: u64,
    #[serde(default = "default_attempts")]
    max_attempts: u32,
    #[serde(default = "default_retry_min_ms")]
    retry_min_ms: u64,
    #[serde(default = "default_retry_max_ms")]
    retry_max_ms: u64,
}

fn default_timeout_ms() -> u64 {
    // A notice is one database write at the biller; 5 s is generous.
    5_000
}

fn default_attempts() -> u32 {
    3
}

fn default_retry_min_ms() -> u64 {
    1_000
}

fn default_retry_max_ms() -> u64 {
    300_000
}

impl RawOnlineBiller {
    /// Checks the table; the error names the field (`online.<field>`) and why.
    pub fn check(self) -> Result<OnlineBillerConfig, (String, String)> {
        let bad = |field: &str, reason: &str| (format!("online.{field}"), reason.to_owned());
        if !self.url.starts_with("https://") {
            return Err(bad("url", "must be an https:// URL"));
        }
        let public = hex::decode(&self.biller_public_key_hex)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| bad("biller_public_key_hex", "must be 64 hex digits (Ed25519)"))?;
        for (field, value) in [
            ("key_id", &self.key_id),
            ("biller_key_id", &self.biller_key_id),
            ("signing_key", &self.signing_key),
        ] {
            if value.is_empty() || value.len() > 64 {
                return Err(bad(field, "must be 1-64 characters"));
            }
        }
        if self.request_timeout_ms == 0 || !(1..=10).contains(&self.max_attempts) {
            return Err(bad(
                "request_timeout_ms",
                "timeout must be positive and max_attempts 1-10",
            ));
        }
        if self.retry_min_ms == 0 || self.retry_max_ms < self.retry_min_ms {
            return Err(bad("retry_min_ms", "0 < retry_min_ms <= retry_max_ms"));
        }
        Ok(OnlineBillerConfig {
            url: self.url,
            key_id: self.key_id,
            signing_key: self.signing_key,
            biller_key_id: self.biller_key_id,
            biller_public_key: public,
            ca_cert: self.ca_cert,
            client_cert: self.client_cert,
            client_key: self.client_key,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            max_attempts: self.max_attempts,
            retry_min: Duration::from_millis(self.retry_min_ms),
            retry_max: Duration::from_millis(self.retry_max_ms),
        })
    }
}

/// One biller, checked: what its slips look like, what it accepts, its fee
/// contract and, for online billers, how to reach it.
#[derive(Debug, Clone)]
pub struct BillerConfig {
    pub id: String,
    pub name: String,
    pub profile: BarcodeProfile,
    /// The codes printed on this biller's slips (TW collection-item codes, JP company codes).
    pub agency_codes: Vec<String>,
    pub currency: Currency,
    pub min_amount_minor: u64,
    pub max_amount_minor: u64,
    pub accept_after_due: bool,
    /// The contract lets one slip be paid more than once (instalments, or a
    /// biller that reconciles duplicates itself). Otherwise a batch-only
    /// biller's slip is paid at most once while that payment stands.
    pub allow_repeat_payment: bool,
    pub fee: FeeContract,
    /// Set for `mode = "online"`: how to reach the biller in real time.
    pub online: Option<OnlineBillerConfig>,
}
