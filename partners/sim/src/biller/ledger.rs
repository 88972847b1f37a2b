//! The biller's books: outstanding bills, payment notices and cancels, each
//! applied once per transaction id. Pure: no I/O, no clock (callers pass
//! `now`), so the rules are tested directly.

use std::collections::{BTreeMap, HashMap};

use super::config::BillerSimConfig;
use posgate_partners::bill::api::{
    Bill, BillCancelRequest, BillCancelResult, BillPaymentNotice, BillPaymentResult, BillStatus,
    CancelRejectCode, CancelStatus, NoticeRejectCode, NoticeStatus,
};
use posgate_partners::wallet::api::{Money, TransactionKind, TransactionState};

/// Response codes the biller puts in `partner_response_code`.
pub const RC_ACCEPTED: &str = "00";
pub const RC_NOT_FOUND: &str = "14";
pub const RC_ALREADY_PAID: &str = "94";
pub const RC_AMOUNT_MISMATCH: &str = "13";
pub const RC_EXPIRED: &str = "54";
pub const RC_OTHER: &str = "96";
pub const RC_CUTOFF: &str = "90";
pub const RC_NOT_PAID: &str = "25";

type BillKey = (String, String);

#[derive(Debug, Clone)]
struct BillRecord {
    amount_minor: i64,
    due_date: Option<String>,
    status: BillStatus,
    payer_display_name: Option<String>,
}

/// One notice or cancel as the biller recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub transaction_id: String,
    pub kind: TransactionKind,
    pub state: TransactionState,
    pub biller_id: String,
    pub bill_reference: String,
    pub amount_minor: i64,
    pub business_date: String,
    /// The notice a cancel cancels.
    pub original_transaction_id: Option<String>,
    pub processed_at: String,
}

/// The books at one moment, for tests and reconciliation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerSnapshot {
    /// Every notice and cancel by transaction id.
    pub entries: BTreeMap<String, Entry>,
    /// Each bill's status by (biller id, bill reference).
    pub bills: BTreeMap<(String, String), BillStatus>,
}

impl LedgerSnapshot {
    /// Sum of accepted notices not cancelled: what the biller expects in settlement.
    pub fn collected_minor(&self) -> i64 {
        self.entries
            .values()
            .filter(|entry| {
                entry.kind == TransactionKind::BillPayment
                    && entry.state == TransactionState::Accepted
            })
            .map(|entry| entry.amount_minor)
            .sum()
    }
}

#[derive(Debug)]
pub struct Ledger {
    currency: String,
    closed_through: Option<String>,
    bills: HashMap<BillKey, BillRecord>,
    entries: HashMap<String, Entry>,
    notice_results: HashMap<String, BillPaymentResult>,
    cancel_results: HashMap<String, BillCancelResult>,
    next_reference: u64,
}

impl Ledger {
    pub fn new(config: &BillerSimConfig) -> Self {
        let bills = config
            .bills
            .iter()
            .map(|bill| {
                (
                    (bill.biller_id.clone(), bill.bill_reference.clone()),
                    BillRecord {
                        amount_minor: bill.amount_minor,
                        due_date: bill.due_date.clone(),
                        status: bill.status,
                        payer_display_name: bill.payer_display_name.clone(),
                    },
                )
            })
            .collect();
        Self {
            currency: config.currency.clone(),
            closed_through: config.closed_through.clone(),
            bills,
            entries: HashMap::new(),
            notice_results: HashMap::new(),
            cancel_results: HashMap::new(),
            next_reference: 1,
        }
    }

    /// The bill as the biller holds it, if it knows it.
    pub fn inquire(&self, biller_id: &str, bill_reference: &str) -> Option<Bill> {
        let record = self
            .bills
            .get(&(biller_id.to_owned(), bill_reference.to_owned()))?;
        Some(Bill {
            biller_id: biller_id.to_owned(),
            bill_reference: bill_reference.to_owned(),
            amount: Money::new(record.amount_minor, &self.currency),
            due_date: record.due_date.clone(),
            status: record.status,
            payer_display_name: record.payer_display_name.clone(),
        })
    }

    /// Applies a payment notice once per transaction id: the first answer is
    /// returned again for a repeat.
    pub fn notify(&mut self, notice: &BillPaymentNotice, now: &str) -> BillPaymentResult {
        if let Some(result) = self.notice_results.get(&notice.transaction_id) {
            return result.clone();
        }
        let key = (notice.biller_id.clone(), notice.bill_reference.clone());
        let verdict = match self.bills.get(&key) {
            None => Err((NoticeRejectCode::BillNotFound, RC_NOT_FOUND)),
            Some(bill) if bill.status == BillStatus::Paid => {
                Err((NoticeRejectCode::AlreadyPaid, RC_ALREADY_PAID))
            }
            Some(bill) if bill.status == BillStatus::Expired => {
                Err((NoticeRejectCode::Expired, RC_EXPIRED))
            }
            Some(bill) if bill.status == BillStatus::Cancelled => {
                Err((NoticeRejectCode::Other, RC_OTHER))
            }
            Some(bill)
                if bill.amount_minor != notice.amount.amount_minor
                    || notice.amount.currency != self.currency =>
            {
                Err((NoticeRejectCode::AmountMismatch, RC_AMOUNT_MISMATCH))
            }
            Some(_) => Ok(()),
        };
        let result = match verdict {
            Ok(()) => {
                if let Some(bill) = self.bills.get_mut(&key) {
                    bill.status = BillStatus::Paid;
                }
                let reference = format!("B{:09}", self.next_reference);
                self.next_reference += 1;
                BillPaymentResult {
                    transaction_id: notice.transaction_id.clone(),
                    status: NoticeStatus::Accepted,
                    reject_code: None,
                    partner_response_code: RC_ACCEPTED.to_owned(),
                    partner_reference: Some(reference),
                }
            }
            Err((code, response_code)) => {
                rejected_notice(&notice.transaction_id, code, response_code)
            }
        };
        self.record_notice(notice, &result, now);
        result
    }

    /// Records a notice rejected before the books were consulted (the
    /// `decline_all` fault), so a status inquiry finds it.
    pub fn reject_notice(
        &mut self,
        notice: &BillPaymentNotice,
        code: &str,
        now: &str,
    ) -> BillPaymentResult {
        if let Some(result) = self.notice_results.get(&notice.transaction_id) {
            return result.clone();
        }
        let code: String = code.chars().take(16).collect();
        let result = rejected_notice(&notice.transaction_id, NoticeRejectCode::Other, &code);
        self.record_notice(notice, &result, now);
        result
    }

    fn record_notice(&mut self, notice: &BillPaymentNotice, result: &BillPaymentResult, now: &str) {
        let state = match result.status {
            NoticeStatus::Accepted => TransactionState::Accepted,
            NoticeStatus::Rejected => TransactionState::Rejected,
        };
        self.entries.insert(
            notice.transaction_id.clone(),
            Entry {
                transaction_id: notice.transaction_id.clone(),
                kind: TransactionKind::BillPayment,
                state,
                biller_id: notice.biller_id.clone(),
                bill_reference: notice.bill_reference.clone(),
                amount_minor: notice.amount.amount_minor,
                business_date: notice.business_date.clone(),
                original_transaction_id: None,
                processed_at: now.to_owned(),
            },
        );
        self.notice_results
            .insert(notice.transaction_id.clone(), result.clone());
    }

    /// Applies a cancel once per transaction id; `None` when the original
    /// notice is unknown (a 404: nothing to cancel).
    pub fn cancel(&mut self, request: &BillCancelRequest, now: &str) -> Option<BillCancelResult> {
        if let Some(result) = self.cancel_results.get(&request.transaction_id) {
            return Some(result.clone());
        }
        let original = self.entries.get(&request.original_transaction_id)?.clone();
        if original.kind != TransactionKind::BillPayment {
            return None;
        }
        let verdict = match original.state {
            TransactionState::Cancelled => Ok(()),
            TransactionState::Accepted
                if self
                    .closed_through
                    .as_deref()
                    .is_some_and(|closed| original.business_date.as_str() <= closed) =>
            {
                Err((CancelRejectCode::CutoffPassed, RC_CUTOFF))
            }
            TransactionState::Accepted => {
                let key = (original.biller_id.clone(), original.bill_reference.clone());
                if let Some(bill) = self.bills.get_mut(&key) {
                    bill.status = BillStatus::Open;
                }
                if let Some(entry) = self.entries.get_mut(&original.transaction_id) {
                    entry.state = TransactionState::Cancelled;
                }
                Ok(())
            }
            _ => Err((CancelRejectCode::NotPaid, RC_NOT_PAID)),
        };
        let (status, reject_code, response_code) = match verdict {
            Ok(()) => (CancelStatus::Cancelled, None, RC_ACCEPTED),
            Err((code, response_code)) => (CancelStatus::Rejected, Some(code), response_code),
        };
        let result = BillCancelResult {
            transaction_id: request.transaction_id.clone(),
            original_transaction_id: request.original_transaction_id.clone(),
            status,
            reject_code,
            partner_response_code: response_code.to_owned(),
        };
        self.entries.insert(
            request.transaction_id.clone(),
            Entry {
                transaction_id: request.transaction_id.clone(),
                kind: TransactionKind::BillCancel,
                state: match status {
                    CancelStatus::Cancelled => TransactionState::Cancelled,
                    CancelStatus::Rejected => TransactionState::Rejected,
                },
                biller_id: original.biller_id,
                bill_reference: original.bill_reference,
                amount_minor: original.amount_minor,
                business_date: original.business_date,
                original_transaction_id: Some(request.original_transaction_id.clone()),
                processed_at: now.to_owned(),
            },
        );
        self.cancel_results
            .insert(request.transaction_id.clone(), result.clone());
        Some(result)
    }

    /// A notice's or cancel's kind, state, amount and time, for the status inquiry.
    pub fn status(
        &self,
        transaction_id: &str,
    ) -> Option<(TransactionKind, TransactionState, Money, String)> {
        let entry = self.entries.get(transaction_id)?;
        Some((
            entry.kind,
            entry.state,
            Money::new(entry.amount_minor, &self.currency),
            entry.processed_at.clone(),
        ))
    }

    pub fn entry(&self, transaction_id: &str) -> Option<&Entry> {
        self.entries.get(transaction_id)
    }

    /// The books as JSON for the admin endpoint: per bill its status, per
    /// transaction id (notice or cancel) what was applied, and the total
    /// collected.
    pub fn dump(&self) -> serde_json::Value {
        use serde_json::json;
        let snapshot = self.snapshot();
        let bills: Vec<serde_json::Value> = snapshot
            .bills
            .iter()
            .map(|((biller_id, reference), status)| {
                json!({"biller_id": biller_id, "bill_reference": reference, "status": status})
            })
            .collect();
        let transactions: serde_json::Map<String, serde_json::Value> = snapshot
            .entries
            .iter()
            .map(|(id, entry)| {
                (
                    id.clone(),
                    json!({
                        "kind": entry.kind,
                        "state": entry.state,
                        "biller_id": entry.biller_id,
                        "bill_reference": entry.bill_reference,
                        "amount_minor": entry.amount_minor,
                        "business_date": entry.business_date,
                        "original_transaction_id": entry.original_transaction_id,
                        "processed_at": entry.processed_at,
                    }),
                )
            })
            .collect();
        json!({
            "bills": bills,
            "transactions": transactions,
            "collected_minor": snapshot.collected_minor(),
        })
    }

    pub fn snapshot(&self) -> LedgerSnapshot {
        LedgerSnapshot {
            entries: self
                .entries
                .iter()
                .map(|(id, entry)| (id.clone(), entry.clone()))
                .collect(),
            bills: self
                .bills
                .iter()
                .map(|(key, bill)| (key.clone(), bill.status))
                .collect(),
        }
    }
}

fn rejected_notice(
    transaction_id: &str,
    code: NoticeRejectCode,
    response_code: &str,
) -> BillPaymentResult {
    BillPaymentResult {
        transaction_id: transaction_id.to_owned(),
        status: NoticeStatus::Rejected,
        reject_code: Some(code),
        partner_response_code: response_code.to_owned(),
        partner_reference: None,
    }
}
