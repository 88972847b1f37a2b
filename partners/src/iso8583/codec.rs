//! Packing and unpacking, driven by a [`Dialect`]'s field table.
//!
//! Unpack reads the input once, front to back, and never trusts a length
//! before checking it against both the field's maximum and the bytes that
//! remain, so malformed input costs at most one pass and an allocation
//! bounded by the input size.

use super::error::{PackError, UnpackError};
use super::message::{Message, field_bit, present_fields};
use super::mti::Mti;
use super::spec::{BitmapEncoding, Dialect, Encoding, FieldKind, FieldSpec, Length};

/// Largest input `unpack` accepts. A message of the 1987 dialects with every
/// field at its maximum is under 256 KiB; a bank frame (2-byte length) is
/// under 64 KiB. Anything larger is refused before any allocation.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Bit of field 1 (secondary bitmap present) in the 128-bit bitmap.
const SECONDARY_BIT: u128 = 1 << 127;
/// The lower half of the 128-bit bitmap: fields 65..=128.
const SECONDARY_FIELDS: u128 = u64::MAX as u128;

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

pub(crate) fn pack(dialect: &Dialect, m: &Message, out: &mut Vec<u8>) -> Result<(), PackError> {
    write_mti(dialect.mti_encoding(), m.mti(), out)?;
    let mut bitmap = m.present();
    if bitmap & SECONDARY_FIELDS != 0 {
        bitmap |= SECONDARY_BIT;
    }
    let [primary, secondary] = split_bitmap(bitmap);
    write_bitmap(dialect.bitmap_encoding(), primary, out);
    if bitmap & SECONDARY_BIT != 0 {
        write_bitmap(dialect.bitmap_encoding(), secondary, out);
    }
    for (field, value) in m.fields() {
        let spec = dialect.field(field).ok_or_else(|| {
            PackError::new(field, format!("not defined in dialect {}", dialect.name()))
        })?;
        pack_field(field, spec, value, out)?;
    }
    Ok(())
}

fn split_bitmap(bitmap: u128) -> [u64; 2] {
    // Truncation is the point: the halves of the 128-bit bitmap.
    #[allow(clippy::cast_possible_truncation)]
    [(bitmap >> 64) as u64, bitmap as u64]
}

fn write_mti(encoding: Encoding, mti: Mti, out: &mut Vec<u8>) -> Result<(), PackError> {
    if !mti.is_valid() {
        return Err(PackError::new(0, "MTI is not four ASCII digits"));
    }
    match encoding {
        Encoding::Ascii | Encoding::Binary => out.extend_from_slice(&mti.0),
        Encoding::Bcd => write_bcd(&mti.0, out),
    }
    Ok(())
}

fn write_bitmap(encoding: BitmapEncoding, bitmap: u64, out: &mut Vec<u8>) {
    let bytes = bitmap.to_be_bytes();
    match encoding {
        BitmapEncoding::Binary => out.extend_from_slice(&bytes),
        BitmapEncoding::Hex => write_hex(&bytes, out),
    }
}

fn write_hex(bytes: &[u8], out: &mut Vec<u8>) {
    out.extend(bytes.iter().flat_map(|byte| {
        [
            HEX_UPPER[usize::from(byte >> 4)],
            HEX_UPPER[usize::from(byte & 0x0F)],
        ]
    }));
}

/// Packs ASCII digits two per byte, left-padding an odd count with a zero
/// nibble. The caller has checked the digits.
fn write_bcd(digits: &[u8], out: &mut Vec<u8>) {
    let (head, rest) = if digits.len() % 2 == 1 {
        (Some(digits[0] - b'0'), &digits[1..])
    } else {
        (None, digits)
    };
    if let Some(nibble) = head {
        out.push(nibble);
    }
    for pair in rest.chunks_exact(2) {
        out.push(((pair[0] - b'0') << 4) | (pair[1] - b'0'));
    }
}

fn pack_field(
    field: u8,
    spec: &FieldSpec,
    value: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), PackError> {
    let units = value.len();
    let max = usize::from(spec.length.max());
    match spec.length {
        Length::Fixed(_) if units != max => {
            return Err(PackError::new(
                field,
                format!("length {units}, expected exactly {max} ({})", spec.name),
            ));
        }
        Length::LlVar(_) | Length::LllVar(_) if units > max => {
            return Err(PackError::new(
                field,
                format!("length {units}, maximum {max} ({})", spec.name),
            ));
        }
        _ => {}
    }
    if let Some(position) = spec.kind.first_invalid(value) {
        return Err(PackError::new(
            field,
            format!(
                "character at position {position} is not of class {} ({})",
                spec.kind.as_str(),
                spec.name
            ),
        ));
    }
    write_prefix(spec, spec.prefix_value(units), out);
    match (spec.kind, spec.data_encoding) {
        (FieldKind::B, Encoding::Ascii) => write_hex(value, out),
        (_, Encoding::Bcd) => write_bcd(value, out),
        _ => out.extend_from_slice(value),
    }
    Ok(())
}

/// Writes a length prefix; `value` fits, as `FieldSpec::validate` checked
/// the maximum against the prefix capacity.
fn write_prefix(spec: &FieldSpec, value: usize, out: &mut Vec<u8>) {
    let digits = spec.length.prefix_digits();
    if digits == 0 {
        return;
    }
    match spec.length_encoding {
        Encoding::Ascii => {
            let mut text = [0u8; 3];
            let mut rest = value;
            for slot in text[..digits].iter_mut().rev() {
                *slot = b'0' + digit(rest % 10);
                rest /= 10;
            }
            out.extend_from_slice(&text[..digits]);
        }
        Encoding::Bcd => {
            if digits == 3 {
                out.push(digit(value / 100));
            }
            out.push((digit(value / 10 % 10) << 4) | digit(value % 10));
        }
        Encoding::Binary => {
            let bytes = u16::try_from(value).unwrap_or(u16::MAX).to_be_bytes();
            if digits == 3 {
                out.extend_from_slice(&bytes);
            } else {
                out.push(bytes[1]);
            }
        }
    }
}

/// A value known to be below 10 as a byte.
fn digit(value: usize) -> u8 {
    u8::try_from(value % 10).unwrap_or(0)
}

/// A cursor over the input that turns running out of bytes into an error
/// naming the field and the offset.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn take(
        &mut self,
        count: usize,
        field: Option<u8>,
        what: &str,
    ) -> Result<&'a [u8], UnpackError> {
        let remaining = self.bytes.len() - self.position;
        if count > remaining {
            return Err(UnpackError::new(
                field,
                self.position,
                format!("{what} needs {count} bytes, only {remaining} remain"),
            ));
        }
        let start = self.position;
        self.position += count;
        Ok(&self.bytes[start..self.position])
    }
}

pub(crate) fn unpack(dialect: &Dialect, bytes: &[u8]) -> Result<Message, UnpackError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(UnpackError::new(
            None,
            0,
            format!(
                "message of {} bytes exceeds the limit of {MAX_MESSAGE_BYTES}",
                bytes.len()
            ),
        ));
    }
    let mut reader = Reader { bytes, position: 0 };
    let mti = read_mti(dialect.mti_encoding(), &mut reader)?;
    let primary = read_bitmap(dialect.bitmap_encoding(), &mut reader, "primary bitmap")?;
    let mut bitmap = u128::from(primary) << 64;
    if bitmap & SECONDARY_BIT != 0 {
        let secondary = read_bitmap(dialect.bitmap_encoding(), &mut reader, "secondary bitmap")?;
        bitmap |= u128::from(secondary);
    }
    bitmap &= !SECONDARY_BIT;
    let mut message = Message::from_wire(mti, bitmap.count_ones() as usize, bytes);
    for field in present_fields(bitmap) {
        let spec = dialect.field(field).ok_or_else(|| {
            UnpackError::new(
                Some(field),
                reader.position,
                format!(
                    "bitmap announces a field not defined in dialect {}",
                    dialect.name()
                ),
            )
        })?;
        unpack_field(field, spec, &mut reader, &mut message)?;
    }
    debug_assert_eq!(message.present(), bitmap & !field_bit(1));
    if reader.position != bytes.len() {
        return Err(UnpackError::new(
            None,
            reader.position,
            format!(
                "{} trailing bytes after the last field",
                bytes.len() - reader.position
            ),
        ));
    }
    Ok(message)
}

fn read_mti(encoding: Encoding, reader: &mut Reader<'_>) -> Result<Mti, UnpackError> {
    let start = reader.position;
    let mut digits = [0u8; 4];
    match encoding {
        Encoding::Ascii | Encoding::Binary => {
            digits.copy_from_slice(reader.take(4, None, "MTI")?);
            if let Some(position) = digits.iter().position(|byte| !byte.is_ascii_digit()) {
                return Err(UnpackError::new(
                    None,
                    start + position,
                    "MTI is not four ASCII digits",
                ));
            }
        }
        Encoding::Bcd => {
            let packed = reader.take(2, None, "MTI")?;
            for (index, byte) in packed.iter().enumerate() {
                let (high, low) = (byte >> 4, byte & 0x0F);
                if high > 9 || low > 9 {
                    return Err(UnpackError::new(None, start + index, "MTI is not BCD"));
                }
                digits[index * 2] = b'0' + high;
                digits[index * 2 + 1] = b'0' + low;
            }
        }
    }
    Ok(Mti(digits))
}

fn read_bitmap(
    encoding: BitmapEncoding,
    reader: &mut Reader<'_>,
    what: &str,
) -> Result<u64, UnpackError> {
    let start = reader.position;
    match encoding {
        BitmapEncoding::Binary => {
            let raw = reader.take(8, None, what)?;
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(raw);
            Ok(u64::from_be_bytes(bytes))
        }
        BitmapEncoding::Hex => {
            let text = reader.take(16, None, what)?;
            let mut bitmap = 0u64;
            for (index, character) in text.iter().enumerate() {
                let nibble = hex_value(*character).ok_or_else(|| {
                    UnpackError::new(None, start + index, format!("{what} is not hexadecimal"))
                })?;
                bitmap = (bitmap << 4) | u64::from(nibble);
            }
            Ok(bitmap)
        }
    }
}

#[inline]
fn hex_value(character: u8) -> Option<u8> {
    match character {
        b'0'..=b'9' => Some(character - b'0'),
        b'A'..=b'F' => Some(character - b'A' + 10),
        b'a'..=b'f' => Some(character - b'a' + 10),
        _ => None,
    }
}

fn unpack_field(
    field: u8,
    spec: &FieldSpec,
    reader: &mut Reader<'_>,
    message: &mut Message,
) -> Result<(), UnpackError> {
    let units = match spec.length {
        Length::Fixed(units) => usize::from(units),
        Length::LlVar(_) | Length::LllVar(_) => read_length(field, spec, reader)?,
    };
    let data_start = reader.position;
    let wire = reader.take(spec.data_wire_len(units), Some(field), "data")?;
    let bad = match (spec.kind, spec.data_encoding) {
        (FieldKind::B, Encoding::Ascii) => {
            decode_into(field, message, |data| decode_hex(wire, data))
        }
        (_, Encoding::Bcd) => decode_into(field, message, |data| decode_bcd(wire, units, data)),
        (kind, _) => {
            let bad = kind.first_invalid(wire);
            if bad.is_none() {
                message.push_unpacked(field, data_start, wire.len(), true);
            }
            bad
        }
    };
    match bad {
        None => Ok(()),
        Some(index) => Err(UnpackError::new(
            Some(field),
            data_start + index,
            format!(
                "byte {index} of the data is not of class {} ({})",
                spec.kind.as_str(),
                spec.name
            ),
        )),
    }
}

/// Runs `decode`, which appends a value to the message's buffer, and records
/// the value if it reports no bad byte.
fn decode_into(
    field: u8,
    message: &mut Message,
    decode: impl FnOnce(&mut Vec<u8>) -> Option<usize>,
) -> Option<usize> {
    let data = message.data_mut();
    let start = data.len();
    let bad = decode(data);
    if bad.is_none() {
        let len = message.data_mut().len() - start;
        message.push_unpacked(field, start, len, false);
    }
    bad
}

/// Reads a length prefix and returns the value's length in logical units,
/// checked against the field's maximum.
fn read_length(field: u8, spec: &FieldSpec, reader: &mut Reader<'_>) -> Result<usize, UnpackError> {
    let start = reader.position;
    let prefix = reader.take(spec.prefix_wire_len(), Some(field), "length prefix")?;
    let bad_prefix = |index: usize| {
        UnpackError::new(
            Some(field),
            start + index,
            "length prefix is not a decimal number",
        )
    };
    let value = match spec.length_encoding {
        Encoding::Ascii => {
            let mut value = 0usize;
            for (index, character) in prefix.iter().enumerate() {
                if !character.is_ascii_digit() {
                    return Err(bad_prefix(index));
                }
                value = value * 10 + usize::from(character - b'0');
            }
            value
        }
        Encoding::Bcd => {
            let mut value = 0usize;
            for (index, byte) in prefix.iter().enumerate() {
                let (high, low) = (byte >> 4, byte & 0x0F);
                if high > 9 || low > 9 {
                    return Err(bad_prefix(index));
                }
                value = value * 100 + usize::from(high) * 10 + usize::from(low);
            }
            value
        }
        Encoding::Binary => prefix
            .iter()
            .fold(0usize, |value, byte| (value << 8) | usize::from(*byte)),
    };
    if value > spec.prefix_capacity() {
        // A BCD LLL prefix is four nibbles; the leading one must be zero.
        return Err(UnpackError::new(
            Some(field),
            start,
            format!(
                "length {value} exceeds the {}-digit prefix",
                spec.length.prefix_digits()
            ),
        ));
    }
    let units = if spec.is_hex_binary() {
        if value % 2 == 1 {
            return Err(UnpackError::new(
                Some(field),
                start,
                format!("odd hex length {value} for a binary field"),
            ));
        }
        value / 2
    } else {
        value
    };
    let max = usize::from(spec.length.max());
    if units > max {
        return Err(UnpackError::new(
            Some(field),
            start,
            format!("length {units} exceeds the maximum {max} ({})", spec.name),
        ));
    }
    Ok(units)
}

/// Decodes hex text into `out`; returns the index of the first bad
/// character, leaving `out` possibly extended (the message is dropped then).
fn decode_hex(wire: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    for (index, pair) in wire.chunks_exact(2).enumerate() {
        let Some(high) = hex_value(pair[0]) else {
            return Some(index * 2);
        };
        let Some(low) = hex_value(pair[1]) else {
            return Some(index * 2 + 1);
        };
        out.push((high << 4) | low);
    }
    None
}

/// Decodes `digits` BCD digits into ASCII; returns the index of the first
/// byte holding a nibble above 9 or a non-zero pad nibble.
fn decode_bcd(wire: &[u8], digits: usize, out: &mut Vec<u8>) -> Option<usize> {
    let odd = digits % 2 == 1;
    for (index, byte) in wire.iter().enumerate() {
        let (high, low) = (byte >> 4, byte & 0x0F);
        if high > 9 || low > 9 {
            return Some(index);
        }
        if index == 0 && odd {
            if high != 0 {
                return Some(0);
            }
        } else {
            out.push(b'0' + high);
        }
        out.push(b'0' + low);
    }
    None
}
