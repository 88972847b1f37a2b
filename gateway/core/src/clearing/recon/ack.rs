//! The acknowledgement (and return) file partners send back for a business
//! date's clearing file, and its strict parser. A file that breaks any rule
//! is refused whole with the line number and the field named; nothing of it
//! is applied.
//!
//! Format: ASCII lines, each ending in `\n` (no `\r`, no blank lines), at most
//! [`MAX_LINE_BYTES`] bytes; fields separated by `|`, exactly as many as the
//! record type has.
//!
//! | record | fields |
//! |---|---|
//! | header, once, first | `H`, `POSGATE-ACK`, version `1`, partner (`biller:TPC`, `bank:acquirer`), business date `YYYY-MM-DD`, file id (1-64 of `A-Z a-z 0-9 - _ .`) |
//! | item, any number | `D`, transaction id (posgate's, may be empty), reference (bill reference or card RRN, may be empty but not both), currency (ISO 4217 alpha), amount (signed integer minor units, partner's point of view as on the clearing file), status `A` accepted or `R` rejected, reason (empty when `A`; 1-8 of `A-Z 0-9` when `R`) |
//! | totals, one per currency of the items, after them | `T`, currency, item count, accepted total, rejected total |
//! | end, once, last | `E`, item count |
//!
//! The partner's own totals must add up: each currency's `T` equals the sum
//! of its items, every item currency has a `T`, and `E` counts the items.

use std::collections::BTreeMap;
use std::fmt;

use chrono::NaiveDate;

use crate::model::recon::{AckFile, AckItem, AckStatus, AckTotals};

/// Longest line accepted: generous for the fields above, and a bound on what one bad line costs.
pub const MAX_LINE_BYTES: usize = 512;
/// Most items in one file (a busy partner's day is far below).
pub const MAX_ITEMS: usize = 5_000_000;
/// Longest transaction id or reference.
const MAX_ID_BYTES: usize = 64;
/// Largest absolute amount, as the store allows.
const MAX_AMOUNT_MINOR: i64 = 999_999_999_999;

/// Why a file was refused: which line (1-based), which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckError {
    pub line: usize,
    pub field: &'static str,
    pub reason: String,
}

impl fmt::Display for AckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, field {}: {}",
            self.line, self.field, self.reason
        )
    }
}

impl std::error::Error for AckError {}

fn error(line: usize, field: &'static str, reason: impl Into<String>) -> AckError {
    AckError {
        line,
        field,
        reason: reason.into(),
    }
}

/// Parses and checks a whole file.
pub fn parse(bytes: &[u8]) -> Result<AckFile, AckError> {
    if bytes.is_empty() {
        return Err(error(1, "record_type", "the file is empty"));
    }
    if !bytes.ends_with(b"\n") {
        let line = bytes.split(|&b| b == b'\n').count();
        return Err(error(
            line,
            "line",
            "the last line does not end in a newline",
        ));
    }
    let mut parser = Parser::default();
    for (index, raw) in bytes[..bytes.len() - 1].split(|&b| b == b'\n').enumerate() {
        parser.line(index + 1, raw)?;
    }
    let lines = bytes.split(|&b| b == b'\n').count() - 1;
    parser.finish(lines)
}

#[derive(Debug, Default)]
struct Parser {
    header: Option<(String, NaiveDate, String)>,
    items: Vec<AckItem>,
    computed: BTreeMap<String, AckTotals>,
    stated: BTreeMap<String, AckTotals>,
    ended: bool,
}

impl Parser {
    fn line(&mut self, line: usize, raw: &[u8]) -> Result<(), AckError> {
        if raw.len() > MAX_LINE_BYTES {
            return Err(error(
                line,
                "line",
                format!("{} bytes, at most {MAX_LINE_BYTES}", raw.len()),
            ));
        }
        if let Some(position) = raw.iter().position(|b| !(b' '..=b'~').contains(b)) {
            return Err(error(
                line,
                "line",
                format!(
                    "byte {} (0x{:02x}) is not printable ASCII",
                    position + 1,
                    raw[position]
                ),
            ));
        }
        let text = std::str::from_utf8(raw).expect("printable ASCII is UTF-8");
        let fields: Vec<&str> = text.split('|').collect();
        if self.ended {
            return Err(error(line, "record_type", "a line after the end record"));
        }
        match fields[0] {
            "H" => self.header_record(line, &fields),
            "D" => self.item_record(line, &fields),
            "T" => self.totals_record(line, &fields),
            "E" => self.end_record(line, &fields),
            "" => Err(error(line, "record_type", "empty line")),
            other => Err(error(
                line,
                "record_type",
                format!("{other:?} is not H, D, T or E"),
            )),
        }
    }

    fn header_record(&mut self, line: usize, fields: &[&str]) -> Result<(), AckError> {
        if line != 1 || self.header.is_some() {
            return Err(error(
                line,
                "record_type",
                "the header must be line 1, once",
            ));
        }
        field_count(line, fields, 6)?;
        if fields[1] != "POSGATE-ACK" {
            return Err(error(line, "format", "must be POSGATE-ACK"));
        }
        if fields[2] != "1" {
            return Err(error(line, "version", "only version 1 is known"));
        }
        let partner = fields[3];
        if crate::model::Party::parse_partner(partner).is_none() {
            return Err(error(
                line,
                "partner",
                "must be biller:<id>, bank:<id> or wallet:<id>",
            ));
        }
        let date = parse_date(fields[4])
            .ok_or_else(|| error(line, "business_date", "must be a calendar date YYYY-MM-DD"))?;
        let file_id = fields[5];
        let file_id_ok = !file_id.is_empty()
            && file_id.len() <= MAX_ID_BYTES
            && file_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !file_id_ok {
            return Err(error(
                line,
                "file_id",
                "1 to 64 letters, digits, '-', '_' or '.'",
            ));
        }
        self.header = Some((partner.to_owned(), date, file_id.to_owned()));
        Ok(())
    }

    fn item_record(&mut self, line: usize, fields: &[&str]) -> Result<(), AckError> {
        self.expect_body(line, "an item")?;
        if !self.stated.is_empty() {
            return Err(error(line, "record_type", "an item after the totals"));
        }
        if self.items.len() >= MAX_ITEMS {
            return Err(error(
                line,
                "record_type",
                format!("more than {MAX_ITEMS} items"),
            ));
        }
        field_count(line, fields, 7)?;
        let transaction_id = fields[1];
        if transaction_id.len() > MAX_ID_BYTES || !transaction_id.bytes().all(id_byte) {
            return Err(error(
                line,
                "transaction_id",
                "at most 64 letters, digits, '-' or '_'",
            ));
        }
        let reference = fields[2];
        if reference.len() > MAX_ID_BYTES || reference.trim() != reference {
            return Err(error(
                line,
                "reference",
                "at most 64 characters, no surrounding spaces",
            ));
        }
        if transaction_id.is_empty() && reference.is_empty() {
            return Err(error(
                line,
                "reference",
                "an item needs a transaction id or a reference",
            ));
        }
        let currency = parse_currency(line, fields[3])?;
        let amount_minor = parse_amount(line, "amount_minor", fields[4])?;
        let status = match (fields[5], fields[6]) {
            ("A", "") => AckStatus::Accepted,
            ("A", _) => return Err(error(line, "reason", "an accepted item has no reason")),
            ("R", reason) => {
                let reason_ok = (1..=8).contains(&reason.len())
                    && reason
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
                if !reason_ok {
                    return Err(error(
                        line,
                        "reason",
                        "a rejected item needs a reason code of 1 to 8 of A-Z, 0-9",
                    ));
                }
                AckStatus::Rejected(reason.to_owned())
            }
            _ => return Err(error(line, "status", "must be A or R")),
        };
        let totals = self.computed.entry(currency.clone()).or_default();
        totals.items += 1;
        let sum = match status {
            AckStatus::Accepted => &mut totals.accepted_minor,
            AckStatus::Rejected(_) => &mut totals.rejected_minor,
        };
        *sum = sum
            .checked_add(amount_minor)
            .ok_or_else(|| error(line, "amount_minor", "the currency's total overflows"))?;
        self.items.push(AckItem {
            line,
            transaction_id: transaction_id.to_owned(),
            reference: reference.to_owned(),
            currency,
            amount_minor,
            status,
        });
        Ok(())
    }

    fn totals_record(&mut self, line: usize, fields: &[&str]) -> Result<(), AckError> {
        self.expect_body(line, "a totals record")?;
        field_count(line, fields, 5)?;
        let currency = parse_currency(line, fields[1])?;
        if self.stated.contains_key(&currency) {
            return Err(error(
                line,
                "currency",
                format!("a second totals record for {currency}"),
            ));
        }
        let items: u64 = parse_count(line, "items", fields[2])?;
        let accepted_minor = parse_total(line, "accepted_total", fields[3])?;
        let rejected_minor = parse_total(line, "rejected_total", fields[4])?;
        let computed = self.computed.get(&currency).copied().unwrap_or_default();
        if items != computed.items {
            return Err(error(
                line,
                "items",
                format!(
                    "says {items}, the file has {} {currency} items",
                    computed.items
                ),
            ));
        }
        if accepted_minor != computed.accepted_minor {
            return Err(error(
                line,
                "accepted_total",
                format!(
                    "says {accepted_minor}, the accepted {currency} items add up to {}",
                    computed.accepted_minor
                ),
            ));
        }
        if rejected_minor != computed.rejected_minor {
            return Err(error(
                line,
                "rejected_total",
                format!(
                    "says {rejected_minor}, the rejected {currency} items add up to {}",
                    computed.rejected_minor
                ),
            ));
        }
        self.stated.insert(
            currency,
            AckTotals {
                items,
                accepted_minor,
                rejected_minor,
            },
        );
        Ok(())
    }

    fn end_record(&mut self, line: usize, fields: &[&str]) -> Result<(), AckError> {
        self.expect_body(line, "the end record")?;
        field_count(line, fields, 2)?;
        let count = parse_count(line, "item_count", fields[1])?;
        if count != self.items.len() as u64 {
            return Err(error(
                line,
                "item_count",
                format!("says {count}, the file has {} items", self.items.len()),
            ));
        }
        if let Some(currency) = self
            .computed
            .keys()
            .find(|currency| !self.stated.contains_key(*currency))
        {
            return Err(error(
                line,
                "record_type",
                format!("no totals record for the {currency} items"),
            ));
        }
        self.ended = true;
        Ok(())
    }

    fn expect_body(&self, line: usize, what: &str) -> Result<(), AckError> {
        if self.header.is_none() {
            return Err(error(
                line,
                "record_type",
                format!("{what} before the header"),
            ));
        }
        Ok(())
    }

    fn finish(self, lines: usize) -> Result<AckFile, AckError> {
        if !self.ended {
            return Err(error(lines, "record_type", "the file has no end record"));
        }
        let (partner, business_date, file_id) = self.header.expect("an ended file has a header");
        Ok(AckFile {
            partner,
            business_date,
            file_id,
            items: self.items,
            totals: self.stated,
        })
    }
}

fn id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn field_count(line: usize, fields: &[&str], expected: usize) -> Result<(), AckError> {
    if fields.len() != expected {
        return Err(error(
            line,
            "line",
            format!(
                "{} fields, a {} record has {expected}",
                fields.len(),
                fields[0]
            ),
        ));
    }
    Ok(())
}

fn parse_date(text: &str) -> Option<NaiveDate> {
    if text.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

fn parse_currency(line: usize, text: &str) -> Result<String, AckError> {
    if crate::model::money::Currency::from_code(text).is_none() {
        return Err(error(
            line,
            "currency",
            format!("{text:?} is not an ISO 4217 code posgate settles in"),
        ));
    }
    Ok(text.to_owned())
}

/// A signed integer: optional `-`, then digits without leading zeros (or `0`).
fn parse_signed(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let well_formed = !digits.is_empty()
        && digits.len() <= 18
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && text != "-0";
    if !well_formed {
        return None;
    }
    text.parse().ok()
}

fn parse_amount(line: usize, field: &'static str, text: &str) -> Result<i64, AckError> {
    match parse_signed(text) {
        Some(amount) if amount.abs() <= MAX_AMOUNT_MINOR => Ok(amount),
        Some(_) => Err(error(
            line,
            field,
            format!("{text} is beyond {MAX_AMOUNT_MINOR} minor units"),
        )),
        None => Err(error(
            line,
            field,
            format!("{text:?} is not a signed integer of minor units"),
        )),
    }
}

fn parse_total(line: usize, field: &'static str, text: &str) -> Result<i64, AckError> {
    parse_signed(text).ok_or_else(|| {
        error(
            line,
            field,
            format!("{text:?} is not a signed integer of minor units"),
        )
    })
}

fn parse_count(line: usize, field: &'static str, text: &str) -> Result<u64, AckError> {
    match parse_signed(text) {
        Some(count) if count >= 0 => Ok(count.unsigned_abs()),
        _ => Err(error(line, field, format!("{text:?} is not a count"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "H|POSGATE-ACK|1|bank:acquirer|2026-11-23|SIM-20261123\n\
                        D||000000000001|TWD|-1000|A|\n\
                        D|tx-2|REF2|TWD|250|R|R03\n\
                        T|TWD|2|-1000|250\n\
                        E|2\n";

    /// A well-formed file parses with its items and totals.
    #[test]
    fn parses_a_good_file() {
        let file = parse(GOOD.as_bytes()).unwrap();
        assert_eq!(file.partner, "bank:acquirer");
        assert_eq!(file.items.len(), 2);
        assert_eq!(file.items[1].status, AckStatus::Rejected("R03".into()));
        assert_eq!(file.totals["TWD"].accepted_minor, -1000);
    }

    fn refused(text: &str) -> AckError {
        parse(text.as_bytes()).unwrap_err()
    }

    /// Each kind of damage is refused with its line and field.
    #[test]
    fn refuses_with_line_and_field() {
        let cases: &[(&str, &str, usize, &str)] = &[
            (
                "D||000000000001|TWD|-1000|A|",
                "X||000000000001|TWD|-1000|A|",
                2,
                "record_type",
            ),
            (
                "D||000000000001|TWD|-1000|A|",
                "D||000000000001|TWD|-1000|A",
                2,
                "line",
            ),
            (
                "D||000000000001|TWD|-1000|A|",
                "D||000000000001|TWD|-10.00|A|",
                2,
                "amount_minor",
            ),
            (
                "D||000000000001|TWD|-1000|A|",
                "D||000000000001|TWD|+1000|A|",
                2,
                "amount_minor",
            ),
            (
                "D||000000000001|TWD|-1000|A|",
                "D||000000000001|XYZ|-1000|A|",
                2,
                "currency",
            ),
            (
                "D|tx-2|REF2|TWD|250|R|R03",
                "D|tx-2|REF2|TWD|250|R|",
                3,
                "reason",
            ),
            (
                "D|tx-2|REF2|TWD|250|R|R03",
                "D|tx-2|REF2|TWD|250|X|",
                3,
                "status",
            ),
            (
                "D|tx-2|REF2|TWD|250|R|R03",
                "D|||TWD|250|R|R03",
                3,
                "reference",
            ),
            ("T|TWD|2|-1000|250", "T|TWD|2|-999|250", 4, "accepted_total"),
            ("T|TWD|2|-1000|250", "T|TWD|3|-1000|250", 4, "items"),
            ("E|2", "E|3", 5, "item_count"),
            ("2026-11-23", "2026-02-30", 1, "business_date"),
        ];
        for (from, to, line, field) in cases {
            let text = GOOD.replacen(from, to, 1);
            let error = refused(&text);
            assert_eq!((error.line, error.field), (*line, *field), "{to}: {error}");
        }
        assert_eq!(refused(&GOOD.replace("E|2\n", "E|2")).field, "line");
        assert_eq!(refused(&GOOD.replace("E|2\n", "")).field, "record_type");
        assert_eq!(refused(&GOOD.replace('\n', "\r\n")).line, 1);
        let blank = GOOD.replacen("T|", "\nT|", 1);
        assert_eq!(
            (refused(&blank).line, refused(&blank).field),
            (4, "record_type")
        );
        let missing_totals = GOOD.replace("T|TWD|2|-1000|250\n", "");
        assert_eq!(refused(&missing_totals).field, "record_type");
    }
}
