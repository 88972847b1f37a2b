//! Online billers: a `[[biller]]` with `mode = "online"` and a `[biller.online]`
//! table is consulted in real time over the signed partner API
//! (`posgate_partners::bill`): InquireBill asks it for the bill, PayBill
//! notifies it, CancelBill cancels the notice. Batch-only billers never
//! reach this module.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use posgate_core::bill::config::OnlineBillerConfig;
use posgate_core::ports::partners::Biller;
use posgate_hsm::Hsm;

use posgate_core::bill::config::BillerConfig;

/// One online biller: its settings and its connector (see `crate::connectors`).
#[derive(Debug)]
pub struct OnlineBiller {
    pub id: String,
    pub config: OnlineBillerConfig,
    pub client: Arc<dyn Biller>,
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
            online.insert(
                biller.id.clone(),
                Arc::new(OnlineBiller {
                    id: biller.id.clone(),
                    config: config.clone(),
                    client: crate::connectors::biller(&biller.id, config, hsm)?,
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
            .map(|biller| biller.client.longest_call())
            .max()
            .unwrap_or(Duration::from_secs(30))
    }
}
