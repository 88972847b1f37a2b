//! The bank link protocol (contract section 2): which ISO 8583 fields each
//! message carries, built and parsed by typed structs so neither the gateway
//! nor the simulator assembles fields by hand.
//!
//! Every message uses [`crate::iso8583::ascii_1987`] and travels behind a
//! 2-byte big-endian length ([`framing`]). Every message except the 08xx
//! network management family carries a retail MAC in field 64 (or 128 when a
//! secondary bitmap is present), see [`mac`].
//!
//! # Layout
//! - [`fields`]: field formats shared by all messages (amount, date-times,
//!   STAN, RRN, field 90 original data, currency codes).
//! - [`response_code`]: field 39 and its text for the cashier.
//! - [`financial`]: 0100/0110 authorization, 0200/0210 sale and refund,
//!   loyalty data in field 48.
//! - [`advice`]: 0220/0230 capture of an earlier authorization.
//! - [`reversal`]: 0400/0401/0410 reversal.
//! - [`network`]: 0800/0810 sign-on, sign-off, echo and key change.
//! - [`mac`]: where the MAC sits and how it is made and checked through the HSM.
//! - [`framing`]: the 2-byte length header on the wire.

pub mod advice;
pub mod fields;
pub mod financial;
pub mod framing;
pub mod mac;
pub mod network;
pub mod response_code;
pub mod reversal;

pub use advice::{Advice, IncomingAdvice};
pub use fields::{OriginalData, currency_alpha, currency_numeric, transmission_datetime};
pub use financial::{
    FinancialKind, FinancialRequest, FinancialResponse, IncomingFinancialRequest, Loyalty,
};
pub use framing::{MAX_FRAME_BYTES, read_frame, write_frame};
pub use mac::{
    MAC_ALGORITHM, MAC_BYTES, MacError, mac_field, mac_input, needs_mac, pack_with_mac, verify_mac,
};
pub use network::{KeyChangePayload, NetworkCode, NetworkRequest, NetworkResponse};
pub use response_code::ResponseCode;
pub use reversal::{IncomingReversal, Reversal};

use crate::iso8583::Mti;

/// Why a message does not fit the bank protocol. Reasons name the field and
/// the rule, never the value of a sensitive field (PAN, track, PIN, ICC, keys).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("field {0} is missing")]
    MissingField(u8),
    #[error("field {field}: {reason}")]
    BadField { field: u8, reason: String },
    #[error("MTI {mti} is not {expected}")]
    UnexpectedMti { mti: String, expected: &'static str },
}

impl ProtocolError {
    pub(crate) fn bad(field: u8, reason: impl Into<String>) -> Self {
        Self::BadField {
            field,
            reason: reason.into(),
        }
    }
}

/// Authorization request and response.
pub const MTI_AUTHORIZATION: Mti = Mti::new(*b"0100");
pub const MTI_AUTHORIZATION_RESPONSE: Mti = Mti::new(*b"0110");
/// Financial request (sale, refund) and response.
pub const MTI_FINANCIAL: Mti = Mti::new(*b"0200");
pub const MTI_FINANCIAL_RESPONSE: Mti = Mti::new(*b"0210");
/// Financial advice (capture) and response.
pub const MTI_ADVICE: Mti = Mti::new(*b"0220");
pub const MTI_ADVICE_RESPONSE: Mti = Mti::new(*b"0230");
/// Reversal, its repeat, and the response to both.
pub const MTI_REVERSAL: Mti = Mti::new(*b"0400");
pub const MTI_REVERSAL_REPEAT: Mti = Mti::new(*b"0401");
pub const MTI_REVERSAL_RESPONSE: Mti = Mti::new(*b"0410");
/// Network management request and response.
pub const MTI_NETWORK: Mti = Mti::new(*b"0800");
pub const MTI_NETWORK_RESPONSE: Mti = Mti::new(*b"0810");

/// The MTI that answers `request`: the function digit goes up by one and a
/// repeat (xxx1) is answered like the original (0401 -> 0410).
pub fn response_mti(request: Mti) -> Mti {
    request.response()
}

/// True for the 08xx network management family.
pub fn is_network(mti: Mti) -> bool {
    mti.0[1] == b'8'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_mti_answers_repeats_like_originals() {
        assert_eq!(response_mti(MTI_REVERSAL_REPEAT), MTI_REVERSAL_RESPONSE);
        assert_eq!(response_mti(MTI_FINANCIAL), MTI_FINANCIAL_RESPONSE);
        assert_eq!(response_mti(MTI_NETWORK), MTI_NETWORK_RESPONSE);
        assert_eq!(response_mti(MTI_ADVICE), MTI_ADVICE_RESPONSE);
    }
}
