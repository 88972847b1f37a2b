//! The fixed-width settlement instruction file for partners settled in
//! TWD or JPY (and any other non-USD currency): one file per currency and
//! business date, `settle-YYYYMMDD-CUR.txt`, telling posgate's bank which
//! partner accounts to credit (posgate owes) or debit (the partner owes).
//!
//! Every record is 120 ASCII characters followed by `\n`. Positions are
//! 1-based and inclusive; numeric fields are right justified and zero
//! padded, text fields left justified and space padded (upper case, printable
//! ASCII). Amounts are integer minor units of the file's currency.
//!
//! Header (`H`, one):
//! | pos | len | field |
//! |---|---|---|
//! | 1 | 1 | record type `H` |
//! | 2-9 | 8 | business date `YYYYMMDD` |
//! | 10-23 | 14 | creation time `YYYYMMDDhhmmss` (the run's, not the wall clock) |
//! | 24-25 | 2 | run sequence of the day |
//! | 26-28 | 3 | currency (ISO 4217) |
//! | 29-38 | 10 | originator bank code |
//! | 39-54 | 16 | originator account |
//! | 55-94 | 40 | originator name |
//! | 95-120 | 26 | blanks |
//!
//! Detail (`D`, one per partner with a non-zero net position):
//! | pos | len | field |
//! |---|---|---|
//! | 1 | 1 | record type `D` |
//! | 2-7 | 6 | sequence, from 000001 |
//! | 8 | 1 | direction: `C` credit the partner, `D` debit the partner |
//! | 9-28 | 20 | partner id (`biller:TPC`) |
//! | 29-38 | 10 | partner bank code (TW: bank 3 + branch 4; JP: bank 4 + branch 3) |
//! | 39-54 | 16 | partner account |
//! | 55-94 | 40 | partner name |
//! | 95-112 | 18 | amount, minor units (absolute) |
//! | 113-120 | 8 | blanks |
//!
//! Trailer (`T`, one):
//! | pos | len | field |
//! |---|---|---|
//! | 1 | 1 | record type `T` |
//! | 2-7 | 6 | detail record count |
//! | 8-25 | 18 | total credited |
//! | 26-43 | 18 | total debited |
//! | 44 | 1 | sign of credited - debited: `+` or `-` |
//! | 45-62 | 18 | absolute value of credited - debited |
//! | 63-120 | 58 | blanks |

use std::fmt::Write as _;

use chrono::{NaiveDate, NaiveDateTime};

use super::{OriginAccount, SettleError};

/// Every record's length, without its `\n`.
pub const RECORD_LEN: usize = 120;
/// 18 digits of minor units.
const MAX_AMOUNT_MINOR: u64 = 999_999_999_999_999_999;

/// One partner's net position in the file's currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstructionEntry {
    pub partner: String,
    pub name: String,
    pub bank_code: String,
    pub account_number: String,
    /// Signed, from the partner's point of view: positive credits it.
    pub amount_minor: i64,
}

/// Which file this is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstructionSpec {
    pub business_date: NaiveDate,
    pub created_at: NaiveDateTime,
    pub run_sequence: u32,
    pub currency: String,
}

/// The file's name for a business date and currency.
pub fn file_name(business_date: NaiveDate, currency: &str) -> String {
    format!("settle-{}-{currency}.txt", business_date.format("%Y%m%d"))
}

/// Renders the file; `Ok(None)` when no entry moves money.
pub fn render(
    spec: &InstructionSpec,
    origin: &OriginAccount,
    entries: &[InstructionEntry],
) -> Result<Option<String>, SettleError> {
    if entries.is_empty() {
        return Ok(None);
    }
    if spec.run_sequence > 99 || entries.len() > 999_999 {
        return Err(SettleError::Invalid(format!(
            "instruction file {}: at most 99 runs and 999999 entries",
            spec.currency
        )));
    }
    let mut records = Vec::with_capacity(entries.len() + 2);
    let mut header = String::with_capacity(RECORD_LEN);
    let _ = write!(
        header,
        "H{}{}{:02}{}",
        spec.business_date.format("%Y%m%d"),
        spec.created_at.format("%Y%m%d%H%M%S"),
        spec.run_sequence,
        text(&spec.currency, 3),
    );
    header.push_str(&text(&origin.bank_code, 10));
    header.push_str(&text(&origin.account_number, 16));
    header.push_str(&text(&origin.name, 40));
    records.push(header);

    let (mut credited, mut debited) = (0_u64, 0_u64);
    for (index, entry) in entries.iter().enumerate() {
        let amount = entry.amount_minor.unsigned_abs();
        if amount == 0 {
            return Err(SettleError::Invalid(format!(
                "{}: a zero position is not an instruction",
                entry.partner
            )));
        }
        let direction = if entry.amount_minor > 0 {
            credited += amount;
            'C'
        } else {
            debited += amount;
            'D'
        };
        let mut record = String::with_capacity(RECORD_LEN);
        let _ = write!(record, "D{:06}{direction}", index + 1);
        record.push_str(&text(&entry.partner, 20));
        record.push_str(&text(&entry.bank_code, 10));
        record.push_str(&text(&entry.account_number, 16));
        record.push_str(&text(&entry.name, 40));
        let _ = write!(record, "{amount:018}");
        records.push(record);
    }
    if credited > MAX_AMOUNT_MINOR || debited > MAX_AMOUNT_MINOR {
        return Err(SettleError::Invalid(format!(
            "instruction file {}: totals exceed 18 digits",
            spec.currency
        )));
    }
    let (sign, net) = if credited >= debited {
        ('+', credited - debited)
    } else {
        ('-', debited - credited)
    };
    let mut trailer = String::with_capacity(RECORD_LEN);
    let _ = write!(
        trailer,
        "T{:06}{credited:018}{debited:018}{sign}{net:018}",
        entries.len()
    );
    records.push(trailer);

    let mut file = String::with_capacity(records.len() * (RECORD_LEN + 1));
    for mut record in records {
        assert!(record.len() <= RECORD_LEN, "record overflows: {record:?}");
        while record.len() < RECORD_LEN {
            record.push(' ');
        }
        file.push_str(&record);
        file.push('\n');
    }
    Ok(Some(file))
}

/// A text field: upper-case printable ASCII, others become `?`; cut and padded to `len`.
fn text(value: &str, len: usize) -> String {
    let mut field: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c.to_ascii_uppercase()
            } else {
                '?'
            }
        })
        .take(len)
        .collect();
    while field.len() < len {
        field.push(' ');
    }
    field
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Field positions are where the layout says, totals net credits against debits.
    #[test]
    fn layout_positions() {
        let spec = InstructionSpec {
            business_date: NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
            created_at: NaiveDate::from_ymd_opt(2026, 11, 24)
                .unwrap()
                .and_hms_opt(1, 2, 3)
                .unwrap(),
            run_sequence: 1,
            currency: "TWD".into(),
        };
        let origin = OriginAccount {
            bank_code: "0040037".into(),
            account_number: "123456789012".into(),
            name: "posgate chain".into(),
        };
        let entries = [
            InstructionEntry {
                partner: "biller:TPC".into(),
                name: "Taipower".into(),
                bank_code: "0081234".into(),
                account_number: "555".into(),
                amount_minor: 150_000,
            },
            InstructionEntry {
                partner: "bank:acquirer".into(),
                name: "Acquirer".into(),
                bank_code: "0120001".into(),
                account_number: "777".into(),
                amount_minor: -40_000,
            },
        ];
        let file = render(&spec, &origin, &entries).unwrap().unwrap();
        let lines: Vec<&str> = file.lines().collect();
        assert!(lines.iter().all(|line| line.len() == RECORD_LEN));
        assert_eq!(&lines[0][1..9], "20261123");
        assert_eq!(&lines[0][9..23], "20261124010203");
        assert_eq!(&lines[0][25..28], "TWD");
        assert_eq!(&lines[1][7..8], "C");
        assert_eq!(lines[1][8..28].trim_end(), "BILLER:TPC");
        assert_eq!(lines[1][28..38].trim_end(), "0081234");
        assert_eq!(&lines[1][94..112], "000000000000150000");
        assert_eq!(&lines[2][7..8], "D");
        assert_eq!(&lines[3][1..7], "000002");
        assert_eq!(&lines[3][7..25], "000000000000150000");
        assert_eq!(&lines[3][25..43], "000000000000040000");
        assert_eq!(&lines[3][43..62], "+000000000000110000");
    }
}
