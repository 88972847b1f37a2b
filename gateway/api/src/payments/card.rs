//! The card as presented at the counter, read from `CardInput` and checked
//! field by field (Luhn, expiry, track 2, PIN block, chip data) into the
//! core's [`PresentedCard`]; and the card enums as the POS API names them.

use posgate_core::cards::card::{CardBrand, EntryMode, PinInput, PresentedCard};
use posgate_hsm::pan::luhn_valid;
use posgate_hsm::{CardExpiry, Pan, PinBlockFormat, Secret};
use posgate_proto::v1 as pb;
use zeroize::Zeroizing;

use crate::validate::Violations;

/// Longest track 2 accepted, sentinels included.
const MAX_TRACK2_LEN: usize = 40;
/// Most chip data bytes (ISO 8583 field 55 is LLLVAR up to 255).
const MAX_ICC_BYTES: usize = 255;
/// Longest PIN key id.
const MAX_KEY_ID_LEN: usize = 64;

/// The entry mode as the POS API names it.
pub fn entry_mode_to_proto(mode: EntryMode) -> pb::CardEntryMode {
    match mode {
        EntryMode::Keyed => pb::CardEntryMode::Keyed,
        EntryMode::Chip => pb::CardEntryMode::Chip,
        EntryMode::Contactless => pb::CardEntryMode::Contactless,
        EntryMode::Magstripe => pb::CardEntryMode::Magstripe,
        EntryMode::MagstripeFallback => pb::CardEntryMode::MagstripeFallback,
    }
}

fn entry_mode_from_proto(mode: pb::CardEntryMode) -> Option<EntryMode> {
    match mode {
        pb::CardEntryMode::Unspecified => None,
        pb::CardEntryMode::Keyed => Some(EntryMode::Keyed),
        pb::CardEntryMode::Chip => Some(EntryMode::Chip),
        pb::CardEntryMode::Contactless => Some(EntryMode::Contactless),
        pb::CardEntryMode::Magstripe => Some(EntryMode::Magstripe),
        pb::CardEntryMode::MagstripeFallback => Some(EntryMode::MagstripeFallback),
    }
}

/// Reads `card` (field path `field`, "card" in every request). Every problem
/// is added to `violations`, naming the field but never its value.
pub fn read_card(
    violations: &mut Violations,
    field: &str,
    card: Option<&pb::CardInput>,
) -> Option<PresentedCard> {
    let Some(card) = card else {
        violations.add(field, "is required");
        return None;
    };
    let mode_field = format!("{field}.entry_mode");
    let entry_mode = pb::CardEntryMode::try_from(card.entry_mode)
        .ok()
        .and_then(entry_mode_from_proto);
    let Some(entry_mode) = entry_mode else {
        violations.add(
            mode_field,
            "is required: KEYED, CHIP, CONTACTLESS, MAGSTRIPE or MAGSTRIPE_FALLBACK",
        );
        return None;
    };
    let (pan, expiry, track2, service_code) = match (&card.account, entry_mode.reads_track()) {
        (None, _) => {
            violations.add(mode_field, "no card data: set pan_and_expiry or track2");
            return None;
        }
        (Some(pb::card_input::Account::PanAndExpiry(_)), true) => {
            violations.add(mode_field, "a swiped card sends track2, not pan_and_expiry");
            return None;
        }
        (Some(pb::card_input::Account::Track2(_)), false) => {
            violations.add(
                mode_field,
                "only MAGSTRIPE and MAGSTRIPE_FALLBACK send track2",
            );
            return None;
        }
        (Some(pb::card_input::Account::PanAndExpiry(keyed)), false) => {
            let pan = read_pan(
                violations,
                &format!("{field}.pan_and_expiry.pan"),
                &keyed.pan,
            );
            let expiry = read_expiry(
                violations,
                &format!("{field}.pan_and_expiry.expiry"),
                &keyed.expiry,
            );
            (pan, expiry, None, None)
        }
        (Some(pb::card_input::Account::Track2(track)), true) => {
            if let Some(parsed) = parse_track2(track) {
                (
                    Some(parsed.pan),
                    Some(parsed.expiry),
                    Some(parsed.normalized),
                    Some(parsed.service_code),
                )
            } else {
                violations.add(
                    format!("{field}.track2"),
                    "is not ISO/IEC 7813 track 2 data (PAN, separator, YYMM, service code; at most 40 characters, valid check digit)",
                );
                (None, None, None, None)
            }
        }
    };
    let pin = card
        .pin
        .as_ref()
        .and_then(|pin| read_pin(violations, &format!("{field}.pin"), pin));
    let icc_data = read_icc(violations, field, entry_mode, &card.icc_data_hex);
    let security_code = if card.security_code.is_empty() {
        None
    } else if entry_mode != EntryMode::Keyed {
        violations.add(
            format!("{field}.security_code"),
            "is sent only with entry mode KEYED",
        );
        None
    } else {
        let amex = pan.as_ref().is_some_and(|pan| {
            let digits = pan.digits();
            digits.starts_with("34") || digits.starts_with("37")
        });
        let wanted = if amex { 4 } else { 3 };
        if card.security_code.len() != wanted
            || !card.security_code.bytes().all(|b| b.is_ascii_digit())
        {
            violations.add(
                format!("{field}.security_code"),
                format!("must be {wanted} digits"),
            );
        }
        Some(Zeroizing::new(card.security_code.clone()))
    };
    Some(PresentedCard {
        pan: pan?,
        expiry: expiry?,
        entry_mode,
        track2: track2.map(Secret::from),
        pin,
        icc_data: icc_data.map(Secret::from),
        security_code: security_code.map(Secret::from),
        service_code,
    })
}

fn read_pan(violations: &mut Violations, field: &str, text: &str) -> Option<Pan> {
    if text.is_empty() {
        violations.add(field, "is required");
        return None;
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        violations.add(field, "must be 12-19 digits without spaces or separators");
        return None;
    }
    match Pan::parse(text) {
        Ok(pan) => Some(pan),
        Err(error) => {
            // PanError's text never includes the digits.
            violations.add(field, error.to_string());
            None
        }
    }
}

fn read_expiry(violations: &mut Violations, field: &str, text: &str) -> Option<CardExpiry> {
    let parsed = (text.len() == 7 && text.as_bytes()[4] == b'-')
        .then(|| format!("{}{}", &text[2..4], &text[5..7]))
        .and_then(|yymm| CardExpiry::parse(&yymm).ok())
        .filter(|_| text[..4].bytes().all(|b| b.is_ascii_digit()));
    if parsed.is_none() {
        violations.add(field, "must be the expiry month as YYYY-MM");
    }
    parsed
}

struct Track2 {
    pan: Pan,
    expiry: CardExpiry,
    service_code: String,
    normalized: Zeroizing<String>,
}

/// Parses ISO/IEC 7813 track 2: `;PAN=YYMMSSS...?` with optional sentinels
/// and LRC, `D` accepted as separator (EMV tag 57).
fn parse_track2(raw: &str) -> Option<Track2> {
    if raw.is_empty() || raw.len() > MAX_TRACK2_LEN {
        return None;
    }
    let mut text = raw.strip_prefix(';').unwrap_or(raw);
    if let Some(end) = text.find('?') {
        // The end sentinel may be followed by the one-character LRC.
        if text.len() > end + 2 {
            return None;
        }
        text = &text[..end];
    }
    let separator = text.find(['=', 'D'])?;
    let (pan_digits, rest) = (&text[..separator], &text[separator + 1..]);
    if rest.len() < 7 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !luhn_valid(pan_digits) {
        return None;
    }
    let pan = Pan::parse(pan_digits).ok()?;
    let expiry = CardExpiry::parse(&rest[..4]).ok()?;
    Some(Track2 {
        pan,
        expiry,
        service_code: rest[4..7].to_owned(),
        normalized: Zeroizing::new(format!("{pan_digits}={rest}")),
    })
}

fn read_pin(violations: &mut Violations, field: &str, pin: &pb::PinBlock) -> Option<PinInput> {
    let format = match pb::PinBlockFormat::try_from(pin.format) {
        Ok(pb::PinBlockFormat::Iso0) => Some(PinBlockFormat::Iso0),
        Ok(pb::PinBlockFormat::Iso4) => Some(PinBlockFormat::Iso4),
        _ => {
            violations.add(format!("{field}.format"), "must be ISO_0 or ISO_4");
            None
        }
    };
    let block = format.and_then(|format| {
        let wanted = format.block_len_bytes() * 2;
        let bytes = (pin.block_hex.len() == wanted)
            .then(|| hex::decode(&pin.block_hex).ok())
            .flatten();
        if bytes.is_none() {
            violations.add(
                format!("{field}.block_hex"),
                format!("must be {wanted} hexadecimal characters"),
            );
        }
        bytes.map(Zeroizing::new)
    });
    if pin.key_id.is_empty()
        || pin.key_id.len() > MAX_KEY_ID_LEN
        || !pin
            .key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        violations.add(
            format!("{field}.key_id"),
            "must be 1-64 characters of A-Z a-z 0-9 _ . -",
        );
    }
    if !pin.ksn_hex.is_empty() {
        violations.add(
            format!("{field}.ksn_hex"),
            "must be empty: the key is not a DUKPT key",
        );
    }
    Some(PinInput {
        format: format?,
        block: block?.into(),
        key_id: pin.key_id.clone(),
    })
}

fn read_icc(
    violations: &mut Violations,
    field: &str,
    entry_mode: EntryMode,
    text: &str,
) -> Option<Zeroizing<Vec<u8>>> {
    if text.is_empty() {
        return None;
    }
    let field = format!("{field}.icc_data_hex");
    if !matches!(entry_mode, EntryMode::Chip | EntryMode::Contactless) {
        violations.add(field, "is sent only with entry mode CHIP or CONTACTLESS");
        return None;
    }
    let bytes = Zeroizing::new(hex::decode(text).unwrap_or_default());
    if bytes.is_empty() || bytes.len() > MAX_ICC_BYTES || !well_formed_tlv(&bytes) {
        violations.add(
            field,
            "must be BER-TLV in hexadecimal, an even number of characters, at most 255 bytes",
        );
        return None;
    }
    Some(bytes)
}

/// True when `data` is a sequence of complete BER-TLV objects.
fn well_formed_tlv(data: &[u8]) -> bool {
    let mut at = 0;
    while at < data.len() {
        // Tag: one byte, more if the low five bits are all ones.
        let first = data[at];
        at += 1;
        if first & 0x1f == 0x1f {
            loop {
                let Some(&byte) = data.get(at) else {
                    return false;
                };
                at += 1;
                if byte & 0x80 == 0 {
                    break;
                }
            }
        }
        let Some(&length_byte) = data.get(at) else {
            return false;
        };
        at += 1;
        let length = if length_byte & 0x80 == 0 {
            usize::from(length_byte)
        } else {
            let count = usize::from(length_byte & 0x7f);
            if count == 0 || count > 2 || at + count > data.len() {
                return false;
            }
            let length = data[at..at + count]
                .iter()
                .fold(0usize, |acc, byte| (acc << 8) | usize::from(*byte));
            at += count;
            length
        };
        if at + length > data.len() {
            return false;
        }
        at += length;
    }
    true
}

/// A brand as the POS API names it.
pub fn brand_to_proto(brand: CardBrand) -> pb::CardBrand {
    match brand {
        CardBrand::Visa => pb::CardBrand::Visa,
        CardBrand::Mastercard => pb::CardBrand::Mastercard,
        CardBrand::Jcb => pb::CardBrand::Jcb,
        CardBrand::AmericanExpress => pb::CardBrand::AmericanExpress,
        CardBrand::Unionpay => pb::CardBrand::Unionpay,
        CardBrand::DinersClub => pb::CardBrand::DinersClub,
        CardBrand::Discover => pb::CardBrand::Discover,
        CardBrand::Other => pb::CardBrand::Other,
    }
}

/// The brand from its stored name, as the POS API names it.
pub fn brand_from_name(name: &str) -> pb::CardBrand {
    brand_to_proto(posgate_core::cards::card::brand_from_name(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn track2_with_sentinels_and_d_separator() {
        let parsed = parse_track2(";4111111111111111=29122010000000000000?5").unwrap();
        assert_eq!(parsed.pan.masked(), "411111******1111");
        assert_eq!(parsed.service_code, "201");
        assert_eq!(parsed.expiry.to_yymm(), "2912");
        assert!(parse_track2("4111111111111111D2912101").is_some());
        assert!(
            parse_track2("4111111111111112=2912101").is_none(),
            "bad Luhn"
        );
        assert!(parse_track2("4111111111111111=29").is_none(), "too short");
    }

    #[test]
    fn tlv_checks_lengths() {
        assert!(well_formed_tlv(
            &hex::decode("9F2608AABBCCDDEEFF00119F2701 80".replace(' ', "")).unwrap()
        ));
        assert!(!well_formed_tlv(&hex::decode("9F260811").unwrap()));
        assert!(well_formed_tlv(&hex::decode("5F2A020901").unwrap()));
    }
}
