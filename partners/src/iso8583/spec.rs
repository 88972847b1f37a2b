//! Field specifications and dialects: what each data element looks like on
//! the wire for one partner.

use std::fmt;

use super::error::{PackError, UnpackError};
use super::message::Message;

/// Content class of a data element, checked on pack and on unpack.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum FieldKind {
    /// Numeric: ASCII digits `0-9` (packed two per byte on a BCD wire).
    N,
    /// Alphanumeric: `A-Z`, `a-z`, `0-9` and space (fixed `an` fields such as
    /// the RRN or the approval code are space padded in practice).
    An,
    /// Alphanumeric and special: any printable ASCII character, 0x20..=0x7E.
    Ans,
    /// Binary: any byte.
    B,
    /// Track 2/3 code set (ISO/IEC 7813): `0-9`, `:;<=>?` and the `D`
    /// separator some terminals use instead of `=`.
    Z,
}

impl FieldKind {
    /// Whether `byte` belongs to this content class.
    #[inline]
    pub fn allows(self, byte: u8) -> bool {
        match self {
            Self::N => byte.is_ascii_digit(),
            Self::An => byte.is_ascii_alphanumeric() || byte == b' ',
            Self::Ans => (0x20..=0x7E).contains(&byte),
            Self::B => true,
            Self::Z => (b'0'..=b'?').contains(&byte) || byte == b'D',
        }
    }

    /// Index of the first byte of `bytes` outside this class. The common
    /// all-valid case is checked without early exit so it vectorizes.
    #[inline]
    pub(crate) fn first_invalid(self, bytes: &[u8]) -> Option<usize> {
        let valid = match self {
            Self::B => return None,
            Self::N => bytes
                .iter()
                .fold(true, |valid, byte| valid & (byte.wrapping_sub(b'0') < 10)),
            Self::Ans => bytes
                .iter()
                .fold(true, |valid, byte| valid & (byte.wrapping_sub(0x20) < 0x5F)),
            Self::An | Self::Z => bytes
                .iter()
                .fold(true, |valid, byte| valid & self.allows(*byte)),
        };
        if valid {
            None
        } else {
            bytes.iter().position(|byte| !self.allows(*byte))
        }
    }

    /// The ISO 8583 abbreviation: `n`, `an`, `ans`, `b` or `z`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::N => "n",
            Self::An => "an",
            Self::Ans => "ans",
            Self::B => "b",
            Self::Z => "z",
        }
    }
}

/// Length rule of a data element. Units are characters: digits for `n`,
/// bytes for `b`, characters otherwise.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Length {
    /// Exactly this many units, no length prefix.
    Fixed(u16),
    /// A two-digit length prefix, then at most this many units.
    LlVar(u16),
    /// A three-digit length prefix, then at most this many units.
    LllVar(u16),
}

impl Length {
    /// The fixed length, or the maximum of a variable one.
    pub fn max(self) -> u16 {
        match self {
            Self::Fixed(max) | Self::LlVar(max) | Self::LllVar(max) => max,
        }
    }

    /// Decimal digits of the length prefix: 0 (fixed), 2 (LL) or 3 (LLL).
    pub fn prefix_digits(self) -> usize {
        match self {
            Self::Fixed(_) => 0,
            Self::LlVar(_) => 2,
            Self::LllVar(_) => 3,
        }
    }
}

/// How a length prefix, an MTI or the data of a field is written.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Encoding {
    /// ASCII characters. For `b` fields the bytes are written as two
    /// upper-case hexadecimal characters each (as pyiso8583's
    /// `default_ascii` spec does); either case is accepted on unpack.
    Ascii,
    /// Packed BCD, two digits a byte, left-padded with a zero nibble when the
    /// digit count is odd. Data: `n` fields only. LL prefixes take one byte,
    /// LLL prefixes two; the MTI takes two.
    Bcd,
    /// Raw bytes. A binary length prefix is an unsigned big-endian integer of
    /// one byte (LL) or two bytes (LLL); a binary MTI is four raw bytes.
    Binary,
}

/// How the primary and secondary bitmaps are written.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum BitmapEncoding {
    /// 8 raw bytes per bitmap.
    Binary,
    /// 16 hexadecimal ASCII characters per bitmap (upper case on pack, either
    /// case on unpack).
    Hex,
}

/// The wire format of one data element.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FieldSpec {
    pub kind: FieldKind,
    pub length: Length,
    pub length_encoding: Encoding,
    pub data_encoding: Encoding,
    pub name: &'static str,
}

impl FieldSpec {
    pub const fn new(
        kind: FieldKind,
        length: Length,
        length_encoding: Encoding,
        data_encoding: Encoding,
        name: &'static str,
    ) -> Self {
        Self {
            kind,
            length,
            length_encoding,
            data_encoding,
            name,
        }
    }

    /// Whether a `b` field is written as hexadecimal text.
    #[inline]
    pub(crate) fn is_hex_binary(&self) -> bool {
        self.kind == FieldKind::B && self.data_encoding == Encoding::Ascii
    }

    /// Bytes on the wire taken by the data (prefix excluded) of a value of
    /// `units` logical units.
    #[inline]
    pub fn data_wire_len(&self, units: usize) -> usize {
        match (self.kind, self.data_encoding) {
            (FieldKind::B, Encoding::Ascii) => units * 2,
            (_, Encoding::Bcd) => units.div_ceil(2),
            _ => units,
        }
    }

    /// Value carried by the length prefix for a value of `units` logical
    /// units: hex characters for `b` fields written as text, else `units`.
    #[inline]
    pub(crate) fn prefix_value(&self, units: usize) -> usize {
        if self.is_hex_binary() {
            units * 2
        } else {
            units
        }
    }

    /// Bytes on the wire taken by the length prefix.
    #[inline]
    pub fn prefix_wire_len(&self) -> usize {
        let digits = self.length.prefix_digits();
        if digits == 0 {
            return 0;
        }
        match self.length_encoding {
            Encoding::Ascii => digits,
            Encoding::Bcd => digits.div_ceil(2),
            Encoding::Binary => digits - 1,
        }
    }

    /// The largest value the length prefix can carry.
    pub(crate) fn prefix_capacity(&self) -> usize {
        match (self.length_encoding, self.length.prefix_digits()) {
            (_, 0) => 0,
            (Encoding::Binary, 2) => usize::from(u8::MAX),
            (Encoding::Binary, _) => usize::from(u16::MAX),
            (_, 2) => 99,
            (_, _) => 999,
        }
    }

    /// Total bytes on the wire of a fixed-length field, e.g. 16 for the MAC
    /// (field 64) of [`super::ascii_1987`], whose 8 bytes travel as hex.
    /// `None` for variable-length fields.
    pub fn wire_len(&self) -> Option<usize> {
        match self.length {
            Length::Fixed(units) => Some(self.data_wire_len(usize::from(units))),
            Length::LlVar(_) | Length::LllVar(_) => None,
        }
    }

    /// Panics when the spec cannot be encoded: BCD data on a non-`n` field,
    /// or a maximum length the prefix cannot carry.
    fn validate(&self, field: u8) {
        assert!(
            self.data_encoding != Encoding::Bcd || self.kind == FieldKind::N,
            "field {field}: BCD data encoding is only defined for n fields"
        );
        if self.length.prefix_digits() > 0 {
            assert!(
                self.prefix_value(usize::from(self.length.max())) <= self.prefix_capacity(),
                "field {field}: maximum length does not fit the length prefix"
            );
        }
    }
}

/// Number of slots in the field table: index = field number, 0 and 1 unused
/// (1 is the secondary bitmap, managed by the codec).
pub(crate) const FIELD_SLOTS: usize = 129;

/// One partner's ISO 8583 wire format: MTI encoding, bitmap encoding and a
/// spec for each data element 2..=128 it uses.
#[derive(Clone, PartialEq, Eq)]
pub struct Dialect {
    name: String,
    mti_encoding: Encoding,
    bitmap_encoding: BitmapEncoding,
    fields: Box<[Option<FieldSpec>; FIELD_SLOTS]>,
}

impl Dialect {
    /// An empty dialect; add data elements with [`Dialect::with_field`].
    pub fn new(
        name: impl Into<String>,
        mti_encoding: Encoding,
        bitmap_encoding: BitmapEncoding,
    ) -> Self {
        Self {
            name: name.into(),
            mti_encoding,
            bitmap_encoding,
            fields: Box::new([None; FIELD_SLOTS]),
        }
    }

    /// Defines data element `field` (2..=128). Panics on a field number out
    /// of range or a spec that cannot be encoded (a programming error).
    #[must_use]
    pub fn with_field(mut self, field: u8, spec: FieldSpec) -> Self {
        assert!(
            (2..=128).contains(&field),
            "field {field} is not a data element (2..=128)"
        );
        spec.validate(field);
        self.fields[usize::from(field)] = Some(spec);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn mti_encoding(&self) -> Encoding {
        self.mti_encoding
    }

    pub fn bitmap_encoding(&self) -> BitmapEncoding {
        self.bitmap_encoding
    }

    /// The spec of data element `n`, if this dialect defines it.
    #[inline]
    pub fn field(&self, n: u8) -> Option<&FieldSpec> {
        self.fields.get(usize::from(n)).and_then(Option::as_ref)
    }

    /// Packs `m` into a new buffer.
    pub fn pack(&self, m: &Message) -> Result<Vec<u8>, PackError> {
        let mut out = Vec::with_capacity(m.data_len() * 2 + 64);
        self.pack_into(m, &mut out)?;
        Ok(out)
    }

    /// Appends the packed form of `m` to `out`. On error `out` is left as it
    /// was.
    pub fn pack_into(&self, m: &Message, out: &mut Vec<u8>) -> Result<(), PackError> {
        let start = out.len();
        let result = super::codec::pack(self, m, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// Unpacks one whole message; trailing bytes are an error.
    pub fn unpack(&self, bytes: &[u8]) -> Result<Message, UnpackError> {
        super::codec::unpack(self, bytes)
    }
}

impl fmt::Debug for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let defined = self.fields.iter().filter(|spec| spec.is_some()).count();
        f.debug_struct("Dialect")
            .field("name", &self.name)
            .field("mti_encoding", &self.mti_encoding)
            .field("bitmap_encoding", &self.bitmap_encoding)
            .field("fields_defined", &defined)
            .finish()
    }
}
