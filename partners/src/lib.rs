//! posgate-partners: how posgate talks to the banks and partners it forwards
//! payments to.
//!
//! # Layout
//! - [`iso8583`]: the spec-driven ISO 8583 codec and its partner dialects.
//! - [`bank`]: the bank link (TCP, MAC, sign-on, keepalive, key change) and
//!   the bank simulator with its own card ledger.

pub mod bank;
pub mod iso8583;
