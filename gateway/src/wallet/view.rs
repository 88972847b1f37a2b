//! Wallet records as `posgate.v1.WalletTransaction`, and the operator's
//! decline codes as posgate's decline reasons and cashier texts.

use posgate_partners::wallet::api::DeclineCode;
use posgate_proto::v1 as pb;

use crate::payments::view::timestamp;
use posgate_core::ports::db::{TransactionStatus, WalletRecord, WalletType};

/// posgate's decline reason (stored by name) and the cashier's text.
pub fn decline_of(code: Option<DeclineCode>) -> (&'static str, &'static str) {
    match code {
        Some(DeclineCode::InsufficientBalance) => {
            ("INSUFFICIENT_BALANCE", "Wallet balance too low")
        }
        Some(DeclineCode::BalanceLimitExceeded) => (
            "BALANCE_LIMIT_EXCEEDED",
            "Wallet would exceed its maximum balance",
        ),
        Some(DeclineCode::TransactionLimitExceeded) => (
            "TRANSACTION_LIMIT_EXCEEDED",
            "Amount over the wallet's limit",
        ),
        Some(DeclineCode::WalletBlocked) => ("WALLET_BLOCKED", "Wallet is blocked"),
        Some(DeclineCode::WalletNotFound) => {
            ("WALLET_NOT_FOUND", "Wallet not known to the operator")
        }
        Some(DeclineCode::CodeExpired) => {
            ("CODE_EXPIRED", "Member code expired; ask for a new one")
        }
        _ => ("OTHER", "Declined by the wallet operator"),
    }
}

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

/// The proto view of a wallet transaction.
pub fn transaction(record: &WalletRecord, refund_ids: Vec<String>) -> pb::WalletTransaction {
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
