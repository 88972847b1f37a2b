//! 0800/0810 network management: sign-on (001), sign-off (002), key change
//! (161) and echo (301). These carry no MAC.

use chrono::{DateTime, Utc};
use posgate_hsm::{Kcv, KeySpec, Secret, WrappedKey};

use super::fields::{STAN_DIGITS, check_digits, optional_str, required_str, transmission_datetime};
use super::{MTI_NETWORK, MTI_NETWORK_RESPONSE, ProtocolError, ResponseCode};
use crate::iso8583::Message;

/// Field 70, the network management information code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetworkCode {
    SignOn,
    SignOff,
    KeyChange,
    Echo,
}

impl NetworkCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignOn => "001",
            Self::SignOff => "002",
            Self::KeyChange => "161",
            Self::Echo => "301",
        }
    }

    pub fn parse(code: &str) -> Result<Self, ProtocolError> {
        [Self::SignOn, Self::SignOff, Self::KeyChange, Self::Echo]
            .into_iter()
            .find(|known| known.as_str() == code)
            .ok_or_else(|| ProtocolError::bad(70, "must be 001, 002, 161 or 301"))
    }
}

/// An 0800: fields 7, 11 and 70.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRequest {
    pub code: NetworkCode,
    pub stan: String,
    /// Field 7, `MMDDhhmmss`.
    pub transmitted_at: String,
}

impl NetworkRequest {
    pub fn new(code: NetworkCode, stan: &str, transmitted_at: DateTime<Utc>) -> Self {
        Self {
            code,
            stan: stan.to_owned(),
            transmitted_at: transmission_datetime(transmitted_at),
        }
    }

    pub fn to_message(&self) -> Result<Message, ProtocolError> {
        check_digits(11, &self.stan, STAN_DIGITS)?;
        check_digits(7, &self.transmitted_at, 10)?;
        let mut message = Message::new(MTI_NETWORK);
        message
            .set_str(7, &self.transmitted_at)
            .set_str(11, &self.stan)
            .set_str(70, self.code.as_str());
        Ok(message)
    }

    pub fn parse(message: &Message) -> Result<Self, ProtocolError> {
        if message.mti() != MTI_NETWORK {
            return Err(ProtocolError::UnexpectedMti {
                mti: message.mti().as_str().to_owned(),
                expected: "0800",
            });
        }
        Ok(Self {
            code: NetworkCode::parse(required_str(message, 70)?)?,
            stan: required_str(message, 11)?.to_owned(),
            transmitted_at: required_str(message, 7)?.to_owned(),
        })
    }
}

/// An 0810: the request's fields 7, 11 and 70 echoed, field 39, and for a
/// key change the new key in field 48.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkResponse {
    pub code: NetworkCode,
    pub stan: String,
    pub response_code: ResponseCode,
    pub key_change: Option<KeyChangePayload>,
}

impl NetworkResponse {
    /// Builds the 0810 answering `request`.
    pub fn answer(
        request: &Message,
        response_code: ResponseCode,
        key_change: Option<&KeyChangePayload>,
    ) -> Message {
        let mut message = Message::new(MTI_NETWORK_RESPONSE);
        for field in [7, 11, 70] {
            if let Some(value) = request.get(field) {
                message.set(field, value);
            }
        }
        message.set_str(39, response_code.as_str());
        if let Some(payload) = key_change {
            message.set_str(48, &payload.format());
        }
        message
    }

    pub fn parse(message: &Message) -> Result<Self, ProtocolError> {
        if message.mti() != MTI_NETWORK_RESPONSE {
            return Err(ProtocolError::UnexpectedMti {
                mti: message.mti().as_str().to_owned(),
                expected: "0810",
            });
        }
        let code = NetworkCode::parse(required_str(message, 70)?)?;
        let key_change = match (code, optional_str(message, 48)?) {
            (NetworkCode::KeyChange, Some(text)) => Some(KeyChangePayload::parse(text)?),
            _ => None,
        };
        Ok(Self {
            code,
            stan: required_str(message, 11)?.to_owned(),
            response_code: ResponseCode::parse(required_str(message, 39)?)
                .ok_or_else(|| ProtocolError::bad(39, "must be 2 characters"))?,
            key_change,
        })
    }
}

/// Field 48 of a key change 0810: `KEY` + 32 hex digits of the new TDES MAC
/// key enciphered under the ZMK (each half TDES-ECB) + `KCV` + 6 hex digits
/// of the new key's check value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChangePayload {
    pub wrapped_key: Secret<[u8; 16]>,
    pub kcv: Kcv,
}

impl KeyChangePayload {
    /// "KEY" + 32 + "KCV" + 6.
    const LEN: usize = 44;

    /// From a key the bank wrapped under the ZMK with `Hsm::wrap_key`.
    pub fn from_wrapped(wrapped: &WrappedKey) -> Result<Self, ProtocolError> {
        let key: [u8; 16] = wrapped
            .ciphertext
            .as_slice()
            .try_into()
            .map_err(|_| ProtocolError::bad(48, "a wrapped TDES key is 16 bytes"))?;
        if wrapped.spec != KeySpec::TDES_MAC {
            return Err(ProtocolError::bad(
                48,
                "the new key must be a tdes2/mac key",
            ));
        }
        Ok(Self {
            wrapped_key: Secret::new(key),
            kcv: wrapped.kcv,
        })
    }

    /// The key as the HSM unwraps it, given the ZMK's check value.
    pub fn to_wrapped(&self, zmk_kcv: Kcv) -> WrappedKey {
        WrappedKey {
            spec: KeySpec::TDES_MAC,
            kcv: self.kcv,
            kek_kcv: zmk_kcv,
            ciphertext: self.wrapped_key.expose().to_vec(),
        }
    }

    pub fn format(&self) -> String {
        format!(
            "KEY{}KCV{}",
            hex::encode_upper(self.wrapped_key.expose()),
            self.kcv
        )
    }

    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        let bad = || ProtocolError::bad(48, "key change data must be KEY + 32 hex + KCV + 6 hex");
        if text.len() != Self::LEN || !text.starts_with("KEY") || &text[35..38] != "KCV" {
            return Err(bad());
        }
        let mut key = [0_u8; 16];
        hex::decode_to_slice(&text[3..35], &mut key).map_err(|_| bad())?;
        let kcv = Kcv::parse(&text[38..]).map_err(|_| bad())?;
        Ok(Self {
            wrapped_key: Secret::new(key),
            kcv,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn key_change_round_trips() {
        let request = NetworkRequest::new(
            NetworkCode::KeyChange,
            "000009",
            Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
        )
        .to_message()
        .unwrap();
        assert_eq!(
            NetworkRequest::parse(&request).unwrap().code,
            NetworkCode::KeyChange
        );
        let payload = KeyChangePayload {
            wrapped_key: Secret::new([0xAB; 16]),
            kcv: Kcv([1, 2, 3]),
        };
        let response = NetworkResponse::answer(&request, ResponseCode::Approved, Some(&payload));
        assert_eq!(
            response.get_str(48),
            Some("KEYABABABABABABABABABABABABABABABABKCV010203")
        );
        let wire = crate::iso8583::ascii_1987().pack(&response).unwrap();
        let unpacked = crate::iso8583::ascii_1987().unpack(&wire).unwrap();
        let parsed = NetworkResponse::parse(&unpacked).unwrap();
        assert_eq!(parsed.stan, "000009");
        assert_eq!(parsed.key_change, Some(payload));
        assert!(!format!("{parsed:?}").contains("ABAB"));
    }

    #[test]
    fn unknown_network_code_is_refused() {
        assert!(NetworkCode::parse("999").is_err());
    }
}
