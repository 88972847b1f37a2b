//! E-wallets on the API side: the wallet service's answers as protobuf, and
//! the wallet operators' connectors built from their config. The service
//! itself (top-ups, payments, refunds, card links, the auto-reload saga and
//! the store-and-forward worker) is `posgate_core::wallet`.
//!
//! # Layout
//! - [`view`]: records as `posgate.v1.WalletTransaction` and card links as
//!   `WalletCardLink`; the `WalletAnswers` port's implementation.

pub mod view;

use std::collections::BTreeMap;
use std::sync::Arc;

use posgate_core::wallet::config::WalletOperatorConfig;
use posgate_core::wallet::{Operator, Wallets};
use posgate_hsm::Hsm;

/// Builds a client per operator (connections open lazily). Fails on
/// unreadable TLS files.
pub fn start(configs: &[WalletOperatorConfig], hsm: &Arc<dyn Hsm>) -> Result<Wallets, String> {
    let mut operators = BTreeMap::new();
    for config in configs {
        operators.insert(
            config.id.clone(),
            Arc::new(Operator {
                config: config.clone(),
                client: crate::connectors::wallet_operator(config, hsm)?,
            }),
        );
    }
    Ok(Wallets {
        operators,
        hsm: Arc::clone(hsm),
    })
}
