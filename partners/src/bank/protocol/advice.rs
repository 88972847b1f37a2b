//! 0220 financial advice and its 0230 answer: capture of an earlier 0100
//! authorization (named by field 90) for the final amount.

use chrono::{DateTime, NaiveDateTime, Utc};

use super::fields::{
    Identifiers, OriginalData, check_alphanumeric, format_amount, local_time_and_date,
    optional_str, parse_amount, required_str, transmission_datetime,
};
use super::{MTI_ADVICE, MTI_AUTHORIZATION, ProtocolError};
use crate::iso8583::Message;

/// A capture to build. The RRN is the authorization's.
#[derive(Debug, Clone)]
pub struct Advice<'a> {
    pub original_stan: &'a str,
    pub original_transmitted_at: DateTime<Utc>,
    pub rrn: &'a str,
    /// The amount captured (at most the authorized amount).
    pub amount_minor: i64,
    pub currency_numeric: &'a str,
    pub stan: &'a str,
    pub transmitted_at: DateTime<Utc>,
    pub local: NaiveDateTime,
    /// Field 38 of the authorization's approval.
    pub approval_code: Option<&'a str>,
    pub terminal_id: &'a str,
    pub merchant_id: &'a str,
    pub acquirer_id: &'a str,
}

impl Advice<'_> {
    /// The 0220 message, without MAC.
    pub fn to_message(&self) -> Result<Message, ProtocolError> {
        let mut message = Message::new(MTI_ADVICE);
        let original = OriginalData::new(
            MTI_AUTHORIZATION,
            self.original_stan,
            self.original_transmitted_at,
            self.acquirer_id,
        )?;
        let (time, date) = local_time_and_date(self.local);
        message
            .set_str(3, "000000")
            .set_str(4, &format_amount(self.amount_minor)?)
            .set_str(7, &transmission_datetime(self.transmitted_at))
            .set_str(12, &time)
            .set_str(13, &date)
            .set_str(90, &original.format());
        if let Some(approval_code) = self.approval_code {
            check_alphanumeric(38, approval_code, 6)?;
            message.set_str(38, approval_code);
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

/// A 0220 as the bank receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingAdvice {
    pub original: OriginalData,
    pub rrn: String,
    pub stan: String,
    pub amount_minor: i64,
    pub currency_numeric: String,
    pub approval_code: Option<String>,
    pub terminal_id: String,
    pub merchant_id: String,
    pub acquirer_id: String,
}

impl IncomingAdvice {
    pub fn parse(message: &Message) -> Result<Self, ProtocolError> {
        if message.mti() != MTI_ADVICE {
            return Err(ProtocolError::UnexpectedMti {
                mti: message.mti().as_str().to_owned(),
                expected: "0220",
            });
        }
        let original = OriginalData::from_message(message)?;
        if original.mti != MTI_AUTHORIZATION {
            return Err(ProtocolError::bad(90, "an advice captures a 0100"));
        }
        let text = |field: u8| required_str(message, field).map(str::to_owned);
        Ok(Self {
            original,
            rrn: text(37)?,
            stan: text(11)?,
            amount_minor: parse_amount(message)?,
            currency_numeric: text(49)?,
            approval_code: optional_str(message, 38)?.map(str::to_owned),
            terminal_id: text(41)?,
            merchant_id: text(42)?,
            acquirer_id: text(32)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone};

    use super::*;

    #[test]
    fn capture_refers_to_the_authorization() {
        let at = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap();
        let advice = Advice {
            original_stan: "000007",
            original_transmitted_at: at,
            rrn: "636500000007",
            amount_minor: 900,
            currency_numeric: "840",
            stan: "000008",
            transmitted_at: at,
            local: NaiveDate::from_ymd_opt(2027, 1, 1)
                .unwrap()
                .and_hms_opt(7, 59, 59)
                .unwrap(),
            approval_code: Some("123456"),
            terminal_id: "TERM0001",
            merchant_id: "MERCHANT0000001",
            acquirer_id: "4711",
        };
        let message = advice.to_message().unwrap();
        let wire = crate::iso8583::ascii_1987().pack(&message).unwrap();
        let unpacked = crate::iso8583::ascii_1987().unpack(&wire).unwrap();
        let incoming = IncomingAdvice::parse(&unpacked).unwrap();
        assert_eq!(incoming.original.mti, MTI_AUTHORIZATION);
        assert_eq!(incoming.original.stan, "000007");
        assert_eq!(incoming.amount_minor, 900);
        assert_eq!(incoming.approval_code.as_deref(), Some("123456"));
    }
}
