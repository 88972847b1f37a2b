//! Pack and unpack errors. Their reasons speak of lengths, positions and
//! content classes only, never of field values, so they are safe to log even
//! for the PAN, track data and PIN block.

use std::fmt;

/// A message could not be packed. `field` 0 means the MTI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackError {
    pub field: u8,
    pub reason: String,
}

impl PackError {
    pub(crate) fn new(field: u8, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

impl std::error::Error for PackError {}

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field == 0 {
            write!(f, "MTI: {}", self.reason)
        } else {
            write!(f, "field {}: {}", self.field, self.reason)
        }
    }
}

/// Bytes could not be unpacked. `field` is `None` for the MTI, the bitmaps
/// and bytes trailing the last field; `offset` is the byte offset in the
/// input where the problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackError {
    pub field: Option<u8>,
    pub offset: usize,
    pub reason: String,
}

impl UnpackError {
    pub(crate) fn new(field: Option<u8>, offset: usize, reason: impl Into<String>) -> Self {
        Self {
            field,
            offset,
            reason: reason.into(),
        }
    }
}

impl std::error::Error for UnpackError {}

impl fmt::Display for UnpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(field) => write!(
                f,
                "field {field} at offset {}: {}",
                self.offset, self.reason
            ),
            None => write!(f, "header at offset {}: {}", self.offset, self.reason),
        }
    }
}
