//! The wallet operator simulator: a stand-in for an e-wallet operator (e.g.
//! i-Cash) for the gateway's tests, demo and load runs. A real HTTPS server
//! with mutual TLS implementing the wallet endpoints of Partner API v1
//! (`partners/openapi/partner-api-v1.yaml`): every request's RFC 9421
//! signature and digest verified (401 otherwise), every answer signed, its
//! own ledger, idempotent by Idempotency-Key, fault injection.
//!
//! # Layout
//! - [`config`]: `WalletSimConfig`, `WalletConfig`, `FaultConfig` (serde, TOML).
//! - [`ledger`]: the books: balances, limits, transactions, reversals. Pure.
//! - [`faults`]: the seeded fault plan.
//! - [`stats`]: `WalletSimStats` counters.
//! - [`server`]: accept loop, TLS, HTTP, verification, idempotency, routing, faults.
//!
//! `WalletSim` (this file) starts and stops it; [`run`] is `posgate sim wallet`.

pub mod config;
pub mod faults;
pub mod ledger;
pub mod server;
pub mod stats;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use posgate_hsm::{ClearKey, Hsm, KeySpec, SoftwareHsm};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::faults::FaultPlan;
use self::ledger::Ledger;
use self::server::Shared;
use crate::http::{Signer, Verifier, lock};

pub use config::{ClientKeyConfig, FaultConfig, WalletConfig, WalletSimConfig};
pub use ledger::{Entry, LedgerSnapshot, LedgerTotals};
pub use stats::WalletSimStats;

/// HSM label of the simulator's signing key.
pub const SIGNING_KEY_LABEL: &str = "wallet-sim.signing";

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("wallet simulator config: {0}")]
    Config(String),
    #[error("wallet simulator I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// A running wallet simulator.
pub struct WalletSim {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
}

impl fmt::Debug for WalletSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalletSim")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn invalid(reason: impl Into<String>) -> SimError {
    SimError::Config(reason.into())
}

impl WalletSim {
    /// Validates `config`, loads its key and TLS files, binds and starts serving.
    pub async fn start(config: WalletSimConfig) -> Result<WalletSim, SimError> {
        config.validate().map_err(invalid)?;
        let hsm = SoftwareHsm::in_memory();
        let seed =
            config::parse_key_hex("signing_key_hex", &config.signing_key_hex).map_err(invalid)?;
        hsm.import_key(
            SIGNING_KEY_LABEL,
            KeySpec::ED25519,
            ClearKey::new(seed.to_vec()),
        )
        .await
        .map_err(|error| invalid(error.to_string()))?;
        let signer = Signer::new(Arc::new(hsm), SIGNING_KEY_LABEL, config.key_id.clone());
        let mut keys = HashMap::new();
        for key in &config.client_keys {
            let public = config::parse_key_hex("client_keys.public_key_hex", &key.public_key_hex)
                .map_err(invalid)?;
            keys.insert(key.key_id.clone(), public);
        }
        let tls = crate::http::tls::server_config(&config.tls)
            .map_err(|error| invalid(error.to_string()))?;
        let shared = Arc::new(Shared::new(
            signer,
            Verifier::new(keys),
            Ledger::new(&config),
            FaultPlan::new(config.faults.clone()),
        ));
        let listener = TcpListener::bind(&config.listen).await?;
        let addr = listener.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let accept_task = tokio::spawn(server::accept_loop(
            listener,
            acceptor,
            shared.clone(),
            shutdown_rx,
        ));
        tracing::info!(%addr, wallets = config.wallets.len(), "wallet sim: listening");
        Ok(WalletSim {
            addr,
            shared,
            shutdown,
            accept_task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A copy of the books.
    pub fn ledger(&self) -> LedgerSnapshot {
        lock(&self.shared.ledger).snapshot()
    }

    /// One transaction as the operator recorded it.
    pub fn entry(&self, transaction_id: &str) -> Option<Entry> {
        lock(&self.shared.ledger).entry(transaction_id).cloned()
    }

    /// Replaces the fault config (an invalid one is ignored with a warning).
    pub fn set_faults(&self, faults: FaultConfig) {
        if let Err(reason) = faults.validate() {
            tracing::warn!(%reason, "wallet sim: fault config rejected");
            return;
        }
        *lock(&self.shared.faults) = FaultPlan::new(faults);
    }

    pub fn stats(&self) -> WalletSimStats {
        lock(&self.shared.stats).clone()
    }

    /// Stops accepting, closes every connection and waits.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        if let Err(error) = self.accept_task.await {
            tracing::error!(%error, "wallet sim: accept loop ended abnormally");
        }
    }
}

/// `posgate sim wallet --config FILE`: starts the simulator, prints its
/// address and runs until Ctrl-C or SIGTERM.
pub async fn run(config_path: &Path) -> Result<(), SimError> {
    let config = WalletSimConfig::from_file(config_path)?;
    let sim = WalletSim::start(config).await?;
    println!("wallet simulator listening on {}", sim.addr());
    wait_for_stop_signal().await?;
    sim.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_stop_signal() -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = terminate.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn wait_for_stop_signal() -> std::io::Result<()> {
    tokio::signal::ctrl_c().await
}
