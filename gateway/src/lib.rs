//! posgate-gateway: the POS-facing gRPC services, the domain services and
//! workers not yet moved into posgate-core, and the `posgate` binary's
//! subcommands. The transaction database is posgate-store.
//!
//! # Layout
//! - [`access`]: caller identities from SPIFFE ids, the role × service table, its enforcement.
//! - [`audit`]: the audit chain's checkpoints, verification, search and export views.
//! - [`clearing`]: business-day close, partner clearing files, signatures, fees, net positions.
//! - [`bill`]: bill collection: slip barcodes, the biller registry, the domain rules.
//! - [`payments`]: card payments: card checks, BIN routing, bank links, reversals.
//! - [`wallet`]: e-wallet operators: config, views, the reversal worker.
//! - [`grpc`]: the gRPC service layer: validation, error details, limits, services.
//! - [`server`]: mTLS, access control, health, reflection, graceful shutdown: `posgate serve`.
//! - [`mtls`]: the server side of mutual TLS: client verifier with CRL reload, bounded handshakes.
//! - [`signing_keys`]: the public keys that verify checkpoints and clearing files.
//! - [`tls`]: client TLS settings and the development PKI (`posgate certs`, demo, tests).
//! - [`load`]: `posgate load`, the load generator.

pub mod access;
pub mod audit;
pub mod bill;
pub mod clearing;
pub mod grpc;
pub mod load;
pub mod mtls;
pub mod payments;
pub mod server;
pub mod signing_keys;
pub mod tls;
pub mod wallet;
