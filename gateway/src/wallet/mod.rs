//! E-wallet top-ups, payments and refunds at wallet operators, over the
//! signed partner API (`posgate_partners::wallet`). The same rules as card
//! payments keep every wallet movement known: a request is recorded
//! (`in_progress`) before it is sent, its answer is recorded before the POS
//! hears it, and an unknown outcome is reversed at the operator by the
//! store-and-forward worker, which survives restarts.
//!
//! # Layout
//! - `posgate_core::wallet::config`: `[[wallet_operator]]`: URL, keys, TLS files, limits.
//! - [`view`]: records as `posgate.v1.WalletTransaction`; decline reasons.
//! - [`reload`]: card top-ups and auto-reload: saga steps, compensation,
//!   card-on-file tokens, and the recovery pass the `saf` worker runs.
//! - [`saf`]: the wallet store-and-forward worker (reversals) and the
//!   recovery of requests cut off by a crash.

pub mod reload;
pub mod saf;
pub mod view;

use std::collections::BTreeMap;
use std::sync::Arc;

use posgate_core::ports::partners::WalletOperator;
use posgate_hsm::Hsm;

use posgate_core::ports::db::{SettlementLine, WalletRecord, WalletType};
use posgate_core::wallet::config::WalletOperatorConfig;

/// One operator: its settings and its connector (see `crate::connectors`).
#[derive(Debug)]
pub struct Operator {
    pub config: WalletOperatorConfig,
    pub client: Arc<dyn WalletOperator>,
}

/// The wallet operators the services share.
#[derive(Debug)]
pub struct Wallets {
    pub operators: BTreeMap<String, Arc<Operator>>,
    pub hsm: Arc<dyn Hsm>,
}

impl Wallets {
    /// Builds a client per operator (connections open lazily). Fails on
    /// unreadable TLS files.
    pub fn start(configs: &[WalletOperatorConfig], hsm: &Arc<dyn Hsm>) -> Result<Self, String> {
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
        Ok(Self {
            operators,
            hsm: Arc::clone(hsm),
        })
    }

    /// A keyed digest (HMAC-SHA256 in the HSM, hex) of a wallet credential,
    /// for idempotency comparison without keeping the credential.
    pub async fn keyed_digest(
        &self,
        operator: &Operator,
        data: &str,
    ) -> Result<String, posgate_hsm::HsmError> {
        let key = posgate_hsm::KeyRef::latest(&operator.config.fingerprint_key);
        Ok(hex::encode(
            self.hsm.hmac(&key, data.as_bytes()).await?.bytes,
        ))
    }

    pub fn operator(&self, id: &str) -> Option<&Arc<Operator>> {
        self.operators.get(id)
    }

    /// The longest time one call may take, all attempts and backoff
    /// included: past it, an `in_progress` request has lost its caller.
    pub fn longest_call(&self) -> std::time::Duration {
        self.operators
            .values()
            .map(|op| op.client.longest_call())
            .max()
            .unwrap_or(std::time::Duration::from_secs(30))
    }
}

/// The settlement lines of a completed wallet transaction; they sum to zero.
/// A cash top-up: the store holds cash it owes the operator. A payment: the
/// operator owes the store. A refund: the reverse of a payment.
pub fn wallet_lines(record: &WalletRecord) -> Vec<SettlementLine> {
    let (store_side, kind) = match record.wallet_type {
        WalletType::TopUp => (-record.amount_minor, "wallet_top_up"),
        WalletType::Payment => (record.amount_minor, "wallet_payment"),
        WalletType::Refund => (-record.amount_minor, "wallet_refund"),
    };
    vec![
        SettlementLine {
            party: format!("store:{}", record.store_id),
            kind: kind.to_owned(),
            currency: record.currency.clone(),
            amount_minor: store_side,
        },
        SettlementLine {
            party: format!("wallet:{}", record.wallet_operator_id),
            kind: kind.to_owned(),
            currency: record.currency.clone(),
            amount_minor: -store_side,
        },
    ]
}
