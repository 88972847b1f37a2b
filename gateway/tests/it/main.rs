//! posgate integration tests (the `posgate` package): one binary, one module per area.
//! Tests that need PostgreSQL read `POSGATE_TEST_PG_URL` and print why they
//! skip it when it is not set.

// The bad-input table is one long function by nature, its mutations are
// boxed closures, and helpers return the Option-wrapped fields proto wants.
#![allow(
    clippy::too_many_lines,
    clippy::type_complexity,
    clippy::unnecessary_wraps
)]

mod access;
mod audit;
mod autoreload;
mod bad_input;
mod bank_wire;
mod bills;
mod cards;
mod cards_chaos;
mod chaos;
mod clearing;
mod idempotency;
mod instances;
mod keys;
mod leadership;
mod load;
mod metrics;
mod online_bills;
mod reconciliation;
mod server;
mod settlement;
mod store_suite;
mod support;
mod wallets;
