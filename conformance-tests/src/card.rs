//! Test cards and what a PIN pad makes of them: the published cards of the
//! bank simulator's example (`config/bank-sim.example.toml`), Luhn check
//! digits, and ISO 9564 format 0 PIN blocks encrypted under the terminal's
//! PIN key (TDES-EDE2, ECB). The PIN block is built here, independently of
//! the gateway's HSM code, so the two cross-check each other.
//!
//! Every number here is a published test value: never a real card or key.

use anyhow::{Context as _, bail, ensure};
use des::TdesEde2;
use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockEncrypt as _, KeyInit as _};

/// Visa on the acquirer route, NT$10,000 limit.
pub const VISA_PAN: &str = "4111111111111111";
/// Mastercard on the acquirer route with NT$8,000 open to buy: larger
/// amounts are declined "51".
pub const MASTERCARD_PAN: &str = "5555555555554444";
/// Co-brand Mastercard (BIN 520082, the co-brand issuer's range): earns points.
pub const CO_BRAND_PAN: &str = "5200828282828210";
/// Expiry of every live test card ("3012" on the simulator).
pub const EXPIRY: &str = "2030-12";
/// A month long gone: the gateway refuses it before calling the bank.
pub const EXPIRED: &str = "2020-01";
/// The PIN of every test card.
pub const PIN: &str = "1234";
/// Not the PIN of any test card: the bank declines "55".
pub const WRONG_PIN: &str = "4321";
/// The amount the Mastercard cannot pay (NT$9,000, above its NT$8,000 open to buy).
pub const DECLINED_AMOUNT_MINOR: i64 = 900_000;
/// The published terminal PIN key of the test PIN pads (key id `TPK-TEST`).
pub const TEST_PIN_KEY_HEX: &str = "0F1E2D3C4B5A69788796A5B4C3D2E1F0";

/// Shortest and longest PAN the ISO 9564 format 0 account field is built from.
const PAN_DIGITS_MIN: usize = 12;
const PAN_DIGITS_MAX: usize = 19;
/// The format 0 account field uses the 12 rightmost PAN digits before the check digit.
const ISO0_PAN_DIGITS: usize = 12;
/// PINs are 4 to 12 digits (ISO 9564-1).
const PIN_DIGITS_MIN: usize = 4;
const PIN_DIGITS_MAX: usize = 12;
/// A two-key TDES key is 16 bytes.
const TDES_EDE2_KEY_BYTES: usize = 16;

/// Whether `pan` is all digits with a valid Luhn check digit.
#[must_use]
pub fn luhn_valid(pan: &str) -> bool {
    !pan.is_empty() && pan.bytes().all(|b| b.is_ascii_digit()) && luhn_sum(pan).is_multiple_of(10)
}

fn luhn_sum(digits: &str) -> u32 {
    digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(index, byte)| {
            let digit = u32::from(byte - b'0');
            if index % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum()
}

/// `pan` with its check digit changed, so it fails the Luhn check.
#[must_use]
pub fn with_bad_check_digit(pan: &str) -> String {
    let (body, check) = pan.split_at(pan.len() - 1);
    let check = check.parse::<u32>().unwrap_or(0);
    let wrong = char::from_digit((check + 1) % 10, 10).expect("a digit");
    format!("{body}{wrong}")
}

/// The ISO 9564 format 0 PIN block of `pin` for `pan`, encrypted under the
/// TDES-EDE2 key `key_hex`, in upper-case hex (16 characters).
///
/// # Errors
///
/// When the PIN, PAN or key is malformed.
pub fn iso0_pin_block_hex(pin: &str, pan: &str, key_hex: &str) -> anyhow::Result<String> {
    ensure!(
        (PIN_DIGITS_MIN..=PIN_DIGITS_MAX).contains(&pin.len())
            && pin.bytes().all(|b| b.is_ascii_digit()),
        "a PIN is {PIN_DIGITS_MIN}-{PIN_DIGITS_MAX} digits"
    );
    ensure!(
        (PAN_DIGITS_MIN..=PAN_DIGITS_MAX).contains(&pan.len())
            && pan.bytes().all(|b| b.is_ascii_digit()),
        "a PAN is {PAN_DIGITS_MIN}-{PAN_DIGITS_MAX} digits"
    );
    // PIN field: 0, length, PIN digits, F fill.
    let mut pin_nibbles = vec![0_u8, u8::try_from(pin.len())?];
    pin_nibbles.extend(pin.bytes().map(|b| b - b'0'));
    pin_nibbles.resize(16, 0xF);
    // Account field: 0000, then the 12 rightmost digits excluding the check digit.
    let without_check = &pan[..pan.len() - 1];
    let account = &without_check[without_check.len() - ISO0_PAN_DIGITS..];
    let mut account_nibbles = vec![0_u8; 4];
    account_nibbles.extend(account.bytes().map(|b| b - b'0'));
    let clear: Vec<u8> = pin_nibbles
        .chunks_exact(2)
        .zip(account_nibbles.chunks_exact(2))
        .map(|(pin, pan)| ((pin[0] << 4) | pin[1]) ^ ((pan[0] << 4) | pan[1]))
        .collect();
    let key = hex::decode(key_hex).context("the PIN key is not hex")?;
    if key.len() != TDES_EDE2_KEY_BYTES {
        bail!(
            "the PIN key is {} bytes, not {TDES_EDE2_KEY_BYTES}",
            key.len()
        );
    }
    let cipher = TdesEde2::new_from_slice(&key)
        .map_err(|_| anyhow::anyhow!("the PIN key is not a TDES key"))?;
    let mut block = GenericArray::clone_from_slice(&clear);
    cipher.encrypt_block(&mut block);
    Ok(hex::encode_upper(block))
}
