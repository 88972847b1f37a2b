//! Field 39: the bank's answer, and what the cashier is told.

use std::fmt;

/// The response codes the bank link uses (contract section 4), plus any other
/// two-character code a bank may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseCode {
    Approved,
    DoNotHonour,
    InvalidCard,
    FormatError,
    InsufficientFunds,
    ExpiredCard,
    IncorrectPin,
    IssuerUnavailable,
    DuplicateTransmission,
    SystemMalfunction,
    /// A code this table does not know, as received.
    Other([u8; 2]),
}

const KNOWN: [(ResponseCode, &str); 10] = [
    (ResponseCode::Approved, "00"),
    (ResponseCode::DoNotHonour, "05"),
    (ResponseCode::InvalidCard, "14"),
    (ResponseCode::FormatError, "30"),
    (ResponseCode::InsufficientFunds, "51"),
    (ResponseCode::ExpiredCard, "54"),
    (ResponseCode::IncorrectPin, "55"),
    (ResponseCode::IssuerUnavailable, "91"),
    (ResponseCode::DuplicateTransmission, "94"),
    (ResponseCode::SystemMalfunction, "96"),
];

impl ResponseCode {
    /// Parses two characters of field 39; `None` if it is not two printable ASCII characters.
    pub fn parse(code: &str) -> Option<Self> {
        let bytes: [u8; 2] = code.as_bytes().try_into().ok()?;
        if !bytes.iter().all(|byte| (0x21..0x7f).contains(byte)) {
            return None;
        }
        Some(
            KNOWN
                .iter()
                .find(|(_, text)| *text == code)
                .map_or(Self::Other(bytes), |(known, _)| *known),
        )
    }

    /// The two characters of field 39.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Other(bytes) => std::str::from_utf8(bytes).unwrap_or("??"),
            known => KNOWN
                .iter()
                .find(|(code, _)| code == known)
                .map_or("??", |(_, text)| text),
        }
    }

    pub fn is_approved(self) -> bool {
        self == Self::Approved
    }

    /// What the cashier sees, in words a customer can be told.
    pub fn cashier_text(self) -> &'static str {
        match self {
            Self::Approved => "Approved",
            Self::DoNotHonour => "Declined by the card issuer",
            Self::InvalidCard => "Invalid card number",
            Self::FormatError => "Declined: message format error, please retry",
            Self::InsufficientFunds => "Declined: insufficient funds",
            Self::ExpiredCard => "Declined: card expired",
            Self::IncorrectPin => "Declined: incorrect PIN",
            Self::IssuerUnavailable => "Card issuer unavailable, please try again later",
            Self::DuplicateTransmission => "Declined: duplicate transaction",
            Self::SystemMalfunction => "Bank system error, please try again later",
            Self::Other(_) => "Declined by the bank",
        }
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_codes_round_trip() {
        for code in [
            "00", "05", "14", "30", "51", "54", "55", "91", "94", "96", "Q1",
        ] {
            assert_eq!(ResponseCode::parse(code).unwrap().as_str(), code);
        }
        assert_eq!(
            ResponseCode::parse("51"),
            Some(ResponseCode::InsufficientFunds)
        );
        assert_eq!(ResponseCode::parse("7"), None);
        assert!(ResponseCode::parse("00").unwrap().is_approved());
        assert_eq!(
            ResponseCode::parse("X9").unwrap().cashier_text(),
            "Declined by the bank"
        );
    }
}
