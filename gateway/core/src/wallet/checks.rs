//! The wallet rules checked with the request's fields, before anything is
//! recorded or sent: the operator is configured and enabled for the store,
//! the wallet id has the operator's shape, amounts are in the operator's
//! currency and within its limits. Each check adds its violations to the
//! request's list, so the caller hears of every bad field at once.

use std::sync::Arc;

use posgate_partners::wallet::api as wire;

use super::operators::{Operator, Wallets};
use crate::model::FieldViolation;
use crate::model::money::Currency;

/// Member barcodes: 6-64 printable ASCII characters.
const MIN_BARCODE_LEN: usize = 6;
const MAX_BARCODE_LEN: usize = 64;

/// How the POS names a wallet.
#[derive(Debug, Clone)]
pub enum WalletId {
    CardNumber(String),
    /// A member barcode: a credential, never stored.
    MemberBarcode(String),
}

/// A wallet reference as the POS sent it.
#[derive(Debug, Clone)]
pub struct WalletRefInput {
    pub operator_id: String,
    pub id: Option<WalletId>,
}

/// A wallet reference as checked: the operator and the id to send.
#[derive(Debug, Clone)]
pub struct CheckedWallet {
    pub operator: Arc<Operator>,
    pub id: WalletId,
    pub wire: wire::WalletRef,
    /// What is stored: the card number, or `****1234` for a barcode.
    pub stored_ref: String,
}

fn add(violations: &mut Vec<FieldViolation>, field: &str, description: impl Into<String>) {
    violations.push(FieldViolation::new(field, description));
}

/// Checks a wallet reference (fields `wallet.*`) for `store_id`.
pub fn check_wallet(
    violations: &mut Vec<FieldViolation>,
    wallets: &Wallets,
    wallet: Option<&WalletRefInput>,
    store_id: &str,
) -> Option<CheckedWallet> {
    let Some(wallet) = wallet else {
        add(violations, "wallet", "is required");
        return None;
    };
    let operator = match wallets.operator(&wallet.operator_id) {
        Some(operator) if operator.config.enabled_for(store_id) => Some(Arc::clone(operator)),
        Some(_) => {
            add(
                violations,
                "wallet.wallet_operator_id",
                format!(
                    "{:?} is not enabled for store {store_id:?}",
                    wallet.operator_id
                ),
            );
            None
        }
        None if wallet.operator_id.is_empty() => {
            add(violations, "wallet.wallet_operator_id", "is required");
            None
        }
        None => {
            add(
                violations,
                "wallet.wallet_operator_id",
                format!(
                    "{:?} is not a configured wallet operator",
                    wallet.operator_id
                ),
            );
            None
        }
    };
    let length = operator
        .as_ref()
        .map_or(16, |op| op.config.card_number_length);
    let reference = match &wallet.id {
        Some(WalletId::CardNumber(number)) => {
            if number.len() == length && number.bytes().all(|b| b.is_ascii_digit()) {
                Some((wire::WalletRef::account(number), number.clone()))
            } else {
                add(
                    violations,
                    "wallet.card_number",
                    format!("must be {length} digits"),
                );
                None
            }
        }
        Some(WalletId::MemberBarcode(code)) => {
            if (MIN_BARCODE_LEN..=MAX_BARCODE_LEN).contains(&code.len())
                && code.bytes().all(|b| (0x21..=0x7E).contains(&b))
            {
                Some((wire::WalletRef::barcode(code), wire::last4(code)))
            } else {
                add(
                    violations,
                    "wallet.member_barcode",
                    "must be 6-64 printable ASCII characters",
                );
                None
            }
        }
        None => {
            add(
                violations,
                "wallet.card_number",
                "a card number or a member barcode is required",
            );
            None
        }
    };
    let (operator, (wire, stored_ref)) = operator.zip(reference)?;
    Some(CheckedWallet {
        operator,
        id: wallet.id.clone()?,
        wire,
        stored_ref,
    })
}

/// What an amount is for, which sets its operator limits.
#[derive(Debug, Clone, Copy)]
pub enum AmountUse {
    TopUp,
    Payment,
}

/// Checks a positive amount (fields `amount.*`) against the operator: its
/// currency, at most its maximum for `usage`, a multiple of its unit.
pub fn check_amount(
    violations: &mut Vec<FieldViolation>,
    amount: u64,
    currency: Currency,
    operator: Option<&Operator>,
    usage: AmountUse,
) -> Option<i64> {
    let amount = i64::try_from(amount).ok()?;
    let operator = operator?;
    let (max_minor, unit_minor) = match usage {
        AmountUse::TopUp => (
            operator.config.max_top_up_minor,
            operator.config.top_up_unit_minor,
        ),
        AmountUse::Payment => (operator.config.max_payment_minor, 1),
    };
    if currency.code != operator.config.currency.code {
        add(
            violations,
            "amount.currency",
            format!(
                "must be {} (the operator's currency)",
                operator.config.currency.code
            ),
        );
        return None;
    }
    if amount > max_minor {
        add(
            violations,
            "amount.amount_minor",
            format!("exceeds the operator's maximum of {max_minor}"),
        );
        return None;
    }
    if amount % unit_minor != 0 {
        add(
            violations,
            "amount.amount_minor",
            format!("must be a multiple of {unit_minor}"),
        );
        return None;
    }
    Some(amount)
}

/// Checks a positive auto-reload step (fields `auto_reload.step.*`): in the
/// operator's currency, one of its allowed steps (when it has any: an
/// operator without is refused later as `AUTO_RELOAD_NOT_OFFERED`).
pub fn check_step(
    violations: &mut Vec<FieldViolation>,
    amount: u64,
    currency: Currency,
    operator: Option<&Operator>,
) -> i64 {
    let amount = i64::try_from(amount).unwrap_or(i64::MAX);
    let Some(operator) = operator else {
        return amount;
    };
    if currency.code != operator.config.currency.code {
        add(
            violations,
            "auto_reload.step.currency",
            format!(
                "must be {} (the operator's currency)",
                operator.config.currency.code
            ),
        );
    } else if !operator.config.reload_steps_minor.is_empty()
        && !operator.config.reload_steps_minor.contains(&amount)
    {
        add(
            violations,
            "auto_reload.step.amount_minor",
            format!(
                "must be one of the operator's steps {:?}",
                operator.config.reload_steps_minor
            ),
        );
    }
    amount
}
