//! The card as presented at the counter, once read from the request:
//! held only in zeroizing memory, never logged or stored; what is kept of a
//! card is its masked PAN, brand and keyed fingerprint. Reading it from the
//! wire (Luhn, expiry, track 2, PIN block, chip data) is the API's job.

use chrono::NaiveDate;
use posgate_hsm::{CardExpiry, Pan, PinBlockFormat, Secret};
use zeroize::Zeroizing;

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

    /// Whether the mode reads the magnetic stripe (and so sends track 2).
    pub fn reads_track(self) -> bool {
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

/// A card scheme, as posgate tells it from the PAN's leading digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardBrand {
    Visa,
    Mastercard,
    Jcb,
    AmericanExpress,
    Unionpay,
    DinersClub,
    Discover,
    Other,
}

impl CardBrand {
    /// Every brand, [`CardBrand::Other`] last.
    pub const ALL: [Self; 8] = [
        Self::Visa,
        Self::Mastercard,
        Self::Jcb,
        Self::AmericanExpress,
        Self::Unionpay,
        Self::DinersClub,
        Self::Discover,
        Self::Other,
    ];
}

/// The card scheme by its leading digits (the public IIN ranges).
pub fn brand_of(pan: &Pan) -> CardBrand {
    let digits = pan.digits();
    let prefix = |len: usize| digits[..len].parse::<u32>().unwrap_or(0);
    match () {
        () if digits.starts_with('4') => CardBrand::Visa,
        () if (51..=55).contains(&prefix(2)) || (2221..=2720).contains(&prefix(4)) => {
            CardBrand::Mastercard
        }
        () if (3528..=3589).contains(&prefix(4)) => CardBrand::Jcb,
        () if digits.starts_with("34") || digits.starts_with("37") => CardBrand::AmericanExpress,
        () if digits.starts_with("62") => CardBrand::Unionpay,
        () if digits.starts_with("36") || (300..=305).contains(&prefix(3)) => CardBrand::DinersClub,
        () if digits.starts_with("6011") || digits.starts_with("65") => CardBrand::Discover,
        () => CardBrand::Other,
    }
}

/// The lower-case brand name used in configuration and storage.
pub fn brand_name(brand: CardBrand) -> &'static str {
    match brand {
        CardBrand::Visa => "visa",
        CardBrand::Mastercard => "mastercard",
        CardBrand::Jcb => "jcb",
        CardBrand::AmericanExpress => "american_express",
        CardBrand::Unionpay => "unionpay",
        CardBrand::DinersClub => "diners_club",
        CardBrand::Discover => "discover",
        CardBrand::Other => "other",
    }
}

/// The brand from its stored name ([`CardBrand::Other`] when unknown).
pub fn brand_from_name(name: &str) -> CardBrand {
    CardBrand::ALL
        .into_iter()
        .find(|brand| brand_name(*brand) == name)
        .unwrap_or(CardBrand::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brands() {
        let brand = |digits: &str| brand_of(&Pan::parse(digits).unwrap());
        assert_eq!(brand("4111111111111111"), CardBrand::Visa);
        assert_eq!(brand("5555555555554444"), CardBrand::Mastercard);
        assert_eq!(brand("3530111333300000"), CardBrand::Jcb);
        assert_eq!(brand("378282246310005"), CardBrand::AmericanExpress);
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
