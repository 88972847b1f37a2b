//! The biller simulator: a stand-in for an online biller (a utility, a card
//! issuer taking bill payments in cash) for the gateway's tests, demo and
//! conformance runs. A real HTTPS server with mutual TLS implementing the
//! bill endpoints of Partner API v1 (`partners/openapi/partner-api-v1.yaml`):
//! every request's RFC 9421 signature and digest verified (401 otherwise),
//! every answer signed, its own ledger of outstanding bills, idempotent by
//! Idempotency-Key, fault injection. The server is [`crate::partner_sim`]'s,
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

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use self::ledger::Ledger;
use self::service::BillerService;
use crate::http::lock;
use crate::partner_sim::{RunningSim, ServerCounters, ServerSettings, wait_for_stop_signal};

pub use crate::partner_sim::{ClientKeyConfig, FaultConfig, SimError};
pub use config::{BillConfig, BillerSimConfig};
pub use ledger::{Entry, LedgerSnapshot};
pub use service::BillerCounters;

/// HSM label of the simulator's signing key.
pub const SIGNING_KEY_LABEL: &str = "biller-sim.signing";

/// A running biller simulator.
pub struct BillerSim {
    sim: RunningSim<BillerService>,
}

impl fmt::Debug for BillerSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BillerSim")
            .field("addr", &self.sim.addr())
            .finish_non_exhaustive()
    }
}

impl BillerSim {
    /// Validates `config`, loads its key and TLS files, binds and starts serving.
    pub async fn start(config: BillerSimConfig) -> Result<BillerSim, SimError> {
        config.validate().map_err(SimError::Config)?;
        let settings = ServerSettings {
            listen: &config.listen,
            tls: &config.tls,
            signing_key_label: SIGNING_KEY_LABEL,
            signing_key_hex: &config.signing_key_hex,
            key_id: &config.key_id,
            client_keys: &config.client_keys,
            faults: config.faults.clone(),
        };
        let sim = RunningSim::start(settings, BillerService::new(Ledger::new(&config))).await?;
        tracing::info!(bills = config.bills.len(), "biller sim: bills loaded");
        Ok(BillerSim { sim })
    }

    pub fn addr(&self) -> SocketAddr {
        self.sim.addr()
    }

    /// A copy of the books.
    pub fn ledger(&self) -> LedgerSnapshot {
        lock(&self.sim.service().ledger).snapshot()
    }

    /// One notice or cancel as the biller recorded it.
    pub fn entry(&self, transaction_id: &str) -> Option<Entry> {
        lock(&self.sim.service().ledger)
            .entry(transaction_id)
            .cloned()
    }

    /// Replaces the fault config (an invalid one is ignored with a warning).
    pub fn set_faults(&self, faults: FaultConfig) {
        self.sim.set_faults(faults);
    }

    /// What the shared server saw (requests, 401s, replays, faults).
    pub fn server_counters(&self) -> ServerCounters {
        self.sim.counters()
    }

    /// What the biller applied.
    pub fn counters(&self) -> BillerCounters {
        lock(&self.sim.service().counters).clone()
    }

    /// Stops accepting, closes every connection and waits.
    pub async fn shutdown(self) {
        self.sim.shutdown().await;
    }
}

/// `posgate sim biller --config FILE`: starts the simulator, prints its
/// address and runs until Ctrl-C or SIGTERM.
pub async fn run(config_path: &Path) -> Result<(), SimError> {
    let config = BillerSimConfig::from_file(config_path)?;
    let sim = BillerSim::start(config).await?;
    println!("biller simulator listening on {}", sim.addr());
    wait_for_stop_signal().await?;
    sim.shutdown().await;
    Ok(())
}
