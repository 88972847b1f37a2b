//! ISO 9564-1 PIN blocks: format 0 (TDES, 8 bytes) and format 4 (AES, 16
//! bytes), and the translation from one key and format to another.
//!
//! Decoding yields a [`ClearPin`] that lives only inside the HSM crate, in a
//! zeroizing buffer, for the few instructions between decrypt and re-encrypt.
//! The pure field builders are public so tests and terminal simulators can
//! check them against published examples.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::HsmError;
use crate::keys::KeyType;
use crate::secret::Secret;

/// Shortest PIN ISO 9564 allows.
pub const MIN_PIN_DIGITS: usize = 4;
/// Longest PIN ISO 9564 allows.
pub const MAX_PIN_DIGITS: usize = 12;

/// The PIN block formats posgate translates between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PinBlockFormat {
    /// ISO 9564-1 format 0 (ANSI X9.8): PIN field xor PAN field, TDES.
    Iso0,
    /// ISO 9564-1 format 4: AES, PIN field enciphered, xor PAN field, enciphered again.
    Iso4,
}

impl PinBlockFormat {
    /// Length of an enciphered block in bytes.
    #[must_use]
    pub fn block_len_bytes(self) -> usize {
        match self {
            Self::Iso0 => 8,
            Self::Iso4 => 16,
        }
    }

    /// The key type a PIN key for this format must have.
    #[must_use]
    pub fn key_type(self) -> KeyType {
        match self {
            Self::Iso0 => KeyType::Tdes2,
            Self::Iso4 => KeyType::Aes256,
        }
    }
}

/// A clear PIN, one digit (0..=9) per byte. Never leaves this crate; zeroized on drop.
#[derive(Debug)]
pub(crate) struct ClearPin(Secret<Vec<u8>>);

impl ClearPin {
    fn from_digits(digits: Zeroizing<Vec<u8>>) -> Result<Self, HsmError> {
        if !(MIN_PIN_DIGITS..=MAX_PIN_DIGITS).contains(&digits.len()) {
            return Err(HsmError::InvalidInput(format!(
                "a PIN has {MIN_PIN_DIGITS} to {MAX_PIN_DIGITS} digits"
            )));
        }
        if digits.iter().any(|digit| *digit > 9) {
            return Err(HsmError::InvalidInput(
                "a PIN has decimal digits only".to_owned(),
            ));
        }
        Ok(Self(digits.into()))
    }

    fn parse(pin: &str) -> Result<Self, HsmError> {
        let digits: Zeroizing<Vec<u8>> = Zeroizing::new(
            pin.bytes()
                .map(|byte| {
                    if byte.is_ascii_digit() {
                        byte - b'0'
                    } else {
                        0xFF
                    }
                })
                .collect(),
        );
        Self::from_digits(digits)
    }

    fn len_nibble(&self) -> u8 {
        u8::try_from(self.0.expose().len()).expect("a PIN has at most 12 digits")
    }
}

/// The block cipher a PIN block is enciphered with, as held by a backend.
pub(crate) trait PinCipher {
    fn encrypt_block(&mut self, block: &mut [u8]) -> Result<(), HsmError>;
    fn decrypt_block(&mut self, block: &mut [u8]) -> Result<(), HsmError>;
}

fn pan_digit_values(pan_digits: &str) -> Result<Vec<u8>, HsmError> {
    if pan_digits.is_empty() || !pan_digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(HsmError::InvalidInput(
            "a PAN has decimal digits only".to_owned(),
        ));
    }
    Ok(pan_digits.bytes().map(|byte| byte - b'0').collect())
}

fn pack_nibbles(nibbles: &[u8], out: &mut [u8]) {
    for (byte, pair) in out.iter_mut().zip(nibbles.chunks_exact(2)) {
        *byte = (pair[0] << 4) | pair[1];
    }
}

/// Format 0 account number field: `0000` then the 12 rightmost PAN digits
/// excluding the check digit, left-padded with zeros if the PAN is short.
pub fn iso0_pan_field(pan_digits: &str) -> Result<[u8; 8], HsmError> {
    let digits = pan_digit_values(pan_digits)?;
    let without_check = &digits[..digits.len() - 1];
    let take = without_check.len().min(12);
    let mut nibbles = [0_u8; 16];
    nibbles[16 - take..].copy_from_slice(&without_check[without_check.len() - take..]);
    let mut field = [0_u8; 8];
    pack_nibbles(&nibbles, &mut field);
    Ok(field)
}

fn iso0_pin_field(pin: &ClearPin) -> Zeroizing<[u8; 8]> {
    let mut nibbles = Zeroizing::new([0xF_u8; 16]);
    nibbles[0] = 0;
    nibbles[1] = pin.len_nibble();
    nibbles[2..2 + pin.0.expose().len()].copy_from_slice(pin.0.expose());
    let mut field = Zeroizing::new([0_u8; 8]);
    pack_nibbles(&*nibbles, &mut *field);
    field
}

/// The clear format 0 block for `pin` and `pan_digits`, for tests and
/// terminal simulators only: the gateway never builds clear PIN blocks.
pub fn iso0_clear_block(pin: &str, pan_digits: &str) -> Result<Zeroizing<[u8; 8]>, HsmError> {
    let pin = ClearPin::parse(pin)?;
    let mut block = iso0_pin_field(&pin);
    for (byte, pan_byte) in block.iter_mut().zip(iso0_pan_field(pan_digits)?) {
        *byte ^= pan_byte;
    }
    Ok(block)
}

fn iso0_decode(clear_block: &Zeroizing<[u8; 8]>, pan_digits: &str) -> Option<ClearPin> {
    let pan_field = iso0_pan_field(pan_digits).ok()?;
    let mut nibbles = Zeroizing::new([0_u8; 16]);
    for (index, (byte, pan_byte)) in clear_block.iter().zip(pan_field).enumerate() {
        let field_byte = byte ^ pan_byte;
        nibbles[2 * index] = field_byte >> 4;
        nibbles[2 * index + 1] = field_byte & 0xF;
    }
    let pin_len = usize::from(nibbles[1]);
    let well_formed = nibbles[0] == 0
        && (MIN_PIN_DIGITS..=MAX_PIN_DIGITS).contains(&pin_len)
        && nibbles[2..2 + pin_len].iter().all(|digit| *digit <= 9)
        && nibbles[2 + pin_len..].iter().all(|fill| *fill == 0xF);
    if !well_formed {
        return None;
    }
    ClearPin::from_digits(Zeroizing::new(nibbles[2..2 + pin_len].to_vec())).ok()
}

/// Format 4 plain-text PIN field: `4`, length, digits, `A` fill to nibble 16,
/// then 8 random bytes (`random_fill`).
pub fn iso4_pin_field(pin: &str, random_fill: [u8; 8]) -> Result<Zeroizing<[u8; 16]>, HsmError> {
    Ok(iso4_pin_field_of(&ClearPin::parse(pin)?, random_fill))
}

fn iso4_pin_field_of(pin: &ClearPin, random_fill: [u8; 8]) -> Zeroizing<[u8; 16]> {
    let mut nibbles = Zeroizing::new([0xA_u8; 16]);
    nibbles[0] = 4;
    nibbles[1] = pin.len_nibble();
    nibbles[2..2 + pin.0.expose().len()].copy_from_slice(pin.0.expose());
    let mut field = Zeroizing::new([0_u8; 16]);
    pack_nibbles(&*nibbles, &mut field[..8]);
    field[8..].copy_from_slice(&random_fill);
    field
}

/// Format 4 plain-text PAN field: `M` (PAN length minus 12, at least 0), the
/// PAN (left-padded with zeros to 12 digits if shorter), zero fill.
pub fn iso4_pan_field(pan_digits: &str) -> Result<[u8; 16], HsmError> {
    let digits = pan_digit_values(pan_digits)?;
    if digits.len() > 19 {
        return Err(HsmError::InvalidInput(
            "a PAN has at most 19 digits".to_owned(),
        ));
    }
    let mut nibbles = [0_u8; 32];
    nibbles[0] = u8::try_from(digits.len().saturating_sub(12)).expect("at most 7");
    let padding = 12_usize.saturating_sub(digits.len());
    nibbles[1 + padding..1 + padding + digits.len()].copy_from_slice(&digits);
    let mut field = [0_u8; 16];
    pack_nibbles(&nibbles, &mut field);
    Ok(field)
}

fn iso4_decode(pin_field: &[u8; 16]) -> Option<ClearPin> {
    let mut nibbles = Zeroizing::new([0_u8; 16]);
    for (index, byte) in pin_field[..8].iter().enumerate() {
        nibbles[2 * index] = byte >> 4;
        nibbles[2 * index + 1] = byte & 0xF;
    }
    let pin_len = usize::from(nibbles[1]);
    let well_formed = nibbles[0] == 4
        && (MIN_PIN_DIGITS..=MAX_PIN_DIGITS).contains(&pin_len)
        && nibbles[2..2 + pin_len].iter().all(|digit| *digit <= 9)
        && nibbles[2 + pin_len..].iter().all(|fill| *fill == 0xA);
    if !well_formed {
        return None;
    }
    ClearPin::from_digits(Zeroizing::new(nibbles[2..2 + pin_len].to_vec())).ok()
}

/// Deciphers and decodes a PIN block. `Ok(None)` means the block does not
/// decode (wrong key, wrong PAN, corrupted); errors are backend failures.
pub(crate) fn decipher(
    format: PinBlockFormat,
    cipher: &mut dyn PinCipher,
    pan_digits: &str,
    block: &[u8],
) -> Result<Option<ClearPin>, HsmError> {
    if block.len() != format.block_len_bytes() {
        return Err(HsmError::InvalidInput(format!(
            "a {format:?} PIN block is {} bytes, got {}",
            format.block_len_bytes(),
            block.len()
        )));
    }
    match format {
        PinBlockFormat::Iso0 => {
            let mut clear = Zeroizing::new([0_u8; 8]);
            clear.copy_from_slice(block);
            cipher.decrypt_block(&mut *clear)?;
            Ok(iso0_decode(&clear, pan_digits))
        }
        PinBlockFormat::Iso4 => {
            let pan_field = iso4_pan_field(pan_digits)?;
            let mut field = Zeroizing::new([0_u8; 16]);
            field.copy_from_slice(block);
            cipher.decrypt_block(&mut *field)?;
            for (byte, pan_byte) in field.iter_mut().zip(pan_field) {
                *byte ^= pan_byte;
            }
            cipher.decrypt_block(&mut *field)?;
            Ok(iso4_decode(&field))
        }
    }
}

/// Encodes and enciphers a PIN block. `random_fill` is used by format 4 only.
pub(crate) fn encipher(
    format: PinBlockFormat,
    cipher: &mut dyn PinCipher,
    pan_digits: &str,
    pin: &ClearPin,
    random_fill: [u8; 8],
) -> Result<Vec<u8>, HsmError> {
    match format {
        PinBlockFormat::Iso0 => {
            let mut block = iso0_pin_field(pin);
            for (byte, pan_byte) in block.iter_mut().zip(iso0_pan_field(pan_digits)?) {
                *byte ^= pan_byte;
            }
            cipher.encrypt_block(&mut *block)?;
            Ok(block.to_vec())
        }
        PinBlockFormat::Iso4 => {
            let pan_field = iso4_pan_field(pan_digits)?;
            let mut block = iso4_pin_field_of(pin, random_fill);
            cipher.encrypt_block(&mut *block)?;
            for (byte, pan_byte) in block.iter_mut().zip(pan_field) {
                *byte ^= pan_byte;
            }
            cipher.encrypt_block(&mut *block)?;
            Ok(block.to_vec())
        }
    }
}
