//! Planning the records of a payment or a cancellation before anything is
//! stored: the transaction with its bill detail, the settlement lines (who
//! owes whom) and the event. Everything here is pure.

use chrono::{DateTime, Utc};

use super::checks::ReadBill;
use super::error::BillError;
use crate::model::business_day::{BusinessCalendar, StoreConfig};
use crate::model::transaction::{
    BillDetail, Event, SettlementLine, TransactionKind, TransactionRecord, TransactionStatus,
};
use crate::model::{Party, RequestContext};
use crate::ports::db::StatusChange;

/// Everything a payment writes, planned before anything is stored.
#[derive(Debug, Clone)]
pub struct PlannedPayment {
    pub record: TransactionRecord,
    pub lines: Vec<SettlementLine>,
    pub event: Event,
}

/// Plans a cash payment of `bill` with a cash amount the caller already
/// checked equals the slip's amount.
pub fn plan_payment(
    bill: &ReadBill<'_>,
    store: &StoreConfig,
    context: &RequestContext,
    transaction_id: String,
    now: DateTime<Utc>,
) -> PlannedPayment {
    let biller = bill.biller;
    let fee_minor = biller.fee.fee_minor(bill.amount_minor);
    let amount = i64::try_from(bill.amount_minor).expect("amounts are bounded far below i64::MAX");
    let fee = i64::try_from(fee_minor).expect("a fee never exceeds its amount");
    let record = TransactionRecord {
        id: transaction_id,
        kind: TransactionKind::BillPayment,
        status: TransactionStatus::Paid,
        store_id: context.store_id.clone(),
        terminal_id: context.terminal_id.clone(),
        operator_id: context.operator_id.clone(),
        client_request_id: context.client_request_id.clone(),
        partner_id: biller.id.clone(),
        amount_minor: amount,
        currency: biller.currency.code.to_owned(),
        fee_minor: fee,
        business_date: BusinessCalendar::from(store).business_date(now),
        created_at: now,
        updated_at: now,
        cancelled_at: None,
        cancel_reason: None,
        bill: BillDetail {
            biller_id: biller.id.clone(),
            agency_code: bill.slip.agency_code.clone(),
            bill_reference: bill.slip.bill_reference.clone(),
            due_date: bill.slip.has_due_date().then_some(bill.slip.due_date),
            period: bill.slip.period.clone().unwrap_or_default(),
            late: bill.late,
        },
    };
    let lines = payment_lines(&record);
    let event = Event::new(
        "bill_paid",
        None,
        TransactionStatus::Paid,
        &context.actor,
        format!(
            "cash {} {} for biller {}",
            record.amount_minor, record.currency, biller.id
        ),
    );
    PlannedPayment {
        record,
        lines,
        event,
    }
}

/// The obligations of a paid bill: the store owes the biller the amount
/// collected; the biller owes the chain its fee. They sum to zero.
pub fn payment_lines(record: &TransactionRecord) -> Vec<SettlementLine> {
    let line = |party: String, kind: &str, amount_minor: i64| SettlementLine {
        party,
        kind: kind.to_owned(),
        currency: record.currency.clone(),
        amount_minor,
    };
    let store = Party::Store(record.store_id.clone()).to_string();
    let biller = Party::Biller(record.partner_id.clone()).to_string();
    let mut lines = vec![
        line(store, "collection", -record.amount_minor),
        line(biller.clone(), "collection", record.amount_minor),
    ];
    if record.fee_minor > 0 {
        lines.push(line(biller, "fee", -record.fee_minor));
        lines.push(line(Party::Chain.to_string(), "fee", record.fee_minor));
    }
    lines
}

/// Everything a cancellation writes.
#[derive(Debug, Clone)]
pub struct PlannedCancel {
    pub change: StatusChange,
    /// The payment as it reads after the cancellation.
    pub record: TransactionRecord,
    pub lines: Vec<SettlementLine>,
    pub event: Event,
}

/// Plans the cancellation of `payment` at `now`: allowed only while its
/// business day is still the store's current one (before cutoff).
pub fn plan_cancel(
    payment: &TransactionRecord,
    store: &StoreConfig,
    context: &RequestContext,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<PlannedCancel, BillError> {
    if payment.status == TransactionStatus::Cancelled {
        return Err(BillError::AlreadyCancelled(payment.id.clone()));
    }
    let today = BusinessCalendar::from(store).business_date(now);
    if payment.business_date != today {
        return Err(BillError::BusinessDayClosed {
            transaction_id: payment.id.clone(),
            paid_on: payment.business_date,
            today,
        });
    }
    let lines = payment_lines(payment)
        .into_iter()
        .map(|line| SettlementLine {
            amount_minor: -line.amount_minor,
            ..line
        })
        .collect();
    let mut record = payment.clone();
    record.status = TransactionStatus::Cancelled;
    record.updated_at = now;
    record.cancelled_at = Some(now);
    record.cancel_reason = Some(reason.to_owned());
    Ok(PlannedCancel {
        change: StatusChange {
            transaction_id: payment.id.clone(),
            store_id: payment.store_id.clone(),
            from: TransactionStatus::Paid,
            to: TransactionStatus::Cancelled,
            at: now,
            reason: reason.to_owned(),
            business_date: payment.business_date,
        },
        record,
        lines,
        event: Event::new(
            "bill_cancelled",
            Some(TransactionStatus::Paid),
            TransactionStatus::Cancelled,
            &context.actor,
            reason.to_owned(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn paid(fee_minor: i64) -> TransactionRecord {
        let at = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).expect("valid time");
        TransactionRecord {
            id: "0190f0c2-0000-7000-8000-000000000001".to_owned(),
            kind: TransactionKind::BillPayment,
            status: TransactionStatus::Paid,
            store_id: "S001".to_owned(),
            terminal_id: "T01".to_owned(),
            operator_id: "op".to_owned(),
            client_request_id: "r1".to_owned(),
            partner_id: "TPC".to_owned(),
            amount_minor: 150_000,
            currency: "TWD".to_owned(),
            fee_minor,
            business_date: NaiveDate::from_ymd_opt(2026, 12, 4).expect("valid date"),
            created_at: at,
            updated_at: at,
            cancelled_at: None,
            cancel_reason: None,
            bill: BillDetail {
                biller_id: "TPC".to_owned(),
                agency_code: "TPC01".to_owned(),
                bill_reference: "B1".to_owned(),
                due_date: None,
                period: String::new(),
                late: false,
            },
        }
    }

    /// The store owes the biller the amount, the biller owes the chain its
    /// fee, and the lines sum to zero.
    #[test]
    fn payment_lines_balance_and_name_the_parties() {
        let lines = payment_lines(&paid(1_500));
        let parties: Vec<(&str, &str, i64)> = lines
            .iter()
            .map(|line| (line.party.as_str(), line.kind.as_str(), line.amount_minor))
            .collect();
        assert_eq!(
            parties,
            vec![
                ("store:S001", "collection", -150_000),
                ("biller:TPC", "collection", 150_000),
                ("biller:TPC", "fee", -1_500),
                ("chain", "fee", 1_500),
            ]
        );
        assert_eq!(lines.iter().map(|line| line.amount_minor).sum::<i64>(), 0);
    }

    /// A payment without a fee has no fee lines.
    #[test]
    fn no_fee_no_fee_lines() {
        let lines = payment_lines(&paid(0));
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|line| line.kind == "collection"));
    }
}
