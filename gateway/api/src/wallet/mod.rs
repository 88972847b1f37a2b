//! E-wallets on the API side: the wallet service's answers as protobuf. The
//! service itself (top-ups, payments, refunds, card links, the auto-reload
//! saga and the store-and-forward worker) is `posgate_core::wallet`; the
//! wallet operators' connectors are built by the `posgate` binary.
//!
//! # Layout
//! - [`view`]: records as `posgate.v1.WalletTransaction` and card links as
//!   `WalletCardLink`; the `WalletAnswers` port's implementation.

pub mod view;
