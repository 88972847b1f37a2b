//! Settlement parties: who is owed or owes on a settlement line. Parsed once
//! where text comes in (config, stored lines, acknowledgement files) and
//! displayed once, as `store:<id>`, `biller:<id>`, `bank:<link id>`,
//! `wallet:<id>` or `chain`.

use std::fmt;

use super::UnknownValue;
use super::ids::is_valid_id;

/// A settlement party.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Party {
    /// A shop: it collected the money at its counter.
    Store(String),
    /// A biller the chain collects bills for.
    Biller(String),
    /// A bank link (acquirer or co-brand issuer).
    Bank(String),
    /// An e-wallet operator.
    Wallet(String),
    /// The chain itself: it collects the fees.
    Chain,
}

impl Party {
    /// Parses `kind:id` (or `chain`); the id follows the id alphabet.
    pub fn parse(text: &str) -> Result<Self, UnknownValue> {
        if text == "chain" {
            return Ok(Self::Chain);
        }
        let unknown = || UnknownValue::new("settlement party", text);
        let (kind, id) = text.split_once(':').ok_or_else(unknown)?;
        if !is_valid_id(id) {
            return Err(unknown());
        }
        let id = id.to_owned();
        match kind {
            "store" => Ok(Self::Store(id)),
            "biller" => Ok(Self::Biller(id)),
            "bank" => Ok(Self::Bank(id)),
            "wallet" => Ok(Self::Wallet(id)),
            _ => Err(unknown()),
        }
    }

    /// Parses a partner: a biller, bank or wallet operator (the parties that
    /// get clearing files), not a shop or the chain.
    pub fn parse_partner(text: &str) -> Option<Self> {
        Self::parse(text).ok().filter(Self::is_partner)
    }

    /// True for partners, false for posgate's own parties (shops, the
    /// chain), whose lines only count in net positions.
    pub fn is_partner(&self) -> bool {
        matches!(self, Self::Biller(_) | Self::Bank(_) | Self::Wallet(_))
    }
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Store(id) => write!(f, "store:{id}"),
            Self::Biller(id) => write!(f, "biller:{id}"),
            Self::Bank(id) => write!(f, "bank:{id}"),
            Self::Wallet(id) => write!(f, "wallet:{id}"),
            Self::Chain => f.write_str("chain"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parties_read_back_what_they_print() {
        for party in [
            Party::Store("S001".into()),
            Party::Biller("TPC".into()),
            Party::Bank("acq-1".into()),
            Party::Wallet("W_1".into()),
            Party::Chain,
        ] {
            assert_eq!(Party::parse(&party.to_string()), Ok(party));
        }
    }

    #[test]
    fn only_known_kinds_with_valid_ids_parse() {
        for text in [
            "",
            "chain:",
            "store",
            "store:",
            "shop:S001",
            "biller:a b",
            "bank:S001:x",
        ] {
            assert!(Party::parse(text).is_err(), "{text:?} parsed");
        }
        assert_eq!(
            Party::parse("shop:S001").unwrap_err().to_string(),
            "unknown settlement party \"shop:S001\""
        );
    }

    #[test]
    fn partners_are_billers_banks_and_wallets() {
        assert!(Party::parse_partner("biller:TPC").is_some());
        assert!(Party::parse_partner("bank:acq").is_some());
        assert!(Party::parse_partner("wallet:W1").is_some());
        assert!(Party::parse_partner("store:S001").is_none());
        assert!(Party::parse_partner("chain").is_none());
    }
}
