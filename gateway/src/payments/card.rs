//! The card as presented at the counter: read from `CardInput`, checked
//! field by field (Luhn, expiry, track 2, PIN block, chip data), and held
//! only in zeroizing memory. Nothing here is ever logged or stored; what is
//! kept of a card is its masked PAN, brand and keyed fingerprint.

use chrono::NaiveDate;
use posgate_hsm::pan::luhn_valid;
use posgate_hsm::{CardExpiry, Pan, PinBlockFormat, Secret};
use posgate_proto::v1 as pb;
use zeroize::Zeroizing;

use crate::grpc::validate::Violations;

/// Longest track 2 accepted, sentinels included.
const MAX_TRACK2_LEN: usize = 40;
/// Most chip data bytes (ISO 8583 field 55 is LLLVAR up to 255).
const MAX_ICC_BYTES: usize = 255;
/// Longest PIN key id.
const MAX_KEY_ID_LEN: usize = 64;

/// How the card was read, with its ISO 8583 POS entry mode (field 22).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    Keyed,
    Chip,
    Contactless,
    Magstripe,
    MagstripeFallback,
}

impl EntryMode {
    /// Field 22: PAN entry mode (2 digits) and PIN entry capability (1 = can
    /// accept PINs; every posgate terminal has a PIN pad).
    pub fn iso8583_code(self) -> &'static str {
        match self {
            Self::Keyed => "011",
            Self::Chip => "051",
            Self::Contactless => "071",
            Self::Magstripe => "021",
            Self::MagstripeFallback => "801",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keyed => "keyed",
            Self::Chip => "chip",
            Self::Contactless => "contactless",
            Self::Magstripe => "magstripe",
            Self::MagstripeFallback => "magstripe_fallback",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Keyed,
            Self::Chip,
            Self::Contactless,
            Self::Magstripe,
            Self::MagstripeFallback,
        ]
        .into_iter()
        .find(|mode| mode.as_str() == text)
    }

    pub fn to_proto(self) -> pb::CardEntryMode {
        match self {
            Self::Keyed => pb::CardEntryMode::Keyed,
            Self::Chip => pb::CardEntryMode::Chip,
            Self::Contactless => pb::CardEntryMode::Contactless,
            Self::Magstripe => pb::CardEntryMode::Magstripe,
            Self::MagstripeFallback => pb::CardEntryMode::MagstripeFallback,
        }
    }

    fn from_proto(mode: pb::CardEntryMode) -> Option<Self> {
        match mode {
            pb::CardEntryMode::Unspecified => None,
            pb::CardEntryMode::Keyed => Some(Self::Keyed),
            pb::CardEntryMode::Chip => Some(Self::Chip),
            pb::CardEntryMode::Contactless => Some(Self::Contactless),
            pb::CardEntryMode::Magstripe => Some(Self::Magstripe),
            pb::CardEntryMode::MagstripeFallback => Some(Self::MagstripeFallback),
        }
    }

    fn reads_track(self) -> bool {
        matches!(self, Self::Magstripe | Self::MagstripeFallback)
    }
}

/// An online PIN as the PIN pad sent it.
#[derive(Debug)]
pub struct PinInput {
    pub format: PinBlockFormat,
    pub block: Secret<Vec<u8>>,
    pub key_id: String,
}

/// A card read and checked. `Debug` shows the PAN masked (6/4) and every
/// other card secret as `***`.
#[derive(Debug)]
pub struct PresentedCard {
    pub pan: Pan,
    pub expiry: CardExpiry,
    pub entry_mode: EntryMode,
    /// Track 2 equivalent data, normalized: sentinels and LRC stripped, `=` separator.
    pub track2: Option<Secret<String>>,
    pub pin: Option<PinInput>,
    pub icc_data: Option<Secret<Vec<u8>>>,
    pub security_code: Option<Secret<String>>,
    /// Track 2 service code, when swiped.
    pub service_code: Option<String>,
}

impl PresentedCard {
    /// A chip card (service code 2xx or 6xx) swiped without a failed chip read first.
    pub fn chip_card_swiped(&self) -> bool {
        self.entry_mode == EntryMode::Magstripe
            && self
                .service_code
                .as_deref()
                .is_some_and(|code| code.starts_with('2') || code.starts_with('6'))
    }

    pub fn expired_at(&self, local_date: NaiveDate) -> bool {
        self.expiry.is_expired_at(local_date)
    }

    /// Every sensitive value, length-prefixed, for the keyed request digest:
    /// a retry must present the same card data to be the same request.
    pub fn digest_parts(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        let mut push = |part: &[u8]| {
            out.extend_from_slice(&(part.len() as u64).to_be_bytes());
            out.extend_from_slice(part);
        };
        push(self.pan.digits().as_bytes());
        push(self.expiry.to_yymm().as_bytes());
        push(self.entry_mode.as_str().as_bytes());
        push(
            self.track2
                .as_ref()
                .map_or(&b""[..], |t| t.expose().as_bytes()),
        );
        push(
            self.pin
                .as_ref()
                .map_or(&b""[..], |p| p.block.expose().as_slice()),
        );
        push(self.pin.as_ref().map_or(&b""[..], |p| p.key_id.as_bytes()));
        push(
            self.icc_data
                .as_ref()
                .map_or(&b""[..], |d| d.expose().as_slice()),
        );
        push(
            self.security_code
                .as_ref()
                .map_or(&b""[..], |c| c.expose().as_bytes()),
        );
        out
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
        .and_then(EntryMode::from_proto);
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

/// The card scheme by its leading digits (the public IIN ranges).
pub fn brand_of(pan: &Pan) -> pb::CardBrand {
    let digits = pan.digits();
    let prefix = |len: usize| digits[..len].parse::<u32>().unwrap_or(0);
    match () {
        () if digits.starts_with('4') => pb::CardBrand::Visa,
        () if (51..=55).contains(&prefix(2)) || (2221..=2720).contains(&prefix(4)) => {
            pb::CardBrand::Mastercard
        }
        () if (3528..=3589).contains(&prefix(4)) => pb::CardBrand::Jcb,
        () if digits.starts_with("34") || digits.starts_with("37") => {
            pb::CardBrand::AmericanExpress
        }
        () if digits.starts_with("62") => pb::CardBrand::Unionpay,
        () if digits.starts_with("36") || (300..=305).contains(&prefix(3)) => {
            pb::CardBrand::DinersClub
        }
        () if digits.starts_with("6011") || digits.starts_with("65") => pb::CardBrand::Discover,
        () => pb::CardBrand::Other,
    }
}

/// The lower-case brand name used in configuration and storage.
pub fn brand_name(brand: pb::CardBrand) -> &'static str {
    match brand {
        pb::CardBrand::Visa => "visa",
        pb::CardBrand::Mastercard => "mastercard",
        pb::CardBrand::Jcb => "jcb",
        pb::CardBrand::AmericanExpress => "american_express",
        pb::CardBrand::Unionpay => "unionpay",
        pb::CardBrand::DinersClub => "diners_club",
        pb::CardBrand::Discover => "discover",
        pb::CardBrand::Other | pb::CardBrand::Unspecified => "other",
    }
}

/// The brand from its stored name.
pub fn brand_from_name(name: &str) -> pb::CardBrand {
    [
        pb::CardBrand::Visa,
        pb::CardBrand::Mastercard,
        pb::CardBrand::Jcb,
        pb::CardBrand::AmericanExpress,
        pb::CardBrand::Unionpay,
        pb::CardBrand::DinersClub,
        pb::CardBrand::Discover,
    ]
    .into_iter()
    .find(|brand| brand_name(*brand) == name)
    .unwrap_or(pb::CardBrand::Other)
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

    #[test]
    fn brands() {
        let brand = |digits: &str| brand_of(&Pan::parse(digits).unwrap());
        assert_eq!(brand("4111111111111111"), pb::CardBrand::Visa);
        assert_eq!(brand("5555555555554444"), pb::CardBrand::Mastercard);
        assert_eq!(brand("3530111333300000"), pb::CardBrand::Jcb);
        assert_eq!(brand("378282246310005"), pb::CardBrand::AmericanExpress);
    }

    /// A presented card prints its PAN masked (6/4) and none of its other
    /// card data, in `Debug` or pretty `Debug`; each secret alone prints
    /// `***` in `Display`.
    #[test]
    fn formatting_never_prints_card_data() {
        let card = PresentedCard {
            pan: Pan::parse("4111111111111111").unwrap(),
            expiry: CardExpiry::parse("2912").unwrap(),
            entry_mode: EntryMode::Chip,
            track2: Some(Secret::new("4111111111111111=29122010000000000".to_owned())),
            pin: Some(PinInput {
                format: PinBlockFormat::Iso0,
                block: Secret::new(vec![0x04, 0x12, 0x34, 0xFE, 0xDC, 0xBA, 0x98, 0x76]),
                key_id: "tpk-1".to_owned(),
            }),
            icc_data: Some(Secret::new(vec![0x9F, 0x26, 0x01, 0xAB])),
            security_code: Some(Secret::new("737".to_owned())),
            service_code: Some("201".to_owned()),
        };
        let clear = [
            "4111111111111111",
            "29122010000000000",
            "[4, 18, 52, 254, 220, 186, 152, 118]",
            "0412",
            "[159, 38, 1, 171]",
            "9F26",
            "737",
        ];
        for text in [format!("{card:?}"), format!("{card:#?}")] {
            for value in clear {
                assert!(!text.contains(value), "{value} in {text}");
            }
            assert!(text.contains("411111******1111"), "{text}");
        }
        let pin = card.pin.as_ref().unwrap();
        assert!(!format!("{pin:?}").contains("254"));
        let secrets = [
            card.pan.to_string(),
            card.track2.as_ref().unwrap().to_string(),
            pin.block.to_string(),
            card.icc_data.as_ref().unwrap().to_string(),
            card.security_code.as_ref().unwrap().to_string(),
        ];
        assert_eq!(secrets[0], "411111******1111");
        assert!(secrets[1..].iter().all(|text| text == "***"), "{secrets:?}");
    }
}
