//! The wallet side of posgate: e-wallet operators reached over the signed
//! partner HTTP API (see `partners/openapi/partner-api-v1.yaml`).
//!
//! # Layout
//! - [`api`]: the wire models of the wallet endpoints (serde JSON) and their checks.
//! - [`client`]: `WalletOperatorClient`, typed calls over [`crate::http::PartnerClient`].

pub mod api;
pub mod client;
