//! Reconciliation: posgate's clearing items of one partner and business
//! date against the partner's acknowledgement.
//!
//! posgate's side is netted per transaction and currency (a sale voided the
//! same day is two items netting to zero; a late reversal is an adjustment
//! item of the next day). Each acknowledgement item is matched by posgate's
//! transaction id when it carries one, else by its reference (bill reference
//! or card RRN). Then:
//! - matched, accepted, same amount: **matched**;
//! - matched, accepted, different amount: **amount mismatch**;
//! - matched or not, rejected by the partner: **rejected** (with its reason);
//! - an acknowledgement item posgate has no transaction for (or a second one
//!   for the same transaction): **missing at posgate**;
//! - a posgate transaction the partner did not list: **missing at partner**,
//!   unless it nets to zero (nothing moved, nothing to acknowledge).

use std::collections::{BTreeMap, HashMap};

use crate::clearing::model::ClearingItem;
use crate::model::recon::{AckFile, AckStatus};
use crate::model::recon::{ExceptionKind, ReconException, ReconReport};

/// posgate's net per transaction and currency.
#[derive(Debug)]
struct Ours {
    transaction_id: String,
    reference: String,
    currency: String,
    amount_minor: i64,
    matched: bool,
}

/// posgate's items netted per transaction and currency, and an index by (transaction id, currency).
fn net_ours(
    ours: impl IntoIterator<Item = ClearingItem>,
) -> (Vec<Ours>, HashMap<(String, String), usize>) {
    let mut nets: Vec<Ours> = Vec::new();
    let mut by_transaction: HashMap<(String, String), usize> = HashMap::new();
    for item in ours {
        let key = (item.transaction_id.clone(), item.currency.clone());
        let index = *by_transaction.entry(key).or_insert_with(|| {
            nets.push(Ours {
                transaction_id: item.transaction_id.clone(),
                reference: item.reference.clone(),
                currency: item.currency.clone(),
                amount_minor: 0,
                matched: false,
            });
            nets.len() - 1
        });
        nets[index].amount_minor += item.amount_minor;
    }
    (nets, by_transaction)
}

/// Reconciles posgate's items (one partner, one date) against the partner's file.
pub fn reconcile(ours: impl IntoIterator<Item = ClearingItem>, ack: &AckFile) -> ReconReport {
    let (mut nets, by_transaction) = net_ours(ours);
    let mut by_reference: HashMap<(String, String), Vec<usize>> = HashMap::new();
    for (index, net) in nets.iter().enumerate() {
        if !net.reference.is_empty() {
            by_reference
                .entry((net.reference.clone(), net.currency.clone()))
                .or_default()
                .push(index);
        }
    }

    let mut report = ReconReport::default();
    let mut found: Vec<Option<usize>> = Vec::with_capacity(ack.items.len());
    for item in &ack.items {
        let candidate = if item.transaction_id.is_empty() {
            by_reference
                .get(&(item.reference.clone(), item.currency.clone()))
                .and_then(|indexes| {
                    let open = || indexes.iter().copied().filter(|&i| !nets[i].matched);
                    open()
                        .find(|&i| nets[i].amount_minor == item.amount_minor)
                        .or_else(|| open().next())
                })
        } else {
            by_transaction
                .get(&(item.transaction_id.clone(), item.currency.clone()))
                .copied()
                .filter(|&i| !nets[i].matched)
        };
        if let Some(index) = candidate {
            nets[index].matched = true;
        }
        found.push(candidate);
    }
    for (item, candidate) in ack.items.iter().zip(found) {
        let ours = candidate.map(|index| &nets[index]);
        let exception = |kind, reason: &str| ReconException {
            kind,
            transaction_id: ours
                .map_or_else(|| item.transaction_id.clone(), |o| o.transaction_id.clone()),
            reference: if item.reference.is_empty() {
                ours.map(|o| o.reference.clone()).unwrap_or_default()
            } else {
                item.reference.clone()
            },
            currency: item.currency.clone(),
            ours_minor: ours.map(|o| o.amount_minor),
            theirs_minor: Some(item.amount_minor),
            reason: reason.to_owned(),
        };
        let line_note = format!("acknowledgement line {}", item.line);
        match (&item.status, ours) {
            (AckStatus::Rejected(reason), _) => {
                report
                    .exceptions
                    .push(exception(ExceptionKind::Rejected, reason));
            }
            (AckStatus::Accepted, None) => {
                report
                    .exceptions
                    .push(exception(ExceptionKind::MissingAtPosgate, &line_note));
            }
            (AckStatus::Accepted, Some(ours)) if ours.amount_minor != item.amount_minor => {
                report
                    .exceptions
                    .push(exception(ExceptionKind::AmountMismatch, &line_note));
            }
            (AckStatus::Accepted, Some(_)) => report.matched += 1,
        }
    }
    missing_at_partner(&nets, &mut report);
    report.exceptions.sort_by(|a, b| {
        (a.kind, &a.currency, &a.transaction_id, &a.reference).cmp(&(
            b.kind,
            &b.currency,
            &b.transaction_id,
            &b.reference,
        ))
    });
    report
}

/// posgate's transactions the partner did not list (those netting to zero moved nothing).
fn missing_at_partner(nets: &[Ours], report: &mut ReconReport) {
    for net in nets
        .iter()
        .filter(|net| !net.matched && net.amount_minor != 0)
    {
        report.exceptions.push(ReconException {
            kind: ExceptionKind::MissingAtPartner,
            transaction_id: net.transaction_id.clone(),
            reference: net.reference.clone(),
            currency: net.currency.clone(),
            ours_minor: Some(net.amount_minor),
            theirs_minor: None,
            reason: String::new(),
        });
    }
}

/// posgate's totals per currency over its items, to print beside the partner's.
pub fn our_totals(items: &[ClearingItem]) -> BTreeMap<String, i64> {
    let mut totals = BTreeMap::new();
    for item in items {
        *totals.entry(item.currency.clone()).or_insert(0) += item.amount_minor;
    }
    totals
}
