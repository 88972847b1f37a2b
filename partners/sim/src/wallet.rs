//! The wallet operator simulator: a stand-in for an e-wallet operator (e.g.
//! i-Cash) for the gateway's tests, demo and load runs. A real HTTPS server
//! with mutual TLS implementing the wallet endpoints of Partner API v1
//! (`partners/openapi/partner-api-v1.yaml`): every request's RFC 9421
//! signature and digest verified (401 otherwise), every answer signed, its
//! own ledger, idempotent by Idempotency-Key, fault injection. The server,
//! signatures, idempotency and faults are [`crate::http_server`]'s, shared
//! with the biller simulator.
//!
//! # Layout
//! - [`config`]: `WalletSimConfig`, `WalletConfig` (serde, TOML).
//! - [`ledger`]: the books: balances, limits, transactions, reversals. Pure.
//! - [`service`]: the wallet endpoints on the shared server.
//! - [`stats`]: `WalletSimStats` counters.
//!
//! `WalletSim` (this file) starts and stops it; [`run`] is `posgate sim wallet`.

pub mod config;
pub mod ledger;
pub mod service;
pub mod stats;

use std::path::Path;

use self::ledger::Ledger;
use self::service::WalletService;
use crate::http_server::{RunningSim, ServerSettings};
use crate::lock;

pub use crate::http_server::{ClientKeyConfig, FaultConfig, SimError};
pub use config::{WalletConfig, WalletSimConfig};
pub use ledger::{Entry, LedgerSnapshot, LedgerTotals};
pub use stats::WalletSimStats;

/// HSM label of the simulator's signing key.
pub const SIGNING_KEY_LABEL: &str = "wallet-sim.signing";

/// A running wallet simulator.
pub type WalletSim = RunningSim<WalletService>;

impl RunningSim<WalletService> {
    /// Validates `config`, loads its key and TLS files, binds and starts serving.
    pub async fn start(config: WalletSimConfig) -> Result<WalletSim, SimError> {
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
        let sim = Self::serve(settings, WalletService::new(Ledger::new(&config))).await?;
        tracing::info!(wallets = config.wallets.len(), "wallet sim: wallets loaded");
        Ok(sim)
    }

    /// A copy of the books.
    pub fn ledger(&self) -> LedgerSnapshot {
        lock(&self.service().ledger).snapshot()
    }

    /// One transaction as the operator recorded it.
    pub fn entry(&self, transaction_id: &str) -> Option<Entry> {
        lock(&self.service().ledger).entry(transaction_id).cloned()
    }

    pub fn stats(&self) -> WalletSimStats {
        let counters = self.counters();
        WalletSimStats {
            requests: counters.requests,
            unauthorized: counters.unauthorized,
            idempotent_replays: counters.idempotent_replays,
            conflicts: counters.conflicts,
            faults_injected: counters.faults_injected,
            ..lock(&self.service().stats).clone()
        }
    }
}

/// `posgate sim wallet --config FILE`: starts the simulator, prints its
/// address and runs until Ctrl-C or SIGTERM.
pub async fn run(config_path: &Path) -> Result<(), SimError> {
    let config = WalletSimConfig::from_file(config_path)?;
    WalletSim::start(config)
        .await?
        .run_until_stopped("wallet simulator")
        .await
}
