//! What the partner API simulators (wallet operator, biller) share: the
//! HTTPS server with signature checks, idempotency and fault delivery, the
//! seeded fault plan, and starting, stopping and the `posgate sim` loop.
//! Each simulator adds only its wire endpoints and its ledger, as a
//! [`PartnerService`].
//!
//! # Layout
//! - [`faults`]: `FaultConfig` (serde, TOML) and the seeded `FaultPlan`.
//! - [`server`]: accept loop, TLS, HTTP, verification, idempotency, routing, faults.
//! - [`admin`]: the read-only `GET /ledger` endpoint on a loopback address.
//!
//! `RunningSim` (this file) binds, starts and stops one simulator; each
//! simulator's type is a `RunningSim` of its service (`WalletSim`, `BillerSim`).

pub mod admin;
pub mod faults;
pub mod server;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use posgate_hsm::{ClearKey, Hsm, KeySpec, SoftwareHsm};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use self::faults::{Fault, FaultConfig, FaultPlan};
use self::server::Shared;
pub use self::server::{Answer, PartnerService, ServerCounters};
use crate::lock;
use posgate_partners::http::{Signer, TlsFiles, Verifier};

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{0}")]
    Config(String),
    #[error("simulator I/O: {0}")]
    Io(#[from] std::io::Error),
}

fn invalid(reason: impl Into<String>) -> SimError {
    SimError::Config(reason.into())
}

/// A client public key a simulator accepts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientKeyConfig {
    pub key_id: String,
    /// Ed25519 public key, 64 hex digits.
    pub public_key_hex: String,
}

/// Parses 64 hex digits into 32 bytes.
pub fn parse_key_hex(name: &str, text: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(text).map_err(|_| format!("{name} is 64 hex digits"))?;
    bytes
        .try_into()
        .map_err(|_| format!("{name} is 64 hex digits (32 bytes)"))
}

/// Where and as whom a simulator serves (already validated by its config).
#[derive(Debug)]
pub struct ServerSettings<'a> {
    pub listen: &'a str,
    pub tls: &'a TlsFiles,
    /// HSM label of the simulator's signing key.
    pub signing_key_label: &'a str,
    pub signing_key_hex: &'a str,
    pub key_id: &'a str,
    pub client_keys: &'a [ClientKeyConfig],
    pub faults: FaultConfig,
    /// Loopback `IP:port` of the read-only `GET /ledger` endpoint, if any.
    pub admin_listen: Option<&'a str>,
}

/// A running partner simulator serving `S`.
pub struct RunningSim<S> {
    addr: SocketAddr,
    shared: Arc<Shared<S>>,
    shutdown: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
    admin: Option<(SocketAddr, JoinHandle<()>)>,
}

impl<S> fmt::Debug for RunningSim<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningSim")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl<S: PartnerService> RunningSim<S> {
    /// Loads the keys and TLS files, binds and starts serving `service`.
    pub async fn serve(settings: ServerSettings<'_>, service: S) -> Result<Self, SimError> {
        let hsm = SoftwareHsm::in_memory();
        let seed = parse_key_hex("signing_key_hex", settings.signing_key_hex).map_err(invalid)?;
        hsm.import_key(
            settings.signing_key_label,
            KeySpec::ED25519,
            ClearKey::new(seed.to_vec()),
        )
        .await
        .map_err(|error| invalid(error.to_string()))?;
        let signer = Signer::new(
            Arc::new(hsm),
            settings.signing_key_label,
            settings.key_id.to_owned(),
        );
        let mut keys = HashMap::new();
        for key in settings.client_keys {
            let public = parse_key_hex("client_keys.public_key_hex", &key.public_key_hex)
                .map_err(invalid)?;
            keys.insert(key.key_id.clone(), public);
        }
        let tls = posgate_partners::http::tls::server_config(settings.tls)
            .map_err(|error| invalid(error.to_string()))?;
        let shared = Arc::new(Shared::new(
            signer,
            Verifier::new(keys),
            service,
            FaultPlan::new(settings.faults),
        ));
        let listener = TcpListener::bind(settings.listen).await?;
        let addr = listener.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let accept_task = tokio::spawn(server::accept_loop(
            listener,
            acceptor,
            shared.clone(),
            shutdown_rx,
        ));
        tracing::info!(%addr, "{}: listening", S::NAME);
        let admin = match settings.admin_listen {
            Some(listen) => {
                let wanted = admin::check_loopback(listen).map_err(invalid)?;
                let listener = TcpListener::bind(wanted).await?;
                let admin_addr = listener.local_addr()?;
                tracing::info!(%admin_addr, "{}: ledger at GET /ledger", S::NAME);
                let task =
                    tokio::spawn(admin::serve(listener, shared.clone(), shutdown.subscribe()));
                Some((admin_addr, task))
            }
            None => None,
        };
        Ok(Self {
            addr,
            shared,
            shutdown,
            accept_task,
            admin,
        })
    }

    /// Where the read-only `GET /ledger` endpoint listens, if configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(addr, _)| *addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn service(&self) -> &S {
        &self.shared.service
    }

    pub fn counters(&self) -> ServerCounters {
        lock(&self.shared.counters).clone()
    }

    /// Replaces the fault config (an invalid one is ignored with a warning).
    pub fn set_faults(&self, faults: FaultConfig) {
        if let Err(reason) = faults.validate(S::FAULTABLE) {
            tracing::warn!(%reason, "{}: fault config rejected", S::NAME);
            return;
        }
        *lock(&self.shared.faults) = FaultPlan::new(faults);
    }

    /// Stops accepting, closes every connection and waits.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        if let Err(error) = self.accept_task.await {
            tracing::error!(%error, "{}: accept loop ended abnormally", S::NAME);
        }
        if let Some((_, task)) = self.admin
            && let Err(error) = task.await
        {
            tracing::error!(%error, "{}: admin loop ended abnormally", S::NAME);
        }
    }

    /// `posgate sim …`: prints `{what} listening on {addr}` (the line tools
    /// wait for), serves until Ctrl-C or SIGTERM, then stops.
    pub async fn run_until_stopped(self, what: &str) -> Result<(), SimError> {
        // The "listening" line first: tools wait for it as the first line.
        println!("{what} listening on {}", self.addr());
        if let Some(admin) = self.admin_addr() {
            println!("{what} ledger at http://{admin}/ledger");
        }
        wait_for_stop_signal().await?;
        self.shutdown().await;
        Ok(())
    }
}

/// Reads a simulator's TOML file and checks it with `validate`; errors name the file.
pub fn load_toml<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    validate: impl Fn(&T) -> Result<(), String>,
) -> Result<T, SimError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| SimError::Config(format!("cannot read {}: {error}", path.display())))?;
    parse_toml(&text, validate)
        .map_err(|error| SimError::Config(format!("{}: {error}", path.display())))
}

/// Parses a simulator's TOML text and checks it with `validate`.
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    validate: impl Fn(&T) -> Result<(), String>,
) -> Result<T, SimError> {
    let config: T = toml::from_str(text).map_err(|error| SimError::Config(error.to_string()))?;
    validate(&config).map_err(SimError::Config)?;
    Ok(config)
}

/// Waits for Ctrl-C or SIGTERM, the end of a `posgate sim` run.
#[cfg(unix)]
async fn wait_for_stop_signal() -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = terminate.recv() => Ok(()),
    }
}

/// Waits for Ctrl-C, the end of a `posgate sim` run.
#[cfg(not(unix))]
async fn wait_for_stop_signal() -> std::io::Result<()> {
    tokio::signal::ctrl_c().await
}
