//! Bill-slip barcodes: parsing and building the barcodes that billers print on
//! convenience-store payment slips, with their check-digit rules.
//!
//! Layout:
//! - [`BarcodeProfile`]: which slip layout a biller prints, by its config name.
//! - [`ParsedSlip`]: what a slip says, independent of layout.
//! - [`BarcodeError`]: why a barcode was refused, naming the segment.
//! - [`parse`] / [`encode`]: scanner text to [`ParsedSlip`] and back.
//! - [`jp_gs1_check_digit`] / [`tw_check_pair`]: the check-digit rules.
//!
//! # Japan: GS1-128 convenience-store slip (AI 91)
//!
//! One barcode of exactly 44 digits: `91` · 6-digit company code · 21-digit
//! free field · 1-digit re-issue count · `YYMMDD` due date (Gregorian, 20YY) ·
//! 1-digit stamp-duty flag · 6-digit amount in yen · 1 check digit.
//!
//! The check digit is modulus 10 over all 43 preceding digits including the
//! `91`, weight 3 on the rightmost digit and alternating 3/1 leftwards, result
//! `(10 − sum mod 10) mod 10`. Confirmed against an open-source generator,
//! `LogicBarcodeDataCvsAbstract::_calcMod10` (PHP, namespace
//! `models\Logic\BarcodeData\Cvs`, found with the code search): it weights the
//! 0-based even indices of the 43-digit string by 3, which is the rightmost
//! digit and every second one leftwards because 43 is odd, and builds the
//! string as `91` + company code + 21-digit free field + re-issue count +
//! `YYMMDD` + stamp flag + `%06d` amount. The due date sits at digits 31–36
//! as Gregorian `YYMMDD` (<https://paya02.com/it/convenient/cvs-limit>), and a
//! due date of `999999` means the biller set no deadline
//! (<https://blog.yam5.com/archives/1550>, citing Tokyo Electric Power's
//! slips); [`parse`] maps it to [`NO_DUE_DATE`]. `000000` and other impossible
//! dates are refused.
//!
//! # Taiwan: three-segment Code 39 convenience-store slip
//!
//! Segment 1 (9): due date `YYMMDD` + 3-character collection-item (agency)
//! code. Segment 2 (16): the biller's bill/customer number. Segment 3 (15):
//! 4-character period (`YYMM` in ROC years, or `MMDD`, per biller) + 2 check
//! characters + 9-digit amount in whole TWD.
//!
//! Check characters: letters map to digits (A–I → 1–9, J–R → 1–9, S–Z → 2–9);
//! positions are counted from 1 *within each segment*, and segment 3 is taken
//! with its check pair removed (13 characters). Removing the pair at positions
//! 5–6 does not change the parity of any later position, so "removed" and
//! "replaced by zeros" agree. The odd-position sum mod 11 gives the first
//! character (0 → `A`, 10 → `B`), the even-position sum mod 11 the second
//! (0 → `X`, 10 → `Y`). Sources, found with the code search:
//! - `ChannelHelper.GenSMBarcode3` (C#, a school-fee system): per-segment
//!   `idx % 2` sums over segment 1, segment 2, then the period and the 9-digit
//!   amount of segment 3 with the pair left out; segment 1 uses the ROC year
//!   (`民國yymmdd`) and segment 3 the ROC `YYMM` of the due date.
//! - `/api/generateBarcodes.js` (a Vercel function ported from Apps Script):
//!   the same per-segment sums over `datePart + paddedAmount`, ROC year, and a
//!   choice of `YYMM` or `MMDD` for the period.
//! - Conflict: `OBankHelper.GenerateSupermarketBarcodes` (C#) writes the
//!   Gregorian year in segment 1 and sums the amount digits with the opposite
//!   parity (`amount[1], [3] …` as odd). Its amount parity disagrees with both
//!   other sources and with `REFERENCES.md`, so it is not followed; its year
//!   convention is offered as [`BarcodeProfile::TaiwanCvsThreeSegmentGregorian`].
//!
//! No official specification was found, so the layout follows
//! `REFERENCES.md` and the common open-source form. Two-digit ROC years are
//! read as ROC 100–199 (2011–2110); two-digit Gregorian years as 2000–2099.
//! Segment characters are limited to `0-9A-Z`: Code 39 is upper-case, and the
//! punctuation Code 39 also encodes does not occur in these layouts.

use chrono::{Datelike, NaiveDate};

/// The due date [`parse`] reports for a Japanese slip printed with `999999`
/// ("no deadline"). It is the latest representable date, so an expiry check
/// such as `today > slip.due_date` correctly never fires.
pub const NO_DUE_DATE: NaiveDate = NaiveDate::MAX;

/// Segments a Japanese slip carries: one GS1-128 barcode.
const JP_SEGMENT_COUNT: usize = 1;
/// Digits in the Japanese barcode after scanner prefixes are removed.
const JP_PAYLOAD_LEN: usize = 44;
/// The application identifier every Japanese slip starts with.
const JP_APPLICATION_IDENTIFIER: &str = "91";
/// AIM symbology identifier some scanners put before GS1-128 data.
const JP_SYMBOLOGY_PREFIX: &str = "]C1";
/// FNC1 as scanners transmit it (ASCII GS).
const JP_FNC1: char = '\u{1d}';
/// Human-readable form of the application identifier some scanners send.
const JP_BRACKETED_AI: &str = "(91)";
/// Longest prefix a scanner adds: `]C1`, FNC1, and the brackets of `(91)`.
const JP_PREFIX_MAX_BYTES: usize = 6;
/// Largest amount six digits can hold.
const JP_MAX_AMOUNT_YEN: u64 = 999_999;
/// Japanese due dates are Gregorian `YY` in the 2000s.
const JP_CENTURY_BASE_YEAR: i32 = 2000;
/// The due-date text that means "no deadline".
const JP_NO_DUE_DATE_TEXT: &str = "999999";

/// Segments a Taiwanese slip carries: three Code 39 barcodes.
const TW_SEGMENT_COUNT: usize = 3;
/// Largest amount nine digits can hold.
const TW_MAX_AMOUNT_TWD: u64 = 999_999_999;
/// ROC year 100 is 2011; two-digit ROC years are read as ROC 100–199.
const TW_ROC_CENTURY_BASE_YEAR: i32 = 2011;
/// Two-digit Gregorian years are read as 2000–2099.
const TW_GREGORIAN_CENTURY_BASE_YEAR: i32 = 2000;

/// Room for surrounding whitespace (a scanner's CR/LF, a pasted space) on
/// top of the layout; anything longer is refused before any other work.
const WHITESPACE_SLACK_BYTES: usize = 8;

/// Which slip layout a biller prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BarcodeProfile {
    /// Taiwanese three-segment Code 39 slip, years in the ROC calendar (the
    /// common form in the open-source generators found).
    TaiwanCvsThreeSegment,
    /// The same layout with Gregorian two-digit years, as one generator
    /// prints; kept as its own profile so a slip round-trips through
    /// [`ParsedSlip::profile`].
    TaiwanCvsThreeSegmentGregorian,
    /// Japanese GS1-128 convenience-store slip (AI 91).
    JapanGs1Cvs,
}

/// How a Taiwanese slip writes two-digit years.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwYearConvention {
    /// Last two digits of the ROC (Minguo) year: 114 → `14` for 2025.
    Roc,
    /// Last two digits of the Gregorian year: 2025 → `25`.
    Gregorian,
}

impl TwYearConvention {
    /// The Gregorian year that two-digit year `00` stands for.
    fn century_base_year(self) -> i32 {
        match self {
            Self::Roc => TW_ROC_CENTURY_BASE_YEAR,
            Self::Gregorian => TW_GREGORIAN_CENTURY_BASE_YEAR,
        }
    }
}

impl BarcodeProfile {
    /// Every profile, for listing them in configuration errors.
    pub const ALL: [Self; 3] = [
        Self::TaiwanCvsThreeSegment,
        Self::TaiwanCvsThreeSegmentGregorian,
        Self::JapanGs1Cvs,
    ];

    /// Looks a profile up by its configuration name.
    #[must_use]
    pub fn parse_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|profile| profile.name() == s)
    }

    /// The configuration name of this profile.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::TaiwanCvsThreeSegment => "tw-cvs-3seg",
            Self::TaiwanCvsThreeSegmentGregorian => "tw-cvs-3seg-gregorian",
            Self::JapanGs1Cvs => "jp-gs1-cvs",
        }
    }

    /// The year convention of a Taiwanese profile; `None` for Japan.
    #[must_use]
    pub fn tw_year_convention(self) -> Option<TwYearConvention> {
        match self {
            Self::TaiwanCvsThreeSegment => Some(TwYearConvention::Roc),
            Self::TaiwanCvsThreeSegmentGregorian => Some(TwYearConvention::Gregorian),
            Self::JapanGs1Cvs => None,
        }
    }

    /// How many barcodes a slip of this profile carries.
    #[must_use]
    pub fn segment_count(self) -> usize {
        match self {
            Self::TaiwanCvsThreeSegment | Self::TaiwanCvsThreeSegmentGregorian => TW_SEGMENT_COUNT,
            Self::JapanGs1Cvs => JP_SEGMENT_COUNT,
        }
    }
}

/// What a slip says, independent of layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedSlip {
    /// The layout the slip was read with (or is to be printed with).
    pub profile: BarcodeProfile,
    /// TW: 3-character collection-item code; JP: 6-digit company code.
    pub agency_code: String,
    /// TW: segment 2 as printed, trailing padding kept; JP: 21-digit free field.
    pub bill_reference: String,
    /// The payment deadline; [`NO_DUE_DATE`] when a JP slip sets none.
    pub due_date: NaiveDate,
    /// The amount printed on the slip, in whole currency units (dollars, yen).
    pub amount_whole: u64,
    /// TW: 4-character period (ROC `YYMM` or `MMDD`, per biller); JP: `None`.
    pub period: Option<String>,
    /// JP only: how many times the slip was re-issued (0–9).
    pub reissue_count: Option<u8>,
    /// JP only: whether the amount carries stamp duty.
    pub stamp_duty: Option<bool>,
}

impl ParsedSlip {
    /// Whether the slip sets a payment deadline.
    #[must_use]
    pub fn has_due_date(&self) -> bool {
        self.due_date != NO_DUE_DATE
    }
}

/// Why a barcode was refused. `segment` is the 0-based index into the input
/// slice; `position` is the 0-based character index within that segment after
/// trimming (and, for Japan, after removing scanner prefixes).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BarcodeError {
    /// The request carried the wrong number of barcodes for the profile.
    #[error("expected {expected} barcode(s) for this slip, got {found}")]
    WrongSegmentCount { expected: usize, found: usize },
    /// A segment is longer than any valid one could be, even with whitespace
    /// and scanner prefixes; it was refused before being read.
    #[error("segment {segment} is {found_bytes} bytes, more than the {max_bytes} a slip can carry")]
    TooLong {
        segment: usize,
        max_bytes: usize,
        found_bytes: usize,
    },
    /// A segment has the wrong number of characters.
    #[error("segment {segment} has {found} characters, expected {expected}")]
    WrongLength {
        segment: usize,
        expected: usize,
        found: usize,
    },
    /// A character is not allowed at its position (lower case included).
    #[error(
        "segment {segment} has {found:?} at position {position}, which the layout does not allow there"
    )]
    BadCharacter {
        segment: usize,
        position: usize,
        found: char,
    },
    /// A Japanese barcode does not start with application identifier 91.
    #[error("segment {segment} starts with application identifier {found:?}, not \"91\"")]
    WrongApplicationIdentifier { segment: usize, found: String },
    /// A date field is not a real calendar date, or cannot be printed.
    #[error("segment {segment} has date {text:?}, which is not a valid date for this layout")]
    BadDate { segment: usize, text: String },
    /// The check digit(s) disagree with the data: most often a misread.
    #[error("segment {segment} carries check {found:?} but its data gives {expected:?}")]
    CheckDigitMismatch {
        segment: usize,
        expected: String,
        found: String,
    },
    /// A field holds a value the layout cannot carry or the gateway cannot
    /// collect (a zero amount, a stamp flag other than 0/1, a missing period).
    #[error("segment {segment}: {field} {reason}")]
    InvalidField {
        segment: usize,
        field: &'static str,
        reason: &'static str,
    },
}

impl BarcodeError {
    /// The 0-based segment the error is about; `None` when the whole list is wrong.
    #[must_use]
    pub fn segment(&self) -> Option<usize> {
        match self {
            Self::WrongSegmentCount { .. } => None,
            Self::TooLong { segment, .. }
            | Self::WrongLength { segment, .. }
            | Self::BadCharacter { segment, .. }
            | Self::WrongApplicationIdentifier { segment, .. }
            | Self::BadDate { segment, .. }
            | Self::CheckDigitMismatch { segment, .. }
            | Self::InvalidField { segment, .. } => Some(*segment),
        }
    }

    /// The proto field path the gateway should name, given the request's
    /// repeated field name "barcodes": e.g. "barcodes[2]", or "barcodes" when
    /// the count itself is wrong.
    #[must_use]
    pub fn field_path(&self) -> String {
        match self.segment() {
            Some(segment) => format!("barcodes[{segment}]"),
            None => "barcodes".to_owned(),
        }
    }
}

/// Reads a slip's barcodes as scanned, one string per printed barcode.
///
/// # Errors
///
/// Returns a [`BarcodeError`] naming the first segment that is malformed: the
/// wrong number of segments, a length or character the layout does not allow,
/// a check-digit mismatch, an impossible date, or an uncollectable amount.
/// Check digits are verified before dates so a misread reports as a misread.
pub fn parse(profile: BarcodeProfile, segments: &[&str]) -> Result<ParsedSlip, BarcodeError> {
    let expected = profile.segment_count();
    if segments.len() != expected {
        return Err(BarcodeError::WrongSegmentCount {
            expected,
            found: segments.len(),
        });
    }
    match profile.tw_year_convention() {
        Some(years) => parse_tw(profile, years, segments),
        None => parse_jp(segments[0]),
    }
}

/// Builds valid barcodes for a slip (used by tests, the demo and the load
/// generator to create real-shaped slips), computing the check digits.
///
/// # Errors
///
/// Returns [`BarcodeError::InvalidField`] when a field does not fit the
/// layout (wrong length or characters, amount out of range, a field of the
/// other country's layout set or one of this layout's missing), and
/// [`BarcodeError::BadDate`] when the due date cannot be written with a
/// two-digit year. `segment` names the barcode the field would go in.
pub fn encode(slip: &ParsedSlip) -> Result<Vec<String>, BarcodeError> {
    match slip.profile.tw_year_convention() {
        Some(years) => encode_tw(slip, years),
        None => encode_jp(slip).map(|barcode| vec![barcode]),
    }
}

/// The GS1 modulus-10 check digit of a Japanese slip: weight 3 on the
/// rightmost digit, alternating 3/1 leftwards, `(10 − sum mod 10) mod 10`.
///
/// Pass the 43 digits before the check digit, `91` included. Characters other
/// than ASCII digits count as 0 (they keep their weight); [`parse`] refuses
/// them before calling this.
#[must_use]
pub fn jp_gs1_check_digit(first_43: &str) -> u8 {
    let weighted_sum: u32 = first_43
        .bytes()
        .rev()
        .zip([3_u32, 1].into_iter().cycle())
        .map(|(byte, weight)| digit_value(byte) * weight)
        .sum();
    let remainder = u8::try_from(weighted_sum % 10).unwrap_or(0);
    (10 - remainder) % 10
}

/// The two check characters of a Taiwanese slip, in printed order.
///
/// Positions count from 1 within each segment; `seg3_without_check` is
/// segment 3 with its check pair removed (period + amount, 13 characters).
/// Characters outside `0-9A-Z` count as 0; [`parse`] refuses them first.
#[must_use]
pub fn tw_check_pair(seg1: &str, seg2: &str, seg3_without_check: &str) -> (char, char) {
    let mut odd_sum = 0_u32;
    let mut even_sum = 0_u32;
    for segment in [seg1, seg2, seg3_without_check] {
        let (odd, even) = tw_parity_sums(segment);
        odd_sum += odd;
        even_sum += even;
    }
    (
        tw_check_char(odd_sum % 11, 'A', 'B'),
        tw_check_char(even_sum % 11, 'X', 'Y'),
    )
}

/// Sums of the odd (1st, 3rd, …) and even (2nd, 4th, …) positions.
fn tw_parity_sums(segment: &str) -> (u32, u32) {
    segment
        .chars()
        .enumerate()
        .fold((0, 0), |(odd, even), (index, c)| {
            let value = tw_char_value(c);
            if index % 2 == 0 {
                (odd + value, even)
            } else {
                (odd, even + value)
            }
        })
}

/// Code 39 slip character value: digits as themselves, letters in three runs.
fn tw_char_value(c: char) -> u32 {
    let code = u32::from(c);
    match c {
        '0'..='9' => code - u32::from('0'),
        'A'..='I' => code - u32::from('A') + 1,
        'J'..='R' => code - u32::from('J') + 1,
        'S'..='Z' => code - u32::from('S') + 2,
        _ => 0,
    }
}

/// A remainder mod 11 as a check character; 0 and 10 get letters because a
/// single character cannot hold "10".
fn tw_check_char(remainder: u32, zero: char, ten: char) -> char {
    match remainder {
        0 => zero,
        10 => ten,
        digit => char::from_digit(digit, 10).unwrap_or(zero),
    }
}

/// Which characters a layout position admits.
#[derive(Debug, Clone, Copy)]
enum CharClass {
    Digit,
    UpperAlphanumeric,
}

impl CharClass {
    fn admits(self, c: char) -> bool {
        match self {
            Self::Digit => c.is_ascii_digit(),
            Self::UpperAlphanumeric => c.is_ascii_digit() || c.is_ascii_uppercase(),
        }
    }
}

/// A segment layout: consecutive runs of (length, class).
type Layout = &'static [(usize, CharClass)];

const JP_LAYOUT: Layout = &[(JP_PAYLOAD_LEN, CharClass::Digit)];
const TW_SEGMENT1_LAYOUT: Layout = &[(6, CharClass::Digit), (3, CharClass::UpperAlphanumeric)];
const TW_SEGMENT2_LAYOUT: Layout = &[(16, CharClass::UpperAlphanumeric)];
const TW_SEGMENT3_LAYOUT: Layout = &[
    (4, CharClass::Digit),
    (2, CharClass::UpperAlphanumeric),
    (9, CharClass::Digit),
];
const TW_LAYOUTS: [Layout; TW_SEGMENT_COUNT] =
    [TW_SEGMENT1_LAYOUT, TW_SEGMENT2_LAYOUT, TW_SEGMENT3_LAYOUT];

fn layout_len(layout: Layout) -> usize {
    layout.iter().map(|&(len, _)| len).sum()
}

/// Refuses a raw segment that no amount of trimming could make valid, so the
/// parser never walks an oversized input.
fn check_raw_size(segment: usize, raw: &str, max_bytes: usize) -> Result<(), BarcodeError> {
    if raw.len() > max_bytes {
        return Err(BarcodeError::TooLong {
            segment,
            max_bytes,
            found_bytes: raw.len(),
        });
    }
    Ok(())
}

/// Checks length and per-position characters; afterwards the text is ASCII,
/// so byte offsets equal character positions.
fn check_layout(segment: usize, text: &str, layout: Layout) -> Result<(), BarcodeError> {
    let expected = layout_len(layout);
    let found = text.chars().count();
    if found != expected {
        return Err(BarcodeError::WrongLength {
            segment,
            expected,
            found,
        });
    }
    let classes = layout
        .iter()
        .flat_map(|&(len, class)| std::iter::repeat_n(class, len));
    for (position, (c, class)) in text.chars().zip(classes).enumerate() {
        if !class.admits(c) {
            return Err(BarcodeError::BadCharacter {
                segment,
                position,
                found: c,
            });
        }
    }
    Ok(())
}

/// Value of an ASCII digit byte; anything else counts as 0.
fn digit_value(byte: u8) -> u32 {
    if byte.is_ascii_digit() {
        u32::from(byte - b'0')
    } else {
        0
    }
}

/// Value of a run of validated ASCII digits. Callers pass at most 9 digits;
/// saturation only guards against a future caller passing more.
fn digits_number(digits: &str) -> u64 {
    digits.bytes().fold(0_u64, |acc, byte| {
        acc.saturating_mul(10)
            .saturating_add(u64::from(digit_value(byte)))
    })
}

/// Reads validated `YYMMDD` digits with `00` meaning `century_base_year`.
fn parse_yymmdd(
    segment: usize,
    text: &str,
    century_base_year: i32,
) -> Result<NaiveDate, BarcodeError> {
    let number =
        |range: std::ops::Range<usize>| u32::try_from(digits_number(&text[range])).unwrap_or(0);
    let year_offset = i32::try_from(number(0..2)).unwrap_or(0);
    NaiveDate::from_ymd_opt(century_base_year + year_offset, number(2..4), number(4..6))
        .ok_or_else(|| bad_date(segment, text))
}

fn bad_date(segment: usize, text: &str) -> BarcodeError {
    BarcodeError::BadDate {
        segment,
        text: text.to_owned(),
    }
}

/// Writes a date as `YYMMDD` if its year is within the 100-year window.
fn format_yymmdd(
    segment: usize,
    date: NaiveDate,
    century_base_year: i32,
) -> Result<String, BarcodeError> {
    let year_offset = date.year() - century_base_year;
    if !(0..100).contains(&year_offset) {
        return Err(bad_date(segment, &date.to_string()));
    }
    Ok(format!(
        "{year_offset:02}{:02}{:02}",
        date.month(),
        date.day()
    ))
}

/// An amount the gateway can collect: positive and within the layout.
fn check_amount(segment: usize, amount_whole: u64, max_minor: u64) -> Result<(), BarcodeError> {
    if amount_whole == 0 {
        return Err(BarcodeError::InvalidField {
            segment,
            field: "amount_whole",
            reason: "is zero, which cannot be collected",
        });
    }
    if amount_whole > max_minor {
        return Err(BarcodeError::InvalidField {
            segment,
            field: "amount_whole",
            reason: "is larger than the layout's amount digits can hold",
        });
    }
    Ok(())
}

/// Checks a field for encoding against its run of the layout.
fn check_field(
    segment: usize,
    field: &'static str,
    value: &str,
    len: usize,
    class: CharClass,
) -> Result<(), BarcodeError> {
    if value.len() != len {
        return Err(BarcodeError::InvalidField {
            segment,
            field,
            reason: "has the wrong length for the layout",
        });
    }
    if !value.chars().all(|c| class.admits(c)) {
        return Err(BarcodeError::InvalidField {
            segment,
            field,
            reason: "has a character the layout does not allow",
        });
    }
    Ok(())
}

/// Insists a field of one country's layout is present.
fn require<T: Copy>(
    segment: usize,
    field: &'static str,
    value: Option<T>,
) -> Result<T, BarcodeError> {
    value.ok_or(BarcodeError::InvalidField {
        segment,
        field,
        reason: "is required by this layout",
    })
}

/// Insists a field of the other country's layout is absent, so that what is
/// encoded is exactly what parses back.
fn forbid<T>(segment: usize, field: &'static str, value: Option<&T>) -> Result<(), BarcodeError> {
    match value {
        Some(_) => Err(BarcodeError::InvalidField {
            segment,
            field,
            reason: "is not part of this layout and must be None",
        }),
        None => Ok(()),
    }
}

/// Removes the prefixes scanners put before GS1-128 data: the `]C1`
/// symbology identifier, a leading FNC1 (GS), and the brackets of `(91)`.
fn strip_jp_prefixes(text: &str) -> String {
    let text = text.strip_prefix(JP_SYMBOLOGY_PREFIX).unwrap_or(text);
    let text = text.strip_prefix(JP_FNC1).unwrap_or(text);
    match text.strip_prefix(JP_BRACKETED_AI) {
        Some(rest) => format!("{JP_APPLICATION_IDENTIFIER}{rest}"),
        None => text.to_owned(),
    }
}

fn parse_jp(raw: &str) -> Result<ParsedSlip, BarcodeError> {
    const SEGMENT: usize = 0;
    check_raw_size(
        SEGMENT,
        raw,
        JP_PAYLOAD_LEN + JP_PREFIX_MAX_BYTES + WHITESPACE_SLACK_BYTES,
    )?;
    let payload = strip_jp_prefixes(raw.trim_ascii());
    check_layout(SEGMENT, &payload, JP_LAYOUT)?;
    if !payload.starts_with(JP_APPLICATION_IDENTIFIER) {
        return Err(BarcodeError::WrongApplicationIdentifier {
            segment: SEGMENT,
            found: payload[..2].to_owned(),
        });
    }
    check_jp_check_digit(SEGMENT, &payload)?;
    jp_slip_from_payload(SEGMENT, &payload)
}

fn check_jp_check_digit(segment: usize, payload: &str) -> Result<(), BarcodeError> {
    let (data, check) = payload.split_at(JP_PAYLOAD_LEN - 1);
    let expected = jp_gs1_check_digit(data).to_string();
    if expected != check {
        return Err(BarcodeError::CheckDigitMismatch {
            segment,
            expected,
            found: check.to_owned(),
        });
    }
    Ok(())
}

/// Splits a validated 44-digit payload into its fields.
fn jp_slip_from_payload(segment: usize, payload: &str) -> Result<ParsedSlip, BarcodeError> {
    let due_date_text = &payload[30..36];
    let due_date = if due_date_text == JP_NO_DUE_DATE_TEXT {
        NO_DUE_DATE
    } else {
        parse_yymmdd(segment, due_date_text, JP_CENTURY_BASE_YEAR)?
    };
    let stamp_duty = match &payload[36..37] {
        "0" => false,
        "1" => true,
        _ => {
            return Err(BarcodeError::InvalidField {
                segment,
                field: "stamp_duty",
                reason: "flag must be 0 or 1",
            });
        }
    };
    let amount_whole = digits_number(&payload[37..43]);
    check_amount(segment, amount_whole, JP_MAX_AMOUNT_YEN)?;
    Ok(ParsedSlip {
        profile: BarcodeProfile::JapanGs1Cvs,
        agency_code: payload[2..8].to_owned(),
        bill_reference: payload[8..29].to_owned(),
        due_date,
        amount_whole,
        period: None,
        reissue_count: u8::try_from(digits_number(&payload[29..30])).ok(),
        stamp_duty: Some(stamp_duty),
    })
}

fn encode_jp(slip: &ParsedSlip) -> Result<String, BarcodeError> {
    const SEGMENT: usize = 0;
    check_field(
        SEGMENT,
        "agency_code",
        &slip.agency_code,
        6,
        CharClass::Digit,
    )?;
    check_field(
        SEGMENT,
        "bill_reference",
        &slip.bill_reference,
        21,
        CharClass::Digit,
    )?;
    forbid(SEGMENT, "period", slip.period.as_ref())?;
    let reissue_count = require(SEGMENT, "reissue_count", slip.reissue_count)?;
    if reissue_count > 9 {
        return Err(BarcodeError::InvalidField {
            segment: SEGMENT,
            field: "reissue_count",
            reason: "must be a single digit (0-9)",
        });
    }
    let stamp_duty = require(SEGMENT, "stamp_duty", slip.stamp_duty)?;
    check_amount(SEGMENT, slip.amount_whole, JP_MAX_AMOUNT_YEN)?;
    let due_date_text = if slip.has_due_date() {
        format_yymmdd(SEGMENT, slip.due_date, JP_CENTURY_BASE_YEAR)?
    } else {
        JP_NO_DUE_DATE_TEXT.to_owned()
    };
    let data = format!(
        "{JP_APPLICATION_IDENTIFIER}{}{}{reissue_count}{due_date_text}{}{:06}",
        slip.agency_code,
        slip.bill_reference,
        u8::from(stamp_duty),
        slip.amount_whole,
    );
    let check_digit = jp_gs1_check_digit(&data);
    Ok(format!("{data}{check_digit}"))
}

fn parse_tw(
    profile: BarcodeProfile,
    years: TwYearConvention,
    raw_segments: &[&str],
) -> Result<ParsedSlip, BarcodeError> {
    for (segment, (raw, layout)) in raw_segments.iter().zip(TW_LAYOUTS).enumerate() {
        check_raw_size(segment, raw, layout_len(layout) + WHITESPACE_SLACK_BYTES)?;
    }
    let mut texts = [""; TW_SEGMENT_COUNT];
    for (segment, (raw, layout)) in raw_segments.iter().zip(TW_LAYOUTS).enumerate() {
        texts[segment] = raw.trim_ascii();
        check_layout(segment, texts[segment], layout)?;
    }
    let [segment1, segment2, segment3] = texts;
    check_tw_check_pair(segment1, segment2, segment3)?;
    let due_date = parse_yymmdd(0, &segment1[..6], years.century_base_year())?;
    let amount_whole = digits_number(&segment3[6..]);
    check_amount(2, amount_whole, TW_MAX_AMOUNT_TWD)?;
    Ok(ParsedSlip {
        profile,
        agency_code: segment1[6..].to_owned(),
        bill_reference: segment2.to_owned(),
        due_date,
        amount_whole,
        period: Some(segment3[..4].to_owned()),
        reissue_count: None,
        stamp_duty: None,
    })
}

/// Verifies the pair at positions 5–6 of segment 3 (index 2).
fn check_tw_check_pair(segment1: &str, segment2: &str, segment3: &str) -> Result<(), BarcodeError> {
    let without_check = format!("{}{}", &segment3[..4], &segment3[6..]);
    let (odd, even) = tw_check_pair(segment1, segment2, &without_check);
    let expected: String = [odd, even].into_iter().collect();
    let found = &segment3[4..6];
    if expected != found {
        return Err(BarcodeError::CheckDigitMismatch {
            segment: 2,
            expected,
            found: found.to_owned(),
        });
    }
    Ok(())
}

fn encode_tw(slip: &ParsedSlip, years: TwYearConvention) -> Result<Vec<String>, BarcodeError> {
    check_field(
        0,
        "agency_code",
        &slip.agency_code,
        3,
        CharClass::UpperAlphanumeric,
    )?;
    check_field(
        1,
        "bill_reference",
        &slip.bill_reference,
        16,
        CharClass::UpperAlphanumeric,
    )?;
    let period = slip.period.as_deref().ok_or(BarcodeError::InvalidField {
        segment: 2,
        field: "period",
        reason: "is required by this layout",
    })?;
    check_field(2, "period", period, 4, CharClass::Digit)?;
    forbid(0, "reissue_count", slip.reissue_count.as_ref())?;
    forbid(0, "stamp_duty", slip.stamp_duty.as_ref())?;
    check_amount(2, slip.amount_whole, TW_MAX_AMOUNT_TWD)?;
    let segment1 = format!(
        "{}{}",
        format_yymmdd(0, slip.due_date, years.century_base_year())?,
        slip.agency_code
    );
    let amount_text = format!("{:09}", slip.amount_whole);
    let (odd, even) = tw_check_pair(
        &segment1,
        &slip.bill_reference,
        &format!("{period}{amount_text}"),
    );
    let segment3 = format!("{period}{odd}{even}{amount_text}");
    Ok(vec![segment1, slip.bill_reference.clone(), segment3])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Iterations of each generated-slip property test; enough to hit every
    /// check-character remainder many times while staying well under a second.
    const PROPERTY_ITERATIONS: usize = 500;

    /// Hand-built JP slip: company 954321, free field …123456789, re-issue 1,
    /// due 2025-07-31, stamp duty, 54,000 yen, check digit 2.
    const JP_HAND_BARCODE: &str = "91954321000000000000123456789125073110540002";

    fn date(year: i32, month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(year, month, day).expect("test date is valid")
    }

    /// Simple deterministic LCG (Knuth's MMIX constants), so the property
    /// tests need no rand crate and always test the same slips.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }

        fn below(&mut self, bound: u64) -> u64 {
            self.next() % bound
        }

        fn string(&mut self, len: usize, alphabet: &[u8]) -> String {
            (0..len)
                .map(|_| {
                    let index = usize::try_from(self.below(alphabet.len() as u64)).unwrap();
                    char::from(alphabet[index])
                })
                .collect()
        }

        fn date_between(&mut self, first: NaiveDate, last: NaiveDate) -> NaiveDate {
            let span_days = u64::try_from((last - first).num_days()).unwrap();
            first + chrono::Days::new(self.below(span_days + 1))
        }
    }

    const DIGITS: &[u8] = b"0123456789";
    const UPPER_ALPHANUMERIC: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

    fn generated_jp_slip(rng: &mut Lcg) -> ParsedSlip {
        let due_date = if rng.below(10) == 0 {
            NO_DUE_DATE
        } else {
            rng.date_between(date(2000, 1, 1), date(2099, 12, 31))
        };
        ParsedSlip {
            profile: BarcodeProfile::JapanGs1Cvs,
            agency_code: rng.string(6, DIGITS),
            bill_reference: rng.string(21, DIGITS),
            due_date,
            amount_whole: 1 + rng.below(JP_MAX_AMOUNT_YEN),
            period: None,
            reissue_count: Some(u8::try_from(rng.below(10)).unwrap()),
            stamp_duty: Some(rng.below(2) == 1),
        }
    }

    fn generated_tw_slip(rng: &mut Lcg, profile: BarcodeProfile) -> ParsedSlip {
        ParsedSlip {
            profile,
            agency_code: rng.string(3, UPPER_ALPHANUMERIC),
            bill_reference: rng.string(16, UPPER_ALPHANUMERIC),
            due_date: rng.date_between(date(2011, 1, 1), date(2099, 12, 31)),
            amount_whole: 1 + rng.below(TW_MAX_AMOUNT_TWD),
            period: Some(rng.string(4, DIGITS)),
            reissue_count: None,
            stamp_duty: None,
        }
    }

    /// Replaces the ASCII character at `index` with `replacement`.
    fn with_char(text: &str, index: usize, replacement: char) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        chars[index] = replacement;
        chars.into_iter().collect()
    }

    fn tw_hand_segments() -> [&'static str; 3] {
        ["140831A2Z", "KS20250800001234", "140885000001500"]
    }

    /// Profile names round-trip and unknown names are refused.
    #[test]
    fn profile_names_round_trip() {
        for profile in BarcodeProfile::ALL {
            assert_eq!(BarcodeProfile::parse_name(profile.name()), Some(profile));
        }
        assert_eq!(
            BarcodeProfile::parse_name("tw-cvs-3seg"),
            Some(BarcodeProfile::TaiwanCvsThreeSegment)
        );
        assert_eq!(
            BarcodeProfile::parse_name("jp-gs1-cvs"),
            Some(BarcodeProfile::JapanGs1Cvs)
        );
        assert_eq!(BarcodeProfile::parse_name("JP-GS1-CVS"), None);
        assert_eq!(BarcodeProfile::parse_name(""), None);
    }

    /// The JP check digit of a hand-built slip matches a sum done by hand.
    #[test]
    fn jp_check_digit_matches_hand_computation() {
        // The 43 data digits, odd positions from the left (weight 3, as 43 is
        // odd the rightmost is one of them) sum to 60, even positions to 48:
        // 60 * 3 + 48 = 228; (10 - 228 mod 10) mod 10 = 2.
        assert_eq!(jp_gs1_check_digit(&JP_HAND_BARCODE[..43]), 2);
        assert_eq!(jp_gs1_check_digit("0"), 0);
        // Single digit 1 at the rightmost position has weight 3: 10 - 3 = 7.
        assert_eq!(jp_gs1_check_digit("1"), 7);
        assert_eq!(jp_gs1_check_digit("10"), 9);
    }

    /// A hand-built JP slip parses into its fields.
    #[test]
    fn jp_hand_vector_parses() {
        let barcode = JP_HAND_BARCODE.to_owned();
        let slip = parse(BarcodeProfile::JapanGs1Cvs, &[&barcode]).unwrap();
        assert_eq!(
            slip,
            ParsedSlip {
                profile: BarcodeProfile::JapanGs1Cvs,
                agency_code: "954321".to_owned(),
                bill_reference: "000000000000123456789".to_owned(),
                due_date: date(2025, 7, 31),
                amount_whole: 54_000,
                period: None,
                reissue_count: Some(1),
                stamp_duty: Some(true),
            }
        );
        assert_eq!(encode(&slip).unwrap(), vec![barcode]);
    }

    /// The 43 data digits of the sample in a public barcode library's docs
    /// ("標準料金代理収納用コンビニバーコード", `{FNC1}9191234500…0029500`),
    /// with the check digit 4 our rule gives, parse into the sample's fields.
    #[test]
    fn jp_public_sample_parses() {
        let data = "9191234500000000000000452087500401310029500";
        assert_eq!(jp_gs1_check_digit(data), 4);
        let barcode = format!("{data}4");
        let slip = parse(BarcodeProfile::JapanGs1Cvs, &[&barcode]).unwrap();
        assert_eq!(slip.agency_code, "912345");
        assert_eq!(slip.bill_reference, "000000000000004520875");
        assert_eq!(slip.reissue_count, Some(0));
        assert_eq!(slip.due_date, date(2004, 1, 31));
        assert_eq!(slip.stamp_duty, Some(false));
        assert_eq!(slip.amount_whole, 29_500);
    }

    /// Scanner prefixes (`(91)`, `]C1`, FNC1) and surrounding whitespace are stripped.
    #[test]
    fn jp_scanner_prefixes_are_stripped() {
        let barcode = JP_HAND_BARCODE.to_owned();
        let expected = parse(BarcodeProfile::JapanGs1Cvs, &[&barcode]).unwrap();
        let rest = &barcode[2..];
        for scanned in [
            format!("(91){rest}"),
            format!("]C1{barcode}"),
            format!("\u{1d}{barcode}"),
            format!("]C1\u{1d}{barcode}"),
            format!("]C1(91){rest}"),
            format!(" \t{barcode}\r\n"),
        ] {
            assert_eq!(
                parse(BarcodeProfile::JapanGs1Cvs, &[&scanned]),
                Ok(expected.clone()),
                "{scanned:?}"
            );
        }
    }

    /// A wrong JP check digit is refused and names segment 0.
    #[test]
    fn jp_wrong_check_digit_names_segment() {
        let barcode = format!("{}3", &JP_HAND_BARCODE[..43]);
        let error = parse(BarcodeProfile::JapanGs1Cvs, &[&barcode]).unwrap_err();
        assert_eq!(
            error,
            BarcodeError::CheckDigitMismatch {
                segment: 0,
                expected: "2".to_owned(),
                found: "3".to_owned(),
            }
        );
        assert_eq!(error.field_path(), "barcodes[0]");
    }

    /// JP barcodes of the wrong length, or oversized ones, are refused.
    #[test]
    fn jp_wrong_length_is_refused() {
        let short = &JP_HAND_BARCODE[..43];
        assert_eq!(
            parse(BarcodeProfile::JapanGs1Cvs, &[short]),
            Err(BarcodeError::WrongLength {
                segment: 0,
                expected: 44,
                found: 43
            })
        );
        let long = format!("{JP_HAND_BARCODE}0");
        assert_eq!(
            parse(BarcodeProfile::JapanGs1Cvs, &[&long]),
            Err(BarcodeError::WrongLength {
                segment: 0,
                expected: 44,
                found: 45
            })
        );
        let huge = "9".repeat(10_000);
        assert!(matches!(
            parse(BarcodeProfile::JapanGs1Cvs, &[&huge]),
            Err(BarcodeError::TooLong {
                segment: 0,
                found_bytes: 10_000,
                ..
            })
        ));
    }

    /// Non-digits in a JP barcode are refused with their position.
    #[test]
    fn jp_bad_character_is_refused() {
        let barcode = with_char(JP_HAND_BARCODE, 10, 'A');
        assert_eq!(
            parse(BarcodeProfile::JapanGs1Cvs, &[&barcode]),
            Err(BarcodeError::BadCharacter {
                segment: 0,
                position: 10,
                found: 'A'
            })
        );
        let barcode = with_char(JP_HAND_BARCODE, 20, 'é');
        assert_eq!(
            parse(BarcodeProfile::JapanGs1Cvs, &[&barcode]),
            Err(BarcodeError::BadCharacter {
                segment: 0,
                position: 20,
                found: 'é'
            })
        );
    }

    /// A 44-digit barcode with another application identifier is refused.
    #[test]
    fn jp_wrong_application_identifier_is_refused() {
        let data = format!("90{}", &JP_HAND_BARCODE[2..43]);
        let barcode = format!("{data}{}", jp_gs1_check_digit(&data));
        assert_eq!(
            parse(BarcodeProfile::JapanGs1Cvs, &[&barcode]),
            Err(BarcodeError::WrongApplicationIdentifier {
                segment: 0,
                found: "90".to_owned()
            })
        );
    }

    /// Builds a JP barcode with the given due-date text and a valid check digit.
    fn jp_with_due_date(due_date_text: &str) -> String {
        let data = format!(
            "{}{due_date_text}{}",
            &JP_HAND_BARCODE[..30],
            &JP_HAND_BARCODE[36..43]
        );
        format!("{data}{}", jp_gs1_check_digit(&data))
    }

    /// Impossible JP dates (month 13, 000000, 30 February) are refused.
    #[test]
    fn jp_bad_dates_are_refused() {
        for text in ["251331", "000000", "250230", "250700"] {
            assert_eq!(
                parse(BarcodeProfile::JapanGs1Cvs, &[&jp_with_due_date(text)]),
                Err(BarcodeError::BadDate {
                    segment: 0,
                    text: text.to_owned()
                }),
                "{text}"
            );
        }
        // 2024 is a leap year.
        let slip = parse(BarcodeProfile::JapanGs1Cvs, &[&jp_with_due_date("240229")]).unwrap();
        assert_eq!(slip.due_date, date(2024, 2, 29));
    }

    /// A JP due date of 999999 means "no deadline" and round-trips.
    #[test]
    fn jp_no_due_date_round_trips() {
        let barcode = jp_with_due_date("999999");
        let slip = parse(BarcodeProfile::JapanGs1Cvs, &[&barcode]).unwrap();
        assert_eq!(slip.due_date, NO_DUE_DATE);
        assert!(!slip.has_due_date());
        assert_eq!(encode(&slip).unwrap(), vec![barcode]);
    }

    /// A stamp-duty flag other than 0/1 and a zero amount are refused.
    #[test]
    fn jp_invalid_fields_are_refused() {
        let data = format!("{}2{}", &JP_HAND_BARCODE[..36], &JP_HAND_BARCODE[37..43]);
        let barcode = format!("{data}{}", jp_gs1_check_digit(&data));
        assert!(matches!(
            parse(BarcodeProfile::JapanGs1Cvs, &[&barcode]),
            Err(BarcodeError::InvalidField {
                segment: 0,
                field: "stamp_duty",
                ..
            })
        ));
        let data = format!("{}000000", &JP_HAND_BARCODE[..37]);
        let barcode = format!("{data}{}", jp_gs1_check_digit(&data));
        assert!(matches!(
            parse(BarcodeProfile::JapanGs1Cvs, &[&barcode]),
            Err(BarcodeError::InvalidField {
                segment: 0,
                field: "amount_whole",
                ..
            })
        ));
    }

    /// The TW check pair of a hand-built slip matches sums done by hand.
    #[test]
    fn tw_check_pair_matches_hand_computation() {
        // Segment 1 "140831A2Z": odd 1+0+3+A(1)+Z(9) = 14, even 4+8+1+2 = 15.
        // Segment 2 "KS20250800001234": odd K(2)+2+2+0+0+0+1+3 = 10,
        //   even S(2)+0+5+8+0+0+2+4 = 21.
        // Segment 3 without the pair "1408000001500": odd 1+0+0+0+0+5+0 = 6,
        //   even 4+8+0+0+1+0 = 13.
        // Odd 30 mod 11 = 8 → '8'; even 49 mod 11 = 5 → '5'.
        // A Python replica of ChannelHelper.GenSMBarcode3 gives the same pair.
        assert_eq!(
            tw_check_pair("140831A2Z", "KS20250800001234", "1408000001500"),
            ('8', '5')
        );
        // All zeros: both remainders 0, so the letters for zero.
        assert_eq!(
            tw_check_pair("000000000", &"0".repeat(16), &"0".repeat(13)),
            ('A', 'X')
        );
        // Odd sum 10 and even sum 10 give the letters for ten.
        assert_eq!(tw_check_pair("91", "", "19"), ('B', 'Y'));
    }

    /// The letter values follow the three runs A–I, J–R, S–Z.
    #[test]
    fn tw_letter_values() {
        let values: Vec<u32> = ('A'..='Z').map(tw_char_value).collect();
        let expected: Vec<u32> = (1..=9).chain(1..=9).chain(2..=9).collect();
        assert_eq!(values, expected);
    }

    /// A hand-built TW slip (ROC years) parses into its fields and encodes back.
    #[test]
    fn tw_hand_vector_parses() {
        let segments = tw_hand_segments();
        let slip = parse(BarcodeProfile::TaiwanCvsThreeSegment, &segments).unwrap();
        assert_eq!(
            slip,
            ParsedSlip {
                profile: BarcodeProfile::TaiwanCvsThreeSegment,
                agency_code: "A2Z".to_owned(),
                bill_reference: "KS20250800001234".to_owned(),
                due_date: date(2025, 8, 31),
                amount_whole: 1_500,
                period: Some("1408".to_owned()),
                reissue_count: None,
                stamp_duty: None,
            }
        );
        assert_eq!(encode(&slip).unwrap(), segments.map(str::to_owned).to_vec());
    }

    /// The Gregorian profile reads the same digits as a different year.
    #[test]
    fn tw_gregorian_profile_reads_gregorian_years() {
        let slip = parse(
            BarcodeProfile::TaiwanCvsThreeSegmentGregorian,
            &tw_hand_segments(),
        )
        .unwrap();
        assert_eq!(slip.due_date, date(2014, 8, 31));
        assert_eq!(
            encode(&slip).unwrap(),
            tw_hand_segments().map(str::to_owned).to_vec()
        );
    }

    /// Surrounding ASCII whitespace is trimmed from each TW segment.
    #[test]
    fn tw_whitespace_is_trimmed() {
        let [a, b, c] = tw_hand_segments();
        let padded = [format!(" {a}\n"), format!("\t{b}"), format!("{c}\r\n")];
        let padded: Vec<&str> = padded.iter().map(String::as_str).collect();
        assert_eq!(
            parse(BarcodeProfile::TaiwanCvsThreeSegment, &padded),
            parse(BarcodeProfile::TaiwanCvsThreeSegment, &tw_hand_segments())
        );
    }

    /// A wrong TW check pair is refused and names segment 2.
    #[test]
    fn tw_wrong_check_pair_names_segment() {
        let mut segments = tw_hand_segments();
        segments[2] = "140884000001500";
        let error = parse(BarcodeProfile::TaiwanCvsThreeSegment, &segments).unwrap_err();
        assert_eq!(
            error,
            BarcodeError::CheckDigitMismatch {
                segment: 2,
                expected: "85".to_owned(),
                found: "84".to_owned(),
            }
        );
        assert_eq!(error.field_path(), "barcodes[2]");
        // A misread in segment 1 is also reported at the check pair.
        segments = tw_hand_segments();
        segments[1] = "KS20250800001235";
        assert!(matches!(
            parse(BarcodeProfile::TaiwanCvsThreeSegment, &segments),
            Err(BarcodeError::CheckDigitMismatch { segment: 2, .. })
        ));
    }

    /// Lower-case letters and punctuation are refused: Code 39 is upper-case.
    #[test]
    fn tw_bad_characters_are_refused() {
        let mut segments = tw_hand_segments();
        segments[1] = "ks20250800001234";
        assert_eq!(
            parse(BarcodeProfile::TaiwanCvsThreeSegment, &segments),
            Err(BarcodeError::BadCharacter {
                segment: 1,
                position: 0,
                found: 'k'
            })
        );
        segments = tw_hand_segments();
        segments[0] = "14083XA2Z";
        assert_eq!(
            parse(BarcodeProfile::TaiwanCvsThreeSegment, &segments),
            Err(BarcodeError::BadCharacter {
                segment: 0,
                position: 5,
                found: 'X'
            })
        );
        segments = tw_hand_segments();
        segments[2] = "1408850000015-0";
        assert_eq!(
            parse(BarcodeProfile::TaiwanCvsThreeSegment, &segments),
            Err(BarcodeError::BadCharacter {
                segment: 2,
                position: 13,
                found: '-'
            })
        );
    }

    /// TW segments of the wrong length are refused with their index.
    #[test]
    fn tw_wrong_lengths_are_refused() {
        let mut segments = tw_hand_segments();
        segments[1] = "KS2025080000123";
        assert_eq!(
            parse(BarcodeProfile::TaiwanCvsThreeSegment, &segments),
            Err(BarcodeError::WrongLength {
                segment: 1,
                expected: 16,
                found: 15
            })
        );
        segments = tw_hand_segments();
        segments[2] = "1408850000015000";
        assert_eq!(
            parse(BarcodeProfile::TaiwanCvsThreeSegment, &segments),
            Err(BarcodeError::WrongLength {
                segment: 2,
                expected: 15,
                found: 16
            })
        );
        let huge = "A".repeat(1_000);
        segments = tw_hand_segments();
        segments[1] = &huge;
        assert!(matches!(
            parse(BarcodeProfile::TaiwanCvsThreeSegment, &segments),
            Err(BarcodeError::TooLong { segment: 1, .. })
        ));
    }

    /// A TW due date in month 13 is refused even with a valid check pair.
    #[test]
    fn tw_bad_date_is_refused() {
        let segment1 = "141331A2Z";
        let (odd, even) = tw_check_pair(segment1, "KS20250800001234", "1408000001500");
        let segment3 = format!("1408{odd}{even}000001500");
        assert_eq!(
            parse(
                BarcodeProfile::TaiwanCvsThreeSegment,
                &[segment1, "KS20250800001234", &segment3]
            ),
            Err(BarcodeError::BadDate {
                segment: 0,
                text: "141331".to_owned()
            })
        );
    }

    /// The wrong number of segments is refused for both profiles.
    #[test]
    fn wrong_segment_count_is_refused() {
        let [a, b, _] = tw_hand_segments();
        let error = parse(BarcodeProfile::TaiwanCvsThreeSegment, &[a, b]).unwrap_err();
        assert_eq!(
            error,
            BarcodeError::WrongSegmentCount {
                expected: 3,
                found: 2
            }
        );
        assert_eq!(error.field_path(), "barcodes");
        assert_eq!(
            parse(
                BarcodeProfile::JapanGs1Cvs,
                &[JP_HAND_BARCODE, JP_HAND_BARCODE]
            ),
            Err(BarcodeError::WrongSegmentCount {
                expected: 1,
                found: 2
            })
        );
        assert_eq!(
            parse(BarcodeProfile::JapanGs1Cvs, &[]),
            Err(BarcodeError::WrongSegmentCount {
                expected: 1,
                found: 0
            })
        );
    }

    /// Encoding a TW slip refuses fields the layout cannot carry, naming the segment.
    #[test]
    fn tw_encode_refuses_unfit_fields() {
        let tw = parse(BarcodeProfile::TaiwanCvsThreeSegment, &tw_hand_segments()).unwrap();
        let cases = [
            (
                ParsedSlip {
                    amount_whole: TW_MAX_AMOUNT_TWD + 1,
                    ..tw.clone()
                },
                2,
                "amount_whole",
            ),
            (
                ParsedSlip {
                    period: None,
                    ..tw.clone()
                },
                2,
                "period",
            ),
            (
                ParsedSlip {
                    bill_reference: "KS2025".to_owned(),
                    ..tw.clone()
                },
                1,
                "bill_reference",
            ),
            (
                ParsedSlip {
                    agency_code: "a2z".to_owned(),
                    ..tw.clone()
                },
                0,
                "agency_code",
            ),
            (
                ParsedSlip {
                    stamp_duty: Some(false),
                    ..tw.clone()
                },
                0,
                "stamp_duty",
            ),
        ];
        for (slip, segment, field) in cases {
            let error = encode(&slip).unwrap_err();
            assert!(
                matches!(error, BarcodeError::InvalidField { segment: s, field: f, .. } if s == segment && f == field),
                "{error:?}"
            );
        }
        let early = ParsedSlip {
            due_date: date(2010, 12, 31),
            ..tw
        };
        assert!(matches!(
            encode(&early),
            Err(BarcodeError::BadDate { segment: 0, .. })
        ));
    }

    /// Encoding a JP slip refuses fields the layout cannot carry.
    #[test]
    fn jp_encode_refuses_unfit_fields() {
        let jp = parse(BarcodeProfile::JapanGs1Cvs, &[JP_HAND_BARCODE]).unwrap();
        let cases = [
            (
                ParsedSlip {
                    amount_whole: JP_MAX_AMOUNT_YEN + 1,
                    ..jp.clone()
                },
                "amount_whole",
            ),
            (
                ParsedSlip {
                    reissue_count: Some(10),
                    ..jp.clone()
                },
                "reissue_count",
            ),
            (
                ParsedSlip {
                    reissue_count: None,
                    ..jp.clone()
                },
                "reissue_count",
            ),
            (
                ParsedSlip {
                    period: Some("1408".to_owned()),
                    ..jp.clone()
                },
                "period",
            ),
        ];
        for (slip, field) in cases {
            let error = encode(&slip).unwrap_err();
            assert!(
                matches!(error, BarcodeError::InvalidField { segment: 0, field: f, .. } if f == field),
                "{error:?}"
            );
        }
        let late = ParsedSlip {
            due_date: date(2100, 1, 1),
            ..jp
        };
        assert!(matches!(
            encode(&late),
            Err(BarcodeError::BadDate { segment: 0, .. })
        ));
    }

    /// For many generated JP slips, encode then parse returns the same slip.
    #[test]
    fn jp_generated_slips_round_trip() {
        let mut rng = Lcg(0x5eed_0001);
        for _ in 0..PROPERTY_ITERATIONS {
            let slip = generated_jp_slip(&mut rng);
            let barcodes = encode(&slip).unwrap();
            let barcodes: Vec<&str> = barcodes.iter().map(String::as_str).collect();
            assert_eq!(parse(BarcodeProfile::JapanGs1Cvs, &barcodes), Ok(slip));
        }
    }

    /// For many generated TW slips of both year conventions, encode then parse
    /// returns the same slip.
    #[test]
    fn tw_generated_slips_round_trip() {
        let mut rng = Lcg(0x5eed_0002);
        for iteration in 0..PROPERTY_ITERATIONS {
            let profile = if iteration % 2 == 0 {
                BarcodeProfile::TaiwanCvsThreeSegment
            } else {
                BarcodeProfile::TaiwanCvsThreeSegmentGregorian
            };
            let slip = generated_tw_slip(&mut rng, profile);
            let barcodes = encode(&slip).unwrap();
            let barcodes: Vec<&str> = barcodes.iter().map(String::as_str).collect();
            assert_eq!(parse(profile, &barcodes), Ok(slip));
        }
    }

    /// Changing any one digit of a JP barcode to any other digit is detected:
    /// with weights 3 and 1, a change of d (1–9) moves the sum by d or 3d,
    /// never a multiple of 10.
    #[test]
    fn jp_single_digit_errors_are_always_detected() {
        let mut rng = Lcg(0x5eed_0003);
        for _ in 0..PROPERTY_ITERATIONS / 10 {
            let barcode = encode(&generated_jp_slip(&mut rng)).unwrap().remove(0);
            for index in 0..JP_PAYLOAD_LEN {
                for replacement in ('0'..='9').filter(|&c| Some(c) != barcode.chars().nth(index)) {
                    let mutated = with_char(&barcode, index, replacement);
                    if index < JP_PAYLOAD_LEN - 1 {
                        let data = &mutated[..JP_PAYLOAD_LEN - 1];
                        assert_ne!(
                            jp_gs1_check_digit(data).to_string(),
                            &barcode[JP_PAYLOAD_LEN - 1..]
                        );
                    }
                    let result = parse(BarcodeProfile::JapanGs1Cvs, &[&mutated]);
                    if index < 2 {
                        assert!(result.is_err(), "{mutated}");
                    } else {
                        assert!(
                            matches!(
                                result,
                                Err(BarcodeError::CheckDigitMismatch { segment: 0, .. })
                            ),
                            "{mutated}: {result:?}"
                        );
                    }
                }
            }
        }
    }

    /// Changing any one digit outside the check pair of a TW slip is detected:
    /// a digit change moves one parity sum by 1–9, never a multiple of 11.
    #[test]
    fn tw_single_digit_errors_are_always_detected() {
        let mut rng = Lcg(0x5eed_0004);
        for _ in 0..PROPERTY_ITERATIONS / 10 {
            let barcodes = encode(&generated_tw_slip(
                &mut rng,
                BarcodeProfile::TaiwanCvsThreeSegment,
            ))
            .unwrap();
            for (segment, text) in barcodes.iter().enumerate() {
                for (index, original) in text.char_indices() {
                    if !original.is_ascii_digit() || (segment == 2 && (4..6).contains(&index)) {
                        continue;
                    }
                    for replacement in ('0'..='9').filter(|&c| c != original) {
                        let mut mutated = barcodes.clone();
                        mutated[segment] = with_char(text, index, replacement);
                        let mutated: Vec<&str> = mutated.iter().map(String::as_str).collect();
                        let result = parse(BarcodeProfile::TaiwanCvsThreeSegment, &mutated);
                        assert!(
                            matches!(
                                result,
                                Err(BarcodeError::CheckDigitMismatch { segment: 2, .. })
                            ),
                            "{mutated:?}: {result:?}"
                        );
                    }
                }
            }
        }
    }

    /// Error messages name the segment in words an integrator understands.
    #[test]
    fn error_messages_name_the_segment() {
        let error = BarcodeError::CheckDigitMismatch {
            segment: 2,
            expected: "85".to_owned(),
            found: "84".to_owned(),
        };
        assert_eq!(
            error.to_string(),
            "segment 2 carries check \"84\" but its data gives \"85\""
        );
    }
}
