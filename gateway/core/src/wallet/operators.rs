//! The wallet operators: each one's settings and its connector, the HSM of
//! their credentials and card-on-file tokens, and the settlement lines of a
//! completed wallet transaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use posgate_hsm::Hsm;

use super::config::WalletOperatorConfig;
use crate::model::transaction::SettlementLine;
use crate::model::wallet::{WalletRecord, WalletType};
use crate::ports::partners::WalletOperator;

/// One operator: its settings and its connector (built by the binary).
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
            party: crate::model::Party::Store(record.store_id.clone()).to_string(),
            kind: kind.to_owned(),
            currency: record.currency.clone(),
            amount_minor: store_side,
        },
        SettlementLine {
            party: crate::model::Party::Wallet(record.wallet_operator_id.clone()).to_string(),
            kind: kind.to_owned(),
            currency: record.currency.clone(),
            amount_minor: -store_side,
        },
    ]
}
