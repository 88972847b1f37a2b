//! Wire conversions: request messages into ledger requests, ledger answers
//! into response messages. Field layout per contract section 2.

use std::hash::{DefaultHasher, Hash, Hasher};

use posgate_hsm::Secret;

use super::ledger::{
    Answer, CaptureRequest, FinancialKind, FinancialRequest, Loyalty, OriginalKey, ReversalRequest,
};
use posgate_partners::bank::protocol::response_mti;
use posgate_partners::iso8583::{Message, Mti};

/// Fields a response echoes from its request (never 2, 14, 35, 52, 55: the
/// link matches on MTI, STAN and RRN, and the bank has no reason to send card data back).
const ECHOED_FIELDS: [u8; 12] = [3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49, 90];

/// The fields whose values make a request "the same" for RRN idempotency:
/// card, processing code, amount, expiry, terminal, merchant, currency and
/// original data. STAN, times, PIN block, ICC data and MAC may differ on a retransmission.
const CONTENT_FIELDS: [u8; 9] = [2, 3, 4, 14, 35, 41, 42, 49, 90];

/// Why a MAC-valid request cannot be applied: answered 30.
#[derive(Debug)]
pub struct FormatError {
    pub field: u8,
    pub reason: &'static str,
}

fn format_error(field: u8, reason: &'static str) -> FormatError {
    FormatError { field, reason }
}

/// A `digits`-long run of ASCII digits in `field`.
fn digits(message: &Message, field: u8, len: usize) -> Result<String, FormatError> {
    let value = message
        .get_str(field)
        .ok_or_else(|| format_error(field, "missing"))?;
    if value.len() != len || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format_error(field, "wrong length or not digits"));
    }
    Ok(value.to_owned())
}

fn text(message: &Message, field: u8) -> Result<String, FormatError> {
    message
        .get_str(field)
        .map(str::to_owned)
        .ok_or_else(|| format_error(field, "missing"))
}

fn amount_minor(message: &Message) -> Result<i64, FormatError> {
    digits(message, 4, 12)?
        .parse()
        .map_err(|_| format_error(4, "not a 12-digit amount"))
}

/// The PAN from field 2, else from track 2 (field 35, up to the separator).
fn pan_digits(message: &Message) -> Result<Secret<String>, FormatError> {
    let pan = if let Some(pan) = message.get_str(2) {
        pan.to_owned()
    } else {
        let track = message
            .get_str(35)
            .ok_or_else(|| format_error(2, "missing (and no track 2)"))?;
        track
            .split(['=', 'D', 'd'])
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let pan = Secret::new(pan);
    if pan.expose().is_empty() || !pan.expose().bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format_error(2, "not digits"));
    }
    Ok(pan)
}

/// A hash of the request's business content (the PAN is hashed, never kept).
fn fingerprint(message: &Message) -> Vec<u8> {
    let mut hasher = DefaultHasher::new();
    // A repeat (0401, 0221) is the same request as its first attempt.
    base_mti(message.mti()).hash(&mut hasher);
    for field in CONTENT_FIELDS {
        field.hash(&mut hasher);
        message.get(field).hash(&mut hasher);
    }
    hasher.finish().to_be_bytes().to_vec()
}

/// The request's own name: MTI with the repeat digit cleared, STAN, field 7, RRN.
fn own_key(message: &Message) -> Result<OriginalKey, FormatError> {
    let acquirer = text(message, 32)?;
    if acquirer.is_empty() || acquirer.len() > 11 || !acquirer.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format_error(32, "not 1 to 11 digits"));
    }
    Ok(OriginalKey {
        mti: base_mti(message.mti()),
        stan: digits(message, 11, 6)?,
        transmitted_at: digits(message, 7, 10)?,
        acquirer_id: format!("{acquirer:0>11}"),
        rrn: text(message, 37)?,
    })
}

/// `0401` -> `0400`, `0221` -> `0220`: a repeat names the same transaction.
pub fn base_mti(mti: Mti) -> String {
    let mut bytes = mti.0;
    if bytes[3] == b'1' {
        bytes[3] = b'0';
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The original a 0220 or 0400 refers to: field 90 (MTI, STAN, date-time) and the message's RRN.
fn original_key(message: &Message) -> Result<OriginalKey, FormatError> {
    let data = digits(message, 90, 42)?;
    Ok(OriginalKey {
        mti: base_mti(Mti::new(
            data.as_bytes()[..4]
                .try_into()
                .expect("42 digits have 4 leading ones"),
        )),
        stan: data[4..10].to_owned(),
        transmitted_at: data[10..20].to_owned(),
        acquirer_id: data[20..31].to_owned(),
        rrn: text(message, 37)?,
    })
}

/// 0100 (processing code 00) or 0200 (00 sale, 20 refund).
pub fn financial(message: &Message) -> Result<FinancialRequest, FormatError> {
    let processing = digits(message, 3, 6)?;
    let kind = match (message.mti().as_str(), &processing[..2]) {
        ("0100", "00") => FinancialKind::Authorization,
        ("0200", "00") => FinancialKind::Sale,
        ("0200", "20") => FinancialKind::Refund,
        _ => {
            return Err(format_error(
                3,
                "processing code not supported for this MTI",
            ));
        }
    };
    let pin_block = match message.get(52) {
        None => None,
        Some(block) => Some(Secret::new(
            <[u8; 8]>::try_from(block).map_err(|_| format_error(52, "a PIN block is 8 bytes"))?,
        )),
    };
    let expiry = match message.get(14) {
        None => None,
        Some(_) => Some(digits(message, 14, 4)?),
    };
    // A refund by reference names the refunded payment in field 90 instead
    // of carrying the card (the gateway keeps no PANs).
    let by_reference = kind == FinancialKind::Refund
        && message.get(2).is_none()
        && message.get(35).is_none()
        && message.get(90).is_some();
    let (pan_digits, refunded) = if by_reference {
        (Secret::default(), Some(original_key(message)?))
    } else {
        (pan_digits(message)?, None)
    };
    Ok(FinancialRequest {
        kind,
        pan_digits,
        refunded,
        expiry,
        amount_minor: amount_minor(message)?,
        currency: digits(message, 49, 3)?,
        key: own_key(message)?,
        pin_block,
        security_code: security_code(message)?,
        fingerprint: fingerprint(message),
    })
}

/// Field 48's card security code (`CV21` + 3 or 4 digits, space-padded to 4).
fn security_code(message: &Message) -> Result<Option<Secret<String>>, FormatError> {
    let Some(field) = message.get_str(48) else {
        return Ok(None);
    };
    let code = field
        .strip_prefix(posgate_partners::bank::protocol::financial::SECURITY_CODE_TAG)
        .filter(|_| field.len() == 8)
        .map(|code| code.trim_end_matches(' '))
        .filter(|code| (3..=4).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format_error(48, "not CV21 and a 3 or 4 digit security code"))?;
    Ok(Some(Secret::new(code.to_owned())))
}

/// 0220/0221: capture of the authorization named by field 90.
pub fn capture(message: &Message) -> Result<CaptureRequest, FormatError> {
    let original = original_key(message)?;
    if original.mti != "0100" {
        return Err(format_error(90, "an advice captures an 0100 authorization"));
    }
    Ok(CaptureRequest {
        key: own_key(message)?,
        original,
        amount_minor: amount_minor(message)?,
        currency: digits(message, 49, 3)?,
        fingerprint: fingerprint(message),
    })
}

/// 0400/0401: reversal of the transaction named by field 90.
pub fn reversal(message: &Message) -> Result<ReversalRequest, FormatError> {
    Ok(ReversalRequest {
        key: own_key(message)?,
        original: original_key(message)?,
        fingerprint: fingerprint(message),
    })
}

/// The response to `request`: echoed fields, then 38, 39 and 48 from the answer.
/// The MAC is added when the response is packed.
pub fn response(request: &Message, answer: &Answer) -> Message {
    let mut response = Message::new(response_mti(request.mti()));
    for field in ECHOED_FIELDS {
        if let Some(value) = request.get(field) {
            response.set(field, value);
        }
    }
    if let Some(code) = &answer.approval_code {
        response.set_str(38, code);
    }
    response.set_str(39, &answer.response_code);
    if let Some(loyalty) = answer.loyalty {
        response.set_str(48, &loyalty_field(loyalty));
    }
    response
}

/// `PTS` + sign + 9 digits + `BAL` + 12 digits (values clamped to the field widths).
pub fn loyalty_field(loyalty: Loyalty) -> String {
    let sign = if loyalty.points_delta < 0 { '-' } else { '+' };
    let points = loyalty.points_delta.unsigned_abs().min(999_999_999);
    let balance = loyalty.points_balance.clamp(0, 999_999_999_999);
    format!("PTS{sign}{points:09}BAL{balance:012}")
}
