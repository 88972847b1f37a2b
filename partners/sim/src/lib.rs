//! posgate-sims: stand-ins for the banks and partners posgate talks to, each
//! a real server with its own ledger and seeded fault injection. Used by the
//! `posgate sim` and `posgate demo` commands, the load runs and the tests;
//! never linked into a production library. They speak the wire formats of
//! [`posgate_partners`] (ISO 8583 codec, bank protocol, signed partner HTTP
//! API) through its public API.
//!
//! # Layout
//! - [`bank`]: the ISO 8583 bank simulator (`posgate sim bank`) with its own
//!   card ledger, settlement acknowledgements and admin endpoint.
//! - [`wallet`]: the e-wallet operator simulator (`posgate sim wallet`), a
//!   real HTTPS server with its own wallet ledger.
//! - [`biller`]: the online biller simulator (`posgate sim biller`) with its
//!   ledger of outstanding bills.
//! - [`http_server`]: what the wallet and biller simulators share: the
//!   signed HTTPS server, idempotency store and seeded fault plan.
//! - [`test_keys`]: the published TEST keys of the demo, the example
//!   configuration and the conformance suite.

pub mod bank;
pub mod biller;
pub mod http_server;
pub mod test_keys;
pub mod wallet;

/// Locks a mutex, recovering the data if a holder panicked: every critical
/// section here leaves its data consistent before anything can panic.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
