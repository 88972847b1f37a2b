//! posgate-gateway: the POS-facing gRPC services, the domain services and
//! workers not yet moved into posgate-core, and the `posgate` binary's
//! subcommands. The transaction database is posgate-store.
//!
//! # Layout
//! - [`access`]: caller identities from SPIFFE ids, the role × service table, its enforcement.
//! - [`audit`]: the audit API side: search and export views, the page-token filter encoding, the audit bench.
//! - [`clearing`]: the clearing bench seeder (clearing itself is `posgate_core::clearing`).
//! - [`connectors`]: the partner API clients built from config behind the core's wallet operator and biller ports.
//! - [`bill`]: bill payments on the API side: the bill service's results as `BillPaymentService` messages (the bill service is `posgate_core::bill`).
//! - [`payments`]: card payments on the API side: `CardInput` read into the core's card, records and results as `PaymentService` messages (the card service is `posgate_core::cards`).
//! - [`wallet`]: e-wallet operators: config, views, the reversal worker.
//! - [`grpc`]: the gRPC service layer: validation, error details, limits, services.
//! - [`server`]: mTLS, access control, health, reflection, graceful shutdown: `posgate serve`.
//! - [`mtls`]: the server side of mutual TLS: client verifier with CRL reload, bounded handshakes.
//! - [`tls`]: client TLS settings and the development PKI (`posgate certs`, demo, tests).
//! - [`load`]: `posgate load`, the load generator.

pub mod access;
pub mod audit;
pub mod bill;
pub mod clearing;
pub mod connectors;
pub mod grpc;
pub mod load;
pub mod mtls;
pub mod payments;
pub mod server;
pub mod tls;
pub mod wallet;
