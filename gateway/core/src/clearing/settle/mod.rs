//! Settlement instructions: the day's net positions become money movements.
//! USD partners settle by a NACHA ACH file (CCD); partners in TWD, JPY (and
//! any other currency) by a fixed-width instruction file to posgate's bank.
//!
//! # Layout
//! - [`nacha`]: the NACHA ACH CCD file (layout in its module doc).
//! - [`instruction`]: the fixed-width instruction file (field positions in its module doc).
//! - [`check`]: both files read back by `posgate clearing verify`: structure,
//!   counts, hashes and totals recomputed from the entries.
//! - this file: the `[settlement]` config (originator details), the ABA
//!   check digit, and [`write_day`], positions to files.

pub mod check;
pub mod instruction;
pub mod nacha;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, NaiveDateTime};
use serde::Deserialize;

use super::model::{NetPosition, PartnerConfig, is_partner};

use self::instruction::{InstructionEntry, InstructionSpec};
use self::nacha::{AchEntry, AchFileSpec};

/// Why instructions could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// A configured value or a position cannot be put on a file; the message says which and why.
    #[error("settlement: {0}")]
    Invalid(String),
    #[error("settlement file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// posgate's side of the ACH file: its ODFI and company identity.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Originator {
    /// Immediate destination: the routing number of the ACH operator or receiving point (9 digits).
    pub destination_routing: String,
    pub destination_name: String,
    /// Immediate origin (10 characters, usually a company id or ` ` + routing number).
    pub origin_id: String,
    pub origin_name: String,
    pub company_name: String,
    /// Company identification (10 characters).
    pub company_id: String,
    /// The originating DFI's routing number (9 digits; its first 8 start every trace number).
    pub odfi_routing: String,
}

impl Originator {
    /// Checks routing numbers (ABA check digit) and field lengths.
    pub fn check(&self) -> Result<(), SettleError> {
        for (field, routing) in [
            ("destination_routing", &self.destination_routing),
            ("odfi_routing", &self.odfi_routing),
        ] {
            if !aba_check_digit_ok(routing) {
                return Err(SettleError::Invalid(format!(
                    "settlement.ach.{field}: {routing} is not a routing number (9 digits, ABA check digit)"
                )));
            }
        }
        for (field, value, max) in [
            ("origin_id", &self.origin_id, 10),
            ("company_id", &self.company_id, 10),
            ("company_name", &self.company_name, 16),
        ] {
            if value.is_empty() || value.len() > max || !value.is_ascii() {
                return Err(SettleError::Invalid(format!(
                    "settlement.ach.{field}: 1 to {max} ASCII characters"
                )));
            }
        }
        Ok(())
    }
}

/// posgate's account in one currency, debited or credited by the instruction file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginAccount {
    pub bank_code: String,
    pub account_number: String,
    pub name: String,
}

/// The `[settlement]` config section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettlementConfig {
    /// `[settlement.ach]`: needed when any partner settles in USD.
    #[serde(default)]
    pub ach: Option<Originator>,
    /// `[settlement.accounts.TWD]` ...: posgate's account per instruction-file currency.
    #[serde(default)]
    pub accounts: BTreeMap<String, OriginAccount>,
}

impl SettlementConfig {
    pub fn check(&self) -> Result<(), SettleError> {
        if let Some(ach) = &self.ach {
            ach.check()?;
        }
        Ok(())
    }
}

/// The ABA routing number check: 9 digits whose weighted sum (weights
/// 3, 7, 1 repeating) is a multiple of 10.
pub fn aba_check_digit_ok(routing: &str) -> bool {
    const WEIGHTS: [u32; 9] = [3, 7, 1, 3, 7, 1, 3, 7, 1];
    if routing.len() != 9 || !routing.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = routing
        .bytes()
        .zip(WEIGHTS)
        .map(|(digit, weight)| u32::from(digit - b'0') * weight)
        .sum();
    sum.is_multiple_of(10)
}

/// What one day's settlement run needs besides the positions.
#[derive(Debug, Clone)]
pub struct SettleRun<'a> {
    pub business_date: NaiveDate,
    /// The run's time, written on the files (never the wall clock: files are deterministic).
    pub created_at: NaiveDateTime,
    /// The run of the day, 1-based.
    pub run_sequence: u32,
    pub config: &'a SettlementConfig,
    pub partners: &'a [PartnerConfig],
}

/// The ACH file's name for a business date.
pub fn ach_file_name(business_date: NaiveDate) -> String {
    format!("settle-{}-USD.ach", business_date.format("%Y%m%d"))
}

/// Writes the day's instruction files into `dir` from the net positions
/// (partners only; zero positions move nothing). Returns the files written,
/// sorted by name. Same positions and run, same bytes.
pub fn write_day(
    run: &SettleRun<'_>,
    positions: &[NetPosition],
    dir: &Path,
) -> Result<Vec<PathBuf>, SettleError> {
    let mut by_currency: BTreeMap<&str, Vec<&NetPosition>> = BTreeMap::new();
    for position in positions {
        if is_partner(&position.partner) && position.net_minor != 0 {
            by_currency
                .entry(position.currency.as_str())
                .or_default()
                .push(position);
        }
    }
    let mut written = Vec::new();
    for (currency, mut positions) in by_currency {
        positions.sort_by(|a, b| a.partner.cmp(&b.partner));
        let (name, text) = if currency == "USD" {
            (
                ach_file_name(run.business_date),
                render_ach(run, &positions)?,
            )
        } else {
            (
                instruction::file_name(run.business_date, currency),
                render_instruction(run, currency, &positions)?,
            )
        };
        if let Some(text) = text {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|source| SettleError::Io {
                path: path.clone(),
                source,
            })?;
            written.push(path);
        }
    }
    written.sort();
    Ok(written)
}

fn partner<'a>(run: &'a SettleRun<'_>, id: &str) -> Result<&'a PartnerConfig, SettleError> {
    run.partners
        .iter()
        .find(|partner| partner.id == id)
        .ok_or_else(|| {
            SettleError::Invalid(format!(
                "partner {id} has a net position but no [[partner]] section with its account"
            ))
        })
}

fn missing(partner: &str, field: &str) -> SettleError {
    SettleError::Invalid(format!("partner {partner}: {field} is needed to settle"))
}

fn render_ach(
    run: &SettleRun<'_>,
    positions: &[&NetPosition],
) -> Result<Option<String>, SettleError> {
    let originator = run.config.ach.as_ref().ok_or_else(|| {
        SettleError::Invalid("USD positions need a [settlement.ach] section".to_owned())
    })?;
    let mut entries = Vec::with_capacity(positions.len());
    for position in positions {
        let config = partner(run, &position.partner)?;
        let entry = AchEntry {
            partner: position.partner.clone(),
            name: config.name.clone(),
            routing_number: config
                .routing_number
                .clone()
                .ok_or_else(|| missing(&position.partner, "routing_number"))?,
            account_number: config
                .account_number
                .clone()
                .ok_or_else(|| missing(&position.partner, "account_number"))?,
            amount_minor: position.net_minor,
        };
        nacha::check_entry(&entry)?;
        entries.push(entry);
    }
    let spec = AchFileSpec {
        business_date: run.business_date,
        created_at: run.created_at,
        run_sequence: run.run_sequence,
    };
    nacha::render(originator, &spec, &entries)
}

fn render_instruction(
    run: &SettleRun<'_>,
    currency: &str,
    positions: &[&NetPosition],
) -> Result<Option<String>, SettleError> {
    let origin = run.config.accounts.get(currency).ok_or_else(|| {
        SettleError::Invalid(format!(
            "{currency} positions need a [settlement.accounts.{currency}] section"
        ))
    })?;
    let mut entries = Vec::with_capacity(positions.len());
    for position in positions {
        let config = partner(run, &position.partner)?;
        entries.push(InstructionEntry {
            partner: position.partner.clone(),
            name: config.name.clone(),
            bank_code: config
                .bank_code
                .clone()
                .ok_or_else(|| missing(&position.partner, "bank_code"))?,
            account_number: config
                .account_number
                .clone()
                .ok_or_else(|| missing(&position.partner, "account_number"))?,
            amount_minor: position.net_minor,
        });
    }
    let spec = InstructionSpec {
        business_date: run.business_date,
        created_at: run.created_at,
        run_sequence: run.run_sequence,
        currency: currency.to_owned(),
    };
    instruction::render(&spec, origin, &entries)
}

#[cfg(test)]
mod tests {
    use super::aba_check_digit_ok;

    /// Known-good routing numbers pass, one changed digit fails.
    #[test]
    fn aba_check_digit() {
        for good in ["091000019", "011401533", "021000021", "111000025"] {
            assert!(aba_check_digit_ok(good), "{good}");
        }
        for bad in [
            "091000018",
            "01140153",
            "0114015330",
            "01140153a",
            "123456789",
        ] {
            assert!(!aba_check_digit_ok(bad), "{bad}");
        }
    }
}
