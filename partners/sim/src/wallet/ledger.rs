//! The operator's books: wallet balances with limits, every top-up, payment
//! and refund by posgate's transaction id (applied at most once), reversals
//! (applied at most once, and blocking a late original). Pure, no I/O.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::config::WalletSimConfig;
use posgate_hsm::Secret;
use posgate_partners::wallet::api::{
    DeclineCode, Money, PaymentRequest, RefundRequest, ResultStatus, ReversalStatus, TopUpRequest,
    TransactionKind, TransactionState, WalletIdentity, WalletLimits, WalletRef, last4,
};

/// Transactions the books hold at most; past it new ones are declined
/// (OTHER) rather than growing without bound.
pub const MAX_TRANSACTIONS: usize = 2_000_000;

/// Operator response codes, as a typical operator's host sends them.
pub const RC_APPROVED: &str = "00";
pub const RC_NOT_FOUND: &str = "14";
pub const RC_INSUFFICIENT: &str = "51";
pub const RC_LIMIT: &str = "61";
pub const RC_BLOCKED: &str = "62";
pub const RC_OTHER: &str = "96";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wallet {
    pub account_id: String,
    pub balance_minor: i64,
    pub max_balance_minor: i64,
    pub max_top_up_minor: Option<i64>,
    pub max_payment_minor: Option<i64>,
    pub blocked: bool,
}

/// One money-moving transaction as the operator recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: TransactionKind,
    pub account_id: Option<String>,
    pub amount_minor: i64,
    pub completed: bool,
    pub decline_code: Option<DeclineCode>,
    pub reversed: bool,
    /// A reversal was refused (it would have taken the wallet below zero):
    /// the transaction stands for good.
    pub reversal_refused: bool,
    /// For payments: completed refunds not reversed.
    pub refunded_minor: i64,
    /// For refunds: the payment.
    pub original: Option<String>,
    pub operator_reference: String,
    pub balance_after_minor: Option<i64>,
    pub processed_at: String,
}

/// The result of a top-up, payment or refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: ResultStatus,
    pub decline_code: Option<DeclineCode>,
    pub response_code: &'static str,
    pub operator_reference: Option<String>,
    pub wallet: Option<WalletIdentity>,
    pub balance_after: Option<Money>,
    pub processed_at: String,
}

/// Totals for reconciliation: opening + top-ups - payments + refunds = balances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerTotals {
    pub opening_minor: i64,
    pub balances_minor: i64,
    pub top_ups_minor: i64,
    pub payments_minor: i64,
    pub refunds_minor: i64,
    pub completed: u64,
    pub declined: u64,
    pub reversed: u64,
}

#[derive(Debug, Clone)]
pub struct LedgerSnapshot {
    pub wallets: BTreeMap<String, Wallet>,
    pub totals: LedgerTotals,
}

#[derive(Debug)]
pub struct Ledger {
    operator_name: String,
    currency: String,
    wallets: BTreeMap<String, Wallet>,
    /// Member barcode -> account id (the barcode prints masked).
    barcodes: HashMap<Secret<String>, String>,
    entries: HashMap<String, Entry>,
    /// Reversals that arrived before (or instead of) their original.
    tombstones: HashSet<String>,
    opening_minor: i64,
    next_reference: u64,
}

fn decline(code: DeclineCode) -> &'static str {
    match code {
        DeclineCode::InsufficientBalance => RC_INSUFFICIENT,
        DeclineCode::BalanceLimitExceeded
        | DeclineCode::TransactionLimitExceeded
        | DeclineCode::RefundExceedsPayment => RC_LIMIT,
        DeclineCode::WalletBlocked => RC_BLOCKED,
        DeclineCode::WalletNotFound => RC_NOT_FOUND,
        _ => RC_OTHER,
    }
}

impl Ledger {
    pub fn new(config: &WalletSimConfig) -> Self {
        let mut wallets = BTreeMap::new();
        let mut barcodes = HashMap::new();
        for wallet in &config.wallets {
            if let Some(barcode) = &wallet.member_barcode {
                barcodes.insert(barcode.clone(), wallet.account_id.clone());
            }
            wallets.insert(
                wallet.account_id.clone(),
                Wallet {
                    account_id: wallet.account_id.clone(),
                    balance_minor: wallet.balance_minor,
                    max_balance_minor: wallet.max_balance_minor,
                    max_top_up_minor: wallet.max_top_up_minor,
                    max_payment_minor: wallet.max_payment_minor,
                    blocked: wallet.blocked,
                },
            );
        }
        let opening_minor = wallets.values().map(|wallet| wallet.balance_minor).sum();
        Self {
            operator_name: config.operator_name.clone(),
            currency: config.currency.clone(),
            wallets,
            barcodes,
            entries: HashMap::new(),
            tombstones: HashSet::new(),
            opening_minor,
            next_reference: 1,
        }
    }

    pub fn currency(&self) -> &str {
        &self.currency
    }

    fn resolve(&self, wallet: &WalletRef) -> Option<String> {
        match (&wallet.account_id, &wallet.member_barcode) {
            (Some(account), _) => self.wallets.contains_key(account).then(|| account.clone()),
            (None, Some(barcode)) => self.barcodes.get(barcode).cloned(),
            (None, None) => None,
        }
    }

    fn identity(&self, account_id: &str) -> WalletIdentity {
        WalletIdentity {
            account_id: account_id.to_owned(),
            display_id: last4(account_id),
            operator_name: self.operator_name.clone(),
        }
    }

    /// A top-up, applied once per transaction id.
    pub fn top_up(&mut self, request: &TopUpRequest, now: &str) -> Outcome {
        let account = self.resolve(&request.wallet);
        self.apply(
            &request.transaction_id,
            TransactionKind::WalletTopUp,
            account,
            &request.amount,
            None,
            now,
            |wallet, amount| {
                if wallet.max_top_up_minor.is_some_and(|limit| amount > limit) {
                    return Err(DeclineCode::TransactionLimitExceeded);
                }
                if wallet.balance_minor + amount > wallet.max_balance_minor {
                    return Err(DeclineCode::BalanceLimitExceeded);
                }
                Ok(amount)
            },
        )
    }

    /// A payment, applied once per transaction id.
    pub fn pay(&mut self, request: &PaymentRequest, now: &str) -> Outcome {
        let account = self.resolve(&request.wallet);
        self.apply(
            &request.transaction_id,
            TransactionKind::WalletPayment,
            account,
            &request.amount,
            None,
            now,
            |wallet, amount| {
                if wallet.max_payment_minor.is_some_and(|limit| amount > limit) {
                    return Err(DeclineCode::TransactionLimitExceeded);
                }
                if wallet.balance_minor < amount {
                    return Err(DeclineCode::InsufficientBalance);
                }
                Ok(-amount)
            },
        )
    }

    /// A refund of a completed payment, applied once per transaction id.
    pub fn refund(&mut self, request: &RefundRequest, now: &str) -> Option<Outcome> {
        if let Some(entry) = self.entries.get(&request.transaction_id) {
            return Some(self.outcome_of(entry));
        }
        let original = self.entries.get(&request.original_transaction_id)?;
        let refundable = original.kind == TransactionKind::WalletPayment
            && original.completed
            && !original.reversed;
        let remaining = original.amount_minor - original.refunded_minor;
        let account = original.account_id.clone();
        let amount = request.amount.amount_minor;
        let outcome = self.apply(
            &request.transaction_id,
            TransactionKind::WalletRefund,
            account,
            &request.amount,
            Some(request.original_transaction_id.clone()),
            now,
            |wallet, _| {
                if !refundable {
                    return Err(DeclineCode::NotRefundable);
                }
                if amount > remaining {
                    return Err(DeclineCode::RefundExceedsPayment);
                }
                if wallet.balance_minor + amount > wallet.max_balance_minor {
                    return Err(DeclineCode::BalanceLimitExceeded);
                }
                Ok(amount)
            },
        );
        if outcome.status == ResultStatus::Completed
            && let Some(payment) = self.entries.get_mut(&request.original_transaction_id)
        {
            payment.refunded_minor += amount;
        }
        Some(outcome)
    }

    #[allow(clippy::too_many_arguments, clippy::needless_pass_by_value)] // One private helper shared by the three money moves.
    fn apply(
        &mut self,
        transaction_id: &str,
        kind: TransactionKind,
        account: Option<String>,
        amount: &Money,
        original: Option<String>,
        now: &str,
        rule: impl FnOnce(&Wallet, i64) -> Result<i64, DeclineCode>,
    ) -> Outcome {
        if let Some(entry) = self.entries.get(transaction_id) {
            return self.outcome_of(entry);
        }
        let result = self.decide(transaction_id, account.as_deref(), amount, rule);
        let reference = format!("W{:012}", self.next_reference);
        self.next_reference += 1;
        let mut entry = Entry {
            kind,
            account_id: account.clone(),
            amount_minor: amount.amount_minor,
            completed: false,
            decline_code: None,
            reversed: false,
            reversal_refused: false,
            refunded_minor: 0,
            original,
            operator_reference: reference,
            balance_after_minor: None,
            processed_at: now.to_owned(),
        };
        match result {
            Ok(delta) => {
                let wallet = self
                    .wallets
                    .get_mut(account.as_deref().unwrap_or_default())
                    .expect("decide() found the wallet");
                wallet.balance_minor += delta;
                entry.completed = true;
                entry.balance_after_minor = Some(wallet.balance_minor);
            }
            Err(code) => entry.decline_code = Some(code),
        }
        let outcome = self.outcome_of(&entry);
        self.entries.insert(transaction_id.to_owned(), entry);
        outcome
    }

    fn decide(
        &self,
        transaction_id: &str,
        account: Option<&str>,
        amount: &Money,
        rule: impl FnOnce(&Wallet, i64) -> Result<i64, DeclineCode>,
    ) -> Result<i64, DeclineCode> {
        if self.tombstones.contains(transaction_id) {
            return Err(DeclineCode::AlreadyReversed);
        }
        if self.entries.len() >= MAX_TRANSACTIONS {
            return Err(DeclineCode::Other);
        }
        let wallet = account
            .and_then(|account| self.wallets.get(account))
            .ok_or(DeclineCode::WalletNotFound)?;
        if wallet.blocked {
            return Err(DeclineCode::WalletBlocked);
        }
        if amount.currency != self.currency {
            return Err(DeclineCode::CurrencyMismatch);
        }
        rule(wallet, amount.amount_minor)
    }

    fn outcome_of(&self, entry: &Entry) -> Outcome {
        Outcome {
            status: if entry.completed {
                ResultStatus::Completed
            } else {
                ResultStatus::Declined
            },
            decline_code: entry.decline_code,
            response_code: entry.decline_code.map_or(RC_APPROVED, decline),
            operator_reference: entry.completed.then(|| entry.operator_reference.clone()),
            wallet: entry
                .account_id
                .as_deref()
                .map(|account| self.identity(account)),
            balance_after: entry
                .balance_after_minor
                .map(|balance| Money::new(balance, &self.currency)),
            processed_at: entry.processed_at.clone(),
        }
    }

    /// Undoes a transaction at most once; an unknown one is tombstoned. A
    /// reversal that would take the wallet below zero (a top-up or refund
    /// whose money was already spent) is refused, for good: the original
    /// stands, as a real operator's would, and no balance ever goes negative.
    pub fn reverse(&mut self, original_id: &str) -> (ReversalStatus, Option<Money>) {
        let Some(entry) = self.entries.get(original_id).cloned() else {
            self.tombstones.insert(original_id.to_owned());
            return (ReversalStatus::NotApplied, None);
        };
        if !entry.completed {
            return (ReversalStatus::NotApplied, None);
        }
        let account = entry.account_id.clone().unwrap_or_default();
        let balance_minor = self
            .wallets
            .get(&account)
            .map_or(0, |wallet| wallet.balance_minor);
        let balance = Some(Money::new(balance_minor, &self.currency));
        if entry.reversed {
            return (ReversalStatus::Reversed, balance);
        }
        if entry.reversal_refused {
            return (ReversalStatus::Refused, balance);
        }
        let delta = match entry.kind {
            TransactionKind::WalletPayment => entry.amount_minor - entry.refunded_minor,
            // A top-up or refund credited the wallet: take it back.
            _ => -entry.amount_minor,
        };
        if balance_minor + delta < 0 {
            if let Some(stored) = self.entries.get_mut(original_id) {
                stored.reversal_refused = true;
            }
            return (ReversalStatus::Refused, balance);
        }
        if entry.kind == TransactionKind::WalletRefund
            && let Some(payment) = entry
                .original
                .as_ref()
                .and_then(|id| self.entries.get_mut(id))
        {
            payment.refunded_minor -= entry.amount_minor;
        }
        if let Some(stored) = self.entries.get_mut(original_id) {
            stored.reversed = true;
        }
        let wallet = self
            .wallets
            .get_mut(&account)
            .expect("completed entries have a wallet");
        wallet.balance_minor += delta;
        debug_assert!(
            wallet.balance_minor >= 0,
            "a reversal left a wallet negative"
        );
        (
            ReversalStatus::Reversed,
            Some(Money::new(wallet.balance_minor, &self.currency)),
        )
    }

    /// A wallet's balance and limits, by reference.
    pub fn balance(
        &self,
        wallet: &WalletRef,
    ) -> Option<(WalletIdentity, Money, WalletLimits, bool)> {
        let account = self.resolve(wallet)?;
        let stored = self.wallets.get(&account)?;
        let money = |minor: i64| Money::new(minor, &self.currency);
        Some((
            self.identity(&account),
            money(stored.balance_minor),
            WalletLimits {
                max_balance: Some(money(stored.max_balance_minor)),
                max_top_up: stored.max_top_up_minor.map(money),
                max_payment: stored.max_payment_minor.map(money),
            },
            stored.blocked,
        ))
    }

    /// The status of a transaction by id (None: never received).
    pub fn status(
        &self,
        transaction_id: &str,
    ) -> Option<(TransactionKind, TransactionState, Money, String)> {
        let entry = self.entries.get(transaction_id)?;
        let state = match (entry.completed, entry.reversed) {
            (true, true) => TransactionState::Reversed,
            (true, false) => TransactionState::Completed,
            (false, _) => TransactionState::Declined,
        };
        Some((
            entry.kind,
            state,
            Money::new(entry.amount_minor, &self.currency),
            entry.processed_at.clone(),
        ))
    }

    pub fn entry(&self, transaction_id: &str) -> Option<&Entry> {
        self.entries.get(transaction_id)
    }

    /// The books as JSON for the admin endpoint: per account its balance
    /// (this operator holds nothing: `held_minor` is 0) and limits, per
    /// transaction id what was applied, reversals that came before their
    /// original, and the totals. Member barcodes are credentials: never here.
    pub fn dump(&self) -> serde_json::Value {
        use serde_json::json;
        let accounts: serde_json::Map<String, serde_json::Value> = self
            .wallets
            .values()
            .map(|wallet| {
                (
                    wallet.account_id.clone(),
                    json!({
                        "balance_minor": wallet.balance_minor,
                        "held_minor": 0,
                        "max_balance_minor": wallet.max_balance_minor,
                        "max_top_up_minor": wallet.max_top_up_minor,
                        "max_payment_minor": wallet.max_payment_minor,
                        "blocked": wallet.blocked,
                    }),
                )
            })
            .collect();
        let mut ids: Vec<&String> = self.entries.keys().collect();
        ids.sort();
        let transactions: serde_json::Map<String, serde_json::Value> = ids
            .into_iter()
            .map(|id| {
                let entry = &self.entries[id];
                let state = match (entry.completed, entry.reversed) {
                    (true, true) => "REVERSED",
                    (true, false) => "COMPLETED",
                    (false, _) => "DECLINED",
                };
                (
                    id.clone(),
                    json!({
                        "kind": entry.kind,
                        "state": state,
                        "account_id": entry.account_id,
                        "amount_minor": entry.amount_minor,
                        "decline_code": entry.decline_code,
                        "reversal_refused": entry.reversal_refused,
                        "refunded_minor": entry.refunded_minor,
                        "original_transaction_id": entry.original,
                        "operator_reference": entry.completed.then_some(&entry.operator_reference),
                        "balance_after_minor": entry.balance_after_minor,
                        "processed_at": entry.processed_at,
                    }),
                )
            })
            .collect();
        let mut early: Vec<&String> = self.tombstones.iter().collect();
        early.sort();
        let totals = self.snapshot().totals;
        json!({
            "operator_name": self.operator_name,
            "currency": self.currency,
            "accounts": accounts,
            "transactions": transactions,
            "reversed_before_original": early,
            "totals": {
                "opening_minor": totals.opening_minor,
                "balances_minor": totals.balances_minor,
                "top_ups_minor": totals.top_ups_minor,
                "payments_minor": totals.payments_minor,
                "refunds_minor": totals.refunds_minor,
                "completed": totals.completed,
                "declined": totals.declined,
                "reversed": totals.reversed,
            },
        })
    }

    pub fn snapshot(&self) -> LedgerSnapshot {
        let mut totals = LedgerTotals {
            opening_minor: self.opening_minor,
            balances_minor: self
                .wallets
                .values()
                .map(|wallet| wallet.balance_minor)
                .sum(),
            ..LedgerTotals::default()
        };
        for entry in self.entries.values() {
            if !entry.completed {
                totals.declined += 1;
                continue;
            }
            if entry.reversed {
                totals.reversed += 1;
                continue;
            }
            totals.completed += 1;
            match entry.kind {
                TransactionKind::WalletTopUp => totals.top_ups_minor += entry.amount_minor,
                // Refunds are counted on their own; a payment's net is its amount.
                TransactionKind::WalletPayment => totals.payments_minor += entry.amount_minor,
                TransactionKind::WalletRefund => totals.refunds_minor += entry.amount_minor,
                _ => {}
            }
        }
        LedgerSnapshot {
            wallets: self.wallets.clone(),
            totals,
        }
    }
}
