//! 0100/0110 authorization and 0200/0210 sale and refund, with the loyalty
//! data co-brand banks add to field 48 of the response.

use chrono::{DateTime, NaiveDateTime, Utc};
use posgate_hsm::{CardExpiry, Pan, Secret};

use super::fields::{
    Identifiers, OriginalData, check_alphanumeric, check_digits, format_amount,
    local_time_and_date, optional_str, parse_amount, required_str, transmission_datetime,
};
use super::{MTI_AUTHORIZATION, MTI_FINANCIAL, ProtocolError, ResponseCode, response_mti};
use crate::iso8583::{Message, Mti};

/// Field 35 is LLVAR z of at most 37 characters.
pub const MAX_TRACK2_LEN: usize = 37;
/// Field 52 is b 8.
pub const PIN_BLOCK_BYTES: usize = 8;
/// Field 55 is LLLVAR b; `ascii_1987` (like pyiso8583) carries up to 255 bytes as 510 hex characters.
pub const MAX_ICC_DATA_BYTES: usize = 255;
/// Field 25: a normal presentment.
pub const POS_CONDITION_NORMAL: &str = "00";
/// Field 48 of an 0100/0200 that carries the card security code (CVV2,
/// CVC2, CID): `CV2`, presence indicator `1` (value present), then the 3 or
/// 4 digits left-justified in 4 positions, space-padded: `CV21123 `.
pub const SECURITY_CODE_TAG: &str = "CV21";
/// The length of field 48 carrying a security code.
const SECURITY_CODE_FIELD_LEN: usize = 8;

/// What a financial request asks the bank to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinancialKind {
    /// 0100, processing code 000000: hold the amount, capture later with a 0220.
    Authorization,
    /// 0200, processing code 000000.
    Sale,
    /// 0200, processing code 200000.
    Refund,
}

impl FinancialKind {
    pub fn mti(self) -> Mti {
        match self {
            Self::Authorization => MTI_AUTHORIZATION,
            Self::Sale | Self::Refund => MTI_FINANCIAL,
        }
    }

    /// Field 3.
    pub fn processing_code(self) -> &'static str {
        match self {
            Self::Authorization | Self::Sale => "000000",
            Self::Refund => "200000",
        }
    }

    /// The kind of a request from its MTI and field 3 (only the transaction
    /// type, the first two digits, counts).
    pub fn from_parts(mti: Mti, processing_code: &str) -> Result<Self, ProtocolError> {
        check_digits(3, processing_code, 6)?;
        match (mti, &processing_code[..2]) {
            (MTI_AUTHORIZATION, "00") => Ok(Self::Authorization),
            (MTI_FINANCIAL, "00") => Ok(Self::Sale),
            (MTI_FINANCIAL, "20") => Ok(Self::Refund),
            (MTI_AUTHORIZATION | MTI_FINANCIAL, _) => Err(ProtocolError::bad(
                3,
                "transaction type must be 00 (purchase) or 20 (refund, 0200 only)",
            )),
            _ => Err(ProtocolError::UnexpectedMti {
                mti: mti.as_str().to_owned(),
                expected: "0100 or 0200",
            }),
        }
    }
}

/// A request to build: everything the gateway knows about a card payment.
/// Fields 7, 11 and 37 are chosen by the caller, who records them first.
/// Card data is borrowed as [`Pan`] and [`Secret`], so `Debug` prints the
/// PAN masked and the rest as `***`.
#[derive(Debug, Clone)]
pub struct FinancialRequest<'a> {
    pub kind: FinancialKind,
    /// Field 2. Required for authorizations and sales; a refund may go
    /// without it and name the refunded payment in `original` instead
    /// (posgate keeps no PANs).
    pub pan: Option<&'a Pan>,
    pub expiry: Option<CardExpiry>,
    /// Track 2 equivalent data (digits, `=` or `D` as separator).
    pub track2: Option<&'a Secret<String>>,
    pub amount_minor: i64,
    /// ISO 4217 numeric, see [`super::currency_numeric`].
    pub currency_numeric: &'a str,
    pub stan: &'a str,
    pub rrn: &'a str,
    pub transmitted_at: DateTime<Utc>,
    /// The terminal's local date and time (fields 12 and 13).
    pub local: NaiveDateTime,
    /// Field 22, 3 digits (012 keyed, 051 chip, 071 contactless, 021 magstripe, 801 fallback).
    pub entry_mode: &'a str,
    /// ISO 9564 format 0 under the zone PIN key.
    pub pin_block: Option<&'a Secret<Vec<u8>>>,
    pub icc_data: Option<&'a Secret<Vec<u8>>>,
    /// The card security code (3 or 4 digits) of a keyed card, in field 48
    /// (see [`SECURITY_CODE_TAG`]).
    pub security_code: Option<&'a Secret<String>>,
    pub terminal_id: &'a str,
    pub merchant_id: &'a str,
    pub acquirer_id: &'a str,
    /// Field 90: for a refund, the payment it refunds.
    pub original: Option<OriginalData>,
}

impl FinancialRequest<'_> {
    /// The 0100 or 0200 message, without MAC (the link adds it).
    pub fn to_message(&self) -> Result<Message, ProtocolError> {
        let mut message = Message::new(self.kind.mti());
        match (self.pan, &self.original) {
            (Some(pan), _) => {
                message.set_str(2, pan.digits());
            }
            (None, Some(_)) if self.kind == FinancialKind::Refund => {}
            (None, _) => return Err(ProtocolError::MissingField(2)),
        }
        if let Some(original) = &self.original {
            message.set_str(90, &original.format());
        }
        message.set_str(3, self.kind.processing_code());
        message.set_str(4, &format_amount(self.amount_minor)?);
        message.set_str(7, &transmission_datetime(self.transmitted_at));
        let (time, date) = local_time_and_date(self.local);
        message.set_str(12, &time).set_str(13, &date);
        if let Some(expiry) = self.expiry {
            message.set_str(14, &expiry.to_yymm());
        }
        check_digits(22, self.entry_mode, 3)?;
        message.set_str(22, self.entry_mode);
        message.set_str(25, POS_CONDITION_NORMAL);
        if let Some(track2) = self.track2 {
            check_track2(track2.expose())?;
            message.set_str(35, track2.expose());
        }
        if let Some(pin_block) = self.pin_block.map(Secret::expose) {
            if pin_block.len() != PIN_BLOCK_BYTES {
                return Err(ProtocolError::bad(52, "PIN block must be 8 bytes"));
            }
            message.set(52, pin_block.as_slice());
        }
        if let Some(icc_data) = self.icc_data.map(Secret::expose) {
            if icc_data.is_empty() || icc_data.len() > MAX_ICC_DATA_BYTES {
                return Err(ProtocolError::bad(55, "ICC data must be 1 to 255 bytes"));
            }
            message.set(55, icc_data.as_slice());
        }
        if let Some(code) = self.security_code {
            message.set_str(48, &security_code_field(code.expose())?);
        }
        Identifiers {
            stan: self.stan,
            rrn: self.rrn,
            terminal_id: self.terminal_id,
            merchant_id: self.merchant_id,
            acquirer_id: self.acquirer_id,
            currency_numeric: self.currency_numeric,
        }
        .apply(&mut message)?;
        Ok(message)
    }
}

/// Field 48 carrying a security code. The error never includes the code.
fn security_code_field(code: &str) -> Result<String, ProtocolError> {
    if !(3..=4).contains(&code.len()) || !code.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(ProtocolError::bad(
            48,
            "a card security code is 3 or 4 digits",
        ));
    }
    Ok(format!("{SECURITY_CODE_TAG}{code:<4}"))
}

/// The security code in field 48 of a request, if it carries one.
fn parse_security_code(field: &str) -> Result<Secret<String>, ProtocolError> {
    let bad = || {
        ProtocolError::bad(
            48,
            "security code must be CV21 and 3 or 4 digits, space-padded to 4",
        )
    };
    if field.len() != SECURITY_CODE_FIELD_LEN || !field.starts_with(SECURITY_CODE_TAG) {
        return Err(bad());
    }
    let code = field[SECURITY_CODE_TAG.len()..].trim_end_matches(' ');
    if !(3..=4).contains(&code.len()) || !code.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(bad());
    }
    Ok(Secret::new(code.to_owned()))
}

fn check_track2(track2: &str) -> Result<(), ProtocolError> {
    let allowed = track2
        .bytes()
        .all(|byte| byte.is_ascii_digit() || byte == b'=' || byte == b'D');
    if allowed && (1..=MAX_TRACK2_LEN).contains(&track2.len()) {
        Ok(())
    } else {
        Err(ProtocolError::bad(
            35,
            "track 2 must be 1 to 37 digits with '=' or 'D' as separator",
        ))
    }
}

/// A 0100 or 0200 as the bank receives it. Secret parts print as `***`
/// (the PAN masked).
#[derive(Debug, Clone)]
pub struct IncomingFinancialRequest {
    pub kind: FinancialKind,
    /// Absent only on a refund by reference (see `original`).
    pub pan: Option<Pan>,
    /// Field 90 of a refund by reference.
    pub original: Option<OriginalData>,
    pub expiry: Option<CardExpiry>,
    pub track2: Option<Secret<String>>,
    pub amount_minor: i64,
    pub currency_numeric: String,
    pub stan: String,
    pub rrn: String,
    /// Field 7, `MMDDhhmmss`.
    pub transmitted_at: String,
    /// Field 12, `hhmmss`.
    pub local_time: String,
    /// Field 13, `MMDD`.
    pub local_date: String,
    pub entry_mode: String,
    pub pin_block: Option<Secret<Vec<u8>>>,
    pub icc_data: Option<Secret<Vec<u8>>>,
    /// Field 48's card security code, when sent.
    pub security_code: Option<Secret<String>>,
    pub terminal_id: String,
    pub merchant_id: String,
    pub acquirer_id: String,
}

impl IncomingFinancialRequest {
    pub fn parse(message: &Message) -> Result<Self, ProtocolError> {
        let kind = FinancialKind::from_parts(message.mti(), required_str(message, 3)?)?;
        let original = optional_str(message, 90)?
            .map(OriginalData::parse)
            .transpose()?;
        let pan = match optional_str(message, 2)? {
            Some(pan) => {
                Some(Pan::parse(pan).map_err(|error| ProtocolError::bad(2, error.to_string()))?)
            }
            None if kind == FinancialKind::Refund && original.is_some() => None,
            None => return Err(ProtocolError::MissingField(2)),
        };
        let expiry = optional_str(message, 14)?
            .map(CardExpiry::parse)
            .transpose()
            .map_err(|_| ProtocolError::bad(14, "expiry must be YYMM"))?;
        let track2 = optional_str(message, 35)?
            .map(|track2| check_track2(track2).map(|()| Secret::new(track2.to_owned())))
            .transpose()?;
        let pin_block = match message.get(52) {
            Some(block) if block.len() == PIN_BLOCK_BYTES => Some(Secret::new(block.to_vec())),
            Some(_) => return Err(ProtocolError::bad(52, "PIN block must be 8 bytes")),
            None => None,
        };
        let text = |field: u8| required_str(message, field).map(str::to_owned);
        Ok(Self {
            kind,
            pan,
            original,
            expiry,
            track2,
            amount_minor: parse_amount(message)?,
            currency_numeric: text(49)?,
            stan: text(11)?,
            rrn: text(37)?,
            transmitted_at: text(7)?,
            local_time: text(12)?,
            local_date: text(13)?,
            entry_mode: text(22)?,
            pin_block,
            icc_data: message.get(55).map(|data| Secret::new(data.to_vec())),
            security_code: optional_str(message, 48)?
                .map(parse_security_code)
                .transpose()?,
            terminal_id: text(41)?,
            merchant_id: text(42)?,
            acquirer_id: text(32)?,
        })
    }
}

/// Loyalty data a co-brand bank adds to field 48 of a 0110/0210:
/// `PTS` + sign + 9 digits earned, `BAL` + 12 digits balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Loyalty {
    /// Points earned by this transaction (negative for a refund).
    pub points_earned: i64,
    /// The card's point balance after it.
    pub balance_points: i64,
}

impl Loyalty {
    const MAX_POINTS: i64 = 999_999_999;
    const MAX_BALANCE: i64 = 999_999_999_999;
    /// "PTS" + 10 + "BAL" + 12.
    const LEN: usize = 28;

    pub fn format(&self) -> Result<String, ProtocolError> {
        if self.points_earned.abs() > Self::MAX_POINTS
            || !(0..=Self::MAX_BALANCE).contains(&self.balance_points)
        {
            return Err(ProtocolError::bad(48, "loyalty points out of range"));
        }
        let sign = if self.points_earned < 0 { '-' } else { '+' };
        Ok(format!(
            "PTS{sign}{:09}BAL{:012}",
            self.points_earned.unsigned_abs(),
            self.balance_points
        ))
    }

    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        let bad = || ProtocolError::bad(48, "loyalty data must be PTS+-9 digits BAL 12 digits");
        if text.len() != Self::LEN || !text.starts_with("PTS") || &text[13..16] != "BAL" {
            return Err(bad());
        }
        let sign = match text.as_bytes()[3] {
            b'+' => 1,
            b'-' => -1,
            _ => return Err(bad()),
        };
        check_digits(48, &text[4..13], 9).map_err(|_| bad())?;
        check_digits(48, &text[16..], 12).map_err(|_| bad())?;
        let points: i64 = text[4..13].parse().map_err(|_| bad())?;
        Ok(Self {
            points_earned: sign * points,
            balance_points: text[16..].parse().map_err(|_| bad())?,
        })
    }
}

/// The bank's answer to a financial request, advice or reversal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinancialResponse {
    pub response_code: ResponseCode,
    /// Field 38, present on approvals.
    pub approval_code: Option<String>,
    pub loyalty: Option<Loyalty>,
}

/// Fields a response repeats from its request.
const ECHOED_FIELDS: [u8; 12] = [3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49, 90];

impl FinancialResponse {
    /// Reads fields 38, 39 and 48 of any response (0110, 0210, 0230, 0410).
    pub fn parse(message: &Message) -> Result<Self, ProtocolError> {
        if !message.mti().is_response() || super::is_network(message.mti()) {
            return Err(ProtocolError::UnexpectedMti {
                mti: message.mti().as_str().to_owned(),
                expected: "a 0110, 0210, 0230 or 0410 response",
            });
        }
        let response_code = ResponseCode::parse(required_str(message, 39)?)
            .ok_or_else(|| ProtocolError::bad(39, "must be 2 characters"))?;
        let approval_code = optional_str(message, 38)?.map(str::to_owned);
        let loyalty = match optional_str(message, 48)? {
            Some(text) if text.starts_with("PTS") => Some(Loyalty::parse(text)?),
            _ => None,
        };
        Ok(Self {
            response_code,
            approval_code,
            loyalty,
        })
    }

    /// The response to `request`: its MTI answered, its identifying fields
    /// echoed (never the PAN or track), fields 38, 39 and 48 set. No MAC yet.
    pub fn to_message(&self, request: &Message) -> Result<Message, ProtocolError> {
        let mut message = Message::new(response_mti(request.mti()));
        for field in ECHOED_FIELDS {
            if let Some(value) = request.get(field) {
                message.set(field, value);
            }
        }
        if let Some(approval_code) = &self.approval_code {
            check_alphanumeric(38, approval_code, 6)?;
            message.set_str(38, approval_code);
        }
        message.set_str(39, self.response_code.as_str());
        if let Some(loyalty) = &self.loyalty {
            message.set_str(48, &loyalty.format()?);
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone};

    use super::*;
    use crate::iso8583::ascii_1987;

    /// A test value borrowed for the whole test run.
    fn leak<T>(value: T) -> &'static T {
        Box::leak(Box::new(value))
    }

    fn sale() -> FinancialRequest<'static> {
        FinancialRequest {
            kind: FinancialKind::Refund,
            pan: Some(leak(Pan::parse("4111111111111111").unwrap())),
            original: None,
            expiry: Some(CardExpiry::parse("2812").unwrap()),
            track2: Some(leak(Secret::new(
                "4111111111111111=28121010000000000".to_owned(),
            ))),
            amount_minor: 12_345,
            currency_numeric: "901",
            stan: "000042",
            rrn: "612300000042",
            transmitted_at: Utc.with_ymd_and_hms(2026, 5, 1, 2, 3, 4).unwrap(),
            local: NaiveDate::from_ymd_opt(2026, 5, 1)
                .unwrap()
                .and_hms_opt(10, 3, 4)
                .unwrap(),
            entry_mode: "051",
            pin_block: Some(leak(Secret::new(vec![1, 2, 3, 4, 5, 6, 7, 8]))),
            icc_data: Some(leak(Secret::new(vec![0x9f, 0x26, 0x01, 0x00]))),
            security_code: Some(leak(Secret::new("123".to_owned()))),
            terminal_id: "TERM0001",
            merchant_id: "MERCHANT0000001",
            acquirer_id: "4711",
        }
    }

    #[test]
    fn request_round_trips_through_the_parser() {
        let message = sale().to_message().unwrap();
        assert_eq!(message.mti(), MTI_FINANCIAL);
        assert_eq!(message.get_str(3), Some("200000"));
        assert_eq!(message.get_str(4), Some("000000012345"));
        assert_eq!(message.get_str(7), Some("0501020304"));
        assert_eq!(message.get_str(12), Some("100304"));
        assert_eq!(message.get_str(13), Some("0501"));
        let wire = ascii_1987().pack(&message).unwrap();
        assert_eq!(ascii_1987().unpack(&wire).unwrap(), message);
        assert_eq!(message.get_str(48), Some("CV21123 "));
        let incoming = IncomingFinancialRequest::parse(&message).unwrap();
        assert_eq!(incoming.security_code.as_ref().unwrap().expose(), "123");
        assert_eq!(format!("{incoming:?}").matches("CV21").count(), 0);
        assert_eq!(incoming.kind, FinancialKind::Refund);
        assert_eq!(incoming.amount_minor, 12_345);
        assert_eq!(
            incoming.pin_block.unwrap().expose(),
            &[1, 2, 3, 4, 5, 6, 7, 8]
        );
        let debug = format!("{:?}", sale());
        assert!(!debug.contains("4111111111111111"), "{debug}");
    }

    /// Neither the request the gateway builds nor the request the bank
    /// parses prints its card data, in `Debug` or pretty `Debug`; each
    /// secret alone prints `***` in `Display` too.
    #[test]
    fn formatting_never_prints_card_data() {
        let request = sale();
        let incoming = IncomingFinancialRequest::parse(&request.to_message().unwrap()).unwrap();
        let clear = [
            "4111111111111111",
            "28121010000000000",
            "[1, 2, 3, 4, 5, 6, 7, 8]",
            "[159, 38, 1, 0]",
            "\"123\"",
            "CV21",
        ];
        for text in [
            format!("{request:?}"),
            format!("{request:#?}"),
            format!("{incoming:?}"),
            format!("{incoming:#?}"),
        ] {
            for value in clear {
                assert!(!text.contains(value), "{value} in {text}");
            }
            assert!(text.contains("411111******1111"), "{text}");
        }
        let secrets = [
            request.track2.unwrap().to_string(),
            request.security_code.unwrap().to_string(),
            request.pin_block.unwrap().to_string(),
            request.icc_data.unwrap().to_string(),
            incoming.track2.unwrap().to_string(),
            incoming.security_code.unwrap().to_string(),
        ];
        assert!(secrets.iter().all(|text| text == "***"), "{secrets:?}");
    }

    #[test]
    fn bad_inputs_name_the_field() {
        let mut request = sale();
        request.pan = None;
        request.kind = FinancialKind::Sale;
        assert!(matches!(
            request.to_message(),
            Err(ProtocolError::MissingField(2))
        ));
        let mut request = sale();
        request.amount_minor = -1;
        assert!(matches!(
            request.to_message(),
            Err(ProtocolError::BadField { field: 4, .. })
        ));
    }

    #[test]
    fn response_carries_loyalty_and_echoes_identifiers() {
        let request = sale().to_message().unwrap();
        let response = FinancialResponse {
            response_code: ResponseCode::Approved,
            approval_code: Some("A1B2C3".to_owned()),
            loyalty: Some(Loyalty {
                points_earned: -120,
                balance_points: 5_000,
            }),
        };
        let message = response.to_message(&request).unwrap();
        assert_eq!(message.get_str(48), Some("PTS-000000120BAL000000005000"));
        assert_eq!(message.get_str(37), request.get_str(37));
        assert!(!message.has(2) && !message.has(35) && !message.has(52));
        let wire = ascii_1987().pack(&message).unwrap();
        let unpacked = ascii_1987().unpack(&wire).unwrap();
        assert_eq!(FinancialResponse::parse(&unpacked).unwrap(), response);
    }
}
