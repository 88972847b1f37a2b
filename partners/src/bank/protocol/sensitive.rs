//! A wrapper for values that must never reach a log: track data, PIN blocks,
//! ICC data, wrapped keys. `Debug` prints `***`; the value is zeroized on drop.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

/// A sensitive value: readable through [`Sensitive::expose`], never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Sensitive<T: Zeroize>(Zeroizing<T>);

impl<T: Zeroize> Sensitive<T> {
    pub fn new(value: T) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The value itself, for the code that must put it on the wire or check it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}
