//! The suite's slip encoders against hand-checked vectors (the same slips the
//! gateway's parser is tested with), so a disagreement is found here first.

use chrono::NaiveDate;
use posgate_conformance::slip::{JpSlip, TwSlip, jp_check_digit, roc_yymm, tw_check_pair};

fn date(year: i32, month: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, day).expect("valid test date")
}

/// A Japanese slip encodes to the 44-digit vector, check digit 2 included.
#[test]
fn jp_slip_matches_vector() {
    let slip = JpSlip {
        company_code: "954321".to_owned(),
        free_field: "000000000000123456789".to_owned(),
        reissue_count: 1,
        due_date: date(2025, 7, 31),
        stamp_duty: true,
        amount_yen: 54_000,
    };
    assert_eq!(
        slip.barcode(),
        "91954321000000000000123456789125073110540002"
    );
    assert_eq!(
        jp_check_digit("9195432100000000000012345678912507311054000"),
        2
    );
}

/// The Japanese check digit weighs the rightmost data digit 3: a 1 there
/// alone gives sum 3, check 7; a 1 one place left gives sum 1, check 9.
#[test]
fn jp_check_digit_weights() {
    let mut digits = "0".repeat(43);
    digits.replace_range(42..43, "1");
    assert_eq!(jp_check_digit(&digits), 7);
    let mut digits = "0".repeat(43);
    digits.replace_range(41..42, "1");
    assert_eq!(jp_check_digit(&digits), 9);
    assert_eq!(jp_check_digit(&"0".repeat(43)), 0);
}

/// A Taiwanese slip (ROC years) encodes to the three-segment vector.
#[test]
fn tw_slip_matches_vector() {
    let slip = TwSlip {
        agency_code: "A2Z".to_owned(),
        bill_number: "KS20250800001234".to_owned(),
        due_date: date(2025, 8, 31),
        period: "1408".to_owned(),
        amount_whole: 1_500,
    };
    assert_eq!(
        slip.barcodes(),
        ["140831A2Z", "KS20250800001234", "140885000001500"]
    );
    assert_eq!(roc_yymm(date(2025, 8, 31)), "1408");
}

/// Remainders 10 and 0 become letters: B/Y for ten, A/X for zero.
#[test]
fn tw_check_pair_letters() {
    assert_eq!(tw_check_pair("91", "", "19"), ('B', 'Y'));
    assert_eq!(tw_check_pair("", "", ""), ('A', 'X'));
    // Letters count in three runs: J is 1 like A, S is 2.
    assert_eq!(tw_check_pair("J", "", ""), tw_check_pair("A", "", ""));
    assert_eq!(tw_check_pair("S", "", ""), ('2', 'X'));
}
