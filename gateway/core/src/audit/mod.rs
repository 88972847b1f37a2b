//! The audit chain's domain: the canonical entry and its hashes (`chain`)
//! and the `[audit]` config section.

pub mod chain;
pub mod config;

pub use config::{AuditConfig, RawAudit};
