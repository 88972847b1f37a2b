//! posgate: the `posgate` binary's library, what `main` and the integration
//! tests share. [`server`] is the composition root: it opens the database
//! (posgate-store), builds the core services (posgate-core) and the partner
//! connectors, starts every worker with one shutdown signal and serves the
//! gRPC services of posgate-api.
//!
//! # Layout
//! - [`server`]: `posgate serve`: the composition root, health, reflection, graceful shutdown.
//! - [`ops`]: the operations endpoint: Prometheus metrics (`GET /metrics`) on a listener of its own.
//! - [`connectors`]: the partner API clients built from config behind the core's wallet operator and biller ports.
//! - [`tls`]: client TLS settings and the development PKI (`posgate certs`, demo, load, tests).
//! - [`bench`]: the audit and clearing bench seeders (`posgate audit bench`, `posgate clearing bench`).
//! - [`load`]: `posgate load`, the load generator.

pub mod bench;
pub mod connectors;
pub mod load;
pub mod ops;
pub mod server;
pub mod tls;
