//! Online billers: a `[[biller]]` with `mode = "online"` and a `[biller.online]`
//! table is consulted in real time over the signed partner API
//! (`posgate_partners::bill`): InquireBill asks it for the bill, PayBill
//! notifies it, CancelBill cancels the notice. Batch-only billers never
//! reach this module.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use posgate_hsm::Hsm;
use posgate_partners::bill::client::BillerClient;
use posgate_partners::http::{ClientSettings, PartnerClient, Signer, TlsFiles, Verifier};
use serde::Deserialize;

use crate::config::BillerConfig;

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
pub(crate) struct RawOnlineBiller {
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
    pub(crate) fn check(self) -> Result<OnlineBillerConfig, (String, String)> {
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

/// One online biller: its settings and its client (pool, breaker).
#[derive(Debug)]
pub struct OnlineBiller {
    pub id: String,
    pub config: OnlineBillerConfig,
    pub client: BillerClient,
}

impl OnlineBiller {
    /// The settlement and log name of the biller, as for batch billers.
    pub fn party(&self) -> String {
        format!("biller:{}", self.id)
    }
}

/// The online billers the services share, by biller id.
#[derive(Debug, Default)]
pub struct OnlineBillers {
    billers: BTreeMap<String, Arc<OnlineBiller>>,
}

impl OnlineBillers {
    /// Builds a client per online biller (connections open lazily). Fails on
    /// unreadable TLS files.
    pub fn start(billers: &[BillerConfig], hsm: &Arc<dyn Hsm>) -> Result<Self, String> {
        let mut online = BTreeMap::new();
        for biller in billers {
            let Some(config) = &biller.online else {
                continue;
            };
            let tls = TlsFiles {
                ca_cert: config.ca_cert.clone(),
                cert: config.client_cert.clone(),
                key: config.client_key.clone(),
            };
            let mut settings =
                ClientSettings::new(format!("biller:{}", biller.id), config.url.clone(), tls);
            settings.request_timeout = config.request_timeout;
            settings.max_attempts = config.max_attempts;
            let signer = Signer::new(
                Arc::clone(hsm),
                config.signing_key.clone(),
                config.key_id.clone(),
            );
            let verifier = Verifier::new(HashMap::from([(
                config.biller_key_id.clone(),
                config.biller_public_key,
            )]));
            let client = PartnerClient::new(settings, signer, Arc::new(verifier))
                .map_err(|error| format!("online biller {}: {error}", biller.id))?;
            online.insert(
                biller.id.clone(),
                Arc::new(OnlineBiller {
                    id: biller.id.clone(),
                    config: config.clone(),
                    client: BillerClient::new(client),
                }),
            );
        }
        Ok(Self { billers: online })
    }

    pub fn get(&self, biller_id: &str) -> Option<&Arc<OnlineBiller>> {
        self.billers.get(biller_id)
    }

    /// Every online biller, by id.
    pub fn all(&self) -> impl Iterator<Item = &Arc<OnlineBiller>> {
        self.billers.values()
    }

    pub fn is_empty(&self) -> bool {
        self.billers.is_empty()
    }

    /// The longest time one call may take, all attempts and backoff
    /// included: past it, an `in_progress` notice has lost its caller.
    pub fn longest_call(&self) -> Duration {
        self.billers
            .values()
            .map(|biller| biller.client.partner().longest_call())
            .max()
            .unwrap_or(Duration::from_secs(30))
    }
}
