//! The biller registry: the billers of the config file, found by id or by
//! the agency code their slips carry.

use std::collections::HashMap;

use super::barcode::BarcodeProfile;
use super::config::BillerConfig;
use crate::model::FieldViolation;

/// Where a Taiwanese slip's agency code sits: characters 7-9 of segment 1.
const TW_AGENCY_CODE: std::ops::Range<usize> = 6..9;

/// Which country's slips a profile reads; agency codes are unique per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Family {
    Taiwan,
    Japan,
}

fn family(profile: BarcodeProfile) -> Family {
    match profile {
        BarcodeProfile::JapanGs1Cvs => Family::Japan,
        BarcodeProfile::TaiwanCvsThreeSegment | BarcodeProfile::TaiwanCvsThreeSegmentGregorian => {
            Family::Taiwan
        }
    }
}

/// The configured billers.
#[derive(Debug, Clone)]
pub struct BillerRegistry {
    billers: Vec<BillerConfig>,
    by_code: HashMap<(Family, String), usize>,
}

impl BillerRegistry {
    /// Indexes billers by id and agency code. Codes were checked unique per profile at config load;
    /// a code shared by two profiles of one family is refused here.
    pub fn new(billers: Vec<BillerConfig>) -> Result<Self, String> {
        let mut by_code = HashMap::new();
        for (index, biller) in billers.iter().enumerate() {
            for code in &biller.agency_codes {
                if by_code
                    .insert((family(biller.profile), code.clone()), index)
                    .is_some()
                {
                    return Err(format!("agency code {code} is configured for two billers"));
                }
            }
        }
        Ok(Self { billers, by_code })
    }

    pub fn by_id(&self, id: &str) -> Option<&BillerConfig> {
        self.billers.iter().find(|biller| biller.id == id)
    }

    pub fn all(&self) -> &[BillerConfig] {
        &self.billers
    }

    /// The biller of a scanned slip, by the agency code at its layout's place.
    /// One barcode is a Japanese slip, three a Taiwanese one.
    pub fn by_slip(&self, segments: &[&str]) -> Result<&BillerConfig, FieldViolation> {
        let (family, code) = match segments {
            [single] => (Family::Japan, jp_company_code(single)?),
            [first, _, _] => (Family::Taiwan, tw_agency_code(first)?),
            _ => {
                return Err(FieldViolation::new(
                    "slip.barcodes",
                    format!(
                        "expected 1 barcode (Japan GS1-128) or 3 (Taiwan Code 39), got {}",
                        segments.len()
                    ),
                ));
            }
        };
        self.by_code
            .get(&(family, code.to_owned()))
            .map(|&index| &self.billers[index])
            .ok_or_else(|| {
                FieldViolation::new(
                    "slip.barcodes[0]",
                    format!("agency code {code} is not a biller posgate collects for"),
                )
            })
    }
}

fn tw_agency_code(segment: &str) -> Result<&str, FieldViolation> {
    let segment = segment.trim();
    let length = segment.chars().count();
    if length < TW_AGENCY_CODE.end {
        return Err(FieldViolation::new(
            "slip.barcodes[0]",
            format!(
                "is {length} characters, too short for a Taiwan slip's first barcode (9 characters)"
            ),
        ));
    }
    // Code 39 carries ASCII only, where byte and character positions agree.
    if !segment
        .chars()
        .take(TW_AGENCY_CODE.end)
        .all(|c| c.is_ascii())
    {
        return Err(FieldViolation::new(
            "slip.barcodes[0]",
            "characters 1-9 (due date and agency code) must be digits and letters",
        ));
    }
    Ok(&segment[TW_AGENCY_CODE])
}

/// The 6-digit company code after "91", once scanner prefixes are removed.
fn jp_company_code(barcode: &str) -> Result<&str, FieldViolation> {
    let payload = barcode
        .trim()
        .trim_start_matches("]C1")
        .trim_start_matches('\u{1d}')
        .trim_start_matches("(91)");
    let payload = if barcode.contains("(91)") {
        payload
    } else {
        payload.strip_prefix("91").unwrap_or("")
    };
    payload
        .get(..6)
        .filter(|code| code.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            FieldViolation::new(
                "slip.barcodes[0]",
                "not a Japan GS1-128 slip: expected 44 digits starting 91",
            )
        })
}
