//! The error of parsing a closed set of names (a status, a kind) from text.

use std::fmt;

/// A name outside a closed set: `what` the set is, and the text found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownValue {
    pub what: &'static str,
    pub found: String,
}

impl UnknownValue {
    pub fn new(what: &'static str, found: &str) -> Self {
        Self {
            what,
            found: found.to_owned(),
        }
    }
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {:?}", self.what, self.found)
    }
}

impl std::error::Error for UnknownValue {}
