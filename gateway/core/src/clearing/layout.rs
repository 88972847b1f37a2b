//! The record layouts of the clearing files: two fixed-width profiles and a
//! CSV of the same items. Positions are 1-based and inclusive, as partners'
//! file specifications print them; every record is ASCII and ends with LF.
//!
//! Fixed-width fields: text is left-justified and space-filled; numbers are
//! right-justified and zero-filled; amounts are integer minor units. A value
//! that does not fit its field is refused, never truncated.
//!
//! ## `tw-fixed` (Taiwan-style, layout id `TWFIX001`, 160-byte records)
//! Record types: `1` header, `2` detail, `8` currency trailer (one per
//! currency, ascending code), `9` end. Signs are `+`/`-`; times are Asia/Taipei.
//!
//! | record  | positions | field |
//! |---------|-----------|-------|
//! | header  | 1         | record type `1` |
//! |         | 2-17      | file id |
//! |         | 18-57     | partner (party id) |
//! |         | 58-65     | business date YYYYMMDD |
//! |         | 66-79     | creation time YYYYMMDDHHMMSS (Asia/Taipei) |
//! |         | 80-87     | layout id `TWFIX001` |
//! | detail  | 1         | record type `2` |
//! |         | 2-9       | sequence number from 00000001 |
//! |         | 10-45     | transaction id |
//! |         | 46-69     | reference (bill reference or card RRN) |
//! |         | 70-93     | kind (`collection`, `card_sale`, `adjustment:card_void`, ...) |
//! |         | 94-96     | currency (ISO 4217) |
//! |         | 97        | amount sign (`+` the partner is owed) |
//! |         | 98-110    | amount, minor units |
//! |         | 111       | fee sign |
//! |         | 112-124   | clearing fee, minor units |
//! |         | 125-156   | store id |
//! | trailer | 1         | record type `8` |
//! |         | 2-4       | currency |
//! |         | 5-12      | detail records of the currency |
//! |         | 13 / 14-31| amount total sign / amount total |
//! |         | 32 / 33-50| fee total sign / fee total |
//! |         | 51 / 52-69| net (amount - fee) sign / net total |
//! |         | 70-87     | hash total: sum of absolute amounts |
//! | end     | 1         | record type `9` |
//! |         | 2-9       | detail records |
//! |         | 10-17     | all records including this one |
//! |         | 18-20     | currency trailers |
//!
//! ## `jp-fixed` (Japan-style after the Zengin layouts, layout id `JPFIX001`, 200-byte records)
//! Record types `1` header, `2` data, `8` trailer (per currency), `9` end, as
//! in Zengin files; amounts are unsigned with a credit/debit code (`1`
//! credit: the partner is owed, `2` debit); times are Asia/Tokyo.
//!
//! | record  | positions | field |
//! |---------|-----------|-------|
//! | header  | 1         | data type `1` |
//! |         | 2-3       | type code `71` (clearing statement) |
//! |         | 4         | code class `0` (ASCII) |
//! |         | 5-20      | file id |
//! |         | 21-60     | partner |
//! |         | 61-68     | business date YYYYMMDD |
//! |         | 69-82     | creation time YYYYMMDDHHMMSS (Asia/Tokyo) |
//! |         | 83-90     | layout id `JPFIX001` |
//! | data    | 1         | data type `2` |
//! |         | 2-9       | sequence number |
//! |         | 10        | adjustment flag `1` for a late line moved from a closed day, else `0` |
//! |         | 11-12     | kind code: 01 collection, 02 fee, 11 `card_sale`, 12 `card_capture`, 13 `card_refund`, 14 `card_void`, 99 other |
//! |         | 13-36     | kind |
//! |         | 37-72     | transaction id |
//! |         | 73-96     | reference |
//! |         | 97-99     | currency |
//! |         | 100       | amount credit/debit code |
//! |         | 101-112   | amount (absolute) |
//! |         | 113       | fee credit/debit code |
//! |         | 114-125   | fee (absolute) |
//! |         | 126-157   | store id |
//! | trailer | 1         | data type `8` |
//! |         | 2-4       | currency |
//! |         | 5-12      | data records of the currency |
//! |         | 13-30     | credit total (sum of amounts owed to the partner) |
//! |         | 31-48     | debit total (sum of amounts the partner owes) |
//! |         | 49 / 50-67| fee code / fee total |
//! |         | 68 / 69-86| net code / net total (credit - debit - fee) |
//! | end     | 1         | data type `9` |
//! |         | 2-9       | data records |
//! |         | 10-17     | all records including this one |
//!
//! ## CSV (`.csv`, both profiles)
//! A header row, then one row per detail record in the same order:
//! `sequence,partner,business_date,transaction_id,reference,kind,currency,amount_minor,fee_minor,store_id`
//! (dates YYYY-MM-DD, signed integer minor units, no quoting: every field is
//! from an alphabet without commas or quotes, which the writer checks).

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::clearing::model::{ClearingItem, FileProfile};

/// One fixed-width field: 1-based first position and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub start: usize,
    pub len: usize,
}

impl Field {
    const fn new(name: &'static str, start: usize, len: usize) -> Self {
        Self { name, start, len }
    }

    /// The field's bytes of a record.
    pub fn slice<'a>(&self, record: &'a [u8]) -> &'a [u8] {
        &record[self.start - 1..self.start - 1 + self.len]
    }

    pub fn end(&self) -> usize {
        self.start + self.len - 1
    }
}

/// A value that does not fit its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} value {value:?} does not fit {len} positions of ASCII")]
pub struct FieldError {
    pub field: &'static str,
    pub value: String,
    pub len: usize,
}

/// Fixed-width layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Tw,
    Jp,
}

/// Positions of a layout's detail fields that verification reads.
#[derive(Debug, Clone, Copy)]
pub struct DetailFields {
    pub sequence: Field,
    pub transaction_id: Field,
    pub currency: Field,
    pub amount_sign: Field,
    pub amount: Field,
    pub fee_sign: Field,
    pub fee: Field,
}

mod tw {
    use super::Field;
    pub const RECORD_LEN: usize = 160;
    pub const H_FILE_ID: Field = Field::new("file id", 2, 16);
    pub const H_PARTNER: Field = Field::new("partner", 18, 40);
    pub const H_DATE: Field = Field::new("business date", 58, 8);
    pub const H_CREATED: Field = Field::new("creation time", 66, 14);
    pub const H_LAYOUT: Field = Field::new("layout id", 80, 8);
    pub const D_SEQ: Field = Field::new("sequence", 2, 8);
    pub const D_TXID: Field = Field::new("transaction id", 10, 36);
    pub const D_REF: Field = Field::new("reference", 46, 24);
    pub const D_KIND: Field = Field::new("kind", 70, 24);
    pub const D_CURRENCY: Field = Field::new("currency", 94, 3);
    pub const D_AMOUNT_SIGN: Field = Field::new("amount sign", 97, 1);
    pub const D_AMOUNT: Field = Field::new("amount", 98, 13);
    pub const D_FEE_SIGN: Field = Field::new("fee sign", 111, 1);
    pub const D_FEE: Field = Field::new("fee", 112, 13);
    pub const D_STORE: Field = Field::new("store id", 125, 32);
    pub const T_FIELDS: &[Field] = &[
        Field::new("record type", 1, 1),
        Field::new("currency", 2, 3),
        Field::new("record count", 5, 8),
        Field::new("amount total sign", 13, 1),
        Field::new("amount total", 14, 18),
        Field::new("fee total sign", 32, 1),
        Field::new("fee total", 33, 18),
        Field::new("net total sign", 51, 1),
        Field::new("net total", 52, 18),
        Field::new("hash total", 70, 18),
    ];
    pub const E_FIELDS: &[Field] = &[
        Field::new("record type", 1, 1),
        Field::new("detail record count", 2, 8),
        Field::new("total record count", 10, 8),
        Field::new("currency trailer count", 18, 3),
    ];
}

mod jp {
    use super::Field;
    pub const RECORD_LEN: usize = 200;
    pub const H_TYPE_CODE: Field = Field::new("type code", 2, 2);
    pub const H_CODE_CLASS: Field = Field::new("code class", 4, 1);
    pub const H_FILE_ID: Field = Field::new("file id", 5, 16);
    pub const H_PARTNER: Field = Field::new("partner", 21, 40);
    pub const H_DATE: Field = Field::new("business date", 61, 8);
    pub const H_CREATED: Field = Field::new("creation time", 69, 14);
    pub const H_LAYOUT: Field = Field::new("layout id", 83, 8);
    pub const D_SEQ: Field = Field::new("sequence", 2, 8);
    pub const D_ADJUSTMENT: Field = Field::new("adjustment flag", 10, 1);
    pub const D_KIND_CODE: Field = Field::new("kind code", 11, 2);
    pub const D_KIND: Field = Field::new("kind", 13, 24);
    pub const D_TXID: Field = Field::new("transaction id", 37, 36);
    pub const D_REF: Field = Field::new("reference", 73, 24);
    pub const D_CURRENCY: Field = Field::new("currency", 97, 3);
    pub const D_AMOUNT_SIGN: Field = Field::new("amount credit/debit code", 100, 1);
    pub const D_AMOUNT: Field = Field::new("amount", 101, 12);
    pub const D_FEE_SIGN: Field = Field::new("fee credit/debit code", 113, 1);
    pub const D_FEE: Field = Field::new("fee", 114, 12);
    pub const D_STORE: Field = Field::new("store id", 126, 32);
    pub const T_FIELDS: &[Field] = &[
        Field::new("data type", 1, 1),
        Field::new("currency", 2, 3),
        Field::new("record count", 5, 8),
        Field::new("credit total", 13, 18),
        Field::new("debit total", 31, 18),
        Field::new("fee total code", 49, 1),
        Field::new("fee total", 50, 18),
        Field::new("net total code", 68, 1),
        Field::new("net total", 69, 18),
    ];
    pub const E_FIELDS: &[Field] = &[
        Field::new("data type", 1, 1),
        Field::new("data record count", 2, 8),
        Field::new("total record count", 10, 8),
    ];
}

/// Running totals of one currency of one file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CurrencyTotals {
    pub items: u64,
    pub amount_minor: i64,
    pub fee_minor: i64,
    /// Sum of the positive amounts.
    pub credit_minor: i64,
    /// Sum of the absolute negative amounts.
    pub debit_minor: i64,
}

impl CurrencyTotals {
    /// Adds one item; `None` on overflow (far beyond any real day).
    pub fn add(&mut self, amount_minor: i64, fee_minor: i64) -> Option<()> {
        self.items += 1;
        self.amount_minor = self.amount_minor.checked_add(amount_minor)?;
        self.fee_minor = self.fee_minor.checked_add(fee_minor)?;
        if amount_minor >= 0 {
            self.credit_minor = self.credit_minor.checked_add(amount_minor)?;
        } else {
            self.debit_minor = self.debit_minor.checked_add(amount_minor.checked_neg()?)?;
        }
        Some(())
    }

    pub fn net_minor(&self) -> i64 {
        self.amount_minor - self.fee_minor
    }

    /// Sum of absolute amounts (the hash total).
    pub fn hash_total_minor(&self) -> i64 {
        self.credit_minor + self.debit_minor
    }
}

/// What a file's header says.
#[derive(Debug, Clone)]
pub struct FileMeta<'a> {
    pub file_id: &'a str,
    pub partner: &'a str,
    pub business_date: NaiveDate,
    pub created_at: DateTime<Utc>,
}

/// A fixed-width record being filled.
struct Record<'a> {
    bytes: &'a mut Vec<u8>,
    base: usize,
}

impl Record<'_> {
    fn text(&mut self, field: Field, value: &str) -> Result<(), FieldError> {
        if value.len() > field.len || !value.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            return Err(FieldError {
                field: field.name,
                value: value.to_owned(),
                len: field.len,
            });
        }
        let at = self.base + field.start - 1;
        self.bytes[at..at + value.len()].copy_from_slice(value.as_bytes());
        Ok(())
    }

    fn number(&mut self, field: Field, value: u64) -> Result<(), FieldError> {
        let at = self.base + field.start - 1;
        let mut rest = value;
        for position in (at..at + field.len).rev() {
            self.bytes[position] = b'0' + u8::try_from(rest % 10).expect("a digit");
            rest /= 10;
        }
        if rest != 0 {
            return Err(FieldError {
                field: field.name,
                value: value.to_string(),
                len: field.len,
            });
        }
        Ok(())
    }

    fn byte(&mut self, field: Field, value: u8) {
        self.bytes[self.base + field.start - 1] = value;
    }
}

fn yyyymmdd(date: NaiveDate) -> String {
    format!("{:04}{:02}{:02}", date.year(), date.month(), date.day())
}

fn local_stamp(at: DateTime<Utc>, zone: Tz) -> String {
    at.with_timezone(&zone).format("%Y%m%d%H%M%S").to_string()
}

fn abs(value: i64) -> u64 {
    value.unsigned_abs()
}

/// The JP kind code of a settlement line kind.
fn jp_kind_code(kind: &str) -> &'static str {
    match kind.strip_prefix("adjustment:").unwrap_or(kind) {
        "collection" => "01",
        "fee" => "02",
        "card_sale" => "11",
        "card_capture" => "12",
        "card_refund" => "13",
        "card_void" => "14",
        _ => "99",
    }
}

impl Layout {
    pub fn of(profile: FileProfile) -> Self {
        match profile {
            FileProfile::TwFixed | FileProfile::UsAch => Self::Tw,
            FileProfile::JpFixed => Self::Jp,
        }
    }

    pub fn id(self) -> &'static str {
        match self {
            Self::Tw => "TWFIX001",
            Self::Jp => "JPFIX001",
        }
    }

    /// Parses a layout id as the header carries it.
    pub fn from_id(id: &[u8]) -> Option<Self> {
        match id {
            b"TWFIX001" => Some(Self::Tw),
            b"JPFIX001" => Some(Self::Jp),
            _ => None,
        }
    }

    /// Bytes per record, without the LF.
    pub fn record_len(self) -> usize {
        match self {
            Self::Tw => tw::RECORD_LEN,
            Self::Jp => jp::RECORD_LEN,
        }
    }

    /// The header's layout id field (where verification looks first).
    pub fn layout_field(self) -> Field {
        match self {
            Self::Tw => tw::H_LAYOUT,
            Self::Jp => jp::H_LAYOUT,
        }
    }

    fn sign(self, negative: bool) -> u8 {
        match (self, negative) {
            (Self::Tw, false) => b'+',
            (Self::Tw, true) => b'-',
            (Self::Jp, false) => b'1',
            (Self::Jp, true) => b'2',
        }
    }

    /// Whether a sign byte means negative; `None` if it is not a sign of this layout.
    pub fn parse_sign(self, byte: u8) -> Option<bool> {
        match (self, byte) {
            (Self::Tw, b'+') | (Self::Jp, b'1') => Some(false),
            (Self::Tw, b'-') | (Self::Jp, b'2') => Some(true),
            _ => None,
        }
    }

    fn start(self, out: &mut Vec<u8>, record_type: u8) -> Record<'_> {
        let base = out.len();
        out.resize(base + self.record_len(), b' ');
        out.push(b'\n');
        out[base] = record_type;
        Record { bytes: out, base }
    }

    /// Appends the header record.
    pub fn header(self, out: &mut Vec<u8>, meta: &FileMeta<'_>) -> Result<(), FieldError> {
        let mut record = self.start(out, b'1');
        let date = yyyymmdd(meta.business_date);
        match self {
            Self::Tw => {
                record.text(tw::H_FILE_ID, meta.file_id)?;
                record.text(tw::H_PARTNER, meta.partner)?;
                record.text(tw::H_DATE, &date)?;
                record.text(
                    tw::H_CREATED,
                    &local_stamp(meta.created_at, chrono_tz::Asia::Taipei),
                )?;
                record.text(tw::H_LAYOUT, self.id())?;
            }
            Self::Jp => {
                record.text(jp::H_TYPE_CODE, "71")?;
                record.text(jp::H_CODE_CLASS, "0")?;
                record.text(jp::H_FILE_ID, meta.file_id)?;
                record.text(jp::H_PARTNER, meta.partner)?;
                record.text(jp::H_DATE, &date)?;
                record.text(
                    jp::H_CREATED,
                    &local_stamp(meta.created_at, chrono_tz::Asia::Tokyo),
                )?;
                record.text(jp::H_LAYOUT, self.id())?;
            }
        }
        Ok(())
    }

    /// Appends one detail record.
    pub fn detail(
        self,
        out: &mut Vec<u8>,
        sequence: u64,
        item: &ClearingItem,
    ) -> Result<(), FieldError> {
        let fields = self.detail_fields();
        let layout = self;
        let mut record = self.start(out, b'2');
        record.number(fields.sequence, sequence)?;
        record.text(fields.transaction_id, &item.transaction_id)?;
        record.text(fields.currency, &item.currency)?;
        record.byte(fields.amount_sign, layout.sign(item.amount_minor < 0));
        record.number(fields.amount, abs(item.amount_minor))?;
        record.byte(fields.fee_sign, layout.sign(item.fee_minor < 0));
        record.number(fields.fee, abs(item.fee_minor))?;
        match layout {
            Self::Tw => {
                record.text(tw::D_REF, &item.reference)?;
                record.text(tw::D_KIND, &item.kind)?;
                record.text(tw::D_STORE, &item.store_id)?;
            }
            Self::Jp => {
                let adjustment = item.kind.starts_with("adjustment:");
                record.byte(jp::D_ADJUSTMENT, if adjustment { b'1' } else { b'0' });
                record.text(jp::D_KIND_CODE, jp_kind_code(&item.kind))?;
                record.text(jp::D_KIND, &item.kind)?;
                record.text(jp::D_REF, &item.reference)?;
                record.text(jp::D_STORE, &item.store_id)?;
            }
        }
        Ok(())
    }

    /// Appends the trailer record of one currency.
    pub fn trailer(
        self,
        out: &mut Vec<u8>,
        currency: &str,
        totals: &CurrencyTotals,
    ) -> Result<(), FieldError> {
        let fields = self.trailer_fields();
        let layout = self;
        let mut record = self.start(out, b'8');
        record.text(fields[1], currency)?;
        record.number(fields[2], totals.items)?;
        match layout {
            Self::Tw => {
                record.byte(fields[3], layout.sign(totals.amount_minor < 0));
                record.number(fields[4], abs(totals.amount_minor))?;
                record.byte(fields[5], layout.sign(totals.fee_minor < 0));
                record.number(fields[6], abs(totals.fee_minor))?;
                record.byte(fields[7], layout.sign(totals.net_minor() < 0));
                record.number(fields[8], abs(totals.net_minor()))?;
                record.number(fields[9], abs(totals.hash_total_minor()))?;
            }
            Self::Jp => {
                record.number(fields[3], abs(totals.credit_minor))?;
                record.number(fields[4], abs(totals.debit_minor))?;
                record.byte(fields[5], layout.sign(totals.fee_minor < 0));
                record.number(fields[6], abs(totals.fee_minor))?;
                record.byte(fields[7], layout.sign(totals.net_minor() < 0));
                record.number(fields[8], abs(totals.net_minor()))?;
            }
        }
        Ok(())
    }

    /// Appends the end record.
    pub fn end(self, out: &mut Vec<u8>, details: u64, currencies: usize) -> Result<(), FieldError> {
        let fields = self.end_fields();
        // Header + details + one trailer per currency + this record.
        let records = details + currencies as u64 + 2;
        let layout = self;
        let mut record = self.start(out, b'9');
        record.number(fields[1], details)?;
        record.number(fields[2], records)?;
        if layout == Self::Tw {
            record.number(fields[3], currencies as u64)?;
        }
        Ok(())
    }

    /// Appends the trailers (ascending currency) and the end record.
    pub fn close(
        self,
        out: &mut Vec<u8>,
        totals: &BTreeMap<String, CurrencyTotals>,
    ) -> Result<(), FieldError> {
        for (currency, currency_totals) in totals {
            self.trailer(out, currency, currency_totals)?;
        }
        let details = totals.values().map(|totals| totals.items).sum();
        self.end(out, details, totals.len())
    }

    pub fn detail_fields(self) -> DetailFields {
        match self {
            Self::Tw => DetailFields {
                sequence: tw::D_SEQ,
                transaction_id: tw::D_TXID,
                currency: tw::D_CURRENCY,
                amount_sign: tw::D_AMOUNT_SIGN,
                amount: tw::D_AMOUNT,
                fee_sign: tw::D_FEE_SIGN,
                fee: tw::D_FEE,
            },
            Self::Jp => DetailFields {
                sequence: jp::D_SEQ,
                transaction_id: jp::D_TXID,
                currency: jp::D_CURRENCY,
                amount_sign: jp::D_AMOUNT_SIGN,
                amount: jp::D_AMOUNT,
                fee_sign: jp::D_FEE_SIGN,
                fee: jp::D_FEE,
            },
        }
    }

    pub fn trailer_fields(self) -> &'static [Field] {
        match self {
            Self::Tw => tw::T_FIELDS,
            Self::Jp => jp::T_FIELDS,
        }
    }

    pub fn end_fields(self) -> &'static [Field] {
        match self {
            Self::Tw => tw::E_FIELDS,
            Self::Jp => jp::E_FIELDS,
        }
    }
}

/// The CSV header row.
pub const CSV_HEADER: &str = "sequence,partner,business_date,transaction_id,reference,kind,currency,amount_minor,fee_minor,store_id\n";

/// Appends one CSV row.
pub fn csv_row(out: &mut Vec<u8>, sequence: u64, item: &ClearingItem) -> Result<(), FieldError> {
    use std::io::Write as _;
    for (field, value) in [
        ("partner", item.partner.as_str()),
        ("transaction id", &item.transaction_id),
        ("reference", &item.reference),
        ("kind", &item.kind),
        ("currency", &item.currency),
        ("store id", &item.store_id),
    ] {
        if value
            .bytes()
            .any(|b| b == b',' || b == b'"' || !b.is_ascii_graphic())
        {
            return Err(FieldError {
                field,
                value: value.to_owned(),
                len: value.len(),
            });
        }
    }
    writeln!(
        out,
        "{sequence},{},{},{},{},{},{},{},{},{}",
        item.partner,
        crate::model::business_day::format_date(item.business_date),
        item.transaction_id,
        item.reference,
        item.kind,
        item.currency,
        item.amount_minor,
        item.fee_minor,
        item.store_id
    )
    .expect("writing to a Vec cannot fail");
    Ok(())
}

/// The file id of a partner's file of a day: YYYYMMDD, the sequence (2
/// digits), and the first 6 hex digits of SHA-256 of the partner id.
pub fn file_id(partner: &str, business_date: NaiveDate, sequence: u32) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(partner.as_bytes());
    format!(
        "{}{sequence:02}{}",
        yyyymmdd(business_date),
        &hex::encode_upper(digest)[..6]
    )
}

/// The base name of a partner's files of a day: `{partner with ':' as
/// '-'}_{YYYYMMDD}_{sequence:02}`; the fixed-width file adds `.dat`, the CSV `.csv`.
pub fn file_stem(partner: &str, business_date: NaiveDate, sequence: u32) -> String {
    format!(
        "{}_{}_{sequence:02}",
        partner.replace(':', "-"),
        yyyymmdd(business_date)
    )
}

/// `YYYYMMDD` of a date.
pub fn compact_date(date: NaiveDate) -> String {
    yyyymmdd(date)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(kind: &str, amount_minor: i64, fee_minor: i64) -> ClearingItem {
        ClearingItem {
            partner: "biller:TPC".to_owned(),
            business_date: NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
            transaction_id: "01900000-0000-7000-8000-000000000001".to_owned(),
            reference: "0000KS2025080001".to_owned(),
            kind: kind.to_owned(),
            currency: "TWD".to_owned(),
            amount_minor,
            fee_minor,
            store_id: "S001".to_owned(),
        }
    }

    /// Every field lands at its documented positions, in both layouts.
    #[test]
    fn detail_fields_at_documented_positions() {
        let mut out = Vec::new();
        Layout::Tw
            .detail(&mut out, 7, &item("adjustment:card_void", -12_345, -200))
            .unwrap();
        let record = std::str::from_utf8(&out).unwrap();
        assert_eq!(record.len(), 161);
        assert_eq!(&record[0..1], "2");
        assert_eq!(&record[1..9], "00000007");
        assert_eq!(&record[9..45], "01900000-0000-7000-8000-000000000001");
        assert_eq!(record[45..69].trim_end(), "0000KS2025080001");
        assert_eq!(record[69..93].trim_end(), "adjustment:card_void");
        assert_eq!(&record[93..96], "TWD");
        assert_eq!(&record[96..110], "-0000000012345");
        assert_eq!(&record[110..124], "-0000000000200");
        assert_eq!(record[124..156].trim_end(), "S001");

        out.clear();
        Layout::Jp
            .detail(&mut out, 7, &item("adjustment:card_void", -12_345, -200))
            .unwrap();
        let record = std::str::from_utf8(&out).unwrap();
        assert_eq!(record.len(), 201);
        assert_eq!(&record[9..10], "1", "adjustment flag");
        assert_eq!(&record[10..12], "14", "card_void kind code");
        assert_eq!(&record[99..112], "2000000012345", "debit code then amount");
        assert_eq!(&record[112..125], "2000000000200");
    }

    /// Trailers carry the per-currency totals, hash total and counts.
    #[test]
    fn trailer_and_end_records() {
        let mut totals = BTreeMap::new();
        let twd: &mut CurrencyTotals = totals.entry("TWD".to_owned()).or_default();
        twd.add(1_000, 10).unwrap();
        twd.add(-300, -3).unwrap();
        let mut out = Vec::new();
        Layout::Tw.close(&mut out, &totals).unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let trailer = lines[0];
        assert_eq!(&trailer[0..4], "8TWD");
        assert_eq!(&trailer[4..12], "00000002");
        assert_eq!(&trailer[12..31], "+000000000000000700");
        assert_eq!(&trailer[31..50], "+000000000000000007");
        assert_eq!(&trailer[50..69], "+000000000000000693");
        assert_eq!(&trailer[69..87], "000000000000001300");
        assert_eq!(&lines[1][0..20], "90000000200000005001");
    }

    /// A value too long for its field is refused, never truncated.
    #[test]
    fn oversized_values_are_refused() {
        let mut long = item("collection", 1, 0);
        long.reference = "X".repeat(25);
        let error = Layout::Tw.detail(&mut Vec::new(), 1, &long).unwrap_err();
        assert_eq!(error.field, "reference");
        let mut comma = item("collection", 1, 0);
        comma.reference = "A,B".to_owned();
        assert!(csv_row(&mut Vec::new(), 1, &comma).is_err());
        assert_eq!(
            file_stem(
                "biller:TPC",
                NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
                1
            ),
            "biller-TPC_20261123_01"
        );
        assert_eq!(
            file_id(
                "biller:TPC",
                NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
                1
            )
            .len(),
            16
        );
    }
}
