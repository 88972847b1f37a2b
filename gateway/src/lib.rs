//! posgate-gateway: the POS-facing gRPC services, the idempotent transaction
//! store, and the `posgate` binary's subcommands.
//!
//! # Layout
//! - [`access`]: caller identities from SPIFFE ids, the role × service table, its enforcement.
//! - [`config`]: the TOML configuration, checked once at load.
//! - [`access`]: who is calling, from the mTLS client certificate (contract shim).
//! - [`audit`]: the audit chain's checkpoints, verification, search and export views.
//! - [`money`]: currencies, amount bounds, fee contracts with explicit rounding.
//! - [`business_day`]: store time zones and cutoffs to business dates.
//! - [`clock`]: the current time, replaceable in tests.
//! - [`clearing`]: business-day close, partner clearing files, signatures, fees, net positions.
//! - [`bill`]: bill collection: slip barcodes, the biller registry, the domain rules.
//! - [`payments`]: card payments: card checks, BIN routing, bank links, reversals.
//! - [`wallet`]: e-wallet operators: config, views, the reversal worker.
//! - [`store`]: the transaction store trait and its SQLite and PostgreSQL backends.
//! - [`idempotency`]: request fingerprints and what differs between two requests.
//! - [`grpc`]: the gRPC service layer: validation, error details, limits, services.
//! - [`server`]: mTLS, access control, health, reflection, graceful shutdown: `posgate serve`.
//! - [`mtls`]: the server side of mutual TLS: client verifier with CRL reload, bounded handshakes.
//! - [`signing_keys`]: the public keys that verify checkpoints and clearing files.
//! - [`tls`]: client TLS settings and the development PKI (`posgate certs`, demo, tests).
//! - [`load`]: `posgate load`, the load generator.

pub mod access;
pub mod audit;
pub mod bill;
pub mod business_day;
pub mod clearing;
pub mod clock;
pub mod config;
pub mod grpc;
pub mod idempotency;
pub mod load;
pub mod money;
pub mod mtls;
pub mod payments;
pub mod server;
pub mod signing_keys;
pub mod store;
pub mod tls;
pub mod wallet;
