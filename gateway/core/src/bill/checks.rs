//! Reading a slip: which biller it belongs to, and whether it may be paid
//! now (agency code, amount limits, the biller's fee, the due date).

use chrono::{DateTime, NaiveDate, Utc};

use super::BillerRegistry;
use super::barcode::{self, BarcodeProfile, ParsedSlip};
use super::config::BillerConfig;
use super::error::BillError;
use crate::model::business_day::{BusinessCalendar, StoreConfig};

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
