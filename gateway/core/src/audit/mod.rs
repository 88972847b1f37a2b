//! The audit domain: the hash chain's canonical entry, sealing it with
//! HSM-signed checkpoints, verifying it, and the application service behind
//! auditors' reads. The chain itself is written by the database port's
//! implementation, in the same transaction as every event.
//!
//! # Layout
//! - [`service`]: the audit application service: caller and filter rules, searches and their pages, histories, verification, exports, the audit-read entry of every call.
//! - [`chain`]: the canonical entry, its hashes and checkpoints.
//! - [`config`]: the `[audit]` section.
//! - [`seal`]: signs checkpoints; the background sealer of `posgate serve`.
//! - [`verify`]: `VerifyChain`, streaming over the chain in bounded batches.
//! - [`page_token`]: authenticated, filter-bound page tokens.
//! - [`signing_keys`]: the public keys that verify checkpoints and clearing files.

pub mod chain;
pub mod config;
pub mod page_token;
pub mod seal;
pub mod service;
pub mod signing_keys;
pub mod verify;

use std::sync::Arc;

use posgate_hsm::Hsm;

use crate::ports::db::Database;

pub use config::{AuditConfig, RawAudit};

/// What the audit service and the sealer share.
#[derive(Debug, Clone)]
pub struct Audit {
    pub db: Arc<dyn Database>,
    pub hsm: Arc<dyn Hsm>,
    pub config: AuditConfig,
    /// The PAN fingerprint key's label (card payments' setting).
    pub pan_fingerprint_key: String,
}
