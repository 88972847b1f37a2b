//! The biller simulator: a stand-in for an online biller (a utility, a card
//! issuer taking bill payments in cash) for the gateway's tests, demo and
//! conformance runs. A real HTTPS server with mutual TLS implementing the
//! bill endpoints of Partner API v1 (`partners/openapi/partner-api-v1.yaml`):
//! every request's RFC 9421 signature and digest verified (401 otherwise),
//! every answer signed, its own ledger of outstanding bills, idempotent by
//! Idempotency-Key, fault injection. The server is [`crate::http_server`]'s,
//! shared with the wallet simulator.
//!
//! # Layout
//! - [`config`]: `BillerSimConfig`, `BillConfig` (serde, TOML).
//! - [`ledger`]: the books: bills, notices, cancels. Pure.
//! - [`service`]: the bill endpoints on the shared server.
//!
//! `BillerSim` (this file) starts and stops it; [`run`] is `posgate sim biller`.

pub mod config;
pub mod ledger;
pub mod service;

use std::path::Path;

use self::ledger::Ledger;
use self::service::BillerService;
use crate::http_server::{RunningSim, ServerSettings};
use crate::lock;

pub use crate::http_server::{ClientKeyConfig, FaultConfig, SimError};
pub use config::{BillConfig, BillerSimConfig};
pub use ledger::{Entry, LedgerSnapshot};
pub use service::BillerCounters;

/// HSM label of the simulator's signing key.
pub const SIGNING_KEY_LABEL: &str = "biller-sim.signing";

/// A running biller simulator.
pub type BillerSim = RunningSim<BillerService>;

impl RunningSim<BillerService> {
    /// Validates `config`, loads its key and TLS files, binds and starts serving.
    pub async fn start(config: BillerSimConfig) -> Result<BillerSim, SimError> {
        config.validate().map_err(SimError::Config)?;
        let settings = ServerSettings {
            listen: &config.listen,
            tls: &config.tls,
            signing_key_label: SIGNING_KEY_LABEL,
            signing_key_hex: config.signing_key_hex.expose(),
            key_id: &config.key_id,
            client_keys: &config.client_keys,
            faults: config.faults.clone(),
            admin_listen: config.admin_listen.as_deref(),
        };
        let sim = Self::serve(settings, BillerService::new(Ledger::new(&config))).await?;
        tracing::info!(bills = config.bills.len(), "biller sim: bills loaded");
        Ok(sim)
    }

    /// A copy of the books.
    pub fn ledger(&self) -> LedgerSnapshot {
        lock(&self.service().ledger).snapshot()
    }

    /// One notice or cancel as the biller recorded it.
    pub fn entry(&self, transaction_id: &str) -> Option<Entry> {
        lock(&self.service().ledger).entry(transaction_id).cloned()
    }

    /// What the biller applied.
    pub fn biller_counters(&self) -> BillerCounters {
        lock(&self.service().counters).clone()
    }
}

/// `posgate sim biller --config FILE`: starts the simulator, prints its
/// address and runs until Ctrl-C or SIGTERM.
pub async fn run(config_path: &Path) -> Result<(), SimError> {
    let config = BillerSimConfig::from_file(config_path)?;
    BillerSim::start(config)
        .await?
        .run_until_stopped("biller simulator")
        .await
}
