//! The NACHA ACH file for USD partners: one CCD batch per business date,
//! with a credit (transaction code 22) to each partner posgate owes and a
//! debit (27) from each partner that owes posgate.
//!
//! Layout (94-character records, blocking factor 10, `\n` after each record):
//! - `1` file header: priority 01, immediate destination (` ` + 9-digit
//!   routing), immediate origin (10), creation date `YYMMDD` and time `HHMM`
//!   (from the run, never the wall clock), file id modifier (`A`..`Z`, `0`..`9`
//!   from the run sequence), record size 094, blocking factor 10, format code 1,
//!   destination and origin names (23 each), reference code (8).
//! - `5` batch header: service class 200 (credits and debits), 220 (credits
//!   only) or 225 (debits only), company name (16), discretionary data (20),
//!   company id (10), SEC code `CCD`, entry description `SETTLEMENT`,
//!   descriptive date (the business date, `YYMMDD`), effective entry date
//!   (the next weekday), settlement date (3 blanks, the ACH operator fills
//!   it), originator status `1`, ODFI (8), batch number (7).
//! - `6` entry detail: transaction code, RDFI routing (8) and check digit (1),
//!   account (17), amount in cents (10), identification number (15: the
//!   partner id), receiving company name (22), discretionary data (2),
//!   addenda indicator `0`, trace number (ODFI 8 + ascending sequence 7).
//! - `8` batch control: service class, entry count (6), entry hash (10: the
//!   sum of the 8-digit RDFI routing numbers, last 10 digits), debit and credit
//!   totals (12 each), company id (10), message authentication code (19
//!   blanks), reserved (6), ODFI (8), batch number (7).
//! - `9` file control: batch count (6), block count (6), entry count (8),
//!   entry hash (10), debit and credit totals (12 each), reserved (39).
//! - Filler records of 94 `9`s complete the last block of 10.

use std::fmt::Write as _;

use chrono::{Datelike, NaiveDate, NaiveDateTime, Weekday};

use super::{Originator, SettleError, aba_check_digit_ok};

/// Every record is this long.
pub const RECORD_LEN: usize = 94;
/// Records per block.
pub const BLOCKING_FACTOR: usize = 10;
/// The largest amount one entry carries: 10 digits of cents.
pub const MAX_ENTRY_CENTS: u64 = 9_999_999_999;
/// The largest batch or file total: 12 digits of cents.
const MAX_TOTAL_CENTS: u64 = 999_999_999_999;
/// The entry hash keeps its last 10 digits.
const HASH_MODULUS: u64 = 10_000_000_000;
/// More entries than a trace sequence (7 digits) can number is refused.
const MAX_ENTRIES: usize = 9_999_999;

/// Checking account credit: posgate pays the partner.
pub const CODE_CHECKING_CREDIT: &str = "22";
/// Checking account debit: posgate collects from the partner.
pub const CODE_CHECKING_DEBIT: &str = "27";

/// One partner's net position as an ACH entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AchEntry {
    /// The settlement party, e.g. `biller:ACME`; becomes the identification number.
    pub partner: String,
    /// The receiving company name.
    pub name: String,
    /// The partner's 9-digit routing number (checked: ABA check digit).
    pub routing_number: String,
    pub account_number: String,
    /// Signed cents from the partner's point of view: positive is a credit to
    /// the partner (posgate owes it), negative a debit. Never zero.
    pub amount_minor: i64,
}

/// When and which file of the day this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AchFileSpec {
    pub business_date: NaiveDate,
    /// The creation time written in the header: the run's time, not the wall clock.
    pub created_at: NaiveDateTime,
    /// The run of the day, 1-based; gives the file id modifier.
    pub run_sequence: u32,
}

/// The file id modifier of the `sequence`th file of a day: `A`..`Z`, then `0`..`9`.
pub fn file_id_modifier(sequence: u32) -> Result<char, SettleError> {
    const MODIFIERS: &[u8; 36] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let index = usize::try_from(sequence).unwrap_or(usize::MAX);
    index
        .checked_sub(1)
        .and_then(|index| MODIFIERS.get(index))
        .map(|&byte| char::from(byte))
        .ok_or_else(|| {
            SettleError::Invalid(format!(
                "run sequence {sequence}: NACHA allows 36 files a day (modifiers A-Z, 0-9)"
            ))
        })
}

/// The effective entry date: the next weekday after the business date
/// (bank holidays are not modelled; the ODFI moves such entries itself).
pub fn effective_date(business_date: NaiveDate) -> NaiveDate {
    let mut date = business_date.succ_opt().expect("dates before year 262143");
    while matches!(date.weekday(), Weekday::Sat | Weekday::Sun) {
        date = date.succ_opt().expect("dates before year 262143");
    }
    date
}

/// Renders the file. Entries are written in the order given (callers sort
/// by partner); an empty list gives `Ok(None)`: no file on a day with nothing to move.
pub fn render(
    originator: &Originator,
    spec: &AchFileSpec,
    entries: &[AchEntry],
) -> Result<Option<String>, SettleError> {
    if entries.is_empty() {
        return Ok(None);
    }
    if entries.len() > MAX_ENTRIES {
        return Err(SettleError::Invalid(format!(
            "{} entries: a batch numbers at most {MAX_ENTRIES}",
            entries.len()
        )));
    }
    originator.check()?;
    let modifier = file_id_modifier(spec.run_sequence)?;
    let odfi8 = &originator.odfi_routing[..8];

    let mut records: Vec<String> = Vec::with_capacity(entries.len() + 4);
    records.push(file_header(originator, spec, modifier));
    let (has_credit, has_debit) = (
        entries.iter().any(|entry| entry.amount_minor > 0),
        entries.iter().any(|entry| entry.amount_minor < 0),
    );
    let service_class = match (has_credit, has_debit) {
        (true, true) => "200",
        (true, false) => "220",
        _ => "225",
    };
    let batch_number = 1_u32;
    records.push(batch_header(originator, spec, service_class, batch_number));

    let mut totals = Totals::default();
    for (index, entry) in entries.iter().enumerate() {
        records.push(entry_detail(entry, odfi8, index + 1)?);
        totals.add(entry)?;
    }
    records.push(batch_control(
        originator,
        service_class,
        &totals,
        batch_number,
    ));
    let unpadded = records.len() + 1;
    let blocks = unpadded.div_ceil(BLOCKING_FACTOR);
    records.push(file_control(1, blocks, &totals));
    while records.len() < blocks * BLOCKING_FACTOR {
        records.push("9".repeat(RECORD_LEN));
    }

    let mut text = String::with_capacity(records.len() * (RECORD_LEN + 1));
    for record in &records {
        assert_eq!(record.len(), RECORD_LEN, "NACHA record {record:?}");
        text.push_str(record);
        text.push('\n');
    }
    Ok(Some(text))
}

/// Running totals over the entries of the batch (and so of the file).
#[derive(Debug, Default)]
struct Totals {
    entries: u64,
    hash: u64,
    debit_cents: u64,
    credit_cents: u64,
}

impl Totals {
    fn add(&mut self, entry: &AchEntry) -> Result<(), SettleError> {
        let routing8: u64 = entry.routing_number[..8]
            .parse()
            .expect("routing numbers are checked to be digits");
        self.entries += 1;
        self.hash = (self.hash + routing8) % HASH_MODULUS;
        let cents = entry.amount_minor.unsigned_abs();
        let total = if entry.amount_minor > 0 {
            &mut self.credit_cents
        } else {
            &mut self.debit_cents
        };
        *total += cents;
        if *total > MAX_TOTAL_CENTS {
            return Err(SettleError::Invalid(format!(
                "the batch's {} total exceeds 12 digits of cents",
                if entry.amount_minor > 0 {
                    "credit"
                } else {
                    "debit"
                }
            )));
        }
        Ok(())
    }
}

fn file_header(originator: &Originator, spec: &AchFileSpec, modifier: char) -> String {
    let mut record = String::with_capacity(RECORD_LEN);
    record.push_str("101");
    record.push(' ');
    record.push_str(&originator.destination_routing);
    record.push_str(&alpha(&originator.origin_id, 10));
    record.push_str(&spec.created_at.format("%y%m%d%H%M").to_string());
    record.push(modifier);
    record.push_str("094101");
    record.push_str(&alpha(&originator.destination_name, 23));
    record.push_str(&alpha(&originator.origin_name, 23));
    // Reference code: the business date, so a file names its day.
    record.push_str(&alpha(&spec.business_date.format("%Y%m%d").to_string(), 8));
    record
}

fn batch_header(
    originator: &Originator,
    spec: &AchFileSpec,
    service_class: &str,
    batch_number: u32,
) -> String {
    let mut record = String::with_capacity(RECORD_LEN);
    record.push('5');
    record.push_str(service_class);
    record.push_str(&alpha(&originator.company_name, 16));
    record.push_str(&alpha("", 20));
    record.push_str(&alpha(&originator.company_id, 10));
    record.push_str("CCD");
    record.push_str(&alpha("SETTLEMENT", 10));
    record.push_str(&spec.business_date.format("%y%m%d").to_string());
    record.push_str(
        &effective_date(spec.business_date)
            .format("%y%m%d")
            .to_string(),
    );
    record.push_str("   ");
    record.push('1');
    record.push_str(&originator.odfi_routing[..8]);
    let _ = write!(record, "{batch_number:07}");
    record
}

fn entry_detail(entry: &AchEntry, odfi8: &str, sequence: usize) -> Result<String, SettleError> {
    let cents = entry.amount_minor.unsigned_abs();
    if cents == 0 || cents > MAX_ENTRY_CENTS {
        return Err(SettleError::Invalid(format!(
            "{}: amount {} is not 1..={MAX_ENTRY_CENTS} cents",
            entry.partner, entry.amount_minor
        )));
    }
    let code = if entry.amount_minor > 0 {
        CODE_CHECKING_CREDIT
    } else {
        CODE_CHECKING_DEBIT
    };
    let mut record = String::with_capacity(RECORD_LEN);
    record.push('6');
    record.push_str(code);
    record.push_str(&entry.routing_number);
    record.push_str(&alpha(&entry.account_number, 17));
    let _ = write!(record, "{cents:010}");
    record.push_str(&alpha(&entry.partner, 15));
    record.push_str(&alpha(&entry.name, 22));
    record.push_str("  ");
    record.push('0');
    record.push_str(odfi8);
    let _ = write!(record, "{sequence:07}");
    Ok(record)
}

fn batch_control(
    originator: &Originator,
    service_class: &str,
    totals: &Totals,
    batch_number: u32,
) -> String {
    let mut record = String::with_capacity(RECORD_LEN);
    record.push('8');
    record.push_str(service_class);
    let _ = write!(
        record,
        "{:06}{:010}{:012}{:012}",
        totals.entries, totals.hash, totals.debit_cents, totals.credit_cents
    );
    record.push_str(&alpha(&originator.company_id, 10));
    record.push_str(&" ".repeat(19 + 6));
    record.push_str(&originator.odfi_routing[..8]);
    let _ = write!(record, "{batch_number:07}");
    record
}

fn file_control(batches: u32, blocks: usize, totals: &Totals) -> String {
    let mut record = String::with_capacity(RECORD_LEN);
    let _ = write!(
        record,
        "9{batches:06}{blocks:06}{:08}{:010}{:012}{:012}",
        totals.entries, totals.hash, totals.debit_cents, totals.credit_cents
    );
    record.push_str(&" ".repeat(39));
    record
}

/// An alphanumeric field: upper case, printable ASCII (others become
/// spaces), left justified, space padded, cut to `len`.
fn alpha(value: &str, len: usize) -> String {
    let mut field: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c.to_ascii_uppercase()
            } else {
                ' '
            }
        })
        .take(len)
        .collect();
    while field.len() < len {
        field.push(' ');
    }
    field
}

/// Checks an entry's routing number (9 digits, ABA check digit) and account.
pub fn check_entry(entry: &AchEntry) -> Result<(), SettleError> {
    if !aba_check_digit_ok(&entry.routing_number) {
        return Err(SettleError::Invalid(format!(
            "{}: routing number {} fails the ABA check digit",
            entry.partner, entry.routing_number
        )));
    }
    let account_ok = !entry.account_number.is_empty()
        && entry.account_number.len() <= 17
        && entry
            .account_number
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !account_ok {
        return Err(SettleError::Invalid(format!(
            "{}: account number must be 1 to 17 letters, digits or '-'",
            entry.partner
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn originator() -> Originator {
        Originator {
            destination_routing: "091000019".into(),
            destination_name: "Fed Bank".into(),
            origin_id: "1234567890".into(),
            origin_name: "posgate chain".into(),
            company_name: "POSGATE CHAIN".into(),
            company_id: "1234567890".into(),
            odfi_routing: "091000019".into(),
        }
    }

    fn entry(partner: &str, amount_minor: i64) -> AchEntry {
        AchEntry {
            partner: partner.into(),
            name: partner.into(),
            routing_number: "011401533".into(),
            account_number: "12345".into(),
            amount_minor,
        }
    }

    fn spec() -> AchFileSpec {
        AchFileSpec {
            business_date: NaiveDate::from_ymd_opt(2026, 11, 27).unwrap(),
            created_at: NaiveDate::from_ymd_opt(2026, 11, 28)
                .unwrap()
                .and_hms_opt(2, 0, 0)
                .unwrap(),
            run_sequence: 1,
        }
    }

    /// Six entries make exactly ten records: one block, no filler.
    #[test]
    fn ten_records_need_no_filler() {
        let entries: Vec<_> = (1..=6).map(|i| entry(&format!("biller:B{i}"), i)).collect();
        let text = render(&originator(), &spec(), &entries).unwrap().unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 10);
        assert!(lines[9].starts_with("9000001000001"));
        let entries: Vec<_> = (1..=7).map(|i| entry(&format!("biller:B{i}"), i)).collect();
        let text = render(&originator(), &spec(), &entries).unwrap().unwrap();
        assert_eq!(text.lines().count(), 20);
        assert_eq!(text.lines().last().unwrap(), "9".repeat(94));
    }

    /// Service class follows the entries; the effective date skips the weekend.
    #[test]
    fn service_class_and_dates() {
        let both = render(&originator(), &spec(), &[entry("a", 5), entry("b", -5)])
            .unwrap()
            .unwrap();
        assert_eq!(&both.lines().nth(1).unwrap()[1..4], "200");
        let credit = render(&originator(), &spec(), &[entry("a", 5)])
            .unwrap()
            .unwrap();
        assert_eq!(&credit.lines().nth(1).unwrap()[1..4], "220");
        let debit = render(&originator(), &spec(), &[entry("a", -5)])
            .unwrap()
            .unwrap();
        let header = debit.lines().nth(1).unwrap();
        assert_eq!(&header[1..4], "225");
        // Friday 2026-11-27 settles on Monday 2026-11-30.
        assert_eq!(&header[63..69], "261127");
        assert_eq!(&header[69..75], "261130");
        assert_eq!(file_id_modifier(27).unwrap(), '0');
        assert!(file_id_modifier(37).is_err());
        assert!(file_id_modifier(0).is_err());
    }
}
