//! The in-memory message: an MTI plus data elements 2..=128.
//!
//! Layout, chosen so that unpack makes two allocations whatever the field
//! count: a 128-bit presence bitmap (bit for field `f` at position `128 - f`,
//! so its big-endian bytes are the ISO bitmap), one contiguous value buffer,
//! and one `(start, len)` slot per present field in ascending field order.
//! The slot of field `f` is found by counting present fields below `f`.

use std::fmt;

use super::mti::Mti;

/// Data elements whose values never appear in `Debug` output: PAN, expiry,
/// track 2, track 1, PIN block, ICC data.
pub const SENSITIVE_FIELDS: [u8; 6] = [2, 14, 35, 45, 52, 55];

/// Garbage (bytes of replaced or removed values) tolerated in the value buffer
/// before `set` compacts it; small enough to bound memory of a message edited
/// in a loop, large enough that ordinary edits never copy.
const COMPACT_THRESHOLD_BYTES: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) start: u32,
    pub(crate) len: u32,
}

/// A message: MTI plus data elements 2..=128 (1 is the secondary bitmap,
/// managed by the codec: set when any field 65..=128 is present).
///
/// Values are the field's *logical* content: ASCII digits for n fields (even
/// when the wire is BCD), ASCII text for an/ans/z, raw bytes for b fields.
#[derive(Clone, Default)]
pub struct Message {
    mti: Mti,
    present: u128,
    slots: Vec<Slot>,
    data: Vec<u8>,
    garbage: usize,
}

#[inline]
pub(crate) fn field_bit(field: u8) -> u128 {
    1u128 << (128 - u32::from(field))
}

fn assert_data_element(field: u8) {
    assert!(
        (2..=128).contains(&field),
        "field {field} is not a data element (2..=128)"
    );
}

impl Message {
    pub fn new(mti: Mti) -> Self {
        Self {
            mti,
            ..Self::default()
        }
    }

    /// A message being unpacked from `wire`: the value buffer starts as a
    /// copy of the whole input, so values that travel as they are (all text
    /// fields) are slots into it and cost no copy of their own; decoded values
    /// (hex, BCD) are appended after it. Until referenced, the input is
    /// counted as garbage.
    pub(crate) fn from_wire(mti: Mti, fields: usize, wire: &[u8]) -> Self {
        Self {
            mti,
            present: 0,
            slots: Vec::with_capacity(fields),
            data: wire.to_vec(),
            garbage: wire.len(),
        }
    }

    pub fn mti(&self) -> Mti {
        self.mti
    }

    pub fn set_mti(&mut self, mti: Mti) {
        self.mti = mti;
    }

    /// Sets data element `field`, replacing any previous value. Panics if
    /// `field` is not in 2..=128.
    pub fn set(&mut self, field: u8, value: impl Into<Vec<u8>>) -> &mut Self {
        let value: Vec<u8> = value.into();
        self.set_bytes(field, &value)
    }

    /// Sets data element `field` to the bytes of `value`.
    pub fn set_str(&mut self, field: u8, value: &str) -> &mut Self {
        self.set_bytes(field, value.as_bytes())
    }

    /// Sets data element `field` from a slice, without an intermediate `Vec`.
    pub fn set_bytes(&mut self, field: u8, value: &[u8]) -> &mut Self {
        assert_data_element(field);
        let index = self.rank(field);
        if self.present & field_bit(field) == 0 {
            let start = self.append(value);
            self.slots.insert(index, start);
            self.present |= field_bit(field);
        } else {
            let old = self.slots[index];
            if value.len() <= old.len as usize {
                let begin = old.start as usize;
                self.data[begin..begin + value.len()].copy_from_slice(value);
                self.garbage += old.len as usize - value.len();
                self.slots[index].len = u32_len(value.len());
            } else {
                self.garbage += old.len as usize;
                self.slots[index] = self.append(value);
            }
        }
        self.compact_if_wasteful();
        self
    }

    /// Adds a value of a message being unpacked, whose fields arrive in
    /// ascending order: `len` bytes at `start` of the value buffer, either in
    /// the copied input (`in_wire`) or appended after it.
    #[inline]
    pub(crate) fn push_unpacked(&mut self, field: u8, start: usize, len: usize, in_wire: bool) {
        debug_assert!(
            self.present & (field_bit(field) - 1) == 0,
            "fields out of order"
        );
        self.present |= field_bit(field);
        self.slots.push(Slot {
            start: u32_len(start),
            len: u32_len(len),
        });
        if in_wire {
            self.garbage -= len;
        }
    }

    /// The value buffer of a message being unpacked.
    #[inline]
    pub(crate) fn data_mut(&mut self) -> &mut Vec<u8> {
        &mut self.data
    }

    pub fn get(&self, field: u8) -> Option<&[u8]> {
        if !(2..=128).contains(&field) || self.present & field_bit(field) == 0 {
            return None;
        }
        Some(self.slot_value(self.slots[self.rank(field)]))
    }

    /// The value as text; `None` if absent or not UTF-8.
    pub fn get_str(&self, field: u8) -> Option<&str> {
        self.get(field)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    pub fn has(&self, field: u8) -> bool {
        (2..=128).contains(&field) && self.present & field_bit(field) != 0
    }

    pub fn remove(&mut self, field: u8) -> Option<Vec<u8>> {
        if !self.has(field) {
            return None;
        }
        let slot = self.slots.remove(self.rank(field));
        self.present &= !field_bit(field);
        let value = self.slot_value(slot).to_vec();
        self.garbage += slot.len as usize;
        self.compact_if_wasteful();
        Some(value)
    }

    /// Present data elements in ascending field order.
    pub fn fields(&self) -> impl Iterator<Item = (u8, &[u8])> {
        PresentFields::new(self.present)
            .zip(self.slots.iter())
            .map(|(field, slot)| (field, self.slot_value(*slot)))
    }

    /// Number of present data elements.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no data element is present.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The presence bitmap: bit `128 - f` set when field `f` is present
    /// (field 1 never is).
    pub(crate) fn present(&self) -> u128 {
        self.present
    }

    /// Bytes held by values (without garbage), a hint for buffer sizes.
    pub(crate) fn data_len(&self) -> usize {
        self.data.len() - self.garbage
    }

    /// Present fields below `field`: the index of its slot.
    #[inline]
    fn rank(&self, field: u8) -> usize {
        // Fields below `field` sit at bit positions above 128 - field.
        (self.present >> (129 - u32::from(field))).count_ones() as usize
    }

    #[inline]
    fn slot_value(&self, slot: Slot) -> &[u8] {
        let start = slot.start as usize;
        &self.data[start..start + slot.len as usize]
    }

    fn append(&mut self, value: &[u8]) -> Slot {
        let start = self.data.len();
        self.data.extend_from_slice(value);
        Slot {
            start: u32_len(start),
            len: u32_len(value.len()),
        }
    }

    fn compact_if_wasteful(&mut self) {
        if self.garbage <= COMPACT_THRESHOLD_BYTES || self.garbage * 2 <= self.data.len() {
            return;
        }
        let mut data = Vec::with_capacity(self.data.len() - self.garbage);
        for slot in &mut self.slots {
            let start = slot.start as usize;
            let new_start = data.len();
            data.extend_from_slice(&self.data[start..start + slot.len as usize]);
            slot.start = u32_len(new_start);
        }
        self.data = data;
        self.garbage = 0;
    }
}

/// Offsets fit in `u32`: a message holds at most 127 values, and `set` is
/// never fed gigabytes; unpack input is capped far below (see codec).
fn u32_len(len: usize) -> u32 {
    u32::try_from(len).expect("ISO 8583 message data over 4 GiB")
}

/// Iterates the field numbers of a presence bitmap in ascending order, one
/// 64-bit half at a time (cheaper than 128-bit shifts).
struct PresentFields {
    /// Fields 1..=64, field 1 in the top bit.
    primary: u64,
    /// Fields 65..=128, field 65 in the top bit.
    secondary: u64,
}

impl PresentFields {
    fn new(bitmap: u128) -> Self {
        // Truncation is the point: the two halves of the bitmap.
        #[allow(clippy::cast_possible_truncation)]
        Self {
            primary: (bitmap >> 64) as u64,
            secondary: bitmap as u64,
        }
    }
}

impl Iterator for PresentFields {
    type Item = u8;

    #[inline]
    fn next(&mut self) -> Option<u8> {
        let (half, base) = if self.primary != 0 {
            (&mut self.primary, 1)
        } else if self.secondary != 0 {
            (&mut self.secondary, 65)
        } else {
            return None;
        };
        let index = half.leading_zeros();
        *half ^= (1u64 << 63) >> index;
        // index < 64, so the sum is at most 128.
        Some(base + u8::try_from(index).unwrap_or(0))
    }
}

/// Field numbers set in a bitmap (bit `128 - f` for field `f`), ascending.
pub(crate) fn present_fields(bitmap: u128) -> impl Iterator<Item = u8> {
    PresentFields::new(bitmap)
}

impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        self.mti == other.mti
            && self.present == other.present
            && self
                .fields()
                .zip(other.fields())
                .all(|((_, left), (_, right))| left == right)
    }
}

impl Eq for Message {}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        map.entry(&"mti", &format_args!("{}", self.mti.as_str()));
        for (field, value) in self.fields() {
            map.entry(&field, &DebugValue { field, value });
        }
        map.finish()
    }
}

/// One value as `Debug` shows it: sensitive fields masked or redacted,
/// printable text quoted, anything else as hex.
struct DebugValue<'a> {
    field: u8,
    value: &'a [u8],
}

impl fmt::Debug for DebugValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.value;
        if self.field == 2 && value.len() >= 12 && value.iter().all(u8::is_ascii_digit) {
            // First 6 and last 4 digits, as PCI DSS 3.4 allows.
            let hidden = "*".repeat(value.len() - 10);
            let head = String::from_utf8_lossy(&value[..6]);
            let tail = String::from_utf8_lossy(&value[value.len() - 4..]);
            return write!(f, "{head}{hidden}{tail}");
        }
        if SENSITIVE_FIELDS.contains(&self.field) {
            return write!(f, "<redacted {} bytes>", value.len());
        }
        match std::str::from_utf8(value) {
            Ok(text) if text.bytes().all(|byte| (0x20..=0x7E).contains(&byte)) => {
                write!(f, "{text:?}")
            }
            _ => write!(f, "0x{}", hex::encode_upper(value)),
        }
    }
}
