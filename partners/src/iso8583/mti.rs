//! The message type indicator.

use std::fmt;

/// Message type indicator, 4 ASCII digits, e.g. `Mti::new(*b"0200")`:
/// version, class, function, origin.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mti(pub [u8; 4]);

/// Index of the message function digit (0 request, 1 response, 2 advice, ...).
const FUNCTION_DIGIT: usize = 2;
/// Index of the origin digit (0 acquirer, 1 acquirer repeat, ...).
const ORIGIN_DIGIT: usize = 3;

impl Mti {
    pub const fn new(d: [u8; 4]) -> Self {
        Self(d)
    }

    /// The four digits as text; `"????"` if they are not UTF-8 (an `Mti`
    /// built by hand from arbitrary bytes, which `pack` would refuse).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("????")
    }

    /// Whether all four bytes are ASCII digits.
    pub fn is_valid(&self) -> bool {
        self.0.iter().all(u8::is_ascii_digit)
    }

    /// The response to this request: 0200 -> 0210, 0400 -> 0410,
    /// 0401 (repeat) -> 0410, 0220 -> 0230, 0800 -> 0810. A response, or an
    /// MTI that is not four digits, is returned unchanged.
    #[must_use]
    pub fn response(self) -> Mti {
        if !self.is_valid() || self.is_response() {
            return self;
        }
        let mut digits = self.0;
        // ASCII digits keep their parity in bit 0: an even function digit
        // becomes the next odd one, a repeat origin becomes the original.
        digits[FUNCTION_DIGIT] |= 1;
        digits[ORIGIN_DIGIT] &= !1;
        Mti(digits)
    }

    /// Whether the function digit is odd (response, advice response, ...).
    pub fn is_response(self) -> bool {
        self.0[FUNCTION_DIGIT].is_ascii_digit() && self.0[FUNCTION_DIGIT] & 1 == 1
    }
}

impl Default for Mti {
    fn default() -> Self {
        Self(*b"0000")
    }
}

impl fmt::Debug for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mti({})", self.as_str())
    }
}

impl fmt::Display for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
