//! E-wallets: top-ups, payments and refunds at wallet operators over the
//! signed partner API, card links, and the card-funded sagas (card top-up,
//! auto-reload). The same rules as card payments keep every wallet movement
//! known: a request is recorded (`in_progress`) before it is sent, its
//! answer is recorded before the POS hears it, and an unknown outcome is
//! reversed at the operator by the store-and-forward worker.
//!
//! # Layout
//! - [`config`]: `[[wallet_operator]]`: URL, keys, TLS files, limits.
//! - [`operators`]: the operators and their connectors; settlement lines.
//! - [`answers`]: the answers of money-moving calls, read before their commit.
//! - [`checks`]: the wallet rules checked with the request's fields.
//! - [`outcome`]: the operator's answer as recorded; decline reasons; reversals.
//! - [`service`]: the application service, one function per `WalletService` RPC.
//! - [`links`]: `LinkCard` and `UnlinkCard`.
//! - [`saga`]: card top-ups and auto-reload, step by step.
//! - [`steps`]: a saga's steps (card SALE, auto-reload `TOP_UP`), each
//!   recorded before its call; the crash tests' crash points.
//! - [`compensation`]: undoing a failed saga's steps, and the recovery of
//!   sagas a crash cut off.
//! - [`tokens`]: card-on-file tokens (HSM-enciphered PAN and expiry).
//! - [`saf`]: the wallet store-and-forward worker (reversals, recoveries).
//! - [`error`]: why a wallet call gave no result.

pub mod answers;
pub mod checks;
pub mod compensation;
pub mod config;
pub mod error;
pub mod links;
pub mod operators;
pub mod outcome;
pub mod saf;
pub mod saga;
pub mod service;
pub mod steps;
pub mod tokens;

pub use checks::{CheckedWallet, WalletId, WalletRefInput};
pub use error::WalletError;
pub use operators::{Operator, Wallets, wallet_lines};
pub use service::WalletService;
