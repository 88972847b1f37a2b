//! Reconciliation's domain: partner acknowledgement files (`ack`) and the
//! matching of a file against the day's items (`matching`).

pub mod ack;
pub mod matching;
