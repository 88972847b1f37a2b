//! Bill-slip encoders, written from the published layouts (REFERENCES.md,
//! "Bill slips") and independently of the gateway's parser, so that the two
//! implementations of each check rule cross-check each other.
//!
//! # Taiwan: three-segment Code 39, profile `tw-cvs-3seg` (ROC years)
//! Segment 1 (9): due date `YYMMDD` with `YY` = ROC year mod 100, then the
//! 3-character agency code. Segment 2 (16): bill number, `0-9A-Z`. Segment 3
//! (15): 4-character period, 2 check characters, 9-digit amount in whole TWD.
//! Check characters: letters count A–I → 1–9, J–R → 1–9, S–Z → 2–9; over
//! segment 1, segment 2 and segment 3 without its pair (positions counted
//! from 1 within each segment), the odd-position sum mod 11 gives the first
//! character (0 → `A`, 10 → `B`) and the even-position sum mod 11 the second
//! (0 → `X`, 10 → `Y`).
//!
//! # Japan: GS1-128, AI 91
//! 44 digits: `91`, 6-digit company code, 21-digit free field, re-issue count,
//! `YYMMDD` due date (20YY), stamp-duty flag, 6-digit amount in yen, check
//! digit = (10 − (Σ with weight 3 on the rightmost of the 43 digits,
//! alternating 3/1 leftwards) mod 10) mod 10.

use chrono::{Datelike, NaiveDate};

/// Gregorian year of ROC year 0 (ROC year = Gregorian − 1911).
const ROC_YEAR_OFFSET: i32 = 1911;
/// Largest amount the 9 amount digits of a Taiwanese slip hold.
pub const TW_MAX_AMOUNT_WHOLE: u64 = 999_999_999;
/// Largest amount the 6 amount digits of a Japanese slip hold.
pub const JP_MAX_AMOUNT_YEN: u64 = 999_999;
/// Digits of the Japanese free field (customer or bill reference).
pub const JP_FREE_FIELD_LEN: usize = 21;
/// Characters of a Taiwanese bill number (segment 2).
pub const TW_BILL_NUMBER_LEN: usize = 16;

/// A Taiwanese slip's printed fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwSlip {
    /// 3 characters of `0-9A-Z`.
    pub agency_code: String,
    /// 16 characters of `0-9A-Z`.
    pub bill_number: String,
    /// Between 2011 and 2110 (two-digit ROC years 100–199).
    pub due_date: NaiveDate,
    /// 4 digits, e.g. the ROC `YYMM` of the billing month.
    pub period: String,
    /// Whole TWD, 1 to [`TW_MAX_AMOUNT_WHOLE`].
    pub amount_whole: u64,
}

impl TwSlip {
    /// The three barcodes, with the check pair computed.
    ///
    /// # Panics
    ///
    /// When a field does not fit the layout: the suite only builds slips from
    /// validated settings, so that is a bug in the suite.
    #[must_use]
    pub fn barcodes(&self) -> [String; 3] {
        assert!(
            is_upper_alphanumeric(&self.agency_code, 3),
            "agency code {:?}",
            self.agency_code
        );
        assert!(
            is_upper_alphanumeric(&self.bill_number, TW_BILL_NUMBER_LEN),
            "bill number {:?}",
            self.bill_number
        );
        assert!(is_digits(&self.period, 4), "period {:?}", self.period);
        assert!(
            (1..=TW_MAX_AMOUNT_WHOLE).contains(&self.amount_whole),
            "amount {}",
            self.amount_whole
        );
        let segment1 = format!("{}{}", roc_yymmdd(self.due_date), self.agency_code);
        let amount = format!("{:09}", self.amount_whole);
        let (odd, even) = tw_check_pair(
            &segment1,
            &self.bill_number,
            &format!("{}{amount}", self.period),
        );
        let segment3 = format!("{}{odd}{even}{amount}", self.period);
        [segment1, self.bill_number.clone(), segment3]
    }
}

/// The two check characters of a Taiwanese slip. `segment3_without_pair` is
/// the period followed by the amount (13 characters).
#[must_use]
pub fn tw_check_pair(segment1: &str, segment2: &str, segment3_without_pair: &str) -> (char, char) {
    let mut odd_sum = 0;
    let mut even_sum = 0;
    for segment in [segment1, segment2, segment3_without_pair] {
        for (index, c) in segment.chars().enumerate() {
            // Index 0 is position 1, an odd position.
            if index % 2 == 0 {
                odd_sum += tw_char_value(c);
            } else {
                even_sum += tw_char_value(c);
            }
        }
    }
    (
        tw_check_char(odd_sum % 11, 'A', 'B'),
        tw_check_char(even_sum % 11, 'X', 'Y'),
    )
}

/// A slip character's value: a digit as itself, letters in the runs
/// A–I → 1–9, J–R → 1–9, S–Z → 2–9.
fn tw_char_value(c: char) -> u32 {
    const RUNS: [(char, char, u32); 3] = [('A', 'I', 1), ('J', 'R', 1), ('S', 'Z', 2)];
    if let Some(digit) = c.to_digit(10) {
        return digit;
    }
    RUNS.iter()
        .find(|(first, last, _)| (*first..=*last).contains(&c))
        .map_or(0, |(first, _, base)| {
            base + (u32::from(c) - u32::from(*first))
        })
}

fn tw_check_char(remainder: u32, zero: char, ten: char) -> char {
    match remainder {
        0 => zero,
        10 => ten,
        digit => {
            char::from_digit(digit, 10).expect("a remainder mod 11 other than 0 and 10 is a digit")
        }
    }
}

/// The ROC `YYMMDD` of a date (ROC year mod 100).
#[must_use]
pub fn roc_yymmdd(date: NaiveDate) -> String {
    format!("{}{:02}", roc_yymm(date), date.day())
}

/// The ROC `YYMM` of a date, the usual period of a Taiwanese bill.
#[must_use]
pub fn roc_yymm(date: NaiveDate) -> String {
    let roc_year = date.year() - ROC_YEAR_OFFSET;
    assert!(roc_year > 0, "{date} is before the ROC calendar");
    format!("{:02}{:02}", roc_year % 100, date.month())
}

/// A Japanese slip's printed fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JpSlip {
    /// 6 digits.
    pub company_code: String,
    /// 21 digits.
    pub free_field: String,
    /// 0–9.
    pub reissue_count: u8,
    /// Between 2000 and 2099.
    pub due_date: NaiveDate,
    pub stamp_duty: bool,
    /// 1 to [`JP_MAX_AMOUNT_YEN`].
    pub amount_yen: u64,
}

impl JpSlip {
    /// The 44-digit barcode, with the check digit computed.
    ///
    /// # Panics
    ///
    /// When a field does not fit the layout (a bug in the suite).
    #[must_use]
    pub fn barcode(&self) -> String {
        assert!(
            is_digits(&self.company_code, 6),
            "company code {:?}",
            self.company_code
        );
        assert!(
            is_digits(&self.free_field, JP_FREE_FIELD_LEN),
            "free field {:?}",
            self.free_field
        );
        assert!(
            self.reissue_count <= 9,
            "re-issue count {}",
            self.reissue_count
        );
        assert!(
            (2000..2100).contains(&self.due_date.year()),
            "due date {}",
            self.due_date
        );
        assert!(
            (1..=JP_MAX_AMOUNT_YEN).contains(&self.amount_yen),
            "amount {}",
            self.amount_yen
        );
        let first_43 = format!(
            "91{}{}{}{:02}{:02}{:02}{}{:06}",
            self.company_code,
            self.free_field,
            self.reissue_count,
            self.due_date.year() - 2000,
            self.due_date.month(),
            self.due_date.day(),
            u8::from(self.stamp_duty),
            self.amount_yen
        );
        format!("{first_43}{}", jp_check_digit(&first_43))
    }
}

/// The GS1 mod-10 check digit over the 43 digits before it.
///
/// # Panics
///
/// When `first_43` is not 43 ASCII digits.
#[must_use]
pub fn jp_check_digit(first_43: &str) -> u32 {
    assert!(
        is_digits(first_43, 43),
        "expected 43 digits, got {first_43:?}"
    );
    let sum: u32 = first_43
        .chars()
        .rev()
        .enumerate()
        .map(|(index, c)| {
            let digit = c.to_digit(10).expect("checked digits above");
            // The rightmost digit weighs 3, its left neighbour 1, and so on.
            if index % 2 == 0 { 3 * digit } else { digit }
        })
        .sum();
    (10 - sum % 10) % 10
}

fn is_digits(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_digit())
}

fn is_upper_alphanumeric(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}
