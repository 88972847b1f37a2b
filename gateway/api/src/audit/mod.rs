//! The audit API side: the transaction views auditors search and export,
//! and the page-token filter encoding. The domain (sealing, verifying, the
//! audit service) is `posgate_core::audit`; the chain itself is written by
//! the database, in the same transaction as every event.
//!
//! # Layout
//! - [`view`]: store rows to `TransactionSummary`, events to `TransactionEvent`.
//! - [`export`]: the CSV and JSON Lines export formats.
//! - [`token`]: the filter encoding a page token binds.

pub mod export;
pub mod token;
pub mod view;
