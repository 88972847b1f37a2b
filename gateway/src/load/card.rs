//! The `card` scenario: chip card sales (`PaymentService.Authorize`,
//! `CAPTURE_MODE_SALE`, no PIN) on the bank simulator's published test
//! cards, one major unit each (NT$1, ¥1), alternating between the cards of
//! the store's currency so each card's credit line lasts longer.
//!
//! The example simulator gives each card a NT$10,000 limit: about 10,000
//! sales per card before the bank answers "51" (insufficient funds). A "51"
//! is a valid answer and counted on its own; any other decline of a test
//! card is a failure. For long runs, give the simulator larger limits.

use posgate_proto::v1::{
    AuthorizeRequest, AuthorizeResponse, CaptureMode, CardEntryMode, CardInput,
    CardTransactionStatus, Money, PanAndExpiry, RequestContext, card_input,
};

use super::{Failure, Rng};
use posgate_core::config::Config;

/// Test cards of `config/bank-sim.example.toml` in TWD: Visa (acquirer) and
/// the co-brand Mastercard (co-brand issuer), so both bank links carry load.
const TWD_CARDS: &[&str] = &["4111111111111111", "5200828282828210"];
/// The JCB test card, in yen.
const JPY_CARDS: &[&str] = &["3530111333300000"];
/// Expiry of the test cards ("3012" on the simulator).
const TEST_CARD_EXPIRY: &str = "2030-12";
/// The bank's "insufficient funds": the test card's limit is used up.
const INSUFFICIENT_FUNDS: &str = "51";
/// Start of every `pos_reference` the load sends, so its sales are easy to find.
const POS_REFERENCE_PREFIX: &str = "LOAD-";

/// What a store's virtual terminals pay by card.
#[derive(Debug, Clone)]
pub(super) struct CardRoute {
    currency_code: &'static str,
    /// One major unit of the currency, in minor units.
    amount_minor: i64,
    pans: &'static [&'static str],
}

/// The card route of `store_id`: none when the gateway takes no cards there
/// (no merchant id) or has no test card in the store's card currency.
pub(super) fn card_route(config: &Config, store_id: &str) -> Option<CardRoute> {
    if !config.card.merchant_ids.contains_key(store_id) {
        return None;
    }
    let currency = config.card.store_currency.get(store_id)?;
    let pans = match currency.code {
        "TWD" => TWD_CARDS,
        "JPY" => JPY_CARDS,
        _ => return None,
    };
    Some(CardRoute {
        currency_code: currency.code,
        amount_minor: i64::try_from(currency.minor_per_major()).ok()?,
        pans,
    })
}

/// A chip sale of one major unit on the next test card.
pub(super) fn sale_request(
    route: &CardRoute,
    context: RequestContext,
    rng: &mut Rng,
) -> AuthorizeRequest {
    let index = usize::try_from(rng.below(route.pans.len() as u64)).unwrap_or(0);
    let reference = format!("{POS_REFERENCE_PREFIX}{}", rng.digits(12));
    AuthorizeRequest {
        context: Some(context),
        card: Some(CardInput {
            entry_mode: CardEntryMode::Chip.into(),
            account: Some(card_input::Account::PanAndExpiry(PanAndExpiry {
                pan: route.pans[index].to_owned(),
                expiry: TEST_CARD_EXPIRY.to_owned(),
            })),
            ..CardInput::default()
        }),
        amount: Some(Money {
            amount_minor: route.amount_minor,
            currency: route.currency_code.to_owned(),
        }),
        capture_mode: CaptureMode::Sale.into(),
        pos_reference: reference,
    }
}

/// What the bank made of a fresh card sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CardAnswer {
    Approved,
    /// Declined "51": a valid answer, counted apart.
    InsufficientFunds,
    /// Declined with another code: a failure.
    Declined(String),
}

/// Classifies a fresh sale's answer; any shape but CAPTURED or DECLINED is malformed.
pub(super) fn classify(response: &AuthorizeResponse) -> Result<CardAnswer, Failure> {
    let transaction = response.transaction.as_ref().ok_or(Failure::BadAnswer)?;
    match transaction.status() {
        CardTransactionStatus::Captured => Ok(CardAnswer::Approved),
        CardTransactionStatus::Declined if transaction.response_code == INSUFFICIENT_FUNDS => {
            Ok(CardAnswer::InsufficientFunds)
        }
        CardTransactionStatus::Declined => {
            Ok(CardAnswer::Declined(transaction.response_code.clone()))
        }
        _ => Err(Failure::BadAnswer),
    }
}
