//! The biller's endpoints on the shared partner-simulator server: inquiry
//! (a read, never faulted), payment notice and cancel (faulted), each applied
//! to the ledger.

use std::sync::Mutex;

use http::StatusCode;

use super::ledger::Ledger;
use crate::http_server::FaultConfig;
use crate::http_server::server::{
    Answer, PartnerService, json, now_rfc3339, parse, problem, status_answer, unknown_transaction,
};
use crate::lock;
use posgate_partners::bill::api::{
    self, BillCancelRequest, BillInquiryRequest, BillInquiryResponse, BillPaymentNotice,
};

/// Counters of what the biller simulator applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BillerCounters {
    pub inquiries: u64,
    pub notices: u64,
    pub cancels: u64,
    pub status_inquiries: u64,
}

/// Which operation a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Inquiry,
    Notice,
    Cancel,
}

/// The biller: its ledger and operation counters.
#[derive(Debug)]
pub struct BillerService {
    pub(crate) ledger: Mutex<Ledger>,
    pub(crate) counters: Mutex<BillerCounters>,
}

impl BillerService {
    pub fn new(ledger: Ledger) -> Self {
        Self {
            ledger: Mutex::new(ledger),
            counters: Mutex::new(BillerCounters::default()),
        }
    }
}

impl PartnerService for BillerService {
    type Operation = Operation;
    const NAME: &'static str = "biller sim";

    fn operation(path: &str) -> Option<Operation> {
        Some(match path {
            api::INQUIRIES_PATH => Operation::Inquiry,
            api::PAYMENTS_PATH => Operation::Notice,
            api::CANCELLATIONS_PATH => Operation::Cancel,
            _ => return None,
        })
    }

    const FAULTABLE: &'static [&'static str] = &["notice", "cancel"];

    fn operation_name(operation: Operation) -> &'static str {
        match operation {
            Operation::Inquiry => "inquiry",
            Operation::Notice => "notice",
            Operation::Cancel => "cancel",
        }
    }

    fn apply(&self, operation: Operation, body: &[u8], faults: &FaultConfig) -> Answer {
        let now = now_rfc3339();
        let answer = match operation {
            Operation::Inquiry => {
                parse::<BillInquiryRequest>(body, BillInquiryRequest::check).map(|request| {
                    lock(&self.counters).inquiries += 1;
                    inquire(self, &request)
                })
            }
            Operation::Notice => {
                parse::<BillPaymentNotice>(body, BillPaymentNotice::check).map(|notice| {
                    lock(&self.counters).notices += 1;
                    let mut ledger = lock(&self.ledger);
                    let result = match faults.decline_all.as_deref() {
                        Some(code) => ledger.reject_notice(&notice, code, &now),
                        None => ledger.notify(&notice, &now),
                    };
                    json(StatusCode::OK, &result)
                })
            }
            Operation::Cancel => {
                parse::<BillCancelRequest>(body, BillCancelRequest::check).map(|request| {
                    lock(&self.counters).cancels += 1;
                    match lock(&self.ledger).cancel(&request, &now) {
                        Some(result) => json(StatusCode::OK, &result),
                        None => unknown_transaction(
                            "original_transaction_id",
                            "original_transaction_id is not a payment notice this biller received",
                        ),
                    }
                })
            }
        };
        answer.unwrap_or_else(|answer| answer)
    }

    fn ledger_json(&self) -> serde_json::Value {
        lock(&self.ledger).dump()
    }

    fn transaction_status(&self, id: &str) -> Answer {
        lock(&self.counters).status_inquiries += 1;
        status_answer(id, |id| lock(&self.ledger).status(id))
    }
}

fn inquire(service: &BillerService, request: &BillInquiryRequest) -> Answer {
    match lock(&service.ledger).inquire(&request.biller_id, &request.bill_reference) {
        Some(bill) => json(StatusCode::OK, &BillInquiryResponse { bill }),
        None => problem(
            StatusCode::NOT_FOUND,
            "unknown-bill",
            "the biller holds no such bill".into(),
            Some("bill_reference".into()),
        ),
    }
}
