//! The shared clearing model: what one partner's file carries (items), what
//! money moves (net positions), what a day's run produced, and the partner
//! settings that say how each partner's files look and what it pays.
//!
//! Amounts are signed integer minor units from the partner's point of view:
//! positive means posgate owes the partner, negative means the partner owes posgate.

use std::path::PathBuf;

use chrono::NaiveDate;
use serde::Deserialize;

use crate::model::money::{Currency, FeeContract, FeeRule};

/// One detail record of one partner's clearing file: one settlement line of
/// the partner, with the transaction's reference and the contract fee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearingItem {
    /// The settlement party: `biller:<id>`, `bank:<link id>`.
    pub partner: String,
    pub business_date: NaiveDate,
    pub transaction_id: String,
    /// Bill reference, or the card RRN; empty when the transaction has neither.
    pub reference: String,
    /// The settlement line kind (`collection`, `fee`, `card_sale`, `card_capture`,
    /// `card_refund`, `card_void`), or `adjustment:<kind>` for a late line moved
    /// from a closed day.
    pub kind: String,
    /// ISO 4217 alphabetic code.
    pub currency: String,
    /// Signed, from the partner's point of view (+ the partner is owed).
    pub amount_minor: i64,
    /// The partner's contract fee on this item (same sign as the amount; 0 without a contract).
    pub fee_minor: i64,
    pub store_id: String,
}

/// What one party is owed (positive) or owes (negative) for a business date in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetPosition {
    pub partner: String,
    pub currency: String,
    /// Sum of the items' amounts.
    pub gross_minor: i64,
    /// Sum of the items' contract fees (what the party pays posgate's chain for clearing).
    pub fees_minor: i64,
    /// `gross_minor - fees_minor` for partners; the chain's position adds every partner's fees.
    pub net_minor: i64,
    pub items: u64,
}

/// What a day's clearing run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayRun {
    pub business_date: NaiveDate,
    /// Every file written (clearing files, CSVs, signatures, the manifest), in manifest order.
    pub files: Vec<PathBuf>,
    /// Net positions of every party of the day, sorted by party then currency.
    pub positions: Vec<NetPosition>,
}

/// How a partner's clearing file is laid out (see `clearing::files`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum FileProfile {
    /// Taiwan-style fixed width, 120-byte records, amounts in TWD minor units.
    #[serde(rename = "tw-fixed")]
    TwFixed,
    /// Japan-style fixed width (Zengin-like 120-byte records with data-type digits).
    #[serde(rename = "jp-fixed")]
    JpFixed,
    /// US partner settled by ACH: the clearing file uses the Taiwan-style
    /// layout; settlement instructions are a NACHA file (`clearing::settle`).
    #[serde(rename = "us-ach")]
    UsAch,
}

impl FileProfile {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TwFixed => "tw-fixed",
            Self::JpFixed => "jp-fixed",
            Self::UsAch => "us-ach",
        }
    }
}

/// A `[[partner]]` section as written in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPartner {
    /// The settlement party, e.g. `biller:TPC` or `bank:acquirer`.
    pub id: String,
    pub profile: FileProfile,
    pub currency: String,
    /// The clearing fee contract; no fee when absent.
    #[serde(default)]
    pub fee: Option<FeeRule>,
    /// ACH: the partner's bank routing number (9 digits).
    #[serde(default)]
    pub routing_number: Option<String>,
    /// ACH: the partner's account number.
    #[serde(default)]
    pub account_number: Option<String>,
    /// ACH: the company id posgate's chain uses with this partner.
    #[serde(default)]
    pub company_id: Option<String>,
    /// Instruction file (TWD, JPY): the partner's bank and branch code.
    #[serde(default)]
    pub bank_code: Option<String>,
    /// The partner's display name on files (defaults to the id).
    #[serde(default)]
    pub name: Option<String>,
}

/// A checked partner: file profile, currency, fee contract, settlement details.
#[derive(Debug, Clone)]
pub struct PartnerConfig {
    pub id: String,
    pub name: String,
    pub profile: FileProfile,
    pub currency: Currency,
    pub fee: Option<FeeContract>,
    pub routing_number: Option<String>,
    pub account_number: Option<String>,
    pub company_id: Option<String>,
    pub bank_code: Option<String>,
}

impl PartnerConfig {
    /// Checks a configured partner; the error names the field and why.
    pub fn check(raw: RawPartner) -> Result<Self, (String, String)> {
        if crate::model::Party::parse_partner(&raw.id).is_none() {
            return Err((
                "id".to_owned(),
                "must be biller:<id>, bank:<link id> or wallet:<id>".to_owned(),
            ));
        }
        let currency = Currency::from_code(&raw.currency).ok_or_else(|| {
            (
                "currency".to_owned(),
                "not an ISO 4217 code posgate knows".to_owned(),
            )
        })?;
        let fee = raw
            .fee
            .map(|rule| FeeContract::new(rule, currency))
            .transpose()
            .map_err(|reason| ("fee".to_owned(), reason))?;
        if let Some(routing) = &raw.routing_number
            && !crate::clearing::settle::aba_check_digit_ok(routing)
        {
            return Err((
                "routing_number".to_owned(),
                "must be 9 digits with a valid ABA check digit".to_owned(),
            ));
        }
        if let Some(bank_code) = &raw.bank_code
            && (bank_code.is_empty()
                || bank_code.len() > 10
                || !bank_code.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(("bank_code".to_owned(), "must be 1 to 10 digits".to_owned()));
        }
        Ok(Self {
            name: raw.name.unwrap_or_else(|| raw.id.clone()),
            id: raw.id,
            profile: raw.profile,
            currency,
            fee,
            routing_number: raw.routing_number,
            account_number: raw.account_number,
            company_id: raw.company_id,
            bank_code: raw.bank_code,
        })
    }

    /// A partner nobody configured: Taiwan-style layout, no fee.
    pub fn unconfigured(id: &str, currency: Currency) -> Self {
        Self {
            id: id.to_owned(),
            name: id.to_owned(),
            profile: FileProfile::TwFixed,
            currency,
            fee: None,
            routing_number: None,
            account_number: None,
            company_id: None,
            bank_code: None,
        }
    }

    /// The contract fee on an item: computed on the absolute amount, carrying
    /// its sign (a reversal gives the fee back). Items of kind `fee` (the
    /// biller's collection fee line) carry no clearing fee.
    pub fn item_fee_minor(&self, kind: &str, amount_minor: i64) -> i64 {
        let base_kind = kind.strip_prefix("adjustment:").unwrap_or(kind);
        match &self.fee {
            Some(contract) if base_kind != "fee" && amount_minor != 0 => {
                let fee = contract.fee_minor(amount_minor.unsigned_abs());
                let fee = i64::try_from(fee).expect("fee is at most the amount");
                if amount_minor < 0 { -fee } else { fee }
            }
            _ => 0,
        }
    }
}

/// True for parties that get clearing files (partners), false for posgate's
/// own parties (`store:<id>`, `chain`), whose lines only count in net positions.
pub fn is_partner(party: &str) -> bool {
    crate::model::Party::parse_partner(party).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partner(fee: &str) -> PartnerConfig {
        let raw: RawPartner = toml::from_str(&format!(
            "id = \"biller:TPC\"\nprofile = \"tw-fixed\"\ncurrency = \"TWD\"\nfee = {fee}\n"
        ))
        .unwrap();
        PartnerConfig::check(raw).unwrap()
    }

    /// A fixed fee applies to every principal item, reversed with a reversal, never to fee lines.
    #[test]
    fn fixed_fee_per_item() {
        let contract = partner(r#"{ kind = "fixed", amount_minor = 250 }"#);
        assert_eq!(contract.item_fee_minor("collection", 100_000), 250);
        assert_eq!(
            contract.item_fee_minor("adjustment:collection", -100_000),
            -250
        );
        assert_eq!(contract.item_fee_minor("fee", -1_000), 0);
        assert_eq!(contract.item_fee_minor("adjustment:fee", 1_000), 0);
        // Never more than the item.
        assert_eq!(contract.item_fee_minor("card_sale", 100), 100);
        assert_eq!(contract.item_fee_minor("card_sale", 0), 0);
    }

    /// At exactly .5 of a minor unit, half-up and half-even differ; away from .5 they agree.
    #[test]
    fn percent_fee_rounding_at_half() {
        let half_up = partner(
            r#"{ kind = "percent", rate_percent = "1.5", min_minor = 0, max_minor = 999999999999, rounding = "half-up" }"#,
        );
        let half_even = partner(
            r#"{ kind = "percent", rate_percent = "1.5", min_minor = 0, max_minor = 999999999999, rounding = "half-even" }"#,
        );
        // 100 * 1.5% = 1.5: half-up 2, half-even 2 (2 is even).
        assert_eq!(half_up.item_fee_minor("card_sale", 100), 2);
        assert_eq!(half_even.item_fee_minor("card_sale", 100), 2);
        // 300 * 1.5% = 4.5: half-up 5, half-even 4.
        assert_eq!(half_up.item_fee_minor("card_sale", 300), 5);
        assert_eq!(half_even.item_fee_minor("card_sale", 300), 4);
        // Negative items round on the absolute amount, then take the sign.
        assert_eq!(half_up.item_fee_minor("card_refund", -300), -5);
        assert_eq!(half_even.item_fee_minor("card_refund", -300), -4);
        // 301 * 1.5% = 4.515 and 299 * 1.5% = 4.485: both rules agree off the midpoint.
        assert_eq!(half_up.item_fee_minor("card_sale", 301), 5);
        assert_eq!(half_even.item_fee_minor("card_sale", 301), 5);
        assert_eq!(half_up.item_fee_minor("card_sale", 299), 4);
        assert_eq!(half_even.item_fee_minor("card_sale", 299), 4);
        let down = partner(
            r#"{ kind = "percent", rate_percent = "1.5", min_minor = 0, max_minor = 999999999999, rounding = "down" }"#,
        );
        let up = partner(
            r#"{ kind = "percent", rate_percent = "1.5", min_minor = 0, max_minor = 999999999999, rounding = "up" }"#,
        );
        assert_eq!(down.item_fee_minor("card_sale", 399), 5);
        assert_eq!(up.item_fee_minor("card_sale", 401), 7);
    }

    /// The minimum and maximum clamp the percentage exactly at and beyond their edges.
    #[test]
    fn percent_fee_min_max_clamps() {
        let contract = partner(
            r#"{ kind = "percent", rate_percent = "2", min_minor = 100, max_minor = 1000, rounding = "half-up" }"#,
        );
        // 2% of 4,999 = 99.98 -> 100 (rounds onto the minimum); 2% of 4,900 = 98 -> clamped to 100.
        assert_eq!(contract.item_fee_minor("collection", 4_999), 100);
        assert_eq!(contract.item_fee_minor("collection", 4_900), 100);
        // 2% of 5,050 = 101: inside the band.
        assert_eq!(contract.item_fee_minor("collection", 5_050), 101);
        // 2% of 50,000 = 1,000 exactly the maximum; 50,025 -> 1,000.5 -> 1,001 clamped to 1,000.
        assert_eq!(contract.item_fee_minor("collection", 50_000), 1_000);
        assert_eq!(contract.item_fee_minor("collection", 50_025), 1_000);
        assert_eq!(contract.item_fee_minor("collection", -50_025), -1_000);
        // The minimum never exceeds the item itself.
        assert_eq!(contract.item_fee_minor("collection", 60), 60);
    }

    /// Tier boundaries are inclusive: `up_to_minor` itself is in the lower tier.
    #[test]
    fn tiered_fee_boundaries() {
        let contract = partner(
            r#"{ kind = "tiered", tiers = [ { up_to_minor = 10000, fee_minor = 10 }, { up_to_minor = 50000, fee_minor = 25 }, { up_to_minor = 999999999999, fee_minor = 40 } ] }"#,
        );
        assert_eq!(contract.item_fee_minor("collection", 10_000), 10);
        assert_eq!(contract.item_fee_minor("collection", 10_001), 25);
        assert_eq!(contract.item_fee_minor("collection", 50_000), 25);
        assert_eq!(contract.item_fee_minor("collection", 50_001), 40);
        assert_eq!(
            contract.item_fee_minor("adjustment:collection", -10_001),
            -25
        );
        assert_eq!(contract.item_fee_minor("collection", 5), 5);
    }

    /// Partner sections are checked: party form, currency, fee, ACH routing number.
    #[test]
    fn bad_partners_are_refused() {
        let check = |text: &str| PartnerConfig::check(toml::from_str::<RawPartner>(text).unwrap());
        assert_eq!(
            check("id = \"store:S001\"\nprofile = \"tw-fixed\"\ncurrency = \"TWD\"")
                .unwrap_err()
                .0,
            "id"
        );
        assert_eq!(
            check("id = \"biller:X\"\nprofile = \"tw-fixed\"\ncurrency = \"XXX\"")
                .unwrap_err()
                .0,
            "currency"
        );
        assert_eq!(
            check("id = \"bank:us\"\nprofile = \"us-ach\"\ncurrency = \"USD\"\nrouting_number = \"12\"")
                .unwrap_err()
                .0,
            "routing_number"
        );
        assert!(check("id = \"biller:X\"\nprofile = \"jp-fixed\"\ncurrency = \"JPY\"").is_ok());
        assert!(is_partner("bank:acquirer"));
        assert!(!is_partner("store:S001"));
        assert!(!is_partner("chain"));
    }
}
