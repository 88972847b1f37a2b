//! The audit chain's domain: its config section.

pub mod config;

pub use config::{AuditConfig, RawAudit};
