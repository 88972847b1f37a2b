//! The partner HTTP API's security layer, shared by posgate's client and the
//! partner simulators: RFC 9421 message signatures (Ed25519 through the
//! HSM), RFC 9530 `Content-Digest`, the replay window.
//!
//! # Layout
//! - [`structured`]: the bounded RFC 8941 parse of the signature and digest
//!   headers, through the `sfv` crate.
//! - [`digest`]: `Content-Digest: sha-256=:…:` make and check.
//! - [`signature`]: signature base, `Signer` (HSM) and `Verifier` (public keys).
//! - [`replay`]: the bounded nonce cache and the signature age window.
//! - [`tls`]: rustls client and server settings from PEM files (mutual TLS).
//! - [`breaker`]: the per-partner circuit breaker.
//! - [`api_error`]: `ApiCallError`, what a typed call without a usable answer
//!   ends in (hyper-free: callers match on it through ports).
//! - `client` (feature `http-client`): `PartnerClient`, pooled HTTPS with
//!   signing, verification, timeouts, idempotent-only retries and the breaker.
//! - `json` (feature `http-client`): typed JSON POST and status-inquiry calls
//!   over it, shared by the wallet and biller clients.

pub mod api_error;
pub mod breaker;
#[cfg(feature = "http-client")]
pub mod client;
pub mod digest;
#[cfg(feature = "http-client")]
pub mod json;
pub mod replay;
pub mod signature;
pub mod structured;
pub mod tls;

#[cfg(test)]
mod signature_tests;

pub use api_error::ApiCallError;
pub use breaker::{BreakerConfig, BreakerState};
#[cfg(feature = "http-client")]
pub use client::{
    CallError, ClientSettings, PartnerClient, PartnerRequest, PartnerResponse, Retry,
};
pub use digest::{CONTENT_DIGEST, content_digest, verify_content_digest};
pub use replay::{MAX_CLOCK_SKEW_S, MAX_SIGNATURE_AGE_S, NonceCache, ReplayError};
pub use signature::{RequestParts, SignatureError, Signer, Verified, Verifier};
pub use tls::{TlsError, TlsFiles};

/// Locks a mutex, recovering the data if a holder panicked: every critical
/// section here leaves its data consistent before anything can panic.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Now as Unix seconds, for `created` and the replay window.
pub fn unix_now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}
