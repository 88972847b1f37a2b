//! `WalletService`'s answers: wallet transactions as
//! `posgate.v1.WalletTransaction`, card links as `WalletCardLink`, and the
//! stored answers' encoding (the `WalletAnswers` port).

use posgate_proto::v1 as pb;
use prost::Message as _;

use crate::payments::view::{self as card_view, timestamp};
use posgate_core::cards::config::CardConfig;
use posgate_core::model::link::{CardLink, LinkStatus};
use posgate_core::model::transaction::TransactionStatus;
use posgate_core::model::wallet::{
    LinkedCard, UnlinkedCard, WalletRecord, WalletRefund, WalletTransaction, WalletType,
};
use posgate_core::ports::answers::WalletAnswers;
use posgate_core::wallet::service::Balance;

fn decline_reason(name: &str) -> pb::WalletDeclineReason {
    match name {
        "" => pb::WalletDeclineReason::Unspecified,
        "INSUFFICIENT_BALANCE" => pb::WalletDeclineReason::InsufficientBalance,
        "BALANCE_LIMIT_EXCEEDED" => pb::WalletDeclineReason::BalanceLimitExceeded,
        "TRANSACTION_LIMIT_EXCEEDED" => pb::WalletDeclineReason::TransactionLimitExceeded,
        "WALLET_BLOCKED" => pb::WalletDeclineReason::WalletBlocked,
        "WALLET_NOT_FOUND" => pb::WalletDeclineReason::WalletNotFound,
        "CODE_EXPIRED" => pb::WalletDeclineReason::CodeExpired,
        "FUNDING_CARD_DECLINED" => pb::WalletDeclineReason::FundingCardDeclined,
        "AUTO_RELOAD_DECLINED" => pb::WalletDeclineReason::AutoReloadDeclined,
        _ => pb::WalletDeclineReason::Other,
    }
}

pub fn status(status: TransactionStatus) -> pb::WalletTransactionStatus {
    match status {
        TransactionStatus::InProgress => pb::WalletTransactionStatus::InProgress,
        TransactionStatus::Completed => pb::WalletTransactionStatus::Completed,
        TransactionStatus::Declined => pb::WalletTransactionStatus::Declined,
        TransactionStatus::PendingReversal => pb::WalletTransactionStatus::PendingReversal,
        TransactionStatus::Reversed => pb::WalletTransactionStatus::Reversed,
        _ => pb::WalletTransactionStatus::Unspecified,
    }
}

fn money(amount_minor: i64, currency: &str) -> pb::Money {
    pb::Money {
        amount_minor,
        currency: currency.to_owned(),
    }
}

/// How a top-up was paid for (`funding` as stored: cash, card, `auto_reload`).
fn funding(record: &WalletRecord) -> pb::WalletFunding {
    match (record.wallet_type, record.funding.as_str()) {
        (WalletType::TopUp, "card") => pb::WalletFunding::Card,
        (WalletType::TopUp, "auto_reload") => pb::WalletFunding::AutoReload,
        (WalletType::TopUp, _) => pb::WalletFunding::Cash,
        _ => pb::WalletFunding::Unspecified,
    }
}

/// The proto view of a wallet record alone.
pub fn record(record: &WalletRecord, refund_ids: Vec<String>) -> pb::WalletTransaction {
    let outcome = &record.outcome;
    let kind = match record.wallet_type {
        WalletType::TopUp => pb::WalletTransactionType::TopUp,
        WalletType::Payment => pb::WalletTransactionType::Payment,
        WalletType::Refund => pb::WalletTransactionType::Refund,
    };
    let completed = record.status == TransactionStatus::Completed;
    pb::WalletTransaction {
        transaction_id: record.id.clone(),
        r#type: kind as i32,
        status: status(record.status) as i32,
        wallet: (!outcome.account_id.is_empty()).then(|| pb::WalletIdentity {
            wallet_operator_id: record.wallet_operator_id.clone(),
            wallet_account_id: outcome.account_id.clone(),
            display_id: outcome.display_id.clone(),
            wallet_operator_name: outcome.operator_name.clone(),
        }),
        amount: Some(money(record.amount_minor, &record.currency)),
        balance_after: outcome
            .balance_after_minor
            .filter(|_| completed)
            .map(|balance| money(balance, &record.currency)),
        decline_reason: if record.status == TransactionStatus::Declined {
            decline_reason(&outcome.decline_reason) as i32
        } else {
            pb::WalletDeclineReason::Unspecified as i32
        },
        operator_response_code: outcome.operator_response_code.clone(),
        response_text: outcome.response_text.clone(),
        operator_reference: outcome.operator_reference.clone(),
        funding: funding(record) as i32,
        card_transaction: None,
        auto_reload: None,
        refunded_amount: Some(money(
            if record.wallet_type == WalletType::Payment {
                record.refunded_minor
            } else {
                0
            },
            &record.currency,
        )),
        original_transaction_id: record.original_transaction_id.clone().unwrap_or_default(),
        refund_transaction_ids: refund_ids,
        parent_transaction_id: String::new(),
        business_date: record.business_date.format("%Y-%m-%d").to_string(),
        store_id: record.store_id.clone(),
        terminal_id: record.terminal_id.clone(),
        operator_id: record.operator_id.clone(),
        client_request_id: record.client_request_id.clone(),
        pos_reference: record.pos_reference.clone(),
        created_at: Some(timestamp(record.created_at)),
        updated_at: Some(timestamp(record.updated_at)),
    }
}

/// The proto view of a wallet transaction, with what its saga adds (its
/// card SALE shown with `card_config`).
pub fn transaction(
    transaction: &WalletTransaction,
    card_config: Option<&CardConfig>,
) -> pb::WalletTransaction {
    let mut view = record(&transaction.record, transaction.refund_ids.clone());
    let Some(saga) = &transaction.saga else {
        return view;
    };
    let card = match (&saga.card, card_config) {
        (Some(card), Some(config)) => Some(card_view::card_transaction(card, Vec::new(), config)),
        _ => None,
    };
    if transaction.record.wallet_type == WalletType::Payment {
        view.auto_reload = Some(pb::AutoReload {
            amount: Some(money(saga.reload_minor, &saga.currency)),
            card_transaction: card,
            top_up_transaction_id: saga.top_up_transaction_id.clone(),
        });
    } else {
        view.card_transaction = card;
        view.parent_transaction_id
            .clone_from(&saga.parent_transaction_id);
    }
    view
}

/// The proto view of a card link.
pub fn link(link: &CardLink, operator_name: &str) -> pb::WalletCardLink {
    pb::WalletCardLink {
        link_id: link.link_id.clone(),
        status: match link.status {
            LinkStatus::Active => pb::WalletCardLinkStatus::Active,
            LinkStatus::Declined => pb::WalletCardLinkStatus::Declined,
            LinkStatus::Unlinked => pb::WalletCardLinkStatus::Unlinked,
        } as i32,
        wallet: Some(pb::WalletIdentity {
            wallet_operator_id: link.wallet_operator_id.clone(),
            wallet_account_id: link.account_id.clone(),
            display_id: link.display_id.clone(),
            wallet_operator_name: operator_name.to_owned(),
        }),
        masked_pan: link.masked_pan.clone(),
        card_brand: crate::payments::card::brand_from_name(&link.card_brand) as i32,
        auto_reload: Some(pb::AutoReloadSettings {
            enabled: link.auto_reload,
            step: link
                .auto_reload
                .then(|| money(link.step_minor, &link.currency)),
        }),
        store_id: link.store_id.clone(),
        terminal_id: link.terminal_id.clone(),
        operator_id: link.operator_id.clone(),
        linked_at: Some(timestamp(link.linked_at)),
        unlinked_at: link.unlinked_at.map(timestamp),
    }
}

/// `GetBalanceResponse`.
pub fn balance(balance: &Balance) -> pb::GetBalanceResponse {
    let wire = &balance.balance;
    let money = |m: &posgate_partners::wallet::api::Money| money(m.amount_minor, &m.currency);
    pb::GetBalanceResponse {
        wallet: Some(pb::WalletIdentity {
            wallet_operator_id: balance.operator_id.clone(),
            wallet_account_id: wire.wallet.account_id.clone(),
            display_id: wire.wallet.display_id.clone(),
            wallet_operator_name: wire.wallet.operator_name.clone(),
        }),
        balance: Some(money(&wire.balance)),
        limits: Some(pb::WalletLimits {
            max_balance: wire.limits.max_balance.as_ref().map(money),
            max_top_up: wire.limits.max_top_up.as_ref().map(money),
            max_payment: wire.limits.max_payment.as_ref().map(money),
            remaining_daily_spend: None,
        }),
        card_link: balance
            .link
            .as_ref()
            .map(|found| link(found, &balance.operator_name)),
        as_of: Some(timestamp(balance.as_of)),
    }
}

/// The stored answers of `WalletService`: the protobuf answer messages,
/// encoded. The same functions build the answer a call returns, so a
/// replay gets the bytes the first call got.
#[derive(Debug)]
pub struct ProtoWalletAnswers {
    /// The card configuration, when cards are taken (the views of card SALEs
    /// and verifications).
    pub card_config: Option<CardConfig>,
}

impl ProtoWalletAnswers {
    pub fn top_up_response(&self, transaction: &WalletTransaction) -> pb::TopUpResponse {
        pb::TopUpResponse {
            transaction: Some(self::transaction(transaction, self.card_config.as_ref())),
        }
    }

    pub fn pay_response(&self, transaction: &WalletTransaction) -> pb::PayResponse {
        pb::PayResponse {
            transaction: Some(self::transaction(transaction, self.card_config.as_ref())),
        }
    }

    pub fn refund_response(&self, refund: &WalletRefund) -> pb::WalletRefundResponse {
        let config = self.card_config.as_ref();
        pb::WalletRefundResponse {
            refund: Some(transaction(&refund.refund, config)),
            original: refund
                .original
                .as_ref()
                .map(|original| transaction(original, config)),
        }
    }

    pub fn link_response(&self, linked: &LinkedCard) -> pb::LinkCardResponse {
        let verification = self.card_config.as_ref().map(|config| {
            let mut view = card_view::card_transaction(&linked.verification, Vec::new(), config);
            view.r#type = pb::CardTransactionType::Verification as i32;
            view.status = if linked.approved {
                pb::CardTransactionStatus::Verified
            } else {
                pb::CardTransactionStatus::Declined
            } as i32;
            view
        });
        pb::LinkCardResponse {
            link: Some(link(&linked.link, &linked.operator_name)),
            verification,
        }
    }

    pub fn unlink_response(unlinked: &UnlinkedCard) -> pb::UnlinkCardResponse {
        pb::UnlinkCardResponse {
            link: Some(link(&unlinked.link, &unlinked.operator_name)),
        }
    }
}

impl WalletAnswers for ProtoWalletAnswers {
    fn topped_up(&self, transaction: &WalletTransaction) -> Vec<u8> {
        self.top_up_response(transaction).encode_to_vec()
    }

    fn paid(&self, transaction: &WalletTransaction) -> Vec<u8> {
        self.pay_response(transaction).encode_to_vec()
    }

    fn refunded(&self, refund: &WalletRefund) -> Vec<u8> {
        self.refund_response(refund).encode_to_vec()
    }

    fn linked(&self, linked: &LinkedCard) -> Vec<u8> {
        self.link_response(linked).encode_to_vec()
    }

    fn unlinked(&self, unlinked: &UnlinkedCard) -> Vec<u8> {
        Self::unlink_response(unlinked).encode_to_vec()
    }
}
