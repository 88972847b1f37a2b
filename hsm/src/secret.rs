//! [`Secret`], the one masking type for card data and key material: PANs
//! in transit, track 2, PIN blocks, security codes, chip data, member
//! barcodes, clear keys and PINs.
//!
//! `Debug` and `Display` print `***`, so a secret inside a struct with a
//! derived `Debug` cannot reach a log by accident. The value is zeroized on
//! drop. It deserializes transparently (a config field reads straight into
//! it), but there is no `Serialize`: the clear value leaves only through
//! [`Secret::expose`], at the few places that must put it on the wire, give
//! it to the HSM or fingerprint it.

use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Deserializer};
use zeroize::{Zeroize, Zeroizing};

/// A value that must never be printed. Zeroized on drop.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T: Zeroize>(Zeroizing<T>);

impl<T: Zeroize> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The clear value, for the code that must send, check or fingerprint it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// The clear value, mutable (to fill a buffer in place).
    pub fn expose_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Zeroize> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self::new(value)
    }
}

impl<T: Zeroize> From<Zeroizing<T>> for Secret<T> {
    fn from(value: Zeroizing<T>) -> Self {
        Self(value)
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<T: Zeroize> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Hashes the value (consistent with `PartialEq`), so a secret can key a
/// map (a member barcode naming a wallet) without a clear copy.
impl<T: Zeroize + Hash> Hash for Secret<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.expose().hash(state);
    }
}

/// Transparent: reads what `T` reads (a config's key or PIN, as written).
impl<'de, T: Zeroize + Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Self::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Neither `Debug` (plain or pretty) nor `Display` shows the value.
    #[test]
    fn formatting_prints_only_the_mask() {
        let secret = Secret::new("4111111111111111".to_owned());
        for text in [
            format!("{secret:?}"),
            format!("{secret:#?}"),
            format!("{secret}"),
        ] {
            assert_eq!(text, "***");
        }
        assert_eq!(secret.expose(), "4111111111111111");
    }

    /// A secret reads as the bare value, and `None` stays absent.
    #[test]
    fn deserializes_transparently() {
        #[derive(Deserialize)]
        struct Config {
            key: Secret<String>,
            pin: Option<Secret<String>>,
        }
        let config: Config = serde_json::from_str(r#"{"key":"0123","pin":null}"#).unwrap();
        assert_eq!(config.key.expose(), "0123");
        assert!(config.pin.is_none());
    }
}
