//! A partner's acknowledgement file and the reconciliation report found
//! against it (parsed by `clearing::recon::ack`, matched by
//! `clearing::recon::matching`).

use std::collections::BTreeMap;

use chrono::NaiveDate;

/// The partner's verdict on one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckStatus {
    Accepted,
    /// Rejected, with the partner's reason code.
    Rejected(String),
}

/// One item line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckItem {
    /// The line it was on.
    pub line: usize,
    pub transaction_id: String,
    pub reference: String,
    pub currency: String,
    pub amount_minor: i64,
    pub status: AckStatus,
}

/// The partner's own totals for one currency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AckTotals {
    pub items: u64,
    pub accepted_minor: i64,
    pub rejected_minor: i64,
}

/// A parsed, internally consistent acknowledgement file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckFile {
    pub partner: String,
    pub business_date: NaiveDate,
    pub file_id: String,
    pub items: Vec<AckItem>,
    pub totals: BTreeMap<String, AckTotals>,
}

/// What kind of disagreement an exception is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExceptionKind {
    /// posgate has the item, the partner's file does not.
    MissingAtPartner,
    /// The partner's file has an item posgate has no record of.
    MissingAtPosgate,
    /// Both have it, the amounts differ.
    AmountMismatch,
    /// The partner rejected the item.
    Rejected,
}

impl ExceptionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingAtPartner => "missing_at_partner",
            Self::MissingAtPosgate => "missing_at_posgate",
            Self::AmountMismatch => "amount_mismatch",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::MissingAtPartner,
            Self::MissingAtPosgate,
            Self::AmountMismatch,
            Self::Rejected,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

/// One line of the reconciliation report that needs a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconException {
    pub kind: ExceptionKind,
    /// posgate's transaction id (empty when posgate has none).
    pub transaction_id: String,
    pub reference: String,
    pub currency: String,
    /// posgate's net amount, when posgate has the item.
    pub ours_minor: Option<i64>,
    /// The partner's amount, when its file has the item.
    pub theirs_minor: Option<i64>,
    /// The partner's reason code for a rejection, or a note.
    pub reason: String,
}

/// The whole report for one partner and business date.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconReport {
    /// Transactions both sides agree on.
    pub matched: u64,
    /// Sorted by kind, currency, transaction id, reference.
    pub exceptions: Vec<ReconException>,
}
