//! The bank side of posgate: ISO 8583 messages to an acquiring bank.
//!
//! # Layout
//! - [`protocol`]: typed builders and parsers of the messages on the bank
//!   link (contract section 2), the length-prefixed framing and the MAC
//!   helpers, shared by the link and the bank simulator (`posgate-sims`).
//! - [`link`]: the persistent, multiplexed TCP (optionally TLS) connection to
//!   one bank: sign-on, echo, key change, MAC, matching, timeouts, reconnect.

pub mod link;
pub mod protocol;
