//! The wallet side of posgate: e-wallet operators reached over the signed
//! partner HTTP API (see `partners/openapi/partner-api-v1.yaml`).
//!
//! # Layout
//! - [`api`]: the wire models of the wallet endpoints (serde JSON) and their checks.
//! - `client` (feature `http-client`): `WalletOperatorClient`, typed calls over
//!   `crate::http::PartnerClient`.

pub mod api;
#[cfg(feature = "http-client")]
pub mod client;

/// Why a wallet call has no usable answer.
pub type WalletCallError = crate::http::ApiCallError;
