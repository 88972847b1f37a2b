//! The card rules posgate applies before it records or sends anything: the
//! store's card currency and limits, the presented card (expiry, brand,
//! chip, PIN), and what a capture, void or refund may do to a recorded
//! transaction.

use chrono::{DateTime, NaiveDate, Utc};
use posgate_hsm::Secret;

use super::CardError;
use super::card::{CardBrand, PresentedCard, brand_name, brand_of};
use super::payments::{Payments, Route, card_lines};
use crate::model::RequestContext;
use crate::model::business_day::BusinessCalendar;
use crate::model::card::{CardRecord, CardType};
use crate::model::money::Currency;
use crate::model::transaction::{SettlementLine, TransactionStatus};

/// The card currency and limit checks of an amount at a store. Returns the
/// amount in minor units.
pub fn check_amount(
    payments: &Payments,
    context: &RequestContext,
    amount_minor: u64,
    currency: Currency,
) -> Result<i64, CardError> {
    let Some(store_currency) = payments.config.store_currency.get(&context.store_id) else {
        return Err(CardError::Refused {
            kind: "CARDS_NOT_ACCEPTED",
            subject: format!("store/{}", context.store_id),
            description: format!("store {} takes no card payments", context.store_id),
        });
    };
    if *store_currency != currency {
        return Err(CardError::invalid(
            "amount.currency",
            format!("must be the store's card currency {}", store_currency.code),
        ));
    }
    let max = payments
        .config
        .max_amount_minor
        .get(currency.code)
        .copied()
        .unwrap_or(i64::MAX);
    let amount = i64::try_from(amount_minor).unwrap_or(i64::MAX);
    if amount > max {
        return Err(CardError::invalid(
            "amount.amount_minor",
            format!("exceeds the per-transaction maximum of {max} minor units"),
        ));
    }
    Ok(amount)
}

/// What the card rules decided about a presented card.
#[derive(Debug)]
pub struct CheckedCard {
    pub route: Route,
    pub brand: CardBrand,
    /// The PIN block translated to the route's zone PIN key.
    pub pin_block: Option<Secret<Vec<u8>>>,
}

fn card_refused(kind: &'static str, subject: &str, description: String) -> CardError {
    CardError::Refused {
        kind,
        subject: subject.to_owned(),
        description,
    }
}

/// The checks posgate makes before calling the bank: expiry (by the
/// store's local date), accepted brand, chip card swiped, the route's PIN
/// rule; and the PIN block's translation from the terminal's key.
pub async fn check_card(
    payments: &Payments,
    context: &RequestContext,
    card: &PresentedCard,
    local_date: NaiveDate,
) -> Result<CheckedCard, CardError> {
    if card.expired_at(local_date) {
        return Err(card_refused(
            "CARD_EXPIRED",
            "card",
            "the card has expired".to_owned(),
        ));
    }
    let brand = brand_of(&card.pan);
    if !payments
        .config
        .accepted_brands
        .iter()
        .any(|b| b == brand_name(brand))
    {
        return Err(card_refused(
            "CARD_BRAND_NOT_ACCEPTED",
            "card",
            format!("the chain does not accept {} cards", brand_name(brand)),
        ));
    }
    if card.chip_card_swiped() {
        return Err(card_refused(
            "CHIP_CARD_SWIPED",
            "card",
            "this is a chip card: insert the chip, or send MAGSTRIPE_FALLBACK after a failed chip read".to_owned(),
        ));
    }
    let route = payments.route(&card.pan);
    if route.pin_required && card.pin.is_none() {
        return Err(card_refused(
            "PIN_REQUIRED",
            "card.pin",
            "the card's issuer requires an online PIN".to_owned(),
        ));
    }
    let pin_block = match &card.pin {
        None => None,
        Some(pin) => {
            let label = payments
                .pin_key_label(&pin.key_id, &context.store_id, &context.terminal_id)
                .ok_or_else(|| {
                    CardError::invalid("card.pin.key_id", "is not a PIN key of this terminal")
                })?
                .to_owned();
            Some(
                payments
                    .translate_pin(&card.pan, pin, &label, &route.link)
                    .await
                    .map_err(|error| match error {
                        posgate_hsm::HsmError::WrongKeyType { .. } => CardError::invalid(
                            "card.pin.format",
                            "does not match the algorithm of the terminal's PIN key",
                        ),
                        other => CardError::Hsm(other),
                    })
                    .map(Secret::new)?,
            )
        }
    };
    Ok(CheckedCard {
        route,
        brand,
        pin_block,
    })
}

/// The checks of a capture against its authorization. Returns the amount.
pub fn check_capturable(
    record: &CardRecord,
    amount: u64,
    currency: Currency,
    now: DateTime<Utc>,
) -> Result<i64, CardError> {
    let refused = |kind, description| CardError::state(kind, &record.id, description);
    if record.card_type != CardType::Authorization {
        return Err(refused(
            "NOT_AN_AUTHORIZATION",
            "only an authorization (AUTH_ONLY) can be captured".to_owned(),
        ));
    }
    match record.status {
        TransactionStatus::Authorized => {}
        TransactionStatus::Captured => {
            return Err(refused(
                "ALREADY_CAPTURED",
                "the authorization was already captured".to_owned(),
            ));
        }
        TransactionStatus::Expired => {
            return Err(refused(
                "AUTHORIZATION_EXPIRED",
                "the authorization has expired".to_owned(),
            ));
        }
        other => {
            return Err(refused(
                "NOT_CAPTURABLE",
                format!("the transaction is {}", other.as_str()),
            ));
        }
    }
    if record.authorization_expires_at.is_some_and(|at| at <= now) {
        return Err(refused(
            "AUTHORIZATION_EXPIRED",
            "the authorization has expired".to_owned(),
        ));
    }
    if record.currency != currency.code {
        return Err(CardError::invalid(
            "amount.currency",
            format!("must be the authorization's currency {}", record.currency),
        ));
    }
    let amount = i64::try_from(amount).unwrap_or(i64::MAX);
    if amount > record.amount_minor {
        return Err(CardError::invalid(
            "amount.amount_minor",
            format!(
                "exceeds the authorized amount of {} minor units",
                record.amount_minor
            ),
        ));
    }
    Ok(amount)
}

/// The settlement lines a void appends, if the transaction may be voided.
pub fn void_lines(
    record: &CardRecord,
    calendar: &BusinessCalendar,
    today: NaiveDate,
) -> Result<Vec<SettlementLine>, CardError> {
    let refused = |kind, description| CardError::state(kind, &record.id, description);
    match (record.card_type, record.status) {
        (CardType::Refund, _) => Err(refused(
            "NOT_VOIDABLE",
            "a refund cannot be voided".to_owned(),
        )),
        (_, TransactionStatus::Voided) => Err(refused(
            "ALREADY_VOIDED",
            "the transaction was already voided".to_owned(),
        )),
        (_, TransactionStatus::Authorized) => Ok(Vec::new()),
        (_, TransactionStatus::Captured) => {
            if calendar.business_date(record.updated_at) != today {
                return Err(refused(
                    "BUSINESS_DAY_CLOSED",
                    "the capture's business day is over: use Refund".to_owned(),
                ));
            }
            if record.refunded_minor + record.refund_reserved_minor > 0 {
                return Err(refused(
                    "HAS_REFUNDS",
                    "the payment has refunds: it cannot be voided".to_owned(),
                ));
            }
            Ok(card_lines(record, -record.captured_minor, "card_void"))
        }
        (_, other) => Err(refused(
            "NOT_VOIDABLE",
            format!("the transaction is {}", other.as_str()),
        )),
    }
}

/// The checks of a refund against the payment it refunds. Returns the
/// amount in minor units.
pub async fn check_refundable(
    payments: &Payments,
    original: &CardRecord,
    card: Option<&PresentedCard>,
    amount: u64,
    currency: Currency,
    today: NaiveDate,
) -> Result<i64, CardError> {
    let refused = |kind, description| CardError::state(kind, &original.id, description);
    if original.card_type == CardType::Refund || original.status != TransactionStatus::Captured {
        return Err(refused(
            "NOT_REFUNDABLE",
            "only a captured payment can be refunded".to_owned(),
        ));
    }
    if original.currency != currency.code {
        return Err(CardError::invalid(
            "amount.currency",
            format!("must be the original's currency {}", original.currency),
        ));
    }
    if (today - original.business_date).num_days() > i64::from(payments.config.refund_window_days) {
        return Err(refused(
            "REFUND_WINDOW_CLOSED",
            format!(
                "the payment is older than the {}-day refund window",
                payments.config.refund_window_days
            ),
        ));
    }
    if let Some(card) = card {
        let presented = payments.fingerprint(&card.pan).await?;
        if presented != original.pan_fingerprint {
            return Err(refused(
                "CARD_MISMATCH",
                "the card presented is not the card the payment was made with".to_owned(),
            ));
        }
    }
    let amount = i64::try_from(amount).unwrap_or(i64::MAX);
    let remaining =
        original.captured_minor - original.refunded_minor - original.refund_reserved_minor;
    if amount > remaining {
        return Err(refund_exceeds(remaining));
    }
    Ok(amount)
}

/// A refund larger than what remains refundable.
pub(crate) fn refund_exceeds(remaining: i64) -> CardError {
    CardError::Refused {
        kind: "REFUND_EXCEEDS_REMAINING",
        subject: "amount".to_owned(),
        description: format!("the refund exceeds what remains refundable: {remaining} minor units"),
    }
}
