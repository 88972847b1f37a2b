//! Known answers for the pure card-data functions: PIN block fields, Luhn, masking, expiry.

use chrono::NaiveDate;
use posgate_hsm::pin_block::{iso0_clear_block, iso0_pan_field, iso4_pan_field, iso4_pin_field};
use posgate_hsm::{CardExpiry, Pan, PanError};

/// ISO 9564 format 0 published example: PIN 1234, PAN 43219876543210987 -> 0412AC89ABCDEF67.
#[test]
fn iso0_published_example() {
    let block = iso0_clear_block("1234", "43219876543210987").unwrap();
    assert_eq!(hex::encode_upper(&block[..]), "0412AC89ABCDEF67");
    assert_eq!(
        hex::encode_upper(iso0_pan_field("4111111111111111").unwrap()),
        "0000111111111111"
    );
}

/// ANSI X9.24-3:2017 supplement (format 4 example): PIN 1234 -> 441234AAAAAAAAAA,
/// PAN 4111111111111111 -> 4411111111111111 1000000000000000.
#[test]
fn iso4_fields_match_x9_24_3_example() {
    let fill = [0x5A; 8];
    let field = iso4_pin_field("1234", fill).unwrap();
    assert_eq!(hex::encode_upper(&field[..8]), "441234AAAAAAAAAA");
    assert_eq!(&field[8..], &fill);
    assert_eq!(
        hex::encode_upper(iso4_pan_field("4111111111111111").unwrap()),
        "44111111111111111000000000000000"
    );
    assert_eq!(
        hex::encode_upper(&iso4_pin_field("12345", fill).unwrap()[..8]),
        "4512345AAAAAAAAA"
    );
    assert_eq!(
        hex::encode_upper(iso4_pan_field("123456789").unwrap()),
        "00001234567890000000000000000000"
    );
}

/// PINs outside 4..=12 digits or with non-digits are refused.
#[test]
fn bad_pins_are_refused() {
    for pin in ["123", "1234567890123", "12a4"] {
        assert!(iso0_clear_block(pin, "4111111111111111").is_err(), "{pin}");
    }
}

/// Luhn and length are enforced; Debug and Display print only first 6 and last 4.
#[test]
fn pan_validates_and_masks() {
    let pan = Pan::parse("4111-1111-1111-1111").unwrap();
    assert_eq!(pan.masked(), "411111******1111");
    assert_eq!(format!("{pan}"), "411111******1111");
    assert_eq!(format!("{pan:?}"), "Pan(411111******1111)");
    assert_eq!(pan.bin(), "41111111");
    assert_eq!(pan.last4(), "1111");
    let nineteen = Pan::parse("6011000990139424").unwrap();
    assert_eq!(nineteen.masked(), "601100******9424");
    let thirteen = Pan::parse("4222222222222").unwrap();
    assert_eq!(thirteen.bin(), "422222");
    assert_eq!(thirteen.masked(), "422222***2222");
    assert_eq!(Pan::parse("4111111111111112"), Err(PanError::BadCheckDigit));
    assert_eq!(Pan::parse("41111111111"), Err(PanError::BadLength(11)));
    assert_eq!(
        Pan::parse("41111111111111111111"),
        Err(PanError::BadLength(20))
    );
    assert_eq!(Pan::parse("4111x11111111111"), Err(PanError::NotDigits));
}

/// A card is valid through the last day of its expiry month, leap years included.
#[test]
fn expiry_is_end_of_month() {
    let expiry = CardExpiry::parse("2402").unwrap();
    let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
    assert_eq!(expiry.last_valid_day(), day(2024, 2, 29));
    assert!(!expiry.is_expired_at(day(2024, 2, 29)));
    assert!(expiry.is_expired_at(day(2024, 3, 1)));
    let december = CardExpiry::parse("2512").unwrap();
    assert_eq!(december.last_valid_day(), day(2025, 12, 31));
    assert!(!december.is_expired_at(day(2025, 12, 31)));
    assert!(december.is_expired_at(day(2026, 1, 1)));
    assert_eq!(december.to_yymm(), "2512");
    assert_eq!(december.to_string(), "12/25");
    assert!(CardExpiry::parse("2513").is_err());
    assert!(CardExpiry::parse("2500").is_err());
    assert!(CardExpiry::parse("25-1").is_err());
}

/// An expiry is card data: its `Debug` shows neither the year nor the month.
#[test]
fn expiry_debug_is_masked() {
    let expiry = CardExpiry::parse("2812").expect("valid expiry");
    let shown = format!("{expiry:?} {expiry:#?}");
    assert!(!shown.contains("2028") && !shown.contains("12"), "{shown}");
    assert_eq!(expiry.year(), 2028);
    assert_eq!(expiry.month(), 12);
}
