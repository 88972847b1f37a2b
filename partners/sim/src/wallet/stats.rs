//! Counters of what the wallet simulator saw, for tests and the demo.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalletSimStats {
    pub requests: u64,
    /// Refused with 401 (signature, digest, replay).
    pub unauthorized: u64,
    /// Answered from the idempotency store.
    pub idempotent_replays: u64,
    /// Idempotency-Key reused with a different body (409).
    pub conflicts: u64,
    pub top_ups: u64,
    pub payments: u64,
    pub refunds: u64,
    pub reversals: u64,
    pub balance_inquiries: u64,
    pub status_inquiries: u64,
    pub faults_injected: u64,
}
