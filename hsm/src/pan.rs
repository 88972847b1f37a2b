//! Card data: the [`Pan`] type (Luhn and length checked, printed only masked,
//! fingerprinted under an HSM key) and [`CardExpiry`].
//!
//! The gateway stores only [`Pan::masked`] and [`PanFingerprint`]; the full
//! PAN lives in a zeroizing buffer for the length of a request.

use std::fmt;

use chrono::NaiveDate;
use zeroize::Zeroizing;

/// Shortest PAN accepted (ISO/IEC 7812 allows 8, card schemes issue 12 and up).
pub const MIN_PAN_DIGITS: usize = 12;
/// Longest PAN ISO/IEC 7812 allows.
pub const MAX_PAN_DIGITS: usize = 19;

/// Why a string is not a PAN. Never carries the digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PanError {
    #[error("a PAN has decimal digits only")]
    NotDigits,
    #[error("a PAN has {MIN_PAN_DIGITS} to {MAX_PAN_DIGITS} digits, got {0}")]
    BadLength(usize),
    #[error("the PAN's Luhn check digit is wrong")]
    BadCheckDigit,
}

/// A primary account number. `Debug` and `Display` print the masked form.
#[derive(Clone, PartialEq, Eq)]
pub struct Pan(Zeroizing<String>);

impl Pan {
    /// Parses 12 to 19 digits (spaces and dashes between groups are dropped)
    /// with a valid Luhn check digit.
    pub fn parse(text: &str) -> Result<Self, PanError> {
        let digits: Zeroizing<String> = Zeroizing::new(
            text.chars()
                .filter(|character| *character != ' ' && *character != '-')
                .collect(),
        );
        if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(PanError::NotDigits);
        }
        if !(MIN_PAN_DIGITS..=MAX_PAN_DIGITS).contains(&digits.len()) {
            return Err(PanError::BadLength(digits.len()));
        }
        if !luhn_valid(&digits) {
            return Err(PanError::BadCheckDigit);
        }
        Ok(Self(digits))
    }

    /// First 6 and last 4 digits, the rest `*` (PCI DSS 3.4).
    #[must_use]
    pub fn masked(&self) -> String {
        let digits = self.0.as_str();
        let hidden = digits.len() - 10;
        format!(
            "{}{}{}",
            &digits[..6],
            "*".repeat(hidden),
            &digits[digits.len() - 4..]
        )
    }

    /// The issuer identification number: 8 digits for PANs of 16 or more
    /// digits (ISO/IEC 7812-1:2017), 6 otherwise.
    #[must_use]
    pub fn bin(&self) -> &str {
        let len = if self.0.len() >= 16 { 8 } else { 6 };
        &self.0[..len]
    }

    /// The last four digits.
    #[must_use]
    pub fn last4(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }

    /// Number of digits.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a parsed PAN has at least 12 digits.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The full digits. Only for building the bank message (ISO 8583 field
    /// 2) and inside the HSM: never log, store or display them.
    pub fn digits(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pan({})", self.masked())
    }
}

impl fmt::Display for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// A keyed PAN fingerprint: lowercase hex HMAC-SHA256 and the key version that made it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PanFingerprint {
    pub key_version: u32,
    pub hex: String,
}

/// Luhn (mod 10) over a string of ASCII digits, check digit last.
#[must_use]
pub fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(position, byte)| {
            let digit = u32::from(byte - b'0');
            if position % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Why a string is not a card expiry date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpiryError {
    #[error("a card expiry is four digits YYMM, got {0:?}")]
    NotYymm(String),
    #[error("month {0} is not 01 to 12")]
    BadMonth(u32),
}

/// A card expiry month (as printed YY/MM, carried as YYMM in ISO 8583 field 14).
/// Card data: `Debug` prints a mask, so a struct holding one can derive `Debug`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CardExpiry {
    year: i32,
    month: u32,
}

impl std::fmt::Debug for CardExpiry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CardExpiry(**/**)")
    }
}

impl CardExpiry {
    /// Parses `YYMM`; years are 2000 to 2099.
    pub fn parse(yymm: &str) -> Result<Self, ExpiryError> {
        if yymm.len() != 4 || !yymm.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(ExpiryError::NotYymm(yymm.to_owned()));
        }
        let year = 2000 + yymm[..2].parse::<i32>().expect("two digits");
        let month = yymm[2..].parse::<u32>().expect("two digits");
        if !(1..=12).contains(&month) {
            return Err(ExpiryError::BadMonth(month));
        }
        Ok(Self { year, month })
    }

    #[must_use]
    pub fn year(self) -> i32 {
        self.year
    }

    #[must_use]
    pub fn month(self) -> u32 {
        self.month
    }

    /// The last day the card is valid: the last day of its expiry month.
    #[must_use]
    pub fn last_valid_day(self) -> NaiveDate {
        let (next_year, next_month) = if self.month == 12 {
            (self.year + 1, 1)
        } else {
            (self.year, self.month + 1)
        };
        NaiveDate::from_ymd_opt(next_year, next_month, 1)
            .and_then(|first| first.pred_opt())
            .expect("years 2000..=2099 are in chrono's range")
    }

    /// True once `date` is past the last day of the expiry month.
    #[must_use]
    pub fn is_expired_at(self, date: NaiveDate) -> bool {
        date > self.last_valid_day()
    }

    /// `YYMM`, as carried on the wire.
    #[must_use]
    pub fn to_yymm(self) -> String {
        format!("{:02}{:02}", self.year % 100, self.month)
    }
}

impl fmt::Display for CardExpiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}/{:02}", self.month, self.year % 100)
    }
}
