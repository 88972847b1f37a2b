//! `posgate clearing verify FILE`: checks one clearing file (or the
//! manifest) the way a partner would, and says exactly what is wrong:
//! the manifest's signature, the file's entry in the manifest (size and
//! SHA-256), the file's detached signature, and its content: record lengths,
//! record order, sequence numbers, numeric fields, and every trailer total
//! recomputed from the detail records, named by line, positions and field.
//! Settlement files (NACHA `.ach`, instruction `settle-*.txt`) are read back
//! by [`crate::clearing::settle::check`] the same way.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};

use super::layout::{CSV_HEADER, CurrencyTotals, Field, Layout};
use super::sign::{self, Signature, Verifier};

/// What verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Checks that passed, in order.
    pub passed: Vec<String>,
    /// Everything wrong, each naming the file, line and field where it can.
    pub problems: Vec<String>,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn check(&mut self, ok: bool, passed: impl Into<String>, problem: impl FnOnce() -> String) {
        if ok {
            self.passed.push(passed.into());
        } else {
            self.problems.push(problem());
        }
    }
}

/// Longest line read from a file under verification: a record is at most a
/// few hundred bytes, so anything longer is reported, not buffered without end.
const MAX_LINE_BYTES: usize = 4096;

/// Verifies `path` with signatures checked by `verifier`.
pub async fn verify_file(path: &Path, verifier: &Verifier) -> Report {
    let mut report = Report::default();
    let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
        report
            .problems
            .push(format!("{}: not a file name", path.display()));
        return report;
    };
    let dir = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    let manifest_path = match find_manifest(&dir) {
        Ok(found) => found,
        Err(problem) => {
            report.problems.push(problem);
            return report;
        }
    };
    let manifest_name = manifest_path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or_default()
        .to_owned();
    check_signature(&manifest_path, verifier, &mut report).await;
    if name == manifest_name {
        return report;
    }
    let text = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => text,
        Err(error) => {
            report
                .problems
                .push(format!("{manifest_name}: cannot read: {error}"));
            return report;
        }
    };
    let entries = match sign::parse_manifest(&text) {
        Ok(entries) => entries,
        Err(problem) => {
            report.problems.push(format!("{manifest_name} {problem}"));
            return report;
        }
    };
    let (sha256, size_bytes) = match sign::hash_file(path) {
        Ok(hashed) => hashed,
        Err(error) => {
            report
                .problems
                .push(format!("{name}: cannot read: {error}"));
            return report;
        }
    };
    match entries.iter().find(|entry| entry.file.name == name) {
        None => report
            .problems
            .push(format!("{name} is not listed in {manifest_name}")),
        Some(entry) => {
            report.check(
                entry.file.size_bytes == size_bytes,
                format!("size {size_bytes} bytes matches {manifest_name}"),
                || {
                    format!(
                        "{name} is {size_bytes} bytes, but {manifest_name} line {} says {}",
                        entry.line, entry.file.size_bytes
                    )
                },
            );
            report.check(
                entry.file.sha256 == sha256,
                format!("SHA-256 matches {manifest_name}"),
                || {
                    format!(
                        "{name} has SHA-256 {sha256}, but {manifest_name} line {} says {}",
                        entry.line, entry.file.sha256
                    )
                },
            );
        }
    }
    check_signature(path, verifier, &mut report).await;
    check_content(path, name, &mut report);
    report
}

/// The one manifest in a day's directory.
fn find_manifest(dir: &Path) -> Result<PathBuf, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|error| format!("{}: cannot list: {error}", dir.display()))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("MANIFEST_") && has_extension(name, "txt"))
        })
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(format!("no MANIFEST_YYYYMMDD.txt in {}", dir.display())),
        _ => Err(format!("more than one manifest in {}", dir.display())),
    }
}

/// Checks `path.sig` against the file's actual size and SHA-256.
async fn check_signature(path: &Path, verifier: &Verifier, report: &mut Report) {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or_default()
        .to_owned();
    let sig_name = format!("{name}.sig");
    let sig_path = path.with_file_name(&sig_name);
    let signature = match std::fs::read_to_string(&sig_path)
        .map_err(|error| format!("cannot read: {error}"))
        .and_then(|text| Signature::parse(&text))
    {
        Ok(signature) => signature,
        Err(problem) => {
            report.problems.push(format!("{sig_name}: {problem}"));
            return;
        }
    };
    let (sha256, size_bytes) = match sign::hash_file(path) {
        Ok(hashed) => hashed,
        Err(error) => {
            report
                .problems
                .push(format!("{name}: cannot read: {error}"));
            return;
        }
    };
    let ok = verifier
        .check(&signature, &sign::statement(&name, size_bytes, &sha256))
        .await;
    report.check(
        ok,
        format!(
            "{sig_name}: Ed25519 signature by {} v{} is valid",
            signature.key_label, signature.key_version
        ),
        || {
            format!(
                "{sig_name}: signature does not match {name} (the file was changed after signing, or signed by another key than {} v{})",
                signature.key_label, signature.key_version
            )
        },
    );
}

fn check_content(path: &Path, name: &str, report: &mut Report) {
    let lines = match read_lines(path) {
        Ok(lines) => lines,
        Err(problem) => {
            report.problems.push(format!("{name}: {problem}"));
            return;
        }
    };
    if has_extension(name, "dat") {
        check_fixed(name, &lines, report);
    } else if has_extension(name, "ach") {
        settled(
            name,
            "NACHA records, blocks, entry hash, counts and totals",
            crate::clearing::settle::check::check_ach(name, &lines),
            report,
        );
    } else if name.starts_with("settle-") && has_extension(name, "txt") {
        settled(
            name,
            "instruction records, sequence, count and totals",
            crate::clearing::settle::check::check_instruction(name, &lines),
            report,
        );
    } else if name.starts_with("POSITIONS_") {
        check_positions(name, &lines, report);
    } else if has_extension(name, "csv") {
        check_csv(name, &lines, report);
    }
}

/// Adds a settlement file's content check to the report.
fn settled(name: &str, what: &str, problems: Vec<String>, report: &mut Report) {
    if problems.is_empty() {
        report.passed.push(format!("{name}: {what} are consistent"));
    } else {
        report.problems.extend(problems);
    }
}

fn has_extension(name: &str, extension: &str) -> bool {
    Path::new(name)
        .extension()
        .is_some_and(|found| found.eq_ignore_ascii_case(extension))
}

/// Reads a file as lines without their LF; refuses a missing final LF or a line too long.
fn read_lines(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let file = std::fs::File::open(path).map_err(|error| format!("cannot read: {error}"))?;
    let mut reader = std::io::BufReader::new(file);
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|error| format!("cannot read: {error}"))?;
        if read == 0 {
            return Ok(lines);
        }
        if line.len() > MAX_LINE_BYTES {
            return Err(format!(
                "line {} is longer than {MAX_LINE_BYTES} bytes",
                lines.len() + 1
            ));
        }
        if line.pop() != Some(b'\n') {
            return Err(format!("line {} does not end with LF", lines.len() + 1));
        }
        lines.push(line);
    }
}

fn field_text(record: &[u8], field: Field) -> String {
    String::from_utf8_lossy(field.slice(record)).into_owned()
}

fn describe(line: usize, field: Field) -> String {
    format!(
        "line {line}, positions {}-{} ({})",
        field.start,
        field.end(),
        field.name
    )
}

fn parse_number(record: &[u8], field: Field) -> Option<u64> {
    let digits = field.slice(record);
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// One signed amount of a detail record.
fn signed(
    layout: Layout,
    record: &[u8],
    sign_field: Field,
    value_field: Field,
    line: usize,
) -> Result<i64, String> {
    let negative = layout
        .parse_sign(sign_field.slice(record)[0])
        .ok_or_else(|| {
            format!(
                "{}: {:?} is not a sign of layout {}",
                describe(line, sign_field),
                field_text(record, sign_field),
                layout.id()
            )
        })?;
    let value = parse_number(record, value_field).ok_or_else(|| {
        format!(
            "{}: {:?} is not digits",
            describe(line, value_field),
            field_text(record, value_field)
        )
    })?;
    let value =
        i64::try_from(value).map_err(|_| format!("{}: too large", describe(line, value_field)))?;
    Ok(if negative { -value } else { value })
}

/// Checks a fixed-width file: layout, record lengths and order, sequence,
/// and the trailers and end record against totals recomputed from the details.
fn check_fixed(name: &str, lines: &[Vec<u8>], report: &mut Report) {
    let Some(header) = lines.first() else {
        report.problems.push(format!("{name}: empty file"));
        return;
    };
    let layout = [Layout::Tw, Layout::Jp].into_iter().find(|layout| {
        header.len() == layout.record_len()
            && Layout::from_id(layout.layout_field().slice(header)) == Some(*layout)
    });
    let Some(layout) = layout else {
        report.problems.push(format!(
            "{name} line 1: not a header of a known layout (TWFIX001 at 80-87 in 160 bytes, JPFIX001 at 83-90 in 200 bytes)"
        ));
        return;
    };
    if header[0] != b'1' {
        report.problems.push(format!(
            "{name} line 1, position 1 (record type): expected 1"
        ));
    }
    let (totals, index, mut content_problems) = check_details(name, layout, lines);
    let mut expected = Vec::new();
    if let Err(error) = layout.close(&mut expected, &totals) {
        content_problems.push(format!("{name}: recomputed totals do not fit: {error}"));
    }
    let expected_lines: Vec<&[u8]> = expected
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .collect();
    let actual_lines = &lines[index.min(lines.len())..];
    for (offset, expected_record) in expected_lines.iter().enumerate() {
        let line = index + offset + 1;
        let Some(actual) = actual_lines.get(offset) else {
            content_problems.push(format!(
                "{name}: missing record at line {line}; expected {}",
                String::from_utf8_lossy(expected_record).trim_end()
            ));
            continue;
        };
        compare_record(
            name,
            layout,
            line,
            actual,
            expected_record,
            &totals,
            &mut content_problems,
        );
    }
    if actual_lines.len() > expected_lines.len() {
        content_problems.push(format!(
            "{name} line {}: unexpected record after the end record",
            index + expected_lines.len() + 1
        ));
    }
    let items: u64 = totals.values().map(|totals| totals.items).sum();
    if content_problems.is_empty() {
        report.passed.push(format!(
            "{name}: layout {}, {items} detail records, trailers match the details ({})",
            layout.id(),
            totals
                .iter()
                .map(|(currency, totals)| format!(
                    "{currency} {} net {}",
                    totals.amount_minor,
                    totals.net_minor()
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    report.problems.extend(content_problems);
}

/// Reads the detail records (from line 2 while the record type is `2`):
/// lengths, sequence numbers, signs and digits; returns the recomputed
/// totals, the index of the first record after the details, and the problems.
fn check_details(
    name: &str,
    layout: Layout,
    lines: &[Vec<u8>],
) -> (BTreeMap<String, CurrencyTotals>, usize, Vec<String>) {
    let fields = layout.detail_fields();
    let mut totals: BTreeMap<String, CurrencyTotals> = BTreeMap::new();
    let mut index = 1;
    let mut content_problems = Vec::new();
    while index < lines.len() && lines[index].first() == Some(&b'2') {
        let line = index + 1;
        let record = &lines[index];
        index += 1;
        if record.len() != layout.record_len() {
            content_problems.push(format!(
                "{name} line {line}: record is {} bytes, layout {} has {}",
                record.len(),
                layout.id(),
                layout.record_len()
            ));
            continue;
        }
        let expected = (line - 1) as u64;
        if parse_number(record, fields.sequence) != Some(expected) {
            content_problems.push(format!(
                "{name} {}: {:?}, expected {expected:08}",
                describe(line, fields.sequence),
                field_text(record, fields.sequence)
            ));
        }
        let amounts =
            signed(layout, record, fields.amount_sign, fields.amount, line).and_then(|amount| {
                signed(layout, record, fields.fee_sign, fields.fee, line).map(|fee| (amount, fee))
            });
        match amounts {
            Ok((amount, fee)) => {
                let currency = field_text(record, fields.currency);
                totals.entry(currency).or_default().add(amount, fee);
            }
            Err(problem) => content_problems.push(format!("{name} {problem}")),
        }
    }
    (totals, index, content_problems)
}

/// Compares a trailer or end record with the one recomputed from the details, field by field.
fn compare_record(
    name: &str,
    layout: Layout,
    line: usize,
    actual: &[u8],
    expected: &[u8],
    totals: &BTreeMap<String, CurrencyTotals>,
    problems: &mut Vec<String>,
) {
    if actual == expected {
        return;
    }
    if actual.len() != expected.len() {
        problems.push(format!(
            "{name} line {line}: record is {} bytes, layout {} has {}",
            actual.len(),
            layout.id(),
            expected.len()
        ));
        return;
    }
    let fields = if expected[0] == b'8' {
        layout.trailer_fields()
    } else {
        layout.end_fields()
    };
    let what = if expected[0] == b'8' {
        let currency = String::from_utf8_lossy(&expected[1..4]).into_owned();
        let count = totals.get(&currency).map_or(0, |totals| totals.items);
        format!("{currency} trailer ({count} details)")
    } else {
        "end record".to_owned()
    };
    let mut named = false;
    for field in fields {
        if field.slice(actual) != field.slice(expected) {
            named = true;
            problems.push(format!(
                "{name} {} of the {what}: file says {:?}, the detail records give {:?}",
                describe(line, *field),
                field_text(actual, *field),
                field_text(expected, *field)
            ));
        }
    }
    if !named {
        problems.push(format!(
            "{name} line {line}: filler positions of the {what} are not spaces"
        ));
    }
}

fn check_csv(name: &str, lines: &[Vec<u8>], report: &mut Report) {
    let mut problems = Vec::new();
    if lines.first().map(Vec::as_slice) != Some(CSV_HEADER.trim_end().as_bytes()) {
        problems.push(format!(
            "{name} line 1: header row is not `{}`",
            CSV_HEADER.trim_end()
        ));
    }
    let mut totals: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (index, record) in lines.iter().enumerate().skip(1) {
        let line = index + 1;
        let text = String::from_utf8_lossy(record);
        let columns: Vec<&str> = text.split(',').collect();
        if columns.len() != 10 {
            problems.push(format!(
                "{name} line {line}: {} columns, expected 10",
                columns.len()
            ));
            continue;
        }
        if columns[0].parse::<u64>().ok() != Some(index as u64) {
            problems.push(format!(
                "{name} line {line}, column 1 (sequence): {:?}, expected {index}",
                columns[0]
            ));
        }
        let amount = columns[7].parse::<i64>();
        let fee = columns[8].parse::<i64>();
        match (amount, fee) {
            (Ok(amount), Ok(fee)) => {
                let sums = totals.entry(columns[6].to_owned()).or_insert((0, 0));
                sums.0 += amount;
                sums.1 += fee;
            }
            (Err(_), _) => problems.push(format!(
                "{name} line {line}, column 8 (amount_minor): {:?} is not an integer",
                columns[7]
            )),
            (_, Err(_)) => problems.push(format!(
                "{name} line {line}, column 9 (fee_minor): {:?} is not an integer",
                columns[8]
            )),
        }
    }
    if problems.is_empty() {
        report.passed.push(format!(
            "{name}: {} rows well formed ({})",
            lines.len().saturating_sub(1),
            totals
                .iter()
                .map(|(currency, (amount, fee))| format!("{currency} amount {amount} fee {fee}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    report.problems.extend(problems);
}

/// Positions of every party: gross and net sum to zero per currency.
fn check_positions(name: &str, lines: &[Vec<u8>], report: &mut Report) {
    let mut sums: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut problems = Vec::new();
    for (index, record) in lines.iter().enumerate().skip(1) {
        let text = String::from_utf8_lossy(record);
        let columns: Vec<&str> = text.split(',').collect();
        let parsed = (columns.len() == 6)
            .then(|| {
                Some((
                    columns[3].parse::<i64>().ok()?,
                    columns[5].parse::<i64>().ok()?,
                ))
            })
            .flatten();
        match parsed {
            Some((gross, net)) => {
                let entry = sums.entry(columns[1].to_owned()).or_insert((0, 0));
                entry.0 += gross;
                entry.1 += net;
            }
            None => problems.push(format!(
                "{name} line {}: expected party,currency,items,gross_minor,fees_minor,net_minor",
                index + 1
            )),
        }
    }
    for (currency, (gross, net)) in &sums {
        if *gross != 0 || *net != 0 {
            problems.push(format!(
                "{name}: {currency} positions sum to gross {gross}, net {net}; both must be zero"
            ));
        }
    }
    if problems.is_empty() {
        report
            .passed
            .push(format!("{name}: positions net to zero in every currency"));
    }
    report.problems.extend(problems);
}
