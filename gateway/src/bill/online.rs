//! Online billers: a `[[biller]]` with `mode = "online"` and a `[biller.online]`
//! table is consulted in real time over the signed partner API
//! (`posgate_partners::bill`): InquireBill asks it for the bill, PayBill
//! notifies it, CancelBill cancels the notice. Batch-only billers never
//! reach this module.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use posgate_core::bill::config::OnlineBillerConfig;
use posgate_hsm::Hsm;
use posgate_partners::bill::client::BillerClient;
use posgate_partners::http::{ClientSettings, PartnerClient, Signer, TlsFiles, Verifier};

use posgate_core::bill::config::BillerConfig;

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
