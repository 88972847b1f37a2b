//! 0400 reversal (0401 when repeated) and its 0410 answer: undo an earlier
//! 0100 or 0200 named by field 90.

use chrono::{DateTime, Utc};
use posgate_hsm::Pan;

use super::fields::{
    Identifiers, OriginalData, format_amount, parse_amount, required_str, transmission_datetime,
};
use super::{FinancialKind, MTI_REVERSAL, MTI_REVERSAL_REPEAT, ProtocolError};
use crate::iso8583::Message;

/// A reversal to build. The RRN is the original's; the STAN is new (a repeat
/// normally keeps the first attempt's STAN).
#[derive(Debug, Clone)]
pub struct Reversal<'a> {
    /// What is being reversed: gives the original MTI and field 3.
    pub original_kind: FinancialKind,
    pub original_stan: &'a str,
    pub original_transmitted_at: DateTime<Utc>,
    pub rrn: &'a str,
    /// The amount to reverse (the original's, for a full reversal).
    pub amount_minor: i64,
    pub currency_numeric: &'a str,
    pub stan: &'a str,
    pub transmitted_at: DateTime<Utc>,
    /// 0401 instead of 0400: a retransmission of a reversal that got no answer.
    pub repeat: bool,
    pub terminal_id: &'a str,
    pub merchant_id: &'a str,
    pub acquirer_id: &'a str,
}

impl Reversal<'_> {
    /// The 0400/0401 message, without MAC.
    pub fn to_message(&self) -> Result<Message, ProtocolError> {
        let mut message = Message::new(if self.repeat {
            MTI_REVERSAL_REPEAT
        } else {
            MTI_REVERSAL
        });
        let original = OriginalData::new(
            self.original_kind.mti(),
            self.original_stan,
            self.original_transmitted_at,
            self.acquirer_id,
        )?;
        message
            .set_str(3, self.original_kind.processing_code())
            .set_str(4, &format_amount(self.amount_minor)?)
            .set_str(7, &transmission_datetime(self.transmitted_at))
            .set_str(90, &original.format());
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

/// A 0400/0401 as the bank receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingReversal {
    pub repeat: bool,
    pub original: OriginalData,
    /// What the original was, from field 3 and field 90's MTI.
    pub original_kind: FinancialKind,
    pub rrn: String,
    pub stan: String,
    pub amount_minor: i64,
    pub currency_numeric: String,
    pub terminal_id: String,
    pub merchant_id: String,
    pub acquirer_id: String,
    /// Field 2 if the acquirer sent it.
    pub pan: Option<Pan>,
}

impl IncomingReversal {
    pub fn parse(message: &Message) -> Result<Self, ProtocolError> {
        let repeat = match message.mti() {
            MTI_REVERSAL => false,
            MTI_REVERSAL_REPEAT => true,
            other => {
                return Err(ProtocolError::UnexpectedMti {
                    mti: other.as_str().to_owned(),
                    expected: "0400 or 0401",
                });
            }
        };
        let original = OriginalData::from_message(message)?;
        let original_kind = FinancialKind::from_parts(original.mti, required_str(message, 3)?)?;
        let pan = message
            .get_str(2)
            .map(Pan::parse)
            .transpose()
            .map_err(|error| ProtocolError::bad(2, error.to_string()))?;
        let text = |field: u8| required_str(message, field).map(str::to_owned);
        Ok(Self {
            repeat,
            original,
            original_kind,
            rrn: text(37)?,
            stan: text(11)?,
            amount_minor: parse_amount(message)?,
            currency_numeric: text(49)?,
            terminal_id: text(41)?,
            merchant_id: text(42)?,
            acquirer_id: text(32)?,
            pan,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn repeat_reversal_names_its_original() {
        let original_at = Utc.with_ymd_and_hms(2026, 5, 1, 2, 3, 4).unwrap();
        let reversal = Reversal {
            original_kind: FinancialKind::Sale,
            original_stan: "000042",
            original_transmitted_at: original_at,
            rrn: "612300000042",
            amount_minor: 500,
            currency_numeric: "392",
            stan: "000043",
            transmitted_at: original_at,
            repeat: true,
            terminal_id: "TERM0001",
            merchant_id: "MERCHANT0000001",
            acquirer_id: "4711",
        };
        let message = reversal.to_message().unwrap();
        assert_eq!(message.mti(), MTI_REVERSAL_REPEAT);
        let wire = crate::iso8583::ascii_1987().pack(&message).unwrap();
        let unpacked = crate::iso8583::ascii_1987().unpack(&wire).unwrap();
        let incoming = IncomingReversal::parse(&unpacked).unwrap();
        assert!(incoming.repeat);
        assert_eq!(incoming.original.stan, "000042");
        assert_eq!(incoming.original.transmitted_at, "0501020304");
        assert_eq!(incoming.original_kind, FinancialKind::Sale);
        assert_eq!(incoming.amount_minor, 500);
    }
}
