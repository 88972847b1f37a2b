//! Bill payments as the POS sees them (`posgate.v1.Bill`,
//! `posgate.v1.BillPayment`), the bill service's results as
//! `BillPaymentService` answers, and [`ProtoBillAnswers`], the core's port
//! for encoding the stored answers.

use posgate_proto::v1 as pb;
use prost::Message as _;

use crate::payments::view::timestamp;
use posgate_core::bill::service::InquiredBill;
use posgate_core::model::bill::BillPayment;
use posgate_core::model::business_day::format_date;
use posgate_core::model::transaction::TransactionStatus;
use posgate_core::ports::answers::BillAnswers;

/// The bill InquireBill reports.
pub fn inquired_bill(bill: &InquiredBill) -> pb::Bill {
    pb::Bill {
        biller_id: bill.biller_id.clone(),
        biller_name: bill.biller_name.clone(),
        agency_code: bill.agency_code.clone(),
        bill_reference: bill.bill_reference.clone(),
        due_date: bill.due_date.clone(),
        amount: Some(pb::Money {
            amount_minor: bill.amount_minor,
            currency: bill.currency.clone(),
        }),
        period: bill.period.clone(),
        late: bill.late,
    }
}

/// The answer of InquireBill.
pub fn inquire_response(bill: &InquiredBill) -> pb::InquireBillResponse {
    pb::InquireBillResponse {
        bill: Some(inquired_bill(bill)),
        business_date: format_date(bill.business_date),
    }
}

/// The API's view of a stored payment.
pub fn payment_message(payment: &BillPayment) -> pb::BillPayment {
    let record = &payment.record;
    let money = |amount_minor: i64| {
        Some(pb::Money {
            amount_minor,
            currency: record.currency.clone(),
        })
    };
    pb::BillPayment {
        transaction_id: record.id.clone(),
        status: match record.status {
            TransactionStatus::Paid => pb::BillPaymentStatus::Paid,
            TransactionStatus::Cancelled => pb::BillPaymentStatus::Cancelled,
            // The bill join only finds bill payments, which have no card states.
            _ => pb::BillPaymentStatus::Unspecified,
        }
        .into(),
        bill: Some(pb::Bill {
            biller_id: record.bill.biller_id.clone(),
            biller_name: payment.biller_name.clone(),
            agency_code: record.bill.agency_code.clone(),
            bill_reference: record.bill.bill_reference.clone(),
            due_date: record.bill.due_date.map(format_date).unwrap_or_default(),
            amount: money(record.amount_minor),
            period: record.bill.period.clone(),
            late: record.bill.late,
        }),
        fee: money(record.fee_minor),
        business_date: format_date(record.business_date),
        store_id: record.store_id.clone(),
        terminal_id: record.terminal_id.clone(),
        operator_id: record.operator_id.clone(),
        client_request_id: record.client_request_id.clone(),
        paid_at: Some(timestamp(record.created_at)),
        cancelled_at: record.cancelled_at.map(timestamp),
    }
}

/// The answer of PayBill.
pub fn pay_response(payment: &BillPayment) -> pb::PayBillResponse {
    pb::PayBillResponse {
        payment: Some(payment_message(payment)),
    }
}

/// The answer of CancelBill.
pub fn cancel_response(payment: &BillPayment) -> pb::CancelBillResponse {
    pb::CancelBillResponse {
        payment: Some(payment_message(payment)),
    }
}

/// The answer of GetBillPayment.
pub fn get_response(payment: &BillPayment) -> pb::GetBillPaymentResponse {
    pb::GetBillPaymentResponse {
        payment: Some(payment_message(payment)),
    }
}

/// The core's port for the stored answers of `BillPaymentService`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProtoBillAnswers;

impl BillAnswers for ProtoBillAnswers {
    fn paid(&self, payment: &BillPayment) -> Vec<u8> {
        pay_response(payment).encode_to_vec()
    }

    fn cancelled(&self, payment: &BillPayment) -> Vec<u8> {
        cancel_response(payment).encode_to_vec()
    }
}
