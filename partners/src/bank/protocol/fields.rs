//! Field formats shared by every message on the bank link.

use chrono::{DateTime, NaiveDateTime, Utc};

use super::ProtocolError;
use crate::iso8583::{Message, Mti};

/// Field 4 is 12 digits of minor units.
pub const MAX_AMOUNT_MINOR: i64 = 999_999_999_999;
/// Field 11: 6 digits.
pub const STAN_DIGITS: usize = 6;
/// Field 37: 12 characters.
pub const RRN_LEN: usize = 12;
/// Field 32 is LLVAR n; the contract's field 90 pads it to 11 digits, so 11 is the bound.
pub const MAX_ACQUIRER_ID_DIGITS: usize = 11;
/// Field 41: 8 characters.
pub const TERMINAL_ID_LEN: usize = 8;
/// Field 42: 15 characters.
pub const MERCHANT_ID_LEN: usize = 15;
/// Field 90: original MTI 4 + STAN 6 + date-time 10 + acquirer 11 + forwarder 11.
pub const ORIGINAL_DATA_DIGITS: usize = 42;

/// The currencies posgate settles with its banks: ISO 4217 alpha and numeric codes.
const CURRENCIES: [(&str, &str); 3] = [("TWD", "901"), ("JPY", "392"), ("USD", "840")];

/// ISO 4217 numeric code (field 49) of an alpha code, e.g. "TWD" -> "901".
pub fn currency_numeric(alpha: &str) -> Option<&'static str> {
    CURRENCIES
        .iter()
        .find(|(code, _)| code.eq_ignore_ascii_case(alpha))
        .map(|(_, numeric)| *numeric)
}

/// ISO 4217 alpha code of a numeric one, e.g. "392" -> "JPY".
pub fn currency_alpha(numeric: &str) -> Option<&'static str> {
    CURRENCIES
        .iter()
        .find(|(_, code)| *code == numeric)
        .map(|(alpha, _)| *alpha)
}

/// Field 7 (and the date-time inside field 90): `MMDDhhmmss` in UTC.
pub fn transmission_datetime(at: DateTime<Utc>) -> String {
    at.format("%m%d%H%M%S").to_string()
}

/// Fields 12 (`hhmmss`) and 13 (`MMDD`) from the terminal's local time.
pub fn local_time_and_date(local: NaiveDateTime) -> (String, String) {
    (
        local.format("%H%M%S").to_string(),
        local.format("%m%d").to_string(),
    )
}

/// Checks that `value` is exactly `len` ASCII digits.
pub(crate) fn check_digits(field: u8, value: &str, len: usize) -> Result<(), ProtocolError> {
    if value.len() == len && value.bytes().all(|byte| byte.is_ascii_digit()) {
        Ok(())
    } else {
        Err(ProtocolError::bad(field, format!("must be {len} digits")))
    }
}

/// Checks that `value` is 1 to `max` ASCII digits.
pub(crate) fn check_digits_up_to(field: u8, value: &str, max: usize) -> Result<(), ProtocolError> {
    if (1..=max).contains(&value.len()) && value.bytes().all(|byte| byte.is_ascii_digit()) {
        Ok(())
    } else {
        Err(ProtocolError::bad(
            field,
            format!("must be 1 to {max} digits"),
        ))
    }
}

/// Checks that `value` is exactly `len` printable ASCII characters.
pub(crate) fn check_text(field: u8, value: &str, len: usize) -> Result<(), ProtocolError> {
    if value.len() == len && value.bytes().all(|byte| (0x20..0x7f).contains(&byte)) {
        Ok(())
    } else {
        Err(ProtocolError::bad(
            field,
            format!("must be {len} printable characters"),
        ))
    }
}

/// Checks that `value` is exactly `len` letters, digits or spaces (`an`).
pub(crate) fn check_alphanumeric(field: u8, value: &str, len: usize) -> Result<(), ProtocolError> {
    if value.len() == len
        && value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b' ')
    {
        Ok(())
    } else {
        Err(ProtocolError::bad(
            field,
            format!("must be {len} letters, digits or spaces"),
        ))
    }
}

/// Field 4 from minor units.
pub(crate) fn format_amount(amount_minor: i64) -> Result<String, ProtocolError> {
    if (0..=MAX_AMOUNT_MINOR).contains(&amount_minor) {
        Ok(format!("{amount_minor:012}"))
    } else {
        Err(ProtocolError::bad(
            4,
            "amount must be 0 to 999999999999 minor units",
        ))
    }
}

/// Minor units from field 4.
pub(crate) fn parse_amount(message: &Message) -> Result<i64, ProtocolError> {
    let text = required_str(message, 4)?;
    check_digits(4, text, 12)?;
    text.parse()
        .map_err(|_| ProtocolError::bad(4, "not a number"))
}

/// A field that must be present and UTF-8.
pub(crate) fn required_str(message: &Message, field: u8) -> Result<&str, ProtocolError> {
    match message.get(field) {
        None => Err(ProtocolError::MissingField(field)),
        Some(_) => message
            .get_str(field)
            .ok_or_else(|| ProtocolError::bad(field, "not text")),
    }
}

/// A field that may be absent but must be UTF-8 when present.
pub(crate) fn optional_str(message: &Message, field: u8) -> Result<Option<&str>, ProtocolError> {
    match message.get(field) {
        None => Ok(None),
        Some(_) => message
            .get_str(field)
            .map(Some)
            .ok_or_else(|| ProtocolError::bad(field, "not text")),
    }
}

/// The identifiers every request carries, checked together.
pub(crate) struct Identifiers<'a> {
    pub stan: &'a str,
    pub rrn: &'a str,
    pub terminal_id: &'a str,
    pub merchant_id: &'a str,
    pub acquirer_id: &'a str,
    pub currency_numeric: &'a str,
}

impl Identifiers<'_> {
    /// Checks and sets fields 11, 32, 37, 41, 42 and 49.
    pub(crate) fn apply(&self, message: &mut Message) -> Result<(), ProtocolError> {
        check_digits(11, self.stan, STAN_DIGITS)?;
        check_digits_up_to(32, self.acquirer_id, MAX_ACQUIRER_ID_DIGITS)?;
        check_alphanumeric(37, self.rrn, RRN_LEN)?;
        check_text(41, self.terminal_id, TERMINAL_ID_LEN)?;
        check_text(42, self.merchant_id, MERCHANT_ID_LEN)?;
        check_digits(49, self.currency_numeric, 3)?;
        message
            .set_str(11, self.stan)
            .set_str(32, self.acquirer_id)
            .set_str(37, self.rrn)
            .set_str(41, self.terminal_id)
            .set_str(42, self.merchant_id)
            .set_str(49, self.currency_numeric);
        Ok(())
    }
}

/// Field 90: the original message a reversal or advice refers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OriginalData {
    /// The original request's MTI (0100 or 0200).
    pub mti: Mti,
    /// The original field 11.
    pub stan: String,
    /// The original field 7, `MMDDhhmmss`.
    pub transmitted_at: String,
    /// The acquiring institution id, 11 digits zero-padded on the left.
    pub acquirer_id: String,
}

impl OriginalData {
    pub fn new(
        mti: Mti,
        stan: &str,
        transmitted_at: DateTime<Utc>,
        acquirer_id: &str,
    ) -> Result<Self, ProtocolError> {
        check_digits(90, stan, STAN_DIGITS)?;
        check_digits_up_to(90, acquirer_id, MAX_ACQUIRER_ID_DIGITS)?;
        Ok(Self {
            mti,
            stan: stan.to_owned(),
            transmitted_at: transmission_datetime(transmitted_at),
            acquirer_id: format!("{acquirer_id:0>11}"),
        })
    }

    /// The 42 digits of field 90 (forwarding institution: 11 zeros).
    pub fn format(&self) -> String {
        format!(
            "{}{}{}{}{}",
            self.mti.as_str(),
            self.stan,
            self.transmitted_at,
            self.acquirer_id,
            "0".repeat(11)
        )
    }

    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        check_digits(90, text, ORIGINAL_DATA_DIGITS)?;
        let bytes = text.as_bytes();
        let mti = Mti::new([bytes[0], bytes[1], bytes[2], bytes[3]]);
        Ok(Self {
            mti,
            stan: text[4..10].to_owned(),
            transmitted_at: text[10..20].to_owned(),
            acquirer_id: text[20..31].to_owned(),
        })
    }

    pub(crate) fn from_message(message: &Message) -> Result<Self, ProtocolError> {
        Self::parse(required_str(message, 90)?)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn original_data_round_trips_in_42_digits() {
        let at = Utc.with_ymd_and_hms(2026, 3, 7, 9, 5, 1).unwrap();
        let original = OriginalData::new(Mti::new(*b"0200"), "000123", at, "4711").unwrap();
        let text = original.format();
        assert_eq!(text, "020000012303070905010000000471100000000000");
        assert_eq!(text.len(), ORIGINAL_DATA_DIGITS);
        assert_eq!(OriginalData::parse(&text).unwrap(), original);
    }

    #[test]
    fn currencies_map_both_ways() {
        assert_eq!(currency_numeric("twd"), Some("901"));
        assert_eq!(currency_alpha("392"), Some("JPY"));
        assert_eq!(currency_numeric("EUR"), None);
    }
}
