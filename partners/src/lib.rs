//! posgate-partners: how posgate talks to the banks and partners it forwards
//! payments to.
//!
//! # Layout
//! - [`iso8583`]: the spec-driven ISO 8583 codec and its partner dialects.
//! - [`http`]: the partner HTTP API: RFC 9421 signatures, Content-Digest,
//!   replay window, the pooled mTLS client with retries and circuit breakers.
//! - [`bank`]: the bank link (TCP, MAC, sign-on, keepalive, key change) and
//!   the bank simulator with its own card ledger.
//! - [`wallet`]: e-wallet operators over the partner API: wire models, the
//!   typed client, and the wallet simulator with its own ledger.
//! - [`bill`]: online billers over the partner API: wire models, the typed
//!   client, and the biller simulator with its ledger of outstanding bills.
//! - [`partner_sim`]: what the wallet and biller simulators share: the
//!   signed HTTPS server, idempotency store and seeded fault plan.

pub mod bank;
pub mod bill;
pub mod http;
pub mod iso8583;
pub mod partner_sim;
pub mod wallet;
