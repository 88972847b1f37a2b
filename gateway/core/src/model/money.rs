//! Money: ISO 4217 currencies with their exponents, amount bounds, and fee
//! contracts computed in `rust_decimal` with an explicit rounding rule.
//! Amounts are integer minor units everywhere; no floating point.

use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::Deserialize;

/// Largest amount any API field accepts: 1e12 - 1 minor units. Far above any
/// till transaction, far below `i64::MAX`, so sums of a day's items cannot overflow.
pub const MAX_AMOUNT_MINOR: u64 = 999_999_999_999;

/// A currency posgate settles in: its ISO 4217 code and minor-unit exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    pub code: &'static str,
    /// ISO 4217 numeric code, as ISO 8583 field 49 carries it.
    pub numeric: &'static str,
    pub exponent: u32,
}

/// The currencies posgate knows, with their ISO 4217 exponents. TWD has
/// exponent 2 in the standard even though Taiwanese bills and coins are whole
/// dollars: NT$1,234 is 123400 minor units on the wire, as in ISO 4217 and in
/// card networks.
const CURRENCIES: &[Currency] = &[
    Currency {
        code: "TWD",
        numeric: "901",
        exponent: 2,
    },
    Currency {
        code: "JPY",
        numeric: "392",
        exponent: 0,
    },
    Currency {
        code: "USD",
        numeric: "840",
        exponent: 2,
    },
    Currency {
        code: "HKD",
        numeric: "344",
        exponent: 2,
    },
    Currency {
        code: "SGD",
        numeric: "702",
        exponent: 2,
    },
    Currency {
        code: "EUR",
        numeric: "978",
        exponent: 2,
    },
];

impl Currency {
    /// Looks up an upper-case ISO 4217 alphabetic code.
    pub fn from_code(code: &str) -> Option<Self> {
        CURRENCIES
            .iter()
            .copied()
            .find(|currency| currency.code == code)
    }

    /// Minor units in one major unit (100 for TWD and USD, 1 for JPY).
    pub fn minor_per_major(self) -> u64 {
        10u64.pow(self.exponent)
    }
}

/// How a fee's fractional minor units are resolved. Contracts name one explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rounding {
    /// 0.5 goes away from zero (the usual commercial rule).
    HalfUp,
    /// 0.5 goes to the even neighbour (banker's rounding).
    HalfEven,
    /// Fractions are dropped.
    Down,
    /// Any fraction rounds up.
    Up,
}

impl Rounding {
    fn strategy(self) -> RoundingStrategy {
        match self {
            Self::HalfUp => RoundingStrategy::MidpointAwayFromZero,
            Self::HalfEven => RoundingStrategy::MidpointNearestEven,
            Self::Down => RoundingStrategy::ToZero,
            Self::Up => RoundingStrategy::AwayFromZero,
        }
    }
}

/// A fee contract as written in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FeeRule {
    /// The same fee for every item.
    Fixed { amount_minor: u64 },
    /// A percentage of the amount, clamped to `[min_minor, max_minor]`.
    Percent {
        rate_percent: String,
        min_minor: u64,
        max_minor: u64,
        rounding: Rounding,
    },
    /// A fixed fee chosen by the first tier whose `up_to_minor` covers the amount.
    Tiered { tiers: Vec<FeeTier> },
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeTier {
    pub up_to_minor: u64,
    pub fee_minor: u64,
}

/// A checked fee contract, ready to compute fees.
#[derive(Debug, Clone)]
pub enum FeeContract {
    Fixed {
        amount_minor: u64,
    },
    Percent {
        rate_percent: Decimal,
        min_minor: u64,
        max_minor: u64,
        rounding: Rounding,
    },
    Tiered {
        tiers: Vec<FeeTier>,
    },
}

impl FeeContract {
    /// Checks a configured rule; the error says what is wrong in words for the operator.
    pub fn new(rule: FeeRule, _currency: Currency) -> Result<Self, String> {
        match rule {
            FeeRule::Fixed { amount_minor } if amount_minor > MAX_AMOUNT_MINOR => {
                Err("amount_minor is too large".to_owned())
            }
            FeeRule::Fixed { amount_minor } => Ok(Self::Fixed { amount_minor }),
            FeeRule::Percent {
                rate_percent,
                min_minor,
                max_minor,
                rounding,
            } => {
                let rate = Decimal::from_str(&rate_percent).map_err(|_| {
                    format!("rate_percent {rate_percent:?} is not a decimal number")
                })?;
                if rate.is_sign_negative() || rate > Decimal::ONE_HUNDRED {
                    return Err("rate_percent must be between 0 and 100".to_owned());
                }
                if min_minor > max_minor || max_minor > MAX_AMOUNT_MINOR {
                    return Err("need min_minor <= max_minor <= 999999999999".to_owned());
                }
                Ok(Self::Percent {
                    rate_percent: rate,
                    min_minor,
                    max_minor,
                    rounding,
                })
            }
            FeeRule::Tiered { tiers } => {
                let ascending = tiers
                    .windows(2)
                    .all(|pair| pair[0].up_to_minor < pair[1].up_to_minor);
                let covers_all = tiers
                    .last()
                    .is_some_and(|tier| tier.up_to_minor >= MAX_AMOUNT_MINOR);
                if !ascending || !covers_all {
                    return Err(
                        "tiers must ascend by up_to_minor and the last must reach 999999999999"
                            .to_owned(),
                    );
                }
                Ok(Self::Tiered { tiers })
            }
        }
    }

    /// The fee for an item of `amount_minor`, in minor units. Never more than
    /// the amount: bill payments whose contract fee is not less than the
    /// amount are refused before (`bill::check_fee`), and a clearing item's
    /// fee cannot exceed the item.
    pub fn fee_minor(&self, amount_minor: u64) -> u64 {
        self.uncapped_fee_minor(amount_minor).min(amount_minor)
    }

    /// The fee the contract's rule gives for `amount_minor`, even when it
    /// exceeds the amount.
    pub fn uncapped_fee_minor(&self, amount_minor: u64) -> u64 {
        match self {
            Self::Fixed { amount_minor: fee } => *fee,
            Self::Percent {
                rate_percent,
                min_minor,
                max_minor,
                rounding,
            } => {
                let exact = Decimal::from(amount_minor) * rate_percent / Decimal::ONE_HUNDRED;
                let rounded = exact.round_dp_with_strategy(0, rounding.strategy());
                // The rounded value is a whole number between 0 and the amount, so it fits u64.
                let fee = u64::try_from(rounded.mantissa())
                    .expect("fee is a non-negative whole number")
                    / 10u64.pow(rounded.scale());
                fee.clamp(*min_minor, *max_minor)
            }
            Self::Tiered { tiers } => tiers
                .iter()
                .find(|tier| amount_minor <= tier.up_to_minor)
                .map_or(0, |tier| tier.fee_minor),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn percent(rate: &str, min: u64, max: u64, rounding: Rounding) -> FeeContract {
        FeeContract::new(
            FeeRule::Percent {
                rate_percent: rate.to_owned(),
                min_minor: min,
                max_minor: max,
                rounding,
            },
            Currency::from_code("TWD").unwrap(),
        )
        .unwrap()
    }

    /// Percentage fees round exactly as the contract names, at the .5 boundary too.
    #[test]
    fn percent_fee_rounds_by_contract() {
        // 1,250 * 0.2% = 2.5
        assert_eq!(percent("0.2", 0, 100, Rounding::HalfUp).fee_minor(1_250), 3);
        assert_eq!(
            percent("0.2", 0, 100, Rounding::HalfEven).fee_minor(1_250),
            2
        );
        assert_eq!(percent("0.2", 0, 100, Rounding::Down).fee_minor(1_299), 2);
        assert_eq!(percent("0.2", 0, 100, Rounding::Up).fee_minor(1_001), 3);
    }

    /// Minimum and maximum clamp the percentage, and a fee never exceeds the amount.
    #[test]
    fn percent_fee_is_clamped() {
        let contract = percent("1", 5, 50, Rounding::HalfUp);
        assert_eq!(contract.fee_minor(100), 5);
        assert_eq!(contract.fee_minor(1_000_000), 50);
        assert_eq!(contract.fee_minor(3), 3);
    }

    /// Tiers pick the first covering bracket.
    #[test]
    fn tiered_fee_picks_bracket() {
        let contract = FeeContract::new(
            FeeRule::Tiered {
                tiers: vec![
                    FeeTier {
                        up_to_minor: 1_000,
                        fee_minor: 5,
                    },
                    FeeTier {
                        up_to_minor: MAX_AMOUNT_MINOR,
                        fee_minor: 12,
                    },
                ],
            },
            Currency::from_code("JPY").unwrap(),
        )
        .unwrap();
        assert_eq!(contract.fee_minor(1_000), 5);
        assert_eq!(contract.fee_minor(1_001), 12);
    }

    /// Bad contracts are refused at load time with a reason.
    #[test]
    fn bad_contracts_are_refused() {
        let twd = Currency::from_code("TWD").unwrap();
        let rule = |rate: &str| FeeRule::Percent {
            rate_percent: rate.to_owned(),
            min_minor: 0,
            max_minor: 1,
            rounding: Rounding::Down,
        };
        assert!(FeeContract::new(rule("abc"), twd).is_err());
        assert!(FeeContract::new(rule("-1"), twd).is_err());
        assert!(FeeContract::new(rule("101"), twd).is_err());
        let gap = FeeRule::Tiered {
            tiers: vec![FeeTier {
                up_to_minor: 10,
                fee_minor: 1,
            }],
        };
        assert!(FeeContract::new(gap, twd).is_err());
    }
}
