//! The answers of the wallet service's money-moving calls: a transaction as
//! its answer shows it (with its saga's card SALE and auto-reload, a
//! refund with its payment), read once before the commit that stores its
//! encoding under the key, so a replay gets the bytes the first call got.

use super::service::WalletService;
use crate::model::wallet::{
    SagaPart, WalletAnswer, WalletRecord, WalletRefund, WalletTransaction, WalletType,
};
use crate::ports::db::{SagaKind, StoreError};

impl WalletService {
    /// The answer a call (or its retry) gets for `record`: a refund's shows
    /// its payment, whose refunded amount `original_refunded_minor`
    /// overrides when set.
    pub(crate) async fn answer_of(
        &self,
        record: &WalletRecord,
        original_refunded_minor: Option<i64>,
    ) -> Result<WalletAnswer, StoreError> {
        let transaction = WalletTransaction {
            record: record.clone(),
            refund_ids: Vec::new(),
            saga: self.saga_part(record).await?,
        };
        Ok(match record.wallet_type {
            WalletType::TopUp => WalletAnswer::TopUp(transaction),
            WalletType::Payment => WalletAnswer::Payment(transaction),
            WalletType::Refund => {
                let original_id = record.original_transaction_id.clone().unwrap_or_default();
                let original = self.db.wallet_transaction(&original_id).await?;
                let mut refunds = self.db.wallet_refund_ids(&original_id).await?;
                if !refunds.contains(&record.id) {
                    refunds.push(record.id.clone());
                    refunds.sort();
                }
                WalletAnswer::Refund(Box::new(WalletRefund {
                    refund: transaction,
                    original: original.map(|mut original| {
                        if let Some(refunded) = original_refunded_minor {
                            original.refunded_minor = refunded;
                        }
                        WalletTransaction {
                            record: original,
                            refund_ids: refunds,
                            saga: None,
                        }
                    }),
                }))
            }
        })
    }

    /// The encoded answer (the bytes the key keeps).
    pub(crate) fn encode(&self, answer: &WalletAnswer) -> Vec<u8> {
        match answer {
            WalletAnswer::TopUp(transaction) => self.answers.topped_up(transaction),
            WalletAnswer::Payment(transaction) => self.answers.paid(transaction),
            WalletAnswer::Refund(refund) => self.answers.refunded(refund),
        }
    }

    /// The encoded answer of `record` (see [`Self::answer_of`]).
    pub(crate) async fn answer_bytes(
        &self,
        record: &WalletRecord,
        original_refunded_minor: Option<i64>,
    ) -> Result<Vec<u8>, StoreError> {
        let answer = self.answer_of(record, original_refunded_minor).await?;
        Ok(self.encode(&answer))
    }

    /// What a wallet transaction's saga adds to its view: the card SALE of
    /// a card top-up or auto-reload, the auto-reload of a payment, the
    /// parent of an auto-reload top-up.
    pub(crate) async fn saga_part(
        &self,
        record: &WalletRecord,
    ) -> Result<Option<SagaPart>, StoreError> {
        if self.payments.is_none() {
            return Ok(None);
        }
        let saga = match (record.wallet_type, record.funding.as_str()) {
            (WalletType::Payment, _) | (WalletType::TopUp, "card") => {
                self.db.saga(&record.id).await?
            }
            (WalletType::TopUp, "auto_reload") => self.db.saga_of_step(&record.id).await?,
            _ => None,
        };
        let Some(saga) = saga else {
            return Ok(None);
        };
        let card = self.db.card_transaction(&saga.card_transaction_id).await?;
        let mut part = SagaPart {
            card,
            reload_minor: saga.reload_minor,
            currency: saga.currency.clone(),
            top_up_transaction_id: String::new(),
            parent_transaction_id: String::new(),
        };
        if record.wallet_type == WalletType::Payment {
            if let Some(id) = &saga.top_up_transaction_id
                && self.db.wallet_transaction(id).await?.is_some()
            {
                part.top_up_transaction_id.clone_from(id);
            }
        } else if saga.kind == SagaKind::AutoReload {
            part.parent_transaction_id.clone_from(&saga.saga_id);
        }
        Ok(Some(part))
    }
}
