//! The wallet operator's endpoints on the shared partner-simulator server:
//! which POSTs exist, which are faulted, and how each is applied to the ledger.

use std::sync::Mutex;

use http::StatusCode;

use super::ledger::{Ledger, Outcome, RC_OTHER};
use super::stats::WalletSimStats;
use crate::http_server::FaultConfig;
use crate::http_server::server::{
    Answer, PartnerService, json, now_rfc3339, parse, problem, status_answer, unknown_transaction,
};
use crate::lock;
use posgate_partners::wallet::api::{
    self, BalanceRequest, DeclineCode, PaymentRequest, RefundRequest, ResultStatus,
    ReversalRequest, ReversalResult, ReversalStatus, TopUpRequest, WalletBalance, WalletResult,
};

/// Which operation a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    TopUp,
    Payment,
    Refund,
    Reversal,
    Balance,
}

/// The wallet operator: its ledger and operation counters.
#[derive(Debug)]
pub struct WalletService {
    pub(crate) ledger: Mutex<Ledger>,
    pub(crate) stats: Mutex<WalletSimStats>,
}

impl WalletService {
    pub fn new(ledger: Ledger) -> Self {
        Self {
            ledger: Mutex::new(ledger),
            stats: Mutex::new(WalletSimStats::default()),
        }
    }
}

impl PartnerService for WalletService {
    type Operation = Operation;
    const NAME: &'static str = "wallet sim";

    fn operation(path: &str) -> Option<Operation> {
        Some(match path {
            api::TOP_UPS_PATH => Operation::TopUp,
            api::PAYMENTS_PATH => Operation::Payment,
            api::REFUNDS_PATH => Operation::Refund,
            api::REVERSALS_PATH => Operation::Reversal,
            api::BALANCE_PATH => Operation::Balance,
            _ => return None,
        })
    }

    const FAULTABLE: &'static [&'static str] = &["top_up", "payment", "refund", "reversal"];

    fn operation_name(operation: Operation) -> &'static str {
        match operation {
            Operation::TopUp => "top_up",
            Operation::Payment => "payment",
            Operation::Refund => "refund",
            Operation::Reversal => "reversal",
            Operation::Balance => "balance",
        }
    }

    fn apply(&self, operation: Operation, body: &[u8], faults: &FaultConfig) -> Answer {
        apply(self, operation, body, faults.decline_all.as_deref())
    }

    fn ledger_json(&self) -> serde_json::Value {
        lock(&self.ledger).dump()
    }

    fn transaction_status(&self, id: &str) -> Answer {
        lock(&self.stats).status_inquiries += 1;
        status_answer(id, |id| lock(&self.ledger).status(id))
    }
}

fn result_of(transaction_id: &str, outcome: Outcome) -> WalletResult {
    WalletResult {
        transaction_id: transaction_id.to_owned(),
        status: outcome.status,
        decline_code: outcome.decline_code,
        operator_response_code: outcome.response_code.to_owned(),
        operator_reference: outcome.operator_reference,
        wallet: outcome.wallet,
        balance_after: outcome.balance_after,
        processed_at: outcome.processed_at,
    }
}

fn declined_by_fault(transaction_id: &str, code: &str) -> WalletResult {
    let code: String = code.chars().take(16).collect();
    WalletResult {
        transaction_id: transaction_id.to_owned(),
        status: ResultStatus::Declined,
        decline_code: Some(DeclineCode::Other),
        operator_response_code: if code.is_empty() {
            RC_OTHER.to_owned()
        } else {
            code
        },
        operator_reference: None,
        wallet: None,
        balance_after: None,
        processed_at: now_rfc3339(),
    }
}

/// A top-up, payment or refund: declined by the `decline_all` fault without
/// touching the books, or applied by `move_money`.
fn money_move(
    service: &WalletService,
    decline_all: Option<&str>,
    transaction_id: &str,
    move_money: impl FnOnce(&mut Ledger) -> Option<Outcome>,
) -> Answer {
    if let Some(code) = decline_all {
        return json(StatusCode::OK, &declined_by_fault(transaction_id, code));
    }
    match move_money(&mut lock(&service.ledger)) {
        Some(outcome) => json(StatusCode::OK, &result_of(transaction_id, outcome)),
        None => unknown_transaction(
            "original_transaction_id",
            "original_transaction_id is not a transaction of this operator",
        ),
    }
}

fn apply(
    service: &WalletService,
    operation: Operation,
    body: &[u8],
    decline_all: Option<&str>,
) -> Answer {
    let now = now_rfc3339();
    let answer = match operation {
        Operation::TopUp => parse::<TopUpRequest>(body, TopUpRequest::check).map(|request| {
            lock(&service.stats).top_ups += 1;
            money_move(service, decline_all, &request.transaction_id, |ledger| {
                Some(ledger.top_up(&request, &now))
            })
        }),
        Operation::Payment => parse::<PaymentRequest>(body, PaymentRequest::check).map(|request| {
            lock(&service.stats).payments += 1;
            money_move(service, decline_all, &request.transaction_id, |ledger| {
                Some(ledger.pay(&request, &now))
            })
        }),
        Operation::Refund => parse::<RefundRequest>(body, RefundRequest::check).map(|request| {
            lock(&service.stats).refunds += 1;
            money_move(service, decline_all, &request.transaction_id, |ledger| {
                ledger.refund(&request, &now)
            })
        }),
        Operation::Reversal => {
            parse::<ReversalRequest>(body, ReversalRequest::check).map(|request| {
                lock(&service.stats).reversals += 1;
                let (status, balance_after) =
                    lock(&service.ledger).reverse(&request.original_transaction_id);
                json(
                    StatusCode::OK,
                    &ReversalResult {
                        original_transaction_id: request.original_transaction_id,
                        decline_code: (status == ReversalStatus::Refused)
                            .then_some(DeclineCode::InsufficientBalance),
                        status,
                        balance_after,
                        processed_at: now,
                    },
                )
            })
        }
        Operation::Balance => parse::<BalanceRequest>(body, BalanceRequest::check).map(|request| {
            lock(&service.stats).balance_inquiries += 1;
            balance(service, &request, now)
        }),
    };
    answer.unwrap_or_else(|answer| answer)
}

fn balance(service: &WalletService, request: &BalanceRequest, now: String) -> Answer {
    match lock(&service.ledger).balance(&request.wallet) {
        Some((wallet, balance, limits, blocked)) => json(
            StatusCode::OK,
            &WalletBalance {
                wallet,
                balance,
                limits,
                blocked,
                as_of: now,
            },
        ),
        None => problem(
            StatusCode::NOT_FOUND,
            "unknown-wallet",
            "the operator does not know this wallet".into(),
            Some("wallet".into()),
        ),
    }
}
