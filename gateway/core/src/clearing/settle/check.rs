//! Reading a settlement file back the way its receiver does, for
//! `posgate clearing verify`: record lengths and order, numeric fields, and
//! every count, hash and total recomputed from the entries, each problem
//! named by line, positions (1-based, inclusive) and field.
//!
//! - [`check_ach`]: the NACHA file ([`super::nacha`]).
//! - [`check_instruction`]: the fixed-width instruction file ([`super::instruction`]).

use super::{aba_check_digit_ok, nacha};

/// Most problems one file reports: a file shifted by one byte would
/// otherwise report every record.
const MAX_PROBLEMS: usize = 50;

/// A field by its 1-based inclusive positions.
#[derive(Debug, Clone, Copy)]
struct Field {
    start: usize,
    end: usize,
    name: &'static str,
}

const fn field(start: usize, end: usize, name: &'static str) -> Field {
    Field { start, end, name }
}

impl Field {
    fn text(self, record: &[u8]) -> &str {
        record
            .get(self.start - 1..self.end)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .unwrap_or("")
    }
}

/// The problems found so far, bounded.
#[derive(Debug, Default)]
struct Problems {
    name: String,
    list: Vec<String>,
}

impl Problems {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            list: Vec::new(),
        }
    }

    fn add(&mut self, line: usize, field: Field, what: impl std::fmt::Display) {
        if self.list.len() < MAX_PROBLEMS {
            self.list.push(format!(
                "{} line {line}, positions {}-{} ({}): {what}",
                self.name, field.start, field.end, field.name
            ));
        }
    }

    fn add_file(&mut self, what: impl std::fmt::Display) {
        if self.list.len() < MAX_PROBLEMS {
            self.list.push(format!("{}: {what}", self.name));
        }
    }

    /// The field's digits as a number; a problem (and `None`) otherwise.
    fn number(&mut self, line: usize, record: &[u8], field: Field) -> Option<u64> {
        let text = field.text(record);
        if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
            self.add(line, field, format!("{text:?} is not digits"));
            return None;
        }
        text.parse().ok()
    }

    /// Compares a stated number with the one recomputed from the entries.
    fn expect(&mut self, line: usize, record: &[u8], field: Field, recomputed: u64) {
        if let Some(stated) = self.number(line, record, field)
            && stated != recomputed
        {
            self.add(
                line,
                field,
                format!("says {stated}, the entries give {recomputed}"),
            );
        }
    }

    fn expect_text(&mut self, line: usize, record: &[u8], field: Field, expected: &str) {
        let found = field.text(record);
        if found != expected {
            self.add(line, field, format!("is {found:?}, expected {expected:?}"));
        }
    }
}

// NACHA positions (1-based, inclusive).
const RECORD_TYPE: Field = field(1, 1, "record type code");
const FH_PRIORITY: Field = field(2, 3, "priority code");
const FH_RECORD_SIZE: Field = field(35, 37, "record size");
const FH_BLOCKING: Field = field(38, 39, "blocking factor");
const FH_FORMAT: Field = field(40, 40, "format code");
const BH_SERVICE_CLASS: Field = field(2, 4, "service class code");
const BH_SEC: Field = field(51, 53, "standard entry class code");
const BH_BATCH_NUMBER: Field = field(88, 94, "batch number");
const ED_TRANSACTION_CODE: Field = field(2, 3, "transaction code");
const ED_ROUTING: Field = field(4, 12, "RDFI routing number and check digit");
const ED_ROUTING8: Field = field(4, 11, "RDFI routing number");
const ED_AMOUNT: Field = field(30, 39, "amount");
const ED_ADDENDA: Field = field(79, 79, "addenda record indicator");
const ED_TRACE_SEQUENCE: Field = field(88, 94, "trace number sequence");
const BC_SERVICE_CLASS: Field = field(2, 4, "service class code");
const BC_ENTRY_COUNT: Field = field(5, 10, "entry/addenda count");
const BC_ENTRY_HASH: Field = field(11, 20, "entry hash");
const BC_DEBITS: Field = field(21, 32, "total debit entry dollar amount");
const BC_CREDITS: Field = field(33, 44, "total credit entry dollar amount");
const BC_BATCH_NUMBER: Field = field(88, 94, "batch number");
const FC_BATCH_COUNT: Field = field(2, 7, "batch count");
const FC_BLOCK_COUNT: Field = field(8, 13, "block count");
const FC_ENTRY_COUNT: Field = field(14, 21, "entry/addenda count");
const FC_ENTRY_HASH: Field = field(22, 31, "entry hash");
const FC_DEBITS: Field = field(32, 43, "total debit entry dollar amount");
const FC_CREDITS: Field = field(44, 55, "total credit entry dollar amount");

/// The entry hash keeps its last 10 digits.
const HASH_MODULUS: u64 = 10_000_000_000;

/// Totals recomputed over entry detail records.
#[derive(Debug, Default, Clone, Copy)]
struct AchTotals {
    entries: u64,
    hash: u64,
    debits: u64,
    credits: u64,
}

/// Checks a NACHA file (lines without their LF); the problems, empty when
/// every record and total is right.
pub fn check_ach(name: &str, lines: &[Vec<u8>]) -> Vec<String> {
    let mut problems = Problems::new(name);
    if lines.is_empty() {
        problems.add_file("empty file");
        return problems.list;
    }
    for (index, record) in lines.iter().enumerate() {
        if record.len() != nacha::RECORD_LEN {
            problems.add_file(format!(
                "line {} is {} bytes, a NACHA record is {}",
                index + 1,
                record.len(),
                nacha::RECORD_LEN
            ));
        }
    }
    if !lines.len().is_multiple_of(nacha::BLOCKING_FACTOR) {
        problems.add_file(format!(
            "{} records do not fill whole blocks of {}",
            lines.len(),
            nacha::BLOCKING_FACTOR
        ));
    }
    check_file_header(&lines[0], &mut problems);

    let mut file = AchTotals::default();
    let mut batches = 0_u64;
    let mut index = 1;
    while index < lines.len() && lines[index].first() == Some(&b'5') {
        batches += 1;
        index = check_batch(lines, index, &mut file, &mut problems);
    }
    let Some(control) = lines.get(index) else {
        problems.add_file("no file control record (type 9)");
        return problems.list;
    };
    let line = index + 1;
    if control.first() != Some(&b'9') || is_filler(control) {
        problems.add(
            line,
            RECORD_TYPE,
            format!(
                "expected a batch header (5) or the file control record (9), found {:?}",
                RECORD_TYPE.text(control)
            ),
        );
        return problems.list;
    }
    problems.expect(line, control, FC_BATCH_COUNT, batches);
    let blocks = lines.len().div_ceil(nacha::BLOCKING_FACTOR) as u64;
    problems.expect(line, control, FC_BLOCK_COUNT, blocks);
    problems.expect(line, control, FC_ENTRY_COUNT, file.entries);
    problems.expect(line, control, FC_ENTRY_HASH, file.hash);
    problems.expect(line, control, FC_DEBITS, file.debits);
    problems.expect(line, control, FC_CREDITS, file.credits);
    for (filler_index, record) in lines.iter().enumerate().skip(index + 1) {
        if !is_filler(record) {
            problems.add_file(format!(
                "line {}: after the file control record only filler records of 94 '9's may follow",
                filler_index + 1
            ));
        }
    }
    problems.list
}

fn is_filler(record: &[u8]) -> bool {
    record.len() == nacha::RECORD_LEN && record.iter().all(|&byte| byte == b'9')
}

fn check_file_header(record: &[u8], problems: &mut Problems) {
    problems.expect_text(1, record, RECORD_TYPE, "1");
    problems.expect_text(1, record, FH_PRIORITY, "01");
    problems.expect_text(1, record, FH_RECORD_SIZE, "094");
    problems.expect_text(1, record, FH_BLOCKING, "10");
    problems.expect_text(1, record, FH_FORMAT, "1");
}

/// Checks the batch whose header is at `start`; returns the index after its
/// control record, having added its entries to `file`.
fn check_batch(
    lines: &[Vec<u8>],
    start: usize,
    file: &mut AchTotals,
    problems: &mut Problems,
) -> usize {
    let header = &lines[start];
    let service_class = BH_SERVICE_CLASS.text(header).to_owned();
    if !matches!(service_class.as_str(), "200" | "220" | "225") {
        problems.add(
            start + 1,
            BH_SERVICE_CLASS,
            format!("{service_class:?} is not 200, 220 or 225"),
        );
    }
    problems.expect_text(start + 1, header, BH_SEC, "CCD");
    let mut batch = AchTotals::default();
    let mut index = start + 1;
    while index < lines.len() && lines[index].first() == Some(&b'6') {
        check_entry(
            &lines[index],
            index + 1,
            batch.entries + 1,
            &service_class,
            &mut batch,
            problems,
        );
        index += 1;
    }
    let Some(control) = lines.get(index) else {
        problems.add_file(format!(
            "the batch starting at line {} has no batch control record (type 8)",
            start + 1
        ));
        return index;
    };
    let line = index + 1;
    if control.first() != Some(&b'8') {
        problems.add(
            line,
            RECORD_TYPE,
            format!(
                "expected an entry detail (6) or the batch control record (8), found {:?}",
                RECORD_TYPE.text(control)
            ),
        );
        return index;
    }
    problems.expect_text(line, control, BC_SERVICE_CLASS, &service_class);
    problems.expect(line, control, BC_ENTRY_COUNT, batch.entries);
    problems.expect(line, control, BC_ENTRY_HASH, batch.hash);
    problems.expect(line, control, BC_DEBITS, batch.debits);
    problems.expect(line, control, BC_CREDITS, batch.credits);
    problems.expect_text(line, control, BC_BATCH_NUMBER, BH_BATCH_NUMBER.text(header));
    file.entries += batch.entries;
    file.hash = (file.hash + batch.hash) % HASH_MODULUS;
    file.debits += batch.debits;
    file.credits += batch.credits;
    index + 1
}

fn check_entry(
    record: &[u8],
    line: usize,
    sequence: u64,
    service_class: &str,
    batch: &mut AchTotals,
    problems: &mut Problems,
) {
    let code = ED_TRANSACTION_CODE.text(record);
    let credit = match code {
        nacha::CODE_CHECKING_CREDIT => true,
        nacha::CODE_CHECKING_DEBIT => false,
        other => {
            problems.add(
                line,
                ED_TRANSACTION_CODE,
                format!("{other:?} is not 22 (checking credit) or 27 (checking debit)"),
            );
            return;
        }
    };
    if (credit && service_class == "225") || (!credit && service_class == "220") {
        problems.add(
            line,
            ED_TRANSACTION_CODE,
            format!("{code} is not allowed in a batch of service class {service_class}"),
        );
    }
    if !aba_check_digit_ok(ED_ROUTING.text(record)) {
        problems.add(line, ED_ROUTING, "fails the ABA check digit");
    }
    problems.expect_text(line, record, ED_ADDENDA, "0");
    problems.expect(line, record, ED_TRACE_SEQUENCE, sequence);
    let routing8 = problems.number(line, record, ED_ROUTING8).unwrap_or(0);
    let Some(cents) = problems.number(line, record, ED_AMOUNT) else {
        return;
    };
    if cents == 0 {
        problems.add(line, ED_AMOUNT, "is zero");
    }
    batch.entries += 1;
    batch.hash = (batch.hash + routing8) % HASH_MODULUS;
    if credit {
        batch.credits += cents;
    } else {
        batch.debits += cents;
    }
}

// Instruction file positions (1-based, inclusive), as in `super::instruction`.
const IN_HEADER_DATE: Field = field(2, 9, "business date");
const IN_HEADER_CURRENCY: Field = field(26, 28, "currency");
const IN_DETAIL_SEQUENCE: Field = field(2, 7, "sequence");
const IN_DETAIL_DIRECTION: Field = field(8, 8, "direction");
const IN_DETAIL_AMOUNT: Field = field(95, 112, "amount");
const IN_TRAILER_COUNT: Field = field(2, 7, "detail record count");
const IN_TRAILER_CREDITED: Field = field(8, 25, "total credited");
const IN_TRAILER_DEBITED: Field = field(26, 43, "total debited");
const IN_TRAILER_SIGN: Field = field(44, 44, "sign of credited - debited");
const IN_TRAILER_NET: Field = field(45, 62, "credited - debited");

/// Checks a settlement instruction file `settle-YYYYMMDD-CUR.txt` (lines
/// without their LF); the problems, empty when every record and total is right.
pub fn check_instruction(name: &str, lines: &[Vec<u8>]) -> Vec<String> {
    let mut problems = Problems::new(name);
    let (Some(header), Some(trailer)) = (lines.first(), lines.last()) else {
        problems.add_file("empty file");
        return problems.list;
    };
    if lines.len() < 3 {
        problems.add_file("a file has a header, at least one detail and a trailer");
    }
    for (index, record) in lines.iter().enumerate() {
        if record.len() != super::instruction::RECORD_LEN {
            problems.add_file(format!(
                "line {} is {} bytes, a record is {}",
                index + 1,
                record.len(),
                super::instruction::RECORD_LEN
            ));
        }
    }
    problems.expect_text(1, header, RECORD_TYPE, "H");
    // The name says the day and currency: settle-YYYYMMDD-CUR.txt.
    if let Some((date, currency)) = name
        .strip_prefix("settle-")
        .and_then(|rest| rest.strip_suffix(".txt"))
        .and_then(|rest| rest.split_once('-'))
    {
        problems.expect_text(1, header, IN_HEADER_DATE, date);
        problems.expect_text(1, header, IN_HEADER_CURRENCY, currency);
    }
    let (mut credited, mut debited, mut count) = (0_u64, 0_u64, 0_u64);
    let details = lines.len().saturating_sub(1);
    for (index, record) in lines.iter().enumerate().take(details).skip(1) {
        let line = index + 1;
        if RECORD_TYPE.text(record) != "D" {
            problems.add(line, RECORD_TYPE, "expected a detail record D");
            continue;
        }
        count += 1;
        problems.expect(line, record, IN_DETAIL_SEQUENCE, count);
        let Some(amount) = problems.number(line, record, IN_DETAIL_AMOUNT) else {
            continue;
        };
        if amount == 0 {
            problems.add(line, IN_DETAIL_AMOUNT, "is zero");
        }
        match IN_DETAIL_DIRECTION.text(record) {
            "C" => credited += amount,
            "D" => debited += amount,
            other => problems.add(
                line,
                IN_DETAIL_DIRECTION,
                format!("{other:?} is not C (credit) or D (debit)"),
            ),
        }
    }
    let line = lines.len();
    if lines.len() < 2 || RECORD_TYPE.text(trailer) != "T" {
        problems.add(line, RECORD_TYPE, "expected the trailer record T");
        return problems.list;
    }
    problems.expect(line, trailer, IN_TRAILER_COUNT, count);
    problems.expect(line, trailer, IN_TRAILER_CREDITED, credited);
    problems.expect(line, trailer, IN_TRAILER_DEBITED, debited);
    let (sign, net) = if credited >= debited {
        ("+", credited - debited)
    } else {
        ("-", debited - credited)
    };
    problems.expect_text(line, trailer, IN_TRAILER_SIGN, sign);
    problems.expect(line, trailer, IN_TRAILER_NET, net);
    problems.list
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<Vec<u8>> {
        text.lines().map(|line| line.as_bytes().to_vec()).collect()
    }

    fn ach() -> String {
        let originator = super::super::Originator {
            destination_routing: "091000019".into(),
            destination_name: "Fed Bank".into(),
            origin_id: "1234567890".into(),
            origin_name: "posgate chain".into(),
            company_name: "POSGATE CHAIN".into(),
            company_id: "1234567890".into(),
            odfi_routing: "091000019".into(),
        };
        let entry = |partner: &str, amount_minor: i64| nacha::AchEntry {
            partner: partner.into(),
            name: partner.into(),
            routing_number: "011401533".into(),
            account_number: "12345".into(),
            amount_minor,
        };
        let spec = nacha::AchFileSpec {
            business_date: chrono::NaiveDate::from_ymd_opt(2026, 11, 27).unwrap(),
            created_at: chrono::NaiveDate::from_ymd_opt(2026, 11, 28)
                .unwrap()
                .and_hms_opt(2, 0, 0)
                .unwrap(),
            run_sequence: 1,
        };
        nacha::render(
            &originator,
            &spec,
            &[entry("biller:A", 1_500), entry("bank:B", -700)],
        )
        .unwrap()
        .unwrap()
    }

    /// A rendered file passes; a changed amount is named with both totals it breaks.
    #[test]
    fn ach_amount_change_breaks_batch_and_file_totals() {
        let text = ach();
        assert_eq!(check_ach("f.ach", &lines(&text)), Vec::<String>::new());
        let mut changed = lines(&text);
        changed[2][38] = b'9';
        let problems = check_ach("f.ach", &changed);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("line 5, positions 33-44")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("line 6, positions 44-55")),
            "{problems:?}"
        );
    }
}
