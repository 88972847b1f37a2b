//! posgate-gateway integration tests: one binary, one module per area.
//! Tests that need PostgreSQL read `POSGATE_TEST_PG_URL` and print why they
//! skip it when it is not set.

mod bad_input;
mod bills;
mod idempotency;
mod server;
mod store_suite;
mod support;
