//! posgate-partners: how posgate talks to the banks and partners it forwards
//! payments to.
//!
//! # Layout
//! - [`iso8583`]: the spec-driven ISO 8583 codec and its partner dialects.
//! - [`api`]: Partner API v1's shared primitives (money, channel, status
//!   look-ups, problems, field checks) that the wallet and bill endpoints use.
//! - [`http`]: the partner HTTP API: RFC 9421 signatures, Content-Digest,
//!   replay window, the pooled mTLS client with retries and circuit breakers.
//!   The client is the `http-client` feature (default on; it brings hyper).
//! - [`bank`]: the bank protocol and the bank link (TCP, MAC, sign-on,
//!   keepalive, key change).
//! - [`wallet`]: e-wallet operators over the partner API: wire models, the
//!   call error and (`http-client`) the typed client.
//! - [`bill`]: online billers over the partner API: wire models, the call
//!   error and (`http-client`) the typed client.
//! - [`metrics`]: the partner call metrics (count by outcome, latency) the
//!   bank link and the partner API calls record.
//!
//! The bank, wallet and biller simulators are the crate `posgate-sims`
//! (`partners/sim/`), which uses this crate's public API.

pub mod api;
pub mod bank;
pub mod bill;
pub mod http;
pub mod iso8583;
pub mod metrics;
pub mod wallet;
