//! The bank simulator: a stand-in for a real acquiring bank, used by the
//! gateway's end-to-end tests, its demo and its load runs. A TCP server
//! speaking the bank protocol (ISO 8583 `ascii_1987`, 2-byte length
//! framing, retail MAC) over its own ledger of card accounts.
//!
//! # Layout
//! - [`config`]: `SimConfig`, `AccountConfig`, `FaultConfig` (serde, TOML).
//! - [`ledger`]: the books: accounts, holds, postings, points, reversals,
//!   RRN idempotency; response codes. Pure, no I/O.
//! - [`faults`]: the seeded fault plan.
//! - [`stats`]: `SimStats` counters.
//! - [`server`]: accept loop, connections, framing, MAC, fault delivery.
//! - [`mac`]: MAC helpers aware of the dialect's MAC wire length (hex in `ascii_1987`).
//! - [`network`]: 0800 sign-on, sign-off, echo and key change.
//! - [`transformers`]: request messages to ledger requests, answers to responses.
//! - [`ack`]: the acknowledgement file of a business date, from the ledger's
//!   settlement cycle, with optional injected mismatches.
//! - [`admin`]: the read-only admin endpoint on loopback (`GET /ledger`).
//!
//! `BankSim` (this file) starts and stops it; [`run`] is `posgate sim bank`.

pub mod ack;
pub mod admin;
pub mod config;
pub mod faults;
pub mod ledger;
pub mod mac;
mod network;
pub mod server;
pub mod stats;
mod transformers;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use posgate_hsm::{ClearKey, Hsm, KeyRef, KeySpec, SoftwareHsm};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::faults::FaultPlan;
use self::ledger::Ledger;
use self::server::{MAC_KEY_LABEL, Shared, ZMK_LABEL, lock};

pub use ack::{AckFaults, AckItem};
pub use config::{AccountConfig, FaultConfig, SimConfig};
pub use ledger::{AccountSnapshot, AppliedEntry, CurrencyTotals, LedgerDump, LedgerSnapshot};
pub use stats::SimStats;

/// Why the simulator could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The config file is unreadable or invalid (the message names the entry, never a key or PAN).
    #[error("bank simulator config: {0}")]
    Config(String),
    /// The listener could not bind, or the process's signal handlers failed.
    #[error("bank simulator I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The simulator's own HSM refused its keys.
    #[error("bank simulator HSM: {0}")]
    Hsm(String),
}

/// A running bank simulator. Dropping it without [`BankSim::shutdown`]
/// leaves the server running until the runtime ends.
pub struct BankSim {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
}

impl fmt::Debug for BankSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BankSim")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn invalid(reason: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, reason.into())
}

impl BankSim {
    /// Validates `config`, loads its keys into a fresh in-memory HSM, binds
    /// the listener and spawns the accept loop. A bad config is `InvalidInput`.
    pub async fn start(config: SimConfig) -> std::io::Result<BankSim> {
        config.validate().map_err(invalid)?;
        let hsm = SoftwareHsm::in_memory();
        for (label, spec, material) in [
            (
                MAC_KEY_LABEL,
                KeySpec::TDES_MAC,
                config.mac_key_hex.expose(),
            ),
            (ZMK_LABEL, KeySpec::TDES_ZMK, config.zmk_hex.expose()),
        ] {
            let key = ClearKey::from_hex(material).map_err(|error| invalid(error.to_string()))?;
            hsm.import_key(label, spec, key)
                .await
                .map_err(|error| invalid(error.to_string()))?;
        }
        let shared = Arc::new(Shared {
            hsm,
            ledger: Mutex::new(Ledger::new(&config).map_err(invalid)?),
            faults: Mutex::new(FaultPlan::new(config.faults.clone())),
            stats: Mutex::new(SimStats::default()),
            key_change: tokio::sync::Mutex::new(()),
        });
        let listener = TcpListener::bind(&config.listen).await?;
        let addr = listener.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let admin_addr = match &config.admin_listen {
            Some(admin) => {
                let admin = TcpListener::bind(admin).await?;
                let admin_addr = admin.local_addr()?;
                tokio::spawn(admin::serve(admin, shared.clone(), shutdown_rx.clone()));
                tracing::info!(%admin_addr, "bank sim: admin endpoint (GET /ledger)");
                Some(admin_addr)
            }
            None => None,
        };
        let accept_task = tokio::spawn(server::accept_loop(listener, shared.clone(), shutdown_rx));
        tracing::info!(%addr, accounts = config.accounts.len(), "bank sim: listening");
        Ok(BankSim {
            addr,
            admin_addr,
            shared,
            shutdown,
            accept_task,
        })
    }

    /// The address it listens on (the real port when configured with `:0`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin endpoint's address (`GET /ledger`), when configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The books with every transaction's effects, as `GET /ledger` shows them.
    pub fn ledger_dump(&self) -> LedgerDump {
        lock(&self.shared.ledger).dump()
    }

    /// A copy of the books: per account and totals per currency.
    pub fn ledger(&self) -> LedgerSnapshot {
        lock(&self.shared.ledger).snapshot()
    }

    /// The acknowledgement file this bank sends `partner` (posgate's name for
    /// it, e.g. `bank:acquirer`) for `business_date`: its settlement cycle
    /// of that date, from its own ledger by RRN (what each RRN's sales,
    /// captures and refunds changed since the previous cycle, reversals
    /// netted), with `faults` applied to the file only. The first call for a
    /// date closes the cycle; later calls for it give the same items.
    pub fn acknowledgement(
        &self,
        partner: &str,
        business_date: chrono::NaiveDate,
        faults: &AckFaults,
    ) -> String {
        let cycle = lock(&self.shared.ledger).settle_cycle(business_date);
        let items = ack::apply_faults(ack::items_from_cycle(&cycle), faults);
        let file_id = format!("SIM-{}", business_date.format("%Y%m%d"));
        ack::render(partner, business_date, &file_id, &items)
    }

    /// Replaces the fault config (and restarts its generator from its seed).
    /// An invalid config is ignored with a warning; check it with [`FaultConfig::validate`].
    pub fn set_faults(&self, faults: FaultConfig) {
        if let Err(reason) = faults.validate() {
            tracing::warn!(%reason, "bank sim: fault config rejected");
            return;
        }
        *lock(&self.shared.faults) = FaultPlan::new(faults);
    }

    /// A copy of the counters.
    pub fn stats(&self) -> SimStats {
        lock(&self.shared.stats).clone()
    }

    /// The newest version of the simulator's MAC key (1 at start, +1 per key change).
    pub async fn mac_key_version(&self) -> u32 {
        self.shared
            .hsm
            .key_info(&KeyRef::latest(MAC_KEY_LABEL))
            .await
            .map_or(0, |info| info.version)
    }

    /// Stops accepting, closes every connection (answers not yet sent are dropped) and waits.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        if let Err(error) = self.accept_task.await {
            tracing::error!(%error, "bank sim: accept loop ended abnormally");
        }
    }
}

/// `posgate sim bank --config FILE`: loads the TOML, starts the simulator,
/// prints its address on stdout and runs until Ctrl-C or SIGTERM.
pub async fn run(config_path: &Path) -> Result<(), SimError> {
    let config = SimConfig::from_file(config_path)?;
    let sim = BankSim::start(config).await?;
    println!("bank simulator listening on {}", sim.addr());
    if let Some(admin) = sim.admin_addr() {
        println!("bank simulator ledger: curl http://{admin}/ledger");
    }
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
