//! posgate-api: the POS-facing gRPC services. Each handler converts the
//! protobuf request into the core's input, calls one `posgate_core` service
//! function, and converts the result into the protobuf answer or a `Status`
//! with its google.rpc details. The `posgate` binary builds the services and
//! serves them.
//!
//! # Layout
//! - [`access`]: caller identities from SPIFFE ids, the role × service table, its enforcement.
//! - [`metered`]: the RPC metrics the access layer records (calls by method and code, latency).
//! - `oversize`: tonic's refusal of an oversize request, recognized once for the size layer and the metrics.
//! - [`mtls`]: the server side of mutual TLS: client verifier with CRL reload, bounded handshakes.
//! - [`validate`]: wire-shape checks of every request, collecting every violation.
//! - [`payments`]: `CardInput` read into the core's card; card records and results as `PaymentService` messages.
//! - [`wallet`]: wallet records, card links and results as `WalletService` messages.
//! - [`bill`]: the bill service's results as `BillPaymentService` messages.
//! - [`audit`]: search and export views for `AuditService`, the page-token filter encoding.
//! - [`grpc`]: the services themselves, their shared state, admission, limits and error statuses.

pub mod access;
pub mod audit;
pub mod bill;
pub mod grpc;
pub mod metered;
pub mod mtls;
mod oversize;
pub mod payments;
pub mod validate;
pub mod wallet;

/// The google.rpc.ErrorInfo domain of posgate's errors.
pub const ERROR_DOMAIN: &str = "posgate.v1";
