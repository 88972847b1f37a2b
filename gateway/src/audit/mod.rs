//! The audit domain: sealing the hash chain with HSM-signed checkpoints,
//! verifying it, and the transaction views auditors search and export.
//! The chain itself is written by the database backends (`posgate_store::audit`), in the same
//! database transaction as every event.
//!
//! # Layout
//! - [`seal`]: signs checkpoints; the background sealer of `posgate serve`.
//! - [`verify`]: `VerifyChain`, streaming over the chain in bounded batches.
//! - [`view`]: store rows to `TransactionSummary`, events to `TransactionEvent`.
//! - [`export`]: the CSV and JSON Lines export formats.
//! - [`token`]: authenticated, filter-bound page tokens.
//! - [`bench`]: `posgate audit bench`, seeding N transactions and measuring.

pub mod bench;
pub mod export;
pub mod seal;
pub mod token;
pub mod verify;
pub mod view;

use std::sync::Arc;

use posgate_core::audit::AuditConfig;
use posgate_hsm::Hsm;

use posgate_core::ports::db::Database;

/// What the audit service and the sealer share.
#[derive(Debug, Clone)]
pub struct Audit {
    pub store: Arc<dyn Database>,
    pub hsm: Arc<dyn Hsm>,
    pub config: AuditConfig,
    /// The PAN fingerprint key's label (card payments' setting).
    pub pan_fingerprint_key: String,
}
