//! ISO 4217 exponents for the currencies the suite pays in.

use anyhow::{Context as _, bail};

/// The minor-unit exponent of a currency the suite knows: TWD and USD have 2
/// (100 = one dollar), JPY 0 (1 = one yen).
///
/// # Errors
///
/// When the suite has no exponent for the code.
pub fn exponent(currency: &str) -> anyhow::Result<u32> {
    match currency {
        "TWD" | "USD" | "EUR" => Ok(2),
        "JPY" | "KRW" => Ok(0),
        other => {
            bail!("no ISO 4217 exponent known for currency {other:?} (known: TWD USD EUR JPY KRW)")
        }
    }
}

/// Whole currency units (as printed on a slip) in minor units.
///
/// # Errors
///
/// When the currency is unknown or the result does not fit an `i64`.
pub fn whole_to_minor(amount_whole: u64, currency: &str) -> anyhow::Result<i64> {
    let factor = 10_u64.pow(exponent(currency)?);
    amount_whole
        .checked_mul(factor)
        .and_then(|minor| i64::try_from(minor).ok())
        .with_context(|| format!("{amount_whole} {currency} does not fit in minor units"))
}
