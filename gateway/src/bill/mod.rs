//! Cash bill collection: which biller a slip belongs to, whether it may be
//! paid now, what the chain earns, and who owes whom. Batch-only billers are
//! told through the daily file; online billers are also asked and notified
//! in real time ([`online`], [`saf`]).
//!
//! Everything here is pure: it plans rows from a validated command, the
//! configuration and the current time. The gRPC layer validates input and
//! the store commits what is planned.
//!
//! # Layout
//! - [`online`]: the online billers' clients (their `[biller.online]` settings,
//!   the slip barcodes and the biller registry are in `posgate_core::bill`).
//! - [`saf`]: the store-and-forward worker that resolves payment notices
//!   whose outcome is unknown (status inquiry, then the same notice again).
//! - this file: planning a payment or a cancellation, and the domain errors.

pub mod online;
pub mod saf;

use chrono::{DateTime, NaiveDate, Utc};

use posgate_core::bill::BillerRegistry;
use posgate_core::bill::barcode::{self, BarcodeProfile, ParsedSlip};
use posgate_core::bill::config::BillerConfig;
use posgate_core::model::business_day::BusinessCalendar;
use posgate_core::model::business_day::StoreConfig;
use posgate_core::model::{FieldViolation, RequestContext};
use posgate_core::ports::db::{
    BillDetail, Event, SettlementLine, StatusChange, TransactionKind, TransactionRecord,
    TransactionStatus,
};

/// The party every store-side line names, and the chain's own party.
pub const CHAIN_PARTY: &str = "chain";

/// Why a bill operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillError {
    #[error("invalid request: {}", .0.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldViolation>),
    #[error("the bill was due on {due_date} and biller {biller_id} does not accept late payment")]
    PastDue {
        biller_id: String,
        due_date: NaiveDate,
    },
    /// The biller's contract fee would take the whole amount (or more): the
    /// biller would receive nothing, or owe the chain, for a bill it is paid.
    #[error(
        "biller {biller_id}'s fee of {fee_minor} minor units is not less than the bill's {amount_minor}: \
         the biller would receive nothing; this bill cannot be paid here"
    )]
    FeeExceedsAmount {
        biller_id: String,
        amount_minor: u64,
        fee_minor: u64,
    },
    #[error("no bill payment {0} at this store")]
    NotFound(String),
    #[error("bill payment {0} is already cancelled")]
    AlreadyCancelled(String),
    #[error(
        "bill payment {transaction_id} belongs to business day {paid_on}, which closed; today is {today}"
    )]
    BusinessDayClosed {
        transaction_id: String,
        paid_on: NaiveDate,
        today: NaiveDate,
    },
}

impl BillError {
    fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }
}

/// A slip as scanned, with the biller the cashier chose (if any).
#[derive(Debug, Clone)]
pub struct SlipInput {
    pub barcodes: Vec<String>,
    pub biller_id: Option<String>,
}

/// A slip read and matched to its biller.
#[derive(Debug, Clone)]
pub struct ReadBill<'a> {
    pub biller: &'a BillerConfig,
    pub slip: ParsedSlip,
    /// The slip's amount in the biller currency's minor units.
    pub amount_minor: u64,
    /// The due date has passed and the biller accepts late payment.
    pub late: bool,
}

/// Reads a slip, finds its biller and checks it may be paid at `now` in `store`.
pub fn read_bill<'a>(
    registry: &'a BillerRegistry,
    store: &StoreConfig,
    input: &SlipInput,
    now: DateTime<Utc>,
) -> Result<ReadBill<'a>, BillError> {
    let segments: Vec<&str> = input.barcodes.iter().map(String::as_str).collect();
    let biller = find_biller(registry, input, &segments)?;
    let slip = barcode::parse(biller.profile, &segments).map_err(|error| {
        BillError::invalid(format!("slip.{}", error.field_path()), error.to_string())
    })?;
    if !biller.agency_codes.contains(&slip.agency_code) {
        return Err(BillError::invalid(
            "slip.barcodes[0]",
            format!(
                "agency code {} is not one of biller {}'s codes",
                slip.agency_code, biller.id
            ),
        ));
    }
    let amount_minor = slip
        .amount_whole
        .checked_mul(biller.currency.minor_per_major())
        .filter(|amount| (biller.min_amount_minor..=biller.max_amount_minor).contains(amount))
        .ok_or_else(|| {
            BillError::invalid(
                amount_segment(biller.profile),
                format!(
                    "amount {} {} is outside biller {}'s limits ({}..={} minor units)",
                    slip.amount_whole,
                    biller.currency.code,
                    biller.id,
                    biller.min_amount_minor,
                    biller.max_amount_minor
                ),
            )
        })?;
    // An online biller's amount is its own (the slip's is advisory): its
    // payments are checked against the cash collected instead.
    if biller.online.is_none() {
        check_fee(biller, amount_minor)?;
    }
    // The due date is the customer's deadline, so it is compared with the
    // store's local calendar date, not the business date (a payment at 23:30
    // after a 23:00 cutoff was still made on the due date).
    let today = BusinessCalendar::from(store).local_date(now);
    check_due_date_near(biller, &slip, today)?;
    let past_due = slip.has_due_date() && today > slip.due_date;
    if past_due && !biller.accept_after_due {
        return Err(BillError::PastDue {
            biller_id: biller.id.clone(),
            due_date: slip.due_date,
        });
    }
    Ok(ReadBill {
        biller,
        slip,
        amount_minor,
        late: past_due,
    })
}

/// How far from today a slip's due date may be, either way. Bills fall due
/// within weeks or months of printing, and a year-old bill is reissued; a
/// date further away is a misread, most often a slip printed with the other
/// two-digit year convention than the biller's profile (Gregorian `261231`
/// read as ROC year 126 is 2037; ROC `151231` read as Gregorian is 2015).
pub const MAX_DUE_DATE_DISTANCE_DAYS: i64 = 366;

/// Refuses a due date more than [`MAX_DUE_DATE_DISTANCE_DAYS`] from `today`.
fn check_due_date_near(
    biller: &BillerConfig,
    slip: &ParsedSlip,
    today: NaiveDate,
) -> Result<(), BillError> {
    if !slip.has_due_date() {
        return Ok(());
    }
    let distance_days = (slip.due_date - today).num_days();
    if distance_days.abs() <= MAX_DUE_DATE_DISTANCE_DAYS {
        return Ok(());
    }
    Err(BillError::invalid(
        "slip.barcodes[0]",
        format!(
            "due date {} is {} days {} today ({today}), more than a bill can be: \
             a misread, or a slip printed with another year convention than biller {}'s profile {}",
            slip.due_date,
            distance_days.abs(),
            if distance_days > 0 { "after" } else { "before" },
            biller.id,
            biller.profile.name()
        ),
    ))
}

/// Refuses an amount whose contract fee is not less than it. The chain keeps
/// its fee out of the cash it remits, so a fee of the whole amount or more
/// would leave the biller nothing (or in debt) for a bill it must mark paid;
/// no biller contract intends that, and silently capping the fee would pay
/// the biller nothing without anyone deciding so.
pub fn check_fee(biller: &BillerConfig, amount_minor: u64) -> Result<(), BillError> {
    let fee_minor = biller.fee.uncapped_fee_minor(amount_minor);
    if fee_minor >= amount_minor {
        return Err(BillError::FeeExceedsAmount {
            biller_id: biller.id.clone(),
            amount_minor,
            fee_minor,
        });
    }
    Ok(())
}

/// The barcode that carries the amount, for error field paths.
fn amount_segment(profile: BarcodeProfile) -> &'static str {
    match profile {
        BarcodeProfile::JapanGs1Cvs => "slip.barcodes[0]",
        BarcodeProfile::TaiwanCvsThreeSegment | BarcodeProfile::TaiwanCvsThreeSegmentGregorian => {
            "slip.barcodes[2]"
        }
    }
}

/// The biller a slip belongs to: the one the cashier chose, or the one whose
/// agency code the slip carries (the segment count tells the country).
fn find_biller<'a>(
    registry: &'a BillerRegistry,
    input: &SlipInput,
    segments: &[&str],
) -> Result<&'a BillerConfig, BillError> {
    let by_code = registry
        .by_slip(segments)
        .map_err(|violation| BillError::Invalid(vec![violation]))?;
    match &input.biller_id {
        None => Ok(by_code),
        Some(id) if *id == by_code.id => Ok(by_code),
        Some(id) => Err(BillError::invalid(
            "slip.biller_id",
            format!("the slip belongs to biller {}, not {id}", by_code.id),
        )),
    }
}

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
    let event = Event {
        event_type: "bill_paid".to_owned(),
        from_status: None,
        to_status: TransactionStatus::Paid,
        actor: context.actor.clone(),
        detail: format!(
            "cash {} {} for biller {}",
            record.amount_minor, record.currency, biller.id
        ),
    };
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
    let store = format!("store:{}", record.store_id);
    let biller = format!("biller:{}", record.partner_id);
    let mut lines = vec![
        line(store, "collection", -record.amount_minor),
        line(biller.clone(), "collection", record.amount_minor),
    ];
    if record.fee_minor > 0 {
        lines.push(line(biller, "fee", -record.fee_minor));
        lines.push(line(CHAIN_PARTY.to_owned(), "fee", record.fee_minor));
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
        event: Event {
            event_type: "bill_cancelled".to_owned(),
            from_status: Some(TransactionStatus::Paid),
            to_status: TransactionStatus::Cancelled,
            actor: context.actor.clone(),
            detail: reason.to_owned(),
        },
    })
}
