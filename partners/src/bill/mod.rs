//! The online-biller side of posgate: billers reached over the signed
//! partner HTTP API (see `partners/openapi/partner-api-v1.yaml`).
//!
//! # Layout
//! - [`api`]: the wire models of the bill endpoints (serde JSON) and their checks.
//! - `client` (feature `http-client`): `BillerClient`, typed calls over
//!   `crate::http::PartnerClient`.

pub mod api;
#[cfg(feature = "http-client")]
pub mod client;

/// Why a biller call has no usable answer.
pub type BillCallError = crate::http::ApiCallError;
