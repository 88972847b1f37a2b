//! The bank's acknowledgement file for a business date, written from the
//! simulator's OWN ledger (its settlement cycle, by RRN), so that posgate's
//! reconciliation compares its records against an independent one.
//!
//! The format is posgate's acknowledgement format (parsed strictly by the
//! gateway's `clearing::recon::ack`): ASCII lines ending in `\n`, fields
//! separated by `|`:
//! - `H|POSGATE-ACK|1|<partner>|<YYYY-MM-DD>|<file id>`: header, once, first.
//! - `D|<transaction id>|<reference>|<currency>|<amount minor>|<A or R>|<reason>`:
//!   one item. The bank knows no posgate transaction id, so it leaves it empty
//!   and names the item by its RRN (the reference). Amounts are signed from
//!   the partner's point of view, as on posgate's clearing files (a card sale
//!   is negative: the bank owes posgate). `A` accepted (reason empty), `R`
//!   rejected with a reason code.
//! - `T|<currency>|<items>|<accepted total>|<rejected total>`: the bank's own
//!   totals, one per currency, after the items.
//! - `E|<item count>`: end, once, last.
//!
//! [`AckFaults`] makes the file disagree with the ledger on purpose (drop an
//! item, change an amount, reject one, add one the ledger does not have) so
//! tests can prove reconciliation catches each.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::NaiveDate;

use super::ledger::SettledItem;
use posgate_partners::bank::protocol::currency_alpha;

/// One line of the acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckItem {
    /// The RRN.
    pub reference: String,
    /// ISO 4217 alpha.
    pub currency: String,
    /// Signed, the partner's point of view (negative: the bank owes posgate).
    pub amount_minor: i64,
    /// `None`: accepted; `Some(code)`: rejected with that reason code.
    pub rejected: Option<String>,
}

/// Deliberate disagreements with the ledger, applied to the written file only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckFaults {
    /// RRNs left out of the file.
    pub drop: Vec<String>,
    /// (RRN, amount written instead of the ledger's).
    pub change_amount: Vec<(String, i64)>,
    /// (RRN, reason code): written as rejected.
    pub reject: Vec<(String, String)>,
    /// Items the ledger does not have, added to the file.
    pub extra: Vec<AckItem>,
}

/// The ledger's settlement cycle as acknowledgement items (RRN order).
pub fn items_from_cycle(cycle: &[SettledItem]) -> Vec<AckItem> {
    cycle
        .iter()
        .map(|item| AckItem {
            reference: item.rrn.clone(),
            currency: currency_alpha(&item.currency)
                .unwrap_or(item.currency.as_str())
                .to_owned(),
            amount_minor: -item.posted_delta_minor,
            rejected: None,
        })
        .collect()
}

/// Applies the faults to the items.
pub fn apply_faults(mut items: Vec<AckItem>, faults: &AckFaults) -> Vec<AckItem> {
    items.retain(|item| !faults.drop.contains(&item.reference));
    for item in &mut items {
        if let Some((_, amount)) = faults
            .change_amount
            .iter()
            .find(|(rrn, _)| *rrn == item.reference)
        {
            item.amount_minor = *amount;
        }
        if let Some((_, reason)) = faults.reject.iter().find(|(rrn, _)| *rrn == item.reference) {
            item.rejected = Some(reason.clone());
        }
    }
    items.extend(faults.extra.iter().cloned());
    items
}

/// Writes the file: header, items, per-currency totals (the bank's own), end.
pub fn render(partner: &str, business_date: NaiveDate, file_id: &str, items: &[AckItem]) -> String {
    let mut text = format!("H|POSGATE-ACK|1|{partner}|{business_date}|{file_id}\n");
    // currency -> (items, accepted total, rejected total)
    let mut totals: BTreeMap<&str, (u64, i64, i64)> = BTreeMap::new();
    for item in items {
        let (status, reason) = match &item.rejected {
            None => ("A", ""),
            Some(reason) => ("R", reason.as_str()),
        };
        let _ = writeln!(
            text,
            "D||{}|{}|{}|{status}|{reason}",
            item.reference, item.currency, item.amount_minor
        );
        let total = totals.entry(item.currency.as_str()).or_default();
        total.0 += 1;
        if item.rejected.is_none() {
            total.1 += item.amount_minor;
        } else {
            total.2 += item.amount_minor;
        }
    }
    for (currency, (count, accepted, rejected)) in totals {
        let _ = writeln!(text, "T|{currency}|{count}|{accepted}|{rejected}");
    }
    let _ = writeln!(text, "E|{}", items.len());
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Items, faults and totals as the format says.
    #[test]
    fn renders_items_faults_and_totals() {
        let cycle = vec![
            SettledItem {
                rrn: "000000000001".into(),
                currency: "901".into(),
                posted_delta_minor: 1000,
            },
            SettledItem {
                rrn: "000000000002".into(),
                currency: "901".into(),
                posted_delta_minor: -300,
            },
        ];
        let faults = AckFaults {
            reject: vec![("000000000002".into(), "R03".into())],
            ..AckFaults::default()
        };
        let items = apply_faults(items_from_cycle(&cycle), &faults);
        let date = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        let text = render("bank:acquirer", date, "SIM-1", &items);
        assert_eq!(
            text,
            "H|POSGATE-ACK|1|bank:acquirer|2026-11-23|SIM-1\n\
             D||000000000001|TWD|-1000|A|\n\
             D||000000000002|TWD|300|R|R03\n\
             T|TWD|2|-1000|300\n\
             E|2\n"
        );
    }
}
