//! The wallet operator's answer as posgate records it: the new status,
//! what the operator said, the event; decline codes as posgate's decline
//! reasons and cashier texts; the reversal queue entry of a transaction.

use chrono::{DateTime, Utc};
use posgate_partners::wallet::WalletCallError;
use posgate_partners::wallet::api::{DeclineCode, ResultStatus, WalletResult};

use super::operators::Operator;
use crate::model::transaction::TransactionStatus;
use crate::model::wallet::{WalletOutcome, WalletRecord};
use crate::ports::db::{NewSafItem, SafKind};

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

/// What the operator's answer (or its absence) does to an `in_progress` record.
#[derive(Debug)]
pub struct OperatorOutcome {
    pub status: TransactionStatus,
    pub outcome: WalletOutcome,
    pub event_type: &'static str,
    pub detail: String,
}

/// What the operator's answer (or its absence) makes of the request.
pub fn operator_outcome(
    operator: &Operator,
    result: &Result<WalletResult, WalletCallError>,
) -> OperatorOutcome {
    match result {
        Ok(answer) => {
            let mut outcome = WalletOutcome {
                operator_response_code: answer.operator_response_code.chars().take(16).collect(),
                operator_reference: answer.operator_reference.clone().unwrap_or_default(),
                balance_after_minor: answer
                    .balance_after
                    .as_ref()
                    .map(|money| money.amount_minor),
                ..WalletOutcome::default()
            };
            if let Some(wallet) = &answer.wallet {
                outcome.account_id.clone_from(&wallet.account_id);
                outcome.display_id.clone_from(&wallet.display_id);
                outcome.operator_name.clone_from(&wallet.operator_name);
            }
            if outcome.operator_name.is_empty() {
                outcome.operator_name.clone_from(&operator.config.name);
            }
            if answer.status == ResultStatus::Completed {
                OperatorOutcome {
                    status: TransactionStatus::Completed,
                    outcome,
                    event_type: "completed",
                    detail: format!("operator answered {}", answer.operator_response_code),
                }
            } else {
                let (reason, text) = decline_of(answer.decline_code);
                reason.clone_into(&mut outcome.decline_reason);
                text.clone_into(&mut outcome.response_text);
                OperatorOutcome {
                    status: TransactionStatus::Declined,
                    outcome,
                    event_type: "declined",
                    detail: format!(
                        "operator declined {reason} ({})",
                        answer.operator_response_code
                    ),
                }
            }
        }
        Err(WalletCallError::Rejected { status, .. }) => OperatorOutcome {
            status: TransactionStatus::Declined,
            outcome: WalletOutcome {
                decline_reason: "OTHER".to_owned(),
                operator_response_code: format!("HTTP{status}"),
                response_text: "Refused by the wallet operator".to_owned(),
                operator_name: operator.config.name.clone(),
                ..WalletOutcome::default()
            },
            event_type: "declined",
            detail: format!("operator refused the request ({status})"),
        },
        Err(WalletCallError::OutcomeUnknown(reason)) => OperatorOutcome {
            status: TransactionStatus::PendingReversal,
            outcome: WalletOutcome::default(),
            event_type: "outcome_unknown",
            detail: reason.clone(),
        },
        Err(WalletCallError::Unavailable(reason)) => OperatorOutcome {
            status: TransactionStatus::Declined,
            outcome: WalletOutcome {
                decline_reason: "OTHER".to_owned(),
                response_text: "Wallet operator unavailable".to_owned(),
                ..WalletOutcome::default()
            },
            event_type: "not_sent",
            detail: reason.clone(),
        },
    }
}

/// The reversal queue entry of a wallet transaction.
pub fn reversal_of(record: &WalletRecord, now: DateTime<Utc>) -> NewSafItem {
    NewSafItem {
        link_id: record.wallet_operator_id.clone(),
        kind: SafKind::Reversal,
        amount_minor: record.amount_minor,
        currency: record.currency.clone(),
        next_attempt_at: now,
    }
}

/// The wallet operator's answer to a step, as the parent's or step's
/// outcome: completed, refused (with the decline reason), or unknown.
pub fn step_result(result: &Result<WalletResult, WalletCallError>) -> StepResult {
    match result {
        Ok(answer) if answer.status == ResultStatus::Completed => StepResult::Completed,
        Ok(answer) => StepResult::Refused(decline_of(answer.decline_code).0.to_owned()),
        Err(WalletCallError::Rejected { .. } | WalletCallError::Unavailable(_)) => {
            StepResult::Refused("OTHER".to_owned())
        }
        Err(WalletCallError::OutcomeUnknown(_)) => StepResult::Unknown,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepResult {
    Completed,
    Refused(String),
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_or_unavailable_call_is_a_step_refusal_and_no_answer_is_unknown() {
        let rejected = Err(WalletCallError::Rejected {
            status: 400,
            problem: None,
        });
        assert_eq!(
            step_result(&rejected),
            StepResult::Refused("OTHER".to_owned())
        );
        let unknown = Err(WalletCallError::OutcomeUnknown("timeout".to_owned()));
        assert_eq!(step_result(&unknown), StepResult::Unknown);
    }

    #[test]
    fn decline_codes_have_a_reason_and_a_cashier_text() {
        assert_eq!(
            decline_of(Some(DeclineCode::InsufficientBalance)).0,
            "INSUFFICIENT_BALANCE"
        );
        assert_eq!(decline_of(None).0, "OTHER");
    }
}
